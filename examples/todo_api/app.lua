-- app.lua: the todo API's routes, as one request handler.
--
--   local handler = require('app')(store, {worker = 2})
--   http.createServer(handler):listen(8000)
--
-- The store (store.lua) is a dependency, not a global: server.lua passes
-- the store that talks to the primary, specs pass one in memory, and the
-- handler neither knows nor cares which. opts.worker, when given, is sent
-- back in an X-Worker header and in /health; opts.log(line) takes the
-- errors (default: stderr).
--
--   GET    /health       200 {status, worker, pid, store}
--   GET    /todos        200 [todo, ...]
--   POST   /todos        201 todo (Location: /todos/<id>); body {"title":
--                        "...", "done": false}; 400 on bad JSON or fields
--   GET    /todos/<id>   200 todo, 404 when absent
--   PATCH  /todos/<id>   200 todo (title and/or done), 400, 404
--   DELETE /todos/<id>   204, 404 when absent
--
-- Every body is JSON with Content-Type: application/json; an error is
-- {"error": "..."}. Another method on a known path answers 405 with Allow;
-- an unknown path 404; a body over 64 KiB 413; a store that cannot reach
-- the state 503 with Retry-After; anything else that fails, a bug included,
-- 500 (its traceback on stderr), and the server goes on.

local cjson = require('cjson')

local MAX_BODY = 64 * 1024

local function encode(value)
  -- lua-cjson writes an empty table as {}; a list of no todos is [].
  if type(value) == 'table' and next(value) == nil then return '[]' end
  return cjson.encode(value)
end

local function send(res, status, value, headers)
  if res.headersSent then -- a bug after the answer began: end it as it is
    if not res.finished then res:finish() end
    return
  end
  local body = value ~= nil and encode(value) or ''
  res.statusCode = status
  if value ~= nil then
    res:setHeader('Content-Type', 'application/json')
  end
  for k, v in pairs(headers or {}) do res:setHeader(k, v) end
  res:finish(body)
end

local function fail(res, status, message, headers)
  return send(res, status, {error = message}, headers)
end

-- Reads the whole body (at most MAX_BODY bytes), then calls fn(body)
-- through guarded.
local function read_body(req, res, guarded, fn)
  local parts, size, over = {}, 0, false
  req:on('data', function(chunk)
    if over then return end
    size = size + #chunk
    if size > MAX_BODY then
      over = true
      parts = nil
      return fail(res, 413, 'body larger than ' .. MAX_BODY .. ' bytes',
        {Connection = 'close'})
    end
    parts[#parts + 1] = chunk
  end)
  req:on('end', function()
    if over then return end
    guarded(res, fn, table.concat(parts))
  end)
end

-- Parses and checks a todo's fields. For a POST (partial false) title is
-- required; for a PATCH (partial true) each field is optional but at least
-- one must be given. Returns fields, or nil and what is wrong.
local function parse_todo(body, partial)
  local ok, t = pcall(cjson.decode, body)
  if not ok then return nil, 'invalid JSON' end
  if type(t) ~= 'table' or (next(t) ~= nil and t[1] ~= nil) then
    return nil, 'expected a JSON object'
  end
  local fields = {}
  if t.title ~= nil or not partial then
    if type(t.title) ~= 'string' or not t.title:find('%S') then
      return nil, 'title is required: a non-empty string'
    end
    fields.title = t.title
  end
  if t.done ~= nil then
    if type(t.done) ~= 'boolean' then return nil, 'done must be a boolean' end
    fields.done = t.done
  end
  if partial and next(fields) == nil then
    return nil, 'nothing to change: give title or done'
  end
  return fields
end

return function(store, opts)
  opts = opts or {}
  local worker = opts.worker
  -- Where errors go: one line (or traceback) per call.
  local log = opts.log or function(line) io.stderr:write(line, '\n') end

  -- A store's err ({code=, message=}) as a response.
  local function store_failed(res, err)
    if type(err) == 'table' and err.code == 'unavailable' then
      return fail(res, 503, 'store unavailable, try again',
        {['Retry-After'] = '1'})
    end
    log('todo_api: store error: ' ..
      tostring(type(err) == 'table' and err.message or err))
    return fail(res, 500, 'internal error')
  end

  -- Runs fn(...) and answers 500 if it raises. The server would answer 500
  -- to an error raised by the handler itself, but store callbacks and body
  -- events run later, outside the handler: each goes through this.
  local function guarded(res, fn, ...)
    local args, n = {...}, select('#', ...)
    local ok, err = xpcall(function() return fn(unpack(args, 1, n)) end,
      debug.traceback)
    if not ok then
      log('todo_api: ' .. tostring(err))
      fail(res, 500, 'internal error')
    end
  end

  -- A store callback through guarded: it may run after the handler
  -- returned (when the primary replies).
  local function later(res, fn)
    return function(...) return guarded(res, fn, ...) end
  end

  local routes = {}

  function routes.health(req, res)
    send(res, 200, {status = 'ok', worker = worker, pid = process.pid,
      store = store.kind})
  end

  function routes.list(req, res)
    store:list(later(res, function(err, todos)
      if err then return store_failed(res, err) end
      send(res, 200, todos)
    end))
  end

  function routes.create(req, res)
    read_body(req, res, guarded, function(body)
      local fields, why = parse_todo(body, false)
      if not fields then return fail(res, 400, why) end
      store:create(fields, later(res, function(err, todo)
        if err then return store_failed(res, err) end
        send(res, 201, todo, {Location = '/todos/' .. todo.id})
      end))
    end)
  end

  function routes.get(req, res, id)
    store:get(id, later(res, function(err, todo)
      if err then return store_failed(res, err) end
      if not todo then return fail(res, 404, 'no todo ' .. id) end
      send(res, 200, todo)
    end))
  end

  function routes.update(req, res, id)
    read_body(req, res, guarded, function(body)
      local fields, why = parse_todo(body, true)
      if not fields then return fail(res, 400, why) end
      store:update(id, fields, later(res, function(err, todo)
        if err then return store_failed(res, err) end
        if not todo then return fail(res, 404, 'no todo ' .. id) end
        send(res, 200, todo)
      end))
    end)
  end

  function routes.remove(req, res, id)
    store:remove(id, later(res, function(err, found)
      if err then return store_failed(res, err) end
      if not found then return fail(res, 404, 'no todo ' .. id) end
      send(res, 204)
    end))
  end

  -- path -> {METHOD = route}; HEAD is answered as GET (without the body).
  local function match(path)
    if path == '/health' then return {GET = routes.health} end
    if path == '/todos' then
      return {GET = routes.list, POST = routes.create}
    end
    local id = path:match('^/todos/(%d+)$')
    if id then
      return {GET = routes.get, PATCH = routes.update,
        DELETE = routes.remove}, tonumber(id)
    end
  end

  return function(req, res)
    if worker then res:setHeader('X-Worker', tostring(worker)) end
    local path = req.url:match('^[^?#]*')
    local methods, id = match(path)
    if not methods then return fail(res, 404, 'not found: ' .. path) end
    local method = req.method == 'HEAD' and 'GET' or req.method
    local route = methods[method]
    if not route then
      local allow = {}
      for m in pairs(methods) do allow[#allow + 1] = m end
      table.sort(allow)
      return fail(res, 405, 'method not allowed',
        {Allow = table.concat(allow, ', ')})
    end
    -- Store callbacks may come at once (a memory store) or later (the
    -- primary's reply): guarded covers both.
    return guarded(res, route, req, res, id)
  end
end
