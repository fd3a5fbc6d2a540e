-- internal.listen: the one way a server gets its connections, for net's
-- Server and http's alike: Node's listen arguments, the name lookup, a
-- listening socket of our own (a single process, or exclusive) or the
-- cluster's (in a worker, through listen.broker), the 'listening' and
-- 'error' events, and closing.
--
-- A server listens on a TCP port, or on a path: a Unix domain socket
-- (Node's pipe). A path is bound as it is: one that exists, a stale socket
-- file included, fails with EADDRINUSE; the file goes when the server that
-- bound it closes (in a cluster, when the primary's socket closes).
--
-- A server kind gives a sink, which says what to do with what comes:
--   sink.accept(h, backlog) -> own | nil, err: accept from the listening
--     luv handle h, a tcp or (on a path) a pipe (it owns h from here); own
--     is {address(), close(), ref(), unref()} (each may be nil)
--   sink.serve(): round robin in a worker, no socket here: serve only the
--     connections the primary hands over (optional)
--   sink.connection(h): one connection the primary accepted, a luv tcp
--     or pipe handle (every policy may send some)
-- The server's fields this file keeps: listening, _pending (a token while
-- a listen is under way), _listener ({address(), close(), ref(),
-- unref()} while listening).

local uv = require('uv')
local tcp = require('_tcp')
local unix = require('_unix')
local process = require('process')
local errors = require('internal.errors')
local dns = require('internal.dns')

local type, tostring, tonumber, select, pairs, error = type, tostring,
  tonumber, select, pairs, error

local listen = {}

-- The cluster's worker side sets this when the process is a worker
-- (lua/cluster/child.lua): broker(opts, cb, owner) asks the primary for
-- the socket of opts = {address=, port=, addressType=, backlog=} (a path:
-- address the path, port and addressType -1, as Node's cluster says, and
-- readableAll, writableAll), and cb(err, lst) gets lst = {handle = a
-- listening luv handle or nil (round robin), address = {address=, port=,
-- addressType=}, close()}; the caller sets lst.onconnection(h) to receive
-- the connections the primary hands over. owner (the server) is closed by
-- worker:disconnect().
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

-- is_path(v) -> whether v names a Unix socket rather than a port: a
-- string that is not a number (Node's isPipeName).
local function is_path(v)
  return type(v) == 'string' and v ~= '' and tonumber(v) == nil
end
listen.is_path = is_path

-- Node's listen forms: (port[, host][, backlog][, cb]), (path[,
-- backlog][, cb]), (options[, cb]) with options.port or options.path (the
-- port wins when both are given, as in Node), (cb), (). Returns o =
-- {port=, host=, backlog=, exclusive=, ...} or o = {path=, backlog=,
-- readableAll=, writableAll=, ...}, and cb; raises (at the caller of the
-- caller's caller) on a bad port or path.
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
    if type(first) == 'function' then cb = first
    elseif is_path(first) then o.path = first
    else o.port = first end
    for i = 2, n do
      local a = select(i, ...)
      local t = type(a)
      if t == 'function' then cb = a
      elseif t == 'string' and o.host == nil and o.backlog == nil
          and not o.path then
        o.host = a
      elseif t == 'number' and o.backlog == nil then o.backlog = a
      end
    end
  end
  o.backlog = tonumber(o.backlog) or 511
  if o.port == nil and o.path ~= nil then
    if not is_path(o.path) then
      error(errors.type_error('ERR_INVALID_ARG_VALUE', 'The argument '
        .. "'options' must have the property \"port\" or \"path\". "
        .. 'Received path ' .. tostring(o.path)), 4)
    end
    o.host = nil
    return o, cb
  end
  o.path = nil
  if o.port == nil then o.port = 0 end
  o.port = listen.check_port(o.port, 'options.port', 4)
  if o.host == '' then o.host = nil end
  return o, cb
end

local families = {inet = 'IPv4', inet6 = 'IPv6'}

-- address_of(h[, peer]) -> {address=, port=, family=, addressType=} of a
-- luv tcp handle's end, or nil (a pipe's ends have none, as in Node).
function listen.address_of(h, peer)
  local ok, a = pcall(peer and h.getpeername or h.getsockname, h)
  if not ok or type(a) ~= 'table' then return nil end
  local family = families[a.family] or a.family
  return {address = a.ip, port = a.port, family = family,
    addressType = family == 'IPv6' and 6 or 4}
end

-- The primary's error, as Node's listenInCluster makes it: the primary
-- binds, so the syscall is 'bind' ('bind EADDRINUSE 127.0.0.1:8000'); the
-- address is the one asked for (nil for any, which Node's message writes
-- as null).
local function broker_error(err, o)
  local code = err.code or 'UNKNOWN'
  if o.path then return errors.sys(code, 'bind', o.path, -1) end
  local e = errors.sys(code, 'bind', o.address or 'null', o.port)
  e.address = o.address
  return e
end

local function nop() end

-- The listener a server keeps: own is what its sink made of a listening
-- socket (nil under round robin), lst the cluster's (nil in a single
-- process). On a path, address() is the path, as Node's server.address()
-- gives it, and closing removes the socket file when this process bound
-- it (else the primary does, when its socket closes).
local function listener(o, own, lst)
  own = own or {}
  local a = lst and lst.address or {}
  local t = a.addressType or o.addressType
  local path = o.path
  return {
    address = function()
      if path then return path end
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
      elseif path then
        os.remove(path)
      end
    end,
    ref = own.ref or nop,
    unref = own.unref or nop,
  }
end

-- listen_error(o, uverr) -> Node's error for a listen of o that failed:
-- 'listen EADDRINUSE: address already in use /path' (port -1 on a path,
-- as Node's).
local function listen_error(o, uverr)
  if o.path then return errors.uv(uverr, 'listen', o.path, -1) end
  return errors.uv(uverr, 'listen', o.address or '::', o.port)
end

-- A listening luv handle of our own for o: a pipe bound to o.path, or a
-- tcp bound to o.address:o.port. Returns it, or nil, uverr.
local function own_socket(o)
  local fd, msg, h
  if o.path then
    fd, msg = unix.listen_fd(o.path, o.backlog, o.readableAll == true,
      o.writableAll == true)
    h = fd and uv.new_pipe(false)
  else
    fd, msg = tcp.listen_fd(o.address, o.port, o.backlog, false)
    h = fd and uv.new_tcp()
  end
  if not fd then return nil, msg end
  local opened, oerr = h:open(fd)
  if not opened then
    h:close()
    tcp.close(fd)
    if o.path then os.remove(o.path) end
    return nil, oerr
  end
  return h
end

-- Gets a listening socket for o = {address=, port=, addressType=,
-- backlog=, exclusive=} or {path=, ...} and hands it to sink, unless the
-- server's listen was cancelled (live() false) meanwhile; done(err,
-- listener) once.
local function open(server, o, sink, live, done)
  local broker = listen.broker
  if not broker or o.exclusive then
    local h, msg = own_socket(o)
    if not h then return done(listen_error(o, msg)) end
    local own, err = sink.accept(h, o.backlog)
    if not own then
      if o.path then os.remove(o.path) end
      return done(listen_error(o, err))
    end
    return done(nil, listener(o, own))
  end
  local query = {address = o.address, port = o.port,
    addressType = o.addressType, backlog = o.backlog}
  if o.path then
    query.address, query.port, query.addressType = o.path, -1, -1
    query.readableAll = o.readableAll == true
    query.writableAll = o.writableAll == true
  end
  broker(query, function(err, lst)
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
        return done(listen_error(o, msg))
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
    if not o.path then
      o.address = host
      o.addressType = host and host:find(':', 1, true) and 6 or 4
    end
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
  if o.path or host == nil or dns.isIP(host) ~= 0 then
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

-- address(server) -> {address=, port=, family=, addressType=}, the path
-- of a server listening on one, or nil when not listening.
function listen.address(server)
  local l = server._listener
  return l and l.address() or nil
end

return listen
