-- tls.socket: Node's tls.TLSSocket, a net.Socket whose luv handle is
-- wrapped in a TLS engine (lua/tls/handle.lua) once it is connected. So
-- reading, writing, back-pressure, pause/resume, timeouts and closing are
-- net.Socket's own; this file adds the handshake's outcome: 'secureConnect'
-- (client) or the server's 'secureConnection' / 'tlsClientError', the
-- peer's verification (rejectUnauthorized), and Node's accessors
-- (alpnProtocol, authorized, getPeerCertificate, getSession, ...).

local C = require('_tls')
local Socket = require('net.socket')
local Handle = require('tls.handle')
local errors = require('internal.errors')
local dns = require('internal.dns')

local type, pairs, getmetatable = type, pairs, getmetatable

local TLSSocket = Socket:extend()
TLSSocket.encrypted = true

-- Whether v is a net.Socket (to wrap, as Node's new TLSSocket(socket)).
local function is_socket(v)
  return type(v) == 'table' and getmetatable(v) ~= nil and v._wq ~= nil
    and type(v._connected) == 'function'
end

-- Takes the connected luv handle away from a net.Socket (STARTTLS): the
-- socket is left destroyed, without events, and reads nothing more (what
-- the peer sends next is the TLS handshake, for the TLSSocket).
local function take_handle(sock)
  local h = sock._handle
  if h and sock._reading and not h:is_closing() then h:read_stop() end
  sock:_clearTimer()
  sock._handle, sock._reading = nil, false
  sock.destroyed = true
  sock.readable, sock.writable = false, false
  local server = sock._server
  sock._server = nil
  return h, server
end

local wrap

-- TLSSocket:new(options): net.Socket's options, and secureContext (from
-- tls.createSecureContext), isServer, servername, rejectUnauthorized
-- (true), session (from getSession()), and internally server_tls (the
-- tls.Server that accepted it).
-- TLSSocket:new(socket[, options]): TLS over an existing net.Socket, as
-- Node's new tls.TLSSocket(socket, options) (STARTTLS): with isServer, it
-- answers the peer's handshake ('secure' once done), else it starts one
-- ('secureConnect'). options as above; secureContext is made from them
-- (key, cert, ca, ...) when not given.
function TLSSocket:new(options, more)
  if is_socket(options) then return wrap(self, options, more or {}) end
  options = options or {}
  local s = Socket.new(self, options.handle and {allowHalfOpen =
    options.allowHalfOpen} or options)
  s._tls = options
  s._isServer = options.isServer == true
  s.authorized = false
  s.authorizationError = nil
  s.alpnProtocol = false
  s.servername = options.servername
  if options.handle then
    s._server = options.server
    s._handle = options.handle
    s:_connected()
  end
  return s
end

wrap = function(cls, sock, options)
  if sock.encrypted then
    error(errors.new('ERR_INVALID_ARG_VALUE',
      'TLSSocket: the socket is already a TLS socket'), 3)
  end
  if sock.destroyed then
    error(errors.destroyed('TLSSocket'), 3)
  end
  local o = {}
  for k, v in pairs(options) do o[k] = v end
  o.isServer = o.isServer == true
  o.allowHalfOpen = sock.allowHalfOpen
  if not o.secureContext then
    o.secureContext = require('tls').createSecureContext(o, o.isServer)
  end
  local t = cls:new(o)
  local function attach()
    if t.destroyed then return end
    local h, server = take_handle(sock)
    t._server = server
    t._handle = h
    t:_connected()
  end
  if sock._isConnected then
    attach()
  else
    -- Still connecting: writes wait in the TLSSocket until the handshake.
    t.connecting = true
    sock:once('connect', attach)
    sock:once('error', function(e)
      if not t.destroyed then t:destroy(e) end
    end)
  end
  return t
end

-- The TCP connection is up: the engine takes over the handle and the
-- handshake begins ('connect' has been emitted by then for a client, as
-- Node's).
function TLSSocket:_connected()
  local o = self._tls
  local raw = self._handle
  local name = o.servername
  if not self._isServer and (name == nil or name == '') then
    name = o.host or 'localhost'
  end
  if name and dns.isIP(name) ~= 0 and not self._isServer then
    -- SNI carries no address; the certificate is checked against it.
    self.servername = false
  else
    self.servername = name or self.servername
  end
  -- The host check is OpenSSL's, unless the caller brings Node's
  -- checkServerIdentity(hostname, cert), called after the handshake.
  local custom = not self._isServer
    and type(o.checkServerIdentity) == 'function'
  local e = C.engine(o.secureContext.context, self._isServer, name,
    not self._isServer and not custom)
  if o.session then e:set_session(o.session) end
  self._handle = Handle.new(raw, e, function(err) self:_secured(err) end,
    not self._isServer and function()
      -- Node's 'session': the session to resume with later.
      local s = e:session()
      if s and not self.destroyed then self:emit('session', s) end
    end or nil)
  Socket._connected(self)
  if not self.destroyed then self._handle:start() end
end

-- The handshake ended (err nil) or failed.
function TLSSocket:_secured(err)
  if self.destroyed then return end
  local e = self._handle:engine()
  local srv = self._tls.server_tls
  if err then
    if srv then
      srv:_clientError(err, self)
      return self:destroy()
    end
    return self:destroy(err)
  end
  local info = e:info()
  self.alpnProtocol = info.alpn
  if self._isServer then
    self.servername = info.servername or false
  end
  local code, reason = e:verify_error()
  local check = not self._isServer and self._tls.checkServerIdentity
  if code == nil and type(check) == 'function' then
    local host = self._tls.servername or self._tls.host or 'localhost'
    local ok, ierr = pcall(check, host, self:getPeerCertificate())
    if not ok or ierr ~= nil then
      local bad = ok and ierr or errors.new('ERR_TLS_CERT_ALTNAME_INVALID',
        tostring(ierr))
      code = bad.code or 'ERR_TLS_CERT_ALTNAME_INVALID'
      reason = bad.reason or bad.message or tostring(bad)
      self._identityError = bad
    end
  end
  self.authorized = code == nil
  self.authorizationError = code
  if self._isServer then
    if srv then srv:_secure(self) else self:emit('secure') end
    return
  end
  if code and self._tls.rejectUnauthorized ~= false then
    -- checkServerIdentity's own error, as Node hands it on.
    local own = self._identityError
    if type(own) == 'table' then return self:destroy(own) end
    if code == 'ERR_TLS_CERT_ALTNAME_INVALID' then
      reason = reason .. ": Host: " .. tostring(self._tls.servername
        or self._tls.host) .. ". is not in the cert's altnames"
    end
    return self:destroy(errors.new(code, reason, {reason = reason}))
  end
  self:emit('secureConnect')
end

function TLSSocket:getPeerCertificate()
  local h = self._handle
  if not h or not h.engine or self.destroyed then return {} end
  return h:engine():peer_certificate() or {}
end

-- getSession() -> the session (a string) to give a later connect as
-- options.session, or nil.
function TLSSocket:getSession()
  local h = self._handle
  if not h or not h.engine or self.destroyed then return nil end
  return h:engine():session()
end

function TLSSocket:isSessionReused()
  local h = self._handle
  if not h or not h.engine or self.destroyed then return false end
  return h:engine():info().reused
end

function TLSSocket:getProtocol()
  local h = self._handle
  if not h or not h.engine or self.destroyed then return nil end
  return h:engine():info().protocol
end

function TLSSocket:getCipher()
  local h = self._handle
  if not h or not h.engine or self.destroyed then return nil end
  local i = h:engine():info()
  return {name = i.cipher, standardName = i.standardName,
    version = i.protocol}
end

return TLSSocket
