-- tls: Node's tls module on OpenSSL (runtime/tls/, `_tls`):
-- createSecureContext, connect, createServer, TLSSocket
-- (lua/tls/socket.lua, over lua/tls/handle.lua). The HTTPS server does not
-- use these sockets: runtime/http/ runs the same engine in C under its
-- connections (lua/https.lua).
--
-- Session tickets: every process derives its ticket keys from one master
-- secret and rotate them each period (runtime/tls/ctx.c); a cluster's
-- workers get the primary's master in LUACLUSTER_TLS_TICKETS
-- ("<hex secret>:<period s>"), so a session made on one worker resumes on
-- another.

local C = require('_tls')
local net = require('net')
local process = require('process')
local errors = require('internal.errors')
local dns_ip = require('internal.dns').isIP
local TLSSocket = require('tls.socket')
local co_run = require('co').run

local type, pairs, error, tostring = type, pairs, error, tostring

local tls = {}

tls.TLSSocket = TLSSocket
tls.DEFAULT_MIN_VERSION = 'TLSv1.2'
tls.DEFAULT_MAX_VERSION = 'TLSv1.3'
tls.DEFAULT_ECDH_CURVE = 'auto'

-- getCiphers() -> the names of the supported ciphers, lower case, as
-- Node's.
function tls.getCiphers()
  local out = {}
  for i, name in ipairs(C.ciphers()) do out[i] = name:lower() end
  return out
end

-- checkServerIdentity(hostname, cert) -> nil when cert (a
-- getPeerCertificate() table) is for hostname, else Node's
-- ERR_TLS_CERT_ALTNAME_INVALID error: DNS names (one leading '*.' label
-- matching one label) or IP addresses from subjectaltname, the subject's
-- CN only when there are no DNS names.
local function dns_match(pattern, host)
  pattern, host = pattern:lower(), host:lower()
  if pattern == host then return true end
  local rest = pattern:match('^%*(%..+)$')
  if not rest then return false end
  local label, tail = host:match('^([^.]+)(%..+)$')
  return label ~= nil and tail == rest and rest:find('%.', 2) ~= nil
end

function tls.checkServerIdentity(hostname, cert)
  hostname = tostring(hostname):gsub('%.$', '')
  cert = cert or {}
  local dns, ips = {}, {}
  for kind, value in (cert.subjectaltname or ''):gmatch(
      '([%a ]+):([^,]+)') do
    kind = kind:gsub('^%s+', '')
    if kind == 'DNS' then dns[#dns + 1] = value
    elseif kind == 'IP Address' then ips[#ips + 1] = value end
  end
  local reason
  if dns_ip(hostname) ~= 0 then
    for _, ip in ipairs(ips) do
      if ip:lower() == hostname:lower() then return nil end
    end
    reason = 'IP: ' .. hostname .. ' is not in the cert\'s list: '
      .. table.concat(ips, ', ')
  elseif #dns > 0 then
    for _, name in ipairs(dns) do
      if dns_match(name, hostname) then return nil end
    end
    reason = 'Host: ' .. hostname .. '. is not in the cert\'s altnames: '
      .. (cert.subjectaltname or '')
  else
    local cn = cert.subject and cert.subject.CN
    if cn and dns_match(cn, hostname) then return nil end
    reason = 'Host: ' .. hostname .. '. is not cert\'s CN: ' .. tostring(cn)
  end
  return errors.new('ERR_TLS_CERT_ALTNAME_INVALID',
    "Hostname/IP does not match certificate's altnames: " .. reason,
    {reason = reason, host = hostname, cert = cert})
end

-- rootCertificates: the trusted roots (Debian's ca-certificates bundle)
-- as PEM strings, read on first use.
setmetatable(tls, {__index = function(t, k)
  if k ~= 'rootCertificates' then return nil end
  local list = {}
  local f = io.open('/etc/ssl/certs/ca-certificates.crt', 'rb')
  if f then
    local all = f:read('*a')
    f:close()
    local pat = '%-%-%-%-%-BEGIN CERTIFICATE%-%-%-%-%-.-'
      .. '%-%-%-%-%-END CERTIFICATE%-%-%-%-%-'
    for pem in all:gmatch(pat) do list[#list + 1] = pem .. '\n' end
  end
  rawset(t, 'rootCertificates', list)
  return list
end})

do
  local v = process.env.LUACLUSTER_TLS_TICKETS
  local hex, period
  if type(v) == 'string' then hex, period = v:match('^(%x+):(%d+)$') end
  if hex and #hex == 64 then
    C.ticket_master(hex:gsub('%x%x', function(h)
      return string.char(tonumber(h, 16))
    end), tonumber(period))
  end
end

------------------------------------------------------------------------------
-- Contexts.

local SecureContext = {}
SecureContext.__index = SecureContext

local function pem(v, name)
  if v == nil then return nil end
  if type(v) == 'string' then return v end
  if type(v) == 'table' then
    local out = {}
    for i = 1, #v do
      local x = v[i]
      if type(x) == 'table' then x = x.pem end
      if type(x) ~= 'string' then
        error(errors.type_error('ERR_INVALID_ARG_TYPE', 'The "options.'
          .. name .. '" property must be a string or an array of strings'), 4)
      end
      out[i] = x
    end
    return out
  end
  error(errors.type_error('ERR_INVALID_ARG_TYPE', 'The "options.' .. name
    .. '" property must be a string or an array of strings'), 4)
end

-- Node's pfx forms (a string of DER bytes, {buf =, passphrase =}, or an
-- array of either) as the list of {buf, passphrase} C reads.
local function pfx(v)
  if v == nil then return nil end
  local list = type(v) == 'table' and v.buf == nil and v or {v}
  local out = {}
  for i = 1, #list do
    local e = list[i]
    if type(e) == 'string' then
      out[i] = {buf = e}
    elseif type(e) == 'table' and type(e.buf) == 'string' then
      out[i] = {buf = e.buf, passphrase = e.passphrase}
    else
      error(errors.type_error('ERR_INVALID_ARG_TYPE', 'The "options.pfx" '
        .. 'property must be a string, {buf, passphrase} or an array of '
        .. 'them'), 4)
    end
  end
  return out
end

-- createSecureContext([options]) -> {context=}: key, cert, ca (PEM
-- strings or arrays of them), pfx (PKCS#12 bytes, {buf, passphrase}, or
-- an array of them), passphrase, minVersion ('TLSv1.2' default),
-- maxVersion, ciphers, ALPNProtocols, requestCert, rejectUnauthorized,
-- sessionTimeout, and for a server's (server true) SNICallback. Raises on
-- a bad key or certificate, as Node.
function tls.createSecureContext(options, server)
  options = options or {}
  local o = {server = server == true, pfx = pfx(options.pfx),
    key = pem(options.key, 'key'), cert = pem(options.cert, 'cert'),
    ca = pem(options.ca, 'ca'), passphrase = options.passphrase,
    minVersion = options.minVersion or tls.DEFAULT_MIN_VERSION,
    maxVersion = options.maxVersion, ciphers = options.ciphers,
    ALPNProtocols = options.ALPNProtocols,
    requestCert = options.requestCert,
    rejectUnauthorized = options.rejectUnauthorized,
    sessionTimeout = options.sessionTimeout}
  local ctx, msg, code = C.context(o)
  if not ctx then error(errors.new(code, msg), 2) end
  local sni = options.SNICallback
  if server and sni ~= nil then
    if type(sni) ~= 'function' then
      error(errors.type_error('ERR_INVALID_ARG_TYPE', 'The '
        .. '"options.SNICallback" property must be of type function'), 2)
    end
    ctx:sni_callback(function(servername)
      -- Node's SNICallback(servername, cb); cb(err, context) must come
      -- before it returns (the handshake waits for nobody here): a later
      -- cb, or none, leaves the connection on this context.
      local got
      local ok, err = pcall(sni, servername, function(e, c)
        if e == nil and c ~= nil then got = c end
      end)
      if not ok then
        process.nextTick(function() error(err, 0) end)
        return nil
      end
      if type(got) == 'table' and got.context then return got.context end
      return nil
    end)
  end
  return setmetatable({context = ctx}, SecureContext)
end

------------------------------------------------------------------------------
-- Clients.

-- Client contexts by their options, so that connections with the same
-- ones (an Agent's) share one instead of making an SSL_CTX each; bounded
-- (emptied past CACHE_MAX).
local CONTEXT_FIELDS = {'ca', 'cert', 'key', 'pfx', 'passphrase',
  'minVersion', 'maxVersion', 'ciphers', 'ALPNProtocols'}
local CACHE_MAX = 64
local cached, ncached = {}, 0

local function client_context(opts)
  local parts = {}
  for i = 1, #CONTEXT_FIELDS do
    local v = opts[CONTEXT_FIELDS[i]]
    if type(v) == 'table' then
      local t = {}
      for j = 1, #v do t[j] = tostring(v[j]) end
      v = table.concat(t, '\1')
    end
    parts[i] = tostring(v)
  end
  local key = table.concat(parts, '\0')
  local ctx = cached[key]
  if ctx then return ctx end
  ctx = tls.createSecureContext(opts)
  if ncached >= CACHE_MAX then cached, ncached = {}, 0 end
  cached[key], ncached = ctx, ncached + 1
  return ctx
end

-- connect(options[, cb]) / connect(port[, host][, options][, cb]) ->
-- TLSSocket; cb on 'secureConnect'. options: net's (host, port, path,
-- timeout, ...), servername (SNI and the name checked; host by default),
-- rejectUnauthorized (true), ca, cert, key, ALPNProtocols, minVersion,
-- session, secureContext; socket: a net.Socket to start TLS over
-- (STARTTLS) instead of connecting.
function tls.connect(...)
  local a1, a2, a3, a4 = ...
  local opts, cb = {}, nil
  if type(a1) == 'table' then
    for k, v in pairs(a1) do opts[k] = v end
    cb = a2
  else
    opts.port = a1
    local rest = {a2, a3, a4}
    for i = 1, 3 do
      local v = rest[i]
      if type(v) == 'string' then opts.host = v
      elseif type(v) == 'table' then
        for k, x in pairs(v) do if opts[k] == nil then opts[k] = x end end
      elseif type(v) == 'function' then cb = v end
    end
  end
  local sock = opts.socket
  opts.socket = nil
  opts.secureContext = opts.secureContext or client_context(opts)
  opts.isServer = false
  if sock ~= nil then
    -- STARTTLS: the handshake over a socket already connected (or
    -- connecting), as Node's tls.connect({socket}).
    local s = TLSSocket:new(sock, opts)
    if type(cb) == 'function' then s:once('secureConnect', cb) end
    return s
  end
  local s = TLSSocket:new(opts)
  if type(cb) == 'function' then s:once('secureConnect', cb) end
  return s:connect(opts)
end

------------------------------------------------------------------------------
-- Servers.

local Server = net.Server:extend()
tls.Server = Server

-- createServer([options][, secureConnectionListener]) -> tls.Server.
-- options: createSecureContext's, net.Server's, handshakeTimeout (ms,
-- 120000 in Node; 10000 here, as the HTTPS server's), SNICallback
-- (servername, cb), whose cb must be called before it returns.
function Server:new(options, listener)
  if type(options) == 'function' then options, listener = nil, options end
  options = options or {}
  local s = net.Server.new(self, options)
  s._tlsOptions = options
  s._ctx = tls.createSecureContext(options, true)
  s._handshakeTimeout = options.handshakeTimeout or C.HANDSHAKE_TIMEOUT
  if listener then s:on('secureConnection', listener) end
  return s
end

function tls.createServer(options, listener)
  return Server:new(options, listener)
end

-- addContext(hostname, context): serves hostname (or '*.domain') with
-- the context's certificate (a createSecureContext result or its options).
function Server:addContext(hostname, context)
  if getmetatable(context) ~= SecureContext then
    context = tls.createSecureContext(context, true)
  end
  self._ctx.context:add_context(hostname, context.context)
end

-- setSecureContext(options): new connections use these (Node's).
function Server:setSecureContext(options)
  self._ctx = tls.createSecureContext(options, true)
end

-- An accepted connection: a TLSSocket that handshakes within
-- handshakeTimeout; 'secureConnection' once it is done.
function Server:_onconnection(c)
  if self.maxConnections and self._connections >= self.maxConnections then
    c:close()
    return
  end
  local o = self._tlsOptions
  local s = TLSSocket:new({handle = c, server = self, server_tls = self,
    isServer = true, secureContext = self._ctx,
    allowHalfOpen = self.allowHalfOpen,
    rejectUnauthorized = o.rejectUnauthorized,
    requestCert = o.requestCert})
  self._connections = self._connections + 1
  if self.noDelay then s:setNoDelay(true) end
  if self._handshakeTimeout > 0 and not s.destroyed then
    local uv = require('uv')
    local t = uv.new_timer()
    s._hsTimer = t
    t:start(self._handshakeTimeout, 0, function()
      t:close()
      s._hsTimer = nil
      if s.destroyed then return end
      self:_clientError(errors.new('ERR_TLS_HANDSHAKE_TIMEOUT',
        'TLS handshake timeout'), s)
      s:destroy()
    end)
    s:once('close', function()
      if s._hsTimer then
        s._hsTimer:close()
        s._hsTimer = nil
      end
    end)
  end
end

local function emit_secure(self, s)
  self:emit('secureConnection', s)
end

function Server:_secure(s)
  if s._hsTimer then
    s._hsTimer:close()
    s._hsTimer = nil
  end
  co_run(emit_secure, self, s)
end

function Server:_clientError(err, s)
  if self:listenerCount('tlsClientError') > 0 then
    self:emit('tlsClientError', err, s)
  end
end

return tls
