-- http.fetch and the client response's body(): whole exchanges from a
-- coroutine, against servers made here (the runtime's http server, or a
-- raw net server where the bytes matter).

local h = require('helper')
local http = require('http')
local net = require('net')
local co = require('co')

local servers, others = {}, {}

local function serve(handler)
  local s = http.createServer(handler)
  local st = {server = s, conns = 0, hits = 0}
  s:on('connection', function() st.conns = st.conns + 1 end)
  s:on('request', function() st.hits = st.hits + 1 end)
  local ready = false
  s:listen(0, '127.0.0.1', function() ready = true end)
  assert(h.wait(function() return ready end, 2000), 'listen timed out')
  st.port = s:address().port
  st.url = 'http://127.0.0.1:' .. st.port
  servers[#servers + 1] = s
  return st
end

local run = h.go

describe('http.fetch', function()
  before_each(h.track_tcp)
  after_each(function()
    http.globalAgent:destroy()
    for _, s in ipairs(servers) do
      s:close()
      s:closeAllConnections()
    end
    servers = {}
    for _, close in ipairs(others) do close() end
    others = {}
    h.untrack_tcp()
    assert.is_true(h.wait(function() return h.open_tcp() == 0 end, 2000),
      'a TCP handle was left open')
  end)

  it('returns status, ok, statusText, headers, body, text() and json()',
      function()
    local srv = serve(function(req, res)
      if req.url == '/json' then
        res:setHeader('Content-Type', 'application/json')
        res:setHeader('Set-Cookie', {'a=1', 'b=2'})
        return res:finish('{"n": 1, "list": [1, 2]}')
      end
      res:writeHead(404, 'Nope', {['X-Thing'] = 'yes'})
      res:finish('missing')
    end)
    local r = run(function() return http.fetch(srv.url .. '/json') end)
    assert.equal(200, r.status)
    assert.is_true(r.ok)
    assert.equal('OK', r.statusText)
    assert.equal('application/json', r.headers['content-type'])
    assert.equal('application/json', r.headers.get('Content-Type'))
    assert.equal('application/json', r.headers:get('content-type'))
    assert.equal('a=1, b=2', r.headers.get('set-cookie'))
    assert.same({'a=1', 'b=2'}, r.headers.getSetCookie())
    assert.is_true(r.headers.has('content-length'))
    assert.is_nil(r.headers.get('x-none'))
    assert.equal('{"n": 1, "list": [1, 2]}', r.body)
    assert.equal(r.body, r:text())
    assert.same({n = 1, list = {1, 2}}, r:json())
    assert.equal(srv.url .. '/json', r.url)
    assert.is_false(r.redirected)
    -- The methods are not headers.
    for k in pairs(r.headers) do assert.not_equal('get', k) end

    r = run(function() return http.fetch(srv.url .. '/other') end)
    assert.equal(404, r.status)
    assert.is_false(r.ok)
    assert.equal('Nope', r.statusText)
    assert.equal('yes', r.headers['x-thing'])
    assert.equal('missing', r.body)
    local v, err = r:json()
    assert.is_nil(v)
    assert.equal('SyntaxError', err.name)
  end)

  it('sends a method, headers and a body', function()
    local got
    local srv = serve(function(req, res)
      got = {method = req.method, type = req.headers['content-type'],
        accept = req.headers.accept, x = req.headers['x-key'],
        length = req.headers['content-length'], body = req:body()}
      res:writeHead(201)
      res:finish('made')
    end)
    local r = run(function()
      return http.fetch(srv.url .. '/items', {method = 'post',
        headers = {['X-Key'] = 'k1', ['Content-Type'] = 'application/json'},
        body = '{"a":1}'})
    end)
    assert.equal(201, r.status)
    assert.equal('made', r.body)
    assert.same({method = 'POST', type = 'application/json',
      accept = '*/*', x = 'k1', length = '7', body = '{"a":1}'}, got)
    -- A string body without a type is text, as fetch's.
    run(function()
      return http.fetch(srv.url, {method = 'PUT', body = 'plain'})
    end)
    assert.equal('text/plain;charset=UTF-8', got.type)
    assert.equal('plain', got.body)
  end)

  it('keeps the connection alive between fetches (the global agent)',
      function()
    local srv = serve(function(req, res) res:finish(req.url) end)
    local a, b = run(function()
      local x = http.fetch(srv.url .. '/1')
      local y = http.fetch(srv.url .. '/2')
      return x, y
    end)
    assert.equal('/1', a.body)
    assert.equal('/2', b.body)
    assert.equal(1, srv.conns)
    -- agent = false: a connection each.
    run(function()
      http.fetch(srv.url, {agent = false})
      http.fetch(srv.url, {agent = false})
    end)
    assert.equal(3, srv.conns)
  end)

  it('follows redirects as fetch does', function()
    local log = {}
    local srv = serve(function(req, res)
      local body = req:body()
      log[#log + 1] = req.method .. ' ' .. req.url .. ' ' .. body
        .. ' ' .. tostring(req.headers.authorization)
      local to = {['/a'] = {302, '/b'}, ['/b'] = {301, 'c?q=1'},
        ['/see'] = {303, '/c'}, ['/keep'] = {307, '/c'},
        ['/perm'] = {308, '/c'}, ['/moved'] = {301, '/c'}}
      local r = to[req.url:match('^[^?]*')]
      if r then
        res:writeHead(r[1], {Location = r[2]})
        return res:finish()
      end
      res:finish('at ' .. req.url)
    end)
    local r = run(function() return http.fetch(srv.url .. '/a') end)
    assert.equal(200, r.status)
    assert.equal('at /c?q=1', r.body)
    assert.is_true(r.redirected)
    assert.equal(srv.url .. '/c?q=1', r.url)
    assert.same({'GET /a  nil', 'GET /b  nil', 'GET /c?q=1  nil'}, log)

    -- 303 makes a GET; 301 and 302 make a POST a GET; 307 and 308 keep
    -- the method and the body.
    for _, case in ipairs({{'/see', 'GET', ''}, {'/moved', 'GET', ''},
        {'/keep', 'POST', 'data'}, {'/perm', 'POST', 'data'}}) do
      log = {}
      r = run(function()
        return http.fetch(srv.url .. case[1], {method = 'POST', body = 'data',
          headers = {Authorization = 'Bearer t'}})
      end)
      assert.equal('at /c', r.body)
      assert.equal(case[2] .. ' /c ' .. case[3] .. ' Bearer t', log[2])
    end

    -- manual: the 3xx itself.
    r = run(function()
      return http.fetch(srv.url .. '/a', {redirect = 'manual'})
    end)
    assert.equal(302, r.status)
    assert.equal('/b', r.headers.location)
    assert.is_false(r.redirected)
    -- error: a redirect fails the fetch.
    local _, err = run(function()
      return http.fetch(srv.url .. '/a', {redirect = 'error'})
    end)
    assert.equal('ERR_FETCH_REDIRECT', err.code)
  end)

  it('stops after 20 redirects', function()
    local srv = serve(function(req, res)
      local n = tonumber(req.url:match('%d+'))
      res:writeHead(302, {Location = '/' .. (n + 1)})
      res:finish()
    end)
    local r, err = run(function() return http.fetch(srv.url .. '/0') end)
    assert.is_nil(r)
    assert.equal('ERR_TOO_MANY_REDIRECTS', err.code)
    assert.equal(21, srv.hits)
  end)

  it('drops credentials on a redirect to another origin', function()
    local seen
    local other = serve(function(req, res)
      seen = {auth = req.headers.authorization, cookie = req.headers.cookie,
        x = req.headers['x-keep']}
      res:finish('other')
    end)
    local srv = serve(function(req, res)
      res:writeHead(302, {Location = other.url .. '/there'})
      res:finish()
    end)
    local r = run(function()
      return http.fetch(srv.url, {headers = {Authorization = 'secret',
        Cookie = 'c=1', ['X-Keep'] = 'kept'}})
    end)
    assert.equal('other', r.body)
    assert.same({x = 'kept'}, seen)
  end)

  it('gives nil and an error when the connection is refused', function()
    local port = h.free_port()
    local r, err = run(function()
      return http.fetch('http://127.0.0.1:' .. port .. '/')
    end)
    assert.is_nil(r)
    assert.equal('ECONNREFUSED', err.code)
    assert.equal('connect ECONNREFUSED 127.0.0.1:' .. port, err.message)
    -- What the client cannot speak, or cannot parse, is an error too.
    _, err = run(function() return http.fetch('ftp://127.0.0.1/') end)
    assert.equal('ERR_INVALID_PROTOCOL', err.code)
    _, err = run(function() return http.fetch('not a url') end)
    assert.equal('ERR_INVALID_URL', err.code)
  end)

  it('gives nil and a timeout error from a server that never answers',
      function()
    local srv = serve(function() end)
    local t0 = require("uv").now()
    local r, err = run(function()
      return http.fetch(srv.url, {timeout = 100})
    end)
    local took = require('uv').now() - t0
    assert.is_nil(r)
    assert.equal('ETIMEDOUT', err.code)
    assert.equal('TimeoutError', err.name)
    assert.truthy(took >= 90 and took < 1000, 'took ' .. took)
    -- A body that stalls halfway times out too.
    local slow = serve(function(req, res)
      res:setHeader('Content-Length', 10)
      res:write('abc')
    end)
    r, err = run(function() return http.fetch(slow.url, {timeout = 100}) end)
    assert.is_nil(r)
    assert.equal('ETIMEDOUT', err.code)
    -- The deadline is the whole fetch's, redirects included.
    local hops = serve(function(req, res)
      -- /2 never answers.
      if req.url == '/1' then
        res:writeHead(302, {Location = '/2'})
        res:finish()
      end
    end)
    r, err = run(function()
      return http.fetch(hops.url .. '/1', {timeout = 150})
    end)
    assert.is_nil(r)
    assert.equal('ETIMEDOUT', err.code)
    assert.equal(2, hops.hits)
  end)

  it('gives nil and an error past maxBodySize, and the connection goes',
      function()
    local srv = serve(function(req, res) res:finish(('b'):rep(1000)) end)
    local r, err = run(function()
      return http.fetch(srv.url, {maxBodySize = 100})
    end)
    assert.is_nil(r)
    assert.equal('UND_ERR_RES_EXCEEDED_MAX_SIZE', err.code)
    r = run(function() return http.fetch(srv.url, {maxBodySize = 1000}) end)
    assert.equal(1000, #r.body)
    assert.equal(2, srv.conns)
  end)

  it('sends an idempotent request again when its reused connection was '
      .. 'closing', function()
    -- The server answers one request a connection and closes the
    -- connection as the next one arrives (as one whose keep-alive time
    -- ran out at that moment would).
    local conns, socks = 0, {}
    local srv = net.createServer(function(sock)
      conns = conns + 1
      socks[#socks + 1] = sock
      local answered = false
      sock:on('data', function()
        if answered then return sock:destroy() end
        answered = true
        sock:write('HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok')
      end)
      sock:on('error', function() end)
    end)
    others[#others + 1] = function()
      srv:close()
      for _, s in ipairs(socks) do s:destroy() end
    end
    local ready
    srv:listen(0, '127.0.0.1', function() ready = true end)
    assert.is_true(h.wait(function() return ready end))
    local base = 'http://127.0.0.1:' .. srv:address().port
    local a, b = run(function()
      return http.fetch(base), http.fetch(base)
    end)
    assert.equal('ok', a.body)
    assert.equal('ok', b.body)
    assert.equal(2, conns)
    -- A POST is not sent twice.
    local _, err = run(function()
      return http.fetch(base, {method = 'POST', body = 'x'})
    end)
    assert.equal('ECONNRESET', err.code)
  end)

  it('answers HEAD and 204 without a body', function()
    local srv = serve(function(req, res)
      if req.url == '/none' then res:writeHead(204) return res:finish() end
      res:setHeader('Content-Length', 5)
      res:finish(req.method == 'HEAD' and '' or 'hello')
    end)
    local a, b = run(function()
      return http.fetch(srv.url, {method = 'HEAD'}),
        http.fetch(srv.url .. '/none')
    end)
    assert.equal(200, a.status)
    assert.equal('', a.body)
    assert.equal('5', a.headers['content-length'])
    assert.equal(204, b.status)
    assert.equal('', b.body)
  end)

  it('outside a coroutine says how to fix it; misuse raises', function()
    local ok, err = pcall(function()
      local r = http.fetch('http://127.0.0.1:1/')
      return r
    end)
    assert.is_false(ok)
    assert.truthy(tostring(err):find('http.fetch: not inside a coroutine',
      1, true), tostring(err))
    run(function()
      ok, err = pcall(http.fetch, 'http://127.0.0.1:1/', {body = 'x'})
      assert.is_false(ok)
      assert.equal('ERR_INVALID_ARG_TYPE', err.code)
      ok = pcall(http.fetch, 42)
      assert.is_false(ok)
    end)
  end)
end)

describe('the client response\'s body()', function()
  before_each(h.track_tcp)
  after_each(function()
    http.globalAgent:destroy()
    for _, s in ipairs(servers) do
      s:close()
      s:closeAllConnections()
    end
    servers = {}
    for _, close in ipairs(others) do close() end
    others = {}
    h.untrack_tcp()
    assert.is_true(h.wait(function() return h.open_tcp() == 0 end, 2000),
      'a TCP handle was left open')
  end)

  -- response(port, path) -> the response of a GET, in a coroutine.
  local function response(port, path)
    local req = http.get({host = '127.0.0.1', port = port, path = path})
    local res = co.await(function(cb)
      req:once('response', cb)
      req:once('error', function() cb(nil) end)
    end)
    return res, req
  end

  it('waits for the whole body; a second call gives the same string',
      function()
    local srv = serve(function(req, res)
      res:write('first ')
      co.sleep(20)
      res:finish('second')
    end)
    local a, b, reused = run(function()
      local res = response(srv.port, '/')
      local body = res:body()
      local again = res:body()
      local res2, req2 = response(srv.port, '/')
      assert(res2:body() == 'first second')
      return body, again, req2.reusedSocket
    end)
    assert.equal('first second', a)
    assert.equal(a, b)
    -- The socket went back to the agent before body() returned.
    assert.is_true(reused)
    assert.equal(1, srv.conns)
  end)

  it('past its limit gives nil, an error, and the connection is not reused',
      function()
    local srv = serve(function(req, res) res:finish(('x'):rep(500)) end)
    local body, err, reused = run(function()
      local res = response(srv.port, '/')
      local b, e = res:body(100)
      local res2, req2 = response(srv.port, '/')
      assert(#res2:body(500) == 500)
      return b, e, req2.reusedSocket
    end)
    assert.is_nil(body)
    assert.equal('response body too large', err)
    assert.is_false(reused)
    assert.equal(2, srv.conns)
  end)

  it('gives nil, aborted when the connection is lost', function()
    local srv = serve(function(req, res)
      res:setHeader('Content-Length', 100)
      res:write('part')
      co.sleep(20)
      req.socket:destroy()
    end)
    local body, err = run(function()
      return response(srv.port, '/'):body()
    end)
    assert.is_nil(body)
    assert.equal('aborted', err)
  end)

  it('outside a coroutine says how to fix it', function()
    local srv = serve(function(req, res) res:finish('x') end)
    local res = h.await(function(cb)
      http.get({host = '127.0.0.1', port = srv.port}, cb)
    end)
    local ok, err = pcall(res.body, res)
    assert.is_false(ok)
    assert.truthy(tostring(err):find('res:body: not inside a coroutine',
      1, true), tostring(err))
    res:resume()
  end)
end)
