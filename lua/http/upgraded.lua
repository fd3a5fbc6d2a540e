-- http.upgraded: the socket an 'upgrade' or 'connect' listener gets. The
-- connection stays the C server's (runtime/http/upgrade.c: llhttp no
-- longer parses it), so this is the request's socket (lua/http/socket.lua:
-- addresses, setTimeout, setNoDelay, ref) turned into a byte stream with
-- net.Socket's shape: write (false past the high-water mark, then
-- 'drain'), finish/end, destroy, pause/resume, and the events 'data',
-- 'end', 'drain', 'close', and 'error' (a reset; to listeners only). A
-- WebSocket (lua/websocket/) takes the connection over instead: its frames
-- are parsed in C and its messages reach the WebSocket, not 'data'. The
-- socket of a 'clientError' is one too, for the listener's own answer.

local C = require('_http')
local Socket = require('http.socket')
local process = require('process')
local errors = require('internal.errors')

local rawget, rawset, type, tostring = rawget, rawset, type, tostring

local Upgraded = Socket:extend()
local base_index = Socket.__index

Upgraded.__index = function(self, k)
  local v = rawget(Upgraded, k)
  if v ~= nil then return v end
  if k == 'writableLength' or k == 'bufferSize' then
    return C.writable_length(rawget(self, '_c'))
  end
  return base_index(self, k)
end

-- The request's socket becomes an upgraded one (the dispatch of an
-- 'upgrade' calls it).
function Upgraded.adopt(socket)
  setmetatable(socket, Upgraded)
  socket.destroyed = false
  socket.readable, socket.writable = true, true
  return socket
end

local function destroyed_error(self, cb)
  local err = errors.new('ERR_STREAM_DESTROYED',
    'Cannot call write after a stream was destroyed')
  if cb then process.nextTick(cb, err) end
  return false
end

-- write(data[, encoding][, cb]) -> false once past the high-water mark
-- ('drain' follows) or closed.
function Upgraded:write(data, encoding, cb)
  if type(encoding) == 'function' then cb = encoding end
  if type(data) ~= 'string' then data = tostring(data) end
  local ok = C.raw_write(rawget(self, '_c'), data)
  if ok == nil then return destroyed_error(self, cb) end
  if cb then process.nextTick(cb) end
  return ok
end

-- finish([data][, encoding][, cb]), end(): ends the connection once what
-- is written has left.
function Upgraded:finish(data, encoding, cb)
  if type(data) == 'function' then data, cb = nil, data end
  if type(encoding) == 'function' then cb = encoding end
  if data ~= nil then self:write(data) end
  self.writable = false
  C.end_connection(rawget(self, '_c'))
  if cb then self:once('close', function() cb() end) end
  return self
end
Upgraded['end'] = Upgraded.finish

function Upgraded:pause()
  C.raw_reading(rawget(self, '_c'), false)
  return self
end

function Upgraded:resume()
  C.raw_reading(rawget(self, '_c'), true)
  return self
end

-- What the server's raw callback reports (runtime/http/upgrade.c).
function Upgraded:_event(what, data)
  if what == 'data' then
    self:emit('data', data)
  elseif what == 'close' then
    self.destroyed = true
    self.readable, self.writable = false, false
    self:emit('close', rawget(self, '_hadError') or false)
  elseif what == 'error' then
    -- A reset by the peer: Node's error, to listeners only (the server's
    -- process stays up whatever a peer does).
    self._hadError = true
    if self:listenerCount('error') > 0 then
      self:emit('error', errors.new(data, 'read ' .. data))
    end
  else
    if what == 'end' then self.readable = false end
    self:emit(what)
  end
end

return Upgraded
