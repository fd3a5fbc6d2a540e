-- http: Node's http module, assembled from lua/http/:
--   server.lua    Server, createServer, listening, the callbacks C calls
--   incoming.lua  IncomingMessage (the server's request)
--   response.lua  ServerResponse, and what a handler's error does
--   socket.lua    the connection (req.socket)
--   common.lua    the header rule and lines both halves use
--   client.lua    ClientRequest (request, get), the writing half
--   client_response.lua  the client's response, and its socket's end
--   agent.lua     Agent, the client's pool of connections (globalAgent)
--   fetch.lua     fetch: a whole exchange, inside a coroutine
--   inject.lua    inject: a request without a port
-- over the C side in runtime/http/ (`_http`). The client, fetch and
-- inject load on first use.

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
http.Agent = require('http.agent')
-- http.ClientRequest: loaded with the client, on first use.
setmetatable(http, {__index = function(_, k)
  if k == 'ClientRequest' then return require('http.client').ClientRequest end
end})

-- validateHeaderName(name), validateHeaderValue(name, value): the checks
-- setHeader makes, raising Node's errors (ERR_INVALID_HTTP_TOKEN,
-- ERR_HTTP_INVALID_HEADER_VALUE, ERR_INVALID_CHAR).
local common = require('http.common')
function http.validateHeaderName(name)
  common.check_header(name, '', 2)
end
function http.validateHeaderValue(name, value)
  common.check_header(type(name) == 'string' and name or 'x', value, 2)
end

-- As Node 20's (19 on): connections kept alive, idle ones closed after 5 s.
http.globalAgent = http.Agent:new({keepAlive = true, scheduling = 'lifo',
  timeout = 5000})

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

-- fetch(url[, opts]) -> response | nil, err, inside a coroutine: see
-- lua/http/fetch.lua. (A tail call: its errors name the caller's line.)
function http.fetch(url, opts)
  return require('http.fetch').fetch(url, opts)
end

return http
