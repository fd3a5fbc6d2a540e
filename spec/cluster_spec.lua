-- cluster: fork, messages, exits and listen plumbing, against real
-- processes. Each case runs a small script under the binary as a user
-- would and reads what its primary and workers print.

local h = require('helper')

-- run(src[, opts]) -> proc once exited; src is a cluster script.
local function run(src, opts)
  opts = opts or {}
  return h.script(src, {after = opts.args, env = opts.env,
    timeout = opts.timeout})
end

local lines = h.lines

local function has(list, x)
  for _, v in ipairs(list) do if v == x then return true end end
  return false
end

local function index(list, x)
  for i, v in ipairs(list) do if v == x then return i end end
end

after_each(function() h.cleanup() end)

describe('cluster roles', function()
  it('sets isPrimary/isMaster/isWorker and worker ids from 1', function()
    local p = run([[
      local cluster = require('cluster')
      if cluster.isPrimary then
        print('primary', cluster.isMaster, cluster.isWorker,
          cluster.worker == nil)
        local a, b = cluster.fork(), cluster.fork()
        print('ids', a.id, b.id)
      else
        print('worker', cluster.worker.id, cluster.isPrimary,
          cluster.isMaster, cluster.isWorker)
      end
    ]])
    assert.equal(0, p.code)
    local out = lines(p.stdout)
    assert.is_true(has(out, 'primary\ttrue\tfalse\ttrue'))
    assert.is_true(has(out, 'ids\t1\t2'))
    assert.is_true(has(out, 'worker\t1\tfalse\tfalse\ttrue'))
    assert.is_true(has(out, 'worker\t2\tfalse\tfalse\ttrue'))
    assert.equal('', p.stderr)
  end)

  it('never reuses an id', function()
    local p = run([[
      local cluster = require('cluster')
      if cluster.isPrimary then
        local n = 0
        cluster.on('exit', function(w)
          n = n + 1
          if n < 3 then print('new', cluster.fork().id) end
        end)
        cluster.fork()
      end
    ]])
    assert.equal(0, p.code)
    assert.same({'new\t2', 'new\t3'}, lines(p.stdout))
  end)
end)

describe('cluster events', function()
  it('emits fork, online, listening, disconnect, exit in order', function()
    local p = run([[
      local cluster = require('cluster')
      if cluster.isPrimary then
        local w = cluster.fork()
        for _, ev in ipairs({'fork', 'online', 'listening', 'disconnect',
            'exit'}) do
          cluster.on(ev, function(worker, a, b)
            assert(worker == w)
            if ev == 'listening' then
              print(ev, a.port > 0, a.addressType)
              w:disconnect()
            elseif ev == 'exit' then
              print(ev, a, b, w.exitedAfterDisconnect)
            else
              print(ev)
            end
          end)
          w:on(ev, function() print('worker.' .. ev) end)
        end
      else
        cluster._getServer({port = 0, addressType = 4}, function(err, lst)
          assert(not err, err)
          if lst.handle then
            lst.handle:listen(16, function() end)
          end
        end)
      end
    ]])
    assert.equal(0, p.code)
    assert.same({'fork', 'worker.online', 'online',
      'worker.listening', 'listening\ttrue\t4', 'worker.disconnect',
      'disconnect', 'worker.exit', 'exit\t0\tnil\ttrue'}, lines(p.stdout))
  end)

  it('emits setup with the settings, and fills settings', function()
    local p = run([[
      local cluster = require('cluster')
      cluster.on('setup', function(s)
        print('setup', s.exec == process.argv[2], s.silent, #s.args)
      end)
      cluster.setupPrimary({args = {'a', 'b'}})
      print('settings', cluster.settings.args[2])
    ]])
    assert.equal(0, p.code)
    assert.same({'settings\tb', 'setup\ttrue\tfalse\t2'}, lines(p.stdout))
  end)
end)

describe('cluster.fork env and setupPrimary', function()
  it('passes env with fork over setupPrimary over inherited', function()
    local p = run([[
      local cluster = require('cluster')
      if cluster.isPrimary then
        cluster.setupPrimary({env = {B = 'settings', C = 'settings'}})
        cluster.fork({C = 'fork'})
      else
        print(process.env.A, process.env.B, process.env.C,
          process.env.LUACLUSTER_WORKER_ID)
      end
    ]], {env = {A = 'inherited', B = 'inherited', C = 'inherited'}})
    assert.equal(0, p.code)
    assert.same({'inherited\tsettings\tfork\tnil'}, lines(p.stdout))
  end)

  it('runs settings.exec with settings.args in workers', function()
    local other = h.tmpfile([[
      print('other script', require('cluster').worker.id, arg[1], arg[2])
    ]])
    local p = run(([[
      local cluster = require('cluster')
      cluster.setupMaster({exec = %q, args = {'x', 'y'}})
      cluster.fork()
    ]]):format(other))
    os.remove(other)
    assert.equal(0, p.code)
    assert.same({'other script\t1\tx\ty'}, lines(p.stdout))
  end)

  it('runs workers in settings.cwd', function()
    local p = run([[
      local cluster = require('cluster')
      if cluster.isPrimary then
        cluster.setupPrimary({cwd = '/tmp'})
        cluster.fork()
      else
        print(process.cwd())
      end
    ]])
    assert.equal(0, p.code)
    assert.same({'/tmp'}, lines(p.stdout))
  end)

  it('pipes worker output to the primary with silent', function()
    local p = run([[
      local cluster = require('cluster')
      if cluster.isPrimary then
        cluster.setupPrimary({silent = true})
        local w = cluster.fork()
        w.process.stdout:on('data', function(d)
          io.write('got: ', d)
        end)
      else
        print('quiet worker')
      end
    ]])
    assert.equal(0, p.code)
    assert.same({'got: quiet worker'}, lines(p.stdout))
  end)
end)

describe('cluster messages', function()
  it('round-trips nested tables, unicode and exact numbers', function()
    local p = run([[
      local cluster = require('cluster')
      local msg = {nested = {list = {1, 2, {deep = true}}, s = 'x'},
        unicode = 'héllo wörld ✓ 日本', pi = math.pi, third = 1 / 3,
        big = 2 ^ 53, neg = -0.5, empty = '', t = true, f = false,
        quote = 'a "q" \\ \n line'}
      local function same(a, b)
        if type(a) ~= type(b) then return false end
        if type(a) ~= 'table' then return a == b end
        for k, v in pairs(a) do if not same(v, b[k]) then return false end end
        for k in pairs(b) do if a[k] == nil then return false end end
        return true
      end
      if cluster.isPrimary then
        local w = cluster.fork()
        w:on('message', function(m)
          print('back', same(m, msg), m.pi == math.pi, m.third == 1 / 3,
            m.big == 2 ^ 53, m.unicode)
          w:disconnect()
        end)
        w:send(msg)
      else
        process.on('message', function(m)
          print('worker got', same(m, msg))
          process.send(m)
        end)
      end
    ]])
    assert.equal(0, p.code)
    local out = lines(p.stdout)
    assert.is_true(has(out, 'worker got\ttrue'))
    assert.is_true(has(out,
      'back\ttrue\ttrue\ttrue\ttrue\théllo wörld ✓ 日本'))
  end)

  it('delivers 100k messages each way in order', function()
    local p = run([[
      local cluster = require('cluster')
      local N = 100000
      if cluster.isPrimary then
        local w = cluster.fork()
        local got, ok = 0, true
        w:on('message', function(m)
          got = got + 1
          if m.i ~= got then ok = false end
          if got == N then
            print('primary got', got, ok)
            w:disconnect()
          end
        end)
        w:on('online', function()
          for i = 1, N do w:send({i = i}) end
        end)
      else
        local got, ok = 0, true
        cluster.worker:on('message', function(m)
          got = got + 1
          if m.i ~= got then ok = false end
          process.send(m)
          if got == N then print('worker got', got, ok) end
        end)
      end
    ]], {timeout = 30000})
    assert.equal(0, p.code)
    local out = lines(p.stdout)
    assert.is_true(has(out, 'worker got\t100000\ttrue'))
    assert.is_true(has(out, 'primary got\t100000\ttrue'))
  end)

  it('delivers a 1 MB message whole', function()
    local p = run([[
      local cluster = require('cluster')
      if cluster.isPrimary then
        local w = cluster.fork()
        local big = ('0123456789abcdef'):rep(65536)
        w:on('message', function(m)
          print('back', #m.data, m.data == big, m.tail)
          w:disconnect()
        end)
        w:send({data = big, tail = 'end'})
      else
        process.on('message', function(m)
          print('worker', #m.data)
          process.send(m)
        end)
      end
    ]])
    assert.equal(0, p.code)
    assert.same({'worker\t1048576', 'back\t1048576\ttrue\tend'},
      lines(p.stdout))
  end)

  it('raises a clear error for what cannot be sent and stays usable',
      function()
    local p = run([[
      local cluster = require('cluster')
      if cluster.isPrimary then
        local w = cluster.fork()
        local function try(v)
          local ok, err = pcall(w.send, w, v)
          print(ok, (tostring(err):gsub('^.-:%d+: ', '')))
        end
        try({cb = function() end})
        local cyc = {}
        cyc.self = cyc
        try(cyc)
        try({list = {1, 2, x = 3}})
        try({co = coroutine.create(function() end)})
        try({nan = 0 / 0})
        w:on('message', function(m)
          print('still works', m)
          w:disconnect()
        end)
        w:send('ping')
      else
        process.on('message', function(m) process.send(m .. '/pong') end)
      end
    ]])
    assert.equal(0, p.code)
    assert.same({
      'false\tcannot send a function at msg.cb',
      'false\tcannot send a cycle at msg.self',
      'false\tcannot send a table with both array and hash parts at ' ..
        'msg.list (keys would be lost)',
      'false\tcannot send a thread at msg.co',
      'false\tcannot send nan at msg.nan',
      'still works\tping/pong'}, lines(p.stdout))
  end)

  it('delivers the messages after one whose handler raised', function()
    local p = run([[
      local cluster = require('cluster')
      if cluster.isPrimary then
        local w = cluster.fork()
        w:on('message', function(m)
          print('back', m)
          if m == 5 then w:disconnect() end
        end)
        w:on('online', function()
          for i = 1, 5 do w:send(i) end
        end)
      else
        process.on('uncaughtException', function(err)
          print('caught', (tostring(err):gsub('^.-:%d+: ', '')))
        end)
        process.on('message', function(m)
          if m == 2 then error('bad message ' .. m) end
          process.send(m)
        end)
      end
    ]])
    assert.equal(0, p.code)
    local out = lines(p.stdout)
    assert.is_true(has(out, 'caught\tbad message 2'))
    local backs = {}
    for _, l in ipairs(out) do
      local n = l:match('^back\t(%d)$')
      if n then backs[#backs + 1] = tonumber(n) end
    end
    assert.same({1, 3, 4, 5}, backs)
  end)

  it('reports a send on a closed channel through cb or error', function()
    local p = run([[
      local cluster = require('cluster')
      if cluster.isPrimary then
        local w = cluster.fork()
        w:on('exit', function()
          print('connected', w:isConnected(), w:isDead())
          w:send('late', function(err) print('cb', err and err.code) end)
          w:on('error', function(err) print('error', err.code) end)
          print('returned', w:send('later'))
        end)
      end
    ]])
    assert.equal(0, p.code)
    assert.same({'connected\tfalse\ttrue', 'returned\tfalse',
      'cb\tERR_IPC_CHANNEL_CLOSED', 'error\tERR_IPC_CHANNEL_CLOSED'},
      lines(p.stdout))
  end)

  it('accepts dot and colon calls on cluster, worker and process',
      function()
    local p = run([[
      local cluster = require('cluster')
      if cluster.isPrimary then
        local w = cluster.fork()
        local n = 0
        cluster.on('message', function(worker, m)
          n = n + 1
          print('msg', m)
          if n == 2 then worker.disconnect() end
        end)
        w.send('dot')
        w:send('colon')
      else
        process.on('message', function(m) process.send(m) end)
      end
    ]])
    assert.equal(0, p.code)
    assert.same({'msg\tdot', 'msg\tcolon'}, lines(p.stdout))
  end)
end)

describe('cluster faults', function()
  it('survives a worker writing garbage on its IPC channel', function()
    local p = run([[
      local cluster = require('cluster')
      if cluster.isPrimary then
        local w = cluster.fork()
        w:on('error', function(err) print('error', err.code) end)
        w:on('exit', function(code, signal)
          print('exit', code, signal)
          local w2 = cluster.fork()
          w2:on('message', function(m)
            print('next worker', m)
            w2:disconnect()
          end)
        end)
      elseif cluster.worker.id == 1 then
        -- Bypass the channel: raw bytes on the socket to the primary.
        local uv = require('uv')
        local fd = require('_tcp').dup(3)
        local raw = uv.new_pipe(false)
        raw:open(fd)
        raw:write('\255\255\255\255 this is not a frame\n', function()
          raw:close()
        end)
        process.on('message', function() end)
      else
        process.send('fine')
        process.on('message', function() end)
      end
    ]])
    assert.equal(0, p.code)
    assert.same({'error	ERR_IPC', 'exit	0	nil', 'next worker	fine'},
      lines(p.stdout))
  end)
end)

describe('cluster exits', function()
  it('reports kill() with the signal name', function()
    local p = run([[
      local cluster = require('cluster')
      if cluster.isPrimary then
        local w = cluster.fork()
        w:on('online', function() w:kill() end)
        cluster.on('exit', function(worker, code, signal)
          print(code, signal, worker.exitedAfterDisconnect, worker:isDead())
        end)
      else
        setInterval(function() end, 1000)
      end
    ]])
    assert.equal(0, p.code)
    assert.same({'nil\tSIGTERM\tfalse\ttrue'}, lines(p.stdout))
  end)

  it('reports kill -9 of a worker as SIGKILL', function()
    local p = run([[
      local cluster = require('cluster')
      if cluster.isPrimary then
        local w = cluster.fork()
        w:on('online', function()
          require('uv').kill(w.process.pid, 'sigkill')
        end)
        cluster.on('exit', function(worker, code, signal)
          print(code, signal, worker.exitedAfterDisconnect)
        end)
      else
        setInterval(function() end, 1000)
      end
    ]])
    assert.equal(0, p.code)
    assert.same({'nil\tSIGKILL\tfalse'}, lines(p.stdout))
  end)

  it('reports a worker exit code', function()
    local p = run([[
      local cluster = require('cluster')
      if cluster.isPrimary then
        cluster.fork()
        cluster.on('exit', function(w, code, signal) print(code, signal) end)
      else
        process.exit(7)
      end
    ]])
    assert.equal(0, p.code)
    assert.same({'7\tnil'}, lines(p.stdout))
  end)

  it('disconnect() lets the worker exit with exitedAfterDisconnect',
      function()
    local p = run([[
      local cluster = require('cluster')
      if cluster.isPrimary then
        local w = cluster.fork()
        w:on('online', function()
          w:disconnect()
          print('removed', cluster.workers[w.id] == nil)
        end)
        w:on('disconnect', function() print('disconnect') end)
        w:on('exit', function(code, signal)
          print('exit', code, signal, w.exitedAfterDisconnect)
        end)
      else
        process.on('disconnect', function()
          print('worker saw disconnect', process.connected)
        end)
        process.on('message', function() end)
      end
    ]])
    assert.equal(0, p.code)
    local out = lines(p.stdout)
    assert.is_true(has(out, 'removed\ttrue'))
    assert.is_true(has(out, 'worker saw disconnect\tfalse'))
    assert.is_true(index(out, 'disconnect') < index(out, 'exit\t0\tnil\ttrue'))
  end)

  it('cluster.disconnect(cb) calls back once every worker is gone',
      function()
    local p = run([[
      local cluster = require('cluster')
      if cluster.isPrimary then
        for _ = 1, 3 do cluster.fork() end
        local online = 0
        cluster.on('online', function()
          online = online + 1
          if online == 3 then
            cluster.disconnect(function()
              print('all gone', next(cluster.workers) == nil)
            end)
          end
        end)
      else
        process.on('message', function() end)
      end
    ]])
    assert.equal(0, p.code)
    assert.same({'all gone\ttrue'}, lines(p.stdout))
  end)

  it('a worker disconnecting itself exits after disconnect', function()
    local p = run([[
      local cluster = require('cluster')
      if cluster.isPrimary then
        local w = cluster.fork()
        cluster.on('exit', function(worker, code)
          print('exit', code, worker.exitedAfterDisconnect)
        end)
      else
        process.on('message', function() end)
        setTimeout(function() cluster.worker:disconnect() end, 10)
      end
    ]])
    assert.equal(0, p.code)
    assert.same({'exit\t0\ttrue'}, lines(p.stdout))
  end)

  it('leaves no worker behind when the primary is killed -9', function()
    local path = h.tmpfile([[
      local cluster = require('cluster')
      if cluster.isPrimary then
        cluster.fork() cluster.fork()
        cluster.on('online', function(w) print('online', w.process.pid) end)
      else
        setInterval(function() end, 1000)
      end
    ]])
    local p = h.spawn({path})
    assert.is_true(h.wait(function()
      local _, n = p.stdout:gsub('online', '')
      return n == 2
    end, 5000))
    local pids = {}
    for pid in p.stdout:gmatch('online\t(%d+)') do pids[#pids + 1] = tonumber(pid) end
    assert.equal(2, #pids)
    p:kill('sigkill')
    assert.is_true(p:wait(2000))
    assert.equal('SIGKILL', p.signal)
    local gone = h.wait(function()
      return not h.alive(pids[1]) and not h.alive(pids[2])
    end, 2000)
    for _, pid in ipairs(pids) do
      if h.alive(pid) then require('uv').kill(pid, 'sigkill') end
    end
    os.remove(path)
    assert.is_true(gone, 'workers outlived their primary')
  end)
end)

describe('cluster.stats (the counters a heartbeat reports)', function()
  it('sums what every provider returns, requests and connections always',
      function()
    local p = run([[
      local stats = require('internal.stats')
      local function show(t)
        local keys = {}
        for k in pairs(t) do keys[#keys + 1] = k end
        table.sort(keys)
        local out = {}
        for _, k in ipairs(keys) do out[#out + 1] = k .. '=' .. t[k] end
        print(table.concat(out, ' '))
      end
      show(stats.collect())
      stats.provide('a', function() return {requests = 2, connections = 1} end)
      stats.provide('b', function() return {requests = 3, frames = 7} end)
      show(stats.collect())
      stats.provide('b', function() return {requests = 1} end)
      show(stats.collect())
      print(pcall(stats.provide, 'c'))
    ]])
    assert.equal(0, p.code, p.stderr)
    local out = lines(p.stdout)
    assert.same({'connections=0 requests=0',
      'connections=1 frames=7 requests=5', 'connections=1 requests=3'},
      {out[1], out[2], out[3]})
    assert.truthy(out[4]:find('^false\t.*a string and a function'))
  end)
end)

describe('cluster listen plumbing', function()
  -- Each worker serves its id on raw TCP through cluster._getServer,
  -- under each policy; the spec connects until both ids answered.
  for _, sched in ipairs({'rr', 'none', 'reuseport'}) do
    it('shares one port between 2 workers under ' .. sched, function()
      local path = h.tmpfile([[
        local cluster = require('cluster')
        local uv = require('uv')
        if cluster.isPrimary then
          cluster.fork() cluster.fork()
          local n = 0
          cluster.on('listening', function(w, addr)
            n = n + 1
            if n == 2 then print('port', addr.port) end
          end)
        else
          local function serve(c)
            -- Busy for a moment, so the other worker gets to accept too
            -- (a shared accept queue does not balance short bursts).
            local t = uv.hrtime()
            while uv.hrtime() - t < 2e6 do end
            c:write('worker ' .. cluster.worker.id .. '\n', function()
              c:close()
            end)
          end
          cluster._getServer({port = 0, addressType = 4}, function(err, lst)
            assert(not err, err)
            -- A listening socket (shared, or this worker's SO_REUSEPORT
            -- one), or none: round robin hands each connection over.
            if lst.handle then
              lst.handle:listen(64, function()
                local c = uv.new_tcp()
                lst.handle:accept(c)
                serve(c)
              end)
            end
            lst.onconnection = serve
          end)
        end
      ]])
      local p = h.spawn({path}, {env = {LUACLUSTER_SCHED = sched}})
      assert.is_true(p:wait_output('port\t%d+\n', 5000), p.stderr)
      local port = tonumber(p.stdout:match('port\t(%d+)'))
      local seen = {}
      for _ = 1, 300 do
        local data = h.raw(port, '', {timeout = 2000})
        local id = data:match('worker (%d)')
        if id then seen[id] = true end
        if seen['1'] and seen['2'] then break end
      end
      p:stop()
      os.remove(path)
      assert.is_true(seen['1'] and seen['2'] or false,
        'both workers should answer under ' .. sched)
    end)
  end

  -- Round robin hands a connection only to a worker that answered for its
  -- last one (Node's free list): a stalled worker holds one, not a pile.
  it('hands a stopped worker at most one connection under rr', function()
    local uv = require('uv')
    local path = h.tmpfile([[
      local cluster = require('cluster')
      if cluster.isPrimary then
        cluster.fork() cluster.fork()
        cluster.on('listening', function(w, a)
          print('listening', w.id, w.process.pid, a.port)
        end)
      else
        require('net').createServer(function(s)
          s:finish('worker ' .. cluster.worker.id .. '\n')
        end):listen(0)
      end
    ]])
    local p = h.spawn({path}, {env = {LUACLUSTER_SCHED = 'rr'}})
    local stopped
    local ok, err = pcall(function()
      assert.is_true(p:wait_output('listening\t2\t', 5000) and
        p:wait_output('listening\t1\t', 5000), p.stderr)
      local pid = tonumber(p.stdout:match('listening\t1\t(%d+)'))
      local port = tonumber(p.stdout:match('listening\t%d\t%d+\t(%d+)'))
      uv.kill(pid, 'sigstop')
      stopped = pid
      -- N connections at once; each reads until the server closes it.
      local N = 20
      local got = {}
      local answered = 0
      for i = 1, N do
        local c = uv.new_tcp()
        local data = ''
        c:connect('127.0.0.1', port, function(e)
          if e then return c:close() end
          c:read_start(function(_, chunk)
            if chunk then data = data .. chunk return end
            got[i] = data:match('worker (%d)') or '?'
            answered = answered + 1
            c:close()
          end)
        end)
      end
      h.wait(function() return answered >= N - 1 end, 10000)
      local by2 = 0
      for _, id in pairs(got) do if id == '2' then by2 = by2 + 1 end end
      assert.is_true(by2 >= N - 1, ('%d of %d answered by worker 2 ' ..
        'while worker 1 was stopped'):format(by2, N))
      -- Resumed, the stopped worker serves the one it was handed.
      uv.kill(pid, 'sigcont')
      stopped = nil
      assert.is_true(h.wait(function() return answered == N end, 5000),
        ('%d of %d answered after SIGCONT'):format(answered, N))
      uv.kill(pid, 'sigkill')
    end)
    if stopped then
      uv.kill(stopped, 'sigcont')
      uv.kill(stopped, 'sigkill')
    end
    p:stop()
    os.remove(path)
    assert(ok, err)
  end)

  it('reports EADDRINUSE to the worker', function()
    local uv = require('uv')
    local busy = uv.new_tcp()
    busy:bind('127.0.0.1', 0)
    busy:listen(1, function() end)
    local port = busy:getsockname().port
    local p = run(([[
      local cluster = require('cluster')
      if cluster.isPrimary then
        cluster.fork()
      else
        cluster._getServer({address = '127.0.0.1', port = %d,
            addressType = 4}, function(err, lst)
          print(err and err.code, err and err.message)
        end)
      end
    ]]):format(port))
    busy:close()
    assert.equal(0, p.code)
    assert.same({('EADDRINUSE\tbind EADDRINUSE 127.0.0.1:' .. port)},
      lines(p.stdout))
  end)
end)

describe('cluster examples', function()
  it('fork_workers.lua: four workers print their ids', function()
    local p = h.run({'examples/fork_workers.lua'})
    assert.equal(0, p.code)
    for i = 1, 4 do
      assert.truthy(p.stdout:find('I am worker #' .. i .. ' ', 1, true))
      assert.truthy(p.stdout:find('worker ' .. i .. ' exited with code 0',
        1, true))
    end
  end)

  it('restart_workers.lua: dead workers are replaced', function()
    local p = h.run({'examples/restart_workers.lua'},
      {env = {RESTARTS = '3'}})
    assert.equal(0, p.code)
    local _, died = p.stdout:gsub('died %(code 1%)', '')
    local _, started = p.stdout:gsub('started worker %d+ in its place', '')
    assert.equal(5, died)
    assert.equal(3, started)
  end)

  for _, ex in ipairs({'hello_cluster.lua', 'cpu_server.lua'}) do
    it(ex .. ': 2 workers serve one port', function()
      local port = h.free_port()
      local p = h.spawn({'examples/' .. ex}, {env = {PORT = tostring(port),
        WORKERS = '2'}})
      local ok = h.wait(function()
        return (h.get(port, '/')) == 200
      end, 5000)
      local status, body = h.get(port, '/')
      p:stop()
      assert.is_true(ok, p.stderr)
      assert.equal(200, status)
      if ex == 'cpu_server.lua' then
        assert.equal('50000005000000\n', body)
      else
        assert.truthy(body:find('^hello from worker [12]'))
      end
    end)
  end

  it('memory_usage.lua: every worker reports its memory', function()
    local p = h.run({'examples/memory_usage.lua'})
    assert.equal(0, p.code)
    local n = #require('os').cpus()
    local _, reports = p.stdout:gsub('worker %d+: rss [%d.]+ MB', '')
    assert.equal(n, reports)
  end)
end)
