-- cluster.shared_handle: SCHED_NONE. The primary binds and listens once;
-- every worker gets the same listening socket and accepts from it, so the
-- kernel spreads connections and the primary stays out of the data path.

local uv = require('uv')
local utils = require('cluster.utils')

local SharedHandle = {}
SharedHandle.__index = SharedHandle
setmetatable(SharedHandle, utils.HandleBase)

-- new(key, opts) binds opts.address:opts.port (opts.backlog); a bind error
-- is kept and answered to every worker that asks.
function SharedHandle.new(key, opts)
  local self = setmetatable({key = key, workers = {}, count = 0}, SharedHandle)
  local fd, port = utils.listener(opts)
  if not fd then
    self.err = port
    return self
  end
  self.tcp = uv.new_tcp()
  self.tcp:open(fd)
  self.port = port
  return self
end

-- add(worker, send): answers the worker with the handle or the error.
function SharedHandle:add(worker, send)
  if self.err then return send(self.err) end
  self:track(worker)
  send(nil, {port = self.port}, self.tcp)
end

function SharedHandle:close()
  if self.tcp and not self.tcp:is_closing() then self.tcp:close() end
end

return SharedHandle
