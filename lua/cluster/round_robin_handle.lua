-- cluster.round_robin_handle: SCHED_RR. The primary accepts every
-- connection and hands it to the next worker in turn over its IPC channel
-- (cluster/handoff.lua), which spreads load evenly whatever the kernel
-- does, at the cost of the primary touching every new connection. A
-- connection stays the primary's until the worker says it took it, so one
-- handed to a worker that dies or closes its server first goes to another.

local uv = require('uv')
local utils = require('cluster.utils')
local Handoff = require('cluster.handoff')

local RoundRobinHandle = {}
RoundRobinHandle.__index = RoundRobinHandle
setmetatable(RoundRobinHandle, utils.HandleBase)

function RoundRobinHandle.new(key, opts)
  local self = setmetatable({key = key, workers = {}, count = 0,
    handoff = Handoff.new(key)}, RoundRobinHandle)
  local fd, port = utils.listener(opts)
  if not fd then
    self.err = port
    return self
  end
  self.port = port
  local server = uv.new_tcp()
  server:open(fd)
  server:listen(opts.backlog or 511, function(err)
    if not err then self:_accept() end
  end)
  self.server = server
  return self
end

function RoundRobinHandle:_accept()
  local c = uv.new_tcp()
  if not self.server:accept(c) then
    c:close()
    return
  end
  -- With no worker yet (or all gone), it waits in the handoff.
  self.handoff:give(c)
end

function RoundRobinHandle:add(worker, send)
  if self.err then return send(self.err) end
  self:track(worker)
  send(nil, {port = self.port})
  self.handoff:add(worker)
end

-- remove(worker) -> true when no worker is left. What was handed to it
-- and not answered for goes to the others once its channel has closed.
function RoundRobinHandle:remove(worker)
  self.handoff:remove(worker)
  return utils.HandleBase.remove(self, worker)
end

function RoundRobinHandle:close()
  if self.server and not self.server:is_closing() then
    self.server:close()
  end
  self.handoff:close()
end

return RoundRobinHandle
