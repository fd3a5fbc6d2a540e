-- cluster.handles.base: what every scheduling handle shares: the workers
-- listening through it, counted, and the listening sockets it makes.
--
-- A handle answers one listen key (address, port, address type, index) for
-- every worker that asks, one strategy each (Node's
-- lib/internal/cluster/{round_robin,shared}_handle.js), behind one
-- interface the primary uses (cluster/handles/registry.lua):
--   Handle.new(key, opts)  binds at once; a bind error is kept in h.err
--   h:add(worker, send)    send(err, reply[, socket]): the worker's answer
--   h:remove(worker, gone) -> true when no worker is left
--   h:close()              closes what the handle holds
-- and, for SCHED_REUSEPORT, h:knows(worker) and h:trim(newcomers).
--
-- On a path (a Unix socket), the primary binds the listening socket, and
-- closing the handle removes the socket file, as Node's primary does when
-- its pipe server closes.

local tcp = require('_tcp')
local unix = require('_unix')
local utils = require('cluster.utils')

local Base = {}
Base.__index = Base

-- Base.init(self, key) -> self with the bookkeeping fields.
function Base.init(self, key)
  self.key, self.workers, self.count = key, {}, 0
  return self
end

-- fail(self, message, code): keeps a bind error, answered to every worker
-- that asks; returns self.
function Base.fail(self, message, code)
  self.err = utils.error(code, message)
  return self
end

function Base:track(worker)
  if not self.workers[worker] then
    self.workers[worker] = true
    self.count = self.count + 1
  end
end

-- remove(worker) -> true when no worker is left (the caller closes it).
function Base:remove(worker)
  if self.workers[worker] then
    self.workers[worker] = nil
    self.count = self.count - 1
  end
  return self.count == 0
end

-- unlink(self): removes the socket file of a handle on a path whose
-- socket this primary bound (not one whose bind failed: the file there is
-- someone else's).
function Base.unlink(self)
  if self.path and self.bound then
    self.bound = false
    os.remove(self.path)
  end
end

------------------------------------------------------------------------------
-- Sockets.

-- socket(opts, reuseport, bind_only) -> fd, port; or nil, message, code.
-- Binds at once (so EADDRINUSE is known now, where libuv would defer it to
-- listen); bind_only makes a holder of the port that takes no connections.
function Base.socket(opts, reuseport, bind_only)
  local backlog = bind_only and -1 or (opts.backlog or 511)
  local fd, msg, code = tcp.listen_fd(opts.address, opts.port, backlog,
    reuseport)
  if not fd then return nil, msg, code end
  local name = tcp.sockname(fd)
  return fd, name and name.port or opts.port
end

-- listener(opts) -> fd, port of a listening socket for opts: a duplicate of
-- opts.fd (a socket handed over already listening, by systemd socket
-- activation: the original outlives the handle), a Unix socket bound to
-- opts.path (port -1, as Node's cluster says; opts.readableAll and
-- writableAll), else a new TCP one; or nil, message, code.
function Base.listener(opts)
  if opts.path then
    local fd, msg, code = unix.listen_fd(opts.path, opts.backlog or 511,
      opts.readableAll, opts.writableAll)
    if not fd then return nil, msg, code end
    return fd, -1
  end
  if opts.fd then
    local fd, msg, code = tcp.dup(opts.fd)
    if not fd then return nil, msg, code end
    return fd, opts.port
  end
  return Base.socket(opts, false, false)
end

return Base
