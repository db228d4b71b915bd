-- Which server stored a /v1/responses response. trtllm-serve keeps responses in its own
-- process (openai_server.py's conversation store), so previous_response_id, GET and DELETE
-- /v1/responses/{id} only work on the replica that made it. Pure: the dict is passed in
-- (an ngx.shared dict in nginx, a table with get/set/delete in specs).
--   local scan = responses.scanner()
--   local id = responses.scan(scan, chunk)         -- the response id, once it has passed by
--   responses.remember(dict, id, model_id, addr, ttl)
--   local model_id, addr = responses.lookup(dict, id)
local _M = { _VERSION = "0.1.0" }

local match, sub = string.match, string.sub

-- The id is the first "id" of a response object (trtllm dumps `id` first), and a stream's first
-- event is response.created carrying that object; message items have "msg_" ids.
local ID = '"id"%s*:%s*"(resp_[%w_%-]+)"'
local MAX_SCAN = 65536

-- "/v1/responses/resp_abc" -> "resp_abc"
function _M.path_id(uri)
    return match(uri, "^/v1/responses/([^/]+)$")
end

function _M.scanner()
    return { held = "", done = false }
end

-- Feeds response bytes; returns the id when it is first seen. Keeps only a tail between feeds
-- (the id may arrive cut), and gives up after MAX_SCAN bytes.
function _M.scan(st, chunk)
    if st.done or not chunk or chunk == "" then
        return nil
    end
    local s = st.held .. chunk
    local id = match(s, ID)
    st.seen = (st.seen or 0) + #chunk
    if id then   -- the pattern needs the closing quote: a cut id is not taken
        st.done = true
        return id
    end
    if st.seen > MAX_SCAN then
        st.done = true
        return nil
    end
    st.held = sub(s, -128)
    return nil
end

function _M.remember(dict, id, model_id, addr, ttl)
    return dict:set(id, model_id .. " " .. addr, ttl)
end

function _M.lookup(dict, id)
    local v = dict:get(id)
    if not v then
        return nil
    end
    return match(v, "^(%S+) (%S+)$")
end

function _M.forget(dict, id)
    dict:delete(id)
end

return _M
