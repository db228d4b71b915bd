-- Phase glue for the router: nginx/conf/router.conf calls one function per phase.
-- Model facts come from registry.json (rendered from configs/models.yaml).
local cjson = require("cjson.safe")
local balancer = require("ngx.balancer")
local registry = require("registry")
local health = require("health")
local jsonbody = require("jsonbody")
local chatreq = require("chatreq")
local chatresp = require("chatresp")
local sse = require("sse")
local metrics = require("metrics")

local _M = { _VERSION = "0.1.0" }

local ngx = ngx
local ngx_var = ngx.var
local ngx_req = ngx.req
local ngx_say = ngx.say
local log, ERR, WARN = ngx.log, ngx.ERR, ngx.WARN
local byte, find, match, sub, gsub = string.byte, string.find, string.match, string.sub, string.gsub
local concat = table.concat

local LOG = "[router] "
local KINDS = { ["/v1/chat/completions"] = "chat", ["/v1/completions"] = "completions" }
local MAX_BODY = 8 * 1024 * 1024   -- a non-streaming response bigger than this is passed as is
local reg              -- the loaded registry (per worker, read-only after init)
local started_at       -- `created` of /v1/models entries
local rr = 0           -- round-robin counter, per worker

-- Debian's lua-cjson (upstream 2.1.0) cannot encode an empty array; OpenResty's can.
local EMPTY_ARRAY = cjson.empty_array

-- cjson escapes every '/' as '\/' (valid, but model ids are full of slashes); it escapes '\'
-- itself too, so undoing '\/' cannot change meaning.
local function encode(obj)
    return (gsub(cjson.encode(obj), "\\/", "/"))
end

local function read_file(path)
    local f, err = io.open(path, "r")
    if not f then
        return nil, err
    end
    local text = f:read("*a")
    f:close()
    return text
end

local function split_list(s)
    local out = {}
    for item in string.gmatch(s or "", "[^,%s]+") do
        out[#out + 1] = item
    end
    return #out > 0 and out or nil
end

function _M.init()
    local path = os.getenv("ROUTER_REGISTRY")
    if not path or path == "" then
        path = ngx.config.prefix() .. "registry.json"
    end
    local text, err = read_file(path)
    if not text then
        error(LOG .. "cannot read registry " .. path .. ": " .. err)
    end
    local data
    data, err = cjson.decode(text)
    if not data then
        error(LOG .. "registry " .. path .. " is not JSON: " .. err)
    end
    -- ROUTER_MODELS picks what this compose profile runs; run_router.py writes `deployed`.
    reg, err = registry.new(data, split_list(os.getenv("ROUTER_MODELS")))
    if not reg then
        error(LOG .. err)
    end
    for _, model in ipairs(reg.models) do
        model.ports = {}
        for i, addr in ipairs(model.upstreams) do
            local host, port = health.split(addr)
            if not host then
                error(LOG .. "model " .. model.id .. ": upstream '" .. addr .. "' is not HOST:PORT")
            end
            model.ports[i] = port
        end
    end
    health.configure_resolver(os.getenv("ROUTER_RESOLVER"))
    metrics.configure(os.getenv("ROUTER_METRICS"))
    started_at = math.floor(ngx.time())
end

function _M.init_worker()
    local addrs, seen = {}, {}
    for _, model in ipairs(reg.deployed) do
        for _, addr in ipairs(model.upstreams) do
            if not seen[addr] then
                seen[addr], addrs[#addrs + 1] = true, addr
            end
        end
    end
    health.start(addrs, reg.health)
    metrics.init_worker()
end

---------------------------------------------------------------------------------------------
-- Responses

local function send_json(status, obj, headers)
    ngx.status = status
    ngx.header["Content-Type"] = "application/json"
    if headers then
        for k, v in pairs(headers) do
            ngx.header[k] = v
        end
    end
    ngx_say(encode(obj))
    return ngx.exit(status)
end

-- The OpenAI error shape: {"error": {"message", "type", "param", "code"}}.
local function send_error(status, message, etype, param, code, headers)
    return send_json(status, {
        error = { message = message, type = etype or "invalid_request_error",
                  param = param or cjson.null, code = code or cjson.null },
    }, headers)
end
_M.send_error = send_error

local function model_status(model)
    local states, details = {}, {}
    for i, addr in ipairs(model.upstreams) do
        local state, why = health.state(addr)
        states[i] = state
        details[i] = { address = addr, state = state, reason = why }
    end
    return registry.model_state(states), details
end

---------------------------------------------------------------------------------------------
-- POST /v1/chat/completions, /v1/completions, /v1/responses

local function ready_peers(model)
    local peers = {}
    for i, addr in ipairs(model.upstreams) do
        if health.state(addr) == "ready" then
            local ip = health.ip(addr)
            if ip then
                peers[#peers + 1] = { addr = addr, ip = ip, port = model.ports[i] }
            end
        end
    end
    return peers
end

function _M.access()
    metrics.begin()
    if ngx_req.get_method() ~= "POST" then
        return send_error(405, "Method " .. ngx_req.get_method() .. " is not allowed on " .. ngx_var.uri
            .. "; use POST", "invalid_request_error", nil, "method_not_allowed", { Allow = "POST" })
    end

    ngx_req.read_body()
    local body = ngx_req.get_body_data()
    if not body then
        if ngx_req.get_body_file() then
            -- Only when client_body_buffer_size < client_max_body_size in router.conf.
            return send_error(413, "Request body too large", "invalid_request_error", nil, "request_too_large")
        end
        return send_error(400, "The request body is empty; expected a JSON object", nil, nil, "invalid_json")
    end
    local req, err = cjson.decode(body)
    if req == nil then
        return send_error(400, "The request body is not valid JSON: " .. tostring(err), nil, nil, "invalid_json")
    end
    if type(req) ~= "table" or byte(body, find(body, "[^ \t\r\n]")) ~= 123 then
        return send_error(400, "The request body must be a JSON object", nil, nil, "invalid_json")
    end

    local name = req.model
    if name == nil or name == cjson.null then
        return send_error(400, "You must provide a model parameter", nil, "model", "missing_model")
    end
    if type(name) ~= "string" or name == "" then
        return send_error(400, "'model' must be a non-empty string", nil, "model", "invalid_model")
    end
    local model, why = registry.resolve(reg, name)
    if not model then
        local msg = why == "ambiguous"
            and ("The model '" .. name .. "' matches several models; use an exact id. Available models: ")
            or ("The model '" .. name .. "' does not exist. Available models: ")
        return send_error(404, msg .. registry.deployed_names(reg), nil, "model", "model_not_found")
    end
    if not model.deployed then
        return send_error(404, "The model '" .. model.id .. "' is not deployed here (this profile serves: "
            .. registry.deployed_names(reg) .. ")", nil, "model", "model_not_deployed")
    end

    local peers = ready_peers(model)
    if #peers == 0 then
        local state, details = model_status(model)
        local reason = details[1] and details[1].reason
        local msg = state == "starting"
            and ("The model '" .. model.id .. "' is starting (loading weights); retry shortly")
            or ("The model '" .. model.id .. "' is down" .. (reason and (": " .. reason) or ""))
        return send_error(503, msg, "server_error", nil, "model_" .. state,
            { ["Retry-After"] = tostring(reg.retry_after) })
    end

    -- The backend echoes `model` back; send the canonical id so every response reports it.
    local out = body
    if name ~= model.id then
        out = jsonbody.set_raw(out, "model", encode(model.id)) or out
    end
    local kind = KINDS[ngx_var.uri]
    if kind then
        local info
        out, info = chatreq.rewrite(out, req, model, kind)
        if not out then
            return send_error(info.status, info.message, nil, info.param, info.code)
        end
        if kind == "chat" then
            info.mode = model.reasoning and model.reasoning.mode
        end
        if chatresp.needed(info) then
            ngx.ctx.resp = chatresp.new(info)
        end
    end
    if out ~= body then
        ngx_req.set_body_data(out)
    end

    rr = rr + 1
    ngx_var.router_model = model.id
    metrics.start(model.id)
    ngx.ctx.model = model
    ngx.ctx.peers = peers
    ngx.ctx.next = rr % #peers
    ngx.ctx.tried = 0
end

---------------------------------------------------------------------------------------------
-- balancer: spread over ready peers; after a failed connect, mark it and try the next one.

function _M.balancer()
    local ctx = ngx.ctx
    local peers = ctx.peers
    if ctx.tried > 0 then
        local state, code = balancer.get_last_failure()
        if state == "failed" and ctx.peer then
            health.mark_down(ctx.peer.addr, "request failed (" .. tostring(code) .. ")")
        end
    else
        local t = ctx.model.timeouts
        balancer.set_timeouts(t.connect_s or 2, t.send_s or 60, t.read_s or 600)
        if #peers > 1 then
            balancer.set_more_tries(#peers - 1)
        end
    end
    if ctx.tried >= #peers then
        return ngx.exit(502)
    end
    local peer = peers[(ctx.next + ctx.tried) % #peers + 1]
    ctx.tried = ctx.tried + 1
    ctx.peer = peer
    ngx_var.router_peer = peer.addr
    local ok, err = balancer.set_current_peer(peer.ip, peer.port)
    if not ok then
        log(ERR, LOG, "failed to set peer ", peer.addr, ": ", err)
        return ngx.exit(500)
    end
end

---------------------------------------------------------------------------------------------
-- Upstream error bodies: trtllm-serve answers {"object":"error","message":...,"code":400};
-- clients expect {"error": {...}}. Only error responses are buffered; streams pass through.

function _M.header_filter()
    metrics.header()
    local ctx = ngx.ctx
    if ngx.status >= 400 and ctx.peer and ngx_var.upstream_status then
        ctx.wrap_error = { }
        ngx.header["Content-Length"] = nil
        ngx.header["Content-Type"] = "application/json"
    elseif ctx.resp and ngx.status == 200 then
        -- The body is reshaped: its length changes.
        ngx.header["Content-Length"] = nil
        local ctype = ngx.header["Content-Type"] or ""
        if find(ctype, "text/event-stream", 1, true) then
            ctx.sse = sse.new()
        else
            ctx.whole = {}
        end
    end
end

local function wrap_error(status, text)
    local obj = cjson.decode(text)
    if type(obj) == "table" and type(obj.error) == "table" then
        return text
    end
    local message = type(obj) == "table" and (obj.message or obj.detail) or nil
    if type(message) ~= "string" then
        message = message and cjson.encode(message) or (text ~= "" and text or ("upstream status " .. status))
    end
    return encode({ error = {
        message = message,
        type = type(obj) == "table" and type(obj.type) == "string" and obj.type or (status >= 500 and "server_error" or "invalid_request_error"),
        param = type(obj) == "table" and obj.param or cjson.null,
        code = type(obj) == "table" and obj.code or cjson.null,
    } }) .. "\n"
end

local function shape_stream(ctx, chunk, eof)
    local st = ctx.sse
    local events, err = sse.feed(st, chunk)
    if not events then
        log(WARN, LOG, "passing the rest of the stream through unchanged: ", err)
        ctx.sse = nil
        return sse.rest(st)   -- what was held, this chunk included
    end
    local out = {}
    for _, ev in ipairs(events) do
        local data = ev.data
        if data == nil or data == "[DONE]" then
            out[#out + 1] = ev.raw
        else
            local new = chatresp.event(ctx.resp, data)
            if new == data then
                out[#out + 1] = ev.raw
            elseif new then
                out[#out + 1] = sse.encode(new)
            end
        end
    end
    if eof then
        out[#out + 1] = sse.rest(ctx.sse)
    end
    return concat(out)
end

function _M.body_filter()
    local ctx = ngx.ctx
    local buf, whole = ctx.wrap_error, ctx.whole
    local measuring = ctx.metrics ~= nil
    if not (measuring or buf or ctx.sse or whole) then
        return   -- plain pass-through: reading ngx.arg[1] would copy the chunk for nothing
    end
    local chunk, eof = ngx.arg[1], ngx.arg[2]
    if measuring then
        metrics.body(chunk, eof)
    end
    if buf then
        buf[#buf + 1] = chunk
        if eof then
            ngx.arg[1] = wrap_error(ngx.status, concat(buf))
        else
            ngx.arg[1] = nil
        end
        return
    end
    if ctx.sse then
        ngx.arg[1] = shape_stream(ctx, chunk, eof)
        return
    end
    if whole then
        whole[#whole + 1] = chunk
        whole.size = (whole.size or 0) + #chunk
        if eof then
            ngx.arg[1] = chatresp.body(ctx.resp, concat(whole))
        elseif whole.size > MAX_BODY then
            log(WARN, LOG, "response over ", MAX_BODY, " bytes passed through unchanged")
            ctx.whole = nil
            ngx.arg[1] = concat(whole)
        else
            ngx.arg[1] = nil
        end
    end
end

function _M.log()
    metrics.log()
    -- The last try failed to connect too (nginx's own 502/504); earlier tries were marked by
    -- the balancer. Runs after the redirect to @error, hence variables rather than ngx.ctx.
    local status = ngx.status
    if status ~= 502 and status ~= 504 then
        return
    end
    local addr = ngx_var.router_peer
    if addr == nil or addr == "" then
        return
    end
    local last_status = match(ngx_var.upstream_status or "", "(%S+)$")
    local last_connect = match(ngx_var.upstream_connect_time or "", "(%S+)$")
    if (last_status == "502" or last_status == "504") and last_connect == "-" then
        health.mark_down(addr, "connect failed")
    end
end

---------------------------------------------------------------------------------------------
-- GET endpoints

local function model_object(model)
    local owner = match(model.id, "^([^/]+)/") or "local"
    local state = model_status(model)
    local aliases = model.aliases
    if #aliases == 0 then
        aliases = EMPTY_ARRAY  -- nil (key left out) where cjson has no empty array
    end
    return { id = model.id, object = "model", created = started_at, owned_by = owner,
             aliases = aliases, status = state }
end

local function only_get()
    local method = ngx_req.get_method()
    if method ~= "GET" and method ~= "HEAD" then
        send_error(405, "Method " .. method .. " is not allowed on " .. ngx_var.uri .. "; use GET",
            nil, nil, "method_not_allowed", { Allow = "GET" })
        return false
    end
    return true
end

function _M.list_models()
    if not only_get() then
        return
    end
    local data = {}
    for i, model in ipairs(reg.deployed) do
        data[i] = model_object(model)
    end
    if #data == 0 then
        return send_json(200, { object = "list", data = EMPTY_ARRAY or {} })
    end
    return send_json(200, { object = "list", data = data })
end

function _M.get_model()
    if not only_get() then
        return
    end
    local name = ngx.unescape_uri(sub(ngx_var.uri, #"/v1/models/" + 1))
    local model = registry.resolve(reg, name)
    if not model or not model.deployed then
        return send_error(404, "The model '" .. name .. "' does not exist. Available models: "
            .. registry.deployed_names(reg), nil, "model", "model_not_found")
    end
    return send_json(200, model_object(model))
end

function _M.health()
    if not only_get() then
        return
    end
    local models, all_ready = {}, true
    for _, model in ipairs(reg.deployed) do
        local state, details = model_status(model)
        all_ready = all_ready and state == "ready"
        models[model.id] = { state = state, upstreams = details }
    end
    return send_json(all_ready and 200 or 503, { status = all_ready and "ready" or "not_ready", models = models })
end

function _M.livez()
    return send_json(200, { status = "ok" })
end

function _M.not_found()
    return send_error(404, "Invalid URL (" .. ngx_req.get_method() .. " " .. ngx_var.uri .. ")",
        nil, nil, "unknown_url")
end

local NGINX_ERRORS = {
    [400] = { "Bad request", "invalid_request_error", "bad_request" },
    [413] = { "Request body too large (limit: client_max_body_size in nginx/conf/router.conf)",
              "invalid_request_error", "request_too_large" },
    [502] = { "Could not reach the model server", "server_error", "upstream_unreachable" },
    [504] = { "The model server did not answer in time", "server_error", "upstream_timeout" },
}

function _M.nginx_error()
    local status = ngx.status
    local e = NGINX_ERRORS[status] or { "Error", "server_error", cjson.null }
    local msg = e[1]
    local model = ngx_var.router_model
    if model and model ~= "" then
        msg = msg .. " for model '" .. model .. "'"
    end
    return send_error(status, msg, e[2], nil, e[3])
end

-- GET /metrics: the registry lives here, the text in metrics.lua.
function _M.metrics()
    if not metrics.enabled() then
        return send_error(404, "Metrics are turned off on this router (ROUTER_METRICS=off)",
            "invalid_request_error", nil, "metrics_disabled")
    end
    return metrics.serve(reg, health.state)
end

return _M
