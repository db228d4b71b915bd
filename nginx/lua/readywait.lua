-- wait_for_ready_s: a request for a model that is still starting waits, bounded, for it to
-- become ready instead of an immediate 503 (clients like Open WebUI do not retry). The wait
-- ends early when the client leaves (ngx.on_abort; needs `lua_check_client_abort on`).
local status = require("status")

local _M = { _VERSION = "0.1.0" }

local ngx = ngx
local now, update_time, sleep = ngx.now, ngx.update_time, ngx.sleep

local LOG = "[readywait] "
_M.STEP_S = 0.2   -- how often the health dict is re-read; the probes themselves run every interval_s

-- `try()` chooses the model's peers when one is ready (true) or answers false; `state()` is the
-- model's health state. Returns { ready = what try() last said, seconds = time waited }.
function _M.wait(model, try, state)
    update_time()
    local t0 = now()
    local deadline = t0 + model.wait_for_ready_s
    local counted = true
    status.waiting(model.id, 1)
    local ok, err = ngx.on_abort(function()
        if counted then
            counted = false
            status.waiting(model.id, -1)
        end
        return ngx.exit(499)
    end)
    if not ok then
        ngx.log(ngx.WARN, LOG, "client aborts go unnoticed while waiting: ", err)
    end
    local ready = try()
    while not ready and state() == "starting" do
        update_time()
        local left = deadline - now()
        if left <= 0 then
            break
        end
        sleep(left < _M.STEP_S and left or _M.STEP_S)
        ready = try()
    end
    if counted then
        counted = false
        status.waiting(model.id, -1)
    end
    update_time()
    return { ready = ready, seconds = now() - t0 }
end

return _M
