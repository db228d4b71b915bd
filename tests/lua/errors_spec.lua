require("tests.lua.helper")
local errors = require("errors")

describe("errors.describe_nginx", function()
    it("has an OpenAI type and a code for every status router.conf's error_page sends", function()
        local conf = assert(io.open("nginx/conf/router.conf")):read("*a")
        local n = 0
        for codes in conf:gmatch("\n%s*error_page ([^\n]-) /_router/nginx%-error;") do
            for code in codes:gmatch("=?(%d+)") do
                local status = tonumber(code)
                if status ~= 494 then   -- `494 =431`: the answer is 431
                    local msg, etype, ecode = errors.describe_nginx(status, "")
                    assert.is_string(ecode, "no code for " .. status)
                    assert.is_falsy(msg:find("^Error "), "no message for " .. status)
                    -- 501 and 505 answer what the client sent: its mistake, not the server's
                    local server = status == 500 or (status >= 502 and status <= 504)
                    assert.equals(server and "server_error" or "invalid_request_error", etype)
                    n = n + 1
                end
            end
        end
        assert.is_true(n >= 14)
    end)

    it("names the model in upstream errors only", function()
        assert.equals("Could not reach the model server for model 'm'", (errors.describe_nginx(502, "m")))
        assert.equals("Could not reach the model server", (errors.describe_nginx(502, "")))
        assert.is_falsy((errors.describe_nginx(400, "m")):find("m'"))
    end)

    it("answers an unlisted status generically, by its class", function()
        local msg, etype = errors.describe_nginx(418, "")
        assert.equals("Error 418", msg)
        assert.equals("invalid_request_error", etype)
    end)
end)


local FFFD = "\239\191\189"

describe("errors.valid_utf8", function()
    it("keeps ASCII and valid UTF-8 byte for byte", function()
        for _, s in ipairs({ "", "qwen", "caf\195\169", "\226\130\172", "\240\159\152\128", "\244\143\191\191" }) do
            assert.equals(s, errors.valid_utf8(s))
        end
    end)

    it("replaces every invalid byte with U+FFFD", function()
        assert.equals("a" .. FFFD .. FFFD .. "b", errors.valid_utf8("a\255\254b"))
        assert.equals(FFFD, errors.valid_utf8("\128"))                           -- stray continuation
        assert.equals(FFFD .. FFFD, errors.valid_utf8("\192\175"))               -- overlong '/'
        assert.equals(FFFD .. FFFD .. FFFD, errors.valid_utf8("\237\160\128"))   -- surrogate D800
        assert.equals(FFFD .. FFFD .. FFFD .. FFFD, errors.valid_utf8("\244\144\128\128"))   -- past U+10FFFF
        assert.equals("x" .. FFFD .. FFFD, errors.valid_utf8("x\226\130"))     -- cut sequence at the end
        assert.equals(FFFD .. "(", errors.valid_utf8("\226("))
    end)
end)

describe("errors.echo", function()
    it("caps long names on a character boundary", function()
        assert.equals("abc...", errors.echo("abcdef", 3))
        assert.equals("a...", errors.echo("a\195\169\195\169", 2))   -- would cut inside é
        assert.equals("short", errors.echo("short", 10))
    end)

    it("quotes anything as valid UTF-8 of bounded length", function()
        local s = errors.echo(string.rep("\255", 10000))
        assert.is_true(#s <= 256 + 3)
        assert.is_nil(s:find("\255", 1, true))
        assert.equals("42", errors.echo(42))
    end)
end)
