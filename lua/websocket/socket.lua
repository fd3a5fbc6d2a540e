-- websocket.socket: the WebSocket class both ends share, with the events
-- and methods of Node's `ws` package: 'open', 'message' (data, isBinary),
-- 'close' (code, reason), 'error', 'ping', 'pong', 'drain'; send, ping,
-- pong, close, terminate, bufferedAmount; and receive(), sync-style in a
-- coroutine, as a cosocket. It runs over a transport:
--   server: the http server's upgraded connection (runtime/http/upgrade.c
--           parses the frames in C and builds the server's frames in place)
--   client: a net.Socket, frames parsed and built by runtime/ws (_ws)
-- The closing handshake is RFC 6455's: a close frame each way, then the
-- server ends the TCP connection (a client waits for it, up to a timeout).

local C = require('_http')
local W = require('_ws')
local EventEmitter = require('events')
local process = require('process')
local timers = require('timers')
local co = require('co')
local errors = require('internal.errors')

local type, tostring, rawget, floor, char, byte = type, tostring, rawget,
  math.floor, string.char, string.byte
local TEXT, BINARY, CLOSE, PING, PONG, CONT = W.TEXT, W.BINARY, W.CLOSE,
  W.PING, W.PONG, W.CONT

local CONNECTING, OPEN, CLOSING, CLOSED = 0, 1, 2, 3
-- How long a close waits for the peer's close and the end of TCP.
local CLOSE_TIMEOUT = 30000
-- Messages kept for receive() (no 'message' listener) before the
-- connection stops reading until they are taken.
local QUEUE_LIMIT = 64

local WebSocket = EventEmitter:extend()
WebSocket.CONNECTING, WebSocket.OPEN, WebSocket.CLOSING, WebSocket.CLOSED =
  CONNECTING, OPEN, CLOSING, CLOSED

local getters = {}
function getters.bufferedAmount(self)
  local c = rawget(self, '_c')
  if c then return C.writable_length(c) end
  local s = rawget(self, '_sock')
  return s and s.writableLength or 0
end

WebSocket.__index = function(self, k)
  local v = WebSocket[k]
  if v ~= nil then return v end
  local g = getters[k]
  if g then return g(self) end
end

-- new(opts) -> a WebSocket in CONNECTING; opts: maxBufferedAmount (past
-- it the connection is terminated: a peer that does not read cannot grow
-- the output without bound; default 16 MiB), protocol, url.
function WebSocket:new(opts)
  local ws = EventEmitter.new(self, {})
  ws.readyState = CONNECTING
  ws.protocol = opts.protocol or ''
  ws.url = opts.url
  ws.extensions = ''
  ws.binaryType = 'nodebuffer'
  ws._maxBuffered = opts.maxBufferedAmount or 16 * 1024 * 1024
  ws._queue = {}
  ws._waiters = {}
  return ws
end

------------------------------------------------------------------------------
-- Transports.

-- The server side: the upgraded connection's box and socket.
-- z: what permessage-deflate agreed (lua/websocket/deflate.lua), or nil.
function WebSocket:_attachServer(socket, head, maxPayload, z)
  self._c = rawget(socket, '_c')
  self._sock = socket
  self._server = true
  socket._ws = self
  socket:on('drain', function() self:emit('drain') end)
  socket:on('close', function() self:_closed() end)
  -- The http server's idle timeout (server.setTimeout) is HTTP's: a
  -- WebSocket has its own keep-alive (pings), as in ws.
  socket:setTimeout(0)
  self.readyState = OPEN
  if z then
    self._zmin = z.threshold
    C.ws_start(self._c, maxPayload, head, z.bits, z.ourReset, z.peerReset)
  else
    C.ws_start(self._c, maxPayload, head)
  end
end

-- The client side: a connected net.Socket and the bytes after the
-- handshake's response.
function WebSocket:_attachClient(socket, rest, maxPayload, z)
  self._sock = socket
  if z then
    self._zmin = z.threshold
    self._parser = W.parser(true, maxPayload, z.bits, z.ourReset,
      z.peerReset)
  else
    self._parser = W.parser(true, maxPayload)
  end
  socket:on('drain', function() self:emit('drain') end)
  socket:on('close', function() self:_closed() end)
  socket:on('error', function() end)
  socket:on('data', function(d) self:_feed(d) end)
  self.readyState = OPEN
  if rest and #rest > 0 then self:_feed(rest) end
end

function WebSocket:_feed(d)
  local list, reason, code = self._parser:feed(d)
  if not list then return self:_frame(0, reason, code) end
  for i = 1, #list, 2 do
    if self.readyState == CLOSED then return end
    self:_frame(list[i], list[i + 1])
  end
end

-- Writes one frame; true below the high-water mark, false past it,
-- nil when the connection is gone.
-- compress: the message may be deflated (permessage-deflate, a whole
-- message past the threshold).
function WebSocket:_send(op, data, fin, compress)
  local ok
  local c = self._c
  compress = compress and self._zmin ~= nil and #data >= self._zmin
  if c then
    ok = C.ws_send(c, op, data, fin, compress)
  else
    local s = self._sock
    if not s or s.destroyed then return nil end
    ok = s:write(self._parser:frame(op, data, fin, compress))
  end
  if ok == false and self.bufferedAmount > self._maxBuffered then
    return self:_overflow()
  end
  return ok
end

-- The peer does not read: a close frame would not reach it either, so the
-- connection is cut ('close' 1006) after an 'error'.
function WebSocket:_overflow()
  local err = errors.new('ERR_WS_BUFFER_FULL',
    'output past maxBufferedAmount: the peer does not read')
  self:terminate()
  if self:listenerCount('error') > 0 then self:emit('error', err) end
  return nil
end

-- Writes a frame built elsewhere (a broadcast's, built once per worker).
function WebSocket:_sendRaw(frame)
  if self.readyState ~= OPEN then return nil end
  local c = self._c
  if c then
    local ok = C.raw_write(c, frame)
    if ok == false and self.bufferedAmount > self._maxBuffered then
      return self:_overflow()
    end
    return ok
  end
  -- A client's frames are masked each with its own key: none is shared.
  return nil
end

------------------------------------------------------------------------------
-- Receiving (what the frame parser completed).

local function wake(self, ...)
  local w = self._waiters
  if #w == 0 then return false end
  self._waiters = {}
  for i = 1, #w do w[i](...) end
  return true
end

local function close_payload(code, reason)
  if not code then return '' end
  return char(floor(code / 256), code % 256) .. (reason or '')
end

function WebSocket:_frame(op, data, code)
  if op == TEXT or op == BINARY then
    local binary = op == BINARY
    if wake(self, data, binary and 'binary' or 'text') then return end
    if self:listenerCount('message') > 0 then
      return self:emit('message', data, binary)
    end
    -- Kept for receive(); a reader that lags stops the reading.
    local q = self._queue
    q[#q + 1] = data
    q[#q + 1] = binary
    if #q >= 2 * QUEUE_LIMIT then self:_reading(false) end
  elseif op == PING then
    self:_send(PONG, data)
    self:emit('ping', data)
  elseif op == PONG then
    self._alive = true
    self:emit('pong', data)
  elseif op == CLOSE then
    self._closeReceived = true
    if #data >= 2 then
      self._closeCode = byte(data, 1) * 256 + byte(data, 2)
      self._closeReason = data:sub(3)
    else
      self._closeCode = 1005
      self._closeReason = ''
    end
    if not self._closeSent then
      -- Echo the code, as `ws` does; none when none came.
      if #data >= 2 then self:_sendClose(self._closeCode, self._closeReason)
      else self:_sendClose() end
    end
    if self._server then self._sock:finish() end
  elseif op == 0 then
    -- A protocol error (code: 1002, 1007, 1009): close with its code.
    self:_fail(code, data, code == 1009 and 'WS_ERR_UNSUPPORTED_MESSAGE_LENGTH'
      or code == 1007 and 'WS_ERR_INVALID_UTF8'
      or 'WS_ERR_PROTOCOL')
  end
end

function WebSocket:_reading(on)
  local s = self._sock
  if not s then return end
  if on then s:resume() else s:pause() end
end

-- Closes with code after an error the peer caused; 'error' goes to
-- listeners (none: the connection just closes; the process stays up).
function WebSocket:_fail(code, message, ecode)
  if self.readyState == OPEN then self:close(code) end
  if self:listenerCount('error') > 0 then
    local err = errors.new(ecode, message)
    err.closeCode = code
    self:emit('error', err)
  end
end

function WebSocket:_closed()
  if self.readyState == CLOSED then return end
  self.readyState = CLOSED
  if self._closeTimer then
    timers.clearTimeout(self._closeTimer)
    self._closeTimer = nil
  end
  if self._onclose then self:_onclose() end
  wake(self, nil, 'closed')
  local code = self._closeReceived and self._closeCode or 1006
  self:emit('close', code, self._closeReceived and self._closeReason or '')
end

------------------------------------------------------------------------------
-- Sending.

local function not_open(self, cb)
  local err = errors.new('WS_ERR_NOT_OPEN', 'WebSocket is not open: '
    .. 'readyState ' .. self.readyState)
  if cb then process.nextTick(cb, err) return end
  if self.readyState == CONNECTING then error(err, 3) end
end

-- send(data[, options][, cb]): options.binary (default: text),
-- options.fin (false: a fragment; the message goes on with the next
-- send). cb(err) once written to the socket's buffer.
function WebSocket:send(data, options, cb)
  if type(options) == 'function' then options, cb = nil, options end
  if self.readyState ~= OPEN then return not_open(self, cb) end
  if type(data) ~= 'string' then data = tostring(data) end
  local op = (options and options.binary) and BINARY or TEXT
  local fin = not (options and options.fin == false)
  local whole = fin and not self._fragmented
  if self._fragmented then op = CONT end
  self._fragmented = not fin
  local ok = self:_send(op, data, fin,
    whole and not (options and options.compress == false))
  if cb then
    process.nextTick(cb, ok == nil and errors.new('WS_ERR_NOT_OPEN',
      'WebSocket is not open') or nil)
  end
end

local function control(self, op, data, cb)
  if type(data) == 'function' then data, cb = nil, data end
  if self.readyState ~= OPEN then return not_open(self, cb) end
  data = data and tostring(data) or ''
  if #data > 125 then
    error(errors.range_error('WS_ERR_INVALID_CONTROL_PAYLOAD',
      'The data size must not be greater than 125 bytes'), 3)
  end
  self:_send(op, data)
  if cb then process.nextTick(cb) end
end

-- ping([data][, mask][, cb]), pong(...): mask is the client's anyway.
function WebSocket:ping(data, mask, cb)
  if type(mask) == 'function' then cb = mask end
  return control(self, PING, data, cb)
end

function WebSocket:pong(data, mask, cb)
  if type(mask) == 'function' then cb = mask end
  return control(self, PONG, data, cb)
end

function WebSocket:_sendClose(code, reason)
  self._closeSent = true
  self:_send(CLOSE, close_payload(code, reason))
end

local function valid_code(code)
  return code == 1000 or (code >= 3000 and code <= 4999)
    or (code >= 1001 and code <= 1014 and code ~= 1004 and code ~= 1005
      and code ~= 1006)
end

-- close([code][, reason]): starts the closing handshake (code 1000 or
-- 3000-4999 from users; reason at most 123 bytes of UTF-8).
function WebSocket:close(code, reason)
  if self.readyState == CLOSED then return end
  if self.readyState == CONNECTING then
    self._abort = true
    return self:terminate()
  end
  if code ~= nil and (type(code) ~= 'number' or not valid_code(code)) then
    error(errors.type_error('WS_ERR_INVALID_CLOSE_CODE',
      'First argument must be a valid error code number'), 2)
  end
  reason = reason and tostring(reason) or ''
  if #reason > 123 then
    error(errors.range_error('WS_ERR_INVALID_CLOSE_REASON',
      'The message must not be greater than 123 bytes'), 2)
  end
  if self.readyState == CLOSING then
    if self._closeSent and self._closeReceived and self._server then
      self._sock:finish()
    end
    return
  end
  self.readyState = CLOSING
  self:_sendClose(code, reason)
  if self._closeReceived and self._server then
    self._sock:finish()
  end
  self._closeTimer = timers.setTimeout(function()
    self._closeTimer = nil
    self:terminate()
  end, CLOSE_TIMEOUT)
end

-- terminate(): destroys the connection now.
function WebSocket:terminate()
  if self.readyState == CLOSED then return end
  if self.readyState ~= CONNECTING then self.readyState = CLOSING end
  local s = self._sock
  if s then s:destroy() else self:_closed() end
end

-- receive() -> data, 'text'|'binary', or nil, 'closed' (inside a
-- coroutine: a handler, co.spawn). Messages wait for it when there is no
-- 'message' listener.
function WebSocket:receive()
  local q = self._queue
  if #q > 0 then
    local data, binary = table.remove(q, 1), table.remove(q, 1)
    if #q < 2 * QUEUE_LIMIT then self:_reading(true) end
    return data, binary and 'binary' or 'text'
  end
  if self.readyState >= CLOSING and self._closeReceived
    or self.readyState == CLOSED then
    return nil, 'closed'
  end
  local w = self._waiters
  return co.await(function(cb) w[#w + 1] = cb end)
end

------------------------------------------------------------------------------
-- Channels (websocket.broadcast; lua/websocket/broadcast.lua).

function WebSocket:subscribe(channel)
  require('websocket.broadcast').subscribe(self, channel)
  return self
end

function WebSocket:unsubscribe(channel)
  require('websocket.broadcast').unsubscribe(self, channel)
  return self
end

return WebSocket
