-- http.socket: the connection of an http server's request, req.socket and
-- res.socket (one per connection, made by the C side on first need). It is
-- not a net.Socket (the C server owns the connection) but answers as one:
-- addresses, destroy, end, setNoDelay, ref/unref, and setTimeout, which is
-- net.Socket's own (lua/internal/timeout.lua) over the C server's idle
-- clock (a 'timeout' event after ms without reads or writes, as Node's).

local C = require('_http')
local EventEmitter = require('events')

local rawget, rawset = rawget, rawset

local Socket = EventEmitter:extend()

local remote_keys = {remoteAddress = 'address', remotePort = 'port',
  remoteFamily = 'family'}
local local_keys = {localAddress = 'address', localPort = 'port'}
-- A TLS connection's (https), from its engine once the handshake is done.
local tls_keys = {encrypted = true, authorized = true,
  authorizationError = true, alpnProtocol = true, servername = true}

-- Addresses are looked up on first use (a syscall each) and kept.
Socket.__index = function(self, k)
  local field = remote_keys[k]
  if field or local_keys[k] then
    local peer = field ~= nil
    local a = C.name(rawget(self, '_c'), peer)
    if not a then return nil end
    if peer then
      rawset(self, 'remoteAddress', a.address)
      rawset(self, 'remotePort', a.port)
      rawset(self, 'remoteFamily', a.family)
    else
      rawset(self, 'localAddress', a.address)
      rawset(self, 'localPort', a.port)
    end
    return a[field or local_keys[k]]
  end
  if tls_keys[k] then
    local t = C.tls_info(rawget(self, '_c'))
    if not t then return nil end
    rawset(self, 'encrypted', true)
    rawset(self, 'authorized', t.authorized)
    rawset(self, 'authorizationError', t.authorizationError)
    rawset(self, 'alpnProtocol', t.alpn)
    rawset(self, 'servername', t.servername or false)
    return rawget(self, k)
  end
  return Socket[k]
end

-- getPeerCertificate() -> the client's certificate on https with
-- requestCert (Node's fields: subject, issuer, subjectaltname, valid_from,
-- valid_to, serialNumber, fingerprint256, raw, ...), else {} (as Node).
function Socket:getPeerCertificate()
  return C.tls_peer(rawget(self, '_c')) or {}
end

-- getProtocol(), getCipher(), isSessionReused() on https.
function Socket:getProtocol()
  local t = C.tls_info(rawget(self, '_c'))
  return t and t.protocol or nil
end

function Socket:getCipher()
  local t = C.tls_info(rawget(self, '_c'))
  return t and {name = t.cipher, standardName = t.standardName,
    version = t.protocol} or nil
end

function Socket:isSessionReused()
  local t = C.tls_info(rawget(self, '_c'))
  return t and t.reused or false
end

-- address() -> {address=, port=, family=, addressType=}, or {} (closed,
-- or a Unix socket's, as Node's).
function Socket:address()
  return C.name(rawget(self, '_c'), false) or {}
end

function Socket:destroy()
  C.destroy(rawget(self, '_c'))
  return self
end

-- end(): ends the connection once what is written has left.
function Socket:finish()
  C.end_connection(rawget(self, '_c'))
  return self
end
Socket['end'] = Socket.finish

function Socket:setNoDelay(on)
  C.nodelay(rawget(self, '_c'), on ~= false)
  return self
end

-- setKeepAlive(): TCP keep-alive is not set on the server's connections;
-- accepted for Node's sake, it does nothing.
function Socket:setKeepAlive() return self end

-- setTimeout(ms[, cb]): net.Socket's (lua/internal/timeout.lua); the
-- clock is the C server's timeout scan.
Socket.setTimeout = require('internal.timeout').setTimeout

function Socket:_idle(ms)
  C.set_timeout(rawget(self, '_c'), ms)
end

-- ref(), unref(): whether the connection keeps the process alive.
function Socket:ref()
  C.ref(rawget(self, '_c'), true)
  return self
end

function Socket:unref()
  C.ref(rawget(self, '_c'), false)
  return self
end

return Socket
