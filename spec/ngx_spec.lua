-- ngx: the part of OpenResty's ngx table cosocket drivers use.
local h = require('helper')
local uv = require('uv')
local co = require('co')
local ngx = require('ngx')

local go = h.go

describe('ngx', function()
  it('is the global ngx too, with cjson.null and the constants', function()
    assert.equal(ngx, _G.ngx)
    assert.equal(require('cjson').null, ngx.null)
    assert.equal(0, ngx.OK)
    assert.equal(-1, ngx.ERROR)
    assert.equal(4, ngx.ERR)
    assert.equal(8, ngx.DEBUG)
    assert.equal('http', ngx.config.subsystem)
    assert.is_number(ngx.config.ngx_lua_version)
  end)

  it('tells the time', function()
    local t = ngx.now()
    assert.is_true(math.abs(t - os.time()) <= 1)
    assert.equal(math.floor(t * 1000), t * 1000) -- milliseconds
    assert.equal(math.floor(ngx.time()), ngx.time())
    ngx.update_time()
  end)

  it('sleeps in seconds inside a coroutine', function()
    local took = go(function()
      local t0 = uv.hrtime()
      ngx.sleep(0.05)
      return (uv.hrtime() - t0) / 1e6
    end)
    assert.is_true(took >= 49 and took < 1000, 'took ' .. took)
    assert.has_error(function() ngx.sleep(0.01) end)
  end)

  it('runs timer.at callbacks in a coroutine, with premature false', function()
    local got
    assert.is_true(ngx.timer.at(0.01, function(premature, a, b)
      ngx.sleep(0.01) -- may wait: it runs in a coroutine
      got = {premature, a, b}
    end, 'a', 'b'))
    assert.equal(1, ngx.timer.pending_count())
    assert.is_true(h.wait(function() return got ~= nil end))
    assert.same({false, 'a', 'b'}, got)
    assert.equal(0, ngx.timer.pending_count())
    assert.equal(0, ngx.timer.running_count())
    assert.has_error(function() ngx.timer.at(-1, function() end) end)
    assert.has_error(function() ngx.timer.at(0, 'no') end)
  end)

  it('has thread.spawn, wait and kill', function()
    local r = {go(function()
      local t = ngx.thread.spawn(function(x) ngx.sleep(0.005) return x end, 7)
      local slow = ngx.thread.spawn(function() ngx.sleep(5) end)
      local a = {ngx.thread.wait(t)}
      return a, ngx.thread.kill(slow)
    end)}
    assert.same({true, 7}, r[1])
    assert.is_true(r[2])
  end)

  it('connects with socket.connect', function()
    local srv = uv.new_tcp()
    srv:bind('127.0.0.1', 0)
    local peer
    srv:listen(8, function()
      peer = uv.new_tcp()
      srv:accept(peer)
      peer:write('hi\n')
    end)
    local port = srv:getsockname().port
    local line, err = go(function()
      local s = assert(ngx.socket.connect('127.0.0.1', port))
      local l = s:receive()
      s:close()
      return l, select(2, ngx.socket.connect('127.0.0.1', h.free_port()))
    end)
    assert.equal('hi', line)
    assert.equal('connection refused', err)
    srv:close()
    peer:close()
  end)

  it('has the string functions, agreeing with openssl and coreutils',
    function()
    local function sh(cmd, input)
      local path = os.tmpname()
      local f = assert(io.open(path, 'wb'))
      f:write(input)
      f:close()
      local p = assert(io.popen(cmd .. ' < ' .. path))
      local out = p:read('*a')
      p:close()
      os.remove(path)
      return out
    end
    local inputs = {'', 'a', 'hello', ('\0\255\1'):rep(100),
      string.char(unpack((function()
        local t = {} for i = 0, 255 do t[#t + 1] = i end return t end)()))}
    for _, s in ipairs(inputs) do
      assert.equal(sh('md5sum', s):match('^%x+'), ngx.md5(s))
      assert.equal(16, #ngx.md5_bin(s))
      assert.equal(sh('sha1sum', s):match('^%x+'),
        (ngx.sha1_bin(s):gsub('.', function(c)
          return ('%02x'):format(c:byte()) end)))
      assert.equal(sh('base64 -w0', s), ngx.encode_base64(s))
      assert.equal(s, ngx.decode_base64(ngx.encode_base64(s)))
      assert.equal(s, ngx.decode_base64(ngx.encode_base64(s, true)))
      assert.equal(s, ngx.unescape_uri(ngx.escape_uri(s)))
      local mac = sh('openssl dgst -sha1 -hmac secret -binary', s)
      assert.equal(mac, ngx.hmac_sha1('secret', s))
    end
    assert.equal('aGVsbG8', ngx.encode_base64('hello', true))
    assert.is_nil(ngx.decode_base64('a'))
    assert.is_nil(ngx.decode_base64('!!!!'))
    assert.is_nil(ngx.decode_base64('aGVs=bG8'))
    -- zlib's crc32 (ngx's); 0x3610a686 is crc32('hello').
    assert.equal(0x3610a686, ngx.crc32_long('hello'))
    assert.equal(ngx.crc32_long('hello'), ngx.crc32_short('hello'))
    assert.equal(0, ngx.crc32_long(''))
    assert.equal('a%20b%2Fc%3Fd%3D%C3%A9~-_.', ngx.escape_uri('a b/c?d=é~-_.'))
    assert.equal('b r56 7%zz', ngx.unescape_uri('b%20r56+7%zz'))
    assert.equal('42', ngx.escape_uri(42))
    assert.has_error(function() ngx.md5({}) end,
      "bad argument #1 to 'md5' (string expected, got table)")
  end)

  it('is worker 0 of 1 in a single process', function()
    assert.equal(0, ngx.worker.id())
    assert.equal(1, ngx.worker.count())
    assert.equal(process.pid, ngx.worker.pid())
    assert.is_false(ngx.worker.exiting())
    assert.equal('init', ngx.get_phase())
    assert.equal('content', go(ngx.get_phase))
  end)
end)

describe('ngx in a process', function()
  after_each(h.cleanup)

  it('logs to stderr with the level, down to ngx.log_level', function()
    local p = h.script([[
      local ngx = require('ngx')
      ngx.log(ngx.ERR, 'failed: ', 42, ' ', nil, ' ', ngx.null, ' ', true)
      ngx.log(ngx.WARN, 'warned')
      ngx.log(ngx.INFO, 'hidden')
      ngx.log_level = ngx.DEBUG
      ngx.log(ngx.DEBUG, 'shown')
    ]])
    assert.equal(0, p.code)
    local lines = h.lines(p.stderr)
    assert.equal(3, #lines, p.stderr)
    local pid = p.pid
    assert.matches('^%d+/%d%d/%d%d %d%d:%d%d:%d%d %[error%] ' .. pid ..
      '#0: %[lua%] [^:]+:2: failed: 42 nil null true$', lines[1])
    assert.matches('%[warn%] .*:3: warned$', lines[2])
    assert.matches('%[debug%] .*:6: shown$', lines[3])
  end)

  it("reads cluster's worker id and the -w count", function()
    local p = h.script([[
      local ngx = require('ngx')
      print(('id %d of %d'):format(ngx.worker.id(), ngx.worker.count()))
      process.exit(0)
    ]], {before = {'-w', '2'}})
    local ids = {}
    -- Each line as the primary passes it on: time, level, worker id.
    for i, l in ipairs(h.lines(p.stdout)) do
      ids[i] = l:gsub('^%d+%-%d+%-%d+T[%d:.]+Z info  ', '')
    end
    table.sort(ids)
    assert.same({'[1] id 0 of 2', '[2] id 1 of 2'}, ids)
  end)

  it('runs timer.every callbacks again and again', function()
    local p = h.script([[
      local ngx = require('ngx')
      local n = 0
      ngx.timer.every(0.005, function(premature, step)
        n = n + step
        if n == 3 then print('three') process.exit(0) end
      end, 1)
    ]])
    assert.equal(0, p.code)
    assert.equal('three\n', p.stdout)
  end)

  it('gives shared dicts as ngx.shared.NAME', function()
    local p = h.script([[
      local ngx = require('ngx')
      local d = ngx.shared.cache
      d:set('k', 'v')
      print(d:get('k'), ngx.shared.nothing)
    ]], {before = {'--shared', 'cache:1m'}})
    assert.equal(0, p.code, p.stderr)
    assert.equal('v\tnil\n', p.stdout)
  end)

  it('is the global ngx, loaded on first use, as drivers expect', function()
    local p = h.script([[
      print(rawget(_G, 'ngx') == nil)
      print(ngx.null == require('cjson').null, type(ngx.socket.tcp))
      print(rawget(_G, 'ngx') == require('ngx'), undefined_global)
    ]])
    assert.equal(0, p.code, p.stderr)
    assert.equal('true\ntrue\tfunction\ntrue\tnil\n', p.stdout)
  end)
end)
