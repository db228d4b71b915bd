-- API keys: the keys file (ROUTER_KEYS_FILE), who a request is, which models it may use, and
-- its rpm / tpm / max_concurrent limits.
--
-- The file holds only sha256 hashes; a request's key is hashed (OpenSSL's EVP_Digest through
-- the LuaJIT FFI: nginx links libcrypto in Debian's build and in OpenResty's, while
-- lua-resty-string is not packaged in Debian) and looked up in a table keyed by the hex hash,
-- so no comparison ever runs on the secret itself.
--
-- Pure parts (parse, compile, extract, glob, window) take state as arguments; busted tests
-- them without nginx. Counts live in lua_shared_dict router_keys, so every worker sees the
-- same ones; the compiled file is per worker (read-only), re-read by a timer in each worker.

local _M = { _VERSION = "0.1.0" }

-- Reloads run in timers, which log through the http{} error_log (crit, nginx/conf/nginx.conf):
-- their lines go to the main error_log through mainlog. Outside nginx (busted) ngx.log is used.
local has_mainlog, mainlog = pcall(require, "mainlog")
local function log(level, ...)
    if has_mainlog then
        return mainlog.log(level, ...)
    end
    return ngx.log(level, ...)
end

local byte, find, format, gsub, lower, match, sub = string.byte, string.find, string.format, string.gsub,
    string.lower, string.match, string.sub
local concat = table.concat
local floor, ceil, max = math.floor, math.ceil, math.max
local tonumber, tostring, type, ipairs, pairs = tonumber, tostring, type, ipairs, pairs

local LOG = "[keys] "
local SEP = "\1"
_M.NULL = setmetatable({}, { __tostring = function() return "null" end })

---------------------------------------------------------------------------------------------
-- The keys file: a strict subset of YAML (block mappings and sequences, flow sequences of
-- scalars, plain / 'single' / "double" scalars, comments). scripts/keys.py writes it; anything
-- outside the subset (anchors, tags, block scalars, flow mappings, tabs) is an error naming
-- the line, never a guess.

local function scalar(text, lineno)
    local c = sub(text, 1, 1)
    if c == '"' then
        local body = match(text, '^"(.*)"$')
        if not body or find(gsub(body, "\\.", ""), '"', 1, true) then
            return nil, "line " .. lineno .. ": unterminated double-quoted string"
        end
        local esc = { n = "\n", t = "\t", ['"'] = '"', ["\\"] = "\\", ["/"] = "/" }
        local bad
        body = gsub(body, "\\(.)", function(e)
            if not esc[e] then
                bad = e
            end
            return esc[e] or ""
        end)
        if bad then
            return nil, "line " .. lineno .. ": unsupported escape \\" .. bad
        end
        return body
    elseif c == "'" then
        local body = match(text, "^'(.*)'$")
        if not body or find(gsub(body, "''", ""), "'", 1, true) then
            return nil, "line " .. lineno .. ": unterminated single-quoted string"
        end
        return (gsub(body, "''", "'"))
    end
    if find(c, "[&*!|>{%%@`]") then
        return nil, "line " .. lineno .. ": '" .. text .. "' needs quotes in this file (YAML would read '"
            .. c .. "' as syntax)"
    end
    if text == "" or text == "~" or text == "null" or text == "Null" or text == "NULL" then
        return _M.NULL
    elseif text == "true" or text == "True" or text == "TRUE" then
        return true
    elseif text == "false" or text == "False" or text == "FALSE" then
        return false
    elseif match(text, "^[-+]?%d+$") then
        return tonumber(text)
    elseif match(text, "^[-+]?%d*%.%d+$") then
        return tonumber(text)
    end
    return text
end

-- A flow sequence of scalars: [a, "b, c", 'd']
local function flow_seq(text, lineno)
    local inner = match(text, "^%[(.*)%]$")
    if not inner then
        return nil, "line " .. lineno .. ": unterminated '[' list"
    end
    local out, pos, n = {}, 1, #inner
    while true do
        local s = find(inner, "[^ ]", pos)
        if not s then
            break
        end
        local c, e = sub(inner, s, s), nil
        if c == '"' or c == "'" then
            e = s + 1
            while true do
                local q = find(inner, c, e, true)
                if not q then
                    return nil, "line " .. lineno .. ": unterminated string in '[' list"
                end
                if c == '"' and sub(inner, q - 1, q - 1) == "\\" then
                    e = q + 1
                elseif c == "'" and sub(inner, q + 1, q + 1) == "'" then
                    e = q + 2
                else
                    e = q
                    break
                end
            end
        else
            e = (find(inner, ",", s, true) or n + 1) - 1
        end
        local item = gsub(sub(inner, s, e), " +$", "")
        if find(item, "^[%[{]") then
            return nil, "line " .. lineno .. ": nested lists or mappings are not supported here"
        end
        local v, err = scalar(item, lineno)
        if v == nil then
            return nil, err
        end
        out[#out + 1] = v
        local comma = find(inner, "[^ ]", e + 1)
        if not comma then
            break
        end
        if sub(inner, comma, comma) ~= "," then
            return nil, "line " .. lineno .. ": expected ',' in '[' list"
        end
        pos = comma + 1
        if not find(inner, "[^ ]", pos) then
            return nil, "line " .. lineno .. ": trailing ',' in '[' list"
        end
    end
    return out
end

-- A comment starts at '#' at the line start or after a space, outside quotes. A quote opens
-- a string only where a value starts (after a space, '[' or ','): "it's" is plain text.
local function strip_comment(line)
    local quote
    for i = 1, #line do
        local c = sub(line, i, i)
        if quote then
            if c == quote then
                quote = nil
            end
        elseif (c == '"' or c == "'") and (i == 1 or find(sub(line, i - 1, i - 1), "[ %[,]")) then
            quote = c
        elseif c == "#" and (i == 1 or sub(line, i - 1, i - 1) == " ") then
            return sub(line, 1, i - 1)
        end
    end
    return line
end

local function value_of(text, lineno)
    if sub(text, 1, 1) == "[" then
        return flow_seq(text, lineno)
    end
    return scalar(text, lineno)
end

local parse_block

-- lines[i] = { indent, text, lineno }; parses the node starting at lines[i] with that indent.
local function parse_seq(lines, i, indent)
    local out = {}
    while lines[i] and lines[i][1] == indent and match(lines[i][2], "^%-") do
        local l = lines[i]
        local rest = match(l[2], "^%-%s+(.*)$") or (l[2] == "-" and "" or nil)
        if not rest then
            return nil, "line " .. l[3] .. ": expected '- ' for a list item"
        end
        if rest == "" then
            if not lines[i + 1] or lines[i + 1][1] <= indent then
                out[#out + 1] = _M.NULL
                i = i + 1
            else
                local v, ni = parse_block(lines, i + 1, lines[i + 1][1])
                if v == nil then
                    return nil, ni
                end
                out[#out + 1], i = v, ni
            end
        elseif match(rest, "^[^'\"%[][^:]*:%s") or match(rest, "^[^'\"%[][^:]*:$") then
            -- "- key: value": a mapping whose keys sit at the column after "- ".
            local col = indent + #l[2] - #rest
            local saved = l
            lines[i] = { col, rest, l[3] }
            local v, ni = parse_block(lines, i, col)
            lines[i] = saved
            if v == nil then
                return nil, ni
            end
            out[#out + 1], i = v, ni
        else
            local v, err = value_of(rest, l[3])
            if v == nil then
                return nil, err
            end
            out[#out + 1], i = v, i + 1
        end
    end
    return out, i
end

local function parse_map(lines, i, indent)
    local out = {}
    while lines[i] and lines[i][1] == indent and not match(lines[i][2], "^%-") do
        local l = lines[i]
        local key, rest = match(l[2], "^([^'\"%[{][^:]-):%s+(.*)$")
        if not key then
            key = match(l[2], "^([^'\"%[{][^:]-):$")
            rest = ""
        end
        if not key then
            return nil, "line " .. l[3] .. ": expected 'key: value'"
        end
        if out[key] ~= nil then
            return nil, "line " .. l[3] .. ": '" .. key .. "' appears twice"
        end
        if rest == "" then
            local nxt = lines[i + 1]
            -- A list may sit at the key's own indent ("models:\n- a"), as YAML allows.
            if nxt and (nxt[1] > indent or (nxt[1] == indent and match(nxt[2], "^%-"))) then
                local v, ni = parse_block(lines, i + 1, nxt[1])
                if v == nil then
                    return nil, ni
                end
                out[key], i = v, ni
            else
                out[key], i = _M.NULL, i + 1
            end
        else
            local v, err = value_of(rest, l[3])
            if v == nil then
                return nil, err
            end
            out[key], i = v, i + 1
        end
    end
    return out, i
end

parse_block = function(lines, i, indent)
    if match(lines[i][2], "^%-") then
        return parse_seq(lines, i, indent)
    end
    return parse_map(lines, i, indent)
end

function _M.parse(text)
    if type(text) ~= "string" then
        return nil, "not text"
    end
    local lines, lineno = {}, 0
    for raw in string.gmatch(text .. "\n", "([^\n]*)\n") do
        lineno = lineno + 1
        raw = gsub(raw, "\r$", "")
        if find(raw, "^\t") or find(raw, "^ +\t") then
            return nil, "line " .. lineno .. ": tabs cannot indent YAML"
        end
        local line = gsub(strip_comment(raw), "%s+$", "")
        if line == "---" and #lines == 0 then
            line = ""
        end
        if line ~= "" then
            local indent = #match(line, "^ *")
            lines[#lines + 1] = { indent, sub(line, indent + 1), lineno }
        end
    end
    if #lines == 0 then
        return {}
    end
    if lines[1][1] ~= 0 then
        return nil, "line " .. lines[1][3] .. ": the top level must not be indented"
    end
    local doc, i = parse_block(lines, 1, 0)
    if doc == nil then
        return nil, i
    end
    if lines[i] then
        return nil, "line " .. lines[i][3] .. ": unexpected indentation"
    end
    return doc
end

---------------------------------------------------------------------------------------------
-- Validation and compilation against the registry

local FIELDS = { name = true, sha256 = true, models = true, rpm = true, tpm = true, max_concurrent = true,
                 metrics = true }
local LIMITS = { "rpm", "tpm", "max_concurrent" }

-- Glob (* any run, ? one character), case-insensitive, over the whole name.
function _M.glob(pattern)
    local p = gsub(lower(pattern), "[%^%$%(%)%%%.%[%]%+%-]", "%%%0")
    p = gsub(gsub(p, "%*", ".*"), "%?", ".")
    return "^" .. p .. "$"
end

local function scope_of(patterns, reg)
    local allowed, unused = {}, {}
    for _, pattern in ipairs(patterns) do
        local lp, hit = _M.glob(pattern), false
        for _, model in ipairs(reg.models) do
            local names = { model.id, unpack(model.aliases or {}) }
            for _, name in ipairs(names) do
                if find(lower(name), lp) then
                    allowed[model.id], hit = true, true
                    break
                end
            end
        end
        if not hit then
            unused[#unused + 1] = pattern
        end
    end
    return allowed, unused
end

-- doc: what parse() returned; reg: the registry (models with id and aliases).
-- Returns { by_hash = {hex = entry}, list = {entry...}, warnings = {...} } or nil, err.
function _M.compile(doc, reg)
    if type(doc) ~= "table" or doc[1] ~= nil then
        return nil, "the file must be a mapping with a 'keys' list"
    end
    for k in pairs(doc) do
        if k ~= "keys" then
            return nil, "unknown top-level field '" .. tostring(k) .. "' (only 'keys')"
        end
    end
    local keys = doc.keys
    if keys == nil or keys == _M.NULL then
        keys = {}
    end
    if type(keys) ~= "table" or (next(keys) ~= nil and keys[1] == nil) then
        return nil, "'keys' must be a list"
    end
    local set = { by_hash = {}, by_name = {}, list = {}, warnings = {} }
    for i, e in ipairs(keys) do
        local where = "keys[" .. (i - 1) .. "]"
        if type(e) ~= "table" or e[1] ~= nil then
            return nil, where .. ": must be a mapping"
        end
        for k in pairs(e) do
            if not FIELDS[k] then
                return nil, where .. ": unknown field '" .. tostring(k) .. "'"
            end
        end
        local name = e.name
        if type(name) ~= "string" or not match(name, "^[%w][%w._@-]*$") or #name > 64 then
            return nil, where .. ".name: must be 1-64 letters, digits, '.', '_', '@' or '-'"
        end
        where = "keys[" .. (i - 1) .. "] (" .. name .. ")"
        if set.by_name[name] then
            return nil, where .. ".name: '" .. name .. "' is used twice"
        end
        local hash = type(e.sha256) == "string" and lower(e.sha256) or nil
        if not hash or not match(hash, "^" .. string.rep("%x", 64) .. "$") then
            return nil, where .. ".sha256: must be 64 hex digits (the sha256 of the key)"
        end
        if set.by_hash[hash] then
            return nil, where .. ".sha256: the same key is listed twice"
        end
        local entry = { name = name, metrics = false }
        for _, f in ipairs(LIMITS) do
            local v = e[f]
            if v ~= nil and v ~= _M.NULL then
                if type(v) ~= "number" or v ~= floor(v) or v < 1 then
                    return nil, where .. "." .. f .. ": must be a whole number >= 1 (leave it out for no limit)"
                end
                entry[f] = v
            end
        end
        if e.metrics ~= nil and e.metrics ~= _M.NULL then
            if type(e.metrics) ~= "boolean" then
                return nil, where .. ".metrics: must be true or false"
            end
            entry.metrics = e.metrics
        end
        local models = e.models
        if models == nil or models == _M.NULL then
            entry.all = true
        else
            if type(models) == "string" then
                models = { models }
            end
            if type(models) ~= "table" or (next(models) ~= nil and models[1] == nil) then
                return nil, where .. ".models: must be a list of model ids, aliases or globs"
            end
            for j, m in ipairs(models) do
                if type(m) ~= "string" or m == "" then
                    return nil, where .. ".models[" .. (j - 1) .. "]: must be a non-empty string"
                end
            end
            local unused
            entry.allowed, unused = scope_of(models, reg)
            for _, p in ipairs(unused) do
                set.warnings[#set.warnings + 1] = where .. ".models: '" .. p .. "' matches no model"
            end
        end
        set.by_hash[hash], set.by_name[name] = entry, entry
        set.list[#set.list + 1] = entry
    end
    return set
end

function _M.allows(entry, model_id)
    return entry.all or (entry.allowed and entry.allowed[model_id]) or false
end

-- The key a request carries: "Authorization: Bearer KEY" (scheme case-insensitive), else
-- "x-api-key: KEY" (Anthropic-style clients).
function _M.extract(authorization, x_api_key)
    if type(authorization) == "table" then
        authorization = authorization[1]
    end
    if type(authorization) == "string" then
        local scheme, key = match(authorization, "^%s*(%a+)%s+(%S+)%s*$")
        if scheme and lower(scheme) == "bearer" then
            return key
        end
    end
    if type(x_api_key) == "table" then
        x_api_key = x_api_key[1]
    end
    if type(x_api_key) == "string" then
        local key = match(x_api_key, "^%s*(%S+)%s*$")
        if key then
            return key
        end
    end
    return nil
end

---------------------------------------------------------------------------------------------
-- Limits over a sliding minute, approximated from two fixed windows (the previous window's
-- count weighted by how much of it still overlaps the last W seconds), as Cloudflare's and
-- Kong's limiters do: two counters per key instead of a log of timestamps, and each counter
-- a single atomic shared-dict incr.

-- prev, cur: counts of the previous and current window; t: now; W: window seconds.
-- Returns the estimated use over the last W seconds.
function _M.estimate(prev, cur, t, W)
    local frac = (t % W) / W
    return prev * (1 - frac) + cur
end

-- Seconds from t until the estimate drops to `target` or below, assuming nothing more is used.
function _M.until_below(prev, cur, t, W, target)
    local start = t - t % W
    if cur > target then
        -- Only once the current window has become the previous one can it decay.
        if cur <= 0 then
            return 0
        end
        return max(0, start + W + W * (1 - target / cur) - t)
    end
    if prev <= 0 or prev + cur <= target then
        return 0
    end
    return max(0, start + W * (1 - (target - cur) / prev) - t)
end

-- OpenAI's reset format: "1s", "6m0s", "250ms".
function _M.duration(s)
    if s < 1 then
        return format("%dms", ceil(s * 1000))
    end
    s = ceil(s)
    if s < 60 then
        return format("%ds", s)
    end
    return format("%dm%ds", floor(s / 60), s % 60)
end

---------------------------------------------------------------------------------------------
-- sha256

local sha256_bin
do
    local ok, ffi = pcall(require, "ffi")
    if ok then
        pcall(ffi.cdef, [[
            typedef struct evp_md_st EVP_MD;
            const EVP_MD *EVP_sha256(void);
            int EVP_Digest(const void *data, size_t count, unsigned char *md, unsigned int *size,
                           const EVP_MD *type, void *impl);
        ]])
        local lib
        for _, try in ipairs({ function() return ffi.C.EVP_sha256 and ffi.C end,
                               function() return ffi.load("crypto") end,
                               function() return ffi.load("libcrypto.so.3") end }) do
            local fine, l = pcall(try)
            if fine and l and pcall(function() return l.EVP_sha256 end) then
                lib = l
                break
            end
        end
        if lib then
            local md = ffi.new("unsigned char[32]")
            local evp = lib.EVP_sha256()
            sha256_bin = function(s)
                if lib.EVP_Digest(s, #s, md, nil, evp, nil) ~= 1 then
                    return nil
                end
                return ffi.string(md, 32)
            end
        end
    end
    if not sha256_bin then
        local fine, resty_sha256 = pcall(require, "resty.sha256")
        if fine then
            sha256_bin = function(s)
                local h = resty_sha256:new()
                h:update(s)
                return h:final()
            end
        end
    end
end

local HEX = {}
for i = 0, 255 do
    HEX[i] = format("%02x", i)
end

function _M.sha256_hex(s)
    if not sha256_bin then
        error(LOG .. "no sha256: neither libcrypto (FFI) nor resty.sha256 is available")
    end
    local bin = sha256_bin(s)
    local out = {}
    for i = 1, #bin do
        out[i] = HEX[byte(bin, i)]
    end
    return concat(out)
end

---------------------------------------------------------------------------------------------
-- nginx glue: the current key set per worker, reloads, and the counts.

local current        -- the compiled set, or nil when keys are off
local path, text_loaded, registry_ref
local WINDOW = 60    -- seconds; ROUTER_KEYS_WINDOW_S shortens it for tests
local RELOAD_S = 1   -- how often each worker looks at the file (the promise is "within 5 s")

local function read(p)
    local f, err = io.open(p, "rb")
    if not f then
        return nil, err
    end
    local text = f:read("*a")
    f:close()
    return text
end

local function load_text(text)
    local doc, err = _M.parse(text)
    if doc == nil then
        return nil, err
    end
    return _M.compile(doc, registry_ref)
end

function _M.enabled()
    return current ~= nil
end

-- init (master): keys_path from ROUTER_KEYS_FILE; a broken file at start is fatal.
function _M.configure(keys_path, reg, window_s)
    registry_ref = reg
    if not keys_path or keys_path == "" then
        current, path = nil, nil
        return true
    end
    if window_s and window_s ~= "" then
        WINDOW = tonumber(window_s)
        if not WINDOW or WINDOW <= 0 then
            error(LOG .. "ROUTER_KEYS_WINDOW_S must be a positive number of seconds")
        end
    end
    path = keys_path
    local text, err = read(path)
    if not text then
        error(LOG .. "cannot read keys file " .. path .. ": " .. err)
    end
    local set
    set, err = load_text(text)
    if not set then
        error(LOG .. "keys file " .. path .. ": " .. err)
    end
    current, text_loaded = set, text
    for _, w in ipairs(set.warnings) do
        log(ngx.WARN, LOG, "keys file ", path, ": ", w)
    end
    return true
end

local dict = ngx and ngx.shared and ngx.shared.router_keys

-- One line per broken version of the file, not one per worker and second.
local function report_once(what, text)
    local tag = "bad" .. SEP .. (text and _M.sha256_hex(text) or "unreadable")
    if dict and dict:add(tag, true, 3600) then
        log(ngx.ERR, LOG, what)
    end
end

local function check()
    local text, err = read(path)
    if not text then
        return report_once("cannot read keys file " .. path .. " (" .. tostring(err)
            .. "); keeping the last good keys (" .. #current.list .. ")", nil)
    end
    if text == text_loaded then
        return
    end
    local set
    set, err = load_text(text)
    if not set then
        return report_once("keys file " .. path .. " not reloaded: " .. err .. "; keeping the last good keys ("
            .. #current.list .. ")", text)
    end
    current, text_loaded = set, text
    if dict and dict:add("ok" .. SEP .. _M.sha256_hex(text), true, 3600) then
        log(ngx.NOTICE, LOG, "keys file ", path, " reloaded: ", #set.list, " keys")
        for _, w in ipairs(set.warnings) do
            log(ngx.WARN, LOG, "keys file ", path, ": ", w)
        end
    end
end

function _M.init_worker()
    if not current then
        return
    end
    local ok, err = ngx.timer.every(RELOAD_S, function(premature)
        if premature then
            return
        end
        local fine, e = pcall(check)
        if not fine then
            log(ngx.ERR, LOG, "keys reload failed: ", e)
        end
    end)
    if not ok then
        log(ngx.ERR, LOG, "failed to start the keys reload timer: ", err)
    end
end

-- The entry for a secret key, or nil.
function _M.lookup(key)
    if not key or not current then
        return nil
    end
    return current.by_hash[_M.sha256_hex(key)]
end

local function window_keys(kind, name, t)
    local idx = floor(t / WINDOW)
    local base = kind .. SEP .. name .. SEP
    return base .. idx, base .. (idx - 1)
end

-- The current window's key, both counts and the estimated use over the last minute.
local function state(kind, name, t)
    local cur_k, prev_k = window_keys(kind, name, t)
    local cur, prev = dict:get(cur_k) or 0, dict:get(prev_k) or 0
    local used = _M.estimate(prev, cur, t, WINDOW)
    return cur_k, prev, cur, used
end

-- Admit one request for `entry` (max_tokens: the request's cap, or nil). Counts it.
-- Returns info (for headers and release) or nil, info with info.refused = "rpm"|"tpm"|
-- "max_concurrent", info.retry_after (seconds) and info.message.
function _M.admit(entry, max_tokens, t)
    local info = { entry = entry }
    if entry.tpm then
        local _, prev, cur, used = state("t", entry.name, t)
        info.tokens = { limit = entry.tpm, remaining = max(0, floor(entry.tpm - used)),
                        reset = _M.until_below(prev, cur, t, WINDOW, 0) }
        if max_tokens and max_tokens > entry.tpm then
            info.refused, info.retry_after = "tpm", nil
            info.message = "max_tokens " .. max_tokens .. " alone exceeds this key's tokens-per-minute limit ("
                .. entry.tpm .. ")"
            return nil, info
        end
        if used >= entry.tpm then
            info.refused = "tpm"
            info.retry_after = _M.until_below(prev, cur, t, WINDOW, entry.tpm - 1)
            info.message = "Rate limit reached for tokens per minute (limit " .. entry.tpm .. ")"
            return nil, info
        end
    end
    if entry.max_concurrent then
        local n = dict:incr("c" .. SEP .. entry.name, 1, 0)
        if n and n > entry.max_concurrent then
            dict:incr("c" .. SEP .. entry.name, -1, 0)
            info.refused, info.retry_after = "max_concurrent", 1
            info.message = "Too many requests in flight for this key (limit " .. entry.max_concurrent .. ")"
            return nil, info
        end
        info.slot = true
    end
    if entry.rpm then
        local cur_k, prev = window_keys("r", entry.name, t)
        prev = dict:get(prev) or 0
        local cur = dict:incr(cur_k, 1, 0, 2 * WINDOW + 1) or 1
        local used = _M.estimate(prev, cur, t, WINDOW)
        if used > entry.rpm then
            dict:incr(cur_k, -1, 0)
            if info.slot then
                dict:incr("c" .. SEP .. entry.name, -1, 0)
                info.slot = nil
            end
            info.requests = { limit = entry.rpm, remaining = 0,
                              reset = _M.until_below(prev, cur - 1, t, WINDOW, 0) }
            info.refused = "rpm"
            info.retry_after = _M.until_below(prev, cur - 1, t, WINDOW, entry.rpm - 1)
            info.message = "Rate limit reached for requests per minute (limit " .. entry.rpm .. ")"
            return nil, info
        end
        info.requests = { limit = entry.rpm, remaining = max(0, floor(entry.rpm - used)),
                          reset = _M.until_below(prev, cur, t, WINDOW, 0) }
    end
    return info
end

-- Log phase: the request is over. `tokens` = prompt + completion tokens from usage.
function _M.release(name, held_slot, tokens, t)
    if held_slot then
        dict:incr("c" .. SEP .. name, -1, 0)
    end
    if tokens and tokens > 0 then
        local cur_k = window_keys("t", name, t)
        dict:incr(cur_k, tokens, 0, 2 * WINDOW + 1)
    end
end

-- OpenAI's x-ratelimit-* headers (and Retry-After on a refusal).
function _M.headers(info, out)
    out = out or {}
    local r, k = info.requests, info.tokens
    if r then
        out["x-ratelimit-limit-requests"] = tostring(r.limit)
        out["x-ratelimit-remaining-requests"] = tostring(r.remaining)
        out["x-ratelimit-reset-requests"] = _M.duration(r.reset)
    end
    if k then
        out["x-ratelimit-limit-tokens"] = tostring(k.limit)
        out["x-ratelimit-remaining-tokens"] = tostring(k.remaining)
        out["x-ratelimit-reset-tokens"] = _M.duration(k.reset)
    end
    if info.refused and info.retry_after then
        out["Retry-After"] = tostring(max(1, ceil(info.retry_after)))
    end
    return out
end

function _M.window()
    return WINDOW
end

-- For tests and /v1/models: the models an entry may use, in registry order.
function _M.models_of(entry, models)
    local out = {}
    for _, m in ipairs(models) do
        if _M.allows(entry, m.id) then
            out[#out + 1] = m
        end
    end
    return out
end

return _M
