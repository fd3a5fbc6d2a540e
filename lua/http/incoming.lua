-- http.incoming: IncomingMessage, the request an http server's handler
-- gets. The dispatch (lua/http/server.lua) makes each one from a constant
-- table constructor with the fields C hands over (method, url,
-- httpVersion, the packed head, socket, complete); what a handler rarely
-- reads is built on first use. Its body is the shared Readable side
-- (lua/internal/stream.lua) over the connection: C pushes pieces of it
-- (on_data, on_end), pausing stops the connection's reading.

local C = require('_http')
local EventEmitter = require('events')
local Readable = require('internal.stream')
local response = require('http.response')
local co = require('co')

local tonumber, rawget, rawset, concat = tonumber, rawget, rawset,
  table.concat
local safe_emit = response.safe_emit

local IncomingMessage = EventEmitter:extend()
IncomingMessage.aborted = false
IncomingMessage.upgrade = false
-- Body bytes kept for a reader that has not come yet; past this, the
-- connection stops reading until they flow (Node's highWaterMark).
IncomingMessage._rhwm = 65536
IncomingMessage._endFlows = true
IncomingMessage._endSync = true
Readable.install(IncomingMessage)

-- A listener that raises answers 500 (or cuts the connection), as the
-- handler itself would: the response is the one C last named (_res).
function IncomingMessage:_emitRead(name, chunk)
  safe_emit(self, rawget(self, '_res'), name, chunk)
end

-- Fields built on first use: most handlers never read the headers, so the
-- C side leaves them packed in req._hd (runtime/http/parse.c push_head_data).
local lazy = {}
function lazy.headers(req)
  local hd = rawget(req, '_hd')
  if not hd then return nil end
  local headers, raw = C.headers(hd)
  rawset(req, 'headers', headers)
  rawset(req, 'rawHeaders', raw)
  req._hd = nil
  return headers
end
function lazy.rawHeaders(req)
  lazy.headers(req)
  return rawget(req, 'rawHeaders')
end
local function version_part(req, which)
  local major, minor = (rawget(req, 'httpVersion') or '1.1'):match(
    '^(%d+)%.(%d+)$')
  rawset(req, 'httpVersionMajor', tonumber(major))
  rawset(req, 'httpVersionMinor', tonumber(minor))
  return rawget(req, which)
end
-- trailers and rawTrailers: empty until a chunked body's trailers came.
function lazy.trailers(req)
  local t = {}
  rawset(req, 'trailers', t)
  return t
end
function lazy.rawTrailers(req)
  local t = {}
  rawset(req, 'rawTrailers', t)
  return t
end
function lazy.httpVersionMajor(req)
  return version_part(req, 'httpVersionMajor')
end
function lazy.httpVersionMinor(req)
  return version_part(req, 'httpVersionMinor')
end
IncomingMessage.__index = function(req, k)
  local v = IncomingMessage[k]
  if v ~= nil then return v end
  local f = lazy[k]
  if f then return f(req) end
  return nil
end

-- The body is being read from now on (_consuming, as Node's: a response
-- finished before that drops the rest, Readable.dump). A request without
-- a body is complete from the start (C calls no on_end for it): its end is
-- there for the flow to find.
function IncomingMessage:resume()
  self._consuming = true
  if rawget(self, 'complete') and rawget(self, '_eof') == nil then
    self._eof = true
  end
  return Readable.resume(self)
end

-- The connection reads on while the body is wanted (Readable's hooks).
function IncomingMessage:_readStop()
  if not rawget(self, '_stopped') then
    self._stopped = true
    C.reading(self.socket._c, false)
  end
end

function IncomingMessage:_readStart()
  if rawget(self, '_stopped') then
    self._stopped = nil
    C.reading(self.socket._c, true)
  end
end

-- Once the body was read, the connection reads the next request.
IncomingMessage._onEnd = IncomingMessage._readStart

-- body([limit]) -> the whole body as one string, or nil and an error:
-- waits, inside the request's coroutine (a handler runs in one), until the
-- body is complete. Past limit bytes, nil and 'request body too large',
-- and the server answers 413 and closes the connection unless the handler
-- answered already; the rest of the body is dropped as it comes. A
-- connection closed first gives nil and 'aborted'. A second call returns
-- the same string.
--
-- The pieces go straight from C's callbacks (_data, _end, _abort below)
-- into a list, with no events: a request without a body returns at once,
-- one whose body came with its head wakes once.
function IncomingMessage:body(limit)
  local got = rawget(self, '_body')
  if got then return got end
  local c = co._current('req:body')
  if limit ~= nil and (type(limit) ~= 'number' or limit < 0) then
    error('req:body: limit must be a number of bytes >= 0, got '
      .. tostring(limit), 2)
  end
  self._consuming = true
  -- What came before anybody read: the Readable's queue.
  local q, h, t = rawget(self, '_rq'), rawget(self, '_rh'), rawget(self, '_rt')
  if rawget(self, 'complete') and (not q or h == t) then
    -- All here in at most one piece (a body that came with its head):
    -- no list, no wait.
    got = q and q[h] or ''
    if q then
      self._rq, self._rh, self._rt, self._rlen = nil, nil, nil, 0
      self:_readStart()
    end
    if limit and #got > limit then
      return self:_tooLarge({parts = {got}, n = #got, limit = limit, c = c})
    end
    rawset(self, '_body', got)
    self._eof, self._endEmitted, self.readableEnded = true, true, true
    return got
  end
  local parts, n = {}, 0
  if q then
    for i = h, t do
      parts[#parts + 1] = q[i]
      n = n + #q[i]
    end
    self._rq, self._rh, self._rt, self._rlen = nil, nil, nil, 0
    self:_readStart()
  end
  local col = {parts = parts, n = n, limit = limit, c = c}
  if limit and n > limit then return self:_tooLarge(col) end
  if not rawget(self, 'complete') then
    self._collect = col
    co._suspend(c, col)
    self._collect = nil
    if col.err then return nil, col.err end
  end
  got = concat(parts)
  rawset(self, '_body', got)
  -- The stream has been read to its end.
  self._eof, self._endEmitted, self.readableEnded = true, true, true
  return got
end

-- Past body()'s limit: the rest is dropped; 413 unless answered.
function IncomingMessage:_tooLarge(col)
  col.err = 'request body too large'
  self._collect = nil
  Readable.dump(self)
  local res = rawget(self, '_res')
  if res and not res.headersSent then
    res:writeHead(413, {Connection = 'close'})
    res:finish('Payload Too Large')
  end
  return nil, col.err
end

function IncomingMessage:setTimeout(ms, cb)
  self.socket:setTimeout(ms, cb)
  return self
end

function IncomingMessage:destroy()
  C.destroy(self.socket._c)
  return self
end

-- From C: a piece of body (res is nil once the response finished).
function IncomingMessage._data(req, chunk, res)
  if res then req._res = res end
  local col = rawget(req, '_collect')
  if col then
    local n = col.n + #chunk
    col.n = n
    if col.limit and n > col.limit then
      req:_tooLarge(col)
      return co._wake(col.c, col)
    end
    local parts = col.parts
    parts[#parts + 1] = chunk
    return
  end
  Readable.push(req, chunk)
end

-- From C: the body is complete.
function IncomingMessage._end(req, res, trailers)
  if res then req._res = res end
  if trailers then IncomingMessage._trailers(req, trailers) end
  req.complete = true
  local col = rawget(req, '_collect')
  if col then return co._wake(col.c, col) end
  Readable.push(req, nil)
end

-- A chunked request's trailers (C packs them name\0value\0...):
-- req.rawTrailers as Node's flat list, req.trailers by lower-case name,
-- repeated names joined with ', '.
function IncomingMessage._trailers(req, packed)
  local raw, map = {}, {}
  for name, value in packed:gmatch('(%Z*)%z(%Z*)%z') do
    raw[#raw + 1], raw[#raw + 2] = name, value
    local k = name:lower()
    map[k] = map[k] and (map[k] .. ', ' .. value) or value
  end
  req.rawTrailers, req.trailers = raw, map
end

-- From C (through the server's abort): the connection closed mid-body.
function IncomingMessage._abort(req)
  local col = rawget(req, '_collect')
  if col then
    col.err = 'aborted'
    return co._wake(col.c, col)
  end
end

return IncomingMessage
