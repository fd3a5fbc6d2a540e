-- shared: ngx.shared.DICT semantics in one process (the spec runner's),
-- then across real worker processes: exact counts under contention, a
-- worker killed with SIGKILL in a write loop, and `-w N --shared`.

local h = require('helper')
local shared = require('shared')

local n = 0
-- fresh(size) -> a new dict with a name no other case uses.
local function fresh(size)
  n = n + 1
  return shared.dict('spec' .. n, size or '1m')
end

-- run(src[, args][, timeout]) -> proc once exited; src is a script.
local function run(src, args, timeout)
  return h.script(src, {before = args, timeout = timeout or 30000})
end

local lines = h.lines

after_each(function() h.cleanup() end)

describe('shared.dict', function()
  it('declares a dict once and finds it by name', function()
    local d = shared.dict('decl', '64k')
    assert.equal(d, shared.dict('decl'))
    assert.equal(d, shared.dict('decl', '1m'))
    assert.equal(65536, d:capacity())
    assert.is_true(d:free_space() > 50000 and d:free_space() < 65536)
    assert.equal('shared.dict: decl', tostring(d))
  end)

  it('takes sizes as nginx writes them', function()
    assert.equal(512 * 1024, fresh('512k'):capacity())
    assert.equal(2 * 1024 * 1024, fresh('2M'):capacity())
    assert.equal(3 * 4096, fresh(3 * 4096):capacity())
    assert.equal(12288, fresh('10000'):capacity()) -- whole pages
  end)

  it('refuses bad names, sizes, and unknown dicts', function()
    assert.has_error(function() shared.dict('x', '4k') end)
    assert.has_error(function() shared.dict('x', '10q') end)
    assert.has_error(function() shared.dict('x', {}) end)
    assert.has_error(function() shared.dict('a b', '1m') end)
    assert.has_error(function() shared.dict(nil, '1m') end)
    local ok, err = pcall(shared.dict, 'never_declared')
    assert.is_false(ok)
    assert.truthy(err:find("no dict 'never_declared'", 1, true))
  end)

  it('raises on a method called with a dot', function()
    local d = fresh()
    local ok, err = pcall(d.get, 'k')
    assert.is_false(ok)
    assert.truthy(err:find('colon', 1, true))
  end)
end)

describe('values', function()
  it('round-trips strings, numbers and booleans', function()
    local d = fresh()
    local bin = 'a\0b\255' .. string.rep('x', 5000)
    for _, v in ipairs({'', 'hello', bin, 0, -1, math.pi, 1 / 3, 2 ^ 53,
        -2 ^ 63, 1e308, true, false}) do
      assert.same({true, nil, false}, {d:set('k', v)})
      assert.equal(v, d:get('k'))
    end
    assert.is_nil(d:get('missing'))
    assert.equal(1, select('#', d:get('missing')))
  end)

  it('round-trips tables, nested', function()
    local d = fresh()
    local t = {1, 'two', {three = 3, list = {true, false}}, 0.1}
    assert.is_true(d:set('t', t))
    assert.same(t, d:get('t'))
    assert.is_true(d:set('o', {a = {b = {c = 'deep'}}, n = -2.5}))
    assert.same({a = {b = {c = 'deep'}}, n = -2.5}, d:get('o'))
    assert.same({}, (function() d:set('e', {}) return d:get('e') end)())
    -- A table changes its value's type in place and back.
    assert.is_true(d:set('x', 'a string'))
    assert.is_true(d:set('x', {1}))
    assert.same({1}, d:get('x'))
    assert.is_true(d:set('x', 7))
    assert.equal(7, d:get('x'))
  end)

  it("says 'bad value type' for what it cannot store", function()
    local d = fresh()
    assert.same({nil, 'bad value type'}, {d:set('k', function() end)})
    assert.same({nil, 'bad value type'}, {d:set('k', {1, 2, x = 3})})
    assert.same({nil, 'bad value type'}, {d:set('k', {f = print})})
    assert.same({nil, 'bad value type'}, {d:set('k', coroutine.create(print))})
    assert.is_nil(d:get('k'))
  end)

  it('keeps flags as ngx does', function()
    local d = fresh()
    assert.is_true(d:set('k', 'v', 0, 42))
    assert.same({'v', 42}, {d:get('k')})
    assert.is_true(d:set('k', 'v'))
    assert.same({'v'}, {d:get('k')})
    assert.has_error(function() d:set('k', 'v', 0, -1) end)
  end)

  it('checks keys as ngx does', function()
    local d = fresh()
    assert.same({nil, 'nil key'}, {d:get(nil)})
    assert.same({nil, 'empty key'}, {d:get('')})
    assert.same({nil, 'key too long'}, {d:set(string.rep('k', 65536), 1)})
    assert.is_true(d:set(string.rep('k', 65535), 1))
    assert.equal(1, d:get(string.rep('k', 65535)))
    assert.is_true(d:set(12, 'twelve'))
    assert.equal('twelve', d:get('12'))
    assert.equal('twelve', d:get(12))
  end)
end)

describe('operations', function()
  it("add fails with 'exists', replace with 'not found'", function()
    local d = fresh()
    assert.same({true, nil, false}, {d:add('k', 1)})
    assert.same({false, 'exists', false}, {d:add('k', 2)})
    assert.equal(1, d:get('k'))
    assert.same({false, 'not found', false}, {d:replace('nope', 1)})
    assert.is_nil(d:get('nope'))
    assert.same({true, nil, false}, {d:replace('k', 'two')})
    assert.equal('two', d:get('k'))
    assert.same({true, nil, false}, {d:safe_add('s', 1)})
    assert.same({false, 'exists', false}, {d:safe_add('s', 1)})
  end)

  it('deletes, and a nil value deletes', function()
    local d = fresh()
    d:set('a', 1)
    d:set('b', 2)
    assert.is_true(d:delete('a'))
    assert.is_nil(d:get('a'))
    assert.is_true(d:delete('never'))
    assert.is_true(d:set('b', nil))
    assert.is_nil(d:get('b'))
    assert.same({}, d:get_keys())
  end)

  it("incr: 'not found' without init, 'not a number', init and init_ttl",
      function()
    local d = fresh()
    assert.same({nil, 'not found'}, {d:incr('c', 1)})
    assert.same({5, nil, false}, {d:incr('c', 1, 4)})
    assert.same({7}, {d:incr('c', 2)})
    assert.same({6.5}, {d:incr('c', -0.5)})
    assert.same({16.5, nil, false}, {d:incr('c', 10, 100)})
    assert.same({17.5}, {d:incr('c', '1')})
    d:set('s', 'text')
    assert.same({nil, 'not a number'}, {d:incr('s', 1)})
    assert.same({nil, 'not a number', false}, {d:incr('s', 1, 0)})
    assert.equal('text', d:get('s'))
    assert.has_error(function() d:incr('c', 'x') end)
    assert.has_error(function() d:incr('c', 1, 'x') end)
    assert.has_error(function() d:incr('c', 1, nil, 5) end)
    assert.same({nil, 'nil key'}, {d:incr(nil, 1)})
    assert.same({1, nil, false}, {d:incr('t', 1, 0, 0.05)})
    assert.is_true(d:ttl('t') > 0)
    h.sleep(80)
    assert.is_nil(d:get('t'))
    assert.same({nil, 'not found'}, {d:incr('t', 1)})
    assert.same({1, nil, false}, {d:incr('t', 1, 0)})
    assert.equal(0, d:ttl('t'))
  end)

  it('lists keys, most recent first, at most 1024 by default', function()
    local d = fresh('4m')
    for i = 1, 1500 do d:set('k' .. i, i) end
    local keys = d:get_keys()
    assert.equal(1024, #keys)
    assert.equal('k1500', keys[1])
    assert.equal(1500, #d:get_keys(0))
    assert.same({'k1500', 'k1499'}, d:get_keys(2))
    d:get('k1')
    assert.same({'k1'}, d:get_keys(1))
  end)

  it('flush_all empties the dict and frees its memory', function()
    local d = fresh('64k')
    local free = d:free_space()
    for i = 1, 100 do d:set('k' .. i, string.rep('x', 100)) end
    assert.is_true(d:free_space() < free)
    d:flush_all()
    assert.is_nil(d:get('k1'))
    assert.same({}, d:get_keys(0))
    assert.equal(free, d:free_space())
    assert.is_true(d:_validate())
  end)
end)

describe('TTL', function()
  it('expires values after ttl seconds', function()
    local d = fresh()
    assert.is_true(d:set('k', 'v', 0.1))
    assert.is_true(d:set('forever', 'v'))
    local ttl = d:ttl('k')
    assert.is_true(ttl > 0.05 and ttl <= 0.1, tostring(ttl))
    assert.equal(0, d:ttl('forever'))
    assert.equal('v', d:get('k'))
    h.sleep(150)
    assert.is_nil(d:get('k'))
    assert.same({nil, 'not found'}, {d:ttl('k')})
    assert.equal('v', d:get('forever'))
  end)

  it('get_stale returns expired values, flagged', function()
    local d = fresh()
    d:set('k', 'old', 0.03, 3)
    assert.same({'old', 3, false}, {d:get_stale('k')})
    h.sleep(60)
    assert.same({'old', 3, true}, {d:get_stale('k')})
    assert.is_nil(d:get('k'))
  end)

  it('expire sets or clears a TTL', function()
    local d = fresh()
    d:set('k', 1)
    assert.is_true(d:expire('k', 0.05))
    assert.is_true(d:ttl('k') > 0)
    assert.is_true(d:expire('k', 0))
    assert.equal(0, d:ttl('k'))
    assert.is_true(d:expire('k', 0.03))
    h.sleep(60)
    assert.same({nil, 'not found'}, {d:expire('k', 10)})
    assert.same({nil, 'not found'}, {d:expire('never', 10)})
    assert.has_error(function() d:expire('k') end)
    assert.has_error(function() d:set('k', 1, -1) end)
    assert.has_error(function() d:set('k', 1, 'soon') end)
  end)

  it('add and replace see an expired key as missing', function()
    local d = fresh()
    d:set('k', 'old', 0.02)
    h.sleep(40)
    assert.same({false, 'not found', false}, {d:replace('k', 'x')})
    assert.same({true, nil, false}, {d:add('k', 'new')})
    assert.equal('new', d:get('k'))
  end)

  it('flush_expired frees expired items only, up to max', function()
    local d = fresh()
    for i = 1, 10 do d:set('e' .. i, i, 0.02) end
    for i = 1, 5 do d:set('l' .. i, i) end
    h.sleep(40)
    assert.equal(15, #d:get_keys(0) + 10)
    assert.equal(3, d:flush_expired(3))
    assert.equal(7, d:flush_expired())
    assert.equal(0, d:flush_expired())
    assert.equal(5, d:_stats().count)
    assert.is_true(d:_validate())
  end)
end)

describe('eviction', function()
  -- Fills d with 200-byte values until a set reports forcible; returns how
  -- many keys were set.
  local function fill(d)
    local v = string.rep('v', 200)
    for i = 1, 10000 do
      local ok, err, forcible = d:set('k' .. i, v)
      assert.is_true(ok, err)
      if forcible then return i end
    end
    error('never full')
  end

  it('evicts the least recently used first, reporting forcible', function()
    local d = fresh('16k')
    local m = fill(d)
    assert.is_true(m > 10)
    assert.is_nil(d:get('k1'))
    assert.equal(200, #d:get('k2'))
    -- k2 was just used: k3 is now the least recently used.
    local v = string.rep('w', 200)
    assert.same({true, nil, true}, {d:set('new1', v)})
    assert.is_nil(d:get('k3'))
    assert.is_not_nil(d:get('k2'))
    assert.same({true, nil, true}, {d:set('new2', v)})
    assert.is_nil(d:get('k4'))
    assert.is_not_nil(d:get('k5'))
    assert.is_not_nil(d:get('new1'))
    assert.is_true(d:_validate())
  end)

  it('does not report expired items as forcible', function()
    local d = fresh('16k')
    local v = string.rep('v', 200)
    local i = 0
    repeat
      i = i + 1
      local _, _, forcible = d:set('e' .. i, v, 0.02)
    until forcible
    h.sleep(40)
    for j = 1, 5 do
      assert.same({true, nil, false}, {d:set('n' .. j, v)})
    end
  end)

  it("safe_set never evicts: 'no memory'", function()
    local d = fresh('16k')
    local m = fill(d)
    assert.same({false, 'no memory', false},
      {d:safe_set('x', string.rep('v', 200))})
    assert.is_not_nil(d:get('k' .. m))
    assert.is_not_nil(d:get('k' .. (m - 1)))
  end)

  it("a value bigger than the store fails with 'no memory', evicting nothing",
      function()
    local d = fresh('16k')
    local m = fill(d)
    assert.same({false, 'no memory', false},
      {d:set('huge', string.rep('h', 20000))})
    assert.is_not_nil(d:get('k' .. m))
    assert.is_not_nil(d:get('k2'))
    -- A value almost as big as the store fits once everything else went.
    local big = string.rep('b', 8000)
    assert.same({true, nil, true}, {d:set('big', big)})
    assert.equal(big, d:get('big'))
    assert.is_true(d:_validate())
  end)

  it('stays consistent through a long random workload', function()
    local d = fresh('64k')
    local big = string.rep('x', 3000)
    math.randomseed(7)
    for i = 1, 50000 do
      local k = 'k' .. math.random(1, 300)
      local r = math.random()
      if r < 0.4 then
        local v = big:sub(1, math.random(0, math.random() < 0.02 and 3000
          or 600))
        assert.is_true(d:set(k, v))
        assert.equal(v, d:get(k))
      elseif r < 0.6 then d:incr(k, 1, 0)
      elseif r < 0.7 then d:delete(k)
      elseif r < 0.8 then d:set(k, math.random())
      elseif r < 0.85 then d:set(k, {a = 1, b = {1, 2}}, 0.001)
      else d:get(k) end
      if i % 10000 == 0 then assert.is_true(d:_validate()) end
    end
  end)
end)

describe('across workers', function()
  local counter = [[
    local cluster = require('cluster')
    local shared = require('shared')
    local d = shared.dict('counters', '1m')
    local W, N = tonumber(arg[1]), tonumber(arg[2])
    if cluster.isPrimary then
      local left = W
      for _ = 1, W do cluster.fork() end
      cluster.on('exit', function(w, code)
        assert(code == 0, 'worker failed')
        left = left - 1
        if left == 0 then
          print('total', d:get('n'), d:get('w'), d:_validate())
        end
      end)
    else
      d:incr('w', 1, 0)
      for _ = 1, N do d:incr('n', 1, 0) end
      process.exit(0)
    end
  ]]

  it('two workers incrementing one counter 100k times each', function()
    local path = h.tmpfile(counter)
    local p = h.run({path, '2', '100000'}, {timeout = 60000})
    os.remove(path)
    assert.equal('', p.stderr)
    assert.equal(0, p.code)
    assert.same({'total\t200000\t2\ttrue'}, lines(p.stdout))
  end)

  it('four workers incrementing one counter 100k times each', function()
    local path = h.tmpfile(counter)
    local p = h.run({path, '4', '100000'}, {timeout = 60000})
    os.remove(path)
    assert.equal('', p.stderr)
    assert.equal(0, p.code)
    assert.same({'total\t400000\t4\ttrue'}, lines(p.stdout))
  end)

  it('shares values both ways, tables too', function()
    local p = run([[
      local cluster = require('cluster')
      local d = require('shared').dict('data', '256k')
      if cluster.isPrimary then
        d:set('from primary', {list = {1, 2, 3}, pi = math.pi})
        d:set('ttl', 'x', 60)
        local w = cluster.fork()
        w:on('exit', function()
          local t = d:get('from worker')
          print('primary sees', t.id, t.ok, d:get('n'))
        end)
      else
        local t = d:get('from primary')
        print('worker sees', t.list[3], t.pi == math.pi, d:ttl('ttl') > 59)
        d:set('from worker', {id = cluster.worker.id, ok = true})
        d:set('n', 2 ^ 53)
        process.exit(0)
      end
    ]])
    assert.equal('', p.stderr)
    assert.same({'worker sees\t3\ttrue\ttrue',
      'primary sees\t1\ttrue\t9.007199254741e+15'}, lines(p.stdout))
  end)

  it('refuses a dict the primary did not declare, in a worker', function()
    local p = run([[
      local cluster = require('cluster')
      local shared = require('shared')
      shared.dict('early', '64k')
      if cluster.isPrimary then
        cluster.fork()
      else
        print(shared.dict('early') ~= nil)
        local ok, err = pcall(shared.dict, 'late', '64k')
        print(ok, err:match("no dict 'late' here") ~= nil)
      end
    ]])
    assert.same({'true', 'false\ttrue'}, lines(p.stdout))
  end)

  it('keeps a worker killed with SIGKILL mid-write from wedging the others',
      function()
    -- A writer loops on two dicts (sets that evict, increments, deletes,
    -- tables, expiries on 'hot'; an increment on 'calm' each turn) until
    -- the test hook (_shared.stall) stops it at its STALL-th journaled
    -- write, a random one: holding a lock, halfway through a step. The
    -- primary sees it stopped and kills it with SIGKILL there, ten times
    -- over, a new writer each time. A counter worker increments 'calm' all
    -- along and reads 'hot' between (so it needs both locks the writers die
    -- holding). After each kill the primary checks both stores. Every kill
    -- left a lock to take over: ten recoveries in all. At the end the
    -- counter's own count must equal the dict's, and it must have stopped
    -- soon after being told.
    local p = run([[
      local cluster = require('cluster')
      local uv = require('uv')
      local shared = require('shared')
      local hot = shared.dict('hot', '64k')
      local calm = shared.dict('calm', '1m')
      local ROUNDS = 10
      if cluster.isPrimary then
        local kills, t_stop, first = 0, nil, nil
        local function check()
          for _, d in ipairs({hot, calm}) do
            local ok, err = d:_validate()
            if not ok then print('broken', d.name, err) os.exit(1) end
          end
        end
        -- Whether the process is stopped (state T in /proc/pid/stat).
        local function stopped(pid)
          local f = io.open('/proc/' .. pid .. '/stat')
          if not f then return false end
          local st = f:read('*a')
          f:close()
          return st:match('^%d+ %b() (%a)') == 'T'
        end
        local function writer()
          local w = cluster.fork({ROLE = 'writer',
            STALL = tostring(math.random(1, 60))})
          local t = uv.new_timer()
          t:start(2, 2, function()
            if stopped(w.process.pid) then
              t:close()
              w:kill('SIGKILL')
            end
          end)
          w:on('exit', function(code, signal)
            if not t:is_closing() then t:close() end
            assert(signal == 'SIGKILL', 'a writer ended by itself')
            kills = kills + 1
            check()
            first = first or calm:get('mine') or 0
            if kills < ROUNDS then return writer() end
            calm:set('stop', true)
            t_stop = uv.hrtime()
          end)
        end
        local counter = cluster.fork({ROLE = 'counter'})
        counter:on('exit', function(code)
          local r = 0
          for _, d in ipairs({hot, calm}) do
            local s = d:_stats()
            r = r + s.recoveries
            assert(s.resets == 0, 'a store was reset')
          end
          print('counter', code, kills)
          print('progress', calm:get('mine') > first)
          print('stopped in time', (uv.hrtime() - t_stop) / 1e9 < 5)
          print('recoveries', r)
        end)
        writer()
      elseif process.env.ROLE == 'writer' then
        local big = string.rep('x', 3000)
        require('_shared').stall(tonumber(process.env.STALL))
        while true do
          local k = 'k' .. math.random(1, 200)
          local r = math.random()
          if r < 0.5 then hot:set(k, big:sub(1, math.random(0, 800)))
          elseif r < 0.7 then hot:incr(k, 1, 0)
          elseif r < 0.8 then hot:delete(k)
          elseif r < 0.9 then hot:set(k, {a = 1, b = {1, 2, 3}}, 0.005)
          elseif r < 0.95 then hot:get(k)
          else hot:flush_expired(2) end
          calm:incr('w', 1, 0)
        end
      else
        local n = 0
        while not calm:get('stop') do
          for _ = 1, 100 do
            assert(calm:incr('mine', 1, 0))
            hot:get('k1')
          end
          n = n + 100
        end
        print('counted', n == calm:get('mine'))
        process.exit(0)
      end
    ]], {}, 60000)
    assert.equal('', p.stderr)
    assert.same({'counted\ttrue', 'counter\t0\t10', 'progress\ttrue',
      'stopped in time\ttrue', 'recoveries\t10'}, lines(p.stdout))
  end)
end)

describe('--shared', function()
  it('declares dicts for an unmodified script under -w', function()
    local path = h.tmpfile([[
      local d = require('shared').dict('counters')
      for _ = 1, 10000 do d:incr('hits', 1, 0) end
      d:incr('done', 1, 0)
      while d:get('done') < 2 do end
      print('hits', d:get('hits'), d:capacity())
    ]])
    local p = h.run({'-w', '2', '--shared', 'counters:1m', path},
      {timeout = 30000})
    os.remove(path)
    assert.equal(0, p.code)
    local hits = {}
    for l in p.stdout:gmatch('[^\n]+') do
      -- As the primary passes it on: time, level, worker id.
      if l:match('hits') then
        hits[#hits + 1] = l:gsub('^%d+%-%d+%-%d+T[%d:.]+Z info  ', '')
      end
    end
    assert.same({'[1] hits\t20000\t1048576', '[2] hits\t20000\t1048576'},
      (function() table.sort(hits) return hits end)())
  end)

  it('declares dicts for a script run without -w too', function()
    local p = run([[
      local d = require('shared').dict('a')
      d:set('k', 'v')
      print(d:get('k'), require('shared').dict('b'):capacity())
    ]], {'--shared', 'a:64k', '--shared=b:128k'})
    assert.equal('', p.stderr)
    assert.same({'v\t131072'}, lines(p.stdout))
  end)

  it('rejects a malformed declaration', function()
    local p = h.run({'--shared', 'nosize', '-e', 'print(1)'})
    assert.equal(9, p.code)
    assert.truthy(p.stderr:find('--shared requires NAME:SIZE', 1, true))
    p = h.run({'--shared', 'x:1q', '-e', 'print(1)'})
    assert.equal(9, p.code)
    assert.truthy(p.stderr:find('bad size', 1, true))
  end)
end)
