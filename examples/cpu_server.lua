-- The benchmark server: every worker burns CPU on each request, so adding
-- workers adds throughput. (Node original: a cluster whose http handler
-- runs an empty loop of 1e7 turns before answering; loadtest -c 100 -n 1000
-- against 1 and N workers.) The loop here adds its counter into a sum that
-- becomes the body, so no JIT can drop it; GET /empty is the article's
-- literal empty loop.
local cluster = require('cluster')
local http = require('http')
local PORT = tonumber(process.env.PORT) or 8000
local WORKERS = tonumber(process.env.WORKERS) or #require('os').cpus()

if cluster.isMaster then
  print(('primary %d: %d workers on port %d'):format(process.pid, WORKERS,
    PORT))
  for _ = 1, WORKERS do cluster.fork() end
  cluster.on('exit', function(worker, code, signal)
    print('worker ' .. worker.process.pid .. ' died; forking another')
    cluster.fork()
  end)
else
  http.createServer(function(req, res)
    local body
    if req.url == '/empty' then
      for _ = 1, 1e7 do end
      body = 'done\n'
    else
      local sum = 0
      for i = 1, 1e7 do sum = sum + i end
      body = ('%d\n'):format(sum)
    end
    res:writeHead(200, {['Content-Type'] = 'text/plain'})
    res:finish(body)
  end):listen(PORT)
end
