-- Supervision beyond Node: reload, shutdown, watchdog, restarts, socket
-- activation. Each case starts the real binary on a fixture and puts a load
-- of its own on it (keep-alive clients, bounded in time).

local h = require('helper')
local uv = require('uv')

local FIXTURE = 'spec/fixtures/supervised.lua'

local function start(env, args)
  env.PORT = env.PORT or tostring(h.free_port())
  local p = h.spawn(args or {FIXTURE}, {env = env})
  p.port = tonumber(env.PORT)
  return p
end

local function count(s, pat)
  local _, n = s:gsub(pat, '')
  return n
end

-- listening(p, n): waits until n 'listening' lines were printed.
local function listening(p, n, timeout)
  return h.wait(function()
    return count(p.stdout, '\nlistening\t') + (p.stdout:find('^listening\t')
      and 1 or 0) >= n or p.exited
  end, timeout or 5000) and not p.exited
end

-- live(p) -> ids of workers listening now (listening lines minus exits).
local function live(p)
  local ids = {}
  for id in p.stdout:gmatch('listening\t(%d+)') do ids[id] = true end
  for id in p.stdout:gmatch('exit\t(%d+)') do ids[id] = nil end
  local out = {}
  for id in pairs(ids) do out[#out + 1] = tonumber(id) end
  table.sort(out)
  return out
end

after_each(function() h.cleanup() end)

describe('cluster.reload', function()
  it('replaces every worker under load with no failed request', function()
    local p = start({WORKERS = '2'})
    assert.is_true(listening(p, 2), p.stderr)
    local load = h.load(p.port, {connections = 4, duration = 3000})
    local t = uv.new_timer()
    t:start(600, 0, function()
      t:close()
      p:kill('sighup')
    end)
    assert.is_true(h.wait(function() return load:done() end, 10000))
    assert.is_true(h.wait(function()
      return p.stdout:find('reloaded\tnil') ~= nil
    end, 5000), p.stdout .. p.stderr)
    p:stop()
    assert.same({}, load.errors)
    assert.equal(0, load.failed)
    assert.is_true(load.ok > 100, 'too few requests: ' .. load.ok)
    -- Workers 1 and 2 drained and left; 3 and 4 took over.
    assert.truthy(p.stdout:find('exit\t1\t0\tnil', 1, true))
    assert.truthy(p.stdout:find('exit\t2\t0\tnil', 1, true))
    assert.truthy(p.stdout:find('listening\t3\t', 1, true))
    assert.truthy(p.stdout:find('listening\t4\t', 1, true))
    assert.truthy(load.ids['3'] or load.ids['4'])
    print(('\n  reload under load: %d ok, %d failed, p99 %.1f ms'):format(
      load.ok, load.failed, load:p99()))
  end)
end)

-- slow(p) sends GET /slow (1.5 s) and returns the connection and a
-- function giving what came back so far.
local function slow(p)
  local c, data = uv.new_tcp(), ''
  c:connect('127.0.0.1', p.port, function(err)
    assert(not err, err)
    c:read_start(function(e, chunk)
      if chunk then data = data .. chunk elseif not c:is_closing() then
        c:close()
      end
    end)
    c:write('GET /slow HTTP/1.1\r\nHost: x\r\n\r\n')
  end)
  return c, function() return data end
end

describe('graceful shutdown', function()
  it('finishes a slow request on SIGTERM and exits 0', function()
    local p = start({WORKERS = '2'})
    assert.is_true(listening(p, 2), p.stderr)
    local status, body
    local _, received = slow(p)
    h.sleep(300)
    p:kill('sigterm')
    -- The listening socket closes at once: a new connection is refused.
    h.sleep(200)
    local _, err = h.raw(p.port, 'GET / HTTP/1.1\r\nHost: x\r\n\r\n',
      {timeout = 1000})
    assert.truthy(err, 'a connection after SIGTERM should fail')
    assert.is_true(p:wait(5000), 'primary did not exit')
    assert.equal(0, p.code)
    assert.is_true(h.wait(function()
      return received():find('slow done', 1, true) ~= nil
    end, 1000))
    local data = received()
    status = tonumber(data:match('^HTTP/1%.1 (%d+)'))
    body = data:match('\r\n\r\n(.*)$')
    assert.equal(200, status)
    assert.truthy(body:find('slow done by worker'))
  end)

  it('kills what is left after shutdownTimeout and exits 1', function()
    local p = start({WORKERS = '1', SHUTDOWN_TIMEOUT = '300'})
    assert.is_true(listening(p, 1), p.stderr)
    local c = slow(p)
    h.sleep(200)
    p:kill('sigterm')
    assert.is_true(p:wait(5000))
    if not c:is_closing() then c:close() end
    assert.equal(1, p.code)
    assert.truthy(p.stderr:find('did not finish within shutdownTimeout'))
  end)

  it('a second SIGINT forces the shutdown', function()
    local p = start({WORKERS = '1'})
    assert.is_true(listening(p, 1), p.stderr)
    local c = slow(p)
    h.sleep(200)
    p:kill('sigint')
    h.sleep(100)
    p:kill('sigint')
    assert.is_true(p:wait(3000))
    if not c:is_closing() then c:close() end
    assert.equal(1, p.code)
    assert.truthy(p.stderr:find('forced shutdown'))
  end)
end)

describe('heartbeat watchdog', function()
  it('replaces a worker whose handler never returns', function()
    local p = start({WORKERS = '1', HEARTBEAT = '500'})
    assert.is_true(listening(p, 1), p.stderr)
    local hang = uv.new_tcp()
    hang:connect('127.0.0.1', p.port, function()
      hang:write('GET /hang HTTP/1.1\r\nHost: x\r\n\r\n')
    end)
    h.sleep(100)
    local t0 = uv.now()
    local answered = h.wait(function()
      local status = h.get(p.port, '/')
      return status == 200
    end, 3000)
    local took = uv.now() - t0
    hang:close()
    p:stop()
    assert.is_true(answered, 'the port did not answer within 3 s')
    assert.truthy(p.stdout:find('unresponsive\t1', 1, true))
    assert.truthy(p.stdout:find('exit\t1\tnil\tSIGKILL', 1, true))
    assert.truthy(p.stdout:find('listening\t2\t', 1, true))
    print(('\n  hung worker replaced, port answering after %d ms'):format(
      took))
  end)
end)

describe('restart policy', function()
  it('backs off and stops at maxRestarts for a worker crashing on start',
      function()
    local p = start({WORKERS = '1', CRASH_ON_START = '1',
      MAX_RESTARTS = '3', RESTART_DELAY = '50', RESTART_WINDOW = '10000'})
    assert.is_true(p:wait(8000), 'primary should end once it gives up')
    assert.truthy(p.stdout:find('restartLimit\t3', 1, true), p.stdout)
    assert.equal(4, count(p.stdout, 'exit\t%d+\t1\tnil'))
    -- Delays double: 50, 100, 200 ms.
    local delays = {}
    for d in p.stderr:gmatch('restarting in (%d+) ms') do
      delays[#delays + 1] = tonumber(d)
    end
    assert.same({50, 100, 200}, delays)
    assert.truthy(p.stderr:find('no more restarts'))
    -- A script's primary ends as Node's does, with process.exitCode.
    assert.equal(0, p.code)
  end)

  it('closes the sockets no worker will serve once the limit is reached',
      function()
    -- Under SCHED_RR the primary holds the listening socket: after the
    -- last restart it must close, not keep the script's primary alive.
    local p = start({WORKERS = '1', MAX_RESTARTS = '1', RESTART_DELAY = '10',
      LUACLUSTER_SCHED = 'rr'})
    assert.is_true(listening(p, 1), p.stderr)
    h.get(p.port, '/crash')
    assert.is_true(listening(p, 2), p.stderr)
    h.get(p.port, '/crash')
    assert.is_true(p:wait(5000), 'the primary did not end: ' .. p.stderr)
    assert.equal(0, p.code)
    assert.truthy(p.stdout:find('restartLimit\t1', 1, true), p.stdout)
  end)

  it('under -w, exits with the worker\'s code once the limit is reached',
      function()
    local app = h.tmpfile([[
      io.stderr:write('failing on purpose\n')
      os.exit(3)
    ]])
    local p = h.run({'-w', '1', app}, {timeout = 10000,
      env = {LUACLUSTER_MAX_RESTARTS = '2',
        LUACLUSTER_RESTART_WINDOW = '30000'}})
    os.remove(app)
    assert.equal(3, p.code, p.stderr)
    assert.equal(3, count(p.stderr, '%[%d%] failing on purpose\n'))
    assert.truthy(p.stderr:find('2 restarts within 30000 ms ' ..
      '(maxRestarts 2): no more restarts', 1, true), p.stderr)
    assert.truthy(p.stderr:find('no worker left after the restart limit: ' ..
      'exiting with code 3', 1, true), p.stderr)
  end)

  it('under -w, exits 1 when the workers were killed by a signal, and ' ..
      'rejects a bad LUACLUSTER_MAX_RESTARTS', function()
    local app = h.tmpfile([[
      require('uv').kill(process.pid, 'sigkill')
    ]])
    local p = h.run({'-w', '1', app}, {timeout = 10000,
      env = {LUACLUSTER_MAX_RESTARTS = '0'}})
    assert.equal(1, p.code, p.stderr)
    assert.truthy(p.stderr:find('exited (SIGKILL)', 1, true), p.stderr)
    assert.truthy(p.stderr:find('exiting with code 1', 1, true), p.stderr)
    p = h.run({'-w', '1', app}, {env = {LUACLUSTER_MAX_RESTARTS = 'ten'}})
    os.remove(app)
    assert.equal(9, p.code)
    assert.truthy(p.stderr:find('LUACLUSTER_MAX_RESTARTS must be a whole ' ..
      'number >= 0, got "ten"', 1, true), p.stderr)
  end)

  it('keeps the port answering while workers are killed -9', function()
    local p = start({WORKERS = '2', MAX_RESTARTS = '100',
      RESTART_DELAY = '10'})
    assert.is_true(listening(p, 2), p.stderr)
    local load = h.load(p.port, {connections = 4, duration = 3600})
    local kills, windows = 0, {}
    local last_ok = 0
    local t = uv.new_timer()
    t:start(300, 300, function()
      windows[#windows + 1] = load.ok - last_ok
      last_ok = load.ok
      if kills >= 10 then return t:close() end
      local ids = live(p)
      local pid
      for _, id in ipairs(ids) do
        pid = p.stdout:match('listening\t' .. id .. '\t(%d+)')
      end
      if pid then
        kills = kills + 1
        uv.kill(tonumber(pid), 'sigkill')
      end
    end)
    assert.is_true(h.wait(function() return load:done() end, 10000))
    if not t:is_closing() then t:close() end
    -- All workers are back.
    assert.is_true(h.wait(function() return #live(p) == 2 end, 3000),
      p.stdout)
    p:stop()
    assert.is_true(kills >= 9, 'kills: ' .. kills)
    -- The port answered in every 300 ms window.
    for i, n in ipairs(windows) do
      assert.is_true(n > 0, 'no answer in window ' .. i)
    end
    print(('\n  %d kills -9: %d ok, %d failed (in flight on killed ' ..
      'workers)'):format(kills, load.ok, load.failed))
  end)
end)

-- What waits for a worker when it dies or is replaced: under each policy,
-- worker 1 is stopped (SIGSTOP) before any load starts, so the connections
-- that reach it wait (in its SO_REUSEPORT accept queue, or in its IPC
-- channel under round robin) and are never accepted by it; then it is
-- killed -9, or the cluster reloads (which kills it at shutdownTimeout). A
-- replacement, or another worker, must serve every one of them: no
-- request may fail, with a new connection per request as with keep-alive.
describe('connections waiting for a worker that dies', function()
  local stopped = {}
  after_each(function()
    -- A stopped worker cannot see its primary go: kill it by pid.
    for pid in pairs(stopped) do
      if h.alive(pid) then uv.kill(pid, 'sigkill') end
    end
    stopped = {}
  end)

  for _, sched in ipairs({'reuseport', 'none', 'rr'}) do
    for _, how in ipairs({'reload', 'kill -9'}) do
      it(('are served after a %s under %s'):format(how, sched), function()
        local p = start({WORKERS = '2', LUACLUSTER_SCHED = sched,
          SHUTDOWN_TIMEOUT = '800', RESTART_DELAY = '100'})
        assert.is_true(listening(p, 2), p.stderr)
        local pid = tonumber(p.stdout:match('listening\t1\t(%d+)'))
        stopped[pid] = true
        uv.kill(pid, 'sigstop')
        -- Bounded in time and count; the count is out of reach before
        -- the kill or reload (300 ms), so the load spans it.
        local fresh = h.load(p.port, {connections = 8, duration = 1500,
          requests = 15000, close = true})
        local kept = h.load(p.port, {connections = 4, duration = 1500,
          requests = 50000})
        h.sleep(300)
        assert.is_false(fresh:done() or kept:done(), 'the load ended early')
        if how == 'reload' then
          p:kill('sighup')
        else
          uv.kill(pid, 'sigkill')
        end
        assert.is_true(h.wait(function()
          return fresh:done() and kept:done()
        end, 15000), 'the load did not end')
        if how == 'reload' then
          assert.is_true(h.wait(function()
            return p.stdout:find('reloaded\tnil') ~= nil
          end, 5000), p.stdout .. p.stderr)
        else
          assert.is_true(h.wait(function()
            return p.stdout:find('listening\t3\t') ~= nil
          end, 5000), p.stdout .. p.stderr)
        end
        p:stop()
        print(('\n  %s, %s: new connection per request %d/%d failed, ' ..
          'keep-alive %d/%d failed'):format(sched, how, fresh.failed,
          fresh:total(), kept.failed, kept:total()))
        assert.same({}, fresh.errors)
        assert.same({}, kept.errors)
        assert.is_true(fresh.ok > 50, 'too few requests: ' .. fresh.ok)
        assert.is_true(kept.ok > 50, 'too few requests: ' .. kept.ok)
      end)
    end
  end

  it('are served by the others when the worker is not replaced, and its ' ..
      'SO_REUSEPORT socket closes', function()
    local p = start({WORKERS = '3', RESTART = 'never',
      LUACLUSTER_SCHED = 'reuseport'})
    assert.is_true(listening(p, 3), p.stderr)
    assert.equal(3, h.listeners(p.port))
    local pid = tonumber(p.stdout:match('listening\t1\t(%d+)'))
    stopped[pid] = true
    uv.kill(pid, 'sigstop')
    local fresh = h.load(p.port, {connections = 8, duration = 1500,
      requests = 10000, close = true})
    h.sleep(300)
    assert.is_false(fresh:done(), 'the load ended early')
    uv.kill(pid, 'sigkill')
    assert.is_true(h.wait(function() return fresh:done() end, 10000))
    -- Its socket goes once its queue was handed to the other two.
    assert.is_true(h.wait(function()
      return p.stdout:find('exit\t1\tnil\tSIGKILL', 1, true) ~= nil and
        h.listeners(p.port) == 2
    end, 3000), p.stdout)
    p:stop()
    assert.equal(0, h.listeners(p.port))
    assert.same({}, fresh.errors)
    assert.is_true(fresh.ok > 50, 'too few requests: ' .. fresh.ok)
    assert.truthy(fresh.ids['2'] and fresh.ids['3'])
  end)
end)

describe('cluster.stats and the status endpoint', function()
  it('reports per-worker figures as JSON, Prometheus text and health',
      function()
    local status_port = h.free_port()
    local p = start({WORKERS = '2', STATUS_PORT = tostring(status_port)})
    assert.is_true(listening(p, 2), p.stderr)
    for _ = 1, 20 do assert.equal(200, (h.get(p.port, '/'))) end
    h.sleep(1300) -- stats are at most 1 s stale
    local status, body, hdrs = h.get(status_port, '/stats')
    assert.equal(200, status)
    assert.truthy(hdrs['content-type']:find('application/json'))
    local stats = require('cjson').decode(body)
    assert.equal(2, #stats)
    local total = 0
    for i, s in ipairs(stats) do
      assert.equal(i, s.id)
      assert.equal(i, s.slot)
      assert.is_number(s.reqPerSec)
      assert.is_true(s.pid > 0)
      assert.is_true(s.rss > 1e6, 'rss ' .. s.rss)
      assert.is_number(s.uptime)
      assert.is_number(s.loopLag)
      assert.equal(0, s.restarts)
      total = total + s.requests
    end
    assert.equal(20, total)
    status, body = h.get(status_port, '/metrics')
    assert.equal(200, status)
    assert.truthy(body:find('# TYPE luacluster_worker_requests_total counter',
      1, true))
    assert.truthy(body:find('luacluster_worker_requests_total{slot="1",' ..
      'worker="1",pid="%d+"} %d+'))
    assert.truthy(body:find('luacluster_workers 2', 1, true))
    status, body = h.get(status_port, '/health')
    assert.equal(200, status)
    assert.equal(404, (h.get(status_port, '/nope')))
    p:stop()
  end)

  it('cluster.stats() is a sequence ordered by id', function()
    local path = h.tmpfile([[
      local cluster = require('cluster')
      if cluster.isPrimary then
        for _ = 1, 3 do cluster.fork() end
        local n = 0
        cluster.on('online', function()
          n = n + 1
          if n < 3 then return end
          setTimeout(function()
            for _, s in ipairs(cluster.stats()) do
              print(s.id, s.pid > 0, s.rss > 0, s.requests, s.connections,
                s.restarts)
            end
            cluster.disconnect()
          end, 200)
        end)
      else
        process.on('message', function() end)
      end
    ]])
    local p = h.run({path})
    os.remove(path)
    assert.equal(0, p.code)
    assert.equal('1\ttrue\ttrue\t0\t0\t0\n2\ttrue\ttrue\t0\t0\t0\n' ..
      '3\ttrue\ttrue\t0\t0\t0\n', p.stdout)
  end)
end)

-- The time and level that start each line a primary writes (internal/log).
local TS = '%d%d%d%d%-%d%d%-%d%dT%d%d:%d%d:%d%d%.%d%d%dZ %a+ +'

describe('worker output under -w', function()
  it('prefixes each line with the worker id, lines whole', function()
    -- Each worker writes long lines in pieces (io.write without a newline,
    -- then the rest), both workers at once: every line must come out whole
    -- behind its own prefix.
    local app = h.tmpfile([[
      local id = process.pid
      for i = 1, 200 do
        io.write(('a'):rep(1500))
        io.flush()
        io.write(('b'):rep(1500), ' ', id, ' ', i, '\n')
        io.flush()
      end
      io.stderr:write('to stderr ', id, '\n')
    ]])
    local p = h.run({'-w', '2', app}, {timeout = 20000})
    os.remove(app)
    assert.equal(0, p.code, p.stderr)
    local count = {}
    for line in p.stdout:gmatch('[^\n]+') do
      local w, pid, i = line:match('^' .. TS .. '%[(%d)%] a+b+ (%d+) (%d+)$')
      assert.truthy(w, 'a mixed or partial line: ' .. line:sub(1, 80))
      assert.equal(3000 + 2 + #pid + #i, #line - 4 - 31)
      count[w] = (count[w] or 0) + 1
    end
    assert.equal(200, count['1'])
    assert.equal(200, count['2'])
    assert.truthy(p.stderr:find('\n' .. TS:gsub('%%a%+', 'error') ..
      '%[1%] to stderr %d+\n'))
    assert.truthy(p.stderr:find(' error %[2%] to stderr %d+\n'))
    -- The primary's own messages: one line each, with time and level.
    assert.truthy(p.stderr:find('\n' .. TS:gsub('%%a%+', 'info') ..
      '%[primary%] worker 1 %(pid %d+%) started\n'))
    assert.truthy(p.stderr:find(' info  %[primary%] worker 2 %(pid %d+%) ' ..
      'exited %(code 0%)\n'))
  end)

  it('prefixes a silent worker\'s lines when nothing listens to them',
      function()
    local p = h.script([[
      local cluster = require('cluster')
      if cluster.isPrimary then
        cluster.setupPrimary({silent = true})
        cluster.fork()
      else
        print('hello from a silent worker')
      end
    ]])
    assert.equal(0, p.code)
    assert.matches('^' .. TS .. '%[1%] hello from a silent worker\n$',
      p.stdout)
  end)
end)

-- unprefix(out, id) -> the stream a worker wrote, rebuilt from the
-- primary's lines of it ("[id] " starts a line, "[id]+ " goes on with the
-- line before, cut for its length), and the longest line; errors on a line
-- of another shape.
local function unprefix(out, id)
  local parts, longest = {}, 0
  local first, more = '[' .. id .. '] ', '[' .. id .. ']+ '
  local pos = 1
  while pos <= #out do
    local ts = out:match('^' .. TS, pos)
    assert(ts, 'a line without its time: ' .. out:sub(pos, pos + 40))
    pos = pos + #ts
    local nl = out:find('\n', pos, true)
    assert(nl, 'output does not end with a newline')
    longest = math.max(longest, nl - pos)
    if out:sub(pos, pos + #more - 1) == more then
      parts[#parts + 1] = out:sub(pos + #more, nl - 1)
    elseif out:sub(pos, pos + #first - 1) == first then
      if #parts > 0 then parts[#parts + 1] = '\n' end
      parts[#parts + 1] = out:sub(pos + #first, nl - 1)
    else
      error('a line without its prefix: ' .. out:sub(pos, pos + 40))
    end
    pos = nl + 1
  end
  return table.concat(parts) .. '\n', longest
end

-- The 4 MB line below: 64 pieces of 64 KB, each of one letter.
local function pieces()
  local t = {}
  for i = 1, 64 do t[i] = string.char(65 + i % 26):rep(65536) end
  return table.concat(t)
end

describe('a worker\'s long lines', function()
  it('pass on whole and in order while the primary answers /health, ' ..
      'SIGTERM and stays cheap', function()
    -- One 512 KB line in one write, then a 4 MB line written in 64 pieces
    -- 10 ms apart with no newline until the end.
    local app = h.tmpfile([[
      io.write(('x'):rep(512 * 1024), '\n')
      io.flush()
      local i = 0
      local t
      t = setInterval(function()
        i = i + 1
        if i > 64 then
          clearInterval(t)
          io.write('\ndone\n')
        else
          io.write(string.char(65 + i % 26):rep(65536))
        end
        io.flush()
      end, 10)
      require('http').createServer(function(req, res)
        res:finish('ok')
      end):listen(tonumber(process.env.PORT))
    ]])
    local status_port = h.free_port()
    local p = start({LUACLUSTER_STATUS_PORT = tostring(status_port)},
      {'-w', '1', app})
    assert.is_true(p:wait_stderr('worker 1 %(pid %d+%) started', 5000),
      p.stderr)
    local cpu0 = h.cputime(p.pid)
    -- /health, every 50 ms until the worker's output is all in (10 s at
    -- most): each must answer within a second.
    local probes, unanswered, slowest = 0, 0, 0
    local deadline = uv.now() + 10000
    repeat
      local t0 = uv.hrtime()
      local data = h.raw(status_port, 'GET /health HTTP/1.1\r\nHost: x\r\n' ..
        'Connection: close\r\n\r\n', {timeout = 1000})
      probes = probes + 1
      slowest = math.max(slowest, (uv.hrtime() - t0) / 1e6)
      if not data:find('^HTTP/1%.1 %d%d%d ') then
        unanswered = unanswered + 1
      end
      h.sleep(50)
    until p.stdout:sub(-9) == '[1] done\n' or uv.now() > deadline or
      p.exited
    local cpu = h.cputime(p.pid) - cpu0
    local t0 = uv.now()
    p:kill('sigterm')
    local ended = p:wait(3000)
    local took = uv.now() - t0
    os.remove(app)
    print(('\n  512 KB + 4 MB lines: primary CPU %.2f s, %d /health ' ..
      'probes, slowest %.0f ms, %d unanswered; SIGTERM to exit %d ms')
      :format(cpu, probes, slowest, unanswered, took))
    assert.is_true(cpu < 2, ('the primary used %.2f s of CPU'):format(cpu))
    assert.equal(0, unanswered, '/health went unanswered')
    assert.is_true(ended, 'the primary did not exit within 3 s of SIGTERM')
    assert.equal(0, p.code, p.stderr)
    local text, longest = unprefix(p.stdout, 1)
    assert.is_true(text == ('x'):rep(512 * 1024) .. '\n' .. pieces() ..
      '\ndone\n', 'output lost or reordered')
    -- Cut at 64 KB, a read (at most 64 KB) past it at worst.
    assert.is_true(longest <= 128 * 1024 + 8, 'a line of ' .. longest)
  end)

  it('are cut at MAX_LINE, the rest marked, each byte looked at once',
      function()
    local output = require('cluster.output')
    local path = os.tmpname()
    local fd = assert(uv.fs_open(path, 'w', 420))
    local write, finish = output.lines(fd, 7)
    local max = output.MAX_LINE
    write('a\nb')
    write('c\n\nd' .. ('e'):rep(max))   -- cut: "de..." is over MAX_LINE
    write('\n')                          -- right after a cut: nothing
    write(('f'):rep(max - 1))
    write('g\nh')                        -- MAX_LINE bytes, ended: whole
    finish()
    -- 64 MB in 1 KB writes with no newline: linear, so well under a second.
    local chunk = ('i'):rep(1024)
    local c0 = os.clock()
    for _ = 1, 64 * 1024 do write(chunk) end
    local cpu = os.clock() - c0
    finish()
    uv.fs_close(fd)
    local f = io.open(path, 'rb')
    local out = f:read('*a')
    f:close()
    os.remove(path)
    local lines = h.lines(out)
    local bare = {}
    for i = 1, 8 do
      assert.matches('^' .. TS:gsub('%%a%+', 'info'), lines[i])
      bare[i] = lines[i]:gsub('^' .. TS, '')
    end
    assert.same({'[7] a', '[7] bc', '[7] ', '[7] d' .. ('e'):rep(max),
      '[7] ' .. ('f'):rep(max - 1) .. 'g', '[7] h'},
      {unpack(bare, 1, 6)})
    assert.equal(64 * 1024 * 1024, #unprefix(out:sub(#table.concat(lines,
      '\n', 1, 6) + 2), 7) - 1)
    assert.equal('[7]+ ', bare[8]:sub(1, 5))
    assert.is_true(cpu < 1, ('64 MB took %.2f s'):format(cpu))
  end)

  it('of a silent worker nothing listens to pass on whole too', function()
    local p = h.script([[
      local cluster = require('cluster')
      if cluster.isPrimary then
        cluster.setupPrimary({silent = true})
        cluster.fork()
      else
        io.write(('z'):rep(1024 * 1024))
        io.flush()
        io.write(' end\n', 'short\n', 'no newline at the end')
      end
    ]], {timeout = 10000})
    assert.equal(0, p.code, p.stderr)
    local text, longest = unprefix(p.stdout, 1)
    assert.is_true(text == ('z'):rep(1024 * 1024) .. ' end\nshort\n' ..
      'no newline at the end\n', 'output lost or reordered')
    assert.is_true(longest <= 128 * 1024 + 8, 'a line of ' .. longest)
    assert.truthy(p.stdout:gsub(TS, ''):find(
      '\n[1] short\n[1] no newline at the end\n', 1, true))
  end)
end)

describe('systemd', function()
  it('adopts a socket passed by systemd-socket-activate', function()
    local port = h.free_port()
    local app = h.tmpfile([[
      require('http').createServer(function(req, res)
        res:finish('activated ' .. process.pid)
      end):listen(]] .. port .. [[)
    ]])
    local p = h.spawn({'-l', '127.0.0.1:' .. port, h.bin, '-w', '2', app},
      {cmd = '/usr/bin/systemd-socket-activate'})
    assert.is_true(p:wait_stderr('Listening on', 3000), p.stderr)
    -- The socket exists before luacluster runs: the first request waits in
    -- its backlog instead of being refused.
    local status, body = h.get(port, '/')
    assert.equal(200, status, p.stderr)
    assert.truthy(body:find('^activated %d+'))
    assert.is_true(h.wait(function()
      return count(p.stderr, 'listening on port ' .. port) == 2
    end, 5000), p.stderr)
    -- Both workers serve on the inherited socket; none bound its own.
    assert.falsy(p.stderr:find('EADDRINUSE'))
    p:stop()
    os.remove(app)
  end)
end)
