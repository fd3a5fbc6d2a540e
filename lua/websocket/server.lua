-- websocket.server: the server side of `ws`'s WebSocketServer over an
-- http server's 'upgrade' (or a server of its own on `port`): checks the
-- handshake, answers 101 with Sec-WebSocket-Accept (and the protocol
-- handleProtocols chose), hands the connection to the C frame parser and
-- emits 'connection' (ws, req). Keeps its clients (server.clients), pings
-- them every keepAlive ms (one that did not answer the last ping is
-- terminated) and closes them with 1001 (going away) when the http server
-- closes: a rolling reload or a shutdown.

local W = require('_ws')
local EventEmitter = require('events')
local WebSocket = require('websocket.socket')
local deflate = require('websocket.deflate')
local timers = require('timers')
local process = require('process')

local pairs, tostring, tonumber = pairs, tostring, tonumber

local DEFAULT_MAX_PAYLOAD = 100 * 1024 * 1024

local Server = EventEmitter:extend()

-- Answers a handshake that cannot go on, as `ws` does, and closes.
local function abort(socket, status, message, extra)
  local reasons = {[400] = 'Bad Request', [401] = 'Unauthorized',
    [403] = 'Forbidden', [426] = 'Upgrade Required'}
  message = message or reasons[status] or ''
  socket:finish('HTTP/1.1 ' .. status .. ' ' .. (reasons[status] or '')
    .. '\r\nConnection: close\r\nContent-Type: text/html\r\n'
    .. (extra or '') .. 'Content-Length: ' .. #message .. '\r\n\r\n'
    .. message)
end

local function path_of(url)
  return (url:match('^[^?]*'))
end

-- new(opts): opts.server (an http server) or opts.port (one of its own,
-- listening; opts.host), or opts.noServer (handleUpgrade is called by the
-- user); path, maxPayload (default 100 MiB), handleProtocols(protocols,
-- req) -> the chosen one or false, verifyClient(info) -> bool,
-- keepAlive (ms between pings; 0, the default: none),
-- maxBufferedAmount, clientTracking (default true), perMessageDeflate
-- (false by default; true or {threshold = 1024, serverNoContextTakeover,
-- clientNoContextTakeover, serverMaxWindowBits, clientMaxWindowBits}).
function Server:new(opts, cb)
  opts = opts or {}
  local self = EventEmitter.new(Server, {})
  self.options = opts
  self._path = opts.path
  self._maxPayload = opts.maxPayload or DEFAULT_MAX_PAYLOAD
  self.clients = {}
  self._count = 0
  if opts.port and not opts.server then
    local http = require('http')
    opts.server = http.createServer(function(_, res)
      res:writeHead(426, {['Content-Type'] = 'text/plain'})
      res:finish('Upgrade Required')
    end)
    self._ownServer = true
    opts.server:listen(opts.port, opts.host, function()
      self:emit('listening')
    end)
  end
  local srv = opts.server
  if srv then
    self._httpServer = srv
    self._onUpgrade = function(req, socket, head)
      if self._path and path_of(req.url) ~= self._path then
        -- Another server's path: left to its listener, if any.
        if srv:listenerCount('upgrade') > 1 then return end
        return abort(socket, 400)
      end
      self:handleUpgrade(req, socket, head, function(ws)
        self:emit('connection', ws, req)
      end)
    end
    srv:on('upgrade', self._onUpgrade)
    -- The http server's close (a reload, a shutdown, a user's) says
    -- going away to every client first.
    local close = srv.close
    srv.close = function(s, ...)
      self:_goingAway()
      return close(s, ...)
    end
  end
  if opts.keepAlive and opts.keepAlive > 0 then
    self._pinger = timers.setInterval(function() self:_ping() end,
      opts.keepAlive)
    if self._pinger.unref then self._pinger:unref() end
  end
  if cb then self:on('listening', cb) end
  return self
end

function Server:address()
  return self._httpServer and self._httpServer:address()
end

-- shouldHandle(req) -> whether req is for this server's path.
function Server:shouldHandle(req)
  return not self._path or path_of(req.url) == self._path
end

-- handleUpgrade(req, socket, head, cb): the handshake; cb(ws, req).
function Server:handleUpgrade(req, socket, head, cb)
  local h = req.headers
  local key = h['sec-websocket-key']
  local version = tonumber(h['sec-websocket-version'])
  if req.method ~= 'GET' then
    return abort(socket, 400, 'Invalid HTTP method')
  end
  if not (h.upgrade and h.upgrade:lower() == 'websocket') then
    return abort(socket, 400, 'Invalid Upgrade header')
  end
  if not key or not key:match('^[%w+/]+==$') or #key ~= 24 then
    return abort(socket, 400, 'Missing or invalid Sec-WebSocket-Key header')
  end
  if version ~= 8 and version ~= 13 then
    return abort(socket, 400, 'Missing or invalid Sec-WebSocket-Version '
      .. 'header', 'Sec-WebSocket-Version: 13, 8\r\n')
  end
  local opts = self.options
  if opts.verifyClient and not opts.verifyClient({req = req,
      origin = h.origin, secure = false}) then
    return abort(socket, 401)
  end
  local protocol
  local offered = h['sec-websocket-protocol']
  if offered then
    local list = {}
    for p in offered:gmatch('[^,%s]+') do list[#list + 1] = p end
    if opts.handleProtocols then
      protocol = opts.handleProtocols(list, req)
    else
      protocol = list[1]
    end
    if protocol == false then protocol = nil end
  end
  local z, ext = deflate.server(opts.perMessageDeflate,
    h['sec-websocket-extensions'])
  local ws = WebSocket:new({protocol = protocol,
    maxBufferedAmount = opts.maxBufferedAmount})
  ws.extensions = ext or ''
  local lines = {'HTTP/1.1 101 Switching Protocols', 'Upgrade: websocket',
    'Connection: Upgrade', 'Sec-WebSocket-Accept: ' .. W.accept(key)}
  if protocol then
    lines[#lines + 1] = 'Sec-WebSocket-Protocol: ' .. tostring(protocol)
  end
  if ext then lines[#lines + 1] = 'Sec-WebSocket-Extensions: ' .. ext end
  self:emit('headers', lines, req)
  lines[#lines + 1] = '\r\n'
  if socket:write(table.concat(lines, '\r\n')) == nil then return end
  if opts.clientTracking ~= false then
    self.clients[ws] = true
    self._count = self._count + 1
    ws._onclose = function()
      if self.clients[ws] then
        self.clients[ws] = nil
        self._count = self._count - 1
      end
      require('websocket.broadcast').forget(ws)
    end
  else
    ws._onclose = function() require('websocket.broadcast').forget(ws) end
  end
  ws._alive = true
  -- Frames that came with the handshake are parsed once 'connection'
  -- listeners are attached.
  ws:_attachServer(socket, '', self._maxPayload, z)
  cb(ws, req)
  if head and #head > 0 and ws.readyState == WebSocket.OPEN then
    require('_http').ws_start(ws._c, self._maxPayload, head)
  end
end

-- size() -> the number of clients.
function Server:size() return self._count end

function Server:_ping()
  for ws in pairs(self.clients) do
    if not ws._alive then
      ws:terminate()
    elseif ws.readyState == WebSocket.OPEN then
      ws._alive = false
      ws:ping()
    end
  end
end

function Server:_goingAway()
  if self._goneAway then return end
  self._goneAway = true
  if self._pinger then
    timers.clearInterval(self._pinger)
    self._pinger = nil
  end
  for ws in pairs(self.clients) do
    if ws.readyState == WebSocket.OPEN then ws:close(1001) end
  end
end

-- close([cb]): closes every client with 1001; the http server too when it
-- is this server's own.
function Server:close(cb)
  self:_goingAway()
  local srv = self._httpServer
  if srv then
    srv:removeListener('upgrade', self._onUpgrade)
    if self._ownServer then srv:close() end
  end
  process.nextTick(function()
    self:emit('close')
    if cb then cb() end
  end)
end

return Server
