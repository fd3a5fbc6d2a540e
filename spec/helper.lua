-- Spec helpers: run the event loop from a spec as plain code, start the
-- real binary as a subprocess, and talk to servers over loopback.
--
--   local h = require('helper')
--   h.wait(function() return done end, 2000)     -- true once done
--   local r = h.run({'-e', 'print(1)'})          -- {code, signal, stdout,
--                                                --  stderr}
--   local p = h.spawn({'examples/x.lua'})        -- p:wait(ms), p:kill()
--
-- Every process a spec starts is killed by pid when the spec file ends
-- (h.cleanup() runs from an `after_each`-free finaliser below), so no
-- listener or worker outlives a test.

local uv = require('uv')
local lc = require('_lc')

local h = {}

-- The binary under test: the one running the specs.
-- (Linux names a replaced binary "path (deleted)": use the path's new one.)
h.bin = uv.exepath():gsub(' %(deleted%)$', '')
h.root = uv.cwd()

------------------------------------------------------------------------------
-- The loop.

-- wait(cond, timeout), sleep(ms), await(fn, timeout): the event loop as
-- plain code (lua/test.lua, public for users' specs too).
local T = require('test')
h.wait, h.sleep, h.await = T.wait, T.sleep, T.await

------------------------------------------------------------------------------
-- Subprocesses.

local live = {}

local Proc = {}
Proc.__index = Proc

-- spawn(args, opts) starts `luacluster args...` (or opts.cmd) with stdout
-- and stderr captured. opts: env (table of extra variables), cwd, cmd,
-- stdin (string written then closed).
function h.spawn(args, opts)
  opts = opts or {}
  local p = setmetatable({stdout = '', stderr = '', args = args}, Proc)
  local out, err = uv.new_pipe(false), uv.new_pipe(false)
  local inp = uv.new_pipe(false)
  local env
  if opts.env or opts.clearenv then
    local e = {}
    if not opts.clearenv then
      for k, v in pairs(process.env) do e[k] = v end
    end
    for k, v in pairs(opts.env or {}) do e[k] = v ~= false and v or nil end
    env = {}
    for k, v in pairs(e) do env[#env + 1] = k .. '=' .. tostring(v) end
  end
  local handle, pid = uv.spawn(opts.cmd or h.bin, {
    args = args, stdio = {inp, out, err}, env = env, cwd = opts.cwd,
  }, function(code, signal)
    p.code = code
    p.signal = signal ~= 0 and process.signals[signal] or nil
    p.exited = true
    live[p] = nil
  end)
  assert(handle, 'spawn failed: ' .. tostring(pid))
  p.handle, p.pid = handle, pid
  live[p] = true
  out:read_start(function(e, data)
    if data then p.stdout = p.stdout .. data
    else p.outdone = true out:close() end
  end)
  err:read_start(function(e, data)
    if data then p.stderr = p.stderr .. data
    else p.errdone = true err:close() end
  end)
  if opts.stdin then
    inp:write(opts.stdin)
  end
  inp:shutdown(function() inp:close() end)
  return p
end

-- wait(timeout) -> true once the process exited and its output is read.
function Proc:wait(timeout)
  return h.wait(function()
    return self.exited and self.outdone and self.errdone
  end, timeout or 10000)
end

-- wait_output(pattern, timeout) -> true once stdout matches pattern.
function Proc:wait_output(pattern, timeout)
  return h.wait(function()
    return self.stdout:find(pattern) ~= nil or self.exited
  end, timeout or 5000) and self.stdout:find(pattern) ~= nil
end

function Proc:wait_stderr(pattern, timeout)
  return h.wait(function()
    return self.stderr:find(pattern) ~= nil or self.exited
  end, timeout or 5000) and self.stderr:find(pattern) ~= nil
end

function Proc:kill(sig)
  if not self.exited then
    pcall(uv.kill, self.pid, sig or 'sigterm')
  end
end

-- stop(): SIGTERM, then SIGKILL if still alive after a second; waits.
function Proc:stop()
  if self.exited then return end
  self:kill('sigterm')
  if not self:wait(2000) then
    self:kill('sigkill')
    self:wait(2000)
  end
end

-- run(args, opts) -> {code, signal, stdout, stderr} once it exited.
function h.run(args, opts)
  local p = h.spawn(args, opts)
  assert(p:wait((opts and opts.timeout) or 10000),
    'timed out: luacluster ' .. table.concat(args, ' '))
  return p
end

-- script(src, opts) writes src to a file, runs `luacluster [opts.before...]
-- file [opts.after...]` to its end (opts.env, opts.timeout) and returns the
-- process ({code, signal, stdout, stderr}).
function h.script(src, opts)
  opts = opts or {}
  local path = h.tmpfile(src)
  local argv = {}
  for _, a in ipairs(opts.before or {}) do argv[#argv + 1] = a end
  argv[#argv + 1] = path
  for _, a in ipairs(opts.after or {}) do argv[#argv + 1] = a end
  local ok, p = pcall(h.run, argv, {timeout = opts.timeout or 15000,
    env = opts.env})
  os.remove(path)
  if not ok then error(p, 2) end
  return p
end

-- track_tcp() wraps uv.new_tcp until untrack_tcp(), recording every luv TCP
-- handle made meanwhile; open_tcp() counts those not closed (uv.walk cannot
-- be used: it refuses the handles the runtime makes in C).
local made, real_new_tcp = {}, uv.new_tcp
function h.track_tcp()
  made = {}
  uv.new_tcp = function(...)
    local t = real_new_tcp(...)
    if t then made[#made + 1] = t end
    return t
  end
end

function h.untrack_tcp()
  uv.new_tcp = real_new_tcp
end

function h.open_tcp()
  local n = 0
  for _, t in ipairs(made) do
    if not t:is_closing() then n = n + 1 end
  end
  return n
end

-- lines(s) -> the non-empty lines of s.
function h.lines(s)
  local out = {}
  for l in s:gmatch('[^\n]+') do out[#out + 1] = l end
  return out
end

-- Kills every process still running (by pid) and its children (a
-- primary's workers, which would outlive it): a spec never leaves a worker
-- or a listener behind, even one that timed out.
function h.cleanup()
  for p in pairs(live) do
    if not p.exited then
      for _, pid in ipairs(h.children(p.pid)) do
        pcall(uv.kill, pid, 'sigkill')
      end
    end
    p:kill('sigkill')
  end
  h.wait(function() return next(live) == nil end, 3000)
end

-- pids_of(ppid) -> the pids whose parent is ppid (from /proc).
function h.children(ppid)
  local out = {}
  local f = io.popen('ps -o pid= --ppid ' .. ppid .. ' 2>/dev/null')
  for line in f:lines() do out[#out + 1] = tonumber(line) end
  f:close()
  return out
end

-- alive(pid) -> whether a process with that pid exists.
function h.alive(pid)
  local ok = uv.kill(pid, 0)
  if not ok then return false end
  local f = io.open('/proc/' .. pid .. '/stat')
  if not f then return false end
  local st = f:read('*a')
  f:close()
  -- Gone between the open and the read: the read finds nothing.
  if not st then return false end
  return not st:match('^%d+ %b() Z')
end

-- cputime(pid) -> seconds of CPU (user + system) the process used so far,
-- from /proc; nil once it is gone.
local ticks
function h.cputime(pid)
  if not ticks then
    local f = io.popen('getconf CLK_TCK')
    ticks = tonumber(f:read('*l')) or 100
    f:close()
  end
  local f = io.open('/proc/' .. pid .. '/stat')
  if not f then return nil end
  local st = f:read('*a')
  f:close()
  -- After "pid (comm) ": state is field 3, utime 14 and stime 15.
  local fields = {}
  for x in st:match('^%d+ %b() (.*)$'):gmatch('%S+') do
    fields[#fields + 1] = x
  end
  return (tonumber(fields[12]) + tonumber(fields[13])) / ticks
end

-- listeners(port) -> how many sockets listen on TCP port (IPv4 and IPv6),
-- whatever process holds them (from /proc/net, no tool needed).
function h.listeners(port)
  local n = 0
  local want = (':%04X '):format(port)
  for _, file in ipairs({'/proc/net/tcp', '/proc/net/tcp6'}) do
    local f = io.open(file)
    if f then
      for line in f:lines() do
        -- sl local_address rem_address st: state 0A is LISTEN.
        local loc, st = line:match('^%s*%d+: (%S+) %S+ (%x%x) ')
        if st == '0A' and (loc .. ' '):sub(-#want) == want then n = n + 1 end
      end
      f:close()
    end
  end
  return n
end

-- tmpfile(content, suffix) -> path of a new file holding content.
function h.tmpfile(content, suffix)
  local path = os.tmpname() .. (suffix or '.lua')
  local f = assert(io.open(path, 'wb'))
  f:write(content)
  f:close()
  return path
end

------------------------------------------------------------------------------
-- Servers in this process, and code in a coroutine.

local servers = {}

-- serve(handler[, options]) -> server, port: an http server of this
-- process listening on 127.0.0.1 (a free port). close_servers() closes
-- every one, with its connections, and waits for them (an after_each).
function h.serve(handler, options)
  local http = require('http')
  local s = options and http.createServer(options, handler)
    or http.createServer(handler)
  local ready = false
  s:listen(0, '127.0.0.1', function() ready = true end)
  assert(h.wait(function() return ready end, 2000), 'listen timed out')
  h.track_server(s)
  return s, s:address().port
end

-- track_server(s): close_servers() closes s too.
function h.track_server(s)
  servers[#servers + 1] = s
end

function h.close_servers()
  local pending = 0
  for _, s in ipairs(servers) do
    if s.listening then
      pending = pending + 1
      s:close(function() pending = pending - 1 end)
      s:closeAllConnections()
    end
  end
  servers = {}
  assert(h.wait(function() return pending == 0 end, 3000),
    'servers did not close')
end

local function pack(...) return {n = select('#', ...), ...} end

-- go(fn[, ms]) -> fn's results: fn runs in a coroutine of co's pool while
-- the loop turns (ms, 5000 by default); an error in fn is raised here.
function h.go(fn, ms)
  local out
  require('co').spawn(function() out = pack(pcall(fn)) end)
  assert(h.wait(function() return out ~= nil end, ms or 5000),
    'the coroutine did not end')
  if not out[1] then error(out[2], 0) end
  return unpack(out, 2, out.n)
end

------------------------------------------------------------------------------
-- Loopback clients.

-- free_port() -> a TCP port nothing listens on now.
function h.free_port()
  local s = uv.new_tcp()
  s:bind('127.0.0.1', 0)
  local port = s:getsockname().port
  s:close()
  return port
end

-- request(port, raw, opts) sends raw bytes and returns everything read
-- until the server closes or opts.until(buffer) is true or the timeout.
-- Returns data, err ('timeout', 'refused', ...).
function h.raw(port, raw, opts)
  opts = opts or {}
  local c = uv.new_tcp()
  local data, err, done = '', nil, false
  c:connect(opts.host or '127.0.0.1', port, function(e)
    if e then err, done = e, true return end
    c:read_start(function(e2, chunk)
      if e2 then err, done = e2, true
      elseif chunk then
        data = data .. chunk
        if opts['until'] and opts['until'](data) then done = true end
      else done = true end
    end)
    if type(raw) == 'table' then
      for _, part in ipairs(raw) do c:write(part) end
    else
      c:write(raw)
    end
  end)
  if not h.wait(function() return done end, opts.timeout or 5000) then
    err = err or 'timeout'
  end
  if not c:is_closing() then c:close() end
  return data, err
end

-- get(port, path, headers[, ip]) -> status, body, headers, raw; one
-- HTTP/1.1 request with Connection: close, to ip (default 127.0.0.1).
function h.get(port, path, headers, ip)
  local req = 'GET ' .. (path or '/') .. ' HTTP/1.1\r\nHost: 127.0.0.1\r\n'
  for k, v in pairs(headers or {}) do req = req .. k .. ': ' .. v .. '\r\n' end
  req = req .. 'Connection: close\r\n\r\n'
  local data, err = h.raw(port, req, {host = ip})
  local status = tonumber(data:match('^HTTP/1%.%d (%d%d%d)'))
  local head, body = data:match('^(.-)\r\n\r\n(.*)$')
  local hdrs = {}
  for k, v in (head or ''):gmatch('\r\n([^:\r\n]+):%s*([^\r\n]*)') do
    hdrs[k:lower()] = v
  end
  return status, body, hdrs, data, err
end

-- Load: `connections` keep-alive clients, each sending GET path one after
-- the other until `duration` ms have passed (bounded: it stops by itself).
-- A response with Connection: close makes the client reconnect, as a real
-- one does; with `close` every request asks for it, so each one opens a
-- new connection. `requests` bounds the count too (all clients together).
-- Returns a Load; load:done() tells when every client stopped;
-- load.ok / load.failed count responses (200) and failures (a refused or
-- reset connection, a connection closed before its response, a non-200),
-- load.errors lists the failures' reasons, load.ids counts the bodies'
-- `worker N` ids, load:p99() is the 99th percentile latency in ms.
function h.load(port, opts)
  opts = opts or {}
  local L = {ok = 0, failed = 0, errors = {}, lat = {}, ids = {},
    running = 0, sent = 0}
  local most = opts.requests or math.huge
  local stop_at = uv.now() + (opts.duration or 2000)
  local path = opts.path or '/'
  local req = 'GET ' .. path .. ' HTTP/1.1\r\nHost: 127.0.0.1\r\n' ..
    (opts.close and 'Connection: close\r\n' or '') .. '\r\n'

  local function fail(why)
    L.failed = L.failed + 1
    if #L.errors < 20 then L.errors[#L.errors + 1] = why end
  end

  local function client()
    L.running = L.running + 1
    local c, buf, t0, waiting
    local function finish()
      if c and not c:is_closing() then c:close() end
      c = nil
      L.running = L.running - 1
    end
    local send, connect
    local function on_response(head, body)
      L.lat[#L.lat + 1] = (uv.hrtime() - t0) / 1e6
      local status = tonumber(head:match('^HTTP/1%.%d (%d%d%d)'))
      if status == 200 then
        L.ok = L.ok + 1
        local id = body:match('worker (%d+)')
        if id then L.ids[id] = (L.ids[id] or 0) + 1 end
      else
        fail('status ' .. tostring(status))
      end
      waiting = false
      if head:lower():find('\r\nconnection: close', 1, true) then
        c:close()
        c = nil
        return connect()
      end
      send()
    end
    local function on_data(err, chunk)
      if err or not chunk then
        if waiting then
          fail('connection ' .. (err or 'closed') .. ' before a response')
        end
        if c and not c:is_closing() then c:close() end
        c = nil
        if waiting then waiting = false return connect() end
        return connect()
      end
      buf = buf .. chunk
      while true do
        local hend = buf:find('\r\n\r\n', 1, true)
        if not hend then return end
        local head = buf:sub(1, hend + 1)
        local len = tonumber(head:lower():match('\r\ncontent%-length: *(%d+)'))
          or 0
        if #buf < hend + 3 + len then return end
        local body = buf:sub(hend + 4, hend + 3 + len)
        buf = buf:sub(hend + 4 + len)
        on_response(head, body)
        if not c then return end
      end
    end
    function send()
      if uv.now() >= stop_at or L.sent >= most then return finish() end
      L.sent = L.sent + 1
      waiting = true
      t0 = uv.hrtime()
      c:write(req)
    end
    function connect()
      if uv.now() >= stop_at or L.sent >= most then return finish() end
      c = uv.new_tcp()
      buf = ''
      local mine = c
      c:connect('127.0.0.1', port, function(err)
        if mine ~= c then return end
        if err then
          fail('connect ' .. err)
          c:close()
          c = nil
          -- Do not spin on a refused port.
          local t = uv.new_timer()
          t:start(20, 0, function() t:close() connect() end)
          return
        end
        c:read_start(on_data)
        send()
      end)
    end
    connect()
  end

  for _ = 1, opts.connections or 4 do client() end

  function L:done() return self.running == 0 end
  function L:total() return self.ok + self.failed end
  function L:p99()
    table.sort(self.lat)
    return self.lat[math.max(1, math.ceil(#self.lat * 0.99))] or 0
  end
  return L
end

return h
