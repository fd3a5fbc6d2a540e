-- The benchmark's luacluster peer: a primary forks WORKERS workers (default
-- one per CPU) that share PORT. Routes, identical in bench/servers/node.js
-- and bench/servers/nginx.conf.in:
--   /      "Hello World\n"
--   /cpu   an empty loop of 10^7 turns, then "done" (a JIT may drop it)
--   /work  a loop of 10^7 additions whose sum is the body (nothing to drop)
local cluster = require('cluster')
local http = require('http')

local port = tonumber(process.env.PORT) or 8000
local workers = tonumber(process.env.WORKERS) or #require('os').cpus()

local TEXT = { ['Content-Type'] = 'text/plain' }

local function work()
  local sum = 0
  for i = 1, 1e7 do
    sum = sum + i
  end
  return string.format('%d\n', sum)
end

if cluster.isPrimary then
  for _ = 1, workers do
    cluster.fork()
  end
  cluster.on('exit', function(worker, code, signal)
    console.log(string.format('worker %d exited (%s)', worker.process.pid,
      signal or code))
  end)
else
  http.createServer(function(req, res)
    local url = req.url
    if url == '/' then
      res:writeHead(200, TEXT)
      res:finish('Hello World\n')
    elseif url == '/cpu' then
      for _ = 1, 1e7 do end
      res:writeHead(200, TEXT)
      res:finish('done\n')
    elseif url == '/work' then
      local body = work()
      res:writeHead(200, TEXT)
      res:finish(body)
    else
      res:writeHead(404, TEXT)
      res:finish('Not Found\n')
    end
  end):listen(port)
end
