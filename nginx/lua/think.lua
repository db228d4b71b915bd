-- Splits <think>...</think> out of streamed model text. Pure: state in a table, no ngx.*.
--   local st = think.new(start_inside)
--   local reasoning, content = think.feed(st, delta)   -- any number of times
--   local reasoning, content = think.finish(st)        -- at the end: flushes held bytes
-- A tag may arrive cut anywhere ("<thi" | "nk>"): a tail that could still become the tag we
-- look for is held back until the next feed, and released by finish if it never does.
local _M = { _VERSION = "0.1.0" }

local find, sub = string.find, string.sub
local concat = table.concat

local OPEN, CLOSE = "<think>", "</think>"

-- phases: "before" (no tag seen), "inside" (reasoning), "after" (content for good).
-- lone_close: in "before", a </think> with no <think> ahead of it also ends reasoning (the text
-- before it was reasoning), as from a model whose prompt opens the think block itself
-- (Nemotron) served without a reasoning parser. The backend-mode fallback uses it.
function _M.new(start_inside, lone_close)
    return { phase = start_inside and "inside" or "before", held = "", lone_close = lone_close }
end

-- Length of the longest suffix of s that is a proper prefix of tag (both tags start with '<').
local function partial_suffix(s, tag)
    local n = #s
    local from = n - #tag + 2
    local i = find(s, "<", from > 1 and from or 1, true)
    while i do
        local k = n - i + 1
        if sub(tag, 1, k) == sub(s, i) then
            return k
        end
        i = find(s, "<", i + 1, true)
    end
    return 0
end

function _M.feed(st, text)
    text = text or ""
    if st.held == "" and not find(text, "<", 1, true) then
        -- No tag and no part of one: the piece is all reasoning or all content.
        if st.phase == "inside" then
            return text, ""
        end
        return "", text
    end
    local s = st.held .. text
    st.held = ""
    local r, c = {}, {}
    while s ~= "" do
        if st.phase == "after" then
            c[#c + 1] = s
            break
        end
        local before = st.phase == "before"
        local tag = before and OPEN or CLOSE
        local out = before and c or r
        local i = find(s, tag, 1, true)
        if before and st.lone_close then
            local j = find(s, CLOSE, 1, true)
            if j and (not i or j < i) then
                -- What came before a lone </think> was reasoning.
                i, tag, out = j, CLOSE, r
            end
        end
        if i then
            out[#out + 1] = sub(s, 1, i - 1)
            s = sub(s, i + #tag)
            st.phase = (before and tag == OPEN) and "inside" or "after"
        else
            local k = partial_suffix(s, tag)
            if before and st.lone_close then
                k = math.max(k, partial_suffix(s, CLOSE))
            end
            out[#out + 1] = sub(s, 1, #s - k)
            st.held = sub(s, #s - k + 1)
            break
        end
    end
    return concat(r), concat(c)
end

function _M.finish(st)
    local held = st.held
    st.held = ""
    if st.phase == "inside" then
        return held, ""
    end
    return "", held
end

-- Whole-text split, for non-streaming responses: the same as one feed and a finish.
function _M.split(text, start_inside, lone_close)
    local st = _M.new(start_inside, lone_close)
    local r1, c1 = _M.feed(st, text)
    local r2, c2 = _M.finish(st)
    return r1 .. r2, c1 .. c2
end

return _M
