-- net: Node's net module (TCP servers and sockets) on luv, assembled from
-- net/socket.lua (Socket) and net/server.lua (Server). Listening, in a
-- single process or a cluster worker, is lua/internal/listen.lua's; names
-- and addresses lua/internal/dns.lua's; errors are Node's, from
-- lua/internal/errors.lua.

local errors = require('internal.errors')
local dns = require('internal.dns')

local type = type

local net = {}

net.Socket = require('net.socket')
net.Server = require('net.server')

-- isIP(s) -> 4, 6 or 0; isIPv4(s), isIPv6(s).
net.isIP = dns.isIP
function net.isIPv4(s) return dns.isIP(s) == 4 end
function net.isIPv6(s) return dns.isIP(s) == 6 end

-- createServer([options][, connectionListener]) -> Server.
function net.createServer(options, listener)
  return net.Server:new(options, listener)
end

-- connect(port[, host][, cb]) / connect(options[, cb]) -> Socket.
function net.connect(...)
  local opts = ...
  local s = net.Socket:new(type(opts) == 'table' and opts or nil)
  return s:connect(...)
end
net.createConnection = net.connect

-- Node's Error objects, for those who destroy a socket with their own.
net._error = errors.new

return net
