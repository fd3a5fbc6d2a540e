-- co: pooled coroutines that wait without blocking the loop.
local h = require('helper')
local uv = require('uv')
local co = require('co')

local go = h.go

local function now() return uv.hrtime() / 1e6 end

describe('co', function()
  it('runs 200 coroutines sleeping 100 ms each in about 100 ms', function()
    local done, t0 = 0, now()
    for _ = 1, 200 do
      co.spawn(function()
        co.sleep(100)
        done = done + 1
      end)
    end
    assert.equal(0, done)
    assert.is_true(h.wait(function() return done == 200 end, 3000))
    local took = now() - t0
    assert.is_true(took >= 99, 'woke early: ' .. took)
    assert.is_true(took < 1000, 'took ' .. took .. ' ms')
  end)

  it('spawn runs the function at once until it first waits', function()
    local log = {}
    local t = co.spawn(function(a, b)
      log[#log + 1] = 'start ' .. a .. b
      co.sleep(10)
      log[#log + 1] = 'woke'
    end, 'x', 'y')
    log[#log + 1] = 'spawned'
    assert.same({'start xy', 'spawned'}, log)
    assert.equal('suspended', co.status(t))
    assert.is_true(h.wait(function() return co.status(t) == 'dead' end))
    assert.same({'start xy', 'spawned', 'woke'}, log)
  end)

  it('spawns from a timer, from a coroutine, and from a coroutine in a coroutine',
    function()
      local got = {}
      setTimeout(function()
        co.spawn(function()
          co.sleep(1)
          got[#got + 1] = 'timer'
          co.spawn(function()
            co.sleep(1)
            got[#got + 1] = 'nested'
          end)
        end)
      end, 1)
      assert.is_true(h.wait(function() return #got == 2 end))
      assert.same({'timer', 'nested'}, got)
    end)

  it('wait returns the first thread to end, and ended threads at once',
    function()
      local r = {go(function()
        local slow = co.spawn(function() co.sleep(80) return 'slow' end)
        local fast = co.spawn(function() co.sleep(5) return 'fast', 2 end)
        local first = {co.wait(slow, fast)}
        local again = {co.wait(fast)}
        local later = {co.wait(slow)}
        return first, again, later
      end)}
      assert.same({true, 'fast', 2}, r[1])
      assert.same({true, 'fast', 2}, r[2])
      assert.same({true, 'slow'}, r[3])
    end)

  it('wait gives false and the error of a thread that raised, waited for later',
    function()
      local ok, err, ok2, err2 = go(function()
        local t1 = co.spawn(function() error('at once') end)
        local t2 = co.spawn(function() co.sleep(5) error({code = 7}) end)
        co.sleep(30) -- both ended meanwhile; nobody waited yet
        local a, b = co.wait(t1)
        local c, d = co.wait(t2)
        return a, b, c, d
      end)
      assert.is_false(ok)
      assert.matches('at once', err)
      assert.is_false(ok2)
      assert.same({code = 7}, err2)
      h.sleep(20) -- no uncaught error follows (it would fail the spec here)
    end)

  it('all waits for every thread and lists {ok, ...}', function()
    local r = go(function()
      local a = co.spawn(function() co.sleep(20) return 1, 2 end)
      local b = co.spawn(function() return 'sync' end)
      local c = co.spawn(function() co.sleep(5) error('bad', 0) end)
      return co.all(a, b, c)
    end)
    assert.equal(3, #r)
    assert.same({true, 1, 2, n = 3}, r[1])
    assert.same({true, 'sync', n = 2}, r[2])
    assert.same({false, 'bad', n = 2}, r[3])
    assert.equal(co.all, co.join)
  end)

  it('await returns what the callback got; a synchronous callback does not yield',
    function()
      local r = {go(function()
        local t = {}
        t[1] = {co.await(function(a, b, cb)
          setTimeout(function() cb(a + b, 'later') end, 5)
        end, 1, 2)}
        -- A callback during the call: no yield (the loop does not turn).
        local turned = false
        setImmediate(function() turned = true end)
        t[2] = {co.await(function(cb) cb('sync', nil, 3) end)}
        t[3] = turned
        -- A second call of the callback is ignored.
        local cb2
        t[4] = {co.await(function(cb)
          cb2 = cb
          setTimeout(function() cb('first') end, 1)
        end)}
        cb2('second')
        return unpack(t)
      end)}
      assert.same({3, 'later'}, r[1])
      assert.same({'sync', nil, 3}, r[2])
      assert.is_false(r[3])
      assert.same({'first'}, r[4])
    end)

  it('await passes arguments before the callback (uv.fs_stat)', function()
    local err, st = go(function()
      return co.await(uv.fs_stat, h.root .. '/spec')
    end)
    assert.is_nil(err)
    assert.equal('directory', st.type)
  end)

  it('running() is the current thread inside, nil outside', function()
    assert.is_nil(co.running())
    local t
    local inside = go(function()
      t = co.running()
      return t
    end)
    assert.equal(t, inside)
    assert.is_not_nil(inside)
    local mine = coroutine.create(function() return co.running() end)
    assert.same({true, nil}, {coroutine.resume(mine)})
  end)

  it('run reuses one coroutine for jobs that do not wait', function()
    local seen = {}
    local function job() seen[#seen + 1] = coroutine.running() end
    assert.is_true(co.run(job))
    assert.is_true(co.run(job))
    assert.equal(seen[1], seen[2])
    -- A job that waits keeps its coroutine; the next job takes another.
    local waited = false
    assert.is_false(co.run(function()
      job()
      co.sleep(1)
      waited = true
    end))
    assert.equal(seen[1], seen[3])
    assert.is_true(co.run(job))
    assert.are_not.equal(seen[1], seen[4])
    assert.is_true(h.wait(function() return waited end))
    assert.is_true(co.run(job))
    assert.equal(seen[1], seen[5])
  end)

  it('run passes exactly the arguments given', function()
    local got = {}
    local function job(...) got[#got + 1] = {select('#', ...), ...} end
    co.run(job)
    co.run(job, nil)
    co.run(job, 1, nil, 3)
    co.run(job, 1, 2, 3, 4, nil)
    assert.same({{0}, {1}, {3, 1, nil, 3}, {5, 1, 2, 3, 4}}, got)
  end)

  it('run allocates nothing for a job that does not wait', function()
    local sum = 0
    local function job(a, b) sum = sum + a + b end
    local function bytes_per_call(nargs)
      for i = 1, 100 do co.run(job, i, 1) end
      collectgarbage()
      collectgarbage('stop')
      local k0 = collectgarbage('count')
      for i = 1, 10000 do
        if nargs == 2 then co.run(job, i, 1) else co.run(job, i, 1, 2, 3) end
      end
      local per = (collectgarbage('count') - k0) * 1024 / 10000
      collectgarbage('restart')
      return per
    end
    assert.is_true(bytes_per_call(2) < 1, 'allocates')
    -- More than three arguments take one table (and never the 12 KB a
    -- call LuaJIT's compiled code once took there).
    assert.is_true(bytes_per_call(4) < 400, 'allocates too much')
  end)

  it('run jobs that wait go on from their event, and their coroutine is reused',
    function()
      local seen, done = {}, 0
      local function job(ms)
        seen[#seen + 1] = coroutine.running()
        co.sleep(ms)
        done = done + 1
      end
      assert.is_false(co.run(job, 10))
      assert.is_true(h.wait(function() return done == 1 end))
      co.run(job, 1)
      assert.equal(seen[1], seen[2])
    end)

  it('a coroutine whose job raised is not reused', function()
    local first
    co.run(function()
      first = coroutine.running()
      error('job failed')
    end)
    assert.has_error(function() h.sleep(10) end, nil)
    local after
    co.run(function() after = coroutine.running() end)
    assert.is_not_nil(after)
    assert.are_not.equal(first, after)
  end)

  -- (test.wait raises what reaches uncaughtException meanwhile.)
  it('an error nobody waits for is uncaught', function()
    co.spawn(function()
      co.sleep(5)
      error('nobody waits', 0)
    end)
    local ok, err = pcall(h.sleep, 50)
    assert.is_false(ok)
    assert.equal('nobody waits', err)
  end)

  it("a child's error is left for its parent until the parent's job ends",
    function()
      local ended = false
      co.spawn(function()
        local waited = co.spawn(function() co.sleep(5) error('w', 0) end)
        co.spawn(function() co.sleep(5) error('never waited', 0) end)
        co.sleep(30)
        co.wait(waited)
        ended = true
      end)
      local ok, err = pcall(h.sleep, 100)
      assert.is_true(ended)
      assert.is_false(ok)
      assert.equal('never waited', err)
      h.sleep(30) -- and nothing more
    end)

  it('a long-lived parent does not keep its ended children', function()
    local grew = go(function()
      local function child() end
      for _ = 1, 100 do co.spawn(child) end
      collectgarbage()
      local k0 = collectgarbage('count')
      for _ = 1, 5000 do co.spawn(child) end
      collectgarbage()
      return collectgarbage('count') - k0
    end)
    assert.is_true(grew < 100, 'kept ' .. grew .. ' KB')
  end)

  it('kill ends a waiting thread; its waiters get false, "killed"', function()
    local woke = false
    local r = {go(function()
      local t = co.spawn(function() co.sleep(30) woke = true end)
      local waiter = co.spawn(function() return co.wait(t) end)
      local ok, err = co.kill(t)
      local again = {co.kill(t)}
      return ok, err, again, co.wait(waiter)
    end)}
    assert.is_true(r[1])
    assert.is_nil(r[2])
    assert.same({nil, 'already waited or killed'}, r[3])
    assert.same({true, false, 'killed'}, {r[4], r[5], r[6]})
    h.sleep(50)
    assert.is_false(woke)
  end)

  it('a bare coroutine.yield() resumes on the next turn of the loop', function()
    local log = {}
    co.spawn(function()
      log[#log + 1] = 'a'
      coroutine.yield()
      log[#log + 1] = 'c'
    end)
    log[#log + 1] = 'b'
    assert.is_true(h.wait(function() return #log == 3 end))
    assert.same({'a', 'b', 'c'}, log)
  end)

  it('waiting outside a coroutine raises an error saying how to fix it',
    function()
      local how = 'not inside a coroutine; run this code in co.spawn%(' ..
        'function%(%) ... end%) %(request handlers run in one%)'
      for _, f in ipairs({
        function() co.sleep(1) end,
        function() co.await(function(cb) cb() end) end,
        function() co.wait(co.spawn(function() end)) end,
      }) do
        local ok, err = pcall(f)
        assert.is_false(ok)
        assert.matches('^.-co_spec.lua:%d+: co%.%a+: ' .. how .. '$', err)
      end
      -- Inside a coroutine of the caller's own, as well.
      local ok, err = go(function()
        return coroutine.wrap(function() return pcall(co.sleep, 1) end)()
      end)
      assert.is_false(ok)
      assert.matches('co.sleep: not inside a coroutine', err, 1, true)
    end)

  it('checks its arguments', function()
    local ok, err = pcall(co.spawn, 42)
    assert.is_false(ok)
    assert.matches('co.spawn: expected a function, got number', err, 1, true)
    ok, err = go(function() return pcall(co.wait, {}) end)
    assert.is_false(ok)
    assert.matches('argument #1 is not a thread', err)
    ok, err = go(function() return pcall(co.wait, co.running()) end)
    assert.is_false(ok)
    assert.matches('a thread cannot wait for itself', err)
    ok, err = go(function() return pcall(co.sleep, -1) end)
    assert.is_false(ok)
  end)

  it('pool_size bounds the idle coroutines kept', function()
    local before = co.pool_size()
    assert.equal(256, before)
    assert.equal(0, co.pool_size(0))
    local a, b
    co.run(function() a = coroutine.running() end)
    co.run(function() b = coroutine.running() end)
    assert.are_not.equal(a, b)
    co.pool_size(before)
  end)
end)

describe('co in a process', function()
  after_each(h.cleanup)

  it('a waiting coroutine keeps the process alive', function()
    local p = h.script([[
      local co = require('co')
      co.spawn(function() co.sleep(150) print('woke') end)
    ]])
    assert.equal(0, p.code)
    assert.equal('woke\n', p.stdout)
  end)

  it('an uncaught error prints its traceback and exits 1', function()
    local p = h.script([[
      local co = require('co')
      process:on('exit', function(code) print('exit ' .. code) end)
      co.spawn(function()
        co.sleep(5)
        local t = nil
        return t.field
      end)
      setTimeout(function() print('not reached') end, 500)
    ]])
    assert.equal(1, p.code)
    assert.equal('exit 1\n', p.stdout)
    assert.matches("attempt to index local 't' %(a nil value%)", p.stderr)
    assert.matches('stack traceback:', p.stderr, 1, true)
  end)

  it('a non-string error is shown as a value', function()
    local p = h.script([[
      require('co').spawn(function() error({code = 'E42'}) end)
    ]])
    assert.equal(1, p.code)
    assert.matches('Uncaught {.*E42', p.stderr)
  end)
end)
