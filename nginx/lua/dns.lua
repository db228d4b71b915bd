-- Host name -> IPv4 for upstreams given by name (compose service names such as "qwen").
-- ngx.balancer only takes IP addresses, and lua-resty-dns is bundled with OpenResty but not
-- packaged in Debian, so this small A-record client keeps one code path for the image and for
-- the test prefix. It runs in the health timer only, never per request.
local _M = { _VERSION = "0.1.0" }

local byte, char, sub = string.byte, string.char, string.sub
local gmatch, match, format = string.gmatch, string.match, string.format
local concat = table.concat
local band, rshift = bit.band, bit.rshift

function _M.encode_query(id, name)
    local parts = { char(rshift(id, 8), band(id, 0xff)), "\1\0", "\0\1", "\0\0", "\0\0", "\0\0" }
    for label in gmatch(name, "[^.]+") do
        if #label > 63 then
            return nil, "label too long in '" .. name .. "'"
        end
        parts[#parts + 1] = char(#label) .. label
    end
    parts[#parts + 1] = "\0\0\1\0\1"   -- root, QTYPE A, QCLASS IN
    return concat(parts)
end

local function u16(s, i)
    local a, b = byte(s, i, i + 1)
    return a * 256 + b
end

-- Index just past the (possibly compressed) name starting at i.
local function skip_name(s, i)
    while true do
        local len = byte(s, i)
        if not len then
            return nil
        end
        if len == 0 then
            return i + 1
        end
        if band(len, 0xc0) == 0xc0 then
            return i + 2
        end
        i = i + 1 + len
    end
end

local RCODES = { [1] = "format error", [2] = "server failure", [3] = "name not found",
                 [4] = "not implemented", [5] = "refused" }

-- Returns a list of IPv4 strings and the smallest TTL, or nil and an error.
function _M.decode_answer(resp, id)
    if #resp < 12 then
        return nil, "short DNS answer"
    end
    if u16(resp, 1) ~= id then
        return nil, "DNS answer id mismatch"
    end
    local flags = u16(resp, 3)
    if band(flags, 0x8000) == 0 then
        return nil, "not a DNS answer"
    end
    local rcode = band(flags, 0xf)
    if rcode ~= 0 then
        return nil, "DNS: " .. (RCODES[rcode] or ("rcode " .. rcode))
    end
    local qd, an = u16(resp, 5), u16(resp, 7)
    local i = 13
    for _ = 1, qd do
        i = skip_name(resp, i)
        if not i then
            return nil, "malformed DNS question"
        end
        i = i + 4
    end
    local addrs, ttl = {}, nil
    for _ = 1, an do
        i = skip_name(resp, i)
        if not i or i + 9 > #resp then
            return nil, "malformed DNS answer"
        end
        local rtype, rttl, rdlen = u16(resp, i), u16(resp, i + 4) * 65536 + u16(resp, i + 6), u16(resp, i + 8)
        i = i + 10
        if rtype == 1 and rdlen == 4 then
            addrs[#addrs + 1] = format("%d.%d.%d.%d", byte(resp, i, i + 3))
            ttl = ttl and math.min(ttl, rttl) or rttl
        end
        i = i + rdlen
    end
    if #addrs == 0 then
        return nil, "DNS: no A record"
    end
    return addrs, ttl
end

-- name -> ip from /etc/hosts-style text (IPv4 only; first match wins).
function _M.parse_hosts(text)
    local hosts = {}
    for line in gmatch(text, "[^\n]+") do
        line = match(line, "^([^#]*)")
        local ip, names = match(line, "^%s*(%d+%.%d+%.%d+%.%d+)%s+(.+)$")
        if ip then
            for name in gmatch(names, "%S+") do
                hosts[name] = hosts[name] or ip
            end
        end
    end
    return hosts
end

function _M.nameserver_from_resolv_conf(text)
    return match(text, "\n%s*nameserver%s+(%d+%.%d+%.%d+%.%d+)") or match(text, "^%s*nameserver%s+(%d+%.%d+%.%d+%.%d+)")
end

function _M.is_ipv4(host)
    return match(host, "^%d+%.%d+%.%d+%.%d+$") ~= nil
end

-- Blocking-free lookup over a cosocket (timer or request context).
function _M.query(nameserver, port, name, timeout_ms)
    local id = math.random(0, 0xffff)
    local q, err = _M.encode_query(id, name)
    if not q then
        return nil, err
    end
    local sock = ngx.socket.udp()
    sock:settimeout(timeout_ms)
    local ok
    ok, err = sock:setpeername(nameserver, port)
    if not ok then
        return nil, "DNS: " .. err
    end
    ok, err = sock:send(q)
    if not ok then
        sock:close()
        return nil, "DNS: " .. err
    end
    local resp
    resp, err = sock:receive()
    sock:close()
    if not resp then
        return nil, "DNS " .. nameserver .. ": " .. err
    end
    return _M.decode_answer(resp, id)
end

return _M
