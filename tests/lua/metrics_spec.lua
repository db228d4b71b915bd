require("tests.lua.helper")

-- A shared dict and the few ngx functions metrics.lua uses, outside nginx.
local function fake_dict()
    local data = {}
    return {
        data = data,
        incr = function(_, key, n, init)
            if data[key] == nil then
                if init == nil then return nil, "not found" end
                data[key] = init
            end
            data[key] = data[key] + n
            return data[key]
        end,
        get = function(_, key) return data[key] end,
        get_keys = function()
            local keys = {}
            for k in pairs(data) do keys[#keys + 1] = k end
            return keys
        end,
    }
end

local clock = 100.0
local printed
_G.ngx = {
    shared = { router_metrics = fake_dict() },
    now = function() return clock end,
    update_time = function() end,
    ctx = {},
    var = {},
    header = {},
    status = 200,
    req = { start_time = function() return 100.0 end },
    log = function() end, WARN = 4, ERR = 3,
    config = { prefix = function() return "/nonexistent/" end },
    print = function(s) printed = s end,
}
os.getenv = (function(orig)
    return function(name)
        if name == "ROUTER_ACCESS_LOG" then return "off" end
        return orig(name)
    end
end)(os.getenv)

local metrics = require("metrics")
local sse = require("sse")
local SEP = "\1"

-- The router's framing of a stream for metrics: (text events, reasoning events, where an
-- unfinished last event starts).
local function scan(chunk)
    local fr = sse.new()
    local n, r = 0, 0
    for i = 1, sse.feed(fr, chunk) do
        local kind = metrics.kind(sse.raw(fr, i))
        n = n + (kind > 0 and 1 or 0)
        r = r + (kind == 2 and 1 or 0)
    end
    local held = sse.rest(fr)
    return n, r, held ~= "" and #chunk - #held + 1 or nil
end

-- What the body filter does with a stream's chunk when metrics are on.
local framers = setmetatable({}, { __mode = "k" })
local function stream(m, chunk, eof)
    local fr = framers[m] or sse.new()
    framers[m] = fr
    for i = 1, sse.feed(fr, chunk) do
        metrics.event(m, sse.raw(fr, i))
    end
    metrics.chunk(m, eof)
end

describe("metrics.bucket_index", function()
    it("puts a value on its upper bound, and above the last bound into +Inf", function()
        local b = { 0.1, 0.5, 1 }
        assert.equal(1, metrics.bucket_index(b, 0.05))
        assert.equal(1, metrics.bucket_index(b, 0.1))
        assert.equal(2, metrics.bucket_index(b, 0.2))
        assert.equal(4, metrics.bucket_index(b, 3))
    end)
end)

describe("metrics.kind on framed events", function()
    it("counts events with text, not role chunks, empty deltas, usage or [DONE]", function()
        local chunk = 'data: {"choices":[{"delta":{"role":"assistant","content":""}}]}\n\n'
            .. 'data: {"choices":[{"delta":{"content":"Hi","reasoning_content":""}}]}\n\n'
            .. 'data: {"choices":[{"delta":{"content":"","reasoning_content":"hm"}}]}\n\n'
            .. 'data: {"choices":[],"usage":{"completion_tokens":2}}\n\ndata: [DONE]\n\n'
        assert.equal(2, scan(chunk))
    end)
    it("counts the events whose only text is reasoning, as trtllm's reasoning parser streams it", function()
        local chunk = 'data: {"choices":[{"delta":{"content":"","reasoning_content":"let"}}]}\n\n'
            .. 'data: {"choices":[{"delta":{"content":null,"reasoning":" me"}}]}\n\n'
            .. 'data: {"choices":[{"delta":{"content":"Yes","reasoning_content":""}}]}\n\n'
        local n, r = scan(chunk)
        assert.equal(3, n)
        assert.equal(2, r)
    end)
    it("counts completions text and Responses API deltas, and nothing in a plain JSON body", function()
        assert.equal(1, scan('data: {"choices":[{"text":"a"}]}\n\n'))
        assert.equal(1, scan('data: {"type":"response.output_text.delta","delta":"x"}\n\n'))
        assert.equal(0, scan('{"choices":[{"message":{"content":"hello"}}]}'))
    end)
end)

describe("metrics.kind on a chunk that stops inside an event", function()
    it("counts the finished events and returns where the unfinished one starts", function()
        local first = 'data: {"choices":[{"delta":{"content":"a"}}]}\n\n'
        local n, r, held = scan(first .. 'data: {"choices":[{"delta":{"reasoning_con')
        assert.equal(1, n)
        assert.equal(0, r)
        assert.equal(#first + 1, held)
    end)
end)

describe("metrics.usage", function()
    it("reads completion, reasoning and prompt tokens", function()
        local out, r, p = metrics.usage('{"usage":{"prompt_tokens":7,"completion_tokens":12,'
            .. '"completion_tokens_details":{"reasoning_tokens":5}}}')
        assert.same({ 12, 5, 7 }, { out, r, p })
    end)
    it("reads the Responses API names and ignores text without usage", function()
        local out, r, p = metrics.usage('"usage": {"input_tokens": 3, "output_tokens": 4}')
        assert.same({ 4, nil, 3 }, { out, r, p })
        assert.is_nil(metrics.usage('{"completion_tokens":3}'))
    end)
end)

describe("metrics.render", function()
    it("writes cumulative buckets, sum and count, and counters with HELP and TYPE", function()
        local name = "router_time_to_first_token_seconds"
        local snap = {
            ["h" .. SEP .. name .. SEP .. "m/x" .. SEP .. "1"] = 2,   -- le 0.01
            ["h" .. SEP .. name .. SEP .. "m/x" .. SEP .. "4"] = 1,   -- le 0.1
            ["h" .. SEP .. name .. SEP .. "m/x" .. SEP .. "0"] = 0.12,
            ["h" .. SEP .. name .. SEP .. "m/x" .. SEP .. "-1"] = 3,
            ["c" .. SEP .. "router_requests_total" .. SEP .. 'model="m/x",status="200"'] = 3,
        }
        local text = metrics.render(snap, { { "router_upstream_state", 'model="m/x",upstream="h:1",state="ready"', 1 } })
        assert.truthy(text:find('router_time_to_first_token_seconds_bucket{model="m/x",le="0.01"} 2\n', 1, true))
        assert.truthy(text:find('router_time_to_first_token_seconds_bucket{model="m/x",le="0.05"} 2\n', 1, true))
        assert.truthy(text:find('router_time_to_first_token_seconds_bucket{model="m/x",le="0.1"} 3\n', 1, true))
        assert.truthy(text:find('router_time_to_first_token_seconds_bucket{model="m/x",le="+Inf"} 3\n', 1, true))
        assert.truthy(text:find('router_time_to_first_token_seconds_sum{model="m/x"} 0.12\n', 1, true))
        assert.truthy(text:find('router_time_to_first_token_seconds_count{model="m/x"} 3\n', 1, true))
        assert.truthy(text:find('# TYPE router_requests_total counter\nrouter_requests_total{model="m/x",status="200"} 3\n', 1, true))
        assert.truthy(text:find('router_upstream_state{model="m/x",upstream="h:1",state="ready"} 1\n', 1, true))
    end)
end)

describe("a request through the phases", function()
    before_each(function()
        for k in pairs(ngx.shared.router_metrics.data) do ngx.shared.router_metrics.data[k] = nil end
        ngx.header, ngx.status = {}, 200
        ngx.var = { uri = "/v1/chat/completions", router_model = "m/x", upstream_addr = "127.0.0.1:1, 127.0.0.1:2",
                    request_completion = "OK", request_length = "100", bytes_sent = "200" }
        clock = 100.0
    end)

    it("counts it, observes TTFT and ITL, sums usage tokens and leaves nothing in flight", function()
        local rc = {}
        metrics.begin(rc)
        metrics.start(rc, "m/x")
        local data = ngx.shared.router_metrics.data
        assert.equal(1, data["g" .. SEP .. "router_requests_in_flight" .. SEP .. 'model="m/x"'])
        metrics.header(rc)
        assert.truthy(tonumber(ngx.header["X-Router-Time-Ms"]))
        clock = 100.3
        stream(rc.metrics, 'data: {"choices":[{"delta":{"role":"assistant","content":""}}]}\n\n', false)
        stream(rc.metrics, 'data: {"choices":[{"delta":{"content":"a"}}]}\n\n', false)
        clock = 100.32
        stream(rc.metrics, 'data: {"choices":[{"delta":{"content":"b"}}]}\n\n', false)
        clock = 100.36
        stream(rc.metrics, 'data: {"choices":[{"delta":{"content":"c"}}]}\n\ndata: {"choices":[],"usage":{"prompt_tokens":5,"completion_tokens":3}}\n\n', false)
        clock = 100.4
        stream(rc.metrics, "data: [DONE]\n\n", true)
        metrics.log(rc.metrics)

        assert.equal(0, data["g" .. SEP .. "router_requests_in_flight" .. SEP .. 'model="m/x"'])
        assert.equal(1, data["c" .. SEP .. "router_requests_total" .. SEP .. 'model="m/x",status="200"'])
        assert.equal(3, data["c" .. SEP .. "router_output_tokens_total" .. SEP .. 'model="m/x"'])
        assert.equal(5, data["c" .. SEP .. "router_prompt_tokens_total" .. SEP .. 'model="m/x"'])
        assert.equal(1, data["c" .. SEP .. "router_upstream_retries_total" .. SEP .. 'model="m/x"'])
        local ttft = "h" .. SEP .. "router_time_to_first_token_seconds" .. SEP .. "m/x" .. SEP
        assert.equal(1, data[ttft .. "6"])   -- 0.3 s: le 0.5
        local itl = "h" .. SEP .. "router_inter_token_latency_seconds" .. SEP .. "m/x" .. SEP
        assert.equal(1, data[itl .. "5"])    -- 0.02 s: le 0.02
        assert.equal(1, data[itl .. "7"])    -- 0.04 s: le 0.05
        assert.equal(2, data[itl .. "-1"])
        assert.is_nil(data["c" .. SEP .. "router_client_aborts_total" .. SEP .. 'model="m/x"'])
    end)

    it("labels a request the router refused as unknown and counts a client abort", function()
        ngx.var.router_model = ""
        ngx.status = 499
        metrics.log()
        local data = ngx.shared.router_metrics.data
        assert.equal(1, data["c" .. SEP .. "router_requests_total" .. SEP .. 'model="unknown",status="499"'])
        assert.equal(1, data["c" .. SEP .. "router_client_aborts_total" .. SEP .. 'model="unknown"'])
        assert.is_nil(data["g" .. SEP .. "router_requests_in_flight" .. SEP .. 'model="unknown"'])
    end)

    it("counts a reasoning event cut across two chunks once, and times no JSON answer", function()
        local data = ngx.shared.router_metrics.data
        local rc = {}
        metrics.begin(rc)
        metrics.start(rc, "m/x")
        stream(rc.metrics, 'data: {"choices":[{"delta":{"content":"","reasoning_con', false)
        stream(rc.metrics, 'tent":"hm"}}]}\n\ndata: {"choices":[{"delta":{"content":"","reasoning_content":"m"}}]}\n\n', false)
        stream(rc.metrics, "data: [DONE]\n\n", true)
        metrics.log(rc.metrics)
        rc = {}
        metrics.begin(rc)
        metrics.start(rc, "m/x")
        metrics.json(rc.metrics, '{"choices":[{"message":{"content":"data: {\\"reasoning_content\\":\\"x\\"}"}}]}', true)
        metrics.log(rc.metrics)
        assert.equal(2, data["c" .. SEP .. "router_reasoning_events_total" .. SEP .. 'model="m/x"'])
        -- Only the stream has a first token; the JSON answer's "data:" text is not an event.
        assert.equal(1, data["h" .. SEP .. "router_time_to_first_token_seconds" .. SEP .. "m/x" .. SEP .. "-1"])
    end)

    it("serves the registry's upstream states as gauges", function()
        metrics.serve({ deployed = { { id = "m/x", upstreams = { "h:1" } } } }, function() return "down" end)
        assert.truthy(printed:find('router_upstream_state{model="m/x",upstream="h:1",state="down"} 1\n', 1, true))
        assert.truthy(printed:find('router_upstream_state{model="m/x",upstream="h:1",state="ready"} 0\n', 1, true))
        assert.truthy(printed:find('router_requests_in_flight{model="m/x"} 0\n', 1, true))
    end)
end)
