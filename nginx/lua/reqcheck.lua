-- The shape of a generation request's fields, checked before any edit (chatreq) or routing
-- decision reads them: a wrong JSON type is a 400 naming the field, never a Lua error deeper
-- in. Fields the router reads or edits are checked strictly; other fields are trtllm-serve's
-- to judge (its 400 reaches the client re-shaped, errors.from_upstream). Pure: no ngx.* use.
--   local err = reqcheck.check(body, req, kind)   -- nil, or {status, message, param, code}
-- body: the JSON text; req: cjson's decoding of it; kind: "chat", "completions" or nil.
local cjson = require("cjson.safe")
local jsonbody = require("jsonbody")

local _M = { _VERSION = "0.1.0" }

local type, ipairs, pairs, next, tostring = type, ipairs, pairs, next, tostring
local byte = string.byte
local null = cjson.null

local EFFORTS = { none = true, minimal = true, low = true, medium = true, high = true }
local OUTPUTS = { reasoning_content = true, reasoning = true, none = true }
local NUMBERS = { "temperature", "top_p", "top_k", "max_tokens", "max_completion_tokens", "n" }
local ROLES_NEED_CONTENT = { user = true, system = true, developer = true }

local function bad(param, message)
    return { status = 400, message = message, param = param, code = "invalid_type" }
end

local function present(v)
    return v ~= nil and v ~= null
end

-- cjson decodes [] and {} alike; a table with keys outside 1..#t came from an object.
local function is_array(t)
    if type(t) ~= "table" then
        return false
    end
    local n = #t
    for k in pairs(t) do
        if type(k) ~= "number" or k < 1 or k > n then
            return false
        end
    end
    return true
end

local function is_object(t)
    return type(t) == "table" and (next(t) == nil or not is_array(t))
end

-- An empty table may be [] or {}: the text says which (the router edits these in place).
local function raw_is_object(body, key)
    local raw = jsonbody.get_raw(body, key)
    return raw ~= nil and byte(raw, 1) == 123   -- '{'
end

local function check_messages(messages)
    if not is_array(messages) then
        return bad("messages", "'messages' must be an array of message objects")
    end
    for i, m in ipairs(messages) do
        local where = "messages[" .. (i - 1) .. "]"
        if not is_object(m) then
            return bad("messages", where .. " must be an object")
        end
        if type(m.role) ~= "string" then
            return bad("messages", where .. ".role must be a string")
        end
        local c = m.content
        if present(c) and type(c) ~= "string" then
            if not is_array(c) then
                return bad("messages", where .. ".content must be a string or an array of content parts")
            end
            for j, part in ipairs(c) do
                if not is_object(part) or type(part.type) ~= "string" then
                    return bad("messages", where .. ".content[" .. (j - 1) .. "] must be an object with a string 'type'")
                end
            end
        elseif not present(c) and ROLES_NEED_CONTENT[m.role] then
            return bad("messages", where .. ".content is required for role '" .. m.role .. "'")
        end
    end
end

local function check_tools(tools)
    if not is_array(tools) then
        return bad("tools", "'tools' must be an array of tool objects")
    end
    for i, t in ipairs(tools) do
        if not is_object(t) or type(t.type) ~= "string" then
            return bad("tools", "tools[" .. (i - 1) .. "] must be an object with a string 'type'")
        end
    end
end

function _M.check(body, req, kind)
    if present(req.stream) and type(req.stream) ~= "boolean" then
        return bad("stream", "'stream' must be true or false")
    end
    local so = req.stream_options
    if present(so) then
        if type(so) ~= "table" or not raw_is_object(body, "stream_options") then
            return bad("stream_options", "'stream_options' must be an object")
        end
        if present(so.include_usage) and type(so.include_usage) ~= "boolean" then
            return bad("stream_options", "'stream_options.include_usage' must be true or false")
        end
    end
    if req.reasoning_format ~= nil and (type(req.reasoning_format) ~= "string" or not OUTPUTS[req.reasoning_format]) then
        return bad("reasoning_format", "'reasoning_format' must be one of reasoning_content, reasoning, none")
    end
    if req.include_reasoning ~= nil and type(req.include_reasoning) ~= "boolean" then
        return bad("include_reasoning", "'include_reasoning' must be true or false")
    end
    for _, key in ipairs(NUMBERS) do
        local v = req[key]
        if present(v) and type(v) ~= "number" then
            return bad(key, "'" .. key .. "' must be a number")
        end
    end
    if kind == "responses" then
        local r = req.reasoning
        if present(r) and (type(r) ~= "table" or not raw_is_object(body, "reasoning")) then
            return bad("reasoning", "'reasoning' must be an object")
        end
        if present(r) and present(r.effort) and type(r.effort) ~= "string" then
            return bad("reasoning", "'reasoning.effort' must be a string")
        end
        if present(req.instructions) and type(req.instructions) ~= "string" then
            return bad("instructions", "'instructions' must be a string")
        end
        return nil
    end
    if kind ~= "chat" then
        return nil
    end

    if req.messages ~= nil then
        local err = check_messages(req.messages)
        if err then
            return err
        end
    end
    local ctk = req.chat_template_kwargs
    if present(ctk) then
        if type(ctk) ~= "table" or not raw_is_object(body, "chat_template_kwargs") then
            return bad("chat_template_kwargs", "'chat_template_kwargs' must be an object")
        end
        if present(ctk.enable_thinking) and type(ctk.enable_thinking) ~= "boolean" then
            return bad("chat_template_kwargs", "'chat_template_kwargs.enable_thinking' must be true or false")
        end
    end
    local effort = req.reasoning_effort
    if present(effort) and not (type(effort) == "string" and EFFORTS[effort]) then
        return bad("reasoning_effort", "'reasoning_effort' must be one of none, minimal, low, medium, high")
    end
    if present(req.tools) then
        local err = check_tools(req.tools)
        if err then
            return err
        end
    end
    local tc = req.tool_choice
    if present(tc) and type(tc) ~= "string" and not is_object(tc) then
        return bad("tool_choice", "'tool_choice' must be a string or an object")
    end
    return nil
end

return _M
