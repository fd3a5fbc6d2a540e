-- cluster.primary: the primary's side of cluster. Forks workers (the same
-- binary re-running the script with an IPC channel on fd 3), answers their
-- listen requests per the scheduling policy, and reports their exits.
-- Listening sockets are the primary's under every policy, so a worker that
-- dies or is replaced leaves its queued connections to the next worker
-- instead of having them reset (cluster/*_handle.lua).

local uv = require('uv')
local EventEmitter = require('events')
local Worker = require('cluster.worker')
local utils = require('cluster.utils')
local supervise = require('cluster.supervise')
local ipc = require('_ipc')

local cluster = EventEmitter:new()

cluster.isWorker = false
cluster.isMaster = true
cluster.isPrimary = true
cluster.Worker = Worker
cluster.workers = {}
cluster.settings = {}
cluster.SCHED_NONE = 1
cluster.SCHED_RR = 2
cluster.SCHED_REUSEPORT = 3

local policies = {rr = 2, none = 1, reuseport = 3}
local Handles = {
  [1] = 'cluster.shared_handle',
  [2] = 'cluster.round_robin_handle',
  [3] = 'cluster.reuseport_handle',
}

-- The default: a SO_REUSEPORT socket per worker. Measured against the
-- others (bench/sched/run.sh, README.md "Scheduling policy"): the most
-- requests and new connections per second, the primary out of the data
-- path, and an even enough spread (SCHED_NONE leaves one worker with every
-- keep-alive connection; SCHED_RR balances best but the primary accepts
-- every connection).
cluster.schedulingPolicy = policies[process.env.LUACLUSTER_SCHED or ''] or
  cluster.SCHED_REUSEPORT

local handles = {}   -- key -> handle object
local ids = 0
local initialized = false

local function copy(t)
  local o = {}
  for k, v in pairs(t or {}) do o[k] = v end
  return o
end

local RESTART = {never = true, ['on-failure'] = true, always = true}

local function check_settings(o)
  if o.restart ~= nil and not RESTART[o.restart] then
    error(("setupPrimary: restart must be 'never', 'on-failure' or " ..
      "'always', got %s"):format(tostring(o.restart)), 3)
  end
  for _, k in ipairs({'restartDelay', 'maxRestarts', 'restartWindow',
      'heartbeat', 'shutdownTimeout', 'statusPort'}) do
    local v = o[k]
    if v ~= nil and (type(v) ~= 'number' or v < 0 or v ~= v) then
      error(('setupPrimary: %s must be a number >= 0, got %s'):format(k,
        tostring(v)), 3)
    end
  end
  if o.exec ~= nil and type(o.exec) ~= 'string' then
    error('setupPrimary: exec must be a path (a string)', 3)
  end
end

-- setupPrimary(settings): exec, args, silent, env, cwd (+ execArgv), and
-- beyond Node: restart, restartDelay, maxRestarts, restartWindow,
-- heartbeat, shutdownTimeout, statusPort (cluster/supervise.lua).
function cluster.setupPrimary(options)
  if options ~= nil then check_settings(options) end
  local argv = process.argv
  local settings = {
    exec = argv[2],
    args = {unpack(argv, 3)},
    execArgv = copy(process.execArgv),
    silent = false,
  }
  for k, v in pairs(cluster.settings) do settings[k] = v end
  for k, v in pairs(options or {}) do settings[k] = v end
  cluster.settings = settings
  supervise.arm_watchdog()
  if settings.statusPort then require('cluster.status').start(cluster) end
  if not initialized then
    initialized = true
    supervise.install_signals()
    local p = cluster.schedulingPolicy
    assert(p == 1 or p == 2 or p == 3, 'bad cluster.schedulingPolicy: ' ..
      tostring(p))
  end
  process.nextTick(function() cluster:emit('setup', settings) end)
end
cluster.setupMaster = cluster.setupPrimary

local function removeWorker(worker)
  if cluster.workers[worker.id] ~= worker then return end
  cluster.workers[worker.id] = nil
end

-- A handle no worker uses any more closes, as in Node; but while the
-- primary restarts workers (a restart policy, a reload) it stays open, so
-- connections wait in its backlog for the replacement instead of being
-- refused. A worker whose channel is still open (told to drain or
-- disconnect) stops counting now but may still accept; once the channel
-- has closed it is gone.
local function removeHandlesForWorker(worker)
  local keep = supervise.keeps_sockets()
  local gone = not worker._channel.connected
  for key, handle in pairs(handles) do
    if handle:remove(worker, gone) and not keep then
      handles[key] = nil
      handle:close()
    end
  end
end

-- newcomers(handle) -> how many workers may still ask handle for a socket:
-- those forked, connected, not leaving and not listening through it yet,
-- and the restarts the supervisor has scheduled.
local function newcomers(handle)
  local n = supervise.pending_restarts()
  for _, w in pairs(cluster.workers) do
    if w._channel.connected and not w.exitedAfterDisconnect and
        not handle:knows(w) then
      n = n + 1
    end
  end
  return n
end

-- Closes the SO_REUSEPORT sockets no worker will take (reuseport_handle's
-- trim); called once the supervisor has decided about a worker that left.
local function trimHandles()
  for _, handle in pairs(handles) do
    if handle.trim then handle:trim(newcomers(handle)) end
  end
end

------------------------------------------------------------------------------
-- Control messages from a worker.

local onmessage = {}

function onmessage.online(worker)
  worker.state = 'online'
  worker:emit('online')
  cluster:emit('online', worker)
end

function onmessage.exitedAfterDisconnect(worker, msg)
  worker.exitedAfterDisconnect = true
  worker._channel:internal({ack = msg.seq})
end

-- Sockets passed by systemd (socket activation: LISTEN_PID, LISTEN_FDS,
-- from fd 3 on), by port. A worker asking for that port gets one of them
-- instead of a new bind; they are shared (or round robin), never reuseport.
local activated = {}
do
  local n = tonumber(process.env.LISTEN_FDS)
  if n and tonumber(process.env.LISTEN_PID) == process.pid then
    for fd = 3, 3 + n - 1 do
      local a = require('_tcp').sockname(fd)
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

function onmessage.queryServer(worker, msg)
  if worker.exitedAfterDisconnect then return end
  local key = ('%s:%s:%s:%s'):format(tostring(msg.address), msg.port,
    msg.addressType, msg.index)
  local handle = handles[key]
  if not handle then
    local policy = cluster.schedulingPolicy
    local a = activated[msg.port]
    if a and a.used then
      -- Another server of this worker set has the socket already.
      a = nil
    end
    if a and policy == cluster.SCHED_REUSEPORT then
      policy = cluster.SCHED_NONE
    end
    handle = require(Handles[policy]).new(key, {address = msg.address,
      port = msg.port, backlog = msg.backlog, fd = a and a.fd})
    handles[key] = handle
  end
  handle:add(worker, function(err, reply, h)
    if err and handle.err and handles[key] == handle then
      handles[key] = nil
    end
    local answer = reply or {}
    answer.ack, answer.key = msg.seq, key
    if err then
      answer.errno, answer.message = err.code, err.message
    end
    worker._channel:internal(answer, h)
  end)
end

function onmessage.listening(worker, msg)
  local info = {address = msg.address, port = msg.port,
    addressType = msg.addressType}
  worker.state = 'listening'
  worker:emit('listening', info)
  cluster:emit('listening', worker, info)
  supervise.listening()
end

function onmessage.beat(worker, msg)
  supervise.beat(worker, msg)
end

-- The worker closed a server: it no longer holds that socket.
function onmessage.close(worker, msg)
  local handle = handles[msg.key]
  if not handle then return end
  if handle:remove(worker, true) and not supervise.keeps_sockets() then
    handles[msg.key] = nil
    handle:close()
  elseif handle.trim then
    handle:trim(newcomers(handle))
  end
end

------------------------------------------------------------------------------
-- Workers.

local function envlist(id, extra, shared)
  local env = copy(process.env)
  for k, v in pairs(cluster.settings.env or {}) do env[k] = v end
  for k, v in pairs(extra or {}) do env[k] = v end
  env.LUACLUSTER_SHARED = shared
  env.LUACLUSTER_WORKER_ID = tostring(id)
  env.LUACLUSTER_CHANNEL_FD = '3'
  env.LUACLUSTER_HEARTBEAT = cluster.settings.heartbeat and
    tostring(cluster.settings.heartbeat) or nil
  local list = {}
  for k, v in pairs(env) do
    if v ~= false and v ~= nil then list[#list + 1] = k .. '=' .. tostring(v) end
  end
  return list
end

local function argslist(s)
  local args = copy(s.execArgv)
  if s.exec then
    args[#args + 1] = s.exec
  elseif process._eval then
    args[#args + 1] = '-e'
    args[#args + 1] = process._eval
  end
  for _, a in ipairs(s.args or {}) do args[#args + 1] = tostring(a) end
  return args
end

-- A child's stdout/stderr under `silent`: an emitter of 'data' chunks.
-- With no 'data' listener the lines go to ours, prefixed with the worker's
-- id, whole (as under -w; cluster/output.lua).
local function reader(pipe, fd, id)
  local s = EventEmitter:new()
  local write, finish = require('cluster.output').lines(fd, id)
  pipe:read_start(function(err, data)
    if data then
      if s:listenerCount('data') > 0 then s:emit('data', data)
      else write(data) end
    else
      pipe:close()
      finish()
      s:emit('end')
    end
  end)
  return s
end

-- Emits 'exit' once both the process is gone and its channel closed, so
-- 'disconnect' always comes first, as in Node, and no message the worker
-- sent before dying is lost.
local function finish_exit(worker)
  local info = worker._exit
  if not info or worker._exitEmitted or worker._channel.connected then
    return
  end
  worker._exitEmitted = true
  if worker._exitTimer then
    worker._exitTimer:close()
    worker._exitTimer = nil
  end
  removeHandlesForWorker(worker)
  removeWorker(worker)
  worker.exitedAfterDisconnect = not not worker.exitedAfterDisconnect
  worker.state = 'dead'
  worker:emit('exit', info.code, info.signal)
  cluster:emit('exit', worker, info.code, info.signal)
  supervise.exited(worker, info.code, info.signal)
  trimHandles()
end

local function on_disconnect(worker)
  worker.process.connected = false
  removeHandlesForWorker(worker)
  if worker:isDead() or worker._exit then removeWorker(worker) end
  worker.exitedAfterDisconnect = not not worker.exitedAfterDisconnect
  if not worker._exit then worker.state = 'disconnected' end
  worker:emit('disconnect')
  cluster:emit('disconnect', worker)
  finish_exit(worker)
end

local function spawn_failed(worker, err)
  process.nextTick(function()
    worker:emit('error', {code = err:match('^(%u+)') or 'ESPAWN',
      message = 'cannot fork a worker: ' .. tostring(err)})
  end)
end

-- fork([env]) -> Worker
function cluster.fork(env)
  return cluster._fork(env, nil)
end

-- _fork(env, slot): a fork that takes over a worker slot (a restart or a
-- reload keeps its backoff and restart count).
function cluster._fork(env, slot)
  cluster.setupPrimary()
  ids = ids + 1
  local id = ids
  local s = cluster.settings
  local mine, theirs = assert(ipc.socketpair())
  local stdio = {0, 1, 2, theirs}
  local out, err
  if s.silent then
    out, err = uv.new_pipe(false), uv.new_pipe(false)
    stdio = {0, out, err, theirs}
  end
  -- Shared dicts (lua/shared.lua): their memory fds go on as the worker's
  -- fds 4, 5, ..., named in LUACLUSTER_SHARED.
  local shared = package.loaded.shared
  local shared_env = shared and shared._stdio(stdio)
  local worker
  local proc = {connected = true}
  worker = Worker.new({id = id, process = proc})

  -- Each worker leads a session of its own (detached): a terminal's Ctrl-C
  -- or a signal to the primary's process group reaches the primary only,
  -- which shuts down or reloads gracefully; workers cannot outlive it (they
  -- exit when its channel closes).
  local handle, pid = uv.spawn(process.execPath, {
    args = argslist(s), stdio = stdio, env = envlist(id, env, shared_env),
    cwd = s.cwd,
    detached = true,
  }, function(code, signal)
    local name = signal ~= 0 and (process.signals[signal] or signal) or nil
    worker._exit = {code = name == nil and code or nil, signal = name}
    proc.exitCode, proc.signalCode = worker._exit.code, name
    proc.handle:close()
    if worker._channel.connected then
      -- The channel's EOF is due; read what is left, then report.
      local t = uv.new_timer()
      worker._exitTimer = t
      t:start(1000, 0, function() worker._channel:close() end)
    end
    finish_exit(worker)
  end)

  utils.close(theirs)
  worker._channel = utils.Channel(mine, {
    message = function(msg)
      worker:emit('message', msg)
      cluster:emit('message', worker, msg)
    end,
    internal = function(msg, h)
      local fn = onmessage[msg.act]
      if fn then fn(worker, msg, h)
      elseif h then h:close() end
    end,
    close = function() on_disconnect(worker) end,
    error = function(e)
      local err = setmetatable({code = 'ERR_IPC', message = 'worker ' ..
        id .. ': ' .. e}, {__tostring = function(x) return x.message end})
      if worker:listenerCount('error') > 0 then worker:emit('error', err)
      else io.stderr:write('luacluster: ', err.message, '\n') end
    end,
  })

  if not handle then
    worker._channel:close()
    if out then out:close() err:close() end
    worker.state = 'dead'
    spawn_failed(worker, pid)
    return worker
  end
  proc.pid = pid
  proc.handle = handle
  function proc.kill(a, b)
    local sig = (a == proc) and b or a
    local ok, e = uv.kill(pid, process.signum(sig, 2))
    if not ok then return false, e end
    return true
  end
  if out then
    proc.stdout, proc.stderr = reader(out, 1, id), reader(err, 2, id)
  end

  worker._env = env
  supervise.forked(worker, slot)
  process.nextTick(function() cluster:emit('fork', worker) end)
  cluster.workers[id] = worker
  return worker
end

-- Primary-side Worker methods.

-- kill([sig]): sends the signal (default SIGTERM), as current Node does.
function Worker:kill(sig)
  if self.state == 'dead' or not self.process.pid then return end
  pcall(uv.kill, self.process.pid, process.signum(sig or 'SIGTERM', 2))
end
Worker.destroy = Worker.kill

-- disconnect(): asks the worker to close its servers and its channel; it
-- then exits on its own once nothing is left. exitedAfterDisconnect = true.
function Worker:disconnect()
  self.exitedAfterDisconnect = true
  if self._channel.connected then
    self._channel:internal({act = 'disconnect'})
  end
  removeHandlesForWorker(self)
  removeWorker(self)
  return self
end

-- disconnect([cb]): disconnects every worker; cb once every one of them
-- has closed its channel (its servers are closed by then).
function cluster.disconnect(cb)
  local left = 0
  local function one()
    left = left - 1
    if left == 0 and cb then cb() end
  end
  local list = {}
  for _, w in pairs(cluster.workers) do list[#list + 1] = w end
  for _, w in ipairs(list) do
    if w:isConnected() then
      left = left + 1
      w:once('disconnect', one)
      w:disconnect()
    end
  end
  if left == 0 and type(cb) == 'function' then process.nextTick(cb) end
end

function cluster._handles() return handles end

-- _drain(worker): the worker stops accepting, finishes its requests and
-- exits; it stays in cluster.workers until it is gone.
function Worker:_drain()
  self.exitedAfterDisconnect = true
  if self._channel and not self._channel.closing then
    self._channel:internal({act = 'disconnect', exit = true})
  end
  removeHandlesForWorker(self)
end
function cluster._drain(w) return w:_drain() end

-- _closeHandles(): the primary's listening sockets close now (shutdown:
-- a new connection is refused).
function cluster._closeHandles()
  for key, handle in pairs(handles) do
    handles[key] = nil
    handle:close()
  end
end

cluster.reload = supervise.reload
cluster.shutdown = supervise.shutdown
cluster.stats = supervise.stats
supervise.attach(cluster)

-- Messages queued for workers leave before the primary exits.
process:on('exit', function()
  for _, w in pairs(cluster.workers) do
    if w._channel then w._channel:flush() end
  end
end)

EventEmitter.bindSelf(cluster)
EventEmitter.bindMethods(cluster, EventEmitter)
return cluster
