-- tls: TLSSocket (net.Socket over a TLS engine), tls.createServer and
-- tls.connect, and sslhandshake on the sync-style sockets, against
-- certificates the spec makes with the openssl CLI (spec/certs.lua).

local h = require('helper')
local uv = require('uv')
local tls = require('tls')
local net = require('net')
local https = require('https')
local certs = require('certs')

local C
local servers = {}

local function listen(opts, onsecure)
  local o = {key = C.server.key, cert = C.server.cert}
  for k, v in pairs(opts or {}) do o[k] = v end
  -- false: not given (a pfx in their place).
  if o.key == false then o.key = nil end
  if o.cert == false then o.cert = nil end
  local s = tls.createServer(o, onsecure)
  local ready = false
  s:listen(0, '127.0.0.1', function() ready = true end)
  assert(h.wait(function() return ready end, 2000), 'listen timed out')
  servers[#servers + 1] = s
  return s, s:address().port
end

-- An echo server: what comes is sent back; 'bye' ends.
local function echo(opts)
  return listen(opts, function(sock)
    -- A client destroyed with bytes unread resets the connection.
    sock:on('error', function() end)
    sock:on('data', function(d)
      sock:write(d)
      if d:find('bye', 1, true) then sock:finish() end
    end)
  end)
end

-- connect(opts) -> socket, state: waits for 'secureConnect' or 'error'.
local function connect(opts)
  local st = {data = ''}
  local sock = tls.connect(opts)
  sock:on('secureConnect', function() st.secure = true end)
  sock:on('error', function(e) st.err = e end)
  sock:on('data', function(d) st.data = st.data .. d end)
  sock:on('end', function() st.ended = true end)
  sock:on('close', function() st.closed = true end)
  assert(h.wait(function() return st.secure or st.err end, 5000),
    'no handshake')
  return sock, st
end

describe('tls', function()
  setup(function() C = certs.make() end)
  teardown(function() certs.remove() end)
  after_each(function()
    for _, s in ipairs(servers) do s:close() end
    servers = {}
  end)

  it("describes the peer's certificate with Node's fields, as openssl does",
    function()
    local _, port = echo()
    local sock, st = connect({host = 'localhost', port = port, ca = C.ca})
    assert.is_nil(st.err)
    local c = sock:getPeerCertificate()
    sock:destroy()
    local function x509(args)
      local f = assert(io.popen('openssl x509 -noout ' .. args .. ' -in ' ..
        C.server.certfile))
      local out = f:read('*a')
      f:close()
      return out
    end
    assert.equal('localhost', c.subject.CN)
    assert.equal('luacluster-test-ca', c.issuer.CN)
    assert.equal('DNS:localhost, IP Address:127.0.0.1', c.subjectaltname)
    assert.is_false(c.ca)
    assert.equal(256, c.bits)
    assert.equal('prime256v1', c.asn1Curve)
    assert.equal('P-256', c.nistCurve)
    assert.equal(x509('-serial'):match('serial=(%x+)'), c.serialNumber)
    assert.equal(x509('-startdate'):match('notBefore=([^\n]+)'),
      c.valid_from)
    assert.equal(x509('-enddate'):match('notAfter=([^\n]+)'), c.valid_to)
    assert.matches('GMT$', c.valid_to)
    for _, md in ipairs({{'sha1', 'fingerprint'},
        {'sha256', 'fingerprint256'}, {'sha512', 'fingerprint512'}}) do
      assert.equal(x509('-fingerprint -' .. md[1]):match('=([%x:]+)'),
        c[md[2]])
    end
    local f = assert(io.popen('openssl x509 -outform DER -in ' ..
      C.server.certfile))
    local der = f:read('*a')
    f:close()
    assert.equal(der, c.raw)
    assert.truthy(#c.pubkey == 91)   -- a P-256 SubjectPublicKeyInfo
  end)

  -- A line protocol with STARTTLS, as SMTP's: plain greeting, EHLO,
  -- STARTTLS, then TLS on the same connection (new tls.TLSSocket(socket)),
  -- where what comes goes back upper-cased (and QUIT ends).
  local function starttls_server(events)
    local srv = net.createServer(function(sock)
      sock:on('error', function() end)
      sock:write('220 luacluster ESMTP\r\n')
      local buf = ''
      local function ondata(d)
        buf = buf .. d
        while true do
          local line, rest = buf:match('^(.-)\r?\n(.*)$')
          if not line then return end
          buf = rest
          if line:upper():match('^EHLO') then
            sock:write('250-luacluster\r\n250 STARTTLS\r\n')
          elseif line:upper() == 'STARTTLS' then
            sock:removeListener('data', ondata)
            sock:write('220 2.0.0 Ready to start TLS\r\n')
            local t = tls.TLSSocket:new(sock, {isServer = true,
              key = C.server.key, cert = C.server.cert})
            t:on('secure', function()
              events[#events + 1] = 'secure ' .. t:getProtocol()
            end)
            t:on('error', function(e) events[#events + 1] = e.code end)
            t:on('data', function(x)
              t:write(x:upper())
              if x:find('QUIT') then t:finish() end
            end)
            t:on('end', function() t:finish() end)
            return
          else
            sock:write('500 unknown\r\n')
          end
        end
      end
      sock:on('data', ondata)
    end)
    local ready = false
    srv:listen(0, '127.0.0.1', function() ready = true end)
    assert(h.wait(function() return ready end, 2000))
    servers[#servers + 1] = srv
    return srv:address().port
  end

  it('starts TLS on a plain connection (STARTTLS), both sides', function()
    local events = {}
    local port = starttls_server(events)
    local got = ''
    local c = net.connect(port, '127.0.0.1')
    c:on('data', function(d) got = got .. d end)
    assert(h.wait(function() return got:find('ESMTP') end, 3000))
    c:write('EHLO me\r\n')
    assert(h.wait(function() return got:find('250 STARTTLS') end, 3000))
    c:write('STARTTLS\r\n')
    assert(h.wait(function() return got:find('220 2.0.0') end, 3000))
    c:removeAllListeners('data')
    local st = {data = ''}
    local t = tls.connect({socket = c, servername = 'localhost', ca = C.ca},
      function() st.secure = true end)
    t:on('error', function(e) st.err = e end)
    t:on('data', function(d) st.data = st.data .. d end)
    t:on('close', function() st.closed = true end)
    t:write('hello over tls\n')    -- before the handshake: it waits
    assert(h.wait(function() return st.secure or st.err end, 5000))
    assert.is_nil(st.err)
    assert.is_true(t.authorized)
    assert.is_true(c.destroyed)    -- the plain socket handed its connection on
    assert(h.wait(function() return st.data:find('\n') end, 5000))
    assert.equal('HELLO OVER TLS\n', st.data)
    assert.same({'secure TLSv1.3'}, events)
    t:finish()
    assert(h.wait(function() return st.closed end, 5000))
    -- A client that does not trust the certificate is refused.
    got = ''
    local c2 = net.connect(port, '127.0.0.1')
    c2:on('data', function(d) got = got .. d end)
    assert(h.wait(function() return got:find('ESMTP') end, 3000))
    c2:write('STARTTLS\r\n')
    assert(h.wait(function() return got:find('220 2.0.0') end, 3000))
    local bad = {}
    local t2 = tls.connect({socket = c2, servername = 'localhost'})
    t2:on('error', function(e) bad.err = e end)
    t2:on('secureConnect', function() bad.secure = true end)
    assert(h.wait(function() return bad.err end, 5000))
    assert.is_nil(bad.secure)
    assert.equal('UNABLE_TO_GET_ISSUER_CERT_LOCALLY', bad.err.code)
  end)

  it("serves STARTTLS to openssl s_client -starttls smtp", function()
    local events = {}
    local port = starttls_server(events)
    local p = h.run({'s_client', '-starttls', 'smtp', '-connect',
      '127.0.0.1:' .. port, '-CAfile', C.dir .. '/ca.crt',
      '-verify_return_error', '-quiet'},
      {cmd = 'openssl', timeout = 10000, stdin = 'ping over tls\nQUIT\n'})
    assert.equal(0, p.code, p.stderr)
    assert.truthy(p.stdout:find('PING OVER TLS', 1, true), p.stdout)
    assert.same({'secure TLSv1.3'}, events)
  end)

  it('connects TLS over a socket still connecting', function()
    local _, port = echo()
    local c = net.connect(port, '127.0.0.1')
    local st = {data = ''}
    local t = tls.connect({socket = c, servername = 'localhost', ca = C.ca})
    t:on('secureConnect', function() st.secure = true end)
    t:on('error', function(e) st.err = e end)
    t:on('data', function(d) st.data = st.data .. d end)
    t:write('early bye')
    assert(h.wait(function() return st.data:find('bye') or st.err end, 5000))
    assert.is_nil(st.err)
    assert.is_true(st.secure)
    assert.equal('early bye', st.data)
    t:destroy()
  end)

  it('serves a PKCS#12 (pfx) bundle with its passphrase, as Node', function()
    local path = C.dir .. '/server.pfx'
    assert(os.execute(('openssl pkcs12 -export -inkey %s/server.key -in '
      .. '%s/server.crt -certfile %s/ca.crt -passout pass:s3cret -out %s')
      :format(C.dir, C.dir, C.dir, path)) == 0)
    local bundle = certs.read(path)
    local _, port = echo({key = false, cert = false, pfx = bundle,
      passphrase = 's3cret'})
    local sock, st = connect({host = 'localhost', port = port, ca = C.ca})
    assert.is_nil(st.err)
    assert.is_true(sock.authorized)
    assert.equal('localhost', sock:getPeerCertificate().subject.CN)
    sock:destroy()
    -- The object form, with its own passphrase.
    local _, port2 = echo({key = false, cert = false,
      pfx = {{buf = bundle, passphrase = 's3cret'}}})
    sock, st = connect({host = 'localhost', port = port2, ca = C.ca})
    assert.is_nil(st.err)
    sock:destroy()
    -- A wrong passphrase, or bytes that are not PKCS#12: an error that
    -- says so, with OpenSSL's reason as the code (Node's ERR_OSSL_*).
    local ok, err = pcall(tls.createSecureContext,
      {pfx = bundle, passphrase = 'wrong'}, true)
    assert.is_false(ok)
    assert.matches('^ERR_OSSL_.*MAC_VERIFY_FAILURE$', err.code)
    assert.matches('pfx', err.message)
    ok, err = pcall(tls.createSecureContext, {pfx = 'not a pfx'}, true)
    assert.is_false(ok)
    assert.matches('^ERR_OSSL_', err.code)
    assert.matches('pfx', err.message)
  end)

  it('has getCiphers, rootCertificates and checkServerIdentity, as Node',
      function()
    local ciphers = tls.getCiphers()
    assert.truthy(#ciphers > 10)
    local set = {}
    for _, c in ipairs(ciphers) do set[c] = true end
    assert.is_true(set.tls_aes_256_gcm_sha384)
    assert.is_true(set['ecdhe-ecdsa-aes128-gcm-sha256'])
    -- Debian's bundle, each one PEM that OpenSSL reads.
    local roots = tls.rootCertificates
    assert.truthy(#roots > 50)
    assert.matches('^%-%-%-%-%-BEGIN CERTIFICATE', roots[1])
    assert.is_table(tls.createSecureContext({ca = roots[1]}))
    -- The peer's certificate as getPeerCertificate gives it.
    local _, port = echo()
    local sock, st = connect({host = 'localhost', port = port, ca = C.ca})
    assert.is_nil(st.err)
    local cert = sock:getPeerCertificate()
    sock:destroy()
    assert.is_nil(tls.checkServerIdentity('localhost', cert))
    assert.is_nil(tls.checkServerIdentity('LOCALHOST.', cert))
    assert.is_nil(tls.checkServerIdentity('127.0.0.1', cert))
    local e = tls.checkServerIdentity('example.com', cert)
    assert.equal('ERR_TLS_CERT_ALTNAME_INVALID', e.code)
    assert.matches("not in the cert's altnames", e.reason)
    e = tls.checkServerIdentity('10.1.2.3', cert)
    assert.matches("IP: 10.1.2.3 is not in the cert's list", e.reason)
    -- Wildcards cover one label only; the CN counts only without DNS names.
    local wild = {subject = {CN = 'ignored.example'},
      subjectaltname = 'DNS:*.example.org'}
    assert.is_nil(tls.checkServerIdentity('a.example.org', wild))
    assert.is_table(tls.checkServerIdentity('a.b.example.org', wild))
    assert.is_table(tls.checkServerIdentity('example.org', wild))
    assert.is_table(tls.checkServerIdentity('ignored.example', wild))
    assert.is_nil(tls.checkServerIdentity('cn.example',
      {subject = {CN = 'cn.example'}}))
  end)

  it("takes checkServerIdentity in place of the host check, as Node",
      function()
    local _, port = echo()
    local seen
    -- The certificate is for localhost; the function decides instead.
    local sock, st = connect({host = '127.0.0.1', servername = 'other.name',
      port = port, ca = C.ca, checkServerIdentity = function(host, cert)
        seen = {host, cert.subject.CN}
        return nil
      end})
    assert.is_nil(st.err)
    assert.is_true(sock.authorized)
    assert.same({'other.name', 'localhost'}, seen)
    sock:destroy()
    -- Its error refuses the connection (rejectUnauthorized).
    local _, st2 = connect({host = 'localhost', port = port, ca = C.ca,
      checkServerIdentity = function(host, cert)
        return require('internal.errors').new('ERR_PINNED', 'not my pin')
      end})
    assert.equal('ERR_PINNED', st2.err.code)
    -- With the default check, a name not in the certificate is refused.
    local _, st3 = connect({host = '127.0.0.1', servername = 'other.name',
      port = port, ca = C.ca})
    assert.equal('ERR_TLS_CERT_ALTNAME_INVALID', st3.err.code)
  end)

  it('connects, verifies, echoes, ends', function()
    local _, port = echo()
    local sock, st = connect({host = 'localhost', port = port, ca = C.ca})
    assert.is_nil(st.err)
    assert.is_true(sock.authorized)
    assert.is_true(sock.encrypted)
    assert.equal('TLSv1.3', sock:getProtocol())
    assert.equal('localhost', sock:getPeerCertificate().subject.CN)
    local big = ('0123456789'):rep(100000)
    sock:write(big)
    sock:write('bye')
    assert.is_true(h.wait(function() return st.closed end, 5000))
    assert.equal(big .. 'bye', st.data)
    assert.is_true(st.ended)
  end)

  it('writes made before the handshake ends go out after it', function()
    local _, port = echo()
    local st = {data = ''}
    local sock = tls.connect({host = 'localhost', port = port, ca = C.ca})
    sock:write('early ')
    sock:finish('bye')
    sock:on('data', function(d) st.data = st.data .. d end)
    sock:on('close', function() st.closed = true end)
    assert.is_true(h.wait(function() return st.closed end, 5000))
    assert.equal('early bye', st.data)
  end)

  it('reports a server that does not verify, as Node', function()
    local _, port = echo()
    local _, st = connect({host = 'localhost', port = port})
    assert.equal('UNABLE_TO_GET_ISSUER_CERT_LOCALLY', st.err.code)
    local sock
    sock, st = connect({host = 'localhost', port = port,
      rejectUnauthorized = false})
    assert.is_nil(st.err)
    assert.is_false(sock.authorized)
    assert.equal('UNABLE_TO_GET_ISSUER_CERT_LOCALLY',
      sock.authorizationError)
    sock:destroy()
  end)

  it('resumes a session given back from getSession()', function()
    local _, port = echo()
    local sock, st = connect({host = 'localhost', port = port, ca = C.ca})
    -- TLS 1.3 tickets come after the handshake: one exchange first.
    sock:write('ping')
    assert.is_true(h.wait(function() return st.data == 'ping' end, 5000))
    local session = sock:getSession()
    assert.is_string(session)
    assert.is_false(sock:isSessionReused())
    sock:destroy()
    local sock2, st2 = connect({host = 'localhost', port = port, ca = C.ca,
      session = session})
    assert.is_nil(st2.err)
    assert.is_true(sock2:isSessionReused())
    sock2:destroy()
  end)

  it('picks the certificate by SNI: addContext and SNICallback',
      function()
    local s, port = echo()
    s:addContext('*.example', {key = C.other.key, cert = C.other.cert})
    local function cn(p, name)
      local sock, st = connect({host = '127.0.0.1', port = p,
        servername = name, rejectUnauthorized = false})
      assert.is_nil(st.err)
      local v = sock:getPeerCertificate().subject.CN
      sock:destroy()
      return v
    end
    assert.equal('other.example', cn(port, 'other.example'))
    assert.equal('localhost', cn(port, 'localhost'))
    local other = tls.createSecureContext({key = C.other.key,
      cert = C.other.cert})
    local _, port2 = listen({SNICallback = function(name, cb)
      cb(nil, name == 'pick.me' and other or nil)
    end}, function(sock) sock:on('error', function() end) end)
    assert.equal('other.example', cn(port2, 'pick.me'))
    assert.equal('localhost', cn(port2, 'not.me'))
  end)

  it('asks for client certificates (requestCert)', function()
    local who, errs = nil, {}
    local s, port = listen({requestCert = true, ca = C.ca}, function(sock)
      who = {sock.authorized, sock:getPeerCertificate().subject.CN}
      sock:finish('ok')
    end)
    s:on('tlsClientError', function(e) errs[#errs + 1] = e.code end)
    local _, st = connect({host = 'localhost', port = port, ca = C.ca,
      cert = C.client.cert, key = C.client.key})
    assert.is_nil(st.err)
    assert.is_true(h.wait(function() return st.closed end, 5000))
    assert.equal('ok', st.data)
    assert.same({true, 'client'}, who)
    -- Another CA's certificate: the server refuses it in the handshake
    -- (TLS 1.3: the client learns on its first read).
    _, st = connect({host = 'localhost', port = port, ca = C.ca,
      cert = C.rogue.cert, key = C.rogue.key})
    assert.is_true(h.wait(function() return st.closed end, 5000))
    assert.equal('', st.data)
    assert.is_true(h.wait(function() return #errs == 1 end, 3000))
    assert.truthy(errs[1]:find('CERTIFICATE', 1, true), errs[1])
  end)

  it('drops a stalled handshake (handshakeTimeout), reports garbage',
      function()
    local errs = {}
    local s, port = listen({handshakeTimeout = 300})
    s:on('tlsClientError', function(e) errs[#errs + 1] = e.code end)
    local data, err = h.raw(port, '\22\3\1\2\0', {timeout = 4000})
    assert.is_nil(err)
    assert.equal('', data)
    data, err = h.raw(port, 'GET / HTTP/1.1\r\n\r\n', {timeout = 4000})
    assert.is_nil(err)
    assert.is_true(h.wait(function() return #errs == 2 end, 2000))
    assert.equal('ERR_TLS_HANDSHAKE_TIMEOUT', errs[1])
    assert.equal('ERR_SSL_HTTP_REQUEST', errs[2])
  end)

  it('pauses and resumes reading over TLS', function()
    local chunk = ('y'):rep(65536)
    local sent = 0
    local _, port = listen(nil, function(sock)
      local function pump()
        while sent < 64 * #chunk do
          sent = sent + #chunk
          if not sock:write(chunk) then return sock:once('drain', pump) end
        end
        sock:finish()
      end
      pump()
    end)
    local sock, st = connect({host = 'localhost', port = port, ca = C.ca})
    sock:pause()
    h.sleep(600)
    assert.is_true(sent < 64 * #chunk, 'the server sent it all: ' .. sent)
    sock:resume()
    assert.is_true(h.wait(function() return st.ended end, 10000))
    assert.equal(64 * #chunk, #st.data)
    sock:destroy()
  end)

  describe('cosocket sslhandshake', function()
    after_each(function() h.close_servers() end)

    local function https_server()
      local s = https.createServer({key = C.server.key,
        cert = C.server.cert}, function(_, res) res:finish('secret') end)
      local ready = false
      s:listen(0, '127.0.0.1', function() ready = true end)
      assert(h.wait(function() return ready end, 2000))
      h.track_server(s)
      return s:address().port
    end

    local function exchange(sock)
      assert(sock:send('GET / HTTP/1.1\r\nHost: x\r\n\r\n'))
      local head = {}
      while true do
        local line = assert(sock:receive())
        if line == '' then break end
        head[#head + 1] = line
      end
      return head[1], sock:receive(6)
    end

    it('speaks TLS with ngx\'s signature, verifying when told',
        function()
      local port = https_server()
      local r = {h.go(function()
        local cosocket = require('cosocket')
        local s = cosocket.tcp()
        assert(s:connect('127.0.0.1', port))
        local sess, err = s:tlshandshake({server_name = 'localhost',
          verify = true, ca = C.ca})
        assert(sess, err)
        local status, body = exchange(s)
        assert(s:setkeepalive())
        -- From the pool: already secure.
        local s2 = cosocket.tcp()
        assert(s2:connect('127.0.0.1', port))
        local reused = s2:getreusedtimes()
        assert(s2:sslhandshake(false, 'localhost', true))
        local status2 = exchange(s2)
        s2:close()
        -- Not in the system's store / the wrong name.
        local s3 = cosocket.tcp()
        assert(s3:connect('127.0.0.1', port))
        local bad = {s3:sslhandshake(nil, 'localhost', true)}
        local s4 = cosocket.tcp()
        assert(s4:connect('127.0.0.1', port))
        local wrong = {s4:tlshandshake({server_name = 'nope.example',
          verify = true, ca = C.ca})}
        -- No verification asked: goes on.
        local s5 = cosocket.tcp()
        assert(s5:connect('127.0.0.1', port))
        local unverified = s5:sslhandshake(false, 'localhost', false)
        local status5 = exchange(s5)
        s5:close()
        return status, body, reused, status2, bad, wrong, unverified,
          status5
      end)}
      assert.equal('HTTP/1.1 200 OK', r[1])
      assert.equal('secret', r[2])
      assert.equal(1, r[3])
      assert.equal('HTTP/1.1 200 OK', r[4])
      assert.same({nil, '20: unable to get local issuer certificate'}, r[5])
      assert.same({nil, 'certificate host mismatch'}, r[6])
      assert.is_true(r[7])
      assert.equal('HTTP/1.1 200 OK', r[8])
    end)

    it('verifies against the system store (SSL_CERT_FILE here)', function()
      local port = https_server()
      local p = h.script([[
        local co = require('co')
        co.spawn(function()
          local s = require('cosocket').tcp()
          assert(s:connect('127.0.0.1', ]] .. port .. [[))
          print(s:sslhandshake(false, 'localhost', true))
          s:close()
        end)
      ]], {env = {SSL_CERT_FILE = C.dir .. '/ca.crt'}})
      assert.equal(0, p.code, p.stderr)
      assert.equal('true\n', p.stdout)
    end)

    it('gives up a handshake past the connect timeout', function()
      -- A listener that never answers.
      local srv, accepted = uv.new_tcp(), {}
      srv:bind('127.0.0.1', 0)
      srv:listen(8, function()
        local c = uv.new_tcp()
        srv:accept(c)
        accepted[#accepted + 1] = c
      end)
      local port = srv:getsockname().port
      local r = {h.go(function()
        local s = require('cosocket').tcp()
        s:settimeouts(300, 300, 300)
        assert(s:connect('127.0.0.1', port))
        return s:sslhandshake(nil, 'localhost', false)
      end)}
      srv:close()
      for _, c in ipairs(accepted) do c:close() end
      assert.same({nil, 'timeout'}, r)
    end)
  end)
end)
