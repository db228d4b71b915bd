-- Server-sent events framing for the body filter. Pure: state in a table, no ngx.*.
--   local st = sse.new(max_held)
--   for _, ev in ipairs(sse.feed(st, chunk)) do ... end   -- complete events, in order
-- An event is { raw = bytes including its blank-line terminator, data = joined data lines
-- or nil (comments such as ": keep-alive", or event: lines only) }. Events cut across reads
-- are completed by later feeds; CRLF and LF line ends are both understood.
local _M = { _VERSION = "0.1.0" }

local find, sub, gmatch, match = string.find, string.sub, string.gmatch, string.match

function _M.new(max_held)
    return { held = "", max_held = max_held or 1048576 }
end

local function parse(raw)
    local data
    for line in gmatch(raw, "[^\r\n]+") do
        local v = match(line, "^data: ?(.*)$")
        if v then
            data = data and (data .. "\n" .. v) or v
        end
    end
    return { raw = raw, data = data }
end

-- Returns the complete events, or nil and an error when more than max_held bytes wait for
-- an event's end (the caller then stops parsing and passes bytes through).
function _M.feed(st, chunk)
    local s = st.held .. chunk
    local events, pos = {}, 1
    while true do
        local i, j = find(s, "\r?\n\r?\n", pos)
        if not i then
            break
        end
        events[#events + 1] = parse(sub(s, pos, j))
        pos = j + 1
    end
    st.held = sub(s, pos)
    if #st.held > st.max_held then
        return nil, "event longer than " .. st.max_held .. " bytes"
    end
    return events
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
