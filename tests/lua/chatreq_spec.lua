require("tests.lua.helper")
local cjson = require("cjson.safe")
local chatreq = require("chatreq")
local jsonbody = require("jsonbody")

local QWEN = { reasoning = { mode = "backend", soft_switch = true, thinking_default = true,
                             sampling_thinking = { temperature = 0.6 }, sampling_non_thinking = { temperature = 0.7 } },
               request = { drop = { "parallel_tool_calls" }, tool_choice_auto = true } }
local NEMO = { id = "nemotron", reasoning = { mode = "backend", soft_switch = false, thinking_default = true }, request = { drop = {} } }

-- What the router does: collect the edits on one editor, apply them in one splice.
local function rewrite(body, model, kind, variant)
    local ed = jsonbody.editor(body)
    local info, err = chatreq.rewrite(ed, cjson.decode(body), model, kind or "chat", variant)
    if not info then
        return nil, err
    end
    return jsonbody.apply(ed), info
end

describe("chat request rewriting", function()
    it("applies the documented precedence", function()
        local cases = {
            { '{"messages":[{"role":"user","content":"hi"}]}', true },
            { '{"messages":[{"role":"user","content":"hi /no_think"}]}', false },
            { '{"messages":[{"role":"system","content":"x /no_think"},{"role":"user","content":"hi"}]}', false },
            { '{"messages":[{"role":"system","content":"x /no_think"},{"role":"user","content":"hi /think"}]}', true },
            { '{"reasoning_effort":"none","messages":[{"role":"user","content":"hi /think"}]}', false },
            { '{"chat_template_kwargs":{"enable_thinking":true},"reasoning_effort":"none","messages":[]}', true },
        }
        for _, case in ipairs(cases) do
            local _, info = rewrite(case[1], NEMO)
            assert.equal(case[2], info.thinking, case[1])
        end
    end)

    it("lets a variant's fixed thinking setting overrule every switch in the request", function()
        local off = { id = "qwen-nothink", thinking = false }
        local raw = '{"chat_template_kwargs":{"enable_thinking":true},"messages":[{"role":"user","content":"hi /think"}]}'
        local body, info = rewrite(raw, QWEN, "chat", off)
        assert.is_false(info.thinking)
        -- Qwen would obey the /think text, so it goes; the non-thinking sampling comes in.
        assert.equal('{"chat_template_kwargs":{"enable_thinking":false},"messages":[{"role":"user","content":"hi"}],"temperature":0.7}', body)
    end)

    it("sets enable_thinking inside existing chat_template_kwargs and keeps its other keys", function()
        local body = rewrite('{"chat_template_kwargs":{"x":[]},"reasoning_effort":"minimal","messages":[]}', NEMO)
        assert.equal('{"chat_template_kwargs":{"x":[],"enable_thinking":false},"messages":[]}', body)
    end)

    it("removes switch text the template does not understand, keeps it where it does", function()
        local raw = '{"messages":[{"role":"user","content":"hi  /no_think  "}]}'
        assert.equal('{"messages":[{"role":"user","content":"hi"}],"chat_template_kwargs":{"enable_thinking":false}}',
            rewrite(raw, NEMO))
        assert.equal('{"messages":[{"role":"user","content":"hi  /no_think  "}],"chat_template_kwargs":{"enable_thinking":false},"temperature":0.7}',
            rewrite(raw, QWEN))
    end)

    it("drops rejected fields, adds tool_choice, and leaves client sampling alone", function()
        local body = rewrite('{"messages":[],"tools":[{"type":"function"}],"parallel_tool_calls":true,"temperature":0.1}', QWEN)
        assert.equal('{"messages":[],"tools":[{"type":"function"}],"temperature":0.1,"tool_choice":"auto"}', body)
    end)

    it("asks for usage on streams and says so", function()
        local body, info = rewrite('{"messages":[],"stream":true}', NEMO)
        assert.equal('{"messages":[],"stream":true,"stream_options":{"include_usage":true}}', body)
        assert.is_true(info.hide_usage)
        body, info = rewrite('{"messages":[],"stream":true,"stream_options":{"include_usage":true}}', NEMO)
        assert.is_false(info.hide_usage)
        body = rewrite('{"prompt":"x","stream":false,"stream_options":{}}', NEMO, "completions")
        assert.equal('{"prompt":"x","stream":false}', body)
    end)
end)

describe("responses request rewriting", function()
    local function rewrite_r(body, model, variant)
        local ed = jsonbody.editor(body)
        local info, err = chatreq.rewrite_responses(ed, cjson.decode(body), model, variant)
        if not info then
            return nil, err
        end
        return jsonbody.apply(ed) or body, info
    end

    it("leaves a request that wants the model's default as it is, but for sampling defaults", function()
        local body, info = rewrite_r('{"input":"hi","temperature":0.2}', QWEN)
        assert.equal('{"input":"hi","temperature":0.2}', body)
        assert.is_true(info.thinking)
        assert.same({ input = "hi", temperature = 0.6 }, cjson.decode((rewrite_r('{"input":"hi"}', QWEN))))
    end)

    it("turns thinking off with /no_think closing the instructions, variant over effort", function()
        local body = rewrite_r('{"input":"hi","reasoning":{"effort":"none"}}', QWEN)
        assert.equal("/no_think", cjson.decode(body).instructions)
        body = rewrite_r('{"input":"hi","instructions":"Be brief.","reasoning":{"effort":"high"}}', QWEN,
            { thinking = false })
        assert.equal("Be brief.\n/no_think", cjson.decode(body).instructions)
        assert.equal(0.7, cjson.decode(body).temperature)
    end)

    it("says so where the template has no text switch", function()
        local _, err = rewrite_r('{"input":"hi","reasoning":{"effort":"minimal"}}', NEMO)
        assert.equal(400, err.status)
        assert.equal("reasoning", err.param)
        assert.equal("thinking_switch_unsupported", err.code)
        assert.is_true((rewrite_r('{"input":"hi","reasoning":{"effort":"low"}}', NEMO)) ~= nil)
    end)
end)
