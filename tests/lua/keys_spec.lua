-- API keys (nginx/lua/keys.lua): the file's YAML subset, validation, scopes, the key header,
-- sha256 and the sliding-minute limits.
package.path = "nginx/lua/?.lua;" .. package.path
require("tests.lua.helper")

local data = {}
_G.ngx = {
    shared = { router_keys = {
        get = function(_, key) return data[key] end,
        add = function(_, key, v)
            if data[key] ~= nil then return false end
            data[key] = v
            return true
        end,
        incr = function(_, key, n, init)
            if data[key] == nil then data[key] = init end
            data[key] = data[key] + n
            return data[key]
        end,
    } },
    log = function() end, ERR = 3, WARN = 4, NOTICE = 6,
}
local keys = require("keys")
local lyaml = require("lyaml")

local REG = { models = {
    { id = "nvidia/Qwen3-30B-A3B-FP4", aliases = { "qwen", "qwen3" } },
    { id = "nvidia/NVIDIA-Nemotron-3-Nano-30B-A3B-NVFP4", aliases = { "nemotron" } },
    { id = "Qwen3-4B-Instruct-2507-NVFP4", aliases = { "qwen3-4b" } },
} }
local H = string.rep("ab", 32)

-- lyaml's null is a table of its own; the subset parser's is keys.NULL.
local function plain(v, null)
    if v == null then return "<null>" end
    if type(v) ~= "table" then return v end
    local out = {}
    for k2, x in pairs(v) do out[k2] = plain(x, null) end
    return out
end

local VALID = {
    [[
# shared box
keys:
  - name: alice            # shown in logs
    sha256: 3f1cabababababababababababababababababababababababababababababab
    models: [qwen, "nvidia/*"]
    rpm: 60
    tpm: 200000
    max_concurrent: 4
  - name: bob
    sha256: 'ffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff'
    models:
      - 'it''s'
      - "a\"b"
  - name: ci
    sha256: "00"
    models: []
    metrics: true
    tpm:
]],
    "keys: []\n",
    "---\nkeys:\n- name: x\n  sha256: aa\n  models:\n  - qwen\n",
    "keys:\n  -\n    name: x\n    rpm: 1\n",
    "keys:\n  - name: \"with # hash\"\n    models: [ a , 'b#c' ]\n",
    "keys:\n  - name: it's # bob's key\n    models: [a,b] # two\n",
    "",
}

describe("keys.parse", function()
    for i, text in ipairs(VALID) do
        it("reads valid file " .. i .. " as a YAML parser does", function()
            local got = assert(keys.parse(text))
            local want = lyaml.load(text) or {}
            assert.same(plain(want, lyaml.null), plain(got, keys.NULL))
        end)
    end

    local BAD = {
        { "keys:\n\t- name: a\n", "line 2: tabs" },
        { "keys:\n  - name: &a x\n", "line 2: '&a x' needs quotes" },
        { "keys:\n  - name: *a\n", "needs quotes" },
        { "keys:\n  - name: \"open\n", "line 2: unterminated double%-quoted" },
        { "keys:\n  - models: [a, b\n", "unterminated '%['" },
        { "keys:\n  - models: [a,]\n", "trailing ','" },
        { "keys:\n  - name: a\n    name: b\n", "'name' appears twice" },
        { "keys:\n  - name: a\n      rpm: 3\n", "line 3: unexpected indentation" },
        { "  keys: []\n", "must not be indented" },
        { "keys:\n  - name: |\n", "needs quotes" },
        { "keys:\n  - models: [[a]]\n", "nested" },
    }
    for _, case in ipairs(BAD) do
        it("refuses " .. string.format("%q", case[1]):sub(1, 40) .. " naming the line", function()
            local doc, err = keys.parse(case[1])
            assert.is_nil(doc)
            assert.truthy(err:find(case[2]), err)
        end)
    end
end)

describe("keys.compile", function()
    local function compile(text)
        return keys.compile(assert(keys.parse(text)), REG)
    end

    it("scopes by id, alias and glob, case-insensitively; absent = every model", function()
        local set = assert(compile("keys:\n  - name: a\n    sha256: " .. H .. "\n    models: [QWEN, 'nvidia/*nano*']\n"
            .. "  - name: b\n    sha256: " .. string.rep("cd", 32) .. "\n"))
        local a, b = set.by_name.a, set.by_name.b
        assert.is_true(keys.allows(a, "nvidia/Qwen3-30B-A3B-FP4"))
        assert.is_true(keys.allows(a, "nvidia/NVIDIA-Nemotron-3-Nano-30B-A3B-NVFP4"))
        assert.is_false(keys.allows(a, "Qwen3-4B-Instruct-2507-NVFP4"))
        assert.is_true(keys.allows(b, "Qwen3-4B-Instruct-2507-NVFP4"))
        assert.equal(a, set.by_hash[H])
    end)

    it("warns about a scope that matches no model", function()
        local set = assert(compile("keys:\n  - name: a\n    sha256: " .. H .. "\n    models: [gpt-4]\n"))
        assert.truthy(set.warnings[1]:find("'gpt%-4' matches no model"))
        assert.is_false(keys.allows(set.by_name.a, "nvidia/Qwen3-30B-A3B-FP4"))
    end)

    local BAD = {
        { "keys: 3\n", "'keys' must be a list" },
        { "users: []\n", "unknown top%-level field 'users'" },
        { "keys:\n  - name: a\n    sha256: xyz\n", "keys%[0%] %(a%)%.sha256: must be 64 hex" },
        { "keys:\n  - name: 'a b'\n    sha256: " .. H .. "\n", "keys%[0%]%.name" },
        { "keys:\n  - name: a\n    sha256: " .. H .. "\n  - name: a\n    sha256: " .. string.rep("0", 64) .. "\n",
          "'a' is used twice" },
        { "keys:\n  - name: a\n    sha256: " .. H .. "\n  - name: b\n    sha256: " .. H:upper() .. "\n",
          "same key is listed twice" },
        { "keys:\n  - name: a\n    sha256: " .. H .. "\n    rpm: 0\n", "rpm: must be a whole number" },
        { "keys:\n  - name: a\n    sha256: " .. H .. "\n    tpm: 1.5\n", "tpm: must be a whole number" },
        { "keys:\n  - name: a\n    sha256: " .. H .. "\n    max_concurrent: many\n", "max_concurrent" },
        { "keys:\n  - name: a\n    sha256: " .. H .. "\n    modles: [a]\n", "unknown field 'modles'" },
        { "keys:\n  - name: a\n    sha256: " .. H .. "\n    models: [1]\n", "models%[0%]" },
        { "keys:\n  - name: a\n    sha256: " .. H .. "\n    metrics: yes\n", "metrics: must be true or false" },
    }
    for _, case in ipairs(BAD) do
        it("refuses " .. case[2]:gsub("%%", ""), function()
            local set, err = compile(case[1])
            assert.is_nil(set)
            assert.truthy(err:find(case[2]), err)
        end)
    end
end)

describe("keys.extract", function()
    it("takes a Bearer token, any case of the scheme, else x-api-key", function()
        assert.equal("sk-1", keys.extract("Bearer sk-1", nil))
        assert.equal("sk-1", keys.extract("bearer   sk-1 ", nil))
        assert.equal("sk-2", keys.extract(nil, "sk-2"))
        assert.equal("sk-2", keys.extract("Basic dXNlcg==", "sk-2"))
        assert.equal("sk-1", keys.extract({ "Bearer sk-1", "Bearer sk-3" }, nil))
        assert.is_nil(keys.extract("Bearer", nil))
        assert.is_nil(keys.extract("Bearer a b", nil))
        assert.is_nil(keys.extract(nil, "  "))
    end)
end)

describe("keys.sha256_hex", function()
    it("matches the FIPS 180-2 test vectors", function()
        assert.equal("ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad", keys.sha256_hex("abc"))
        assert.equal("e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855", keys.sha256_hex(""))
    end)
end)

describe("keys sliding minute", function()
    it("weights the previous window by its overlap with the last minute", function()
        assert.equal(10, keys.estimate(0, 10, 120, 60))
        assert.equal(15, keys.estimate(10, 10, 150, 60))   -- half of the previous window overlaps
    end)

    it("says when the estimate falls to a target", function()
        -- 2 used this window (starting at 120), limit 2: one more fits once the window has
        -- rolled and decayed to 1, i.e. at 180 + 30.
        assert.equal(90, keys.until_below(0, 2, 120, 60, 1))
        -- previous window 4, now at 150 (estimate 2 + 0): below 1 at 165.
        assert.equal(15, keys.until_below(4, 0, 150, 60, 1))
        assert.equal(0, keys.until_below(0, 0, 150, 60, 0))
    end)

    it("formats durations as OpenAI does", function()
        assert.equal("250ms", keys.duration(0.25))
        assert.equal("2s", keys.duration(1.2))
        assert.equal("6m0s", keys.duration(360))
    end)
end)

describe("keys.admit", function()
    before_each(function()
        for k in pairs(data) do data[k] = nil end
    end)

    it("counts requests per minute and refuses the one over the limit with a reset", function()
        local e = { name = "a", rpm = 2 }
        local i1 = assert(keys.admit(e, nil, 1000))
        assert.equal(1, i1.requests.remaining)
        assert(keys.admit(e, nil, 1000.5))
        local ok, info = keys.admit(e, nil, 1001)
        assert.is_nil(ok)
        assert.equal("rpm", info.refused)
        assert.is_true(info.retry_after > 0)
        local h = keys.headers(info)
        assert.equal("2", h["x-ratelimit-limit-requests"])
        assert.equal("0", h["x-ratelimit-remaining-requests"])
        assert.truthy(tonumber(h["Retry-After"]) >= 1)
        -- the refused request was not counted: after the reset one more fits
        assert(keys.admit(e, nil, 1001 + info.retry_after + 0.001))
    end)

    it("holds max_concurrent slots until release", function()
        local e = { name = "c", max_concurrent = 1 }
        assert(keys.admit(e, nil, 10))
        local ok, info = keys.admit(e, nil, 10)
        assert.is_nil(ok)
        assert.equal("max_concurrent", info.refused)
        keys.release("c", true, nil, 10)
        assert(keys.admit(e, nil, 10))
    end)

    it("counts tokens from usage and refuses once the minute's budget is spent", function()
        local e = { name = "t", tpm = 100 }
        assert(keys.admit(e, 50, 10))
        keys.release("t", false, 100, 10)
        local ok, info = keys.admit(e, nil, 11)
        assert.is_nil(ok)
        assert.equal("tpm", info.refused)
        assert.equal("0", keys.headers(info)["x-ratelimit-remaining-tokens"])
    end)

    it("refuses up front a max_tokens over the whole budget, without a Retry-After", function()
        local ok, info = keys.admit({ name = "t2", tpm = 100 }, 101, 10)
        assert.is_nil(ok)
        assert.equal("tpm", info.refused)
        assert.is_nil(keys.headers(info)["Retry-After"])
    end)

    it("a request refused by rpm gives its concurrency slot back", function()
        local e = { name = "rc", rpm = 1, max_concurrent = 5 }
        assert(keys.admit(e, nil, 10))
        assert.is_nil(keys.admit(e, nil, 10))
        assert.equal(1, data["c\1rc"])
    end)
end)
