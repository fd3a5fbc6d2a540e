-- http: Node's http module, assembled from lua/http/:
--   server.lua    Server, createServer, listening, the callbacks C calls
--   incoming.lua  IncomingMessage (the server's request)
--   response.lua  ServerResponse, and what a handler's error does
--   socket.lua    the connection (req.socket)
--   common.lua    the header rule and lines both halves use
--   client.lua    ClientRequest and its response (request, get)
--   inject.lua    inject: a request without a port
-- over the C side in runtime/http/ (`_http`). The client and inject load
-- on first use.

local C = require('_http')
local server = require('http.server')

local http = {}

http.STATUS_CODES = C.status_codes()
http.METHODS = C.methods()
table.sort(http.METHODS)
http.maxHeaderSize = C.DEFAULTS.maxHeaderSize

http.Server = server.Server
http.IncomingMessage = require('http.incoming')
http.ServerResponse = require('http.response').ServerResponse

-- createServer([options,] [handler]) -> Server.
function http.createServer(options, handler)
  return server.createServer(options, handler, http.maxHeaderSize)
end

-- _stats() -> {requests=, connections=} over every server of this process
-- (for cluster.stats()).
http._stats = server.stats

-- inject(handlerOrServer, opts[, cb]): see lua/http/inject.lua.
function http.inject(target, opts, cb)
  return require('http.inject').inject(target, opts, cb, http.createServer)
end

-- request(url|options[, options][, cb]), get(...): see lua/http/client.lua.
function http.request(...)
  return require('http.client').request(...)
end

function http.get(...)
  return require('http.client').get(...)
end

return http
