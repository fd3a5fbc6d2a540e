-- https: Node's https module. The server is http's (runtime/http/) with
-- TLS run in C under its connections (runtime/http/conn_tls.c over
-- runtime/tls/); the client is http's ClientRequest over an Agent whose
-- connections are tls.connect's.

local C = require('_tls')
local http = require('http')
local server = require('http.server')
local tls = require('tls')
local errors = require('internal.errors')

local type, pairs, tostring, getmetatable = type, pairs, tostring,
  getmetatable

local https = {}

------------------------------------------------------------------------------
-- Server.

local Server = server.Server

-- createServer([options][, handler]) -> an http.Server serving TLS:
-- tls.createServer's options (key, cert, ca, passphrase, minVersion,
-- ciphers, ALPNProtocols (['http/1.1'] by default), requestCert,
-- rejectUnauthorized, handshakeTimeout (ms, 10000), SNICallback (whose cb
-- must be called before it returns)) and http's.
-- 'tlsClientError'(err, socket) reports a failed handshake.
function https.createServer(options, handler)
  if type(options) == 'function' then options, handler = nil, options end
  options = options or {}
  if type(options) ~= 'table' then
    error(errors.type_error('ERR_INVALID_ARG_TYPE',
      'The "options" argument must be of type table'), 2)
  end
  local o = {}
  for k, v in pairs(options) do o[k] = v end
  o.ALPNProtocols = o.ALPNProtocols or {'http/1.1'}
  local srv = server.createServer(options, handler, http.maxHeaderSize)
  srv._tlsOptions = o
  srv._secureContext = tls.createSecureContext(o, true)
  local ht = options.handshakeTimeout
  if ht ~= nil and (type(ht) ~= 'number' or ht < 0) then
    error(errors.type_error('ERR_INVALID_ARG_TYPE',
      'The "options.handshakeTimeout" property must be a number >= 0'), 2)
  end
  srv._srv:tls(srv._secureContext.context, ht or C.HANDSHAKE_TIMEOUT)
  srv.addContext = https.addContext
  srv.setSecureContext = https.setSecureContext
  return srv
end

-- server:addContext(hostname, context): SNI, as tls.Server's.
function https.addContext(self, hostname, context)
  if type(context) ~= 'table' or type(context.context) ~= 'userdata' then
    context = tls.createSecureContext(context, true)
  end
  self._secureContext.context:add_context(hostname, context.context)
end

-- server:setSecureContext(options): new connections use these.
function https.setSecureContext(self, options)
  local o = {}
  for k, v in pairs(options) do o[k] = v end
  o.ALPNProtocols = o.ALPNProtocols or {'http/1.1'}
  self._secureContext = tls.createSecureContext(o, true)
  self._srv:tls(self._secureContext.context, self._tlsOptions
    .handshakeTimeout or C.HANDSHAKE_TIMEOUT)
end

https.Server = Server

------------------------------------------------------------------------------
-- Client.

local Agent = http.Agent:extend()
https.Agent = Agent

-- Agent(options) is Agent:new(options), as http.Agent.
setmetatable(Agent, {__index = http.Agent,
  __call = function(class, options) return class:new(options) end})

-- Agent:new([options]): http.Agent's options, and maxCachedSessions
-- (100): TLS sessions kept per origin, so a new connection resumes one
-- (Node's).
function Agent:new(options)
  local a = http.Agent.new(self, options)
  a.defaultPort, a.protocol = 443, 'https:'
  a.maxCachedSessions = (options or {}).maxCachedSessions or 100
  a._sessionCache = {map = {}, list = {}}
  return a
end

function Agent:_cacheSession(name, session)
  local c = self._sessionCache
  if self.maxCachedSessions == 0 then return end
  if c.map[name] == nil then
    if #c.list >= self.maxCachedSessions then
      c.map[table.remove(c.list, 1)] = nil
    end
    c.list[#c.list + 1] = name
  end
  c.map[name] = session
end

function Agent:_evictSession(name)
  local c = self._sessionCache
  if c.map[name] == nil then return end
  c.map[name] = nil
  for i = 1, #c.list do
    if c.list[i] == name then
      table.remove(c.list, i)
      break
    end
  end
end

-- The TLS options are part of an origin's name: a connection made with
-- one CA or client certificate is not reused for a request with another.
local NAME_FIELDS = {'ca', 'cert', 'ciphers', 'key', 'pfx', 'passphrase',
  'rejectUnauthorized', 'servername', 'minVersion', 'maxVersion'}

function Agent:getName(options)
  local name = http.Agent.getName(self, options)
  for i = 1, #NAME_FIELDS do
    local v = options[NAME_FIELDS[i]]
    name = name .. ':'
    if type(v) == 'table' then
      for j = 1, #v do name = name .. tostring(v[j]) end
    elseif v ~= nil then
      name = name .. tostring(v)
    end
  end
  return name
end

-- createConnection(options) -> a TLSSocket (tls.connect), servername the
-- host unless given.
function Agent:createConnection(options)
  local o = {}
  for k, v in pairs(options) do o[k] = v end
  if o.servername == nil or o.servername == '' then o.servername = o.host end
  o.ALPNProtocols = o.ALPNProtocols or {'http/1.1'}
  local name = o._agentKey
  if name and o.session == nil then
    o.session = self._sessionCache.map[name]
  end
  local s = tls.connect(o)
  if name then
    s:on('session', function(sess) self:_cacheSession(name, sess) end)
    s:once('close', function(hadError)
      if hadError then self:_evictSession(name) end
    end)
  end
  return s
end

https.globalAgent = Agent:new({keepAlive = true, scheduling = 'lifo',
  timeout = 5000})

local function with_default(a, b, c)
  -- request(url|options[, options][, cb]) with https's default agent.
  if type(a) == 'table' then
    local o = {}
    for k, v in pairs(a) do o[k] = v end
    o._defaultAgent = https.globalAgent
    return o, b, c
  end
  if type(b) == 'table' then
    local o = {}
    for k, v in pairs(b) do o[k] = v end
    o._defaultAgent = https.globalAgent
    return a, o, c
  end
  return a, {_defaultAgent = https.globalAgent}, b
end

function https.request(a, b, c)
  return require('http.client').request(with_default(a, b, c))
end

function https.get(a, b, c)
  local req = https.request(a, b, c)
  req:finish()
  return req
end

-- fetch(url[, opts]): http.fetch, which takes https URLs.
function https.fetch(url, opts)
  return require('http.fetch').fetch(url, opts)
end

return https
