-- The router's view of configs/models.yaml (rendered to registry.json): which model a request's
-- `model` names, and which models this deployment serves. Pure: no ngx.* use.
local _M = { _VERSION = "0.1.0" }

local lower = string.lower
local find, match = string.find, string.match
local concat = table.concat

local function fail(msg)
    return nil, "registry: " .. msg
end

-- The fields an engine variant replaces (registry.json engine_variants).
local function serving(m)
    return { engine = m.engine or "trtllm", upstreams = m.upstreams, request = m.request or {},
             generate_probe = type(m.generate_probe) == "string" and m.generate_probe or nil }
end

local function serve_with(model, s)
    model.engine, model.upstreams, model.request, model.generate_probe = s.engine, s.upstreams, s.request,
        s.generate_probe
    model.ports = s.ports or model.ports
end

-- data: the decoded registry.json; deployed: list of ids/aliases ("<id>@<variant>" for an
-- engine variant), or nil for "as the file says". When neither names any, the deployment is
-- discovered (one router for every compose profile): see _M.discover.
function _M.new(data, deployed)
    if type(data) ~= "table" or type(data.models) ~= "table" then
        return fail("'models' list missing")
    end
    local reg = { models = {}, by_name = {}, variants = {}, rules = {}, health = data.health or {},
                  retry_after = data.retry_after_s or 5,
                  responses_ttl = data.responses_ttl_s or 86400 }
    for i, m in ipairs(data.models) do
        if type(m.id) ~= "string" or type(m.upstreams) ~= "table" then
            return fail("models[" .. i .. "] needs 'id' and 'upstreams'")
        end
        local endpoints = {}
        for _, e in ipairs(m.endpoints or { "chat/completions", "completions", "responses", "messages",
                                            "messages/count_tokens" }) do
            endpoints[e] = true
        end
        local probe = m.generate_probe
        local model = { id = m.id, display_name = m.display_name or m.id, aliases = m.aliases or {},
                        variants = m.variants or {}, wait_for_ready_s = m.wait_for_ready_s or 0,
                        upstreams = m.upstreams, timeouts = m.timeouts or {}, reasoning = m.reasoning or {},
                        request = m.request or {}, backend_key_env = m.backend_key_env, admission = m.admission,
                        deployed = false,
                        engine = m.engine or "trtllm", kind = m.kind or "chat",
                        endpoints = endpoints, endpoint_list = m.endpoints,
                        generate_probe = type(probe) == "string" and probe or nil,
                        engine_variants = type(m.engine_variants) == "table" and m.engine_variants or {} }
        reg.models[i] = model
        for _, name in ipairs({ m.id, unpack(model.aliases) }) do
            local key = lower(name)
            if reg.by_name[key] and reg.by_name[key] ~= model then
                return fail("name '" .. name .. "' is used by two models")
            end
            reg.by_name[key] = model
        end
        for _, v in ipairs(model.variants) do
            if type(v.id) ~= "string" then
                return fail("models[" .. i .. "].variants need an 'id'")
            end
            local key = lower(v.id)
            if reg.by_name[key] then
                return fail("variant name '" .. v.id .. "' is used by two models")
            end
            v.model = model
            reg.by_name[key], reg.variants[key] = model, v
        end
        for _, rule in ipairs(m.match or {}) do
            reg.rules[#reg.rules + 1] = { lower(rule), model }
        end
    end

    deployed = deployed or data.deployed
    reg.discover = deployed == nil
    for _, model in ipairs(reg.models) do
        model.deployed = false
        if reg.discover then
            -- The registry's own serving first, then each engine variant in name order.
            model.candidates = { serving(model) }
            local names = {}
            for name in pairs(model.engine_variants) do
                names[#names + 1] = name
            end
            table.sort(names)
            for _, name in ipairs(names) do
                model.candidates[#model.candidates + 1] = serving(model.engine_variants[name])
            end
        end
    end
    if deployed then
        for _, ref in ipairs(deployed) do
            -- "<id or alias>@<name>": the model served by another engine (registry engine_variants).
            local name, variant = match(ref, "^(.-)@([^@]+)$")
            name = name or ref
            local model = reg.by_name[lower(name)]
            if not model then
                return fail("deployed model '" .. name .. "' is not in the registry")
            end
            if variant then
                local v = model.engine_variants[variant]
                if type(v) ~= "table" then
                    return fail("model '" .. model.id .. "' has no engine variant '" .. variant .. "'")
                end
                serve_with(model, serving(v))
            end
            model.deployed = true
        end
    end
    reg.deployed = {}
    for _, model in ipairs(reg.models) do
        if model.deployed then
            reg.deployed[#reg.deployed + 1] = model
        end
    end
    return reg
end

-- Discovery: compose starts only the services of the profiles given, and a service's name
-- resolves on the compose network only while it exists. So a model is deployed once the host
-- of one of its candidates (its own serving, then its engine variants) has resolved, and served
-- by the first such candidate; a model none of whose hosts ever resolved is "not deployed"
-- (404), not "starting" (503). present(addr) -> boolean: the host of addr has resolved.
function _M.discover(reg, present)
    reg.deployed = {}
    for _, model in ipairs(reg.models) do
        model.deployed = false
        for _, c in ipairs(model.candidates or {}) do
            for _, addr in ipairs(c.upstreams) do
                if present(addr) then
                    model.deployed = true
                    break
                end
            end
            if model.deployed then
                serve_with(model, c)
                reg.deployed[#reg.deployed + 1] = model
                break
            end
        end
    end
end

-- Exact id, alias or variant first (case-insensitive), then the substring rules; a name
-- matching the rules of two models is refused rather than guessed.
-- Returns model, nil, variant (a variant's fixed settings, or nil); or nil, "unknown"/"ambiguous".
function _M.resolve(reg, name)
    local key = lower(name)
    local model = reg.by_name[key]
    if model then
        return model, nil, reg.variants[key]
    end
    local hit
    for _, rule in ipairs(reg.rules) do
        if find(key, rule[1], 1, true) then
            if hit and hit ~= rule[2] then
                return nil, "ambiguous"
            end
            hit = rule[2]
        end
    end
    if hit then
        return hit
    end
    return nil, "unknown"
end

-- Whether `model` answers POST /v1/<endpoint> (its kind: chat, embeddings or rerank).
function _M.serves(model, endpoint)
    return model.endpoints[endpoint] == true
end

-- addr -> the generation probe path of the engine behind it (false: the engine has none).
-- An address shared by two models with different engines is a registry mistake; the first wins.
-- In discovery every candidate's address is probed: probing resolves its host.
function _M.probes(reg)
    local out = {}
    for _, model in ipairs(reg.discover and reg.models or reg.deployed) do
        for _, s in ipairs(model.candidates or { model }) do
            for _, addr in ipairs(s.upstreams) do
                if out[addr] == nil then
                    out[addr] = s.generate_probe or false
                end
            end
        end
    end
    return out
end

-- The deployed models' ids for an error message; `visible(model)`, when given, keeps only
-- those a scoped API key may see (an error must not list the others).
function _M.deployed_names(reg, visible)
    local out = {}
    for _, model in ipairs(reg.deployed) do
        if not visible or visible(model) then
            out[#out + 1] = model.id
        end
    end
    return #out > 0 and concat(out, ", ") or "(none)"
end

-- /v1/models entries for one deployed model: the model itself (a human `name`, which Open WebUI
-- and other pickers show instead of the id; aliases stay discoverable in `aliases`), then one
-- entry per variant. `state` is the model's health state, `created` a Unix time.
-- `empty_array` is what the JSON encoder writes as [] (cjson.empty_array where it has one).
function _M.list_entries(model, state, created, empty_array)
    local owner = match(model.id, "^([^/]+)/") or "local"
    local aliases = model.aliases
    if #aliases == 0 then
        aliases = empty_array
    end
    local out = { { id = model.id, object = "model", created = created, owned_by = owner,
                    name = model.display_name, aliases = aliases, status = state,
                    engine = model.engine, kind = model.kind } }
    for _, v in ipairs(model.variants) do
        out[#out + 1] = { id = v.id, object = "model", created = created, owned_by = owner,
                          name = v.display_name or v.id, variant_of = model.id, thinking = v.thinking,
                          status = state, engine = model.engine, kind = model.kind }
    end
    return out
end

-- A model is as good as its best upstream.
function _M.model_state(states)
    local best = "down"
    for _, s in ipairs(states) do
        if s == "ready" then
            return "ready"
        elseif s == "starting" then
            best = "starting"
        end
    end
    return best
end

return _M
