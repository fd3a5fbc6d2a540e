-- The command line: options, scripts, messages and exit codes, run as a
-- user would run the binary.
local h = require('helper')

local function script(code)
  return h.tmpfile(code)
end

describe('command line', function()
  local files = {}
  local function file(code)
    local path = script(code)
    files[#files + 1] = path
    return path
  end

  after_each(function()
    h.cleanup()
    for _, f in ipairs(files) do os.remove(f) end
    files = {}
  end)

  it('-v and --version print the versions of luacluster, LuaJIT and libuv',
      function()
    for _, opt in ipairs({'-v', '--version'}) do
      local p = h.run({opt})
      assert.equal(0, p.code)
      assert.matches('^luacluster %d+%.%d+%.%d+\nLuaJIT 2%.1[^\n]*\nlibuv'
        .. ' 1%.%d+%.%d+\n$', p.stdout)
      assert.equal('', p.stderr)
    end
  end)

  it('-h and --help print the usage', function()
    for _, opt in ipairs({'-h', '--help'}) do
      local p = h.run({opt})
      assert.equal(0, p.code)
      assert.matches('^Usage: luacluster %[options%]', p.stdout)
      for _, o in ipairs({'%-w, %-%-workers', '%-e', '%-v, %-%-version',
          '%-h, %-%-help'}) do
        assert.matches(o, p.stdout)
      end
    end
  end)

  it('a bad option or a missing option value exits 9 with a message',
      function()
    local p = h.run({'--nope'})
    assert.equal(9, p.code)
    assert.equal('luacluster: bad option: --nope (see luacluster -h)\n',
      p.stderr)
    p = h.run({'-e'})
    assert.equal(9, p.code)
    assert.equal('luacluster: -e requires an argument\n', p.stderr)
    p = h.run({'-w', 'zero', 'x.lua'})
    assert.equal(9, p.code)
    assert.matches('invalid worker count "zero"', p.stderr)
  end)

  it('-e runs code with its arguments in arg, ... and process.argv',
      function()
    local p = h.run({'-e', [[
      print(select('#', ...), ...)
      print(arg[1], arg[2], arg[-1] == process.argv0)
      print(#process.argv, process.argv[1] == process.execPath,
        process.argv[2], process.argv[3])]], 'a', '-v'})
    assert.equal(0, p.code)
    assert.equal('2\ta\t-v\na\t-v\ttrue\n3\ttrue\ta\t-v\n', p.stdout)
  end)

  it('runs a script with its arguments, options after it included',
      function()
    local path = file('print(arg[0] ~= nil, ...)')
    local p = h.run({path, 'x', '--help', '-v'})
    assert.equal(0, p.code)
    assert.equal('true\tx\t--help\t-v\n', p.stdout)
    -- After --, a name starting with a dash is still the script.
    p = h.run({'--', path, '-e'})
    assert.equal('true\t-e\n', p.stdout)
  end)

  it('skips a #! line', function()
    local path = file('#!/usr/bin/env luacluster\nprint("shebang ok")')
    local p = h.run({path})
    assert.equal('shebang ok\n', p.stdout)
  end)

  it('reads the script from stdin with "-" or with no script', function()
    local p = h.run({'-', 'q'}, {stdin = 'print("stdin", ...)'})
    assert.equal(0, p.code)
    assert.equal('stdin\tq\n', p.stdout)
    p = h.run({}, {stdin = 'print(1 + 1)'})
    assert.equal('2\n', p.stdout)
    p = h.run({}, {stdin = 'error("from stdin")'})
    assert.equal(1, p.code)
    assert.matches('^stdin:1: from stdin\nstack traceback:', p.stderr)
  end)

  it('with no script and a terminal on stdin starts the REPL'
      .. ' (spec/repl_spec.lua)', function()
    local p = h.run({'-qec', h.bin .. ' </dev/tty', '/dev/null'},
      {cmd = '/usr/bin/script', stdin = '.exit\r'})
    assert.equal(0, p.code)
    assert.matches('Type %.help for help', p.stdout)
    assert.matches('> ', p.stdout)
  end)

  it('a missing script: a clear message, exit 1', function()
    local p = h.run({'/no/such/script.lua'})
    assert.equal(1, p.code)
    assert.equal('luacluster: cannot open script /no/such/script.lua: No'
      .. ' such file or directory\n', p.stderr)
    assert.equal('', p.stdout)
  end)

  it('a syntax error: file:line and the message, exit 1', function()
    local path = file('local x = 1\nlocal = 2\n')
    local p = h.run({path})
    assert.equal(1, p.code)
    assert.equal('luacluster: ' .. path .. ":2: '<name>' expected near '='\n",
      p.stderr)
    p = h.run({'-e', 'x ='})
    assert.equal(1, p.code)
    assert.matches("^luacluster: %(command line%):1: unexpected symbol near"
      .. " '<eof>'\n$", p.stderr)
  end)

  it('a runtime error: file:line, the message and a traceback, exit 1',
      function()
    local path = file([[
local function deeper()
  local t = nil
  return t.field
end
local function outer() deeper() end
print('before')
outer()
print('never')]])
    local p = h.run({path})
    assert.equal(1, p.code)
    assert.equal('before\n', p.stdout)
    local esc = path:gsub('%p', '%%%0')
    assert.matches('^' .. esc .. ":3: attempt to index local 't' %(a nil"
      .. ' value%)\nstack traceback:\n', p.stderr)
    assert.matches(esc .. ":3: in function 'deeper'", p.stderr)
    assert.matches(esc .. ':7: in main chunk', p.stderr)
  end)

  it('a runtime error in a callback: the same, exit 1', function()
    local path = file([[
setTimeout(function()
  error('late failure')
end, 5)]])
    local p = h.run({path})
    assert.equal(1, p.code)
    local esc = path:gsub('%p', '%%%0')
    assert.matches('^' .. esc .. ':2: late failure\nstack traceback:\n',
      p.stderr)
  end)

  it('runs the loop until nothing is left, then exits with exitCode',
      function()
    local p = h.run({'-e', [[
      local n = 0
      local t
      t = setInterval(function()
        n = n + 1
        if n == 3 then
          clearInterval(t)
          setTimeout(function()
            print('last', n)
            process.exitCode = 4
          end, 10)
        end
      end, 5)
      print('main done')]]})
    assert.equal(4, p.code)
    assert.equal('main done\nlast\t3\n', p.stdout)
    assert.equal('', p.stderr)
  end)

  it('ends at once when there is nothing to do', function()
    local t0 = require('uv').hrtime()
    local p = h.run({'-e', 'local x = 1'})
    assert.equal(0, p.code)
    assert.is_true((require('uv').hrtime() - t0) / 1e6 < 1000)
  end)

  it('runs busted\'s own runner', function()
    local spec = file([[
describe('inner', function()
  it('passes', function() assert.equal(2, 1 + 1) end)
end)]])
    local p = h.run({'spec/run.lua', spec})
    assert.equal(0, p.code)
    assert.matches('1 passed, 0 failed, 0 skipped\n$', p.stdout)
    local bad = file([[
describe('inner', function()
  it('fails', function() assert.equal(3, 1 + 1) end)
end)]])
    p = h.run({'spec/run.lua', bad})
    assert.equal(1, p.code)
    assert.matches('0 passed, 1 failed, 0 skipped\n$', p.stdout)
    assert.equal('', p.stderr)
  end)
end)
