require("tests.lua.helper")
local sse = require("sse")

local STREAM = 'data: {"a":1}\n\n: keep-alive\n\ndata: {"b":"x\\n\\ny"}\r\n\r\nevent: done\ndata: line1\ndata: line2\n\ndata: [DONE]\n\n'
local DATA = { '{"a":1}', false, '{"b":"x\\n\\ny"}', "line1\nline2", "[DONE]" }

local function run(cuts)
    local st, out, pos = sse.new(), {}, 1
    local pieces = {}
    for _, cut in ipairs(cuts) do
        pieces[#pieces + 1] = STREAM:sub(pos, cut)
        pos = cut + 1
    end
    pieces[#pieces + 1] = STREAM:sub(pos)
    local raw = {}
    for _, p in ipairs(pieces) do
        for i = 1, assert(sse.feed(st, p)) do
            out[#out + 1] = sse.data(st, i) or false
            raw[#raw + 1] = sse.raw(st, i)
        end
    end
    return out, table.concat(raw) .. sse.rest(st)
end

describe("sse framing", function()
    it("finds every event, comment and multi-line data, at every byte cut", function()
        for i = 0, #STREAM do
            local data, raw = run(i > 0 and { i } or {})
            assert.same(DATA, data, "cut at " .. i)
            assert.equal(STREAM, raw, "bytes changed with a cut at " .. i)
        end
        for i = 1, #STREAM - 1, 3 do
            for j = i + 1, #STREAM - 1, 5 do
                local data = run({ i, j })
                assert.same(DATA, data, "cuts at " .. i .. "," .. j)
            end
        end
    end)

    it("returns two events arriving in one read as two", function()
        local st = sse.new()
        assert.equal(2, sse.feed(st, 'data: 1\n\ndata: 2\n\n'))
        assert.equal("2", sse.data(st, 2))
    end)

    it("keeps an unterminated tail for the end of the body", function()
        local st = sse.new()
        assert.equal(0, sse.feed(st, "data: {\"cut"))
        assert.equal("data: {\"cut", sse.rest(st))
    end)

    it("refuses to hold more than its cap", function()
        local st = sse.new(8)
        local n, err = sse.feed(st, "data: 123456789")
        assert.is_nil(n)
        assert.matches("longer than 8", err)
    end)
end)
