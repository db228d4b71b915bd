-- Errors in the OpenAI shape: {"error": {"message", "type", "param", "code"}}, whoever failed
-- (the router, nginx itself, or the backend with trtllm-serve's flat error object).
--   errors.send(400, "The request body is not valid JSON", nil, nil, "invalid_json")
--   errors.send_json(200, obj)              -- any JSON answer the router writes itself
--   local text = errors.from_upstream(status, body)   -- a backend error body, re-shaped
-- JSON text comes from jsonbody.encode, the router's one encoder. Every message is valid
-- UTF-8 whatever bytes the client sent (strict JSON parsers reject anything else, and cjson
-- copies bytes as they are); quote a client-sent name with errors.echo (capped). Messages
-- name no internal address: those stay in /health and the logs.
local cjson = require("cjson.safe")
local jsonbody = require("jsonbody")
local anthropic = require("anthropic")

local _M = { _VERSION = "0.1.0" }

local ngx = ngx
local type, pairs, tostring = type, pairs, tostring
local byte, sub, find = string.byte, string.sub, string.find
local concat = table.concat
local encode = jsonbody.encode
local null = cjson.null

local REPLACEMENT = "\239\191\189"   -- U+FFFD
local MAX_ECHO = 256                  -- bytes of a client-sent name quoted back

-- Length of the valid UTF-8 sequence (RFC 3629) starting at i, or nil.
local function utf8_len(s, i)
    local c = byte(s, i)
    local n, lo, hi
    if c < 0x80 then
        return 1
    elseif c >= 0xC2 and c <= 0xDF then
        n = 2
    elseif c >= 0xE0 and c <= 0xEF then
        n = 3
        lo = c == 0xE0 and 0xA0 or 0x80    -- no overlong form
        hi = c == 0xED and 0x9F or 0xBF    -- no surrogate
    elseif c >= 0xF0 and c <= 0xF4 then
        n = 4
        lo = c == 0xF0 and 0x90 or 0x80    -- no overlong form
        hi = c == 0xF4 and 0x8F or 0xBF    -- nothing past U+10FFFF
    else
        return nil
    end
    for k = 1, n - 1 do
        local b = byte(s, i + k)
        local l, h = 0x80, 0xBF
        if k == 1 and lo then
            l, h = lo, hi
        end
        if not b or b < l or b > h then
            return nil
        end
    end
    return n
end

-- s with every byte that is not part of valid UTF-8 replaced by U+FFFD.
function _M.valid_utf8(s)
    if not find(s, "[\128-\255]") then
        return s
    end
    local out, i, n, start = {}, 1, #s, 1
    while i <= n do
        local len = utf8_len(s, i)
        if len then
            i = i + len
        else
            out[#out + 1] = sub(s, start, i - 1)
            out[#out + 1] = REPLACEMENT
            i = i + 1
            start = i
        end
    end
    out[#out + 1] = sub(s, start)
    return concat(out)
end

-- A client-sent name to quote in a message: valid UTF-8, at most `max` (256) bytes, cut on a
-- character boundary, "..." marking the cut.
function _M.echo(s, max)
    max = max or MAX_ECHO
    s = _M.valid_utf8(tostring(s))
    if #s <= max then
        return s
    end
    local cut = max
    while cut > 0 do
        local b = byte(s, cut + 1)
        if b < 0x80 or b >= 0xC0 then   -- cut + 1 starts a character
            break
        end
        cut = cut - 1
    end
    return sub(s, 1, cut) .. "..."
end

-- The error object; etype defaults to invalid_request_error, param and code to null.
function _M.object(message, etype, param, code)
    return { error = { message = _M.valid_utf8(message), type = etype or "invalid_request_error",
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

-- On the Anthropic endpoints ($router_api, a map of the request line's URI) the shape is
-- Anthropic's {"type": "error", "error": {"type", "message"}}, its status chosen by
-- anthropic.router_error.
function _M.send(status, message, etype, param, code, headers)
    if ngx.var.router_api == "anthropic" then
        status, etype = anthropic.router_error(status, code)
        ngx.status = status
        ngx.header["Content-Type"] = "application/json"
        for k, v in pairs(headers or {}) do
            ngx.header[k] = v
        end
        ngx.say(anthropic.error_body(etype, message))
        return ngx.exit(status)
    end
    return _M.send_json(status, _M.object(message, etype, param, code), headers)
end

-- trtllm-serve answers {"object":"error","message":...,"type":...,"param":...,"code":400}
-- (ErrorResponse in tensorrt_llm/serve/openai_protocol.py), FastAPI {"detail": ...}; clients
-- expect {"error": {...}}. A body already in that shape is returned as is.
function _M.from_upstream(status, text)
    local obj = cjson.decode(text)
    local t = type(obj) == "table" and obj or {}
    local message = t.message or t.detail or (type(t.error) == "table" and t.error.message) or nil
    if type(message) ~= "string" then
        message = message and cjson.encode(message) or (text ~= "" and text or ("upstream status " .. status))
    end
    if ngx.var.router_api == "anthropic" then
        if t.type == "error" and type(t.error) == "table" then
            return text   -- a backend that speaks Messages itself
        end
        return anthropic.error_body(anthropic.error_type(status), message) .. "\n"
    end
    if type(t.error) == "table" then
        return text
    end
    return encode({ error = {
        message = _M.valid_utf8(message),
        type = type(t.type) == "string" and t.type or (status >= 500 and "server_error" or "invalid_request_error"),
        param = t.param or null,
        code = t.code or null,
    } }) .. "\n"
end

-- Where nginx itself refuses a request or cannot reach a backend: error_page in
-- nginx/conf/router.conf sends every status listed there to /_router/nginx-error.
local BAD = "invalid_request_error"
local NGINX = {   -- [status] = { message, type, code }
    [400] = { "Bad request: the request line, a header or the body could not be parsed", BAD, "bad_request" },
    [404] = { "Invalid URL", BAD, "unknown_url" },
    [405] = { "Method not allowed; this router answers GET, HEAD and POST", BAD, "method_not_allowed" },
    [408] = { "The request body did not arrive in time", BAD, "request_timeout" },
    [411] = { "A request body needs Content-Length or Transfer-Encoding: chunked", BAD, "length_required" },
    [413] = { "Request body too large (limit: client_max_body_size in nginx/conf/router.conf)",
              BAD, "request_too_large" },
    [414] = { "The request URI is too long", BAD, "uri_too_long" },
    [431] = { "Request header fields too large", BAD, "request_header_too_large" },   -- nginx's 494
    [500] = { "Internal router error", "server_error", "internal_error" },
    -- 501 and 505 answer what the client sent (RFC 9112 6.1, RFC 9110 15.6.6)
    [501] = { "Transfer-Encoding not supported; use chunked or Content-Length", BAD, "not_implemented" },
    [502] = { "Could not reach the model server", "server_error", "upstream_unreachable" },
    [503] = { "Service unavailable", "server_error", "service_unavailable" },
    [504] = { "The model server did not answer in time", "server_error", "upstream_timeout" },
    [505] = { "HTTP version not supported; use HTTP/1.1", BAD, "http_version_not_supported" },
}

-- message, type, code for a status nginx raised; `model` (the canonical id the request was
-- routed to, or nil/"") is named in upstream errors.
function _M.describe_nginx(status, model)
    local e = NGINX[status]
    if not e then
        return "Error " .. tostring(status), status >= 500 and "server_error" or BAD, nil
    end
    local msg = e[1]
    if model and model ~= "" and (status == 502 or status == 504) then
        msg = msg .. " for model '" .. model .. "'"
    end
    return msg, e[2], e[3]
end

function _M.send_nginx(status, model)
    -- After error_page the status is the one nginx raised; a client asking for the error
    -- location itself has none.
    if status < 400 then
        status = 404
    end
    local msg, etype, code = _M.describe_nginx(status, model)
    return _M.send(status, msg, etype, nil, code, status == 405 and { Allow = "GET, HEAD, POST" } or nil)
end

return _M
