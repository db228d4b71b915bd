-- Response shaping for chat completions: the same reasoning shape for every model, streamed
-- or not. Pure: state in a table, no ngx.* use.
--   local st = chatresp.new({ mode = "tags", thinking = true, output = "reasoning", hide_usage = true })
--   local data = chatresp.event(st, data)   -- one SSE `data:` payload; nil means drop it
--   local body = chatresp.body(st, body)    -- a whole non-streaming response
-- Streaming and non-streaming give the same text: the stream concatenated equals the body.
local cjson = require("cjson.safe")
local jsonbody = require("jsonbody")
local think = require("think")
local sse = require("sse")

local _M = { _VERSION = "0.1.0" }

local type, find, gsub, byte, sub = type, string.find, string.gsub, string.byte, string.sub
local concat = table.concat
local null = cjson.null

local encode = jsonbody.encode

-- info: { mode = backend|tags|tags_at_start|none, thinking, output, hide_usage }
-- In mode backend, trtllm's reasoning parser has split the reasoning; if <think>/</think>
-- still reach `content` (a server started without the parser, a parser that missed), the
-- router splits them as tags mode would, so the answer has one shape whatever the backend did.
function _M.new(info)
    local mode = info.mode or "none"
    return {
        mode = mode,
        split = mode == "tags" or mode == "tags_at_start" or mode == "backend",
        start_inside = mode == "tags_at_start" and info.thinking ~= false,
        lone_close = mode == "backend",
        output = info.output or "reasoning_content",
        hide_usage = info.hide_usage,
        choices = {},
        usage = nil,   -- the usage the backend reported, also when hidden from the client
    }
end

-- Whether a response needs shaping at all (else the body filter passes bytes through).
function _M.needed(info)
    return (info.mode or "none") ~= "none" or info.hide_usage or (info.output or "reasoning_content") ~= "reasoning_content"
end

local function choice_state(st, index)
    local cs = st.choices[index]
    if not cs then
        cs = { split = think.new(st.start_inside, st.lone_close), content_started = false, reasoning_started = false }
        st.choices[index] = cs
    end
    return cs
end

-- Leading blank lines (the "\n\n" after </think>, the "\n" after <think>) are dropped
-- until a part has started.
local function trim_start(cs, key, text)
    if cs[key] or text == "" then
        return text
    end
    text = gsub(text, "^%s+", "")
    if text ~= "" then
        cs[key] = true
    end
    return text
end

-- Returns the reasoning and content this piece of a choice contributes.
local function shape(st, cs, content, reasoning, final)
    content = type(content) == "string" and content or ""
    reasoning = type(reasoning) == "string" and reasoning or ""
    if st.split then
        local r, c = think.feed(cs.split, content)
        reasoning, content = reasoning .. r, c
        if final then
            local r2, c2 = think.finish(cs.split)
            reasoning, content = reasoning .. r2, content .. c2
        end
    end
    return trim_start(cs, "reasoning_started", reasoning), trim_start(cs, "content_started", content)
end

-- Writes content and the reasoning fields into a message/delta object text.
local function write(st, obj_raw, had_content, reasoning, content)
    if had_content or content ~= "" then
        obj_raw = jsonbody.set_raw(obj_raw, "content", encode(content))
    end
    if st.output == "none" then
        obj_raw = jsonbody.remove(jsonbody.remove(obj_raw, "reasoning_content"), "reasoning")
    else
        obj_raw = jsonbody.set_raw(obj_raw, "reasoning_content", encode(reasoning))
        if st.output == "reasoning" then
            obj_raw = jsonbody.set_raw(obj_raw, "reasoning", encode(reasoning))
        else
            obj_raw = jsonbody.remove(obj_raw, "reasoning")
        end
    end
    return obj_raw
end

local function reasoning_of(obj)
    local r = obj.reasoning_content
    if type(r) ~= "string" then
        r = obj.reasoning
    end
    return r
end

-- Whether shaping would leave this event exactly as it is: recognised without decoding, by
-- plain finds on the keys of trtllm-serve's compact JSON (model_dump_json(exclude_none=True)
-- in tensorrt_llm/serve/postprocess_handlers.py): one choice whose delta carries both
-- "content" and "reasoning_content" as strings, no "reasoning" to mirror or drop, no '<' that
-- could be (part of) a think tag, nothing held by the splitter, and no leading blank to trim.
-- Updates the choice's state as event() would. `text` may be the raw event or its data.
-- Anything else (other JSON spacing too) returns false and goes through event().
local B_QUOTE, B_BSLASH = 34, 92
local function starts_clean(text, at)
    local b = byte(text, at)
    if b == B_QUOTE then
        return true, false          -- "" stays "", the part has not started
    end
    return b ~= B_BSLASH and b ~= 32 and b ~= 9 and b ~= 10 and b ~= 13, true
end

-- The "index" of the one choice, written before its "delta" at d (compact JSON), or nil.
local function choice_index(text, d)
    local ix = find(text, '{"index":', 1, true)
    if not ix or ix > d then
        return nil
    end
    local index, k = 0, ix + 9
    local b = byte(text, k)
    while b and b >= 48 and b <= 57 do
        index = index * 10 + b - 48
        k = k + 1
        b = byte(text, k)
    end
    if b ~= 44 or k == ix + 9 then   -- ',' after at least one digit
        return nil
    end
    return index
end

function _M.unchanged(st, text)
    if st.output ~= "reasoning_content" or find(text, "<", 1, true) or find(text, "\\u003", 1, true)
        or find(text, '"reasoning":', 1, true) then
        return false   -- '<' may also come escaped (\u003c), as some JSON encoders write it
    end
    local d = find(text, '"delta":{', 1, true)
    if not d or find(text, '"delta":{', d + 9, true) then
        return false
    end
    local index = choice_index(text, d)
    if not index then
        return false
    end
    local c = find(text, '"content":"', d, true)
    local r = find(text, '"reasoning_content":"', d, true)
    if not c or not r then
        return false
    end
    local cs = choice_state(st, index)
    if cs.split.held ~= "" or cs.split.phase == "inside" then
        return false
    end
    local c_ok, c_text = true, false
    if not cs.content_started then
        c_ok, c_text = starts_clean(text, c + 11)
    end
    local r_ok, r_text = true, false
    if not cs.reasoning_started then
        r_ok, r_text = starts_clean(text, r + 21)
    end
    if not (c_ok and r_ok) then
        return false
    end
    if c_text then
        cs.content_started = true
    end
    if r_text then
        cs.reasoning_started = true
    end
    return true
end

-- The members of a delta object at i ('{') when every value is a string or null, as
-- trtllm-serve writes content/reasoning_content/role: { key, vs, ve } and the index of its
-- '}'; nil for anything else (nested values, spaces), which takes the decoding path.
local string_end = jsonbody.string_end
local function flat_members(text, i)
    local members, pos = {}, i + 1
    if byte(text, pos) == 125 then
        return members, pos
    end
    while true do
        if byte(text, pos) ~= B_QUOTE then
            return nil
        end
        local ke = string_end(text, pos)
        if not ke or byte(text, ke + 1) ~= 58 then
            return nil
        end
        local vs, ve = ke + 2, nil
        local b = byte(text, vs)
        if b == B_QUOTE then
            ve = string_end(text, vs)
        elseif b == 110 and sub(text, vs, vs + 3) == "null" then
            ve = vs + 3
        end
        if not ve then
            return nil
        end
        members[#members + 1] = { key = sub(text, pos + 1, ke - 1), vs = vs, ve = ve }
        b = byte(text, ve + 1)
        if b == 125 then
            return members, ve + 1
        elseif b ~= 44 then
            return nil
        end
        pos = ve + 2
    end
end

-- A string member's text (nil for null): its raw bytes unless it holds escapes.
local function text_of(data, m)
    if not m or byte(data, m.vs) ~= B_QUOTE then
        return nil
    end
    local inner = sub(data, m.vs + 1, m.ve - 1)
    if find(inner, "\\", 1, true) then
        return cjson.decode('"' .. inner .. '"')
    end
    return inner
end

-- An event of trtllm-serve's compact one-choice shape, reshaped by splicing its delta's values:
-- the same bytes event() would write, without decoding the event. nil: not that shape.
local function splice_event(st, data)
    if st.output ~= "reasoning_content" or find(data, '"usage":{', 1, true) then
        return nil
    end
    local d = find(data, '"delta":{', 1, true)
    if not d or find(data, '"delta":{', d + 9, true) then
        return nil
    end
    local index = choice_index(data, d)
    local members, close = flat_members(data, d + 8)
    if not index or not members then
        return nil
    end
    local cm, rm
    for i = 1, #members do   -- the last of duplicates wins, as in set_raw
        local key = members[i].key
        if key == "content" then
            cm = members[i]
        elseif key == "reasoning_content" then
            rm = members[i]
        elseif key == "reasoning" then
            return nil
        end
    end
    local f = find(data, '"finish_reason":', close, true)
    local final = f ~= nil and byte(data, f + 16) == B_QUOTE
    local content, reasoning = text_of(data, cm), text_of(data, rm)
    local had_content = content ~= nil
    local r, c = shape(st, choice_state(st, index), content, reasoning, final)
    local c_raw = (had_content or c ~= "") and (c == content and sub(data, cm.vs, cm.ve) or encode(c)) or nil
    local r_raw = (rm and r == reasoning) and sub(data, rm.vs, rm.ve) or encode(r)
    if cm and rm and cm.vs > rm.vs then
        return nil   -- reasoning_content first: rare, left to event()
    end
    local out, n, pos = {}, 0, 1   -- pos: the next byte of data to copy
    if cm and c_raw then
        out[1], out[2], n, pos = sub(data, pos, cm.vs - 1), c_raw, 2, cm.ve + 1
    end
    if rm then
        out[n + 1], out[n + 2], n, pos = sub(data, pos, rm.vs - 1), r_raw, n + 2, rm.ve + 1
    end
    out[n + 1] = sub(data, pos, close - 1)
    n = n + 1
    local empty = #members == 0
    if not cm and c_raw then
        out[n + 1], n, empty = (empty and "" or ",") .. '"content":' .. c_raw, n + 1, false
    end
    if not rm then
        out[n + 1], n = (empty and "" or ",") .. '"reasoning_content":' .. r_raw, n + 1
    end
    out[n + 1] = sub(data, close)
    return concat(out, "", 1, n + 1)
end

-- One element of "choices", its `key` object ("delta" or "message") shaped.
local function shape_choice(el, n, st, choices, key)
    local choice = choices[n]
    local obj = type(choice) == "table" and choice[key]
    if type(obj) ~= "table" then
        return el
    end
    local cs = choice_state(st, choice.index or n - 1)
    local final = key == "message" or (choice.finish_reason ~= nil and choice.finish_reason ~= null)
    local r, c = shape(st, cs, obj.content, reasoning_of(obj), final)
    return jsonbody.set_raw(el, key, write(st, jsonbody.get_raw(el, key), type(obj.content) == "string", r, c))
end

-- jsonbody.map_elements callbacks (plain functions: a closure per event would abort traces).
local function shape_delta(el, n, st, choices)
    return shape_choice(el, n, st, choices, "delta")
end

local function shape_message(el, n, st, choices)
    return shape_choice(el, n, st, choices, "message")
end

-- One streamed chunk. Returns the payload to send, or nil to drop it.
function _M.event(st, data)
    if st.mode == "none" and st.output == "reasoning_content" then
        -- Only the usage chunk may need to go: a cheap look before any decoding.
        if not (st.hide_usage and find(data, '"choices"%s*:%s*%[%s*%]')) then
            return data
        end
    end
    local spliced = splice_event(st, data)
    if spliced then
        return spliced
    end
    local ev = cjson.decode(data)
    if type(ev) ~= "table" or type(ev.choices) ~= "table" then
        return data
    end
    if type(ev.usage) == "table" then
        st.usage = ev.usage
    end
    if #ev.choices == 0 then
        if st.hide_usage and type(ev.usage) == "table" then
            return nil
        end
        return data
    end
    if st.mode == "none" and st.output == "reasoning_content" then
        return data
    end
    local choices_raw = jsonbody.map_elements(jsonbody.get_raw(data, "choices"), shape_delta, st, ev.choices)
    return jsonbody.set_raw(data, "choices", choices_raw)
end

-- Shapes the n complete events the framer fr holds after sse.feed(fr, chunk): returns the
-- bytes to send, or nil when they are exactly the chunk (every event unchanged, nothing held
-- back). observe(m, raw), when given, sees every event first (metrics read the same events).
function _M.events(st, fr, n, chunk, observe, m)
    local out, kept = nil, 0   -- out: the pieces once one event changed
    for i = 1, n do
        local raw = sse.raw(fr, i)
        if observe then
            observe(m, raw)
        end
        local new = raw
        if not _M.unchanged(st, raw) then
            local data = sse.data(fr, i)
            if data ~= nil and data ~= "[DONE]" then
                local shaped = _M.event(st, data)
                if shaped ~= data then
                    new = shaped and sse.encode(shaped) or false
                end
            end
        end
        if new ~= raw and not out then
            out = {}
            for j = 1, i - 1 do
                out[j] = sse.raw(fr, j)
            end
            kept = i - 1
        end
        if out and new then
            kept = kept + 1
            out[kept] = new
        end
    end
    if out then
        return concat(out, "", 1, kept)
    end
    if fr.held == "" and fr.text == chunk then
        return nil
    end
    -- Held bytes: an event began in an earlier chunk, or this one ends inside an event.
    return n > 0 and sub(fr.text, 1, fr.last[n]) or ""
end

-- Whether shaping would leave a whole chat.completion body as it is (see unchanged()).
local function body_unchanged(st, body)
    -- "think", not "<think>": the tags may come JSON-escaped (<\/think>, \u003cthink\u003e).
    if st.output ~= "reasoning_content" or st.start_inside or find(body, "think", 1, true)
        or find(body, '"reasoning":', 1, true) then
        return false
    end
    local m = find(body, '"message":{', 1, true)
    if not m or find(body, '"message":{', m + 11, true) then
        return false
    end
    local c = find(body, '"content":"', m, true)
    local r = find(body, '"reasoning_content":"', m, true)
    return c ~= nil and r ~= nil and (starts_clean(body, c + 11)) and (starts_clean(body, r + 21))
end

local function reshape_body(st, body)
    local resp = cjson.decode(body)
    if type(resp) ~= "table" or type(resp.choices) ~= "table" or #resp.choices == 0 then
        return body
    end
    if type(resp.usage) == "table" then
        st.usage = resp.usage
    end
    local choices_raw = jsonbody.map_elements(jsonbody.get_raw(body, "choices"), shape_message, st, resp.choices)
    return jsonbody.set_raw(body, "choices", choices_raw)
end

-- A whole chat.completion body.
function _M.body(st, body)
    if body_unchanged(st, body) then
        return body
    end
    return reshape_body(st, body)
end

return _M
