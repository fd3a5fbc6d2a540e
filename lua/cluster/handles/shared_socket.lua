-- cluster.handles.shared_socket: SCHED_NONE (Node's shared_handle.js). The
-- primary binds and listens once; every worker gets the same listening
-- socket and accepts from it, so the kernel spreads connections and the
-- primary stays out of the data path.
--
-- Named for what it shares, a socket: "shared" alone would read as the
-- shared-dict module (require('shared'), lua/shared.lua).

local Base = require('cluster.handles.base')
local utils = require('cluster.utils')

local SharedSocket = setmetatable({}, Base)
SharedSocket.__index = SharedSocket

-- new(key, opts) binds opts.address:opts.port (opts.backlog) or
-- opts.path (a Unix socket), or adopts opts.fd; a bind error is kept and
-- answered to every worker that asks.
function SharedSocket.new(key, opts)
  local self = Base.init(setmetatable({path = opts.path}, SharedSocket),
    key)
  local fd, port, code = Base.listener(opts)
  if not fd then return Base.fail(self, port, code) end
  self.bound = opts.path ~= nil
  -- A luv tcp, or a pipe on a path.
  self.socket = utils.wrap_fd(fd)
  if not self.socket then
    Base.unlink(self)
    return Base.fail(self, 'EBADF: bad file descriptor', 'EBADF')
  end
  self.port = port
  return self
end

-- add(worker, send): answers the worker with the socket or the error.
function SharedSocket:add(worker, send)
  if self.err then return send(self.err) end
  self:track(worker)
  send(nil, {port = self.port}, self.socket)
end

function SharedSocket:close()
  if self.socket and not self.socket:is_closing() then self.socket:close() end
  Base.unlink(self)
end

return SharedSocket
