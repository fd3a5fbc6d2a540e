-- cluster.supervision.shutdown: graceful shutdown (cluster.shutdown([cb]),
-- SIGTERM and SIGINT): the listening sockets close at once, every worker
-- drains (stops accepting, finishes what it has, exits) and is killed
-- after shutdownTimeout; then the primary exits, 0, or 1 if it had to kill.
-- retire(), the draining of one worker, serves the rolling reload too
-- (cluster/supervision/reload.lua).

local uv = require('uv')
local state = require('cluster.supervision.state')
local readiness = require('cluster.supervision.readiness')
local status = require('cluster.supervision.status')
local registry = require('cluster.handles.registry')

local M = {}

local setting, log = state.setting, state.log

-- retire(w, cb): drains worker w: it stops accepting, finishes what it
-- has, and exits; killed after shutdownTimeout. cb(killed) once it is gone.
function M.retire(w, cb)
  if w.state == 'dead' then return cb(false) end
  local killed = false
  local t = uv.new_timer()
  t:start(setting('shutdownTimeout'), 0, function()
    killed = true
    state.warn('worker %d (pid %d) did not finish within shutdownTimeout ' ..
      '(%d ms): killing it', w.id, w.process.pid, setting('shutdownTimeout'))
    pcall(uv.kill, w.process.pid, 'sigkill')
  end)
  w:once('exit', function()
    t:close()
    cb(killed)
  end)
  w._replaced = true
  w:_drain()
end

local callbacks = {}

-- shutdown([cb]): listening sockets close at once, workers finish what they
-- have and exit; the primary exits 0, or 1 if shutdownTimeout ran out and it
-- had to kill. cb() runs just before the primary exits.
function M.shutdown(cb)
  if cb then callbacks[#callbacks + 1] = cb end
  if state.shutting then return end
  state.shutting = true
  readiness.notify('STOPPING=1')
  registry.closeAll()
  status.stop()
  local cluster = state.cluster
  local list = {}
  for _, w in pairs(cluster.workers) do list[#list + 1] = w end
  log('shutting down %d worker(s)', #list)
  local left, code = #list, 0
  local function finish()
    log('shutdown done%s', code ~= 0 and ' (some workers were killed)' or '')
    for _, f in ipairs(callbacks) do f() end
    process.exit(code)
  end
  if left == 0 then return process.nextTick(finish) end
  for _, w in ipairs(list) do
    M.retire(w, function(killed)
      if killed then code = 1 end
      left = left - 1
      -- After the rest of this worker's 'exit' listeners.
      if left == 0 then process.nextTick(finish) end
    end)
  end
end

-- force(): a second Ctrl-C: no more waiting.
function M.force()
  state.warn('forced shutdown: killing every worker')
  for _, w in pairs(state.cluster.workers) do
    if w.process.pid then pcall(uv.kill, w.process.pid, 'sigkill') end
  end
  process.exit(1)
end

return M
