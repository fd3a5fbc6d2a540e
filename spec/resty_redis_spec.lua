-- OpenResty's resty.redis, unmodified (Debian's lua-nginx-redis, unpacked
-- into build/deps by vendor/setup.sh test), on our cosockets against a
-- real redis-server started here on a free port and stopped by PID.
local h = require('helper')
local uv = require('uv')
local co = require('co')
local ngx = require('ngx')

local DEPS = h.root .. '/build/deps/lua/'

local go = h.go

local function exists(path)
  return uv.fs_stat(path) ~= nil
end

-- start() -> {proc, port, sock (a unix socket path), dir}: a redis-server
-- of its own, persisting nothing, ready to answer.
local function start()
  local dir = assert(uv.fs_mkdtemp(uv.os_tmpdir() .. '/luacluster-redis-XXXXXX'))
  local port = h.free_port()
  local sock = dir .. '/redis.sock'
  local proc = h.spawn({'--port', tostring(port), '--bind', '127.0.0.1',
    '--unixsocket', sock, '--save', '', '--appendonly', 'no',
    '--dir', dir, '--daemonize', 'no'}, {cmd = 'redis-server'})
  local ready = h.wait(function()
    if proc.exited then return true end
    local data = h.raw(port, 'PING\r\n', {timeout = 200,
      ['until'] = function(d) return d:find('PONG', 1, true) ~= nil end})
    return data:find('PONG', 1, true) ~= nil
  end, 5000)
  assert(ready and not proc.exited, 'redis-server did not start: ' ..
    proc.stderr .. proc.stdout)
  return {proc = proc, port = port, sock = sock, dir = dir}
end

local function stop(srv)
  srv.proc:stop()
  for _, f in ipairs({'redis.sock', 'dump.rdb'}) do
    os.remove(srv.dir .. '/' .. f)
  end
  uv.fs_rmdir(srv.dir)
end

describe('resty.redis on cosockets', function()
  local redis, srv

  setup(function()
    assert(exists(DEPS .. 'resty/redis.lua'),
      'resty.redis is missing: run vendor/setup.sh test')
    assert(os.execute('command -v redis-server >/dev/null') == 0,
      'redis-server is missing: run vendor/setup.sh test')
    package.path = DEPS .. '?.lua;' .. package.path
    redis = require('resty.redis')
    srv = start()
  end)

  teardown(function()
    if srv then stop(srv) end
    h.cleanup()
  end)

  -- client() -> a connected redis object (timeout 2 s).
  local function client(opts)
    local r = redis:new()
    r:set_timeout(2000)
    assert(r:connect('127.0.0.1', srv.port, opts))
    return r
  end

  it('is the unmodified driver, seeing the global ngx', function()
    assert.equal('0.27', redis._VERSION)
    assert.equal(ngx, _G.ngx)
  end)

  it('SET, GET, a missing key as ngx.null, an error reply', function()
    local r = {go(function()
      local c = client()
      local out = {c:set('greeting', 'hello'), c:get('greeting'),
        c:get('no such key'), c:incr('counter'), c:incr('counter')}
      out[6] = {c:incr('greeting')}
      out[7] = {c:hmset('h', 'a', '1', 'b', '2')}
      out[8] = c:hget('h', 'b')
      c:close()
      return out
    end)}
    local out = r[1]
    assert.equal('OK', out[1])
    assert.equal('hello', out[2])
    assert.equal(ngx.null, out[3])
    assert.equal(1, out[4])
    assert.equal(2, out[5])
    assert.is_false(out[6][1])
    assert.matches('not an integer', out[6][2])
    assert.same({'OK'}, out[7])
    assert.equal('2', out[8])
  end)

  it('pipelines commands', function()
    local res, err = go(function()
      local c = client()
      c:init_pipeline()
      c:set('p', 10)
      c:incr('p')
      c:get('p')
      c:lpush('list', 'x', 'y')
      c:lrange('list', 0, -1)
      local res, err = c:commit_pipeline()
      c:close()
      return res, err
    end)
    assert.is_nil(err)
    assert.same({'OK', 11, '11', 2, {'y', 'x'}}, res)
  end)

  it('subscribes and receives what another client publishes', function()
    local got = {go(function()
      local sub = client()
      local first = sub:subscribe('news')
      local reader = co.spawn(function() return sub:read_reply() end)
      local pub = client()
      local n = pub:publish('news', 'extra!')
      local ok, msg = co.wait(reader)
      local unsub = sub:unsubscribe('news')
      local after = sub:get('greeting') -- usable again once unsubscribed
      sub:close()
      pub:close()
      return first, n, ok, msg, unsub, after
    end)}
    assert.same({'subscribe', 'news', 1}, got[1])
    assert.equal(1, got[2])
    assert.is_true(got[3])
    assert.same({'message', 'news', 'extra!'}, got[4])
    assert.same({'unsubscribe', 'news', 0}, got[5])
    assert.equal('hello', got[6])
  end)

  -- count_clients() -> connections redis-server has now (this one too).
  local function count_clients()
    local c = client({pool = 'counting'})
    local list = c:client('list')
    c:close()
    local n = 0
    for _ in tostring(list):gmatch('[^\n]+') do n = n + 1 end
    return n
  end

  it('reuses pooled connections', function()
    local r = {go(function()
      local c = client()
      local first = c:get_reused_times()
      assert(c:set_keepalive(10000, 10))
      local c2 = client()
      local second = c2:get_reused_times()
      local v = c2:get('greeting')
      assert(c2:set_keepalive(10000, 10))
      local c3 = client()
      local third = c3:get_reused_times()
      c3:close()
      return first, second, v, third
    end)}
    assert.equal(0, r[1])
    assert.is_true(r[2] > 0)
    assert.equal('hello', r[3])
    assert.is_true(r[4] > r[2])
  end)

  it('keeps at most pool_size idle connections', function()
    local before, after = go(function()
      local before = count_clients()
      local cs = {}
      for i = 1, 4 do cs[i] = client({pool = 'limit2', pool_size = 2}) end
      for i = 1, 4 do assert(cs[i]:set_keepalive(10000)) end
      local after
      for _ = 1, 50 do -- the server notices the closes soon after
        after = count_clients()
        if after == before + 2 then break end
        co.sleep(10)
      end
      return before, after
    end)
    assert.equal(before + 2, after)
  end)

  it('serves many coroutines at once through the pool', function()
    local v, seen = go(function()
      local ts = {}
      for i = 1, 50 do
        ts[i] = co.spawn(function()
          local c = client({pool = 'many', pool_size = 8, backlog = 100})
          local n = c:incr('many')
          assert(c:set_keepalive(10000))
          return n
        end)
      end
      local seen = {}
      for _, res in ipairs(co.all(unpack(ts))) do
        assert(res[1], res[2])
        seen[#seen + 1] = res[2]
      end
      table.sort(seen)
      local c = client()
      local final = c:get('many')
      c:close()
      return final, seen
    end)
    assert.equal('50', v)
    assert.equal(50, #seen)
    for i = 1, 50 do assert.equal(i, seen[i]) end
  end)

  it('connects over the unix socket', function()
    local v = go(function()
      local c = redis:new()
      assert(c:connect('unix:' .. srv.sock))
      local v = c:get('greeting')
      c:close()
      return v
    end)
    assert.equal('hello', v)
  end)

  it('returns an error value when redis-server dies mid-request', function()
    local r = {go(function()
      local c = client()
      local blocked = co.spawn(function() return c:blpop('empty list', 10) end)
      co.sleep(50)
      local t0 = uv.hrtime()
      srv.proc:kill('sigkill')
      local ok, res, err = co.wait(blocked)
      local took = (uv.hrtime() - t0) / 1e6
      c:close()
      -- Once it is gone (every socket of it closed), nothing answers.
      while not srv.proc.exited do co.sleep(10) end
      local again = {redis:new():connect('127.0.0.1', srv.port)}
      return ok, res, err, took, again
    end)}
    assert.is_true(r[1]) -- the thread returned (no error raised)
    assert.is_nil(r[2])
    assert.is_truthy(r[3] == 'closed' or r[3] == 'connection reset by peer',
      r[3])
    assert.is_true(r[4] < 2000, 'took ' .. r[4])
    assert.same({nil, 'connection refused'}, r[5])
    -- And the process goes on: a new server, a new connection.
    assert.is_true(srv.proc:wait(3000))
    stop(srv)
    srv = start()
    assert.equal('OK', go(function()
      local c = client()
      local ok = c:set('back', '1')
      c:close()
      return ok
    end))
  end)
end)
