-- net.socket: Node's net.Socket on a luv uv_tcp handle, or a uv_pipe
-- handle for a Unix socket (Node's pipe: no addresses, and the TCP
-- options, setNoDelay and setKeepAlive, do nothing).
--
-- The socket gives the handle Node's stream shape: reads go through the
-- shared Readable side (lua/internal/stream.lua), writes report
-- back-pressure against a high-water mark and emit 'drain', finish()
-- half-closes once queued writes are out, and a socket whose both sides are
-- done destroys itself. setTimeout is lua/internal/timeout.lua's, over a
-- luv timer.

local uv = require('uv')
local EventEmitter = require('events')
local process = require('process')
local errors = require('internal.errors')
local Readable = require('internal.stream')
local listen = require('internal.listen')
local dns = require('internal.dns')

local type, tonumber, select, pairs, error = type, tonumber, select, pairs,
  error

local new_error, sys_exception = errors.new, errors.sys
local want_read = Readable.want_read
local name_of = listen.address_of
local is_path = listen.is_path

local HWM = 16384
-- Output queued on a socket past which it stops reading (Socket:write).
local OUTPUT_LIMIT = 1024 * 1024

local function next_tick(fn, ...)
  return process.nextTick(fn, ...)
end

------------------------------------------------------------------------------
-- Socket.

local Socket = EventEmitter:extend()
Socket._endUnread = true
Readable.install(Socket)

-- Socket:new([options]) -> a socket, not connected; options: allowHalfOpen,
-- highWaterMark (write side, default 16 KiB), noDelay, keepAlive,
-- keepAliveInitialDelay, timeout, and internally handle (an accepted luv
-- tcp or pipe), pauseOnConnect, server.
function Socket:new(options)
  options = options or {}
  local s = EventEmitter.new(self, {})
  s.connecting = false
  s.pending = true
  s.destroyed = false
  s.readable, s.writable = false, false
  s.allowHalfOpen = options.allowHalfOpen == true
  s.bytesRead, s.bytesWritten = 0, 0
  s.writableLength = 0
  s.writableCorked = 0
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
      self:_readStop()
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
  if h.nodelay then
    if self._noDelay ~= nil then h:nodelay(self._noDelay) end
    if self._keepAlive then
      h:keepalive(self._keepAlive[1], self._keepAlive[2])
    end
  end
  local q = self._wq
  self._wq = {}
  for i = 1, #q do self:_dowrite(q[i][1], q[i][2]) end
  if want_read(self) then self:_readStart() end
end

------------------------------------------------------------------------------
-- Connecting.

-- Node's connect forms: (port[, host][, cb]), (path[, cb]) (a string
-- that is not a number: a Unix socket), (options[, cb]), where
-- options.path wins over options.port, as in Node.
local function connect_args(...)
  local first = ...
  local n = select('#', ...)
  local opts, cb = {}, nil
  if type(first) == 'table' then
    for k, v in pairs(first) do opts[k] = v end
    cb = select(2, ...)
  elseif listen.is_path(first) then
    opts.path = first
    cb = select(2, ...)
  else
    opts.port = first
    for i = 2, n do
      local a = select(i, ...)
      if type(a) == 'function' then cb = a
      elseif type(a) == 'string' then opts.host = a end
    end
  end
  if opts.path ~= nil and not is_path(opts.path) then
    error(errors.type_error('ERR_INVALID_ARG_TYPE', 'The "options.path" '
      .. 'property must be a string that is not a number. Received '
      .. tostring(opts.path)), 3)
  end
  if type(cb) ~= 'function' then cb = nil end
  return opts, cb
end

-- connect(port[, host][, cb]) / connect(path[, cb]) / connect(options[,
-- cb]): options path (a Unix socket; then no other address option
-- counts), port, host (default 'localhost'), localAddress, localPort,
-- family, timeout, noDelay, keepAlive, keepAliveInitialDelay,
-- autoSelectFamily, autoSelectFamilyAttemptTimeout.
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
  local port = opts.path == nil and listen.check_port(opts.port, 'Port', 2)
  if self.connecting or self._isConnected then
    error(new_error('ERR_SOCKET_CONNECTION_IN_PROGRESS',
      'Socket is already connected or connecting'), 2)
  end
  if self.destroyed then
    error(errors.destroyed('connect'), 2)
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
  if opts.path then
    self._handle = uv.new_pipe(false)
    self:_connectPath(opts.path)
    return self
  end
  self._handle = uv.new_tcp()
  local host = opts.host
  if host == nil or host == '' then host = 'localhost' end
  if dns.isIP(host) ~= 0 then
    self:_connectTo({host}, port, opts)
  else
    local family = opts.family == 6 and 'inet6'
      or opts.family == 4 and 'inet' or nil
    dns.lookup(host, family, function(err, addrs)
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

-- The socket's handle connected: 'connect', then 'ready'.
local function established(self)
  self:_connected()
  self:emit('connect')
  if self.destroyed then return end
  self:emit('ready')
  if self.writableEnded then self:_maybeShutdown() end
end

-- Connects self._handle, a luv pipe, to the Unix socket at path.
function Socket:_connectPath(path)
  local h = self._handle
  h:connect(path, function(err)
    if self.destroyed or self._handle ~= h then return end
    if err then
      return self:destroy(sys_exception(err, 'connect', path))
    end
    established(self)
  end)
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
    established(self)
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
    error(errors.bad_chunk(data), 2)
  end
  if self.writableEnded then
    local e
    if self._peerEnded and not self.allowHalfOpen then
      e = new_error('EPIPE', 'This socket has been ended by the other party')
    else
      e = errors.write_after_end()
    end
    next_tick(function()
      if cb then cb(e) end
      self:destroy(e)
    end)
    return false
  end
  if self.destroyed then
    local e = errors.destroyed('write')
    if cb then next_tick(cb, e) end
    return false
  end
  local n = #data
  self.writableLength = self.writableLength + n
  self.bytesWritten = self.bytesWritten + n
  local corked = self._corked
  if corked then
    corked[#corked + 1] = {data, cb}
  elseif self._isConnected then
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

-- cork(): writes wait in memory until as many uncork() calls (or end()),
-- then leave as one write (Node's writable.cork()).
function Socket:cork()
  self._corks = (self._corks or 0) + 1
  self.writableCorked = self._corks
  if not self._corked then self._corked = {} end
end

-- Writes what waited while corked, as one piece; each write's callback
-- gets that piece's outcome.
local function uncorked(self)
  local list = self._corked
  self._corked, self._corks = nil, nil
  self.writableCorked = 0
  if not list or #list == 0 or self.destroyed then return end
  local data, cbs = {}, {}
  for i = 1, #list do
    data[i] = list[i][1]
    if list[i][2] then cbs[#cbs + 1] = list[i][2] end
  end
  local cb = #cbs > 0 and function(err)
    for i = 1, #cbs do cbs[i](err) end
  end or nil
  data = table.concat(data)
  if self._isConnected then
    self:_dowrite(data, cb)
  else
    self._wq[#self._wq + 1] = {data, cb}
  end
end

-- uncork(): undoes a cork(); the last one writes what waited.
function Socket:uncork()
  local n = self._corks
  if not n then return end
  if n > 1 then
    self._corks = n - 1
    self.writableCorked = n - 1
    return
  end
  uncorked(self)
end

-- finish([data][, encoding][, cb]): Node's end(). Writes data, then ends
-- our side once everything is written; cb on 'finish'.
function Socket:finish(data, encoding, cb)
  if type(data) == 'function' then data, cb = nil, data
  elseif type(encoding) == 'function' then cb = encoding end
  if data ~= nil and not self.writableEnded then self:write(data) end
  -- end() uncorks, as Node's.
  if self._corked then uncorked(self) end
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
-- socket stays open; 0 disables); cb is a one-time 'timeout' listener.
Socket.setTimeout = require('internal.timeout').setTimeout

-- A luv timer, restarted by every read and write (_touch).
function Socket:_idle(ms)
  if ms == 0 then return self:_clearTimer() end
  if self.destroyed then return end
  if not self._timer then
    self._timer = uv.new_timer()
    self._timer:unref()
  end
  self:_touch()
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
  local h = self._handle
  if h and h.nodelay and not self.destroyed then h:nodelay(self._noDelay) end
  return self
end

-- setKeepAlive([enable][, initialDelay ms])
function Socket:setKeepAlive(enable, initialDelay)
  if type(enable) == 'number' then enable, initialDelay = false, enable end
  self._keepAlive = {enable and true or false,
    math.floor((tonumber(initialDelay) or 0) / 1000)}
  local h = self._handle
  if h and h.keepalive and not self.destroyed then
    -- A zero delay keeps the system's (libuv reports EINVAL for it, after
    -- turning SO_KEEPALIVE on), as Node.
    h:keepalive(self._keepAlive[1], self._keepAlive[2])
  end
  return self
end

-- address() -> {address=, port=, family=} of our end, or {} (closed, or
-- a Unix socket's, as Node's).
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

return Socket
