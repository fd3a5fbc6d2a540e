-- console and util: util.format's specifiers, util.inspect's readable
-- tables, and console's output (checked through real pipes).
local h = require('helper')
local util = require('util')
local format, inspect = util.format, util.inspect

local function lua(code, opts)
  return h.run({'-e', code}, opts)
end

describe('util.format', function()
  it('%s: strings as they are, numbers shortest, tables at depth 0',
      function()
    assert.equal('a b', format('%s %s', 'a', 'b'))
    assert.equal('42 1.5 -0 nil true', format('%s %s %s %s %s', 42, 1.5, -0,
      nil, false == false))
    assert.equal('{ a = [table], b = 1 }', format('%s', {a = {1}, b = 1}))
    local obj = setmetatable({}, {__tostring = function() return 'OBJ' end})
    assert.equal('OBJ', format('%s', obj))
  end)

  it('%d: Number(value), NaN for what is not a number', function()
    assert.equal('42', format('%d', 42))
    assert.equal('1.5', format('%d', 1.5))
    assert.equal('42', format('%d', '42'))
    assert.equal('NaN', format('%d', '42abc'))
    assert.equal('NaN', format('%d', {}))
    assert.equal('NaN', format('%d', nil))
    assert.equal('1 0', format('%d %d', true, false))
    assert.equal('0', format('%d', ''))
    assert.equal('-7', format('%d', -7))
  end)

  it('%i: parseInt(value)', function()
    assert.equal('42', format('%i', 42.9))
    assert.equal('-1', format('%i', -1.7))
    assert.equal('42', format('%i', '42.9abc'))
    assert.equal('-3', format('%i', '  -3px'))
    assert.equal('NaN', format('%i', 'abc'))
    assert.equal('NaN', format('%i', {}))
  end)

  it('%f: parseFloat(value)', function()
    assert.equal('1.5', format('%f', 1.5))
    assert.equal('1500', format('%f', '1.5e3z'))
    assert.equal('-0.25', format('%f', ' -.25x'))
    assert.equal('Infinity', format('%f', 'Infinity'))
    assert.equal('NaN', format('%f', 'x1'))
  end)

  it('%j: JSON, [Circular] for a cycle, undefined for what cannot be'
      .. ' encoded', function()
    assert.equal('{"a":[1,2]}', format('%j', {a = {1, 2}}))
    assert.equal('"s/x"', format('%j', 's/x'))
    assert.equal('[1,"two",true]', format('%j', {1, 'two', true}))
    assert.equal('5', format('%j', 5))
    local t = {}
    t.self = t
    assert.equal('[Circular]', format('%j', t))
    assert.equal('undefined', format('%j', {f = print}))
    -- A very sparse array is an object rather than an error.
    local s = format('%j', {[1] = 1, [100] = 2})
    assert.same({['1'] = 1, ['100'] = 2}, require('cjson').decode(s))
  end)

  it('%o: inspect to depth 4; %O: inspect (depth 2)', function()
    local deep = {a = {b = {c = {d = {e = {f = 1}}}}}}
    assert.equal('{ a = { b = { c = { d = { e = [table] } } } } }',
      format('%o', deep))
    assert.equal('{ a = { b = { c = [table] } } }', format('%O', deep))
    assert.equal("'str'", format('%o', 'str'))
  end)

  it('%c is consumed and prints nothing; %% is a percent sign', function()
    assert.equal('styled', format('%cstyled', 'color: red'))
    assert.equal('100% 1', format('100%% %d', 1))
    assert.equal('%', format('%%'))
  end)

  it('leaves a placeholder without an argument and unknown ones as they'
      .. ' are', function()
    assert.equal('a %s', format('%s %s', 'a'))
    assert.equal('%x 1', format('%x', 1))
    assert.equal('%d', format('%d'))
  end)

  it('appends extra arguments: strings as they are, others inspected',
      function()
    assert.equal("x y 1 { 1 } nil 'q'", format('%s', 'x', 'y', 1, {1}, nil,
      {'q'}):gsub('{ \'q\' }', "'q'"))
    assert.equal('a 1 { k = true }', format('a', 1, {k = true}))
  end)

  it('without a format string inspects every argument', function()
    assert.equal('1 { 2 } true nil', format(1, {2}, true, nil))
    assert.equal('', format())
    assert.equal('plain', format('plain'))
  end)
end)

describe('util.inspect', function()
  it('prints sequences, then keys sorted, as Lua constructors', function()
    assert.equal('{ 1, 2, 3 }', inspect({1, 2, 3}))
    assert.equal("{ 'a', b = 2, c = 'x' }", inspect({'a', c = 'x', b = 2}))
    assert.equal('{ [1.5] = 1, [2] = 2, a = 3, [true] = 4 }',
      inspect({[2] = 2, [1.5] = 1, a = 3, [true] = 4}))
    -- The sequence part ends at the first nil.
    assert.equal('{ 1, 2, [4] = 4 }', inspect({1, 2, nil, 4}))
    assert.equal('{}', inspect({}))
  end)

  it('quotes strings as Node does and escapes control characters',
      function()
    assert.equal("'plain'", inspect('plain'))
    assert.equal('"it\'s"', inspect("it's"))
    assert.equal([['both \' "']], inspect([[both ' "]]))
    assert.equal([['a\nb\tc\\d\x01']], inspect('a\nb\tc\\d\1'))
  end)

  it('brackets keys that are not identifiers, keywords included',
      function()
    assert.equal("{ ['a b'] = 1, ['end'] = 2, ok = 3 }",
      inspect({['a b'] = 1, ['end'] = 2, ok = 3}))
  end)

  it('prints nested tables and marks cycles', function()
    local t = {name = 'root', child = {1, 2}}
    t.child.up = t
    t.me = t
    assert.equal("{ child = { 1, 2, up = [Circular] }, me = [Circular],"
      .. " name = 'root' }", inspect(t))
    -- A table seen twice but not on its own path is no cycle.
    local shared = {1}
    assert.equal('{ a = { 1 }, b = { 1 } }', inspect({a = shared,
      b = shared}))
  end)

  it('stops at depth (default 2) with [table]', function()
    local deep = {a = {b = {c = {d = 1}}}}
    assert.equal('{ a = { b = { c = [table] } } }', inspect(deep))
    assert.equal('{ a = [table] }', inspect(deep, {depth = 0}))
    assert.equal('{ a = { b = { c = { d = 1 } } } }', inspect(deep,
      {depth = math.huge}))
    assert.has_error(function() inspect(1, {depth = 'x'}) end,
      'util.inspect: opts.depth must be a number, got string')
    assert.has_error(function() inspect(1, 5) end,
      'util.inspect: opts must be a table, got number')
  end)

  it('breaks long tables over lines with two-space indents', function()
    local t = {string.rep('a', 30), string.rep('b', 30), {x = 1}}
    assert.equal("{\n  '" .. string.rep('a', 30) .. "',\n  '"
      .. string.rep('b', 30) .. "',\n  { x = 1 }\n}", inspect(t))
  end)

  it('shows numbers as Node does', function()
    assert.equal('{ 0.1, -0, NaN, Infinity, -Infinity, 1e+300, 42 }',
      inspect({0.1, -0, 0 / 0, math.huge, -math.huge, 1e300, 42}))
    assert.equal('0.3333333333333333', inspect(1 / 3))
  end)

  it('shows functions with where they are defined, and other values',
      function()
    local function f() end
    assert.matches('^%[function spec/console_spec%.lua:%d+%]$', inspect(f))
    assert.equal('[function]', inspect(print))
    assert.equal('null', inspect(require('cjson').null))
    assert.equal('true', inspect(true))
    assert.equal('nil', inspect(nil))
    assert.matches('^thread: ', inspect(coroutine.create(f)))
  end)

  it('uses __tostring and __inspect of a metatable', function()
    local a = setmetatable({}, {__tostring = function() return '<A>' end})
    local b = setmetatable({}, {__inspect = function(_, o)
      return '<B ' .. o.depth .. '>' end})
    assert.equal('{ <A>, <B 2> }', inspect({a, b}))
  end)

  it('shows at most 100 entries; long lists of short items fill lines',
      function()
    local t, keyed = {}, {}
    for i = 1, 102 do
      t[i] = i
      keyed['k' .. i] = i
    end
    local s = inspect(t)
    assert.matches('^{\n  1, 2, 3, 4, 5, ', s)
    assert.matches(' 99, 100,\n  %.%.%. 2 more items\n}$', s)
    for line in s:gmatch('[^\n]+') do assert.is_true(#line <= 72) end
    assert.matches(',\n  %.%.%. 2 more keys\n}$', inspect(keyed))
  end)
end)

describe('console', function()
  after_each(h.cleanup)

  it('is the global and require("console")', function()
    assert.equal(console, require('console'))
  end)

  it('log, info and debug write to stdout; warn and error to stderr',
      function()
    local p = lua([[
      console.log('log %d', 1)
      console.info('info', {a = 1})
      console.debug('debug')
      console.warn('warn %s', 'x')
      console.error('error', nil)
      console.log()]])
    assert.equal(0, p.code)
    assert.equal('log 1\ninfo { a = 1 }\ndebug\n\n', p.stdout)
    assert.equal('warn x\nerror nil\n', p.stderr)
  end)

  it('prints tables readably, nested, with cycles marked', function()
    local p = lua([[
      local t = {list = {1, 2, {3}}, name = 'n'}
      t.list[3].up = t
      console.log(t)
      console.log('t:', t)]])
    assert.equal("{ list = { 1, 2, { 3, up = [Circular] } }, name = 'n' }\n"
      .. "t: { list = { 1, 2, { 3, up = [Circular] } }, name = 'n' }\n",
      p.stdout)
  end)

  it('dir() inspects with options', function()
    local p = lua([[
      console.dir('s')
      console.dir({a = {b = {c = {}}}}, {depth = 0})]])
    assert.equal("'s'\n{ a = [table] }\n", p.stdout)
  end)

  it('trace() prints a traceback to stderr; assert() only when false',
      function()
    local p = lua([[
      local function where() console.trace('at %d', 5) end
      where()
      console.assert(true, 'not printed')
      console.assert(false, 'failed %s', 'here')
      console.assert(nil)]])
    assert.equal('', p.stdout)
    assert.matches("^Trace: at 5\nstack traceback:\n\t%(command line%):1: in"
      .. " function 'where'", p.stderr)
    assert.matches('\nAssertion failed: failed here\nAssertion failed\n$',
      p.stderr)
  end)

  it('group() indents every line until groupEnd()', function()
    local p = lua([[
      console.group('A')
      console.log('one\ntwo')
      console.group()
      console.error('deep')
      console.groupEnd()
      console.groupEnd()
      console.groupEnd()
      console.log('flat')]])
    assert.equal('A\n  one\n  two\nflat\n', p.stdout)
    assert.equal('    deep\n', p.stderr)
  end)

  it('count() and countReset()', function()
    local p = lua([[
      console.count()
      console.count('x')
      console.count()
      console.countReset()
      console.count()
      console.countReset('none')]])
    assert.equal('default: 1\nx: 1\ndefault: 2\ndefault: 1\n', p.stdout)
    assert.equal("Count for 'none' does not exist\n", p.stderr)
  end)

  it('time(), timeLog() and timeEnd() print milliseconds', function()
    local p = lua([[
      console.time('t')
      local t0 = os.clock()
      while os.clock() - t0 < 0.02 do end
      console.timeLog('t', 'extra', 1)
      console.timeEnd('t')
      console.timeEnd('t')]])
    local a, b = p.stdout:match('^t: ([%d.]+)ms extra 1\nt: ([%d.]+)ms\n$')
    assert.is_truthy(a, p.stdout)
    assert.is_true(tonumber(a) >= 19 and tonumber(b) >= tonumber(a))
    assert.equal("Warning: No such label 't' for console.timeEnd()\n",
      p.stderr)
  end)

  it('writes each call as one whole line: two processes on one pipe never'
      .. ' mix', function()
    local code = [[
      local tag = ...
      local line = string.rep(tag, 3000)
      for i = 1, 300 do console.log('%s %d', line, i) end]]
    local path = h.tmpfile(code)
    local p = h.run({'-c', ('"$0" %s A & "$0" %s B & wait'):format(path,
      path), h.bin}, {cmd = '/bin/sh'})
    os.remove(path)
    assert.equal(0, p.code)
    local n = 0
    for line in p.stdout:gmatch('([^\n]*)\n') do
      n = n + 1
      assert.is_truthy(line:match('^A+ %d+$') or line:match('^B+ %d+$'),
        'a mixed line')
      assert.equal(3000, #line:match('^%a+'))
    end
    assert.equal(600, n)
  end)

  it('writes whole lines to a non-blocking stdout too', function()
    -- Opening fd 1 as a libuv pipe makes it non-blocking, as a parent's
    -- libuv can leave it: a line larger than the pipe's buffer must wait.
    local p = lua([[
      local out = require('uv').new_pipe(false)
      out:open(1)
      console.log(string.rep('x', 1000000))
      console.log('end')
      out:unref()]])
    assert.equal(0, p.code, p.stderr)
    assert.equal(string.rep('x', 1000000) .. '\nend\n', p.stdout)
  end)

  it('keeps its order with print and io.write, through a pipe and a file',
      function()
    local p = lua([[
      io.stdout:write('a')
      console.log('b')
      print('c')
      console.log('d')
      io.write('e')
      process.exit(0)]])
    assert.equal('ab\nc\nd\ne', p.stdout)
    local out = os.tmpname()
    p = h.run({'-c', ('"$0" -e "console.log(1) print(2) console.log(3)" > %s'
      .. ' && cat %s'):format(out, out), h.bin}, {cmd = '/bin/sh'})
    os.remove(out)
    assert.equal('1\n2\n3\n', p.stdout)
  end)
end)
