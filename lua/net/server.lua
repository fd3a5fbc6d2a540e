-- net.server: Node's net.Server. It listens through the one listening
-- path (lua/internal/listen.lua), on a TCP port or a Unix socket's path,
-- accepts with luv and makes a net.Socket of each connection, and counts
-- them so that 'close' waits for the last.

local uv = require('uv')
local EventEmitter = require('events')
local process = require('process')
local errors = require('internal.errors')
local listen = require('internal.listen')
local Socket = require('net.socket')
local co_run = require('co').run

local type = type

local function next_tick(fn, ...)
  return process.nextTick(fn, ...)
end

local Server = EventEmitter:extend()
setmetatable(Server, {__index = EventEmitter,
  __call = function(class, ...) return class:new(...) end})

-- Server:new([options][, connectionListener]), or Server(...) as Node's
-- works without new; options: allowHalfOpen, pauseOnConnect, noDelay,
-- keepAlive, keepAliveInitialDelay.
function Server:new(options, listener)
  if type(self) ~= 'table' or rawget(self, '__index') ~= self then
    -- Server.new(...): called with a dot.
    self, options, listener = Server, self, options
  end
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

-- Starts accepting on a luv listening handle (a tcp, or a pipe on a
-- path): each connection, a handle of the same kind, goes to
-- onconnection(c). accept failing is normal where several processes share
-- the socket (another one took it). Returns true or nil, err.
local function accept_on(h, backlog, onconnection, onerror)
  local new_handle = uv.new_tcp
  if h:get_type() == 'pipe' then
    new_handle = function() return uv.new_pipe(false) end
  end
  return h:listen(backlog, function(err)
    if err then
      if onerror then onerror(errors.sys(err, 'accept')) end
      return
    end
    local c = new_handle()
    if not h:accept(c) then
      c:close()
      return
    end
    onconnection(c)
  end)
end

-- What the listening path hands this server (see internal/listen.lua).
local function sink(self)
  local function onconnection(c) self:_onconnection(c) end
  return {
    accept = function(h, backlog)
      local ok, msg = accept_on(h, backlog, onconnection,
        function(err) self:emit('error', err) end)
      if not ok then
        if not h:is_closing() then h:close() end
        return nil, msg
      end
      return {
        address = function() return listen.address_of(h) end,
        close = function() if not h:is_closing() then h:close() end end,
        ref = function() if not h:is_closing() then h:ref() end end,
        unref = function() if not h:is_closing() then h:unref() end end,
      }
    end,
    connection = onconnection,
    listening = function(listener)
      if self._unref and listener.unref then listener.unref() end
    end,
  }
end

-- listen(port[, host][, backlog][, cb]), listen(path[, backlog][, cb])
-- (a Unix socket) and Node's other forms; port 0 picks a free port.
-- 'listening' or 'error' follows.
function Server:listen(...)
  return listen.start(self, sink(self), ...)
end

-- The 'connection' listeners run in a coroutine of co's pool, so they may
-- wait (co.sleep, a cosocket); what they raise goes to the uncaught-error
-- policy, as from any callback.
local function emit_connection(self, s)
  self:emit('connection', s)
end

function Server:_onconnection(c)
  if self.maxConnections and self._connections >= self.maxConnections then
    c:close()
    return
  end
  local s = Socket:new({handle = c, server = self,
    allowHalfOpen = self.allowHalfOpen, pauseOnConnect = self.pauseOnConnect})
  self._connections = self._connections + 1
  if self.noDelay then s:setNoDelay(true) end
  if self.keepAlive then s:setKeepAlive(true, self.keepAliveInitialDelay) end
  co_run(emit_connection, self, s)
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
  listen.close(self, cb)
  self._closing = true
  self:_emitCloseIfDrained()
  return self
end

-- address() -> {address=, port=, family=, addressType=}, the path when
-- listening on one, or nil when not listening.
Server.address = listen.address

-- getConnections(cb): cb(nil, count).
function Server:getConnections(cb)
  next_tick(cb, nil, self._connections)
  return self
end

function Server:ref()
  self._unref = nil
  local l = self._listener
  if l and l.ref then l.ref() end
  return self
end

function Server:unref()
  self._unref = true
  local l = self._listener
  if l and l.unref then l.unref() end
  return self
end

return Server
