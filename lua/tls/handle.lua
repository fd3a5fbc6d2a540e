-- tls.handle: a TLS engine (runtime/tls/, `_tls`) over a connected luv
-- stream handle, with the shape of the handle itself: read_start,
-- read_stop, write, try_write, shutdown, close, and everything else passed
-- to the luv handle underneath. So net.Socket (TLSSocket) and the
-- sync-style sockets keep their code and get TLS by swapping the handle.
--
-- The handshake reads by itself whatever the user's reading is; writes
-- made before it ends wait, then go out sealed. on_secure(err) is called
-- once, when the handshake ends or fails. Plaintext reaches the read
-- callback only while the user reads (what arrives meanwhile waits in the
-- engine), so pause/resume and back-pressure work as over plain TCP.

local process = require('process')
local errors = require('internal.errors')

local type, rawget, rawset = type, rawget, rawset

local Handle = {}

Handle.__index = function(self, k)
  local m = Handle[k]
  if m ~= nil then return m end
  local raw = rawget(self, '_raw')
  local v = raw[k]
  if type(v) == 'function' then
    local f = function(_, ...) return v(raw, ...) end
    rawset(self, k, f)
    return f
  end
  return v
end

-- Handle.new(raw, engine, on_secure[, on_session]) -> handle; start()
-- begins. on_session() when the engine got a session to keep (a client's).
function Handle.new(raw, engine, on_secure, on_session)
  return setmetatable({_raw = raw, _e = engine, _secure = false,
    _pending = {}, _on_secure = on_secure, _on_session = on_session,
    _reading = false, _raw_reading = false, _failed = false}, Handle)
end

-- Whether the handshake has ended well.
function Handle:is_secure() return self._secure end

function Handle:engine() return self._e end

-- Sends what the engine has to send (handshake messages, alerts,
-- records); cb when written.
function Handle:_send(cb)
  local out = self._e:take()
  if out then
    return self._raw:write(out, cb)
  end
  if cb then process.nextTick(cb) end
  return true
end

function Handle:_rawStart()
  if self._raw_reading or self._raw:is_closing() then return end
  self._raw_reading = true
  self._raw:read_start(function(err, chunk) self:_onRaw(err, chunk) end)
end

function Handle:_rawStop()
  if not self._raw_reading then return end
  self._raw_reading = false
  if not self._raw:is_closing() then self._raw:read_stop() end
end

-- Begins the handshake (a client's hello goes out now).
function Handle:start()
  self:_rawStart()
  self:_advance()
end

function Handle:_fail(err)
  if self._failed then return end
  self._failed = true
  self:_rawStop()
  local cb = self._on_secure
  self._on_secure = nil
  if cb then cb(err) end
end

function Handle:_advance()
  local ok, msg, code, plain = self._e:handshake()
  self:_send()
  if ok == nil then
    return self:_fail(errors.new(code, msg, {plain = plain or nil,
      library = 'SSL routines', reason = msg}))
  end
  if not ok then return end
  self._secure = true
  local q = self._pending
  self._pending = {}
  for i = 1, #q do
    local w = q[i]
    if w.shutdown then self:shutdown(w.shutdown)
    else self:write(w[1], w[2]) end
  end
  local cb = self._on_secure
  self._on_secure = nil
  if cb then cb(nil) end
  if self._on_session and self._e:new_session() then self._on_session() end
  if not self._reading then self:_rawStop() end
  self:_pump()
end

function Handle:_onRaw(err, chunk)
  if err or chunk == nil then
    if not self._secure then
      return self:_fail(err and errors.sys(err, 'read') or errors.new(
        'ECONNRESET', 'Client network socket disconnected before secure '
        .. 'TLS connection was established'))
    end
    self._eof = true
    self._err = err
    return self:_pump()
  end
  self._e:feed(chunk)
  if not self._secure then return self:_advance() end
  self:_pump()
  -- A TLS 1.3 ticket is read with the data after the handshake.
  if self._on_session and not self._raw:is_closing()
      and self._e:new_session() then
    self._on_session()
  end
end

-- Hands decrypted data to the reader while it reads; then the end or an
-- error, once the engine has nothing more.
function Handle:_pump()
  local e = self._e
  while self._reading and self._cb do
    local data, msg, code = e:read()
    if data then
      self._cb(nil, data)
    elseif data == false then
      break
    elseif msg == 'closed' then
      self._eof = true
      break
    else
      self._reading = false
      return self._cb(code .. ': ' .. msg)
    end
  end
  if self._reading and self._cb and self._eof and not self._eof_told then
    self._eof_told = true
    if self._err then return self._cb(self._err) end
    return self._cb(nil, nil)
  end
  -- A key update or a ticket may want an answer.
  if not self._raw:is_closing() then self:_send() end
end

function Handle:read_start(cb)
  self._cb = cb
  self._reading = true
  if self._secure then
    self:_rawStart()
    process.nextTick(function()
      if self._reading and not self._raw:is_closing() then self:_pump() end
    end)
  end
  return 0
end

function Handle:read_stop()
  self._reading = false
  if self._secure then self:_rawStop() end
  return 0
end

-- write(data, cb): sealed and written (queued until the handshake ends).
function Handle:write(data, cb)
  if type(data) == 'table' then data = table.concat(data) end
  if not self._secure then
    self._pending[#self._pending + 1] = {data, cb}
    return true
  end
  local ok, msg, code = self._e:write(data)
  if not ok then return nil, code .. ': ' .. msg end
  return self:_send(cb)
end

-- try_write(data) -> nil, 'EAGAIN', 'EAGAIN': the engine seals what it
-- takes at once, so a partial write could not be told in plaintext bytes;
-- callers fall back to write(), whose callback tells when the ciphertext
-- is in the kernel.
function Handle:try_write()
  return nil, 'EAGAIN', 'EAGAIN'
end

function Handle:shutdown(cb)
  if not self._secure and not self._failed then
    self._pending[#self._pending + 1] = {shutdown = cb}
    return true
  end
  if self._secure then
    self._e:shutdown()
    self:_send()
  end
  return self._raw:shutdown(cb)
end

function Handle:close(cb)
  self._reading = false
  self._on_secure = nil
  return self._raw:close(function(...)
    self._e:close()
    if cb then cb(...) end
  end)
end

function Handle:close_reset(cb)
  self._reading = false
  self._on_secure = nil
  return self._raw:close_reset(function(...)
    self._e:close()
    if cb then cb(...) end
  end)
end

return Handle
