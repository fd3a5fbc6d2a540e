-- http: Node's http module, server side.
--
-- runtime/http/ reads, parses and writes; it calls one function per
-- request (a server's dispatch) with a request and a response table, and a
-- few others for bodies, drains and aborts. This file gives those tables
-- Node's shape: IncomingMessage, ServerResponse and Server, all
-- EventEmitters. Listening in a cluster worker goes through
-- cluster._getServer (see listen_in_worker).

local C = require('_http')
local lc = require('_lc')
local EventEmitter = require('events')

local type, tostring, tonumber, pairs, ipairs, rawget, rawset, setmetatable,
  xpcall, error, select = type, tostring, tonumber, pairs, ipairs, rawget,
  rawset, setmetatable, xpcall, error, select
local lower = string.lower
local C_send = C.send

-- Hands a piece of the response to C, with the fields its head is made
-- from (read here, where the JIT makes them cheap).
local function send(c, res, chunk, last)
  return C_send(c, res, chunk, last, res.statusCode,
    rawget(res, 'statusMessage'), rawget(res, 'sendDate'),
    rawget(res, '_headers'), rawget(res, '_names'), res._wh)
end

local http = {}

http.STATUS_CODES = C.status_codes()
http.METHODS = C.methods()
table.sort(http.METHODS)
http.maxHeaderSize = 16384

local function next_tick(fn, ...)
  return process.nextTick(fn, ...)
end

-- A Node-style error: a table with code and message, printing as message.
local ErrorMT = {__tostring = function(e) return e.message end}
local function make_error(code, message, fields)
  local e = fields or {}
  e.code, e.message = code, message
  return setmetatable(e, ErrorMT)
end

local function traceback(e)
  if type(e) ~= 'string' then
    local ok, util = pcall(require, 'util')
    e = ok and util.inspect and util.inspect(e) or tostring(e)
  end
  return debug.traceback(e, 2)
end

-- What happens when a request handler (or a listener on its request)
-- raises: the traceback goes to stderr; the client gets a 500 when nothing
-- was sent yet, else its connection is cut; the server goes on.
local function handler_error(res, err)
  lc.write(2, 'http: request handler error: ' .. tostring(err) .. '\n')
  if not res or res.finished then return end
  -- headersSent is true from writeHead on, before anything went out (a
  -- header refused when the head is written, say): ask the connection.
  if not C.head_sent(res._c) then
    res._headers, res._names, res._wh = nil, nil, nil
    res.statusCode, res.statusMessage = 500, nil
    res.headersSent = false
    local ok = pcall(function()
      res:setHeader('Content-Type', 'text/plain')
      res:finish('Internal Server Error')
    end)
    if ok then return end
  end
  C.destroy(res._c)
end

-- Emits on obj, sending a raised error to handler_error.
local function safe_emit(obj, res, name, a, b)
  local ok, err = xpcall(obj.emit, traceback, obj, name, a, b)
  if not ok then handler_error(res, err) end
end

------------------------------------------------------------------------------
-- Socket: one per connection, shared by its requests and responses.

local Socket = EventEmitter:extend()

local remote_keys = {remoteAddress = 'address', remotePort = 'port',
  remoteFamily = 'family'}
local local_keys = {localAddress = 'address', localPort = 'port'}

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
  return Socket[k]
end

function Socket:address()
  return C.name(rawget(self, '_c'), false)
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

function Socket:setKeepAlive() return self end
function Socket:setTimeout() return self end
function Socket:ref() return self end
function Socket:unref() return self end

------------------------------------------------------------------------------
-- IncomingMessage: the request. The C side sets method, url, httpVersion,
-- httpVersionMajor, httpVersionMinor, headers, rawHeaders, socket and
-- complete. Its body flows (as 'data' then 'end') once a 'data' or 'end'
-- listener is added or resume() is called, as a Node stream in flowing
-- mode; chunks that come before wait.

local IncomingMessage = EventEmitter:extend()
IncomingMessage.aborted = false
IncomingMessage.upgrade = false

-- Fields built on first use: most handlers never read the headers, so the
-- C side leaves them packed in req._hd (runtime/http/parse.c push_head_data).
local lazy = {}
function lazy.headers(req)
  local hd = rawget(req, '_hd')
  if not hd then return nil end
  local headers, raw = C.headers(hd)
  rawset(req, 'headers', headers)
  rawset(req, 'rawHeaders', raw)
  req._hd = nil
  return headers
end
function lazy.rawHeaders(req)
  lazy.headers(req)
  return rawget(req, 'rawHeaders')
end
local function version_part(req, which)
  local major, minor = (rawget(req, 'httpVersion') or '1.1'):match(
    '^(%d+)%.(%d+)$')
  rawset(req, 'httpVersionMajor', tonumber(major))
  rawset(req, 'httpVersionMinor', tonumber(minor))
  return rawget(req, which)
end
function lazy.httpVersionMajor(req)
  return version_part(req, 'httpVersionMajor')
end
function lazy.httpVersionMinor(req)
  return version_part(req, 'httpVersionMinor')
end

IncomingMessage.__index = function(req, k)
  local v = IncomingMessage[k]
  if v ~= nil then return v end
  local f = lazy[k]
  if f then return f(req) end
  return nil
end

-- Body bytes kept for a reader that has not come yet; past this, the
-- connection stops reading until they flow (Node's highWaterMark).
local BODY_HWM = 65536

-- Reading resumes once held-back body bytes flow or are dropped.
local function release(req)
  if rawget(req, '_held') then
    req._held = nil
    C.reading(req.socket._c, true)
  end
end

local function flush_body(req)
  if rawget(req, '_paused') or rawget(req, '_ended') then return end
  local buf = rawget(req, '_buf')
  local res = rawget(req, '_res')
  release(req)
  if buf then
    req._buf = nil
    req._buffered = nil
    for i = 1, #buf do
      safe_emit(req, res, 'data', buf[i])
      if rawget(req, '_paused') then
        -- Paused mid-way: the rest waits for resume().
        local rest = {}
        for j = i + 1, #buf do rest[#rest + 1] = buf[j] end
        if #rest > 0 then req._buf = rest end
        return
      end
    end
  end
  if req.complete and not rawget(req, '_ended') then
    req._ended = true
    safe_emit(req, res, 'end')
  end
end

local function start_flowing(req)
  if rawget(req, '_flowing') then return end
  req._flowing = true
  next_tick(flush_body, req)
end

local function on_wrapper(super)
  return function(self, name, fn)
    super(self, name, fn)
    if name == 'data' or name == 'end' then start_flowing(self) end
    return self
  end
end
IncomingMessage.on = on_wrapper(EventEmitter.on)
IncomingMessage.addListener = IncomingMessage.on
IncomingMessage.once = on_wrapper(EventEmitter.once)
IncomingMessage.prependListener = on_wrapper(EventEmitter.prependListener)

function IncomingMessage:pause()
  self._paused = true
  C.reading(self.socket._c, false)
  return self
end

function IncomingMessage:resume()
  self._paused = nil
  C.reading(self.socket._c, true)
  if rawget(self, '_flowing') then
    next_tick(flush_body, self)
  else
    start_flowing(self)
  end
  return self
end

function IncomingMessage:isPaused()
  return rawget(self, '_paused') == true
end

function IncomingMessage:setEncoding() return self end

function IncomingMessage:setTimeout() return self end

function IncomingMessage:destroy()
  C.destroy(self.socket._c)
  return self
end

-- From C: a piece of body (res is nil once the response finished).
local function on_data(req, chunk, res)
  if res then req._res = res end
  if rawget(req, '_dump') then return end
  if rawget(req, '_flowing') and not rawget(req, '_paused')
      and not rawget(req, '_buf') then
    safe_emit(req, res, 'data', chunk)
  else
    local buf = rawget(req, '_buf')
    if not buf then
      buf = {}
      req._buf = buf
    end
    buf[#buf + 1] = chunk
    local n = (rawget(req, '_buffered') or 0) + #chunk
    req._buffered = n
    if n > BODY_HWM and not rawget(req, '_held')
        and not rawget(req, '_paused') then
      req._held = true
      C.reading(req.socket._c, false)
    end
  end
end

-- From C: the body is complete.
local function on_end(req, res)
  if res then req._res = res end
  req.complete = true
  if rawget(req, '_flowing') and not rawget(req, '_paused')
      and not rawget(req, '_buf') and not rawget(req, '_ended') then
    req._ended = true
    safe_emit(req, res, 'end')
  end
end

------------------------------------------------------------------------------
-- ServerResponse. Headers live in _headers (lower-case name -> value) and
-- _names (lower-case name -> name as given); writeHead's table, when no
-- header was set before, is kept as it is in _wh. C reads those fields and
-- statusCode, statusMessage and sendDate when it writes the head, from the
-- response itself (raw): the defaults below are also C's.

local ServerResponse = EventEmitter:extend()
ServerResponse.statusCode = 200
ServerResponse.headersSent = false
ServerResponse.finished = false
ServerResponse.writableFinished = false
ServerResponse.sendDate = true

local function headers_sent_error(what)
  return make_error('ERR_HTTP_HEADERS_SENT',
    'Cannot ' .. what .. ' headers after they are sent to the client')
end

local function check_name(name)
  if type(name) ~= 'string' or not name:match("^[%w!#$%%&'*+%-.^_`|~]+$")
  then
    error(make_error('ERR_INVALID_HTTP_TOKEN',
      'Header name must be a valid HTTP token ["' .. tostring(name) .. '"]'),
      3)
  end
end

local function check_value(name, value)
  local t = type(value)
  if t == 'table' then
    for i = 1, #value do check_value(name, value[i]) end
    return
  end
  if value == nil or (t ~= 'string' and t ~= 'number' and t ~= 'boolean')
  then
    error(make_error('ERR_HTTP_INVALID_HEADER_VALUE', 'Invalid value "'
      .. tostring(value) .. '" for header "' .. name .. '"'), 4)
  end
  if t == 'string' and value:find('[%z\1-\8\10-\31\127]') then
    error(make_error('ERR_INVALID_CHAR',
      'Invalid character in header content ["' .. name .. '"]'), 4)
  end
end

function ServerResponse:setHeader(name, value)
  if self.headersSent then error(headers_sent_error('set'), 2) end
  check_name(name)
  check_value(name, value)
  local key = lower(name)
  local h = rawget(self, '_headers')
  if not h then
    h = {}
    self._headers = h
    self._names = {}
  end
  h[key] = value
  self._names[key] = name
  return self
end

function ServerResponse:getHeader(name)
  local h = rawget(self, '_headers')
  return h and h[lower(name)]
end

function ServerResponse:hasHeader(name)
  local h = rawget(self, '_headers')
  return h ~= nil and h[lower(name)] ~= nil
end

function ServerResponse:removeHeader(name)
  if self.headersSent then error(headers_sent_error('remove'), 2) end
  local h = rawget(self, '_headers')
  if h then
    local key = lower(name)
    h[key] = nil
    self._names[key] = nil
  end
end

function ServerResponse:getHeaders()
  local out = {}
  for k, v in pairs(rawget(self, '_headers') or {}) do out[k] = v end
  return out
end

function ServerResponse:getHeaderNames()
  local out = {}
  for k in pairs(rawget(self, '_headers') or {}) do out[#out + 1] = k end
  table.sort(out)
  return out
end

-- writeHead(status[, message][, headers]): headers is a table of name ->
-- value, or a flat array {name, value, name, value, ...}. The head leaves
-- with the first write or finish.
function ServerResponse:writeHead(status, message, headers)
  if self.headersSent then error(headers_sent_error('write'), 2) end
  local code = tonumber(status)
  if not code or code % 1 ~= 0 or code < 100 or code > 999 then
    error(make_error('ERR_HTTP_INVALID_STATUS_CODE',
      'Invalid status code: ' .. tostring(status)), 2)
  end
  if type(message) == 'table' then
    headers, message = message, nil
  end
  if message ~= nil then
    message = tostring(message)
    if message:find('[\r\n]') then
      error(make_error('ERR_INVALID_CHAR',
        'Invalid character in statusMessage'), 2)
    end
    self.statusMessage = message
  end
  self.statusCode = code
  if headers then
    if headers[1] ~= nil then
      for i = 1, #headers, 2 do self:setHeader(headers[i], headers[i + 1]) end
    elseif rawget(self, '_headers') then
      for k, v in pairs(headers) do self:setHeader(k, v) end
    else
      self._wh = headers
    end
  end
  self.headersSent = true
  return self
end

local function after_finish(res, cb)
  res.writableFinished = true
  if cb then cb() end
  safe_emit(res, nil, 'finish')
  safe_emit(res, nil, 'close')
  local req = res.req
  if rawget(req, '_events') and req.complete then
    safe_emit(req, nil, 'close')
  end
end

local function write_after_end(res, cb)
  local err = make_error('ERR_STREAM_WRITE_AFTER_END', 'write after end')
  if cb then cb(err) end
  if res:listenerCount('error') > 0 then
    res:emit('error', err)
  else
    lc.write(2, 'http: write after end\n' .. debug.traceback('', 2) .. '\n')
  end
end

local function to_chunk(chunk)
  local t = type(chunk)
  if t == 'string' then return chunk end
  if t == 'number' then return tostring(chunk) end
  error(make_error('ERR_INVALID_ARG_TYPE',
    'The "chunk" argument must be of type string, got ' .. t), 3)
end

-- write(chunk[, encoding][, cb]) -> false when the caller should wait for
-- 'drain' before writing more.
function ServerResponse:write(chunk, encoding, cb)
  if type(encoding) == 'function' then cb = encoding end
  if self.finished then
    next_tick(write_after_end, self, cb)
    return false
  end
  local ok = send(self._c, self, to_chunk(chunk), false)
  self.headersSent = true
  if cb then next_tick(cb) end
  return ok
end

-- finish([chunk][, encoding][, cb]): Node's res.end().
function ServerResponse:finish(chunk, encoding, cb)
  if type(chunk) == 'function' then
    cb, chunk = chunk, nil
  elseif type(encoding) == 'function' then
    cb = encoding
  end
  if self.finished then
    if cb then next_tick(cb) end
    return self
  end
  if chunk ~= nil and type(chunk) ~= 'string' then chunk = to_chunk(chunk) end
  send(self._c, self, chunk, true)
  self.headersSent = true
  self.finished = true
  local req = self.req
  if not req.complete and not rawget(req, '_flowing') then
    -- Nobody reads the rest of the body: drop it as it comes.
    req._dump = true
    req._buf = nil
    release(req)
  end
  if cb or rawget(self, '_events') or rawget(req, '_events') then
    next_tick(after_finish, self, cb)
  end
  return self
end
ServerResponse['end'] = ServerResponse.finish

-- flushHeaders(): sends the head now.
function ServerResponse:flushHeaders()
  if self.finished then return end
  send(self._c, self, nil, false)
  self.headersSent = true
end

function ServerResponse:writeContinue()
  C.write_continue(self._c)
end

function ServerResponse:destroy()
  C.destroy(self._c)
  return self
end

function ServerResponse:setTimeout() return self end
function ServerResponse:cork() end
function ServerResponse:uncork() end

function ServerResponse:writableLength()
  return C.writable_length(self._c)
end

-- From C: the write queue emptied after write() returned false.
local function on_drain(res)
  safe_emit(res, res, 'drain')
end

local function emit_abort(req, res)
  if req and not req.complete then
    req.aborted = true
    safe_emit(req, nil, 'aborted')
  end
  if req then safe_emit(req, nil, 'close') end
  if res then safe_emit(res, nil, 'close') end
end

-- From C: the connection closed before the request or response was done
-- (maybe inside a write of the handler's: the events wait a tick).
local function on_abort(req, res)
  if (req and rawget(req, '_events')) or (res and rawget(res, '_events')) then
    next_tick(emit_abort, req, res)
  end
end

------------------------------------------------------------------------------
-- Server.

local Server = EventEmitter:extend()

local live = setmetatable({}, {__mode = 'k'})

-- Picks what the dispatch calls: the one 'request' listener itself when
-- there is exactly one plain listener (the createServer handler), else an
-- emit.
local function sync_handler(self)
  local events = rawget(self, '_events')
  local list = events and events.request
  if list and #list == 1 and type(list[1]) == 'function' then
    self._handler = list[1]
  else
    self._handler = self._emit_request
  end
  if self._srv then
    self._srv:emit_connection(self:listenerCount('connection') > 0)
  end
end

for _, m in ipairs({'on', 'addListener', 'once', 'prependListener',
    'prependOnceListener', 'off', 'removeListener', 'removeAllListeners'}) do
  local super = EventEmitter[m]
  Server[m] = function(self, name, ...)
    super(self, name, ...)
    if name == nil or name == 'request' or name == 'connection' then
      sync_handler(self)
    end
    return self
  end
end

local function make_callbacks(self)
  return {
    -- One call per request: builds req and res (the constructors copy a
    -- template, the cheapest way to make them) and runs the handler.
    dispatch = function(method, url, version, hd, socket, complete, box, env)
      -- Constant constructors are copies of a template whose keys are in
      -- place: filling them in adds no key, and the response's later
      -- fields are there already, so neither table ever grows.
      local req = {method = false, url = false, httpVersion = false,
        _hd = false, socket = false, complete = false}
      req.method, req.url, req.httpVersion, req._hd = method, url, version,
        hd
      req.socket, req.complete = socket, complete
      setmetatable(req, IncomingMessage)
      local res = {_c = false, req = false, socket = false,
        statusCode = 200, headersSent = false, finished = false,
        _wh = false}
      res._c, res.req, res.socket = box, req, socket
      setmetatable(res, ServerResponse)
      env[2], env[3] = req, res
      local ok, err = xpcall(self._handler, traceback, req, res)
      if not ok then handler_error(res, err) end
    end,
    data = on_data,
    ['end'] = on_end,
    drain = on_drain,
    abort = on_abort,
    connection = function(socket)
      safe_emit(self, nil, 'connection', socket)
    end,
    close = function()
      self._serving = false
      if self._quiet then
        -- The end of an inject on a server that was not serving.
        self._quiet = nil
        return
      end
      next_tick(self.emit, self, 'close')
    end,
    Socket = Socket,
  }
end

local function check_timeout(v, name)
  if v == nil then return end
  if type(v) ~= 'number' or v < 0 or v ~= v then
    error(make_error('ERR_INVALID_ARG_VALUE',
      'The "' .. name .. '" option must be a number >= 0'), 4)
  end
  return v
end

-- createServer([options,] [handler]) -> Server.
function http.createServer(options, handler)
  if type(options) == 'function' then
    options, handler = nil, options
  end
  options = options or {}
  if type(options) ~= 'table' then
    error(make_error('ERR_INVALID_ARG_TYPE',
      'The "options" argument must be of type table'), 2)
  end
  local self = Server:new()
  self.maxHeaderSize = options.maxHeaderSize or http.maxHeaderSize
  self.headersTimeout = check_timeout(options.headersTimeout,
    'headersTimeout') or 60000
  self.requestTimeout = check_timeout(options.requestTimeout,
    'requestTimeout') or 300000
  self.keepAliveTimeout = check_timeout(options.keepAliveTimeout,
    'keepAliveTimeout') or 5000
  self.highWaterMark = options.highWaterMark or 16384
  if self.requestTimeout > 0 and self.headersTimeout > self.requestTimeout
  then
    error(make_error('ERR_OUT_OF_RANGE',
      'The value of "headersTimeout" is out of range. It must be <= '
      .. 'requestTimeout (' .. self.requestTimeout .. ')'), 2)
  end
  self.listening = false
  self._emit_request = function(req, res)
    self:emit('request', req, res)
  end
  self._srv = C.server(make_callbacks(self))
  if handler ~= nil then
    if type(handler) ~= 'function' then
      error(make_error('ERR_INVALID_ARG_TYPE',
        'The "requestListener" argument must be of type function'), 2)
    end
    self:on('request', handler)
  end
  sync_handler(self)
  live[self] = true
  return self
end

http.Server = Server
http.IncomingMessage = IncomingMessage
http.ServerResponse = ServerResponse

-- Node's normalizeArgs for listen: (port[, host][, backlog][, cb]),
-- (options[, cb]), (cb) or (). Returns port, host, backlog, cb, exclusive.
local function listen_args(...)
  local n = select('#', ...)
  local first = ...
  local port, host, backlog, cb, exclusive
  local rest = 2
  if type(first) == 'table' then
    port, host, backlog = first.port, first.host, first.backlog
    exclusive = first.exclusive
    if first.path then
      error('listen: unix socket paths are not supported', 3)
    end
  elseif type(first) == 'function' then
    cb = first
  else
    port = first
  end
  for i = rest, n do
    local a = select(i, ...)
    local t = type(a)
    if t == 'function' then cb = a
    elseif t == 'string' and host == nil and backlog == nil then host = a
    elseif t == 'number' and backlog == nil then backlog = a
    end
  end
  if port == nil then port = 0 end
  local p = tonumber(port)
  if type(port) == 'string' and not p then
    error('listen: unix socket paths are not supported', 3)
  end
  if not p or p % 1 ~= 0 or p < 0 or p > 65535 then
    error(make_error('ERR_SOCKET_BAD_PORT',
      'options.port should be >= 0 and < 65536. Received '
      .. tostring(port) .. '.'), 3)
  end
  if host == '' then host = nil end
  return p, host, tonumber(backlog) or 511, cb, exclusive
end

local function listen_error(self, code, msg, host, port)
  -- C gives "EADDRINUSE: address already in use".
  local err = make_error(code or 'EUNKNOWN', 'listen ' .. tostring(msg)
    .. ' ' .. (host or '::') .. ':' .. port,
    {errno = code, syscall = 'listen', address = host or '::', port = port})
  next_tick(function() self:emit('error', err) end)
end

local function listening(self)
  self.listening = true
  self._serving = true
  next_tick(function()
    if self.listening then self:emit('listening') end
  end)
end

-- The worker path of listen: the primary decides how this worker gets its
-- connections (cluster._getServer; the contract is in lua/cluster/child).
-- lst.handle: a listening socket (shared with the other workers, or this
-- worker's SO_REUSEPORT one); we listen on a duplicate and close the luv
-- handle. Without one (round robin) the server only serves what the
-- primary hands over: connections it accepted, as luv handles, which every
-- policy may send (lst.onconnection).
local function listen_in_worker(self, cluster, host, port, backlog, family)
  self._pending = true
  cluster._getServer({address = host, port = port, addressType = family,
      backlog = backlog}, function(err, lst)
    self._pending = nil
    if self._cancel then
      self._cancel = nil
      if lst then
        if lst.handle and not lst.handle:is_closing() then
          lst.handle:close()
        end
        lst.close()
      end
      return
    end
    if err then
      local e = make_error(err.code, err.message or tostring(err.code),
        {errno = err.errno or err.code, syscall = 'listen',
          address = host, port = port})
      return next_tick(function() self:emit('error', e) end)
    end
    local srv = self._srv
    local ok, msg, code
    if lst.handle then
      ok, msg, code = srv:listen_fd(lst.handle:fileno(), backlog)
      if not lst.handle:is_closing() then lst.handle:close() end
    else
      srv:serve()
      ok = true
    end
    if not ok then
      lst.close()
      return listen_error(self, code, msg, host, port)
    end
    lst.onconnection = function(tcp)
      local fd = tcp:fileno()
      if fd then srv:adopt(fd) end
      tcp:close()
    end
    self._lst = lst
    listening(self)
  end, self)
end

local function configure(self)
  self._srv:configure(self.maxHeaderSize, self.headersTimeout,
    self.requestTimeout, self.keepAliveTimeout, self.highWaterMark)
end

local function bind(self, host, port, backlog, exclusive)
  local family = host and host:find(':', 1, true) and 6 or 4
  local cluster = package.loaded.cluster
  if cluster and cluster.isWorker and not exclusive then
    return listen_in_worker(self, cluster, host, port, backlog, family)
  end
  local ok, msg, code = self._srv:listen(host, port, backlog, false)
  if not ok then return listen_error(self, code, msg, host, port) end
  listening(self)
end

-- listen(port[, host][, backlog][, cb]) and Node's other forms.
function Server:listen(...)
  local port, host, backlog, cb, exclusive = listen_args(...)
  if self.listening or self._pending then
    error(make_error('ERR_SERVER_ALREADY_LISTEN',
      'Listen method has been called more than once without closing.'), 2)
  end
  if cb then self:once('listening', cb) end
  configure(self)
  self._cancel = nil
  if host == nil or host:match('^[%d%.]+$') or host:find(':', 1, true) then
    bind(self, host, port, backlog, exclusive)
    return self
  end
  -- A name: resolved first, as Node does with dns.lookup, and listened on
  -- at its first address (Node 17+), as net's servers do.
  self._pending = true
  require('net')._lookup(host, nil, function(err, addrs)
    self._pending = nil
    if self._cancel then
      self._cancel = nil
      return
    end
    if err then return self:emit('error', err) end
    bind(self, addrs[1], port, backlog, exclusive)
  end)
  return self
end

-- address() -> {address=, port=, family=, addressType=} or nil.
function Server:address()
  if not self.listening then return nil end
  local a = self._srv:address()
  if a then return a end
  local lst = rawget(self, '_lst')
  if lst and lst.address then
    local t = lst.address.addressType or 4
    return {address = lst.address.address, port = lst.address.port,
      family = t == 6 and 'IPv6' or 'IPv4', addressType = t}
  end
  return nil
end

-- close([cb]): stops accepting; 'close' comes once every connection is
-- gone (idle keep-alive connections are closed now). cb(err) as Node.
function Server:close(cb)
  if cb then
    if self.listening or self._pending then
      self:once('close', cb)
    else
      self:once('close', function()
        cb(make_error('ERR_SERVER_NOT_RUNNING', 'Server is not running.'))
      end)
    end
  end
  if self._pending then self._cancel = true end
  self._pending = nil
  self.listening = false
  local lst = rawget(self, '_lst')
  if lst then
    self._lst = nil
    lst.close()
  end
  if self._serving then
    self._srv:close(self._draining)
  else
    next_tick(self.emit, self, 'close')
  end
  return self
end

-- _drain(cb): close() for a reload or a graceful shutdown (cluster calls
-- it): stops accepting, but idle keep-alive connections stay until their
-- next request is answered (with Connection: close) or keepAliveTimeout,
-- so no request already sent on one is lost. cb once every one is gone.
function Server:_drain(cb)
  self._draining = true
  return self:close(cb)
end

function Server:closeIdleConnections()
  self._srv:close_connections(false)
end

function Server:closeAllConnections()
  self._srv:close_connections(true)
end

function Server:setTimeout() return self end
function Server:ref()
  self._srv:ref(true)
  return self
end

function Server:unref()
  self._srv:ref(false)
  return self
end

-- getConnections(cb): cb(nil, count).
function Server:getConnections(cb)
  local _, n = self._srv:stats()
  next_tick(cb, nil, n)
  return self
end

-- _stats() -> {requests=, connections=} over every server of this process
-- (for cluster.stats()).
function http._stats()
  local connections = 0
  for server in pairs(live) do
    local _, n = server._srv:stats()
    connections = connections + n
  end
  return {requests = C.requests(), connections = connections}
end

------------------------------------------------------------------------------
-- inject: a request through the same path as a connection, without a port.
-- One end of a socket pair is served as an accepted connection; the raw
-- request goes in at the other end and the raw response comes back.

-- Parses a raw response (after any 1xx) into inject's result table.
local function parse_response(data)
  local pos = 1
  local r
  repeat
    local hend = data:find('\r\n\r\n', pos, true)
    if not hend then return nil, 'incomplete response' end
    local head = data:sub(pos, hend - 1)
    local code, msg = head:match('^HTTP/1%.%d (%d%d%d) ?([^\r\n]*)')
    if not code then return nil, 'bad response' end
    r = {statusCode = tonumber(code), statusMessage = msg, headers = {},
      rawHeaders = {}, chunks = {}}
    for k, v in head:gmatch('\r\n([^:\r\n]+):[ \t]*([^\r\n]*)') do
      local key = k:lower()
      r.rawHeaders[#r.rawHeaders + 1] = k
      r.rawHeaders[#r.rawHeaders + 1] = v
      local old = r.headers[key]
      if key == 'set-cookie' then
        old = old or {}
        old[#old + 1] = v
        r.headers[key] = old
      else
        r.headers[key] = old and (old .. ', ' .. v) or v
      end
    end
    pos = hend + 4
  until r.statusCode >= 200
  local te = r.headers['transfer-encoding'] or ''
  local cl = tonumber(r.headers['content-length'])
  if te:lower():find('chunked') then
    while true do
      local le = data:find('\r\n', pos, true)
      local size = le and tonumber(data:sub(pos, le - 1):match('^%x+'), 16)
      if not size then return nil, 'bad chunked body' end
      if size == 0 then break end
      r.chunks[#r.chunks + 1] = data:sub(le + 2, le + 1 + size)
      pos = le + 2 + size + 2
    end
  else
    local body = cl and data:sub(pos, pos + cl - 1) or data:sub(pos)
    if #body > 0 then r.chunks[1] = body end
  end
  r.body = table.concat(r.chunks)
  return r
end

local function raw_request(opts)
  local method = (opts.method or 'GET'):upper()
  local body = opts.body or ''
  local lines = {method .. ' ' .. (opts.url or '/') .. ' HTTP/1.1'}
  local seen = {}
  for k, v in pairs(opts.headers or {}) do
    seen[k:lower()] = true
    if type(v) == 'table' then
      for _, x in ipairs(v) do lines[#lines + 1] = k .. ': ' .. tostring(x) end
    else
      lines[#lines + 1] = k .. ': ' .. tostring(v)
    end
  end
  if not seen.host then lines[#lines + 1] = 'Host: localhost' end
  if #body > 0 and not seen['content-length']
      and not seen['transfer-encoding'] then
    lines[#lines + 1] = 'Content-Length: ' .. #body
  end
  if not seen.connection then lines[#lines + 1] = 'Connection: close' end
  return table.concat(lines, '\r\n') .. '\r\n\r\n' .. body
end

-- inject(handlerOrServer, {method=, url=, headers=, body=, timeout=}[, cb])
-- -> {statusCode=, statusMessage=, headers=, rawHeaders=, body=, chunks=}.
-- Without cb, runs the event loop until the response is complete (from the
-- main chunk, such as a spec; libuv's loop cannot run inside a callback);
-- with cb, returns at once and calls cb(err, result).
function http.inject(target, opts, cb)
  opts = opts or {}
  local uv = require('uv')
  local server = target
  if type(target) == 'function' then
    server = http.createServer(target)
  elseif getmetatable(target) ~= Server then
    error('inject: expected a handler function or an http Server', 2)
  end
  local own = not server._serving
  -- A server that never listened has not given C its options yet.
  if own then configure(server) end
  local fds, perr = uv.socketpair('stream', 0, {nonblock = true},
    {nonblock = true})
  if not fds then error('inject: socketpair failed: ' .. tostring(perr), 2) end
  local ok, msg = server._srv:adopt(fds[1])
  require('_tcp').close(fds[1])
  if not ok then
    require('_tcp').close(fds[2])
    error('inject: ' .. tostring(msg), 2)
  end
  local pipe = uv.new_pipe(false)
  pipe:open(fds[2])
  local parts, result, failure, done = {}, nil, nil, false
  local timer = uv.new_timer()
  local function finish(err)
    if done then return end
    done = true
    timer:close()
    if not pipe:is_closing() then pipe:close() end
    if own then
      server._quiet = true
      server._srv:close()
    end
    if not err then
      result, err = parse_response(table.concat(parts))
    end
    failure = err
    if cb then cb(err, result) end
  end
  timer:start(opts.timeout or 5000, 0, function()
    finish('inject: timed out waiting for the response')
  end)
  pipe:read_start(function(err, chunk)
    if err then finish(err)
    elseif chunk then parts[#parts + 1] = chunk
    else finish() end
  end)
  pipe:write(raw_request(opts))
  if cb then return end
  while not done do lc.run('once') end
  if failure then error(failure, 2) end
  return result
end

------------------------------------------------------------------------------
-- The client side lives in http/client.lua.

function http.request(...)
  return require('http.client').request(...)
end

function http.get(...)
  return require('http.client').get(...)
end

return http
