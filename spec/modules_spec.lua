-- Modules beside Node's: cjson and json (lua-cjson, built in), uv (luv on
-- the runtime's own loop), and Lua 5.1 modules installed from Debian.
local h = require('helper')

local function lua(code, opts)
  return h.run({'-e', code}, opts)
end

describe('cjson and json', function()
  local cjson = require('cjson')
  after_each(h.cleanup)

  it('json is cjson', function()
    assert.equal(cjson, require('json'))
  end)

  it('encodes and decodes', function()
    local v = {n = 1.5, s = 'x"y', list = {1, 2, 3}, yes = true,
      none = cjson.null, nested = {deep = {'a'}}}
    local back = cjson.decode(cjson.encode(v))
    assert.same(v, back)
    assert.equal('[1,2,3]', cjson.encode({1, 2, 3}))
    assert.equal('"a\\nb"', cjson.encode('a\nb'))
    assert.equal(cjson.null, cjson.decode('null'))
    assert.same({a = {}}, cjson.decode('{"a":{}}'))
  end)

  it('raises on what it cannot encode or decode; cjson.safe returns nil,'
      .. ' err', function()
    assert.has_error(function() cjson.encode({f = print}) end)
    assert.has_error(function() cjson.decode('{bad') end)
    local safe = require('cjson.safe')
    local v, err = safe.decode('{bad')
    assert.is_nil(v)
    assert.matches('Expected object key string', err)
    assert.equal('{"a":1}', safe.encode({a = 1}))
  end)

  it('cjson.new() makes an instance with its own settings', function()
    local c = cjson.new()
    c.encode_number_precision(4)
    assert.equal('0.3333', c.encode(1 / 3))
    assert.equal('0.33333333333333', cjson.encode(1 / 3))
  end)

  -- Short decimals take runtime/jsonnum.c's fast path, the rest glibc's
  -- strtod; either way the double must be the correctly rounded one, which
  -- LuaJIT's own number reader (tonumber) also gives: compared bit for bit.
  it('decodes every number to the correctly rounded double', function()
    local ffi = require('ffi')
    local box = ffi.new('double[1]')
    local function bits(x)
      box[0] = x
      return tostring(ffi.cast('uint64_t *', box)[0])
    end
    local cases = {'0', '-0', '0.1', '0.3', '4.35', '39.99', '-9.99', '100',
      '2.5e+3', '2.5E-3', '1e22', '1e23', '1e-22', '3.0e-23', '0.000001',
      '9007199254740992', '9007199254740993', '123456789012345678',
      '12345678901234567890123', '0.1000000000000000055511151231257827',
      '1.7976931348623157e308', '5e-324', '2.2250738585072014e-308',
      '1e400', '-1e400', '0.0000000000000000000000001'}
    local seed = 12345 -- a fixed sample: the same numbers every run
    local function rand(n)
      seed = (seed * 1103515245 + 12345) % 2147483648
      return seed % n
    end
    for _ = 1, 20000 do
      local s = tostring(rand(10 ^ (rand(9) + 1)))
      if rand(5) > 0 then
        local f = {}
        for i = 1, rand(12) + 1 do f[i] = tostring(rand(10)) end
        s = s .. '.' .. table.concat(f)
      end
      if rand(3) == 0 then
        s = s .. ({'e', 'E'})[rand(2) + 1] .. ({'', '-', '+'})[rand(3) + 1] ..
          rand(30)
      end
      if rand(3) == 0 then s = '-' .. s end
      cases[#cases + 1] = s
    end
    local wrong = {}
    for _, s in ipairs(cases) do
      local v = cjson.decode('[' .. s .. ']')[1]
      if bits(v) ~= bits(tonumber(s)) then
        wrong[#wrong + 1] = s .. ' -> ' .. ('%.17g'):format(v)
      end
    end
    assert.same({}, wrong)
    assert.equal('-0', ('%g'):format(cjson.decode('-0')))
  end)

  -- Encoding takes the same file's fast path for short decimals; what it
  -- writes must be what C's "%.<precision>g" writes, at every precision.
  it('encodes every number as "%.14g" (or its precision) prints it',
      function()
    local seed = 54321
    local function rand(n)
      seed = (seed * 1103515245 + 12345) % 2147483648
      return seed % n
    end
    local xs = {0, -0.0, 1, 0.1, 0.5, 1 / 3, 1e-4, 9.9999e-5, 1e14,
      99999999999999, 1e15, 12345678901234.5, 0.05, 169.47, 1e-5, 1e100,
      2 ^ 53, 0.1 + 0.2, 5e-324, 999999999999999.9, 9.5, 0.95, 99.5}
    for _ = 1, 20000 do
      local k, x = rand(3)
      if k == 0 then x = rand(100000000) / 10 ^ rand(10)
      elseif k == 1 then x = rand(1000000) * 0.01
      else x = rand(2147483647) / 2147483647 * 10 ^ (rand(30) - 10) end
      xs[#xs + 1] = rand(2) == 0 and -x or x
    end
    -- C's snprintf, not string.format: LuaJIT formats numbers itself and
    -- rounds a tie (12345678901234.5) up where glibc rounds it to even.
    local ffi = require('ffi')
    pcall(ffi.cdef, 'int snprintf(char *, size_t, const char *, ...);')
    local buf = ffi.new('char[64]')
    local wrong = {}
    for _, p in ipairs({14, 1, 5, 10}) do
      local c = cjson.new()
      c.encode_number_precision(p)
      local fmt = '%.' .. p .. 'g'
      for _, x in ipairs(xs) do
        ffi.C.snprintf(buf, 64, fmt, ffi.new('double', x))
        local got, want = c.encode(x), ffi.string(buf)
        if got ~= want then wrong[#wrong + 1] = want .. ' written ' .. got end
      end
    end
    assert.same({}, wrong)
  end)

  it('is built into the binary: no Lua C path needed', function()
    local p = lua([[
      print(require('cjson').encode({1}), require('json').decode('[2]')[1],
        (require('cjson.safe').decode('x')))]],
      {env = {LUA_CPATH = '/nonexistent/?.so', LUA_PATH = '/none/?.lua'}})
    assert.equal(0, p.code)
    assert.equal('[1]\t2\tnil\n', p.stdout)
  end)
end)

describe('uv', function()
  local uv = require('uv')
  after_each(h.cleanup)

  it('is luv, also as require("luv")', function()
    assert.equal(uv, require('luv'))
    assert.is_function(uv.new_timer)
    assert.matches('^1%.', uv.version_string())
  end)

  it('runs on the runtime\'s loop, interleaved with its timers', function()
    local order = {}
    local t = uv.new_timer()
    uv.update_time() -- as setTimeout does
    t:start(20, 0, function()
      order[#order + 1] = 'uv'
      t:close()
    end)
    setTimeout(function() order[#order + 1] = 'timeout10' end, 10)
    setTimeout(function() order[#order + 1] = 'timeout30' end, 30)
    assert.is_true(h.wait(function() return #order == 3 end, 1000))
    assert.same({'timeout10', 'uv', 'timeout30'}, order)
  end)

  it('drains nextTick after each uv callback', function()
    local order = {}
    local a, b = uv.new_timer(), uv.new_timer()
    a:start(5, 0, function()
      order[#order + 1] = 'a'
      process.nextTick(function() order[#order + 1] = 'tick' end)
      a:close()
    end)
    b:start(5, 0, function()
      order[#order + 1] = 'b'
      b:close()
    end)
    assert.is_true(h.wait(function() return #order == 3 end, 1000))
    assert.same({'a', 'tick', 'b'}, order)
  end)

  it('does file system work asynchronously on the same loop', function()
    local path = h.tmpfile('hello uv')
    local got
    uv.fs_open(path, 'r', 438, function(err, fd)
      assert(not err, err)
      uv.fs_read(fd, 100, 0, function(err2, data)
        got = err2 or data
        uv.fs_close(fd)
      end)
    end)
    assert.is_true(h.wait(function() return got end, 2000))
    os.remove(path)
    assert.equal('hello uv', got)
  end)

  it('keeps a script alive while its handles are active, and its errors'
      .. ' follow the policy', function()
    local p = lua([[
      local uv = require('uv')
      local n = 0
      local t = uv.new_timer()
      t:start(1, 1, function()
        n = n + 1
        if n == 3 then t:close() print('closed') end
      end)
      local idle = uv.new_timer()
      idle:start(10000, 0, function() end)
      idle:unref()]])
    assert.equal(0, p.code)
    assert.equal('closed\n', p.stdout)
    p = lua([[
      local uv = require('uv')
      local t = uv.new_timer()
      t:start(1, 0, function() t:close() error('uv boom') end)]])
    assert.equal(1, p.code)
    assert.matches('^%(command line%):3: uv boom\nstack traceback:',
      p.stderr)
  end)
end)

describe('Lua 5.1 modules installed from Debian', function()
  after_each(h.cleanup)
  it('lfs (lua-filesystem, a C module) loads with require and works',
      function()
    local lfs = require('lfs')
    assert.matches('^LuaFileSystem', lfs._VERSION)
    assert.equal(process.cwd(), lfs.currentdir())
    local dir = os.tmpname()
    os.remove(dir)
    assert.is_true(lfs.mkdir(dir))
    assert.equal('directory', lfs.attributes(dir, 'mode'))
    local f = io.open(dir .. '/file', 'w')
    f:write('12345')
    f:close()
    local names = {}
    for name in lfs.dir(dir) do names[#names + 1] = name end
    table.sort(names)
    assert.same({'.', '..', 'file'}, names)
    assert.equal(5, lfs.attributes(dir .. '/file').size)
    os.remove(dir .. '/file')
    assert.is_true(lfs.rmdir(dir))
    assert.is_nil(lfs.attributes(dir))
  end)

  it('load in a fresh process from Debian\'s paths: C and Lua modules',
      function()
    local p = lua([[
      local lfs = require('lfs')
      print(package.searchpath('lfs', package.cpath))
      print(type(lfs.attributes('/').ino))
      print(require('lpeg').match(require('lpeg').R('09')^1, '123x'))
      print(require('pl.path').basename('/a/b.lua'))
      print(require('dkjson').encode({1}))]])
    assert.equal(0, p.code, p.stderr)
    assert.equal('/usr/lib/x86_64-linux-gnu/lua/5.1/lfs.so\nnumber\n4\n'
      .. 'b.lua\n[1]\n', p.stdout)
  end)

  it('a missing module raises the usual message', function()
    local ok, err = pcall(require, 'no_such_module_xyz')
    assert.is_false(ok)
    assert.matches("module 'no_such_module_xyz' not found", err)
  end)
end)
