-- cluster.supervision.readiness: tells whoever started the primary how it
-- stands. systemd's notify protocol (Type=notify: READY=1 once every
-- worker listens, RELOADING=1 and READY=1 around a reload, STOPPING=1),
-- and the 'ready' event on cluster, beyond Node's.

local systemd = require('_systemd')
local state = require('cluster.supervision.state')

local M = {}

local ready_sent = false
local notify_path = process.env.NOTIFY_SOCKET

-- notify(text): one notify message to systemd, if it listens.
function M.notify(text)
  if notify_path then systemd.notify(notify_path, text) end
end

-- Once every worker listens (the first time; a reload says READY=1 when
-- it is done): READY=1 and 'ready'.
local function check()
  if ready_sent or state.reloading then return end
  local cluster = state.cluster
  for _, w in pairs(cluster.workers) do
    if w.state ~= 'listening' then return end
  end
  ready_sent = true
  -- A socket systemd passed that no listen took: say so, by name, as
  -- nothing else would (its clients wait, unanswered).
  for _, a in ipairs(require('cluster.handles.activation').untaken()) do
    state.warn('the socket passed by systemd on %s port %d (fd %d) is not ' ..
      'listened on: its connections wait unserved (listen on port %d, or ' ..
      'remove it from the .socket unit)', a.address, a.port, a.fd, a.port)
  end
  M.notify('READY=1\nSTATUS=all workers listening\nMAINPID=' .. process.pid)
  cluster:emit('ready')
end

-- attach(cluster): listens to 'listening', and looks on the next tick, so
-- 'ready' follows the script's own listeners of the last 'listening'.
function M.attach(cluster)
  cluster:on('listening', function() process.nextTick(check) end)
end

return M
