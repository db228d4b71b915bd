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
        for _, ev in ipairs(assert(sse.feed(codec, piece))) do
            if ev.data == nil or ev.data == "[DONE]" then
                out[#out + 1] = ev.raw
            else
                local new = chatresp.event(st, ev.data)
                if new then
                    out[#out + 1] = sse.encode(new)
                end
            end
        end
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
