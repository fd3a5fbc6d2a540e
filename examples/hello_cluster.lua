-- All workers serve port 8000 and answer with their id.
-- (Node original: cluster.fork() per CPU; each worker's http server on
-- port 8000 answers 'hello from worker N'; a dead worker is replaced.)
local cluster = require('cluster')
local http = require('http')
local PORT = tonumber(process.env.PORT) or 8000

if cluster.isMaster then
  local n = tonumber(process.env.WORKERS) or #require('os').cpus()
  for _ = 1, n do cluster.fork() end
  local up = 0
  cluster.on('listening', function(worker, address)
    print('worker ' .. worker.id .. ' (pid ' .. worker.process.pid ..
      ') listening on port ' .. address.port)
    up = up + 1
    -- Once every worker listens: where to go, once.
    if up == n then
      print(('listening on http://127.0.0.1:%d/ (%d workers; PORT=... ' ..
        'to change the port, Ctrl-C to stop)'):format(address.port, n))
    end
  end)
  cluster.on('exit', function(worker, code, signal)
    -- A worker that left on purpose (a shutdown, a reload) is not replaced.
    if worker.exitedAfterDisconnect then return end
    print('worker ' .. worker.process.pid .. ' died (' ..
      (signal or code) .. '); forking a new one')
    cluster.fork()
  end)
else
  http.createServer(function(req, res)
    res:writeHead(200, {['Content-Type'] = 'text/plain'})
    res:finish('hello from worker ' .. cluster.worker.id .. '\n')
  end):listen(PORT)
end
