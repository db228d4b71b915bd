-- Line protocol for the Python property test: one JSON request per line on stdin,
-- {"text": ..., "cuts": [...], "start_inside": bool}; one JSON answer per line on stdout.
package.path = "nginx/lua/?.lua;" .. package.path
local cjson = require("cjson")
local think = require("think")

for line in io.lines() do
    local req = cjson.decode(line)
    local st = think.new(req.start_inside)
    local r, c, pos = {}, {}, 1
    for _, cut in ipairs(req.cuts) do
        local a, b = think.feed(st, req.text:sub(pos, cut))
        r[#r + 1], c[#c + 1] = a, b
        pos = cut + 1
    end
    local a, b = think.feed(st, req.text:sub(pos))
    r[#r + 1], c[#c + 1] = a, b
    a, b = think.finish(st)
    r[#r + 1], c[#c + 1] = a, b
    io.write(cjson.encode({ reasoning = table.concat(r), content = table.concat(c) }), "\n")
    io.flush()
end
