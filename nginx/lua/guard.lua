-- Who may ask, for which model, how often, and how many at once: the nginx side of keys.lua
-- (API keys, scopes, rpm / tpm / max_concurrent) and admission.lua (per-model FIFO queue).
-- The phase glue (router.lua, endpoints.lua) calls one function per step; rc is ngx.ctx.router:
--   access:        authenticate(rc) before the body is read, admit(rc, model, req) once the model is known
--   header filter: header_filter(rc)   (x-ratelimit-* on answers that passed)
--   body filter:   body(rc, chunk)     (usage, only when metrics are off and a key has a tpm)
--   log:           log(rc)             (frees the slots, counts the tokens)
-- State in rc: key (the key's entry), key_info (its limits' state), usage.
-- What must survive nginx's internal redirect to @error lives in variables, as $router_model
-- does: $router_key (the key's name) and $router_hold ("a" admission slot, "k" key slot).
local keys = require("keys")
local admission = require("admission")
local metrics = require("metrics")
local errors = require("errors")

local _M = { _VERSION = "0.1.0" }

local ngx = ngx
local ngx_var = ngx.var
local find, sub = string.find, string.sub
local pairs, type = pairs, type
local now, update_time = ngx.now, ngx.update_time

local LOG = "[guard] "
local queue = ngx.shared.router_admission
local send_error = errors.send
local metrics_from = "loopback"

-- init: the keys file (ROUTER_KEYS_FILE; fatal when broken at start), and who may read
-- /metrics without a metrics key (ROUTER_METRICS_FROM: loopback, the default; any; keys = nobody).
function _M.init(reg)
    keys.configure(os.getenv("ROUTER_KEYS_FILE"), reg, os.getenv("ROUTER_KEYS_WINDOW_S"))
    local from = os.getenv("ROUTER_METRICS_FROM")
    if from and from ~= "" then
        if from ~= "loopback" and from ~= "any" and from ~= "keys" then
            error(LOG .. "ROUTER_METRICS_FROM must be loopback, any or keys, got '" .. from .. "'")
        end
        metrics_from = from
    end
end

function _M.init_worker()
    keys.init_worker()
end

function _M.keys_on()
    return keys.enabled()
end

local function key_label(name)
    return 'key="' .. metrics.label(name) .. '"'
end

-- Every /v1/* request with keys on. Returns the key's entry (true with keys off), or nil after
-- answering 401. The key leaves the request here: it never reaches trtllm-serve.
function _M.authenticate(rc)
    if not keys.enabled() then
        return true
    end
    local key = keys.extract(ngx_var.http_authorization, ngx_var.http_x_api_key)
    local entry = keys.lookup(key)
    if not entry then
        send_error(401, key and "Incorrect API key provided"
            or "You didn't provide an API key: send 'Authorization: Bearer KEY' (or 'x-api-key: KEY')",
            "invalid_request_error", nil, "invalid_api_key", { ["WWW-Authenticate"] = 'Bearer realm="router"' })
        return nil
    end
    ngx.req.clear_header("Authorization")
    ngx.req.clear_header("x-api-key")
    ngx_var.router_key = entry.name
    if rc then
        rc.key = entry
    end
    return entry
end

-- May this key (authenticate's answer; true or nil with keys off) see the model?
function _M.visible(entry, model)
    return entry == nil or entry == true or keys.allows(entry, model.id)
end

-- The key's scope as a predicate on models (registry.deployed_names: an error lists only what
-- the key may use), or nil when it may see every model.
function _M.scope(entry)
    if entry == nil or entry == true or entry.all then
        return nil
    end
    return function(model) return keys.allows(entry, model.id) end
end

-- True when the key may use the model; else false after answering 403 model_not_allowed.
function _M.allow_model(entry, model)
    if _M.visible(entry, model) then
        return true
    end
    send_error(403, "This API key may not use the model '" .. model.id .. "'", "invalid_request_error",
        "model", "model_not_allowed")
    return false
end

local function hold(flag)
    ngx_var.router_hold = (ngx_var.router_hold or "") .. flag
end

-- The request's cap on output tokens, where its API has one.
local function max_tokens_of(req)
    local v = req.max_completion_tokens or req.max_tokens or req.max_output_tokens
    return type(v) == "number" and v or nil
end

-- After routing and the scope check (visible): the key's limits (429 rate_limit_exceeded),
-- then the model's admission queue (429 model_busy). Returns only when the request may go upstream: true when
-- it waited in the queue first.
function _M.admit(rc, model, req)
    local entry = rc.key
    if entry then
        local info, refused = keys.admit(entry, max_tokens_of(req), now())
        if not info then
            metrics.count("router_rate_limited_total", key_label(entry.name) .. ',limit="' .. refused.refused .. '"')
            return send_error(429, refused.message, "requests", nil, "rate_limit_exceeded", keys.headers(refused))
        end
        rc.key_info = info
        if info.slot then
            hold("k")
        end
        if entry.tpm and not rc.metrics then
            rc.usage = {}
        end
    end

    local limits = model.admission
    if not limits or not limits.max_in_flight or limits.max_in_flight <= 0 then
        return
    end
    local aborted, watching = false, false
    local env = {
        now = function()
            update_time()
            return now()
        end,
        -- Only a request that waits needs to hear about its client leaving; a client that
        -- leaves without this handler would end the request with its ticket still in line.
        sleep = function(s)
            if not watching then
                watching = true
                local ok, err = ngx.on_abort(function()
                    aborted = true
                end)
                if not ok then
                    ngx.log(ngx.ERR, LOG, "cannot watch for client aborts (lua_check_client_abort off?): ", err)
                end
            end
            ngx.sleep(s)
        end,
        aborted = function()
            return aborted
        end,
    }
    local ok, why, waited = admission.enter(queue, model.id, limits, env)
    local ml = 'model="' .. metrics.label(model.id) .. '"'
    if watching then
        metrics.observe("router_queue_wait_seconds", model.id, waited)
    end
    if ok then
        hold("a")
        return watching
    end
    if why == "aborted" then
        return ngx.exit(499)
    end
    metrics.count("router_admission_rejections_total", ml .. ',reason="' .. why .. '"')
    local msg = why == "queue_full"
        and ("The model '" .. model.id .. "' is busy: " .. limits.max_in_flight .. " requests in flight and "
             .. limits.queue_size .. " waiting; retry shortly")
        or ("The model '" .. model.id .. "' is busy: no slot freed within " .. limits.queue_timeout_s .. " s; retry shortly")
    return send_error(429, msg, "server_error", nil, "model_busy",
        { ["Retry-After"] = tostring(math.max(1, math.ceil(limits.queue_timeout_s / 4))) })
end

-- Header filter: OpenAI's x-ratelimit-* headers on every answer a key's request gets.
function _M.header_filter(rc)
    local info = rc.key_info
    if info then
        for k, v in pairs(keys.headers(info)) do
            ngx.header[k] = v
        end
    end
end

-- Body filter (metrics off only): usage for the tpm count. A usage object may be cut across
-- chunks: the tail of the previous chunk is looked at again.
function _M.body(rc, chunk)
    local u = rc.usage
    if not u or not chunk or chunk == "" then
        return
    end
    local text = u.tail and (u.tail .. chunk) or chunk
    if find(text, '"usage"', 1, true) then
        local out, _, prompt = metrics.usage(text)
        if out or prompt then
            u.tokens = (out or 0) + (prompt or 0)
        end
    end
    u.tail = #chunk > 300 and sub(chunk, -300) or chunk
end

-- Log phase (also after the redirect to @error, when ngx.ctx is empty and rc nil).
function _M.log(rc)
    local held = ngx_var.router_hold
    local name = ngx_var.router_key
    if (held == nil or held == "") and (name == nil or name == "") then
        return
    end
    if held and find(held, "a", 1, true) then
        admission.leave(queue, ngx_var.router_model)
    end
    if name and name ~= "" then
        local tokens
        if rc and rc.key and rc.key.tpm then
            local m = rc.metrics
            if m and (m.out_tokens or m.prompt_tokens) then
                tokens = (m.out_tokens or 0) + (m.prompt_tokens or 0)
            elseif rc.usage then
                tokens = rc.usage.tokens
            end
        end
        keys.release(name, held and find(held, "k", 1, true) ~= nil, tokens, now())
    end
end

-- Keys off, ROUTER_METRICS_FROM=any, or (loopback, the default) a request from this host:
-- /metrics and /status answer without a key.
local function open_without_key()
    if not keys.enabled() or metrics_from == "any" then
        return true
    end
    local addr = ngx_var.remote_addr
    return metrics_from == "loopback" and (addr == "::1" or sub(addr or "", 1, 4) == "127.")
end

-- GET /metrics with keys on: from this host (ROUTER_METRICS_FROM=loopback), from anywhere
-- (any), or only with a key that has `metrics: true` (keys; always enough).
function _M.metrics_allowed()
    if open_without_key() then
        return true
    end
    local entry = keys.lookup(keys.extract(ngx_var.http_authorization, ngx_var.http_x_api_key))
    if not entry then
        send_error(401, "/metrics needs a key with 'metrics: true' from outside this host", "invalid_request_error",
            nil, "invalid_api_key")
        return false
    end
    if not entry.metrics then
        send_error(403, "This API key may not read /metrics (it needs 'metrics: true' in the keys file)",
            "invalid_request_error", nil, "metrics_not_allowed")
        return false
    end
    return true
end

-- GET /status (the status page's data: per-model load and recent requests with key names)
-- with keys on: as /metrics from this host, else any valid key (the page sends its own).
function _M.status_allowed()
    return open_without_key() or _M.authenticate() ~= nil
end

function _M.queue_depth(model_id)
    return admission.depth(queue, model_id)
end

return _M
