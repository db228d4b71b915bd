require("tests.lua.helper")
local cjson = require("cjson")
local sse = require("sse")
local chatresp = require("chatresp")
local anthropic = require("anthropic")

local QWEN = { id = "nvidia/Qwen3-30B-A3B-FP4", reasoning = { mode = "backend" } }
local PLAIN = { id = "plain", reasoning = { mode = "none" } }

local function translate(req, model)
    local body = type(req) == "string" and req or cjson.encode(req)
    return anthropic.request(body, cjson.decode(body), model or QWEN)
end

local function chunk(delta, finish, extra)
    local ch = { index = 0, delta = delta, finish_reason = finish or cjson.null }
    for k, v in pairs(extra or {}) do
        ch[k] = v
    end
    return "data: " .. cjson.encode({ id = "chatcmpl-abc", object = "chat.completion.chunk", choices = { ch } }) .. "\n\n"
end

-- A trtllm-serve stream as its qwen3 reasoning and tool parsers send it: role chunk, reasoning,
-- a line of text, a tool call (name first, then argument pieces), finish, usage, [DONE].
local TOOL_STREAM = table.concat({
    chunk({ role = "assistant", content = "" }),
    chunk({ content = "", reasoning_content = "Weather: " }),
    chunk({ content = "", reasoning_content = "call the tool." }),
    chunk({ content = "Checking.", reasoning_content = "" }),
    chunk({ content = "", reasoning_content = "", tool_calls = { { id = "chatcmpl-tool-9f", type = "function", index = 0,
        ["function"] = { name = "get_weather", arguments = "" } } } }),
    chunk({ content = "", tool_calls = { { index = 0, ["function"] = { arguments = '{"city": ' } } } }),
    chunk({ content = "", tool_calls = { { index = 0, ["function"] = { arguments = '"Paris \\u00e9/\\n"}' } } } }),
    chunk({ content = "", reasoning_content = "" }, "tool_calls"),
    'data: {"id":"chatcmpl-abc","object":"chat.completion.chunk","choices":[],"usage":{"prompt_tokens":21,"completion_tokens":17,"total_tokens":38}}\n\n',
    "data: [DONE]\n\n",
})

local function ev(name, json)
    return "event: " .. name .. "\ndata: " .. json .. "\n\n"
end

local TOOL_EVENTS = table.concat({
    ev("message_start", '{"type":"message_start","message":{"id":"msg_abc","type":"message","role":"assistant","model":"nvidia/Qwen3-30B-A3B-FP4","content":[],"stop_reason":null,"stop_sequence":null,"usage":{"input_tokens":0,"output_tokens":0}}}'),
    ev("ping", '{"type":"ping"}'),
    ev("content_block_start", '{"type":"content_block_start","index":0,"content_block":{"type":"thinking","thinking":"","signature":""}}'),
    ev("content_block_delta", '{"type":"content_block_delta","index":0,"delta":{"type":"thinking_delta","thinking":"Weather: "}}'),
    ev("content_block_delta", '{"type":"content_block_delta","index":0,"delta":{"type":"thinking_delta","thinking":"call the tool."}}'),
    ev("content_block_stop", '{"type":"content_block_stop","index":0}'),
    ev("content_block_start", '{"type":"content_block_start","index":1,"content_block":{"type":"text","text":""}}'),
    ev("content_block_delta", '{"type":"content_block_delta","index":1,"delta":{"type":"text_delta","text":"Checking."}}'),
    ev("content_block_stop", '{"type":"content_block_stop","index":1}'),
    ev("content_block_start", '{"type":"content_block_start","index":2,"content_block":{"type":"tool_use","id":"toolu_9f","name":"get_weather","input":{}}}'),
    ev("content_block_delta", '{"type":"content_block_delta","index":2,"delta":{"type":"input_json_delta","partial_json":"{\\"city\\": "}}'),
    ev("content_block_delta", '{"type":"content_block_delta","index":2,"delta":{"type":"input_json_delta","partial_json":"\\"Paris \\\\u00e9/\\\\n\\"}"}}'),
    ev("content_block_stop", '{"type":"content_block_stop","index":2}'),
    ev("message_delta", '{"type":"message_delta","delta":{"stop_reason":"tool_use","stop_sequence":null},"usage":{"input_tokens":21,"output_tokens":17}}'),
    ev("message_stop", '{"type":"message_stop"}'),
})

-- The body filter's path: bytes read in pieces cut at `reads`, framed once, each chat event
-- shaped (chatresp) when shape_info is given, then translated.
local function through_router(bytes, reads, shape_info)
    local codec, st, out, pos = sse.new(), anthropic.stream_new({ model = QWEN.id }), {}, 1
    local shaper = shape_info and chatresp.new(shape_info)
    local shape = shaper and function(data) return chatresp.event(shaper, data) end
    local function feed(piece)
        out[#out + 1] = anthropic.translate(st, codec, assert(sse.feed(codec, piece)), shape)
    end
    for _, cut in ipairs(reads) do
        feed(bytes:sub(pos, cut))
        pos = cut + 1
    end
    feed(bytes:sub(pos))
    out[#out + 1] = anthropic.stream_end(st)
    return table.concat(out)
end

describe("anthropic request translation", function()
    it("turns system, text, tool_use and tool_result into chat messages", function()
        local body = '{"model":"qwen","max_tokens":256,"system":[{"type":"text","text":"Be brief."}],'
            .. '"messages":[{"role":"user","content":"Weather in Paris?"},'
            .. '{"role":"assistant","content":[{"type":"thinking","thinking":"t","signature":"s"},'
            .. '{"type":"text","text":"Checking."},'
            .. '{"type":"tool_use","id":"toolu_1","name":"get_weather","input":{"city":"Paris","days":[],"t":1.0000000000000002}}]},'
            .. '{"role":"user","content":[{"type":"tool_result","tool_use_id":"toolu_1","content":[{"type":"text","text":"18C"}]},'
            .. '{"type":"text","text":"Thanks"}]}],'
            .. '"tools":[{"name":"get_weather","description":"Weather","input_schema":{"type":"object","properties":{"city":{"type":"string"}},"required":[]}}],'
            .. '"temperature":0.25,"top_k":5,"stop_sequences":["END"],"metadata":{"user_id":"u"}}'
        local chat, info = translate(body)
        assert.is_table(info)
        assert.equal('{"model":"qwen","messages":[{"role":"system","content":"Be brief."},'
            .. '{"role":"user","content":"Weather in Paris?"},'
            .. '{"role":"assistant","content":"Checking.","tool_calls":[{"id":"toolu_1","type":"function","function":{"name":"get_weather",'
            .. '"arguments":"{\\"city\\":\\"Paris\\",\\"days\\":[],\\"t\\":1.0000000000000002}"}}]},'
            .. '{"role":"tool","tool_call_id":"toolu_1","content":"18C"},{"role":"user","content":"Thanks"}],'
            .. '"max_tokens":256,"stream":false,"temperature":0.25,"top_k":5,"stop":["END"],'
            .. '"tools":[{"type":"function","function":{"name":"get_weather","description":"Weather",'
            .. '"parameters":{"type":"object","properties":{"city":{"type":"string"}},"required":[]}}}],'
            .. '"tool_choice":"auto","chat_template_kwargs":{"enable_thinking":false}}', chat)
        assert.is_false(info.thinking)
    end)

    it("maps thinking onto the one switch and checks budget_tokens as the hosted API does", function()
        local base = { model = "qwen", max_tokens = 4096, messages = { { role = "user", content = "hi" } } }
        base.thinking = { type = "enabled", budget_tokens = 2048 }
        local chat, info = translate(base)
        assert.truthy(chat:find('"chat_template_kwargs":{"enable_thinking":true}', 1, true))
        assert.is_true(info.thinking)
        base.thinking = { type = "disabled" }
        assert.truthy(translate(base):find('"enable_thinking":false', 1, true))
        base.thinking = { type = "enabled", budget_tokens = 512 }
        local _, err = translate(base)
        assert.same({ status = 400, type = "invalid_request_error",
            message = "thinking.budget_tokens: must be an integer >= 1024" }, err)
        base.thinking = { type = "enabled", budget_tokens = 4096 }
        _, err = translate(base)
        assert.equal("thinking.budget_tokens: must be less than max_tokens", err.message)
        -- A model that does not think gets no switch at all.
        base.thinking = { type = "enabled", budget_tokens = 2048 }
        assert.is_nil(translate(base, PLAIN):find("chat_template_kwargs", 1, true))
    end)

    it("maps tool_choice any to auto and tool to the one named tool", function()
        local tools = { { name = "a", input_schema = { type = "object" } }, { name = "b", input_schema = { type = "object" } } }
        local req = { model = "m", max_tokens = 10, messages = { { role = "user", content = "x" } }, tools = tools }
        req.tool_choice = { type = "any" }
        local chat = translate(req)
        assert.truthy(chat:find('"tool_choice":"auto"', 1, true))
        assert.truthy(chat:find('"name":"a"', 1, true) and chat:find('"name":"b"', 1, true))
        req.tool_choice = { type = "tool", name = "b" }
        chat = translate(req)
        assert.is_nil(chat:find('"name":"a"', 1, true))
        assert.truthy(chat:find('"name":"b"', 1, true))
        req.tool_choice = { type = "none" }
        assert.truthy(translate(req):find('"tool_choice":"none"', 1, true))
        req.tool_choice = { type = "tool", name = "zzz" }
        local _, err = translate(req)
        assert.equal("tool_choice.name: no tool named 'zzz' in tools", err.message)
    end)

    it("refuses images, server tools and malformed requests with a 400 that names the field", function()
        local cases = {
            { { model = "m", max_tokens = 5, messages = { { role = "user", content = { { type = "image",
                source = { type = "base64", media_type = "image/png", data = "AA==" } } } } } },
              "messages.0.content.0: image content is not supported: no model served here takes images or documents" },
            { { model = "m", messages = { { role = "user", content = "x" } } }, "max_tokens: must be a positive integer" },
            { { model = "m", max_tokens = 5, messages = {} }, "messages: must be a non-empty list" },
            { { model = "m", max_tokens = 5, messages = { { role = "system", content = "x" } } },
              "messages.0.role: must be 'user' or 'assistant'" },
            { { model = "m", max_tokens = 5, messages = { { role = "user", content = "x" } },
                tools = { { type = "web_search_20250305", name = "web_search" } } },
              "tools.0: server tool 'web_search_20250305' is not supported here; give client tools with an input_schema" },
            { { model = "m", max_tokens = 5, messages = { { role = "user", content = { { type = "tool_use", id = "t",
                name = "n", input = {} } } } } }, "messages.0.content.0: a tool_use block cannot appear in a user message" },
            { { model = "m", max_tokens = 5, temperature = "hot", messages = { { role = "user", content = "x" } } },
              "temperature: must be a number" },
        }
        for _, case in ipairs(cases) do
            local chat, err = translate(case[1])
            assert.is_nil(chat)
            assert.equal(400, err.status)
            assert.equal(case[2], err.message)
        end
    end)

    it("drops Claude Code's billing block from the system prompt", function()
        local chat = translate({ model = "m", max_tokens = 5, messages = { { role = "user", content = "x" } },
            system = { { type = "text", text = "x-anthropic-billing-header: cc_version=2.1; cc_entrypoint=cli;" },
                       { type = "text", text = "You are Claude Code." } } })
        assert.truthy(chat:find('{"role":"system","content":"You are Claude Code."}', 1, true))
    end)

    it("builds a count request: one token, no stream, no sampling", function()
        local body = '{"model":"m","messages":[{"role":"user","content":"count me"}],"stream":true,"temperature":0.5}'
        local chat, info = anthropic.request(body, cjson.decode(body), PLAIN, true)
        assert.equal('{"model":"m","messages":[{"role":"user","content":"count me"}],"max_tokens":1,"stream":false}', chat)
        assert.is_true(info.count)
    end)
end)

describe("anthropic response translation", function()
    it("orders thinking, text and tool_use blocks and maps the stop reason", function()
        local body = '{"id":"chatcmpl-x1","model":"qwen","choices":[{"index":0,"message":{"role":"assistant",'
            .. '"content":"Checking.","reasoning_content":"think","tool_calls":[{"id":"chatcmpl-tool-77","type":"function",'
            .. '"function":{"name":"get_weather","arguments":"{\\"city\\": \\"Paris\\", \\"days\\": []}"}}]},'
            .. '"finish_reason":"tool_calls","stop_reason":null}],"usage":{"prompt_tokens":12,"completion_tokens":30,"total_tokens":42}}'
        assert.equal('{"id":"msg_x1","type":"message","role":"assistant","model":"M","content":['
            .. '{"type":"thinking","thinking":"think","signature":""},{"type":"text","text":"Checking."},'
            .. '{"type":"tool_use","id":"toolu_77","name":"get_weather","input":{"city": "Paris", "days": []}}],'
            .. '"stop_reason":"tool_use","stop_sequence":null,"usage":{"input_tokens":12,"output_tokens":30}}',
            anthropic.response(body, { model = "M" }))
    end)

    it("reports stop sequences, max_tokens and an empty answer as the hosted API does", function()
        local function reply(finish, stop, content)
            local out = anthropic.response(cjson.encode({ id = "chatcmpl-1", choices = { { index = 0,
                message = { role = "assistant", content = content }, finish_reason = finish, stop_reason = stop } },
                usage = { prompt_tokens = 1, completion_tokens = 2 } }), { model = "M" })
            return cjson.decode(out)
        end
        local m = reply("stop", "END", "The")
        assert.equal("stop_sequence", m.stop_reason)
        assert.equal("END", m.stop_sequence)
        assert.equal("max_tokens", reply("length", cjson.null, "The").stop_reason)
        m = reply("stop", cjson.null, "")
        assert.equal("end_turn", m.stop_reason)
        assert.same({ { type = "text", text = "" } }, m.content)
    end)

    it("keeps a call whose arguments are not a JSON object visible as text", function()
        local out = cjson.decode(anthropic.response(cjson.encode({ choices = { { index = 0, message = {
            content = "", tool_calls = { { id = "c", ["function"] = { name = "f", arguments = "[1" } } } },
            finish_reason = "tool_calls" } } }), { model = "M" }))
        assert.same({ { type = "text", text = "f([1)" } }, out.content)
        assert.equal("end_turn", out.stop_reason)
    end)

    it("answers count_tokens from the backend's prompt_tokens", function()
        assert.equal('{"input_tokens":57}', anthropic.count_response('{"choices":[],"usage":{"prompt_tokens":57,"completion_tokens":1}}'))
        assert.is_nil(anthropic.count_response('{"choices":[]}'))
    end)

    it("writes errors in Anthropic's shape with its types", function()
        assert.equal('{"type":"error","error":{"type":"not_found_error","message":"no model \\"x/y\\""}}',
            anthropic.error_body(anthropic.error_type(404), 'no model "x/y"'))
        assert.equal("overloaded_error", anthropic.error_type(529))
        assert.equal("rate_limit_error", anthropic.error_type(429))
        assert.equal("api_error", anthropic.error_type(502))
    end)
end)

describe("anthropic stream translation", function()
    it("emits Anthropic's exact event sequence for a reasoning + text + tool call stream", function()
        assert.equal(TOOL_EVENTS, through_router(TOOL_STREAM, {}))
    end)

    it("gives the same bytes for every read cut, and for every pair of nearby cuts", function()
        for i = 1, #TOOL_STREAM - 1 do
            assert.equal(TOOL_EVENTS, through_router(TOOL_STREAM, { i }), "cut at " .. i)
        end
        for i = 1, #TOOL_STREAM - 1, 29 do
            for j = i + 1, math.min(#TOOL_STREAM - 1, i + 24) do
                assert.equal(TOOL_EVENTS, through_router(TOOL_STREAM, { i, j }), "cuts at " .. i .. "," .. j)
            end
        end
    end)

    it("reads what the SDK's accumulator would build", function()
        local blocks, partial = {}, {}
        for data in through_router(TOOL_STREAM, { 100, 300 }):gmatch("data: ([^\n]+)\n\n") do
            local e = cjson.decode(data)
            if e.type == "content_block_start" then
                blocks[e.index + 1] = e.content_block
            elseif e.type == "content_block_delta" then
                local b, d = blocks[e.index + 1], e.delta
                if d.type == "thinking_delta" then
                    b.thinking = b.thinking .. d.thinking
                elseif d.type == "text_delta" then
                    b.text = b.text .. d.text
                else
                    partial[e.index + 1] = (partial[e.index + 1] or "") .. d.partial_json
                end
            end
        end
        assert.equal("Weather: call the tool.", blocks[1].thinking)
        assert.equal("Checking.", blocks[2].text)
        assert.same({ city = "Paris \u{e9}/\n" }, cjson.decode(partial[3]))
    end)

    it("splits think tags in text through the chat shaping first, at every cut", function()
        local text = "<think>\nhm\n</think>\n\nIt is 4."
        local parts = { chunk({ role = "assistant", content = "" }) }
        for k = 1, #text, 3 do
            parts[#parts + 1] = chunk({ content = text:sub(k, k + 2) })
        end
        parts[#parts + 1] = chunk({ content = "" }, "stop")
        parts[#parts + 1] = "data: [DONE]\n\n"
        local bytes = table.concat(parts)
        local info = { mode = "tags", thinking = true }
        local whole = through_router(bytes, {}, info)
        local thinking, answer = {}, {}
        for data in whole:gmatch("data: ([^\n]+)\n\n") do
            local e = cjson.decode(data)
            if e.type == "content_block_delta" then
                if e.delta.type == "thinking_delta" then
                    thinking[#thinking + 1] = e.delta.thinking
                else
                    answer[#answer + 1] = e.delta.text
                end
            end
        end
        assert.equal("hm\n", table.concat(thinking))
        assert.equal("It is 4.", table.concat(answer))
        for i = 1, #bytes - 1 do
            assert.equal(whole, through_router(bytes, { i }, info), "cut at " .. i)
        end
    end)

    it("turns a keep-alive comment into a ping and a stream cut short into an error event", function()
        local bytes = chunk({ role = "assistant", content = "" }) .. ": keep-alive\n\n" .. chunk({ content = "Hi" })
        local out = through_router(bytes, {})
        assert.truthy(out:find('event: ping\ndata: {"type":"ping"}\n\nevent: content_block_start', 1, true))
        assert.equal('event: error\ndata: {"type":"error","error":{"type":"api_error","message":"the model server ended the stream early"}}\n\n',
            out:sub(-#'event: error\ndata: {"type":"error","error":{"type":"api_error","message":"the model server ended the stream early"}}\n\n'))
    end)

    it("closes an empty answer with one empty text block, as the non-streamed body has", function()
        local out = through_router(chunk({ role = "assistant", content = "" }) .. chunk({ content = "" }, "length")
            .. "data: [DONE]\n\n", {})
        assert.truthy(out:find('"content_block":{"type":"text","text":""}', 1, true))
        assert.truthy(out:find('"stop_reason":"max_tokens"', 1, true))
        assert.equal(1, select(2, out:gsub("event: message_stop", "")))
    end)
end)
