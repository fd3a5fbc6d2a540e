-- http.access_log: an http server's access log (server.accessLog, set by
-- createServer's accessLog option or, for every server, by `--access-log`
-- through LUACLUSTER_ACCESS_LOG). One line a request, written when the
-- handler finishes the response (a handler's error: its 500; a client
-- gone before the end: 499, as nginx), in nginx's combined format:
--   127.0.0.1 - - [06/Dec/2026:07:14:19 +0000] "GET / HTTP/1.1" 200 3 "-"
--   "curl/7.88.1"
-- or, under `--log-format=json` (or accessLog = {format = 'json'}), as
--   {"time":"2026-12-06T07:14:19.109Z","remote":"127.0.0.1",
--    "method":"GET","url":"/","version":"1.1","status":200,"bytes":3,
--    "ms":0.412,"referer":"","agent":"curl/7.88.1"}
--
-- Lines wait in memory and go out together, once a second or once 64 KB
-- are waiting, with a write on libuv's thread pool: no syscall per request
-- and no wait for the disk. What waits is written at exit. A file is
-- opened for appending (several workers share it: each write is whole
-- lines); SIGUSR1 reopens it, for logrotate.
--
-- A server without an access log pays nothing: server.lua wraps the
-- handler only when one is set (the wrapper gives the response the
-- metatable below, whose write and finish count and log).

local uv = require('uv')
local log = require('internal.log')
local response = require('http.response')

local encode = require('cjson').encode
local type, tostring, rawget, rawset, setmetatable, concat = type, tostring,
  rawget, rawset, setmetatable, table.concat
local hrtime = uv.hrtime

local M = {}

M.FLUSH_BYTES = 64 * 1024
M.FLUSH_MS = 1000

------------------------------------------------------------------------------
-- Sinks: one per destination in a process, shared by its servers.

local sinks = {}

local Sink = {}
Sink.__index = Sink

local function open_fd(dest)
  if dest == '-' then return 1, false end
  local n = dest:match('^fd:(%d+)$')
  if n then return tonumber(n), false end
  local fd, err = uv.fs_open(dest, 'a', tonumber('644', 8))
  if not fd then return nil, err end
  return fd, true
end

-- Writes what waits: async unless sync (at exit); one write in flight.
function Sink:flush(sync)
  if self.n == 0 or (self.busy and not sync) or not self.fd then return end
  local data = concat(self.buf, '', 1, self.n)
  for i = self.n, 1, -1 do self.buf[i] = nil end
  self.n, self.size = 0, 0
  if sync then
    uv.fs_write(self.fd, data, -1)
    return
  end
  self.busy = true
  uv.fs_write(self.fd, data, -1, function()
    self.busy = false
    if self.size >= M.FLUSH_BYTES then self:flush() end
  end)
end

function Sink:add(line)
  local n = self.n + 1
  self.buf[n] = line
  self.n = n
  self.size = self.size + #line
  if self.size >= M.FLUSH_BYTES then self:flush() end
end

-- reopen(): a file's descriptor is closed and the file opened anew (after
-- logrotate moved it); what waits goes to the new one.
function Sink:reopen()
  if not self.owned then return end
  local fd = open_fd(self.dest)
  if fd then
    uv.fs_close(self.fd)
    self.fd = fd
  end
end

-- sink(dest) -> the sink for dest ('-' is stdout, 'fd:N' a descriptor,
-- else a file), or nil, message.
function M.sink(dest)
  local s = sinks[dest]
  if s then return s end
  local fd, owned = open_fd(dest)
  if not fd then
    return nil, 'access log ' .. dest .. ': ' .. tostring(owned)
  end
  s = setmetatable({dest = dest, fd = fd, owned = owned, buf = {}, n = 0,
    size = 0, busy = false}, Sink)
  sinks[dest] = s
  local timer = uv.new_timer()
  timer:start(M.FLUSH_MS, M.FLUSH_MS, function() s:flush() end)
  timer:unref()
  if owned then
    local sig = uv.new_signal()
    sig:start('sigusr1', function() s:reopen() end)
    sig:unref()
  end
  -- What waits at exit is written then.
  require('process'):on('exit', function() s:flush(true) end)
  return s
end

-- flushAll([sync]): every sink writes what waits (specs, shutdown).
function M.flushAll(sync)
  for _, s in pairs(sinks) do s:flush(sync) end
end

------------------------------------------------------------------------------
-- Lines.

local C = require('_http')
local header_value = C.header_value

local MONTHS = {'Jan', 'Feb', 'Mar', 'Apr', 'May', 'Jun', 'Jul', 'Aug',
  'Sep', 'Oct', 'Nov', 'Dec'}
local last_sec, last_clf
local time = os.time

-- 06/Dec/2026:07:14:19 +0000, made once a second.
local function clf_time()
  local sec = time()
  if sec ~= last_sec then
    last_sec = sec
    local t = os.date('!*t', sec)
    last_clf = ('%02d/%s/%04d:%02d:%02d:%02d +0000'):format(t.day,
      MONTHS[t.month], t.year, t.hour, t.min, t.sec)
  end
  return last_clf
end

-- A field between quotes, as nginx writes it: " \ and bytes outside
-- printable ASCII as \xHH.
local function hex(c) return ('\\x%02X'):format(c:byte()) end
local function esc(s)
  if s == nil then return '-' end
  if s:find('[%c"\\\128-\255]') then
    return (s:gsub('[%c"\\\128-\255]', hex))
  end
  return s
end

-- The client's address (an IPv4 client of a dual-stack socket as IPv4),
-- kept on the connection's socket: looked up once a connection.
local function remote(req)
  local socket = req.socket
  if not socket then return nil end
  local a = rawget(socket, '_alRemote')
  if a == nil then
    a = socket.remoteAddress or false
    if a then a = a:match('^::ffff:(%d+%.%d+%.%d+%.%d+)$') or a end
    rawset(socket, '_alRemote', a)
  end
  return a or nil
end

-- referer and user agent: from the packed head when the handler did not
-- expand the headers (the cheaper way), else from req.headers.
local function agents(req)
  local hd = rawget(req, '_hd')
  if hd then
    return header_value(hd, 'referer'), header_value(hd, 'user-agent')
  end
  local h = req.headers
  return h.referer, h['user-agent']
end

local function combined(req, res, bytes)
  local referer, agent = agents(req)
  return ('%s - - [%s] "%s %s HTTP/%s" %d %d "%s" "%s"\n'):format(
    remote(req) or '-', clf_time(), req.method, esc(req.url),
    req.httpVersion, res.statusCode, bytes, esc(referer), esc(agent))
end

local function json(req, res, bytes, ms)
  local referer, agent = agents(req)
  return ('{"time":"%s","remote":%s,"method":%s,"url":%s,"version":"%s",' ..
    '"status":%d,"bytes":%d,"ms":%.3f,"referer":%s,"agent":%s}\n'):format(
    log.now(), encode(remote(req) or ''), encode(req.method),
    encode(req.url), req.httpVersion, res.statusCode, bytes, ms,
    encode(referer or ''), encode(agent or ''))
end

------------------------------------------------------------------------------
-- The response that logs: per server, a metatable over ServerResponse's
-- whose write counts what the body adds (_alBytes, only when written in
-- pieces) and whose finish writes the line. A request costs the wrapper's
-- setmetatable, and (JSON) its start time.

local ServerResponse = response.ServerResponse
local SR_write, SR_finish = ServerResponse.write, ServerResponse.finish

local function size(chunk)
  local t = type(chunk)
  if t == 'string' then return #chunk end
  if t == 'number' then return #tostring(chunk) end
  return 0
end

local function logged_class(sink, line, timed)
  local Logged = setmetatable({}, {__index = ServerResponse})
  for k, v in pairs(ServerResponse) do
    if type(k) == 'string' and k:sub(1, 2) == '__' then Logged[k] = v end
  end
  Logged.__index = Logged

  function Logged:write(chunk, encoding, cb)
    if not self.finished then
      self._alBytes = (rawget(self, '_alBytes') or 0) + size(chunk)
    end
    return SR_write(self, chunk, encoding, cb)
  end

  function Logged:finish(chunk, encoding, cb)
    if self.finished or rawget(self, '_alGone') then
      return SR_finish(self, chunk, encoding, cb)
    end
    local bytes = (rawget(self, '_alBytes') or 0) + size(chunk)
    SR_finish(self, chunk, encoding, cb)
    sink:add(line(self.req, self, bytes,
      timed and (hrtime() - self._alT0) / 1e6))
    return self
  end
  Logged['end'] = Logged.finish

  -- The client closed the connection before the response was finished
  -- (server.lua's on_abort): nginx's 499, with what was written so far.
  function Logged:_alAbort()
    if rawget(self, '_alGone') then return end
    self._alGone = true
    local code = self.statusCode
    self.statusCode = 499
    sink:add(line(self.req, self, rawget(self, '_alBytes') or 0,
      timed and (hrtime() - self._alT0) / 1e6))
    self.statusCode = code
  end
  return Logged
end

-- wrap(handler, accessLog) -> a handler that logs each request to
-- accessLog ('-' or true: stdout; a file name; or {path =, format =
-- 'combined' | 'json'}), or nil, message when it cannot be opened.
function M.wrap(handler, opt)
  local dest, format = opt, nil
  if type(opt) == 'table' then dest, format = opt.path, opt.format end
  if dest == true or dest == nil then dest = '-' end
  format = format or (log.format == 'json' and 'json' or 'combined')
  local s, err = M.sink(tostring(dest))
  if not s then return nil, err end
  if format == 'json' then
    local Logged = logged_class(s, json, true)
    return function(req, res)
      setmetatable(res, Logged)
      res._alT0 = hrtime()
      return handler(req, res)
    end
  end
  local Logged = logged_class(s, combined, false)
  return function(req, res)
    setmetatable(res, Logged)
    return handler(req, res)
  end
end

-- The default accessLog of every server: LUACLUSTER_ACCESS_LOG, or nil.
function M.default()
  local v = rawget(require('process').env, 'LUACLUSTER_ACCESS_LOG')
  if v == nil or v == '' then return nil end
  return v
end

return M
