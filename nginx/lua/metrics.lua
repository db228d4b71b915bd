-- Router metrics (Prometheus text at /metrics); the access log is written by accesslog.lua.
--
-- State: counters and histogram buckets in lua_shared_dict `router_metrics`, shared by workers.
-- Per request, facts gather in rc.metrics (rc = ngx.ctx.router; begin(), start(), header(),
-- then event() for each event of the response's one SSE framer and chunk() per read, or json()
-- for a body that is not a stream) and are counted once in the log phase (log()); per stream
-- event only that table is touched.
-- Label values are bounded: `model` is a canonical registry id or "unknown", `status` an HTTP
-- code, `upstream` an address from the registry. Raw client strings never become labels.
-- Pure helpers (bucket_index, kind, usage, render) take state as arguments: busted
-- tests them without nginx.

local recent = require("recent")

local _M = { _VERSION = "0.1.0" }

local ngx = ngx
local find, match, sub, gsub, format, byte = string.find, string.match, string.sub, string.gsub, string.format, string.byte
local concat, sort = table.concat, table.sort
local tonumber, tostring, pairs, ipairs, type = tonumber, tostring, pairs, ipairs, type

local LOG = "[metrics] "
local SEP = "\1"   -- key separator in the shared dict: never in a model id, address or status

-- Seconds. TTFT spans queueing + prefill (ms .. minutes); ITL is one decode step (ms .. s).
_M.HISTOGRAMS = {
    router_request_duration_seconds = {
        help = "Time from the first request byte to the last response byte, generation endpoints.",
        buckets = { 0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600 } },
    router_time_to_first_token_seconds = {
        help = "Time from the first request byte to the first upstream stream event with text.",
        buckets = { 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60 } },
    router_inter_token_latency_seconds = {
        help = "Gap between successive upstream stream events with text (one decode step at stream_interval 1).",
        buckets = { 0.001, 0.0025, 0.005, 0.01, 0.02, 0.03, 0.05, 0.075, 0.1, 0.25, 0.5, 1, 2.5 } },
    router_queue_wait_seconds = {
        help = "Time a request waited in its model's admission queue (requests that had to wait).",
        buckets = { 0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120 } },
}

_M.COUNTERS = {
    router_requests_total = "Requests to generation endpoints, by canonical model and HTTP status.",
    router_output_tokens_total = "Output (completion) tokens reported by upstream usage.",
    router_reasoning_tokens_total = "Reasoning tokens reported by upstream usage (completion_tokens_details).",
    -- trtllm-serve's usage has no completion_tokens_details (UsageInfo in
    -- tensorrt_llm/serve/openai_protocol.py): with it, reasoning is measured from the stream.
    router_reasoning_events_total = "Upstream stream events carrying reasoning text (about one token each at stream_interval 1).",
    router_prompt_tokens_total = "Prompt tokens reported by upstream usage.",
    router_upstream_retries_total = "Extra upstream attempts after a failed connect (failover).",
    router_client_aborts_total = "Requests the client closed before the response was complete.",
    router_rate_limited_total = "Requests refused with 429 rate_limit_exceeded, by key and limit (rpm, tpm, max_concurrent).",
    router_admission_rejections_total = "Requests refused with 429 model_busy, by model and reason (queue_full, timeout).",
}

local GAUGE_HELP = {
    router_requests_in_flight = "Generation requests accepted and not yet finished.",
    router_upstream_state = "1 for the current health state of each upstream (ready, starting, down).",
    router_queue_depth = "Requests waiting in the model's admission queue.",
}
local STATES = { "ready", "starting", "down" }

---------------------------------------------------------------------------------------------
-- Pure helpers

-- Index of the first bucket whose bound is >= v; #buckets + 1 is +Inf.
function _M.bucket_index(buckets, v)
    for i = 1, #buckets do
        if v <= buckets[i] then
            return i
        end
    end
    return #buckets + 1
end

-- What one stream event carries: 1 generated text (content, completion text or a Responses
-- API delta), 2 reasoning and no answer text, 0 neither. An empty "content":"" is not text.
-- Plain finds and byte checks (a pattern find would abort the LuaJIT trace on every event);
-- JSON may put spaces after the colon.
local B_QUOTE = 34
local function has_text(ev, key)
    local from = 1
    while true do
        local k = find(ev, key, from, true)
        if not k then
            return false
        end
        local i = k + #key
        local b = byte(ev, i)
        while b == 32 do
            i = i + 1
            b = byte(ev, i)
        end
        if b == B_QUOTE and byte(ev, i + 1) ~= B_QUOTE then
            return true
        end
        from = i
    end
end

function _M.kind(ev)
    if has_text(ev, '"content":') then
        return 1
    elseif has_text(ev, '"reasoning_content":') or has_text(ev, '"reasoning":') then
        return 2
    elseif has_text(ev, '"text":') or has_text(ev, '"delta":') then
        return 1
    end
    return 0
end

-- Token counts from a usage object in text (the last one wins): completion, reasoning, prompt.
-- Chat/completions use prompt_tokens/completion_tokens; the Responses API input/output_tokens.
function _M.usage(text)
    local at = find(text, '"usage"', 1, true)
    if not at then
        return nil
    end
    local u = sub(text, at)
    local out = tonumber(match(u, '"completion_tokens"%s*:%s*(%d+)') or match(u, '"output_tokens"%s*:%s*(%d+)'))
    local reasoning = tonumber(match(u, '"reasoning_tokens"%s*:%s*(%d+)'))
    local prompt = tonumber(match(u, '"prompt_tokens"%s*:%s*(%d+)') or match(u, '"input_tokens"%s*:%s*(%d+)'))
    if not out and not prompt then
        return nil
    end
    return out, reasoning, prompt
end

local function esc(v)
    return (gsub(gsub(gsub(tostring(v), "\\", "\\\\"), "\n", "\\n"), '"', '\\"'))
end

local function fmt_num(v)
    if v == math.floor(v) and v < 1e15 and v > -1e15 then
        return format("%d", v)
    end
    return format("%.6g", v)
end

-- Prometheus text exposition of a {key = value} snapshot of the dict plus gauges.
-- keys: "c" SEP name SEP labels          (counter; labels preformatted: model="x",status="200")
--       "h" SEP name SEP model SEP index (histogram bucket, not cumulative; 0 = sum, -1 = count)
--       "g" SEP name SEP labels          (gauge)
-- extra_gauges: list of {name, labels, value} computed at scrape time.
function _M.render(snapshot, extra_gauges)
    local counters, gauges, hists = {}, {}, {}
    for key, value in pairs(snapshot) do
        local kind, name, rest = match(key, "^(%a)" .. SEP .. "([^" .. SEP .. "]+)" .. SEP .. "(.*)$")
        if kind == "c" then
            counters[name] = counters[name] or {}
            counters[name][rest] = value
        elseif kind == "g" then
            gauges[name] = gauges[name] or {}
            gauges[name][rest] = value
        elseif kind == "h" then
            local model, idx = match(rest, "^(.*)" .. SEP .. "(%-?%d+)$")
            if model then
                hists[name] = hists[name] or {}
                local h = hists[name][model] or { counts = {}, sum = 0, count = 0 }
                hists[name][model] = h
                idx = tonumber(idx)
                if idx == 0 then
                    h.sum = value
                elseif idx == -1 then
                    h.count = value
                else
                    h.counts[idx] = value
                end
            end
        end
    end
    for _, g in ipairs(extra_gauges or {}) do
        gauges[g[1]] = gauges[g[1]] or {}
        gauges[g[1]][g[2]] = g[3]
    end

    local out = {}
    local function series(name, labels, value)
        out[#out + 1] = name .. (labels ~= "" and ("{" .. labels .. "}") or "") .. " " .. fmt_num(value)
    end
    local function sorted_keys(t)
        local keys = {}
        for k in pairs(t) do
            keys[#keys + 1] = k
        end
        sort(keys)
        return keys
    end

    for _, family in ipairs({ { _M.COUNTERS, "counter", counters }, { GAUGE_HELP, "gauge", gauges } }) do
        local help, kind, values = family[1], family[2], family[3]
        for _, name in ipairs(sorted_keys(help)) do
            out[#out + 1] = "# HELP " .. name .. " " .. help[name]
            out[#out + 1] = "# TYPE " .. name .. " " .. kind
            local v = values[name] or {}
            for _, labels in ipairs(sorted_keys(v)) do
                series(name, labels, v[labels])
            end
        end
    end
    for _, name in ipairs(sorted_keys(_M.HISTOGRAMS)) do
        local def = _M.HISTOGRAMS[name]
        out[#out + 1] = "# HELP " .. name .. " " .. def.help
        out[#out + 1] = "# TYPE " .. name .. " histogram"
        local per_model = hists[name] or {}
        for _, model in ipairs(sorted_keys(per_model)) do
            local h = per_model[model]
            local m = 'model="' .. esc(model) .. '"'
            local cum = 0
            for i = 1, #def.buckets do
                cum = cum + (h.counts[i] or 0)
                series(name .. "_bucket", m .. ',le="' .. fmt_num(def.buckets[i]) .. '"', cum)
            end
            cum = cum + (h.counts[#def.buckets + 1] or 0)
            series(name .. "_bucket", m .. ',le="+Inf"', cum)
            series(name .. "_sum", m, h.sum)
            series(name .. "_count", m, h.count)
        end
    end
    return concat(out, "\n") .. "\n"
end

-- Per-model totals in a snapshot, for the status page (nginx/lua/status.lua): requests and
-- errors (status >= 400), output tokens, in flight, and TTFT / ITL counts per bucket (not
-- cumulative, index as in HISTOGRAMS; #buckets + 1 is +Inf).
local TTFT, ITL_NAME = "router_time_to_first_token_seconds", "router_inter_token_latency_seconds"
function _M.per_model(snapshot)
    local out = {}
    local function entry(model)
        local e = out[model]
        if not e then
            e = { requests = 0, errors = 0, output_tokens = 0, in_flight = 0, ttft = {}, itl = {} }
            out[model] = e
        end
        return e
    end
    for key, value in pairs(snapshot) do
        local kind, name, rest = match(key, "^(%a)" .. SEP .. "([^" .. SEP .. "]+)" .. SEP .. "(.*)$")
        -- With keys on, a model's counts are spread over key="..." series: summed here.
        if kind == "c" and name == "router_requests_total" then
            local model, status = match(rest, '^model="([^"]*)"'), match(rest, 'status="(%d+)"$')
            if model and status then
                local e = entry(model)
                e.requests = e.requests + value
                if tonumber(status) >= 400 then
                    e.errors = e.errors + value
                end
            end
        elseif kind == "c" and name == "router_output_tokens_total" then
            local model = match(rest, '^model="([^"]*)"')
            if model then
                local e = entry(model)
                e.output_tokens = e.output_tokens + value
            end
        elseif kind == "g" and name == "router_requests_in_flight" then
            local model = match(rest, '^model="(.*)"$')
            if model then
                entry(model).in_flight = value
            end
        elseif kind == "h" and (name == TTFT or name == ITL_NAME) then
            local model, idx = match(rest, "^(.*)" .. SEP .. "(%d+)$")   -- sum (0) and count (-1) skipped
            idx = tonumber(idx)
            if model and idx > 0 then
                entry(model)[name == TTFT and "ttft" or "itl"][idx] = value
            end
        end
    end
    return out
end

---------------------------------------------------------------------------------------------
-- nginx glue

local dict = ngx.shared.router_metrics
local now, update_time = ngx.now, ngx.update_time

-- A microsecond monotonic clock for X-Router-Time-Ms (ngx.now() has millisecond steps).
local clock = now
do
    local ok, ffi = pcall(require, "ffi")
    if ok then
        local defined = pcall(ffi.cdef, [[
            typedef struct { long tv_sec; long tv_nsec; } router_metrics_timespec;
            int clock_gettime(int clk_id, router_metrics_timespec *tp);
        ]])
        if defined then
            local ts = ffi.new("router_metrics_timespec")
            local C = ffi.C
            clock = function()
                C.clock_gettime(1, ts)   -- CLOCK_MONOTONIC
                return tonumber(ts.tv_sec) + tonumber(ts.tv_nsec) * 1e-9
            end
        end
    end
end
_M.clock = clock

local function incr(key, n)
    if n == 0 then
        return
    end
    local _, err, forcible = dict:incr(key, n, 0)
    if err then
        ngx.log(ngx.WARN, LOG, "failed to count ", key, ": ", err)
    elseif forcible then
        ngx.log(ngx.WARN, LOG, "router_metrics dict is full: old series evicted")
    end
end

-- The dict keys of one model's series, built once per worker (model is a registry id or
-- "unknown": the table stays small) rather than escaped and concatenated on every request.
local key_cache = {}
-- Series names of one model (and, with keys on, one key's name: bounded, from the keys file),
-- built once per worker: requests, tokens and client aborts carry the key, the rest only the model.
local function keys_of(model, key)
    local ck = key and (model .. "\1" .. key) or model
    local k = key_cache[ck]
    if not k then
        local ml = 'model="' .. esc(model) .. '"'
        local mkl = key and (ml .. ',key="' .. esc(key) .. '"') or ml
        k = { ml = ml, hist = {},
              requests = "c" .. SEP .. "router_requests_total" .. SEP .. mkl .. ',status="',
              in_flight = "g" .. SEP .. "router_requests_in_flight" .. SEP .. ml }
        for _, name in ipairs({ "output_tokens", "reasoning_tokens", "prompt_tokens", "client_aborts" }) do
            k[name] = "c" .. SEP .. "router_" .. name .. "_total" .. SEP .. mkl
        end
        for _, name in ipairs({ "reasoning_events", "upstream_retries" }) do
            k[name] = "c" .. SEP .. "router_" .. name .. "_total" .. SEP .. ml
        end
        for name in pairs(_M.HISTOGRAMS) do
            local base = "h" .. SEP .. name .. SEP .. model .. SEP
            k.hist[name] = { base .. "0", base .. "-1", base = base }
        end
        key_cache[ck] = k
    end
    return k
end

local function observe(k, name, v)
    local h = k.hist[name]
    incr(h.base .. _M.bucket_index(_M.HISTOGRAMS[name].buckets, v), 1)
    incr(h[1], v)
    incr(h[2], 1)
end

-- ROUTER_METRICS=off turns off per-request tracking: no /metrics series, no access log
-- (log() returns no record).
local enabled = true

-- For other modules (guard.lua): one counter step or one histogram observation.
-- labels: preformatted, from bounded values only.
function _M.count(name, labels, n)
    if enabled then
        incr("c" .. SEP .. name .. SEP .. labels, n or 1)
    end
end

function _M.observe(name, model, v)
    if enabled then
        observe(keys_of(model), name, v)
    end
end

function _M.label(v)
    return esc(v)
end

-- init: read the switch once.
function _M.configure(value)
    enabled = not (value == "off" or value == "0" or value == "false")
    return enabled
end

function _M.enabled()
    return enabled
end

-- access phase, first line: the request's metrics state (rc.metrics), the router-time clock.
function _M.begin(rc)
    if enabled then
        rc.metrics = { t_begin = clock() }
    end
end

-- access phase, after routing: the request is in flight for a canonical model.
function _M.start(rc, model_id)
    local m = rc.metrics
    if not m then
        return
    end
    if m.t_begin then
        m.router_ms = (clock() - m.t_begin) * 1000
    end
    m.model = model_id
    m.itl = {}
    m.itl_sum, m.itl_n, m.text_events, m.reasoning_events, m.pending = 0, 0, 0, 0, 0
    incr(keys_of(model_id).in_flight, 1)
end

-- header filter: say how long the router itself took before proxying.
function _M.header(rc)
    local m = rc.metrics
    if m and m.router_ms then
        ngx.header["X-Router-Time-Ms"] = format("%.3f", m.router_ms)
    end
end

local ITL = _M.HISTOGRAMS.router_inter_token_latency_seconds.buckets

local function take_usage(m, text)
    local out, reasoning, prompt = _M.usage(text)
    if out or prompt then
        m.out_tokens, m.reasoning_tokens, m.prompt_tokens = out, reasoning, prompt
        return true
    end
    return false
end

-- body filter, for each complete stream event (the response's one SSE framer hands them
-- over): text and reasoning counts, usage. Timing waits for chunk().
function _M.event(m, ev)
    if not m.model then
        return
    end
    local kind = _M.kind(ev)
    if kind > 0 then
        m.pending = m.pending + 1
        if kind == 2 then
            m.reasoning_events = m.reasoning_events + 1
        end
    elseif find(ev, '"usage"', 1, true) then
        take_usage(m, ev)
    end
end

-- body filter, once per chunk after its events: TTFT and ITL (one step per upstream read,
-- whatever number of events it held).
function _M.chunk(m, eof)
    local n = m.pending
    if n > 0 then
        m.pending = 0
        update_time()
        local t = now()
        if not m.t_first then
            m.t_first = t
        elseif m.t_last then
            local gap = t - m.t_last
            local idx = _M.bucket_index(ITL, gap)
            m.itl[idx] = (m.itl[idx] or 0) + 1
            m.itl_sum, m.itl_n = m.itl_sum + gap, m.itl_n + 1
        end
        m.t_last = t
        m.text_events = m.text_events + n
    end
    if eof then
        m.complete = true
    end
end

-- body filter, for a response that is not a stream: usage sits near the end of the JSON, so
-- only the last chunk is searched, then the seam with the one before (a concatenation once
-- per response, at its end, never per chunk).
function _M.json(m, chunk, eof)
    if not m.model then
        return
    end
    if not eof then
        m.prev = chunk
        return
    end
    m.complete = true
    if not (find(chunk, '"usage"', 1, true) and take_usage(m, chunk)) and m.prev then
        take_usage(m, m.prev .. chunk)
    end
    m.prev = nil
end

local GEN = { ["/v1/chat/completions"] = true, ["/v1/completions"] = true, ["/v1/responses"] = true,
              ["/v1/messages"] = true, ["/v1/messages/count_tokens"] = true }

-- log phase: count the request's numbers; with want_record, return its access-log record
-- (accesslog.lua). m is rc.metrics: nil after the internal redirect to the error location
-- (ngx.ctx is empty then), when the model and peer come from variables.
function _M.log(m, want_record)
    local var = ngx.var
    local uri = var.uri
    if uri == "/_router/nginx-error" then
        -- error_page replaced the URI (nginx/conf/router.conf); the client's path is here.
        uri = string.match(var.request_uri or "", "^[^?]*")
    end
    if not enabled or not GEN[uri] then
        return nil
    end
    m = m or {}
    local model_var = var.router_model
    local model = (model_var ~= nil and model_var ~= "") and model_var or "unknown"
    local status = ngx.status
    local t_start = ngx.req.start_time()
    update_time()
    local t_end = now()
    local duration = t_end - t_start
    -- With keys on, counters also carry the key's name.
    local key = var.router_key
    if key == "" then
        key = nil
    end
    local k = keys_of(model, key)

    incr(k.requests .. tonumber(status) .. '"', 1)
    if model_var ~= nil and model_var ~= "" then
        -- start() counted it in flight (router_model is set right after, in the same access call).
        incr(k.in_flight, -1)
        observe(k, "router_request_duration_seconds", duration)
    end
    local ttft
    if m.t_first then
        ttft = m.t_first - t_start
        observe(k, "router_time_to_first_token_seconds", ttft)
    end
    if m.itl_n and m.itl_n > 0 then
        local h = k.hist.router_inter_token_latency_seconds
        for idx = 1, #ITL + 1 do   -- not pairs(): it would abort the trace
            local n = m.itl[idx]
            if n then
                incr(h.base .. idx, n)
            end
        end
        incr(h[1], m.itl_sum)
        incr(h[2], m.itl_n)
    end
    if m.out_tokens then
        incr(k.output_tokens, m.out_tokens)
    end
    if m.reasoning_tokens then
        incr(k.reasoning_tokens, m.reasoning_tokens)
    end
    if m.prompt_tokens then
        incr(k.prompt_tokens, m.prompt_tokens)
    end
    if m.reasoning_events and m.reasoning_events > 0 then
        incr(k.reasoning_events, m.reasoning_events)
    end
    -- $upstream_addr: "a, b" after a failover (" : " after an internal redirect): count commas.
    local addrs = var.upstream_addr
    local tries = 0
    if addrs and addrs ~= "" then
        tries = 1
        local at = find(addrs, ",", 1, true)
        while at do
            tries = tries + 1
            at = find(addrs, ",", at + 1, true)
        end
    end
    if tries > 1 then
        incr(k.upstream_retries, tries - 1)
    end
    -- 499: closed before the response started. After that nginx keeps the status it sent;
    -- a response whose last buffer never reached the body filter was cut (by the client:
    -- an upstream failure mid-stream is an upstream error, logged by nginx as such).
    local aborted = status == 499 or (m.model ~= nil and status < 400 and not m.complete
        and var.upstream_status ~= "502")
    if aborted then
        incr(k.client_aborts, 1)
    end
    local ttft_ms = ttft and math.floor(ttft * 1e4 + 0.5) / 10
    local duration_ms = math.floor(duration * 1e4 + 0.5) / 10
    -- Streamed: the decode rate after the first token; whole answers: over the whole request.
    local tps
    if m.out_tokens and m.out_tokens > 0 then
        local span = (m.t_first and m.t_last and m.t_last > m.t_first) and (m.t_last - m.t_first) or nil
        tps = span and (m.out_tokens - 1) / span or (duration > 0 and m.out_tokens / duration or nil)
        tps = tps and math.floor(tps * 10 + 0.5) / 10
    end
    recent.push({
        time = t_end, model = model, key = m.key_name, path = uri, status = status,
        prompt_tokens = m.prompt_tokens, output_tokens = m.out_tokens, ttft_ms = ttft_ms,
        tokens_per_s = tps, duration_ms = duration_ms, client_abort = aborted,
    })
    if not want_record then
        return nil
    end

    local peer = var.router_peer
    local utc = ngx.utctime()   -- "yyyy-mm-dd hh:mm:ss", cached per event-loop turn
    return {
        time = sub(utc, 1, 10) .. "T" .. sub(utc, 12) .. "Z",
        model = model,
        key = key,
        upstream = (peer ~= nil and peer ~= "") and peer or nil,
        method = var.request_method,
        path = match(var.request_uri, "^[^?]*"),   -- the client's: /v1/messages is sent on as chat
        status = status,
        ttft_ms = ttft_ms,
        duration_ms = duration_ms,
        router_ms = m.router_ms and math.floor(m.router_ms * 1e3 + 0.5) / 1e3,
        prompt_tokens = m.prompt_tokens,
        output_tokens = m.out_tokens,
        reasoning_tokens = m.reasoning_tokens,
        reasoning_events = (m.text_events or 0) > 0 and m.reasoning_events or nil,   -- streams only
        bytes_in = tonumber(var.request_length) or 0,
        bytes_out = tonumber(var.bytes_sent) or 0,
        upstream_tries = tries,
        client_abort = aborted,
        request_id = var.request_id,
    }
end

-- Every counter, gauge and bucket in the dict: {key = value}.
function _M.snapshot()
    local snapshot = {}
    for _, key in ipairs(dict:get_keys(0)) do
        local v = dict:get(key)
        if v then
            snapshot[key] = v
        end
    end
    return snapshot
end

-- GET /metrics. `reg` is the loaded registry (router.registry()), `state` health.state,
-- `queue_depth(model_id)` the length of the model's admission queue.
function _M.serve(reg, state, queue_depth)
    local snapshot = _M.snapshot()
    local extra = {}
    for _, model in ipairs(reg and reg.deployed or {}) do
        local ml = 'model="' .. esc(model.id) .. '"'
        extra[#extra + 1] = { "router_requests_in_flight", ml, snapshot["g" .. SEP .. "router_requests_in_flight" .. SEP .. ml] or 0 }
        if queue_depth then
            extra[#extra + 1] = { "router_queue_depth", ml, queue_depth(model.id) }
        end
        for _, addr in ipairs(model.upstreams) do
            local current = state(addr)
            for _, s in ipairs(STATES) do
                extra[#extra + 1] = { "router_upstream_state", ml .. ',upstream="' .. esc(addr) .. '",state="' .. s .. '"',
                                      current == s and 1 or 0 }
            end
        end
    end
    ngx.header["Content-Type"] = "text/plain; version=0.0.4; charset=utf-8"
    ngx.print(_M.render(snapshot, extra))
end

return _M
