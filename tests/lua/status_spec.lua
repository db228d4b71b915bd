require("tests.lua.helper")

-- The few ngx fields metrics.lua, recent.lua and status.lua read when loaded.
_G.ngx = {
    shared = {}, now = function() return 100.0 end, update_time = function() end, ctx = {}, var = {},
    log = function() end, WARN = 4, ERR = 3,
}

local metrics = require("metrics")
local status = require("status")
local recent = require("recent")
local SEP = "\1"

describe("status.quantile", function()
    local bounds = { 0.1, 0.5, 1 }

    it("interpolates inside the bucket holding the rank, as histogram_quantile does", function()
        assert.near(0.3, status.quantile(bounds, { 0, 2 }, 0.5), 1e-9)      -- both in (0.1, 0.5]
        assert.near(0.05, status.quantile(bounds, { 4 }, 0.5), 1e-9)        -- first bucket starts at 0
        assert.near(0.1, status.quantile(bounds, { 1, 1 }, 0.5), 1e-9)
    end)

    it("answers the last bound for samples above it, and nil without samples", function()
        assert.equal(1, status.quantile(bounds, { 0, 0, 0, 3 }, 0.5))
        assert.is_nil(status.quantile(bounds, {}, 0.5))
    end)
end)

describe("status.window", function()
    it("subtracts the baseline from the totals now", function()
        local now_e = { requests = 10, errors = 3, output_tokens = 700, ttft = { [4] = 5 }, itl = { [3] = 9 } }
        local then_e = { requests = 4, errors = 1, output_tokens = 100, ttft = { [4] = 1 }, itl = { [3] = 1 } }
        local w = status.window(now_e, then_e, 60)
        assert.same({ 6, 2, 600, 10 }, { w.requests, w.errors, w.output_tokens, w.output_tokens_per_s })
        assert.near(75, w.ttft_p50_ms, 0.1)     -- 4 samples in (0.05, 0.1]
        assert.near(3.75, w.itl_p50_ms, 0.01)   -- 8 samples in (0.0025, 0.005]
    end)

    it("counts from zero without a baseline or after the counters were reset", function()
        local w = status.window({ requests = 2, errors = 0, output_tokens = 5, ttft = {}, itl = {} },
            { requests = 9, errors = 0, output_tokens = 50, ttft = {}, itl = {} }, 10)
        assert.same({ 2, 5, 0.5 }, { w.requests, w.output_tokens, w.output_tokens_per_s })
        assert.is_nil(w.ttft_p50_ms)
        local empty = status.window(nil, nil, 0)
        assert.same({ 0, 0, 0 }, { empty.requests, empty.errors, empty.output_tokens_per_s })
    end)
end)

describe("status.pick_baseline", function()
    it("takes the oldest snapshot still inside the window", function()
        local snaps = { { t = 30 }, { t = 45 }, { t = 95 }, { t = 41 } }
        assert.equal(41, status.pick_baseline(snaps, 100, 60).t)
        assert.is_nil(status.pick_baseline({ { t = 10 } }, 100, 60))
        assert.is_nil(status.pick_baseline({}, 100, 60))
    end)
end)

describe("metrics.per_model", function()
    it("sums requests and errors over statuses and keeps bucket counts per model", function()
        local ml = 'model="nvidia/Q"'
        local snap = {
            ["c" .. SEP .. "router_requests_total" .. SEP .. ml .. ',status="200"'] = 7,
            ["c" .. SEP .. "router_requests_total" .. SEP .. ml .. ',status="503"'] = 2,
            ["c" .. SEP .. "router_requests_total" .. SEP .. 'model="unknown",status="404"'] = 5,
            ["c" .. SEP .. "router_output_tokens_total" .. SEP .. ml] = 420,
            ["g" .. SEP .. "router_requests_in_flight" .. SEP .. ml] = 1,
            ["h" .. SEP .. "router_time_to_first_token_seconds" .. SEP .. "nvidia/Q" .. SEP .. "3"] = 4,
            ["h" .. SEP .. "router_time_to_first_token_seconds" .. SEP .. "nvidia/Q" .. SEP .. "0"] = 1.5,
            ["h" .. SEP .. "router_time_to_first_token_seconds" .. SEP .. "nvidia/Q" .. SEP .. "-1"] = 4,
            ["h" .. SEP .. "router_request_duration_seconds" .. SEP .. "nvidia/Q" .. SEP .. "3"] = 4,
        }
        local per = metrics.per_model(snap)
        local q = per["nvidia/Q"]
        assert.same({ 9, 2, 420, 1 }, { q.requests, q.errors, q.output_tokens, q.in_flight })
        assert.same({ [3] = 4 }, q.ttft)
        assert.same({}, q.itl)
        assert.same({ 5, 5 }, { per.unknown.requests, per.unknown.errors })
    end)

    it("sums a model's series over API keys", function()
        local per = metrics.per_model({
            ["c" .. SEP .. "router_requests_total" .. SEP .. 'model="m",key="alice",status="200"'] = 3,
            ["c" .. SEP .. "router_requests_total" .. SEP .. 'model="m",key="bob",status="429"'] = 2,
            ["c" .. SEP .. "router_output_tokens_total" .. SEP .. 'model="m",key="alice"'] = 30,
            ["c" .. SEP .. "router_output_tokens_total" .. SEP .. 'model="m",key="bob"'] = 12,
        })
        assert.same({ 5, 2, 42 }, { per.m.requests, per.m.errors, per.m.output_tokens })
        assert.is_nil(per['m",key="alice'])
    end)
end)

describe("recent", function()
    it("round-trips an entry, keeping absent numbers absent", function()
        local rec = { time = 1700000000.25, model = "nvidia/Q", path = "/v1/chat/completions", status = 200,
                      prompt_tokens = 12, output_tokens = 40, ttft_ms = 80.5, tokens_per_s = 33.3,
                      duration_ms = 1300, client_abort = false }
        assert.same(rec, recent.decode(recent.encode(rec)))
        local bare = recent.decode(recent.encode({ time = 1, model = "unknown", status = 404, client_abort = true }))
        assert.same({ time = 1, model = "unknown", status = 404, client_abort = true }, bare)
    end)

    it("cannot be split by a separator inside a name", function()
        local rec = recent.decode(recent.encode({ time = 1, model = "a\31b", key = "k\31", status = 200 }))
        assert.same({ "ab", "k", 200 }, { rec.model, rec.key, rec.status })
    end)
end)
