-- cosocket.conn: one OS connection of a cosocket (TCP or a unix socket)
-- and the waits on it.
--
-- Reading is always on, at most HWM bytes ahead of the caller, so a peer's
-- close is seen at once, also on an idle pooled connection (which is then
-- closed). The handle keeps the process alive only while a call waits on
-- it. A call waits through co's primitives: wait_read and wait_write return
-- what woke them (nil: the condition may hold now; TIMEOUT; CLOSED).

local uv = require('uv')
local dns = require('internal.dns')
local co = require('co')
local Buffer = require('cosocket.buffer')

local suspend, wake = co._suspend, co._wake
local tostring, select, pcall, sub = tostring, select, pcall, string.sub
local newproxy, getmetatable = newproxy, getmetatable

local M = {}

-- OpenResty's default connect, send and read timeouts (ms).
local DEFAULT_TIMEOUT = 60000

-- timeout_of(ms) -> ms, or the default for nil or 0 (as ngx).
function M.timeout_of(ms)
  return (ms and ms > 0) and ms or DEFAULT_TIMEOUT
end

-- Bytes read ahead of the caller before reading pauses.
local HWM = 256 * 1024
M.HWM = HWM

-- What a wake hands back: the timer fired, the connection went away.
local TIMEOUT, CLOSED = {}, {}
M.TIMEOUT, M.CLOSED = TIMEOUT, CLOSED

------------------------------------------------------------------------------
-- Error strings: ngx's are strerror() in lower case, as are libuv's
-- messages; luv's callbacks give the code alone.

local messages = {
  ECONNREFUSED = 'connection refused',
  ECONNRESET = 'connection reset by peer',
  ETIMEDOUT = 'connection timed out',
  EHOSTUNREACH = 'no route to host',
  ENETUNREACH = 'network is unreachable',
  ENOENT = 'no such file or directory',
  EPIPE = 'broken pipe',
  EACCES = 'permission denied',
  ECONNABORTED = 'software caused connection abort',
  EADDRNOTAVAIL = 'cannot assign requested address',
  EADDRINUSE = 'address already in use',
  ENOTCONN = 'transport endpoint is not connected',
  ECANCELED = 'operation canceled',
  EINVAL = 'invalid argument',
  EAI_NONAME = 'unknown node or service',
  ENOTFOUND = 'host not found',
  EAI_AGAIN = 'temporary failure',
}

function M.message(name)
  name = tostring(name)
  local code = name:match('^(E[%u%d_]+)') or name
  return messages[code] or code:lower()
end
local message = M.message

------------------------------------------------------------------------------
-- Is a connection still fit to reuse (no EOF, no unread byte waiting in
-- the kernel)? The loop reads idle connections, so what it has seen closes
-- them (as ngx's idle handler); a peek at reuse (_tcp.idle: luv has none)
-- also catches what arrived since the loop last looked.

local idle = require('_tcp').idle

-- peek(conn) -> true when a recv would block (nothing to read, no EOF).
function M.peek(conn)
  local fd = conn.fd
  if not fd then
    fd = conn.h:fileno()
    if not fd then return false end
    conn.fd = fd
  end
  return idle(fd)
end

------------------------------------------------------------------------------
-- Connections.

local close

local function wake_reader(conn, why)
  local c = conn.reader
  if c then
    conn.reader = nil
    wake(c, conn.rtok, why)
  end
end

local function wake_writer(conn, why)
  local c = conn.writer
  if c then
    conn.writer = nil
    wake(c, conn.wtok, why)
  end
end

-- new(h) -> a connection over the connected stream handle h, reading.
-- Fields: h (nil once closed; after sslhandshake, the TLS handle over it:
-- lua/tls/handle.lua, which has the luv handle's methods), buf (Buffer),
-- eof, rerr (a read error), rclosed (a read failed: no more reads),
-- reused, pool, idle, tls (secured).
function M.new(h)
  local conn = {h = h, buf = Buffer.new(), reused = 0, rtok = {}, wtok = {}}
  function conn.on_read(err, data)
    if data then
      if conn.idle then return close(conn) end -- unexpected: drop it
      local buf = conn.buf
      buf:push(data)
      if conn.reader then
        if buf.n >= conn.want then wake_reader(conn) end
      elseif buf.n >= HWM then
        conn.paused = true
        conn.h:read_stop()
      end
      return
    end
    if err then conn.rerr = message(err) else conn.eof = true end
    if conn.idle then return close(conn) end
    if conn.h then conn.h:read_stop() end
    wake_reader(conn)
  end
  function conn.on_write(err) wake_writer(conn, err or nil) end
  function conn.on_rtimeout() wake_reader(conn, TIMEOUT) end
  function conn.on_wtimeout() wake_writer(conn, TIMEOUT) end
  -- A killed thread's connection is closed, as ngx finalizes it.
  function conn.cancel() close(conn) end
  h:unref()
  h:read_start(conn.on_read)
  return conn
end

-- close(conn): closes the OS socket and its timers; a pool that counted
-- it learns, a call waiting on it returns CLOSED.
function close(conn)
  local h = conn.h
  if not h then return end
  conn.h = nil
  h:close()
  if conn.rtimer then conn.rtimer:close() end
  if conn.wtimer then conn.wtimer:close() end
  if conn.itimer then conn.itimer:close() end
  if conn.idle then
    conn.idle = false
    conn.pool:drop(conn)
  end
  wake_reader(conn, CLOSED)
  wake_writer(conn, CLOSED)
  if conn.pool then conn.pool:released() end
end
M.close = close

-- ended(conn) -> true when no more data will come.
function M.ended(conn)
  return conn.eof or conn.rerr ~= nil or not conn.h
end

-- wait(conn, c, timer, ms_field, on_timeout, token, ms) -> why: c waits
-- for token's wake with the timer conn[timer] running for ms (on_timeout
-- ends it). The running timer keeps the process alive meanwhile. The
-- timer keeps its callback from its first start and is restarted with
-- again() (a new ms only when it changed): one call into libuv a wait
-- and one after, no callback re-registered.
local function wait(conn, c, field, ms_field, on_timeout, token, ms)
  local timer = conn[field]
  uv.update_time()
  if not timer then
    timer = uv.new_timer()
    conn[field], conn[ms_field] = timer, ms
    timer:start(ms, ms, on_timeout)
  else
    if conn[ms_field] ~= ms then
      conn[ms_field] = ms
      timer:set_repeat(ms)
    end
    timer:again()
  end
  local why = suspend(c, token, conn.cancel)
  if conn.h then timer:stop() end
  return why
end

-- wait_read(conn, c, want, ms): c waits until want bytes are buffered,
-- EOF, a read error, close, or ms pass. Returns nil, TIMEOUT or CLOSED.
function M.wait_read(conn, c, want, ms)
  if conn.paused then
    conn.paused = false
    conn.h:read_start(conn.on_read)
  end
  conn.want, conn.reader = want, c
  local why = wait(conn, c, 'rtimer', 'rms', conn.on_rtimeout, conn.rtok, ms)
  conn.reader = nil
  return why
end

-- wait_write(conn, c, ms): c waits for conn.on_write (the write queued
-- just before), close, or ms. Returns nil, an error code, TIMEOUT or
-- CLOSED.
function M.wait_write(conn, c, ms)
  conn.writer = c
  local why = wait(conn, c, 'wtimer', 'wms', conn.on_wtimeout, conn.wtok, ms)
  conn.writer = nil
  return why
end

-- keep(conn, idle_ms): conn goes idle in its pool; an idle timeout (0:
-- none) closes it. Nothing of it keeps the process alive.
function M.keep(conn, idle_ms)
  conn.idle = true
  if idle_ms > 0 then
    local timer = conn.itimer
    if not timer then
      timer = uv.new_timer()
      conn.itimer, conn.ims = timer, idle_ms
      timer:start(idle_ms, idle_ms, conn.cancel)
      timer:unref()
    else
      if conn.ims ~= idle_ms then
        conn.ims = idle_ms
        timer:set_repeat(idle_ms)
      end
      timer:again()
    end
  end
end

-- unkeep(conn) -> conn when it is fit for another user (then counted as
-- reused once more); closes it and returns nil otherwise.
function M.unkeep(conn)
  conn.idle = false
  if conn.itimer then conn.itimer:stop() end
  if conn.h and conn.buf.n == 0 and not conn.eof and not conn.rerr
      and M.peek(conn) then
    conn.reused = conn.reused + 1
    return conn
  end
  close(conn)
  return nil
end

------------------------------------------------------------------------------
-- A socket's guard: the connection closes when its socket object is
-- collected unclosed (ngx closes it with the request). The guard is a
-- userdata whose __gc reads the socket from a cell; a socket that gives its
-- connection up (close, setkeepalive, an error: the usual end) hands the
-- guard back for the next socket, so the common case allocates nothing and
-- leaves no finalizer to the collector.

local spare, nspare, MAX_SPARE = {}, 0, 64

local function new_guard()
  local cell = {s = false}
  local proxy = newproxy(true)
  getmetatable(proxy).__gc = function()
    local s = cell.s
    if s then
      local cn = s._c
      if cn then
        s._c = nil
        close(cn)
      end
    end
  end
  cell.proxy = proxy
  return cell
end

-- attach(sock, conn): sock owns conn.
function M.attach(sock, conn)
  sock._c = conn
  if not sock._g then
    local g
    if nspare > 0 then
      g = spare[nspare]
      spare[nspare] = nil
      nspare = nspare - 1
    else
      g = new_guard()
    end
    g.s = sock
    sock._g = g
  end
end

-- detach(sock): sock owns no connection any more (what it had is closed
-- or pooled by the caller).
function M.detach(sock)
  sock._c = nil
  local g = sock._g
  if g then
    sock._g = nil
    g.s = false
    if nspare < MAX_SPARE then
      nspare = nspare + 1
      spare[nspare] = g
    end
  end
end

------------------------------------------------------------------------------
-- Opening a connection: the name resolved, each address tried in turn.

-- call(c, ms, h, fn, ...) -> the callback's arguments, or TIMEOUT: fn(...,
-- cb) starts a libuv request whose callback comes later (never during the
-- call); c waits for it at most ms. When fn fails at once, its error code.
-- A killed thread's handle h (if any) is closed.
local function call(c, ms, h, fn, ...)
  local timer = uv.new_timer()
  local cb
  cb = function(...)
    if timer then
      timer:close()
      timer = nil
    end
    wake(c, cb, ...)
  end
  local n = select('#', ...)
  local a, b, d = ...
  local req, _, code
  if n == 1 then req, _, code = fn(a, cb)
  elseif n == 2 then req, _, code = fn(a, b, cb)
  else req, _, code = fn(a, b, d, cb) end
  if req == nil and code then
    -- Refused at once (a bad address): no callback will come.
    timer:close()
    return code
  end
  uv.update_time()
  timer:start(ms, 0, function() cb(TIMEOUT) end)
  return suspend(c, cb, function()
    if timer then
      timer:close()
      timer = nil
    end
    if h and not h:is_closing() then h:close() end
  end)
end

local function is_ip(host)
  return host:match('^%d+%.%d+%.%d+%.%d+$') ~= nil
    or host:find(':', 1, true) ~= nil
end

local function remaining(deadline)
  uv.update_time()
  local ms = deadline - uv.now()
  return ms > 0 and ms or 0
end
M.remaining = remaining

-- open(c, host, port, deadline) -> conn, or nil and ngx's error string.
-- port nil: host is 'unix:/path'.
function M.open(c, host, port, deadline)
  if port == nil then
    local h = uv.new_pipe(false)
    local err = call(c, remaining(deadline), h, h.connect, h, sub(host, 6))
    if err ~= nil then
      h:close()
      return nil, err == TIMEOUT and 'timeout' or message(err)
    end
    return M.new(h)
  end
  local addrs
  if is_ip(host) then
    addrs = {host}
  else
    -- The runtime's one lookup (lua/internal/dns.lua: 'localhost'
    -- resolves even where nothing lists it).
    local err, res = call(c, remaining(deadline), nil, dns.lookup, host,
      nil)
    if err == TIMEOUT then return nil, 'timeout' end
    if err or not res or not res[1] then
      return nil, host .. ' could not be resolved (' ..
        message(err and err.code or 'EAI_NONAME') .. ')'
    end
    addrs = res
  end
  local last
  for i = 1, #addrs do
    local h = uv.new_tcp()
    local err = call(c, remaining(deadline), h, h.connect, h, addrs[i],
      port)
    if err == nil then
      h:nodelay(true)
      return M.new(h)
    end
    h:close()
    if err == TIMEOUT then return nil, 'timeout' end
    last = message(err)
  end
  return nil, last
end

return M
