-- The luacluster side of bench/ws/run.sh: WORKERS workers (2 by default)
-- on PORT. /echo echoes each message; /fan subscribes to channel 'fan';
-- on /ctl, a message 'BCAST n size' broadcasts n messages of size bytes
-- to 'fan' (through every worker) and answers 'sent'.
local cluster = require('cluster')
local port = tonumber(process.env.PORT or 18090)
if cluster.isPrimary then
  for _ = 1, tonumber(process.env.WORKERS or 2) do cluster.fork() end
  return
end
local http = require('http')
local websocket = require('websocket')
local srv = http.createServer(function(_, res) res:finish('ok') end)
local wss = websocket.server{server = srv}
wss:on('connection', function(ws, req)
  if req.url == '/fan' then
    ws:subscribe('fan')
  elseif req.url == '/ctl' then
    ws:on('message', function(m)
      local n, size = m:match('^BCAST (%d+) (%d+)')
      local payload = ('x'):rep(tonumber(size))
      for _ = 1, tonumber(n) do websocket.broadcast('fan', payload) end
      ws:send('sent')
    end)
  else
    ws:on('message', function(data, binary)
      ws:send(data, {binary = binary})
    end)
  end
end)
srv:listen(port, '127.0.0.1')
