-- The JSON access log: one line per generation request, fields from metrics.log() (never
-- prompt or completion text). ROUTER_ACCESS_LOG: a path, "stdout", or "off" (default:
-- logs/access.log under the prefix). Pure helper: line(rec), tested by busted.
local _M = { _VERSION = "0.1.0" }

local ngx = ngx
local find, gsub, format = string.find, string.gsub, string.format
local concat = table.concat
local type, tostring = type, tostring

local LOG = "[accesslog] "

-- One access-log line: JSON with these fields in this order (absent = null), never prompt or
-- completion text. Built by hand: cjson.encode of a table cost ~10% of router throughput.
local LOG_FIELDS = { "time", "model", "key", "upstream", "method", "path", "status", "ttft_ms", "duration_ms",
                     "router_ms", "prompt_tokens", "output_tokens", "reasoning_tokens", "reasoning_events", "bytes_in",
                     "bytes_out", "upstream_tries", "client_abort", "request_id" }
local function escape_char(c)
    return format("\\u%04x", c:byte())
end
local function json_value(v)
    local t = type(v)
    if t == "string" then
        if find(v, '[%c"\\]') then
            v = gsub(v, '[%c"\\]', escape_char)
        end
        return '"' .. v .. '"'
    elseif t == "number" then
        return (v ~= v or v == math.huge or v == -math.huge) and "null" or tostring(v)
    elseif t == "boolean" then
        return v and "true" or "false"
    end
    return "null"
end
function _M.line(rec)
    local parts = {}
    for i = 1, #LOG_FIELDS do
        local k = LOG_FIELDS[i]
        parts[i] = '"' .. k .. '":' .. json_value(rec[k])
    end
    return "{" .. concat(parts, ",") .. "}"
end


local log_file, log_path_checked

local function open_log()
    log_path_checked = true
    local path = os.getenv("ROUTER_ACCESS_LOG")
    if path == "off" then
        return
    end
    if path == "stdout" then
        -- The inherited descriptor: a worker running as `nobody` may not open /dev/stdout
        -- when it is a pipe created by root (docker's log pipe).
        io.stdout:setvbuf("no")
        log_file = io.stdout
        return
    end
    if not path or path == "" then
        path = ngx.config.prefix() .. "logs/access.log"
    end
    local f, err = io.open(path, "a")
    if not f then
        -- Through the main error_log: most locations log only crit (router.conf).
        require("mainlog").log(ngx.ERR, LOG, "failed to open access log ", path, ": ", err)
        return
    end
    f:setvbuf("no")   -- the batches below are the buffering
    log_file = f
end

-- Lines wait in a per-worker batch and leave in one write(2) of whole lines, when the next
-- line would pass LOG_BATCH bytes or after LOG_FLUSH_S. A write per request cost ~15% of
-- throughput at c=16; a batch under PIPE_BUF (4096) stays atomic on a pipe such as docker's
-- stdout, so lines of concurrent workers never interleave.
local LOG_BATCH, LOG_FLUSH_S = 3584, 0.5
local batch, batch_n, batch_bytes = {}, 0, 0

local function flush_log()
    if batch_n > 0 and log_file then
        log_file:write(concat(batch, "", 1, batch_n))
        batch_n, batch_bytes = 0, 0
    end
end

local function append_log(line)
    if batch_bytes + #line > LOG_BATCH then
        flush_log()
    end
    batch_n = batch_n + 1
    batch[batch_n] = line
    batch_bytes = batch_bytes + #line
end

-- init_worker: flush on a timer, and once more when the worker exits (premature).
function _M.init_worker()
    local ok, err = ngx.timer.every(LOG_FLUSH_S, function()
        local fine, e = pcall(flush_log)
        if not fine then
            require("mainlog").log(ngx.ERR, LOG, "failed to write the access log: ", e)
        end
    end)
    if not ok then
        -- init_worker logs at the http{} level, crit (nginx/lua/mainlog.lua)
        require("mainlog").log(ngx.ERR, LOG, "failed to start the access log timer: ", err)
    end
end

-- Whether lines are written (the log is opened on first use, in the worker).
function _M.enabled()
    if not log_path_checked then
        open_log()
    end
    return log_file ~= nil
end

-- log phase: queue the request's line.
function _M.write(rec)
    append_log(_M.line(rec) .. "\n")
end

return _M
