-- init: the command line, the globals, and running the script.
--
-- runtime/main.c calls main(argv) once the state is ready, runs the loop
-- until nothing is left, then calls finish() for the exit code.

local lc = require('_lc')

-- Loops run once at start-up are not worth compiling; init.main turns the
-- compiler back on for the script.
jit.off()

-- 'luv' is another name for 'uv': one module table, opened once.
package.preload.luv = function() return require('uv') end

-- cjson writes '/' as JSON.stringify does (encode_escape_forward_slash).
require('internal.cjson').install()

local init = {}

local USAGE = [==[
Usage: luacluster [options] [script.lua | -] [args...]
       luacluster test [busted options] [specs...]
       luacluster status [PORT] [--watch[=SECONDS]] [--json]

Runs a Lua script on an event loop, with Node's cluster, http, net, events,
timers, process, os and console modules.

Options:
  -w, --workers N|auto  run an unmodified script in N workers under a
                        built-in supervising primary (restart on failure,
                        graceful shutdown, reload on SIGHUP); with -w:
  --restart WHEN        which exits of a worker restart it: never,
                        on-failure (the default) or always
  --restart-delay MS    the first backoff of a restart, doubling up to 30 s
                        (100)
  --max-restarts N      at most N restarts within the window (10); then a
                        failing worker stays down, and once none is left
                        the primary exits with its code (1 if killed)
  --restart-window MS   the window of --max-restarts (60000)
  --heartbeat MS        kill and replace a worker whose event loop stalls
                        this long (30000; 0 turns the watchdog off)
  --shutdown-timeout MS  on SIGTERM, kill the workers still busy after
                        this long (30000)
  --status-port PORT    serve /stats, /metrics and /health on this port of
                        127.0.0.1 (what luacluster status reads)
  --status-host ADDR    ... of this address instead (0.0.0.0: every IPv4
                        one, for probes from outside, as Kubernetes')
  --reuse-port          share a port with another luacluster (SO_REUSEPORT);
                        by default a port one serves is EADDRINUSE to others
  --log-format text|json  the primary's lines and the workers' lines it
                        passes on: "TIME LEVEL [who] msg" (text, the
                        default) or one JSON object a line
  --access-log[=FILE]   one line a request answered by an http server, to
                        FILE (appended; SIGUSR1 reopens it) or, without
                        FILE, to stdout: nginx's combined format, or JSON
                        with --log-format=json; buffered, written each second
  --shared NAME:SIZE    declare a shared dict (require('shared')) before
                        the script runs, e.g. counters:1m; repeatable
  -e, --eval CODE       run CODE
  -v, --version         print versions of luacluster, LuaJIT, libuv
  -h, --help            print this help

With no script (or "-"), the script is read from stdin; when stdin is a
terminal, an interactive prompt (REPL) starts instead.

Commands:
  test                  run busted's specs (spec/, or the files and folders
                        given) inside the runtime; busted's options pass
                        through (luacluster test --help lists them); the
                        exit code is 0 when every spec passed
  status [PORT]         the workers of the cluster whose status endpoint is
                        on PORT (LUACLUSTER_STATUS_PORT, else 9100), as a
                        table; --watch redraws it every 2 s (or SECONDS),
                        --json prints /stats as it is
  A file named "test" or "status" in the working directory runs as a
  script instead.

Environment:
  LUACLUSTER_RESTART, LUACLUSTER_RESTART_DELAY, LUACLUSTER_MAX_RESTARTS,
  LUACLUSTER_RESTART_WINDOW, LUACLUSTER_HEARTBEAT,
  LUACLUSTER_SHUTDOWN_TIMEOUT, LUACLUSTER_STATUS_PORT,
  LUACLUSTER_STATUS_HOST,
  LUACLUSTER_LOG_FORMAT, LUACLUSTER_ACCESS_LOG (- for stdout)
                        the option of the same name, when it is not given
  LUACLUSTER_REUSE_PORT=1  as --reuse-port
  LUACLUSTER_REPL_HISTORY  the REPL's history file
                        (~/.luacluster_repl_history; empty: none)
  LUACLUSTER_LUA_DIR    load the runtime's Lua modules from this folder
  LUACLUSTER_SCHED      rr|none|reuseport: how workers share a port
  LUACLUSTER_LIBPQ      the libpq require('pg') opens (default libpq.so.5)
]==]

local function die(msg)
  io.stderr:write('luacluster: ', msg, '\n')
  lc.exit(9)
end

-- Installs Node's globals. Lua's own stay.
local function globals()
  local process = require('process')
  _G.process = process
  _G.console = require('console')
  local timers = require('timers')
  for _, k in ipairs({'setTimeout', 'setInterval', 'setImmediate',
      'clearTimeout', 'clearInterval', 'clearImmediate'}) do
    _G[k] = timers[k]
  end
  -- OpenResty's pure-Lua drivers (resty.redis and the like) use the
  -- global ngx: it is there, loaded on first use (lua/ngx.lua sets it).
  setmetatable(_G, {__index = function(_, k)
    if k == 'ngx' then return require('ngx') end
  end})
  -- Lua's os is in package.loaded already, so require('os') returns it:
  -- lua/os.lua extends that very table the first time a name it lacks is
  -- looked up.
  local loader = package.preload.os
  setmetatable(os, {__index = function(t, k)
    setmetatable(t, nil)
    loader('os')
    return rawget(t, k)
  end})
  return process
end

-- The supervision settings -w takes from the command line or the
-- environment (flag, setupPrimary's name, variable); restart is a word, the
-- others whole numbers >= 0.
local SUPERVISION = {
  {'--restart', 'restart', 'LUACLUSTER_RESTART'},
  {'--restart-delay', 'restartDelay', 'LUACLUSTER_RESTART_DELAY'},
  {'--max-restarts', 'maxRestarts', 'LUACLUSTER_MAX_RESTARTS'},
  {'--restart-window', 'restartWindow', 'LUACLUSTER_RESTART_WINDOW'},
  {'--heartbeat', 'heartbeat', 'LUACLUSTER_HEARTBEAT'},
  {'--shutdown-timeout', 'shutdownTimeout', 'LUACLUSTER_SHUTDOWN_TIMEOUT'},
  {'--status-port', 'statusPort', 'LUACLUSTER_STATUS_PORT'},
  {'--status-host', 'statusHost', 'LUACLUSTER_STATUS_HOST'},
}
init.SUPERVISION = SUPERVISION
local SUPERVISION_FLAG = {}
for _, s in ipairs(SUPERVISION) do SUPERVISION_FLAG[s[1]] = s end

-- A setting's value from a flag or a variable, checked; what -w passes to
-- setupPrimary.
local function setting(s, v, from)
  if s[2] == 'statusHost' then
    if v == '' then die(from .. ' requires an address') end
    return v
  end
  if s[2] == 'restart' then
    if v ~= 'never' and v ~= 'on-failure' and v ~= 'always' then
      die(from .. ' must be never, on-failure or always, got "' .. v .. '"')
    end
    return v
  end
  local n = tonumber(v)
  if not n or n < 0 or n % 1 ~= 0 then
    die(from .. ' must be a whole number >= 0, got "' .. v .. '"')
  end
  return n
end

-- Parses argv (argv[1] is the binary). Returns the options; o.exec holds
-- the runtime options given before the script (Node's execArgv).
local function parse(argv)
  local o = {binary = argv[1], args = {}, exec = {}, supervise = {}}
  local i = 2
  -- `luacluster status [PORT]`, unless a file of that name is here.
  if argv[2] == 'status' then
    local st = require('uv').fs_stat('status')
    if not (st and st.type ~= 'directory') then
      o.status = true
      for j = 3, #argv do o.args[#o.args + 1] = argv[j] end
      return o
    end
  end
  -- `luacluster test ...`: the command, unless a file of that name is here
  -- to be run (a folder named test is not a script).
  if argv[2] == 'test' then
    local st = require('uv').fs_stat('test')
    if not (st and st.type ~= 'directory') then
      o.test = true
      for j = 3, #argv do o.args[#o.args + 1] = argv[j] end
      return o
    end
  end
  while i <= #argv do
    local a = argv[i]
    local first = i
    if o.script or o.eval then
      o.args[#o.args + 1] = a
    elseif a == '-h' or a == '--help' then
      o.help = true
    elseif a == '-v' or a == '--version' then
      o.version = true
    elseif a == '-e' or a == '--eval' then
      i = i + 1
      if argv[i] == nil then die(a .. ' requires an argument') end
      o.eval = argv[i]
    elseif a == '-w' or a == '--workers' or a:match('^%-%-workers=') then
      local v = a:match('^%-%-workers=(.*)$')
      if not v then
        i = i + 1
        v = argv[i]
      end
      if v == nil then die(a .. ' requires an argument (N or auto)') end
      if v ~= 'auto' and not (tonumber(v) and tonumber(v) >= 1
          and tonumber(v) % 1 == 0) then
        die('invalid worker count "' .. v .. '": expected N >= 1 or auto')
      end
      o.workers = v
    elseif a == '--shared' or a:match('^%-%-shared=') then
      -- Shared dicts for the primary to declare (lua/shared.lua).
      local v = a:match('^%-%-shared=(.*)$')
      if not v then
        i = i + 1
        v = argv[i]
      end
      local name, size = (v or ''):match('^([%w_%.%-]+):(.+)$')
      if not name then
        die('--shared requires NAME:SIZE (e.g. counters:1m), got ' ..
          tostring(v))
      end
      o.shared = o.shared or {}
      o.shared[#o.shared + 1] = {name = name, size = size}
    elseif SUPERVISION_FLAG[a:match('^[^=]*')] then
      local flag, v = a:match('^([^=]*)=(.*)$')
      flag = flag or a
      if not v then
        i = i + 1
        v = argv[i]
      end
      if v == nil then die(flag .. ' requires an argument') end
      local s = SUPERVISION_FLAG[flag]
      o.supervise[s[2]] = setting(s, v, flag)
    elseif a == '--reuse-port' then
      o.reusePort = true
    elseif a == '--log-format' or a:match('^%-%-log%-format=') then
      local v = a:match('^%-%-log%-format=(.*)$')
      if not v then
        i = i + 1
        v = argv[i]
      end
      if v ~= 'text' and v ~= 'json' then
        die('--log-format must be text or json, got ' .. tostring(v))
      end
      o.logFormat = v
    elseif a == '--access-log' then
      o.accessLog = '-'
    elseif a:match('^%-%-access%-log=') then
      o.accessLog = a:match('^%-%-access%-log=(.*)$')
      if o.accessLog == '' then die('--access-log= requires a file') end
    elseif a == '--' then
      i = i + 1
      if argv[i] then o.script = argv[i] end
    elseif a:sub(1, 1) == '-' and a ~= '-' then
      die('bad option: ' .. a .. ' (see luacluster -h)')
    else
      o.script = a
    end
    -- The options that shape how a script runs (not -e's code, which
    -- cluster passes on as process._eval) are Node's execArgv.
    if o.workers and not o.exec[1] then
      for j = first, i do o.exec[#o.exec + 1] = argv[j] end
    end
    i = i + 1
  end
  return o
end

-- resolve(path) -> path made absolute against the working directory, with
-- "." and ".." segments folded, as Node's path.resolve does.
local function resolve(path)
  if path:sub(1, 1) ~= '/' then
    path = require('uv').cwd() .. '/' .. path
  end
  local parts = {}
  for seg in path:gmatch('[^/]+') do
    if seg == '..' then
      parts[#parts] = nil
    elseif seg ~= '.' then
      parts[#parts + 1] = seg
    end
  end
  return '/' .. table.concat(parts, '/')
end

-- Loads the script named by the options (a file, "-" for stdin, -e's
-- code). Returns the chunk, or exits with a message.
local function load_script(o)
  local chunk, err
  if o.eval then
    chunk, err = loadstring(o.eval, '=(command line)')
  elseif o.script == '-' or o.script == nil then
    chunk, err = loadstring(io.stdin:read('*a') or '', '=stdin')
  else
    local f, oerr = io.open(o.script, 'rb')
    if not f then
      io.stderr:write('luacluster: cannot open script ', oerr:gsub('^[^:]*: ',
        o.script .. ': ', 1), '\n')
      lc.exit(1)
    end
    f:close()
    chunk, err = loadfile(o.script)
  end
  if not chunk then
    io.stderr:write('luacluster: ', err, '\n')
    lc.exit(1)
  end
  return chunk
end

function init.main(argv)
  local o = parse(argv)
  if o.help then
    io.stdout:write(USAGE)
    return
  end
  if o.version then
    local v = lc.versions()
    io.stdout:write(('luacluster %s\n%s\nlibuv %s\n'):format(v.luacluster,
      v.luajit, v.libuv))
    return
  end
  -- Nothing to run and a terminal on stdin: a REPL, as node starts one.
  local interactive = not o.script and not o.eval and not o.test
    and lc.isatty(0)

  local process = globals()
  local env = process.env
  -- Log format and access log: for this process and, through the
  -- environment, its workers.
  local fmt = o.logFormat or env.LUACLUSTER_LOG_FORMAT
  if fmt and fmt ~= '' then
    if fmt ~= 'text' and fmt ~= 'json' then
      die('LUACLUSTER_LOG_FORMAT must be text or json, got "' .. fmt .. '"')
    end
    require('internal.log').format = fmt
    env.LUACLUSTER_LOG_FORMAT = fmt
  end
  if o.accessLog then env.LUACLUSTER_ACCESS_LOG = o.accessLog end
  if o.reusePort then env.LUACLUSTER_REUSE_PORT = '1' end
  if next(o.supervise) and not o.workers and not env.LUACLUSTER_WORKER_ID
  then
    die('--' .. (next(o.supervise)):gsub('%u', function(c)
      return '-' .. c:lower() end) .. ' is a setting of -w (see luacluster -h)')
  end
  -- process.argv: Node's layout (absolute paths); arg: Lua's.
  local pargv = {process.execPath}
  if o.script and o.script ~= '-' then pargv[2] = resolve(o.script) end
  if o.test then pargv[2] = 'test' end
  for _, a in ipairs(o.args) do pargv[#pargv + 1] = a end
  process.argv = pargv
  process.argv0 = o.binary
  process.execArgv = o.exec
  local arg = {[-1] = o.binary,
    [0] = o.script or o.eval and '-e' or o.test and 'test' or nil}
  for i, a in ipairs(o.args) do arg[i] = a end
  _G.arg = arg
  process._workers = o.workers
  process._eval = o.eval
  -- Start-up is over (runtime/main.c stopped the collector for it).
  collectgarbage('restart')
  jit.on()

  -- A worker: the primary passed its id and the IPC channel's fd. Both
  -- leave the environment, so programs this worker starts are not workers.
  local wid = process.env.LUACLUSTER_WORKER_ID
  if wid then
    local fd = tonumber(process.env.LUACLUSTER_CHANNEL_FD) or 3
    local uv = require('uv')
    process.env.LUACLUSTER_WORKER_ID = nil
    process.env.LUACLUSTER_CHANNEL_FD = nil
    uv.os_unsetenv('LUACLUSTER_WORKER_ID')
    uv.os_unsetenv('LUACLUSTER_CHANNEL_FD')
    process._role = 'worker'
    local child = require('cluster.child')
    package.loaded.cluster = child
    child._setupWorker(tonumber(wid), fd)
    -- Shared dicts the primary passed (lua/shared.lua).
    if process.env.LUACLUSTER_SHARED then require('shared')._inherit() end
  elseif o.shared then
    -- --shared: this process is the primary that declares them.
    local shared = require('shared')
    for _, d in ipairs(o.shared) do
      local ok, err = pcall(shared.dict, d.name, d.size)
      if not ok then die((tostring(err):gsub('^[^:]*:%d+: ', ''))) end
    end
  end

  if o.test then return require('test').run() end
  if o.status then return require('cluster.supervision.top').run(o.args) end
  if interactive then return require('repl').start() end

  if o.script and o.workers and not wid then
    load_script(o)
    -- The script runs unmodified in workers; this process supervises.
    return require('cluster.supervision.run_workers').run(o)
  end
  local chunk = load_script(o)
  -- A tail call: the script's traceback ends at its own "main chunk".
  return chunk(unpack(o.args))
end

-- The host calls these when the loop runs dry and at the end. Without a
-- script (-h, -v) process was never loaded, and has nothing to say.
function init.before_exit()
  local process = package.loaded.process
  if process then return process._beforeExit() end
end

function init.finish()
  local process = package.loaded.process
  if process then return process._finish() end
  return 0
end

return init
