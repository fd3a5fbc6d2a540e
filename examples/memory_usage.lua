-- Workers report their memory: each worker sends process.memoryUsage() to
-- the primary, which prints it. (Node original: process.send({memory:
-- process.memoryUsage()}) in workers, cluster.on('message') in the primary.)
local cluster = require('cluster')

if cluster.isMaster then
  local n = #require('os').cpus()
  for _ = 1, n do cluster.fork() end
  local reports = 0
  cluster.on('message', function(worker, msg)
    local m = msg.memory
    print(('worker %d: rss %.1f MB, heap %.1f KB'):format(worker.id,
      m.rss / 1048576, m.heapUsed / 1024))
    reports = reports + 1
    if reports == n then
      -- Every worker has reported: let them go.
      for _, w in pairs(cluster.workers) do w:disconnect() end
    end
  end)
else
  process.send({memory = process.memoryUsage()})
  -- Stay until the primary lets us go.
  process.on('message', function() end)
end
