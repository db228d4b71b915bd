-- The Anthropic Messages API on top of chat completions. Pure: state in tables, no ngx.* use.
--   local chat, info = anthropic.request(body, req, model)   -- Messages request -> chat body text
--   local text = anthropic.response(body, info)              -- chat.completion -> Message
--   local st = anthropic.stream_new(info)
--   local out = anthropic.stream_event(st, data)   -- one chat SSE `data:` payload -> Anthropic events
--   local out = anthropic.translate(st, fr, n, shape)  -- the framer's n events, shaped first
--   local out = anthropic.stream_end(st)           -- end of the upstream body
--   local text = anthropic.count_response(body)    -- max_tokens=1 chat.completion -> {"input_tokens"}
-- Mapping choices (README "Anthropic Messages API"); field shapes follow the anthropic Python
-- SDK's types and its stream accumulator (lib/streaming/_messages.py), and the request and
-- stop-reason mapping follows trtllm-serve's own adapter (tensorrt_llm/serve/anthropic_adapter.py,
-- after 1.3.0rc13) where the pinned backend allows it.
-- Events and bodies are built as strings: Debian's cjson loses key order and writes [] as {},
-- and a client's tool inputs and schemas are copied as the bytes it sent (jsonbody).
local cjson = require("cjson.safe")
local jsonbody = require("jsonbody")
local sse = require("sse")

local _M = { _VERSION = "0.1.0" }

local type, ipairs, tostring, concat = type, ipairs, tostring, table.concat
local find, sub, gsub, match = string.find, string.sub, string.gsub, string.match
local null = cjson.null
local decode = cjson.decode

local str = jsonbody.encode

local function bad(message, status, etype)
    return { status = status or 400, type = etype or "invalid_request_error", message = message }
end

-- Anthropic's error types by HTTP status (docs.anthropic.com "Errors"; SDK _exceptions.py).
local ERROR_TYPES = {
    [400] = "invalid_request_error", [401] = "authentication_error", [403] = "permission_error",
    [404] = "not_found_error", [405] = "invalid_request_error", [413] = "request_too_large",
    [429] = "rate_limit_error", [500] = "api_error", [502] = "api_error", [503] = "overloaded_error",
    [504] = "api_error", [529] = "overloaded_error",
}

function _M.error_type(status)
    return ERROR_TYPES[status] or (status >= 500 and "api_error" or "invalid_request_error")
end

-- The router's own refusals on the Anthropic endpoints: a model still loading is 529
-- overloaded_error (what Anthropic clients retry, honouring Retry-After); the rest keep their
-- status with Anthropic's type for it.
function _M.router_error(status, code)
    if code == "model_starting" then
        return 529, "overloaded_error"
    end
    if status == 503 then
        return 503, "api_error"
    end
    return status, _M.error_type(status)
end

function _M.error_body(etype, message)
    return '{"type":"error","error":{"type":' .. str(etype) .. ',"message":' .. str(message) .. '}}'
end

---------------------------------------------------------------------------------------------
-- Request: Messages -> chat completions

local THINKING_MIN_BUDGET = 1024   -- the hosted API's floor for budget_tokens

-- Claude Code's per-request telemetry block (first system block): it changes every request and
-- would defeat prefix caching (trtllm's anthropic_adapter.py strips it the same way).
local function is_billing_block(text)
    return find(text, "^x%-anthropic%-billing%-header:") ~= nil
end

local function is_int(v)
    return type(v) == "number" and v == math.floor(v)
end

-- Raw texts of an array's elements, or of an object's member; nil when absent.
local function raw_elements(raw)
    if not raw then
        return {}
    end
    local els = jsonbody.elements(raw)
    local out = {}
    for i, e in ipairs(els or {}) do
        out[i] = sub(raw, e.vstart, e.vend)
    end
    return out
end

local function text_of_blocks(blocks, where)
    if type(blocks) == "string" then
        return blocks
    end
    if type(blocks) ~= "table" then
        return nil, bad(where .. ": content must be a string or a list of content blocks")
    end
    local parts = {}
    for _, b in ipairs(blocks) do
        if type(b) ~= "table" or b.type ~= "text" or type(b.text) ~= "string" then
            local t = type(b) == "table" and tostring(b.type) or type(b)
            if t == "image" or t == "document" then
                return nil, bad(where .. ": " .. t .. " content is not supported: no model served here takes images or documents")
            end
            return nil, bad(where .. ": only text blocks are supported here, got '" .. t .. "'")
        end
        parts[#parts + 1] = b.text
    end
    return concat(parts, "\n")
end

local function refuse_block(where, btype)
    if btype == "image" or btype == "document" then
        return bad(where .. ": " .. btype .. " content is not supported: no model served here takes images or documents")
    end
    return bad(where .. ": content block type '" .. tostring(btype) .. "' is not supported")
end

-- One Anthropic message -> chat messages appended to out (raw JSON texts).
local function convert_message(m, m_raw, i, out)
    local where = "messages." .. (i - 1)
    if type(m) ~= "table" then
        return bad(where .. ": must be an object")
    end
    local role = m.role
    if role ~= "user" and role ~= "assistant" then
        return bad(where .. ".role: must be 'user' or 'assistant'")
    end
    local content = m.content
    if type(content) == "string" then
        out[#out + 1] = '{"role":"' .. role .. '","content":' .. str(content) .. '}'
        return
    end
    if type(content) ~= "table" then
        return bad(where .. ".content: must be a string or a list of content blocks")
    end
    local blocks_raw = raw_elements(jsonbody.get_raw(m_raw, "content"))
    local texts, calls = {}, {}
    local function flush_texts()
        if #texts == 1 then
            out[#out + 1] = '{"role":"' .. role .. '","content":' .. str(texts[1]) .. '}'
        elseif #texts > 1 then
            local parts = {}
            for k, t in ipairs(texts) do
                parts[k] = '{"type":"text","text":' .. str(t) .. '}'
            end
            out[#out + 1] = '{"role":"' .. role .. '","content":[' .. concat(parts, ",") .. ']}'
        end
        texts = {}
    end
    for j, b in ipairs(content) do
        local bwhere = where .. ".content." .. (j - 1)
        local btype = type(b) == "table" and b.type or nil
        if btype == "text" then
            if type(b.text) ~= "string" then
                return bad(bwhere .. ".text: must be a string")
            end
            texts[#texts + 1] = b.text
        elseif btype == "tool_use" and role == "assistant" then
            if type(b.id) ~= "string" or type(b.name) ~= "string" or type(b.input) ~= "table" then
                return bad(bwhere .. ": tool_use needs a string id and name and an object input")
            end
            local input = jsonbody.get_raw(blocks_raw[j], "input")
            calls[#calls + 1] = '{"id":' .. str(b.id) .. ',"type":"function","function":{"name":'
                .. str(b.name) .. ',"arguments":' .. str(input) .. '}}'
        elseif btype == "tool_result" and role == "user" then
            if type(b.tool_use_id) ~= "string" then
                return bad(bwhere .. ".tool_use_id: must be a string")
            end
            local text, err = text_of_blocks(b.content == nil and "" or b.content, bwhere)
            if not text then
                return err
            end
            if b.is_error == true then
                text = "Tool execution failed: " .. text
            end
            flush_texts()
            out[#out + 1] = '{"role":"tool","tool_call_id":' .. str(b.tool_use_id) .. ',"content":' .. str(text) .. '}'
        elseif (btype == "thinking" or btype == "redacted_thinking") and role == "assistant" then
            -- Earlier reasoning is not sent back: both chat templates drop it from past turns.
        else
            if btype == "tool_use" or btype == "tool_result" or btype == "thinking" then
                return bad(bwhere .. ": a " .. btype .. " block cannot appear in a " .. role .. " message")
            end
            return refuse_block(bwhere, btype)
        end
    end
    if #calls > 0 then
        out[#out + 1] = '{"role":"assistant","content":' .. str(concat(texts)) .. ',"tool_calls":['
            .. concat(calls, ",") .. ']}'
    else
        flush_texts()
    end
end

local function convert_system(system)
    if system == nil or system == null then
        return nil
    end
    if type(system) == "string" then
        return system
    end
    if type(system) ~= "table" then
        return nil, bad("system: must be a string or a list of text blocks")
    end
    local parts = {}
    for j, b in ipairs(system) do
        if type(b) ~= "table" or b.type ~= "text" or type(b.text) ~= "string" then
            return nil, bad("system." .. (j - 1) .. ": only text blocks are supported")
        end
        if not (j == 1 and is_billing_block(b.text)) and b.text ~= "" then
            parts[#parts + 1] = b.text
        end
    end
    return concat(parts, "\n\n")
end

-- Anthropic tools -> chat tools; server tools (web search, code execution...) run at Anthropic.
local function convert_tools(tools, tools_raw, only)
    local out = {}
    for j, t in ipairs(tools) do
        local where = "tools." .. (j - 1)
        if type(t) ~= "table" or type(t.name) ~= "string" then
            return nil, bad(where .. ".name: must be a string")
        end
        if t.type ~= nil and t.type ~= null and t.type ~= "custom" then
            return nil, bad(where .. ": server tool '" .. tostring(t.type) .. "' is not supported here; "
                .. "give client tools with an input_schema")
        end
        if type(t.input_schema) ~= "table" then
            return nil, bad(where .. ".input_schema: must be a JSON schema object")
        end
        if not only or t.name == only then
            local desc = (type(t.description) == "string") and (',"description":' .. str(t.description)) or ""
            out[#out + 1] = '{"type":"function","function":{"name":' .. str(t.name) .. desc
                .. ',"parameters":' .. jsonbody.get_raw(tools_raw[j], "input_schema") .. '}}'
        end
    end
    return out
end

-- body: the request text; req: it decoded; model: the registry entry.
-- Returns the chat body text and info { stream, thinking, model }, or nil and
-- { status, type, message }.
function _M.request(body, req, model, count_only)
    if not count_only and (not is_int(req.max_tokens) or req.max_tokens < 1) then
        return nil, bad("max_tokens: must be a positive integer")
    end
    local messages = req.messages
    if type(messages) ~= "table" or #messages == 0 then
        return nil, bad("messages: must be a non-empty list")
    end
    local out, err = {}, nil
    local system
    system, err = convert_system(req.system)
    if err then
        return nil, err
    end
    if system and system ~= "" then
        out[1] = '{"role":"system","content":' .. str(system) .. '}'
    end
    local msgs_raw = raw_elements(jsonbody.get_raw(body, "messages"))
    for i, m in ipairs(messages) do
        err = convert_message(m, msgs_raw[i], i, out)
        if err then
            return nil, err
        end
    end

    local fields = { '"model":' .. jsonbody.get_raw(body, "model"), '"messages":[' .. concat(out, ",") .. ']' }
    local stream = req.stream == true and not count_only
    if count_only then
        fields[#fields + 1] = '"max_tokens":1'
    else
        fields[#fields + 1] = '"max_tokens":' .. jsonbody.get_raw(body, "max_tokens")
    end
    fields[#fields + 1] = '"stream":' .. tostring(stream)
    for _, key in ipairs({ "temperature", "top_p", "top_k" }) do
        local v = req[key]
        if v ~= nil and v ~= null then
            if type(v) ~= "number" then
                return nil, bad(key .. ": must be a number")
            end
            if not count_only then
                fields[#fields + 1] = '"' .. key .. '":' .. jsonbody.get_raw(body, key)
            end
        end
    end
    local stops = req.stop_sequences
    if stops ~= nil and stops ~= null then
        if type(stops) ~= "table" then
            return nil, bad("stop_sequences: must be a list of strings")
        end
        for _, s in ipairs(stops) do
            if type(s) ~= "string" then
                return nil, bad("stop_sequences: must be a list of strings")
            end
        end
        if #stops > 0 and not count_only then
            fields[#fields + 1] = '"stop":' .. jsonbody.get_raw(body, "stop_sequences")
        end
    end

    -- Tools and tool_choice. trtllm-serve 1.3.0rc13 knows "auto", "none" and no "required":
    -- `any` becomes "auto" (the model may still answer in text; stop_reason says which), and
    -- `tool` sends only the named tool, with "auto".
    local tools, choice = req.tools, req.tool_choice
    local only, tc
    if choice ~= nil and choice ~= null then
        if type(choice) ~= "table" or type(choice.type) ~= "string" then
            return nil, bad("tool_choice: must be an object with a type")
        end
        if choice.type == "tool" then
            if type(choice.name) ~= "string" then
                return nil, bad("tool_choice.name: required when tool_choice.type is 'tool'")
            end
            only, tc = choice.name, "auto"
        elseif choice.type == "any" or choice.type == "auto" then
            tc = "auto"
        elseif choice.type == "none" then
            tc = "none"
        else
            return nil, bad("tool_choice.type: must be one of auto, any, tool, none")
        end
    end
    if tools ~= nil and tools ~= null then
        if type(tools) ~= "table" then
            return nil, bad("tools: must be a list")
        end
        if #tools > 0 then
            local chat_tools
            chat_tools, err = convert_tools(tools, raw_elements(jsonbody.get_raw(body, "tools")), only)
            if not chat_tools then
                return nil, err
            end
            if #chat_tools == 0 then
                return nil, bad("tool_choice.name: no tool named '" .. only .. "' in tools")
            end
            fields[#fields + 1] = '"tools":[' .. concat(chat_tools, ",") .. ']'
            fields[#fields + 1] = '"tool_choice":"' .. (tc or "auto") .. '"'
        end
    elseif only then
        return nil, bad("tool_choice: type 'tool' needs tools")
    end

    -- Thinking: Anthropic's default is off; `enabled` (with budget_tokens) or `adaptive` turn it
    -- on. The pinned backend has no thinking budget: budget_tokens is checked as the hosted API
    -- checks it, and max_tokens bounds thinking and answer together, as it does there.
    local thinking = false
    local th = req.thinking
    if th ~= nil and th ~= null then
        if type(th) ~= "table" then
            return nil, bad("thinking: must be an object")
        end
        if th.type == "enabled" then
            if not is_int(th.budget_tokens) or th.budget_tokens < THINKING_MIN_BUDGET then
                return nil, bad("thinking.budget_tokens: must be an integer >= " .. THINKING_MIN_BUDGET)
            end
            if not count_only and th.budget_tokens >= req.max_tokens then
                return nil, bad("thinking.budget_tokens: must be less than max_tokens")
            end
            thinking = true
        elseif th.type == "adaptive" then
            thinking = true
        elseif th.type ~= "disabled" then
            return nil, bad("thinking.type: must be one of enabled, disabled, adaptive")
        end
    end
    local mode = model.reasoning and model.reasoning.mode or "none"
    if mode ~= "none" then
        fields[#fields + 1] = '"chat_template_kwargs":{"enable_thinking":' .. tostring(thinking) .. '}'
    end
    return "{" .. concat(fields, ",") .. "}", { stream = stream, thinking = thinking, count = count_only }
end

---------------------------------------------------------------------------------------------
-- Response: chat.completion -> Message

local STOP_REASONS = { stop = "end_turn", length = "max_tokens", tool_calls = "tool_use" }

-- finish_reason + trtllm's stop_reason (the matched stop string, or a stop token id).
local function stop_result(finish, matched, used_tools)
    local reason = STOP_REASONS[finish] or "end_turn"
    if reason == "tool_use" and not used_tools then
        reason = "end_turn"   -- no call survived parsing: the turn is over
    end
    local seq
    if finish == "stop" and type(matched) == "string" then
        reason, seq = "stop_sequence", matched
    end
    -- A turn with tool_use blocks must say tool_use or the client's loop never runs the tools;
    -- a truncated one stays max_tokens.
    if used_tools and reason ~= "max_tokens" then
        reason, seq = "tool_use", nil
    end
    return reason, seq
end

-- "chatcmpl-abc" -> "msg_abc"; "chatcmpl-tool-abc" -> "toolu_abc".
local function message_id(id)
    id = type(id) == "string" and id or "router"
    return "msg_" .. (match(id, "^chatcmpl%-(.+)$") or id)
end

local function tool_id(id, n)
    if type(id) ~= "string" then
        return "toolu_" .. n
    end
    if find(id, "^toolu_") then
        return id
    end
    return "toolu_" .. (match(id, "^chatcmpl%-tool%-(.+)$") or id)
end

local function usage_json(u)
    u = type(u) == "table" and u or {}
    local input = is_int(u.prompt_tokens) and u.prompt_tokens or 0
    local output = is_int(u.completion_tokens) and u.completion_tokens or 0
    return '{"input_tokens":' .. input .. ',"output_tokens":' .. output .. '}'
end

local function block_text(btype, text)
    if btype == "thinking" then
        return '{"type":"thinking","thinking":' .. str(text) .. ',"signature":""}'
    end
    return '{"type":"text","text":' .. str(text) .. '}'
end

-- Tool arguments as the input object's bytes, or nil when they are not a JSON object.
local function input_raw(arguments)
    if type(arguments) ~= "string" then
        return nil
    end
    local obj = decode(arguments)
    if type(obj) ~= "table" or not find(arguments, "^%s*{") then
        return nil
    end
    return arguments
end

-- body: the chat.completion text (reasoning already in reasoning_content). info: { model }.
function _M.response(body, info)
    local resp = decode(body)
    if type(resp) ~= "table" or type(resp.choices) ~= "table" then
        return nil
    end
    local choice = resp.choices[1]
    local blocks, used_tools = {}, false
    local finish, matched
    if type(choice) == "table" and type(choice.message) == "table" then
        local msg = choice.message
        if type(msg.reasoning_content) == "string" and msg.reasoning_content ~= "" then
            blocks[#blocks + 1] = block_text("thinking", msg.reasoning_content)
        end
        local text = type(msg.content) == "string" and msg.content or ""
        local calls = type(msg.tool_calls) == "table" and msg.tool_calls or {}
        local uses = {}
        for n, call in ipairs(calls) do
            local fn = type(call) == "table" and call["function"] or nil
            local raw = type(fn) == "table" and input_raw(fn.arguments)
            if raw and type(fn.name) == "string" then
                uses[#uses + 1] = '{"type":"tool_use","id":' .. str(tool_id(call.id, n)) .. ',"name":'
                    .. str(fn.name) .. ',"input":' .. raw .. '}'
            elseif type(fn) == "table" then
                -- As trtllm's parsers do with a call they cannot parse: it stays visible as text.
                text = text .. (text ~= "" and "\n" or "") .. tostring(fn.name) .. "(" .. tostring(fn.arguments) .. ")"
            end
        end
        if text ~= "" then
            blocks[#blocks + 1] = block_text("text", text)
        end
        for _, u in ipairs(uses) do
            blocks[#blocks + 1] = u
        end
        used_tools = #uses > 0
        finish, matched = choice.finish_reason, choice.stop_reason
    end
    if #blocks == 0 then
        blocks[1] = block_text("text", "")
    end
    local reason, seq = stop_result(finish, matched, used_tools)
    return '{"id":' .. str(message_id(resp.id)) .. ',"type":"message","role":"assistant","model":'
        .. str(info.model or resp.model or "") .. ',"content":[' .. concat(blocks, ",") .. '],"stop_reason":'
        .. str(reason) .. ',"stop_sequence":' .. (seq and str(seq) or "null") .. ',"usage":'
        .. usage_json(resp.usage) .. '}'
end

function _M.count_response(body)
    local resp = decode(body)
    local u = type(resp) == "table" and resp.usage
    if type(u) ~= "table" or not is_int(u.prompt_tokens) then
        return nil
    end
    return '{"input_tokens":' .. u.prompt_tokens .. '}'
end

---------------------------------------------------------------------------------------------
-- Streaming: chat chunks -> Anthropic events. Blocks are strictly sequential (one open at a
-- time), as trtllm's tool parsers emit calls one after another.

local function event(name, json)
    return "event: " .. name .. "\ndata: " .. json .. "\n\n"
end

function _M.stream_new(info)
    return {
        model = info.model or "",
        started = false,    -- message_start sent
        done = false,       -- message_stop sent
        index = -1,         -- the last block's index
        open = nil,         -- "thinking" | "text" | "tool" | nil
        tools = {},         -- upstream tool_call index -> { block = index }
        open_tool = nil,
        used_tools = false,
        finish = nil, matched = nil, usage = nil,
    }
end

local function close_block(st, out)
    if st.open then
        out[#out + 1] = event("content_block_stop", '{"type":"content_block_stop","index":' .. st.index .. '}')
        st.open, st.open_tool = nil, nil
    end
end

local function open_block(st, out, kind, block_json)
    close_block(st, out)
    st.index = st.index + 1
    st.open = kind
    out[#out + 1] = event("content_block_start", '{"type":"content_block_start","index":' .. st.index
        .. ',"content_block":' .. block_json .. '}')
end

local function delta(st, out, delta_json)
    out[#out + 1] = event("content_block_delta", '{"type":"content_block_delta","index":' .. st.index
        .. ',"delta":' .. delta_json .. '}')
end

local function start(st, out, id)
    st.started = true
    out[#out + 1] = event("message_start", '{"type":"message_start","message":{"id":' .. str(message_id(id))
        .. ',"type":"message","role":"assistant","model":' .. str(st.model)
        .. ',"content":[],"stop_reason":null,"stop_sequence":null,"usage":{"input_tokens":0,"output_tokens":0}}}')
    out[#out + 1] = event("ping", '{"type":"ping"}')
end

local function text_piece(st, out, kind, text)
    if type(text) ~= "string" or text == "" then
        return
    end
    if st.open ~= kind then
        open_block(st, out, kind, kind == "thinking" and '{"type":"thinking","thinking":"","signature":""}'
            or '{"type":"text","text":""}')
    end
    if kind == "thinking" then
        delta(st, out, '{"type":"thinking_delta","thinking":' .. str(text) .. '}')
    else
        delta(st, out, '{"type":"text_delta","text":' .. str(text) .. '}')
    end
end

local function tool_piece(st, out, call, n)
    if type(call) ~= "table" then
        return
    end
    local key = is_int(call.index) and call.index or n - 1
    local fn = type(call["function"]) == "table" and call["function"] or {}
    local t = st.tools[key]
    if not t then
        if type(fn.name) ~= "string" then
            return   -- arguments before a name: no parser of trtllm's does this
        end
        local id = tool_id(call.id, key)
        open_block(st, out, "tool", '{"type":"tool_use","id":' .. str(id) .. ',"name":' .. str(fn.name)
            .. ',"input":{}}')
        t = { block = st.index }
        st.tools[key], st.open_tool, st.used_tools = t, key, true
    end
    local args = fn.arguments
    if type(args) == "string" and args ~= "" and st.open_tool == key then
        delta(st, out, '{"type":"input_json_delta","partial_json":' .. str(args) .. '}')
    end
end

local function finish(st, out)
    if not st.started then
        start(st, out, nil)
    end
    if st.index < 0 then
        open_block(st, out, "text", '{"type":"text","text":""}')   -- as non-streamed: one block at least
    end
    close_block(st, out)
    local reason, seq = stop_result(st.finish, st.matched, st.used_tools)
    out[#out + 1] = event("message_delta", '{"type":"message_delta","delta":{"stop_reason":' .. str(reason)
        .. ',"stop_sequence":' .. (seq and str(seq) or "null") .. '},"usage":' .. usage_json(st.usage) .. '}')
    out[#out + 1] = event("message_stop", '{"type":"message_stop"}')
    st.done = true
end

-- data: one `data:` payload of the chat stream. Returns the Anthropic events to send ("" for none).
function _M.stream_event(st, data)
    if st.done then
        return ""
    end
    local out = {}
    if data == "[DONE]" then
        finish(st, out)
        return concat(out)
    end
    local ev = decode(data)
    if type(ev) ~= "table" then
        return ""
    end
    if type(ev.error) == "table" or ev.object == "error" then
        -- An error the backend sent inside the stream.
        local e = type(ev.error) == "table" and ev.error or ev
        st.done = true
        return event("error", _M.error_body("api_error", tostring(e.message or "upstream error")))
    end
    if not st.started then
        start(st, out, ev.id)
    end
    if type(ev.usage) == "table" then
        st.usage = ev.usage
    end
    local choice = type(ev.choices) == "table" and ev.choices[1]
    if type(choice) == "table" then
        local d = type(choice.delta) == "table" and choice.delta or {}
        text_piece(st, out, "thinking", d.reasoning_content)
        text_piece(st, out, "text", d.content)
        if type(d.tool_calls) == "table" then
            for n, call in ipairs(d.tool_calls) do
                tool_piece(st, out, call, n)
            end
        end
        if choice.finish_reason ~= nil and choice.finish_reason ~= null then
            st.finish, st.matched = choice.finish_reason, choice.stop_reason
        end
    end
    return concat(out)
end

-- An upstream event without data (an SSE comment such as ": keep-alive").
function _M.ping(st)
    if st.done or not st.started then
        return ""
    end
    return event("ping", '{"type":"ping"}')
end

-- The n complete chat events the framer fr holds after sse.feed -> Anthropic events.
-- shape(data), when given, edits a chat payload first (the router's reasoning shaping) and may
-- drop it by returning nil; observe(m, raw), when given, sees every chat event (metrics).
function _M.translate(st, fr, n, shape, observe, m)
    local out = {}
    for i = 1, n do
        if observe then
            observe(m, sse.raw(fr, i))
        end
        local data = sse.data(fr, i)
        if data == nil then
            out[#out + 1] = _M.ping(st)
        else
            if shape and data ~= "[DONE]" then
                data = shape(data)
            end
            if data then
                out[#out + 1] = _M.stream_event(st, data)
            end
        end
    end
    return concat(out)
end

-- The upstream body ended. A stream cut before [DONE] and before its finish_reason gets
-- Anthropic's in-stream error event, which the SDK raises.
function _M.stream_end(st)
    if st.done then
        return ""
    end
    local out = {}
    if st.finish then
        finish(st, out)
        return concat(out)
    end
    st.done = true
    if not st.started then
        start(st, out, nil)
    end
    out[#out + 1] = event("error", _M.error_body("api_error", "the model server ended the stream early"))
    return concat(out)
end

return _M
