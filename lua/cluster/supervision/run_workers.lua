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

-- What -w sets unless told otherwise: restart on failure, and the watchdog
-- on with gunicorn's worker timeout (30 s): a loop stalled that long is
-- hung, not busy, and a hung worker would otherwise keep its share of new
-- connections while /health says ok.
M.DEFAULTS = {restart = 'on-failure', heartbeat = 30000}

-- settings(o) -> the supervision settings for setupPrimary: each from its
-- flag (o.supervise), else its variable, else M.DEFAULTS; a bad variable
-- is logged and ends the process as a bad option does (9).
function M.settings(o)
  local out = {}
  for _, s in ipairs(require('init').SUPERVISION) do
    local key, name = s[2], s[3]
    local v = o.supervise and o.supervise[key]
    local e = process.env[name]
    if v == nil and e ~= nil and e ~= '' then
      if key == 'statusHost' then
        v = e
      elseif key == 'restart' then
        v = e
        if v ~= 'never' and v ~= 'on-failure' and v ~= 'always' then v = nil end
      else
        v = tonumber(e)
        if v and (v < 0 or v % 1 ~= 0) then v = nil end
      end
      if v == nil then
        state.error('%s must be %s, got "%s"', name, key == 'restart' and
          'never, on-failure or always' or 'a whole number >= 0', e)
        require('_lc').exit(9)
      end
    end
    if v == nil then v = M.DEFAULTS[key] end
    out[key] = v
  end
  if out.heartbeat == 0 then out.heartbeat = nil end
  return out
end

-- run(o): o.workers (a count or 'auto'), o.script, o.args, o.supervise:
-- the options lua/init.lua parsed.
function M.run(o)
  local cluster = require('cluster')
  local log = state.log
  local n = o.workers == 'auto' and require('os').availableParallelism()
    or tonumber(o.workers)
  local settings = M.settings(o)
  settings.exec, settings.args, settings.silent = o.script, o.args, true
  cluster.setupPrimary(settings)
  -- An access log to stdout: the workers write it to ours directly, not
  -- through the lines passed on with a time and a worker id.
  -- A port another luacluster serves: restarting workers will not free
  -- it, so the primary stops, exit code 1, as a second node would.
  require('cluster.handles.reuseport').on_taken = function(port)
    if state.shutting then return end
    state.error('port %d is served by another luacluster (EADDRINUSE; ' ..
      '--reuse-port shares it): stopping', port)
    cluster.shutdown(function() process.exit(1) end)
  end
  local alog = process.env.LUACLUSTER_ACCESS_LOG
  if alog == '-' then
    cluster._internal:on('spawn', function(_, env, stdio)
      stdio[#stdio + 1] = 1
      env.LUACLUSTER_ACCESS_LOG = 'fd:' .. (#stdio - 1)
    end)
  elseif alog and alog ~= '' then
    -- logrotate signals the primary (its pid is the service's): each
    -- worker reopens the file (http/access_log.lua).
    local uv = require('uv')
    local sig = uv.new_signal()
    sig:start('sigusr1', function()
      for _, w in pairs(cluster.workers) do
        if w.process.pid then pcall(uv.kill, w.process.pid, 'sigusr1') end
      end
    end)
    sig:unref()
  end
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
