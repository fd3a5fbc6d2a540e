-- store.lua: where the todos live, behind one interface whatever the place.
--
-- Every store has the same five methods; each calls back once, Node style,
-- with cb(err, result). err is nil or {code=, message=}, where code is
-- 'unavailable' (the owner of the state did not answer: try again later)
-- or 'internal' (anything else).
--
--   store:list(cb)                  cb(err, todos)  sorted by id
--   store:get(id, cb)               cb(err, todo)   nil when absent
--   store:create(fields, cb)        cb(err, todo)   fields: title, done
--   store:update(id, fields, cb)    cb(err, todo)   nil when absent
--   store:remove(id, cb)            cb(err, found)  true when it existed
--
-- A todo is {id = 1, title = 'milk', done = false}. The store checks no
-- input: app.lua validates before it calls.
--
-- Five stores:
--
--   M.memory()          the state itself, in this process's memory. Specs
--                       use it; the primary keeps its todos in one.
--   M.serve(cluster)    (the primary) a memory store that answers the
--                       workers' requests; returns it.
--   M.client(process)   (a worker) a store whose methods are requests to
--                       the primary: each gets an id, the primary's reply
--                       carries it back, and a request unanswered within
--                       `timeout` ms calls back 'unavailable'.
--   M.shared(dict)      a store in a shared dict (require('shared')), for
--                       `luacluster -w N --shared todos:SIZE`, where the
--                       built-in primary runs none of this code.
--   M.postgres(db)      a store in PostgreSQL (db: a require('pg') pool),
--                       the table made by migrations/ (M.migrate): real,
--                       durable state, shared by every worker and host.
--
-- The messages between a worker and the primary (any other message on the
-- channel is left alone):
--
--   worker -> primary  {todo_store = 'call', id = 7, op = 'get', args = {3}}
--   primary -> worker  {todo_store = 'reply', id = 7, result = {...}}
--                      {todo_store = 'reply', id = 7, err = {...}}
--
-- Why every request goes to the primary rather than each worker keeping a
-- copy that the primary updates by broadcast: with a copy, a POST answered
-- by worker 1 may not have reached worker 2's copy yet when the client's
-- next GET lands there. Through the primary, the primary handles one
-- message at a time, so a write it has answered is seen by every read after
-- it, whichever worker asks. The price is one round trip over the channel
-- (a Unix socket) per request.

local M = {}

local function failure(code, message)
  return {code = code, message = message}
end
M.failure = failure

-- The five methods, on top of self:call(op, args, cb).
local Methods = {}
Methods.__index = Methods

function Methods:list(cb) return self:call('list', {}, cb) end
function Methods:get(id, cb) return self:call('get', {id}, cb) end
function Methods:create(fields, cb) return self:call('create', {fields}, cb) end
function Methods:update(id, fields, cb)
  return self:call('update', {id, fields}, cb)
end
function Methods:remove(id, cb) return self:call('remove', {id}, cb) end

local function new(kind, call)
  return setmetatable({kind = kind, call = call}, Methods)
end

-- Runs op(args) and calls back; an error raised by op becomes 'internal'
-- (and its traceback goes to stderr), so a bug answers 500, not a crash.
local function run(ops, op, args, cb)
  local fn = ops[op]
  if not fn then return cb(failure('internal', 'unknown operation ' ..
    tostring(op))) end
  local ok, result, err = xpcall(function()
    return fn(unpack(args or {}))
  end, debug.traceback)
  if not ok then
    io.stderr:write('todo_api store: ', tostring(result), '\n')
    return cb(failure('internal', 'store error'))
  end
  if err then return cb(failure('internal', err)) end
  return cb(nil, result)
end

------------------------------------------------------------------------------
-- In memory.

local function copy(todo)
  if not todo then return nil end
  return {id = todo.id, title = todo.title, done = todo.done}
end

function M.memory()
  local todos, next_id = {}, 1
  local ops = {}
  function ops.list()
    local out = {}
    for _, t in pairs(todos) do out[#out + 1] = copy(t) end
    table.sort(out, function(a, b) return a.id < b.id end)
    return out
  end
  function ops.get(id) return copy(todos[id]) end
  function ops.create(fields)
    local t = {id = next_id, title = fields.title, done = fields.done == true}
    next_id = next_id + 1
    todos[t.id] = t
    return copy(t)
  end
  function ops.update(id, fields)
    local t = todos[id]
    if not t then return nil end
    if fields.title ~= nil then t.title = fields.title end
    if fields.done ~= nil then t.done = fields.done end
    return copy(t)
  end
  function ops.remove(id)
    local found = todos[id] ~= nil
    todos[id] = nil
    return found
  end
  return new('memory', function(self, op, args, cb)
    return run(ops, op, args, cb)
  end)
end

------------------------------------------------------------------------------
-- The primary's side.

-- serve(cluster[, store]) answers every worker's calls from store (a new
-- memory store by default) and returns that store. A worker gone before
-- its reply is skipped.
function M.serve(cluster, store)
  store = store or M.memory()
  cluster:on('message', function(worker, msg)
    if type(msg) ~= 'table' or msg.todo_store ~= 'call' then return end
    store:call(msg.op, msg.args, function(err, result)
      if not worker:isConnected() then return end
      worker:send({todo_store = 'reply', id = msg.id, err = err,
        result = result})
    end)
  end)
  return store
end

------------------------------------------------------------------------------
-- A worker's side.

-- client(channel[, opts]): channel is the worker's `process` (anything with
-- send(msg) and on('message', fn) does); opts.timeout in ms (default 2000).
function M.client(channel, opts)
  local timeout = opts and opts.timeout or 2000
  local pending, last = {}, 0

  channel:on('message', function(msg)
    if type(msg) ~= 'table' or msg.todo_store ~= 'reply' then return end
    local p = pending[msg.id]
    if not p then return end -- already answered 'unavailable'
    pending[msg.id] = nil
    clearTimeout(p.timer)
    p.cb(msg.err, msg.result)
  end)

  local store = new('primary', function(self, op, args, cb)
    last = last + 1
    local id = last
    local ok, err = pcall(channel.send, channel,
      {todo_store = 'call', id = id, op = op, args = args})
    if not ok then
      return cb(failure('unavailable', 'cannot reach the primary: ' ..
        tostring(err)))
    end
    pending[id] = {cb = cb, timer = setTimeout(function()
      pending[id] = nil
      cb(failure('unavailable', ('no answer from the primary in %d ms')
        :format(timeout)))
    end, timeout)}
  end)
  -- How many requests wait for their reply (for specs).
  function store.pending()
    local n = 0
    for _ in pairs(pending) do n = n + 1 end
    return n
  end
  return store
end

------------------------------------------------------------------------------
-- In a shared dict (every worker maps the same memory; no primary code).

-- Keys: 'next_id' (a counter) and 'todo:<id>' (a todo, stored as a table).
-- A new todo goes in with safe_add, which never evicts: a full dict
-- answers 'internal' rather than silently dropping the least recently used
-- todos.
function M.shared(dict)
  local ops = {}
  local function key(id) return 'todo:' .. id end
  function ops.list()
    local out = {}
    for _, k in ipairs(dict:get_keys(0)) do
      if k:sub(1, 5) == 'todo:' then
        local t = dict:get(k)
        if t then out[#out + 1] = t end -- nil: removed meanwhile
      end
    end
    table.sort(out, function(a, b) return a.id < b.id end)
    return out
  end
  function ops.get(id) return (dict:get(key(id))) end
  function ops.create(fields)
    local id = assert(dict:incr('next_id', 1, 0))
    local t = {id = id, title = fields.title, done = fields.done == true}
    local ok, err = dict:safe_add(key(id), t)
    if not ok then return nil, 'shared dict: ' .. tostring(err) end
    return t
  end
  -- Read, change, write back with replace (so a todo removed meanwhile
  -- stays removed): two workers updating one todo at once keep the last
  -- write, as two PATCHes to one server would.
  function ops.update(id, fields)
    local t = dict:get(key(id))
    if not t then return nil end
    if fields.title ~= nil then t.title = fields.title end
    if fields.done ~= nil then t.done = fields.done end
    local ok, err = dict:replace(key(id), t)
    if not ok and err == 'not found' then return nil end
    if not ok then return nil, 'shared dict: ' .. tostring(err) end
    return t
  end
  function ops.remove(id)
    local found = dict:get(key(id)) ~= nil
    dict:delete(key(id))
    return found
  end
  return new('shared', function(self, op, args, cb)
    return run(ops, op, args, cb)
  end)
end

------------------------------------------------------------------------------
-- In PostgreSQL.

-- A failure of the database's reach (connection lost or refused, the
-- server shutting down or out of connections, the pool's wait over) is
-- 'unavailable'; anything else 'internal'.
local function pg_failure(err)
  local code = tostring(err.code or '')
  if code:match('^08') or code:match('^57P') or code == '53300' then
    return failure('unavailable', 'database: ' .. tostring(err.message))
  end
  io.stderr:write('todo_api store: ', tostring(err.message), '\n')
  return failure('internal', 'database error')
end

local function todo_of(row)
  if not row then return nil end
  return {id = row.id, title = row.title, done = row.done}
end

local COLUMNS = 'id, title, done'

function M.postgres(db)
  local ops = {}
  -- query(cb, shape, sql, ...): cb(err, shape(res)).
  local function query(cb, shape, sql, ...)
    local n = select('#', ...)
    local args = {...}
    args[n + 1] = function(err, res)
      if err then return cb(pg_failure(err)) end
      return cb(nil, shape(res))
    end
    db:query(sql, unpack(args, 1, n + 1))
  end
  function ops.list(cb)
    query(cb, function(res)
      local out = {}
      for i, row in ipairs(res.rows) do out[i] = todo_of(row) end
      return out
    end, 'SELECT ' .. COLUMNS .. ' FROM todos ORDER BY id')
  end
  local function first(res) return todo_of(res.rows[1]) end
  function ops.get(cb, id)
    query(cb, first, 'SELECT ' .. COLUMNS .. ' FROM todos WHERE id = $1', id)
  end
  function ops.create(cb, fields)
    query(cb, first, 'INSERT INTO todos (title, done) VALUES ($1, $2) ' ..
      'RETURNING ' .. COLUMNS, fields.title, fields.done == true)
  end
  -- A field not given is NULL here, which COALESCE reads as "unchanged".
  function ops.update(cb, id, fields)
    query(cb, first, 'UPDATE todos SET title = COALESCE($2, title), ' ..
      'done = COALESCE($3, done) WHERE id = $1 RETURNING ' .. COLUMNS,
      id, fields.title, fields.done)
  end
  function ops.remove(cb, id)
    query(cb, function(res) return res.rowCount > 0 end,
      'DELETE FROM todos WHERE id = $1', id)
  end
  return new('postgres', function(self, op, args, cb)
    local fn = ops[op]
    if not fn then
      return cb(failure('internal', 'unknown operation ' .. tostring(op)))
    end
    args = args or {}
    return fn(cb, unpack(args, 1, 2))
  end)
end

-- migrate(db, dir) -> the names of the files applied now, or nil and err
-- (in a coroutine). Applies every dir/*.sql not yet recorded in
-- schema_migrations, in name order, in one transaction; an advisory lock
-- lets several processes start at once (`-w N`: every worker migrates).
function M.migrate(db, dir)
  local uv = require('uv')
  local names = {}
  local req = uv.fs_scandir(dir)
  while req do
    local name = uv.fs_scandir_next(req)
    if not name then break end
    if name:match('%.sql$') then names[#names + 1] = name end
  end
  table.sort(names)
  local function must(res, err)
    if not res then error(err, 0) end
    return res
  end
  return db:transaction(function(c)
    must(c:query('SELECT pg_advisory_xact_lock(7428190)'))
    must(c:query('CREATE TABLE IF NOT EXISTS schema_migrations (' ..
      'name text PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())'))
    local done = {}
    for _, row in ipairs(must(c:query('SELECT name FROM ' ..
        'schema_migrations')).rows) do
      done[row.name] = true
    end
    local applied = {}
    for _, name in ipairs(names) do
      if not done[name] then
        local f = assert(io.open(dir .. '/' .. name, 'rb'))
        local sql = f:read('*a')
        f:close()
        must(c:query(sql))
        must(c:query('INSERT INTO schema_migrations (name) VALUES ($1)', name))
        applied[#applied + 1] = name
      end
    end
    return applied
  end)
end

return M
