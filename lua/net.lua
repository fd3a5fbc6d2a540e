-- net: Node's net module (TCP servers and sockets) on luv.
--
-- A Socket wraps one luv uv_tcp handle and gives it Node's stream shape:
-- reads are buffered until someone consumes them ('data' listener or
-- resume()), writes report back-pressure against a high-water mark and
-- emit 'drain', finish() half-closes once queued writes are out, and a
-- socket whose both sides are done destroys itself. A Server accepts with
-- luv, or in a cluster worker gets its connections the way the primary
-- decides (see listen_handle, which http's author mirrors).
--
-- Errors are tables {code=, message=, errno=, syscall=, address=, port=}
-- that print as their message, with Node's messages:
-- 'listen EADDRINUSE: address already in use 127.0.0.1:8000',
-- 'connect ECONNREFUSED 127.0.0.1:1', 'read ECONNRESET'.

local uv = require('uv')
local EventEmitter = require('events')
local process = require('process')

local type, tostring, tonumber, select, setmetatable, error = type,
  tostring, tonumber, select, setmetatable, error

local net = {}

local HWM = 16384
-- Output queued on a socket past which it stops reading (Socket:write).
local OUTPUT_LIMIT = 1024 * 1024

local function next_tick(fn, ...)
  return process.nextTick(fn, ...)
end

------------------------------------------------------------------------------
-- Errors.

-- Linux errno values, negated as Node's err.errno; messages as libuv's
-- uv_strerror (luv's callbacks give only the code).
local errnos = {
  EPERM = -1, ENOENT = -2, EINTR = -4, EBADF = -9, EAGAIN = -11,
  ENOMEM = -12, EACCES = -13, EINVAL = -22, EMFILE = -24, EPIPE = -32,
  ENOTSOCK = -88, EAFNOSUPPORT = -97, EADDRINUSE = -98, EADDRNOTAVAIL = -99,
  ENETDOWN = -100, ENETUNREACH = -101, ECONNABORTED = -103,
  ECONNRESET = -104, ENOBUFS = -105, EISCONN = -106, ENOTCONN = -107,
  ETIMEDOUT = -110, ECONNREFUSED = -111, EHOSTUNREACH = -113,
  EALREADY = -114, ECANCELED = -125, EOF = -4095,
  ENOTFOUND = -3008, EAI_AGAIN = -3001, EAI_FAIL = -3002,
}
local messages = {
  EACCES = 'permission denied', EADDRINUSE = 'address already in use',
  EADDRNOTAVAIL = 'address not available',
  EAFNOSUPPORT = 'address family not supported',
  ECONNREFUSED = 'connection refused',
  ECONNRESET = 'connection reset by peer',
  ECONNABORTED = 'software caused connection abort',
  ETIMEDOUT = 'connection timed out', EPIPE = 'broken pipe',
  ENOTCONN = 'socket is not connected', EINVAL = 'invalid argument',
  EMFILE = 'too many open files', ECANCELED = 'operation canceled',
  EHOSTUNREACH = 'host is unreachable', ENETUNREACH = 'network is unreachable',
  EBADF = 'bad file descriptor', ENOBUFS = 'no buffer space available',
}

local ErrorMT = {__tostring = function(e) return e.message end}
ErrorMT.__index = {name = 'Error'}

-- new_error(code, message[, fields]) -> a Node-style error table.
local function new_error(code, message, fields)
  local e = fields or {}
  e.code, e.message = code, message
  return setmetatable(e, ErrorMT)
end

-- luv reports errors as 'ECODE' (callbacks) or 'ECODE: message' (calls).
local function split_uverr(s)
  s = tostring(s)
  local code, msg = s:match('^([%w_]+):%s*(.*)$')
  if not code then code = s:match('^([%w_]+)$') or 'UNKNOWN' end
  if msg == nil or msg == '' then msg = messages[code] or code end
  return code, msg
end

local function details(address, port)
  if port and port > 0 then return ' ' .. tostring(address) .. ':' .. port end
  if address then return ' ' .. tostring(address) end
  return ''
end

-- Node's uvExceptionWithHostPort: 'listen EADDRINUSE: address already in
-- use 127.0.0.1:8000'.
local function uv_exception(uverr, syscall, address, port)
  local code, msg = split_uverr(uverr)
  return new_error(code, syscall .. ' ' .. code .. ': ' .. msg
    .. details(address, port), {errno = errnos[code], syscall = syscall,
      address = address, port = port})
end

-- Node's exceptionWithHostPort / errnoException: 'connect ECONNREFUSED
-- 127.0.0.1:1', 'read ECONNRESET'.
local function sys_exception(uverr, syscall, address, port)
  local code = split_uverr(uverr)
  return new_error(code, syscall .. ' ' .. code .. details(address, port),
    {errno = errnos[code], syscall = syscall, address = address,
      port = port})
end

-- A failed name lookup, as Node's dns error: 'getaddrinfo ENOTFOUND h'.
local function dns_exception(uverr, host)
  local code = split_uverr(uverr)
  if code == 'EAI_NONAME' or code == 'EAI_NODATA' then code = 'ENOTFOUND' end
  return new_error(code, 'getaddrinfo ' .. code .. ' ' .. tostring(host),
    {errno = errnos[code], syscall = 'getaddrinfo', hostname = host})
end

net._error = new_error
net._uv_exception = uv_exception
net._sys_exception = sys_exception

------------------------------------------------------------------------------
-- Addresses.

-- isIP(s) -> 4, 6 or 0, asking getaddrinfo for a numeric host only (no
-- lookup happens).
function net.isIP(s)
  if type(s) ~= 'string' or s == '' then return 0 end
  if s:match('^%d+%.%d+%.%d+%.%d+$') then
    for part in s:gmatch('%d+') do
      if #part > 3 or tonumber(part) > 255 then return 0 end
    end
    return 4
  end
  if not s:find(':', 1, true) then return 0 end
  local res = uv.getaddrinfo(s, nil, {numerichost = true,
    family = 'inet6'})
  return res and res[1] and 6 or 0
end
function net.isIPv4(s) return net.isIP(s) == 4 end
function net.isIPv6(s) return net.isIP(s) == 6 end

-- lookup(host, family, cb): resolves a name as Node's dns.lookup does, and
-- calls cb(nil, addresses) with its addresses in getaddrinfo's order (no
-- repeats), or cb(err) with Node's ENOTFOUND error. family: 'inet',
-- 'inet6' or nil. 'localhost' always resolves (RFC 6761): to what
-- /etc/hosts says, or, where nothing does (a minimal root has no
-- /etc/hosts), to 127.0.0.1 and ::1. http's listen uses it too.
function net._lookup(host, family, cb)
  uv.getaddrinfo(host, nil, {socktype = 'stream', family = family},
    function(err, res)
      local addrs, seen = {}, {}
      for _, r in ipairs(res or {}) do
        if not seen[r.addr] then
          seen[r.addr] = true
          addrs[#addrs + 1] = r.addr
        end
      end
      if not addrs[1] and host:lower() == 'localhost' then
        if family ~= 'inet6' then addrs[#addrs + 1] = '127.0.0.1' end
        if family ~= 'inet' then addrs[#addrs + 1] = '::1' end
      end
      if not addrs[1] then
        return cb(dns_exception(err or 'ENOTFOUND', host))
      end
      cb(nil, addrs)
    end)
end

local families = {inet = 'IPv4', inet6 = 'IPv6'}

-- name_of(tcp, peer) -> {address=, port=, family=} of a luv handle, or nil.
local function name_of(h, peer)
  local ok, a = pcall(peer and h.getpeername or h.getsockname, h)
  if not ok or type(a) ~= 'table' then return nil end
  local family = families[a.family] or a.family
  return {address = a.ip, port = a.port, family = family,
    addressType = family == 'IPv6' and 6 or 4}
end

local function check_port(port, what)
  local p = tonumber(port)
  if port == nil or p == nil or p % 1 ~= 0 or p < 0 or p > 65535
      or (type(port) ~= 'number' and type(port) ~= 'string') then
    error(new_error('ERR_SOCKET_BAD_PORT', what
      .. ' should be >= 0 and < 65536. Received ' .. tostring(port) .. '.',
      {name = 'RangeError'}), 3)
  end
  return p
end

------------------------------------------------------------------------------
-- The readable side, shared by Socket and http's IncomingMessage.
--
-- A stream pushes what it reads with Readable.push(self, chunk) (nil at the
-- end). Chunks are emitted as 'data' while the stream flows; it starts
-- flowing when a 'data' listener is added or resume() is called, and stops
-- with pause(). Until then they wait in a queue, and once that holds a
-- high-water mark the stream's self:_readStop() is called (and
-- self:_readStart() when it wants more). 'end' comes after the last chunk
-- was emitted, then self:_onEnd(). Fields: _flowing (nil: not yet, true,
-- false: paused), _rq/_rh/_rt (the queue), _rlen (bytes queued), _eof.

local Readable = {}
net._Readable = Readable

function Readable.init(self, hwm)
  self._rq, self._rh, self._rt, self._rlen = {}, 1, 0, 0
  self._rhwm = hwm or HWM
  self.readableEnded = false
end

local function want_read(self)
  return not self._eof and self._flowing ~= false
    and self._rlen < self._rhwm
end

local function emit_end(self)
  if self._endEmitted or self.destroyed then return end
  self._endEmitted = true
  self.readableEnded = true
  self.readable = false
  self:emit('end')
  if self._onEnd then self:_onEnd() end
end

local function flow(self)
  self._flowScheduled = false
  while self._flowing and self._rh <= self._rt and not self.destroyed do
    local chunk = self._rq[self._rh]
    self._rq[self._rh] = nil
    self._rh = self._rh + 1
    self._rlen = self._rlen - #chunk
    self:emit('data', chunk)
  end
  if self._rh > self._rt then
    self._rq, self._rh, self._rt = {}, 1, 0
    if self._eof then return emit_end(self) end
  end
  if want_read(self) and not self.destroyed then self:_readStart() end
end

local function schedule_flow(self)
  if not self._flowScheduled then
    self._flowScheduled = true
    next_tick(flow, self)
  end
end

function Readable.push(self, chunk)
  if self.destroyed or self._eof then return end
  if chunk == nil then
    self._eof = true
    self:_readStop()
    -- With nothing queued 'end' comes even if nobody reads, as Node's
    -- read(0) at EOF does; else after the queue was consumed.
    if self._rh > self._rt then next_tick(emit_end, self) end
    return
  end
  if self._flowing and self._rh > self._rt and not self._flowScheduled then
    return self:emit('data', chunk)
  end
  self._rt = self._rt + 1
  self._rq[self._rt] = chunk
  self._rlen = self._rlen + #chunk
  if self._rlen >= self._rhwm then self:_readStop() end
  if self._flowing then schedule_flow(self) end
end

function Readable.resume(self)
  self._flowing = true
  schedule_flow(self)
  return self
end

function Readable.pause(self)
  if self._flowing ~= false then
    self._flowing = false
    self:_readStop()
  end
  return self
end

function Readable.isPaused(self) return self._flowing == false end

-- Adding a 'data' listener starts the flow unless pause() was called, as
-- in Node; install(class) wraps the class's listener-adding methods.
function Readable.install(class)
  for _, m in ipairs({'on', 'addListener', 'once', 'prependListener',
      'prependOnceListener'}) do
    local add = EventEmitter[m]
    class[m] = function(self, name, fn)
      add(self, name, fn)
      if name == 'data' and self._flowing ~= false then self:resume() end
      return self
    end
  end
  class.resume, class.pause, class.isPaused = Readable.resume,
    Readable.pause, Readable.isPaused
  class.setEncoding = function(self) return self end
end

------------------------------------------------------------------------------
-- Socket.

local Socket = EventEmitter:extend()
net.Socket = Socket
Readable.install(Socket)

-- Socket:new([options]) -> a socket, not connected; options: allowHalfOpen,
-- highWaterMark (write side, default 16 KiB), noDelay, keepAlive,
-- keepAliveInitialDelay, timeout, and internally handle (an accepted luv
-- tcp), pauseOnConnect, server.
function Socket:new(options)
  options = options or {}
  local s = EventEmitter.new(self, {})
  Readable.init(s)
  s.connecting = false
  s.pending = true
  s.destroyed = false
  s.readable, s.writable = false, false
  s.allowHalfOpen = options.allowHalfOpen == true
  s.bytesRead, s.bytesWritten = 0, 0
  s.writableLength = 0
  s.writableHighWaterMark = options.highWaterMark or HWM
  s.writableEnded, s.writableFinished = false, false
  s._wq = {}
  s._reading = false
  if options.noDelay then s._noDelay = true end
  if options.keepAlive then
    s._keepAlive = {true, options.keepAliveInitialDelay or 0}
  end
  if options.timeout then s:setTimeout(options.timeout) end
  if options.handle then
    s._server = options.server
    if options.pauseOnConnect then s._flowing = false end
    s._handle = options.handle
    s:_connected()
  end
  return s
end

function Socket:_readStart()
  local h = self._handle
  if self._reading or self._outFull or not h or not self._isConnected
      or self.destroyed then
    return
  end
  self._reading = true
  h:read_start(function(err, chunk)
    if self.destroyed then return end
    if err then
      return self:destroy(sys_exception(err, 'read'))
    end
    if chunk then
      self.bytesRead = self.bytesRead + #chunk
      self:_touch()
    else
      self._peerEnded = true
    end
    Readable.push(self, chunk)
  end)
end

function Socket:_readStop()
  if self._reading then
    self._reading = false
    if self._handle and not self._handle:is_closing() then
      self._handle:read_stop()
    end
  end
end

-- After 'end': without allowHalfOpen, end our side too (Node's onEndNT);
-- with both sides done, destroy.
function Socket:_onEnd()
  if not self.allowHalfOpen and not self.writableEnded then
    self:finish()
  else
    self:_maybeDestroy()
  end
end

function Socket:_maybeDestroy()
  if self._endEmitted and self.writableFinished and not self.destroyed then
    self:destroy()
  end
end

-- The handle is connected (accepted, or connect succeeded): fill the
-- addresses, apply options, send queued writes, start reading.
function Socket:_connected()
  local h = self._handle
  self._isConnected = true
  self.connecting = false
  self.pending = false
  self.readable, self.writable = true, not self.writableEnded
  local peer, me = name_of(h, true), name_of(h, false)
  if peer then
    self.remoteAddress, self.remotePort, self.remoteFamily = peer.address,
      peer.port, peer.family
  end
  if me then
    self.localAddress, self.localPort, self.localFamily = me.address,
      me.port, me.family
  end
  if self._noDelay ~= nil then h:nodelay(self._noDelay) end
  if self._keepAlive then
    h:keepalive(self._keepAlive[1], self._keepAlive[2])
  end
  local q = self._wq
  self._wq = {}
  for i = 1, #q do self:_dowrite(q[i][1], q[i][2]) end
  if want_read(self) then self:_readStart() end
end

------------------------------------------------------------------------------
-- Connecting.

local function connect_args(...)
  local first = ...
  local n = select('#', ...)
  local opts, cb = {}, nil
  if type(first) == 'table' then
    for k, v in pairs(first) do opts[k] = v end
    cb = select(2, ...)
  else
    opts.port = first
    for i = 2, n do
      local a = select(i, ...)
      if type(a) == 'function' then cb = a
      elseif type(a) == 'string' then opts.host = a end
    end
  end
  if opts.path then
    error('net: unix socket paths are not supported', 3)
  end
  if type(opts.port) == 'string' and not tonumber(opts.port) then
    error('net: unix socket paths are not supported', 3)
  end
  if type(cb) ~= 'function' then cb = nil end
  return opts, cb
end

-- connect(port[, host][, cb]) / connect(options[, cb]): options port,
-- host (default 'localhost'), localAddress, localPort, family, timeout,
-- noDelay, keepAlive, keepAliveInitialDelay, autoSelectFamily,
-- autoSelectFamilyAttemptTimeout.
--
-- A name is resolved, and its addresses are tried in the order getaddrinfo
-- gives them, one at a time, until one connects, as Node (20+) does with
-- autoSelectFamily: the next one on an error, or after
-- autoSelectFamilyAttemptTimeout ms (250) while more remain. So a client
-- of 'localhost' reaches a server listening on 'localhost' (::1 where
-- /etc/hosts lists it; glibc sorts it before 127.0.0.1) and one on
-- 127.0.0.1 alike. autoSelectFamily = false tries the first address only.
-- When every one fails, the last error is the socket's.
function Socket:connect(...)
  local opts, cb = connect_args(...)
  local port = check_port(opts.port, 'Port')
  if self.connecting or self._isConnected then
    error(new_error('ERR_SOCKET_CONNECTION_IN_PROGRESS',
      'Socket is already connected or connecting'), 2)
  end
  if self.destroyed then
    error(new_error('ERR_STREAM_DESTROYED',
      'Cannot call connect after a stream was destroyed'), 2)
  end
  if opts.noDelay then self._noDelay = true end
  if opts.keepAlive then
    self._keepAlive = {true, opts.keepAliveInitialDelay or 0}
  end
  if opts.allowHalfOpen ~= nil then
    self.allowHalfOpen = opts.allowHalfOpen == true
  end
  if opts.timeout then self:setTimeout(opts.timeout) end
  if cb then self:once('connect', cb) end
  self.connecting = true
  self._handle = uv.new_tcp()
  local host = opts.host
  if host == nil or host == '' then host = 'localhost' end
  if net.isIP(host) ~= 0 then
    self:_connectTo({host}, port, opts)
  else
    local family = opts.family == 6 and 'inet6'
      or opts.family == 4 and 'inet' or nil
    net._lookup(host, family, function(err, addrs)
      if self.destroyed then return end
      if err then return self:destroy(err) end
      if opts.autoSelectFamily == false then addrs = {addrs[1]} end
      self:emit('lookup', nil, addrs[1],
        addrs[1]:find(':', 1, true) and 6 or 4, host)
      self:_connectTo(addrs, port, opts)
    end)
  end
  return self
end

-- Connects self._handle to addrs[i] (default 1); on failure, a new handle
-- tries addrs[i + 1], and so on (see connect).
function Socket:_connectTo(addrs, port, opts, i)
  i = i or 1
  local ip, more = addrs[i], addrs[i + 1] ~= nil
  local h = self._handle
  local timer
  local function failed(e)
    if timer then
      timer:close()
      timer = nil
    end
    if self.destroyed or self._handle ~= h then return end
    if not more then return self:destroy(e) end
    -- A handle that tried to connect is spent: the next address gets a new
    -- one, as referenced as this one was.
    local nh = uv.new_tcp()
    if not h:has_ref() then nh:unref() end
    self._handle = nh
    h:close()
    return self:_connectTo(addrs, port, opts, i + 1)
  end
  if opts.localAddress or opts.localPort then
    local ok, msg = h:bind(opts.localAddress
      or (ip:find(':', 1, true) and '::' or '0.0.0.0'), opts.localPort or 0)
    if not ok then
      local e = sys_exception(msg, 'bind', opts.localAddress,
        opts.localPort)
      return next_tick(failed, e)
    end
  end
  local ok, msg = h:connect(ip, port, function(err)
    if self.destroyed or self._handle ~= h then return end
    if err then return failed(sys_exception(err, 'connect', ip, port)) end
    if timer then
      timer:close()
      timer = nil
    end
    self:_connected()
    self:emit('connect')
    if self.destroyed then return end
    self:emit('ready')
    if self.writableEnded then self:_maybeShutdown() end
  end)
  if not ok then
    return next_tick(failed, sys_exception(msg, 'connect', ip, port))
  end
  if more then
    -- No answer yet: try the next address (this one is given up).
    timer = uv.new_timer()
    timer:unref()
    timer:start(opts.autoSelectFamilyAttemptTimeout or 250, 0, function()
      failed(sys_exception('ETIMEDOUT', 'connect', ip, port))
    end)
  end
end

------------------------------------------------------------------------------
-- Writing.

-- Sends one chunk on the connected handle; counts it down when done.
function Socket:_dowrite(data, cb)
  local n = #data
  local ok, msg = self._handle:write(data, function(err)
    self.writableLength = self.writableLength - n
    if err then
      local e = sys_exception(err, 'write')
      if cb then cb(e) end
      if not self.destroyed then self:destroy(e) end
      return
    end
    if self.destroyed then
      if cb then cb() end
      return
    end
    self:_touch()
    if cb then cb() end
    if self._outFull and self.writableLength < self.writableHighWaterMark
        and not self.destroyed then
      self._outFull = false
      if want_read(self) then self:_readStart() end
    end
    if self.writableLength == 0 and not self.destroyed then
      if self._needDrain then
        self._needDrain = false
        self:emit('drain')
      end
      self:_maybeShutdown()
    end
  end)
  if not ok then
    self.writableLength = self.writableLength - n
    local e = sys_exception(msg, 'write')
    next_tick(function()
      if cb then cb(e) end
      self:destroy(e)
    end)
  end
end

-- write(data[, encoding][, cb]) -> false once writableLength reached the
-- high-water mark ('drain' follows when everything queued is written).
-- cb(err) runs when this chunk is written.
function Socket:write(data, encoding, cb)
  if type(encoding) == 'function' then cb = encoding end
  if type(data) ~= 'string' then
    error(new_error('ERR_INVALID_ARG_TYPE', 'The "chunk" argument must be '
      .. 'a string. Received ' .. type(data), {name = 'TypeError'}), 2)
  end
  if self.writableEnded then
    local e
    if self._peerEnded and not self.allowHalfOpen then
      e = new_error('EPIPE', 'This socket has been ended by the other party')
    else
      e = new_error('ERR_STREAM_WRITE_AFTER_END', 'write after end')
    end
    next_tick(function()
      if cb then cb(e) end
      self:destroy(e)
    end)
    return false
  end
  if self.destroyed then
    local e = new_error('ERR_STREAM_DESTROYED',
      'Cannot call write after a stream was destroyed')
    if cb then next_tick(cb, e) end
    return false
  end
  local n = #data
  self.writableLength = self.writableLength + n
  self.bytesWritten = self.bytesWritten + n
  if self._isConnected then
    self:_dowrite(data, cb)
  else
    self._wq[#self._wq + 1] = {data, cb}
  end
  -- A peer that sends and never reads what we answer: past OUTPUT_LIMIT
  -- queued, reading stops until the queue is under the high-water mark
  -- again, so no client makes us hold unbounded output.
  if self.writableLength >= OUTPUT_LIMIT
      and self.writableLength >= self.writableHighWaterMark
      and not self._outFull then
    self._outFull = true
    self:_readStop()
  end
  local ok = self.writableLength < self.writableHighWaterMark
  if not ok then self._needDrain = true end
  return ok
end

-- Half-closes once every queued write is out; 'finish' follows.
function Socket:_maybeShutdown()
  if not self.writableEnded or self._shutdown or self.destroyed
      or not self._isConnected or self.writableLength > 0 then
    return
  end
  self._shutdown = true
  local function done()
    if self.destroyed then return end
    self.writable = false
    self.writableFinished = true
    self:emit('finish')
    self:_maybeDestroy()
  end
  local ok = self._handle:shutdown(function() done() end)
  if not ok then next_tick(done) end
end

-- finish([data][, encoding][, cb]): Node's end(). Writes data, then ends
-- our side once everything is written; cb on 'finish'.
function Socket:finish(data, encoding, cb)
  if type(data) == 'function' then data, cb = nil, data
  elseif type(encoding) == 'function' then cb = encoding end
  if data ~= nil and not self.writableEnded then self:write(data) end
  if cb then self:once('finish', cb) end
  if self.writableEnded or self.destroyed then return self end
  self.writableEnded = true
  self.writable = false
  self:_maybeShutdown()
  return self
end
Socket['end'] = Socket.finish

-- destroySoon(): ends, and destroys once written.
function Socket:destroySoon()
  if self.writableFinished then return self:destroy() end
  self:once('finish', function() self:destroy() end)
  return self:finish()
end

------------------------------------------------------------------------------
-- Closing.

local function emit_error(self)
  local err = self._pendingError
  if err then
    self._pendingError = nil
    self:emit('error', err)
  end
end

-- destroy([err]): closes the handle now. 'error' (when err is given), then
-- 'close'(hadError) follow.
function Socket:destroy(err)
  if self.destroyed then return self end
  self.destroyed = true
  self.connecting = false
  self.readable, self.writable = false, false
  self:_clearTimer()
  self._reading = false
  self._wq = {}
  if err ~= nil then
    self._hadError = true
    self._pendingError = err
    next_tick(emit_error, self)
  end
  local function closed()
    -- The error, when the close callback runs before the tick queue.
    emit_error(self)
    local server = self._server
    if server then
      self._server = nil
      server:_connectionClosed()
    end
    self:emit('close', err ~= nil)
  end
  local h = self._handle
  if h and not h:is_closing() then
    if self._reset and h.close_reset then
      h:close_reset(closed)
    else
      h:close(closed)
    end
  else
    next_tick(closed)
  end
  return self
end

-- resetAndDestroy(): closes with a TCP RST instead of a FIN.
function Socket:resetAndDestroy()
  self._reset = self._isConnected
  return self:destroy()
end

------------------------------------------------------------------------------
-- Options and addresses.

-- setTimeout(ms[, cb]): 'timeout' after ms without reads or writes (the
-- socket stays open; 0 disables). cb is a one-time 'timeout' listener.
function Socket:setTimeout(ms, cb)
  ms = tonumber(ms)
  if not ms or ms < 0 or ms ~= ms then
    error(new_error('ERR_OUT_OF_RANGE', 'The value of "msecs" is out of '
      .. 'range. It must be a non-negative finite number. Received '
      .. tostring(ms), {name = 'RangeError'}), 2)
  end
  if cb then
    if ms == 0 then self:removeListener('timeout', cb)
    else self:once('timeout', cb) end
  end
  if ms == 0 then
    self.timeout = nil
    self:_clearTimer()
    return self
  end
  self.timeout = ms
  if self.destroyed then return self end
  if not self._timer then
    self._timer = uv.new_timer()
    self._timer:unref()
  end
  self:_touch()
  return self
end

function Socket:_touch()
  local t = self._timer
  if not t then return end
  t:stop()
  t:start(self.timeout, 0, function()
    if not self.destroyed then self:emit('timeout') end
  end)
end

function Socket:_clearTimer()
  local t = self._timer
  if t then
    self._timer = nil
    t:stop()
    t:close()
  end
end

function Socket:setNoDelay(noDelay)
  if noDelay == nil then noDelay = true end
  self._noDelay = noDelay and true or false
  if self._handle and not self.destroyed then
    self._handle:nodelay(self._noDelay)
  end
  return self
end

-- setKeepAlive([enable][, initialDelay ms])
function Socket:setKeepAlive(enable, initialDelay)
  if type(enable) == 'number' then enable, initialDelay = false, enable end
  self._keepAlive = {enable and true or false,
    math.floor((tonumber(initialDelay) or 0) / 1000)}
  if self._handle and not self.destroyed then
    -- A zero delay keeps the system's (libuv reports EINVAL for it, after
    -- turning SO_KEEPALIVE on), as Node.
    self._handle:keepalive(self._keepAlive[1], self._keepAlive[2])
  end
  return self
end

-- address() -> {address=, port=, family=} of our end, or {}.
function Socket:address()
  local a = self._handle and not self.destroyed and name_of(self._handle)
  if not a then return {} end
  return {address = a.address, port = a.port, family = a.family}
end

function Socket:ref()
  if self._handle and not self._handle:is_closing() then
    self._handle:ref()
  end
  return self
end

function Socket:unref()
  if self._handle and not self._handle:is_closing() then
    self._handle:unref()
  end
  return self
end

------------------------------------------------------------------------------
-- Listening: one place decides how a server gets its connections.

-- Starts accepting on a luv listening handle: each connection goes to
-- onconnection(tcp). accept failing is normal where several processes
-- share the socket (another one took it).
local function accept_on(h, backlog, onconnection, onerror)
  return h:listen(backlog, function(err)
    if err then
      if onerror then onerror(sys_exception(err, 'accept')) end
      return
    end
    local c = uv.new_tcp()
    if not h:accept(c) then
      c:close()
      return
    end
    onconnection(c)
  end)
end

-- A listening socket of our own: host nil means '::' dual-stack, or
-- '0.0.0.0' without IPv6, as Node. Returns the luv handle or nil, err.
local function bind_listen(host, port, backlog, onconnection, onerror)
  local h = uv.new_tcp()
  local addr = host
  local ok, msg
  if host == nil then
    addr = '::'
    ok, msg = h:bind(addr, port)
    if not ok then
      h:close()
      h = uv.new_tcp()
      addr = '0.0.0.0'
      ok, msg = h:bind(addr, port)
    end
  else
    ok, msg = h:bind(addr, port)
  end
  if ok then ok, msg = accept_on(h, backlog, onconnection, onerror) end
  if not ok then
    h:close()
    return nil, uv_exception(msg, 'listen', addr, port)
  end
  return h
end

local function handle_listener(h, on_close)
  return {
    handle = h,
    address = function() return name_of(h) end,
    close = function()
      if on_close then on_close() end
      if not h:is_closing() then h:close() end
    end,
    ref = function() if not h:is_closing() then h:ref() end end,
    unref = function() if not h:is_closing() then h:unref() end end,
  }
end

-- listen_handle(opts, onconnection, cb[, owner]): gets a listening socket
-- for opts = {address=, port=, addressType=4|6, backlog=, exclusive=}.
-- Standalone (or exclusive) it binds one here; in a cluster worker it asks
-- the primary (cluster._getServer; owner is the server, closed by
-- worker:disconnect()), which answers with a listening handle (shared, or
-- this worker's SO_REUSEPORT socket) or none: round robin. Under every
-- policy the primary may also hand over connections it accepted (all of
-- them under round robin). Every accepted connection reaches
-- onconnection(tcp) as a luv uv_tcp handle. cb(err, listener) runs once,
-- synchronously when standalone; listener has address() -> {address=,
-- port=, family=, addressType=}, close(), ref(), unref().
function net._listen(opts, onconnection, cb, owner, onerror)
  local backlog = opts.backlog or 511
  local cluster = package.loaded.cluster
  if not (cluster and cluster.isWorker) or opts.exclusive then
    local h, err = bind_listen(opts.address, opts.port, backlog,
      onconnection, onerror)
    if not h then return cb(err) end
    return cb(nil, handle_listener(h))
  end
  cluster._getServer({address = opts.address, port = opts.port,
      addressType = opts.addressType or 4, backlog = backlog},
    function(err, lst)
      if err then
        -- The primary's error, in the shape and words of our own.
        local code = err.code or 'UNKNOWN'
        local desc = tostring(err.message or ''):match('^%a+ [%w_]+: (.+)$')
        return cb(uv_exception(code .. ': ' .. (desc or messages[code]
          or code), 'listen', opts.address or '::', opts.port))
      end
      if lst.handle then
        -- A listening socket from the primary: we accept from it.
        local h = lst.handle
        local ok, msg = accept_on(h, backlog, onconnection, onerror)
        if not ok then
          lst.close()
          if not h:is_closing() then h:close() end
          return cb(uv_exception(msg, 'listen', opts.address, opts.port))
        end
        lst.onconnection = onconnection
        return cb(nil, handle_listener(h, lst.close))
      end
      -- Round robin.
      lst.onconnection = onconnection
      local a = lst.address or {}
      local t = a.addressType or opts.addressType or 4
      return cb(nil, {
        address = function()
          return {address = a.address or opts.address or '::',
            port = a.port or opts.port, family = t == 6 and 'IPv6' or 'IPv4',
            addressType = t}
        end,
        close = function()
          lst.onconnection = nil
          lst.close()
        end,
        ref = function() end,
        unref = function() end,
      })
    end, owner)
end

------------------------------------------------------------------------------
-- Server.

local Server = EventEmitter:extend()
net.Server = Server

-- Server:new([options][, connectionListener]); options: allowHalfOpen,
-- pauseOnConnect, noDelay, keepAlive, keepAliveInitialDelay.
function Server:new(options, listener)
  if type(options) == 'function' then options, listener = nil, options end
  options = options or {}
  local s = EventEmitter.new(self, {})
  s._connections = 0
  s.listening = false
  s.allowHalfOpen = options.allowHalfOpen == true
  s.pauseOnConnect = options.pauseOnConnect == true
  s.noDelay = options.noDelay == true
  s.keepAlive = options.keepAlive == true
  s.keepAliveInitialDelay = options.keepAliveInitialDelay or 0
  if listener then s:on('connection', listener) end
  return s
end

-- Node's listen forms: (port[, host][, backlog][, cb]), (options[, cb]),
-- (cb), (). Returns port, host, backlog, cb, options.
local function listen_args(...)
  local n = select('#', ...)
  local first = ...
  local o = {}
  local cb
  if type(first) == 'table' then
    for k, v in pairs(first) do o[k] = v end
  elseif type(first) == 'function' then
    cb = first
  else
    o.port = first
  end
  if type(first) ~= 'table' then
    for i = 2, n do
      local a = select(i, ...)
      local t = type(a)
      if t == 'function' then cb = a
      elseif t == 'string' and o.host == nil and o.backlog == nil then
        o.host = a
      elseif t == 'number' and o.backlog == nil then o.backlog = a
      end
    end
  else
    for i = 2, n do
      local a = select(i, ...)
      if type(a) == 'function' then cb = a end
    end
  end
  if o.path or (type(o.port) == 'string' and not tonumber(o.port)) then
    error('net: unix socket paths are not supported', 3)
  end
  if o.port == nil then o.port = 0 end
  o.port = check_port(o.port, 'options.port')
  if o.host == '' then o.host = nil end
  o.backlog = tonumber(o.backlog) or 511
  return o, cb
end

-- listen(port[, host][, backlog][, cb]) and Node's other forms; port 0
-- picks a free port. 'listening' or 'error' follows.
function Server:listen(...)
  local o, cb = listen_args(...)
  if self.listening or self._pending then
    error(new_error('ERR_SERVER_ALREADY_LISTEN',
      'Listen method has been called more than once without closing.'), 2)
  end
  if cb then self:once('listening', cb) end
  local token = {}
  self._pending = token
  local function go(host)
    net._listen({address = host, port = o.port,
        addressType = host and host:find(':', 1, true) and 6 or 4,
        backlog = o.backlog, exclusive = o.exclusive},
      function(tcp) self:_onconnection(tcp) end,
      function(err, listener)
        if self._pending ~= token then
          -- close() came first.
          if listener then listener.close() end
          return
        end
        self._pending = nil
        if err then return next_tick(self.emit, self, 'error', err) end
        self._listener = listener
        self.listening = true
        if self._unref then listener.unref() end
        next_tick(function()
          if self._listener == listener then self:emit('listening') end
        end)
      end, self, function(err) self:emit('error', err) end)
  end
  -- A name listens on its first address, in getaddrinfo's order, as Node
  -- (17+) does: 'localhost' is ::1 where /etc/hosts lists it (glibc sorts
  -- it first), else 127.0.0.1. A client of 'localhost' tries both (see
  -- connect), so it reaches the server either way.
  local host = o.host
  if host == nil or net.isIP(host) ~= 0 then
    go(host)
  else
    net._lookup(host, nil, function(err, addrs)
      if self._pending ~= token then return end
      if err then
        self._pending = nil
        return self:emit('error', err)
      end
      go(addrs[1])
    end)
  end
  return self
end

function Server:_onconnection(tcp)
  if self.maxConnections and self._connections >= self.maxConnections then
    tcp:close()
    return
  end
  local s = Socket:new({handle = tcp, server = self,
    allowHalfOpen = self.allowHalfOpen, pauseOnConnect = self.pauseOnConnect})
  self._connections = self._connections + 1
  if self.noDelay then s:setNoDelay(true) end
  if self.keepAlive then s:setKeepAlive(true, self.keepAliveInitialDelay) end
  self:emit('connection', s)
end

function Server:_connectionClosed()
  self._connections = self._connections - 1
  self:_emitCloseIfDrained()
end

function Server:_emitCloseIfDrained()
  if self._listener or self._pending or self._connections > 0
      or not self._closing then
    return
  end
  self._closing = false
  next_tick(self.emit, self, 'close')
end

-- close([cb]): stops accepting; 'close' once every connection has ended.
-- cb(err) on 'close'; err when the server was not listening.
function Server:close(cb)
  if cb then
    if self._listener or self._pending then
      self:once('close', cb)
    else
      self:once('close', function()
        cb(new_error('ERR_SERVER_NOT_RUNNING', 'Server is not running.'))
      end)
    end
  end
  self._pending = nil
  self.listening = false
  local l = self._listener
  self._listener = nil
  if l then l.close() end
  self._closing = true
  self:_emitCloseIfDrained()
  return self
end

-- address() -> {address=, port=, family=, addressType=}, or nil when not
-- listening.
function Server:address()
  local l = self._listener
  return l and l.address() or nil
end

-- getConnections(cb): cb(nil, count).
function Server:getConnections(cb)
  next_tick(cb, nil, self._connections)
  return self
end

function Server:ref()
  self._unref = nil
  if self._listener then self._listener.ref() end
  return self
end

function Server:unref()
  self._unref = true
  if self._listener then self._listener.unref() end
  return self
end

------------------------------------------------------------------------------
-- The module's functions.

-- createServer([options][, connectionListener]) -> Server.
function net.createServer(options, listener)
  return Server:new(options, listener)
end

-- connect(port[, host][, cb]) / connect(options[, cb]) -> Socket.
function net.connect(...)
  local opts = ...
  local s = Socket:new(type(opts) == 'table' and opts or nil)
  return s:connect(...)
end
net.createConnection = net.connect

return net
