-- http.Agent: the client's pool of connections, against real servers made
-- here (the runtime's http server, or raw net servers where the bytes
-- matter), which count the connections they accept.

local h = require('helper')
local http = require('http')
local net = require('net')
local co = require('co')

local servers, agents, raws = {}, {}, {}

-- serve(handler[, options]) -> a server on a free port with st.conns (the
-- connections it accepted) and st.port.
local function serve(handler, options)
  local s = http.createServer(options or {}, handler)
  local st = {server = s, conns = 0}
  s:on('connection', function() st.conns = st.conns + 1 end)
  local ready = false
  s:listen(0, '127.0.0.1', function() ready = true end)
  assert(h.wait(function() return ready end, 2000), 'listen timed out')
  st.port = s:address().port
  servers[#servers + 1] = s
  return st
end

-- raw(respond) -> a net server; respond(sock, request) answers each
-- request (its head, once read whole); st.conns counts connections.
local function raw(respond)
  local st = {conns = 0, socks = {}}
  local s = net.createServer(function(sock)
    st.conns = st.conns + 1
    st.socks[#st.socks + 1] = sock
    local buf = ''
    sock:on('data', function(d)
      buf = buf .. d
      while true do
        local e = buf:find('\r\n\r\n', 1, true)
        if not e then return end
        local head = buf:sub(1, e + 3)
        buf = buf:sub(e + 4)
        respond(sock, head)
      end
    end)
    sock:on('error', function() end)
  end)
  local ready = false
  s:listen(0, '127.0.0.1', function() ready = true end)
  assert(h.wait(function() return ready end, 2000), 'listen timed out')
  st.port = s:address().port
  st.server = s
  function st.close()
    if st.closed then return end
    st.closed = true
    s:close()
    for _, c in ipairs(st.socks) do c:destroy() end
  end
  raws[#raws + 1] = st
  return st
end

local function agent(opts)
  local a = http.Agent:new(opts)
  agents[#agents + 1] = a
  return a
end

-- start(opts[, body]) -> a record filled as the request goes: res, body
-- (once read), err, done, closed.
local function start(opts, body)
  local rec = {}
  local req = http.request(opts, function(res)
    rec.res = res
    local parts = {}
    res:on('data', function(d) parts[#parts + 1] = d end)
    res:on('end', function()
      rec.body = table.concat(parts)
      rec.done = true
    end)
  end)
  req:on('error', function(e)
    rec.err = e
    rec.done = true
  end)
  req:on('close', function() rec.closed = true end)
  req:finish(body)
  rec.req = req
  return rec
end

local function get(opts, body)
  local rec = start(opts, body)
  assert(h.wait(function() return rec.done end, 3000), 'no response')
  return rec
end

local function count(t)
  local n = 0
  for _ in pairs(t) do n = n + 1 end
  return n
end

describe('http.Agent', function()
  before_each(h.track_tcp)
  after_each(function()
    for _, a in ipairs(agents) do a:destroy() end
    agents = {}
    http.globalAgent:destroy()
    for _, s in ipairs(servers) do
      s:close()
      s:closeAllConnections()
    end
    servers = {}
    for _, st in ipairs(raws) do st.close() end
    raws = {}
    h.untrack_tcp()
    assert.is_true(h.wait(function() return h.open_tcp() == 0 end, 2000),
      'a TCP handle was left open')
  end)

  it('is made as Node\'s, with Node\'s defaults; globalAgent is Node 20\'s',
      function()
    local a = http.Agent()
    assert.is_false(a.keepAlive)
    assert.equal(1000, a.keepAliveMsecs)
    assert.equal(math.huge, a.maxSockets)
    assert.equal(math.huge, a.maxTotalSockets)
    assert.equal(256, a.maxFreeSockets)
    assert.equal('lifo', a.scheduling)
    assert.same({}, a.sockets)
    assert.same({}, a.freeSockets)
    assert.same({}, a.requests)
    local b = http.Agent({keepAlive = true, maxSockets = 2,
      scheduling = 'fifo'})
    assert.is_true(b.keepAlive)
    assert.equal(2, b.maxSockets)
    assert.equal('fifo', b.scheduling)
    assert.equal('localhost::', b:getName({}))
    assert.equal('h:81:1.2.3.4:6', b:getName({host = 'h', port = 81,
      localAddress = '1.2.3.4', family = 6}))
    local g = http.globalAgent
    assert.is_true(g.keepAlive)
    assert.equal(5000, g.options.timeout)
    assert.equal('lifo', g.scheduling)
    local ok, err = pcall(http.Agent, {scheduling = 'random'})
    assert.is_false(ok)
    assert.equal('ERR_INVALID_ARG_VALUE', err.code)
    ok, err = pcall(http.Agent, {maxSockets = 0})
    assert.is_false(ok)
    assert.equal('ERR_OUT_OF_RANGE', err.code)
    -- A subclass is made the same way.
    local Sub = http.Agent:extend()
    assert.is_true(Sub:new({keepAlive = true}).keepAlive)
  end)

  it('reuses one connection across sequential requests', function()
    local seen = {}
    local srv = serve(function(req, res)
      seen[#seen + 1] = req.headers.connection
      res:finish('n' .. #seen)
    end)
    local a = agent({keepAlive = true})
    local name = '127.0.0.1:' .. srv.port .. ':'
    for i = 1, 3 do
      local rec = get({host = '127.0.0.1', port = srv.port, agent = a})
      assert.equal(200, rec.res.statusCode)
      assert.equal('n' .. i, rec.body)
      assert.equal(i > 1, rec.req.reusedSocket)
      assert.is_true(h.wait(function() return rec.closed end, 1000))
      -- Between requests the socket waits in the free list.
      assert.equal(1, #a.freeSockets[name])
      assert.is_nil(a.sockets[name])
    end
    assert.equal(1, srv.conns)
    assert.same({'keep-alive', 'keep-alive', 'keep-alive'}, seen)
    assert.equal(1, a.totalSocketCount)
  end)

  it('queues requests past maxSockets: one connection at a time', function()
    local inflight, most = 0, 0
    local srv = serve(function(req, res)
      inflight = inflight + 1
      if inflight > most then most = inflight end
      co.sleep(30)
      inflight = inflight - 1
      res:finish(req.url)
    end)
    for _, keep in ipairs({true, false}) do
      local a = agent({keepAlive = keep, maxSockets = 1})
      local name = '127.0.0.1:' .. srv.port .. ':'
      local before = srv.conns
      local recs = {}
      for i = 1, 3 do
        recs[i] = start({host = '127.0.0.1', port = srv.port, path = '/' .. i,
          agent = a})
      end
      assert.equal(1, #a.sockets[name])
      assert.equal(2, #a.requests[name])
      assert.is_true(h.wait(function()
        return recs[1].done and recs[2].done and recs[3].done
      end, 3000))
      for i = 1, 3 do
        assert.is_nil(recs[i].err)
        assert.equal('/' .. i, recs[i].body)
        -- The waiting ones got the socket the one before gave back.
        assert.equal(i > 1, recs[i].req.reusedSocket)
      end
      assert.equal(1, most)
      assert.equal(before + 1, srv.conns)
      assert.is_nil(a.requests[name])
      if keep then
        assert.is_true(h.wait(function() return a.freeSockets[name] end))
      else
        -- Nothing is kept once nobody waits.
        assert.is_true(h.wait(function() return a.totalSocketCount == 0 end))
        assert.same({}, a.freeSockets)
      end
    end
  end)

  it('does not reuse a free socket the server closed', function()
    local conns = {}
    local srv = serve(function(req, res)
      conns[#conns + 1] = req.socket
      res:finish('ok')
    end)
    local a = agent({keepAlive = true})
    local name = '127.0.0.1:' .. srv.port .. ':'
    local rec = get({host = '127.0.0.1', port = srv.port, agent = a})
    assert.equal('ok', rec.body)
    assert.is_true(h.wait(function() return a.freeSockets[name] end))
    conns[1]:destroy()
    -- The client sees the end and drops the socket.
    assert.is_true(h.wait(function() return a.freeSockets[name] == nil end,
      2000))
    rec = get({host = '127.0.0.1', port = srv.port, agent = a})
    assert.is_nil(rec.err)
    assert.equal('ok', rec.body)
    assert.is_false(rec.req.reusedSocket)
    assert.equal(2, srv.conns)
  end)

  it('does not reuse a free socket that received stray bytes', function()
    local srv = raw(function(sock)
      sock:write('HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok')
      setTimeout(function() sock:write('junk') end, 20)
    end)
    local a = agent({keepAlive = true})
    local name = '127.0.0.1:' .. srv.port .. ':'
    local rec = get({host = '127.0.0.1', port = srv.port, agent = a})
    assert.equal('ok', rec.body)
    assert.is_true(h.wait(function() return a.freeSockets[name] == nil end,
      2000))
    rec = get({host = '127.0.0.1', port = srv.port, agent = a})
    assert.equal('ok', rec.body)
    assert.is_false(rec.req.reusedSocket)
    assert.equal(2, srv.conns)
    -- Bytes right behind the response, in the same read, spoil it too.
    local srv2 = raw(function(sock)
      sock:write('HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nokHTTP/1.1')
    end)
    rec = get({host = '127.0.0.1', port = srv2.port, agent = a})
    assert.equal('ok', rec.body)
    assert.is_true(h.wait(function() return a.totalSocketCount == 1 end))
    assert.is_nil(a.freeSockets['127.0.0.1:' .. srv2.port .. ':'])
    srv.close()
    srv2.close()
  end)

  it('without keepAlive opens a connection per request, and asks the '
      .. 'server to close it', function()
    local seen = {}
    local srv = serve(function(req, res)
      seen[#seen + 1] = req.headers.connection
      res:finish('x')
    end)
    local a = agent()
    for _ = 1, 3 do
      local rec = get({host = '127.0.0.1', port = srv.port, agent = a})
      assert.equal('x', rec.body)
      assert.is_false(rec.req.reusedSocket)
    end
    -- agent = false: a new Agent of its own each time.
    for _ = 1, 2 do
      local rec = get({host = '127.0.0.1', port = srv.port, agent = false})
      assert.equal('x', rec.body)
    end
    assert.equal(5, srv.conns)
    assert.same({'close', 'close', 'close', 'close', 'close'}, seen)
    assert.is_true(h.wait(function() return a.totalSocketCount == 0 end))
    assert.same({}, a.freeSockets)
  end)

  it('keeps nothing when the request or the response says close, or the '
      .. 'response is HTTP/1.0', function()
    local srv = serve(function(req, res)
      if req.url == '/close' then res:setHeader('Connection', 'close') end
      res:finish('x')
    end)
    local old = raw(function(sock)
      sock:write('HTTP/1.0 200 OK\r\nContent-Length: 1\r\n'
        .. 'Connection: keep-alive\r\n\r\ny')
    end)
    local a = agent({keepAlive = true})
    local rec = get({host = '127.0.0.1', port = srv.port, agent = a,
      headers = {Connection = 'close'}})
    assert.equal('x', rec.body)
    rec = get({host = '127.0.0.1', port = srv.port, agent = a,
      path = '/close'})
    assert.equal('x', rec.body)
    rec = get({host = '127.0.0.1', port = old.port, agent = a})
    assert.equal('y', rec.body)
    assert.is_true(h.wait(function() return a.totalSocketCount == 0 end))
    assert.same({}, a.freeSockets)
    assert.equal(2, srv.conns)
    old.close()
  end)

  it('gives the socket back only once the response was read', function()
    local srv = serve(function(req, res) res:finish(('z'):rep(100)) end)
    local a = agent({keepAlive = true})
    local name = '127.0.0.1:' .. srv.port .. ':'
    local res
    local req = http.get({host = '127.0.0.1', port = srv.port, agent = a},
      function(r) res = r end)
    assert.is_true(h.wait(function() return res and res.complete end))
    h.sleep(30)
    -- Complete but unread: still the request's.
    assert.equal(1, #a.sockets[name])
    assert.is_nil(a.freeSockets[name])
    local ended
    res:on('end', function() ended = true end)
    res:resume()
    assert.is_true(h.wait(function() return ended end))
    assert.equal(1, #a.freeSockets[name])
    assert.is_true(req.destroyed)
    -- Nobody listening for the response: the body is dumped, the socket
    -- goes back.
    local req2 = http.get({host = '127.0.0.1', port = srv.port, agent = a})
    assert.is_true(h.wait(function() return req2.closed end))
    assert.is_true(req2.reusedSocket)
    assert.equal(1, #a.freeSockets[name])
    assert.equal(1, srv.conns)
  end)

  it('closes a free socket after its timeout, or the server\'s hint',
      function()
    local srv = serve(function(req, res) res:finish('x') end,
      {keepAliveTimeout = 3000})
    local a = agent({keepAlive = true, timeout = 80})
    local name = '127.0.0.1:' .. srv.port .. ':'
    get({host = '127.0.0.1', port = srv.port, agent = a})
    assert.equal(80, a.freeSockets[name][1].timeout)
    assert.is_true(h.wait(function() return a.freeSockets[name] == nil end,
      1000))
    -- Keep-Alive: timeout=3 from the server: a second less than that.
    local b = agent({keepAlive = true, timeout = 5000})
    get({host = '127.0.0.1', port = srv.port, agent = b})
    assert.equal(2000, b.freeSockets[name][1].timeout)
  end)

  it('keeps at most maxFreeSockets', function()
    local srv = serve(function(req, res)
      co.sleep(20)
      res:finish('x')
    end)
    local a = agent({keepAlive = true, maxFreeSockets = 1})
    local name = '127.0.0.1:' .. srv.port .. ':'
    local r1 = start({host = '127.0.0.1', port = srv.port, agent = a})
    local r2 = start({host = '127.0.0.1', port = srv.port, agent = a})
    assert.is_true(h.wait(function() return r1.done and r2.done end))
    assert.equal(2, srv.conns)
    assert.is_true(h.wait(function() return a.totalSocketCount == 1 end))
    assert.equal(1, #a.freeSockets[name])
  end)

  it('shares maxTotalSockets across origins', function()
    local one = serve(function(req, res)
      co.sleep(30)
      res:finish('one')
    end)
    local two = serve(function(req, res) res:finish('two') end)
    local a = agent({keepAlive = true, maxTotalSockets = 1})
    local r1 = start({host = '127.0.0.1', port = one.port, agent = a})
    local r2 = start({host = '127.0.0.1', port = two.port, agent = a})
    assert.equal(1, count(a.requests))
    assert.is_true(h.wait(function() return r1.done and r2.done end))
    assert.equal('one', r1.body)
    assert.equal('two', r2.body)
    -- The free socket of one made room for two's request.
    assert.is_true(h.wait(function() return a.totalSocketCount == 1 end))
    assert.is_nil(a.freeSockets['127.0.0.1:' .. one.port .. ':'])
    assert.equal(1, #a.freeSockets['127.0.0.1:' .. two.port .. ':'])
    local r3 = get({host = '127.0.0.1', port = one.port, agent = a})
    assert.equal('one', r3.body)
    assert.equal(2, one.conns)
  end)

  it('takes the most recently freed socket (lifo) or the oldest (fifo)',
      function()
    local srv = serve(function(req, res)
      if req.url == '/slow' then co.sleep(150) end
      res:finish('x')
    end)
    for _, mode in ipairs({'lifo', 'fifo'}) do
      local a = agent({keepAlive = true, scheduling = mode})
      local fast = start({host = '127.0.0.1', port = srv.port, agent = a})
      local slow = start({host = '127.0.0.1', port = srv.port, agent = a,
        path = '/slow'})
      assert.is_true(h.wait(function() return fast.done and slow.done end))
      h.sleep(10)
      local rec = get({host = '127.0.0.1', port = srv.port, agent = a})
      local want = mode == 'lifo' and slow or fast
      assert.equal(want.req.socket, rec.req.socket)
    end
  end)

  it('destroy() closes the free sockets', function()
    local srv = serve(function(req, res) res:finish('x') end)
    local a = agent({keepAlive = true})
    local name = '127.0.0.1:' .. srv.port .. ':'
    local r1 = start({host = '127.0.0.1', port = srv.port, agent = a})
    local r2 = start({host = '127.0.0.1', port = srv.port, agent = a})
    assert.is_true(h.wait(function() return r1.done and r2.done end))
    assert.equal(2, #a.freeSockets[name])
    local socks = {r1.req.socket, r2.req.socket}
    a:destroy()
    assert.is_true(socks[1].destroyed and socks[2].destroyed)
    assert.is_true(h.wait(function() return a.totalSocketCount == 0 end))
    assert.same({}, a.freeSockets)
  end)

  it('a request destroyed while it waits leaves the queue', function()
    local srv = serve(function(req, res)
      co.sleep(30)
      res:finish('x')
    end)
    local a = agent({keepAlive = true, maxSockets = 1})
    local name = '127.0.0.1:' .. srv.port .. ':'
    local r1 = start({host = '127.0.0.1', port = srv.port, agent = a})
    local r2 = start({host = '127.0.0.1', port = srv.port, agent = a})
    assert.equal(1, #a.requests[name])
    r2.req:destroy()
    assert.is_nil(a.requests[name])
    assert.is_true(h.wait(function() return r1.done and r2.closed end))
    assert.equal('ECONNRESET', r2.err.code)
    assert.equal('socket hang up', r2.err.message)
    assert.equal('x', r1.body)
  end)

  it('a waiting request keeps what it writes, in order, and its timeout',
      function()
    local srv = serve(function(req, res)
      co.sleep(20)
      res:finish(req.method .. ' ' .. tostring(req.headers['transfer-encoding'])
        .. ' ' .. req:body())
    end)
    local a = agent({keepAlive = true, maxSockets = 1})
    local r1 = start({host = '127.0.0.1', port = srv.port, agent = a})
    local rec = {}
    local req = http.request({host = '127.0.0.1', port = srv.port, agent = a,
      method = 'POST'}, function(res)
      local parts = {}
      res:on('data', function(d) parts[#parts + 1] = d end)
      res:on('end', function() rec.body = table.concat(parts) end)
    end)
    assert.is_nil(req.socket)
    assert.is_true(req:write('one '))
    req:write('two ')
    req:setTimeout(5000)
    req:finish('three')
    assert.is_true(h.wait(function() return r1.done and rec.body end))
    assert.equal('POST chunked one two three', rec.body)
    assert.equal(5000, req.timeout)
    assert.is_true(req.reusedSocket)
    -- Once the socket is back in the pool, the request's abort and destroy
    -- leave it alone.
    local sock = req.socket
    assert.is_true(h.wait(function() return sock._agentFree ~= nil end))
    req:abort()
    req:destroy()
    h.sleep(10)
    assert.is_false(sock.destroyed)
    assert.equal(1, srv.conns)
  end)

  it('is the default of http.get (the global agent)', function()
    local srv = serve(function(req, res) res:finish('g') end)
    local r1 = get({host = '127.0.0.1', port = srv.port})
    local r2 = get({host = '127.0.0.1', port = srv.port})
    assert.equal('g', r2.body)
    assert.is_false(r1.req.reusedSocket)
    assert.is_true(r2.req.reusedSocket)
    assert.equal(1, srv.conns)
    local free = http.globalAgent.freeSockets['127.0.0.1:' .. srv.port .. ':']
    assert.equal(1, #free)
    -- A free socket does not keep the process alive.
    assert.is_false(free[1]._handle:has_ref())
  end)
end)
