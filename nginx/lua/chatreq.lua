-- Request rewriting toward trtllm-serve: one thinking switch for every model, fields the
-- backend would reject, sampling defaults, usage always requested. Pure: no ngx.* use.
-- Edits are surgical: collected on a jsonbody editor (one scan of the body) and applied by
-- the caller in one splice; every field the router does not own keeps its bytes. Decisions
-- read the request already decoded once (req); nothing here decodes again.
--
-- Thinking precedence, first that applies:
--   1. chat_template_kwargs.enable_thinking (true/false)
--   2. reasoning_effort: none/minimal -> off; low/medium/high -> on
--   3. /think or /no_think at the end of the last user message
--   4. /think or /no_think at the end of the system (or developer) message
--   5. the model's default (registry reasoning.thinking_default)
-- A variant's fixed setting (model `qwen-nothink`) overrules all of them: the name says it.
local cjson = require("cjson.safe")
local jsonbody = require("jsonbody")

local _M = { _VERSION = "0.1.0" }

local type, ipairs, tostring = type, ipairs, tostring
local match = string.match
local null = cjson.null

local EFFORT = { none = false, minimal = false, low = true, medium = true, high = true }
local CHAT_SAMPLING = { "temperature", "top_p", "top_k" }
local RESPONSES_SAMPLING = { "temperature", "top_p" }   -- ResponsesRequest has no top_k

local encode = jsonbody.encode

-- "... /no_think" -> false, "... /think" -> true, else nil; and the text without the switch.
local function soft_switch(text)
    if type(text) ~= "string" then
        return nil
    end
    local head = match(text, "^(.-)%s*/no_think%s*$")
    if head then
        return false, head
    end
    head = match(text, "^(.-)%s*/think%s*$")
    if head then
        return true, head
    end
    return nil
end

-- The text a switch would sit in: a string content, or the last text part of an array.
local function last_text(content)
    if type(content) == "string" then
        return content, nil
    end
    if type(content) == "table" then
        for i = #content, 1, -1 do
            local part = content[i]
            if type(part) == "table" and part.type == "text" and type(part.text) == "string" then
                return part.text, i
            end
        end
    end
    return nil
end

local function find_switches(messages)
    local user_i, system_i
    for i, m in ipairs(messages) do
        if type(m) == "table" then
            if m.role == "user" then
                user_i = i
            elseif (m.role == "system" or m.role == "developer") and not system_i then
                system_i = i
            end
        end
    end
    local found = {}
    for _, i in ipairs({ user_i, system_i }) do
        local text, part = last_text(messages[i].content)
        local on, rest = soft_switch(text)
        if on ~= nil then
            found[#found + 1] = { index = i, part = part, on = on, rest = rest }
        end
    end
    return found
end

-- Replaces the switch-bearing text of one message element (raw JSON text).
local function strip_switch(msg_raw, sw)
    if not sw.part then
        return jsonbody.set_raw(msg_raw, "content", encode(sw.rest))
    end
    local content = jsonbody.get_raw(msg_raw, "content")
    content = jsonbody.map_elements(content, function(el, n)
        if n ~= sw.part then
            return el
        end
        return jsonbody.set_raw(el, "text", encode(sw.rest))
    end)
    return jsonbody.set_raw(msg_raw, "content", content)
end

-- Switch text stripped and echoed reasoning removed, element by element. A function of its
-- own: the closure it makes would abort the LuaJIT trace of rewrite() on every request.
local function edit_messages(ed, messages, strip)
    local raw = jsonbody.map_elements(jsonbody.get(ed, "messages"), function(el, n)
        local m = messages[n]
        if strip[n] then
            el = strip_switch(el, strip[n])
        end
        if type(m) == "table" and m.role == "assistant" then
            if m.reasoning_content ~= nil then
                el = jsonbody.remove(el, "reasoning_content")
            end
            if m.reasoning ~= nil then
                el = jsonbody.remove(el, "reasoning")
            end
        end
        return el
    end)
    jsonbody.set(ed, "messages", raw)
end

local function set_in_object(ed, key, inner_key, raw_value)
    local current = jsonbody.get(ed, key)
    if current and current ~= "null" then
        return jsonbody.set(ed, key, jsonbody.set_raw(current, inner_key, raw_value))
    end
    return jsonbody.set(ed, key, "{" .. encode(inner_key) .. ":" .. raw_value .. "}")
end

-- The model card's sampling values for the thinking mode, where the request sets none.
local function sampling_defaults(ed, req, reasoning, thinking, keys)
    local sampling = thinking and reasoning.sampling_thinking or reasoning.sampling_non_thinking
    for _, key in ipairs(keys) do
        local v = sampling and sampling[key]
        if v ~= nil and (req[key] == nil or req[key] == null) then
            jsonbody.set(ed, key, tostring(v))
        end
    end
end

-- ed: jsonbody.editor of the body; kind: "chat" or "completions"; variant: the registry variant
-- the request named, or nil. req has passed reqcheck.check (field types), which the edits
-- below rely on (an array where an object is edited would fail in jsonbody).
-- Returns info: { thinking, output, stream, hide_usage }.
function _M.rewrite(ed, req, model, kind, variant)
    local reasoning = model.reasoning or {}
    local info = { stream = req.stream == true, hide_usage = false, output = reasoning.output or "reasoning_content" }

    -- Router-only fields: how reasoning is presented.
    local fmt = req.reasoning_format
    if fmt ~= nil then
        info.output = fmt
        jsonbody.drop(ed, "reasoning_format")
    end
    if req.include_reasoning ~= nil then
        if req.include_reasoning == false then
            info.output = "none"
        end
        jsonbody.drop(ed, "include_reasoning")
    end

    for _, name in ipairs((model.request or {}).drop or {}) do
        if req[name] ~= nil then
            jsonbody.drop(ed, name)
        end
    end

    if info.stream then
        local so = req.stream_options
        if type(so) ~= "table" or so.include_usage ~= true then
            -- Usage is always asked for upstream; the usage chunk is hidden from this client.
            info.hide_usage = true
            set_in_object(ed, "stream_options", "include_usage", "true")
        end
    elseif req.stream_options ~= nil then
        jsonbody.drop(ed, "stream_options")   -- trtllm-serve 400s it without stream
    end

    if kind ~= "chat" then
        return info
    end

    local messages = req.messages
    if type(messages) ~= "table" then
        return info   -- trtllm-serve answers the missing/invalid field itself
    end

    -- The switch, in order of precedence.
    local thinking
    local ctk = req.chat_template_kwargs
    if type(ctk) == "table" and ctk.enable_thinking ~= nil and ctk.enable_thinking ~= null then
        thinking = ctk.enable_thinking
    end
    local effort = req.reasoning_effort
    if effort ~= nil and effort ~= null then
        if thinking == nil then
            thinking = EFFORT[effort]
        end
    end
    if effort ~= nil then
        -- trtllm-serve accepts only low/medium/high and applies it to GPT-OSS alone.
        jsonbody.drop(ed, "reasoning_effort")
    end
    local switches = find_switches(messages)
    if thinking == nil and switches[1] then
        thinking = switches[1].on
    end
    if variant and variant.thinking ~= nil then
        thinking = variant.thinking
    end

    -- Messages: switch text the template does not understand, or that a switch of higher
    -- precedence overrules (Qwen would obey the text), and reasoning echoed back.
    local strip, touch = {}, false
    for _, sw in ipairs(switches) do
        if not reasoning.soft_switch or sw.on ~= thinking then
            strip[sw.index], touch = sw, true
        end
    end
    for _, m in ipairs(messages) do
        if type(m) == "table" and m.role == "assistant" and (m.reasoning_content ~= nil or m.reasoning ~= nil) then
            touch = true
        end
    end
    if touch then
        edit_messages(ed, messages, strip)
    end

    if thinking ~= nil and (reasoning.mode or "none") ~= "none" then
        -- The template and trtllm's parser both read this (docs/trtllm.md).
        set_in_object(ed, "chat_template_kwargs", "enable_thinking", tostring(thinking))
    end
    if thinking == nil then
        thinking = reasoning.thinking_default ~= false
    end
    info.thinking = thinking

    sampling_defaults(ed, req, reasoning, thinking, CHAT_SAMPLING)

    if (model.request or {}).tool_choice_auto and type(req.tools) == "table" and #req.tools > 0
        and (req.tool_choice == nil or req.tool_choice == null) then
        jsonbody.set(ed, "tool_choice", '"auto"')
    end
    return info
end

-- /v1/responses: trtllm-serve's Responses API applies the chat template without
-- chat_template_kwargs (responses_utils.py _create_input_tokens, docs/trtllm.md), so the switch
-- a request can carry is the template's own text one: /think or /no_think closing
-- `instructions` (the system message; Qwen3 reads it there as in a user message). The wish is
-- reasoning.effort (none/minimal -> off), overruled by a variant; sampling defaults as for chat
-- (RESPONSES_SAMPLING). Returns info { thinking }, or nil and an error
-- for a model that cannot be switched this way.
function _M.rewrite_responses(ed, req, model, variant)
    local reasoning = model.reasoning or {}
    if (reasoning.mode or "none") == "none" then
        return {}
    end
    local thinking, param
    local effort = type(req.reasoning) == "table" and req.reasoning.effort or nil
    if type(effort) == "string" and EFFORT[effort] ~= nil then
        thinking, param = EFFORT[effort], "reasoning"
    end
    if variant and variant.thinking ~= nil then
        thinking, param = variant.thinking, "model"
    end
    local default = reasoning.thinking_default ~= false
    if thinking == nil then
        thinking = default
    end
    if thinking ~= default then
        if not reasoning.soft_switch then
            return nil, { status = 400, param = param, code = "thinking_switch_unsupported",
                message = "Thinking cannot be turned " .. (thinking and "on" or "off") .. " for '" .. model.id
                    .. "' on /v1/responses: trtllm-serve's Responses API takes no chat_template_kwargs and this "
                    .. "model's template has no /no_think; use /v1/chat/completions or /v1/messages" }
        end
        local instructions = type(req.instructions) == "string" and req.instructions or ""
        local sep = (instructions == "" or match(instructions, "\n$")) and "" or "\n"
        jsonbody.set(ed, "instructions", encode(instructions .. sep .. (thinking and "/think" or "/no_think")))
    end
    sampling_defaults(ed, req, reasoning, thinking, RESPONSES_SAMPLING)
    return { thinking = thinking }
end

return _M
