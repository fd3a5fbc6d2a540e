-- cluster.supervision: what the primary does beyond Node's cluster, opt-in
-- from scripts (setupPrimary), on under `luacluster -w`. Attached to the
-- primary by the entry (lua/cluster.lua); each part listens to cluster's
-- events, and the primary calls none of them:
--   supervision/restart.lua      restart policy, backoff, restart limit
--   supervision/watchdog.lua     kills a worker whose loop stalls
--   supervision/heartbeat.lua    the workers' reports (both ends)
--   supervision/reload.lua       rolling reload
--   supervision/shutdown.lua     graceful shutdown
--   supervision/status.lua       cluster.stats() and the status endpoint
--   supervision/readiness.lua    systemd's notify protocol, 'ready'
--   supervision/state.lua        what they share: settings, phase, log
--   supervision/run_workers.lua  the `luacluster -w` command
-- This file wires them, adds cluster.reload, cluster.shutdown and
-- cluster.stats, and answers the signals that drive them.

local state = require('cluster.supervision.state')
local restart = require('cluster.supervision.restart')
local watchdog = require('cluster.supervision.watchdog')
local heartbeat = require('cluster.supervision.heartbeat')
local reload = require('cluster.supervision.reload')
local shutdown = require('cluster.supervision.shutdown')
local status = require('cluster.supervision.status')
local readiness = require('cluster.supervision.readiness')

local M = {}

-- SIGTERM and SIGINT shut down (a second SIGINT forces), SIGHUP reloads,
-- unless the script listens for that signal itself.
local function install_signals()
  local function handler(sig)
    return function()
      if process:listenerCount(sig) > 1 then return end
      if sig == 'SIGHUP' then
        reload.reload()
      elseif state.shutting then
        if sig == 'SIGINT' then shutdown.force() end
      else
        state.log('%s: shutting down gracefully (Ctrl-C again to force)',
          sig)
        shutdown.shutdown()
      end
    end
  end
  for _, sig in ipairs({'SIGTERM', 'SIGINT', 'SIGHUP'}) do
    process:on(sig, handler(sig))
  end
end

-- attach(cluster): supervises cluster (the primary's), once.
function M.attach(cluster)
  if state.cluster then return end
  state.cluster = cluster
  -- Checked where setupPrimary is called (the primary raises).
  cluster._internal:on('setup', state.check)
  heartbeat.attach(cluster)
  restart.attach(cluster)
  readiness.attach(cluster)
  -- On each setupPrimary (every fork makes one): the watchdog arms once a
  -- heartbeat is set, the endpoint starts once a statusPort is, and the
  -- signals are the primary's from the first on. One listener, not one a
  -- part: a script sees supervision's listeners (listenerCount, the
  -- max-listeners warning), so it adds one an event at most.
  local installed = false
  cluster:on('setup', function()
    watchdog.arm()
    status.start(cluster)
    if installed then return end
    installed = true
    install_signals()
  end)
  -- Beyond Node's API, with a dot or a colon as cluster's own functions.
  local api = {
    reload = reload.reload,
    shutdown = shutdown.shutdown,
    stats = function() return status.stats(cluster.workers) end,
  }
  for name, fn in pairs(api) do
    cluster[name] = function(first, ...)
      if first == cluster then return fn(...) end
      return fn(first, ...)
    end
  end
end

return M
