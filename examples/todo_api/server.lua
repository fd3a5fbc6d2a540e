-- server.lua: the todo API on every core, its todos kept by the primary.
--
--   luacluster examples/todo_api/server.lua          # port 8000, one worker per CPU
--   PORT=9000 WORKERS=2 luacluster examples/todo_api/server.lua
--
-- How the state is shared. The primary owns the todos (a memory store,
-- store.lua) and forks the workers; the workers serve HTTP and own nothing.
-- Each request a worker gets becomes a message to the primary, {todo_store
-- = 'call', id = n, op = ..., args = ...}; the primary applies it and
-- replies with the same id, and the worker answers the client. The primary
-- handles one message at a time, so a POST answered by worker 1 is seen by
-- a GET that worker 2 handles right after. A reply that does not come
-- within 2 s (a primary too busy) is answered 503 with Retry-After.
-- Workers that die are replaced (restart = 'on-failure') and lose nothing:
-- they hold no state. The todos live as long as the primary: this example
-- keeps them in memory, not on disk.
--
-- Under `luacluster -w N server.lua` this file runs in the workers only:
-- the built-in primary runs none of its code, so nothing answers the
-- messages above. The workers see that (their primary did not fork them
-- with TODO_API_STORE=primary) and use instead:
--   - with `--shared todos:SIZE` (e.g. `luacluster -w 2 --shared todos:1m
--     server.lua`), a shared dict that every worker maps: one set of todos,
--     shared as above;
--   - without it, a memory store in each worker: every worker has its own
--     todos, and a GET may not see what another worker stored (a warning
--     says so on stderr). Fine for trying -w out, not for real use.
-- GET /health says which: "store": "primary", "shared", "memory" or
-- "postgres".
--
-- With DATABASE_URL set (a libpq URL, e.g. postgresql://app@/todos), the
-- todos live in PostgreSQL instead, whichever way it runs: the primary
-- applies migrations/*.sql (M.migrate in store.lua) before it forks, and
-- every worker keeps a pool (PG_POOL connections, 10 by default). Under
-- -w each worker migrates (an advisory lock makes that safe). The todos
-- then outlive every process, and several hosts may share them.

-- The example's own modules (app.lua, store.lua) load from this folder,
-- wherever it is run from.
local dir = debug.getinfo(1, 'S').source:match('^@(.*)/[^/]*$') or '.'
package.path = dir .. '/?.lua;' .. package.path

local cluster = require('cluster')
local http = require('http')
local store = require('store')
local app = require('app')

local PORT = tonumber(process.env.PORT) or 8000
local DATABASE_URL = process.env.DATABASE_URL
if DATABASE_URL == '' then DATABASE_URL = nil end
local MIGRATIONS = dir .. '/migrations'

-- migrate(then_fn): applies the migrations, then calls then_fn; exits 1
-- if they fail.
local function migrate(then_fn)
  require('co').spawn(function()
    local pg = require('pg')
    local db = pg.pool({max = 1})
    local applied, err = store.migrate(db, MIGRATIONS)
    db:close()
    if not applied then
      io.stderr:write('todo_api: migrations failed: ', tostring(err), '\n')
      return process.exit(1)
    end
    for _, name in ipairs(applied) do print('todo_api: applied ' .. name) end
    then_fn()
  end)
end

if cluster.isPrimary and DATABASE_URL then
  local workers = tonumber(process.env.WORKERS)
    or require('os').availableParallelism()
  cluster.setupPrimary({restart = 'on-failure'})
  local listening = 0
  cluster.on('listening', function()
    listening = listening + 1
    if listening == workers then
      print(('todo_api: %d workers listening on port %d (primary %d, ' ..
        'PostgreSQL)'):format(workers, PORT, process.pid))
    end
  end)
  migrate(function()
    for _ = 1, workers do cluster.fork({TODO_API_STORE = 'postgres'}) end
  end)
  return
end

if cluster.isPrimary then
  local workers = tonumber(process.env.WORKERS)
    or require('os').availableParallelism()
  store.serve(cluster)
  cluster.setupPrimary({restart = 'on-failure'})
  local listening = 0
  cluster.on('listening', function()
    listening = listening + 1
    if listening == workers then
      print(('todo_api: %d workers listening on port %d (primary %d)')
        :format(workers, PORT, process.pid))
    end
  end)
  for _ = 1, workers do cluster.fork({TODO_API_STORE = 'primary'}) end
  return
end

-- A worker.
local todos
if DATABASE_URL then
  todos = store.postgres(require('pg').pool({
    max = tonumber(process.env.PG_POOL) or 10}))
  local function serve()
    http.createServer(app(todos, {worker = cluster.worker.id})):listen(PORT)
  end
  if process.env.TODO_API_STORE == 'postgres' then return serve() end
  return migrate(serve) -- under -w: no primary of ours migrated
elseif process.env.TODO_API_STORE == 'primary' then
  todos = store.client(process, {timeout = 2000})
else
  local ok, dict = pcall(require('shared').dict, 'todos')
  if ok then
    todos = store.shared(dict)
  else
    todos = store.memory()
    io.stderr:write('todo_api: no primary of ours and no shared dict ' ..
      "'todos': this worker keeps its own todos (run with --shared " ..
      'todos:1m to share them)\n')
  end
end

http.createServer(app(todos, {worker = cluster.worker.id})):listen(PORT)
