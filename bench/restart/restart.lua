-- Time from a worker's death (kill -9) to its replacement listening, with
-- the restart policy on: `build/luacluster bench/restart/restart.lua`.
-- KILLS (default 20) deaths one after the other; RESTART_DELAY (default 0,
-- the backoff's first step; the default setting is 100 ms) is added to
-- every figure. Prints the median and the worst.
local cluster = require('cluster')
local http = require('http')
local uv = require('uv')

if cluster.isWorker then
  http.createServer(function(req, res) res:finish('ok') end):listen(0)
  return
end

local KILLS = tonumber(process.env.KILLS) or 20
cluster.setupPrimary({restart = 'on-failure',
  restartDelay = tonumber(process.env.RESTART_DELAY) or 0,
  maxRestarts = KILLS + 5, restartWindow = 1})
local times, killed_at = {}, nil
cluster.fork()
cluster.on('listening', function(w)
  if killed_at then
    times[#times + 1] = (uv.hrtime() - killed_at) / 1e6
    killed_at = nil
  end
  if #times >= KILLS then
    table.sort(times)
    print(('death -> replacement listening: median %.1f ms, worst %.1f ms ' ..
      '(%d kills)'):format(times[math.ceil(#times / 2)], times[#times],
      #times))
    return cluster.shutdown()
  end
  local t = uv.new_timer()
  t:start(50, 0, function()
    t:close()
    killed_at = uv.hrtime()
    uv.kill(w.process.pid, 'sigkill')
  end)
end)
