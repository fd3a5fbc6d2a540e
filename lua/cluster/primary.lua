-- cluster.primary: the primary's side of cluster. Forks workers (the same
-- binary re-running the script with an IPC channel on fd 3), answers their
-- listen requests per the scheduling policy, and reports their exits.

local uv = require('uv')
local EventEmitter = require('events')
local Worker = require('cluster.worker')
local utils = require('cluster.utils')
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

-- The default: every worker accepts from one shared socket (SCHED_NONE).
-- README.md ("Scheduling policy") gives the measurements behind it.
cluster.schedulingPolicy = policies[process.env.LUACLUSTER_SCHED or ''] or
  cluster.SCHED_NONE

local handles = {}   -- key -> handle object
local ids = 0
local initialized = false

local function copy(t)
  local o = {}
  for k, v in pairs(t or {}) do o[k] = v end
  return o
end

-- setupPrimary(settings): exec, args, silent, env, cwd (+ execArgv).
function cluster.setupPrimary(options)
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

local function removeHandlesForWorker(worker)
  for key, handle in pairs(handles) do
    if handle:remove(worker) then handles[key] = nil end
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

function onmessage.queryServer(worker, msg)
  if worker.exitedAfterDisconnect then return end
  local key = ('%s:%s:%s:%s'):format(tostring(msg.address), msg.port,
    msg.addressType, msg.index)
  local handle = handles[key]
  if not handle then
    handle = require(Handles[cluster.schedulingPolicy]).new(key, {
      address = msg.address, port = msg.port, backlog = msg.backlog})
    handles[key] = handle
  end
  handle:add(worker, function(err, reply, h)
    if err then handles[key] = nil end
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
end

function onmessage.close(worker, msg)
  local handle = handles[msg.key]
  if handle and handle:remove(worker) then handles[msg.key] = nil end
end

------------------------------------------------------------------------------
-- Workers.

local function envlist(id, extra)
  local env = copy(process.env)
  for k, v in pairs(cluster.settings.env or {}) do env[k] = v end
  for k, v in pairs(extra or {}) do env[k] = v end
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

-- A child's stdout/stderr under `silent`: an emitter of 'data' chunks.
local function reader(pipe)
  local s = EventEmitter:new()
  pipe:read_start(function(err, data)
    if data then s:emit('data', data)
    else
      pipe:close()
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
  local worker
  local proc = {connected = true}
  worker = Worker.new({id = id, process = proc})

  local handle, pid = uv.spawn(process.execPath, {
    args = argslist(s), stdio = stdio, env = envlist(id, env), cwd = s.cwd,
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

  ipc.close(theirs)
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
    proc.stdout, proc.stderr = reader(out), reader(err)
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

-- Messages queued for workers leave before the primary exits.
process:on('exit', function()
  for _, w in pairs(cluster.workers) do
    if w._channel then w._channel:flush() end
  end
end)

EventEmitter.bindSelf(cluster)
EventEmitter.bindMethods(cluster, EventEmitter)
return cluster
