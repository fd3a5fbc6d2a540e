-- examples/todo_api end to end: the server started as a user starts it,
-- with 2 workers on a free port, and real requests over loopback. Each
-- request is a new connection, so the kernel spreads them over both
-- workers; the X-Worker header says which one answered. (The routes
-- themselves are specified in examples/todo_api/spec, through http.inject.)

local h = require('helper')
local cjson = require('cjson')

local SERVER = h.root .. '/examples/todo_api/server.lua'

-- request(port, method, path[, body][, opts]) -> {status, headers, body,
-- json, worker}; one HTTP/1.1 request with Connection: close. No response
-- raises, or with opts.resets returns {err = why}.
local function request(port, method, path, body, opts)
  local raw = method .. ' ' .. path .. ' HTTP/1.1\r\nHost: 127.0.0.1\r\n' ..
    'Connection: close\r\n'
  if body then
    raw = raw .. 'Content-Type: application/json\r\nContent-Length: ' ..
      #body .. '\r\n'
  end
  local data, err = h.raw(port, raw .. '\r\n' .. (body or ''))
  local head, rest = data:match('^(.-)\r\n\r\n(.*)$')
  if not head then
    local why = ('no response to %s %s: %s'):format(method, path,
      tostring(err))
    if opts and opts.resets then return {headers = {}, err = why} end
    error(why, 2)
  end
  local r = {status = tonumber(head:match('^HTTP/1%.%d (%d%d%d)')),
    headers = {}, body = rest}
  for k, v in head:gmatch('\r\n([^:\r\n]+):%s*([^\r\n]*)') do
    r.headers[k:lower()] = v
  end
  if rest ~= '' and r.headers['content-type'] == 'application/json' then
    r.json = cjson.decode(rest)
  end
  r.worker = tonumber(r.headers['x-worker'])
  return r
end

-- until_worker(port, method, path, pred[, check][, opts]) -> the first
-- response that pred(r) accepts, asking again (a new connection each time)
-- for up to 5 s; every response goes to check(r) first, when given. opts
-- as request's.
local function until_worker(port, method, path, pred, check, opts)
  local uv = require('uv')
  uv.update_time()
  local deadline = uv.now() + 5000
  repeat
    local r = request(port, method, path, nil, opts)
    if check then check(r) end
    if pred(r) then return r end
    uv.update_time()
  until uv.now() > deadline
  error(('no response to %s %s was as wanted within 5 s'):format(method,
    path))
end

-- start(args[, env]) -> proc and port, once both workers listen (the
-- example's primary prints one line; -w's logs a line per worker).
local function start(args, env)
  local port = h.free_port()
  env = env or {}
  env.PORT = tostring(port)
  -- No database unless the spec gives one (false: unset).
  if env.DATABASE_URL == nil then env.DATABASE_URL = false end
  local p = h.spawn(args, {env = env})
  local ok = h.wait(function()
    local _, n = (p.stdout .. p.stderr):gsub('listening on port ' .. port, '')
    return p.exited or p.stdout:find('2 workers listening', 1, true) or n == 2
  end, 10000) and not p.exited
  assert(ok, 'server did not start:\n' .. p.stdout .. p.stderr)
  return p, port
end

-- Both workers' /health, by worker id.
local function both_health(port)
  local seen, n = {}, 0
  until_worker(port, 'GET', '/health', function(r)
    if r.status == 200 and not seen[r.worker] then
      seen[r.worker] = r.json
      n = n + 1
    end
    return n == 2
  end)
  return seen
end

after_each(function() h.cleanup() end)

describe('todo_api (server.lua, its own primary, 2 workers)', function()
  it('shares the todos across workers through the primary', function()
    local p, port = start({SERVER}, {WORKERS = '2'})

    local health = both_health(port)
    for id = 1, 2 do
      assert.equal('ok', health[id].status)
      assert.equal('primary', health[id].store)
      assert.equal(id, health[id].worker)
    end
    assert.are_not.equal(health[1].pid, health[2].pid)

    -- A POST handled by one worker...
    local created = request(port, 'POST', '/todos',
      '{"title":"buy milk"}')
    assert.equal(201, created.status)
    assert.equal('application/json', created.headers['content-type'])
    assert.same({id = 1, title = 'buy milk', done = false}, created.json)
    assert.equal('/todos/1', created.headers['location'])
    assert.is_not_nil(created.worker)

    -- ...is seen by the other right after, and by itself.
    local seen = {}
    until_worker(port, 'GET', '/todos/1', function(r)
      seen[r.worker] = true
      return seen[1] and seen[2]
    end, function(r)
      assert.equal(200, r.status)
      assert.same(created.json, r.json)
    end)

    -- The list, from each worker.
    seen = {}
    until_worker(port, 'GET', '/todos', function(r)
      seen[r.worker] = true
      return seen[1] and seen[2]
    end, function(r)
      assert.equal(200, r.status)
      assert.same({created.json}, r.json)
    end)

    -- A PATCH on one, seen by both.
    local patched = request(port, 'PATCH', '/todos/1', '{"done":true}')
    assert.equal(200, patched.status)
    assert.is_true(patched.json.done)
    seen = {}
    until_worker(port, 'GET', '/todos/1', function(r)
      seen[r.worker] = true
      return seen[1] and seen[2]
    end, function(r) assert.is_true(r.json.done) end)

    -- Bad input, over the wire too.
    local bad = request(port, 'POST', '/todos', '{"title":')
    assert.equal(400, bad.status)
    assert.same({error = 'invalid JSON'}, bad.json)

    -- DELETE on one worker: both answer 404 after.
    local deleted = request(port, 'DELETE', '/todos/1')
    assert.equal(204, deleted.status)
    assert.equal('', deleted.body)
    seen = {}
    until_worker(port, 'GET', '/todos/1', function(r)
      seen[r.worker] = true
      return seen[1] and seen[2]
    end, function(r)
      assert.equal(404, r.status)
      assert.same({error = 'no todo 1'}, r.json)
    end)
    assert.equal(404, request(port, 'DELETE', '/todos/1').status)
    assert.equal('[]', request(port, 'GET', '/todos').body)

    p:stop()
    assert.equal(0, p.code)
    assert.is_nil(p.stderr:find('todo_api:', 1, true))
  end)

  it('keeps the todos when a worker dies: the primary holds them',
    function()
    local p, port = start({SERVER}, {WORKERS = '2'})
    local health = both_health(port)
    assert.equal(201, request(port, 'POST', '/todos', '{"title":"a"}').status)
    assert.equal(201, request(port, 'POST', '/todos', '{"title":"b"}').status)

    require('uv').kill(health[1].pid, 'sigkill')
    -- The replacement (worker 3) serves the same todos. (A connection the
    -- kernel queued on the dead worker's socket is reset: skipped.)
    local r = until_worker(port, 'GET', '/todos', function(res)
      return res.worker == 3
    end, function(res)
      if res.err then return end
      assert.equal(200, res.status)
      assert.equal(2, #res.json)
    end, {resets = true})
    assert.same({'a', 'b'}, {r.json[1].title, r.json[2].title})
    assert.equal(3, request(port, 'POST', '/todos', '{"title":"c"}').json.id)

    p:stop()
    assert.equal(0, p.code)
  end)
end)

describe('todo_api under luacluster -w 2', function()
  it('without --shared: each worker keeps its own todos, and says so',
    function()
    local p, port = start({'-w', '2', SERVER})
    local health = both_health(port)
    assert.equal('memory', health[1].store)
    assert.equal('memory', health[2].store)
    assert.truthy(p.stderr:find("[1] todo_api: no primary of ours", 1, true))
    assert.truthy(p.stderr:find("[2] todo_api: no primary of ours", 1, true))

    local created = request(port, 'POST', '/todos', '{"title":"mine"}')
    assert.equal(201, created.status)
    local writer = created.worker
    -- The writer has it; the other worker does not.
    until_worker(port, 'GET', '/todos/1', function(r)
      return r.worker ~= writer
    end, function(r)
      assert.equal(r.worker == writer and 200 or 404, r.status)
    end)

    p:stop()
    assert.equal(0, p.code)
  end)

  it('with --shared todos:1m: one set of todos in a shared dict', function()
    local p, port = start({'-w', '2', '--shared', 'todos:1m', SERVER})
    local health = both_health(port)
    assert.equal('shared', health[1].store)
    assert.equal('shared', health[2].store)
    assert.is_nil(p.stderr:find('todo_api:', 1, true))

    local created = request(port, 'POST', '/todos', '{"title":"ours"}')
    assert.equal(201, created.status)
    local seen = {}
    until_worker(port, 'GET', '/todos/1', function(r)
      seen[r.worker] = true
      return seen[1] and seen[2]
    end, function(r)
      assert.equal(200, r.status)
      assert.same(created.json, r.json)
    end)

    assert.equal(204, request(port, 'DELETE', '/todos/1').status)
    seen = {}
    until_worker(port, 'GET', '/todos/1', function(r)
      seen[r.worker] = true
      return seen[1] and seen[2]
    end, function(r) assert.equal(404, r.status) end)

    p:stop()
    assert.equal(0, p.code)
  end)
end)

describe('todo_api with DATABASE_URL (PostgreSQL)', function()
  -- A server of its own for each test (after_each's cleanup kills every
  -- process a test started).
  local srv

  before_each(function() srv = require('pg_server').start() end)
  after_each(function() if srv then srv:stop() end end)

  it('migrates, shares the todos and keeps them across restarts',
    function()
    local p, port = start({SERVER}, {WORKERS = '2', DATABASE_URL = srv.url})
    assert.truthy(p.stdout:find('applied 001_create_todos.sql', 1, true))
    local health = both_health(port)
    assert.equal('postgres', health[1].store)
    assert.equal('postgres', health[2].store)

    local created = request(port, 'POST', '/todos',
      '{"title":"durable milk"}')
    assert.equal(201, created.status)
    assert.same({id = 1, title = 'durable milk', done = false}, created.json)
    local seen = {}
    until_worker(port, 'GET', '/todos/1', function(r)
      seen[r.worker] = true
      return seen[1] and seen[2]
    end, function(r)
      assert.equal(200, r.status)
      assert.same(created.json, r.json)
    end)
    local patched = request(port, 'PATCH', '/todos/1', '{"done":true}')
    assert.same({id = 1, title = 'durable milk', done = true}, patched.json)
    p:stop()
    assert.equal(0, p.code)

    -- A new server, under -w this time: the todos are still there, and
    -- the migration is not applied again.
    p, port = start({'-w', '2', SERVER}, {DATABASE_URL = srv.url})
    health = both_health(port)
    assert.equal('postgres', health[1].store)
    local list = request(port, 'GET', '/todos')
    assert.equal(200, list.status)
    assert.same({patched.json}, list.json)
    assert.is_nil(p.stdout:find('applied', 1, true))
    assert.equal(204, request(port, 'DELETE', '/todos/1').status)
    assert.equal(404, request(port, 'GET', '/todos/1').status)
    p:stop()
    assert.equal(0, p.code)
  end)

  it('answers 503 while the database is down, and recovers', function()
    local p, port = start({SERVER}, {WORKERS = '2', DATABASE_URL = srv.url})
    both_health(port)
    srv:kill()
    local down = request(port, 'GET', '/todos')
    assert.equal(503, down.status)
    srv:launch()
    local up = until_worker(port, 'GET', '/todos', function(r)
      return r.status == 200
    end)
    assert.equal(200, up.status)
    p:stop()
  end)
end)
