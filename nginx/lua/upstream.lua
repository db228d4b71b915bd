-- Which backend serves a request: the ready peers of a model, round-robin over them in the
-- balancer phase, failover before the first byte, passive marking of peers that failed.
-- Health itself (probes, states) lives in health.lua.
local balancer = require("ngx.balancer")
local health = require("health")
local registry = require("registry")

local _M = { _VERSION = "0.1.0" }

local ngx = ngx
local log, ERR = ngx.log, ngx.ERR
local match = string.match
local ipairs, tostring = ipairs, tostring

local LOG = "[upstream] "
local rr = 0   -- round-robin counter, per worker

-- init: the port of every upstream address, checked once; the Authorization a deployed
-- model's backend gets, when its registry entry names a key (backend_key_env).
function _M.configure(reg)
    for _, model in ipairs(reg.models) do
        local key_env = model.backend_key_env
        if key_env and (model.deployed or reg.discover) then
            -- init runs in the master, whose environment is still whole (no `env` line needed).
            local key = os.getenv(key_env)
            if key and key ~= "" then
                model.backend_auth = "Bearer " .. key
            elseif model.deployed then
                return nil, "model " .. model.id .. ": backend_key_env " .. key_env .. " is not set"
            else
                -- Discovery: the model may not run in this profile; say it once, at start.
                log(ngx.WARN, LOG, "model ", model.id, ": backend_key_env ", key_env,
                    " is not set; its backend gets no Authorization if it is deployed")
            end
        end
        for _, s in ipairs(model.candidates or { model }) do
            s.ports = {}
            for i, addr in ipairs(s.upstreams) do
                local host, port = health.split(addr)
                if not host then
                    return nil, "model " .. model.id .. ": upstream '" .. addr .. "' is not HOST:PORT"
                end
                s.ports[i] = port
            end
        end
        model.ports = model.ports or (model.candidates and model.candidates[1].ports)
    end
    return true
end

-- A model's state (ready/starting/down) and each upstream's {address, state, reason}.
function _M.model_status(model)
    local states, details = {}, {}
    for i, addr in ipairs(model.upstreams) do
        local state, why = health.state(addr)
        states[i] = state
        details[i] = { address = addr, state = state, reason = why }
    end
    return registry.model_state(states), details
end

-- Sets rc.peers (ready, resolved) and where the round-robin starts; false when none is ready.
function _M.choose(rc, model)
    local peers, n = {}, 0
    for i, addr in ipairs(model.upstreams) do
        if health.state(addr) == "ready" then
            local ip = health.ip(addr)
            if ip then
                n = n + 1
                peers[n] = { addr = addr, ip = ip, port = model.ports[i] }
            end
        end
    end
    if n == 0 then
        return false
    end
    rr = rr + 1
    rc.peers, rc.next, rc.tried = peers, rr % n, 0
    return true
end

-- balancer phase: the next peer; after a failed connect, mark it down and try the next one.
function _M.balance(rc)
    local peers = rc.peers
    if rc.tried > 0 then
        local state, code = balancer.get_last_failure()
        if state == "failed" and rc.peer then
            health.mark_down(rc.peer.addr, "request failed (" .. tostring(code) .. ")")
        end
    else
        local t = rc.model.timeouts
        balancer.set_timeouts(t.connect_s or 2, t.send_s or 60, t.read_s or 600)
        if #peers > 1 then
            balancer.set_more_tries(#peers - 1)
        end
    end
    if rc.tried >= #peers then
        return ngx.exit(502)
    end
    local peer = peers[(rc.next + rc.tried) % #peers + 1]
    rc.tried = rc.tried + 1
    rc.peer = peer
    ngx.var.router_peer = peer.addr
    local ok, err = balancer.set_current_peer(peer.ip, peer.port)
    if not ok then
        log(ERR, LOG, "failed to set peer ", peer.addr, ": ", err)
        return ngx.exit(500)
    end
end

-- log phase: the last try failed to connect too (nginx's own 502/504); earlier tries were
-- marked by the balancer. Runs after the redirect to the error location, hence variables, not ngx.ctx.
function _M.after(status, var)
    if status ~= 502 and status ~= 504 then
        return
    end
    local addr = var.router_peer
    if addr == nil or addr == "" then
        return
    end
    local last_status = match(var.upstream_status or "", "(%S+)$")
    local last_connect = match(var.upstream_connect_time or "", "(%S+)$")
    if (last_status == "502" or last_status == "504") and last_connect == "-" then
        health.mark_down(addr, "connect failed")
    end
end

return _M
