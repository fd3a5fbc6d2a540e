-- Hostile clients against the real server, over loopback: floods that
-- never read, smuggling attempts, endless chunk extensions and trailers,
-- malformed request lines; and responses written from coroutines. Servers
-- whose memory is measured run as subprocesses (their RSS is theirs
-- alone); the others run in this process.

local uv = require('uv')
local h = require('helper')
local http = require('http')

------------------------------------------------------------------------------
-- Helpers.

local function rss_kb(pid)
  local f = io.open('/proc/' .. pid .. '/status')
  if not f then return 0 end
  local st = f:read('*a')
  f:close()
  return tonumber(st:match('VmRSS:%s*(%d+)')) or 0
end

-- start(src) runs src (which prints 'port N' once it listens) as a
-- subprocess; returns the process and the port.
local function start(src)
  local path = h.tmpfile(src)
  local p = h.spawn({path})
  assert(p:wait_output('port %d+', 5000), 'no port: ' .. p.stderr)
  os.remove(path)
  return p, tonumber(p.stdout:match('port (%d+)'))
end

-- A client that writes `unit` over and over for `ms` without reading,
-- keeping at most 256 KiB in its own queue. Returns the client: c.sent
-- (bytes), c.done, c:read() starts reading (c.got counts bytes, c.data
-- keeps the first 64 KiB), c:close().
local function flood(port, unit, ms)
  local c = {sent = 0, got = 0, data = '', done = false}
  c.tcp = uv.new_tcp()
  local deadline = uv.now() + ms
  local timer = uv.new_timer()
  c.tcp:connect('127.0.0.1', port, function(err)
    if err then c.err, c.done = err, true return end
    timer:start(0, 5, function()
      if uv.now() >= deadline or c.tcp:is_closing() then
        timer:stop()
        timer:close()
        c.done = true
        return
      end
      while c.tcp:get_write_queue_size() < 256 * 1024 do
        if not c.tcp:write(unit) then break end
        c.sent = c.sent + #unit
      end
    end)
  end)
  function c.read()
    c.tcp:read_start(function(err, chunk)
      if err or not chunk then c.closed = true return end
      c.got = c.got + #chunk
      if #c.data < 65536 then c.data = c.data .. chunk end
    end)
  end
  function c.close()
    if not c.tcp:is_closing() then c.tcp:close() end
  end
  return c
end

-- Floods port for ms from one client that never reads, sampling pid's RSS;
-- returns the client and the largest growth seen (KiB). A flood past 512
-- KiB (c.sent) is more than the server's unparsed-input limit (256 KiB):
-- it had to stop reading; the rest waits in the kernel's socket buffers.
local function flood_rss(pid, port, unit, ms)
  local base = rss_kb(pid)
  local peak = base
  local c = flood(port, unit, ms)
  h.wait(function()
    peak = math.max(peak, rss_kb(pid))
    return c.done
  end, ms + 5000)
  peak = math.max(peak, rss_kb(pid))
  return c, peak - base
end

local function count(s, pat)
  local n = 0
  for _ in s:gmatch(pat) do n = n + 1 end
  return n
end

local serve, close_servers = h.serve, h.close_servers

-- A server that records the URL of every request it dispatches.
local function recorder()
  local seen = {}
  local _, port = serve(function(req, res)
    seen[#seen + 1] = req.url
    res:finish('ok ' .. req.url)
  end)
  return port, seen
end

local function has(list, v)
  for _, x in ipairs(list) do if x == v then return true end end
  return false
end

local GET = 'GET / HTTP/1.1\r\nHost: x\r\n\r\n'

------------------------------------------------------------------------------

describe('a client that sends and never reads', function()
  after_each(h.cleanup)

  it('cannot grow an HTTP worker: parsing waits for its output to drain',
    function()
    local p, port = start([[
      local srv = require('http').createServer(function(req, res)
        res:finish(('x'):rep(200))
      end)
      srv:listen(0, '127.0.0.1', function()
        print('port ' .. srv:address().port)
      end)
    ]])
    local c, grown = flood_rss(p.pid, port, GET:rep(200), 3000)
    -- Another client is served meanwhile.
    local status = h.get(port, '/')
    assert.equal(200, status)
    assert.truthy(c.sent > 512 * 1024, 'the flood sent ' .. c.sent)
    assert.truthy(grown < 24 * 1024, 'RSS grew by ' .. grown .. ' KiB')
    -- Once the client reads, the requests it sent are answered.
    c.read()
    assert.is_true(h.wait(function() return c.got > c.sent end, 10000))
    c.close()
    assert.truthy(h.alive(p.pid))
  end)

  it('cannot grow the primary through the status endpoint', function()
    local port = h.free_port()
    local p = h.spawn({'-e', ([[
      local cluster = require('cluster')
      if cluster.isPrimary then
        cluster.setupPrimary({statusPort = %d})
        cluster.fork()
        cluster.on('listening', function() print('port %d') end)
      else
        require('http').createServer(function(req, res) res:finish('w') end)
          :listen(0, '127.0.0.1')
      end
    ]]):format(port, port)})
    assert.is_true(p:wait_output('port %d+', 5000), p.stderr)
    local c, grown = flood_rss(p.pid, port,
      ('GET /health HTTP/1.1\r\nHost: x\r\n\r\n'):rep(200), 3000)
    local status = h.get(port, '/health')
    assert.equal(200, status)
    assert.truthy(c.sent > 512 * 1024, 'the flood sent ' .. c.sent)
    assert.truthy(grown < 24 * 1024, 'RSS grew by ' .. grown .. ' KiB')
    c.close()
  end)

  it('cannot grow a net server that echoes what it reads', function()
    local p, port = start([[
      local net = require('net')
      local s = net.createServer(function(sock)
        sock:on('data', function(d) sock:write(d) end)
      end)
      s:listen(0, '127.0.0.1', function()
        print('port ' .. s:address().port)
      end)
    ]])
    local c, grown = flood_rss(p.pid, port, ('e'):rep(65536), 3000)
    assert.truthy(c.sent > 512 * 1024, 'the flood sent ' .. c.sent)
    assert.truthy(grown < 24 * 1024, 'RSS grew by ' .. grown .. ' KiB')
    -- Reading resumes: what was sent comes back.
    c.read()
    assert.is_true(h.wait(function() return c.got >= c.sent end, 10000))
    assert.equal(('e'):rep(100), c.data:sub(1, 100))
    c.close()
  end)
end)

describe('a response written from a coroutine', function()
  after_each(close_servers)

  it('reaches the client when finished inside coroutine.wrap', function()
    local _, port = serve(function(req, res)
      coroutine.wrap(function()
        res:writeHead(201, {['X-Co'] = 'yes'})
        res:finish('hi')
      end)()
    end)
    local status, body, headers = h.get(port, '/')
    assert.equal(201, status)
    assert.equal('hi', body)
    assert.equal('yes', headers['x-co'])
  end)

  it('reaches the client when written after the coroutine waited',
    function()
    local _, port = serve(function(req, res)
      local co = coroutine.create(function()
        res:setHeader('Content-Length', 7)
        res:write('one ')
        coroutine.yield()
        res:finish('two')
      end)
      coroutine.resume(co)
      setTimeout(function() coroutine.resume(co) end, 20)
    end)
    local status, body = h.get(port, '/')
    assert.equal(200, status)
    assert.equal('one two', body)
    -- And many in a row on one connection leave the stack as it was.
    local data = h.raw(port, GET:rep(50), {['until'] = function(d)
      return count(d, 'one two') == 50
    end})
    assert.equal(50, count(data, 'HTTP/1.1 200'))
  end)

  it('lets a worker forked from a suspended coroutine talk to the primary',
    function()
    local p = h.script([[
      local cluster = require('cluster')
      if cluster.isPrimary then
        CO = coroutine.create(function()
          local w = cluster.fork()
          w:on('message', function(m)
            print('got ' .. m)
            w:kill()
          end)
          coroutine.yield()
        end)
        coroutine.resume(CO)
        collectgarbage()
      else
        process:send('hello')
      end
    ]], {timeout = 10000})
    assert.equal(0, p.code, p.stderr)
    assert.equal('got hello\n', p.stdout)
  end)
end)

describe('request smuggling', function()
  after_each(close_servers)

  it('refuses a header line folded onto the one before (obs-fold)',
    function()
    local port, seen = recorder()
    local data = h.raw(port, 'POST / HTTP/1.1\r\nHost: x\r\n' ..
      ' Content-Length: 37\r\n\r\n' ..
      'GET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n')
    assert.truthy(data:find('^HTTP/1.1 400 '), data)
    assert.equal(0, #seen)
    data = h.raw(port, 'GET / HTTP/1.1\r\nHost: x\r\nA: b\r\n\tc\r\n\r\n')
    assert.truthy(data:find('^HTTP/1.1 400 '), data)
    assert.equal(0, #seen)
  end)

  it('refuses a bare LF after the last chunk', function()
    local port, seen = recorder()
    local data = h.raw(port, 'POST /first HTTP/1.1\r\nHost: x\r\n' ..
      'Transfer-Encoding: chunked\r\n\r\n0\r\n\n' ..
      'GET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n')
    assert.truthy(data:find('HTTP/1.1 400 '), data)
    assert.is_false(has(seen, '/smuggled'))
    assert.is_nil(data:find('ok /smuggled', 1, true))
  end)

  it('refuses bare LF line ends in the head', function()
    local port, seen = recorder()
    for _, raw in ipairs({
      'GET /a HTTP/1.1\r\nHost: x\r\n\nGET /smuggled HTTP/1.1\r\n' ..
        'Host: x\r\n\r\n',
      'GET /a HTTP/1.1\nHost: x\r\n\r\n',
      'POST /a HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n' ..
        '1\nx\r\n0\r\n\r\n',
    }) do
      local data = h.raw(port, raw)
      assert.truthy(data:find('HTTP/1.1 400 '), raw)
    end
    assert.is_false(has(seen, '/smuggled'))
    assert.is_false(has(seen, '/a') and #seen > 1)
  end)

  it('still serves pipelined requests with chunks, extensions and trailers',
    function()
    local port, seen = recorder()
    local data = h.raw(port, 'POST /one HTTP/1.1\r\nHost: x\r\n' ..
      'Transfer-Encoding: chunked\r\n\r\n5;name=value\r\nhello\r\n' ..
      '0\r\nTrailer-One: 1\r\n\r\nGET /two HTTP/1.1\r\nHost: x\r\n' ..
      'Connection: close\r\n\r\n')
    assert.equal(2, count(data, 'HTTP/1.1 200 '), data)
    assert.same({'/one', '/two'}, seen)
  end)
end)

describe('chunk extensions and trailers', function()
  after_each(close_servers)

  -- Sends head, then `piece` every few ms until the server closes or ms
  -- pass; returns what came back, whether the server closed, bytes sent.
  local function endless(port, head, piece, ms)
    local c = uv.new_tcp()
    local data, closed, sent, connected = '', false, 0, false
    c:connect('127.0.0.1', port, function(err)
      assert(not err, err)
      c:read_start(function(e, chunk)
        if e or not chunk then closed = true return end
        data = data .. chunk
      end)
      c:write(head)
      connected = true
    end)
    local deadline = uv.now() + ms
    h.wait(function()
      if connected and not closed and c:get_write_queue_size() < 65536 then
        c:write(piece)
        sent = sent + #piece
      end
      return closed or uv.now() >= deadline
    end, ms + 1000)
    c:close()
    return data, closed, sent
  end

  local CHUNKED = 'POST / HTTP/1.1\r\nHost: x\r\n' ..
    'Transfer-Encoding: chunked\r\n\r\n'

  it('are refused past maxHeaderSize: extensions 413', function()
    local _, port = serve(function(req, res)
      req:on('end', function() res:finish('done') end)
      req:resume()
    end)
    local data, closed, sent = endless(port, CHUNKED .. '1;',
      ('a'):rep(4096), 3000)
    assert.is_true(closed, 'the server kept reading ' .. sent .. ' bytes')
    assert.truthy(data:find('^HTTP/1.1 413 '), data)
    assert.truthy(sent < 1024 * 1024)
    -- Extensions within the limit are fine.
    data = h.raw(port, CHUNKED .. '1;' .. ('a'):rep(1000) .. '\r\nx\r\n' ..
      '0\r\n\r\n')
    assert.truthy(data:find('^HTTP/1.1 200 '), data)
  end)

  it('are refused past maxHeaderSize: trailers 431', function()
    local _, port = serve(function(req, res)
      req:on('end', function() res:finish('done') end)
      req:resume()
    end)
    local data, closed, sent = endless(port, CHUNKED .. '1\r\nx\r\n0\r\n',
      ('Trailer: x\r\n'):rep(300), 3000)
    assert.is_true(closed, 'the server kept reading ' .. sent .. ' bytes')
    assert.truthy(data:find('^HTTP/1.1 431 '), data)
    assert.truthy(sent < 1024 * 1024)
  end)
end)

describe('the request line and Host', function()
  after_each(close_servers)

  it('answers 400 to HTTP/1.1 without Host, as Node', function()
    local port, seen = recorder()
    local data = h.raw(port, 'GET /a HTTP/1.1\r\n\r\n')
    assert.truthy(data:find('^HTTP/1.1 400 '), data)
    data = h.raw(port, 'GET /b HTTP/1.0\r\n\r\n')
    assert.truthy(data:find('^HTTP/1.1 200 '), data)
    assert.same({'/b'}, seen)
  end)

  it('answers 400 to a target with a tab, a control or a byte >= 0x80',
    function()
    local port, seen = recorder()
    for _, target in ipairs({'/a\tb', '/a\128', '/\1', '/\127'}) do
      local data = h.raw(port, 'GET ' .. target .. ' HTTP/1.1\r\n' ..
        'Host: x\r\n\r\n')
      assert.truthy(data:find('^HTTP/1.1 400 '), data)
    end
    assert.same({}, seen)
  end)
end)

describe('a header value with CR or LF', function()
  after_each(h.cleanup)

  it('answers 500 (nothing was sent yet) and logs why', function()
    local p, port = start([[
      local srv = require('http').createServer(function(req, res)
        if req.url == '/bad' then
          res:writeHead(200, {['X-Bad'] = 'a\r\nSet-Cookie: evil'})
        end
        res:finish('body')
      end)
      srv:listen(0, '127.0.0.1', function()
        print('port ' .. srv:address().port)
      end)
    ]])
    local status, body, headers = h.get(port, '/bad')
    assert.equal(500, status)
    assert.equal('Internal Server Error', body)
    assert.is_nil(headers['set-cookie'])
    assert.is_true(h.wait(function()
      return p.stderr:find('Invalid character in header content', 1, true)
    end, 2000), p.stderr)
    -- The server goes on.
    assert.equal(200, (h.get(port, '/')))
  end)
end)
