-- internal.listen: the one way a server gets its connections, for net's
-- Server and http's alike: Node's listen arguments, the name lookup, a
-- listening socket of our own (a single process, or exclusive) or the
-- cluster's (in a worker, through listen.broker), the 'listening' and
-- 'error' events, and closing.
--
-- A server kind gives a sink, which says what to do with what comes:
--   sink.accept(h, backlog) -> own | nil, err: accept from the listening
--     luv handle h (it owns h from here); own is {address(), close(),
--     ref(), unref()} (each may be nil)
--   sink.serve(): round robin in a worker, no socket here: serve only the
--     connections the primary hands over (optional)
--   sink.connection(tcp): one connection the primary accepted, a luv tcp
--     handle (every policy may send some)
-- The server's fields this file keeps: listening, _pending (a token while
-- a listen is under way), _listener ({address(), close(), ref(),
-- unref()} while listening).

local uv = require('uv')
local tcp = require('_tcp')
local process = require('process')
local errors = require('internal.errors')
local dns = require('internal.dns')

local type, tostring, tonumber, select, pairs, error = type, tostring,
  tonumber, select, pairs, error

local listen = {}

-- The cluster's worker side sets this when the process is a worker
-- (lua/cluster/child.lua): broker(opts, cb, owner) asks the primary for
-- the socket of opts = {address=, port=, addressType=, backlog=}, and
-- cb(err, lst) gets lst = {handle = a listening luv handle or nil (round
-- robin), address = {address=, port=, addressType=}, close()}; the caller
-- sets lst.onconnection(tcp) to receive the connections the primary hands
-- over. owner (the server) is closed by worker:disconnect().
listen.broker = nil

local function next_tick(fn, ...)
  return process.nextTick(fn, ...)
end

-- check_port(port, what, level) -> the port as a number, or raises Node's
-- ERR_SOCKET_BAD_PORT.
function listen.check_port(port, what, level)
  local p = tonumber(port)
  if port == nil or p == nil or p % 1 ~= 0 or p < 0 or p > 65535
      or (type(port) ~= 'number' and type(port) ~= 'string') then
    error(errors.range_error('ERR_SOCKET_BAD_PORT', what
      .. ' should be >= 0 and < 65536. Received ' .. tostring(port) .. '.'),
      level + 1)
  end
  return p
end

-- Node's listen forms: (port[, host][, backlog][, cb]), (options[, cb]),
-- (cb), (). Returns o = {port=, host=, backlog=, exclusive=, ...} and cb;
-- raises (at the caller of the caller's caller) on a bad port or a path.
local function args(...)
  local n = select('#', ...)
  local first = ...
  local o = {}
  local cb
  if type(first) == 'table' then
    for k, v in pairs(first) do o[k] = v end
    for i = 2, n do
      local a = select(i, ...)
      if type(a) == 'function' then cb = a end
    end
  else
    if type(first) == 'function' then cb = first else o.port = first end
    for i = 2, n do
      local a = select(i, ...)
      local t = type(a)
      if t == 'function' then cb = a
      elseif t == 'string' and o.host == nil and o.backlog == nil then
        o.host = a
      elseif t == 'number' and o.backlog == nil then o.backlog = a
      end
    end
  end
  if o.path or (type(o.port) == 'string' and not tonumber(o.port)) then
    error('listen: unix socket paths are not supported', 4)
  end
  if o.port == nil then o.port = 0 end
  o.port = listen.check_port(o.port, 'options.port', 4)
  if o.host == '' then o.host = nil end
  o.backlog = tonumber(o.backlog) or 511
  return o, cb
end

local families = {inet = 'IPv4', inet6 = 'IPv6'}

-- address_of(h[, peer]) -> {address=, port=, family=, addressType=} of a
-- luv tcp handle's end, or nil.
function listen.address_of(h, peer)
  local ok, a = pcall(peer and h.getpeername or h.getsockname, h)
  if not ok or type(a) ~= 'table' then return nil end
  local family = families[a.family] or a.family
  return {address = a.ip, port = a.port, family = family,
    addressType = family == 'IPv6' and 6 or 4}
end

-- The primary's error, in the shape and words of our own.
local function broker_error(err, o)
  local code = err.code or 'UNKNOWN'
  local desc = tostring(err.message or ''):match('^%a+ [%w_]+: (.+)$')
  return errors.uv(code .. ': ' .. (desc or code), 'listen',
    o.address or '::', o.port)
end

local function nop() end

-- The listener a server keeps: own is what its sink made of a listening
-- socket (nil under round robin), lst the cluster's (nil in a single
-- process).
local function listener(o, own, lst)
  own = own or {}
  local a = lst and lst.address or {}
  local t = a.addressType or o.addressType
  return {
    address = function()
      local mine = own.address and own.address()
      if mine or not lst then return mine end
      return {address = a.address or o.address or '::',
        port = a.port or o.port, family = t == 6 and 'IPv6' or 'IPv4',
        addressType = t}
    end,
    close = function()
      if own.close then own.close() end
      if lst then
        lst.onconnection = nil
        lst.close()
      end
    end,
    ref = own.ref or nop,
    unref = own.unref or nop,
  }
end

-- Gets a listening socket for o = {address=, port=, addressType=,
-- backlog=, exclusive=} and hands it to sink, unless the server's listen
-- was cancelled (live() false) meanwhile; done(err, listener) once.
local function open(server, o, sink, live, done)
  local broker = listen.broker
  if not broker or o.exclusive then
    local fd, msg = tcp.listen_fd(o.address, o.port, o.backlog, false)
    if not fd then
      return done(errors.uv(msg, 'listen', o.address or '::', o.port))
    end
    local h = uv.new_tcp()
    local opened, oerr = h:open(fd)
    if not opened then
      h:close()
      tcp.close(fd)
      return done(errors.uv(oerr, 'listen', o.address or '::', o.port))
    end
    local own, err = sink.accept(h, o.backlog)
    if not own then return done(errors.uv(err, 'listen', o.address, o.port)) end
    return done(nil, listener(o, own))
  end
  broker({address = o.address, port = o.port, addressType = o.addressType,
      backlog = o.backlog}, function(err, lst)
    if not live() then
      if lst then
        local h = lst.handle
        if h and not h:is_closing() then h:close() end
        lst.close()
      end
      return
    end
    if err then return done(broker_error(err, o)) end
    local own
    if lst.handle then
      local msg
      own, msg = sink.accept(lst.handle, o.backlog)
      if not own then
        lst.close()
        return done(errors.uv(msg, 'listen', o.address, o.port))
      end
    elseif sink.serve then
      sink.serve()
    end
    lst.onconnection = sink.connection
    return done(nil, listener(o, own, lst))
  end, server)
end

-- start(server, sink, ...): Server:listen(...) for either kind; returns
-- server. 'listening' or 'error' follows on the server, never before this
-- returns.
function listen.start(server, sink, ...)
  local o, cb = args(...)
  if server.listening or server._pending then
    error(errors.already_listening(), 3)
  end
  if cb then server:once('listening', cb) end
  local token = {}
  server._pending = token
  local function live() return server._pending == token end
  local function go(host)
    o.address = host
    o.addressType = host and host:find(':', 1, true) and 6 or 4
    open(server, o, sink, live, function(err, listener)
      server._pending = nil
      if err then return next_tick(server.emit, server, 'error', err) end
      server._listener = listener
      server.listening = true
      if sink.listening then sink.listening(listener) end
      next_tick(function()
        if server._listener == listener then server:emit('listening') end
      end)
    end)
  end
  -- A name listens on its first address, in getaddrinfo's order, as Node
  -- (17+) does: 'localhost' is ::1 where /etc/hosts lists it (glibc sorts
  -- it first), else 127.0.0.1. A client of 'localhost' tries both (see
  -- net.Socket:connect), so it reaches the server either way.
  local host = o.host
  if host == nil or dns.isIP(host) ~= 0 then
    go(host)
  else
    dns.lookup(host, nil, function(err, addrs)
      if not live() then return end
      if err then
        server._pending = nil
        return server:emit('error', err)
      end
      go(addrs[1])
    end)
  end
  return server
end

-- close(server[, cb]): stops listening (or a listen under way). cb gets
-- the server's 'close', with Node's ERR_SERVER_NOT_RUNNING when it was
-- doing neither. Returns whether it was.
function listen.close(server, cb)
  local active = server._listener ~= nil or server._pending ~= nil
  if cb then
    if active then
      server:once('close', cb)
    else
      server:once('close', function() cb(errors.not_running()) end)
    end
  end
  server._pending = nil
  server.listening = false
  local l = server._listener
  server._listener = nil
  if l then l.close() end
  return active
end

-- address(server) -> {address=, port=, family=, addressType=}, or nil
-- when not listening.
function listen.address(server)
  local l = server._listener
  return l and l.address() or nil
end

return listen
