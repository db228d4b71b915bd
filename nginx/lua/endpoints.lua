-- The router's own GET endpoints (content phase): /v1/models, /v1/models/{id}, /health,
-- /livez, /metrics, and the 404 for every other URL.
local cjson = require("cjson.safe")
local registry = require("registry")
local health = require("health")
local upstream = require("upstream")
local metrics = require("metrics")
local errors = require("errors")
local status = require("status")
local guard = require("guard")

local _M = { _VERSION = "0.1.0" }

local ngx = ngx
local ngx_var, ngx_req = ngx.var, ngx.req
local sub = string.sub
local ipairs = ipairs
local send_json, send_error = errors.send_json, errors.send
local echo = errors.echo   -- every client-sent name quoted in an error

-- Debian's lua-cjson (upstream 2.1.0) cannot encode an empty array; OpenResty's can.
local EMPTY_ARRAY = cjson.empty_array

local reg          -- the loaded registry (per worker, read-only after init)
local started_at   -- `created` of /v1/models entries

function _M.configure(registry_)
    reg = registry_
    started_at = math.floor(ngx.time())
end

-- The model's /v1/models entries: itself, then its variants (registry.list_entries).
local function model_entries(model)
    return registry.list_entries(model, (upstream.model_status(model)), started_at, EMPTY_ARRAY)
end

local function only_get()
    local method = ngx_req.get_method()
    if method ~= "GET" and method ~= "HEAD" then
        send_error(405, "Method " .. echo(method) .. " is not allowed on " .. echo(ngx_var.uri) .. "; use GET",
            nil, nil, "method_not_allowed", { Allow = "GET" })
        return false
    end
    return true
end

-- With keys on, only the key's models.
function _M.list_models()
    local who = guard.authenticate()
    if not who or not only_get() then
        return
    end
    local data = {}
    for _, model in ipairs(reg.deployed) do
        if guard.visible(who, model) then
            for _, entry in ipairs(model_entries(model)) do
                data[#data + 1] = entry
            end
        end
    end
    if #data == 0 then
        if not EMPTY_ARRAY then
            -- Debian's cjson would write "data": {}, which clients refuse as a list.
            ngx.header["Content-Type"] = "application/json"
            ngx.say('{"object":"list","data":[]}')
            return ngx.exit(200)
        end
        return send_json(200, { object = "list", data = EMPTY_ARRAY })
    end
    return send_json(200, { object = "list", data = data })
end

function _M.get_model()
    local who = guard.authenticate()
    if not who or not only_get() then
        return
    end
    local name = ngx.unescape_uri(sub(ngx_var.uri, #"/v1/models/" + 1))
    local model, _, variant = registry.resolve(reg, name)
    if not model or not model.deployed then
        return send_error(404, "The model '" .. echo(name) .. "' does not exist. Available models: "
            .. registry.deployed_names(reg, guard.scope(who)), nil, "model", "model_not_found")
    end
    if not guard.allow_model(who, model) then
        return
    end
    local entries = model_entries(model)
    for _, entry in ipairs(entries) do
        if variant and entry.id == variant.id then
            return send_json(200, entry)
        end
    end
    return send_json(200, entries[1])
end

function _M.health()
    if not only_get() then
        return
    end
    local models, all_ready = {}, true
    for _, model in ipairs(reg.deployed) do
        local state, details = upstream.model_status(model)
        all_ready = all_ready and state == "ready"
        models[model.id] = { state = state, upstreams = details }
    end
    all_ready = all_ready and not reg.discovering   -- ROUTER_MODELS empty: not probed yet
    return send_json(all_ready and 200 or 503, { status = all_ready and "ready" or "not_ready", models = models })
end

-- GET /status: the status page's data (nginx/lua/status.lua); never prompt or completion text.
function _M.status()
    if not guard.status_allowed() or not only_get() then
        return
    end
    local models = {}
    for i, model in ipairs(reg.deployed) do
        local state, details = upstream.model_status(model)
        local since
        for _, u in ipairs(details) do
            u.since = health.since(u.address) or started_at
            if u.state == state and (not since or u.since < since) then
                since = u.since
            end
        end
        local variants = {}
        for j, v in ipairs(model.variants) do
            variants[j] = { id = v.id, name = v.display_name, thinking = v.thinking }
        end
        models[i] = { id = model.id, name = model.display_name,
                      aliases = #model.aliases > 0 and model.aliases or EMPTY_ARRAY,
                      variants = #variants > 0 and variants or EMPTY_ARRAY,
                      wait_for_ready_s = model.wait_for_ready_s, state = state, since = since or started_at,
                      upstreams = details }
    end
    ngx.header["Cache-Control"] = "no-store"
    return send_json(200, status.document(models, started_at))
end

function _M.livez()
    return send_json(200, { status = "ok" })
end

-- Prometheus text: the registry lives here, the text in metrics.lua.
function _M.metrics()
    if not metrics.enabled() then
        return send_error(404, "Metrics are turned off on this router (ROUTER_METRICS=off)",
            "invalid_request_error", nil, "metrics_disabled")
    end
    if not guard.metrics_allowed() then
        return
    end
    return metrics.serve(reg, health.state, guard.queue_depth)
end

function _M.not_found()
    if sub(ngx_var.uri, 1, 4) == "/v1/" and not guard.authenticate() then
        return
    end
    return send_error(404, "Invalid URL (" .. echo(ngx_req.get_method()) .. " " .. echo(ngx_var.uri) .. ")",
        nil, nil, "unknown_url")
end

return _M
