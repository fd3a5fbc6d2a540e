-- http.fetch: fetch(url[, opts]), a whole HTTP exchange for code inside a
-- coroutine (a request handler, co.spawn): the request goes through the
-- http client and its agent (http.globalAgent, keep-alive, by default),
-- the coroutine waits for the response and its body, and gets a table
-- named as Node 18's fetch Response is: status, ok, statusText, headers
-- (lower-case names, and get(name)), body (the whole body), text(),
-- json(), url, redirected.
--
-- Where Node's fetch rejects its promise, this returns nil and Node's
-- Error object (its code: ECONNREFUSED, ENOTFOUND, ECONNRESET...): the
-- network error itself, not Node's TypeError('fetch failed') around it.
-- Misuse (a wrong type, outside a coroutine) raises.

local co = require('co')
local cjson = require('cjson')
local timers = require('timers')
local errors = require('internal.errors')
local url = require('internal.url')
local client = require('http.client')

local type, tostring, pairs, pcall, error, setmetatable, unpack = type,
  tostring, pairs, pcall, error, setmetatable, unpack
local lower, upper, concat = string.lower, string.upper, table.concat

local M = {}

-- The statuses fetch follows (with a Location).
local REDIRECT = {[301] = true, [302] = true, [303] = true, [307] = true,
  [308] = true}
-- As fetch's default 'follow': the 21st redirect is an error.
local MAX_REDIRECTS = 20
-- Requests a client may send again on its own when the connection it
-- reused turned out closed (RFC 9110, 9.2.2).
local IDEMPOTENT = {GET = true, HEAD = true, OPTIONS = true, TRACE = true,
  PUT = true, DELETE = true}
-- How such a connection fails: closed as the request arrived, or before.
local CLOSING = {ECONNRESET = true, EPIPE = true}
-- Dropped when a redirect turns the request into a GET without a body.
local BODY_HEADERS = {['content-type'] = true, ['content-length'] = true,
  ['content-encoding'] = true, ['content-language'] = true,
  ['content-location'] = true, ['transfer-encoding'] = true}
-- Dropped when a redirect leads to another origin: credentials, and a
-- Host of the caller's (the new origin's is written instead).
local ORIGIN_BOUND = {authorization = true, cookie = true,
  ['proxy-authorization'] = true, host = true}

------------------------------------------------------------------------------
-- The response.

-- headers(t) -> the response's headers: t's names (lower-case) and values
-- (set-cookie a list), with get(name) (a list joined with ', ', or nil),
-- has(name) and getSetCookie() (the list), called with a dot as in Node
-- (headers.get('x')) or with a colon (headers:get('x')).
local function headers_of(t)
  local h = {}
  for k, v in pairs(t) do h[k] = v end
  local function name_of(a, b)
    if a == h then a = b end
    return lower(tostring(a))
  end
  local methods = {}
  function methods.get(a, b)
    local v = h[name_of(a, b)]
    if type(v) == 'table' then return concat(v, ', ') end
    return v
  end
  function methods.has(a, b)
    return h[name_of(a, b)] ~= nil
  end
  function methods.getSetCookie()
    local v = h['set-cookie']
    if type(v) == 'table' then return {unpack(v)} end
    return v and {v} or {}
  end
  return setmetatable(h, {__index = methods})
end

local Response = {}
Response.__index = Response
M.Response = Response

-- text() -> the body.
function Response:text()
  return self.body
end

-- json() -> the body decoded (cjson), or nil and a SyntaxError.
function Response:json()
  local ok, v = pcall(cjson.decode, self.body)
  if ok then return v end
  return nil, errors.new(nil, tostring(v), {name = 'SyntaxError'})
end

local function response(res, body, href, redirected)
  local status = res.statusCode
  return setmetatable({status = status, ok = status >= 200 and status < 300,
    statusText = res.statusMessage, headers = headers_of(res.headers),
    body = body, url = href, redirected = redirected}, Response)
end

------------------------------------------------------------------------------
-- One exchange.

local function timeout_error(ms)
  return errors.new('ETIMEDOUT', 'The operation was aborted due to timeout',
    {name = 'TimeoutError', timeout = ms})
end

-- exchange(c, st, href, method, headers, body, opts) -> res, body | nil,
-- err, retry (true when the request may be sent again: it failed before
-- any answer on a reused connection). st: the fetch's state (its current
-- request, and whether its deadline passed).
local function exchange(c, st, href, method, headers, body, opts)
  -- The deadline may pass between two redirects.
  if st.timedout then return nil, timeout_error(opts.timeout) end
  local request, o = client.request, {method = method, headers = headers,
    agent = opts.agent}
  if lower(href:sub(1, 6)) == 'https:' then
    request = require('https').request
    o.ca, o.cert, o.key, o.rejectUnauthorized, o.servername = opts.ca,
      opts.cert, opts.key, opts.rejectUnauthorized, opts.servername
  end
  local ok, req = pcall(request, href, o)
  if not ok then return nil, req end
  st.req = req
  local res, err, waiting
  local token = {}
  local function settle(r, e)
    if res or err then return end
    res, err = r, e
    if waiting then co._wake(c, token) end
  end
  req:once('response', function(r) settle(r) end)
  -- Kept after the response too: a later error has somewhere to go.
  req:on('error', function(e) settle(nil, e) end)
  req:finish(body)
  if not (res or err) then
    waiting = true
    co._suspend(c, token, function() req:destroy() end)
  end
  if st.timedout then return nil, timeout_error(opts.timeout) end
  if not res then
    return nil, err, req.reusedSocket and not req.res
      and IDEMPOTENT[method] and type(err) == 'table' and CLOSING[err.code]
  end
  local data, berr = res:body(opts.maxBodySize)
  if st.timedout then return nil, timeout_error(opts.timeout) end
  if not data then
    if berr == 'response body too large' then
      return nil, errors.new('UND_ERR_RES_EXCEEDED_MAX_SIZE',
        'Response content exceeded max size')
    end
    return nil, req._sockerr or errors.conn_reset('aborted')
  end
  return res, data
end

------------------------------------------------------------------------------
-- fetch.

local function check(cond, msg)
  if not cond then
    error(errors.type_error('ERR_INVALID_ARG_TYPE', 'http.fetch: ' .. msg), 3)
  end
end

local function has(headers, name)
  for k in pairs(headers) do
    if lower(k) == name then return true end
  end
  return false
end

local function drop(headers, set)
  for k in pairs(headers) do
    if set[lower(k)] then headers[k] = nil end
  end
end

local function origin(href)
  local ok, o = pcall(url.parse, href)
  if not ok then return href end
  return o.protocol .. '//' .. o.hostname .. ':'
    .. tostring(o.port or (o.protocol == 'https:' and 443 or 80))
end

-- fetch(url[, opts]) -> response | nil, err. opts: method ('GET'),
-- headers (a table of names and values), body (a string), timeout (ms for
-- the whole exchange, redirects included; none by default), agent (an
-- http.Agent, or false; http.globalAgent by default, https.globalAgent for
-- an https URL), ca, cert, key, rejectUnauthorized, servername (for https
-- URLs, as tls.connect's), maxBodySize (bytes;
-- past it nil and UND_ERR_RES_EXCEEDED_MAX_SIZE), redirect ('follow':
-- up to 20; 'manual': the 3xx is the response; 'error': a redirect is an
-- error). Must run inside a coroutine (http.fetch checks).
function M.fetch(input, opts)
  check(type(input) == 'string', 'url must be a string, got ' .. type(input))
  check(opts == nil or type(opts) == 'table',
    'opts must be a table, got ' .. type(opts))
  opts = opts or {}
  local method = upper(opts.method or 'GET')
  local body = opts.body
  check(body == nil or type(body) == 'string',
    'opts.body must be a string, got ' .. type(body))
  check(body == nil or (method ~= 'GET' and method ~= 'HEAD'),
    'a ' .. method .. ' request cannot have a body')
  check(opts.headers == nil or type(opts.headers) == 'table',
    'opts.headers must be a table, got ' .. type(opts.headers))
  local mode = opts.redirect or 'follow'
  check(mode == 'follow' or mode == 'manual' or mode == 'error',
    'opts.redirect must be \'follow\', \'manual\' or \'error\', got '
    .. tostring(mode))
  check(opts.timeout == nil or (type(opts.timeout) == 'number'
    and opts.timeout > 0), 'opts.timeout must be a number of ms > 0')
  check(opts.maxBodySize == nil or (type(opts.maxBodySize) == 'number'
    and opts.maxBodySize >= 0), 'opts.maxBodySize must be a number >= 0')
  local c = co._current('http.fetch')

  local headers = {}
  for k, v in pairs(opts.headers or {}) do headers[k] = v end
  if not has(headers, 'accept') then headers.Accept = '*/*' end
  if not has(headers, 'user-agent') then
    headers['User-Agent'] = 'luacluster'
  end
  if body and not has(headers, 'content-type') then
    headers['Content-Type'] = 'text/plain;charset=UTF-8'
  end

  local st = {}
  local timer
  if opts.timeout then
    timer = timers.setTimeout(function()
      st.timedout = true
      if st.req then st.req:destroy(timeout_error(opts.timeout)) end
    end, opts.timeout)
    -- The exchange keeps the process alive, not its deadline (which is
    -- left to fire in vain when the thread is killed).
    timer:unref()
  end
  local function done(...)
    if timer then timers.clearTimeout(timer) end
    return ...
  end

  local href, redirected, retried = input, false, false
  local hops = 0
  while true do
    local res, data, retry = exchange(c, st, href, method, headers, body, opts)
    if not res and retry and not retried then
      -- The connection the agent reused was closing: once more, on a new
      -- one (or another free one).
      retried = true
    elseif not res then
      return done(nil, data)
    else
      retried = false
      local location = res.headers.location
      if not REDIRECT[res.statusCode] or type(location) ~= 'string'
          or mode == 'manual' then
        return done(response(res, data, href, redirected))
      end
      if mode == 'error' then
        return done(nil, errors.type_error('ERR_FETCH_REDIRECT',
          'unexpected redirect to ' .. location))
      end
      if hops == MAX_REDIRECTS then
        return done(nil, errors.type_error('ERR_TOO_MANY_REDIRECTS',
          'redirect count exceeded'))
      end
      hops = hops + 1
      local status = res.statusCode
      if (status == 303 and method ~= 'GET' and method ~= 'HEAD')
          or ((status == 301 or status == 302) and method == 'POST') then
        method, body = 'GET', nil
        drop(headers, BODY_HEADERS)
      end
      local nexthref = url.resolve(href, location)
      if origin(nexthref) ~= origin(href) then drop(headers, ORIGIN_BOUND) end
      href, redirected = nexthref, true
    end
  end
end

return M
