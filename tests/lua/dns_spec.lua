require("tests.lua.helper")
_G.bit = _G.bit or require("bit")
local dns = require("dns")

local function answer(id, flags, name_ip_pairs)
    local q = dns.encode_query(id, "qwen"):sub(13)
    local hdr = string.char(math.floor(id / 256), id % 256, math.floor(flags / 256), flags % 256, 0, 1, 0, #name_ip_pairs, 0, 0, 0, 0)
    local body = ""
    for _, rr in ipairs(name_ip_pairs) do
        -- pointer to the question name, then TYPE, CLASS, TTL, RDLENGTH, RDATA
        body = body .. "\192\12" .. string.char(0, rr.type or 1, 0, 1, 0, 0, 0, rr.ttl or 60, 0, #rr.data) .. rr.data
    end
    return hdr .. q .. body
end

describe("dns", function()
    it("encodes an A query with recursion desired", function()
        local q = dns.encode_query(0x1234, "qwen.local")
        assert.equal("\18\52\1\0\0\1\0\0\0\0\0\0\4qwen\5local\0\0\1\0\1", q)
    end)

    it("decodes A records behind name pointers and skips other types", function()
        local resp = answer(7, 0x8180, { { type = 5, data = "\4qwen\0" }, { data = "\172\18\0\5", ttl = 30 }, { data = "\10\0\0\1", ttl = 20 } })
        local addrs, ttl = dns.decode_answer(resp, 7)
        assert.same({ "172.18.0.5", "10.0.0.1" }, addrs)
        assert.equal(20, ttl)
    end)

    it("reports NXDOMAIN, id mismatch and empty answers", function()
        assert.same({ nil, "DNS: name not found" }, { dns.decode_answer(answer(7, 0x8183, {}), 7) })
        assert.same({ nil, "DNS answer id mismatch" }, { dns.decode_answer(answer(7, 0x8180, {}), 8) })
        assert.same({ nil, "DNS: no A record" }, { dns.decode_answer(answer(7, 0x8180, {}), 7) })
        assert.same({ nil, "short DNS answer" }, { dns.decode_answer("\0\7", 7) })
    end)

    it("reads /etc/hosts and resolv.conf", function()
        local hosts = dns.parse_hosts("127.0.0.1\tlocalhost\n# 10.0.0.9 commented\n::1 localhost ip6-localhost\n172.17.0.2 qwen qwen.local\n")
        assert.same({ localhost = "127.0.0.1", qwen = "172.17.0.2", ["qwen.local"] = "172.17.0.2" }, hosts)
        assert.equal("127.0.0.11", dns.nameserver_from_resolv_conf("search x\nnameserver 127.0.0.11\noptions ndots:0\n"))
        assert.equal("10.0.0.2", dns.nameserver_from_resolv_conf("nameserver 10.0.0.2\n"))
        assert.is_nil(dns.nameserver_from_resolv_conf("search x\n"))
    end)
end)
