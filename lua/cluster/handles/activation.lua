-- cluster.handles.activation: sockets passed by systemd (socket
-- activation: LISTEN_PID, LISTEN_FDS, from fd 3 on), by port. A worker
-- asking for that port gets one of them instead of a new bind
-- (cluster/handles/registry.lua); they are shared (or round robin), never
-- reuseport.
--
-- Read when the primary first needs them (its first setupPrimary, which
-- every fork makes, or a first listen), not when cluster is required. The
-- variables then leave the environment, so no worker (or other program the
-- primary starts) takes the sockets for its own.

local uv = require('uv')
local ipc = require('_ipc')
local tcp = require('_tcp')

local M = {}

local activated   -- port -> {fd=, address=, taken=}, once read

-- load(): reads what systemd passed, once.
function M.load()
  if activated then return end
  activated = {}
  local n = tonumber(process.env.LISTEN_FDS)
  if n and tonumber(process.env.LISTEN_PID) == process.pid then
    for fd = 3, 3 + n - 1 do
      local a = tcp.sockname(fd)
      if a then
        ipc.cloexec(fd)
        activated[a.port] = {fd = fd, address = a.address}
      end
    end
  end
  for _, k in ipairs({'LISTEN_PID', 'LISTEN_FDS', 'LISTEN_FDNAMES'}) do
    process.env[k] = nil
    uv.os_unsetenv(k)
  end
end

-- socket(port) -> the fd systemd passed for port, or nil.
function M.socket(port)
  M.load()
  local a = activated[port]
  if a then a.taken = true end
  return a and a.fd
end

-- untaken() -> {{port=, fd=, address=}, ...}: the sockets passed that no
-- listen asked for (their connections wait in a backlog no one serves).
function M.untaken()
  local out = {}
  for port, a in pairs(activated or {}) do
    if not a.taken then
      out[#out + 1] = {port = port, fd = a.fd, address = a.address}
    end
  end
  table.sort(out, function(x, y) return x.port < y.port end)
  return out
end

return M
