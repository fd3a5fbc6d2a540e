-- The server fuzz/fuzz_http.c feeds: an http.Server whose handler
-- behaves as the words in the request's URL say, so that the fuzzer, with
-- the words in fuzz/http.dict, reaches each way of answering:
--   now       answer at once, without reading the body
--   destroy   cut the connection in the handler
--   continue  res:writeContinue() before reading
--   pause     req:pause(), then resume on the next turn of the loop
--   later     answer on the next turn of the loop (pipelined requests wait)
--   stream    a chunked body in three writes
--   big       a body past the socket's buffer, written on 'drain'
--   length    an explicit Content-Length
--   close     Connection: close
-- The default reads the body and answers with its method, its number of
-- headers and the body's length. Every request's fields are checked on the
-- way (check below); a broken one is reported to the C side by busy(), as
-- is the count of answers begun on open connections, each of which must
-- reach the client (as a 200 or 201 head).
-- Returns {adopt = function(fd), busy = function() -> conns, pending,
-- answered, requests, problem|nil}.

local http = require('http')
local C = require('_http')

local find, lower = string.find, string.lower
local pending = 0 -- answers and resumes waiting for the loop
local problem     -- what check found wrong, for the C side
local answered = 0 -- answers begun while their connection was open

-- What the request path promises about a request; returns its number of
-- headers.
local function check(req)
  local function wrong(what)
    problem = problem or (what .. ' in ' .. req.method .. ' ' .. req.url)
  end
  -- llhttp's method names (PRI among them; CONNECT closes unanswered).
  if not find(req.method, '^[A-Z][A-Z%-]*$') or req.method == 'CONNECT' then
    wrong('a bad method')
  end
  if req.url == '' then wrong('an empty url') end
  -- llhttp takes a request line without a version as HTTP/0.9, and lets
  -- "HTTP/2.0" through (answered as 1.1).
  local v = req.httpVersion
  if not (v == '0.9' or v == '1.0' or v == '1.1' or v == '2.0') then
    wrong('version ' .. tostring(v))
  end
  local raw, headers = req.rawHeaders, req.headers
  if #raw % 2 ~= 0 then wrong('odd rawHeaders') end
  for i = 1, #raw, 2 do
    local name, value = raw[i], raw[i + 1]
    if name == '' or find(name, '[^%w!#$%%&\'*+%-.^_`|~]') then
      wrong('a bad header name')
    end
    if find(value, '^[ \t]') or find(value, '[ \t]$')
        or find(value, '[%z\r\n]') then
      wrong('an untrimmed or bad header value')
    end
    if headers[lower(name)] == nil then wrong('a header lost') end
  end
  local n = 0
  for k in pairs(headers) do
    n = n + 1
    if k ~= lower(k) then wrong('a header name not lower-cased') end
  end
  return n
end

-- Whether res's connection is still open: _http.name gives nil once it is
-- closed; open, it is a Unix socket, whose address is {}.
local function open(res)
  return C.name(res._c, false) ~= nil
end

-- Counts an answer about to start (its head leaves with its first write)
-- on an open connection.
local function start(res)
  if open(res) then answered = answered + 1 end
end

local function finish(res, body)
  start(res)
  res:finish(body)
end

local function has(url, word)
  return find(url, word, 1, true) ~= nil
end

local function later(fn)
  pending = pending + 1
  setImmediate(function()
    pending = pending - 1
    fn()
  end)
end

local BIG = string.rep('x', 65536)

-- Writes left more pieces of BIG, waiting for 'drain' when write() says
-- so, then calls done and finishes. (A connection that fails mid-way, as
-- on bad bytes after the request, gives no 'drain' but 'close'.)
local function big(res, left, done)
  while left > 0 do
    left = left - 1
    if not res:write(BIG) then
      res:once('drain', function() big(res, left, done) end)
      return
    end
  end
  done()
  res:finish()
end

local server = http.createServer(function(req, res)
  local url = req.url
  local nheaders = check(req)
  if has(url, 'now') then
    finish(res, 'now')
    return
  end
  if has(url, 'destroy') then
    res:destroy()
    return
  end
  if has(url, 'continue') then res:writeContinue() end
  if has(url, 'pause') then
    req:pause()
    later(function() req:resume() end)
  end
  local n = 0
  local function reply()
    if has(url, 'close') then res:setHeader('Connection', 'close') end
    if has(url, 'stream') then
      res:writeHead(201, {['Content-Type'] = 'text/plain'})
      start(res)
      res:write('a')
      res:write(string.rep('b', 3000))
      res:finish('c')
    elseif has(url, 'big') and not open(res) then
      res:finish() -- Cut before it began: no 'close' will come.
    elseif has(url, 'big') then
      -- Pending until finished or closed.
      local gone = false
      local function done()
        if not gone then
          gone = true
          pending = pending - 1
        end
      end
      pending = pending + 1
      res:once('close', done)
      start(res)
      big(res, 6, done)
    elseif has(url, 'length') and req.method ~= 'HEAD' then
      local body = req.method .. ' ' .. nheaders .. ' ' .. n
      res:setHeader('Content-Length', #body)
      finish(res, body)
    else
      finish(res, req.method .. ' ' .. nheaders .. ' ' .. n)
    end
  end
  req:on('data', function(chunk) n = n + #chunk end)
  req:on('end', function()
    if has(url, 'later') then later(reply) else reply() end
  end)
end)

-- Small limits, so that inputs of a few KiB reach them: 431 past 1 KiB of
-- head, backpressure past 1 KiB queued. The timeouts stay long: a run
-- never waits on the clock.
server.maxHeaderSize = 1024
server.highWaterMark = 1024
server._srv:configure(server.maxHeaderSize, server.headersTimeout,
  server.requestTimeout, server.keepAliveTimeout, server.highWaterMark)

return {
  -- Serves a duplicate of the connected socket fd.
  adopt = function(fd)
    assert(server._srv:adopt(fd))
  end,
  -- What is still going on: connections open, answers pending; answers
  -- and requests so far; what check found wrong.
  busy = function()
    local requests, conns = server._srv:stats()
    return conns, pending, answered, requests, problem
  end,
}
