require("tests.lua.helper")
local jsonbody = require("jsonbody")
local cjson = require("cjson")

describe("jsonbody", function()
    it("lists top-level members only, skipping nested objects and tricky strings", function()
        local s = '{"a": {"model": "x"}, "b": "he said \\"}, {\\" ok", "model" : "qwen" , "c": [1, {"d": []}]}'
        local m = jsonbody.members(s)
        assert.are.same({ "a", "b", "model", "c" }, { m[1].key, m[2].key, m[3].key, m[4].key })
        assert.equal('"qwen"', s:sub(m[3].vstart, m[3].vend))
        assert.equal('[1, {"d": []}]', s:sub(m[4].vstart, m[4].vend))
    end)

    it("replaces a value and keeps every other byte", function()
        local s = '{"model":"qwen","temperature":0.70000000000000001,"stop":[],"x":{},"u":"caf\\u00e9 日本"}'
        local out = jsonbody.set_raw(s, "model", '"nvidia/Qwen3-30B-A3B-FP4"')
        assert.equal('{"model":"nvidia/Qwen3-30B-A3B-FP4","temperature":0.70000000000000001,"stop":[],"x":{},"u":"caf\\u00e9 日本"}', out)
    end)

    it("edits the last of duplicate keys, as JSON parsers read it", function()
        local out = jsonbody.set_raw('{"model":"a","model":"b"}', "model", '"c"')
        assert.equal('{"model":"a","model":"c"}', out)
    end)

    it("appends a missing member, also to an empty object", function()
        assert.equal('{"a":1,"n":2}', jsonbody.set_raw('{"a":1}', "n", "2"))
        assert.equal('{"n":true }', jsonbody.set_raw('{ }', "n", "true"))
        assert.equal('{"a":1,"n":2\n}\n', jsonbody.set_raw('{"a":1\n}\n', "n", "2"))
    end)

    it("removes members wherever they stand and leaves valid JSON", function()
        local cases = {
            { '{"p":1,"a":2,"b":3}', "p", '{"a":2,"b":3}' },
            { '{"a":2,"p":1,"b":3}', "p", '{"a":2,"b":3}' },
            { '{"a":2,"b":3,"p":1}', "p", '{"a":2,"b":3}' },
            { '{"p":1}', "p", '{}' },
            { '{"p":1,"a":[1,2],"p":{"x":1}}', "p", '{"a":[1,2]}' },
            { '{"a":1}', "p", '{"a":1}' },
        }
        for _, c in ipairs(cases) do
            local out = jsonbody.remove(c[1], c[2])
            assert.equal(c[3], out)
            assert.is_table(cjson.decode(out))
        end
    end)

    it("reads a raw value", function()
        assert.equal('{"enable_thinking": false}', jsonbody.get_raw('{"k": {"enable_thinking": false}}', "k"))
        assert.is_nil(jsonbody.get_raw('{"k": 1}', "z"))
    end)

    it("refuses what is not an object", function()
        local out, err = jsonbody.members("[1]")
        assert.is_nil(out)
        assert.matches("not a JSON object", err)
    end)
end)

describe("jsonbody.editor", function()
    it("gives byte for byte what the same set_raw/remove calls one after another give", function()
        local bodies = {
            '{"model":"q","messages":[],"store":true,"temperature":0.1}',
            '{ "store": 1 , "model" : "q",\n "messages": [ {"a": "}"} ] , "store":{"x":[]} }\n',
            '{"store":true}', '{ }', '{"a":1\n}\n', '{"model":"a","model":"b","metadata":{}}',
        }
        local keys = { "model", "store", "metadata", "top_k", "messages", "temperature" }
        local seed = 7
        local function rand(n)
            seed = (seed * 1103515245 + 12345) % 2147483648
            return seed % n + 1
        end
        for round = 1, 400 do
            local body = bodies[rand(#bodies)]
            local ed, seq = jsonbody.editor(body), body
            for _ = 1, rand(5) do
                local key = keys[rand(#keys)]
                if rand(2) == 1 then
                    local raw = tostring(rand(100))
                    jsonbody.set(ed, key, raw)
                    seq = jsonbody.set_raw(seq, key, raw)
                else
                    jsonbody.drop(ed, key)
                    seq = jsonbody.remove(seq, key)
                end
            end
            assert.equal(seq, jsonbody.apply(ed), "round " .. round .. ": " .. body)
        end
    end)

    it("returns the very body when nothing was edited, and reads members from its one scan", function()
        local body = '{"model":"a","stream_options":{"x":1}}'
        local ed = jsonbody.editor(body)
        assert.equal('{"x":1}', jsonbody.get(ed, "stream_options"))
        assert.is_nil(jsonbody.get(ed, "messages"))
        assert.equal(body, jsonbody.apply(ed))
    end)
end)
