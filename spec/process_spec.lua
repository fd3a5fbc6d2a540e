-- process: fields, functions, nextTick, exit and exit codes, the error
-- policy and signals as events. What ends or kills a process runs in a
-- fresh luacluster.
local h = require('helper')
local uv = require('uv')

local function lua(code, opts)
  return h.run({'-e', code}, opts)
end

describe('process', function()
  after_each(h.cleanup)

  it('is the global and require("process")', function()
    assert.equal(process, require('process'))
    assert.is_table(process)
  end)

  describe('fields', function()
    it('pid, ppid, platform, arch, version, versions', function()
      assert.equal(uv.os_getpid(), process.pid)
      assert.equal(uv.os_getppid(), process.ppid)
      assert.equal('linux', process.platform)
      assert.equal(jit.arch, process.arch)
      assert.matches('^v%d+%.%d+%.%d+$', process.version)
      assert.equal(process.version, 'v' .. process.versions.luacluster)
      assert.matches('^LuaJIT 2%.1', process.versions.luajit)
      assert.equal(uv.version_string(), process.versions.libuv)
    end)

    it('ppid is read afresh and read-only', function()
      local p = lua('print(process.ppid == require("uv").os_getppid())')
      assert.equal('true\n', p.stdout)
      assert.has_error(function() process.ppid = 1 end,
        'process.ppid is read-only')
    end)

    it('title reads and sets the process title', function()
      assert.is_string(process.title)
      local p = lua('process.title = "lc-title"; print(process.title)')
      assert.equal('lc-title\n', p.stdout)
    end)

    it('argv is Node\'s layout with absolute paths; arg is Lua\'s',
        function()
      local path = h.tmpfile([[
        print(#process.argv, process.argv[1], process.argv[2],
          process.argv[3], process.argv[4])
        print(arg[-1], arg[0], arg[1], arg[2], ...)
        print(process.argv0, #process.execArgv)]])
      local dir, base = path:match('^(.*)/([^/]+)$')
      local p = h.run({'./' .. base, 'one', 'two'}, {cwd = dir})
      os.remove(path)
      assert.equal(0, p.code)
      assert.equal(table.concat({
        ('4\t%s\t%s\tone\ttwo'):format(h.bin, path),
        ('%s\t./%s\tone\ttwo\tone\ttwo'):format(h.bin, base),
        h.bin .. '\t0', ''}, '\n'), p.stdout)
    end)

    it('execPath is the absolute path of the binary', function()
      assert.equal((uv.exepath():gsub(' %(deleted%)$', '')),
        process.execPath)
      assert.matches('^/', process.execPath)
    end)

    it('env holds the environment as a plain table', function()
      assert.equal(os.getenv('PATH'), process.env.PATH)
      local n = 0
      for k, v in pairs(process.env) do
        assert.is_string(k)
        assert.is_string(v)
        n = n + 1
      end
      assert.is_true(n > 0)
      local p = h.run({'-e', 'print(process.env.LC_SPEC_VAR)'},
        {env = {LC_SPEC_VAR = 'hello'}})
      assert.equal('hello\n', p.stdout)
    end)

    it('getuid and getgid', function()
      assert.equal(uv.getuid(), process.getuid())
      assert.equal(uv.getgid(), process.getgid())
    end)
  end)

  describe('cwd and chdir', function()
    it('cwd() is the working directory; chdir() changes it', function()
      local here = process.cwd()
      assert.equal(uv.cwd(), here)
      process.chdir('/tmp')
      local there = process.cwd()
      process.chdir(here)
      assert.equal('/tmp', there)
      assert.equal(here, process.cwd())
    end)

    it('chdir raises on a missing directory and on a bad argument',
        function()
      local ok, err = pcall(process.chdir, '/no/such/dir')
      assert.is_false(ok)
      assert.matches("ENOENT.*chdir '/no/such/dir'", err)
      assert.has_error(function() process.chdir(42) end,
        'The "directory" argument must be a string, got number')
    end)
  end)

  describe('time', function()
    it('uptime() grows in seconds', function()
      local a = process.uptime()
      assert.is_number(a)
      assert.is_true(a > 0)
      h.sleep(20)
      local b = process.uptime()
      assert.is_true(b - a >= 0.015 and b - a < 1, 'grew by ' .. (b - a))
    end)

    it('hrtime() is {seconds, nanoseconds}; hrtime(prev) the difference',
        function()
      local t = process.hrtime()
      assert.equal(2, #t)
      assert.equal(math.floor(t[1]), t[1])
      assert.equal(math.floor(t[2]), t[2])
      assert.is_true(t[2] >= 0 and t[2] < 1e9)
      h.sleep(30)
      local d = process.hrtime(t)
      assert.equal(0, d[1])
      assert.is_true(d[2] >= 29e6 and d[2] < 900e6, 'took ' .. d[2])
      assert.has_error(function() process.hrtime(5) end,
        'The "time" argument must be a table {seconds, nanoseconds}, got'
          .. ' number')
      assert.has_error(function() process.hrtime({1}) end)
    end)
  end)

  describe('resources', function()
    it('memoryUsage() gives rss and the Lua heap in bytes', function()
      -- No garbage of earlier specs left to be collected meanwhile (which
      -- could shrink the heap while the tables below grow it).
      collectgarbage('collect')
      local m = process.memoryUsage()
      for _, k in ipairs({'rss', 'heapTotal', 'heapUsed', 'external'}) do
        assert.is_number(m[k], k)
      end
      assert.equal(uv.resident_set_memory() > 0, m.rss > 1e6)
      assert.is_true(m.heapUsed > 1e4)
      local keep = {}
      for i = 1, 1e5 do keep[i] = {i} end
      assert.is_true(process.memoryUsage().heapUsed > m.heapUsed + 1e6)
      keep = nil
    end)

    it('cpuUsage() in microseconds; cpuUsage(prev) the difference',
        function()
      local a = process.cpuUsage()
      assert.is_true(a.user >= 0 and a.system >= 0)
      local x = 0
      local t0 = os.clock()
      while os.clock() - t0 < 0.05 do x = x + 1 end
      local d = process.cpuUsage(a)
      assert.is_true(d.user + d.system >= 30000, 'used ' .. d.user)
      assert.is_true(d.user < a.user + 1e6)
      assert.has_error(function() process.cpuUsage(1) end,
        'The "prevValue" argument must be a table {user, system}')
    end)
  end)

  describe('kill', function()
    it('signal 0 probes a process; a missing pid raises ESRCH', function()
      assert.is_true(process.kill(process.pid, 0))
      local p = lua('') -- a pid that just ended
      local ok, err = pcall(process.kill, p.pid, 0)
      assert.is_false(ok)
      assert.matches('kill ESRCH', err)
    end)

    it('raises on an unknown signal and a bad pid', function()
      assert.has_error(function() process.kill(process.pid, 'SIGNOPE') end,
        'Unknown signal: SIGNOPE')
      assert.has_error(function() process.kill('1') end,
        'The "pid" argument must be an integer, got 1')
    end)

    it('sends SIGTERM by default, or the signal named or numbered',
        function()
      local p = h.spawn({'-e', 'setInterval(function() end, 1000)'})
      h.sleep(50)
      assert.is_true(process.kill(p.pid))
      assert.is_true(p:wait(2000))
      assert.equal('SIGTERM', p.signal)
      p = h.spawn({'-e', 'setInterval(function() end, 1000)'})
      h.sleep(50)
      process.kill(p.pid, 'SIGKILL')
      assert.is_true(p:wait(2000))
      assert.equal('SIGKILL', p.signal)
      p = h.spawn({'-e', 'setInterval(function() end, 1000)'})
      h.sleep(50)
      process.kill(p.pid, process.signals.SIGINT)
      assert.is_true(p:wait(2000))
      assert.equal('SIGINT', p.signal)
    end)
  end)

  describe('signals as events', function()
    it('a listener gets (name, number) for a signal sent to itself',
        function()
      local got
      local function f(...) got = {...} end
      process.on('SIGUSR2', f)
      process.kill(process.pid, 'SIGUSR2')
      assert.is_true(h.wait(function() return got end, 1000))
      process.off('SIGUSR2', f)
      assert.same({'SIGUSR2', uv.constants.SIGUSR2}, got)
    end)

    it('SIGTERM, SIGINT, SIGHUP and SIGUSR2 reach listeners instead of'
        .. ' killing', function()
      local p = h.spawn({'-e', [[
        local n = 0
        local keep = setInterval(function() end, 1000)
        for _, s in ipairs({'SIGTERM', 'SIGINT', 'SIGHUP', 'SIGUSR2'}) do
          process:on(s, function(name, num)
            print('got ' .. name .. ' ' .. num)
            n = n + 1
            if n == 4 then clearInterval(keep) end
          end)
        end
        print('ready')]]})
      assert.is_true(p:wait_output('ready\n', 3000))
      for _, s in ipairs({'SIGTERM', 'SIGINT', 'SIGHUP', 'SIGUSR2'}) do
        p:kill(s:lower())
        assert.is_true(p:wait_output('got ' .. s, 2000), s)
      end
      assert.is_true(p:wait(2000))
      assert.equal(0, p.code)
      assert.is_nil(p.signal)
      assert.equal(('ready\ngot SIGTERM %d\ngot SIGINT %d\ngot SIGHUP %d\n'
        .. 'got SIGUSR2 %d\n'):format(uv.constants.SIGTERM,
        uv.constants.SIGINT, uv.constants.SIGHUP, uv.constants.SIGUSR2),
        p.stdout)
    end)

    it('a signal listener does not keep the process alive', function()
      local p = lua('process.on("SIGTERM", function() end)',
        {timeout = 2000})
      assert.equal(0, p.code)
    end)

    it('removing the last listener restores the default action',
        function()
      local p = h.spawn({'-e', [[
        local f = function() print('caught') end
        process.on('SIGTERM', f)
        process.off('SIGTERM', f)
        setInterval(function() end, 1000)
        print('ready')]]})
      assert.is_true(p:wait_output('ready\n', 3000))
      p:kill('sigterm')
      assert.is_true(p:wait(2000))
      assert.equal('SIGTERM', p.signal)
      assert.equal('ready\n', p.stdout)
    end)

    it('listening for SIGKILL raises a clear error', function()
      local ok, err = pcall(function()
        process.on('SIGKILL', function() end)
      end)
      assert.is_false(ok)
      assert.matches('process_spec%.lua:%d+: cannot listen for SIGKILL:'
        .. ' EINVAL', err)
      assert.equal(0, process:listenerCount('SIGKILL'))
    end)
  end)

  describe('nextTick', function()
    it('runs after the current code, first in first out, with arguments',
        function()
      local order = {}
      process.nextTick(function(a, b) order[#order + 1] = a .. b end,
        'x', 'y')
      process:nextTick(function() order[#order + 1] = 'colon' end)
      process.nextTick(function(...)
        order[#order + 1] = select('#', ...)
      end, nil, nil)
      order[#order + 1] = 'sync'
      assert.is_true(h.wait(function() return #order == 4 end, 500))
      assert.same({'sync', 'xy', 'colon', 2}, order)
    end)

    it('ticks queued by ticks run before any immediate or timer',
        function()
      local order = {}
      setTimeout(function()
        setImmediate(function() order[#order + 1] = 'immediate' end)
        process.nextTick(function()
          order[#order + 1] = 'tick1'
          process.nextTick(function() order[#order + 1] = 'tick3' end)
        end)
        process.nextTick(function() order[#order + 1] = 'tick2' end)
      end, 1)
      assert.is_true(h.wait(function() return #order == 4 end, 500))
      assert.same({'tick1', 'tick2', 'tick3', 'immediate'}, order)
    end)

    it('raises for a callback that is not a function', function()
      assert.has_error(function() process.nextTick(42) end,
        'The "callback" argument must be a function, got number')
    end)

    it('a tick that raises does not lose the ticks after it', function()
      local p = lua([[
        process.on('uncaughtException', function(e) print('caught') end)
        process.nextTick(function() error('first') end)
        process.nextTick(function() print('second') end)]])
      assert.equal('caught\nsecond\n', p.stdout)
      assert.equal(0, p.code)
    end)
  end)

  describe('exit', function()
    it('exit(code) emits exit with the code and ends at once', function()
      local p = lua([[
        process.on('exit', function(c) print('exit', c, process.exitCode) end)
        setTimeout(function() print('never') end, 10)
        process.exit(3)
        print('not reached')]])
      assert.equal(3, p.code)
      assert.equal('exit\t3\t3\n', p.stdout)
    end)

    it('exit() uses exitCode; the natural end honours it too', function()
      local p = lua('process.exitCode = 4; process.exit()')
      assert.equal(4, p.code)
      p = lua([[
        process.on('exit', function(c) print('exit', c) end)
        setTimeout(function() process.exitCode = 5 end, 5)]])
      assert.equal(5, p.code)
      assert.equal('exit\t5\n', p.stdout)
      p = lua('process.exitCode = "6"')
      assert.equal(6, p.code)
      p = lua('')
      assert.equal(0, p.code)
    end)

    it('exit inside an exit listener sets the code and stops there',
        function()
      local p = lua([[
        local n = 0
        process.on('exit', function(c)
          n = n + 1
          print('first', c, n)
          process.exit(9)
          print('not reached')
        end)
        process.on('exit', function() print('second never runs') end)
        process.exit(2)]])
      assert.equal(9, p.code)
      assert.equal('first\t2\t1\n', p.stdout)
    end)

    it('an exit listener may change exitCode', function()
      local p = lua([[
        process.on('exit', function(c) process.exitCode = c + 10 end)]])
      assert.equal(10, p.code)
    end)

    it('flushes what was written before it returns', function()
      local p = lua([[
        io.write('partial')
        process.stdout:write(' stdout')
        process.stderr.write('err')
        process.exit(0)]])
      assert.equal('partial stdout', p.stdout)
      assert.equal('err', p.stderr)
    end)

    it('raises on a code that is not an integer', function()
      local p = lua('process.exit("abc")')
      assert.equal(1, p.code)
      assert.matches('The "code" argument must be an integer, got abc',
        p.stderr)
      p = lua('process.exit(1.5)')
      assert.matches('must be an integer', p.stderr)
    end)

    it('an error in an exit listener is uncaught: traceback, exit 1',
        function()
      local p = lua([[process.on('exit', function() error('in exit') end)]])
      assert.equal(1, p.code)
      assert.matches('^%(command line%):1: in exit\nstack traceback:\n',
        p.stderr)
    end)

    it("'beforeExit' comes when the loop is empty and may add work",
        function()
      local p = lua([[
        local rounds = 0
        process.on('beforeExit', function(code)
          rounds = rounds + 1
          print('beforeExit', code, rounds)
          if rounds < 3 then
            setTimeout(function() print('more') end, 1)
          end
        end)
        process.on('exit', function(c) print('exit', c) end)
        process.exitCode = 2]])
      assert.equal(2, p.code)
      assert.equal('beforeExit\t2\t1\nmore\nbeforeExit\t2\t2\nmore\n'
        .. 'beforeExit\t2\t3\nexit\t2\n', p.stdout)
    end)

    it("'beforeExit' does not come after process.exit", function()
      local p = lua([[
        process.on('beforeExit', function() print('beforeExit') end)
        process.exit(0)]])
      assert.equal('', p.stdout)
    end)
  end)

  describe('uncaught errors', function()
    it('without a listener: traceback on stderr, exit event, exit 1',
        function()
      local p = lua([[
        process.on('exit', function(c) print('exit', c) end)
        setTimeout(function()
          local function inner() error('boom') end
          inner()
        end, 1)
        setTimeout(function() print('never') end, 50)]])
      assert.equal(1, p.code)
      assert.equal('exit\t1\n', p.stdout)
      assert.matches('^%(command line%):3: boom\nstack traceback:\n',
        p.stderr)
      assert.matches("in function 'inner'", p.stderr)
    end)

    it('a non-string error is shown readably', function()
      local p = lua('error({code = "EX", n = 1})')
      assert.equal(1, p.code)
      assert.matches("^Uncaught { code = 'EX', n = 1 }\nstack traceback:\n",
        p.stderr)
      p = lua([[error(setmetatable({}, {__tostring = function()
        return 'custom error' end}))]])
      assert.matches('^Uncaught custom error\n', p.stderr)
    end)

    it('error() with no value fails quietly, as in Lua', function()
      local p = lua('error()')
      assert.equal(1, p.code)
      assert.equal('', p.stderr)
    end)

    it('uncaughtException listeners get (err, origin) and the process'
        .. ' goes on', function()
      local p = lua([[
        local E = {code = 'E1'}
        process.on('uncaughtException', function(err, origin)
          print('caught', err == E, origin)
        end)
        process.on('uncaughtExceptionMonitor', function(err, origin)
          print('monitor', err == E, origin)
        end)
        setTimeout(function() error(E) end, 20)
        setTimeout(function() print('still running') end, 40)
        setImmediate(function() error('string error') end)
        error(E)]])
      assert.equal(0, p.code)
      assert.equal('monitor\ttrue\tuncaughtException\n'
        .. 'caught\ttrue\tuncaughtException\n'
        .. 'monitor\tfalse\tuncaughtException\n'
        .. 'caught\tfalse\tuncaughtException\n'
        .. 'monitor\ttrue\tuncaughtException\n'
        .. 'caught\ttrue\tuncaughtException\n'
        .. 'still running\n', p.stdout)
      assert.equal('', p.stderr)
    end)

    it('passes the raised value itself: a number stays a number',
        function()
      local p = lua([[
        process.on('uncaughtException', function(e) print(type(e), e) end)
        error(42, 0)]])
      assert.equal('number\t42\n', p.stdout)
      p = lua("error(42, 0)")
      assert.equal(1, p.code)
      assert.matches('^Uncaught 42\nstack traceback:', p.stderr)
    end)

    it('covers errors in intervals, immediates, ticks and uv callbacks',
        function()
      local p = lua([[
        local n = 0
        process.on('uncaughtException', function(e)
          n = n + 1
          print(e:match('x%d'))
        end)
        local t, fires = nil, 0
        t = setInterval(function()
          fires = fires + 1
          if fires == 2 then clearInterval(t) end
          error('x1')
        end, 2)
        setImmediate(function() error('x2') end)
        process.nextTick(function() error('x3') end)
        local uv = require('uv')
        local u = uv.new_timer()
        u:start(30, 0, function() u:close() error('x4') end)
        process.on('exit', function() print('handled', n) end)]])
      assert.equal(0, p.code)
      local lines = {}
      for l in p.stdout:gmatch('[^\n]+') do lines[#lines + 1] = l end
      table.sort(lines)
      assert.same({'handled\t5', 'x1', 'x1', 'x2', 'x3', 'x4'}, lines)
    end)

    it('an uncaughtException listener that raises ends the process with 7',
        function()
      local p = lua([[
        process.on('uncaughtException', function() error('again') end)
        error('first')]])
      assert.equal(7, p.code)
      assert.matches('again', p.stderr)
    end)
  end)

  describe('emitWarning', function()
    it('prints "(luacluster:pid) Name: message" and emits warning',
        function()
      local p = lua([[
        process.on('warning', function(w)
          print(w.name, w.message, w.code)
        end)
        process.emitWarning('careful')
        process.emitWarning('odd', 'CustomWarning', 'W1')
        process.emitWarning('opts', {type = 'T', code = 'C'})]])
      assert.equal('Warning\tcareful\tnil\nCustomWarning\todd\tW1\n'
        .. 'T\topts\tC\n', p.stdout)
      assert.equal(('(luacluster:%d) Warning: careful\n'
        .. '(luacluster:%d) [W1] CustomWarning: odd\n'
        .. '(luacluster:%d) [C] T: opts\n'):format(p.pid, p.pid, p.pid),
        p.stderr)
    end)
  end)

  describe('stdout and stderr', function()
    it('write() writes, returns true and calls back; bad chunks raise',
        function()
      local p = lua([[
        assert(process.stdout:write('a') == true)
        process.stdout.write('b')
        process.stdout:write(1)
        process.stdout:write('c', function(err) print(' cb', err) end)
        process.stderr:write('E')
        print(process.stdout.isTTY, process.stdout.fd, process.stderr.fd)
        print(pcall(process.stdout.write, {}))]])
      assert.equal('ab1cfalse\t1\t2\nfalse\tThe "chunk" argument must be'
        .. ' a string, got table\n cb\tnil\n', p.stdout)
      assert.equal('E', p.stderr)
    end)
  end)

  it('has geteuid, getegid, umask, resourceUsage and abort, as Node',
      function()
    -- No core file: the limit is 0 for this one.
    local p = h.run({'-c', 'ulimit -c 0; exec "$0" -e "$1"', h.bin, [[
      print(process.geteuid(), process.getegid())
      local old = process.umask('027')
      print(string.format('%o %o', old, process.umask()))
      local r = process.resourceUsage()
      print(r.maxRSS > 1000, r.userCPUTime >= 0, r.voluntaryContextSwitches >= 0)
      process.abort()
      print('not reached')
    ]]}, {cmd = 'sh'})
    local uid = tonumber(io.popen('id -u'):read('*a'))
    local gid = tonumber(io.popen('id -g'):read('*a'))
    assert.equal(uid .. '\t' .. gid .. '\n', p.stdout:match('^[^\n]*\n'))
    assert.matches('\n%d+ 27\ntrue\ttrue\ttrue\n$', p.stdout)
    assert.equal('SIGABRT', p.signal)
  end)

  describe('stdin', function()
    local SCRIPT = [[
      local n, parts = 0, {}
      process.stdin:on('data', function(d) n = n + 1 parts[#parts + 1] = d end)
      process.stdin:on('end', function()
        local all = table.concat(parts)
        print(#all, n > 0, process.stdin.isTTY,
          all:sub(1, 6) == 'line 1')
      end)
    ]]
    local big = {}
    for i = 1, 20000 do big[i] = 'line ' .. i .. '\n' end
    big = table.concat(big)

    it('reads a pipe to its end', function()
      local p = h.run({'-e', SCRIPT}, {stdin = big})
      assert.equal(0, p.code, p.stderr)
      assert.equal(#big .. '\ttrue\tfalse\ttrue\n', p.stdout)
    end)

    it('reads a file given as stdin', function()
      local path = h.tmpfile(big)
      local p = h.run({'-c', 'exec "$0" -e "$1" < "$2"', h.bin, SCRIPT,
        path}, {cmd = 'sh'})
      os.remove(path)
      assert.equal(0, p.code, p.stderr)
      assert.equal(#big .. '\ttrue\tfalse\ttrue\n', p.stdout)
    end)

    it('ends at once when fd 0 is closed, and keeps nothing alive unread',
        function()
      local p = h.run({'-c', 'exec "$0" -e "$1" <&-', h.bin,
        "process.stdin:on('end', function() print('ended') end) "
          .. "process.stdin:resume()"},
        {cmd = 'sh'})
      assert.equal('ended\n', p.stdout)
      -- Never read: the process ends with its work while its stdin (a FIFO
      -- a writer holds open) is still open.
      local dir = os.tmpname()
      os.remove(dir)
      assert(os.execute('mkdir ' .. dir) == 0)
      local fifo = dir .. '/in'
      local t0 = require('uv').hrtime()
      p = h.run({'-c', 'mkfifo "$2"; sleep 10 > "$2" 2>/dev/null & '
        .. 'echo $! > "$2.pid"; exec "$0" -e "$1" < "$2"', h.bin,
        "local s = process.stdin print(s.readable)", fifo}, {cmd = 'sh'})
      local took = (require('uv').hrtime() - t0) / 1e6
      local f = io.open(fifo .. '.pid')
      local writer = f and tonumber(f:read('*a'))
      if f then f:close() end
      if writer then pcall(require('uv').kill, writer, 'sigterm') end
      os.execute('rm -rf ' .. dir)
      assert.equal('true\n', p.stdout)
      assert.is_true(took < 5000, 'took ' .. took .. ' ms')
    end)
  end)
end)
