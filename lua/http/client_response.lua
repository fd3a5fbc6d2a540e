-- http.client_response: the reading half of the http client. A request
-- that got its socket (from its agent, lua/http/agent.lua) listens to it
-- here: llhttp (the C response parser, runtime/http/response.c) turns the
-- bytes into 1xx answers ('information'), then the response, an
-- IncomingMessage whose body flows as 'data' then 'end' (the shared
-- Readable side, lua/internal/stream.lua), or is read whole with
-- res:body() inside a coroutine.
--
-- Then the socket is closed, or given back to the agent: only when both
-- ends keep the connection alive (the request did not say Connection:
-- close, the response did not either and is HTTP/1.1 framed by length or
-- chunks), the response was read to its end (consumed, or dumped when
-- nobody listened) and the request was all written; nothing may follow
-- the response on the socket. The socket then emits 'free' (the agent
-- takes it), and the request and the response 'close' on the next tick.

local C = require('_http')
local EventEmitter = require('events')
local process = require('process')
local errors = require('internal.errors')
local Readable = require('internal.stream')
local co = require('co')

local type, tostring, pairs, rawget, rawset, error = type, tostring, pairs,
  rawget, rawset, error
local concat = table.concat
local conn_reset = errors.conn_reset

local M = {}

local MAX_HEADER_SIZE = C.DEFAULTS.maxHeaderSize

local function next_tick(fn, ...)
  return process.nextTick(fn, ...)
end

------------------------------------------------------------------------------
-- IncomingMessage: the response.

local IncomingMessage = EventEmitter:extend()
M.IncomingMessage = IncomingMessage
-- As the server's request does, the body also flows once an 'end'
-- listener is added; 'end' comes even if nobody reads.
IncomingMessage._endFlows = true
IncomingMessage._endUnread = true
Readable.install(IncomingMessage)

local function new_response(req, status, reason, major, minor, headers, raw)
  local res = EventEmitter.new(IncomingMessage, {})
  res.req, res.socket = req, req.socket
  res.statusCode, res.statusMessage = status, reason
  res.httpVersionMajor, res.httpVersionMinor = major, minor
  res.httpVersion = major .. '.' .. minor
  res.headers, res.rawHeaders = headers, raw
  res.trailers, res.rawTrailers = {}, {}
  res.complete, res.aborted = false, false
  res.readable = true
  return res
end

-- The socket (nil once given back) reads while the body is wanted.
function IncomingMessage:_readStart()
  local s = self.socket
  if s and not s.destroyed then s:resume() end
end

function IncomingMessage:_readStop()
  local s = self.socket
  if s and not s.destroyed then s:pause() end
end

function IncomingMessage:setTimeout(ms, cb)
  self.req:setTimeout(ms, cb)
  return self
end

function IncomingMessage:destroy(err)
  self.req:destroy(err)
  return self
end

local keep_alive

-- The body was read to its end: the socket may go back to the agent; then
-- a coroutine waiting in body() goes on (so a request it makes next finds
-- the socket free).
function IncomingMessage:_onEnd()
  local req = self.req
  req._ended = true
  keep_alive(req)
  local wake = rawget(self, '_afterEnd')
  if wake then
    self._afterEnd = nil
    wake()
  end
end

-- body([limit]) -> the whole body as one string, or nil and an error:
-- waits, inside a coroutine, until the response is complete. Past limit
-- bytes: nil, 'response body too large', and the connection is closed
-- (never reused). A connection lost first: nil, 'aborted'. A second call
-- returns the same string.
function IncomingMessage:body(limit)
  local got = rawget(self, '_body')
  if got then return got end
  local c = co._current('res:body')
  if limit ~= nil and (type(limit) ~= 'number' or limit < 0) then
    error('res:body: limit must be a number of bytes >= 0, got '
      .. tostring(limit), 2)
  end
  if self.aborted then return nil, 'aborted' end
  if self.readableEnded then return nil, 'body already read' end
  local parts, n, done, err, waiting = {}, 0, false, nil, false
  local on_data, on_end, on_abort
  local function wake() co._wake(c, on_end) end
  -- at_end: wake once the response's end is dealt with (_onEnd).
  local function settle(e, at_end)
    if done then return end
    done, err = true, e
    self:removeListener('data', on_data)
    self:removeListener('end', on_end)
    self:removeListener('aborted', on_abort)
    self:removeListener('close', on_abort)
    if not waiting then return end
    if at_end then self._afterEnd = wake else wake() end
  end
  on_data = function(chunk)
    n = n + #chunk
    if limit and n > limit then
      settle('response body too large')
      Readable.dump(self)
      self.req.shouldKeepAlive = false
      self.req:destroy()
      return
    end
    parts[#parts + 1] = chunk
  end
  on_end = function() settle(nil, true) end
  on_abort = function() settle('aborted') end
  self:on('data', on_data)
  self:once('end', on_end)
  self:once('aborted', on_abort)
  self:once('close', on_abort)
  if not done then
    waiting = true
    -- A thread killed meanwhile leaves nothing behind: the request goes.
    co._suspend(c, on_end, function()
      settle('killed')
      self.req:destroy()
    end)
  end
  if err then return nil, err end
  got = concat(parts)
  rawset(self, '_body', got)
  return got
end

------------------------------------------------------------------------------
-- The end of an exchange.

-- The request's listeners leave its socket.
local function detach(req)
  local socket, ls = req.socket, req._sl
  if not ls then return end
  req._sl = nil
  for name, fn in pairs(ls) do socket:removeListener(name, fn) end
end

-- Settles a request that did not get (all of) its response: the error
-- goes to the request before a response, else the response is aborted.
local function fail(req, err)
  if req._failed then return end
  req._failed = true
  local res = req.res
  if res == nil or req._upgraded then
    if err then req:emit('error', err) end
  elseif not res.complete then
    res.aborted = true
    res:emit('aborted')
    -- Node: 'error' on the response only for those who listen.
    if res:listenerCount('error') > 0 then
      res:emit('error', err or conn_reset('aborted'))
    end
  end
end
M.fail = fail

-- 'close' of the request, then of its response.
local function emit_close(req)
  local res = req.res
  req.destroyed = true
  req.closed = true
  req:emit('close')
  if res then
    res.closed = true
    res:emit('close')
  end
end

local function on_socket_close(req)
  local res = req.res
  if res == nil or not res.complete then
    fail(req, req._sockerr or conn_reset(res and 'aborted'
      or 'socket hang up'))
  end
  emit_close(req)
end

-- keep_alive(req): gives req's socket back to its agent once the
-- exchange is over (see the top of the file), at once (a request made
-- next finds it free); the request and the response emit 'close' on the
-- next tick. Else does nothing.
function keep_alive(req)
  if req._released or not req._ended or not req.writableFinished
      or not req.shouldKeepAlive or req.destroyed or req._destroying then
    return
  end
  local socket = req.socket
  if socket.destroyed then return end
  req._released = true
  req.destroyed = true
  req.res.socket = nil
  detach(req)
  socket:setTimeout(0)
  if not socket:emit('free') then socket:destroy() end
  next_tick(emit_close, req)
end
M.keep_alive = keep_alive

local function response_complete(req)
  local res = req.res
  req._done = true
  res.complete = true
  Readable.push(res, nil)
  local socket = req.socket
  if not req.shouldKeepAlive and not socket.destroyed then
    socket:destroySoon()
  end
end

-- The parser of req's response: what llhttp reads becomes events.
local function parser_for(req)
  return C.response_parser({
    head = function(status, reason, major, minor, headers, raw, keep)
      if status >= 100 and status < 200 and status ~= 101 then
        -- An interim answer: report it and wait for the real one.
        if status == 100 then req:emit('continue') end
        req:emit('information', {statusCode = status, statusMessage = reason,
          httpVersion = major .. '.' .. minor, httpVersionMajor = major,
          httpVersionMinor = minor, headers = headers, rawHeaders = raw})
        return
      end
      -- The server must keep the connection too (HTTP/1.1, framed, no
      -- Connection: close) for it to be reused.
      if not keep or major ~= 1 or minor == 0 then
        req.shouldKeepAlive = false
      end
      local res = new_response(req, status, reason, major, minor, headers,
        raw)
      req.res = res
      if status == 101 then
        -- What follows is another protocol (see on_data).
        req._upgraded = true
        req.shouldKeepAlive = false
        return C.UPGRADE
      end
      if not req:emit('response', res) then
        -- Nobody wants it: read and drop the body, as Node's _dump.
        res:resume()
      end
      if req.method == 'HEAD' then return C.SKIP_BODY end
    end,
    body = function(chunk) Readable.push(req.res, chunk) end,
    complete = function(trailers, rawTrailers)
      local res = req.res
      -- The end of an interim answer, or of what was done already.
      if not res or req._done or req._upgraded then return end
      if trailers then res.trailers, res.rawTrailers = trailers, rawTrailers end
      response_complete(req)
      -- The parser stops here: what follows is none of this response's.
      return true
    end,
  }, MAX_HEADER_SIZE)
end

-- A broken response: before its head the request fails; after, the
-- response is aborted and the request reports it too, as Node.
local function parse_failed(req, err)
  req._sockerr = err
  req.shouldKeepAlive = false
  if req.res and not req.res.complete then
    req._failed = true
    req.res.aborted = true
    req.res:emit('aborted')
    req:emit('error', err)
  else
    fail(req, err)
  end
  req.socket:destroy()
end

-- attach(req, socket): req reads its response from socket (listeners
-- kept in req._sl, removed when the socket goes back to the agent).
function M.attach(req, socket)
  local parser = parser_for(req)
  local ls = {}
  req._sl = ls
  -- Anything after the response (a second answer, stray bytes) means
  -- the connection cannot carry another one: it is closed.
  local function spoilt()
    req.shouldKeepAlive = false
    if not socket.destroyed then socket:destroy() end
  end
  function ls.data(data)
    if req._upgraded then return end
    if req._done then return spoilt() end
    -- n, upgraded, paused | nil, code, reason, bytes parsed.
    local n, a, b, c = parser:execute(data)
    if not n then return parse_failed(req, errors.http_parse(a, b, c, data)) end
    if a then
      -- Upgraded: the rest is the new protocol's; the socket leaves the
      -- agent.
      socket:emit('agentRemove')
      if req:listenerCount('upgrade') > 0 then
        socket:removeListener('data', ls.data)
        req:emit('upgrade', req.res, socket, data:sub(n + 1))
      else
        socket:destroy()
      end
    elseif b and n < #data then
      spoilt()
    end
  end
  ls['end'] = function()
    req.shouldKeepAlive = false
    -- A body framed by the connection's end is complete now.
    if not req._done and not req._upgraded then parser:finish() end
  end
  function ls.error(err)
    req._sockerr = err
    req.shouldKeepAlive = false
    fail(req, err)
  end
  ls.close = function() on_socket_close(req) end
  ls.timeout = function()
    req:emit('timeout')
    local res = req.res
    if res and not res.complete then res:emit('timeout') end
  end
  ls.drain = function() req:emit('drain') end
  for name, fn in pairs(ls) do socket:on(name, fn) end
  -- A socket from the pool was flowing, waiting; one paused by the last
  -- response's reader reads again.
  socket:resume()
end

return M
