-- Unix domain sockets (Node's pipes): net and http servers listening on a
-- path, clients connecting to one (net.connect(path), http.request's
-- socketPath, cosockets' "unix:/path"), the socket file's life (EADDRINUSE
-- on an existing one, removed on close), and a cluster's workers sharing
-- one path. Every socket lives in a temporary directory removed at the end.

local h = require('helper')
local uv = require('uv')
local net = require('net')
local http = require('http')
local co = require('co')
local ngx = require('ngx')
local unix = require('_unix')
local tcp = require('_tcp')

local dir

local function exists(path)
  return uv.fs_stat(path) ~= nil
end

-- sock(name) -> a path in the temporary directory (nothing there yet).
local function sock(name)
  return dir .. '/' .. name
end

-- listening(server, ...) -> server once 'listening' came for listen(...).
local function listening(server, ...)
  local ready = false
  server:once('listening', function() ready = true end)
  server:listen(...)
  assert(h.wait(function() return ready end, 2000), 'no listening')
  return server
end

local function close_server(server)
  local closed = false
  server:close(function() closed = true end)
  assert(h.wait(function() return closed end, 2000), 'server not closed')
end

-- roundtrip(path, raw) -> everything a net client read from path after
-- writing raw, until the server closed.
local function roundtrip(path, raw)
  local got, closed, err = '', false, nil
  local c = net.connect(path)
  c:on('connect', function() c:write(raw) end)
  c:on('data', function(d) got = got .. d end)
  c:on('error', function(e) err = e end)
  c:on('close', function() closed = true end)
  assert(h.wait(function() return closed end, 3000), 'no close')
  assert.is_nil(err)
  return got
end

local function pack(...) return {n = select('#', ...), ...} end

-- go(fn) -> fn's results; fn runs in a coroutine while the loop runs.
local function go(fn)
  local out
  co.spawn(function() out = pack(pcall(fn)) end)
  assert(h.wait(function() return out ~= nil end, 5000),
    'the coroutine did not end')
  if not out[1] then error(out[2], 0) end
  return unpack(out, 2, out.n)
end

describe('unix sockets', function()
  setup(function()
    dir = assert(uv.fs_mkdtemp((os.getenv('TMPDIR') or '/tmp') ..
      '/lc-unix-XXXXXX'))
  end)
  teardown(function()
    local req = uv.fs_scandir(dir)
    while req do
      local name = uv.fs_scandir_next(req)
      if not name then break end
      os.remove(dir .. '/' .. name)
    end
    uv.fs_rmdir(dir)
  end)
  after_each(h.cleanup)

  it('echoes over a path, with address() the path and no addresses',
      function()
    local path = sock('echo.sock')
    local accepted
    local srv = net.createServer(function(s)
      accepted = s
      s:on('data', function(d) s:write(d) end)
    end)
    assert.is_nil(srv:address())
    listening(srv, path)
    assert.equal(path, srv:address())
    assert.is_true(exists(path))

    local log, got = {}, ''
    local c
    c = net.connect(path, function() log[#log + 1] = 'connect' end)
    assert.is_true(c.connecting)
    c:on('data', function(d)
      got = got .. d
      if got == 'hello unix' then c:finish() end
    end)
    c:on('end', function() log[#log + 1] = 'end' end)
    c:on('close', function(had) log[#log + 1] = 'close ' .. tostring(had) end)
    c:write('hello ')
    c:write('unix')
    assert.is_true(h.wait(function() return #log == 3 end))
    assert.same({'connect', 'end', 'close false'}, log)
    assert.equal('hello unix', got)
    assert.equal(10, c.bytesRead)
    -- Node gives a pipe's sockets no addresses: undefined, and {}.
    for _, s in ipairs({c, accepted}) do
      assert.is_nil(s.remoteAddress)
      assert.is_nil(s.remotePort)
      assert.is_nil(s.remoteFamily)
      assert.is_nil(s.localAddress)
      assert.is_nil(s.localPort)
    end
    assert.same({}, accepted:address())
    -- TCP options do nothing on a pipe (as Node), and do not raise.
    accepted:setNoDelay(true)
    accepted:setKeepAlive(true, 1000)

    close_server(srv)
    assert.is_nil(srv:address())
    assert.is_false(exists(path))
  end)

  it('takes listen({path}) and createConnection({path}), backlog and cb',
      function()
    local path = sock('forms.sock')
    local forms = {
      function(s, cb) s:listen(path, cb) end,
      function(s, cb) s:listen(path, 16, cb) end,
      function(s, cb) s:listen({path = path}, cb) end,
      function(s, cb) s:listen({path = path, backlog = 8}, cb) end,
    }
    for i, form in ipairs(forms) do
      local srv = net.createServer(function(s)
        s:finish('form ' .. i)
      end)
      local done = false
      form(srv, function() done = true end)
      assert.is_true(h.wait(function() return done end), 'form ' .. i)
      assert.equal(path, srv:address())
      local got, closed = '', false
      local c = net.createConnection({path = path})
      c:on('data', function(d) got = got .. d end)
      c:on('close', function() closed = true end)
      assert.is_true(h.wait(function() return closed end), 'form ' .. i)
      assert.equal('form ' .. i, got)
      close_server(srv)
      assert.is_false(exists(path), 'form ' .. i)
    end
    -- A path that is not a string that is not a number.
    local bad = net.createServer()
    local ok, err = pcall(bad.listen, bad, {path = 5})
    assert.is_false(ok)
    assert.equal('ERR_INVALID_ARG_VALUE', err.code)
    ok, err = pcall(net.connect, {path = 5})
    assert.is_false(ok)
    assert.equal('ERR_INVALID_ARG_TYPE', err.code)
    -- A port wins over a path, as in Node.
    local srv = listening(net.createServer(), {port = 0, host = '127.0.0.1',
      path = path})
    assert.equal('table', type(srv:address()))
    assert.is_false(exists(path))
    close_server(srv)
  end)

  it('fails with EADDRINUSE on an existing file and leaves it', function()
    -- A stale socket file: bound, never removed.
    local path = sock('stale.sock')
    local fd = assert(unix.listen_fd(path, 1))
    tcp.close(fd)
    assert.is_true(exists(path))
    local plain = sock('plain')
    local f = assert(io.open(plain, 'w'))
    f:write('x')
    f:close()
    for _, p in ipairs({path, plain}) do
      for _, srv in ipairs({net.createServer(), http.createServer()}) do
        local err
        srv:on('error', function(e) err = e end)
        srv:listen(p)
        assert.is_true(h.wait(function() return err ~= nil end))
        assert.equal('EADDRINUSE', err.code)
        assert.equal('listen', err.syscall)
        assert.equal(p, err.address)
        assert.equal('listen EADDRINUSE: address already in use ' .. p,
          err.message)
        assert.is_false(srv.listening)
        assert.is_true(exists(p))
      end
    end
    os.remove(path)
    os.remove(plain)
    -- A path that cannot be a socket's name.
    local srv = net.createServer()
    local err
    srv:on('error', function(e) err = e end)
    srv:listen(sock(('x'):rep(120)))
    assert.is_true(h.wait(function() return err ~= nil end))
    assert.equal('ENAMETOOLONG', err.code)
  end)

  it('reports a connection to a missing path as ENOENT', function()
    local path = sock('missing.sock')
    local err, closed
    local c = net.connect(path)
    c:on('error', function(e) err = e end)
    c:on('close', function(had) closed = had end)
    assert.is_true(h.wait(function() return closed ~= nil end))
    assert.is_true(closed)
    assert.equal('ENOENT', err.code)
    assert.equal('connect', err.syscall)
    assert.equal(path, err.address)
  end)

  it('creates the file as the umask says; readableAll, writableAll open it',
      function()
    local path = sock('mode.sock')
    local srv = listening(net.createServer(), {path = path,
      readableAll = true, writableAll = true})
    local mode = uv.fs_stat(path).mode
    assert.equal(tonumber('666', 8), bit.band(mode, tonumber('666', 8)))
    close_server(srv)
    assert.is_false(exists(path))
  end)

  it('serves http on a path: raw HTTP, http.request socketPath', function()
    local path = sock('http.sock')
    local seen = {}
    local srv = http.createServer(function(req, res)
      seen[#seen + 1] = {req.socket.remoteAddress, req.headers.host}
      res:setHeader('Content-Type', 'text/plain')
      res:finish('hi ' .. req.method .. ' ' .. req.url)
    end)
    listening(srv, path)
    assert.equal(path, srv:address())

    local raw = roundtrip(path,
      'GET /raw HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n')
    assert.truthy(raw:find('^HTTP/1%.1 200 OK\r\n'))
    assert.truthy(raw:find('\r\n\r\nhi GET /raw$'))

    -- Keep-alive: two requests on one connection.
    local two = roundtrip(path, 'GET /a HTTP/1.1\r\nHost: x\r\n\r\n' ..
      'GET /b HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n')
    assert.truthy(two:find('hi GET /a', 1, true))
    assert.truthy(two:find('hi GET /b', 1, true))

    local status, body, done
    local req = http.request({socketPath = path, path = '/client',
      method = 'POST'}, function(res)
      status = res.statusCode
      local b = ''
      res:on('data', function(d) b = b .. d end)
      res:on('end', function() body, done = b, true end)
    end)
    req:finish('x')
    assert.is_true(h.wait(function() return done end))
    assert.equal(200, status)
    assert.equal('hi POST /client', body)
    assert.is_nil(seen[#seen][1])
    assert.equal('localhost', seen[#seen][2])

    local got
    http.get({socketPath = path, path = '/get', host = 'example.test'},
      function(res)
        local b = ''
        res:on('data', function(d) b = b .. d end)
        res:on('end', function() got = b end)
      end)
    assert.is_true(h.wait(function() return got ~= nil end))
    assert.equal('hi GET /get', got)
    assert.equal('example.test', seen[#seen][2])

    close_server(srv)
    assert.is_nil(srv:address())
    assert.is_false(exists(path))

    -- A refused socketPath is the request's error.
    local err
    local r = http.request({socketPath = path}, function() end)
    r:on('error', function(e) err = e end)
    r:finish()
    assert.is_true(h.wait(function() return err ~= nil end))
    assert.equal('ENOENT', err.code)
  end)

  it('reaches net and http servers on a path from a cosocket', function()
    local path = sock('co.sock')
    local srv = listening(net.createServer(function(s)
      s:on('data', function(d) s:write('echo ' .. d) end)
    end), path)
    local hpath = sock('co-http.sock')
    local hsrv = listening(http.createServer(function(req, res)
      res:finish('cosocket ' .. req.url)
    end), hpath)
    local line, status, body = go(function()
      local s = ngx.socket.tcp()
      assert(s:connect('unix:' .. path))
      assert(s:send('ping\n'))
      local l = assert(s:receive())
      s:close()
      local hs = ngx.socket.tcp()
      assert(hs:connect('unix:' .. hpath))
      assert(hs:send('GET /co HTTP/1.1\r\nHost: x\r\n\r\n'))
      local st = assert(hs:receive())
      local len
      while true do
        local hl = assert(hs:receive())
        if hl == '' then break end
        len = len or tonumber(hl:lower():match('^content%-length:%s*(%d+)'))
      end
      local b = assert(hs:receive(len))
      -- Back to the pool: the server keeps the connection alive.
      assert(hs:setkeepalive())
      return l, st, b
    end)
    assert.equal('echo ping', line)
    assert.equal('HTTP/1.1 200 OK', status)
    assert.equal('cosocket /co', body)
    close_server(srv)
    close_server(hsrv)
    assert.is_false(exists(path))
    assert.is_false(exists(hpath))
  end)

  -- A cluster of two workers on one path: each answers with its id after
  -- keeping its loop busy for 30 ms, so that with the socket shared (the
  -- kernel wakes whichever worker waits) the other one takes the
  -- connections that come meanwhile. Returns the ids counted over n
  -- connections and whether the primary removed the file when it stopped.
  local function cluster_on_path(sched, n)
    local path = sock('cluster-' .. sched .. '.sock')
    local script = h.tmpfile(([[
      local cluster = require('cluster')
      local http = require('http')
      local uv = require('uv')
      local path = %q
      if cluster.isPrimary then
        local n = 0
        cluster.on('listening', function(w, a)
          print('listening', w.id, a.address, a.port, a.addressType)
          n = n + 1
          if n == 2 then print('ready') end
        end)
        cluster.fork()
        cluster.fork()
      else
        http.createServer(function(req, res)
          local t = uv.hrtime() + 30e6
          while uv.hrtime() < t do end
          res:finish('worker ' .. cluster.worker.id)
        end):listen(path)
      end
    ]]):format(path))
    local p = h.spawn({script}, {env = {LUACLUSTER_SCHED = sched}})
    assert.is_true(p:wait_output('ready', 10000), p.stderr)
    assert.is_true(exists(path))
    local ids, count, done = {}, 0, 0
    local timers = {}
    for i = 1, n do
      local t = uv.new_timer()
      timers[i] = t
      t:start(i * 10, 0, function()
        t:close()
        local buf = ''
        local c = net.connect(path)
        c:on('connect', function()
          c:write('GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n')
        end)
        c:on('data', function(d) buf = buf .. d end)
        c:on('error', function() end)
        c:on('close', function()
          local id = buf:match('worker (%d+)')
          if id then
            if not ids[id] then count = count + 1 end
            ids[id] = (ids[id] or 0) + 1
          end
          done = done + 1
        end)
      end)
    end
    assert.is_true(h.wait(function() return done == n end, 15000),
      'answers: ' .. done)
    local lines = h.lines(p.stdout)
    p:stop()
    os.remove(script)
    return ids, count, lines, exists(path), p
  end

  for _, sched in ipairs({'reuseport', 'none', 'rr'}) do
    it('lets two workers serve one path (' .. sched .. ')', function()
      local ids, count, lines, left, p = cluster_on_path(sched, 20)
      assert.equal(2, count, 'ids seen: ' .. require('cjson').encode(ids))
      local total = 0
      for _, k in pairs(ids) do total = total + k end
      assert.equal(20, total)
      -- Node's listening address for a pipe: the path, port and
      -- addressType -1.
      local path = sock('cluster-' .. sched .. '.sock')
      assert.same({'listening', path, '-1', '-1'},
        {lines[1]:match('^(%a+)\t%d\t(.-)\t(%S+)\t(%S+)$')})
      -- The primary bound it; it removed it when it stopped.
      assert.is_false(left)
      assert.equal(0, p.code)
    end)
  end

  it('fails a worker\'s listen on an existing file with EADDRINUSE',
      function()
    local path = sock('taken')
    local f = assert(io.open(path, 'w'))
    f:close()
    local r = h.script(([[
      local cluster = require('cluster')
      local net = require('net')
      if cluster.isPrimary then
        cluster.on('exit', function() end)
        cluster.fork()
      else
        local srv = net.createServer()
        srv:on('error', function(e)
          print(e.code, e.syscall, e.address, e.message)
          cluster.worker:disconnect()
        end)
        srv:listen(%q)
      end
    ]]):format(path))
    assert.equal(0, r.code, r.stderr)
    assert.same({'EADDRINUSE\tbind\t' .. path ..
      '\tbind EADDRINUSE ' .. path},
      h.lines(r.stdout))
    assert.is_true(exists(path))
    os.remove(path)
  end)
end)
