-- websocket: RFC 6455 WebSockets with the API of Node's `ws` package.
--   websocket.server{server = httpServer | port = n, path =, maxPayload =,
--     handleProtocols =, keepAlive =, ...} -> a server ('connection' (ws,
--     req)); lua/websocket/server.lua
--   websocket.connect(url[, protocols][, options]) -> a client WebSocket;
--     lua/websocket/client.lua
--   websocket.broadcast(channel, data[, options]): to every client
--     subscribed to channel (ws:subscribe) on every worker;
--     lua/websocket/broadcast.lua
-- Frames are parsed and built in C (runtime/ws/, runtime/http/upgrade.c).

local WebSocket = require('websocket.socket')
local Server = require('websocket.server')
local client = require('websocket.client')
local broadcast = require('websocket.broadcast')

local websocket = {
  WebSocket = WebSocket,
  Server = Server,
  CONNECTING = WebSocket.CONNECTING,
  OPEN = WebSocket.OPEN,
  CLOSING = WebSocket.CLOSING,
  CLOSED = WebSocket.CLOSED,
}

function websocket.server(opts, cb)
  return Server:new(opts, cb)
end
websocket.createServer = websocket.server

websocket.connect = client.connect
websocket.broadcast = broadcast.broadcast

return websocket
