-- http.inject: a request through the same path as a connection, without a
-- port. One end of a socket pair is served as an accepted connection; the
-- raw request goes in at the other end and the response that comes back is
-- read by llhttp (the C response parser, as the client reads one), into
-- {statusCode=, statusMessage=, headers=, rawHeaders=, body=, chunks=}.

local C = require('_http')
local lc = require('_lc')
local uv = require('uv')
local tcp = require('_tcp')
local common = require('http.common')
local Server = require('http.server').Server

local type, tostring, pairs, getmetatable, error = type, tostring, pairs,
  getmetatable, error
local concat = table.concat

local inject = {}

-- The raw request of opts (headers checked by the rule every header
-- meets); Host, Content-Length and Connection: close unless given.
local function raw_request(opts)
  local method = (opts.method or 'GET'):upper()
  local body = opts.body or ''
  local lines = {method .. ' ' .. (opts.url or '/') .. ' HTTP/1.1'}
  local seen = {}
  for k, v in pairs(opts.headers or {}) do
    common.check_header(k, v, 4)
    seen[k:lower()] = true
    common.add_lines(lines, k, v)
  end
  if not seen.host then lines[#lines + 1] = 'Host: localhost' end
  if #body > 0 and not seen['content-length']
      and not seen['transfer-encoding'] then
    lines[#lines + 1] = 'Content-Length: ' .. #body
  end
  if not seen.connection then lines[#lines + 1] = 'Connection: close' end
  return concat(lines, '\r\n') .. '\r\n\r\n' .. body
end

-- A parser of the response to a request of method: done(result) once the
-- final response (past any 1xx) is complete. Each chunk of a chunked body
-- is one element of result.chunks; another body is one.
local function reader(method, done)
  local r, piece = nil, {}
  local function cut()
    if #piece > 0 then
      r.chunks[#r.chunks + 1] = concat(piece)
      piece = {}
    end
  end
  return C.response_parser({
    head = function(status, reason, _, _, headers, raw)
      if status < 200 then return end
      r = {statusCode = status, statusMessage = reason, headers = headers,
        rawHeaders = raw, chunks = {}}
      if method == 'HEAD' then return C.SKIP_BODY end
    end,
    body = function(chunk)
      if r then piece[#piece + 1] = chunk end
    end,
    chunk = function()
      if r then cut() end
    end,
    complete = function()
      if not r or r.body then return end
      cut()
      r.body = concat(r.chunks)
      done(r)
    end,
  }, 1024 * 1024)
end

-- inject(handlerOrServer, {method=, url=, headers=, body=, timeout=}[, cb])
-- -> {statusCode=, statusMessage=, headers=, rawHeaders=, body=, chunks=}.
-- Without cb, runs the event loop until the response is complete (from the
-- main chunk, such as a spec; libuv's loop cannot run inside a callback);
-- with cb, returns at once and calls cb(err, result). createServer makes
-- the server of a handler.
function inject.inject(target, opts, cb, createServer)
  opts = opts or {}
  local server = target
  if type(target) == 'function' then
    server = createServer(target)
  elseif getmetatable(target) ~= Server then
    error('inject: expected a handler function or an http Server', 3)
  end
  local request = raw_request(opts)
  local own = not server._serving
  -- A server that never listened has not given C its options yet.
  if own then server:_configure() end
  local fds, perr = uv.socketpair('stream', 0, {nonblock = true},
    {nonblock = true})
  if not fds then error('inject: socketpair failed: ' .. tostring(perr), 3) end
  -- In the clear even on an https server: inject speaks HTTP itself.
  local ok, msg = server._srv:adopt(fds[1], true)
  tcp.close(fds[1])
  if not ok then
    tcp.close(fds[2])
    error('inject: ' .. tostring(msg), 3)
  end
  local pipe = uv.new_pipe(false)
  pipe:open(fds[2])
  local result, failure, done = nil, nil, false
  local timer = uv.new_timer()
  local function finish(err, r)
    if done then return end
    done = true
    timer:close()
    if not pipe:is_closing() then pipe:close() end
    if own then
      server._quiet = true
      server._srv:close()
    end
    result, failure = r, err
    if cb then cb(err, r) end
  end
  local parser = reader((opts.method or 'GET'):upper(), function(r)
    finish(nil, r)
  end)
  timer:start(opts.timeout or 5000, 0, function()
    finish('inject: timed out waiting for the response')
  end)
  pipe:read_start(function(err, chunk)
    if done then return end
    if err then return finish(err) end
    if chunk then
      local n, _, reason = parser:execute(chunk)
      if not n then finish('inject: bad response: ' .. tostring(reason)) end
      return
    end
    local ok, _, reason = parser:finish()
    if not done then
      finish('inject: ' .. (ok and 'incomplete response'
        or 'bad response: ' .. tostring(reason)))
    end
  end)
  pipe:write(request)
  if cb then return end
  while not done do lc.run('once') end
  if failure then error(failure, 3) end
  return result
end

return inject
