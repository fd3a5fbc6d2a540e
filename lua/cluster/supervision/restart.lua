-- cluster.supervision.restart: replaces workers that exit, as the restart
-- policy says (setupPrimary{restart, restartDelay, maxRestarts,
-- restartWindow}; the watchdog's victims always), after a backoff per
-- worker slot, up to the restart limit; and keeps the listening sockets
-- open for the replacements meanwhile (cluster/handles/registry.lua).
--
-- Listens to 'fork' (a new worker gets a slot) and 'exit' (the decision,
-- taken on the next tick: after the script's own 'exit' listeners, and
-- before the primary closes the sockets no worker will take).

local uv = require('uv')
local state = require('cluster.supervision.state')
local readiness = require('cluster.supervision.readiness')
local status = require('cluster.supervision.status')
local registry = require('cluster.handles.registry')

local M = {}

local setting, log, warn = state.setting, state.log, state.warn
local restart_log = {} -- uv.now() of each restart, for maxRestarts
local pending = 0      -- restarts scheduled, not forked yet
local down_code        -- set once the restart limit left a worker down

-- Whether the primary exits once the restart limit left no worker (set
-- under -w, cluster/supervision/run_workers.lua); a script's primary
-- carries on.
M.exit_when_down = false

-- fork(env, slot) -> a new worker in slot: a replacement (a restart, or a
-- reload's new worker) inherits its predecessor's slot, so the backoff and
-- the restart count follow the role, not the process; the SO_REUSEPORT
-- handle gives it its predecessor's socket (cluster/handles/reuseport.lua).
function M.fork(env, slot)
  local w = state.cluster.fork(env)
  w._slot = slot
  return w
end

-- Slot numbers in use (n -> slot): 1..N, the lowest free one for a new
-- slot, kept by its replacements, so metrics have a label that does not
-- change with each restart or reload (worker ids do).
local numbers = {}

-- slot(worker) -> the worker's slot, made on first use (a worker forked by
-- the script starts one of its own).
function M.slot(worker)
  local slot = worker._slot
  if not slot then
    local n = 1
    while numbers[n] do n = n + 1 end
    slot = {delay = 0, restarts = 0, id = worker.id, n = n}
    numbers[n] = slot
    worker._slot = slot
  end
  return slot
end

-- A slot no live worker fills and no restart will is free again.
local function release(worker)
  local slot = worker._slot
  if not slot then return end
  for _, w in pairs(state.cluster.workers) do
    if w._slot == slot then return end
  end
  if numbers[slot.n] == slot then numbers[slot.n] = nil end
end

local function forked(worker)
  worker._started = worker._started or uv.now()
  M.slot(worker)
end

-- After the restart limit: once no worker is left and none is coming back,
-- the sockets kept for replacements close, as no one will serve them (a
-- script's primary then ends with its loop, with process.exitCode, as
-- Node's does). Under -w the primary exits with down_code, non-zero, so a
-- service manager sees the failure (systemd's Restart=on-failure).
local function check_down()
  local cluster = state.cluster
  if not down_code or state.shutting or state.reloading or pending > 0 or
      next(cluster.workers) then
    return
  end
  registry.closeAll()
  if not M.exit_when_down then return end
  state.shutting = true
  readiness.notify('STOPPING=1')
  status.stop()
  state.error('no worker left after the restart limit: exiting with code %d',
    down_code)
  -- After the rest of this tick's callbacks.
  process.nextTick(process.exit, down_code)
end

local function give_up(worker, count, code)
  local window = setting('restartWindow')
  state.error('%d restarts within %d ms (maxRestarts %d): no more restarts; ' ..
    'worker %d stays down', count, window, setting('maxRestarts'), worker.id)
  -- The worker's own exit code when it has one, so `-w` exits as the script
  -- would alone; 1 for a worker killed by a signal.
  down_code = (code and code ~= 0) and code or 1
  state.cluster:emit('restartLimit', worker, {restarts = count,
    window = window})
  check_down()
end

-- Once 'exit' was emitted: replaces the worker if the policy says so (the
-- watchdog's victims always), after the slot's backoff.
local function exited(worker, code, signal)
  if state.shutting then return end
  local replace = worker._unresponsive
  if not replace and not worker.exitedAfterDisconnect and not
      worker._replaced then
    local policy = setting('restart')
    replace = policy == 'always' or (policy == 'on-failure' and
      (signal ~= nil or code ~= 0))
  end
  if not replace then
    release(worker)
    return check_down()
  end
  local now = uv.now()
  local window = setting('restartWindow')
  local kept = {}
  for _, t in ipairs(restart_log) do
    if now - t < window then kept[#kept + 1] = t end
  end
  restart_log = kept
  if #restart_log >= setting('maxRestarts') and not worker._unresponsive then
    release(worker)
    return give_up(worker, #restart_log, code)
  end
  restart_log[#restart_log + 1] = now
  local slot = M.slot(worker)
  if now - (worker._started or now) >= window then
    slot.delay = 0
  end
  slot.delay = slot.delay == 0 and setting('restartDelay') or
    math.min(slot.delay * 2, 30000)
  local delay = worker._unresponsive and 0 or slot.delay
  warn('worker %d (pid %s) %s; restarting in %d ms', worker.id,
    tostring(worker.process.pid), signal and ('killed by ' .. signal) or
    ('exited with code ' .. tostring(code)), delay)
  local t = uv.new_timer()
  pending = pending + 1
  t:start(delay, 0, function()
    t:close()
    pending = pending - 1
    if state.shutting then return end
    slot.restarts = slot.restarts + 1
    local nw = M.fork(worker._env, slot)
    state.cluster:emit('restart', nw, worker)
  end)
end

function M.attach(cluster)
  cluster:on('fork', forked)
  cluster:on('exit', function(worker, code, signal)
    process.nextTick(exited, worker, code, signal)
  end)
  -- A handle no worker uses any more closes, as in Node; but while the
  -- primary restarts workers (a restart policy, a reload) it stays open, so
  -- connections wait in its backlog for the replacement instead of being
  -- refused (not when shutting down, and not under Node's semantics:
  -- restart = 'never'). Replacements scheduled and not forked yet count as
  -- workers to come.
  registry.retain({
    keepsSockets = function()
      if state.shutting then return false end
      return state.reloading or setting('restart') ~= 'never'
    end,
    expected = function() return pending end,
  })
end

return M
