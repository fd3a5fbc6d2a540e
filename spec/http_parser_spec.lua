-- The C response parser (runtime/http/response.c) the http client and
-- http.inject read responses with, the header rule (_http.header_error),
-- and the server's connection as a socket (setTimeout, ref, unref).

local uv = require('uv')
local h = require('helper')
local http = require('http')
local C = require('_http')

-- A parser that records what it is told, in order.
local function recorder(opts)
  opts = opts or {}
  local log = {}
  local p = C.response_parser({
    head = function(status, reason, major, minor, headers, raw, keep, up)
      log[#log + 1] = {'head', status, reason, major .. '.' .. minor,
        headers, raw, keep, up}
      return opts.head and opts.head(status)
    end,
    body = function(chunk) log[#log + 1] = {'body', chunk} end,
    chunk = opts.chunks and function() log[#log + 1] = {'chunk'} end,
    complete = function(trailers, raw)
      log[#log + 1] = {'complete', trailers, raw}
      return opts.stop
    end,
  }, opts.max)
  return p, log
end

-- The kinds of what the parser reported, as one string.
local function kinds(log)
  local out = {}
  for i, e in ipairs(log) do out[i] = e[1] end
  return table.concat(out, ' ')
end

-- The body pieces, joined.
local function body(log)
  local out = {}
  for _, e in ipairs(log) do
    if e[1] == 'body' then out[#out + 1] = e[2] end
  end
  return table.concat(out)
end

describe('the response parser', function()
  it('reads the status line, headers and a Content-Length body', function()
    local p, log = recorder()
    local raw = 'HTTP/1.1 201 Made It\r\nContent-Length: 5\r\n'
      .. 'X-A: 1\r\n\r\nhello'
    assert.same({#raw, false, false}, {p:execute(raw)})
    assert.equal('head body complete', kinds(log))
    local head = log[1]
    assert.equal(201, head[2])
    assert.equal('Made It', head[3])
    assert.equal('1.1', head[4])
    assert.same({['content-length'] = '5', ['x-a'] = '1'}, head[5])
    assert.same({'Content-Length', '5', 'X-A', '1'}, head[6])
    assert.is_true(head[7])
    assert.is_false(head[8])
    assert.equal('hello', body(log))
  end)

  it('merges repeated headers by the rules requests use', function()
    local p, log = recorder()
    p:execute('HTTP/1.1 200 OK\r\nX-Dup: a\r\nX-Dup: b\r\n'
      .. 'Content-Type: text/html\r\nContent-Type: text/plain\r\n'
      .. 'Set-Cookie: a=1\r\nSet-Cookie: b=2\r\nCookie: c=1\r\n'
      .. 'Cookie: d=2\r\nContent-Length: 0\r\n\r\n')
    local headers = log[1][5]
    assert.equal('a, b', headers['x-dup'])
    assert.equal('text/html', headers['content-type'])
    assert.same({'a=1', 'b=2'}, headers['set-cookie'])
    assert.equal('c=1; d=2', headers.cookie)
    assert.equal(18, #log[1][6])
  end)

  it('reads responses one after the other, in any pieces', function()
    local raw = 'HTTP/1.1 100 Continue\r\n\r\n'
      .. 'HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nabc'
      .. 'HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n'
      .. '2\r\nde\r\n1;x=y\r\nf\r\n0\r\nX-T: t\r\n\r\n'
      .. 'HTTP/1.1 204 No Content\r\nContent-Length: 9\r\n\r\n'
      .. 'HTTP/1.1 304 Not Modified\r\nContent-Length: 9\r\n\r\n'
    for _, step in ipairs({#raw, 7, 1}) do
      local p, log = recorder({chunks = true})
      for i = 1, #raw, step do
        local piece = raw:sub(i, i + step - 1)
        assert.equal(#piece, (p:execute(piece)))
      end
      local heads, completes = {}, {}
      for _, e in ipairs(log) do
        if e[1] == 'head' then heads[#heads + 1] = e[2] end
        if e[1] == 'complete' then completes[#completes + 1] = e end
      end
      assert.same({100, 200, 200, 204, 304}, heads)
      assert.equal(5, #completes)
      assert.equal('abcdef', body(log))
      assert.same({['x-t'] = 't'}, completes[3][2])
      assert.same({'X-T', 't'}, completes[3][3])
      assert.is_nil(completes[2][2])
    end
  end)

  it('reports the end of each chunk when asked', function()
    local p, log = recorder({chunks = true})
    p:execute('HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n'
      .. '2\r\nab\r\n3\r\ncde\r\n0\r\n\r\n')
    local seen = {}
    for _, e in ipairs(log) do
      if e[1] ~= 'head' then seen[#seen + 1] = e[2] or e[1] end
    end
    assert.same({'ab', 'chunk', 'cde', 'chunk', 'chunk', 'complete'}, seen)
  end)

  it('reads no body after a head its head callback says is HEAD\'s',
      function()
    local p, log = recorder({head = function() return C.SKIP_BODY end})
    local raw = 'HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n'
    p:execute(raw .. raw)
    assert.equal('head complete head complete', kinds(log))
  end)

  it('stops after a message whose complete callback says so', function()
    -- What a keep-alive client does: anything after its response is not
    -- its response's (execute says how much was the response's).
    local p, log = recorder({stop = true})
    local raw = 'HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok'
    assert.same({#raw, false, true}, {p:execute(raw .. raw)})
    assert.equal('head body complete', kinds(log))
    -- Without stray bytes, all of it was the response.
    p, log = recorder({stop = true})
    assert.same({#raw, false, true}, {p:execute(raw)})
    -- A body framed by the connection's end: finish completes it.
    p, log = recorder({stop = true})
    p:execute('HTTP/1.0 200 OK\r\n\r\nall')
    assert.is_true(p:finish())
    assert.equal('head body complete', kinds(log))
  end)

  it('reads a body to the end of the connection, and says when that is '
      .. 'too soon', function()
    local p, log = recorder()
    p:execute('HTTP/1.0 200 OK\r\n\r\nfirst ')
    p:execute('second')
    assert.equal('head body body', kinds(log))
    assert.is_true(p:finish())
    assert.equal('first second', body(log))
    assert.equal('complete', log[#log][1])

    p, log = recorder()
    p:execute('HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc')
    local ok, code = p:finish()
    assert.is_nil(ok)
    assert.equal('HPE_INVALID_EOF_STATE', code)
    assert.equal('head body', kinds(log))
  end)

  it('stops at an upgrade and says where the other protocol begins',
      function()
    local p, log = recorder({head = function(status)
      if status == 101 then return C.UPGRADE end
    end})
    local head = 'HTTP/1.1 101 Switching Protocols\r\nUpgrade: x\r\n'
      .. 'Connection: upgrade\r\n\r\n'
    assert.same({#head, true, false}, {p:execute(head .. 'not http')})
    -- The 101 itself is a whole message.
    assert.equal('head complete', kinds(log))
    assert.is_true(log[1][8])
  end)

  it('refuses a malformed response with llhttp\'s code and reason',
      function()
    for raw, code in pairs({
        ['SPDY/9 200 OK\r\n\r\n'] = 'HPE_INVALID_CONSTANT',
        ['HTTP/1.1 200 OK\r\nContent-Length: 1x\r\n\r\n'] =
          'HPE_INVALID_CONTENT_LENGTH',
        ['HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n'] =
          'HPE_INVALID_CHUNK_SIZE'}) do
      local p = recorder()
      local n, got, reason, used = p:execute(raw)
      assert.is_nil(n)
      assert.equal(code, got)
      assert.equal('string', type(reason))
      assert.is_true(used >= 0 and used <= #raw)
    end
    local p = recorder({max = 64})
    local n, code = p:execute('HTTP/1.1 200 OK\r\nX-Big: '
      .. ('x'):rep(100) .. '\r\n\r\n')
    assert.is_nil(n)
    assert.equal('HPE_HEADER_OVERFLOW', code)
  end)

  it('raises a callback\'s error once llhttp has returned', function()
    local boom = {}
    local p = C.response_parser({
      head = function() error(boom) end,
    })
    local ok, err = pcall(p.execute, p, 'HTTP/1.1 200 OK\r\n\r\n')
    assert.is_false(ok)
    assert.equal(boom, err)
    p = C.response_parser({body = function() error('no body here') end})
    ok, err = pcall(p.execute, p,
      'HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nab')
    assert.is_false(ok)
    assert.truthy(tostring(err):find('no body here', 1, true))
    -- Afterwards the parser stays stopped; it is not run again.
    assert.is_nil((p:execute('more')))
  end)

  it('calls back on the state that runs it, a coroutine too', function()
    local seen
    local p = C.response_parser({
      head = function() seen = coroutine.running() end,
    })
    local co = coroutine.create(function()
      p:execute('HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n')
      return coroutine.running()
    end)
    local ok, me = coroutine.resume(co)
    assert.is_true(ok)
    assert.equal(me, seen)
  end)
end)

describe('the header rule', function()
  it('is Node\'s: token names, no controls in values', function()
    assert.is_nil(C.header_error('X-Ok', 'a\tb'))
    assert.is_nil(C.header_error('X-Ok', {1, true, 'é'}))
    assert.equal('ERR_INVALID_HTTP_TOKEN', (C.header_error('Bad Name', 'v')))
    assert.equal('ERR_INVALID_HTTP_TOKEN', (C.header_error(nil, 'v')))
    assert.equal('ERR_HTTP_INVALID_HEADER_VALUE', (C.header_error('X', nil)))
    assert.equal('ERR_INVALID_CHAR', (C.header_error('X', 'a\1b')))
    local code, msg = C.header_error('X', {'ok', 'a\r\nb'})
    assert.equal('ERR_INVALID_CHAR', code)
    assert.equal('Invalid character in header content ["X"]', msg)
    assert.is_true(C.is_token('GET'))
    assert.is_false(C.is_token('G T'))
  end)

  it('holds for the client and for inject too', function()
    local ok, err = pcall(http.request, {host = '127.0.0.1',
      headers = {['X-Bad'] = 'a\1b'}})
    assert.is_false(ok)
    assert.equal('ERR_INVALID_CHAR', err.code)
    ok, err = pcall(http.inject, function(_, res) res:finish() end,
      {headers = {['Bad Name'] = 'v'}})
    assert.is_false(ok)
    assert.equal('ERR_INVALID_HTTP_TOKEN', err.code)
  end)
end)

describe('http.inject over the response parser', function()
  it('returns once the response is complete, on a kept-alive connection',
      function()
    local r = http.inject(function(req, res)
      res:setHeader('Set-Cookie', {'a=1', 'b=2'})
      res:finish('kept')
    end, {headers = {Connection = 'keep-alive'}, timeout = 2000})
    assert.equal(200, r.statusCode)
    assert.equal('kept', r.body)
    assert.equal('keep-alive', r.headers.connection)
    assert.same({'a=1', 'b=2'}, r.headers['set-cookie'])
  end)

  it('reads past a 100 Continue', function()
    local r = http.inject(function(req, res)
      local parts = {}
      req:on('data', function(d) parts[#parts + 1] = d end)
      req:on('end', function() res:finish(table.concat(parts)) end)
    end, {method = 'POST', body = 'sent',
      headers = {Expect = '100-continue'}})
    assert.equal(200, r.statusCode)
    assert.equal('sent', r.body)
  end)
end)

describe('the http server\'s sockets', function()
  after_each(h.close_servers)
  local serve = h.serve

  it('emit timeout after setTimeout\'s ms without traffic, once a spell',
      function()
    local t0, events, sock = uv.now(), {}, nil
    local _, port = serve(function(req, res)
      if not sock then
        sock = req.socket
        assert.equal(sock, sock:setTimeout(60, function()
          events[#events + 1] = uv.now() - t0
        end))
      end
      res:finish('ok')
    end)
    local c = uv.new_tcp()
    c:connect('127.0.0.1', port, function()
      c:read_start(function() end)
      c:write('GET / HTTP/1.1\r\nHost: x\r\n\r\n')
    end)
    assert.is_true(h.wait(function() return #events == 1 end, 2000))
    assert.is_true(events[1] >= 55, tostring(events[1]))
    -- (uv.now() has ms granularity; the clock starts at setTimeout.)
    -- Once per idle spell: no second one without traffic in between.
    h.sleep(150)
    assert.equal(1, #events)
    -- Traffic restarts the clock; 0 turns it off.
    c:write('GET / HTTP/1.1\r\nHost: x\r\n\r\n')
    sock:on('timeout', function() events[#events + 1] = 'again' end)
    assert.is_true(h.wait(function() return #events == 2 end, 2000))
    sock:setTimeout(0)
    c:write('GET / HTTP/1.1\r\nHost: x\r\n\r\n')
    h.sleep(150)
    assert.equal(2, #events)
    assert.equal(sock, sock:ref())
    assert.equal(sock, sock:unref())
    sock:ref()
    c:close()
  end)

  it('server.setTimeout: idle sockets emit on the server, or are destroyed '
      .. 'when nothing listens (Node)', function()
    local srv, port = serve(function(_, res) res:finish('ok') end)
    assert.equal(0, srv.timeout)
    local timed = {}
    assert.equal(srv, srv:setTimeout(60, function(sock)
      timed[#timed + 1] = sock.remotePort
      sock:destroy()
    end))
    assert.equal(60, srv.timeout)
    local c = uv.new_tcp()
    local closed = false
    c:connect('127.0.0.1', port, function()
      c:read_start(function(err, d) if not d then closed = true end end)
    end)
    assert.is_true(h.wait(function() return #timed == 1 end, 2000))
    assert.is_true(h.wait(function() return closed end, 2000))
    c:close()
    -- Nothing listening: the socket is destroyed, as Node's.
    srv:removeAllListeners('timeout')
    closed = false
    local c2 = uv.new_tcp()
    c2:connect('127.0.0.1', port, function()
      c2:read_start(function(err, d) if not d then closed = true end end)
      c2:write('GET / HTTP/1.1\r\nHost: x\r\n\r\n')
    end)
    assert.is_true(h.wait(function() return closed end, 2000))
    c2:close()
    -- 0 turns it off for new connections.
    srv:setTimeout(0)
    closed = false
    local c3 = uv.new_tcp()
    c3:connect('127.0.0.1', port, function()
      c3:read_start(function(err, d) if not d then closed = true end end)
    end)
    h.sleep(200)
    assert.is_false(closed)
    c3:close()
    local ok, err = pcall(srv.setTimeout, srv, -1)
    assert.is_false(ok)
    assert.equal('ERR_OUT_OF_RANGE', err.code)
  end)

  it('req:setTimeout and res:setTimeout are the socket\'s', function()
    local fired = false
    local _, port = serve(function(req, res)
      req:setTimeout(30, function()
        fired = true
        res:finish('late')
      end)
    end)
    local status, b = h.get(port, '/')
    assert.equal(200, status)
    assert.equal('late', b)
    assert.is_true(fired)
  end)
end)
