-- Writes to the main error_log (the top level of nginx.conf) whatever the calling context's
-- own error_log says. Timers and init_worker log through the http{} level error_log, which
-- nginx.conf sets to crit: nginx itself logs a health probe reset by a restarting backend at
-- [error] whatever lua_socket_log_errors says (the cosocket's recv() calls
-- ngx_connection_error with NGX_ERROR_ERR, lua-nginx-module src/ngx_http_lua_socket_tcp.c),
-- and a restart is a state change the prober reports once, here, not an error per probe.
local ffi = require("ffi")
require("ngx.errlog")   -- declares ngx_http_lua_ffi_raw_log (lua-resty-core)

local _M = { _VERSION = "0.1.0" }

local C = ffi.C
local select, tostring, concat = select, tostring, table.concat

-- With no request the FFI call logs to ngx_cycle->log (src/ngx_http_lua_log.c).
function _M.log(level, ...)
    local parts = { ... }
    for i = 1, select("#", ...) do
        parts[i] = tostring(parts[i])
    end
    local msg = concat(parts)
    C.ngx_http_lua_ffi_raw_log(nil, level, msg, #msg)
end

return _M
