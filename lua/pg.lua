-- pg: PostgreSQL on libpq's asynchronous API, driven by the event loop.
--
--   local pg = require('pg')
--   local db = pg.pool({max = 10})           -- DATABASE_URL by default
--   local res, err = db:query('SELECT * FROM t WHERE id = $1', id)
--   -- res.rows[1].name, res.fields, res.rowCount, res.command
--
-- In a coroutine (every request handler runs in one) a query waits
-- without blocking the worker and returns res, or nil and err. Anywhere
-- else a callback goes last: db:query(sql, ..., function(err, res) end).
-- Names and shapes are Node pg's (Pool, Client, the error's fields, the
-- notification message). The pieces: lua/pg/client.lua (a connection),
-- pg/pool.lua, pg/query.lua (arguments, waiting), pg/types.lua (values),
-- runtime/pg/ (the libpq binding, libpq loaded at the first require).

local lpg = require('_pg')
do
  local ok, why = lpg.load()
  if not ok then error('pg: ' .. why, 2) end
end

local Client = require('pg.client')
local Pool = require('pg.pool')
local Q = require('pg.query')
local types = require('pg.types')

local type, error = type, error

local pg = {}

-- The SQL NULL, in results and parameters: cjson.null (and ngx.null), so
-- JSON encodes it as null.
pg.null = types.null
pg.json, pg.bytea, pg.array = types.json, types.bytea, types.array
pg.Client, pg.Pool = Client, Pool
pg.conninfo = Client.conninfo

-- libpq's version (150000 + minor for 15.x).
pg.libVersion = lpg.lib_version()

-- connect(url_or_opts[, cb]) -> client, or nil and err: a connection of
-- its own (not pooled); client:close() ends it.
function pg.connect(info, cb)
  if type(info) == 'function' and cb == nil then info, cb = nil, info end
  local opts = type(info) == 'table' and info or nil
  local s = Client.conninfo(info)
  local function start(done)
    Client.new(s, opts, done)
  end
  if cb ~= nil then
    if type(cb) ~= 'function' then
      error('pg.connect: the callback must be a function', 2)
    end
    start(function(err, c)
      if err then cb(err) else cb(nil, c) end
    end)
    return
  end
  return Q.wait('pg.connect', start)
end

-- pool(opts_or_url) -> a Pool (lua/pg/pool.lua for its options).
function pg.pool(opts)
  return Pool.new(opts)
end

-- Runs q on the client: cb(err, res) with a callback, else waits (inside
-- a coroutine) and returns res, or nil and err.
local function submit(self, what, q, cb)
  if cb then
    q.cb = cb
    return self:_submit(q)
  end
  return Q.wait(what, function(done)
    q.cb = done
    self:_submit(q)
  end)
end

-- client:query(sql, ...) -> res, or nil and err; as pool:query.
function Client:query(sql, ...)
  local q, cb = Q.make('client:query', sql, ...)
  return submit(self, 'client:query', q, cb)
end

-- client:copyFrom(sql, data[, cb]) -> res (res.rowCount rows copied), or
-- nil and err: a COPY ... FROM STDIN with data (a string or a list of
-- strings, in the format the statement names).
function Client:copyFrom(sql, data, cb)
  local q
  q, cb = Q.copy('client:copyFrom', sql, data, cb)
  return submit(self, 'client:copyFrom', q, cb)
end

-- client:copyTo(sql[, cb]) -> res with res.data, the rows of a COPY ... TO
-- STDOUT as the server wrote them (query() gives the same).
Client.copyTo = Client.query

return pg
