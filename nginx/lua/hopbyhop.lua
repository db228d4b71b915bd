-- Request headers that end at the router: the hop-by-hop ones (RFC 9110 7.6.1: Connection,
-- the headers it names, Proxy-Connection and the other Proxy-* headers, Keep-Alive, TE,
-- Trailer, Transfer-Encoding, Upgrade) and the client's credentials (Authorization, and
-- x-api-key from Anthropic clients): trtllm-serve needs none, and a backend that does gets
-- the router's own key (registry backend_key_env).
-- Pure: takes the headers as ngx.req.get_headers() returns them (lowercase names; a
-- repeated header as a list).
local _M = { _VERSION = "0.1.0" }

local type, pairs = type, pairs
local lower, sub, gmatch = string.lower, string.sub, string.gmatch

local ALWAYS = { authorization = true, ["x-api-key"] = true, trailer = true, ["keep-alive"] = true, te = true,
                 upgrade = true }

-- nginx's proxy module replaces these with its own values whatever the client sent
-- (ngx_http_proxy_headers in src/http/modules/ngx_http_proxy_module.c: Host, Connection,
-- Content-Length, Transfer-Encoding, TE, Keep-Alive, Expect, Upgrade) and router.conf sets
-- Content-Type: a Connection header naming them must not make the router drop them from
-- the request it reads the body of.
local NGINX_SETS = { host = true, connection = true, ["content-length"] = true, ["content-type"] = true,
                     ["transfer-encoding"] = true, expect = true }

local function each_value(v, fn)
    if type(v) == "table" then
        for i = 1, #v do
            fn(v[i])
        end
    elseif v then
        fn(v)
    end
end

-- The header names to clear before proxying, each once.
function _M.to_clear(headers)
    local out, seen = {}, {}
    local function add(name)
        if not seen[name] and not NGINX_SETS[name] then
            seen[name] = true
            out[#out + 1] = name
        end
    end
    for name in pairs(headers) do
        local n = lower(name)
        if ALWAYS[n] or sub(n, 1, 6) == "proxy-" then
            add(n)
        end
    end
    each_value(headers.connection or headers.Connection, function(value)
        for token in gmatch(value, "[^,%s]+") do
            token = lower(token)
            if headers[token] ~= nil then   -- "close", "keep-alive": options, not headers
                add(token)
            end
        end
    end)
    return out
end

return _M
