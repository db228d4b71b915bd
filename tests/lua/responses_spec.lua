require("tests.lua.helper")
local responses = require("responses")

local function dict()
    local d = { data = {} }
    function d:set(k, v, ttl) self.data[k] = { v, ttl } return true end
    function d:get(k) return self.data[k] and self.data[k][1] end
    function d:delete(k) self.data[k] = nil end
    return d
end

local STREAM = 'event: response.created\ndata: {"type": "response.created", "response": {"id": "resp_4f2a-b_9", '
    .. '"object": "response", "output": []}}\n\nevent: response.output_text.delta\ndata: {"item_id": "msg_1"}\n\n'

describe("responses stickiness", function()
    it("finds the id of a stream or a body at every read cut, once", function()
        for _, text in ipairs({ STREAM, '{"id":"resp_4f2a-b_9","object":"response","output":[{"id":"msg_2"}]}' }) do
            for i = 1, #text - 1 do
                local st = responses.scanner()
                local a = responses.scan(st, text:sub(1, i))
                local b = responses.scan(st, text:sub(i + 1))
                assert.equal("resp_4f2a-b_9", a or b, "cut at " .. i)
                assert.is_nil(a and b)
                assert.is_nil(responses.scan(st, text))
            end
        end
    end)

    it("ignores message ids and gives up on a long body without one", function()
        local st = responses.scanner()
        assert.is_nil(responses.scan(st, '{"id":"msg_1","x":"' .. string.rep("a", 70000) .. '"}'))
        assert.is_true(st.done)
    end)

    it("remembers the model and server, with the TTL, and forgets on delete", function()
        local d = dict()
        responses.remember(d, "resp_1", "nvidia/Qwen3-30B-A3B-FP4", "127.0.0.1:8001", 60)
        assert.same({ "nvidia/Qwen3-30B-A3B-FP4", "127.0.0.1:8001" }, { responses.lookup(d, "resp_1") })
        assert.equal(60, d.data.resp_1[2])
        responses.forget(d, "resp_1")
        assert.is_nil(responses.lookup(d, "resp_1"))
    end)

    it("reads the id from GET and DELETE paths", function()
        assert.equal("resp_x", responses.path_id("/v1/responses/resp_x"))
        assert.is_nil(responses.path_id("/v1/responses"))
        assert.is_nil(responses.path_id("/v1/responses/a/b"))
    end)
end)
