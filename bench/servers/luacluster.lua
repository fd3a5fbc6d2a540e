-- The benchmark's luacluster peer: a primary forks WORKERS workers (default
-- one per CPU) that share PORT. Routes, identical in bench/servers/node.js
-- and bench/servers/nginx.conf:
--   /      "Hello World\n"
--   /cpu   an empty loop of 10^7 turns, then "done" (a JIT may drop it)
--   /work  a loop of 10^7 additions whose sum is the body (nothing to drop)
--   /order POST of a JSON order (bench/wrk/order.json): the whole body is
--          read, decoded, qty * price totalled; answers
--          {"total": <rounded to cents>, "items": <count>}
--   /redis one GET of the key bench:greeting from the redis-server on
--          REDIS_PORT, through a pooled connection (resty.redis on
--          cosockets: connect, get, set_keepalive); the value is the body
--   /pg    one row by primary key (id 1..1000 in turn) from the table
--          bench_items of the PostgreSQL at PG_URL, through the worker's
--          pool of PG_POOL (10) connections (require('pg')); its `body`
--          column is the body
local cluster = require('cluster')
local http = require('http')
local cjson = require('cjson')

local port = tonumber(process.env.PORT) or 8000
local workers = tonumber(process.env.WORKERS) or #require('os').cpus()
local redis_port = tonumber(process.env.REDIS_PORT) or 6379
local root = process.argv[2]:match('^(.*)/bench/servers/[^/]*$') or '.'

local TEXT = { ['Content-Type'] = 'text/plain' }
local JSON = { ['Content-Type'] = 'application/json' }
local BODY_LIMIT = 64 * 1024
local decode, encode, floor = cjson.decode, cjson.encode, math.floor

-- resty.redis from build/deps of this tree (vendor/setup.sh test or bench
-- puts it there), loaded on the first /redis request (as nginx's
-- require in its handler), after the global ngx it reads when it loads.
local redis
package.path = root .. '/build/deps/lua/?.lua;' .. package.path

local function load_redis()
  require('ngx')
  return require('resty.redis')
end

local function work()
  local sum = 0
  for i = 1, 1e7 do
    sum = sum + i
  end
  return string.format('%d\n', sum)
end

local function order(req, res)
  local body = req:body(BODY_LIMIT)
  if not body then return end -- too large (413 sent) or aborted
  local ok, doc = pcall(decode, body)
  local items = ok and type(doc) == 'table' and doc.items
  if type(items) ~= 'table' then
    res:writeHead(400, TEXT)
    res:finish('Bad Request\n')
    return
  end
  local total = 0
  for i = 1, #items do
    local item = items[i]
    total = total + item.qty * item.price
  end
  res:writeHead(200, JSON)
  res:finish(encode({ total = floor(total * 100 + 0.5) / 100,
    items = #items }))
end

-- The worker's pool, made on the first /pg request.
local db
local next_id = 0
local function get_pg(res)
  if not db then
    db = require('pg').pool({connectionString = process.env.PG_URL,
      max = tonumber(process.env.PG_POOL) or 10})
  end
  next_id = next_id % 1000 + 1
  local r, err = db:query('SELECT body FROM bench_items WHERE id = $1',
    next_id)
  if not r then
    res:writeHead(502, TEXT)
    return res:finish('query: ' .. tostring(err) .. '\n')
  end
  res:writeHead(200, TEXT)
  res:finish(r.rows[1].body)
end

local function fail(res, what, err)
  res:writeHead(502, TEXT)
  res:finish(what .. ': ' .. tostring(err) .. '\n')
end

local function get_redis(res)
  if not redis then
    local ok, mod = pcall(load_redis)
    if not ok then return fail(res, 'resty.redis', mod) end
    redis = mod
  end
  local red = redis:new()
  red:set_timeout(1000)
  local ok, err = red:connect('127.0.0.1', redis_port)
  if not ok then return fail(res, 'connect', err) end
  local value
  value, err = red:get('bench:greeting')
  if not value then return fail(res, 'get', err) end
  red:set_keepalive(10000, 100)
  if value == ngx.null then
    res:writeHead(404, TEXT)
    res:finish('Not Found\n')
    return
  end
  res:writeHead(200, TEXT)
  res:finish(value)
end

if cluster.isPrimary then
  for _ = 1, workers do
    cluster.fork()
  end
  cluster.on('exit', function(worker, code, signal)
    console.log(string.format('worker %d exited (%s)', worker.process.pid,
      signal or code))
  end)
else
  http.createServer(function(req, res)
    local url = req.url
    if url == '/' then
      res:writeHead(200, TEXT)
      res:finish('Hello World\n')
    elseif url == '/cpu' then
      for _ = 1, 1e7 do end
      res:writeHead(200, TEXT)
      res:finish('done\n')
    elseif url == '/work' then
      local body = work()
      res:writeHead(200, TEXT)
      res:finish(body)
    elseif url == '/order' and req.method == 'POST' then
      order(req, res)
    elseif url == '/redis' then
      get_redis(res)
    elseif url == '/pg' then
      get_pg(res)
    else
      res:writeHead(404, TEXT)
      res:finish('Not Found\n')
    end
  end):listen(port)
end
