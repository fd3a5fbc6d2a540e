-- http.response: ServerResponse, the answer an http server's handler
-- writes, and what happens when a handler raises (handler_error,
-- safe_emit: a 500 while nothing was sent, else the connection is cut).
--
-- Headers live in _headers (lower-case name -> value) and _names
-- (lower-case name -> name as given); writeHead's table, when no header
-- was set before, is kept as it is in _wh. C reads those fields and
-- statusCode, statusMessage and sendDate by name when it writes the head
-- (runtime/http/respond.c, HTTP_RES_FIELD_MAP), from the response itself
-- (raw): the defaults below are also C's.

local C = require('_http')
local lc = require('_lc')
local EventEmitter = require('events')
local process = require('process')
local errors = require('internal.errors')
local Readable = require('internal.stream')
local common = require('http.common')

local type, tostring, tonumber, pairs, rawget, xpcall, pcall, error =
  type, tostring, tonumber, pairs, rawget, xpcall, pcall, error
local lower = string.lower
local check_header, headers_sent_error = common.check_header,
  common.headers_sent

local response = {}

-- send(c, res, chunk, last) -> ok: _http.send with the fields of res its
-- head is made from (statusCode, statusMessage, ...), in the order C takes
-- them, which C gives as _http.RES_FIELDS: the call is made from that
-- list, once, here. The JIT reads the fields cheaper than C would.
local function make_send(fields)
  local args = {}
  for i = 1, #fields do args[i] = ('rawget(res, %q)'):format(fields[i]) end
  local src = 'local C_send, rawget = ...\n'
    .. 'return function(c, res, chunk, last)\n'
    .. '  return C_send(c, res, chunk, last, ' .. table.concat(args, ', ')
    .. ')\nend\n'
  return assert(loadstring(src, '=http.send'))(C.send, rawget)
end
local send = make_send(C.RES_FIELDS)

local function next_tick(fn, ...)
  return process.nextTick(fn, ...)
end

------------------------------------------------------------------------------
-- Handler errors.

-- The traceback handler of a handler's call.
local function traceback(e)
  if type(e) ~= 'string' then
    local ok, util = pcall(require, 'util')
    e = ok and util.inspect and util.inspect(e) or tostring(e)
  end
  return debug.traceback(e, 2)
end
response.traceback = traceback

-- What happens when a request handler (or a listener on its request)
-- raises: the traceback goes to stderr; the client gets a 500 when nothing
-- was sent yet, else its connection is cut; the server goes on.
local function handler_error(res, err)
  lc.write(2, 'http: request handler error: ' .. tostring(err) .. '\n')
  if not res or res.finished then return end
  -- headersSent is true from writeHead on, before anything went out (a
  -- header refused when the head is written, say): ask the connection.
  if not C.head_sent(res._c) then
    res._headers, res._names, res._wh = nil, nil, nil
    res.statusCode, res.statusMessage = 500, nil
    res.headersSent = false
    local ok = pcall(function()
      res:setHeader('Content-Type', 'text/plain')
      res:finish('Internal Server Error')
    end)
    if ok then return end
  end
  C.destroy(res._c)
end
response.handler_error = handler_error

-- Emits on obj, sending a raised error to handler_error.
local function safe_emit(obj, res, name, a, b)
  local ok, err = xpcall(obj.emit, traceback, obj, name, a, b)
  if not ok then handler_error(res, err) end
end
response.safe_emit = safe_emit

------------------------------------------------------------------------------
-- ServerResponse.

local ServerResponse = EventEmitter:extend()
ServerResponse.statusCode = 200
ServerResponse.headersSent = false
ServerResponse.finished = false
ServerResponse.writableFinished = false
ServerResponse.sendDate = true

function ServerResponse:setHeader(name, value)
  if self.headersSent then error(headers_sent_error('set'), 2) end
  check_header(name, value, 2)
  local key = lower(name)
  local h = rawget(self, '_headers')
  if not h then
    h = {}
    self._headers = h
    self._names = {}
  end
  h[key] = value
  self._names[key] = name
  return self
end

function ServerResponse:getHeader(name)
  local h = rawget(self, '_headers')
  return h and h[lower(name)]
end

function ServerResponse:hasHeader(name)
  local h = rawget(self, '_headers')
  return h ~= nil and h[lower(name)] ~= nil
end

function ServerResponse:removeHeader(name)
  if self.headersSent then error(headers_sent_error('remove'), 2) end
  local h = rawget(self, '_headers')
  if h then
    local key = lower(name)
    h[key] = nil
    self._names[key] = nil
  end
end

function ServerResponse:getHeaders()
  local out = {}
  for k, v in pairs(rawget(self, '_headers') or {}) do out[k] = v end
  return out
end

function ServerResponse:getHeaderNames()
  local out = {}
  for k in pairs(rawget(self, '_headers') or {}) do out[#out + 1] = k end
  table.sort(out)
  return out
end

-- writeHead(status[, message][, headers]): headers is a table of name ->
-- value, or a flat array {name, value, name, value, ...}. The head leaves
-- with the first write or finish.
function ServerResponse:writeHead(status, message, headers)
  if self.headersSent then error(headers_sent_error('write'), 2) end
  local code = tonumber(status)
  if not code or code % 1 ~= 0 or code < 100 or code > 999 then
    error(errors.new('ERR_HTTP_INVALID_STATUS_CODE',
      'Invalid status code: ' .. tostring(status)), 2)
  end
  if type(message) == 'table' then
    headers, message = message, nil
  end
  if message ~= nil then
    message = tostring(message)
    if message:find('[\r\n]') then
      error(errors.new('ERR_INVALID_CHAR',
        'Invalid character in statusMessage'), 2)
    end
    self.statusMessage = message
  end
  self.statusCode = code
  if headers then
    if headers[1] ~= nil then
      for i = 1, #headers, 2 do self:setHeader(headers[i], headers[i + 1]) end
    elseif rawget(self, '_headers') then
      for k, v in pairs(headers) do self:setHeader(k, v) end
    else
      self._wh = headers
    end
  end
  self.headersSent = true
  return self
end

local function after_finish(res, cb)
  res.writableFinished = true
  if cb then cb() end
  safe_emit(res, nil, 'finish')
  safe_emit(res, nil, 'close')
  local req = res.req
  if rawget(req, '_events') and req.complete then
    safe_emit(req, nil, 'close')
  end
end

local function write_after_end(res, cb)
  local err = errors.write_after_end()
  if cb then cb(err) end
  if res:listenerCount('error') > 0 then
    res:emit('error', err)
  else
    lc.write(2, 'http: write after end\n' .. debug.traceback('', 2) .. '\n')
  end
end

local function to_chunk(chunk)
  local t = type(chunk)
  if t == 'string' then return chunk end
  if t == 'number' then return tostring(chunk) end
  error(errors.bad_chunk(chunk), 3)
end

-- write(chunk[, encoding][, cb]) -> false when the caller should wait for
-- 'drain' before writing more.
function ServerResponse:write(chunk, encoding, cb)
  if type(encoding) == 'function' then cb = encoding end
  if self.finished then
    next_tick(write_after_end, self, cb)
    return false
  end
  local ok = send(self._c, self, to_chunk(chunk), false)
  self.headersSent = true
  if cb then next_tick(cb) end
  return ok
end

-- finish([chunk][, encoding][, cb]): Node's res.end().
function ServerResponse:finish(chunk, encoding, cb)
  if type(chunk) == 'function' then
    cb, chunk = chunk, nil
  elseif type(encoding) == 'function' then
    cb = encoding
  end
  if self.finished then
    if cb then next_tick(cb) end
    return self
  end
  if chunk ~= nil and type(chunk) ~= 'string' then chunk = to_chunk(chunk) end
  send(self._c, self, chunk, true)
  self.headersSent = true
  self.finished = true
  local req = self.req
  if not req.complete and not rawget(req, '_consuming') then
    -- Nobody reads the rest of the body: drop it as it comes.
    Readable.dump(req)
  end
  if cb or rawget(self, '_events') or rawget(req, '_events') then
    next_tick(after_finish, self, cb)
  end
  return self
end
ServerResponse['end'] = ServerResponse.finish

-- flushHeaders(): sends the head now.
function ServerResponse:flushHeaders()
  if self.finished then return end
  send(self._c, self, nil, false)
  self.headersSent = true
end

function ServerResponse:writeContinue()
  C.write_interim(self._c, 'HTTP/1.1 100 Continue\r\n\r\n')
end

-- writeProcessing(): sends "102 Processing" (Node's).
-- An HTTP/1.0 client gets no interim responses (RFC 9110 15.2).
local function interim_ok(res)
  local req = rawget(res, 'req')
  return not (req and req.httpVersion == '1.0')
end

function ServerResponse:writeProcessing()
  if interim_ok(self) then
    C.write_interim(self._c, 'HTTP/1.1 102 Processing\r\n\r\n')
  end
end

-- writeEarlyHints(hints[, cb]): sends "103 Early Hints" with hints' headers
-- (Node's: a name -> value or list of values table, typically `link`), so
-- a browser can preload before the response is ready. cb after it is
-- queued.
function ServerResponse:writeEarlyHints(hints, cb)
  if type(hints) ~= 'table' then
    error(errors.type_error('ERR_INVALID_ARG_TYPE',
      'The "hints" argument must be of type table'), 2)
  end
  local lines = {'HTTP/1.1 103 Early Hints'}
  for name, v in pairs(hints) do
    common.check_header(name, v, 2)
    common.add_lines(lines, name, v)
  end
  lines[#lines + 1] = '\r\n'
  if interim_ok(self) then
    C.write_interim(self._c, table.concat(lines, '\r\n'))
  end
  if cb then process.nextTick(cb) end
end

function ServerResponse:destroy()
  C.destroy(self._c)
  return self
end

function ServerResponse:setTimeout(ms, cb)
  self.socket:setTimeout(ms, cb)
  return self
end

function ServerResponse:cork() end
function ServerResponse:uncork() end

function ServerResponse:writableLength()
  return C.writable_length(self._c)
end

-- From C: the write queue emptied after write() returned false.
function ServerResponse._drain(res)
  safe_emit(res, res, 'drain')
end

response.ServerResponse = ServerResponse

return response
