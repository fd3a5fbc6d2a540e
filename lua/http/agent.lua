-- http.agent: Node's http.Agent, the pool of connections the http client
-- (lua/http/client.lua) takes its sockets from.
--
-- Sockets are kept per origin, under Node's name 'host:port:localAddress'
-- (':4' or ':6' appended for a family): agent.sockets[name] lists those
-- serving a request, agent.freeSockets[name] those idle between requests
-- (keepAlive only), agent.requests[name] the requests waiting for a socket
-- (past maxSockets or maxTotalSockets). A request gets a free socket if
-- there is one ('lifo': the most recently freed, 'fifo': the oldest), else
-- a new connection if there is room, else it waits.
--
-- A request whose response was read to its end gives its socket back
-- ('free', from lua/http/client_response.lua): the socket goes to the
-- first request waiting for its origin, else into the free list (when the
-- agent and both ends keep connections alive), else it is closed. A free
-- socket is unref'd (it does not keep the process alive) and closed when
-- it times out, errs, ends, or receives anything: a server may close an
-- idle connection, and a socket with unread bytes cannot carry the next
-- response. Every socket leaves the agent on its 'close'.

local EventEmitter = require('events')
local errors = require('internal.errors')

local type, tostring, tonumber, pairs, next, error, setmetatable =
  type, tostring, tonumber, pairs, next, error, setmetatable
local remove, huge, floor = table.remove, math.huge, math.floor

local Agent = EventEmitter:extend()
Agent.defaultMaxSockets = huge

-- Agent(options) is Agent:new(options), as Node's Agent works without new.
setmetatable(Agent, {__index = EventEmitter,
  __call = function(class, options) return class:new(options) end})

local function positive(options, key, default)
  local v = options[key]
  if v == nil then return default end
  if type(v) ~= 'number' or v ~= v or v <= 0 then
    error(errors.range_error('ERR_OUT_OF_RANGE', 'The value of "'
      .. key .. '" is out of range. It must be > 0. Received '
      .. tostring(v)), 3)
  end
  return v
end

local on_free

-- Agent:new([options]) -> agent. options: keepAlive (false), keepAliveMsecs
-- (1000: TCP keep-alive's initial delay on free sockets), maxSockets (per
-- origin, Infinity), maxTotalSockets (Infinity), maxFreeSockets (per origin,
-- 256), timeout (ms of idleness after which a socket times out; a free
-- one is closed), scheduling ('lifo' or 'fifo').
function Agent:new(options)
  if options ~= nil and type(options) ~= 'table' then
    error(errors.type_error('ERR_INVALID_ARG_TYPE', 'The "options" argument '
      .. 'must be a table. Received ' .. type(options)), 2)
  end
  local o = {}
  for k, v in pairs(options or {}) do o[k] = v end
  local a = EventEmitter.new(self, {})
  a.options = o
  a.defaultPort, a.protocol = 80, 'http:'
  a.keepAlive = o.keepAlive == true
  a.keepAliveMsecs = positive(o, 'keepAliveMsecs', 1000)
  a.maxSockets = positive(o, 'maxSockets', Agent.defaultMaxSockets)
  a.maxTotalSockets = positive(o, 'maxTotalSockets', huge)
  a.maxFreeSockets = positive(o, 'maxFreeSockets', 256)
  a.scheduling = o.scheduling or 'lifo'
  if a.scheduling ~= 'lifo' and a.scheduling ~= 'fifo' then
    error(errors.type_error('ERR_INVALID_ARG_VALUE', 'The argument '
      .. '\'scheduling\' must be one of: \'fifo\', \'lifo\'. Received '
      .. tostring(a.scheduling)), 2)
  end
  if o.timeout ~= nil and (type(o.timeout) ~= 'number' or o.timeout < 0) then
    error(errors.type_error('ERR_INVALID_ARG_TYPE', 'The "timeout" option '
      .. 'must be a number of milliseconds. Received ' .. tostring(o.timeout)),
      2)
  end
  a.sockets, a.freeSockets, a.requests = {}, {}, {}
  -- Every socket the agent holds, free or serving.
  a.totalSocketCount = 0
  a:on('free', function(socket, opts) on_free(a, socket, opts) end)
  return a
end

-- getName(options) -> the origin's key: 'host:port:localAddress', with
-- ':4' or ':6' for a family.
function Agent:getName(options)
  local name = (options.host or 'localhost') .. ':' .. (options.port or '')
    .. ':' .. (options.localAddress or '')
  if options.socketPath then
    name = name .. ':' .. options.socketPath
  elseif options.family == 4 or options.family == 6 then
    name = name .. ':' .. options.family
  end
  return name
end

------------------------------------------------------------------------------
-- The lists.

local function push(set, name, s)
  local list = set[name]
  if list then list[#list + 1] = s else set[name] = {s} end
end

-- pull(set, name, s) -> whether s was in set[name] (it is taken out).
local function pull(set, name, s)
  local list = set[name]
  if not list then return false end
  for i = 1, #list do
    if list[i] == s then
      remove(list, i)
      if #list == 0 then set[name] = nil end
      return true
    end
  end
  return false
end

local function count(set, name)
  local list = set[name]
  return list and #list or 0
end

-- Closes the oldest free socket of another origin than name, so that a
-- request of name past maxTotalSockets gets a connection (a free socket
-- is only a cache). Returns whether one was closed.
local function evict(self, name)
  for other, list in pairs(self.freeSockets) do
    if other ~= name and list[1] then
      local s = remove(list, 1)
      if #list == 0 then self.freeSockets[other] = nil end
      self.totalSocketCount = self.totalSocketCount - 1
      s._agentFree = nil
      s:destroy()
      return true
    end
  end
  return false
end

-- room(name) -> whether a new connection to name may open: under
-- maxSockets for name, and under maxTotalSockets, if need be once a free
-- socket of another origin is closed.
local function room(self, name)
  if count(self.sockets, name) + count(self.freeSockets, name)
      >= self.maxSockets then
    return false
  end
  return self.totalSocketCount < self.maxTotalSockets or evict(self, name)
end

------------------------------------------------------------------------------
-- Sockets.

-- Listeners of a free socket: anything it hears makes it useless.
local function free_drop(self)
  return function() self:destroy() end
end

local function set_free(socket, name)
  local drop = socket._agentDrop
  if not drop then
    drop = free_drop(socket)
    socket._agentDrop = drop
  end
  socket._agentFree = name
  socket:on('error', drop)
  socket:on('data', drop)
  socket:on('end', drop)
  -- Reading goes on (the response may have paused it), so that an end or
  -- stray bytes are seen while the socket waits.
  socket:resume()
end

local function unset_free(socket)
  local drop = socket._agentDrop
  socket._agentFree = nil
  socket:removeListener('error', drop)
  socket:removeListener('data', drop)
  socket:removeListener('end', drop)
end

-- The socket serves req from now on.
local function set_request_socket(self, req, socket)
  socket._httpMessage = req
  req:onSocket(socket)
end

-- takeFree(name) -> a free socket of name still usable, taken out of the
-- free list, or nil.
local function take_free(self, name)
  local list = self.freeSockets[name]
  while list and #list > 0 do
    local s = self.scheduling == 'fifo' and remove(list, 1) or remove(list)
    if #list == 0 then
      self.freeSockets[name] = nil
      list = nil
    end
    if s.destroyed or not s.writable or s._peerEnded then
      self.totalSocketCount = self.totalSocketCount - 1
      s._agentFree = nil
      s:destroy()
    else
      unset_free(s)
      return s
    end
  end
  return nil
end

-- Connect options for an origin: what net.connect takes of the request's
-- and the agent's options (never a request's path: net reads a path as a
-- unix socket's; socketPath becomes that path, as Node's agent does).
local function connect_options(self, options)
  local o = {}
  for k, v in pairs(options) do o[k] = v end
  for k, v in pairs(self.options) do o[k] = v end
  o.path, o.keepAlive = o.socketPath, nil
  return o
end

-- The agent's listeners on a socket it made, for the socket's whole life.
local function install_listeners(self, s, options)
  local onfree, onclose, ontimeout, onremove
  function onfree() self:emit('free', s, options) end
  function onclose() self:removeSocket(s, options) end
  -- A free socket idle past the timeout is closed; a busy one tells its
  -- request (lua/http/client_response.lua), which decides.
  function ontimeout()
    if s._agentFree then s:destroy() end
  end
  -- An upgraded connection leaves the pool for good.
  function onremove()
    self:removeSocket(s, options)
    s:removeListener('free', onfree)
    s:removeListener('close', onclose)
    s:removeListener('timeout', ontimeout)
    s:removeListener('agentRemove', onremove)
  end
  s:on('free', onfree)
  s:on('close', onclose)
  s:on('timeout', ontimeout)
  s:on('agentRemove', onremove)
end

-- createConnection(options) -> a net.Socket connecting to the origin.
-- A subclass may make its own (Node's hook).
function Agent:createConnection(options)
  return require('net').connect(options)
end

-- createSocket(req, options, cb): a new connection for req; cb(err,
-- socket).
function Agent:createSocket(req, options, cb)
  local o = connect_options(self, options)
  local name = self:getName(o)
  o._agentKey = name
  local ok, s = pcall(self.createConnection, self, o)
  if not ok then return cb(s) end
  push(self.sockets, name, s)
  self.totalSocketCount = self.totalSocketCount + 1
  install_listeners(self, s, o)
  return cb(nil, s)
end

local function create_for(self, req, options)
  self:createSocket(req, options, function(err, s)
    if err then return req:onSocket(nil, err) end
    set_request_socket(self, req, s)
  end)
end

-- addRequest(req, options): gives req a socket (req:onSocket(socket)) now
-- or once one is free. options: host, port, localAddress, family.
function Agent:addRequest(req, options)
  options = connect_options(self, options)
  local name = self:getName(options)
  local s = take_free(self, name)
  if s then
    push(self.sockets, name, s)
    self:reuseSocket(s, req)
    return set_request_socket(self, req, s)
  end
  if room(self, name) then return create_for(self, req, options) end
  req._agentName, req._agentOptions = name, options
  push(self.requests, name, req)
end

-- reuseSocket(socket, req): socket, free until now, serves req.
function Agent:reuseSocket(socket, req)
  req.reusedSocket = true
  socket:ref()
end

-- serve_one(name) -> whether the first request waiting for name got a
-- new connection.
local function serve_one(self, name)
  local q = self.requests[name]
  if not (q and q[1]) or not room(self, name) then return false end
  local req = remove(q, 1)
  if #q == 0 then self.requests[name] = nil end
  req._agentName = nil
  create_for(self, req, req._agentOptions)
  return true
end

-- Requests waiting for a socket get new connections while there is room:
-- those of name first, then the others.
local function serve_waiting(self, name)
  while serve_one(self, name) do end
  local again = next(self.requests) ~= nil
  while again do
    again = false
    for other in pairs(self.requests) do
      -- The table changes under pairs: start over after each.
      if serve_one(self, other) then
        again = true
        break
      end
    end
  end
end

-- removeSocket(socket, options): the socket leaves the agent (it closed);
-- a request waiting for its origin (or, past maxTotalSockets, another's)
-- gets a new connection.
function Agent:removeSocket(s, options)
  local name = self:getName(options)
  if pull(self.sockets, name, s) or pull(self.freeSockets, name, s) then
    self.totalSocketCount = self.totalSocketCount - 1
  end
  s._agentFree = nil
  serve_waiting(self, name)
end

-- _removeRequest(req): req, waiting for a socket, no longer wants one
-- (destroyed). Returns whether it was waiting.
function Agent:_removeRequest(req)
  local name = req._agentName
  if not name then return false end
  req._agentName = nil
  return pull(self.requests, name, req)
end

-- keepSocketAlive(socket) -> whether the socket may wait in the free list:
-- TCP keep-alive on, unref'd, its timeout the agent's, shortened to a
-- second less than the server's Keep-Alive: timeout=N hint (as Node 20,
-- though Node applies the hint only under an agent timeout); a hint of a
-- second or less: not kept (the server would close it as we reuse it).
function Agent:keepSocketAlive(socket)
  local ms = self.options.timeout or 0
  local req = socket._httpMessage
  local res = req and req.res
  local hint = res and res.headers and res.headers['keep-alive']
  if type(hint) == 'string' then
    local secs = tonumber(hint:lower():match('timeout%s*=%s*(%d+)'))
    if secs then
      local t = secs * 1000 - 1000
      if t <= 0 then return false end
      if ms == 0 or t < ms then ms = t end
    end
  end
  socket:setKeepAlive(true, self.keepAliveMsecs)
  socket:unref()
  socket:setTimeout(floor(ms))
  return true
end

-- 'free' (socket, options): the socket's request is over.
function on_free(self, socket, options)
  local name = self:getName(options)
  if socket.destroyed or not socket.writable then
    return socket:destroy()
  end
  local q = self.requests[name]
  if q and q[1] then
    -- Handed over at once: the socket stays among the busy ones.
    local req = remove(q, 1)
    if #q == 0 then self.requests[name] = nil end
    req._agentName = nil
    req.reusedSocket = true
    return set_request_socket(self, req, socket)
  end
  local req = socket._httpMessage
  if not req or not req.shouldKeepAlive or not self.keepAlive
      or count(self.freeSockets, name) >= self.maxFreeSockets
      or not self:keepSocketAlive(socket) then
    return socket:destroy()
  end
  socket._httpMessage = nil
  pull(self.sockets, name, socket)
  push(self.freeSockets, name, socket)
  set_free(socket, name)
  -- A request of another origin waiting past maxTotalSockets may take
  -- this one's place.
  if next(self.requests) then serve_waiting(self, name) end
end

-- destroy(): closes every socket, free or busy (busy requests fail with
-- 'socket hang up' or abort their response).
function Agent:destroy()
  for _, set in pairs({self.freeSockets, self.sockets}) do
    local all = {}
    for _, list in pairs(set) do
      for i = 1, #list do all[#all + 1] = list[i] end
    end
    for i = 1, #all do all[i]:destroy() end
  end
end

return Agent
