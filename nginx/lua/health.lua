-- Upstream health: one worker probes every upstream on a timer, every worker reads the result
-- from the router_health shared dict. States: starting (never seen healthy), ready, down.
local dns = require("dns")
local mainlog = require("mainlog")

local _M = { _VERSION = "0.1.0" }

local ngx = ngx
-- Not ngx.log: this runs in timers, whose own error_log is crit (nginx/lua/mainlog.lua).
local log, ERR, WARN, INFO = mainlog.log, ngx.ERR, ngx.WARN, ngx.INFO
local match = string.match
local now, update_time = ngx.now, ngx.update_time

local dict = ngx.shared.router_health
local LOG = "[health] "

local hosts, nameserver, nameserver_port = {}, nil, 53

local function read_file(path)
    local f = io.open(path, "r")
    if not f then
        return nil
    end
    local text = f:read("*a")
    f:close()
    return text
end

-- Called at init: where host names are looked up.
function _M.configure_resolver(resolver_env)
    hosts = dns.parse_hosts(read_file("/etc/hosts") or "")
    local spec = resolver_env
    if not spec or spec == "" then
        spec = dns.nameserver_from_resolv_conf(read_file("/etc/resolv.conf") or "")
    end
    if spec then
        local ip, port = match(spec, "^([%d.]+):?(%d*)$")
        if not ip then
            error("ROUTER_RESOLVER must be IP or IP:PORT, got '" .. spec .. "'")
        end
        nameserver, nameserver_port = ip, tonumber(port) or 53
    end
end

function _M.split(addr)
    local host, port = match(addr, "^%[?(.-)%]?:(%d+)$")
    return host, tonumber(port)
end

function _M.state(addr)
    return dict:get("s:" .. addr) or "starting", dict:get("w:" .. addr)
end

-- When the upstream entered its current state (ngx.now()); nil: starting since the router started.
function _M.since(addr)
    return dict:get("t:" .. addr)
end

-- The IP the balancer connects to, once the host name has been resolved.
function _M.ip(addr)
    return dict:get("ip:" .. addr)
end

local function set_state(addr, state, why)
    local old = dict:get("s:" .. addr) or "starting"
    dict:set("s:" .. addr, state)
    dict:set("w:" .. addr, why)
    if state == "ready" then
        dict:set("ever:" .. addr, true)
    end
    if old ~= state then
        dict:set("t:" .. addr, now())
        log(state == "ready" and INFO or WARN, LOG, addr, ": ", old, " -> ", state, why and (" (" .. why .. ")") or "")
    end
end

-- Discovery (registry.discover): an address whose host resolved once stays present, so a
-- stopped or restarting container is "down", not "not deployed". p_gen counts changes; "round"
-- is set once every address has been probed (before it, absence proves nothing yet).
local function mark_present(addr)
    if dict:add("p:" .. addr, true) then
        dict:incr("p_gen", 1, 0)
    end
end

function _M.present(addr)
    return dict:get("p:" .. addr) == true
end

-- The change counter and whether a whole probe round is done.
function _M.presence()
    return dict:get("p_gen") or 0, dict:get("round") == true
end

-- Passive marking: a request could not connect, so take the peer out until the next probe.
function _M.mark_down(addr, why)
    set_state(addr, "down", why)
end

local function resolve(host)
    if dns.is_ipv4(host) then
        return host
    end
    if hosts[host] then
        return hosts[host]
    end
    if not nameserver then
        return nil, "cannot resolve '" .. host .. "': no nameserver (set ROUTER_RESOLVER)"
    end
    local addrs, err = dns.query(nameserver, nameserver_port, host, 2000)
    if not addrs then
        return nil, "cannot resolve '" .. host .. "': " .. err
    end
    return addrs[1]
end

-- Minimal HTTP/1.1 GET: only the status code matters.
local function http_status(ip, port, host, path, timeout_s)
    local sock = ngx.socket.tcp()
    sock:settimeout(timeout_s * 1000)
    local ok, err = sock:connect(ip, port)
    if not ok then
        return nil, "connect " .. ip .. ":" .. port .. ": " .. err
    end
    ok, err = sock:send("GET " .. path .. " HTTP/1.1\r\nHost: " .. host .. "\r\n"
        .. "User-Agent: llm-router-health\r\nConnection: close\r\n\r\n")
    if not ok then
        sock:close()
        return nil, "send " .. path .. ": " .. err
    end
    local line
    line, err = sock:receive("*l")
    sock:close()
    if not line then
        return nil, "read " .. path .. ": " .. err
    end
    local status = tonumber(match(line, "^HTTP/%d%.%d (%d%d%d)"))
    if not status then
        return nil, path .. ": not an HTTP answer"
    end
    return status
end

-- gen_path: the engine's generation probe (trtllm: /health_generate), or false when its
-- /health already reports a dead engine (vLLM: 503 on EngineDeadError; llama.cpp).
local function probe(addr, cfg, gen_path)
    local host, port = _M.split(addr)
    local ever = dict:get("ever:" .. addr)
    local ip, err = resolve(host)
    if not ip then
        return set_state(addr, ever and "down" or "starting", err)
    end
    dict:set("ip:" .. addr, ip)
    mark_present(addr)

    local status
    status, err = http_status(ip, port, host, "/health", cfg.timeout_s or 1)
    if status ~= 200 then
        -- Refused while trtllm-serve loads weights; 503 "LLM is unavailable" likewise.
        return set_state(addr, ever and "down" or "starting", err or ("/health answered " .. status))
    end

    if not gen_path then
        return set_state(addr, "ready")
    end
    -- trtllm's /health stays 200 after the executor died: run a real generation now and then,
    -- and after a failure on every probe until one passes.
    update_time()
    local t = now()
    local failed = dict:get("genfail:" .. addr)
    if failed or t - (dict:get("gen:" .. addr) or 0) >= (cfg.generate_interval_s or 30) then
        dict:set("gen:" .. addr, t)
        status, err = http_status(ip, port, host, gen_path, cfg.generate_timeout_s or 20)
        if status ~= 200 then
            dict:set("genfail:" .. addr, true)
            return set_state(addr, "down", "generation probe failed: " .. (err or (gen_path .. " answered " .. status)))
        end
        dict:delete("genfail:" .. addr)
    end
    set_state(addr, "ready")
end

local function probe_guarded(addr, cfg, gen_path)
    -- A slow generation probe must not overlap the next round for the same upstream.
    if not dict:add("busy:" .. addr, true, (cfg.generate_timeout_s or 20) + (cfg.timeout_s or 1) + 5) then
        return
    end
    local ok, err = pcall(probe, addr, cfg, gen_path)
    dict:delete("busy:" .. addr)
    if not ok then
        log(ERR, LOG, "probe of ", addr, " failed: ", err)
    end
end

-- probes: addr -> generation probe path or false (registry.probes); nil: /health_generate.
function _M.probe_all(addrs, cfg, probes)
    local threads = {}
    for _, addr in ipairs(addrs) do
        local gen = probes and probes[addr]
        if gen == nil then
            gen = "/health_generate"
        end
        threads[#threads + 1] = ngx.thread.spawn(probe_guarded, addr, cfg, gen)
    end
    for _, th in ipairs(threads) do
        ngx.thread.wait(th)
    end
    dict:set("round", true)
end

-- Every worker runs the timer; the one that wins the lock probes this round.
function _M.start(addrs, cfg, probes)
    local interval = cfg.interval_s or 2
    local function tick(premature)
        if premature then
            return
        end
        if not dict:add("lock", ngx.worker.pid(), interval * 0.9) then
            return
        end
        local ok, err = pcall(_M.probe_all, addrs, cfg, probes)
        if not ok then
            log(ERR, LOG, "probe round failed: ", err)
        end
    end
    local ok, err = ngx.timer.at(0, tick)
    if ok then
        ok, err = ngx.timer.every(interval, tick)
    end
    if not ok then
        log(ERR, LOG, "failed to start health timer: ", err)
    end
end

return _M
