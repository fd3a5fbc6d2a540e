-- websocket: the 'upgrade' event and RFC 6455 against Node's `ws` package
-- (Debian's node-ws) as the independent peer, both ways; close paths,
-- protocol errors, a peer that never reads, many idle connections, the
-- cluster-wide broadcast and a rolling reload.

local h = require('helper')
local cjson = require('cjson')
local uv = require('uv')
local websocket = require('websocket')
local co = require('co')

-- next_event(emitter, name) -> its arguments, in a coroutine.
local function next_event(em, name)
  return co.await(function(cb) em:once(name, cb) end)
end

local PEER = h.root .. '/spec/fixtures/ws_peer.js'
local NODE_ENV = {NODE_PATH = '/usr/share/nodejs'}

-- node(mode, target[, arg...]) -> the peer's process.
local function node(...)
  return h.spawn({PEER, ...}, {cmd = 'node', env = NODE_ENV})
end

-- events(p) -> the peer's JSON lines so far, decoded.
local function events(p)
  local list = {}
  for line in p.stdout:gmatch('[^\n]+') do
    list[#list + 1] = cjson.decode(line)
  end
  return list
end

local function find(list, key)
  for _, e in ipairs(list) do if e[key] ~= nil then return e end end
end

-- An echo server on the spec's process: srv, wss, port, url.
local function echo_server(opts)
  local srv, port = h.serve(function(_, res) res:finish('plain') end)
  opts = opts or {}
  opts.server = srv
  local wss = websocket.server(opts)
  wss:on('connection', function(ws)
    ws:on('message', function(data, binary)
      ws:send(data, {binary = binary})
    end)
  end)
  return srv, wss, port, 'ws://127.0.0.1:' .. port .. '/'
end

describe('http server upgrade', function()
  after_each(h.close_servers)

  it("hands the socket and the bytes after the head to 'upgrade'", function()
    local srv, port = h.serve(function(_, res) res:finish('plain') end)
    local got
    srv:on('upgrade', function(req, socket, head)
      got = {req.url, req.headers.upgrade, head}
      socket:write('HTTP/1.1 101 Switching Protocols\r\nUpgrade: echo\r\n'
        .. 'Connection: Upgrade\r\n\r\n')
      local function on_data(d)
        socket:write('echo:' .. d)
        if d:find('bye') then socket:finish() end
      end
      if #head > 0 then on_data(head) end
      socket:on('data', on_data)
    end)
    local data = h.raw(port, {'GET /u HTTP/1.1\r\nHost: x\r\nUpgrade: echo\r\n'
      .. 'Connection: Upgrade\r\n\r\nfirst', 'bye'})
    assert.same({'/u', 'echo'}, {got[1], got[2]})
    assert.equal('first', got[3]:sub(1, 5))
    assert.truthy(data:find('^HTTP/1.1 101'))
    assert.truthy(data:find('echo:[%w]*bye'))
  end)

  it("reports a reset as the socket's 'error', then 'close'", function()
    local srv, port = h.serve(function(_, res) res:finish('plain') end)
    local got = {}
    srv:on('upgrade', function(_, socket)
      socket:on('error', function(e) got[#got + 1] = e.code end)
      socket:on('close', function(hadError) got[#got + 1] = hadError end)
      socket:write('HTTP/1.1 101 Switching Protocols\r\n\r\n')
    end)
    local p = node('reset', tostring(port))
    assert.is_true(p:wait(5000))
    assert.truthy(h.wait(function() return #got == 2 end, 3000))
    assert.same({'ECONNRESET', true}, got)
  end)

  it('answers an Upgrade request as a plain one without a listener', function()
    local _, port = h.serve(function(_, res) res:finish('plain') end)
    local data = h.raw(port, 'GET / HTTP/1.1\r\nHost: x\r\nUpgrade: echo\r\n'
      .. 'Connection: Upgrade, close\r\n\r\n')
    assert.truthy(data:find('^HTTP/1.1 200'))
    assert.truthy(data:find('plain$'))
  end)

  it("gives CONNECT to 'connect', else closes the connection", function()
    local srv, port = h.serve(function(_, res) res:finish('plain') end)
    local req = 'CONNECT example.com:443 HTTP/1.1\r\n'
      .. 'Host: example.com:443\r\n\r\n'
    local data, err = h.raw(port, req)
    assert.equal('', data)
    srv:on('connect', function(r, socket)
      socket:finish('HTTP/1.1 200 Connection Established\r\n\r\n' .. r.url)
    end)
    data = h.raw(port, req)
    assert.equal('HTTP/1.1 200 Connection Established\r\n\r\n'
      .. 'example.com:443', data)
  end)
end)

describe("http server 'clientError'", function()
  after_each(h.close_servers)

  it('lets the listener answer a bad request, as Node', function()
    local srv, port = h.serve(function(_, res) res:finish('plain') end)
    local bad = 'GET / HTTP/1.1\r\nHost: x\r\nBad Header: 1\r\n\r\n'
    assert.truthy(h.raw(port, bad):find('^HTTP/1.1 400 Bad Request'))
    local got
    srv:on('clientError', function(err, socket)
      got = err.code
      socket:finish('HTTP/1.1 400 Bad Request\r\nX-Mine: 1\r\n\r\n')
    end)
    local data = h.raw(port, bad)
    assert.equal('HTTP/1.1 400 Bad Request\r\nX-Mine: 1\r\n\r\n', data)
    assert.truthy(got:find('^HPE_'))
    -- A listener that destroys: nothing is written.
    srv:removeAllListeners('clientError')
    srv:on('clientError', function(_, socket) socket:destroy() end)
    assert.equal('', (h.raw(port, bad)))
    -- A good request on the same server is untouched.
    assert.equal(200, (h.get(port, '/')))
  end)
end)

describe('websocket server against ws', function()
  after_each(h.close_servers)

  it('echoes text, binary, fragmented and large messages; ping; close',
      function()
    local _, wss, _, url = echo_server()
    local closed
    wss:on('connection', function(ws)
      ws:on('close', function(code, reason) closed = {code, reason} end)
    end)
    local p = node('echo', url)
    assert.is_true(p:wait(10000))
    local ev = events(p)
    local msgs = {}
    for _, e in ipairs(ev) do
      if e.msg then msgs[#msgs + 1] = e.msg .. tostring(e.bin) end
    end
    assert.same({'68656c6c6ffalse', '000102fftrue', '667261676d656e74false',
      'len200000false'}, msgs)
    assert.same({pong = 'p1'}, find(ev, 'pong'))
    assert.same({close = 1000, reason = 'done'}, find(ev, 'close'))
    assert.truthy(h.wait(function() return closed end, 2000))
    assert.same({1000, 'done'}, closed)
  end)

  it('closes with 1007 on invalid UTF-8 in a text message', function()
    local _, wss, _, url = echo_server()
    local err
    wss:on('connection', function(ws)
      ws:on('error', function(e) err = e end)
    end)
    local p = node('send', url, 'c328', 'text')
    assert.is_true(p:wait(10000))
    assert.equal(1007, find(events(p), 'close').close)
    assert.equal('WS_ERR_INVALID_UTF8', err.code)
  end)

  it('closes with 1009 on a message over maxPayload', function()
    local _, _, _, url = echo_server({maxPayload = 1000})
    local p = node('send', url, ('61'):rep(1001), 'binary')
    assert.is_true(p:wait(10000))
    assert.equal(1009, find(events(p), 'close').close)
    -- At the limit it is echoed.
    p = node('send', url, ('61'):rep(1000), 'binary')
    assert.truthy(p:wait_output('"echoed":1000', 5000))
    p:stop()
  end)

  it('closes with 1002 on an unmasked client frame', function()
    local _, _, port = echo_server()
    local hs = 'GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n'
      .. 'Connection: Upgrade\r\n'
      .. 'Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n'
      .. 'Sec-WebSocket-Version: 13\r\n\r\n'
    local data = h.raw(port, hs .. '\129\5hello')
    assert.truthy(data:find(
      'Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=', 1, true))
    local frame = data:match('\r\n\r\n(.*)$')
    assert.equal('\136\2\3\234', frame:sub(1, 4))
  end)

  it('answers many messages of one read in order, and what is sent just '
      .. 'before terminate()', function()
    local srv, port = h.serve(function(_, res) res:finish('plain') end)
    local wss = websocket.server({server = srv})
    wss:on('connection', function(ws)
      ws:on('message', function(data)
        if data == 'bye' then
          ws:send('last')
          ws:terminate()
        else
          ws:send('re:' .. data)
        end
      end)
    end)
    local hs = 'GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n'
      .. 'Connection: Upgrade\r\n'
      .. 'Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n'
      .. 'Sec-WebSocket-Version: 13\r\n\r\n'
    -- Masked with a zero key: the payload as it is.
    local function frame(text)
      return '\129' .. string.char(0x80 + #text) .. '\0\0\0\0' .. text
    end
    local frames, want = {}, {}
    for i = 1, 50 do
      frames[i] = frame('m' .. i)
      want[i] = '\129' .. string.char(#('re:m' .. i)) .. 're:m' .. i
    end
    want[51] = '\129\4last'
    local data = h.raw(port, hs .. table.concat(frames) .. frame('bye'),
      {timeout = 3000})
    local body = data:match('\r\n\r\n(.*)$')
    assert.equal(table.concat(want), body)
  end)

  it("is not cut by the http server's idle timeout", function()
    local srv, wss, _, url = echo_server()
    local timeouts = 0
    srv:setTimeout(50, function() timeouts = timeouts + 1 end)
    local got = h.go(function()
      local ws = websocket.connect(url)
      next_event(ws, 'open')
      co.sleep(200)            -- idle past the server's timeout
      ws:send('still here')
      local m = ws:receive()
      ws:close()
      return m
    end, 5000)
    assert.equal('still here', got)
    assert.equal(0, timeouts)
    assert.is_true(wss ~= nil)
  end)

  it('refuses a bad handshake with 400', function()
    local _, _, port = echo_server()
    local status = h.get(port, '/', {Upgrade = 'websocket',
      Connection = 'Upgrade', ['Sec-WebSocket-Version'] = '13'})
    assert.equal(400, status)
  end)

  it('closes from the server: code and reason, terminate (1006)', function()
    local _, wss, _, url = echo_server()
    wss:on('connection', function(ws)
      ws:on('message', function(m)
        if m == 'ready' then ws:close(4000, 'bye') end
      end)
    end)
    local p = node('listen', url)
    assert.is_true(p:wait(10000))
    assert.same({close = 4000, reason = 'bye'}, find(events(p), 'close'))
    wss:removeAllListeners('connection')
    wss:on('connection', function(ws)
      ws:on('message', function() ws:terminate() end)
    end)
    p = node('listen', url)
    assert.is_true(p:wait(10000))
    assert.equal(1006, find(events(p), 'close').close)
  end)

  it('picks a protocol with handleProtocols; pings on keepAlive', function()
    local _, wss, _, url = echo_server({keepAlive = 100,
      handleProtocols = function(list) return list[2] end})
    local p = node('listen', url, 'one,two')
    assert.truthy(h.wait(function() return p.stdout:find('ping') end, 3000))
    p:stop()
    local ev = events(p)
    assert.equal('two', find(ev, 'open').protocol)
    assert.truthy(find(ev, 'ping'))
  end)

  it('bounds the output to a client that never reads', function()
    local _, wss, port = echo_server({maxBufferedAmount = 1024 * 1024})
    local err, most, closed = nil, 0, false
    wss:on('connection', function(ws)
      ws:on('error', function(e) err = e end)
      ws:on('close', function() closed = true end)
      local chunk = ('z'):rep(65536)
      for _ = 1, 2000 do
        if ws.readyState ~= websocket.OPEN then break end
        ws:send(chunk)
        if ws.bufferedAmount > most then most = ws.bufferedAmount end
      end
    end)
    -- A raw client: the handshake, then it never reads.
    local c = uv.new_tcp()
    c:connect('127.0.0.1', port, function()
      c:write('GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n'
        .. 'Connection: Upgrade\r\n'
      .. 'Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n'
        .. 'Sec-WebSocket-Version: 13\r\n\r\n')
    end)
    assert.truthy(h.wait(function() return closed end, 5000))
    c:close()
    assert.equal('ERR_WS_BUFFER_FULL', err.code)
    assert.truthy(most <= 1024 * 1024 + 65536 + 16, most)
  end)

  it("reports bufferedAmount and 'drain' for a large message", function()
    local _, wss, _, url = echo_server({maxBufferedAmount = 64 * 1024 * 1024})
    local before, drained, after
    wss:on('connection', function(ws)
      ws:on('message', function(m)
        if m ~= 'ready' then return end
        ws:on('drain', function()
          drained = true
          after = ws.bufferedAmount
        end)
        -- More than the kernel's socket buffers take at once.
        ws:send(('d'):rep(32 * 1024 * 1024))
        before = ws.bufferedAmount
      end)
    end)
    local p = node('listen', url)
    assert.truthy(h.wait(function() return drained end, 10000))
    p:stop()
    assert.truthy(before > 0)
    assert.equal(0, after)
  end)

  it('holds 1,000 idle connections', function()
    local _, wss, _, url = echo_server()
    local p = node('many', url, '1000')
    assert.truthy(p:wait_output('"open":1000', 20000))
    assert.truthy(h.wait(function() return wss:size() == 1000 end, 5000))
    p.handle:kill('sigterm')
    assert.truthy(h.wait(function() return wss:size() == 0 end, 10000))
    p:wait(5000)
  end)

  it('listens on a port of its own; close() says going away (1001)',
      function()
    local port = h.free_port()
    local wss = websocket.server({port = port})
    local listening = false
    wss:on('listening', function() listening = true end)
    wss:on('connection', function(ws)
      ws:on('message', function() wss:close() end)
    end)
    assert.truthy(h.wait(function() return listening end, 3000))
    local p = node('listen', 'ws://127.0.0.1:' .. port .. '/')
    assert.is_true(p:wait(10000))
    assert.same({close = 1001, reason = ''}, find(events(p), 'close'))
    assert.truthy(h.wait(function() return not wss._httpServer.listening end,
      3000))
  end)

  it('serves ws:receive() in a coroutine', function()
    local _, wss, _, url = h.serve(function(_, res) res:finish('') end)
    local srv, port = h.serve(function(_, res) res:finish('') end)
    local w = websocket.server({server = srv})
    local seen = {}
    w:on('connection', function(ws)
      while true do
        local data, typ = ws:receive()
        if not data then seen[#seen + 1] = typ break end
        seen[#seen + 1] = data .. ':' .. typ
        ws:send(data:upper())
      end
    end)
    local p = node('echo', 'ws://127.0.0.1:' .. port .. '/')
    assert.is_true(p:wait(10000))
    assert.same({'hello:text', '\0\1\2\255:binary', 'fragment:text'},
      {seen[1], seen[2], seen[3]})
    assert.equal('closed', seen[5])
  end)
end)

describe('websocket permessage-deflate against ws', function()
  after_each(h.close_servers)

  it('is off unless asked for, and compresses both ways when it is', function()
    local _, _, _, url = echo_server()
    local p = node('zecho', url)
    assert.is_true(p:wait(10000))
    local ev = events(p)
    assert.equal('', ev[1].extensions)
    h.close_servers()
    _, _, _, url = echo_server({perMessageDeflate = true})
    p = node('zecho', url)
    assert.is_true(p:wait(10000))
    ev = events(p)
    assert.equal('permessage-deflate', ev[1].extensions)
    for i = 2, 5 do assert.same({same = true}, ev[i]) end
    -- 250 KB of messages came back in far fewer bytes.
    assert.truthy(find(ev, 'bytesRead').bytesRead < 10000)
    assert.equal(1000, find(ev, 'close').close)
  end)

  it('closes with 1009 when a message inflates past maxPayload', function()
    local _, _, _, url = echo_server({perMessageDeflate = true,
      maxPayload = 60000})
    local p = node('zecho', url)
    assert.is_true(p:wait(10000))
    assert.equal(1009, find(events(p), 'close').close)
  end)

  it("compresses the client's messages for a ws server", function()
    local p = node('server', '-', 'deflate')
    assert.truthy(p:wait_output('port', 5000))
    local port = events(p)[1].port
    local got = h.go(function()
      local ws = websocket.connect('ws://127.0.0.1:' .. port .. '/',
        {perMessageDeflate = true})
      next_event(ws, 'open')
      local out = {ws.extensions}
      for i = 1, 3 do
        local m = ('m' .. i):rep(30000)
        ws:send(m)
        out[#out + 1] = ws:receive() == m
      end
      ws:send('hi')
      out[#out + 1] = ws:receive()
      ws:close()
      next_event(ws, 'close')
      return out
    end, 10000)
    assert.same({'permessage-deflate', true, true, true, 'hi'}, got)
    assert.equal('permessage-deflate; client_max_window_bits',
      find(events(p), 'path').extensions)
    p:stop()
  end)
end)

describe('websocket client against ws', function()
  it('echoes, pings, and closes both ways', function()
    local p = node('server')
    assert.truthy(p:wait_output('port', 5000))
    local port = events(p)[1].port
    local got = h.go(function()
      local ws = websocket.connect('ws://127.0.0.1:' .. port .. '/chat?x=1')
      local closed
      ws:on('close', function(code, reason) closed = {code, reason} end)
      next_event(ws, 'open')
      local out = {}
      ws:send('hi')
      out[#out + 1] = {ws:receive()}
      ws:send('\0\255', {binary = true})
      out[#out + 1] = {ws:receive()}
      ws:send('a', {fin = false})
      ws:send('b', {fin = false})
      ws:send('c')
      out[#out + 1] = {ws:receive()}
      local big = ('q'):rep(100000)
      ws:send(big)
      local back = ws:receive()
      out[#out + 1] = back == big
      ws:ping('pp')
      ws:send('bye')
      out[#out + 1] = {ws:receive()}
      if not closed then next_event(ws, 'close') end
      out[#out + 1] = closed
      return out
    end, 10000)
    assert.same({{'hi', 'text'}, {'\0\255', 'binary'}, {'abc', 'text'}, true,
      {nil, 'closed'}, {4001, 'server bye'}}, got)
    assert.truthy(p:wait_output('"ping":"pp"', 2000))
    local ev = events(p)
    assert.equal('/chat?x=1', find(ev, 'path').path)
    -- A client-initiated close.
    got = h.go(function()
      local ws = websocket.connect('ws://127.0.0.1:' .. port .. '/')
      ws:on('open', function() ws:close(1000, 'client bye') end)
      return {next_event(ws, 'close')}
    end)
    assert.same({1000, 'client bye'}, got)
    assert.truthy(p:wait_output('client bye', 2000))
    p:stop()
  end)

  it('reports a refused connection and a non-101 answer', function()
    local port = h.free_port()
    local ws = websocket.connect('ws://127.0.0.1:' .. port .. '/')
    local err, code
    ws:on('error', function(e) err = e end)
    ws:on('close', function(c) code = c end)
    assert.truthy(h.wait(function() return code end, 3000))
    assert.equal(1006, code)
    assert.truthy(err)
    local srv, p2 = h.serve(function(_, res) res:finish('no') end)
    ws = websocket.connect('ws://127.0.0.1:' .. p2 .. '/')
    err, code = nil, nil
    ws:on('error', function(e) err = e end)
    ws:on('close', function(c) code = c end)
    assert.truthy(h.wait(function() return code end, 3000))
    assert.truthy(err.message:find('Unexpected server response: 200'))
    h.close_servers()
  end)
end)

describe('websocket across a cluster', function()
  local function cluster_script(port)
    return ([[
local cluster = require('cluster')
local http = require('http')
local websocket = require('websocket')
local co = require('co')

-- next_event(emitter, name) -> its arguments, in a coroutine.
local function next_event(em, name)
  return co.await(function(cb) em:once(name, cb) end)
end
if cluster.isPrimary then
  cluster.fork() cluster.fork()
  local up = 0
  cluster:on('listening', function()
    up = up + 1
    if up == 2 then print('ready') end
  end)
  return
end
local srv = http.createServer(function(_, res) res:finish('') end)
local wss = websocket.server{server = srv}
wss:on('connection', function(ws)
  ws:subscribe('news')
  ws:send('worker ' .. cluster.worker.id)
  ws:on('message', function(m)
    if m == 'go' then
      websocket.broadcast('news', 'first from ' .. cluster.worker.id)
      websocket.broadcast('news', 'second from ' .. cluster.worker.id)
    end
  end)
end)
srv:listen(%d, '127.0.0.1')
]]):format(port)
  end

  it('broadcasts from worker 1 to clients on both workers, once, in order',
      function()
    local port = h.free_port()
    local path = h.tmpfile(cluster_script(port))
    local p = h.spawn({path}, {env = {LUACLUSTER_SCHED = 'rr'}})
    assert.truthy(p:wait_output('ready', 10000))
    local n = node('spread', 'ws://127.0.0.1:' .. port .. '/')
    assert.is_true(n:wait(10000))
    local counts = find(events(n), 'counts').counts
    assert.same({['w1:first from 1'] = 1, ['w1:second from 1'] = 1,
      ['w2:first from 1'] = 1, ['w2:second from 1'] = 1}, counts)
    p:stop()
  end)

  it('cluster.broadcast reaches every worker once, from a worker and the '
      .. 'primary',
      function()
    local p = h.script([[
local cluster = require('cluster')
if cluster.isPrimary then
  local a, b = cluster.fork(), cluster.fork()
  local online, got = 0, 0
  cluster:on('online', function()
    online = online + 1
    if online == 2 then
      cluster.broadcast('from primary')
      a:send('go')
    end
  end)
  cluster:on('message', function(w, m)
    print(m)
    got = got + 1
    if got == 4 then
      setTimeout(function() a:kill() b:kill() end, 300)
    end
  end)
  return
end
process:on('message', function(m)
  if m == 'go' then cluster.broadcast({n = cluster.worker.id}) return end
  process.send('worker ' .. cluster.worker.id .. ' got '
    .. (type(m) == 'table' and ('n=' .. m.n) or m))
end)
]])
    local lines = {}
    for l in p.stdout:gmatch('[^\n]+') do lines[#lines + 1] = l end
    table.sort(lines)
    assert.same({'worker 1 got from primary', 'worker 1 got n=1',
      'worker 2 got from primary', 'worker 2 got n=1'}, lines)
  end)

  it('closes WebSockets with 1001 on a rolling reload; clients reconnect',
      function()
    local port = h.free_port()
    local path = h.tmpfile(cluster_script(port))
    local p = h.spawn({path}, {env = {LUACLUSTER_SCHED = 'rr'}})
    assert.truthy(p:wait_output('ready', 10000))
    local n = node('reconnect', 'ws://127.0.0.1:' .. port .. '/')
    assert.truthy(n:wait_output('"round":0', 5000))
    uv.kill(p.pid, 'sighup')
    assert.truthy(n:wait_output('"round":1', 15000))
    local ev = events(n)
    assert.same({close = 1001, reason = ''}, find(ev, 'close'))
    n:stop()
    p:stop()
  end)
end)

describe('wss (WebSocket over TLS)', function()
  local certs = require('certs')
  local C
  setup(function() C = certs.make() end)
  teardown(function() certs.remove() end)
  after_each(h.close_servers)

  -- An echo server on https (the spec's process): port.
  local function wss_server()
    local srv = require('https').createServer({key = C.server.key,
      cert = C.server.cert}, function(_, res) res:finish('plain') end)
    h.track_server(srv)
    local wss = websocket.server({server = srv})
    wss:on('connection', function(ws)
      ws:on('message', function(data, binary)
        ws:send(data, {binary = binary})
      end)
    end)
    local port
    srv:listen(0, '127.0.0.1', function() port = srv:address().port end)
    assert.is_true(h.wait(function() return port end, 2000))
    return port
  end

  it("echoes Node's ws client, frames decrypted under the upgrade",
      function()
    local port = wss_server()
    -- 127.0.0.1, verified against the certificate's IP name: Node resolves
    -- localhost to ::1 first where /etc/hosts says so, and we listen on v4.
    local p = h.spawn({PEER, 'echo', 'wss://127.0.0.1:' .. port .. '/'},
      {cmd = 'node', env = {NODE_PATH = '/usr/share/nodejs',
        NODE_EXTRA_CA_CERTS = C.dir .. '/ca.crt'}})
    assert.is_true(p:wait(10000))
    local ev = events(p)
    local msgs = {}
    for _, e in ipairs(ev) do
      if e.msg then msgs[#msgs + 1] = e.msg .. tostring(e.bin) end
    end
    assert.same({'68656c6c6ffalse', '000102fftrue', '667261676d656e74false',
      'len200000false'}, msgs)
    assert.same({close = 1000, reason = 'done'}, find(ev, 'close'))
  end)

  it('connects our client to wss:// with verification', function()
    local port = wss_server()
    local got = {}
    local ws = websocket.connect('wss://localhost:' .. port .. '/',
      {ca = C.ca})
    ws:on('open', function() ws:send('hi') end)
    ws:on('message', function(d) got.msg = d ws:close(1000, 'ok') end)
    ws:on('close', function(code) got.close = code end)
    assert.is_true(h.wait(function() return got.close end, 5000))
    assert.same({msg = 'hi', close = 1000}, got)
    -- An unknown CA is refused: 'error', then 'close'.
    local bad = {}
    local ws2 = websocket.connect('wss://localhost:' .. port .. '/')
    ws2:on('error', function(e) bad.err = e.code end)
    ws2:on('close', function(code) bad.close = code end)
    assert.is_true(h.wait(function() return bad.close end, 5000))
    assert.equal('UNABLE_TO_GET_ISSUER_CERT_LOCALLY', bad.err) -- as Node
  end)
end)

describe('websocket output at exit', function()
  local certs = require('certs')
  local C
  setup(function() C = certs.make() end)
  teardown(function()
    certs.remove()
    h.cleanup()
  end)

  -- Messages sent from a timer (their write waits for the next loop turn)
  -- just before process.exit() still reach the client, over ws and wss.
  for _, scheme in ipairs({'ws', 'wss'}) do
    it('sends what a timer wrote before process.exit(), ' .. scheme,
        function()
      local port = h.free_port()
      local path = h.tmpfile([[
        local websocket = require('websocket')
        local env = process.env
        local srv
        if env.SCHEME == 'wss' then
          local function read(p)
            local f = assert(io.open(p)) local s = f:read('*a') f:close()
            return s
          end
          srv = require('https').createServer({key = read(env.KEY),
            cert = read(env.CERT)}, function(_, res) res:finish() end)
        else
          srv = require('http').createServer(function(_, res)
            res:finish() end)
        end
        websocket.server({server = srv}):on('connection', function(ws)
          setTimeout(function()
            for i = 1, 3 do ws:send('m' .. i) end
            process.exit(0)
          end, 20)
        end)
        srv:listen(tonumber(env.PORT), '127.0.0.1', function()
          print('ready')
        end)
      ]])
      local p = h.spawn({path}, {env = {PORT = tostring(port),
        SCHEME = scheme, KEY = C.server.keyfile, CERT = C.server.certfile}})
      assert.truthy(p:wait_output('ready', 5000), p.stderr)
      local got = h.go(function()
        local ws = websocket.connect(scheme .. '://127.0.0.1:' .. port .. '/',
          {ca = C.ca})
        local out = {}
        for i = 1, 3 do out[i] = ws:receive() end
        return out
      end, 5000)
      assert.same({'m1', 'm2', 'm3'}, got)
      assert.is_true(p:wait(5000))
      assert.equal(0, p.code)
      os.remove(path)
    end)
  end
end)
