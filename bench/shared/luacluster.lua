-- bench/shared: luacluster's side. The primary declares the dict and forks
-- W workers; each runs loop.lua's phases and prints "op seconds n" lines.
--   luacluster bench/shared/luacluster.lua W N
local cluster = require('cluster')
local shared = require('shared')

local dict = shared.dict('bench', '64m')
local W = tonumber(arg[1]) or 1
local N = tonumber(arg[2]) or 2000000

if cluster.isPrimary then
  for _ = 1, W do cluster.fork() end
  return
end

local here = debug.getinfo(1, 'S').source:match('^@(.*)/[^/]*$') or '.'
package.path = here .. '/?.lua;' .. package.path
local loop = require('loop')
local uv = require('uv')
io.write(loop.run(dict, W, N, function() return uv.hrtime() / 1e9 end))
io.flush()
process.exit(0)
