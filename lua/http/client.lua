-- http.client: the client side of Node's http (http.request, http.get).
--
-- A ClientRequest opens its own connection with net (no agent, so no
-- keep-alive: it asks for Connection: close), writes the request head with
-- its first body bytes, and reads the response with llhttp (the C response
-- parser, runtime/http/response.c): 1xx answers as 'information', then the
-- response, an IncomingMessage whose body flows as 'data' then 'end' (the
-- shared Readable side, lua/internal/stream.lua). Headers are checked by
-- the rule the server's are (lua/http/common.lua).

local C = require('_http')
local net = require('net')
local EventEmitter = require('events')
local process = require('process')
local errors = require('internal.errors')
local Readable = require('internal.stream')
local url = require('internal.url')
local common = require('http.common')

local type, tostring, tonumber, pairs, ipairs, error = type, tostring,
  tonumber, pairs, ipairs, error
local lower, upper, concat, format = string.lower, string.upper,
  table.concat, string.format
local conn_reset = errors.conn_reset

local client = {}

local MAX_HEADER_SIZE = C.DEFAULTS.maxHeaderSize

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

------------------------------------------------------------------------------
-- IncomingMessage: the response.

local IncomingMessage = EventEmitter:extend()
client.IncomingMessage = IncomingMessage
-- As the server's request does, the body also flows once an 'end'
-- listener is added; 'end' comes even if nobody reads.
IncomingMessage._endFlows = true
IncomingMessage._endUnread = true
Readable.install(IncomingMessage)

local function new_response(req, status, reason, major, minor, headers, raw)
  local res = EventEmitter.new(IncomingMessage, {})
  res.req, res.socket = req, req.socket
  res.statusCode, res.statusMessage = status, reason
  res.httpVersionMajor, res.httpVersionMinor = major, minor
  res.httpVersion = major .. '.' .. minor
  res.headers, res.rawHeaders = headers, raw
  res.trailers, res.rawTrailers = {}, {}
  res.complete, res.aborted = false, false
  res.readable = true
  return res
end

function IncomingMessage:_readStart()
  if not self.socket.destroyed then self.socket:resume() end
end

function IncomingMessage:_readStop()
  if not self.socket.destroyed then self.socket:pause() end
end

function IncomingMessage:setTimeout(ms, cb)
  self.req:setTimeout(ms, cb)
  return self
end

function IncomingMessage:destroy(err)
  self.req:destroy(err)
  return self
end

------------------------------------------------------------------------------
-- Reading the response.

local function response_complete(req)
  local res = req.res
  req._done = true
  res.complete = true
  Readable.push(res, nil)
  -- No keep-alive: the connection ends here.
  local socket = req.socket
  if not socket.destroyed then socket:destroySoon() end
end

-- The parser of req's response: what llhttp reads becomes events.
local function parser_for(req)
  return C.response_parser({
    head = function(status, reason, major, minor, headers, raw)
      if status >= 100 and status < 200 and status ~= 101 then
        -- An interim answer: report it and wait for the real one.
        if status == 100 then req:emit('continue') end
        req:emit('information', {statusCode = status, statusMessage = reason,
          httpVersion = major .. '.' .. minor, httpVersionMajor = major,
          httpVersionMinor = minor, headers = headers, rawHeaders = raw})
        return
      end
      local res = new_response(req, status, reason, major, minor, headers,
        raw)
      req.res = res
      if status == 101 then
        -- What follows is another protocol (see on_data).
        req._upgraded = true
        return C.UPGRADE
      end
      if not req:emit('response', res) then
        -- Nobody wants it: read and drop the body, as Node's _dump.
        res:resume()
      end
      if req.method == 'HEAD' then return C.SKIP_BODY end
    end,
    body = function(chunk) Readable.push(req.res, chunk) end,
    complete = function(trailers, rawTrailers)
      local res = req.res
      -- The end of an interim answer, or of what was done already.
      if not res or req._done or req._upgraded then return end
      if trailers then res.trailers, res.rawTrailers = trailers, rawTrailers end
      response_complete(req)
    end,
  }, MAX_HEADER_SIZE)
end

------------------------------------------------------------------------------
-- ClientRequest.

local ClientRequest = EventEmitter:extend()
client.ClientRequest = ClientRequest

-- Settles a request that did not get (all of) its response: the error
-- goes to the request before a response, else the response is aborted.
local function fail(req, err)
  if req._failed then return end
  req._failed = true
  local res = req.res
  if res == nil or req._upgraded then
    if err then req:emit('error', err) end
  elseif not res.complete then
    res.aborted = true
    res:emit('aborted')
    -- Node: 'error' on the response only for those who listen.
    if res:listenerCount('error') > 0 then
      res:emit('error', err or conn_reset('aborted'))
    end
  end
end

local function on_socket_close(req)
  local res = req.res
  if res == nil or not res.complete then
    fail(req, req._sockerr or conn_reset(res and 'aborted'
      or 'socket hang up'))
  end
  req.destroyed = true
  req.closed = true
  req:emit('close')
  if res then
    res.closed = true
    res:emit('close')
  end
end

-- A broken response: before its head the request fails; after, the
-- response is aborted and the request reports it too, as Node.
local function parse_failed(req, err)
  req._sockerr = err
  if req.res and not req.res.complete then
    req._failed = true
    req.res.aborted = true
    req.res:emit('aborted')
    req:emit('error', err)
  else
    fail(req, err)
  end
  req.socket:destroy()
end

-- request(options) wiring: the connection and its events.
local function attach(req, opts)
  local socket = net.connect({path = req.socketPath, host = req.host,
    port = req.port, localAddress = opts.localAddress,
    family = opts.family})
  req.socket, req.connection = socket, socket
  local parser = parser_for(req)
  local function ondata(data)
    if req._done or req._upgraded then return end
    -- n, upgraded | nil, code, reason, bytes parsed.
    local n, a, b, c = parser:execute(data)
    if not n then return parse_failed(req, errors.http_parse(a, b, c, data)) end
    if a then
      -- Upgraded: the rest is the new protocol's.
      if req:listenerCount('upgrade') > 0 then
        socket:removeListener('data', ondata)
        req:emit('upgrade', req.res, socket, data:sub(n + 1))
      else
        socket:destroy()
      end
    end
  end
  socket:on('data', ondata)
  socket:on('end', function()
    -- A body framed by the connection's end is complete now.
    if not req._done and not req._upgraded then parser:finish() end
  end)
  socket:on('error', function(err)
    req._sockerr = err
    fail(req, err)
  end)
  socket:on('close', function() on_socket_close(req) end)
  socket:on('timeout', function() req:emit('timeout') end)
  socket:on('drain', function() req:emit('drain') end)
  next_tick(function() req:emit('socket', socket) end)
end

-- ClientRequest:new(options[, cb]); see client.request.
function ClientRequest:new(opts, cb)
  local req = EventEmitter.new(self, {})
  local protocol = opts.protocol or 'http:'
  if protocol ~= 'http:' then
    error(errors.type_error('ERR_INVALID_PROTOCOL', 'Protocol "' .. protocol
      .. '" not supported. Expected "http:"'), 3)
  end
  local host = opts.hostname or opts.host or 'localhost'
  host = host:match('^%[(.*)%]$') or host
  local default_port = opts.defaultPort or 80
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
  attach(req, opts)
  if opts.timeout then req:setTimeout(opts.timeout) end
  return req
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
  if hs['connection'] == nil then lines[#lines + 1] = 'Connection: close' end
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
  return self.socket:write(out, cb)
end

-- flushHeaders(): sends the head now (the body will be chunked).
function ClientRequest:flushHeaders()
  if not self.headersSent and not self.destroyed then
    self.socket:write(self:_head(nil))
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
  self.socket:write(out, function(err)
    if err then return end
    self.writableFinished = true
    self:emit('finish')
  end)
  return self
end
ClientRequest['end'] = ClientRequest.finish

-- abort(): Node's deprecated form of destroy(): 'abort', no error.
function ClientRequest:abort()
  if self.aborted then return end
  self.aborted = true
  next_tick(function() self:emit('abort') end)
  if self.res and not self.res.complete then
    fail(self, conn_reset('aborted'))
  end
  self._failed = true
  self.socket:destroy()
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
  self.socket:destroy()
  return self
end

-- setTimeout(ms[, cb]): 'timeout' after ms without activity on the
-- connection; the request stays open until destroyed.
function ClientRequest:setTimeout(ms, cb)
  if cb then self:once('timeout', cb) end
  self.socket:setTimeout(ms)
  return self
end

function ClientRequest:setNoDelay(on)
  self.socket:setNoDelay(on)
end

function ClientRequest:setSocketKeepAlive(enable, delay)
  self.socket:setKeepAlive(enable, delay)
end

------------------------------------------------------------------------------
-- The module's functions.

-- request(url|options[, options][, cb]) -> ClientRequest. options:
-- protocol ('http:' only), host/hostname, port, path, method, headers
-- (a table, or a flat list of names and values), auth ('user:pass'),
-- setHost, timeout, localAddress, family, socketPath (a Unix socket to
-- connect to instead of host and port; Host still names host, 'localhost'
-- by default); agent is accepted and ignored (every request has its own
-- connection).
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
