-- process: Node's process object (a global, and require('process')).
--
-- Holds the error policy and the nextTick queue the host drains after every
-- callback (runtime/lc.c), and turns signals into events.

local uv = require('uv')
local lc = require('_lc')
local EventEmitter = require('events')

local type, tostring, tonumber, select, unpack, error, pcall, xpcall =
  type, tostring, tonumber, select, unpack, error, pcall, xpcall

-- ppid and title are read (and title written) through the system each
-- time, as Node's getters do; every other key is a plain field.
local live = {
  ppid = function() return uv.os_getppid() end,
  title = function() return uv.get_process_title() end,
  -- stdin: made on first use (lua/internal/stdin.lua), then a field.
  stdin = function(t)
    local s = require('internal.stdin').make()
    rawset(t, 'stdin', s)
    return s
  end,
}
local process = setmetatable({}, {
  __index = function(_, k)
    local get = live[k]
    if get then return get(_) end
    return EventEmitter[k]
  end,
  __newindex = function(t, k, v)
    if k == 'title' then
      uv.set_process_title(tostring(v))
    elseif k == 'ppid' then
      error('process.ppid is read-only', 2)
    else
      rawset(t, k, v)
    end
  end,
})

local versions = lc.versions()
process.version = 'v' .. versions.luacluster
process.versions = versions
process.release = {name = 'luacluster'}
process.platform = jit and jit.os:lower() or 'linux'
process.arch = jit and jit.arch or 'x64'
process.pid = uv.os_getpid()
-- Linux names a binary replaced on disk "path (deleted)"; the path itself
-- is what a new process (a worker) should run.
process.execPath = (uv.exepath():gsub(' %(deleted%)$', ''))
process.argv = {}
process.argv0 = 'luacluster'
process.execArgv = {}
process.exitCode = nil

-- env: a plain table (pairs works); child processes get it as their
-- environment, so assignments reach workers as in Node.
process.env = {}
for k, v in pairs(uv.os_environ()) do process.env[k] = v end

local start = uv.hrtime()

function process.cwd() return assert(uv.cwd()) end

function process.chdir(dir)
  if type(dir) ~= 'string' then
    error('The "directory" argument must be a string, got ' .. type(dir), 2)
  end
  local ok, err = uv.chdir(dir)
  if not ok then error(err .. ", chdir '" .. dir .. "'", 2) end
end

-- uptime() -> seconds since the process started, with fractions.
function process.uptime() return (uv.hrtime() - start) / 1e9 end

-- hrtime([prev]) -> {seconds, nanoseconds} of a monotonic clock, minus
-- prev (an earlier result) when given.
function process.hrtime(prev)
  local t = uv.hrtime()
  if prev ~= nil then
    if type(prev) ~= 'table' or type(prev[1]) ~= 'number'
        or type(prev[2]) ~= 'number' then
      error('The "time" argument must be a table {seconds, nanoseconds},'
        .. ' got ' .. type(prev), 2)
    end
    t = t - (prev[1] * 1e9 + prev[2])
  end
  local sec = math.floor(t / 1e9)
  return {sec, t - sec * 1e9}
end

-- memoryUsage() -> {rss, heapTotal, heapUsed, external, arrayBuffers} in
-- bytes; the heap is the Lua heap.
function process.memoryUsage()
  local heap = math.floor(collectgarbage('count') * 1024)
  return {rss = uv.resident_set_memory(), heapTotal = heap, heapUsed = heap,
    external = 0, arrayBuffers = 0}
end

-- cpuUsage([prev]) -> {user, system} in microseconds, minus prev.
function process.cpuUsage(prev)
  if prev ~= nil and (type(prev) ~= 'table' or type(prev.user) ~= 'number'
      or type(prev.system) ~= 'number') then
    error('The "prevValue" argument must be a table {user, system}', 2)
  end
  local r = uv.getrusage()
  local user = r.utime.sec * 1e6 + r.utime.usec
  local system = r.stime.sec * 1e6 + r.stime.usec
  if prev then
    user, system = user - prev.user, system - prev.system
  end
  return {user = user, system = system}
end

function process.getuid() return uv.getuid() end
function process.getgid() return uv.getgid() end

-- The rest of Node's POSIX calls: geteuid, getegid, umask([mask]) (the
-- mask as it was), abort() (SIGABRT, a core dump where allowed).
local ffi = require('ffi')
pcall(ffi.cdef, [[
unsigned int geteuid(void);
unsigned int getegid(void);
unsigned int umask(unsigned int mask);
void abort(void);
]])
function process.geteuid() return tonumber(ffi.C.geteuid()) end
function process.getegid() return tonumber(ffi.C.getegid()) end
function process.umask(mask)
  if mask == nil then
    local old = ffi.C.umask(0)
    ffi.C.umask(old)
    return tonumber(old)
  end
  if type(mask) == 'string' then mask = tonumber(mask, 8) end
  if type(mask) ~= 'number' or mask < 0 or mask > 511 or mask % 1 ~= 0 then
    error('The "mask" argument must be an octal string or an integer '
      .. 'from 0 to 0o777', 2)
  end
  return tonumber(ffi.C.umask(mask))
end
function process.abort() ffi.C.abort() end

-- resourceUsage() -> Node's fields (times in microseconds, maxRSS in KB).
function process.resourceUsage()
  local r = uv.getrusage()
  return {userCPUTime = r.utime.sec * 1e6 + r.utime.usec,
    systemCPUTime = r.stime.sec * 1e6 + r.stime.usec, maxRSS = r.maxrss,
    sharedMemorySize = r.ixrss, unsharedDataSize = r.idrss,
    unsharedStackSize = r.isrss, minorPageFault = r.minflt,
    majorPageFault = r.majflt, swappedOut = r.nswap,
    fsRead = r.inblock, fsWrite = r.oublock, ipcSent = r.msgsnd,
    ipcReceived = r.msgrcv, signalsCount = r.nsignals,
    voluntaryContextSwitches = r.nvcsw,
    involuntaryContextSwitches = r.nivcsw}
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
  if type(sig) == 'number' and sig >= 0 and sig % 1 == 0 then return sig end
  local n = type(sig) == 'string' and signals[sig]
  if not n then error('Unknown signal: ' .. tostring(sig), level + 1) end
  return n
end
process.signum = signum

-- kill(pid[, sig]) -> true; raises on ESRCH/EPERM as Node throws. A
-- signal to this process (or its group) may end it at once: what was
-- written to http connections goes out first, as Node's writes have
-- reached the socket before it kills itself.
function process.kill(pid, sig)
  if type(pid) ~= 'number' or pid % 1 ~= 0 then
    error('The "pid" argument must be an integer, got ' .. tostring(pid), 2)
  end
  local n = signum(sig, 2)
  if pid == process.pid or pid <= 0 then lc.flush() end
  local ok, err = uv.kill(pid, n)
  if not ok then error('kill ' .. err, 2) end
  return true
end

------------------------------------------------------------------------------
-- nextTick: a FIFO drained by the host after each callback.

local ticks, thead, ttail = {}, 1, 0

function process.nextTick(fn, ...)
  if type(fn) ~= 'function' and not (type(fn) == 'table'
      and getmetatable(fn) and getmetatable(fn).__call) then
    error('The "callback" argument must be a function, got ' .. type(fn), 2)
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
    elseif getmetatable(t) then
      t()
    else
      t[1](unpack(t, 3, t[2] + 2))
    end
  end
  ticks, thead, ttail = {}, 1, 0
end

------------------------------------------------------------------------------
-- Warnings: printed to stderr as "(luacluster:PID) Name: message" and
-- emitted as 'warning' events, as Node's are.

function process.emitWarning(warning, kind, code)
  if type(kind) == 'table' then
    kind, code = kind.type, kind.code
  end
  local w = type(warning) == 'table' and warning or {
    name = kind or 'Warning', message = tostring(warning), code = code}
  lc.write(2, ('(luacluster:%d) %s%s: %s\n'):format(process.pid,
    w.code and '[' .. w.code .. '] ' or '', w.name or 'Warning',
    tostring(w.message)))
  process.nextTick(function() process:emit('warning', w) end)
end

------------------------------------------------------------------------------
-- Uncaught errors: 'uncaughtException' listeners, else the traceback on
-- stderr and exit 1.

local exiting = false
local on_error

-- Traceback handler for xpcall: keeps the error and its traceback.
local function catch(e)
  local tb = debug.traceback(type(e) == 'string' and e or '', 2)
  return {err = e, tb = (tb:gsub('^\n', ''))}
end

local function emit_exit(code)
  if exiting then return end
  exiting = true
  process._exiting = true
  local ok, e = xpcall(process.emit, catch, process, 'exit', code)
  -- An error in an 'exit' listener is uncaught, as in Node.
  if not ok then on_error(e.err, e.tb) end
end

local function describe(err, traceback)
  if type(err) == 'string' then return traceback or err end
  local mt = getmetatable(err)
  local what = (mt and mt.__tostring) and tostring(err)
    or require('util').inspect(err)
  return 'Uncaught ' .. what .. '\n' .. (traceback or '')
end

function on_error(err, traceback)
  if process:listenerCount('uncaughtExceptionMonitor') > 0 then
    process:emit('uncaughtExceptionMonitor', err, 'uncaughtException')
  end
  if process:listenerCount('uncaughtException') > 0 then
    process:emit('uncaughtException', err, 'uncaughtException')
    return
  end
  -- error() with no value is Lua's quiet failure (busted uses it).
  if err ~= nil then
    lc.write(2, (describe(err, traceback):gsub('\n?$', '\n', 1)))
  end
  process.exitCode = 1
  pcall(emit_exit, 1)
  lc.exit(1)
end

lc.set_handlers(on_error, run_ticks)

------------------------------------------------------------------------------
-- Exit.

local function exit_code(code, level)
  if code == nil then return nil end
  local n = tonumber(code)
  if not n or n % 1 ~= 0 then
    error('The "code" argument must be an integer, got ' .. tostring(code),
      level + 1)
  end
  return n
end

-- exit([code]): emits 'exit' and ends the process at once; stdout,
-- stderr and what was written to http connections are flushed first.
function process.exit(code)
  code = exit_code(code, 2)
  if code ~= nil then process.exitCode = code end
  code = tonumber(process.exitCode) or 0
  if not exiting then
    emit_exit(code)
    code = tonumber(process.exitCode) or code
  end
  lc.exit(code)
end

-- Called by the host each time the loop runs dry: 'beforeExit' listeners
-- may schedule more work (not after process.exit or an uncaught error).
function process._beforeExit()
  if not exiting then
    process:emit('beforeExit', tonumber(process.exitCode) or 0)
  end
end

-- Called by the host when the loop has nothing left: returns the code.
function process._finish()
  local code = tonumber(process.exitCode) or 0
  emit_exit(code)
  return tonumber(process.exitCode) or code
end

------------------------------------------------------------------------------
-- Signals as events: a signal handle per signal with listeners, unref'd
-- (a listener does not keep the process alive, as in Node).

local sighandles = {}

process:on('newListener', function(name)
  if type(name) == 'string' and signals[name] and not sighandles[name] then
    local h = uv.new_signal()
    local ok, err = h:start(signals[name], function()
      process:emit(name, name, signals[name])
    end)
    if not ok then
      h:close()
      error('cannot listen for ' .. name .. ': ' .. tostring(err), 4)
    end
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
-- stdout / stderr: write(s[, cb]) sends the whole string in one write(2);
-- cb runs on the next tick, as the write is done by then. A pipe() into
-- one does not end it, as in Node.

local function stream(fd)
  -- An emitter, so a readable can pipe() into it.
  local s = EventEmitter:new({fd = fd, isTTY = lc.isatty(fd),
    writable = true})
  function s.write(self, data, encoding, cb)
    if self ~= s then data, encoding, cb = self, data, encoding end
    if type(encoding) == 'function' then cb = encoding end
    if type(data) ~= 'string' and type(data) ~= 'number' then
      error('The "chunk" argument must be a string, got ' .. type(data), 2)
    end
    local ok, err = lc.write(fd, data)
    if cb then process.nextTick(cb, not ok and err or nil) end
    return true
  end
  return s
end
process.stdout = stream(1)
process.stderr = stream(2)

EventEmitter.bindSelf(process)
EventEmitter.bindMethods(process, EventEmitter)
return process
