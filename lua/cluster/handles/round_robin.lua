-- cluster.handles.round_robin: SCHED_RR (Node's round_robin_handle.js). The
-- primary accepts every connection and hands it to a worker over its IPC
-- channel (cluster/handles/handoff.lua: one unanswered connection a worker
-- at most, the next to the worker free the longest), which spreads load
-- evenly whatever the kernel does, at the cost of the primary touching
-- every new connection. A connection stays the primary's until the worker
-- says it took it, so one handed to a worker that dies or closes its
-- server first goes to another.

local uv = require('uv')
local utils = require('cluster.utils')
local Base = require('cluster.handles.base')
local Handoff = require('cluster.handles.handoff')

local RoundRobin = setmetatable({}, Base)
RoundRobin.__index = RoundRobin

-- new(key, opts) binds and listens on a port or opts.path (a Unix socket:
-- Node's cluster hands those round robin too), or adopts opts.fd; a bind
-- error is kept and answered to every worker that asks.
function RoundRobin.new(key, opts)
  local self = Base.init(setmetatable({handoff = Handoff.new(key),
    path = opts.path}, RoundRobin), key)
  local fd, port, code = Base.listener(opts)
  if not fd then return Base.fail(self, port, code) end
  self.bound = opts.path ~= nil
  self.port = port
  -- A luv tcp, or a pipe on a path; connections are of the same kind.
  local server = utils.wrap_fd(fd)
  if not server then
    Base.unlink(self)
    return Base.fail(self, 'EBADF: bad file descriptor', 'EBADF')
  end
  self.pipe = server:get_type() == 'pipe'
  server:listen(opts.backlog or 511, function(err)
    if not err then self:_accept() end
  end)
  self.server = server
  return self
end

function RoundRobin:_accept()
  local c = self.pipe and uv.new_pipe(false) or uv.new_tcp()
  if not self.server:accept(c) then
    c:close()
    return
  end
  -- With no worker free (or none at all), it waits in the handoff.
  self.handoff:give(c)
end

-- add(worker, send): answers the worker (no socket: connections come one
-- by one), then hands it connections.
function RoundRobin:add(worker, send)
  if self.err then return send(self.err) end
  self:track(worker)
  send(nil, {port = self.port})
  self.handoff:add(worker)
end

-- remove(worker) -> true when no worker is left. What was handed to it
-- and not answered for goes to the others once its channel has closed.
function RoundRobin:remove(worker)
  self.handoff:remove(worker)
  return Base.remove(self, worker)
end

function RoundRobin:close()
  if self.server and not self.server:is_closing() then
    self.server:close()
  end
  self.handoff:close()
  Base.unlink(self)
end

return RoundRobin
