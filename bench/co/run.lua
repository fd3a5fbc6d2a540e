-- co.run per call, for bench/co/run.sh: `luacluster bench/co/run.lua MODE
-- N` makes N calls of a handler that does not wait.
--   run    co.run(handler, a, b)       (a pooled coroutine: resume + yield)
--   call   handler(a, b)               (a plain call: the floor)
--   pcall  pcall(handler, a, b)        (what a protected dispatch costs)
--   spawn  co.spawn(handler, a, b)     (a thread handle per call)
local co = require('co')

local mode, n = arg[1] or 'run', tonumber(arg[2]) or 100000
local sum = 0
local function handler(a, b) sum = sum + a + b end
local run, spawn = co.run, co.spawn

if mode == 'run' then
  for i = 1, n do run(handler, i, 1) end
elseif mode == 'call' then
  for i = 1, n do handler(i, 1) end
elseif mode == 'pcall' then
  for i = 1, n do pcall(handler, i, 1) end
elseif mode == 'spawn' then
  for i = 1, n do spawn(handler, i, 1) end
else
  error('mode: run, call, pcall or spawn')
end
io.stderr:write(('%s %d calls, sum %d, Lua heap %d KB\n'):format(mode, n, sum,
  collectgarbage('count')))
