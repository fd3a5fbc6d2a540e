-- Operating a cluster: log lines with time and level (text and JSON), the
-- -w settings from flags and the environment, the watchdog on by default
-- under -w, the access log, `luacluster status` and stable slots. Each
-- case runs the real binary and talks to it over loopback.

local h = require('helper')
local uv = require('uv')
local cjson = require('cjson')

local TS = '%d%d%d%d%-%d%d%-%d%dT%d%d:%d%d:%d%d%.%d%d%dZ'

-- A server on PORT answering its worker id; /hang never returns.
local APP = [[
  local cluster = require('cluster')
  local id = cluster.worker and cluster.worker.id or 0
  require('http').createServer(function(req, res)
    if req.url == '/hang' then while true do end end
    res:finish('worker ' .. id)
  end):listen(tonumber(process.env.PORT), function()
    print('listening', id)
  end)
]]

local function start(args, env)
  env = env or {}
  env.PORT = env.PORT or tostring(h.free_port())
  local app = h.tmpfile(APP)
  local argv = {}
  for _, a in ipairs(args) do argv[#argv + 1] = a end
  argv[#argv + 1] = app
  local p = h.spawn(argv, {env = env})
  p.port, p.app = tonumber(env.PORT), app
  return p
end

local function stop(p)
  p:stop()
  os.remove(p.app)
end

local function listening(p, n)
  return h.wait(function()
    local _, c = p.stdout:gsub('listening\\?t?\t?%d+', '')
    return c >= n or p.exited
  end, 5000) and not p.exited
end

after_each(function() h.cleanup() end)

describe('log lines', function()
  it('carry an ISO-8601 time and a level, the worker or the primary',
      function()
    local p = start({'-w', '1'})
    assert.is_true(listening(p, 1), p.stderr)
    stop(p)
    assert.matches('^' .. TS .. ' info  %[1%] listening\t1\n', p.stdout)
    assert.matches('\n?' .. TS .. ' info  %[primary%] worker 1 %(pid %d+%) '
      .. 'started\n', p.stderr)
    assert.matches(TS .. ' info  %[primary%] SIGTERM: shutting down',
      p.stderr)
  end)

  it('are one JSON object each with --log-format=json', function()
    local p = start({'-w', '1', '--log-format=json'})
    assert.is_true(listening(p, 1), p.stderr)
    stop(p)
    local n = 0
    for line in (p.stdout .. p.stderr):gmatch('[^\n]+') do
      local o = cjson.decode(line)
      assert.matches('^' .. TS .. '$', o.time)
      assert.truthy(o.level == 'info' or o.level == 'error', line)
      assert.is_number(o.worker)
      assert.is_true(o.pid > 0)
      assert.is_string(o.msg)
      n = n + 1
    end
    assert.is_true(n >= 4, p.stdout .. p.stderr)
    local first = cjson.decode(p.stdout:match('[^\n]+'))
    assert.same({1, 'listening\t1'}, {first.worker, first.msg})
    assert.matches('"worker":0,"pid":' .. p.pid .. ',"msg":"worker 1 %(pid',
      p.stderr)
  end)

  it('refuses an unknown format', function()
    local p = h.run({'--log-format', 'xml', '-e', ''})
    assert.equal(9, p.code)
    assert.matches('%-%-log%-format must be text or json', p.stderr)
    p = h.run({'-e', ''}, {env = {LUACLUSTER_LOG_FORMAT = 'yaml'}})
    assert.equal(9, p.code)
    assert.matches('LUACLUSTER_LOG_FORMAT must be text or json', p.stderr)
  end)
end)

describe('-w settings', function()
  it('come from flags and variables, flags first', function()
    -- restart never: a crashed worker stays down and the primary ends.
    local app = h.tmpfile('os.exit(4)')
    local p = h.run({'-w', '1', '--restart', 'never', app})
    assert.falsy(p.stderr:find('restarting'), p.stderr)
    -- The variable says never; the flag wins.
    p = h.run({'-w', '1', '--restart=on-failure', '--max-restarts', '1',
      '--restart-delay=10', app}, {env = {LUACLUSTER_RESTART = 'never'}})
    assert.truthy(p.stderr:find('restarting in 10 ms', 1, true), p.stderr)
    assert.truthy(p.stderr:find('(maxRestarts 1)', 1, true), p.stderr)
    -- From the environment alone.
    p = h.run({'-w', '1', app}, {env = {LUACLUSTER_MAX_RESTARTS = '0'}})
    assert.truthy(p.stderr:find('(maxRestarts 0)', 1, true), p.stderr)
    os.remove(app)
  end)

  it('are checked, and need -w', function()
    local p = h.run({'-w', '1', '--heartbeat', 'soon', '-e', ''})
    assert.equal(9, p.code)
    assert.matches('%-%-heartbeat must be a whole number >= 0, got "soon"',
      p.stderr)
    p = h.run({'-w', '1', '--restart', 'sometimes', '-e', ''})
    assert.equal(9, p.code)
    assert.matches('%-%-restart must be never, on%-failure or always',
      p.stderr)
    p = h.run({'--shutdown-timeout', '5', '-e', ''})
    assert.equal(9, p.code)
    assert.matches('--shutdown%-timeout is a setting of %-w', p.stderr)
    local app = h.tmpfile('')
    p = h.run({'-w', '1', app}, {env = {LUACLUSTER_HEARTBEAT = 'x'}})
    os.remove(app)
    assert.equal(9, p.code)
    assert.matches('LUACLUSTER_HEARTBEAT must be a whole number', p.stderr)
  end)

  it('--status-port serves /health; the watchdog is on by default',
      function()
    -- The default heartbeat is 30 s; 600 ms here to see it act, set by the
    -- variable (a flag would do the same), and status from the flag.
    local sp = h.free_port()
    local p = start({'-w', '1', '--status-port', tostring(sp)},
      {LUACLUSTER_HEARTBEAT = '600'})
    assert.is_true(listening(p, 1), p.stderr)
    assert.is_true(h.wait(function()
      return h.get(sp, '/health') == 200
    end, 3000))
    local hang = uv.new_tcp()
    hang:connect('127.0.0.1', p.port, function()
      hang:write('GET /hang HTTP/1.1\r\nHost: x\r\n\r\n')
    end)
    assert.is_true(listening(p, 2), 'no replacement: ' .. p.stderr)
    hang:close()
    assert.matches('error %[primary%] worker 1 %(pid %d+%) unresponsive',
      p.stderr)
    local status, body = h.get(p.port, '/')
    assert.equal(200, status)
    assert.equal('worker 2', body)
    stop(p)
  end)

  it('the default watchdog is 30 s (--heartbeat 0 turns it off)', function()
    local run_workers = require('cluster.supervision.run_workers')
    assert.equal(30000, run_workers.DEFAULTS.heartbeat)
    assert.equal(30000, run_workers.settings({supervise = {}}).heartbeat)
    assert.is_nil(run_workers.settings({supervise = {heartbeat = 0}})
      .heartbeat)
  end)
end)

-- take(path) -> the file's text; the file is removed.
local function take(path)
  local f = assert(io.open(path))
  local text = f:read('*a')
  f:close()
  os.remove(path)
  return text
end

describe('the access log', function()
  it('costs a server without one nothing: its handler is called as it is',
      function()
    local http = require('http')
    local handler = function(_, res) res:finish() end
    local s = http.createServer(handler)
    assert.equal(handler, s._handler)
    local logged = http.createServer({accessLog = '-'}, handler)
    assert.are_not.equal(handler, logged._handler)
    -- Set after createServer, it takes effect at listen.
    s.accessLog = '-'
    s:listen(0, '127.0.0.1')
    assert.are_not.equal(handler, s._handler)
    s:close()
  end)

  it('writes nginx combined lines to a file, from every worker', function()
    local path = os.tmpname()
    os.remove(path)
    local p = start({'-w', '2', '--access-log=' .. path})
    assert.is_true(listening(p, 2), p.stderr)
    for i = 1, 10 do
      assert.equal(200, (h.get(p.port, '/a?i=' .. i, {
        ['User-Agent'] = 'spec "agent"', Referer = 'http://r/'})))
    end
    stop(p)
    local text = take(path)
    local n = 0
    for line in text:gmatch('[^\n]+') do
      assert.matches('^127%.0%.0%.1 %- %- %[%d%d/%a%a%a/%d%d%d%d:%d%d:%d%d:'
        .. '%d%d %+0000%] "GET /a%?i=%d+ HTTP/1%.1" 200 8 "http://r/" '
        .. '"spec \\x22agent\\x22"$', line)
      n = n + 1
    end
    assert.equal(10, n)
    -- Not in the workers' output.
    assert.falsy(p.stdout:find('GET /a'))
  end)

  it('goes to stdout unprefixed with --access-log, JSON with ' ..
      '--log-format=json', function()
    local p = start({'-w', '1', '--access-log', '--log-format', 'json'})
    assert.is_true(listening(p, 1), p.stderr)
    assert.equal(200, (h.get(p.port, '/j')))
    -- Written within a second (buffered), without a request more.
    assert.is_true(h.wait(function()
      return p.stdout:find('"url":') ~= nil
    end, 3000), p.stdout)
    stop(p)
    local line = p.stdout:match('{"time[^\n]*"remote"[^\n]*')
    local o = cjson.decode(line)
    assert.same({'127.0.0.1', 'GET', '/j', '1.1', 200, 8},
      {o.remote, o.method, o.url, o.version, o.status, o.bytes})
    assert.is_number(o.ms)
    assert.matches('^' .. TS .. '$', o.time)
  end)

  it('logs a handler error as its 500, and streamed bytes; a server ' ..
      'set accessLog = false logs nothing', function()
    local path = os.tmpname()
    local p = h.script([[
      local http = require('http')
      local s = http.createServer({accessLog = ]] .. ('%q'):format(path)
        .. [[}, function(req, res)
        if req.url == '/boom' then error('expected: a test of the 500') end
        res:write('ab')
        res:write('cd')
        res:finish('e')
      end)
      local quiet = http.createServer({accessLog = false}, function(_, res)
        res:finish('q')
      end)
      s:listen(0, function()
        quiet:listen(0, function()
          local n = 0
          local function get(port, path)
            http.get('http://127.0.0.1:' .. port .. path, function(res)
              res:resume()
              res:on('end', function()
                n = n + 1
                if n == 3 then s:close() quiet:close() end
              end)
            end)
          end
          get(s:address().port, '/ok')
          get(s:address().port, '/boom')
          get(quiet:address().port, '/quiet')
        end)
      end)
    ]], {env = {LUACLUSTER_ACCESS_LOG = false}})
    assert.equal(0, p.code, p.stderr)
    local text = take(path)
    assert.matches('"GET /ok HTTP/1%.1" 200 5 "%-" "%-"\n', text)
    assert.matches('"GET /boom HTTP/1%.1" 500 21 ', text)
    assert.falsy(text:find('quiet'))
  end)

  it("logs a request the client gave up on as nginx's 499", function()
    local path = os.tmpname()
    local p = h.script([[
      local http, net, co = require('http'), require('net'), require('co')
      local s = http.createServer({accessLog = ]] .. ('%q'):format(path)
        .. [[}, function(req, res)
        if req.url == '/stream' then res:write('ab') end
        co.sleep(500)
        res:finish('late')   -- after the client left
      end)
      s:listen(0, '127.0.0.1', function()
        local gone = 0
        for _, url in ipairs({'/slow', '/stream'}) do
          local c = net.connect(s:address().port, '127.0.0.1', function(c)
          end)
          c:on('error', function() end)
          c:write('GET ' .. url .. ' HTTP/1.1\r\nHost: x\r\n\r\n')
          setTimeout(function()
            c:destroy()
            gone = gone + 1
            if gone == 2 then
              setTimeout(function() process.exit(0) end, 800)
            end
          end, 200)
        end
      end)
    ]], {env = {LUACLUSTER_ACCESS_LOG = false}})
    assert.equal(0, p.code, p.stderr)
    local text = take(path)
    assert.matches('"GET /slow HTTP/1%.1" 499 0 ', text)
    assert.matches('"GET /stream HTTP/1%.1" 499 2 ', text)
    -- Once each: the late finish logs nothing more.
    assert.equal(2, select(2, text:gsub('\n', '')))
  end)
end)

describe('luacluster status', function()
  it('prints the workers as a table, or JSON; slots are kept by ' ..
      'replacements', function()
    local sp = h.free_port()
    local p = start({'-w', '2', '--status-port', tostring(sp)})
    assert.is_true(listening(p, 2), p.stderr)
    for _ = 1, 6 do h.get(p.port, '/') end
    -- Worker 1 dies; its replacement (id 3) takes slot 1.
    local pid1 = tonumber(p.stderr:match('worker 1 %(pid (%d+)%) started'))
    uv.kill(pid1, 'sigkill')
    assert.is_true(listening(p, 3), p.stderr)
    h.sleep(1200) -- a heartbeat of every worker
    local s = h.run({'status', tostring(sp)})
    assert.equal(0, s.code, s.stderr)
    local lines = h.lines(s.stdout)
    assert.matches('^slot +id +pid +uptime +restarts +rss +requests +req/s '
      .. '+conns +lag +state$', lines[1])
    assert.matches('^1 +3 +%d+ +%d+s +1 +[%d.]+ [KM]B +%d+ +[%d.]+ +%d+ +'
      .. '%d+ ms +listening$', lines[2])
    assert.matches('^2 +2 +%d+ +%d+s +0 ', lines[3])
    assert.equal(3, #lines)
    local j = h.run({'status', '--json'},
      {env = {LUACLUSTER_STATUS_PORT = tostring(sp)}})
    local stats = cjson.decode(j.stdout)
    assert.same({1, 3}, {stats[2].slot, stats[2].id})
    local _, metrics = h.get(sp, '/metrics')
    assert.truthy(metrics:find('luacluster_worker_restarts_total{slot="1",'
      .. 'worker="3",', 1, true))
    -- --watch redraws until Ctrl-C (SIGINT), then exits 0.
    local w = h.spawn({'status', tostring(sp), '--watch=0.2'})
    assert.is_true(h.wait(function()
      local _, n = w.stdout:gsub('\27%[H\27%[2J', '')
      return n >= 3 or w.exited
    end, 5000), w.stdout .. w.stderr)
    w:kill('sigint')
    assert.is_true(w:wait(3000))
    assert.equal(0, w.code, w.stderr)
    assert.matches('luacluster status 127%.0%.0%.1:' .. sp .. '  every 0%.2s',
      w.stdout)
    stop(p)
  end)

  it('says when nothing answers, exit code 1', function()
    local s = h.run({'status', tostring(h.free_port())})
    assert.equal(1, s.code)
    assert.matches('cannot reach the status endpoint', s.stderr)
  end)
end)

describe('one cluster per port', function()
  it('a second cluster on a served port gets EADDRINUSE; --reuse-port ' ..
      'shares it', function()
    local a = start({'-w', '2'})
    assert.is_true(listening(a, 2), a.stderr)
    -- Under -w the second one stops at once (restarts would not help).
    local b = start({'-w', '1'}, {PORT = tostring(a.port)})
    assert.is_true(b:wait(5000), b.stderr)
    assert.equal(1, b.code, b.stderr)
    -- The worker's error is Node's ('bind EADDRINUSE null:PORT'); the
    -- primary says why.
    assert.truthy(b.stderr:find('bind EADDRINUSE null:' .. a.port, 1, true),
      b.stderr)
    assert.truthy(b.stderr:find('error [primary] port ' .. a.port ..
      ' is served by another luacluster', 1, true), b.stderr)
    assert.falsy(b.stderr:find('restarting in'), b.stderr)
    -- Every request still reaches the first cluster.
    for _ = 1, 20 do
      local status, body = h.get(a.port, '/')
      assert.equal(200, status)
      assert.truthy(body == 'worker 1' or body == 'worker 2', body)
    end
    stop(b)
    -- A plain (single-process) run on that port fails as well.
    local p = h.script([[
      require('http').createServer():listen(]] .. a.port .. [[)
    ]])
    assert.equal(1, p.code)
    assert.matches('EADDRINUSE', p.stderr)
    -- The opt-in shares it.
    local c = start({'-w', '1', '--reuse-port'}, {PORT = tostring(a.port),
      LUACLUSTER_REUSE_PORT = false})
    assert.is_true(listening(c, 1), c.stderr)
    stop(c)
    stop(a)
  end)

  it('the port is free again once the cluster is gone', function()
    local a = start({'-w', '1'})
    assert.is_true(listening(a, 1), a.stderr)
    local port = a.port
    stop(a)
    local b = start({'-w', '1'}, {PORT = tostring(port)})
    assert.is_true(listening(b, 1), b.stderr)
    stop(b)
  end)
end)

describe('socket activation', function()
  it('warns of each passed socket that no listen took', function()
    local port, other = h.free_port(), h.free_port()
    local app = h.tmpfile([[
      require('http').createServer(function(req, res)
        res:finish('ok')
      end):listen(]] .. port .. [[)
    ]])
    local p = h.spawn({'-l', '127.0.0.1:' .. port, '-l', '127.0.0.1:' ..
      other, h.bin, '-w', '1', app},
      {cmd = '/usr/bin/systemd-socket-activate'})
    assert.is_true(p:wait_stderr('Listening on.*Listening on', 3000),
      p.stderr)
    -- It starts luacluster on the first connection.
    assert.equal(200, (h.get(port, '/')), p.stderr)
    assert.is_true(p:wait_stderr('is not listened on', 5000), p.stderr)
    assert.matches('warn  %[primary%] the socket passed by systemd on ' ..
      '127%.0%.0%.1 port ' .. other .. ' %(fd %d%) is not listened on',
      p.stderr)
    assert.falsy(p.stderr:find('port ' .. port .. ' (fd', 1, true))
    p:stop()
    os.remove(app)
  end)
end)

describe('make run', function()
  it('runs hello_cluster.lua, which says where it listens once ready',
      function()
    local mk = io.open('Makefile'):read('*a')
    assert.truthy(mk:find('MAIN_EXAMPLE ?= examples/hello_cluster.lua', 1,
      true))
    local port = h.free_port()
    local p = h.spawn({'examples/hello_cluster.lua'},
      {env = {PORT = tostring(port), WORKERS = '2'}})
    assert.is_true(p:wait_output('listening on http://127%.0%.0%.1:' .. port
      .. '/ %(2 workers', 5000), p.stdout .. p.stderr)
    -- Said once, after both workers listen.
    local _, n = p.stdout:gsub('listening on http', '')
    assert.equal(1, n)
    local _, w = p.stdout:gsub('listening on port', '')
    assert.equal(2, w)
    assert.equal(200, (h.get(port, '/')))
    p:stop()
  end)
end)

describe('examples/kubernetes', function()
  local dir = h.root .. '/examples/kubernetes/'

  local function read(path)
    local f = assert(io.open(path))
    local s = f:read('*a')
    f:close()
    return s
  end

  -- arg(cmd, flag) -> the value after flag in the command list.
  local function arg(cmd, flag)
    for i, a in ipairs(cmd) do
      if a == flag then return cmd[i + 1] end
    end
  end

  it('parses; its probes are the status endpoint\'s /health, its grace ' ..
      'period above shutdownTimeout, its command the Dockerfile\'s',
      function()
    local lyaml = require('lyaml')
    local docs = lyaml.load(read(dir .. 'luacluster.yaml'), {all = true})
    local kinds = {}
    for _, d in ipairs(docs) do kinds[d.kind] = d end
    local dep, svc = kinds.Deployment, kinds.Service
    assert.truthy(dep and svc)
    local pod = dep.spec.template.spec
    local c = pod.containers[1]
    local cmd = c.command
    assert.equal('luacluster', cmd[1])
    assert.equal('server.lua', cmd[#cmd])
    local status = tonumber(arg(cmd, '--status-port'))
    assert.equal('0.0.0.0', arg(cmd, '--status-host'))
    for _, probe in ipairs({c.readinessProbe, c.livenessProbe}) do
      assert.equal('/health', probe.httpGet.path)
      assert.equal(status, probe.httpGet.port)
    end
    local timeout = tonumber(arg(cmd, '--shutdown-timeout')) or 30000
    assert.is_true(pod.terminationGracePeriodSeconds * 1000 > timeout +
      5000, 'the grace period must cover preStop and the drain')
    -- The Service reaches the container's http port, the selector its pods.
    assert.equal(c.ports[1].containerPort, svc.spec.ports[1].targetPort)
    assert.same(dep.spec.selector.matchLabels, svc.spec.selector)
    assert.same(dep.spec.template.metadata.labels, svc.spec.selector)
    -- The Dockerfile: the .deb on debian:12-slim, the same command.
    local docker = read(dir .. 'Dockerfile')
    assert.matches('\nFROM debian:12%-slim\n', docker)
    assert.matches('apt%-get install %-y %-%-no%-install%-recommends ' ..
      '/tmp/luacluster_%*%.deb', docker)
    local cmdline = docker:match('\nCMD (%[[^\n]*%])')
    assert.same(cmd, cjson.decode(cmdline))
  end)

  it('its command serves, answers the probes, and drains on SIGTERM',
      function()
    local lyaml = require('lyaml')
    local docs = lyaml.load(read(dir .. 'luacluster.yaml'), {all = true})
    local c = docs[1].spec.template.spec.containers[1]
    local args, port, sp = {}, h.free_port(), h.free_port()
    for i = 2, #c.command do
      local a = c.command[i]
      if c.command[i - 1] == '--status-port' then a = tostring(sp) end
      args[#args + 1] = a
    end
    local p = h.spawn(args, {cwd = dir, env = {PORT = tostring(port)}})
    assert.is_true(h.wait(function()
      return h.get(sp, '/health') == 200 or p.exited
    end, 5000), p.stderr)
    local status, body = h.get(port, '/')
    assert.equal(200, status)
    assert.matches('^hello from pid %d+', body)
    p:kill('sigterm')
    assert.is_true(p:wait(10000))
    assert.equal(0, p.code, p.stderr)
    assert.matches('"msg":"shutdown done"', p.stderr)
  end)
end)

describe('the access log file', function()
  it('is reopened on SIGUSR1 to the primary (logrotate)', function()
    local path = os.tmpname()
    local p = start({'-w', '2', '--access-log=' .. path})
    assert.is_true(listening(p, 2), p.stderr)
    assert.equal(200, (h.get(p.port, '/before')))
    assert.is_true(h.wait(function()
      local f = io.open(path)
      local s = f and f:read('*a') or ''
      if f then f:close() end
      return s:find('/before') ~= nil
    end, 3000))
    os.rename(path, path .. '.1')
    p:kill('sigusr1')
    h.sleep(200)
    for _ = 1, 4 do assert.equal(200, (h.get(p.port, '/after'))) end
    stop(p)
    local f = assert(io.open(path))
    local now = f:read('*a')
    f:close()
    f = assert(io.open(path .. '.1'))
    local old = f:read('*a')
    f:close()
    os.remove(path)
    os.remove(path .. '.1')
    local _, n = now:gsub('GET /after ', '')
    assert.equal(4, n)
    assert.falsy(now:find('/before'))
    assert.falsy(old:find('/after'))
    assert.equal(0, p.code, p.stderr)
  end)
end)
