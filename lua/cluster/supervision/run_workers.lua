-- cluster.supervision.run_workers: the `luacluster -w N|auto script.lua`
-- command (lua/init.lua calls run). It runs an unmodified single-process
-- server script in N workers under this built-in primary: restart on
-- failure with backoff (and a non-zero exit once the restart limit left no
-- worker), graceful shutdown on SIGTERM/SIGINT, rolling reload on SIGHUP,
-- the status endpoint on LUACLUSTER_STATUS_PORT, and each worker's output
-- line prefixed with its id (a line is written whole, never mixed with
-- another: cluster/output.lua).

local state = require('cluster.supervision.state')
local restart = require('cluster.supervision.restart')

local M = {}

-- env_number(log, name) -> the whole number >= 0 in that variable, or nil
-- when it is unset; anything else is logged and ends the process as a bad
-- option does (9).
local function env_number(log, name)
  local v = process.env[name]
  if v == nil or v == '' then return nil end
  local n = tonumber(v)
  if not n or n < 0 or n % 1 ~= 0 then
    log('%s must be a whole number >= 0, got "%s"', name, v)
    require('_lc').exit(9)
  end
  return n
end

-- run(o): o.workers (a count or 'auto'), o.script, o.args: the options
-- lua/init.lua parsed.
function M.run(o)
  local cluster = require('cluster')
  local log = state.log
  local n = o.workers == 'auto' and require('os').availableParallelism()
    or tonumber(o.workers)
  cluster.setupPrimary({exec = o.script, args = o.args,
    restart = 'on-failure', silent = true,
    maxRestarts = env_number(log, 'LUACLUSTER_MAX_RESTARTS'),
    restartWindow = env_number(log, 'LUACLUSTER_RESTART_WINDOW'),
    statusPort = tonumber(process.env.LUACLUSTER_STATUS_PORT)})
  -- Once the restart limit leaves no worker, the primary exits non-zero
  -- (cluster/supervision/restart.lua), so systemd's Restart=on-failure
  -- restarts it.
  restart.exit_when_down = true
  -- A silent worker's lines reach our output prefixed with its id
  -- (cluster/output.lua), as nothing here listens to them.
  cluster.on('fork', function(w)
    log('worker %d (pid %d) started', w.id, w.process.pid)
  end)
  cluster.on('listening', function(w, a)
    if a.addressType == -1 then
      log('worker %d listening on %s', w.id, tostring(a.address))
    else
      log('worker %d listening on port %d', w.id, a.port)
    end
  end)
  cluster.on('exit', function(w, code, signal)
    log('worker %d (pid %d) exited (%s)', w.id,
      w.process.pid or 0, signal or ('code ' .. tostring(code)))
  end)
  log('primary %d running %s in %d worker(s)', process.pid,
    o.script, n)
  for _ = 1, n do cluster.fork() end
end

return M
