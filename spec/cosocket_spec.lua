-- cosocket: ngx.socket.tcp's calls against loopback servers made here.
local h = require('helper')
local uv = require('uv')
local co = require('co')
local ngx = require('ngx')

local tcp = ngx.socket.tcp

local go = h.go
local function pack(...) return {n = select('#', ...), ...} end

local function now() return uv.hrtime() / 1e6 end

-- serve(on_conn) -> a loopback server: st.port, st.conns (luv handles),
-- st.accepted, st.got (bytes received), st.eofs. on_conn(client, st) runs
-- for each connection.
local servers = {}
local function serve(on_conn)
  local st = {conns = {}, accepted = 0, got = '', eofs = 0}
  local srv = uv.new_tcp()
  assert(srv:bind('127.0.0.1', 0))
  srv:listen(128, function()
    local c = uv.new_tcp()
    srv:accept(c)
    st.accepted = st.accepted + 1
    st.conns[#st.conns + 1] = c
    c:read_start(function(_, data)
      if data then
        st.got = st.got .. data
        if st.on_data then st.on_data(c, data) end
      else
        st.eofs = st.eofs + 1
        if not c:is_closing() then c:close() end
      end
    end)
    if on_conn then on_conn(c, st) end
  end)
  st.srv = srv
  st.port = srv:getsockname().port
  servers[#servers + 1] = st
  return st
end

local function close_server(st)
  if not st.srv:is_closing() then st.srv:close() end
  for _, c in ipairs(st.conns) do
    if not c:is_closing() then c:close() end
  end
end

-- Writes the parts with a pause between them, then calls last (if any).
local function script(c, parts, last)
  local i = 0
  local function nxt()
    i = i + 1
    if c:is_closing() then return end
    if parts[i] then
      c:write(parts[i])
      setTimeout(nxt, 15)
    elseif last then
      last(c)
    end
  end
  nxt()
end

describe('cosocket', function()
  before_each(h.track_tcp)
  after_each(function()
    for _, st in ipairs(servers) do close_server(st) end
    servers = {}
    h.untrack_tcp()
    -- Pooled connections close once their peer is gone.
    assert.is_true(h.wait(function() return h.open_tcp() == 0 end, 2000),
      h.open_tcp() .. ' TCP handle(s) left open')
  end)

  it('receives lines, sizes and the rest, across chunks', function()
    local st = serve(function(c)
      script(c, {'hello\r\nwor', 'ld\nab', 'c', 'defgh', 'a\rb\r\nlast'},
        function() c:shutdown() end)
    end)
    local r = pack(go(function()
      local s = tcp()
      assert(s:connect('127.0.0.1', st.port))
      local out = {}
      out[1] = s:receive()
      out[2] = s:receive('*l')
      out[3] = s:receive(3)
      out[4] = s:receive('5')
      out[5] = s:receive('*l')
      out[6] = {s:receive()}
      out[7] = {s:receive()}
      out[8] = s:close()
      return out
    end))[1]
    assert.equal('hello', r[1])
    assert.equal('world', r[2])
    assert.equal('abc', r[3])
    assert.equal('defgh', r[4])
    assert.equal('ab', r[5]) -- every CR of a line is dropped
    assert.same({nil, 'closed', 'last'}, r[6])
    assert.same({nil, 'closed'}, r[7])
    assert.equal(1, r[8])
  end)

  it("receives '*a' until the peer closes, and large sizes intact", function()
    local big = {}
    for i = 1, 2000 do big[i] = ('%07d|'):format(i) end
    big = table.concat(big) -- 16000 bytes
    local st = serve(function(c)
      local parts = {}
      for i = 1, #big, 1000 do parts[#parts + 1] = big:sub(i, i + 999) end
      for _, p in ipairs(parts) do c:write(p) end
      c:write(big)
      c:shutdown()
    end)
    local a, b, c2 = go(function()
      local s = tcp()
      assert(s:connect('127.0.0.1', st.port))
      local x = s:receive(#big)
      local y = s:receive('*a')
      local z = s:receive('*a')
      s:close()
      return x, y, z
    end)
    assert.equal(big, a)
    assert.equal(big, b)
    assert.equal('', c2)
  end)

  it('receiveany returns what is there, at most max', function()
    local st = serve(function(c) script(c, {'abcdef', 'gh'}) end)
    local r = {go(function()
      local s = tcp()
      assert(s:connect('127.0.0.1', st.port))
      local t = {s:receiveany(4), s:receiveany(10), s:receiveany(10)}
      s:close()
      return t
    end)}
    assert.same({'abcd', 'ef', 'gh'}, r[1])
  end)

  it('receiveuntil reads up to a pattern, split across chunks too', function()
    local st = serve(function(c)
      script(c, {'hello, world! -agentzh\r\n--abc', 'edhb blah--a',
        'bcedhbX_END_tail'}, function() c:shutdown() end)
    end)
    local r = {go(function()
      local s = tcp()
      assert(s:connect('127.0.0.1', st.port))
      local reader = s:receiveuntil('\r\n--abcedhb')
      local chunks = {}
      while true do
        local data, err = reader(4)
        if not data then
          chunks[#chunks + 1] = tostring(err)
          break
        end
        chunks[#chunks + 1] = data
      end
      local second = s:receiveuntil('--abcedhb')()
      local inc = s:receiveuntil('_END_', {inclusive = true})()
      local rest = {s:receiveuntil('never')()}
      s:close()
      return chunks, second, inc, rest
    end)}
    -- OpenResty's README example, chunk for chunk.
    assert.same({'hell', 'o, w', 'orld', '! -a', 'gent', 'zh', 'nil'}, r[1])
    assert.equal(' blah', r[2])
    assert.equal('X_END_', r[3])
    assert.same({nil, 'closed', 'tail'}, r[4])
  end)

  it('receiveuntil with an empty pattern says so', function()
    local s = tcp()
    assert.same({nil, 'pattern is empty'}, {s:receiveuntil('')})
  end)

  it('sends strings, numbers and nested arrays', function()
    local st = serve()
    local n1, n2 = go(function()
      local s = tcp()
      assert(s:connect('127.0.0.1', st.port))
      local a = s:send('abc')
      local b = s:send({'x', {1, true}, ngx.null, {{'!'}}})
      s:close()
      return a, b
    end)
    assert.equal(3, n1)
    assert.equal(11, n2)
    assert.is_true(h.wait(function() return st.got == 'abcx1truenull!' end))
  end)

  it('sends a large buffer in full', function()
    local payload = ('0123456789'):rep(400000) -- 4 MB: more than a try_write
    local st = serve()
    local n = go(function()
      local s = tcp()
      assert(s:connect('127.0.0.1', st.port))
      local n = s:send(payload)
      s:close()
      return n
    end)
    assert.equal(#payload, n)
    assert.is_true(h.wait(function() return #st.got == #payload end))
    assert.equal(payload, st.got)
  end)

  it('reads ahead at most a bound, then goes on when asked', function()
    local payload = ('abcdefghij'):rep(200000) -- 2 MB
    local st = serve(function(c) c:write(payload) end)
    local r = {go(function()
      local s = tcp()
      assert(s:connect('127.0.0.1', st.port))
      co.sleep(100) -- the peer writes it all meanwhile
      local held = s._c.buf.n
      local data = s:receive(#payload)
      s:close()
      return held, data
    end)}
    assert.is_true(r[1] < #payload, 'read ' .. r[1] .. ' bytes ahead')
    assert.is_true(r[2] == payload)
  end)

  it('closes the connection of a socket collected unclosed', function()
    local st = serve()
    go(function()
      local s = tcp()
      assert(s:connect('127.0.0.1', st.port))
      assert(s:send('x'))
    end)
    assert.is_true(h.wait(function() return st.got == 'x' end))
    assert.equal(0, st.eofs)
    collectgarbage()
    collectgarbage()
    assert.is_true(h.wait(function() return st.eofs == 1 end))
  end)

  it('a read timeout returns nil, "timeout", partial and keeps the connection',
    function()
      local st = serve(function(c) c:write('part') end)
      local r = {go(function()
        local s = tcp()
        s:settimeouts(1000, 1000, 100)
        assert(s:connect('127.0.0.1', st.port))
        local t0 = now()
        local res = {s:receive(10)}
        local took = now() - t0
        st.conns[1]:write('later\n')
        local line = s:receive()
        s:close()
        return res, took, line
      end)}
      assert.same({nil, 'timeout', 'part'}, r[1])
      assert.is_true(r[2] >= 95 and r[2] < 1000, 'took ' .. r[2])
      assert.equal('later', r[3])
    end)

  it('a connect timeout returns nil, "timeout" within the bound', function()
    -- A listener whose queue is full drops new connections' SYNs.
    local srv = uv.new_tcp()
    srv:bind('127.0.0.1', 0)
    srv:listen(1, function() end)
    local port = srv:getsockname().port
    local r = {go(function()
      local held = {}
      repeat -- fill the queue until a connect times out
        local s = tcp()
        s:settimeout(150)
        local ok = s:connect('127.0.0.1', port)
        held[#held + 1] = s
      until not ok or #held > 20
      local s = tcp()
      s:settimeout(200)
      local t0 = now()
      local ok, err = s:connect('127.0.0.1', port)
      local took = now() - t0
      for _, x in ipairs(held) do x:close() end
      return ok, err, took
    end)}
    srv:close()
    assert.is_nil(r[1])
    assert.equal('timeout', r[2])
    assert.is_true(r[3] >= 190 and r[3] < 1500, 'took ' .. r[3])
  end)

  it('a peer that closes mid-read gives nil, "closed", partial', function()
    local st = serve(function(c)
      script(c, {'abc'}, function() c:close() end)
    end)
    local r = {go(function()
      local s = tcp()
      assert(s:connect('127.0.0.1', st.port))
      local res = {s:receive(10)}
      -- The reading side is done; the socket stays open until closed.
      res[4] = {s:receive(1)}
      res[5] = s:close()
      return res
    end)}
    assert.same({nil, 'closed', 'abc', {nil, 'closed'}, 1}, r[1])
  end)

  it('a peer that resets mid-read gives nil, its error, partial', function()
    local st = serve(function(c)
      script(c, {'abc'}, function() c:close_reset() end)
    end)
    local r = {go(function()
      local s = tcp()
      assert(s:connect('127.0.0.1', st.port))
      local res = {s:receive('*l')}
      res[4] = {s:receive()}
      return res
    end)}
    assert.same({nil, 'connection reset by peer', 'abc',
      {nil, 'closed'}}, r[1])
  end)

  it('connect errors: refused, no port, bad port', function()
    local port = h.free_port()
    local r = {go(function()
      local s = tcp()
      return {s:connect('127.0.0.1', port)}, {s:connect('127.0.0.1')},
        {s:connect('127.0.0.1', 70000)}
    end)}
    assert.same({nil, 'connection refused'}, r[1])
    assert.same({nil, 'missing the port number'}, r[2])
    assert.same({nil, 'bad port number: 70000'}, r[3])
  end)

  it('connects to a host name (localhost resolves even without /etc/hosts)',
    function()
    local st = serve(function(c) c:write('hi\n') end)
    local line = go(function()
      local s = tcp()
      assert(s:connect('localhost', st.port))
      local l = s:receive()
      s:close()
      return l
    end)
    assert.equal('hi', line)
  end)

  it('connects to a unix socket', function()
    local path = os.tmpname()
    os.remove(path)
    local srv = uv.new_pipe(false)
    assert(srv:bind(path))
    local peers = {}
    srv:listen(8, function()
      local c = uv.new_pipe(false)
      srv:accept(c)
      peers[#peers + 1] = c
      c:write('unix hello\n')
      c:read_start(function(_, d) if not d then c:close() end end)
    end)
    local line, reused = go(function()
      local s = tcp()
      assert(s:connect('unix:' .. path))
      local l = s:receive()
      assert(s:setkeepalive())
      local s2 = tcp()
      assert(s2:connect('unix:' .. path))
      local n = s2:getreusedtimes()
      s2:close()
      return l, n
    end)
    assert.equal('unix hello', line)
    assert.equal(1, reused)
    srv:close()
    for _, c in ipairs(peers) do if not c:is_closing() then c:close() end end
    os.remove(path)
  end)

  it('setkeepalive pools the connection; connect reuses it', function()
    local st = serve(function(c) c:write('x') end)
    local r = {go(function()
      local s = tcp()
      assert(s:connect('127.0.0.1', st.port))
      local first = s:getreusedtimes()
      assert.equal('x', s:receive(1))
      local ok = s:setkeepalive(10000, 5)
      local after = {s:getreusedtimes()}
      local s2 = tcp()
      assert(s2:connect('127.0.0.1', st.port))
      local second = s2:getreusedtimes()
      assert(s2:setkeepalive())
      local s3 = tcp()
      assert(s3:connect('127.0.0.1', st.port))
      local third = s3:getreusedtimes()
      s3:close()
      return first, ok, after, second, third
    end)}
    assert.equal(0, r[1])
    assert.equal(1, r[2])
    assert.same({nil, 'closed'}, r[3])
    assert.equal(1, r[4])
    assert.equal(2, r[5])
    assert.equal(1, st.accepted)
  end)

  it('the pool keeps at most pool_size, closing the least recently used',
    function()
      local st = serve()
      local r = {go(function()
        local socks = {}
        for i = 1, 3 do
          socks[i] = tcp()
          assert(socks[i]:connect('127.0.0.1', st.port, {pool = 'lim',
            pool_size = 2}))
          assert(socks[i]:send(tostring(i)))
        end
        for i = 1, 3 do assert(socks[i]:setkeepalive()) end
        co.sleep(30)
        local eofs = st.eofs
        local reused = {}
        for i = 1, 3 do
          local s = tcp()
          assert(s:connect('127.0.0.1', st.port, {pool = 'lim'}))
          reused[i] = s:getreusedtimes()
          socks[i] = s
        end
        for i = 1, 3 do socks[i]:close() end
        return eofs, reused
      end)}
      assert.equal(1, r[1]) -- the first one kept was closed
      assert.same({1, 1, 0}, r[2])
      assert.equal(4, st.accepted)
    end)

  it('never hands out a pooled connection the peer closed or wrote to',
    function()
      local st = serve()
      local r = {go(function()
        local out = {}
        -- Closed by the peer while idle, seen by the loop.
        local s = tcp()
        assert(s:connect('127.0.0.1', st.port))
        assert(s:setkeepalive())
        st.conns[1]:close()
        co.sleep(20)
        s = tcp()
        assert(s:connect('127.0.0.1', st.port))
        out[1] = s:getreusedtimes()
        assert(s:setkeepalive())
        -- Closed by the peer just now: the loop has not seen it yet.
        st.conns[2]:shutdown(function() end)
        local c2 = st.conns[2]
        c2:read_stop()
        c2:close()
        s = tcp()
        assert(s:connect('127.0.0.1', st.port))
        out[2] = s:getreusedtimes()
        assert(s:setkeepalive())
        -- Written to by the peer while idle.
        st.conns[3]:write('unasked')
        co.sleep(20)
        s = tcp()
        assert(s:connect('127.0.0.1', st.port))
        out[3] = s:getreusedtimes()
        -- Unread data: not kept.
        st.conns[4]:write('pending')
        co.sleep(20)
        out[4] = {s:setkeepalive()}
        s:close()
        return out
      end)}
      assert.equal(0, r[1][1])
      assert.equal(0, r[1][2])
      assert.equal(0, r[1][3])
      assert.same({nil, 'unread data in buffer'}, r[1][4])
      assert.equal(4, st.accepted)
    end)

  it('with a backlog, connects wait for a slot, then give up', function()
    local st = serve()
    local r = {go(function()
      local opts = {pool = 'bl', pool_size = 1, backlog = 1}
      local a = tcp()
      assert(a:connect('127.0.0.1', st.port, opts))
      local got
      local waiter = co.spawn(function()
        local b = tcp()
        b:settimeout(2000)
        local ok, err = b:connect('127.0.0.1', st.port, opts)
        got = {ok, err, b:getreusedtimes()}
        b:close()
      end)
      local c = tcp()
      local full = {c:connect('127.0.0.1', st.port, opts)}
      co.sleep(20)
      local before = got
      assert(a:setkeepalive())
      co.wait(waiter)
      -- Nobody gives a slot back: the wait times out.
      local d = tcp()
      assert(d:connect('127.0.0.1', st.port, opts))
      local e = tcp()
      e:settimeout(100)
      local t0 = now()
      local late = {e:connect('127.0.0.1', st.port, opts)}
      local took = now() - t0
      d:close()
      return full, before, got, late, took
    end)}
    assert.same({nil, 'too many waiting connect operations'}, r[1])
    assert.is_nil(r[2])
    assert.same({1, nil, 1}, r[3])
    assert.same({nil, 'timeout'}, r[4])
    assert.is_true(r[5] >= 95 and r[5] < 1000, 'took ' .. r[5])
    assert.equal(2, st.accepted) -- a's connection, then d's
  end)

  it('closed sockets answer "closed" (TLS: spec/tls_spec.lua)', function()
    local st = serve()
    local r = {go(function()
      local s = tcp()
      local never = {s:receive()}
      assert(s:connect('127.0.0.1', st.port))
      local c1 = s:close()
      return never, c1, {s:close()}, {s:send('x')}, {s:receive()},
        {s:setkeepalive()}, {s:getreusedtimes()}, {s:sslhandshake()}
    end)}
    assert.same({nil, 'closed'}, r[1])
    assert.equal(1, r[2])
    for i = 3, 8 do assert.same({nil, 'closed'}, r[i]) end
  end)

  it('one reader at a time; a killed reader closes its socket', function()
    local st = serve()
    local r = {go(function()
      local s = tcp()
      assert(s:connect('127.0.0.1', st.port))
      local t = co.spawn(function() return s:receive() end)
      local busy = {s:receive()}
      co.kill(t)
      return busy, {s:send('x')}
    end)}
    assert.same({nil, 'socket busy reading'}, r[1])
    assert.same({nil, 'closed'}, r[2])
    assert.is_true(h.wait(function() return st.eofs == 1 end))
  end)

  it('a thread killed while it connects leaves no handle open', function()
    local srv = uv.new_tcp()
    srv:bind('127.0.0.1', 0)
    srv:listen(1, function() end)
    local port = srv:getsockname().port
    go(function()
      local held = {}
      repeat -- fill the queue until a connect times out
        local s = tcp()
        s:settimeout(150)
        local ok = s:connect('127.0.0.1', port)
        held[#held + 1] = s
      until not ok or #held > 20
      local t = co.spawn(function() return tcp():connect('127.0.0.1', port) end)
      co.sleep(20)
      assert(co.kill(t))
      for _, x in ipairs(held) do x:close() end
    end)
    srv:close()
  end)

  it('raises outside a coroutine', function()
    local s = tcp()
    local ok, err = pcall(s.connect, s, '127.0.0.1', 1)
    assert.is_false(ok)
    assert.matches('tcpsock:connect: not inside a coroutine; run this code ' ..
      'in co.spawn(function() ... end)', err, 1, true)
    ok, err = pcall(s.receive, s)
    assert.is_false(ok)
    assert.matches('tcpsock:receive: not inside a coroutine', err, 1, true)
  end)
end)

describe('cosocket in a process', function()
  after_each(h.cleanup)

  it('a waiting read keeps the process alive; pooled ones do not', function()
    local p = h.script([[
      local uv = require('uv')
      local co = require('co')
      local ngx = require('ngx')
      local srv = uv.new_tcp()
      srv:bind('127.0.0.1', 0)
      srv:listen(8, function()
        local c = uv.new_tcp()
        srv:accept(c)
        local t = uv.new_timer()
        t:start(150, 0, function() t:close() c:write('late\n') end)
      end)
      srv:unref()
      co.spawn(function()
        local s = ngx.socket.tcp()
        assert(s:connect('127.0.0.1', srv:getsockname().port))
        print(s:receive())
        assert(s:setkeepalive(0))
      end)
    ]], {timeout = 5000})
    assert.equal(0, p.code, p.stderr)
    assert.equal('late\n', p.stdout)
  end)
end)
