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
end)
