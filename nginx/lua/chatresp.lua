-- Response shaping for chat completions: the same reasoning shape for every model, streamed
-- or not. Pure: state in a table, no ngx.* use.
--   local st = chatresp.new({ mode = "tags", thinking = true, output = "reasoning", hide_usage = true })
--   local data = chatresp.event(st, data)   -- one SSE `data:` payload; nil means drop it
--   local body = chatresp.body(st, body)    -- a whole non-streaming response
-- Streaming and non-streaming give the same text: the stream concatenated equals the body.
local cjson = require("cjson.safe")
local jsonbody = require("jsonbody")
local think = require("think")

local _M = { _VERSION = "0.1.0" }

local type, find, gsub = type, string.find, string.gsub
local null = cjson.null

local encode = jsonbody.encode

-- info: { mode = backend|tags|tags_at_start|none, thinking, output, hide_usage }
function _M.new(info)
    return {
        mode = info.mode or "none",
        start_inside = info.mode == "tags_at_start" and info.thinking ~= false,
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
        cs = { split = think.new(st.start_inside), content_started = false, reasoning_started = false }
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
    if st.mode == "tags" or st.mode == "tags_at_start" then
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

-- One streamed chunk. Returns the payload to send, or nil to drop it.
function _M.event(st, data)
    if st.mode == "none" and st.output == "reasoning_content" then
        -- Only the usage chunk may need to go: a cheap look before any decoding.
        if not (st.hide_usage and find(data, '"choices"%s*:%s*%[%s*%]')) then
            return data
        end
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
    local choices_raw = jsonbody.get_raw(data, "choices")
    choices_raw = jsonbody.map_elements(choices_raw, function(el, n)
        local choice = ev.choices[n]
        local delta = type(choice) == "table" and choice.delta
        if type(delta) ~= "table" then
            return el
        end
        local cs = choice_state(st, choice.index or n - 1)
        local final = choice.finish_reason ~= nil and choice.finish_reason ~= null
        local r, c = shape(st, cs, delta.content, reasoning_of(delta), final)
        local delta_raw = write(st, jsonbody.get_raw(el, "delta"), type(delta.content) == "string", r, c)
        return jsonbody.set_raw(el, "delta", delta_raw)
    end)
    return jsonbody.set_raw(data, "choices", choices_raw)
end

-- A whole chat.completion body.
function _M.body(st, body)
    local resp = cjson.decode(body)
    if type(resp) ~= "table" or type(resp.choices) ~= "table" or #resp.choices == 0 then
        return body
    end
    if type(resp.usage) == "table" then
        st.usage = resp.usage
    end
    local choices_raw = jsonbody.map_elements(jsonbody.get_raw(body, "choices"), function(el, n)
        local choice = resp.choices[n]
        local msg = type(choice) == "table" and choice.message
        if type(msg) ~= "table" then
            return el
        end
        local cs = choice_state(st, choice.index or n - 1)
        local r, c = shape(st, cs, msg.content, reasoning_of(msg), true)
        local msg_raw = write(st, jsonbody.get_raw(el, "message"), type(msg.content) == "string", r, c)
        return jsonbody.set_raw(el, "message", msg_raw)
    end)
    return jsonbody.set_raw(body, "choices", choices_raw)
end

return _M
