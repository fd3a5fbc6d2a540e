-- cluster.handles.reuseport: SCHED_REUSEPORT. The kernel hashes connections
-- across a group of SO_REUSEPORT sockets, one per worker, and each worker
-- accepts from its own: the primary stays out of the data path.
--
-- The primary makes those sockets (bound and listening) and keeps a copy
-- of each, passing it to its worker as SCHED_NONE passes its one socket.
-- A listening socket that closes resets what waits in its accept queue (the
-- kernel moves nothing to the group's other sockets), so a socket outlives
-- its worker: a replacement (a restart after a crash or kill -9, or the new
-- worker of a rolling reload) gets the same socket and serves its queue. A
-- reload's new worker shares its predecessor's socket while the old one
-- drains; both accepting from it meanwhile is fine.
--
-- While no worker holds a socket the kernel still hashes new connections
-- to it, so the primary accepts them itself and hands them to the other
-- workers (cluster/handles/handoff.lua) until the replacement takes the
-- socket. A socket no worker will take (fewer workers than sockets: a
-- worker killed or disconnected and not replaced, a restart supervision
-- gave up) is
-- closed by trim(): its queue is emptied to the other workers and the
-- socket closed at once, in one step, so only a connection completing its
-- handshake within those microseconds can be reset.
--
-- A socket bound without listening holds the port (and resolves port 0)
-- while sockets come and go; it is not in the reuseport group, so it takes
-- no connections.
--
-- One cluster per port: SO_REUSEPORT would let a second, unrelated
-- cluster of the same user bind the port and take a share of its
-- connections (a stale deploy left running). So the handle also holds the
-- port's lock (_tcp.port_lock), and a second cluster's listen fails with
-- EADDRINUSE, as Node's and nginx's do; this cluster's own workers, its
-- restarts and reloads share the handle, so they are not affected.
-- LUACLUSTER_REUSE_PORT=1 (`--reuse-port`) shares the port anyway.

local uv = require('uv')
local utils = require('cluster.utils')
local Base = require('cluster.handles.base')
local Handoff = require('cluster.handles.handoff')
local tcp = require('_tcp')

local ReusePort = setmetatable({}, Base)
ReusePort.__index = ReusePort

-- new(key, opts) binds the port holder; a bind error is kept and answered
-- to every worker that asks.
function ReusePort.new(key, opts)
  local self = Base.init(setmetatable({
    sockets = {},   -- {fd=, holders = {[worker] = true}, n=, slot=, relay=}
    of = {},        -- worker -> the socket it holds
    seen = setmetatable({}, {__mode = 'k'}),  -- workers that asked
    address = opts.address, backlog = opts.backlog or 511,
    handoff = Handoff.new(key)}, ReusePort), key)
  local fd, port, code = Base.socket(opts, true, true)
  if not fd then return Base.fail(self, port, code) end
  self.fd, self.port = fd, port
  if process.env.LUACLUSTER_REUSE_PORT ~= '1' then
    local lock, msg, lcode = tcp.port_lock(port)
    if not lock then
      tcp.close(fd)
      self.fd = nil
      if lcode == 'EADDRINUSE' then
        msg = 'address already in use (another luacluster serves port ' ..
          port .. '; --reuse-port to share it)'
        -- `-w` stops there rather than restart workers that cannot listen
        -- (cluster/supervision/run_workers.lua sets it).
        if ReusePort.on_taken then
          process.nextTick(ReusePort.on_taken, port)
        end
      end
      return Base.fail(self, msg, lcode)
    end
    self.lock = lock
  end
  return self
end

-- The primary accepts from a socket no worker holds, while some worker can
-- take what it accepts; not otherwise (the queue then waits in the kernel
-- for the replacement).
local function relay(self, s)
  local on = s.n == 0 and self.handoff:count() > 0
  if on and not s.relay then
    -- A duplicate, so closing the relay leaves the socket open.
    local t = utils.wrap_fd(tcp.dup(s.fd))
    if not t then return end
    t:listen(self.backlog, function(err)
      if err then return end
      local c = uv.new_tcp()
      if t:accept(c) then self.handoff:give(c) else c:close() end
    end)
    s.relay = t
  elseif not on and s.relay then
    -- Closes the primary's duplicate only; the socket stays open.
    if not s.relay:is_closing() then s.relay:close() end
    s.relay = nil
  end
end

local function relays(self)
  for _, s in ipairs(self.sockets) do relay(self, s) end
end

-- pick(worker) -> the socket for worker: its slot's (worker._slot, set by
-- supervision: the one its predecessor had, for a restart, or a reload's
-- new worker sharing with the old), else one no worker holds, else a new
-- one; or nil, message, code.
local function pick(self, worker)
  local slot = worker._slot
  for _, s in ipairs(self.sockets) do
    if slot and s.slot == slot then return s end
  end
  for _, s in ipairs(self.sockets) do
    if s.n == 0 then return s end
  end
  local fd, msg, code = Base.socket({address = self.address,
    port = self.port, backlog = self.backlog}, true, false)
  if not fd then return nil, msg, code end
  local s = {fd = fd, holders = {}, n = 0}
  self.sockets[#self.sockets + 1] = s
  return s
end

-- add(worker, send): answers the worker with its socket (passed as an fd;
-- ours stays open) or the error.
function ReusePort:add(worker, send)
  if self.err then return send(self.err) end
  local s = self.of[worker]
  if not s then
    local msg, code
    s, msg, code = pick(self, worker)
    if not s then return send(utils.error(code, msg)) end
    s.holders[worker] = true
    s.n = s.n + 1
    s.slot = worker._slot
    self.of[worker] = s
  end
  self.seen[worker] = true
  self:track(worker)
  send(nil, {port = self.port}, s.fd)
  self.handoff:add(worker)
  relays(self)
end

-- remove(worker, gone) -> true when no worker is left. The worker stops
-- counting now (it drains, or is gone); its socket is released once it is
-- gone (gone: it closed its server, its channel closed or it exited), as
-- until then it may still accept from it.
function ReusePort:remove(worker, gone)
  self.handoff:remove(worker)
  local s = self.of[worker]
  if s and gone then
    self.of[worker] = nil
    s.holders[worker] = nil
    s.n = s.n - 1
  end
  relays(self)
  return Base.remove(self, worker)
end

-- knows(worker) -> whether worker asked this handle for a socket already.
function ReusePort:knows(worker)
  return self.seen[worker] ~= nil
end

-- Closes socket s: what waits in its queue is accepted first and handed to
-- the workers (or, with nobody to serve it, reset by the close).
local function retire(self, s, serve)
  for i, x in ipairs(self.sockets) do
    if x == s then table.remove(self.sockets, i) break end
  end
  if s.relay then
    if not s.relay:is_closing() then s.relay:close() end
    s.relay = nil
  end
  local queued = serve and tcp.accept_all(s.fd) or {}
  tcp.close(s.fd)
  for _, fd in ipairs(queued) do
    local c = utils.wrap_fd(fd)
    if c then self.handoff:give(c) end
  end
end

-- trim(newcomers): keeps as many sockets no worker holds as workers may
-- still come to take them (newcomers: forked and not yet listening here,
-- or restarts scheduled), and closes the others.
function ReusePort:trim(newcomers)
  local spare = {}
  for _, s in ipairs(self.sockets) do
    if s.n == 0 then spare[#spare + 1] = s end
  end
  local serve = newcomers > 0 or self.handoff:count() > 0
  for i = newcomers + 1, #spare do retire(self, spare[i], serve) end
end

function ReusePort:close()
  for _, s in ipairs(self.sockets) do
    if s.relay and not s.relay:is_closing() then s.relay:close() end
    s.relay = nil
    tcp.close(s.fd)
  end
  self.sockets, self.of = {}, {}
  self.handoff:close()
  if self.fd then
    tcp.close(self.fd)
    self.fd = nil
  end
  if self.lock then
    tcp.close(self.lock)
    self.lock = nil
  end
end

return ReusePort
