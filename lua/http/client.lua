-- http.client: the client side of Node's http (http.request, http.get).
--
-- A ClientRequest opens its own connection with net (no agent, so no
-- keep-alive: it asks for Connection: close), writes the request head with
-- its first body bytes, and parses the response with a small parser below
-- (this is not the hot path): status line and headers, then a body framed
-- by Content-Length, chunked, or the end of the connection, none for HEAD,
-- 1xx, 204 and 304. The response is an IncomingMessage whose body flows as
-- 'data' then 'end'.

local net = require('net')
local EventEmitter = require('events')
local process = require('process')

local type, tostring, tonumber, pairs, ipairs, error, select = type,
  tostring, tonumber, pairs, ipairs, error, select
local lower, upper, concat, format = string.lower, string.upper,
  table.concat, string.format

local Readable = net._Readable
local new_error = net._error

local client = {}

local MAX_HEADER_SIZE = 16384

local function next_tick(fn, ...)
  return process.nextTick(fn, ...)
end

local function conn_reset(message)
  return new_error('ECONNRESET', message)
end

local function parse_error(code, reason, data)
  return new_error(code, 'Parse Error: ' .. reason,
    {bytesParsed = 0, rawPacket = data})
end

-- The error of a head (or trailers) past MAX_HEADER_SIZE.
local function overflow(buf)
  return nil, parse_error('HPE_HEADER_OVERFLOW', 'Header overflow',
    buf:sub(1, 256))
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

local function unescape(s)
  return (s:gsub('%%(%x%x)', function(x) return string.char(tonumber(x, 16)) end))
end

-- parse_url('http://user:pw@host:port/path?q#frag') -> options.
local function parse_url(url)
  local scheme, rest = url:match('^(%a[%w+.-]*):(.*)$')
  if not scheme or rest:sub(1, 2) ~= '//' then
    error(new_error('ERR_INVALID_URL', 'Invalid URL', {input = url,
      name = 'TypeError'}), 3)
  end
  rest = rest:sub(3)
  local authority, path = rest:match('^([^/?#]*)(.*)$')
  path = path:gsub('#.*$', '')
  if path == '' or path:sub(1, 1) == '?' then path = '/' .. path end
  local o = {protocol = lower(scheme) .. ':', path = path}
  local userinfo, hostport = authority:match('^(.*)@(.*)$')
  if userinfo then
    o.auth = unescape(userinfo)
  else
    hostport = authority
  end
  local host, port = hostport:match('^%[([^%]]+)%]:?(%d*)$')
  if not host then host, port = hostport:match('^([^:]*):?(%d*)$') end
  if not host or host == '' then
    error(new_error('ERR_INVALID_URL', 'Invalid URL', {input = url,
      name = 'TypeError'}), 3)
  end
  o.hostname = lower(host)
  o.port = tonumber(port)
  return o
end
client.parseUrl = parse_url

local function is_token(s)
  return type(s) == 'string' and s:find("^[!#$%%&'*+%-.^_`|~%w]+$") ~= nil
end

local function check_header(name, value)
  if not is_token(name) then
    error(new_error('ERR_INVALID_HTTP_TOKEN', 'Header name must be a valid '
      .. 'HTTP token ["' .. tostring(name) .. '"]', {name = 'TypeError'}), 4)
  end
  if value == nil then
    error(new_error('ERR_HTTP_INVALID_HEADER_VALUE', 'Invalid value "nil" '
      .. 'for header "' .. name .. '"', {name = 'TypeError'}), 4)
  end
  local vs = type(value) == 'table' and value or {value}
  for _, v in ipairs(vs) do
    if tostring(v):find('[\r\n%z]') then
      error(new_error('ERR_INVALID_CHAR', 'Invalid character in header '
        .. 'content ["' .. name .. '"]', {name = 'TypeError'}), 4)
    end
  end
end

------------------------------------------------------------------------------
-- IncomingMessage: the response.

local IncomingMessage = EventEmitter:extend()
client.IncomingMessage = IncomingMessage
Readable.install(IncomingMessage)

-- As the server's request does, the body also flows once an 'end'
-- listener is added.
for _, m in ipairs({'on', 'addListener', 'once', 'prependListener',
    'prependOnceListener'}) do
  local add = IncomingMessage[m]
  IncomingMessage[m] = function(self, name, fn)
    add(self, name, fn)
    if name == 'end' and self._flowing == nil then self:resume() end
    return self
  end
end

local function new_response(req, socket)
  local res = EventEmitter.new(IncomingMessage, {})
  Readable.init(res)
  res.req, res.socket = req, socket
  res.headers, res.rawHeaders = {}, {}
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

-- Headers whose repeats Node drops (the first wins); set-cookie is a list;
-- cookie joins with '; ', every other with ', '.
local single = {}
for _, n in ipairs({'age', 'authorization', 'content-length',
    'content-type', 'etag', 'expires', 'from', 'host', 'if-modified-since',
    'if-unmodified-since', 'last-modified', 'location', 'max-forwards',
    'proxy-authorization', 'referer', 'retry-after', 'server',
    'user-agent'}) do
  single[n] = true
end

local function add_header(t, name, value)
  local k = lower(name)
  local old = t[k]
  if k == 'set-cookie' then
    if old then old[#old + 1] = value else t[k] = {value} end
  elseif old == nil then
    t[k] = value
  elseif not single[k] then
    t[k] = old .. (k == 'cookie' and '; ' or ', ') .. value
  end
end

------------------------------------------------------------------------------
-- The response parser: feed(req, data) consumes what arrived; the state
-- lives in the request (_pstate, _pbuf, _plen).

-- Parses header lines (an array) into headers/raw; returns nil, err.
local function parse_fields(lines, first, headers, raw)
  for i = first, #lines do
    local line = lines[i]
    if line:find('^[ \t]') and #raw > 0 then
      -- An obsolete folded line continues the previous value.
      raw[#raw] = raw[#raw] .. ' ' .. line:match('^[ \t]*(.-)[ \t]*$')
    else
      local name, value = line:match('^([^:]+):[ \t]*(.-)[ \t]*$')
      if not name or not is_token(name) then
        return nil, parse_error('HPE_INVALID_HEADER_TOKEN',
          'Invalid header token', line)
      end
      raw[#raw + 1] = name
      raw[#raw + 1] = value
    end
  end
  for i = 1, #raw, 2 do add_header(headers, raw[i], raw[i + 1]) end
  return true
end

local function split_lines(head)
  local lines = {}
  for line in (head .. '\n'):gmatch('([^\n]*)\n') do
    lines[#lines + 1] = line:gsub('\r$', '')
  end
  return lines
end

-- How the body of res is framed: 'none', 'chunked', 'length' (with the
-- length) or 'close'. nil, err on a bad Content-Length.
local function framing(req, res)
  local s = res.statusCode
  if req.method == 'HEAD' or s == 204 or s == 304 or (s >= 100 and s < 200)
      then
    return 'none'
  end
  local te = res.headers['transfer-encoding']
  if te and lower(te):find('chunked%s*$') then return 'chunked' end
  local cl
  for i = 1, #res.rawHeaders, 2 do
    if lower(res.rawHeaders[i]) == 'content-length' then
      local v = res.rawHeaders[i + 1]
      if not v:find('^%d+$') then
        return nil, parse_error('HPE_INVALID_CONTENT_LENGTH',
          'Invalid character in Content-Length', v)
      end
      if cl and cl ~= tonumber(v) then
        return nil, parse_error('HPE_UNEXPECTED_CONTENT_LENGTH',
          'Duplicate Content-Length', v)
      end
      cl = tonumber(v)
    end
  end
  if cl then return 'length', cl end
  return 'close'
end

local function response_complete(req)
  local res = req.res
  req._pstate = 'done'
  res.complete = true
  Readable.push(res, nil)
  -- No keep-alive: the connection ends here.
  local socket = req.socket
  if not socket.destroyed then socket:destroySoon() end
end

-- Handles one complete head (status line and headers). Returns true to go
-- on, or nil, err.
local function on_head(req, head)
  local lines = split_lines(head)
  local major, minor, status, reason = lines[1]:match(
    '^HTTP/(%d)%.(%d) (%d%d%d)(.*)$')
  if not major then
    return nil, parse_error('HPE_INVALID_CONSTANT', 'Expected HTTP/',
      lines[1])
  end
  local res = new_response(req, req.socket)
  res.httpVersionMajor, res.httpVersionMinor = tonumber(major),
    tonumber(minor)
  res.httpVersion = major .. '.' .. minor
  res.statusCode = tonumber(status)
  res.statusMessage = reason:match('^ ?(.-)%s*$')
  local ok, err = parse_fields(lines, 2, res.headers, res.rawHeaders)
  if not ok then return nil, err end
  if res.statusCode >= 100 and res.statusCode < 200
      and res.statusCode ~= 101 then
    -- An interim answer: report it and wait for the real one.
    local info = {statusCode = res.statusCode,
      statusMessage = res.statusMessage, httpVersion = res.httpVersion,
      httpVersionMajor = res.httpVersionMajor,
      httpVersionMinor = res.httpVersionMinor, headers = res.headers,
      rawHeaders = res.rawHeaders}
    if res.statusCode == 100 then req:emit('continue') end
    req:emit('information', info)
    return true
  end
  if res.statusCode == 101 then
    req._pstate = 'upgraded'
    req.res = res
    if req:listenerCount('upgrade') > 0 then
      local rest = req._pbuf
      req._pbuf = ''
      req.socket:removeListener('data', req._ondata)
      req:emit('upgrade', res, req.socket, rest)
    else
      req.socket:destroy()
    end
    return true
  end
  local mode, len = framing(req, res)
  if not mode then return nil, len end
  req.res = res
  req._pstate, req._plen = mode, len
  if mode == 'chunked' then req._pstate = 'size' end
  if not req:emit('response', res) then
    -- Nobody wants it: read and drop the body, as Node's _dump.
    res:resume()
  end
  if mode == 'none' or (mode == 'length' and len == 0) then
    response_complete(req)
  end
  return true
end

-- Runs the parser on what is buffered. Returns true, or nil, err.
local function parse(req)
  while true do
    local st, buf = req._pstate, req._pbuf
    if st == 'head' then
      local e = buf:find('\n\r?\n')
      if not e then
        if #buf > MAX_HEADER_SIZE then
          return overflow(buf)
        end
        return true
      end
      local stop = buf:find('\n', e + 1, true)
      if e > MAX_HEADER_SIZE then
        return overflow(buf)
      end
      req._pbuf = buf:sub(stop + 1)
      local ok, err = on_head(req, buf:sub(1, e - 1))
      if not ok then return nil, err end
    elseif st == 'length' then
      if #buf == 0 then return true end
      local n = req._plen
      local chunk = #buf <= n and buf or buf:sub(1, n)
      req._pbuf = #buf <= n and '' or buf:sub(n + 1)
      req._plen = n - #chunk
      Readable.push(req.res, chunk)
      if req._plen == 0 then response_complete(req) end
    elseif st == 'close' then
      if #buf == 0 then return true end
      req._pbuf = ''
      Readable.push(req.res, buf)
    elseif st == 'size' then
      local e = buf:find('\n', 1, true)
      if not e then
        if #buf > 1024 then
          return nil, parse_error('HPE_INVALID_CHUNK_SIZE',
            'Invalid character in chunk size', buf:sub(1, 64))
        end
        return true
      end
      local line = buf:sub(1, e - 1):gsub('\r$', '')
      local hex = line:match('^(%x+)[ \t]*;?') or line:match('^(%x+)$')
      if not hex or #hex > 15 then
        return nil, parse_error('HPE_INVALID_CHUNK_SIZE',
          'Invalid character in chunk size', line)
      end
      req._pbuf = buf:sub(e + 1)
      local size = tonumber(hex, 16)
      if size == 0 then
        req._pstate, req._ptrailer = 'trailers', {}
      else
        req._pstate, req._plen = 'data', size
      end
    elseif st == 'data' then
      if #buf == 0 then return true end
      local n = req._plen
      local chunk = #buf <= n and buf or buf:sub(1, n)
      req._pbuf = #buf <= n and '' or buf:sub(n + 1)
      req._plen = n - #chunk
      Readable.push(req.res, chunk)
      if req._plen == 0 then req._pstate = 'crlf' end
    elseif st == 'crlf' then
      if buf:sub(1, 1) == '\n' then
        req._pbuf = buf:sub(2)
      elseif #buf < 2 then
        return true
      elseif buf:sub(1, 2) == '\r\n' then
        req._pbuf = buf:sub(3)
      else
        return nil, parse_error('HPE_STRICT', 'Expected LF after chunk data',
          buf:sub(1, 64))
      end
      req._pstate = 'size'
    elseif st == 'trailers' then
      local e = buf:find('\n', 1, true)
      if not e then
        if #buf > MAX_HEADER_SIZE then
          return overflow(buf)
        end
        return true
      end
      local line = buf:sub(1, e - 1):gsub('\r$', '')
      req._pbuf = buf:sub(e + 1)
      if line == '' then
        local ok, err = parse_fields(req._ptrailer, 1, req.res.trailers,
          req.res.rawTrailers)
        if not ok then return nil, err end
        response_complete(req)
      else
        local t = req._ptrailer
        t[#t + 1] = line
      end
    else
      -- done, upgraded: what follows is not ours.
      req._pbuf = ''
      return true
    end
  end
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
  if res == nil or req._pstate == 'upgraded' then
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

-- request(options) wiring: the connection and its events.
local function attach(req, opts)
  local socket = net.connect({host = req.host, port = req.port,
    localAddress = opts.localAddress, family = opts.family})
  req.socket, req.connection = socket, socket
  req._pstate, req._pbuf = 'head', ''
  req._ondata = function(data)
    if req._pstate == 'done' then return end
    req._pbuf = req._pbuf .. data
    local ok, err = parse(req)
    if not ok then
      req._sockerr = err
      if req.res and not req.res.complete then
        -- A broken body: the request reports it too, as Node.
        req._failed = true
        req.res.aborted = true
        req.res:emit('aborted')
        req:emit('error', err)
      else
        fail(req, err)
      end
      socket:destroy()
    end
  end
  socket:on('data', req._ondata)
  socket:on('end', function()
    if req._pstate == 'close' then
      req._pstate = 'done'
      req.res.complete = true
      Readable.push(req.res, nil)
    end
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
    error(new_error('ERR_INVALID_PROTOCOL', 'Protocol "' .. protocol
      .. '" not supported. Expected "http:"', {name = 'TypeError'}), 3)
  end
  local host = opts.hostname or opts.host or 'localhost'
  host = host:match('^%[(.*)%]$') or host
  local default_port = opts.defaultPort or 80
  local port = tonumber(opts.port) or default_port
  local method = upper(opts.method or 'GET')
  if not is_token(method) then
    error(new_error('ERR_INVALID_HTTP_TOKEN', 'Method must be a valid HTTP '
      .. 'token ["' .. tostring(opts.method) .. '"]', {name = 'TypeError'}),
      3)
  end
  local path = opts.path or '/'
  if path:find('[%z\1-\32]') then
    error(new_error('ERR_UNESCAPED_CHARACTERS',
      'Request path contains unescaped characters', {name = 'TypeError'}), 3)
  end
  req.method, req.path, req.host, req.port = method, path, host, port
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
  if self.headersSent then
    error(new_error('ERR_HTTP_HEADERS_SENT',
      'Cannot set headers after they are sent to the client'), 2)
  end
  check_header(name, value)
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
  if self.headersSent then
    error(new_error('ERR_HTTP_HEADERS_SENT',
      'Cannot remove headers after they are sent to the client'), 2)
  end
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
    if v ~= nil then
      local name = self._names[k]
      if type(v) == 'table' then
        for _, x in ipairs(v) do lines[#lines + 1] = name .. ': ' .. tostring(x) end
      else
        lines[#lines + 1] = name .. ': ' .. tostring(v)
      end
    end
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
  local err = new_error('ERR_STREAM_WRITE_AFTER_END', 'write after end')
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
    error(new_error('ERR_INVALID_ARG_TYPE', 'The "chunk" argument must be '
      .. 'a string. Received ' .. type(chunk), {name = 'TypeError'}), 2)
  end
  if self.finished then return write_after_end(self, cb) end
  if self.destroyed then
    if cb then
      next_tick(cb, new_error('ERR_STREAM_DESTROYED',
        'Cannot call write after a stream was destroyed'))
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
    error(new_error('ERR_INVALID_ARG_TYPE', 'The "chunk" argument must be '
      .. 'a string. Received ' .. type(data), {name = 'TypeError'}), 2)
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
-- setHost, timeout, localAddress, family; agent is accepted and ignored
-- (every request has its own connection).
function client.request(a, b, c)
  local opts, cb = {}, nil
  if type(a) == 'string' then
    for k, v in pairs(parse_url(a)) do opts[k] = v end
    if type(b) == 'table' then
      for k, v in pairs(b) do opts[k] = v end
      cb = c
    else
      cb = b
    end
  elseif type(a) == 'table' then
    if a.href and type(a.href) == 'string' and not a.host
        and not a.hostname then
      for k, v in pairs(parse_url(a.href)) do opts[k] = v end
    end
    for k, v in pairs(a) do opts[k] = v end
    if type(b) == 'table' then
      for k, v in pairs(b) do opts[k] = v end
      cb = c
    else
      cb = b
    end
  else
    error(new_error('ERR_INVALID_ARG_TYPE', 'The "url" argument must be a '
      .. 'string or a table. Received ' .. type(a), {name = 'TypeError'}), 2)
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
