-- OpenResty's resty.memcached, unmodified (Debian's lua-nginx-memcached,
-- unpacked into build/deps by vendor/setup.sh test), on our cosockets and
-- ngx's string functions (escape_uri keys), against a real memcached
-- started here on a free port and stopped by PID.
local h = require('helper')
local uv = require('uv')
local co = require('co')
local ngx = require('ngx')

local DEPS = h.root .. '/build/deps/lua/'

local go = h.go

-- start() -> {proc, port}: a memcached of its own, ready to answer.
local function start()
  local port = h.free_port()
  local proc = h.spawn({'-p', tostring(port), '-l', '127.0.0.1', '-U', '0',
    '-m', '16', '-u', 'root'}, {cmd = 'memcached'})
  local ready = h.wait(function()
    if proc.exited then return true end
    local data = h.raw(port, 'version\r\n', {timeout = 200,
      ['until'] = function(d) return d:find('VERSION', 1, true) ~= nil end})
    return data:find('VERSION', 1, true) ~= nil
  end, 5000)
  assert(ready and not proc.exited, 'memcached did not start: ' ..
    proc.stderr .. proc.stdout)
  return {proc = proc, port = port}
end

describe('resty.memcached on cosockets', function()
  local memcached, srv

  setup(function()
    assert(uv.fs_stat(DEPS .. 'resty/memcached.lua'),
      'resty.memcached is missing: run vendor/setup.sh test')
    assert(os.execute('command -v memcached >/dev/null') == 0,
      'memcached is missing: run vendor/setup.sh test')
    package.path = DEPS .. '?.lua;' .. package.path
    memcached = require('resty.memcached')
    srv = start()
  end)

  teardown(function()
    if srv then srv.proc:stop() end
    h.cleanup()
  end)

  local function client()
    local m = assert(memcached:new())
    m:set_timeout(2000)
    assert(m:connect('127.0.0.1', srv.port))
    return m
  end

  it('is the unmodified driver, seeing the global ngx', function()
    assert.equal('0.13', memcached._VERSION)
    assert.equal(ngx, _G.ngx)
  end)

  it('sets, gets, adds, replaces, counts and deletes', function()
    local r = {go(function()
      local m = client()
      local out = {}
      out.set = {m:set('dog', 32, 0, 7)}
      out.get = {m:get('dog')}
      out.add = {m:add('dog', 'again')}
      out.replace = {m:replace('dog', 'rex')}
      out.after = {m:get('dog')}
      out.missing = {m:get('no such key')}
      assert(m:set('n', 10))
      out.incr = {m:incr('n', 5)}
      out.decr = {m:decr('n', 3)}
      out.append = {m:append('dog', '!')}
      out.multi = m:get({'dog', 'n', 'nope'})
      out.delete = {m:delete('dog')}
      out.gone = {m:get('dog')}
      m:close()
      return out
    end)}
    local o = r[1]
    assert.same({1}, o.set)
    assert.same({'32', '7'}, o.get)   -- flags as the driver gives them
    assert.same({nil, 'NOT_STORED'}, o.add)
    assert.same({1}, o.replace)
    assert.same({'rex', '0'}, o.after)
    assert.is_nil(o.missing[1])
    assert.is_nil(o.missing[3])   -- no error either
    assert.same({'15'}, o.incr)
    assert.same({'12'}, o.decr)
    assert.same({1}, o.append)
    assert.same({dog = {'rex!', '0'}, n = {'12', '0'}}, o.multi)
    assert.same({1}, o.delete)
    assert.is_nil(o.gone[1])
  end)

  it('keys with spaces and any bytes go escaped by ngx.escape_uri',
    function()
    local key = 'a key/with spaces, é and %'
    local r = {go(function()
      local m = client()
      assert(m:set(key, 'v'))
      local v = m:get(key)
      local all = m:get({key})
      m:close()
      return v, all
    end)}
    assert.equal('v', r[1])
    assert.same({[key] = {'v', '0'}}, r[2])
    -- What went on the wire: the escaped key, as memcached lists it.
    local raw = h.raw(srv.port, 'get ' .. ngx.escape_uri(key) .. '\r\n',
      {timeout = 1000, ['until'] = function(d) return d:find('END') end})
    assert.truthy(raw:find('VALUE ' .. ngx.escape_uri(key) .. ' 0 1', 1,
      true), raw)
  end)

  it('reuses pooled connections', function()
    local times = go(function()
      local seen = {}
      for i = 1, 3 do
        local m = client()
        seen[i] = m:get_reused_times()
        assert(m:set('k' .. i, i))
        assert(m:set_keepalive(10000, 4))
      end
      return seen
    end)
    assert.same({0, 1, 2}, times)
  end)

  it('serves many coroutines at once', function()
    local n = go(function()
      local ts = {}
      for i = 1, 50 do
        ts[i] = co.spawn(function()
          local m = client()
          assert(m:set('c' .. i, i * 2))
          local v = m:get('c' .. i)
          m:set_keepalive(10000, 10)
          return tonumber(v)
        end)
      end
      local sum = 0
      for i = 1, 50 do
        local ok, v = co.wait(ts[i])
        assert(ok)
        sum = sum + v
      end
      return sum
    end)
    assert.equal(2 * 50 * 51 / 2, n)
  end)

  it('returns an error value when memcached dies, and goes on', function()
    local r = {go(function()
      local m = client()
      assert(m:set('x', '1'))
      srv.proc:kill('sigkill')
      while not srv.proc.exited do co.sleep(10) end
      local v, _, err = m:get('x')
      m:close()
      local again = {memcached:new():connect('127.0.0.1', srv.port)}
      return v, err, again
    end)}
    assert.is_nil(r[1])
    assert.is_truthy(r[2] == 'closed' or r[2] == 'connection reset by peer',
      r[2])
    assert.same({nil, 'connection refused'}, r[3])
    srv = start()
    assert.equal('1', go(function()
      local m = client()
      assert(m:set('back', '1'))
      local v = m:get('back')
      m:close()
      return v
    end))
  end)
end)
