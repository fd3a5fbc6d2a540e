-- Handlers that wait without blocking: every request handler (and every
-- net connection listener) runs in a coroutine of co's pool, so it may
-- co.sleep, wait on a cosocket or read its body with req:body(), while the
-- server goes on serving others. Servers run in this process; clients are
-- real sockets over loopback.

local uv = require('uv')
local h = require('helper')
local http = require('http')
local net = require('net')
local co = require('co')
local ngx = require('ngx')

local serve, close_all = h.serve, h.close_servers

-- get_async(port, path, done): one GET on a new connection; done(status,
-- body) once the server closed it (Connection: close).
local function get_async(port, path, done)
  local c = uv.new_tcp()
  local data = ''
  c:connect('127.0.0.1', port, function(err)
    if err then c:close() return done(nil, err) end
    c:read_start(function(e, chunk)
      if chunk then
        data = data .. chunk
      else
        c:close()
        done(tonumber(data:match('^HTTP/1.1 (%d+)')),
          data:match('\r\n\r\n(.*)$'))
      end
    end)
    c:write('GET ' .. path .. ' HTTP/1.1\r\nHost: x\r\n' ..
      'Connection: close\r\n\r\n')
  end)
end

describe('a request handler', function()
  after_each(close_all)

  it('runs in a coroutine: 200 requests each sleeping 100 ms take ~0.1 s',
    function()
    local _, port = serve(function(req, res)
      co.sleep(100)
      res:finish('slept')
    end)
    local n, ok = 200, 0
    local t0 = uv.hrtime()
    for _ = 1, n do
      get_async(port, '/', function(status, body)
        if status == 200 and body == 'slept' then ok = ok + 1 end
      end)
    end
    assert.is_true(h.wait(function() return ok == n end, 5000),
      ok .. ' of ' .. n .. ' answered')
    local ms = (uv.hrtime() - t0) / 1e6
    assert.truthy(ms < 1500, ('took %d ms'):format(ms))
  end)

  it('waits on a cosocket while another request is served at once',
    function()
    -- A backend that answers a line 300 ms after it got one.
    local backend = net.createServer(function(sock)
      sock:on('data', function()
        setTimeout(function() sock:finish('pong\n') end, 300)
      end)
    end)
    local bready = false
    backend:listen(0, '127.0.0.1', function() bready = true end)
    assert.is_true(h.wait(function() return bready end, 2000))
    local bport = backend:address().port
    local _, port = serve(function(req, res)
      if req.url == '/slow' then
        local sock = ngx.socket.tcp()
        sock:settimeout(2000)
        assert(sock:connect('127.0.0.1', bport))
        assert(sock:send('ping\n'))
        local line, err = sock:receive('*l')
        sock:close()
        res:finish('backend said ' .. tostring(line or err))
      else
        res:finish('pong')
      end
    end)
    local slow_status, slow_body, fast_at
    local t0 = uv.hrtime()
    get_async(port, '/slow', function(status, body)
      slow_status, slow_body = status, body
    end)
    h.sleep(50)
    get_async(port, '/ping', function(status)
      if status == 200 then fast_at = (uv.hrtime() - t0) / 1e6 end
    end)
    assert.is_true(h.wait(function() return slow_status ~= nil end, 3000))
    assert.equal(200, slow_status)
    assert.equal('backend said pong', slow_body)
    assert.truthy(fast_at and fast_at < 250,
      'the second request waited: ' .. tostring(fast_at))
    backend:close()
  end)

  it('that raises after waiting answers 500, reports it, and the server ' ..
      'goes on', function()
    -- In a process of its own, so that the report on stderr (a traceback:
    -- an expected one) is checked here instead of printed amid the specs.
    local p = h.script([[
      local co = require('co')
      local http = require('http')
      local s = http.createServer(function(req, res)
        if req.url == '/boom' then
          co.sleep(10)
          error('after the wait')
        end
        res:finish('fine')
      end)
      s:listen(0, '127.0.0.1', function()
        local port = s:address().port
        http.get('http://127.0.0.1:' .. port .. '/boom', function(r1)
          r1:resume()
          http.get('http://127.0.0.1:' .. port .. '/', function(r2)
            r2:resume()
            print(r1.statusCode, r2.statusCode)
            s:close()
          end)
        end)
      end)
    ]])
    assert.equal(0, p.code, p.stderr)
    assert.equal('500\t200\n', p.stdout)
    assert.matches('^http: request handler error: [^\n]+:%d+: after the ' ..
      'wait\nstack traceback:\n', p.stderr)
  end)
end)

describe('req:body()', function()
  after_each(close_all)

  it('returns the whole body, from Content-Length or chunks', function()
    local _, port = serve(function(req, res)
      local body = assert(req:body())
      assert(req:body() == body, 'a second call gives the same string')
      res:finish(#body .. ':' .. body)
    end)
    local data = h.raw(port, 'POST / HTTP/1.1\r\nHost: x\r\n' ..
      'Content-Length: 11\r\nConnection: close\r\n\r\nhello world')
    assert.truthy(data:find('\r\n\r\n11:hello world$'), data)
    data = h.raw(port, {'POST / HTTP/1.1\r\nHost: x\r\n' ..
      'Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n' ..
      '5\r\nhello\r\n', '6\r\n world\r\n0\r\n\r\n'})
    assert.truthy(data:find('\r\n\r\n11:hello world$'), data)
    data = h.raw(port, 'GET / HTTP/1.1\r\nHost: x\r\n' ..
      'Connection: close\r\n\r\n')
    assert.truthy(data:find('\r\n\r\n0:$'), data)
  end)

  it('gets a body that came with its head at once, as data events too',
    function()
    -- Three pipelined requests in one write: each body is whole in the
    -- first read, so it goes to the handler with its head. req:body()
    -- returns it without waiting; a 'data' listener added after a wait
    -- still gets it, then 'end'; the last body is sent in two writes (whole
    -- or not in the first read, it comes out the same).
    local seen = {}
    local _, port = serve(function(req, res)
      if req.url == '/body' then
        seen[#seen + 1] = tostring(req.complete)
        res:finish('b:' .. assert(req:body()))
      elseif req.url == '/stream' then
        co.sleep(20)
        local got = {}
        req:on('data', function(d) got[#got + 1] = d end)
        req:on('end', function() res:finish('s:' .. table.concat(got)) end)
      else
        res:finish('r:' .. assert(req:body()))
      end
    end)
    local data = h.raw(port, {
      'POST /body HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc' ..
      'POST /stream HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\n\r\ndefg' ..
      'POST /rest HTTP/1.1\r\nHost: x\r\nContent-Length: 6\r\n' ..
      'Connection: close\r\n\r\nhij', 'klm'})
    assert.truthy(data:find('b:abc', 1, true), data)
    assert.truthy(data:find('s:defg', 1, true), data)
    assert.truthy(data:find('r:hijklm', 1, true), data)
    assert.truthy(data:find('b:abc.*s:defg.*r:hijklm'), data)
    assert.same({'true'}, seen)
  end)

  it('returns what came before it was called, and what comes after',
    function()
    local _, port = serve(function(req, res)
      co.sleep(50)            -- the first piece waits in the stream
      res:finish(assert(req:body()))
    end)
    local c = uv.new_tcp()
    local data = ''
    c:connect('127.0.0.1', port, function()
      c:read_start(function(_, chunk) if chunk then data = data .. chunk end end)
      c:write('POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n' ..
        'Connection: close\r\n\r\nhello')
      setTimeout(function() c:write('world') end, 100)
    end)
    assert.is_true(h.wait(function() return data:find('helloworld$') end,
      2000), data)
    c:close()
  end)

  it('past its limit gives nil, an error, and the server answers 413',
    function()
    local got_err
    local _, port = serve(function(req, res)
      local body, err = req:body(100)
      got_err = err
      if body then res:finish('took ' .. #body) end
    end)
    local data = h.raw(port, 'POST / HTTP/1.1\r\nHost: x\r\n' ..
      'Content-Length: 1000\r\n\r\n' .. ('x'):rep(1000))
    assert.truthy(data:find('^HTTP/1.1 413 '), data)
    assert.truthy(data:lower():find('connection: close', 1, true), data)
    assert.equal('request body too large', got_err)
    data = h.raw(port, 'POST / HTTP/1.1\r\nHost: x\r\n' ..
      'Content-Length: 100\r\nConnection: close\r\n\r\n' .. ('x'):rep(100))
    assert.truthy(data:find('took 100$'), data)
  end)

  it('gives nil, aborted when the client goes away', function()
    local got = {}
    local _, port = serve(function(req, res)
      got[1], got[2] = req:body()
    end)
    local c = uv.new_tcp()
    c:connect('127.0.0.1', port, function()
      c:write('POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 50\r\n\r\nab')
      setTimeout(function() c:close() end, 50)
    end)
    assert.is_true(h.wait(function() return got[2] ~= nil end, 2000))
    assert.is_nil(got[1])
    assert.equal('aborted', got[2])
  end)

  it('outside the request\'s coroutine says how to fix it', function()
    local msg
    local _, port = serve(function(req, res)
      setTimeout(function()
        local ok, err = pcall(req.body, req)
        msg = not ok and tostring(err) or 'no error'
        res:finish('x')
      end, 1)
    end)
    h.get(port, '/')
    assert.truthy(msg and msg:find('not inside a coroutine', 1, true), msg)
  end)
end)

describe('a net connection listener', function()
  it('runs in a coroutine and may wait', function()
    local s = net.createServer(function(sock)
      co.sleep(20)
      sock:finish('waited\n')
    end)
    local ready = false
    s:listen(0, '127.0.0.1', function() ready = true end)
    assert.is_true(h.wait(function() return ready end, 2000))
    local data = h.raw(s:address().port, '')
    assert.equal('waited\n', data)
    s:close()
  end)
end)
