require("tests.lua.helper")
local cjson = require("cjson.safe")
local reqcheck = require("reqcheck")

local function check(body, ...)
    local kind = select("#", ...) == 0 and "chat" or ...   -- nil: /v1/responses
    return reqcheck.check(body, assert(cjson.decode(body)), kind)
end

local M = '"messages":[{"role":"user","content":"hi"}]'

describe("reqcheck.check", function()
    it("passes well-formed requests, nulls and fields it does not own", function()
        for _, body in ipairs({
            "{" .. M .. "}",
            "{" .. M .. ',"stream":true,"stream_options":{"include_usage":true}}',
            "{" .. M .. ',"stream_options":null,"chat_template_kwargs":{},"reasoning_effort":null}',
            "{" .. M .. ',"tools":[{"type":"function","function":{"name":"f"}}],"tool_choice":"auto"}',
            "{" .. M .. ',"tools":[],"temperature":0.2,"max_tokens":5,"logit_bias":{},"stop":[]}',
            '{"messages":[{"role":"user","content":[{"type":"text","text":"hi"}]},'
                .. '{"role":"assistant","content":null,"tool_calls":[]}]}',
            '{"messages":[]}', '{"model":"x"}',
        }) do
            assert.is_nil(check(body), body)
        end
        assert.is_nil(check('{"prompt":"x","stream_options":{}}', "completions"))
        assert.is_nil(check('{"input":"x","messages":7}', nil))   -- /v1/responses: no messages
    end)

    -- Each a body-shape mistake a client makes; the 400 names the field.
    local MISTAKES = {
        { '"stream":true,"stream_options":[]', "stream_options" },
        { '"stream_options":"x"', "stream_options" },
        { '"stream_options":{"include_usage":"yes"}', "stream_options" },
        { '"stream":"true"', "stream" },
        { '"chat_template_kwargs":[]', "chat_template_kwargs" },
        { '"chat_template_kwargs":"off"', "chat_template_kwargs" },
        { '"chat_template_kwargs":{"enable_thinking":"no"}', "chat_template_kwargs" },
        { '"reasoning_effort":"max"', "reasoning_effort" },
        { '"reasoning_effort":{}', "reasoning_effort" },
        { '"reasoning_effort":1', "reasoning_effort" },
        { '"reasoning_format":1', "reasoning_format" },
        { '"reasoning_format":null', "reasoning_format" },
        { '"include_reasoning":"yes"', "include_reasoning" },
        { '"tools":{"type":"function"}', "tools" },
        { '"tools":"f"', "tools" },
        { '"tools":[1]', "tools" },
        { '"tools":[{"function":{}}]', "tools" },
        { '"tool_choice":3', "tool_choice" },
        { '"tool_choice":[1]', "tool_choice" },
        { '"temperature":"hot"', "temperature" },
        { '"max_tokens":[]', "max_tokens" },
        { '"n":"2"', "n" },
    }
    for _, case in ipairs(MISTAKES) do
        it("refuses " .. case[1] .. " naming " .. case[2], function()
            local err = check("{" .. M .. "," .. case[1] .. "}")
            assert.is_table(err)
            assert.equal(400, err.status)
            assert.equal(case[2], err.param)
            assert.equal("invalid_type", err.code)
            assert.is_truthy(err.message:find(case[2], 1, true))
        end)
    end

    local BAD_MESSAGES = {
        '{"messages":{"role":"user"}}', '{"messages":"hi"}', '{"messages":7}', '{"messages":["hi"]}',
        '{"messages":[[]]}', '{"messages":[{"content":"hi"}]}', '{"messages":[{"role":1,"content":"hi"}]}',
        '{"messages":[{"role":"user"}]}', '{"messages":[{"role":"user","content":{"a":1}}]}',
        '{"messages":[{"role":"user","content":[1]}]}', '{"messages":[{"role":"user","content":[{"text":"x"}]}]}',
    }
    for _, body in ipairs(BAD_MESSAGES) do
        it("refuses messages shaped like " .. body, function()
            local err = check(body)
            assert.is_table(err)
            assert.equal("messages", err.param)
        end)
    end

    it("checks the shared fields on completions too, but not messages", function()
        assert.equal("stream_options", check('{"prompt":"x","stream_options":[]}', "completions").param)
        assert.is_nil(check('{"prompt":"x","messages":7}', "completions"))
    end)
end)
