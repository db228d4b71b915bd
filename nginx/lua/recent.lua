-- The last N generation requests, for the status page: a ring in lua_shared_dict
-- `router_status`, shared by workers. Numbers and names only: never prompt or completion text.
-- encode/decode are pure (busted tests them); push/list touch the dict.
local _M = { _VERSION = "0.1.0" }

local ngx = ngx
local concat = table.concat
local find, gsub, sub, tostring, tonumber = string.find, string.gsub, string.sub, tostring, tonumber

_M.SIZE = 50
local SEP = "\31"   -- ASCII unit separator; removed from strings, so a field never splits
local FIELDS = { "time", "model", "key", "path", "status", "prompt_tokens", "output_tokens", "ttft_ms",
                 "tokens_per_s", "duration_ms", "client_abort" }
local STRINGS = { model = true, key = true, path = true }

function _M.encode(rec)
    local parts = {}
    for i = 1, #FIELDS do
        local k = FIELDS[i]
        local v = rec[k]
        if v == nil then
            v = ""
        elseif v == true or v == false then
            v = v and "1" or "0"
        elseif STRINGS[k] then
            v = gsub(tostring(v), SEP, "")
        else
            v = tostring(v)
        end
        parts[i] = v
    end
    return concat(parts, SEP)
end

function _M.decode(line)
    local rec, pos = {}, 1
    for i = 1, #FIELDS do
        local stop = find(line, SEP, pos, true)
        local v = sub(line, pos, (stop or #line + 1) - 1)
        local k = FIELDS[i]
        if v ~= "" then
            if k == "client_abort" then
                rec[k] = v == "1"
            elseif STRINGS[k] then
                rec[k] = v
            else
                rec[k] = tonumber(v)
            end
        elseif k == "client_abort" then
            rec[k] = false
        end
        if not stop then
            break
        end
        pos = stop + 1
    end
    return rec
end

---------------------------------------------------------------------------------------------
-- nginx glue

local dict = ngx.shared.router_status

-- log phase: one dict:incr and one dict:set per request.
function _M.push(rec)
    if not dict then
        return
    end
    local n, err = dict:incr("recent:n", 1, 0)
    if not n then
        ngx.log(ngx.WARN, "[recent] failed to count: ", err)
        return
    end
    dict:set("recent:" .. (n % _M.SIZE), _M.encode(rec))
end

-- Newest first.
function _M.list()
    local out = {}
    local n = dict and dict:get("recent:n")
    if not n then
        return out
    end
    for i = n, math.max(1, n - _M.SIZE + 1), -1 do
        local line = dict:get("recent:" .. (i % _M.SIZE))
        if line then
            out[#out + 1] = _M.decode(line)
        end
    end
    return out
end

return _M
