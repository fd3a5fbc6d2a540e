-- os: Lua's os table extended with Node's functions.
local h = require('helper')
local uv = require('uv')
local os = require('os')

-- Reads the first line of a command's output.
local function sh(cmd)
  local f = io.popen(cmd)
  local out = f:read('*l')
  f:close()
  return out
end

describe('os', function()
  after_each(h.cleanup)

  it('is Lua\'s os table, extended; Lua\'s own functions keep working',
      function()
    assert.equal(_G.os, os)
    assert.is_number(os.time())
    assert.equal(os.time({year = 2020, month = 1, day = 1, hour = 0}),
      os.time({year = 2020, month = 1, day = 1, hour = 0}))
    assert.is_number(os.clock())
    assert.equal('2020', os.date('!%Y', 1580000000))
    assert.equal(process.env.HOME, os.getenv('HOME'))
    local name = os.tmpname()
    assert.is_string(name)
    assert.is_true(os.remove(name))
    assert.is_nil(io.open(name))
    assert.is_function(os.exit)
    assert.is_function(os.execute)
  end)

  it('extends os in a fresh process too, on first use by require',
      function()
    local p = h.run({'-e', [[
      print(type(require('os').cpus), type(os.cpus), os.EOL == '\n')]]})
    assert.equal('function\tfunction\ttrue\n', p.stdout)
  end)

  it('cpus() lists each CPU with model, speed and times in ms', function()
    local cpus = os.cpus()
    assert.is_true(#cpus >= 1)
    assert.equal(#uv.cpu_info(), #cpus)
    for _, c in ipairs(cpus) do
      assert.is_string(c.model)
      assert.is_number(c.speed)
      for _, k in ipairs({'user', 'nice', 'sys', 'idle', 'irq'}) do
        assert.is_number(c.times[k], k)
      end
    end
  end)

  it('availableParallelism() is the CPUs this process may use', function()
    local n = os.availableParallelism()
    assert.equal(math.floor(n), n)
    assert.is_true(n >= 1)
    assert.equal(tonumber(sh('nproc')), n)
  end)

  it('totalmem() and freemem() in bytes', function()
    local total, free = os.totalmem(), os.freemem()
    assert.is_true(total > 64 * 1024 * 1024)
    assert.is_true(free > 0 and free <= total)
    local kb = sh("awk '/^MemTotal:/ {print $2}' /proc/meminfo")
    assert.equal(tonumber(kb) * 1024, total)
  end)

  it('loadavg() is {1, 5, 15 minutes}', function()
    local l = os.loadavg()
    assert.equal(3, #l)
    for i = 1, 3 do assert.is_true(l[i] >= 0) end
  end)

  it('hostname(), type(), release(), version(), machine() as uname',
      function()
    assert.equal(sh('hostname'), os.hostname())
    assert.equal(sh('uname -s'), os.type())
    assert.equal('Linux', os.type())
    assert.equal(sh('uname -r'), os.release())
    assert.equal(sh('uname -v'), os.version())
    assert.equal(sh('uname -m'), os.machine())
  end)

  it('uptime() is the system\'s, in seconds', function()
    local f = io.open('/proc/uptime')
    local up = tonumber(f:read('*a'):match('^(%S+)'))
    f:close()
    assert.is_true(math.abs(os.uptime() - up) <= 2)
  end)

  it('platform() and arch() match process', function()
    assert.equal('linux', os.platform())
    assert.equal(process.arch, os.arch())
    assert.equal(jit.arch, os.arch())
  end)

  it('tmpdir() follows TMPDIR without a trailing slash; homedir() HOME',
      function()
    local p = h.run({'-e', 'print(os.tmpdir(), os.homedir())'},
      {env = {TMPDIR = '/var/tmp/', HOME = '/some/home'}})
    assert.equal('/var/tmp\t/some/home\n', p.stdout)
    p = h.run({'-e', 'print(os.tmpdir())'}, {env = {TMPDIR = false}})
    assert.equal('/tmp\n', p.stdout)
  end)

  it('EOL, devNull, endianness(), constants.signals', function()
    assert.equal('\n', os.EOL)
    assert.equal('/dev/null', os.devNull)
    assert.equal('LE', os.endianness())
    assert.equal(15, os.constants.signals.SIGTERM)
    assert.equal(9, os.constants.signals.SIGKILL)
  end)

  it('userInfo() describes the current user', function()
    local u = os.userInfo()
    assert.equal(uv.getuid(), u.uid)
    assert.equal(sh('id -un'), u.username)
    assert.is_string(u.homedir)
  end)

  it('networkInterfaces() has Node\'s shape', function()
    local ifs = os.networkInterfaces()
    local lo = ifs.lo
    assert.is_table(lo)
    local v4
    for _, a in ipairs(lo) do
      if a.family == 'IPv4' then v4 = a end
      assert.is_true(a.internal)
      assert.equal('00:00:00:00:00:00', a.mac)
    end
    assert.same({address = '127.0.0.1', netmask = '255.0.0.0',
      family = 'IPv4', mac = '00:00:00:00:00:00', internal = true,
      cidr = '127.0.0.1/8'}, v4)
  end)

  it('getPriority and setPriority, as Node', function()
    local p = h.spawn({'-e', 'setTimeout(function() end, 3000)'})
    h.sleep(100)
    assert.equal(0, os.getPriority(p.pid))
    os.setPriority(p.pid, 5)
    assert.equal(5, os.getPriority(p.pid))
    local f = assert(io.open('/proc/' .. p.pid .. '/stat'))
    local nice = tonumber(f:read('*a'):match('%) %S+' .. (' %S+'):rep(15)
      .. ' (%-?%d+)'))
    f:close()
    assert.equal(5, nice)
    p:stop()
    local ok, err = pcall(os.getPriority, 2 ^ 22 + 12345)
    assert.is_false(ok)
    assert.equal('ESRCH', err.code)
  end)
end)
