-- Server-sent events framing for the body filter: one framer per response, whose events every
-- consumer reads (response shaping, metrics). Pure: state in a table, no ngx.*.
--   local st = sse.new(max_held)
--   local n = sse.feed(st, chunk)       -- complete events now in st.text, in order
--   for i = 1, n do
--       local raw = sse.raw(st, i)       -- bytes including the blank-line terminator
--       local data = sse.data(st, i)     -- joined data lines, or nil (comments, event: only)
--   end
--   local tail = sse.rest(st)           -- at the end of the body: an unterminated event
-- Events cut across reads are completed by later feeds; CRLF and LF line ends are both
-- understood. In the common case (one read = one whole event, as trtllm-serve flushes each
-- event) raw(st, 1) is the chunk itself: nothing is copied.
local _M = { _VERSION = "0.1.0" }

local find, sub, byte = string.find, string.sub, string.byte
local concat = table.concat

local B_LF, B_CR, B_SPACE = 10, 13, 32

function _M.new(max_held)
    return { held = "", max_held = max_held or 1048576, text = "", n = 0, first = {}, last = {} }
end

-- Index of the last byte of the first blank line at or after pos, or nil.
local function event_end(s, pos)
    local nl = find(s, "\n", pos, true)
    while nl do
        local b = byte(s, nl + 1)
        if b == B_LF then
            return nl + 1
        elseif b == B_CR and byte(s, nl + 2) == B_LF then
            return nl + 2
        end
        nl = find(s, "\n", nl + 1, true)
    end
    return nil
end

-- Returns the number of complete events, or nil and an error when more than max_held bytes
-- wait for an event's end (the caller then stops parsing and passes bytes through).
function _M.feed(st, chunk)
    local s = st.held
    if s == "" then
        s = chunk
    else
        s = s .. chunk
    end
    local first, last = st.first, st.last
    local n, pos = 0, 1
    while true do
        local stop = event_end(s, pos)
        if not stop then
            break
        end
        n = n + 1
        first[n], last[n] = pos, stop
        pos = stop + 1
    end
    st.text, st.n = s, n
    if pos == 1 then
        st.held = s
    elseif pos > #s then
        st.held = ""
    else
        st.held = sub(s, pos)
    end
    if #st.held > st.max_held then
        return nil, "event longer than " .. st.max_held .. " bytes"
    end
    return n
end

function _M.raw(st, i)
    local s, a, b = st.text, st.first[i], st.last[i]
    if a == 1 and b == #s then
        return s
    end
    return sub(s, a, b)
end

-- The event's data lines ("data:" with an optional space), joined with "\n"; nil if none.
function _M.data(st, i)
    local s, pos, stop = st.text, st.first[i], st.last[i]
    local one, many
    while pos <= stop do
        local nl = find(s, "\n", pos, true)
        if not nl or nl > stop then
            nl = stop + 1
        end
        local e = nl - 1
        if e >= pos and byte(s, e) == B_CR then
            e = e - 1
        end
        local d, a1, t, a2, colon = byte(s, pos, pos + 4)
        if e >= pos + 4 and d == 100 and a1 == 97 and t == 116 and a2 == 97 and colon == 58 then   -- "data:"
            local v = pos + 5
            if byte(s, v) == B_SPACE then
                v = v + 1
            end
            local value = sub(s, v, e)
            if many then
                many[#many + 1] = value
            elseif one then
                many = { one, value }
            else
                one = value
            end
        end
        pos = nl + 1
    end
    return many and concat(many, "\n") or one
end

-- Whatever is left at the end of the body (an unterminated event).
function _M.rest(st)
    local held = st.held
    st.held = ""
    return held
end

function _M.encode(data)
    return "data: " .. data .. "\n\n"
end

return _M
