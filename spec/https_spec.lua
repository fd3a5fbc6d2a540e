-- https: the HTTP server with TLS run in C under its connections, and the
-- client (https.get, fetch) over tls.connect, against certificates the
-- spec makes with the openssl CLI (spec/certs.lua); curl and
-- openssl s_client as the outside clients.

local h = require('helper')
local uv = require('uv')
local https = require('https')
local http = require('http')
local tls = require('tls')
local certs = require('certs')

local C

local function serve(opts, handler)
  local o = {key = C.server.key, cert = C.server.cert}
  for k, v in pairs(opts or {}) do o[k] = v end
  local s = https.createServer(o, handler or function(req, res)
    res:finish('hello ' .. req.url)
  end)
  local ready = false
  s:listen(0, '127.0.0.1', function() ready = true end)
  assert(h.wait(function() return ready end, 2000), 'listen timed out')
  h.track_server(s)
  return s, s:address().port
end

-- get(opts) -> status, body | nil, err: one https.get, waited for.
local function get(opts)
  local status, body, err
  local req = https.get(opts, function(res)
    local parts = {}
    res:on('data', function(d) parts[#parts + 1] = d end)
    res:on('end', function()
      status, body = res.statusCode, table.concat(parts)
    end)
  end)
  req:on('error', function(e) err = e end)
  assert(h.wait(function() return status or err end, 5000), 'no answer')
  return status, body, err
end

-- run(cmd, args) -> the process once it exited (curl, openssl).
local function run(cmd, args, stdin)
  return h.run(args, {cmd = cmd, timeout = 10000, stdin = stdin})
end

describe('https', function()
  setup(function() C = certs.make() end)
  teardown(function() certs.remove() end)
  after_each(function()
    https.globalAgent:destroy()
    h.close_servers()
  end)

  it('serves TLS that our client and curl verify against the CA',
      function()
    local seen
    local _, port = serve(nil, function(req, res)
      seen = {req.socket.encrypted, req.socket:getProtocol()}
      res:finish('hello ' .. req.url)
    end)
    local status, body, err = get({host = 'localhost', port = port,
      path = '/ours', ca = C.ca})
    assert.is_nil(err)
    assert.equal(200, status)
    assert.equal('hello /ours', body)
    assert.same({true, 'TLSv1.3'}, seen)
    local p = run('curl', {'-sS', '--cacert', C.dir .. '/ca.crt',
      'https://localhost:' .. port .. '/curl', 'https://127.0.0.1:' .. port
      .. '/again'})
    assert.equal(0, p.code, p.stderr)
    assert.equal('hello /curlhello /again', p.stdout)
    -- TLS 1.2 too (the default minimum).
    p = run('curl', {'-sS', '--tlsv1.2', '--tls-max', '1.2', '--cacert',
      C.dir .. '/ca.crt', 'https://localhost:' .. port .. '/v12'})
    assert.equal('hello /v12', p.stdout)
  end)

  it("emits 'secureConnection' once a handshake is done, with its socket",
    function()
    local s, port = serve({requestCert = true, ca = C.ca,
      rejectUnauthorized = false})
    local seen = {}
    s:on('secureConnection', function(sock)
      seen[#seen + 1] = {sock.encrypted, sock:getProtocol(),
        sock.authorized, sock:getPeerCertificate().subject.CN}
    end)
    local p = run('curl', {'-sS', '--cacert', C.dir .. '/ca.crt', '--cert',
      C.client.certfile, '--key', C.client.keyfile,
      'https://localhost:' .. port .. '/a', 'https://localhost:' .. port ..
      '/b'})
    assert.equal(0, p.code, p.stderr)
    assert.equal('hello /ahello /b', p.stdout)
    -- One connection (curl keeps it alive), one event.
    assert.same({{true, 'TLSv1.3', true, 'client'}}, seen)
    -- Without a listener, nothing is called.
    s:removeAllListeners('secureConnection')
    p = run('curl', {'-sS', '--cacert', C.dir .. '/ca.crt',
      'https://localhost:' .. port .. '/c'})
    assert.equal('hello /c', p.stdout)
    assert.equal(1, #seen)
  end)

  it('passes checkServerIdentity through https.get, as Node', function()
    local _, port = serve()
    local seen
    local status, body, err = get({host = '127.0.0.1', port = port,
      path = '/pinned', ca = C.ca, servername = 'pinned.example',
      agent = false, checkServerIdentity = function(host, cert)
        seen = {host, cert.subject.CN}
      end})
    assert.is_nil(err)
    assert.equal(200, status, body)
    assert.equal('hello /pinned', body)
    assert.same({'pinned.example', 'localhost'}, seen)
    -- Without it, the name is checked and refused.
    local _, _, err2 = get({host = '127.0.0.1', port = port, path = '/',
      ca = C.ca, servername = 'pinned.example', agent = false})
    assert.equal('ERR_TLS_CERT_ALTNAME_INVALID', err2.code)
  end)

  it('fetch takes https URLs, keep-alive through https.globalAgent',
      function()
    local conns = 0
    local s, port = serve()
    s:on('connection', function() conns = conns + 1 end)
    local r1, r2 = h.go(function()
      local a = assert(http.fetch('https://localhost:' .. port .. '/1',
        {ca = C.ca}))
      local b = assert(http.fetch('https://localhost:' .. port .. '/2',
        {ca = C.ca}))
      return a, b
    end)
    assert.equal('hello /1', r1.body)
    assert.equal('hello /2', r2.body)
    assert.equal(1, conns)
  end)

  it('resumes sessions on new connections (the agent\'s session cache)',
      function()
    local _, port = serve()
    local agent = https.Agent({keepAlive = false})
    local reused = {}
    for i = 1, 3 do
      local done = false
      https.get({host = 'localhost', port = port, ca = C.ca, agent = agent},
        function(res)
          reused[i] = res.socket:isSessionReused()
          res:on('data', function() end)
          res:on('end', function() done = true end)
        end)
      assert.is_true(h.wait(function() return done end, 5000))
    end
    agent:destroy()
    assert.same({false, true, true}, reused)
  end)

  it('takes http.inject in the clear', function()
    local s = https.createServer({key = C.server.key, cert = C.server.cert},
      function(req, res) res:finish('in ' .. req.method) end)
    local r = http.inject(s, {method = 'POST', body = 'x'})
    assert.equal(200, r.statusCode)
    assert.equal('in POST', r.body)
  end)

  it('logs a refused client certificate when nothing listens', function()
    local p = h.script([[
      local https, tls = require('https'), require('tls')
      local function read(p)
        local f = assert(io.open(p, 'rb')) local s = f:read('*a') f:close()
        return s
      end
      local dir = ']] .. C.dir .. [['
      local s = https.createServer({key = read(dir .. '/server.key'),
        cert = read(dir .. '/server.crt'), ca = read(dir .. '/ca.crt'),
        requestCert = true}, function(_, res) res:finish('no') end)
      s:listen(0, '127.0.0.1', function()
        local c = tls.connect({host = 'localhost', port = s:address().port,
          ca = read(dir .. '/ca.crt'), key = read(dir .. '/rogue.key'),
          cert = read(dir .. '/rogue.crt')})
        c:on('error', function() end)
        c:on('close', function() s:close() end)
      end)
    ]])
    assert.equal(0, p.code, p.stderr)
    assert.truthy(p.stderr:find('https: client certificate refused from '
      .. '127.0.0.1: certificate verify failed: unable to get local issuer '
      .. 'certificate (ERR_SSL_CERTIFICATE_VERIFY_FAILED)', 1, true),
      p.stderr)
    assert.is_nil(p.stderr:find('PRIVATE KEY', 1, true))
  end)

  it('refuses what does not verify, with Node\'s codes', function()
    local _, port = serve()
    -- Not in the system's store.
    local _, _, err = get({host = 'localhost', port = port})
    assert.equal('UNABLE_TO_GET_ISSUER_CERT_LOCALLY', err.code)
    local r, ferr = h.go(function()
      return http.fetch('https://localhost:' .. port .. '/')
    end)
    assert.is_nil(r)
    assert.equal('UNABLE_TO_GET_ISSUER_CERT_LOCALLY', ferr.code)
    -- A name the certificate does not carry.
    _, _, err = get({host = '127.0.0.1', port = port, ca = C.ca,
      servername = 'wrong.example'})
    assert.equal('ERR_TLS_CERT_ALTNAME_INVALID', err.code)
    -- Unless told not to verify.
    local status = get({host = 'localhost', port = port,
      rejectUnauthorized = false})
    assert.equal(200, status)
    -- A self-signed certificate.
    local _, port2 = serve({key = C.selfsigned.key,
      cert = C.selfsigned.cert})
    _, _, err = get({host = 'localhost', port = port2, ca = C.ca})
    assert.equal('DEPTH_ZERO_SELF_SIGNED_CERT', err.code)
    local p = run('curl', {'-sS', 'https://localhost:' .. port .. '/'})
    assert.not_equal(0, p.code)
  end)

  it('picks the certificate by SNI (addContext)', function()
    local s, port = serve()
    s:addContext('other.example', {key = C.other.key, cert = C.other.cert})
    local function subject(name)
      local cn, err
      local sock
      sock = tls.connect({host = '127.0.0.1', port = port, ca = C.ca,
        servername = name}, function()
        cn = sock:getPeerCertificate().subject.CN
        sock:destroy()
      end)
      sock:on('error', function(e) err = e end)
      assert(h.wait(function() return cn or err end, 5000))
      return cn, err
    end
    assert.equal('other.example', subject('other.example'))
    assert.equal('localhost', subject('localhost'))
    local p = run('curl', {'-sS', '--cacert', C.dir .. '/ca.crt',
      '--resolve', 'other.example:' .. port .. ':127.0.0.1',
      'https://other.example:' .. port .. '/sni'})
    assert.equal('hello /sni', p.stdout)
  end)

  it('asks SNICallback for the context (Node\'s, answered at once)',
      function()
    local asked = {}
    local other = tls.createSecureContext({key = C.other.key,
      cert = C.other.cert})
    local _, port = serve({SNICallback = function(name, cb)
      asked[#asked + 1] = name
      cb(nil, name == 'other.example' and other or nil)
    end})
    local p = run('curl', {'-sS', '--cacert', C.dir .. '/ca.crt',
      '--resolve', 'other.example:' .. port .. ':127.0.0.1',
      'https://other.example:' .. port .. '/cb'})
    assert.equal('hello /cb', p.stdout)
    p = run('curl', {'-sS', '--cacert', C.dir .. '/ca.crt',
      'https://localhost:' .. port .. '/default'})
    assert.equal('hello /default', p.stdout)
    assert.same({'other.example', 'localhost'}, asked)
  end)

  it('negotiates ALPN (http/1.1 by default)', function()
    local _, port = serve()
    local proto, sock
    sock = tls.connect({host = 'localhost', port = port, ca = C.ca,
      ALPNProtocols = {'h2', 'http/1.1'}}, function()
      proto = sock.alpnProtocol
      sock:destroy()
    end)
    assert(h.wait(function() return proto ~= nil end, 5000))
    assert.equal('http/1.1', proto)
    local p = run('openssl', {'s_client', '-connect', '127.0.0.1:' .. port,
      '-alpn', 'h2,http/1.1', '-CAfile', C.dir .. '/ca.crt'}, '')
    assert.truthy(p.stdout:find('ALPN protocol: http/1.1', 1, true),
      p.stdout)
  end)

  it('requires client certificates with requestCert', function()
    local who
    local errs = {}
    local s, port = serve({requestCert = true, ca = C.ca},
      function(req, res)
        who = {req.socket.authorized,
          req.socket:getPeerCertificate().subject.CN}
        res:finish('hi client')
      end)
    s:on('tlsClientError', function(e) errs[#errs + 1] = e.code end)
    local status, body = get({host = 'localhost', port = port, ca = C.ca,
      cert = C.client.cert, key = C.client.key})
    assert.equal(200, status)
    assert.equal('hi client', body)
    assert.same({true, 'client'}, who)
    local p = run('curl', {'-sS', '--cacert', C.dir .. '/ca.crt', '--cert',
      C.client.certfile, '--key', C.client.keyfile,
      'https://localhost:' .. port .. '/'})
    assert.equal('hi client', p.stdout)
    -- No certificate, or one of another CA: refused in the handshake.
    p = run('curl', {'-sS', '--cacert', C.dir .. '/ca.crt',
      'https://localhost:' .. port .. '/'})
    assert.not_equal(0, p.code)
    p = run('curl', {'-sS', '--cacert', C.dir .. '/ca.crt', '--cert',
      C.rogue.certfile, '--key', C.rogue.keyfile,
      'https://localhost:' .. port .. '/'})
    assert.not_equal(0, p.code)
    assert.is_true(h.wait(function() return #errs >= 2 end, 3000))
    assert.equal('ERR_SSL_PEER_DID_NOT_RETURN_A_CERTIFICATE', errs[1])
    assert.truthy(errs[2]:find('CERTIFICATE', 1, true), errs[2])
  end)

  describe('bad input', function()
    it('answers plain HTTP on the TLS port with nginx\'s 400', function()
      local _, port = serve()
      local data, err = h.raw(port, 'GET / HTTP/1.1\r\nHost: x\r\n\r\n')
      assert.is_nil(err)
      assert.truthy(data:find('^HTTP/1%.1 400 Bad Request\r\n'), data)
      assert.truthy(data:find('The plain HTTP request was sent to HTTPS '
        .. 'port', 1, true))
      local len = tonumber(data:match('Content%-Length: (%d+)'))
      assert.equal(len, #data:match('\r\n\r\n(.*)$'))
    end)

    it('closes on a garbage handshake, reports it, and serves on',
        function()
      local errs = {}
      local s, port = serve()
      s:on('tlsClientError', function(e) errs[#errs + 1] = e.code end)
      local data, err = h.raw(port, ('\22\3\1\0\5garbage'):rep(20))
      assert.is_nil(err)
      assert.is_nil(data:find('HTTP/', 1, true))
      assert.is_true(h.wait(function() return #errs == 1 end, 2000))
      assert.truthy(errs[1]:find('^ERR_SSL_'), errs[1])
      assert.equal(200, (get({host = 'localhost', port = port, ca = C.ca})))
    end)

    it('drops a stalled handshake after handshakeTimeout', function()
      local errs = {}
      local s, port = serve({handshakeTimeout = 300})
      s:on('tlsClientError', function(e) errs[#errs + 1] = e.code end)
      local t0 = uv.hrtime()
      -- The start of a record, never finished.
      local data, err = h.raw(port, '\22\3\1\2\0', {timeout = 4000})
      local ms = (uv.hrtime() - t0) / 1e6
      assert.is_nil(err)
      assert.equal('', data)
      assert.is_true(ms >= 250 and ms < 3000, 'closed after ' .. ms .. ' ms')
      assert.same({'ERR_TLS_HANDSHAKE_TIMEOUT'}, errs)
    end)

    it('serves others while one client floods it with handshakes',
        function()
      local _, port = serve({handshakeTimeout = 5000})
      -- 200 connections that stall mid-handshake, and 200 that send
      -- garbage, all at once from one client.
      local conns = {}
      for i = 1, 400 do
        local c = uv.new_tcp()
        conns[i] = c
        c:connect('127.0.0.1', port, function(e)
          if e or c:is_closing() then return end
          c:write(i % 2 == 0 and '\22\3\1\2\0'
            or ('\22\3\1\0\5junk'):rep(50))
          c:read_start(function() end)
        end)
      end
      local t0 = uv.hrtime()
      local status = get({host = 'localhost', port = port, ca = C.ca})
      local ms = (uv.hrtime() - t0) / 1e6
      for _, c in ipairs(conns) do
        if not c:is_closing() then c:close() end
      end
      assert.equal(200, status)
      assert.is_true(ms < 3000, 'took ' .. ms .. ' ms')
    end)

    it('keeps output bounded for a client that does not read, and ' ..
        'delivers all of it once it does', function()
      local chunk = ('x'):rep(65536)
      local written = 0
      local _, port = serve(nil, function(_, res)
        res:setHeader('Content-Length', 64 * 65536)
        local n = 0
        local function pump()
          while n < 64 do
            n = n + 1
            written = written + #chunk
            local ok = res:write(chunk)
            if not ok then return res:once('drain', pump) end
          end
          res:finish()
        end
        pump()
      end)
      local got, done = 0, false
      local sock
      sock = tls.connect({host = 'localhost', port = port, ca = C.ca},
        function()
          sock:write('GET /big HTTP/1.1\r\nHost: x\r\n'
            .. 'Connection: close\r\n\r\n')
        end)
      sock:on('data', function(d) got = got + #d end)
      sock:on('end', function() done = true end)
      sock:pause()
      h.sleep(800)
      -- Stopped well short of the 4 MiB: what the kernel's buffers and
      -- the high-water mark hold.
      assert.is_true(written < 64 * 65536, 'wrote ' .. written)
      sock:resume()
      assert.is_true(h.wait(function() return done end, 10000))
      sock:destroy()
      assert.is_true(got > 64 * 65536, 'got ' .. got)
    end)
  end)

  describe('under cluster', function()
    local FIXTURE = 'spec/fixtures/https_cluster.lua'
    after_each(function() h.cleanup() end)

    local function start(env)
      env.PORT = env.PORT or tostring(h.free_port())
      env.WORKERS = env.WORKERS or '2'
      local p = h.spawn({FIXTURE}, {env = env})
      p.port = tonumber(env.PORT)
      assert.is_true(h.wait(function()
        local _, n = p.stdout:gsub('listening\t', '')
        return n >= 2 or p.exited
      end, 5000) and not p.exited, p.stderr)
      return p
    end

    local function s_client(port, sess, flag)
      local p = run('openssl', {'s_client', '-connect', '127.0.0.1:' .. port,
        '-CAfile', C.dir .. '/ca.crt', '-servername', 'localhost', flag,
        sess, '-ign_eof'}, 'GET / HTTP/1.0\r\n\r\n')
      return p.stdout:match('\nworker (%d+)'),
        p.stdout:match('\n(%a+), TLSv1%.3')
    end

    it('resumes a session on another worker (shared ticket keys)',
        function()
      -- Round robin: the primary hands connections out in turn, so the
      -- next ones land on the other worker.
      local p = start({KEY = C.server.keyfile, CERT = C.server.certfile,
        LUACLUSTER_SCHED = 'rr'})
      local sess = C.dir .. '/session.pem'
      local first, how = s_client(p.port, sess, '-sess_out')
      assert.equal('New', how)
      assert.truthy(first)
      local others = 0
      for _ = 1, 4 do
        local w, how2 = s_client(p.port, sess, '-sess_in')
        assert.equal('Reused', how2)
        if w ~= first then others = others + 1 end
      end
      assert.is_true(others >= 1, 'never landed on another worker')
      p:stop()
    end)

    it('rotates the ticket keys each period, in every worker', function()
      -- Periods of 2 s: a ticket sealed in period n opens in n and n + 1
      -- (the previous key), not from n + 2 on.
      local period = 2
      local p = start({KEY = C.server.keyfile, CERT = C.server.certfile,
        LUACLUSTER_SCHED = 'rr', LUACLUSTER_TLS_TICKET_PERIOD = period})
      local sess = C.dir .. '/rotating.pem'
      local n
      for _ = 1, 3 do
        local t0 = os.time()
        local _, how = s_client(p.port, sess, '-sess_out')
        assert.equal('New', how)
        if math.floor(t0 / period) == math.floor(os.time() / period) then
          n = math.floor(t0 / period)
          break
        end
      end
      assert.truthy(n, 'every try straddled a period\'s end')
      local _, how = s_client(p.port, sess, '-sess_in')
      assert.equal('Reused', how)
      -- Into period n + 2 (the clock's seconds; a little past its start).
      while math.floor(os.time() / period) < n + 2 do h.sleep(100) end
      local _, how2 = s_client(p.port, sess, '-sess_in')
      assert.equal('New', how2)
      p:stop()
    end)

    it('serves a certificate swapped on disk after SIGHUP, with no ' ..
        'failed request', function()
      local key, cert = C.dir .. '/live.key', C.dir .. '/live.crt'
      local function install(which)
        for path, data in pairs({[key] = C[which].key,
            [cert] = C[which].cert}) do
          local f = assert(io.open(path .. '.tmp', 'wb'))
          f:write(data)
          f:close()
          assert(os.rename(path .. '.tmp', path))
        end
      end
      install('server')
      local p = start({KEY = key, CERT = cert})
      local serials, failed, ok, stop = {}, {}, 0, false
      -- Full handshakes (a resumed session shows the certificate it was
      -- made with).
      local agent = https.Agent({keepAlive = false, maxCachedSessions = 0})
      local function one()
        if stop then return end
        local req = https.get({host = 'localhost', port = p.port, ca = C.ca,
          agent = agent}, function(res)
          local serial = res.socket:getPeerCertificate().serialNumber
          res:on('data', function() end)
          res:on('end', function()
            ok = ok + 1
            serials[#serials + 1] = serial
            one()
          end)
        end)
        req:on('error', function(e)
          failed[#failed + 1] = e.code
          one()
        end)
      end
      one()
      h.sleep(500)
      install('server2')
      p:kill('sighup')
      assert.is_true(h.wait(function()
        return p.stdout:find('reloaded\tnil') ~= nil
      end, 10000), p.stdout .. p.stderr)
      h.sleep(300)
      stop = true
      assert.is_true(h.wait(function() return #serials + #failed >= ok end))
      h.sleep(200)
      agent:destroy()
      p:stop()
      assert.same({}, failed)
      assert.is_true(ok > 20, 'too few requests: ' .. ok)
      assert.not_equal(serials[1], serials[#serials])
      print(('\n  https reload under requests: %d ok, %d failed'):format(ok,
        #failed))
    end)
  end)
end)
