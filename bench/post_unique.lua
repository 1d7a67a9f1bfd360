-- post_unique.lua - bench/post.lua with every request's body different.
--
-- wrk -s bench/post_unique.lua ... -- BODYFILE RUN [/PATH] [HEADER: V]...
-- As post.lua, but the first twelve x's of the body become RUN (four
-- digits) and the request's number (eight), so that every body differs
-- and all have the same length: an answer cache sees only misses
-- (bench/run.py's cache cells).  A file of its own because wrk builds
-- each request anew only when the script defines request(), and the
-- other cells' load should not pay for that.

local dir = debug.getinfo(1, "S").source:match("^@(.*/)") or "./"
dofile(dir .. "post.lua")

local post_init = init
local run, count, head, tail

function init(args)
   run = string.format("%04d", assert(tonumber(args[2])) % 10000)
   local rest = { args[1] }
   for i = 3, #args do rest[#rest + 1] = args[i] end
   post_init(rest)
   local at = assert(wrk.body:find("xxxxxxxxxxxx", 1, true),
                     "the body has no twelve x's to vary")
   head, tail = wrk.body:sub(1, at - 1), wrk.body:sub(at + 12)
end

function request()
   count = (count or 0) + 1
   return wrk.format(nil, nil, nil,
      head .. run .. string.format("%08d", count % 100000000) .. tail)
end
