-- internal.errors: the one factory of Node's Error objects, for every
-- Node-shaped module (net, http, the http client, listening), after Node's
-- lib/internal/errors.js.
--
-- An error is a table {code=, message=, name= (default 'Error')} that
-- prints as its message; a system error also has errno (negative, as
-- Node's), syscall and, where there is one, address and port (hostname for
-- a lookup). Messages are Node's:
--   uv:   'listen EADDRINUSE: address already in use 127.0.0.1:8000'
--   sys:  'connect ECONNREFUSED 127.0.0.1:1', 'read ECONNRESET'
--   dns:  'getaddrinfo ENOTFOUND example.invalid'
-- luv and the runtime's C bindings report errors as 'CODE' (callbacks) or
-- 'CODE: message' (calls); each constructor takes either.

local type, tostring, setmetatable = type, tostring, setmetatable

local errors = {}

-- libuv's error codes, negative as Node's err.errno, and their messages,
-- from C (runtime/lc.c: UV_ERRNO_MAP). Node calls a failed lookup
-- ENOTFOUND where libuv says EAI_NONAME.
local lc = require('_lc')
local errno = setmetatable({ENOTFOUND = lc.uv_errno.EAI_NONAME},
  {__index = lc.uv_errno})
local messages = lc.uv_messages
errors.errno = errno

local ErrorMT = {__tostring = function(e) return e.message end}
ErrorMT.__index = {name = 'Error'}
errors.ErrorMT = ErrorMT

-- new(code, message[, fields]) -> an Error; fields (a table, which becomes
-- the error) may carry name, errno, syscall and anything else.
function errors.new(code, message, fields)
  local e = fields or {}
  e.code, e.message = code, message
  return setmetatable(e, ErrorMT)
end
local new = errors.new

-- Node's TypeError and RangeError (ERR_INVALID_ARG_TYPE, ERR_SOCKET_BAD_PORT
-- and the like).
function errors.type_error(code, message)
  return new(code, message, {name = 'TypeError'})
end

function errors.range_error(code, message)
  return new(code, message, {name = 'RangeError'})
end

-- split(uverr) -> code, message of 'CODE' or 'CODE: message'.
local function split(s)
  s = tostring(s)
  local code, msg = s:match('^([%w_]+):%s*(.*)$')
  if not code then code = s:match('^([%w_]+)$') or 'UNKNOWN' end
  if msg == nil or msg == '' then msg = messages[code] or code end
  return code, msg
end
errors.split = split

local function details(address, port)
  if port and port > 0 then return ' ' .. tostring(address) .. ':' .. port end
  if address then return ' ' .. tostring(address) end
  return ''
end

-- Node's uvExceptionWithHostPort: 'listen EADDRINUSE: address already in
-- use 127.0.0.1:8000'.
function errors.uv(uverr, syscall, address, port)
  local code, msg = split(uverr)
  return new(code, syscall .. ' ' .. code .. ': ' .. msg
    .. details(address, port), {errno = errno[code], syscall = syscall,
      address = address, port = port})
end

-- Node's exceptionWithHostPort / errnoException: 'connect ECONNREFUSED
-- 127.0.0.1:1', 'read ECONNRESET'.
function errors.sys(uverr, syscall, address, port)
  local code = split(uverr)
  return new(code, syscall .. ' ' .. code .. details(address, port),
    {errno = errno[code], syscall = syscall, address = address,
      port = port})
end

-- Node's dnsException for a failed lookup: 'getaddrinfo ENOTFOUND h'.
function errors.dns(uverr, host)
  local code = split(uverr)
  if code == 'EAI_NONAME' or code == 'EAI_NODATA' then code = 'ENOTFOUND' end
  return new(code, 'getaddrinfo ' .. code .. ' ' .. tostring(host),
    {errno = errno[code], syscall = 'getaddrinfo', hostname = host})
end

-- Node's ConnResetException: 'socket hang up', 'aborted'.
function errors.conn_reset(message)
  return new('ECONNRESET', message)
end

-- An HTTP message llhttp refused (code 'HPE_...', llhttp's reason), as
-- Node's parser errors: 'Parse Error: Expected HTTP/'.
function errors.http_parse(code, reason, bytesParsed, rawPacket)
  return new(code, 'Parse Error: ' .. tostring(reason), {reason = reason,
    bytesParsed = bytesParsed or 0, rawPacket = rawPacket})
end

-- The errors Node's streams and servers share.

function errors.write_after_end()
  return new('ERR_STREAM_WRITE_AFTER_END', 'write after end')
end

function errors.destroyed(what)
  return new('ERR_STREAM_DESTROYED', 'Cannot call ' .. what
    .. ' after a stream was destroyed')
end

function errors.bad_chunk(got)
  return errors.type_error('ERR_INVALID_ARG_TYPE', 'The "chunk" argument '
    .. 'must be of type string. Received ' .. type(got))
end

function errors.not_running()
  return new('ERR_SERVER_NOT_RUNNING', 'Server is not running.')
end

function errors.already_listening()
  return new('ERR_SERVER_ALREADY_LISTEN',
    'Listen method has been called more than once without closing.')
end

return errors
