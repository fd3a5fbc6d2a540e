-- process: Node's process object (a global, and require('process')).
--
-- Holds the error policy and the nextTick queue the host drains after every
-- callback (runtime/lc.c), and turns signals into events.

local uv = require('uv')
local lc = require('_lc')
local EventEmitter = require('events')

local process = EventEmitter:new()

local versions = lc.versions()
process.version = 'v' .. versions.luacluster
process.versions = versions
process.platform = jit and jit.os:lower() or 'linux'
process.arch = jit and jit.arch or 'x64'
process.pid = uv.os_getpid()
process.ppid = uv.os_getppid()
process.execPath = uv.exepath()
process.title = 'luacluster'
process.argv = {}
process.execArgv = {}
process.exitCode = nil

-- env: a plain table (pairs works); child processes get it as their
-- environment, so assignments reach workers as in Node.
process.env = {}
for k, v in pairs(uv.os_environ()) do process.env[k] = v end

local start = uv.hrtime()

function process.cwd() return assert(uv.cwd()) end

function process.chdir(dir)
  local ok, err = uv.chdir(dir)
  if not ok then error(err, 2) end
end

function process.uptime() return (uv.hrtime() - start) / 1e9 end

-- hrtime([prev]) -> {seconds, nanoseconds}, minus prev when given.
function process.hrtime(prev)
  local t = uv.hrtime()
  if prev ~= nil then
    if type(prev) ~= 'table' or #prev ~= 2 then
      error('The "time" argument must be a table {seconds, nanoseconds}', 2)
    end
    t = t - (prev[1] * 1e9 + prev[2])
  end
  local sec = math.floor(t / 1e9)
  return {sec, t - sec * 1e9}
end

function process.memoryUsage()
  local heap = math.floor(collectgarbage('count') * 1024)
  return {rss = uv.resident_set_memory(), heapTotal = heap, heapUsed = heap,
    external = 0, arrayBuffers = 0}
end

function process.cpuUsage(prev)
  local r = uv.getrusage()
  local user = r.utime.sec * 1e6 + r.utime.usec
  local system = r.stime.sec * 1e6 + r.stime.usec
  if prev then
    user, system = user - prev.user, system - prev.system
  end
  return {user = user, system = system}
end

-- Signal numbers by name, and names by number, for kill and exit events.
local signals = {}
for name, num in pairs(uv.constants) do
  if type(name) == 'string' and name:match('^SIG[A-Z0-9]+$') then
    signals[name] = num
    signals[num] = signals[num] or name
  end
end
process.signals = signals

local function signum(sig, level)
  if sig == nil then return signals.SIGTERM end
  if type(sig) == 'number' then return sig end
  local n = signals[sig]
  if not n then error('Unknown signal: ' .. tostring(sig), level + 1) end
  return n
end
process.signum = signum

-- kill(pid[, sig]) -> true; raises on ESRCH/EPERM as Node throws.
function process.kill(pid, sig)
  if type(pid) ~= 'number' then
    error('The "pid" argument must be a number', 2)
  end
  local ok, err = uv.kill(pid, signum(sig, 2))
  if not ok then error('kill ' .. err, 2) end
  return true
end

------------------------------------------------------------------------------
-- nextTick: a FIFO drained by the host after each callback.

local ticks, thead, ttail = {}, 1, 0

function process.nextTick(fn, ...)
  if type(fn) ~= 'function' then
    error('The "callback" argument must be a function', 2)
  end
  ttail = ttail + 1
  if select('#', ...) == 0 then
    ticks[ttail] = fn
  else
    ticks[ttail] = {fn, select('#', ...), ...}
  end
  lc.tick_pending()
end

local function run_ticks()
  while thead <= ttail do
    local t = ticks[thead]
    ticks[thead] = nil
    thead = thead + 1
    if type(t) == 'function' then
      t()
    else
      t[1](unpack(t, 3, t[2] + 2))
    end
  end
  ticks, thead, ttail = {}, 1, 0
end

------------------------------------------------------------------------------
-- Exit.

local exiting = false

local function emit_exit(code)
  if exiting then return end
  exiting = true
  process._exiting = true
  process:emit('exit', code)
end

-- exit([code]): emits 'exit' and ends the process at once.
function process.exit(code)
  if code ~= nil then process.exitCode = code end
  code = tonumber(process.exitCode) or 0
  if not exiting then
    local ok, err = pcall(emit_exit, code)
    if not ok then io.stderr:write(tostring(err), '\n') end
    code = tonumber(process.exitCode) or code
  end
  lc.exit(code)
end

-- Called by the host when the loop has nothing left: returns the code.
function process._finish()
  local code = tonumber(process.exitCode) or 0
  emit_exit(code)
  return tonumber(process.exitCode) or code
end

------------------------------------------------------------------------------
-- Uncaught errors: 'uncaughtException' listeners, else the traceback on
-- stderr and exit 1.

local function on_error(err, traceback)
  if process:listenerCount('uncaughtException') > 0 then
    process:emit('uncaughtException', err, 'uncaughtException')
    return
  end
  local msg
  if type(err) == 'string' then
    msg = traceback or err
  else
    local inspect = require('util').inspect
    msg = 'Uncaught ' .. inspect(err) .. '\n' .. (traceback or '')
  end
  lc.write(2, msg:gsub('\n?$', '\n', 1))
  process.exitCode = 1
  pcall(emit_exit, 1)
  lc.exit(1)
end

lc.set_handlers(on_error, run_ticks)

------------------------------------------------------------------------------
-- Signals as events: a signal handle per signal with listeners, unref'd
-- (a listener does not keep the process alive, as in Node).

local sighandles = {}

process:on('newListener', function(name)
  if type(name) == 'string' and signals[name] and not sighandles[name] then
    local h = uv.new_signal()
    h:start(signals[name], function()
      process:emit(name, name, signals[name])
    end)
    h:unref()
    sighandles[name] = h
  end
end)

process:on('removeListener', function(name)
  local h = sighandles[name]
  if h and process:listenerCount(name) == 0 then
    sighandles[name] = nil
    h:close()
  end
end)

------------------------------------------------------------------------------
-- stdout / stderr: write(s) sends the whole string in one write(2).

local function stream(fd)
  local s = {fd = fd, isTTY = lc.isatty(fd)}
  function s.write(self, data)
    if self ~= s then data = self end
    lc.write(fd, tostring(data))
    return true
  end
  return s
end
process.stdout = stream(1)
process.stderr = stream(2)

EventEmitter.bindSelf(process)
EventEmitter.bindMethods(process, EventEmitter)
return process
