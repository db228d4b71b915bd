-- Surgical edits of a JSON request body. cjson re-encoding would change numbers, turn [] into
-- {} and lose key order (docs/dev-env.md), so the router edits only the bytes of one top-level
-- member and forwards everything else exactly as the client sent it. Pure: no ngx.* use.
local cjson = require("cjson.safe")

local _M = { _VERSION = "0.1.0" }

local byte = string.byte
local gsub = string.gsub
local find = string.find
local sub = string.sub
local concat = table.concat

local B_QUOTE, B_BSLASH, B_COLON, B_COMMA = 34, 92, 58, 44
local B_LBRACE, B_RBRACE, B_LBRACK, B_RBRACK = 123, 125, 91, 93

-- The one JSON encoder for what the router writes itself (errors, endpoint answers, edited
-- values). cjson escapes every '/' as '\/' (valid, but model ids are full of slashes); it
-- escapes '\' itself too, so undoing '\/' cannot change meaning.
function _M.encode(v)
    return (gsub(cjson.encode(v), "\\/", "/"))
end

-- Byte loops and plain finds rather than string.find with patterns: LuaJIT compiles these, but
-- a pattern find aborts the trace, and this runs on every request and every streamed event.
local function skip_space(s, i)
    local n = #s
    while i <= n do
        local b = byte(s, i)
        if b ~= 32 and b ~= 9 and b ~= 13 and b ~= 10 then
            return i
        end
        i = i + 1
    end
    return n + 1
end

local function trim_back(s, i)
    while i > 0 do
        local b = byte(s, i)
        if b ~= 32 and b ~= 9 and b ~= 13 and b ~= 10 then
            return i
        end
        i = i - 1
    end
    return i
end

-- Returns the end index of the string literal starting at quote index i: the next quote that
-- an even number of backslashes precedes.
local function string_end(s, i)
    local k = i + 1
    while true do
        local q = find(s, '"', k, true)
        if not q then
            return nil
        end
        local j = q - 1
        while j > i and byte(s, j) == B_BSLASH do
            j = j - 1
        end
        if (q - 1 - j) % 2 == 0 then
            return q
        end
        k = q + 1
    end
end

_M.string_end = string_end

-- Index of the next byte at or after i that matters to the structure: a quote, brace,
-- bracket, comma or colon (n + 1 when none).
local STRUCTURAL = { [B_QUOTE] = true, [B_LBRACE] = true, [B_RBRACE] = true, [B_LBRACK] = true,
                     [B_RBRACK] = true, [B_COMMA] = true, [B_COLON] = true }
local function next_structural(s, i, n)
    while i <= n do
        if STRUCTURAL[byte(s, i)] then
            return i
        end
        i = i + 1
    end
    return nil
end

-- Top-level members of a JSON object text, in order:
-- { key = raw key text, kstart = index of the key's opening quote,
--   vstart, vend = the value's bytes, sep = index of the ',' or '}' that ends the member }.
-- Assumes the text already decoded as a JSON object (the router checks with cjson first).
function _M.members(s)
    local i = skip_space(s, 1)
    if byte(s, i) ~= B_LBRACE then
        return nil, "not a JSON object"
    end
    local members, cur = {}, nil
    local depth = 1
    local n = #s
    i = i + 1
    while true do
        local j = next_structural(s, i, n)
        if not j then
            return nil, "unterminated JSON object"
        end
        local b = byte(s, j)
        if b == B_QUOTE then
            local q = string_end(s, j)
            if not q then
                return nil, "unterminated JSON string"
            end
            if depth == 1 and cur == nil then
                cur = { key = sub(s, j + 1, q - 1), kstart = j }
            end
            i = q + 1
        elseif depth == 1 and b == B_COLON then
            cur.vstart = skip_space(s, j + 1)
            i = j + 1
        elseif b == B_LBRACE or b == B_LBRACK then
            depth = depth + 1
            i = j + 1
        elseif (b == B_COMMA and depth == 1) or ((b == B_RBRACE or b == B_RBRACK) and depth == 1) then
            if cur then
                cur.vend, cur.sep = trim_back(s, j - 1), j
                members[#members + 1] = cur
                cur = nil
            end
            if b ~= B_COMMA then
                return members
            end
            i = j + 1
        elseif b == B_RBRACE or b == B_RBRACK then
            depth = depth - 1
            i = j + 1
        else
            i = j + 1
        end
    end
end

-- Top-level elements of a JSON array text: list of { vstart, vend }.
function _M.elements(s)
    local i = skip_space(s, 1)
    if byte(s, i) ~= B_LBRACK then
        return nil, "not a JSON array"
    end
    local out, depth, start = {}, 1, skip_space(s, i + 1)
    if byte(s, start) == B_RBRACK then
        return out
    end
    i = start
    local n = #s
    while true do
        local j = next_structural(s, i, n)
        if not j then
            return nil, "unterminated JSON array"
        end
        local b = byte(s, j)
        if b == B_QUOTE then
            local q = string_end(s, j)
            if not q then
                return nil, "unterminated JSON string"
            end
            i = q + 1
        elseif b == B_LBRACE or b == B_LBRACK then
            depth = depth + 1
            i = j + 1
        elseif depth == 1 and (b == B_COMMA or b == B_RBRACK) then
            out[#out + 1] = { vstart = start, vend = trim_back(s, j - 1) }
            if b == B_RBRACK then
                return out
            end
            start = skip_space(s, j + 1)
            i = start
        elseif b == B_RBRACE or b == B_RBRACK then
            depth = depth - 1
            i = j + 1
        else
            i = j + 1
        end
    end
end

-- Rebuilds an array text with fn(element_text, index, a, b) applied to each element; fn
-- returns the new text (or the same). Bytes between elements are kept. Passing a and b lets
-- hot callers use a plain function rather than a closure (which aborts LuaJIT traces).
function _M.map_elements(s, fn, a, b)
    local els, err = _M.elements(s)
    if not els then
        return nil, err
    end
    local parts, pos = {}, 1
    for n, e in ipairs(els) do
        parts[#parts + 1] = sub(s, pos, e.vstart - 1)
        parts[#parts + 1] = fn(sub(s, e.vstart, e.vend), n, a, b)
        pos = e.vend + 1
    end
    parts[#parts + 1] = sub(s, pos)
    return table.concat(parts)
end

-- The last member named key (JSON parsers keep the last of duplicates), or nil.
local function last_member(members, key)
    for n = #members, 1, -1 do
        if members[n].key == key then
            return members[n], n
        end
    end
end

-- The raw JSON text of a top-level member's value, or nil.
function _M.get_raw(s, key)
    local members, err = _M.members(s)
    if not members then
        return nil, err
    end
    local m = last_member(members, key)
    return m and sub(s, m.vstart, m.vend)
end

-- Sets a top-level member to raw JSON text: replaced in place when present, else appended.
function _M.set_raw(s, key, raw)
    local members, err = _M.members(s)
    if not members then
        return nil, err
    end
    local m = last_member(members, key)
    if m then
        return sub(s, 1, m.vstart - 1) .. raw .. sub(s, m.vend + 1)
    end
    local close = trim_back(s, #s)   -- the object's closing '}'
    local before = trim_back(s, close - 1)
    local comma = byte(s, before) == B_LBRACE and "" or ","
    return sub(s, 1, before) .. comma .. '"' .. key .. '":' .. raw .. sub(s, before + 1)
end

-- A request's edits, collected and then applied in one scan and one splice:
--   local ed = jsonbody.editor(body)
--   jsonbody.get(ed, "messages")          -- a member's raw value (the last of duplicates)
--   jsonbody.set(ed, "model", '"x"')      -- replace in place (the last of duplicates), or append
--   jsonbody.drop(ed, "store")            -- remove every member of that name
--   local out = jsonbody.apply(ed)        -- the body itself when nothing was edited
-- The result is byte for byte what the same set_raw/remove calls made one after another
-- would give, without re-scanning and re-copying the body for each of them.
function _M.editor(s)
    return { s = s, members = nil, action = {}, appends = {}, edited = false }
end

local function scanned(ed)
    local members = ed.members
    if not members then
        local err
        members, err = _M.members(ed.s)
        if not members then
            return nil, err
        end
        ed.members = members
        local last = {}
        for n = 1, #members do
            last[members[n].key] = n
        end
        ed.last = last   -- key -> index of its last member
    end
    return members
end

function _M.get(ed, key)
    local members, err = scanned(ed)
    if not members then
        return nil, err
    end
    local n = ed.last[key]
    return n and sub(ed.s, members[n].vstart, members[n].vend)
end

-- ed.action[key]: raw text for its last member, or false to drop all its members;
-- ed.appends: { key, raw } pairs for members added at the end, in order.
local function appended(ed, key)
    for i = 1, #ed.appends do
        if ed.appends[i][1] == key then
            return i
        end
    end
end

function _M.set(ed, key, raw)
    ed.edited = true
    local a = appended(ed, key)
    if a then
        ed.appends[a][2] = raw
    elseif scanned(ed) and ed.last[key] and ed.action[key] ~= false then
        ed.action[key] = raw
    else
        ed.appends[#ed.appends + 1] = { key, raw }
    end
end

function _M.drop(ed, key)
    local a = appended(ed, key)
    if a then
        table.remove(ed.appends, a)
    end
    if scanned(ed) and ed.last[key] then
        ed.action[key], ed.edited = false, true
    end
end

function _M.apply(ed)
    if not ed.edited then
        return ed.s
    end
    local s = ed.s
    local members, err = scanned(ed)
    if not members then
        return nil, err
    end
    local action, last = ed.action, ed.last
    -- No helper closure here: creating one would abort the LuaJIT trace on every request.
    local out, n = {}, 0
    local count = #members
    local kept = 0
    local head_end = count > 0 and members[1].kstart - 1 or trim_back(s, trim_back(s, #s) - 1)
    local tail_start = count > 0 and members[count].vend + 1 or head_end + 1
    local prev = 0   -- the last kept member: its separator goes before the next kept one
    for i = 1, count do
        local m = members[i]
        local a = action[m.key]
        if a ~= false then
            if prev > 0 then
                n = n + 1
                out[n] = sub(s, members[prev].vend + 1, members[prev + 1].kstart - 1)
            else
                n = n + 1
                out[n] = sub(s, 1, head_end)
            end
            if a and last[m.key] == i then
                n = n + 1
                out[n] = sub(s, m.kstart, m.vstart - 1)
                n = n + 1
                out[n] = a
            else
                n = n + 1
                out[n] = sub(s, m.kstart, m.vend)
            end
            kept, prev = kept + 1, i
        end
    end
    local appends = ed.appends
    if kept == 0 then
        -- Nothing left before the appends: they go right after the '{', as set_raw puts them.
        local brace = skip_space(s, 1)
        n = n + 1
        out[n] = sub(s, 1, brace)
        for i = 1, #appends do
            n = n + 1
            out[n] = (i > 1 and "," or "") .. '"' .. appends[i][1] .. '":' .. appends[i][2]
        end
        n = n + 1
        out[n] = sub(s, brace + 1, head_end)
    else
        for i = 1, #appends do
            n = n + 1
            out[n] = ',"' .. appends[i][1] .. '":' .. appends[i][2]
        end
    end
    n = n + 1
    out[n] = sub(s, tail_start)
    return concat(out, "", 1, n)
end

-- Removes every top-level member named key.
function _M.remove(s, key)
    local members, err = _M.members(s)
    if not members then
        return nil, err
    end
    for n = #members, 1, -1 do
        local m = members[n]
        if m.key == key then
            local prev = members[n - 1]
            if byte(s, m.sep) == B_COMMA then
                -- drop `"key": value,` up to the next key
                s = sub(s, 1, m.kstart - 1) .. sub(s, skip_space(s, m.sep + 1))
            elseif prev then
                -- last member: drop from the previous member's comma
                s = sub(s, 1, prev.vend) .. sub(s, m.vend + 1)
            else
                s = sub(s, 1, m.kstart - 1) .. sub(s, m.vend + 1)
            end
        end
    end
    return s
end

return _M
