-- http.client: http.request / http.get against a raw TCP server written
-- here with luv, so every byte of the response is ours to choose.
local h = require('helper')
local uv = require('uv')
local client = require('http.client')

local track, open_tcp = h.track_tcp, h.open_tcp
local globalAgent = require('http').globalAgent

-- Parses one request from buf: {method=, path=, version=, headers=
-- (lower-case), head=, body=} once its head and body are complete.
local function parse_request(buf)
  local e = buf:find('\r\n\r\n', 1, true)
  if not e then return nil end
  local head, rest = buf:sub(1, e - 1), buf:sub(e + 4)
  local r = {head = head, headers = {}}
  local lines = {}
  for line in (head .. '\r\n'):gmatch('(.-)\r\n') do lines[#lines + 1] = line end
  r.method, r.path, r.version = lines[1]:match('^(%S+) (%S+) HTTP/(%S+)$')
  for i = 2, #lines do
    local k, v = lines[i]:match('^([^:]+):%s*(.*)$')
    r.headers[k:lower()] = v
  end
  if r.headers['transfer-encoding'] == 'chunked' then
    local body, pos = {}, 1
    while true do
      local s, le = rest:find('\r\n', pos, true)
      if not s then return nil end
      local size = tonumber(rest:sub(pos, s - 1):match('^%x+'), 16)
      if size == 0 then
        if not rest:find('\r\n', le + 1, true) then return nil end
        break
      end
      if #rest < le + size + 2 then return nil end
      body[#body + 1] = rest:sub(le + 1, le + size)
      pos = le + size + 3
    end
    r.body = table.concat(body)
    r.chunked = true
  else
    local n = tonumber(r.headers['content-length'] or 0)
    if #rest < n then return nil end
    r.body = rest:sub(1, n)
  end
  return r
end

-- A raw HTTP server on a free port. respond(req) returns what to send:
-- a string (sent, then the connection is closed), a table of pieces (sent
-- a few milliseconds apart, then closed), or nil (nothing is sent; the
-- connection stays open). With keep = true the connection is not closed
-- after sending.
local function raw_server(respond, keep)
  local st = {requests = {}, conns = {}}
  local srv = uv.new_tcp()
  assert(srv:bind('127.0.0.1', 0))
  st.port = srv:getsockname().port
  assert(srv:listen(64, function()
    local c = uv.new_tcp()
    srv:accept(c)
    st.conns[#st.conns + 1] = c
    local buf, answered = '', false
    local function close()
      if not c:is_closing() then c:close() end
    end
    c:read_start(function(err, data)
      if err or not data then return close() end
      if answered then return end
      buf = buf .. data
      local r = parse_request(buf)
      if not r then return end
      answered = true
      st.requests[#st.requests + 1] = r
      local out = respond(r)
      if out == nil then return end
      if type(out) == 'string' then out = {out} end
      local i = 0
      local t = uv.new_timer()
      t:start(0, 3, function()
        i = i + 1
        if c:is_closing() then
          t:close()
        elseif out[i] then
          c:write(out[i])
        else
          t:close()
          if not keep then c:shutdown(close) end
        end
      end)
    end)
  end))
  function st.close()
    srv:close()
    for _, c in ipairs(st.conns) do
      if not c:is_closing() then c:close() end
    end
  end
  return st
end

-- Runs a request to the end; returns a record of what happened.
-- start(cb) makes the request with cb as its response callback.
local function run(start, timeout)
  local rec = {log = {}, body = '', chunks = 0}
  local function log(s) rec.log[#rec.log + 1] = s end
  local req = start(function(res)
    log('response')
    rec.res = res
    res:on('data', function(d)
      rec.body = rec.body .. d
      rec.chunks = rec.chunks + 1
    end)
    res:on('end', function() log('end') end)
    res:on('aborted', function() log('aborted') end)
    res:on('error', function(e) rec.res_err = e log('res error') end)
    res:on('close', function() log('res close') end)
  end)
  rec.req = req
  req:on('error', function(e) rec.err = e log('error') end)
  req:on('timeout', function() log('timeout') end)
  req:on('close', function() rec.closed = true log('close') end)
  assert(h.wait(function()
    return rec.closed and (not rec.res or rec.log[#rec.log] == 'res close')
  end, timeout or 3000), 'the request did not finish: '
    .. table.concat(rec.log, ' '))
  return rec
end

describe('http client', function()
  before_each(track)
  after_each(function()
    -- The global agent keeps connections alive (as Node 20's): close them.
    globalAgent:destroy()
    h.untrack_tcp()
    assert.is_true(h.wait(function() return open_tcp() == 0 end, 2000),
      'a TCP handle was left open')
  end)

  it('reads a Content-Length body, and stops there', function()
    -- The server keeps the connection open: the length ends the body.
    local srv = raw_server(function()
      return 'HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n'
        .. 'Content-Length: 11\r\nX-Custom: yes\r\n\r\nhello world'
    end, true)
    local rec = run(function(cb)
      return client.get({host = '127.0.0.1', port = srv.port,
        path = '/some/path?q=1', headers = {['X-Test'] = 'abc'}}, cb)
    end)
    assert.same({'response', 'end', 'close', 'res close'}, rec.log)
    local res = rec.res
    assert.equal(200, res.statusCode)
    assert.equal('OK', res.statusMessage)
    assert.equal('1.1', res.httpVersion)
    assert.equal(1, res.httpVersionMajor)
    assert.equal(1, res.httpVersionMinor)
    assert.same({['content-type'] = 'text/plain', ['content-length'] = '11',
      ['x-custom'] = 'yes'}, res.headers)
    assert.same({'Content-Type', 'text/plain', 'Content-Length', '11',
      'X-Custom', 'yes'}, res.rawHeaders)
    assert.equal('hello world', rec.body)
    assert.is_true(res.complete)
    local r = srv.requests[1]
    assert.equal('GET', r.method)
    assert.equal('/some/path?q=1', r.path)
    assert.equal('1.1', r.version)
    assert.equal('127.0.0.1:' .. srv.port, r.headers.host)
    assert.equal('keep-alive', r.headers.connection)
    assert.equal('abc', r.headers['x-test'])
    assert.is_nil(r.headers['content-length'])
    assert.is_nil(r.headers['transfer-encoding'])
    srv.close()
  end)

  it('decodes a chunked body sent in pieces, with trailers', function()
    local raw = 'HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n'
      .. '5\r\nhello\r\n1;ext=1\r\n \r\n5\r\nworld\r\n0\r\n'
      .. 'X-Trailer: t\r\n\r\n'
    local pieces = {}
    for i = 1, #raw, 7 do pieces[#pieces + 1] = raw:sub(i, i + 6) end
    local srv = raw_server(function() return pieces end, true)
    local rec = run(function(cb)
      return client.get('http://127.0.0.1:' .. srv.port .. '/', cb)
    end)
    assert.same({'response', 'end', 'close', 'res close'}, rec.log)
    assert.equal('hello world', rec.body)
    assert.is_true(rec.chunks >= 2)
    assert.same({['x-trailer'] = 't'}, rec.res.trailers)
    assert.same({'X-Trailer', 't'}, rec.res.rawTrailers)
    srv.close()
  end)

  it('reads a body delimited by the connection closing', function()
    local srv = raw_server(function()
      return {'HTTP/1.0 200 OK\r\nServer: raw\r\n\r\nfirst ', 'second ',
        'third'}
    end)
    local rec = run(function(cb)
      return client.get({host = '127.0.0.1', port = srv.port}, cb)
    end)
    assert.same({'response', 'end', 'close', 'res close'}, rec.log)
    assert.equal('1.0', rec.res.httpVersion)
    assert.equal('first second third', rec.body)
    assert.is_true(rec.res.complete)
    srv.close()
  end)

  it('expects no body after HEAD, 204 and 304', function()
    for _, case in ipairs({
        {'HEAD', 'HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n'},
        {'GET', 'HTTP/1.1 204 No Content\r\n\r\n'},
        {'GET', 'HTTP/1.1 304 Not Modified\r\nContent-Length: 5\r\n\r\n'},
        {'GET', 'HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n'}}) do
      -- The server keeps the connection: the client must not wait.
      local srv = raw_server(function() return case[2] end, true)
      local rec = run(function(cb)
        local req = client.request({host = '127.0.0.1', port = srv.port,
          method = case[1]}, cb)
        req:finish()
        return req
      end)
      assert.same({'response', 'end', 'close', 'res close'}, rec.log)
      assert.equal('', rec.body)
      assert.equal(case[1], srv.requests[1].method)
      srv.close()
    end
  end)

  it('sends a POST body with Content-Length, or chunked when streamed',
      function()
    -- The server closes each connection after its answer, and says so
    -- (the next request must not go on a connection about to close).
    local srv = raw_server(function(r)
      return 'HTTP/1.1 201 Created\r\nConnection: close\r\n'
        .. 'Content-Length: ' .. #r.body .. '\r\n\r\n' .. r.body
    end)
    -- finish(body): the length is known.
    local rec = run(function(cb)
      local req = client.request({host = '127.0.0.1', port = srv.port,
        method = 'POST', path = '/items',
        headers = {['Content-Type'] = 'application/json'}}, cb)
      req:finish('{"a":1}')
      return req
    end)
    assert.equal(201, rec.res.statusCode)
    assert.equal('Created', rec.res.statusMessage)
    assert.equal('{"a":1}', rec.body)
    local r = srv.requests[1]
    assert.equal('POST', r.method)
    assert.equal('/items', r.path)
    assert.equal('7', r.headers['content-length'])
    assert.equal('application/json', r.headers['content-type'])
    assert.equal('{"a":1}', r.body)

    -- write() before finish(): chunked.
    local finished
    rec = run(function(cb)
      local req = client.request({host = '127.0.0.1', port = srv.port,
        method = 'PUT'}, cb)
      assert.is_true(req:write('part one, '))
      req:write('part two, ')
      req:finish('the end', function() finished = true end)
      return req
    end)
    assert.is_true(finished)
    r = srv.requests[2]
    assert.equal('PUT', r.method)
    assert.is_true(r.chunked)
    assert.is_nil(r.headers['content-length'])
    assert.equal('part one, part two, the end', r.body)
    assert.equal('part one, part two, the end', rec.body)

    -- A Content-Length of our own: no chunking.
    rec = run(function(cb)
      local req = client.request({host = '127.0.0.1', port = srv.port,
        method = 'POST', headers = {['Content-Length'] = 6}}, cb)
      req:write('abc')
      req:finish('def')
      return req
    end)
    r = srv.requests[3]
    assert.is_nil(r.chunked)
    assert.equal('abcdef', r.body)

    -- POST without a body says Content-Length: 0.
    rec = run(function(cb)
      return client.request({host = '127.0.0.1', port = srv.port,
        method = 'POST'}, cb):finish()
    end)
    assert.equal('0', srv.requests[4].headers['content-length'])
    srv.close()
  end)

  it('joins repeated headers as Node does', function()
    local srv = raw_server(function()
      return 'HTTP/1.1 200 OK\r\nX-Dup: a\r\nX-Dup: b\r\n'
        .. 'Content-Type: text/html\r\nContent-Type: text/plain\r\n'
        .. 'Set-Cookie: a=1\r\nSet-Cookie: b=2\r\nContent-Length: 0\r\n\r\n'
    end)
    local rec = run(function(cb)
      return client.get({host = '127.0.0.1', port = srv.port}, cb)
    end)
    assert.equal('a, b', rec.res.headers['x-dup'])
    assert.equal('text/html', rec.res.headers['content-type'])
    assert.same({'a=1', 'b=2'}, rec.res.headers['set-cookie'])
    assert.equal(14, #rec.res.rawHeaders)
    srv.close()
  end)

  it('reports a refused connection on the request', function()
    local port = h.free_port()
    local rec = run(function(cb)
      return client.get({host = '127.0.0.1', port = port}, cb)
    end)
    assert.same({'error', 'close'}, rec.log)
    assert.equal('ECONNREFUSED', rec.err.code)
    assert.equal('connect ECONNREFUSED 127.0.0.1:' .. port, rec.err.message)
    assert.is_nil(rec.res)
  end)

  it('emits timeout on an idle request; destroy() then ends it', function()
    local srv = raw_server(function() return nil end)
    local t0 = uv.now()
    local rec = run(function(cb)
      local req = client.get({host = '127.0.0.1', port = srv.port,
        timeout = 80}, cb)
      req:on('timeout', function() req:destroy() end)
      return req
    end)
    assert.is_true(uv.now() - t0 >= 70)
    assert.same({'timeout', 'error', 'close'}, rec.log)
    assert.equal('ECONNRESET', rec.err.code)
    assert.equal('socket hang up', rec.err.message)
    -- setTimeout(ms, cb) as a method.
    local fired
    rec = run(function(cb)
      local req = client.get({host = '127.0.0.1', port = srv.port}, cb)
      req:setTimeout(30, function()
        fired = true
        req:destroy(require('net')._error('ETIMEDOUT', 'timed out'))
      end)
      return req
    end)
    assert.is_true(fired)
    assert.equal('ETIMEDOUT', rec.err.code)
    srv.close()
  end)

  it('hangs up when the server closes without answering', function()
    local srv = raw_server(function() return '' end)
    local rec = run(function(cb)
      return client.get({host = '127.0.0.1', port = srv.port}, cb)
    end)
    assert.same({'error', 'close'}, rec.log)
    assert.equal('ECONNRESET', rec.err.code)
    assert.equal('socket hang up', rec.err.message)
    srv.close()
  end)

  it('aborts a response cut short', function()
    local srv = raw_server(function()
      return 'HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc'
    end)
    local rec = run(function(cb)
      return client.get({host = '127.0.0.1', port = srv.port}, cb)
    end)
    assert.same({'response', 'aborted', 'res error', 'close', 'res close'},
      rec.log)
    assert.equal('abc', rec.body)
    assert.is_false(rec.res.complete)
    assert.is_true(rec.res.aborted)
    assert.equal('ECONNRESET', rec.res_err.code)
    assert.equal('aborted', rec.res_err.message)
    srv.close()
  end)

  it('rejects a malformed response', function()
    for _, raw in ipairs({'SPDY/9 200 OK\r\n\r\n',
        'HTTP/1.1 200 OK\r\nContent-Length: 1x\r\n\r\n',
        'HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n'}) do
      local srv = raw_server(function() return raw end, true)
      local rec = run(function(cb)
        return client.get({host = '127.0.0.1', port = srv.port}, cb)
      end)
      -- A bad head fails the request; a bad body after a good head
      -- aborts the response and fails the request too.
      if rec.res then
        assert.same({'response', 'aborted', 'error', 'close', 'res close'},
          rec.log)
      else
        assert.same({'error', 'close'}, rec.log)
      end
      assert.is_truthy(rec.err.code:match('^HPE_'))
      assert.is_truthy(rec.err.message:match('^Parse Error: '))
      srv.close()
    end
  end)

  it('reports interim 1xx answers as information', function()
    local srv = raw_server(function()
      return 'HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\n'
        .. 'Content-Length: 2\r\n\r\nok'
    end)
    local info, continued
    local rec = run(function(cb)
      local req = client.request({host = '127.0.0.1', port = srv.port,
        method = 'POST', headers = {Expect = '100-continue'}}, cb)
      req:on('information', function(i) info = i end)
      req:on('continue', function() continued = true end)
      req:finish('x')
      return req
    end)
    assert.equal(100, info.statusCode)
    assert.is_true(continued)
    assert.equal(200, rec.res.statusCode)
    assert.equal('ok', rec.body)
    srv.close()
  end)

  it('takes URLs, merges options, sends auth, refuses https', function()
    local srv = raw_server(function()
      return 'HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n'
    end)
    run(function(cb)
      return client.get('http://user:p%40ss@127.0.0.1:' .. srv.port
        .. '/a/b?c=d#frag', {headers = {['X-Extra'] = '1'}}, cb)
    end)
    local r = srv.requests[1]
    assert.equal('/a/b?c=d', r.path)
    assert.equal('1', r.headers['x-extra'])
    assert.equal('Basic dXNlcjpwQHNz', r.headers.authorization)
    local ok, err = pcall(client.request, 'https://127.0.0.1/')
    assert.is_false(ok)
    assert.equal('ERR_INVALID_PROTOCOL', err.code)
    ok, err = pcall(client.request, {host = '127.0.0.1', path = '/a b'})
    assert.is_false(ok)
    assert.equal('ERR_UNESCAPED_CHARACTERS', err.code)
    ok, err = pcall(client.request, {host = '127.0.0.1',
      headers = {['X-Bad'] = 'a\r\nb'}})
    assert.is_false(ok)
    assert.equal('ERR_INVALID_CHAR', err.code)
    srv.close()
  end)

  it('guards headers and writes once sent', function()
    local srv = raw_server(function()
      return 'HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n'
    end)
    local werr
    local rec = run(function(cb)
      local req = client.request({host = '127.0.0.1', port = srv.port,
        method = 'POST'}, cb)
      req:setHeader('X-One', '1')
      assert.equal('1', req:getHeader('x-one'))
      assert.is_true(req:hasHeader('X-ONE'))
      req:write('a')
      assert.is_true(req.headersSent)
      local ok, err = pcall(req.setHeader, req, 'X-Two', '2')
      assert.is_false(ok)
      assert.equal('ERR_HTTP_HEADERS_SENT', err.code)
      req:finish()
      assert.is_false(req:write('late', function(e) werr = e end))
      return req
    end)
    assert.equal('ERR_STREAM_WRITE_AFTER_END', werr.code)
    assert.equal('ERR_STREAM_WRITE_AFTER_END', rec.err.code)
    srv.close()
  end)

  it('holds a large body while paused', function()
    local size = 1024 * 1024
    local srv = raw_server(function()
      return {'HTTP/1.1 200 OK\r\nContent-Length: ' .. size .. '\r\n\r\n',
        string.rep('a', size / 2), string.rep('b', size / 2)}
    end)
    local res, got, ended = nil, 0, false
    local req = client.get({host = '127.0.0.1', port = srv.port},
      function(r)
        res = r
        r:pause()
        r:on('data', function(d) got = got + #d end)
        r:on('end', function() ended = true end)
      end)
    assert.is_true(h.wait(function() return res ~= nil end))
    h.sleep(50)
    assert.equal(0, got)
    assert.is_true(res:isPaused())
    res:resume()
    assert.is_true(h.wait(function() return ended end))
    assert.equal(size, got)
    assert.is_true(h.wait(function() return req.destroyed end))
    srv.close()
  end)

  it('drops the body when nobody listens for the response', function()
    local srv = raw_server(function()
      return 'HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nabc'
    end)
    local closed
    local req = client.get({host = '127.0.0.1', port = srv.port})
    req:on('close', function() closed = true end)
    assert.is_true(h.wait(function() return closed end))
    assert.is_true(req.res.complete)
    srv.close()
  end)

  it('abort() before the response emits abort and close, no error',
      function()
    local srv = raw_server(function() return nil end)
    local rec = run(function(cb)
      local req = client.get({host = '127.0.0.1', port = srv.port}, cb)
      req:on('abort', function() end)
      req:on('socket', function(s)
        s:on('connect', function() req:abort() end)
      end)
      return req
    end)
    assert.same({'close'}, rec.log)
    assert.is_true(rec.req.aborted)
    srv.close()
  end)

  it('is http.request and http.get', function()
    local http = require('http')
    local srv = raw_server(function()
      return 'HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nhi'
    end)
    local rec = run(function(cb)
      return http.get({host = '127.0.0.1', port = srv.port}, cb)
    end)
    assert.equal('hi', rec.body)
    srv.close()
  end)
end)
