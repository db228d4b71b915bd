require("tests.lua.helper")
local think = require("think")

-- Feeds text cut at the given positions; returns the concatenated reasoning and content.
local function run(text, cuts, start_inside)
    local st = think.new(start_inside)
    local r, c, pos = {}, {}, 1
    for _, cut in ipairs(cuts) do
        local a, b = think.feed(st, text:sub(pos, cut))
        r[#r + 1], c[#c + 1] = a, b
        pos = cut + 1
    end
    local a, b = think.feed(st, text:sub(pos))
    r[#r + 1], c[#c + 1] = a, b
    a, b = think.finish(st)
    r[#r + 1], c[#c + 1] = a, b
    return table.concat(r), table.concat(c)
end

local CASES = {
    -- text, start_inside, reasoning, content
    { "<think>\nhmm, 2+2\n</think>\n\nIt is 4.", false, "\nhmm, 2+2\n", "\n\nIt is 4." },
    { "<think>\n\n</think>\n\nNo thinking.", false, "\n\n", "\n\nNo thinking." },
    { "Plain answer, no tags < or </ at all <", false, "", "Plain answer, no tags < or </ at all <" },
    { "Before <think>inside</think>after", false, "inside", "Before after" },
    { "thinking without end", true, "thinking without end", "" },
    { "<think>open and cut off </thi", false, "open and cut off </thi", "" },
    { "nemotron thinks\n</think>\nanswer", true, "nemotron thinks\n", "\nanswer" },
    { "a</think>b</think>c <think>d", true, "a", "b</think>c <think>d" },
    { "日本語で考える</think>答え", true, "日本語で考える", "答え" },
}

describe("think splitter", function()
    for _, case in ipairs(CASES) do
        it("splits " .. string.format("%q", case[1]) .. " the same at every byte cut", function()
            local text = case[1]
            local r, c = run(text, {}, case[2])
            assert.equal(case[3], r)
            assert.equal(case[4], c)
            for i = 1, #text - 1 do
                local r1, c1 = run(text, { i }, case[2])
                assert.equal(case[3], r1, "cut at " .. i)
                assert.equal(case[4], c1, "cut at " .. i)
                for j = i + 1, math.min(#text - 1, i + 9) do
                    local r2, c2 = run(text, { i, j }, case[2])
                    assert.equal(case[3], r2, "cuts at " .. i .. "," .. j)
                    assert.equal(case[4], c2, "cuts at " .. i .. "," .. j)
                end
            end
        end)
    end

    it("holds back a partial tag and releases it at the end", function()
        local st = think.new(false)
        assert.same({ "", "x" }, { think.feed(st, "x<th") })
        assert.same({ "", "<th" }, { think.finish(st) })
        st = think.new(true)
        assert.same({ "r", "" }, { think.feed(st, "r</") })
        assert.same({ "</", "" }, { think.finish(st) })
    end)

    it("gives the same result for one whole text", function()
        assert.same({ "\nhmm\n", "\n\nok" }, { think.split("<think>\nhmm\n</think>\n\nok", false) })
    end)
end)
