-- internal.stream: the readable side of Node's streams, shared by
-- net.Socket, http's IncomingMessage (the server's request) and the http
-- client's response.
--
-- A source pushes what it reads with Readable.push(self, chunk) (nil at the
-- end). Chunks are emitted as 'data' while the stream flows; it starts
-- flowing when a 'data' listener is added or resume() is called, and stops
-- with pause(). Until then they wait in a queue, and once that holds the
-- high-water mark the stream's self:_readStop() is called (and
-- self:_readStart() when it wants more). 'end' comes after the last chunk
-- was emitted, then self:_onEnd() if the class has one.
--
-- The class says how its streams behave, with fields an instance may
-- override:
--   _rhwm       bytes queued past which the source is stopped (16 KiB)
--   _endFlows   an 'end' listener starts the flow too (IncomingMessage)
--   _endUnread  'end' comes even when nobody reads (net.Socket, as Node's
--               read(0) at the end of a socket)
--   _endSync    with nothing queued, a flowing stream emits 'end' as the
--               end is pushed, not on the next tick (the server's request:
--               its handler answers before the parser goes on)
--   _emitRead   how 'data' and 'end' are emitted (EventEmitter.emit)
-- Every state field is nil until used, so a stream costs nothing until it
-- has a body: _flowing (nil: not yet, true, false: paused), _rq/_rh/_rt
-- (the queue), _rlen (bytes queued), _eof, _endEmitted, _flowScheduled,
-- _dumped.

local EventEmitter = require('events')
local process = require('process')

local ipairs, type, error, rawget, next = ipairs, type, error, rawget, next

local Readable = {}

local HWM = 16384

local function next_tick(fn, ...)
  return process.nextTick(fn, ...)
end

local function queued(self)
  local h = self._rh
  return h ~= nil and h <= self._rt
end

local function want_read(self)
  return not self._eof and self._flowing ~= false
    and (self._rlen or 0) < self._rhwm
end
Readable.want_read = want_read

local function emit_end(self)
  if self._endEmitted or self.destroyed then return end
  self._endEmitted = true
  self.readableEnded = true
  self.readable = false
  self:_emitRead('end')
  if self._onEnd then self:_onEnd() end
end

local function flow(self)
  self._flowScheduled = false
  while self._flowing and queued(self) and not self.destroyed do
    local q, h = self._rq, self._rh
    local chunk = q[h]
    q[h] = nil
    self._rh = h + 1
    self._rlen = self._rlen - #chunk
    self:_emitRead('data', chunk)
  end
  if not queued(self) then
    self._rq, self._rh, self._rt = nil, nil, nil
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
  if self.destroyed or self._eof or self._dumped then return end
  if chunk == nil then
    self._eof = true
    if queued(self) then return end
    if self._flowing and self._endSync and not self._flowScheduled then
      return emit_end(self)
    end
    -- With nothing queued 'end' follows on the next tick: for those who
    -- read (or, with _endUnread, even if nobody does); else once the queue
    -- was consumed.
    if self._flowing or self._endUnread then next_tick(emit_end, self) end
    return
  end
  if self._flowing and not queued(self) and not self._flowScheduled then
    return self:_emitRead('data', chunk)
  end
  local t = self._rt
  if t == nil then
    self._rq, self._rh, t = {}, 1, 0
  end
  t = t + 1
  self._rt = t
  self._rq[t] = chunk
  local n = (self._rlen or 0) + #chunk
  self._rlen = n
  if n >= self._rhwm then self:_readStop() end
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

-- dump(): nobody will read this stream: what is queued and what comes are
-- dropped (no 'end' follows), and the source may go on.
function Readable.dump(self)
  self._dumped = true
  self._rq, self._rh, self._rt, self._rlen = nil, nil, nil, 0
  self:_readStart()
end

------------------------------------------------------------------------------
-- pipe: Node's readable.pipe(destination[, {end = bool}]) and unpipe.
--
-- The destination is any writable with write(chunk) -> false when full,
-- 'drain', finish() (Node's end()), 'finish', 'close', 'error': a
-- ServerResponse, a ClientRequest, a net.Socket. Each chunk read is
-- written to every destination; one that answers false pauses the source
-- (which stops reading its socket) until each such destination drained.
-- The source's end ends the destination (unless end = false); the
-- destination's 'finish', 'close' or 'error' unpipes it. 'pipe' and
-- 'unpipe' (source) are emitted on the destination, as in Node. State:
-- _pipes (the destinations) and _awaitDrain (the full ones), nil until a
-- pipe.

local function pipes_of(self)
  local list = rawget(self, '_pipes')
  if not list then
    list = {}
    self._pipes = list
  end
  return list
end

local function index_of(list, x)
  for i = 1, #list do
    if list[i] == x then return i end
  end
end

-- unpipe([destination]) -> self: stops writing to destination (or to
-- every one); the source pauses once none is left.
function Readable.unpipe(self, dest)
  local list = rawget(self, '_pipes')
  if not list or #list == 0 then return self end
  if dest == nil then
    self._pipes = {}
    self:pause()
    for i = 1, #list do
      list[i]:emit('unpipe', self, {hasUnpiped = false})
    end
    return self
  end
  local i = index_of(list, dest)
  if not i then return self end
  table.remove(list, i)
  if #list == 0 then self:pause() end
  dest:emit('unpipe', self, {hasUnpiped = false})
  return self
end

local function unpipe_nt(src, dest) Readable.unpipe(src, dest) end

function Readable.pipe(src, dest, opts)
  if type(dest) ~= 'table' or type(dest.write) ~= 'function' then
    error('The "destination" argument must be a writable stream, got '
      .. type(dest), 2)
  end
  local list = pipes_of(src)
  list[#list + 1] = dest
  local doEnd = not (type(opts) == 'table' and opts['end'] == false)
    and dest ~= process.stdout and dest ~= process.stderr
  local cleanedUp, ondrain = false, nil
  local ondata, onend, onunpipe, onerror, onclose, onfinish

  local function unpipe() return Readable.unpipe(src, dest) end
  onend = doEnd and function() dest:finish() end or unpipe

  local function cleanup()
    dest:removeListener('close', onclose)
    dest:removeListener('finish', onfinish)
    if ondrain then dest:removeListener('drain', ondrain) end
    dest:removeListener('error', onerror)
    dest:removeListener('unpipe', onunpipe)
    src:removeListener('end', onend)
    src:removeListener('data', ondata)
    cleanedUp = true
    -- A source waiting for this destination's drain waits no more.
    if ondrain then ondrain() end
  end

  function onunpipe(readable, info)
    if readable == src and info and info.hasUnpiped == false then
      info.hasUnpiped = true
      cleanup()
    end
  end

  local function pause()
    if not cleanedUp then
      local waiting = rawget(src, '_awaitDrain')
      if not waiting then
        waiting = {}
        src._awaitDrain = waiting
      end
      waiting[dest] = true
      src:pause()
    end
    if not ondrain then
      ondrain = function()
        local waiting = rawget(src, '_awaitDrain')
        if waiting then waiting[dest] = nil end
        if (not waiting or next(waiting) == nil)
            and src:listenerCount('data') > 0 then
          src:resume()
        end
      end
      dest:on('drain', ondrain)
    end
  end

  function ondata(chunk)
    if dest:write(chunk) == false then pause() end
  end

  function onerror(err)
    unpipe()
    dest:removeListener('error', onerror)
    -- With nobody else listening, the error is the destination's own
    -- (uncaught), as Node's errorOrDestroy makes it.
    if dest:listenerCount('error') == 0 then dest:emit('error', err) end
  end

  function onclose()
    dest:removeListener('finish', onfinish)
    unpipe()
  end

  function onfinish()
    dest:removeListener('close', onclose)
    unpipe()
  end

  if src._endEmitted then next_tick(doEnd and onend or unpipe_nt, src, dest)
  else src:once('end', onend) end
  dest:on('unpipe', onunpipe)
  src:on('data', ondata)
  dest:prependListener('error', onerror)
  dest:once('close', onclose)
  dest:once('finish', onfinish)
  dest:emit('pipe', src)
  if dest.writableNeedDrain == true then pause()
  elseif src._flowing ~= true then src:resume() end
  return dest
end

-- install(class): gives the class resume, pause, isPaused, setEncoding,
-- pipe, unpipe and listener-adding methods that start the flow as Node's do: adding a
-- 'data' listener does, unless pause() was called; with class._endFlows an
-- 'end' listener does too, unless the flow was started or stopped before.
function Readable.install(class)
  for _, m in ipairs({'on', 'addListener', 'once', 'prependListener',
      'prependOnceListener'}) do
    local add = EventEmitter[m]
    class[m] = function(self, name, fn)
      add(self, name, fn)
      local flowing = self._flowing
      if (name == 'data' and flowing ~= false)
          or (name == 'end' and flowing == nil and self._endFlows) then
        self:resume()
      end
      return self
    end
  end
  class.resume, class.pause, class.isPaused = Readable.resume,
    Readable.pause, Readable.isPaused
  class.pipe, class.unpipe = Readable.pipe, Readable.unpipe
  class.setEncoding = function(self) return self end
  class._rhwm = class._rhwm or HWM
  class._emitRead = class._emitRead or EventEmitter.emit
  class.readableEnded = false
end

return Readable
