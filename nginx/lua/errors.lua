-- Errors in the OpenAI shape: {"error": {"message", "type", "param", "code"}}, whoever failed
-- (the router, nginx itself, or the backend with trtllm-serve's flat error object).
--   errors.send(400, "The request body is not valid JSON", nil, nil, "invalid_json")
--   errors.send_json(200, obj)              -- any JSON answer the router writes itself
--   local text = errors.from_upstream(status, body)   -- a backend error body, re-shaped
-- JSON text comes from jsonbody.encode, the router's one encoder.
local cjson = require("cjson.safe")
local jsonbody = require("jsonbody")

local _M = { _VERSION = "0.1.0" }

local ngx = ngx
local type, pairs = type, pairs
local encode = jsonbody.encode
local null = cjson.null

-- The error object; etype defaults to invalid_request_error, param and code to null.
function _M.object(message, etype, param, code)
    return { error = { message = message, type = etype or "invalid_request_error",
                       param = param or null, code = code or null } }
end

function _M.send_json(status, obj, headers)
    ngx.status = status
    ngx.header["Content-Type"] = "application/json"
    if headers then
        for k, v in pairs(headers) do
            ngx.header[k] = v
        end
    end
    ngx.say(encode(obj))
    return ngx.exit(status)
end

function _M.send(status, message, etype, param, code, headers)
    return _M.send_json(status, _M.object(message, etype, param, code), headers)
end

-- trtllm-serve answers {"object":"error","message":...,"type":...,"param":...,"code":400}
-- (ErrorResponse in tensorrt_llm/serve/openai_protocol.py), FastAPI {"detail": ...}; clients
-- expect {"error": {...}}. A body already in that shape is returned as is.
function _M.from_upstream(status, text)
    local obj = cjson.decode(text)
    if type(obj) == "table" and type(obj.error) == "table" then
        return text
    end
    local t = type(obj) == "table" and obj or {}
    local message = t.message or t.detail
    if type(message) ~= "string" then
        message = message and cjson.encode(message) or (text ~= "" and text or ("upstream status " .. status))
    end
    return encode({ error = {
        message = message,
        type = type(t.type) == "string" and t.type or (status >= 500 and "server_error" or "invalid_request_error"),
        param = t.param or null,
        code = t.code or null,
    } }) .. "\n"
end

-- Where nginx itself ends a request (error_page ... @error in nginx/conf/router.conf).
local NGINX = {
    [400] = { "Bad request", "invalid_request_error", "bad_request" },
    [404] = { "Not found", "invalid_request_error", "unknown_url" },   -- a missing file under /ui/
    [413] = { "Request body too large (limit: client_max_body_size in nginx/conf/router.conf)",
              "invalid_request_error", "request_too_large" },
    [502] = { "Could not reach the model server", "server_error", "upstream_unreachable" },
    [504] = { "The model server did not answer in time", "server_error", "upstream_timeout" },
}

-- model: the canonical id the request was routed to, or nil/"" when it was not.
function _M.send_nginx(status, model)
    local e = NGINX[status] or { "Error", "server_error", nil }
    local msg = e[1]
    if model and model ~= "" then
        msg = msg .. " for model '" .. model .. "'"
    end
    return _M.send(status, msg, e[2], nil, e[3])
end

return _M
