-- cluster.supervise: what the primary does beyond Node's cluster. Restarts
-- with backoff, the hung-worker watchdog, stats, rolling reload, graceful
-- shutdown, the signals that drive them, and systemd's readiness protocol.
-- Opt-in from scripts (setupPrimary), on under `luacluster -w`.

local uv = require('uv')
local systemd = require('_systemd')

local M = {}

local cluster          -- cluster.primary, set by M.attach
local slots = {}       -- slot id -> {delay=, restarts=}
local restart_log = {} -- uv.now() of each restart, for maxRestarts
local pending = 0      -- restarts scheduled, not forked yet
local down_code        -- set once the restart limit left a worker down
local shutting = false
local reloading = false
local ready_sent = false
local watchdog

local DEFAULTS = {
  restart = 'never',
  restartDelay = 100,
  maxRestarts = 10,
  restartWindow = 60000,
  shutdownTimeout = 30000,
}
M.DEFAULTS = DEFAULTS

local function setting(name)
  local v = cluster.settings[name]
  if v == nil then return DEFAULTS[name] end
  return v
end

-- One line on stderr for each thing the primary does on its own.
local function log(fmt, ...)
  io.stderr:write(('luacluster: ' .. fmt .. '\n'):format(...))
end
M.log = log

------------------------------------------------------------------------------
-- systemd: READY=1 once every worker listens, STOPPING=1, RELOADING=1.

local notify_path = process.env.NOTIFY_SOCKET
local function notify(state)
  if notify_path then systemd.notify(notify_path, state) end
end

function M.listening()
  if ready_sent or reloading then return end
  for _, w in pairs(cluster.workers) do
    if w.state ~= 'listening' then return end
  end
  ready_sent = true
  notify('READY=1\nSTATUS=all workers listening\nMAINPID=' .. process.pid)
  cluster:emit('ready')
end

------------------------------------------------------------------------------
-- Forks and exits.

-- A worker slot outlives its workers: a replacement inherits it, so the
-- backoff and the restart count follow the role, not the process.
function M.forked(worker, slot)
  if not slot then
    slot = {delay = 0, restarts = 0, id = worker.id}
    slots[worker.id] = slot
  end
  worker._slot = slot
  worker._started = uv.now()
  worker._stats = {rss = 0, lag = 0, requests = 0, connections = 0}
  M.arm_watchdog()
end

-- Whether the primary exits once the restart limit left no worker (set
-- under -w, cluster/supervisor.lua); a script's primary carries on.
M.exit_when_down = false

-- After the restart limit: once no worker is left and none is coming back,
-- the sockets kept for replacements close, as no one will serve them (a
-- script's primary then ends with its loop, with process.exitCode, as
-- Node's does). Under -w the primary exits with down_code, non-zero, so a
-- service manager sees the failure (systemd's Restart=on-failure).
local function check_down()
  if not down_code or shutting or reloading or pending > 0 or
      next(cluster.workers) then
    return
  end
  cluster._closeHandles()
  if not M.exit_when_down then return end
  shutting = true
  notify('STOPPING=1')
  if package.loaded['cluster.status'] then
    package.loaded['cluster.status'].stop()
  end
  log('no worker left after the restart limit: exiting with code %d',
    down_code)
  -- After the rest of the last worker's 'exit' listeners.
  process.nextTick(process.exit, down_code)
end

local function give_up(worker, count, code)
  local window = setting('restartWindow')
  log('%d restarts within %d ms (maxRestarts %d): no more restarts; ' ..
    'worker %d stays down', count, window, setting('maxRestarts'), worker.id)
  -- The worker's own exit code when it has one, so `-w` exits as the script
  -- would alone; 1 for a worker killed by a signal.
  down_code = (code and code ~= 0) and code or 1
  cluster:emit('restartLimit', worker, {restarts = count, window = window})
  check_down()
end

-- Called after 'exit' was emitted: replaces the worker if the policy says
-- so (the watchdog's victims always), after the slot's backoff.
function M.exited(worker, code, signal)
  if shutting then return end
  local replace = worker._unresponsive
  if not replace and not worker.exitedAfterDisconnect and not
      worker._replaced then
    local policy = setting('restart')
    replace = policy == 'always' or (policy == 'on-failure' and
      (signal ~= nil or code ~= 0))
  end
  if not replace then return check_down() end
  local now = uv.now()
  local window = setting('restartWindow')
  local kept = {}
  for _, t in ipairs(restart_log) do
    if now - t < window then kept[#kept + 1] = t end
  end
  restart_log = kept
  if #restart_log >= setting('maxRestarts') and not worker._unresponsive then
    return give_up(worker, #restart_log, code)
  end
  restart_log[#restart_log + 1] = now
  local slot = worker._slot
  if now - (worker._started or now) >= window then
    slot.delay = 0
  end
  slot.delay = slot.delay == 0 and setting('restartDelay') or
    math.min(slot.delay * 2, 30000)
  local delay = worker._unresponsive and 0 or slot.delay
  log('worker %d (pid %s) %s; restarting in %d ms', worker.id,
    tostring(worker.process.pid), signal and ('killed by ' .. signal) or
    ('exited with code ' .. tostring(code)), delay)
  local t = uv.new_timer()
  pending = pending + 1
  t:start(delay, 0, function()
    t:close()
    pending = pending - 1
    if shutting then return end
    slot.restarts = slot.restarts + 1
    local nw = cluster._fork(worker._env, slot)
    cluster:emit('restart', nw, worker)
  end)
end

------------------------------------------------------------------------------
-- Heartbeats, stats and the watchdog.

function M.beat(worker, msg)
  worker._beat = uv.now()
  local s = worker._stats
  s.rss, s.lag = msg.rss or s.rss, msg.lag or s.lag
  s.requests, s.connections = msg.requests or 0, msg.connections or 0
end

-- stats() -> sequence ordered by id of {id, pid, uptime, restarts, rss,
-- requests, connections, loopLag}.
function M.stats()
  local out = {}
  local now = uv.now()
  for id, w in pairs(cluster.workers) do
    local s = w._stats or {}
    out[#out + 1] = {id = id, pid = w.process.pid,
      uptime = math.floor((now - (w._started or now)) / 100) / 10,
      restarts = w._slot and w._slot.restarts or 0, rss = s.rss or 0,
      requests = s.requests or 0, connections = s.connections or 0,
      loopLag = s.lag or 0, state = w.state}
  end
  table.sort(out, function(a, b) return a.id < b.id end)
  return out
end

local function check_heartbeats()
  local hb = cluster.settings.heartbeat
  if not hb or hb <= 0 then return end
  local now = uv.now()
  for _, w in pairs(cluster.workers) do
    if not w._unresponsive and w.process.pid and w.state ~= 'dead' then
      -- Before its first beat a worker is still loading its script: it
      -- gets longer (10 heartbeats, at least 5 s) to reach its loop.
      local last = w._beat or w._started
      local limit = w._beat and hb or math.max(10 * hb, 5000)
      if now - last > limit then
        w._unresponsive = true
        log('worker %d (pid %d) unresponsive for %d ms (heartbeat %d ms): ' ..
          'killing it', w.id, w.process.pid, now - last, hb)
        w:emit('unresponsive', now - last)
        cluster:emit('unresponsive', w, now - last)
        pcall(uv.kill, w.process.pid, 'sigkill')
      end
    end
  end
end

function M.arm_watchdog()
  local hb = cluster.settings.heartbeat
  if not hb or hb <= 0 or watchdog then return end
  watchdog = uv.new_timer()
  local every = math.max(10, math.floor(hb / 4))
  watchdog:start(every, every, check_heartbeats)
  watchdog:unref()
end

------------------------------------------------------------------------------
-- Rolling reload: one worker at a time, the new one listening before the
-- old one is told to drain.

local function err(code, message)
  return setmetatable({code = code, message = message},
    {__tostring = function(e) return e.message end})
end

-- Runs fn(done) for each item in turn; done(e) stops on an error.
local function each(list, fn, cb)
  local i = 0
  local function step(e)
    if e then return cb(e) end
    i = i + 1
    if i > #list then return cb() end
    fn(list[i], step)
  end
  step()
end

-- Drains worker w: it stops accepting, finishes what it has, and exits;
-- killed after shutdownTimeout. cb(killed) once it is gone.
local function retire(w, cb)
  if w.state == 'dead' then return cb(false) end
  local killed = false
  local t = uv.new_timer()
  t:start(setting('shutdownTimeout'), 0, function()
    killed = true
    log('worker %d (pid %d) did not finish within shutdownTimeout ' ..
      '(%d ms): killing it', w.id, w.process.pid, setting('shutdownTimeout'))
    pcall(uv.kill, w.process.pid, 'sigkill')
  end)
  w:once('exit', function()
    t:close()
    cb(killed)
  end)
  w._replaced = true
  cluster._drain(w)
end

function M.reload(cb)
  cb = cb or function(e) if e then log('reload failed: %s', e.message) end end
  if shutting then
    return process.nextTick(cb, err('ERR_SHUTTING_DOWN',
      'cannot reload: shutting down'))
  end
  if reloading then
    return process.nextTick(cb, err('ERR_RELOAD_IN_PROGRESS',
      'a reload is already in progress'))
  end
  reloading = true
  notify('RELOADING=1')
  local old = {}
  for _, w in pairs(cluster.workers) do
    if w.state ~= 'dead' and not w._replaced then old[#old + 1] = w end
  end
  table.sort(old, function(a, b) return a.id < b.id end)
  log('reloading %d worker(s), one at a time', #old)
  each(old, function(w, done)
    if w.state == 'dead' then return done() end
    local wanted = w.state == 'listening' and 'listening' or 'online'
    local nw = cluster._fork(w._env, w._slot)
    local settled = false
    local on_exit
    local function on_ready()
      if settled then return end
      settled = true
      nw:off('exit', on_exit)
      retire(w, function() done() end)
    end
    on_exit = function(code, signal)
      if settled then return end
      settled = true
      nw:off(wanted, on_ready)
      done(err('ERR_RELOAD_FAILED', ('worker %d, replacing worker %d, ' ..
        'exited (%s) before %s'):format(nw.id, w.id,
        signal or ('code ' .. tostring(code)), wanted)))
    end
    nw:once(wanted, on_ready)
    nw:once('exit', on_exit)
  end, function(e)
    reloading = false
    notify('READY=1')
    if not e then log('reload done') end
    cluster:emit('reload', e)
    cb(e)
  end)
end

------------------------------------------------------------------------------
-- Graceful shutdown.

local shutdown_cbs = {}

-- shutdown([cb]): listening sockets close at once, workers finish what they
-- have and exit; the primary exits 0, or 1 if shutdownTimeout ran out and it
-- had to kill. cb() runs just before the primary exits.
function M.shutdown(cb)
  if cb then shutdown_cbs[#shutdown_cbs + 1] = cb end
  if shutting then return end
  shutting = true
  notify('STOPPING=1')
  cluster._closeHandles()
  if package.loaded['cluster.status'] then
    package.loaded['cluster.status'].stop()
  end
  local list = {}
  for _, w in pairs(cluster.workers) do list[#list + 1] = w end
  log('shutting down %d worker(s)', #list)
  local left, code = #list, 0
  local function finish()
    log('shutdown done%s', code ~= 0 and ' (some workers were killed)' or '')
    for _, f in ipairs(shutdown_cbs) do f() end
    process.exit(code)
  end
  if left == 0 then return process.nextTick(finish) end
  for _, w in ipairs(list) do
    retire(w, function(killed)
      if killed then code = 1 end
      left = left - 1
      -- After the rest of this worker's 'exit' listeners.
      if left == 0 then process.nextTick(finish) end
    end)
  end
end

-- A second Ctrl-C: no more waiting.
local function force()
  log('forced shutdown: killing every worker')
  for _, w in pairs(cluster.workers) do
    if w.process.pid then pcall(uv.kill, w.process.pid, 'sigkill') end
  end
  process.exit(1)
end

function M.shutting() return shutting end

-- pending_restarts() -> how many replacements are scheduled, not yet
-- forked (a listening socket kept for them is not closed meanwhile).
function M.pending_restarts()
  return pending
end

-- Whether listening sockets stay open with no worker on them: while
-- workers get replaced (a restart policy or a reload), not when shutting
-- down, and not under Node's semantics (restart = 'never').
function M.keeps_sockets()
  if shutting then return false end
  return reloading or setting('restart') ~= 'never'
end

------------------------------------------------------------------------------
-- Signals: SIGTERM and SIGINT shut down, SIGHUP reloads, unless the script
-- listens for that signal itself.

local installed = false
function M.install_signals()
  if installed then return end
  installed = true
  local function handler(sig)
    local function h()
      if process:listenerCount(sig) > 1 then return end
      if sig == 'SIGHUP' then
        M.reload()
      elseif shutting then
        if sig == 'SIGINT' then force() end
      else
        log('%s: shutting down gracefully (Ctrl-C again to force)', sig)
        M.shutdown()
      end
    end
    return h
  end
  for _, sig in ipairs({'SIGTERM', 'SIGINT', 'SIGHUP'}) do
    process:on(sig, handler(sig))
  end
end

function M.attach(c)
  cluster = c
end

return M
