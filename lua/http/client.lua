-- http.client: the client side of Node's http (http.request, http.get):
-- ClientRequest, the writing half. A request asks its agent (Node's
-- http.Agent, lua/http/agent.lua; http.globalAgent unless told otherwise,
-- a fresh one for agent = false) for a socket: a free one from its pool,
-- a new connection, or, past maxSockets, the next one given back. What it
-- writes before it has one waits in order. Its head goes with its first
-- body bytes, checked by the rule the server's headers are
-- (lua/http/common.lua); the response is read in
-- lua/http/client_response.lua, which also gives the socket back.

local EventEmitter = require('events')
local process = require('process')
local errors = require('internal.errors')
local url = require('internal.url')
local arm_timeout = require('internal.timeout').arm
local common = require('http.common')
local Agent = require('http.agent')
local reading = require('http.client_response')

local type, tostring, tonumber, pairs, ipairs, error = type, tostring,
  tonumber, pairs, ipairs, error
local lower, upper, concat, format = string.lower, string.upper,
  table.concat, string.format
local conn_reset = errors.conn_reset
local fail = reading.fail
local huge = math.huge

-- Bytes a request keeps while it waits for a socket before write()
-- asks the caller to wait for 'drain' (net.Socket's high-water mark).
local HWM = 16384

local client = {}

local function next_tick(fn, ...)
  return process.nextTick(fn, ...)
end

------------------------------------------------------------------------------
-- Arguments.

local b64chars =
  'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/'

local function base64(s)
  local out = {}
  for i = 1, #s, 3 do
    local a, b, c = s:byte(i, i + 2)
    local n = a * 65536 + (b or 0) * 256 + (c or 0)
    local q = {}
    for j = 1, 4 do
      local v = math.floor(n / 2 ^ (6 * (4 - j))) % 64
      q[j] = b64chars:sub(v + 1, v + 1)
    end
    if not b then q[3] = '=' end
    if not c then q[4] = '=' end
    out[#out + 1] = concat(q)
  end
  return concat(out)
end

-- parseUrl(url) -> options (lua/internal/url.lua).
client.parseUrl = url.parse

client.IncomingMessage = reading.IncomingMessage

------------------------------------------------------------------------------
-- ClientRequest.

local ClientRequest = EventEmitter:extend()
client.ClientRequest = ClientRequest

-- What an https request hands its agent for the connection (tls.connect's
-- options).
local TLS_OPTIONS = {'ca', 'cert', 'key', 'pfx', 'passphrase', 'servername',
  'rejectUnauthorized', 'checkServerIdentity', 'ALPNProtocols',
  'minVersion', 'maxVersion', 'ciphers', 'secureContext', 'session'}

-- agent_of(opts) -> the request's agent: opts.agent, http.globalAgent
-- (https's for https.request) when nil, a new Agent of the same kind
-- (keepAlive false) when false.
local function agent_of(agent, default)
  if agent == nil then return default or require('http').globalAgent end
  if agent == false then
    local class = default and getmetatable(default) or Agent
    return class:new()
  end
  if type(agent) ~= 'table' or type(agent.addRequest) ~= 'function' then
    error(errors.type_error('ERR_INVALID_ARG_TYPE', 'The "options.agent" '
      .. 'property must be an Agent-like table, nil or false. Received '
      .. type(agent)), 4)
  end
  return agent
end

-- ClientRequest:new(options[, cb]); see client.request.
function ClientRequest:new(opts, cb)
  local req = EventEmitter.new(self, {})
  -- As Node: the protocol expected is the agent's (https.request's
  -- default agent is https.globalAgent).
  local default_agent = opts._defaultAgent
  local agent = agent_of(opts.agent, default_agent)
  local expected = agent.protocol or (default_agent
    and default_agent.protocol) or 'http:'
  local protocol = opts.protocol or expected
  if protocol ~= expected then
    error(errors.type_error('ERR_INVALID_PROTOCOL', 'Protocol "' .. protocol
      .. '" not supported. Expected "' .. expected .. '"'), 3)
  end
  local host = opts.hostname or opts.host or 'localhost'
  host = host:match('^%[(.*)%]$') or host
  local default_port = opts.defaultPort or agent.defaultPort or 80
  local port = tonumber(opts.port) or default_port
  local method = upper(opts.method or 'GET')
  if not common.is_token(method) then
    error(errors.type_error('ERR_INVALID_HTTP_TOKEN', 'Method must be a '
      .. 'valid HTTP token ["' .. tostring(opts.method) .. '"]'), 3)
  end
  local path = opts.path or '/'
  if path:find('[%z\1-\32]') then
    error(errors.type_error('ERR_UNESCAPED_CHARACTERS',
      'Request path contains unescaped characters'), 3)
  end
  req.method, req.path, req.host, req.port = method, path, host, port
  req.socketPath = opts.socketPath
  req.protocol = protocol
  req.aborted, req.destroyed, req.finished = false, false, false
  req.headersSent, req.writableEnded = false, false
  req.writableFinished, req.reusedSocket = false, false
  req._headers, req._names = {}, {}
  req._order = {}
  -- What is written before the request has a socket: data, cb, ...
  req._out, req._outLen = {}, 0
  -- A connection that no other request could use is asked to close (as
  -- Node: an agent that neither keeps sockets nor limits them).
  req.agent = agent
  req.shouldKeepAlive = agent.keepAlive == true
    or (tonumber(agent.maxSockets) or huge) < huge

  local headers = opts.headers
  if headers then
    if headers[1] ~= nil then
      for i = 1, #headers, 2 do req:setHeader(headers[i], headers[i + 1]) end
    else
      for k, v in pairs(headers) do req:setHeader(k, v) end
    end
  end
  if opts.setHost ~= false and not req:hasHeader('host') then
    local h = host:find(':', 1, true) and '[' .. host .. ']' or host
    if port ~= default_port then h = h .. ':' .. port end
    req:setHeader('Host', h)
  end
  if opts.auth and not req:hasHeader('authorization') then
    req:setHeader('Authorization', 'Basic ' .. base64(opts.auth))
  end
  if cb then req:once('response', cb) end
  if opts.timeout then req:setTimeout(opts.timeout) end
  local conn = {host = host, port = port,
    socketPath = opts.socketPath, localAddress = opts.localAddress,
    family = opts.family, noDelay = opts.noDelay ~= false}
  if protocol == 'https:' then
    for i = 1, #TLS_OPTIONS do
      local k = TLS_OPTIONS[i]
      conn[k] = opts[k]
    end
  end
  agent:addRequest(req, conn)
  return req
end

-- onSocket(socket[, err]): from the agent: the request's socket, or why it
-- has none. The request reads its response from it, writes what waited,
-- and emits 'socket' on the next tick.
function ClientRequest:onSocket(socket, err)
  if err or self._destroying then
    if socket then socket:destroy() end
    if self.closed then return end
    return next_tick(function()
      fail(self, err or conn_reset('socket hang up'))
      self.destroyed, self.closed = true, true
      self:emit('close')
    end)
  end
  self.socket, self.connection = socket, socket
  local agent_timeout = self.agent.options and self.agent.options.timeout
  socket:setTimeout(self.timeout or agent_timeout or 0)
  reading.attach(self, socket)
  local out = self._out
  self._out, self._outLen = nil, 0
  for i = 1, #out, 2 do
    socket:write(out[i], out[i + 1] or nil)
  end
  next_tick(function() self:emit('socket', socket) end)
end

-- _send(data[, cb]) -> false when the caller should wait for 'drain':
-- writes on the socket, or keeps data until there is one.
function ClientRequest:_send(data, cb)
  local socket = self.socket
  if socket then return socket:write(data, cb) end
  local out = self._out
  out[#out + 1] = data
  out[#out + 1] = cb or false
  self._outLen = self._outLen + #data
  if self._outLen >= HWM then
    self._needDrain = true
    if not self._drainHooked then
      self._drainHooked = true
      self:once('socket', function(s)
        if s.writableLength < s.writableHighWaterMark then
          self:emit('drain')
        end
      end)
    end
    return false
  end
  return true
end

function ClientRequest:setHeader(name, value)
  if self.headersSent then error(common.headers_sent('set'), 2) end
  common.check_header(name, value, 2)
  local k = lower(name)
  if self._headers[k] == nil then self._order[#self._order + 1] = k end
  self._headers[k], self._names[k] = value, name
  return self
end

function ClientRequest:getHeader(name)
  return self._headers[lower(name)]
end

function ClientRequest:hasHeader(name)
  return self._headers[lower(name)] ~= nil
end

function ClientRequest:removeHeader(name)
  if self.headersSent then error(common.headers_sent('remove'), 2) end
  local k = lower(name)
  self._headers[k], self._names[k] = nil, nil
end

function ClientRequest:getHeaders()
  local t = {}
  for k, v in pairs(self._headers) do t[k] = v end
  return t
end

function ClientRequest:getHeaderNames()
  local t = {}
  for _, k in ipairs(self._order) do
    if self._headers[k] ~= nil then t[#t + 1] = k end
  end
  return t
end

-- The request head. body is the whole body when known now (finish before
-- any write): it gets a Content-Length; else the body is chunked, unless
-- the caller set Content-Length or Transfer-Encoding.
function ClientRequest:_head(body)
  local lines = {self.method .. ' ' .. self.path .. ' HTTP/1.1'}
  local hs = self._headers
  for _, k in ipairs(self._order) do
    local v = hs[k]
    if v ~= nil then common.add_lines(lines, self._names[k], v) end
  end
  local conn = hs['connection']
  if conn == nil then
    lines[#lines + 1] = self.shouldKeepAlive and 'Connection: keep-alive'
      or 'Connection: close'
  elseif lower(tostring(conn)):find('close', 1, true) then
    self.shouldKeepAlive = false
  end
  local te = hs['transfer-encoding']
  if te ~= nil then
    self._chunked = lower(tostring(te)):find('chunked%s*$') ~= nil
  elseif hs['content-length'] == nil then
    local bodyless = self.method == 'GET' or self.method == 'HEAD'
      or self.method == 'DELETE' or self.method == 'OPTIONS'
      or self.method == 'TRACE' or self.method == 'CONNECT'
    if body == nil then
      lines[#lines + 1] = 'Transfer-Encoding: chunked'
      self._chunked = true
    elseif #body > 0 or not bodyless then
      lines[#lines + 1] = 'Content-Length: ' .. #body
    end
  end
  self.headersSent = true
  self._header = concat(lines, '\r\n') .. '\r\n\r\n'
  return self._header
end

local function write_after_end(self, cb)
  local err = errors.write_after_end()
  next_tick(function()
    if cb then cb(err) end
    self:emit('error', err)
  end)
  return false
end

-- write(chunk[, encoding][, cb]) -> false when the caller should wait for
-- 'drain'. The head goes with the first chunk.
function ClientRequest:write(chunk, encoding, cb)
  if type(encoding) == 'function' then cb = encoding end
  if type(chunk) ~= 'string' then
    error(errors.bad_chunk(chunk), 2)
  end
  if self.finished then return write_after_end(self, cb) end
  if self.destroyed then
    if cb then
      next_tick(cb, errors.destroyed('write'))
    end
    return false
  end
  local out = ''
  if not self.headersSent then out = self:_head(nil) end
  if #chunk > 0 then
    if self._chunked then
      out = out .. format('%x', #chunk) .. '\r\n' .. chunk .. '\r\n'
    else
      out = out .. chunk
    end
  end
  if out == '' then
    if cb then next_tick(cb) end
    return true
  end
  return self:_send(out, cb)
end

-- flushHeaders(): sends the head now (the body will be chunked).
function ClientRequest:flushHeaders()
  if not self.headersSent and not self.destroyed then
    self:_send(self:_head(nil))
  end
end

-- finish([data][, encoding][, cb]): Node's end(); sends what is left of
-- the request. 'finish' once it is handed to the system.
function ClientRequest:finish(data, encoding, cb)
  if type(data) == 'function' then data, cb = nil, data
  elseif type(encoding) == 'function' then cb = encoding end
  if self.finished then
    if data ~= nil then return write_after_end(self, cb) end
    return self
  end
  if data ~= nil and type(data) ~= 'string' then
    error(errors.bad_chunk(data), 2)
  end
  local out
  if not self.headersSent then
    out = self:_head(data or '') .. (data or '')
    if self._chunked then
      out = self._header .. (data and #data > 0 and format('%x', #data)
        .. '\r\n' .. data .. '\r\n' or '') .. '0\r\n\r\n'
    end
  else
    out = ''
    if data and #data > 0 then
      out = self._chunked and format('%x', #data) .. '\r\n' .. data .. '\r\n'
        or data
    end
    if self._chunked then out = out .. '0\r\n\r\n' end
  end
  self.finished, self.writableEnded = true, true
  if cb then self:once('finish', cb) end
  if self.destroyed then return self end
  self:_send(out, function(err)
    if err then return end
    self.writableFinished = true
    self:emit('finish')
    -- The response may have ended first.
    reading.keep_alive(self)
  end)
  return self
end
ClientRequest['end'] = ClientRequest.finish

-- Closes the request's connection; a request still waiting for one
-- leaves its agent's queue and closes on the next tick.
local function drop(self)
  if self.socket then return self.socket:destroy() end
  local agent = self.agent
  if agent._removeRequest then agent:_removeRequest(self) end
  next_tick(function()
    if self.closed then return end
    self.destroyed, self.closed = true, true
    self:emit('close')
  end)
end

-- abort(): Node's deprecated form of destroy(): 'abort', no error.
function ClientRequest:abort()
  if self.aborted then return end
  self.aborted = true
  next_tick(function() self:emit('abort') end)
  if self.res and not self.res.complete then
    fail(self, conn_reset('aborted'))
  end
  self._failed = true
  -- After the exchange the socket is the agent's again: left alone.
  if self.destroyed or self._destroying then return end
  self._destroying = true
  drop(self)
end

-- destroy([err]): closes the connection. Before a response the request
-- emits err (or 'socket hang up'); after, the response is aborted.
function ClientRequest:destroy(err)
  if self.destroyed or self._destroying then return self end
  self._destroying = true
  if not (self.res and self.res.complete) then
    local e = err or (not self.res and conn_reset('socket hang up'))
      or conn_reset('aborted')
    if err then self._sockerr = err end
    next_tick(fail, self, e)
  end
  drop(self)
  return self
end

-- setTimeout(ms[, cb]): 'timeout' after ms without activity on the
-- connection (counted once the request has one); the request stays open
-- until destroyed.
function ClientRequest:setTimeout(ms, cb)
  if self._released then return self end
  ms = arm_timeout(self, ms, cb, 2)
  if self.socket then self.socket:setTimeout(ms) end
  return self
end

-- Calls socket:method(...) once the request has a socket.
local function on_socket(self, method, ...)
  if self.socket then return self.socket[method](self.socket, ...) end
  local a, b = ...
  self:once('socket', function(s) s[method](s, a, b) end)
end

function ClientRequest:setNoDelay(on)
  on_socket(self, 'setNoDelay', on)
end

function ClientRequest:setSocketKeepAlive(enable, delay)
  on_socket(self, 'setKeepAlive', enable, delay)
end

------------------------------------------------------------------------------
-- The module's functions.

-- request(url|options[, options][, cb]) -> ClientRequest. options:
-- protocol ('http:' only), host/hostname, port, path, method, headers
-- (a table, or a flat list of names and values), auth ('user:pass'),
-- setHost, timeout, localAddress, family, socketPath (a Unix socket to
-- connect to instead of host and port; Host still names host, 'localhost'
-- by default), noDelay (default true), agent (an Agent; nil:
-- http.globalAgent; false: a connection of its own).
function client.request(a, b, c)
  local t = type(a)
  if t ~= 'string' and t ~= 'table' then
    error(errors.type_error('ERR_INVALID_ARG_TYPE', 'The "url" argument '
      .. 'must be a string or a table. Received ' .. t), 2)
  end
  local opts, cb = {}, b
  local href = t == 'string' and a or (type(a.href) == 'string'
    and not a.host and not a.hostname and a.href)
  if href then
    for k, v in pairs(url.parse(href)) do opts[k] = v end
  end
  if t == 'table' then
    for k, v in pairs(a) do opts[k] = v end
  end
  if type(b) == 'table' then
    for k, v in pairs(b) do opts[k] = v end
    cb = c
  end
  if type(cb) ~= 'function' then cb = nil end
  return ClientRequest:new(opts, cb)
end

-- get(...): request(...) with the request ended at once.
function client.get(...)
  local req = client.request(...)
  req:finish()
  return req
end

return client
