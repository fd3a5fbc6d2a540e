-- internal.stdin: process.stdin, made on first use, as Node's: a readable
-- stream of fd 0 that reads nothing (and keeps nothing alive) until a
-- 'data' listener, pipe() or resume() asks for it.
--   a pipe, a socket or a terminal: a net.Socket over the luv handle
--   (isTTY and setRawMode for a terminal);
--   a file (`luacluster script.lua < input`): a stream that reads the file
--   on libuv's thread pool, 64 KiB at a time;
--   no fd 0 at all: a stream that ends at once.

local uv = require('uv')
local EventEmitter = require('events')
local Readable = require('internal.stream')
local errors = require('internal.errors')

local M = {}

local CHUNK = 65536

-- A regular file (or anything libuv cannot poll) on fd 0.
local FileIn = EventEmitter:extend()
Readable.install(FileIn)
FileIn._endUnread = true

function FileIn:new(fd)
  local s = EventEmitter.new(self, {})
  s.fd, s.isTTY, s.readable, s.destroyed = fd, false, true, false
  return s
end

-- One read in flight at a time, on the thread pool, while the stream wants
-- data; end of file ends the stream.
function FileIn:_readStart()
  self._want = true
  if self._busy or self._eof or self.destroyed then return end
  if self.fd == nil then return Readable.push(self, nil) end
  self._busy = true
  uv.fs_read(self.fd, CHUNK, -1, function(err, data)
    self._busy = false
    if self.destroyed then return end
    if err then
      self.destroyed = true
      return self:emit('error', errors.sys(err, 'read'))
    end
    if data == nil or data == '' then return Readable.push(self, nil) end
    Readable.push(self, data)
    if self._want then self:_readStart() end
  end)
end

function FileIn:_readStop() self._want = false end

function FileIn:destroy()
  self.destroyed, self.readable = true, false
  return self
end

function FileIn:setEncoding() return self end

-- make() -> process.stdin.
function M.make()
  local kind = uv.guess_handle(0)
  local h
  if kind == 'tty' then
    h = uv.new_tty(0, true)
  elseif kind == 'pipe' then
    h = uv.new_pipe(false)
    if h and not h:open(0) then h:close() h = nil end
  elseif kind == 'tcp' then
    h = uv.new_tcp()
    if h and not h:open(0) then h:close() h = nil end
  end
  if not h then
    -- A file reads; no fd 0 (closed) ends at once.
    return FileIn:new(kind == 'file' and 0 or nil)
  end
  local Socket = require('net.socket')
  -- Read-only: its end is the input's end, nothing to shut down.
  local s = Socket:new({handle = h, allowHalfOpen = true})
  -- Not read until asked (a 'data' listener, resume, pipe): a script that
  -- never reads stdin must not wait for it to close.
  s:_readStop()
  s.fd = 0
  s.writable = false
  s.isTTY = kind == 'tty'
  if s.isTTY then
    -- setRawMode(on): the terminal's raw mode, as Node's tty.ReadStream.
    function s.setRawMode(self, on)
      h:set_mode(on and 1 or 0)
      self.isRaw = on and true or false
      return self
    end
    s.isRaw = false
  end
  return s
end

return M
