-- The per-model FIFO queue (nginx/lua/admission.lua), driven by coroutines on a virtual clock.
package.path = "nginx/lua/?.lua;" .. package.path
require("tests.lua.helper")
local admission = require("admission")

local clock = { t = 0 }

-- A shared dict with expiry on the virtual clock.
local function fake_dict()
    local data, expires = {}, {}
    local function live(key)
        if expires[key] and expires[key] <= clock.t then
            data[key], expires[key] = nil, nil
        end
        return data[key]
    end
    return {
        data = data,
        get = function(_, key) return live(key) end,
        set = function(_, key, v, ttl)
            data[key] = v
            expires[key] = (ttl and ttl > 0) and clock.t + ttl or nil
            return true
        end,
        add = function(_, key, v)
            if live(key) ~= nil then return false, "exists" end
            data[key] = v
            return true
        end,
        delete = function(_, key) data[key] = nil end,
        incr = function(_, key, n, init)
            if data[key] == nil then data[key] = init end
            data[key] = data[key] + n
            return data[key]
        end,
    }
end

-- Waiters are coroutines; sleep yields; run() resumes every live waiter once per tick.
local function world()
    clock.t = 0
    local w = { waiters = {}, results = {}, dict = fake_dict(), order = {} }
    local env = {
        now = function() return clock.t end,
        sleep = function(s) coroutine.yield(s) end,
    }
    function w.enter(name, limits, opts)
        local aborted = false
        local co = coroutine.create(function()
            local e = setmetatable({ aborted = function() return aborted end }, { __index = env })
            local ok, why, waited = admission.enter(w.dict, "m", limits, e)
            w.results[name] = { ok = ok, why = why, waited = waited }
            if ok then
                w.order[#w.order + 1] = name
            end
        end)
        w.waiters[#w.waiters + 1] = co
        coroutine.resume(co)
        return { abort = function() aborted = true end }
    end
    function w.tick(n)
        for _ = 1, n or 1 do
            clock.t = clock.t + admission.POLL_S
            for _, co in ipairs(w.waiters) do
                if coroutine.status(co) == "suspended" then
                    assert(coroutine.resume(co))
                end
            end
        end
    end
    return w
end

local LIMITS = { max_in_flight = 1, queue_size = 3, queue_timeout_s = 10 }

describe("admission.enter", function()
    it("admits at once below max_in_flight", function()
        local w = world()
        w.enter("a", { max_in_flight = 2, queue_size = 0, queue_timeout_s = 1 })
        w.enter("b", { max_in_flight = 2, queue_size = 0, queue_timeout_s = 1 })
        assert.is_true(w.results.a.ok and w.results.b.ok)
        assert.equal(2, admission.in_flight(w.dict, "m"))
    end)

    it("queues beyond max_in_flight and serves waiters first in, first out", function()
        local w = world()
        for _, n in ipairs({ "a", "b", "c", "d" }) do
            w.enter(n, LIMITS)
        end
        assert.same({ "a" }, w.order)
        assert.equal(3, admission.depth(w.dict, "m"))
        for _, expect in ipairs({ { "a", "b" }, { "a", "b", "c" }, { "a", "b", "c", "d" } }) do
            w.tick(3)
            assert.equal(#expect - 1, #w.order)   -- nobody moves while the slot is held
            admission.leave(w.dict, "m")
            w.tick(2)
            assert.same(expect, w.order)
        end
        assert.equal(0, admission.depth(w.dict, "m"))
    end)

    it("a newcomer does not overtake a waiter when a slot frees", function()
        local w = world()
        w.enter("a", LIMITS)
        w.enter("b", LIMITS)
        admission.leave(w.dict, "m")
        w.enter("late", LIMITS)          -- arrives before b's next poll
        assert.is_nil(w.results.late)
        w.tick(1)
        assert.same({ "a", "b" }, w.order)
    end)

    it("refuses at once when the queue is full", function()
        local w = world()
        w.enter("a", { max_in_flight = 1, queue_size = 1, queue_timeout_s = 10 })
        w.enter("b", { max_in_flight = 1, queue_size = 1, queue_timeout_s = 10 })
        w.enter("c", { max_in_flight = 1, queue_size = 1, queue_timeout_s = 10 })
        assert.same({ ok = nil, why = "queue_full", waited = 0 }, w.results.c)
        assert.is_nil(w.results.b)
    end)

    it("gives up after queue_timeout_s and leaves the line", function()
        local w = world()
        w.enter("a", { max_in_flight = 1, queue_size = 2, queue_timeout_s = 0.05 })
        w.enter("b", { max_in_flight = 1, queue_size = 2, queue_timeout_s = 0.05 })
        w.tick(20)
        assert.equal("timeout", w.results.b.why)
        assert.is_true(w.results.b.waited >= 0.05)
        assert.equal(0, admission.depth(w.dict, "m"))
        admission.leave(w.dict, "m")
        w.enter("c", LIMITS)
        assert.is_true(w.results.c.ok)   -- b's ticket does not block anyone
    end)

    it("a waiter whose client left is skipped, wherever it stood", function()
        local w = world()
        w.enter("a", LIMITS)
        local b = w.enter("b", LIMITS)
        local c = w.enter("c", LIMITS)
        w.enter("d", LIMITS)
        c.abort()
        b.abort()
        w.tick(1)
        assert.equal("aborted", w.results.b.why)
        assert.equal("aborted", w.results.c.why)
        assert.equal(1, admission.depth(w.dict, "m"))
        admission.leave(w.dict, "m")
        w.tick(1)
        assert.same({ "a", "d" }, w.order)
        assert.equal(0, admission.depth(w.dict, "m"))
    end)

    it("skips a waiter that vanished without leaving (its worker died)", function()
        local w = world()
        w.enter("a", LIMITS)
        w.enter("b", LIMITS)
        w.enter("c", LIMITS)
        table.remove(w.waiters, 2)        -- b's coroutine is never resumed again
        admission.leave(w.dict, "m")
        w.tick(math.ceil(2.5 / admission.POLL_S))
        assert.same({ "a", "c" }, w.order)
        assert.equal(0, admission.depth(w.dict, "m"))
    end)

    it("max_in_flight 0 turns admission control off", function()
        local w = world()
        for i = 1, 5 do
            w.enter("r" .. i, { max_in_flight = 0 })
        end
        assert.equal(5, #w.order)
    end)

    it("leave never takes the count below zero", function()
        local w = world()
        admission.leave(w.dict, "m")
        assert.equal(0, admission.in_flight(w.dict, "m"))
    end)
end)
