-- Forking workers: the primary forks 4 workers and each prints its id.
-- (Node original: cluster.fork() four times; each worker logs its id.)
local cluster = require('cluster')

if cluster.isMaster then
  print('primary ' .. process.pid .. ' forking 4 workers')
  for _ = 1, 4 do cluster.fork() end
  cluster.on('exit', function(worker, code)
    print('worker ' .. worker.id .. ' exited with code ' .. tostring(code))
  end)
else
  print('I am worker #' .. cluster.worker.id .. ' (pid ' .. process.pid ..
    ')')
end
