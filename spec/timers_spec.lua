-- timers: setTimeout, setInterval, setImmediate, the clear functions and
-- the Timeout / Immediate objects; ordering against process.nextTick.
local h = require('helper')
local timers = require('timers')
local uv = require('uv')

-- Runs code in a fresh luacluster and returns the finished process.
local function lua(code)
  return h.run({'-e', code})
end

describe('timers', function()
  after_each(h.cleanup)

  it('are the globals', function()
    for _, k in ipairs({'setTimeout', 'setInterval', 'setImmediate',
        'clearTimeout', 'clearInterval', 'clearImmediate'}) do
      assert.equal(timers[k], _G[k])
    end
  end)

  describe('setTimeout', function()
    it('calls back once after the delay, with the extra arguments',
        function()
      local got, n
      local t0 = uv.hrtime()
      local elapsed
      local t = setTimeout(function(...)
        n = (n or 0) + 1
        got = {select('#', ...), ...}
        elapsed = (uv.hrtime() - t0) / 1e6
      end, 30, 'a', nil, 3)
      assert.equal(timers.Timeout, getmetatable(t))
      assert.is_true(h.wait(function() return got ~= nil end, 2000))
      assert.same({3, 'a', nil, 3}, got)
      assert.is_true(elapsed >= 29, 'fired after ' .. elapsed .. ' ms')
      h.sleep(40)
      assert.equal(1, n)
    end)

    it('fires in order of delay, and in order of creation for equal delays',
        function()
      local order = {}
      setTimeout(function() order[#order + 1] = 'c' end, 30)
      setTimeout(function() order[#order + 1] = 'a' end, 5)
      setTimeout(function() order[#order + 1] = 'b1' end, 15)
      setTimeout(function() order[#order + 1] = 'b2' end, 15)
      assert.is_true(h.wait(function() return #order == 4 end, 2000))
      assert.same({'a', 'b1', 'b2', 'c'}, order)
    end)

    it('treats a missing, negative, NaN or non-numeric delay as 1 ms, and'
        .. ' a numeric string as a number', function()
      local n = 0
      for _, d in ipairs({'nil', -5, 0 / 0, 'soon', 0}) do
        setTimeout(function() n = n + 1 end, d ~= 'nil' and d or nil)
      end
      assert.is_true(h.wait(function() return n == 5 end, 500))
      local fired = false
      local t0 = uv.hrtime()
      setTimeout(function() fired = (uv.hrtime() - t0) / 1e6 end, '25')
      assert.is_true(h.wait(function() return fired end, 1000))
      assert.is_true(fired >= 24)
    end)

    it('clamps a delay past 2^31-1 ms to 1 ms with a warning', function()
      local p = lua([[
        process.on('warning', function(w) print('event', w.name) end)
        setTimeout(function() print('fired') end, 2^31)]])
      assert.equal(0, p.code)
      -- The 'warning' event comes on the next tick, before the timer.
      assert.equal('event\tTimeoutOverflowWarning\nfired\n', p.stdout)
      assert.matches('TimeoutOverflowWarning: 2147483648 does not fit',
        p.stderr)
    end)

    it('raises a clear error for a callback that is not a function',
        function()
      for _, f in ipairs({setTimeout, setInterval, setImmediate}) do
        local ok, err = pcall(function() f('nope', 1) end)
        assert.is_false(ok)
        assert.matches('^spec/timers_spec%.lua:%d+: The "callback" argument'
          .. ' must be a function, got string$', err)
      end
      assert.has_error(function() setTimeout() end,
        'The "callback" argument must be a function, got nil')
    end)

    it('accepts a callable table', function()
      local got
      setTimeout(setmetatable({}, {__call = function(_, v) got = v end}), 1,
        'x')
      assert.is_true(h.wait(function() return got end, 500))
      assert.equal('x', got)
    end)
  end)

  describe('clearTimeout', function()
    it('cancels a pending timer', function()
      local fired = false
      local t = setTimeout(function() fired = true end, 10)
      clearTimeout(t)
      h.sleep(30)
      assert.is_false(fired)
    end)

    it('is harmless on a fired timer, twice, on nil and on other values',
        function()
      local n = 0
      local t = setTimeout(function() n = n + 1 end, 1)
      assert.is_true(h.wait(function() return n == 1 end, 500))
      assert.has_no_error(function()
        clearTimeout(t)
        clearTimeout(t)
        clearTimeout(nil)
        clearTimeout({})
        clearTimeout(42)
        clearInterval('x')
        clearImmediate(t)
      end)
      assert.equal(1, n)
    end)

    it('works from inside the callback of another timer', function()
      local fired = false
      local later
      setTimeout(function() clearTimeout(later) end, 5)
      later = setTimeout(function() fired = true end, 25)
      h.sleep(45)
      assert.is_false(fired)
    end)

    it('close() is clearTimeout', function()
      local fired = false
      local t = setTimeout(function() fired = true end, 5)
      assert.equal(t, t:close())
      h.sleep(20)
      assert.is_false(fired)
    end)
  end)

  describe('setInterval', function()
    it('repeats with the arguments until clearInterval', function()
      local calls = {}
      local t
      t = setInterval(function(a, b)
        calls[#calls + 1] = {a, b}
        if #calls == 3 then clearInterval(t) end
      end, 5, 'x', 'y')
      assert.is_true(h.wait(function() return #calls == 3 end, 1000))
      h.sleep(30)
      assert.equal(3, #calls)
      assert.same({'x', 'y'}, calls[3])
    end)

    it('clearInterval from outside stops it', function()
      local n = 0
      local t = setInterval(function() n = n + 1 end, 5)
      assert.is_true(h.wait(function() return n >= 2 end, 1000))
      clearInterval(t)
      local seen = n
      h.sleep(30)
      assert.equal(seen, n)
    end)
  end)

  describe('Timeout', function()
    it('ref, unref and hasRef; ref/unref return the timer', function()
      local t = setTimeout(function() end, 1000)
      assert.is_true(t:hasRef())
      assert.equal(t, t:unref())
      assert.is_false(t:hasRef())
      assert.equal(t, t:ref())
      assert.is_true(t:hasRef())
      clearTimeout(t)
    end)

    it('an unref\'d timer does not keep the process alive; ref() again'
        .. ' does', function()
      local p = lua([[
        setTimeout(function() print('unref fired') end, 300):unref()]])
      assert.equal(0, p.code)
      assert.equal('', p.stdout)
      p = lua([[
        local t = setTimeout(function() print('fired') end, 20)
        t:unref()
        t:ref()]])
      assert.equal('fired\n', p.stdout)
      p = lua([[
        setInterval(function() print('never') end, 300):unref()
        setTimeout(function() print('done') end, 10)]])
      assert.equal('done\n', p.stdout)
    end)

    it('an unref\'d timer still fires while something else keeps the loop'
        .. ' alive', function()
      local fired = false
      setTimeout(function() fired = true end, 5):unref()
      local keep = setTimeout(function() end, 50)
      assert.is_true(h.wait(function() return fired end, 500))
      clearTimeout(keep)
    end)

    it('refresh() restarts the delay from now', function()
      local fired
      local t0 = uv.hrtime()
      local t = setTimeout(function() fired = (uv.hrtime() - t0) / 1e6 end,
        60)
      h.sleep(40)
      assert.equal(t, t:refresh())
      assert.is_true(h.wait(function() return fired end, 1000))
      assert.is_true(fired >= 99, 'fired after ' .. fired .. ' ms')
    end)

    it('refresh() re-arms a timer that fired, not one that was cleared',
        function()
      local n = 0
      local t = setTimeout(function() n = n + 1 end, 5)
      assert.is_true(h.wait(function() return n == 1 end, 500))
      t:refresh()
      assert.is_true(h.wait(function() return n == 2 end, 500))
      clearTimeout(t)
      t:refresh()
      h.sleep(25)
      assert.equal(2, n)
    end)

    it('refresh() keeps an unref\'d timer unref\'d', function()
      local p = lua([[
        local t = setTimeout(function() print('fired') end, 200)
        t:unref()
        t:refresh()]])
      assert.equal('', p.stdout)
    end)
  end)

  describe('setImmediate', function()
    it('runs after the current code, in order, with arguments', function()
      local order = {}
      local im = setImmediate(function(a, b)
        order[#order + 1] = a .. b
      end, 'x', 'y')
      setImmediate(function() order[#order + 1] = 'second' end)
      order[#order + 1] = 'sync'
      assert.equal(timers.Immediate, getmetatable(im))
      assert.is_true(h.wait(function() return #order == 3 end, 500))
      assert.same({'sync', 'xy', 'second'}, order)
    end)

    it('one queued by an immediate waits for the next turn', function()
      local order = {}
      setImmediate(function()
        order[#order + 1] = 'a'
        setImmediate(function() order[#order + 1] = 'c' end)
      end)
      setImmediate(function() order[#order + 1] = 'b' end)
      assert.is_true(h.wait(function() return #order == 3 end, 500))
      assert.same({'a', 'b', 'c'}, order)
    end)

    it('clearImmediate cancels; clearing twice or after it ran is harmless',
        function()
      local ran = {}
      local a = setImmediate(function() ran[#ran + 1] = 'a' end)
      local b
      setImmediate(function()
        ran[#ran + 1] = 'first'
        clearImmediate(b)
      end)
      b = setImmediate(function() ran[#ran + 1] = 'b' end)
      clearImmediate(a)
      clearImmediate(a)
      h.sleep(20)
      assert.same({'first'}, ran)
      assert.has_no_error(function()
        clearImmediate(b)
        clearImmediate(nil)
        clearImmediate({})
      end)
    end)

    it('ref, unref and hasRef; an unref\'d immediate does not keep the'
        .. ' process alive', function()
      local im = setImmediate(function() end)
      assert.is_true(im:hasRef())
      assert.equal(im, im:unref())
      assert.is_false(im:hasRef())
      assert.equal(im, im:ref())
      assert.is_true(im:hasRef())
      clearImmediate(im)
      local p = lua([[
        setImmediate(function() print('unref ran') end):unref()
        local uv = require('uv')
        local c = uv.new_check()
        c:start(function() end)
        c:unref()]])
      assert.equal(0, p.code)
      -- Nothing ref'd: the loop ends before the immediate's turn.
      assert.equal('', p.stdout)
      p = lua([[
        local im = setImmediate(function() print('ran') end)
        im:unref()
        im:ref()]])
      assert.equal('ran\n', p.stdout)
    end)
  end)

  describe('ordering', function()
    it('sync code, then nextTick, then setImmediate, then setTimeout(0),'
        .. ' from inside a timer or an I/O callback', function()
      -- In a script of its own: the loop runs as it does for users.
      local p = lua([[
        local function probe(name)
          local order = {}
          setTimeout(function()
            order[#order + 1] = 'timeout'
            print(name .. ': ' .. table.concat(order, ' '))
          end, 0)
          setImmediate(function() order[#order + 1] = 'immediate' end)
          process.nextTick(function() order[#order + 1] = 'tick' end)
          order[#order + 1] = 'sync'
        end
        setTimeout(function() probe('timer') end, 1)
        require('uv').fs_stat('/', function() probe('io') end)]])
      assert.equal(0, p.code)
      local lines = {}
      for l in p.stdout:gmatch('[^\n]+') do lines[#lines + 1] = l end
      table.sort(lines)
      assert.same({'io: sync tick immediate timeout',
        'timer: sync tick immediate timeout'}, lines)
    end)

    it('the same from the main chunk of a script', function()
      local p = lua([[
        setTimeout(function() print('timeout') end, 0)
        setImmediate(function() print('immediate') end)
        process.nextTick(function() print('tick') end)
        print('sync')]])
      -- The main chunk is not inside the loop: Node leaves the order of
      -- timeout and immediate to chance there; ticks always come first.
      assert.matches('^sync\ntick\n', p.stdout)
      assert.equal(4, select(2, p.stdout:gsub('\n', '')))
    end)

    it('nextTicks queued by an immediate run before the next immediate',
        function()
      local order = {}
      setImmediate(function()
        order[#order + 1] = 'im1'
        process.nextTick(function() order[#order + 1] = 'tick1' end)
      end)
      setImmediate(function() order[#order + 1] = 'im2' end)
      assert.is_true(h.wait(function() return #order == 3 end, 500))
      assert.same({'im1', 'tick1', 'im2'}, order)
    end)

    it('nextTicks queued by a timer run before the next timer', function()
      local order = {}
      setTimeout(function()
        order[#order + 1] = 't1'
        process.nextTick(function() order[#order + 1] = 'tick' end)
      end, 5)
      setTimeout(function() order[#order + 1] = 't2' end, 5)
      assert.is_true(h.wait(function() return #order == 3 end, 500))
      assert.same({'t1', 'tick', 't2'}, order)
    end)
  end)
end)
