-- The scheduling-policy benchmark's server: WORKERS workers on PORT, the
-- policy from LUACLUSTER_SCHED, restarts on, stats on STATUS_PORT.
local cluster = require('cluster')
if cluster.isPrimary then
  cluster.setupPrimary({restart = 'on-failure', restartDelay = 0,
    statusPort = tonumber(process.env.STATUS_PORT)})
  for _ = 1, tonumber(process.env.WORKERS) or 2 do cluster.fork() end
  cluster.on('listening', function(w)
    print('listening ' .. w.id .. ' ' .. w.process.pid)
  end)
else
  require('http').createServer(function(req, res)
    res:finish('hello from worker ' .. cluster.worker.id)
  end):listen(tonumber(process.env.PORT))
end
