-- cosocket: OpenResty's ngx.socket.tcp on luv, call for call.
--
--   local sock = require('cosocket').tcp()      -- or ngx.socket.tcp()
--   sock:settimeouts(1000, 1000, 1000)
--   local ok, err = sock:connect('127.0.0.1', 6379)   -- or 'unix:/path'
--   local bytes, err = sock:send('PING\r\n')
--   local line, err, partial = sock:receive()         -- '*l', '*a', n
--   sock:setkeepalive(10000, 100)                     -- into the pool
--
-- Every call that may wait (connect, send, the receives) must run inside a
-- pooled coroutine (lua/co.lua) and yields it; outside one it raises.
-- Return shapes and error strings are ngx's: nil, 'timeout' | 'closed' |
-- 'connection refused' | ... [, partial]. A read timeout keeps the
-- connection; EOF ends its reading side; other errors close it.
--
-- The connection itself (reading, waits, opening) is cosocket/conn.lua,
-- the read buffer cosocket/buffer.lua, the keepalive pools
-- cosocket/pool.lua, TLS (sslhandshake) cosocket/tls.lua. Not here:
-- bind.

local uv = require('uv')
local co = require('co')
local null = require('cjson').null
local Conn = require('cosocket.conn')
local pools = require('cosocket.pool')

local current, suspend, wake = co._current, co._suspend, co._wake
local wait_write = Conn.wait_write
local TIMEOUT, CLOSED = Conn.TIMEOUT, Conn.CLOSED
local type, tostring, tonumber, setmetatable, error =
  type, tostring, tonumber, setmetatable, error
local concat, sub, floor = table.concat, string.sub, math.floor

local M = {}

-- OpenResty's defaults (lua_socket_pool_size,
-- lua_socket_keepalive_timeout), in milliseconds.
local DEFAULT_POOL_SIZE = 30
local DEFAULT_IDLE = 60000

local Socket = {}
Socket.__index = Socket
M.Socket = Socket

-- tcp() -> a socket object, not connected.
function M.tcp()
  -- Every field in place from the start: setting them adds no key.
  return setmetatable({_c = false, _g = false, _key = false,
    _connecting = false, _ct = false, _st = false, _rt = false}, Socket)
end

local timeout_of = Conn.timeout_of

local attach, detach = Conn.attach, Conn.detach

------------------------------------------------------------------------------
-- connect

-- A kept-alive connection fit for use, or nil (the unfit are closed).
local function reuse(p)
  while true do
    local conn = p:pop()
    if not conn then return nil end
    conn = Conn.unkeep(conn)
    if conn then return conn end
  end
end

local function check_opt(what, v, min)
  if v == nil then return nil end
  if type(v) ~= 'number' then
    error(('bad "%s" option type: %s'):format(what, type(v)), 3)
  end
  if v < min then error(('bad "%s" option value: %d'):format(what, v), 3) end
  return floor(v)
end

-- pool_key(host, port) -> 'host:port', the default pool's name, made once
-- for each pair (formatting a number and interning a string a connect
-- would cost more than the rest of a pooled connect).
local keys, nkeys = {}, 0
local function pool_key(host, port)
  local byport = keys[host]
  if not byport then
    if nkeys >= 1024 then keys, nkeys = {}, 0 end -- bound it
    byport = {}
    keys[host] = byport
    nkeys = nkeys + 1
  end
  local key = byport[port]
  if not key then
    key = host .. ':' .. port
    byport[port] = key
  end
  return key
end

-- Waits (with a backlog) until the pool has an idle connection or room
-- for one. Returns the idle connection or true, or nil and err.
local function slot(p, c, deadline)
  local conn = reuse(p)
  while not conn and p:full() do
    if p:queue_full() then
      return nil, 'too many waiting connect operations'
    end
    local token = {}
    p:enqueue(c, token)
    local timer = uv.new_timer()
    timer:start(Conn.remaining(deadline), 0, function()
      p:dequeue(token)
      wake(c, token, TIMEOUT)
    end)
    local why = suspend(c, token, function()
      p:dequeue(token)
      timer:close()
    end)
    if not timer:is_closing() then timer:close() end
    if why == TIMEOUT then return nil, 'timeout' end
    conn = reuse(p)
  end
  return conn or true
end

-- connect(host, port[, opts]) or connect('unix:/path'[, opts]) -> 1, or
-- nil and err. opts: pool (its name), pool_size, backlog. The pool's
-- idle connections come first; a connected socket is closed first.
function Socket:connect(host, port, opts)
  local c = current('tcpsock:connect')
  if type(host) ~= 'string' then
    error("bad argument #1 to 'connect' (string expected, got " ..
      type(host) .. ')', 2)
  end
  if type(port) == 'table' then port, opts = nil, port end
  local unix = host:sub(1, 5):lower() == 'unix:'
  local key
  if port ~= nil and tonumber(port) then
    port = floor(tonumber(port))
    if port < 0 or port > 65535 then
      return nil, 'bad port number: ' .. port
    end
    key = pool_key(host, port)
    if unix then port = nil end
  elseif unix then
    port, key = nil, host
  else
    return nil, 'missing the port number'
  end
  local size, backlog
  if opts ~= nil then
    if type(opts) ~= 'table' then
      error("bad argument #3 to 'connect' (table expected, got " ..
        type(opts) .. ')', 2)
    end
    if opts.pool ~= nil then
      if type(opts.pool) ~= 'string' then
        error('bad "pool" option type: ' .. type(opts.pool), 2)
      end
      key = opts.pool
    end
    size = check_opt('pool_size', opts.pool_size, 1)
    backlog = check_opt('backlog', opts.backlog, 0)
    if backlog and not size then size = DEFAULT_POOL_SIZE end
  end
  if self._connecting then return nil, 'socket busy connecting' end
  local old = self._c
  if old then
    detach(self)
    Conn.close(old)
  end
  self._key = key

  uv.update_time()
  local deadline = uv.now() + timeout_of(self._ct)
  local p = pools.get(key)
  if not p and size then p = pools.create(key, size, backlog) end
  self._connecting = true
  local conn, err
  if p then
    conn, err = slot(p, c, deadline)
    if conn == true then
      p.active = p.active + 1
      conn = nil
    elseif not conn then
      self._connecting = nil
      return nil, err
    end
  end
  if not conn then
    conn, err = Conn.open(c, host, port, deadline)
    if not conn then
      self._connecting = nil
      if p then p:released() end
      return nil, err
    end
    conn.pool = p
  end
  self._connecting = nil
  attach(self, conn)
  return 1
end

-- sslhandshake(reused_session, server_name, verify) and tlshandshake(
-- opts): cosocket/tls.lua.
local tls = require('cosocket.tls')

function Socket:sslhandshake(reused_session, server_name, verify)
  return tls.handshake(self, {reused_session = reused_session,
    server_name = server_name, verify = verify}, timeout_of(self._ct))
end

function Socket:tlshandshake(opts)
  if type(opts) ~= 'table' then
    error("bad argument #1 to 'tlshandshake' (table expected, got "
      .. type(opts) .. ')', 2)
  end
  return tls.handshake(self, opts, timeout_of(self._ct))
end

------------------------------------------------------------------------------
-- send

local scratch = {}

local numstr = {}
for i = 0, 1024 do numstr[i] = tostring(i) end

local function flatten(t, out, n, total, level)
  for i = 1, #t do
    local v = t[i]
    local tv = type(v)
    if tv == 'table' then
      n, total = flatten(v, out, n, total, level + 1)
    else
      if tv == 'number' then
        -- Drivers send counts and lengths as numbers (resty.redis: every
        -- argument's): small integers come from a table, not a format.
        v = numstr[v] or tostring(v)
      elseif tv == 'boolean' then
        v = v and 'true' or 'false'
      elseif v == null then
        v = 'null'
      elseif tv ~= 'string' then
        error('bad data type ' .. tv .. ' found', level)
      end
      n = n + 1
      out[n] = v
      total = total + #v
    end
  end
  return n, total
end

-- A failed write closes the connection (ngx: "any connection error").
local function write_failed(self, conn, err)
  if self._c == conn then detach(self) end
  Conn.close(conn)
  return nil, err
end

-- send(data) -> bytes sent, or nil and err. data: a string, a number, or
-- an array of them (nested arrays, booleans and ngx.null too, as ngx). It
-- returns once all of it is in the kernel's buffer.
function Socket:send(data)
  local c = current('tcpsock:send')
  local conn = self._c
  if not conn or not conn.h then return nil, 'closed' end
  if conn.writer then return nil, 'socket busy writing' end
  local t, buf, n = type(data)
  if t == 'string' then
    buf, n = data, #data
  elseif t == 'number' then
    buf = tostring(data)
    n = #buf
  elseif t == 'table' then
    -- Flattened into one scratch array (no table a call), sent as one
    -- string. An error part-way leaves stale entries there: harmless, as
    -- only 1..k is ever read.
    local k
    k, n = flatten(data, scratch, 0, 0, 3)
    buf = concat(scratch, '', 1, k)
    for i = 1, k do scratch[i] = nil end
  else
    error("bad argument #1 to 'send' (string, number or table expected, " ..
      'got ' .. t .. ')', 2)
  end
  if n == 0 then return 0 end
  local h = conn.h
  local w, _, code = h:try_write(buf)
  if w == n then return n end
  if not w then
    if code ~= 'EAGAIN' then
      return write_failed(self, conn, Conn.message(code))
    end
    w = 0
  end
  local rest = sub(buf, w + 1)
  local req
  req, _, code = h:write(rest, conn.on_write)
  if not req then return write_failed(self, conn, Conn.message(code)) end
  local why = wait_write(conn, c, timeout_of(self._st))
  if why == nil then return n end
  if why == CLOSED then return nil, 'closed' end
  return write_failed(self, conn, why == TIMEOUT and 'timeout'
    or Conn.message(why))
end

-- The receives: cosocket/receive.lua.
local receive = require('cosocket.receive')
Socket.receive = receive.receive
Socket.receiveany = receive.receiveany
Socket.receiveuntil = receive.receiveuntil

------------------------------------------------------------------------------
-- Timeouts, options, the pool, close.

local function check_timeout(ms)
  ms = tonumber(ms) or 0
  if ms < 0 or ms >= 2 ^ 31 then error('bad timeout value', 3) end
  return floor(ms)
end

-- settimeout(ms): the connect, send and read timeouts (0: the default,
-- 60 s).
function Socket:settimeout(ms)
  ms = check_timeout(ms)
  self._ct, self._st, self._rt = ms, ms, ms
end

function Socket:settimeouts(ct, st, rt)
  self._ct, self._st, self._rt =
    check_timeout(ct), check_timeout(st), check_timeout(rt)
end

-- setoption(name, value): 'keepalive', 'tcp-nodelay', 'sndbuf', 'rcvbuf'.
function Socket:setoption(name, value)
  local conn = self._c
  if not conn or not conn.h then return nil, 'closed' end
  local h = conn.h
  if name == 'keepalive' then
    if not h.keepalive then return nil, 'not a TCP socket' end
    h:keepalive(value and true or false, 60)
  elseif name == 'tcp-nodelay' then
    if not h.nodelay then return nil, 'not a TCP socket' end
    h:nodelay(value and true or false)
  elseif name == 'sndbuf' then
    h:send_buffer_size(tonumber(value))
  elseif name == 'rcvbuf' then
    h:recv_buffer_size(tonumber(value))
  else
    return nil, 'unsupported option ' .. tostring(name)
  end
  return true
end

-- getreusedtimes() -> how many times the connection came from the pool.
function Socket:getreusedtimes()
  local conn = self._c
  if not conn then return nil, 'closed' end
  return conn.reused
end

-- close() -> 1, or nil, 'closed'.
function Socket:close()
  local conn = self._c
  if not conn then return nil, 'closed' end
  detach(self)
  Conn.close(conn)
  return 1
end

-- setkeepalive([idle_ms[, pool_size]]) -> 1, or nil and err. The
-- connection goes idle into the pool named at connect (made now, with
-- pool_size, when connect made none) and this socket is closed. idle_ms:
-- how long it may stay idle (0: no limit; default 60 s).
function Socket:setkeepalive(idle, size)
  if idle ~= nil and type(idle) ~= 'number' then
    error("bad argument #2 to 'setkeepalive' (number expected, got " ..
      type(idle) .. ')', 2)
  end
  if size ~= nil and type(size) ~= 'number' then
    error("bad argument #3 to 'setkeepalive' (number expected, got " ..
      type(size) .. ')', 2)
  end
  local conn = self._c
  if not conn or not conn.h or conn.rclosed or Conn.ended(conn) then
    return nil, 'closed'
  end
  if conn.reader then return nil, 'socket busy reading' end
  if conn.writer then return nil, 'socket busy writing' end
  if conn.buf.n > 0 then return nil, 'unread data in buffer' end
  local p = pools.get(self._key)
  if not p then
    size = size or DEFAULT_POOL_SIZE
    if size <= 0 then
      error(('bad "pool_size" option value: %d'):format(size), 2)
    end
    p = pools.create(self._key, floor(size))
  end
  detach(self)
  -- What the loop has read is in conn.buf (checked above); what the
  -- kernel holds still is found by the peek when the pool hands the
  -- connection out (Conn.unkeep): one recv a reuse, not two.
  if conn.eof or conn.rerr then
    Conn.close(conn)
    return nil, 'connection in dubious state'
  end
  if conn.pool ~= p then
    -- Counted from now on (connect found no pool to count it in).
    conn.pool = p
    p.active = p.active + 1
  end
  Conn.keep(conn, idle and floor(idle) or DEFAULT_IDLE)
  local evicted = p:push(conn)
  if evicted then Conn.close(evicted) end
  p:signal()
  return 1
end

return M
