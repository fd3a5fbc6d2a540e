-- http.server: Node's http.Server over the C server (runtime/http/):
-- createServer and its options, the table of callbacks C calls (one
-- dispatch per request, which makes req and res, then bodies, drains,
-- aborts, connections, timeouts, close), and listening and closing, which
-- go through the one listening path (lua/internal/listen.lua).

local C = require('_http')
local EventEmitter = require('events')
local process = require('process')
local errors = require('internal.errors')
local listen = require('internal.listen')
local IncomingMessage = require('http.incoming')
local response = require('http.response')
local Socket = require('http.socket')
local Upgraded = require('http.upgraded')
local co_run = require('co').run

local type, ipairs, pairs, rawget, setmetatable, xpcall, error = type,
  ipairs, pairs, rawget, setmetatable, xpcall, error
local ServerResponse = response.ServerResponse
local traceback, handler_error, safe_emit = response.traceback,
  response.handler_error, response.safe_emit
-- The slots of a connection's env table (runtime/http/http.h).
local ENV_REQ, ENV_RES = C.ENV_REQ, C.ENV_RES
local DEFAULTS = C.DEFAULTS

local server = {}

local function next_tick(fn, ...)
  return process.nextTick(fn, ...)
end

-- One request's handler, run in a coroutine of co's pool (so it may wait:
-- co.sleep, a cosocket, req:body), with what it raises answered by
-- handler_error (a 500, or the connection cut), whenever it raises.
local function run_handler(handler, req, res)
  local ok, err = xpcall(handler, traceback, req, res)
  if not ok then handler_error(res, err) end
end

local Server = EventEmitter:extend()
server.Server = Server

-- Server([options,] [handler]) and Server:new([options,] [handler]) are
-- createServer's, as Node's Server works with and without new; a subclass
-- (Server:extend()) makes its own instances.
local function construct(class, options, handler)
  local http = package.loaded.http
  return server.createServer(options, handler,
    http and http.maxHeaderSize or C.DEFAULTS.maxHeaderSize, class)
end
function Server.new(class, options, handler)
  if type(class) ~= 'table' or rawget(class, '__index') ~= class then
    -- Server.new(handler): called with a dot.
    return construct(Server, class, options)
  end
  return construct(class, options, handler)
end
setmetatable(Server, {__index = EventEmitter, __call = construct})

-- Every server of this process, for _stats.
local live = setmetatable({}, {__mode = 'k'})

-- Picks what the dispatch calls: the one 'request' listener itself when
-- there is exactly one plain listener (the createServer handler), else an
-- emit; with an access log, that wrapped (http/access_log.lua), so a
-- server without one does nothing more per request.
local function sync_handler(self)
  local events = rawget(self, '_events')
  local list = events and events.request
  if list and #list == 1 and type(list[1]) == 'function' then
    self._handler = list[1]
  else
    self._handler = self._emit_request
  end
  local alog = rawget(self, 'accessLog')
  if alog then
    local wrapped, err = require('http.access_log').wrap(self._handler, alog)
    if not wrapped then
      io.stderr:write('luacluster: ', err, '\n')
      self.accessLog = false
    else
      self._handler = wrapped
    end
  end
  if self._srv then
    self._srv:emit_connection(self:listenerCount('connection') > 0)
    self._srv:emit_secure(self:listenerCount('secureConnection') > 0)
    self._srv:emit_expect(self:listenerCount('checkContinue') > 0,
      self:listenerCount('checkExpectation') > 0)
    self._srv:emit_upgrade(self:listenerCount('upgrade') > 0,
      self:listenerCount('connect') > 0,
      self:listenerCount('clientError') > 0)
  end
end

for _, m in ipairs({'on', 'addListener', 'once', 'prependListener',
    'prependOnceListener', 'off', 'removeListener', 'removeAllListeners'}) do
  local super = EventEmitter[m]
  Server[m] = function(self, name, ...)
    super(self, name, ...)
    if name == nil or name == 'request' or name == 'connection'
        or name == 'upgrade' or name == 'connect'
        or name == 'clientError' or name == 'secureConnection'
        or name == 'checkContinue' or name == 'checkExpectation' then
      sync_handler(self)
    end
    return self
  end
end

------------------------------------------------------------------------------
-- What C calls.

local function emit_abort(req, res)
  if req and not req.complete then
    req.aborted = true
    safe_emit(req, nil, 'aborted')
  end
  if req then safe_emit(req, nil, 'close') end
  if res then safe_emit(res, nil, 'close') end
end

-- The connection closed before the request or response was done (maybe
-- inside a write of the handler's: the events wait a tick).
local function on_abort(req, res)
  if req then IncomingMessage._abort(req) end
  -- An access log writes the line of a request the client gave up on
  -- (http/access_log.lua: 499, as nginx).
  local logged = res and not res.finished and res._alAbort
  if logged then logged(res) end
  if (req and rawget(req, '_events')) or (res and rawget(res, '_events')) then
    next_tick(emit_abort, req, res)
  end
end

-- A connection was idle past its socket:setTimeout (or the server's):
-- 'timeout' on the socket and on the server, as Node's; when nothing
-- listens to either, the socket is destroyed (Node's socketOnTimeout).
local function on_timeout(server, socket)
  local heard = socket:emit('timeout')
  if server:emit('timeout', socket) then heard = true end
  if not heard then socket:destroy() end
end

-- One call per request: builds req and res (the constructors copy a
-- template, the cheapest way to make them) and runs self[field] with them:
-- the handler ('_handler'), or the 'checkContinue' / 'checkExpectation'
-- emitter for a request with Expect when such a listener is there.
local function dispatcher(self, field)
  return function(method, url, version, hd, socket, complete, box, env)
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
    if type(complete) == 'string' then
      -- The whole body came with the head: queued as the Readable
      -- queue's one piece (what req:body() and the flow read first),
      -- with the response C would name in its data and end calls.
      req._rq, req._rh, req._rt, req._rlen = {complete}, 1, 1, #complete
      req.complete, req._res = true, res
    end
    env[ENV_REQ], env[ENV_RES] = req, res
    co_run(run_handler, self[field], req, res)
  end
end

-- The callbacks table given to C (HTTP_CALLBACK_MAP in runtime/http/http.h).
local function make_callbacks(self)
  return {
    dispatch = dispatcher(self, '_handler'),
    checkContinue = dispatcher(self, '_checkContinue'),
    checkExpectation = dispatcher(self, '_checkExpectation'),
    data = IncomingMessage._data,
    ['end'] = IncomingMessage._end,
    drain = ServerResponse._drain,
    abort = on_abort,
    connection = function(socket)
      safe_emit(self, nil, 'connection', socket)
    end,
    timeout = function(socket) on_timeout(self, socket) end,
    -- An 'upgrade' or 'connect' request: the connection left HTTP; rest
    -- is what came after the head (Node's `head`). The listeners run in a
    -- coroutine, as a handler (a WebSocket's 'connection' may wait:
    -- ws:receive()); what they raise is uncaught, as in Node.
    upgrade = function(method, url, version, hd, socket, rest)
      local req = {method = method, url = url, httpVersion = version,
        _hd = hd, socket = socket, complete = true, upgrade = true}
      setmetatable(req, IncomingMessage)
      Upgraded.adopt(socket)
      co_run(self.emit, self, method == 'CONNECT' and 'connect'
        or 'upgrade', req, socket, rest)
    end,
    raw = Upgraded._event,
    -- A bad request: the 'clientError' listener answers, as Node's (a
    -- 408 for a timeout is ERR_HTTP_REQUEST_TIMEOUT, a 431
    -- HPE_HEADER_OVERFLOW, others llhttp's code).
    client_error = function(socket, status, code)
      Upgraded.adopt(socket)
      local err = errors.new(code, 'Parse Error: ' .. code)
      err.statusCode = status
      self:emit('clientError', err, socket)
    end,
    ws = function(socket, op, data, code)
      local ws = rawget(socket, '_ws')
      if ws then ws:_frame(op, data, code) end
    end,
    -- A TLS handshake failed (runtime/http/conn_tls.c): 'tlsClientError'
    -- (err, socket), as Node's tls.Server. With no listener, a refused
    -- client certificate is logged (the reason, never key material).
    tlsClientError = function(code, reason, socket)
      local err = errors.new(code, reason, {library = 'SSL routines',
        reason = reason})
      if self:listenerCount('tlsClientError') > 0 then
        safe_emit(self, nil, 'tlsClientError', err, socket)
      elseif self._tlsOptions and self._tlsOptions.requestCert
          and code:find('CERTIFICATE', 1, true) then
        io.stderr:write('https: client certificate refused from ',
          tostring(socket.remoteAddress), ': ', reason, ' (', code, ')\n')
      end
    end,
    -- A TLS handshake done, with a 'secureConnection' listener (Node's
    -- https.Server is a tls.Server).
    secureConnection = function(socket)
      safe_emit(self, nil, 'secureConnection', socket)
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

------------------------------------------------------------------------------
-- Creating.

local function check_timeout(v, name)
  if v == nil then return end
  if type(v) ~= 'number' or v < 0 or v ~= v then
    error(errors.new('ERR_INVALID_ARG_VALUE',
      'The "' .. name .. '" option must be a number >= 0'), 4)
  end
  return v
end

-- createServer([options,] [handler], maxHeaderSize[, class]) -> Server
-- (an instance of class, a subclass of Server, when given);
-- maxHeaderSize is the default (http.maxHeaderSize). Raises at the
-- caller's caller.
function server.createServer(options, handler, maxHeaderSize, class)
  if type(options) == 'function' then
    options, handler = nil, options
  end
  options = options or {}
  if type(options) ~= 'table' then
    error(errors.type_error('ERR_INVALID_ARG_TYPE',
      'The "options" argument must be of type table'), 3)
  end
  local self = EventEmitter.new(class or Server)
  self.maxHeaderSize = options.maxHeaderSize or maxHeaderSize
  self.headersTimeout = check_timeout(options.headersTimeout,
    'headersTimeout') or DEFAULTS.headersTimeout
  self.requestTimeout = check_timeout(options.requestTimeout,
    'requestTimeout') or DEFAULTS.requestTimeout
  self.keepAliveTimeout = check_timeout(options.keepAliveTimeout,
    'keepAliveTimeout') or DEFAULTS.keepAliveTimeout
  self.highWaterMark = options.highWaterMark or DEFAULTS.highWaterMark
  if self.requestTimeout > 0 and self.headersTimeout > self.requestTimeout
  then
    error(errors.range_error('ERR_OUT_OF_RANGE',
      'The value of "headersTimeout" is out of range. It must be <= '
      .. 'requestTimeout (' .. self.requestTimeout .. ')'), 3)
  end
  self.listening = false
  -- accessLog: a file, '-' or true (stdout), {path =, format =}, or false;
  -- by default what --access-log set (LUACLUSTER_ACCESS_LOG).
  if options.accessLog ~= nil then
    self.accessLog = options.accessLog
  elseif process.env.LUACLUSTER_ACCESS_LOG then
    self.accessLog = require('http.access_log').default()
  end
  -- Node's: a request with Expect goes to these listeners instead of
  -- 'request' (they answer it: res:writeContinue(), or a refusal).
  self._checkContinue = function(req, res)
    self:emit('checkContinue', req, res)
  end
  self._checkExpectation = function(req, res)
    self:emit('checkExpectation', req, res)
  end
  self._emit_request = function(req, res)
    self:emit('request', req, res)
  end
  self.timeout = 0
  self.maxRequestsPerSocket = options.maxRequestsPerSocket or 0
  self._srv = C.server(make_callbacks(self))
  if handler ~= nil then
    if type(handler) ~= 'function' then
      error(errors.type_error('ERR_INVALID_ARG_TYPE',
        'The "requestListener" argument must be of type function'), 3)
    end
    self:on('request', handler)
  end
  sync_handler(self)
  live[self] = true
  return self
end

-- Gives C the server's options (at listen, and before an inject).
function Server:_configure()
  self._srv:configure(self.maxHeaderSize, self.headersTimeout,
    self.requestTimeout, self.keepAliveTimeout, self.highWaterMark)
end

------------------------------------------------------------------------------
-- Listening and closing.

-- What the listening path hands the C server: a listening socket, TCP or
-- Unix (it listens on a duplicate), none (round robin: it serves what
-- comes), or connections the primary accepted (it serves a duplicate).
-- The C side tells a Unix socket from a TCP one by itself.
local function sink(self)
  local srv = self._srv
  return {
    accept = function(h, backlog)
      local ok, msg = srv:listen_fd(h:fileno(), backlog)
      if not h:is_closing() then h:close() end
      if not ok then return nil, msg end
      return {address = function() return srv:address() end}
    end,
    serve = function() srv:serve() end,
    connection = function(h)
      local fd = h:fileno()
      if fd then srv:adopt(fd) end
      h:close()
    end,
    listening = function() self._serving = true end,
  }
end

-- listen(port[, host][, backlog][, cb]), listen(path[, backlog][, cb])
-- (a Unix socket) and Node's other forms.
function Server:listen(...)
  self:_configure()
  -- An accessLog set after createServer takes effect here; so does a
  -- server.timeout assigned rather than set with setTimeout.
  if rawget(self, 'accessLog') ~= nil then sync_handler(self) end
  local t = rawget(self, 'timeout')
  if type(t) == 'number' and t > 0 then self._srv:socket_timeout(t) end
  -- maxRequestsPerSocket, as set (Node's: 0, no limit, by default).
  local m = rawget(self, 'maxRequestsPerSocket')
  if type(m) ~= 'number' or m < 0 or m ~= m then
    error(errors.new('ERR_OUT_OF_RANGE', 'The value of '
      .. '"maxRequestsPerSocket" is out of range. It must be >= 0. '
      .. 'Received ' .. tostring(m)), 2)
  end
  self._srv:max_requests(m)
  return listen.start(self, sink(self), ...)
end

-- address() -> {address=, port=, family=, addressType=}, the path when
-- listening on one, or nil.
Server.address = listen.address

-- close([cb]): stops accepting; 'close' comes once every connection is
-- gone (idle keep-alive connections are closed now). cb(err) as Node.
function Server:close(cb)
  listen.close(self, cb)
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

-- setTimeout([ms][, cb]): the idle timeout of each new connection (Node's
-- server.timeout; 0, the default, is none); cb listens to 'timeout'
-- (socket). A connection idle that long emits 'timeout' on its socket and
-- the server, and is destroyed when nothing listens.
function Server:setTimeout(ms, cb)
  if type(ms) == 'function' then ms, cb = nil, ms end
  ms = ms or 0
  if type(ms) ~= 'number' or ms < 0 or ms ~= ms then
    error(errors.new('ERR_OUT_OF_RANGE', 'The value of "msecs" is out of '
      .. 'range. It must be a number >= 0. Received ' .. tostring(ms)), 2)
  end
  self.timeout = ms
  if cb then self:on('timeout', cb) end
  if self._srv then self._srv:socket_timeout(ms) end
  return self
end

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

-- stats() -> {requests=, connections=} over every server of this process
-- (for cluster.stats()).
function server.stats()
  local connections = 0
  for s in pairs(live) do
    local _, n = s._srv:stats()
    connections = connections + n
  end
  return {requests = C.requests(), connections = connections}
end

-- What a cluster worker's heartbeat reports (lua/internal/stats.lua).
require('internal.stats').provide('http', server.stats)

return server
