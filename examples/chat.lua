-- A chat room over WebSockets on every core: the classic socket.io chat,
-- without sticky sessions or a Redis adapter. Each worker accepts
-- connections on port 8000; a message from any client goes to every
-- client of every worker through websocket.broadcast (relayed by the
-- primary). Try it with two terminals:
--   build/luacluster examples/chat.lua
--   NODE_PATH=/usr/share/nodejs node -e "const W = require('ws');
--     const ws = new W('ws://127.0.0.1:8000/');
--     ws.on('message', (m) => console.log(String(m)));
--     ws.on('open', () => ws.send('hello'))"
local cluster = require('cluster')
local os = require('os')

if cluster.isPrimary then
  for _ = 1, #os.cpus() do cluster.fork() end
  cluster:on('exit', function() cluster.fork() end)
  return
end

local http = require('http')
local websocket = require('websocket')

local server = http.createServer(function(_, res)
  res:setHeader('Content-Type', 'text/plain')
  res:finish('connect with a WebSocket client to ws://127.0.0.1:8000/\n')
end)

local wss = websocket.server{server = server, keepAlive = 30000}

wss:on('connection', function(ws, req)
  local who = req.socket.remoteAddress .. ':' .. req.socket.remotePort
  ws:subscribe('room')
  ws:send('welcome, ' .. who .. ' (worker ' .. cluster.worker.id .. ')')
  websocket.broadcast('room', who .. ' joined')
  ws:on('message', function(data, binary)
    if not binary then websocket.broadcast('room', who .. ': ' .. data) end
  end)
  ws:on('close', function()
    websocket.broadcast('room', who .. ' left')
  end)
end)

server:listen(8000)
