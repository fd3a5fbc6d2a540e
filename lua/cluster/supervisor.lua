-- cluster.supervisor: `luacluster -w N|auto script.lua` runs an unmodified
-- single-process server script in N workers under this built-in primary:
-- restart on failure with backoff, graceful shutdown on SIGTERM/SIGINT,
-- rolling reload on SIGHUP, and each worker's output line prefixed with its
-- id (a line is written whole, never mixed with another).

local lc = require('_lc')

local M = {}

-- Splits a stream into whole lines and writes each with the prefix, in one
-- write per chunk of complete lines; a partial line waits for its end.
local function prefixer(fd, prefix)
  local partial = ''
  local function write(data)
    data = partial .. data
    local last = data:match('.*()\n')
    if not last then
      partial = data
      return
    end
    partial = data:sub(last + 1)
    local lines = data:sub(1, last)
    lc.write(fd, (lines:gsub('([^\n]*\n)', prefix .. '%1')))
  end
  local function finish()
    if partial ~= '' then
      lc.write(fd, prefix .. partial .. '\n')
      partial = ''
    end
  end
  return write, finish
end
M.prefixer = prefixer

function M.run(o)
  local cluster = require('cluster')
  local supervise = require('cluster.supervise')
  local n = o.workers == 'auto' and require('os').availableParallelism()
    or tonumber(o.workers)
  cluster.setupPrimary({exec = o.script, args = o.args,
    restart = 'on-failure', silent = true,
    statusPort = tonumber(process.env.LUACLUSTER_STATUS_PORT)})
  -- A silent worker's lines reach our output prefixed with its id
  -- (cluster/primary.lua), as nothing here listens to them.
  cluster.on('fork', function(w)
    supervise.log('worker %d (pid %d) started', w.id, w.process.pid)
  end)
  cluster.on('listening', function(w, a)
    supervise.log('worker %d listening on port %d', w.id, a.port)
  end)
  cluster.on('exit', function(w, code, signal)
    supervise.log('worker %d (pid %d) exited (%s)', w.id,
      w.process.pid or 0, signal or ('code ' .. tostring(code)))
  end)
  supervise.log('primary %d running %s in %d worker(s)', process.pid,
    o.script, n)
  for _ = 1, n do cluster.fork() end
end

return M
