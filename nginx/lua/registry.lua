-- The router's view of configs/models.yaml (rendered to registry.json): which model a request's
-- `model` names, and which models this deployment serves. Pure: no ngx.* use.
local _M = { _VERSION = "0.1.0" }

local lower = string.lower
local find = string.find
local concat = table.concat

local function fail(msg)
    return nil, "registry: " .. msg
end

-- data: the decoded registry.json; deployed: list of ids/aliases, or nil for "as the file says".
function _M.new(data, deployed)
    if type(data) ~= "table" or type(data.models) ~= "table" then
        return fail("'models' list missing")
    end
    local reg = { models = {}, by_name = {}, rules = {}, health = data.health or {},
                  retry_after = data.retry_after_s or 5 }
    for i, m in ipairs(data.models) do
        if type(m.id) ~= "string" or type(m.upstreams) ~= "table" then
            return fail("models[" .. i .. "] needs 'id' and 'upstreams'")
        end
        local model = { id = m.id, aliases = m.aliases or {}, upstreams = m.upstreams,
                        timeouts = m.timeouts or {}, reasoning = m.reasoning or {},
                        request = m.request or {}, deployed = false }
        reg.models[i] = model
        for _, name in ipairs({ m.id, unpack(model.aliases) }) do
            local key = lower(name)
            if reg.by_name[key] and reg.by_name[key] ~= model then
                return fail("name '" .. name .. "' is used by two models")
            end
            reg.by_name[key] = model
        end
        for _, rule in ipairs(m.match or {}) do
            reg.rules[#reg.rules + 1] = { lower(rule), model }
        end
    end

    deployed = deployed or data.deployed
    for _, model in ipairs(reg.models) do
        model.deployed = deployed == nil
    end
    if deployed then
        for _, name in ipairs(deployed) do
            local model = reg.by_name[lower(name)]
            if not model then
                return fail("deployed model '" .. name .. "' is not in the registry")
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

-- Exact id or alias first (case-insensitive), then the substring rules; a name matching
-- the rules of two models is refused rather than guessed.
function _M.resolve(reg, name)
    local key = lower(name)
    local model = reg.by_name[key]
    if model then
        return model
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

function _M.deployed_names(reg)
    local out = {}
    for _, model in ipairs(reg.deployed) do
        out[#out + 1] = model.id
    end
    return concat(out, ", ")
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
