-- Phase glue for the router: nginx/conf/router.conf calls one function per phase, and each
-- hands the work to the module that owns the concern. Model facts come from registry.json
-- (rendered from configs/models.yaml).
--
-- A model request (POST /v1/chat/completions, /v1/completions, /v1/responses, /v1/messages*,
-- translated to chat by anthropic.lua, /v1/embeddings, /v1/rerank) passes:
--   access         new_state() creates ngx.ctx.router (`rc`, the one per-request table; made
--                  nowhere else), then: API key (guard.authenticate) -> method -> body read
--                  and decoded once -> model resolved (registry) -> the key's scope ->
--                  endpoint allowed for its kind (registry.serves) -> field types checked
--                  (reqcheck) -> ready peers chosen (upstream) -> request edits (chatreq) ->
--                  key limits, admission queue (guard.admit; may wait) -> peers chosen again
--                  -> metrics.start.
--                  Every refusal is errors.send(...) in the OpenAI shape.
--   balancer       upstream.balance(rc): round-robin over the ready peers, failover before
--                  the first byte.
--   header_filter  decides how the response body is treated: a backend error re-shaped
--                  (errors.from_upstream), a stream framed into events (sse), or a whole body
--                  reshaped (chatresp); [response translation (e.g. another API's shape)
--                  chooses its treatment here too].
--   body_filter    applies the treatment: one SSE framer per response, each event read by
--                  the response shaping (chatresp) and by metrics; an event that needs no
--                  change passes as it is (chatresp.unchanged, plain finds, no decode);
--                  [response translation hooks in here, on the same events, after shaping].
--   log            metrics.log(rc.metrics) counts the request and gives its access-log
--                  record to accesslog.write; upstream.after marks a peer nginx failed to reach.
-- Before any of that, rewrite (every request, router.conf): read_body() reads the body, so a
-- bad one ends the request with nginx's 400/413 before an answer starts; a generation
-- request then moves to @generate, the one location that logs at warn.
-- After nginx's own errors (error_page -> /_router/nginx-error) ngx.ctx is empty: what must
-- survive the redirect is in the variables $router_model and $router_peer
-- ($router_api, the Anthropic endpoints, is a map of the request line: router.conf).
-- GET endpoints (/v1/models, /health, /livez, /metrics, /status) are content handlers in
-- endpoints.lua; the status page's files (/ui/) are static, served by nginx.
local cjson = require("cjson.safe")
local registry = require("registry")
local health = require("health")
local upstream = require("upstream")
local chatreq = require("chatreq")
local chatresp = require("chatresp")
local sse = require("sse")
local metrics = require("metrics")
local accesslog = require("accesslog")
local endpoints = require("endpoints")
local errors = require("errors")
local jsonbody = require("jsonbody")
local status = require("status")
local readywait = require("readywait")
local hopbyhop = require("hopbyhop")
local reqcheck = require("reqcheck")
local mainlog = require("mainlog")
local guard = require("guard")
local anthropic = require("anthropic")
local responses = require("responses")

local _M = { _VERSION = "0.1.0" }

local ngx = ngx
local ngx_var = ngx.var
local ngx_req = ngx.req
local log, ERR, WARN = ngx.log, ngx.ERR, ngx.WARN
local byte, find, sub = string.byte, string.find, string.sub
local concat = table.concat
local send_error = errors.send
local echo = errors.echo   -- every client-sent name quoted in an error

local LOG = "[router] "
local KINDS = { ["/v1/chat/completions"] = "chat", ["/v1/completions"] = "completions",
                ["/v1/responses"] = "responses" }
local ANTHROPIC = { ["/v1/messages"] = "messages", ["/v1/messages/count_tokens"] = "count" }
local MAX_BODY = 8 * 1024 * 1024   -- a non-streaming response bigger than this is passed as is
local MAX_HEADERS = 100            -- request headers read (ngx.req.get_headers's own default)
local reg                          -- the loaded registry (per worker, read-only after init)

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
    local ok
    ok, err = upstream.configure(reg)
    if not ok then
        error(LOG .. err)
    end
    health.configure_resolver(os.getenv("ROUTER_RESOLVER"))
    metrics.configure(os.getenv("ROUTER_METRICS"))
    guard.init(reg)
    endpoints.configure(reg)
end

function _M.init_worker()
    local probes = registry.probes(reg)
    local addrs = {}
    for addr in pairs(probes) do
        addrs[#addrs + 1] = addr
    end
    table.sort(addrs)
    health.start(addrs, reg.health, probes)
    if metrics.enabled() then
        accesslog.init_worker()
    end
    status.init_worker()
    guard.init_worker()
end

-- Discovery (ROUTER_MODELS empty): this worker's view of what is deployed follows the health
-- timer's findings (registry.discover), re-read only when they changed.
local seen_gen, seen_round
local function refresh_deployment()
    if not reg.discover then
        return
    end
    local gen, round = health.presence()
    if gen ~= seen_gen or round ~= seen_round then
        seen_gen, seen_round = gen, round
        registry.discover(reg, health.present)
        reg.discovering = not round
    end
end

-- rewrite, every request (nginx/conf/router.conf). `to`: the named location that serves it.
function _M.read_body(to)
    refresh_deployment()
    ngx_req.read_body()
    if to then
        return ngx.exec(to)
    end
end

---------------------------------------------------------------------------------------------
-- access: POST /v1/chat/completions, /v1/completions, /v1/responses

-- The per-request state, for every phase after this one:
--   metrics        metrics.lua's facts (nil when ROUTER_METRICS=off)
--   model          the registry entry routed to
--   peers, next, tried, peer   upstream.lua's choice and failover position
--   resp           chatresp state when the response is reshaped
--   anthropic, astream, shape  /v1/messages*: anthropic.lua's request facts and stream state
--   resp_scan, after_scan, forget  /v1/responses: the id looked for, the id being deleted
--   body           the body filter's treatment (set in header_filter), with its state:
--                  sse (the framer), parts and size (a body held whole)
--   key, key_info, usage       guard.lua's: the API key, its limits, tokens when metrics are off
local function new_state()
    local rc = {}
    ngx.ctx.router = rc
    metrics.begin(rc)
    return rc
end

-- The request body as text and as a decoded table, or nil after an error was sent.
local function read_json_body()
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
    return body, req
end

-- The deployed model `name` routes to and the variant it names (or nil), or nil after an
-- error was sent. `key` (guard.authenticate's entry) limits the models an error lists.
local function resolve_model(name, key)
    if name == nil or name == cjson.null then
        return send_error(400, "You must provide a model parameter", nil, "model", "missing_model")
    end
    if type(name) ~= "string" or name == "" then
        return send_error(400, "'model' must be a non-empty string", nil, "model", "invalid_model")
    end
    local visible = guard.scope(key)
    local model, why, variant = registry.resolve(reg, name)
    if not model then
        local msg = why == "ambiguous"
            and ("The model '" .. echo(name) .. "' matches several models; use an exact id. Available models: ")
            or ("The model '" .. echo(name) .. "' does not exist. Available models: ")
        return send_error(404, msg .. registry.deployed_names(reg, visible), nil, "model", "model_not_found")
    end
    -- Discovery before the first probe round: it may well be starting (503 below, not 404).
    if not model.deployed and not reg.discovering then
        return send_error(404, "The model '" .. model.id .. "' is not deployed here (this profile serves: "
            .. registry.deployed_names(reg, visible) .. ")", nil, "model", "model_not_deployed")
    end
    return model, variant
end

-- Why (an address, a refused connect) is for the operator: GET /health and the log.
local function send_unavailable(model, waited)
    local state = upstream.model_status(model)
    local msg = state == "starting"
        and ("The model '" .. model.id .. "' is starting (loading weights); retry shortly"
             .. (waited and string.format(" (waited %.0f s)", waited) or ""))
        or ("The model '" .. model.id .. "' is down (its server fails health checks); retry later")
    return send_error(503, msg, "server_error", nil, "model_" .. state,
        { ["Retry-After"] = tostring(reg.retry_after) })
end

-- Keeps only the server that stored response `id` among rc.peers (upstream.choose's ready ones);
-- the model it was made by, or nil after an error was sent.
local function sticky(rc, id, param, model)
    local model_id, addr = responses.lookup(ngx.shared.router_responses, id)
    if not model_id then
        return send_error(404, "Response with id '" .. id .. "' not found: this router never saw it, or forgot it "
            .. "after " .. reg.responses_ttl .. " s", nil, param, "response_not_found")
    end
    if model and model.id ~= model_id then
        return send_error(400, "Response '" .. id .. "' was made by model '" .. model_id .. "'; send that model",
            nil, "model", "invalid_value")
    end
    model = model or registry.resolve(reg, model_id)
    if model and (rc.peers or upstream.choose(rc, model)) then
        for _, peer in ipairs(rc.peers) do
            if peer.addr == addr then
                rc.peers, rc.next = { peer }, 0
                return model
            end
        end
    end
    return send_error(503, "The server that stored response '" .. id .. "' (" .. addr .. ") is not ready",
        "server_error", nil, "model_down", { ["Retry-After"] = tostring(reg.retry_after) })
end

-- GET / DELETE /v1/responses/{id}: to the server that stored it.
local function by_response_id(rc, id)
    local method = ngx_req.get_method()
    if method ~= "GET" and method ~= "DELETE" then
        return send_error(405, "Method " .. method .. " is not allowed on " .. ngx_var.uri .. "; use GET or DELETE",
            nil, nil, "method_not_allowed", { Allow = "GET, DELETE" })
    end
    local model = sticky(rc, id, nil, nil)
    if not model or not guard.allow_model(rc.key, model) then
        return
    end
    if method == "DELETE" then
        rc.forget = id
    end
    rc.model = model
    ngx_var.router_model = model.id
    metrics.start(rc, model.id)
end

-- /v1/messages*: the Messages request (text with the canonical model) as a chat request
-- (anthropic.lua), edited like any other (chatreq); the answer is shaped (chatresp), then
-- translated back. Returns the chat body, or nil after an error was sent.
local function to_chat(rc, text, req, model, api, variant)
    local chat, ainfo = anthropic.request(text, req, model, api == "count")
    if not chat then
        return send_error(ainfo.status, ainfo.message)
    end
    -- chatreq relies on the field types reqcheck checks; the translation wrote most fields, but
    -- passes some values through as the client sent them.
    local creq = cjson.decode(chat)
    local bad = reqcheck.check(chat, creq, "chat")
    if bad then
        return send_error(bad.status, bad.message, nil, bad.param, bad.code)
    end
    local ed = jsonbody.editor(chat)
    local info = chatreq.rewrite(ed, creq, model, "chat", variant)
    -- The translation reads reasoning_content and the usage chunk; the client sees neither.
    info.mode, info.output, info.hide_usage = model.reasoning and model.reasoning.mode, "reasoning_content", false
    if chatresp.needed(info) then
        local resp = chatresp.new(info)
        rc.resp, rc.shape = resp, function(data) return chatresp.event(resp, data) end
    end
    ainfo.model = model.id
    rc.anthropic = ainfo
    ngx_req.set_uri("/v1/chat/completions")
    return jsonbody.apply(ed)
end

function _M.access()
    local rc = new_state()
    local uri = ngx_var.uri
    local api = ANTHROPIC[uri]
    if not guard.authenticate(rc) then
        return
    end
    local rid = responses.path_id(uri)
    if rid then
        return by_response_id(rc, rid)
    end
    local method = ngx_req.get_method()
    if method ~= "POST" then
        return send_error(405, "Method " .. echo(method) .. " is not allowed on " .. echo(ngx_var.uri)
            .. "; use POST", "invalid_request_error", nil, "method_not_allowed", { Allow = "POST" })
    end
    local body, req = read_json_body()
    if not body then
        return
    end
    local name = req.model
    local model, variant = resolve_model(name, rc.key)
    if not model or not guard.allow_model(rc.key, model) then
        return
    end
    local endpoint = sub(ngx_var.uri, 5)   -- after "/v1/"
    if not registry.serves(model, endpoint) then
        return send_error(400, "The model '" .. model.id .. "' is a " .. model.kind .. " model: it does not serve "
            .. ngx_var.uri .. " (it serves: /v1/" .. concat(model.endpoint_list, ", /v1/") .. ")",
            nil, "model", "unsupported_endpoint")
    end
    local bad = reqcheck.check(body, req, KINDS[ngx_var.uri])
    if bad then
        return send_error(bad.status, bad.message, nil, bad.param, bad.code)
    end
    if not upstream.choose(rc, model) then
        -- wait_for_ready_s: a starting model may be waited for, bounded, while the client stays.
        local waited
        if model.wait_for_ready_s > 0 and upstream.model_status(model) == "starting" then
            waited = readywait.wait(model, function() return upstream.choose(rc, model) end,
                function() return (upstream.model_status(model)) end)
        end
        if not (waited and waited.ready) then
            return send_unavailable(model, waited and waited.seconds)
        end
    end

    -- Every edit the request needs is collected, then applied in one scan and one splice.
    local ed = jsonbody.editor(body)
    if name ~= model.id then
        -- The backend echoes `model` back; send the canonical id so every response reports it.
        jsonbody.set(ed, "model", jsonbody.encode(model.id))
    end
    if uri == "/v1/responses" then
        if type(req.previous_response_id) == "string"
            and not sticky(rc, req.previous_response_id, "previous_response_id", model) then
            return
        end
        if req.store ~= false then
            rc.resp_scan = responses.scanner()
        end
    end
    local kind = KINDS[uri]
    if kind == "responses" then
        -- Responses events are the backend's own: nothing here reshapes them (no chatresp).
        local _, err = chatreq.rewrite_responses(ed, req, model, variant)
        if err then
            return send_error(err.status, err.message, nil, err.param, err.code)
        end
    elseif kind then
        local info = chatreq.rewrite(ed, req, model, kind, variant)
        if kind == "chat" then
            info.mode = model.reasoning and model.reasoning.mode
        end
        if chatresp.needed(info) then
            rc.resp = chatresp.new(info)
        end
    end
    local out = jsonbody.apply(ed)
    if api and (model.request or {}).messages ~= "native" then
        out = to_chat(rc, out or body, req, model, api, variant)
        if not out then
            return
        end
    end
    if out and out ~= body then
        ngx_req.set_body_data(out)
    end
    local headers, truncated = ngx_req.get_headers(MAX_HEADERS)
    if truncated then
        -- A header past the limit could be one that must not reach the backend.
        return send_error(431, "Too many request headers (limit: " .. MAX_HEADERS .. ")", nil, nil,
            "request_header_too_large")
    end
    for _, h in ipairs(hopbyhop.to_clear(headers)) do
        ngx_req.clear_header(h)
    end
    if model.backend_auth then   -- upstream.configure
        ngx_req.set_header("Authorization", model.backend_auth)
    end

    rc.model = model
    ngx_var.router_model = model.id
    -- Peers chosen again after a wait in the queue: it may have outlasted a server.
    if guard.admit(rc, model, req) and not upstream.choose(rc, model) then
        return send_unavailable(model)
    end
    metrics.start(rc, model.id)
end

function _M.balancer()
    return upstream.balance(ngx.ctx.router)
end

---------------------------------------------------------------------------------------------
-- Response: header_filter picks the body's treatment once (rc.body, a function below); the
-- body filter applies it to every chunk.

-- A backend error, re-shaped into the OpenAI error shape at the end.
local function body_error(rc, chunk, eof)
    local parts = rc.parts
    parts[#parts + 1] = chunk
    if rc.metrics then
        metrics.json(rc.metrics, chunk, eof)
    end
    if eof then
        ngx.arg[1] = errors.from_upstream(ngx.status, concat(parts))
    else
        ngx.arg[1] = nil
    end
end

-- A stream whose events are shaped (chatresp) and counted (metrics), one framer for both.
local function body_shape_stream(rc, chunk, eof)
    local fr = rc.sse
    local n, err = sse.feed(fr, chunk)
    if not n then
        log(WARN, LOG, "passing the rest of the stream through unchanged: ", err)
        rc.body = nil
        ngx.arg[1] = sse.rest(fr)   -- what was held, this chunk included
        return
    end
    local m = rc.metrics
    local out = chatresp.events(rc.resp, fr, n, chunk, m and metrics.event, m)
    if m then
        metrics.chunk(m, eof)
    end
    if eof then
        local rest = sse.rest(fr)
        if rest ~= "" then
            out = (out or chunk) .. rest
        end
    end
    if out then
        ngx.arg[1] = out
    end
end

-- A stream passed as it is, its events counted.
local function body_count_stream(rc, chunk, eof)
    local fr, m = rc.sse, rc.metrics
    local n = sse.feed(fr, chunk)
    if not n then
        rc.body = nil   -- an event too long to hold: stop counting, keep passing
        return
    end
    for i = 1, n do
        metrics.event(m, sse.raw(fr, i))
    end
    metrics.chunk(m, eof)
end

-- A JSON answer passed as it is: only its usage is read.
local function body_count_json(rc, chunk, eof)
    metrics.json(rc.metrics, chunk, eof)
end

-- The chat stream of a /v1/messages request, shaped (rc.shape), counted, translated.
local function body_drop(_, _, _)
    ngx.arg[1] = ""
end

local function body_translate_stream(rc, chunk, eof)
    local fr, st, m = rc.sse, rc.astream, rc.metrics
    local n, err = sse.feed(fr, chunk)
    if not n then
        log(WARN, LOG, "ending the Messages stream: ", err)
        rc.body = body_drop
        ngx.arg[1] = anthropic.stream_end(st)
        return
    end
    local out = anthropic.translate(st, fr, n, rc.shape, m and metrics.event, m)
    if m then
        metrics.chunk(m, eof)
    end
    if eof then
        out = out .. anthropic.stream_end(st)
    end
    ngx.arg[1] = out
end

-- /v1/responses: the response id is read as the body passes, then the usual treatment.
local function body_scan_id(rc, chunk, eof)
    local id = responses.scan(rc.resp_scan, chunk)
    if id then
        responses.remember(ngx.shared.router_responses, id, rc.model.id, rc.peer.addr, reg.responses_ttl)
        rc.body = rc.after_scan
    end
    local treat = rc.after_scan
    if treat then
        return treat(rc, chunk, eof)
    end
end

-- A whole chat.completion shaped and, for /v1/messages*, translated.
local function shape_body(rc, body)
    if rc.resp then
        body = chatresp.body(rc.resp, body)
    end
    local a = rc.anthropic
    if not a then
        return body
    end
    local text = a.count and anthropic.count_response(body) or anthropic.response(body, a)
    if not text then
        log(WARN, LOG, "the model server's answer is not a chat completion: ", string.sub(body, 1, 200))
        return anthropic.error_body("api_error", "the model server's answer could not be read")
    end
    return text
end

-- A whole chat.completion, reshaped at the end (bigger than MAX_BODY: passed as it is).
local function body_shape_whole(rc, chunk, eof)
    local parts = rc.parts
    local n = #parts + 1
    parts[n] = chunk
    rc.size = rc.size + #chunk
    if eof then
        local body = n == 1 and chunk or concat(parts)
        local out = shape_body(rc, body)
        if rc.metrics then
            metrics.json(rc.metrics, body, true)
        end
        if n > 1 or out ~= chunk then
            ngx.arg[1] = out
        end
    elseif rc.size > MAX_BODY then
        if rc.anthropic then
            log(WARN, LOG, "response over ", MAX_BODY, " bytes: not translated")
            rc.body = body_drop
            ngx.arg[1] = anthropic.error_body("api_error", "the model's answer is too large")
            return
        end
        log(WARN, LOG, "response over ", MAX_BODY, " bytes passed through unchanged")
        rc.body = rc.metrics and body_count_json or nil
        ngx.arg[1] = concat(parts)
    else
        ngx.arg[1] = nil
    end
end

local function choose_treatment(rc, status)
    if status >= 400 and rc.peer and ngx_var.upstream_status then
        rc.body, rc.parts = body_error, {}
        ngx.header["Content-Length"] = nil
        ngx.header["Content-Type"] = "application/json"
        return
    end
    if rc.anthropic and status == 200 then
        ngx.header["Content-Length"] = nil   -- translated: its length changes
        if rc.anthropic.stream then
            rc.body, rc.sse, rc.astream = body_translate_stream, sse.new(), anthropic.stream_new(rc.anthropic)
        else
            rc.body, rc.parts, rc.size = body_shape_whole, {}, 0
        end
        return
    end
    local m = rc.metrics
    local counted = m ~= nil and m.model ~= nil
    if not (counted or (rc.resp and status == 200)) then
        return
    end
    local stream = find(ngx.header["Content-Type"] or "", "text/event-stream", 1, true) ~= nil
    if rc.resp and status == 200 then
        ngx.header["Content-Length"] = nil   -- the body is reshaped: its length changes
        if stream then
            rc.body, rc.sse = body_shape_stream, sse.new()
        else
            rc.body, rc.parts, rc.size = body_shape_whole, {}, 0
        end
    elseif stream then
        rc.body, rc.sse = body_count_stream, sse.new()
    else
        rc.body = body_count_json
    end
end

function _M.header_filter()
    local rc = ngx.ctx.router
    if not rc then
        return   -- nginx's own error page (/_router/nginx-error), or a request refused before routing
    end
    metrics.header(rc)
    guard.header_filter(rc)
    local status = ngx.status
    if rc.forget and status == 200 then
        responses.forget(ngx.shared.router_responses, rc.forget)
    end
    choose_treatment(rc, status)
    if rc.resp_scan and status == 200 then
        rc.after_scan, rc.body = rc.body, body_scan_id
    end
end

function _M.body_filter()
    local rc = ngx.ctx.router
    if rc and rc.usage then
        guard.body(rc, ngx.arg[1])   -- metrics off and a key with tpm: usage read here
    end
    local treat = rc and rc.body
    if treat then
        -- Only here is the chunk read: ngx.arg[1] copies it into a Lua string.
        return treat(rc, ngx.arg[1], ngx.arg[2])
    end
end

function _M.log()
    local rc = ngx.ctx.router
    -- Slots and token counts first: once a request shows in /metrics, its key's counts are final.
    guard.log(rc)
    local rec = metrics.log(rc and rc.metrics, accesslog.enabled())
    if rec then
        accesslog.write(rec)
    end
    upstream.after(ngx.status, ngx_var)
end

---------------------------------------------------------------------------------------------
-- Content handlers: the router's own endpoints (endpoints.lua) and nginx's own errors.

_M.list_models = endpoints.list_models
_M.get_model = endpoints.get_model
_M.health = endpoints.health
_M.livez = endpoints.livez
_M.status = endpoints.status
_M.metrics = endpoints.metrics
_M.not_found = endpoints.not_found

function _M.nginx_error()
    return errors.send_nginx(ngx.status, ngx_var.router_model)
end

-- These run where the error_log is crit (router.conf): a Lua error in them still reaches the
-- operator, in the main error_log, and the client gets the OpenAI-shaped 500.
for _, name in ipairs({ "read_body", "list_models", "get_model", "health", "livez", "metrics", "status",
                        "not_found", "nginx_error", "log" }) do
    local handler = _M[name]
    _M[name] = function(...)
        local ok, err = xpcall(handler, debug.traceback, ...)
        if not ok then
            mainlog.log(ERR, LOG, name, " failed: ", err)
            if name ~= "log" and not ngx.headers_sent then
                return ngx.exit(500)
            end
        end
    end
end

return _M
