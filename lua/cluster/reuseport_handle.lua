-- cluster.reuseport_handle: SCHED_REUSEPORT. Each worker binds its own
-- SO_REUSEPORT socket and the kernel hashes connections across them. The
-- primary only binds (never listens) one socket to resolve port 0 and to
-- hold the port while workers come and go; a socket that does not listen is
-- not in the kernel's reuseport group, so it takes no connections.

local utils = require('cluster.utils')

local ReusePortHandle = {}
ReusePortHandle.__index = ReusePortHandle
setmetatable(ReusePortHandle, utils.HandleBase)

function ReusePortHandle.new(key, opts)
  local self = setmetatable({key = key, workers = {}, count = 0},
    ReusePortHandle)
  local fd, port = utils.socket(opts, true, true)
  if not fd then
    self.err = port
    return self
  end
  self.fd, self.port = fd, port
  return self
end

function ReusePortHandle:add(worker, send)
  if self.err then return send(self.err) end
  self:track(worker)
  send(nil, {port = self.port, reuseport = self.port})
end

function ReusePortHandle:close()
  if self.fd then
    utils.close(self.fd)
    self.fd = nil
  end
end

return ReusePortHandle
