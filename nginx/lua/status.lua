-- GET /status: what the status page (nginx/ui/) shows, from counters the router keeps anyway.
--
-- Per model: health per upstream (and since when), in flight, waiting for a starting model,
-- and over the last minute requests, errors, output tokens/s and TTFT / ITL p50. Nothing is
-- added on the request path for the window: one worker copies the per-model totals of the
-- metrics dict into a ring of snapshots every SNAP_S seconds, and a status request subtracts
-- the snapshot about a minute old from the totals now.
-- Pure helpers (quantile, window, pick_baseline) take state as arguments: busted tests them.
local cjson = require("cjson.safe")
local metrics = require("metrics")
local recent = require("recent")

local _M = { _VERSION = "0.1.0" }

local ngx = ngx
local pairs, ipairs, type = pairs, ipairs, type
local floor = math.floor

local LOG = "[status] "
_M.WINDOW_S = 60
_M.SNAP_S = 5
local SLOTS = 14   -- 70 s of snapshots: always one at least WINDOW_S - SNAP_S old
local TTFT_BOUNDS = metrics.HISTOGRAMS.router_time_to_first_token_seconds.buckets
local ITL_BOUNDS = metrics.HISTOGRAMS.router_inter_token_latency_seconds.buckets

---------------------------------------------------------------------------------------------
-- Pure helpers

-- The q-quantile of a histogram (counts per bucket, #bounds + 1 = +Inf), interpolated
-- linearly inside its bucket as Prometheus' histogram_quantile does; nil without samples.
function _M.quantile(bounds, counts, q)
    local total = 0
    for i = 1, #bounds + 1 do
        total = total + (counts[i] or 0)
    end
    if total <= 0 then
        return nil
    end
    local rank, cum = q * total, 0
    for i = 1, #bounds + 1 do
        local c = counts[i] or 0
        if c > 0 and cum + c >= rank then
            if i > #bounds then
                return bounds[#bounds]   -- above the last bound: the bound is all we know
            end
            local lower = i == 1 and 0 or bounds[i - 1]
            return lower + (bounds[i] - lower) * (rank - cum) / c
        end
        cum = cum + c
    end
    return bounds[#bounds]
end

local function minus(now_counts, then_counts, n)
    local out = {}
    for i = 1, n do
        local d = (now_counts[i] or 0) - (then_counts and then_counts[i] or 0)
        out[i] = d > 0 and d or 0
    end
    return out
end

-- One model's figures over a window: totals now minus totals at the baseline (per_model
-- entries of metrics.lua), `seconds` apart. A counter that went backwards (a restart that
-- cleared the dict) counts from zero.
function _M.window(now_e, then_e, seconds)
    now_e = now_e or { requests = 0, errors = 0, output_tokens = 0, ttft = {}, itl = {} }
    local base = then_e or {}
    local function diff(k)
        local d = (now_e[k] or 0) - (base[k] or 0)
        return d >= 0 and d or (now_e[k] or 0)
    end
    local out_tokens = diff("output_tokens")
    local ttft = _M.quantile(TTFT_BOUNDS, minus(now_e.ttft, base.ttft, #TTFT_BOUNDS + 1), 0.5)
    local itl = _M.quantile(ITL_BOUNDS, minus(now_e.itl, base.itl, #ITL_BOUNDS + 1), 0.5)
    return {
        seconds = floor(seconds * 10 + 0.5) / 10,
        requests = diff("requests"),
        errors = diff("errors"),
        output_tokens = out_tokens,
        output_tokens_per_s = seconds > 0 and floor(out_tokens / seconds * 10 + 0.5) / 10 or 0,
        ttft_p50_ms = ttft and floor(ttft * 1e4 + 0.5) / 10,
        itl_p50_ms = itl and floor(itl * 1e5 + 0.5) / 100,
    }
end

-- The snapshot to subtract: the oldest one no older than `window_s`; nil when none is.
function _M.pick_baseline(snaps, now, window_s)
    local best
    for _, snap in ipairs(snaps) do
        if now - snap.t <= window_s and (not best or snap.t < best.t) then
            best = snap
        end
    end
    return best
end

---------------------------------------------------------------------------------------------
-- nginx glue

local dict = ngx.shared.router_status

-- Dense arrays: cjson refuses sparse ones.
local function dense(counts, n)
    local out = {}
    for i = 1, n do
        out[i] = counts[i] or 0
    end
    return out
end

local function take_snapshot()
    local per = metrics.per_model(metrics.snapshot())
    for _, e in pairs(per) do
        e.ttft = dense(e.ttft, #TTFT_BOUNDS + 1)
        e.itl = dense(e.itl, #ITL_BOUNDS + 1)
        e.in_flight = nil
    end
    ngx.update_time()
    local t = ngx.now()
    local text, err = cjson.encode({ t = t, models = per })
    if not text then
        return require("mainlog").log(ngx.ERR, LOG, "failed to encode a snapshot: ", err)
    end
    local ok, serr = dict:set("snap:" .. (floor(t / _M.SNAP_S) % SLOTS), text)
    if not ok then
        require("mainlog").log(ngx.ERR, LOG, "failed to store a snapshot: ", serr)
    end
end

-- init_worker: every worker runs the timer; the one that takes the lock snapshots this round.
-- Its errors go to the main error_log: timers log at the http{} level, crit (mainlog.lua).
function _M.init_worker()
    if not dict or not metrics.enabled() then
        return
    end
    local function tick(premature)
        if premature or not dict:add("snap:lock", true, _M.SNAP_S * 0.9) then
            return
        end
        local ok, err = pcall(take_snapshot)
        if not ok then
            require("mainlog").log(ngx.ERR, LOG, "snapshot failed: ", err)
        end
    end
    local ok, err = ngx.timer.at(0, tick)
    if ok then
        ok, err = ngx.timer.every(_M.SNAP_S, tick)
    end
    if not ok then
        require("mainlog").log(ngx.ERR, LOG, "failed to start the snapshot timer: ", err)
    end
end

-- Requests waiting for a starting model (wait_for_ready_s), per model.
function _M.waiting(model_id, delta)
    if dict then
        dict:incr("waiting:" .. model_id, delta, 0)
    end
end

local function snapshots()
    local out = {}
    for i = 0, SLOTS - 1 do
        local snap = cjson.decode(dict:get("snap:" .. i) or "null")
        if type(snap) == "table" and type(snap.t) == "number" and type(snap.models) == "table" then
            out[#out + 1] = snap
        end
    end
    return out
end

-- The /status document. `models`: one table per deployed model with id, name, aliases,
-- variants, wait_for_ready_s, state, since and upstreams ({address, state, reason, since})
-- filled in by the caller from the registry and health; `started_at`: the router's start.
function _M.document(models, started_at)
    ngx.update_time()
    local now = ngx.now()
    local enabled = metrics.enabled()
    local current = enabled and metrics.per_model(metrics.snapshot()) or {}
    local base = enabled and _M.pick_baseline(snapshots(), now, _M.WINDOW_S) or nil
    local base_models = base and base.models or {}
    local seconds = now - (base and base.t or started_at)
    for _, m in ipairs(models) do
        local e = current[m.id]
        m.in_flight = e and e.in_flight or 0
        m.waiting = dict and dict:get("waiting:" .. m.id) or 0
        if enabled then
            m.window = _M.window(e, base_models[m.id], seconds)
            m.totals = { requests = e and e.requests or 0, errors = e and e.errors or 0 }
        end
    end
    return {
        time = now,
        started_at = started_at,
        metrics = enabled,
        window_s = enabled and floor(seconds + 0.5) or nil,
        models = models,
        recent = recent.list(),
    }
end

return _M
