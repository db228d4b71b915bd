require("tests.lua.helper")
local hopbyhop = require("hopbyhop")

local function set(list)
    local out = {}
    for _, v in ipairs(list) do
        out[v] = true
    end
    return out
end

describe("hopbyhop.to_clear", function()
    it("clears the client's Authorization and every Proxy-* header", function()
        local got = set(hopbyhop.to_clear({ authorization = "Bearer sk-client", ["proxy-authorization"] = "Basic x",
                                            ["proxy-connection"] = "keep-alive", ["x-request-id"] = "1" }))
        assert.same(set({ "authorization", "proxy-authorization", "proxy-connection" }), got)
    end)

    it("clears the headers that Connection names, in any case, from every Connection header", function()
        local got = set(hopbyhop.to_clear({ connection = { "keep-alive, X-Secret", "x-other" },
                                            ["x-secret"] = "s", ["x-other"] = "o" }))
        assert.same(set({ "x-secret", "x-other" }), got)
    end)

    it("leaves what nginx's proxy sets itself even when Connection names it", function()
        assert.same({}, hopbyhop.to_clear({ connection = "Content-Length, Host, content-type, close", host = "x",
                                            ["content-length"] = "2", ["content-type"] = "application/json" }))
    end)

    it("clears Trailer, TE, Upgrade and Keep-Alive", function()
        local got = set(hopbyhop.to_clear({ trailer = "x", te = "trailers", upgrade = "h2c", ["keep-alive"] = "5" }))
        assert.same(set({ "trailer", "te", "upgrade", "keep-alive" }), got)
    end)

    it("clears nothing from an ordinary request", function()
        assert.same({}, hopbyhop.to_clear({ host = "x", ["content-type"] = "application/json",
                                            ["content-length"] = "2", connection = "keep-alive" }))
    end)
end)
