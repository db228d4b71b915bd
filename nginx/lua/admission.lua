-- Admission control per model: at most max_in_flight requests go to a model's servers; the
-- rest wait in a FIFO queue shared by all nginx workers, for at most queue_timeout_s, and a
-- full queue refuses at once. A waiter whose client goes away leaves the queue.
--
-- The queue is a ticket line in a shared dict: `tail` hands out tickets, `head` is the ticket
-- whose turn it is, a waiter that leaves early marks its ticket gone and whoever moves `head`
-- skips it. Every change to a model's line runs under a short lock (dict:add with a TTL, so a
-- worker that dies holding it cannot wedge the line); nothing inside the lock yields.
-- Waiters poll their turn every POLL_S: the cost is one lock round per waiter and poll, and
-- FIFO order never depends on the poll timing.
--
-- Pure in the sense of the house style: the dict, clock, sleep and abort check are arguments,
-- so busted drives it with a table and coroutines.

local _M = { _VERSION = "0.1.0" }

local SEP = "\1"
local LOCK_TTL = 0.1   -- seconds; a critical section takes microseconds
_M.POLL_S = 0.005

local function k(id, what)
    return id .. SEP .. what
end

local function lock(dict, id, sleep)
    local key = k(id, "lock")
    for i = 1, 10000 do
        if dict:add(key, true, LOCK_TTL) then
            return key
        end
        -- Another worker holds it for microseconds: spin a little, then give the CPU away.
        if i % 100 == 0 then
            sleep(0.001)
        end
    end
    return nil
end

local function unlock(dict, key)
    dict:delete(key)
end

local function get(dict, id, what)
    return dict:get(k(id, what)) or 0
end

-- Every poll a waiter renews its ticket's "alive" mark; a ticket whose mark expired belongs
-- to a request that vanished without leaving (its worker died), and is skipped like a gone one.
local ALIVE_S = 2

local function alive(dict, id, ticket)
    dict:set(k(id, "alive" .. SEP .. ticket), true, ALIVE_S)
end

-- Move head past tickets whose waiters left. Called under the lock.
local function skip_gone(dict, id)
    local head = get(dict, id, "head")
    local tail = get(dict, id, "tail")
    local moved = false
    while head < tail do
        local t = head + 1
        local gone = dict:get(k(id, "gone" .. SEP .. t))
        if not gone and dict:get(k(id, "alive" .. SEP .. t)) then
            break
        end
        if gone then
            dict:delete(k(id, "gone" .. SEP .. t))
        else
            -- vanished without leaving: it still counts in depth
            dict:set(k(id, "depth"), math.max(0, get(dict, id, "depth") - 1))
        end
        head, moved = t, true
    end
    if moved then
        dict:set(k(id, "head"), head)
    end
    return head
end

-- limits: { max_in_flight, queue_size, queue_timeout_s }; env: { now(), sleep(s), aborted() }.
-- Returns true, nil, waited_s (admitted; call leave() when done) or nil, reason, waited_s with
-- reason "queue_full", "timeout", "aborted" or "lock".
function _M.enter(dict, id, limits, env)
    local max = limits.max_in_flight
    if not max or max <= 0 then
        return true, nil, 0
    end
    local sleep = env.sleep
    local l = lock(dict, id, sleep)
    if not l then
        return nil, "lock", 0
    end
    local head, tail = get(dict, id, "head"), get(dict, id, "tail")
    local inflight = get(dict, id, "in")
    if head >= tail and inflight < max then
        -- incr, not set: leave() decrements without the lock.
        dict:incr(k(id, "in"), 1, 0)
        unlock(dict, l)
        return true, nil, 0
    end
    local depth = get(dict, id, "depth")
    if depth >= (limits.queue_size or 0) then
        unlock(dict, l)
        return nil, "queue_full", 0
    end
    local ticket = tail + 1
    dict:set(k(id, "tail"), ticket)
    dict:set(k(id, "depth"), depth + 1)
    alive(dict, id, ticket)
    unlock(dict, l)

    local start = env.now()
    local deadline = start + (limits.queue_timeout_s or 0)
    while true do
        sleep(_M.POLL_S)
        local aborted = env.aborted and env.aborted()
        local late = env.now() >= deadline
        l = lock(dict, id, sleep)
        if l then
            alive(dict, id, ticket)
            head = skip_gone(dict, id)
            local mine = head + 1 == ticket
            if mine and not aborted and get(dict, id, "in") < max then
                dict:incr(k(id, "in"), 1, 0)
                dict:set(k(id, "head"), ticket)
                dict:set(k(id, "depth"), get(dict, id, "depth") - 1)
                dict:delete(k(id, "alive" .. SEP .. ticket))
                unlock(dict, l)
                return true, nil, env.now() - start
            end
            if aborted or late then
                if mine or head < ticket then
                    if mine then
                        dict:set(k(id, "head"), ticket)
                    else
                        dict:set(k(id, "gone" .. SEP .. ticket), true, (limits.queue_timeout_s or 0) + 60)
                    end
                    dict:set(k(id, "depth"), get(dict, id, "depth") - 1)
                end   -- else it was skipped as vanished, and uncounted then
                dict:delete(k(id, "alive" .. SEP .. ticket))
                unlock(dict, l)
                return nil, aborted and "aborted" or "timeout", env.now() - start
            end
            unlock(dict, l)
        end
    end
end

-- A request admitted by enter() is over.
function _M.leave(dict, id)
    local n = dict:incr(k(id, "in"), -1, 0)
    if n and n < 0 then
        -- Only after a dict flush or a restart mid-request; never below zero.
        dict:set(k(id, "in"), 0)
    end
end

function _M.depth(dict, id)
    return get(dict, id, "depth")
end

function _M.in_flight(dict, id)
    return get(dict, id, "in")
end

return _M
