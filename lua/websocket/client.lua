-- websocket.client: websocket.connect(url[, options]), `ws`'s client. A
-- net.Socket connects, sends the handshake (a random Sec-WebSocket-Key),
-- checks the 101 answer (Sec-WebSocket-Accept, the protocol) and hands the
-- socket to a WebSocket: frames parsed by runtime/ws (_ws.parser), sent
-- masked, each with a random key. wss:// connects with tls.connect (the
-- options are its too: ca, servername, rejectUnauthorized, ...).

local W = require('_ws')
local net = require('net')
local errors = require('internal.errors')
local WebSocket = require('websocket.socket')
local deflate = require('websocket.deflate')
local timers = require('timers')
local process = require('process')

local tonumber, pairs, ipairs, type, tostring, pcall = tonumber, pairs,
  ipairs, type, tostring, pcall

-- A handshake's response head past this is refused.
local MAX_HEAD = 16384
local DEFAULT_MAX_PAYLOAD = 100 * 1024 * 1024

local function b64(s)
  local chars =
    'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/'
  local out = {}
  for i = 1, #s, 3 do
    local a, b, c = s:byte(i, i + 2)
    local n = a * 65536 + (b or 0) * 256 + (c or 0)
    local q = {}
    for j = 3, 0, -1 do
      local v = math.floor(n / 64 ^ j) % 64
      q[#q + 1] = chars:sub(v + 1, v + 1)
    end
    if not b then q[3], q[4] = '=', '='
    elseif not c then q[4] = '=' end
    out[#out + 1] = table.concat(q)
  end
  return table.concat(out)
end

-- parse(url) -> secure, host, port, path, or nil, message.
local function parse(url)
  local scheme, rest = tostring(url):match('^(wss?)://(.+)$')
  if not scheme then return nil, 'Invalid URL: ' .. tostring(url) end
  local hostport, path = rest:match('^([^/?#]*)(.*)$')
  if path == '' then path = '/' end
  if path:sub(1, 1) == '?' then path = '/' .. path end
  path = path:gsub('#.*$', '')
  local host, port = hostport:match('^%[(.+)%]:?(%d*)$')
  if not host then host, port = hostport:match('^([^:]+):?(%d*)$') end
  if not host then return nil, 'Invalid URL: ' .. tostring(url) end
  local secure = scheme == 'wss'
  port = tonumber(port) or (secure and 443 or 80)
  return secure, host, port, path
end

-- wss://: tls.connect(port, host, options, cb), a net.Socket-shaped
-- stream (a build without TLS says so).
local function secure_connect(port, host, opts, cb)
  local ok, tls = pcall(require, 'tls')
  if not ok or type(tls) ~= 'table' or not tls.connect then
    return nil, 'wss:// needs TLS, which this build does not have'
  end
  return tls.connect(port, host, opts, cb)
end

local function parse_head(head)
  local status = tonumber(head:match('^HTTP/1%.1 (%d%d%d)'))
  local headers = {}
  for name, value in head:gmatch('\r\n([^:\r\n]+):[ \t]*([^\r\n]*)') do
    headers[name:lower()] = value:gsub('[ \t]+$', '')
  end
  return status, headers
end

-- connect(url[, protocols][, options]) -> a WebSocket (CONNECTING; 'open'
-- or 'error' then 'close' follow). options: headers, maxPayload,
-- handshakeTimeout (ms), maxBufferedAmount, perMessageDeflate (false by
-- default; true or {threshold, serverNoContextTakeover,
-- clientNoContextTakeover}); protocols, a string or list.
local function connect(url, protocols, opts)
  if type(protocols) == 'table' and #protocols == 0 then
    protocols, opts = nil, protocols
  end
  opts = opts or {}
  if type(protocols) == 'string' then protocols = {protocols} end
  local ws = WebSocket:new({url = url,
    maxBufferedAmount = opts.maxBufferedAmount})
  local function fail(message, code)
    if ws.readyState == WebSocket.CLOSED then return end
    local err = errors.new(code or 'WS_ERR_HANDSHAKE', message)
    ws.readyState = WebSocket.CLOSING
    if ws._sock then ws._sock:destroy() end
    process.nextTick(function()
      if ws:listenerCount('error') > 0 then ws:emit('error', err) end
      ws:_closed()
    end)
  end
  local secure, host, port, path = parse(url)
  if secure == nil then
    error(errors.new('ERR_INVALID_URL', host), 2)
  end
  local key = b64(W.random(16))
  local lines = {'GET ' .. path .. ' HTTP/1.1',
    'Host: ' .. host .. ((port == 80 or port == 443) and ''
      or (':' .. port)),
    'Upgrade: websocket', 'Connection: Upgrade',
    'Sec-WebSocket-Key: ' .. key, 'Sec-WebSocket-Version: 13'}
  if protocols then
    lines[#lines + 1] = 'Sec-WebSocket-Protocol: '
      .. table.concat(protocols, ', ')
  end
  local offer = deflate.offer(opts.perMessageDeflate)
  if offer then lines[#lines + 1] = 'Sec-WebSocket-Extensions: ' .. offer end
  for k, v in pairs(opts.headers or {}) do
    lines[#lines + 1] = k .. ': ' .. tostring(v)
  end
  lines[#lines + 1] = '\r\n'
  local request = table.concat(lines, '\r\n')
  local sock, err
  local function on_connect()
    sock:write(request)
  end
  if secure then
    sock, err = secure_connect(port, host, opts, on_connect)
    if not sock then
      process.nextTick(fail, err, 'ERR_TLS_UNAVAILABLE')
      return ws
    end
  else
    sock = net.connect(port, host, on_connect)
  end
  ws._sock = sock
  local buf, timer = '', nil
  if opts.handshakeTimeout then
    timer = timers.setTimeout(function()
      fail('Opening handshake has timed out', 'WS_ERR_HANDSHAKE_TIMEOUT')
    end, opts.handshakeTimeout)
  end
  local on_data, on_error, on_close
  local function done()
    if timer then timers.clearTimeout(timer) end
    sock:removeListener('data', on_data)
    sock:removeListener('error', on_error)
    sock:removeListener('close', on_close)
  end
  on_error = function(e)
    done()
    fail(e.message or tostring(e), e.code)
  end
  on_close = function()
    done()
    fail('socket hang up', 'ECONNRESET')
  end
  on_data = function(d)
    buf = buf .. d
    local stop = buf:find('\r\n\r\n', 1, true)
    if not stop then
      if #buf > MAX_HEAD then done() fail('Response head too large') end
      return
    end
    done()
    local status, h = parse_head(buf:sub(1, stop + 1))
    local rest = buf:sub(stop + 4)
    if status ~= 101 then
      return fail('Unexpected server response: ' .. tostring(status))
    end
    if not (h.upgrade and h.upgrade:lower() == 'websocket') then
      return fail('Invalid Upgrade header')
    end
    if h['sec-websocket-accept'] ~= W.accept(key) then
      return fail('Invalid Sec-WebSocket-Accept header')
    end
    local proto = h['sec-websocket-protocol']
    if proto then
      local ok = false
      for _, p in ipairs(protocols or {}) do
        if p == proto then ok = true end
      end
      if not ok then return fail('Server sent an invalid subprotocol') end
      ws.protocol = proto
    elseif protocols then
      return fail('Server sent no subprotocol')
    end
    local z, why = deflate.client(offer and opts.perMessageDeflate,
      h['sec-websocket-extensions'])
    if z == nil then return fail(why) end
    ws.extensions = h['sec-websocket-extensions'] or ''
    ws:_attachClient(sock, '', opts.maxPayload or DEFAULT_MAX_PAYLOAD,
      z or nil)
    ws:emit('open')
    if #rest > 0 and ws.readyState == WebSocket.OPEN then ws:_feed(rest) end
  end
  sock:on('data', on_data)
  sock:on('error', on_error)
  sock:on('close', on_close)
  return ws
end

return {connect = connect, parse = parse}
