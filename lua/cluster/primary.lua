-- cluster.primary: the primary's side of cluster (Node's
-- lib/internal/cluster/primary.js). Forks workers (the same binary
-- re-running the script with an IPC channel on fd 3), answers their listen
-- requests per the scheduling policy (cluster/handles/), and reports what
-- happens to them as Node's events.
--
-- What goes beyond Node (restarts, the watchdog, reload, shutdown, stats,
-- the status endpoint) is not here: cluster/supervision/ listens to these
-- events, and to a few internal ones on cluster._internal, an emitter
-- scripts do not see:
--   'setup'(options, problems)  setupPrimary(options) was called; a
--                               listener appends what is wrong with them
--                               to problems, and setupPrimary raises
--   'spawn'(worker, env, stdio)  a worker is about to start; env (name ->
--                               value) may gain variables, stdio fds
--   <act>(worker, msg)          a control message from a worker that the
--                               primary does not handle itself ('beat')

local uv = require('uv')
local EventEmitter = require('events')
local Worker = require('cluster.worker')
local utils = require('cluster.utils')
local output = require('cluster.output')
local registry = require('cluster.handles.registry')
local activation = require('cluster.handles.activation')
local ipc = require('_ipc')
local tcp = require('_tcp')

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
cluster._internal = EventEmitter:new()

local internal = cluster._internal
local policies = {rr = 2, none = 1, reuseport = 3}

-- The default: a SO_REUSEPORT socket per worker. Measured against the
-- others (bench/sched/run.sh, README.md "Scheduling policy"): the most
-- requests and new connections per second, the primary out of the data
-- path, and an even enough spread (SCHED_NONE leaves one worker with every
-- keep-alive connection; SCHED_RR balances best but the primary accepts
-- every connection).
cluster.schedulingPolicy = policies[process.env.LUACLUSTER_SCHED or ''] or
  cluster.SCHED_REUSEPORT

registry.workers = cluster.workers
local ids = 0
local initialized = false

local function copy(t)
  local o = {}
  for k, v in pairs(t or {}) do o[k] = v end
  return o
end

-- Raises (at the caller of setupPrimary) what is wrong with its options.
local function check_settings(o)
  local problems = {}
  internal:emit('setup', o, problems)
  if o.exec ~= nil and type(o.exec) ~= 'string' then
    problems[#problems + 1] = 'exec must be a path (a string)'
  end
  if problems[1] then error('setupPrimary: ' .. problems[1], 3) end
end

-- setupPrimary(settings): exec, args, silent, env, cwd (+ execArgv), and
-- what supervision reads (restart, heartbeat, ...: cluster/supervision/).
-- broadcast(msg): msg to every worker's process 'message'
-- (lua/cluster/broadcast.lua).
function cluster.broadcast(msg)
  if msg == nil then error('cluster.broadcast: cannot send nil', 2) end
  return require('cluster.broadcast').send({kind = 'msg', msg = msg})
end

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
  if not initialized then
    initialized = true
    activation.load()
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

------------------------------------------------------------------------------
-- Control messages from a worker.

local onmessage = {}

-- A worker's cluster.broadcast or websocket.broadcast: to every worker.
function onmessage.broadcast(_, msg)
  require('cluster.broadcast').relay(msg)
end

function onmessage.online(worker)
  worker.state = 'online'
  worker:emit('online')
  cluster:emit('online', worker)
end

function onmessage.exitedAfterDisconnect(worker, msg)
  worker.exitedAfterDisconnect = true
  worker._channel:internal({ack = msg.seq})
end

-- A worker asks for a listening socket; the answer carries the socket (or
-- none: round robin) or the error's code and message.
function onmessage.queryServer(worker, msg)
  if worker.exitedAfterDisconnect then return end
  registry.query(worker, msg, cluster.schedulingPolicy,
      function(err, answer, socket)
    answer.ack = msg.seq
    if err then
      answer.errno, answer.message = err.code, err.message
    end
    worker._channel:internal(answer, socket)
  end)
end

function onmessage.listening(worker, msg)
  local info = {address = msg.address, port = msg.port,
    addressType = msg.addressType}
  worker.state = 'listening'
  worker:emit('listening', info)
  cluster:emit('listening', worker, info)
end

-- The worker closed a server: it no longer holds that socket.
function onmessage.close(worker, msg)
  registry.closed(worker, msg.key)
end

------------------------------------------------------------------------------
-- Workers.

-- The master secret every worker derives its TLS session ticket keys from
-- (runtime/tls/ctx.c, lua/tls.lua), made once: a session a client got
-- from one worker resumes on any other, replacements included; the keys
-- rotate each period (LUACLUSTER_TLS_TICKET_PERIOD s, 3600) in every
-- worker at once. Set LUACLUSTER_TLS_TICKETS yourself to share it across
-- hosts.
local tickets
local function ticket_master()
  if not tickets then
    -- libuv's getrandom: the primary itself never starts OpenSSL.
    local secret = assert(uv.random(32))
    tickets = secret:gsub('.', function(ch)
      return ('%02x'):format(ch:byte())
    end) .. ':' .. (tonumber(process.env.LUACLUSTER_TLS_TICKET_PERIOD)
      or 3600)
  end
  return tickets
end

-- envlist(worker, extra, shared) -> the worker's environment as a list of
-- "name=value": ours, under settings.env, under fork's; then what the
-- runtime passes (shared dicts, the id, the channel) and what internal
-- 'spawn' listeners add.
local function envlist(worker, extra, shared, stdio)
  local env = copy(process.env)
  for k, v in pairs(cluster.settings.env or {}) do env[k] = v end
  for k, v in pairs(extra or {}) do env[k] = v end
  if not env.LUACLUSTER_TLS_TICKETS then
    env.LUACLUSTER_TLS_TICKETS = ticket_master()
  end
  internal:emit('spawn', worker, env, stdio)
  local id = worker.id
  env.LUACLUSTER_SHARED = shared
  env.LUACLUSTER_WORKER_ID = tostring(id)
  env.LUACLUSTER_CHANNEL_FD = '3'
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
  registry.remove(worker)
  removeWorker(worker)
  worker.exitedAfterDisconnect = not not worker.exitedAfterDisconnect
  worker.state = 'dead'
  worker:emit('exit', info.code, info.signal)
  cluster:emit('exit', worker, info.code, info.signal)
  -- The sockets no worker will take close once the 'exit' listeners, and
  -- what they deferred to the next tick (supervision's restart decision),
  -- have had their say: a replacement they announced keeps its socket.
  process.nextTick(registry.trim)
end

local function on_disconnect(worker)
  worker.process.connected = false
  registry.remove(worker)
  if worker:isDead() or worker._exit then removeWorker(worker) end
  worker.exitedAfterDisconnect = not not worker.exitedAfterDisconnect
  if not worker._exit then worker.state = 'disconnected' end
  worker:emit('disconnect')
  cluster:emit('disconnect', worker)
  finish_exit(worker)
end

local function spawn_failed(worker, msg, code)
  process.nextTick(function()
    worker:emit('error', utils.error(code or 'ESPAWN',
      'cannot fork a worker: ' .. tostring(msg)))
  end)
end

-- fork([env]) -> Worker. worker._env keeps env (a replacement gets the
-- same).
function cluster.fork(env)
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
  local proc = {connected = true}
  local worker = Worker.new({id = id, process = proc})
  worker._env = env

  -- Each worker leads a session of its own (detached): a terminal's Ctrl-C
  -- or a signal to the primary's process group reaches the primary only,
  -- which shuts down or reloads gracefully; workers cannot outlive it (they
  -- exit when its channel closes).
  local handle, pid, ecode = uv.spawn(process.execPath, {
    args = argslist(s), stdio = stdio, env = envlist(worker, env, shared_env, stdio),
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

  tcp.close(theirs)
  worker._channel = utils.Channel(mine, {
    message = function(msg)
      worker:emit('message', msg)
      cluster:emit('message', worker, msg)
    end,
    internal = function(msg, h)
      local fn = onmessage[msg.act]
      if fn then return fn(worker, msg, h) end
      if h then h:close() end
      if msg.act and msg.act ~= 'error' then
        internal:emit(msg.act, worker, msg)
      end
    end,
    close = function() on_disconnect(worker) end,
    error = function(e)
      local err = utils.error('ERR_IPC', 'worker ' .. id .. ': ' .. e)
      if worker:listenerCount('error') > 0 then worker:emit('error', err)
      else io.stderr:write('luacluster: ', err.message, '\n') end
    end,
  })

  if not handle then
    worker._channel:close()
    if out then out:close() err:close() end
    worker.state = 'dead'
    spawn_failed(worker, pid, ecode)
    return worker
  end
  proc.pid = pid
  proc.handle = handle
  -- kill([sig]) -> true, or false, message, code (luv's).
  function proc.kill(a, b)
    local sig = (a == proc) and b or a
    local ok, msg, name = uv.kill(pid, process.signum(sig, 2))
    if not ok then return false, msg, name end
    return true
  end
  if out then
    proc.stdout, proc.stderr = output.stream(out, 1, id, pid),
      output.stream(err, 2, id, pid)
  end

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
  registry.remove(self)
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

-- _drain(): the worker stops accepting, finishes its requests and exits;
-- it stays in cluster.workers until it is gone (a reload or a shutdown).
function Worker:_drain()
  self.exitedAfterDisconnect = true
  if self._channel and not self._channel.closing then
    self._channel:internal({act = 'disconnect', exit = true})
  end
  registry.remove(self)
end

-- Messages queued for workers leave before the primary exits.
process:on('exit', function()
  for _, w in pairs(cluster.workers) do
    if w._channel then w._channel:flush() end
  end
end)

EventEmitter.bindSelf(cluster)
EventEmitter.bindMethods(cluster, EventEmitter)
return cluster
