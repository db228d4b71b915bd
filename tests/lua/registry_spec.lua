require("tests.lua.helper")
local registry = require("registry")

local DATA = {
    models = {
        { id = "nvidia/Qwen3-30B-A3B-FP4", display_name = "Qwen3 30B", aliases = { "qwen", "qwen3" }, match = { "qwen" },
          variants = { { id = "qwen-nothink", display_name = "Qwen3 30B, no thinking", thinking = false } },
          upstreams = { "q:8000" } },
        { id = "nvidia/Nemotron", aliases = { "nemotron" }, match = { "nemotron" }, upstreams = { "n:8000" } },
    },
}

describe("registry", function()
    it("resolves ids and aliases case-insensitively before rules", function()
        local reg = assert(registry.new(DATA))
        assert.equal("nvidia/Qwen3-30B-A3B-FP4", registry.resolve(reg, "QWEN3").id)
        assert.equal("nvidia/Qwen3-30B-A3B-FP4", registry.resolve(reg, "nvidia/qwen3-30b-a3b-fp4").id)
        assert.equal("nvidia/Nemotron", registry.resolve(reg, "my-Nemotron-build").id)
    end)

    it("refuses unknown and ambiguous names", function()
        local reg = assert(registry.new(DATA))
        assert.same({ nil, "unknown" }, { registry.resolve(reg, "llama") })
        assert.same({ nil, "ambiguous" }, { registry.resolve(reg, "qwen-nemotron-merge") })
    end)

    it("discovers the deployment by default, or deploys only what it is told", function()
        local all = assert(registry.new(DATA))
        assert.is_true(all.discover)
        assert.equal(0, #all.deployed)
        registry.discover(all, function() return true end)
        assert.equal(2, #all.deployed)
        local one = assert(registry.new(DATA, { "nemotron" }))
        assert.is_false(one.discover)
        assert.equal(1, #one.deployed)
        assert.is_false(registry.resolve(one, "qwen").deployed)
        assert.equal("nvidia/Nemotron", registry.deployed_names(one))
        assert.equal("(none)", registry.deployed_names(one, function() return false end))
    end)

    it("deploys in discovery the models whose hosts resolved, on the first candidate that did", function()
        local data = { models = {
            { id = "q", upstreams = { "q:8000" }, engine = "trtllm", generate_probe = "/health_generate" },
            { id = "n", upstreams = { "n:8000" }, engine = "trtllm", generate_probe = "/health_generate",
              engine_variants = { vllm = { engine = "vllm", upstreams = { "n-vllm:8000" }, request = { drop = {} } } } },
            { id = "absent", upstreams = { "absent:8000" } },
        } }
        local reg = assert(registry.new(data))
        -- Every candidate address is probed (probing is what resolves it), with its engine's probe.
        assert.same({ ["q:8000"] = "/health_generate", ["n:8000"] = "/health_generate", ["n-vllm:8000"] = false,
                      ["absent:8000"] = false }, registry.probes(reg))
        local present = { ["q:8000"] = true, ["n-vllm:8000"] = true }
        registry.discover(reg, function(addr) return present[addr] == true end)
        assert.equal("q, n", registry.deployed_names(reg))
        local n = registry.resolve(reg, "n")
        assert.equal("vllm", n.engine)
        assert.same({ "n-vllm:8000" }, n.upstreams)
        assert.is_nil(n.generate_probe)
        assert.is_false(registry.resolve(reg, "absent").deployed)
        -- A later finding is taken in: the registry's own serving wins when it runs too.
        present["n:8000"] = true
        registry.discover(reg, function(addr) return present[addr] == true end)
        assert.equal("trtllm", registry.resolve(reg, "n").engine)
        assert.same({ "n:8000" }, registry.resolve(reg, "n").upstreams)
    end)

    it("rejects a deployed name that is not in the registry", function()
        local reg, err = registry.new(DATA, { "llama" })
        assert.is_nil(reg)
        assert.matches("'llama' is not in the registry", err)
    end)

    it("rejects a name used by two models", function()
        local bad = { models = { { id = "a", aliases = { "x" }, upstreams = {} }, { id = "b", aliases = { "X" }, upstreams = {} } } }
        local reg, err = registry.new(bad)
        assert.is_nil(reg)
        assert.matches("used by two models", err)
    end)

    it("routes a variant like an alias and hands back its fixed settings", function()
        local reg = assert(registry.new(DATA))
        local model, why, variant = registry.resolve(reg, "Qwen-NoThink")
        assert.equal("nvidia/Qwen3-30B-A3B-FP4", model.id)
        assert.is_nil(why)
        assert.equal("qwen-nothink", variant.id)
        assert.is_false(variant.thinking)
        assert.is_nil(select(3, registry.resolve(reg, "qwen")))
    end)

    it("rejects a variant named like another model's alias", function()
        local bad = { models = { { id = "a", upstreams = {}, variants = { { id = "b-fast" } } },
                                 { id = "b", aliases = { "B-FAST" }, upstreams = {} } } }
        local reg, err = registry.new(bad)
        assert.is_nil(reg)
        assert.matches("used by two models", err)
    end)

    it("lists a model under its human name, then its variants, aliases not as entries", function()
        local reg = assert(registry.new(DATA))
        local entries = registry.list_entries(reg.models[1], "ready", 7, "EMPTY")
        assert.same({ "nvidia/Qwen3-30B-A3B-FP4", "qwen-nothink" }, { entries[1].id, entries[2].id })
        assert.same({ "Qwen3 30B", { "qwen", "qwen3" }, "nvidia" }, { entries[1].name, entries[1].aliases, entries[1].owned_by })
        assert.same({ "Qwen3 30B, no thinking", "nvidia/Qwen3-30B-A3B-FP4", false, "ready" },
            { entries[2].name, entries[2].variant_of, entries[2].thinking, entries[2].status })
        assert.is_nil(entries[2].aliases)
        local plain = registry.list_entries(reg.models[2], "starting", 7, "EMPTY")
        assert.same({ 1, "nvidia/Nemotron", "nvidia/Nemotron" }, { #plain, plain[1].name, plain[1].id })
    end)

    it("rates a model by its best upstream", function()
        assert.equal("ready", registry.model_state({ "down", "ready" }))
        assert.equal("starting", registry.model_state({ "down", "starting" }))
        assert.equal("down", registry.model_state({ "down" }))
        assert.equal("down", registry.model_state({}))
    end)
end)
