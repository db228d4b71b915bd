require("tests.lua.helper")
local cjson = require("cjson")
local sse = require("sse")
local chatresp = require("chatresp")

local TEXT = "<think>\nLet me see: 2+2.\n</think>\n\nIt is 4."

local function chunk(delta, finish)
    return 'data: ' .. cjson.encode({ id = "c1", object = "chat.completion.chunk", choices = {
        { index = 0, delta = delta, finish_reason = finish or cjson.null } } }) .. "\n\n"
end

-- The backend's byte stream with the model text cut into deltas at `cuts`.
local function stream(cuts)
    local parts, pos = { chunk({ role = "assistant", content = "" }) }, 1
    for _, cut in ipairs(cuts) do
        parts[#parts + 1] = chunk({ content = TEXT:sub(pos, cut) })
        pos = cut + 1
    end
    parts[#parts + 1] = chunk({ content = TEXT:sub(pos) })
    parts[#parts + 1] = chunk({ content = "" }, "stop")
    parts[#parts + 1] = 'data: {"id":"c1","choices":[],"usage":{"completion_tokens":9}}\n\n'
    parts[#parts + 1] = "data: [DONE]\n\n"
    return table.concat(parts)
end

-- What the body filter does, with the backend bytes read in pieces cut at `reads`.
local function through_router(bytes, reads, info)
    local st, codec, out, pos = chatresp.new(info), sse.new(), {}, 1
    local function feed(piece)
        local n = assert(sse.feed(codec, piece))
        out[#out + 1] = chatresp.events(st, codec, n, piece) or piece
    end
    for _, cut in ipairs(reads) do
        feed(bytes:sub(pos, cut))
        pos = cut + 1
    end
    feed(bytes:sub(pos))
    return table.concat(out) .. sse.rest(codec), st
end

local function collect(out)
    local r, c, events = {}, {}, 0
    for data in out:gmatch("data: ([^\n]+)\n\n") do
        events = events + 1
        if data ~= "[DONE]" then
            local ev = cjson.decode(data)
            for _, ch in ipairs(ev.choices) do
                r[#r + 1] = ch.delta.reasoning_content or ""
                c[#c + 1] = ch.delta.content or ""
            end
        end
    end
    return table.concat(r), table.concat(c), events
end

describe("chat response shaping", function()
    local info = { mode = "tags", thinking = true, hide_usage = true }

    it("gives the whole-body result for every delta cut and every read cut", function()
        local whole = chatresp.body(chatresp.new(info), cjson.encode({ choices = {
            { index = 0, message = { role = "assistant", content = TEXT }, finish_reason = "stop" } } }))
        local msg = cjson.decode(whole).choices[1].message
        assert.equal("Let me see: 2+2.\n", msg.reasoning_content)
        assert.equal("It is 4.", msg.content)
        for i = 1, #TEXT - 1 do
            local bytes = stream({ i })
            local reads = { (i * 7) % #bytes + 1 }
            for _, rd in ipairs({ {}, reads, { 10, 11, 12, #bytes - 3 } }) do
                local out = through_router(bytes, rd, info)
                local r, c = collect(out)
                assert.equal(msg.reasoning_content, r, "delta cut " .. i)
                assert.equal(msg.content, c, "delta cut " .. i)
            end
        end
    end)

    it("hides the usage chunk it asked for but keeps the numbers", function()
        local out, st = through_router(stream({ 5 }), {}, info)
        assert.is_nil(out:find('"usage"', 1, true))
        assert.equal(9, st.usage.completion_tokens)
        local _, _, events = collect(out)
        assert.equal(5, events)   -- role, two deltas, finish, [DONE]: no usage
        out = through_router(stream({ 5 }), {}, { mode = "tags", thinking = true, hide_usage = false })
        assert.truthy(out:find('"usage"', 1, true))
    end)

    it("mirrors reasoning as `reasoning` or leaves it out", function()
        local out = through_router(stream({ 3 }), {}, { mode = "tags", output = "reasoning" })
        local mirrored = {}
        for data in out:gmatch("data: ({[^\n]+)\n\n") do
            local choice = cjson.decode(data).choices[1]
            if choice then
                assert.equal(choice.delta.reasoning_content, choice.delta.reasoning)
                mirrored[#mirrored + 1] = choice.delta.reasoning
            end
        end
        assert.equal("Let me see: 2+2.\n", table.concat(mirrored))
        out = through_router(stream({ 3 }), {}, { mode = "tags", output = "none" })
        assert.is_nil(out:find("reasoning", 1, true))
        assert.is_nil(out:find("Let me see", 1, true))
    end)

    it("passes events through untouched when nothing needs shaping", function()
        local st = chatresp.new({ mode = "none" })
        local data = '{"choices":[{"index":0,"delta":{"content":"<think>x"},"logprobs":{"content":[]}}]}'
        assert.equal(data, chatresp.event(st, data))
        assert.is_false(chatresp.needed({ mode = "none", output = "reasoning_content" }))
    end)

    it("keeps every other byte of an event it edits", function()
        local st = chatresp.new({ mode = "backend" })
        local data = '{"id":"x","choices":[{"index":0,"delta":{"content":"\\n\\nHi","reasoning_content":null,"tool_calls":[]},"logprobs":null,"finish_reason":null}],"created":1795548372,"p":0.30000000000000004}'
        assert.equal('{"id":"x","choices":[{"index":0,"delta":{"content":"Hi","reasoning_content":"","tool_calls":[]},"logprobs":null,"finish_reason":null}],"created":1795548372,"p":0.30000000000000004}',
            chatresp.event(st, data))
    end)
end)

-- trtllm-serve's stream with its reasoning parser on: compact JSON, one choice per chunk,
-- content and reasoning_content always strings (tensorrt_llm/serve/postprocess_handlers.py).
local function trtllm_chunk(content, reasoning, finish)
    return 'data: {"id":"chatcmpl-1","object":"chat.completion.chunk","created":1,"model":"m","choices":[{"index":0,'
        .. '"delta":{"content":' .. cjson.encode(content) .. ',"reasoning_content":' .. cjson.encode(reasoning)
        .. '},"finish_reason":' .. (finish and '"stop"' or "null") .. '}]}\n\n'
end

describe("events that need no change", function()
    local decodes
    local real_decode = cjson.decode
    before_each(function()
        decodes = 0
        require("cjson.safe").decode = function(s) decodes = decodes + 1 return real_decode(s) end
    end)
    after_each(function()
        require("cjson.safe").decode = require("cjson").decode
    end)

    it("pass through byte for byte, without a decode, once each part has started", function()
        local st = chatresp.new({ mode = "backend", thinking = true, hide_usage = false })
        local events = { trtllm_chunk("", "Let"), trtllm_chunk("", " me"), trtllm_chunk("", " see"),
                         trtllm_chunk("Yes", ""), trtllm_chunk(" it is", ""), trtllm_chunk(".", "", true) }
        local bytes = table.concat(events)
        local out = through_router(bytes, {}, { mode = "backend", thinking = true })
        assert.equal(bytes, out)
        assert.equal(0, decodes)
        for _, ev in ipairs(events) do
            assert.is_true(chatresp.unchanged(st, ev), ev)
        end
    end)

    it("are recognised only when shaping would give the same event", function()
        local cases = {
            trtllm_chunk("\n\nYes", ""),                      -- blank after </think>: trimmed
            trtllm_chunk("", "\nLet"),                        -- blank after <think>: trimmed
            trtllm_chunk("<think>x", ""),                     -- a tag in content: split
            trtllm_chunk("a <", ""),                          -- maybe the start of one: held
            'data: {"choices":[{"index":0,"delta":{"content":"x"}}]}\n\n',   -- reasoning_content added
            'data: {"choices":[{"index":0,"delta":{"content":"x","reasoning_content":"","reasoning":""}}]}\n\n',
            'data: {"choices": [{"index": 0, "delta": {"content": "x", "reasoning_content": ""}}]}\n\n',
            'data: {"id":"c","choices":[],"usage":{"completion_tokens":3}}\n\n',
        }
        for _, ev in ipairs(cases) do
            local st = chatresp.new({ mode = "backend", thinking = true, hide_usage = true })
            assert.is_false(chatresp.unchanged(st, ev), ev)
        end
        -- Where unchanged() says yes, event() agrees.
        for _, mode in ipairs({ "backend", "tags", "none" }) do
            local fast, slow = chatresp.new({ mode = mode }), chatresp.new({ mode = mode })
            for _, piece in ipairs({ { "", "a" }, { "b", "" }, { " c", "" }, { "d", "e" } }) do
                local ev = trtllm_chunk(piece[1], piece[2])
                local data = ev:sub(7, -3)
                local shaped = chatresp.event(slow, data)
                if chatresp.unchanged(fast, ev) then
                    assert.same(cjson.decode(data), cjson.decode(shaped), mode .. ": " .. data)
                else
                    chatresp.event(fast, data)
                end
            end
        end
    end)
end)

describe("reasoning that cannot leak in backend mode", function()
    local info = { mode = "backend", thinking = true, hide_usage = true }

    it("splits <think> tags that reached content, streamed at every cut and whole", function()
        local whole = chatresp.body(chatresp.new(info), cjson.encode({ choices = {
            { index = 0, message = { role = "assistant", content = TEXT, reasoning_content = "" }, finish_reason = "stop" } } }))
        local msg = cjson.decode(whole).choices[1].message
        assert.equal("Let me see: 2+2.\n", msg.reasoning_content)
        assert.equal("It is 4.", msg.content)
        for i = 1, #TEXT - 1 do
            local r, c = collect(through_router(stream({ i }), { (i * 5) % 40 + 1 }, info))
            assert.equal("Let me see: 2+2.\n", r, "delta cut " .. i)
            assert.equal("It is 4.", c, "delta cut " .. i)
        end
    end)

    it("treats what comes before a lone </think> as reasoning in a whole answer", function()
        local body = cjson.encode({ choices = { { index = 0, message = { role = "assistant",
            content = "Thinking it over.\n</think>\n\nAnswer.", reasoning_content = "" } } } })
        local msg = cjson.decode(chatresp.body(chatresp.new(info), body)).choices[1].message
        assert.equal("Thinking it over.\n", msg.reasoning_content)
        assert.equal("Answer.", msg.content)
    end)

    it("leaves an answer with no tags exactly as the backend sent it", function()
        local body = '{"id":"x","choices":[{"index":0,"message":{"role":"assistant","content":"a < b","reasoning_content":"hm"},"finish_reason":"stop"}],"usage":{"completion_tokens":1.0}}'
        assert.equal(body, chatresp.body(chatresp.new(info), body))
    end)
end)

describe("events that change, in trtllm-serve's compact shape", function()
    -- The raw-tag text cut into trtllm chunks at `cuts` (no parser: all of it in content).
    local function raw_stream(cuts)
        local parts, pos = {}, 1
        for _, cut in ipairs(cuts) do
            parts[#parts + 1] = trtllm_chunk(TEXT:sub(pos, cut), "")
            pos = cut + 1
        end
        parts[#parts + 1] = trtllm_chunk(TEXT:sub(pos), "")
        parts[#parts + 1] = trtllm_chunk("", "", true)
        return table.concat(parts) .. "data: [DONE]\n\n"
    end

    it("are spliced to what decoding them would give, at every cut, in tags and backend mode", function()
        for _, mode in ipairs({ "tags", "backend" }) do
            for i = 1, #TEXT - 1 do
                local out = through_router(raw_stream({ i }), { (i * 3) % 50 + 1 }, { mode = mode, thinking = true })
                local r, c = collect(out)
                assert.equal("Let me see: 2+2.\n", r, mode .. " cut " .. i)
                assert.equal("It is 4.", c, mode .. " cut " .. i)
            end
        end
    end)

    it("keep every other byte and agree with the decoding path", function()
        for _, piece in ipairs({ { "\n\nHi", "" }, { "<think>a", "" }, { "caf\\u00e9 \"q\"", "" }, { "", "\nhm" } }) do
            local spliced = chatresp.event(chatresp.new({ mode = "backend" }), trtllm_chunk(piece[1], piece[2]):sub(7, -3))
            -- A space after "delta": is not the compact shape: that copy goes through cjson.
            local spaced = trtllm_chunk(piece[1], piece[2]):sub(7, -3):gsub('"delta":{', '"delta": {')
            local decoded = chatresp.event(chatresp.new({ mode = "backend" }), spaced)
            assert.same(cjson.decode(decoded), cjson.decode(spliced))
            assert.truthy(spliced:find('^{"id":"chatcmpl%-1","object":"chat.completion.chunk","created":1,"model":"m"'))
        end
    end)
end)
