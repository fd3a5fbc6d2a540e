-- Restarting workers: the primary forks a new worker whenever one dies.
-- (Node original: cluster.on('exit') logs the death and calls fork().)
-- Each worker here dies after a random moment; RESTARTS (default 5) bounds
-- how many replacements the example makes before it lets the cluster end.
local cluster = require('cluster')

if cluster.isMaster then
  local restarts = tonumber(process.env.RESTARTS) or 5
  for _ = 1, 2 do cluster.fork() end
  cluster.on('exit', function(worker, code, signal)
    print(('worker %d (pid %d) died (%s)'):format(worker.id,
      worker.process.pid, signal or ('code ' .. tostring(code))))
    if restarts > 0 then
      restarts = restarts - 1
      local w = cluster.fork()
      print('started worker ' .. w.id .. ' in its place')
    end
  end)
else
  math.randomseed(process.pid)
  setTimeout(function()
    process.exit(1) -- a crash, as far as the primary can tell
  end, math.random(50, 200))
end
