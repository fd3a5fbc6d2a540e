-- store.lua: the same behaviour from every store (in memory, in a shared
-- dict, a worker's client of the primary's store, and PostgreSQL when a
-- server can be made), then what only the
-- client does: request ids, timeouts, a primary out of reach. The client
-- and the primary talk here over a channel made of two emitters, each
-- message encoded and decoded by lua-cjson and delivered on a later turn
-- of the loop, as the cluster channel does; spec/todo_api_spec.lua (in the
-- repository) runs them as real processes.

local dir = debug.getinfo(1, 'S').source:match('^@(.*)/[^/]*$') or '.'
package.path = dir .. '/../?.lua;' .. package.path

local uv = require('uv')
local cjson = require('cjson')
local EventEmitter = require('events')
local store = require('store')

-- wait(cond[, ms]) runs the event loop until cond() is true.
local function wait(cond, ms)
  local deadline = uv.now() + (ms or 2000)
  local tick = uv.new_timer()
  tick:start(5, 5, function() end) -- the loop never blocks for long
  while not cond() and uv.now() < deadline do uv.run('once') end
  tick:close()
  return cond()
end

-- call(s, method, ...) -> err, result, once the store called back.
local function call(s, method, ...)
  local got
  local args = {...}
  args[#args + 1] = function(err, result) got = {err, result} end
  s[method](s, unpack(args))
  assert(wait(function() return got ~= nil end), 'no callback')
  return got[1], got[2]
end

-- A channel between a fake primary (`cluster`, emitting message(worker,
-- msg)) and a fake worker (`process`, with send and message(msg)).
local function channel()
  local primary, worker_process = EventEmitter:new(), EventEmitter:new()
  local worker = {connected = true, sent = 0}
  local function later(fn) setTimeout(fn, 0) end
  function worker:isConnected() return self.connected end
  function worker:send(msg)
    self.sent = self.sent + 1
    local wire = cjson.encode(msg)
    later(function() worker_process:emit('message', cjson.decode(wire)) end)
  end
  function worker_process:send(msg)
    local wire = cjson.encode(msg)
    later(function() primary:emit('message', worker, cjson.decode(wire)) end)
  end
  return primary, worker_process, worker
end

local stores = {
  memory = function() return store.memory() end,
  shared = (function()
    local n = 0
    return function()
      n = n + 1
      return store.shared(require('shared').dict('todo_spec_' .. n, '64k'))
    end
  end)(),
  ['client of the primary'] = function()
    local primary, worker_process = channel()
    store.serve(primary)
    return store.client(worker_process, {timeout = 1000})
  end,
}

-- PostgreSQL, when this runs from the repository (whose spec/pg_server.lua
-- makes a real server: `make test` installs it): each store starts on an
-- empty table, made by the example's migrations.
local pg_server
do
  local ok, mod = pcall(require, 'pg_server')
  if ok and mod.bindir() then pg_server = mod end
end
local pg_srv, pg_db
if pg_server then
  stores.postgres = function()
    if not pg_srv then
      pg_srv = pg_server.start()
      pg_db = require('pg').pool({connectionString = pg_srv.url, max = 2})
    end
    local done
    require('co').spawn(function()
      assert(pg_db:query('DROP TABLE IF EXISTS todos, schema_migrations'))
      done = {store.migrate(pg_db, dir .. '/../migrations')}
    end)
    assert(wait(function() return done ~= nil end, 10000), 'no migration')
    assert(done[1], tostring(done[2]))
    return store.postgres(pg_db)
  end
end

for name, make in pairs(stores) do
  describe('store (' .. name .. ')', function()
    if name == 'postgres' then
      teardown(function()
        if pg_db then pg_db:close() end
        if pg_srv then pg_srv:stop() end
      end)
    end

    it('creates todos with ids from 1, done false unless given', function()
      local s = make()
      local err, t = call(s, 'create', {title = 'a'})
      assert.is_nil(err)
      assert.same({id = 1, title = 'a', done = false}, t)
      err, t = call(s, 'create', {title = 'b', done = true})
      assert.same({id = 2, title = 'b', done = true}, t)
    end)

    it('lists in id order; an empty store lists nothing', function()
      local s = make()
      local err, list = call(s, 'list')
      assert.is_nil(err)
      assert.same({}, list)
      for i = 1, 12 do call(s, 'create', {title = 't' .. i}) end
      err, list = call(s, 'list')
      assert.equal(12, #list)
      for i = 1, 12 do assert.equal(i, list[i].id) end
    end)

    it('gets a todo, nil when absent', function()
      local s = make()
      call(s, 'create', {title = 'a'})
      assert.same({id = 1, title = 'a', done = false},
        select(2, call(s, 'get', 1)))
      local err, t = call(s, 'get', 2)
      assert.is_nil(err)
      assert.is_nil(t)
    end)

    it('updates the given fields, nil when absent', function()
      local s = make()
      call(s, 'create', {title = 'a'})
      local _, t = call(s, 'update', 1, {done = true})
      assert.same({id = 1, title = 'a', done = true}, t)
      _, t = call(s, 'update', 1, {title = 'b'})
      assert.same({id = 1, title = 'b', done = true}, t)
      assert.same(t, select(2, call(s, 'get', 1)))
      local err
      err, t = call(s, 'update', 9, {done = true})
      assert.is_nil(err)
      assert.is_nil(t)
    end)

    it('removes, telling whether the todo was there', function()
      local s = make()
      call(s, 'create', {title = 'a'})
      call(s, 'create', {title = 'b'})
      assert.is_true(select(2, call(s, 'remove', 1)))
      assert.is_false(select(2, call(s, 'remove', 1)))
      assert.is_nil(select(2, call(s, 'get', 1)))
      local _, list = call(s, 'list')
      assert.same({{id = 2, title = 'b', done = false}}, list)
      -- Ids are not reused.
      assert.equal(3, select(2, call(s, 'create', {title = 'c'})).id)
    end)

    it('gives the caller copies, not its own state', function()
      local s = make()
      local _, t = call(s, 'create', {title = 'a'})
      t.title = 'changed'
      assert.equal('a', select(2, call(s, 'get', 1)).title)
    end)
  end)
end

describe('store.client', function()
  it('matches each reply to its request by id, whatever the order',
    function()
    local primary, worker_process, worker = channel()
    local held = {}
    primary:on('message', function(w, msg) held[#held + 1] = msg end)
    local s = store.client(worker_process)
    local got = {}
    for i = 1, 3 do
      s:get(i, function(err, t) got[i] = t end)
    end
    assert.is_true(wait(function() return #held == 3 end))
    assert.equal(3, s.pending())
    for i = 3, 1, -1 do -- answered last to first
      local msg = held[i]
      worker:send({todo_store = 'reply', id = msg.id,
        result = {id = msg.args[1], title = 'todo ' .. msg.args[1]}})
    end
    assert.truthy(wait(function() return got[1] and got[2] and got[3] end))
    for i = 1, 3 do assert.equal('todo ' .. i, got[i].title) end
    assert.equal(0, s.pending())
  end)

  it("calls back 'unavailable' when no reply comes in time, and ignores " ..
    'the late reply', function()
    local primary, worker_process, worker = channel()
    local held
    primary:on('message', function(w, msg) held = msg end)
    local s = store.client(worker_process, {timeout = 30})
    local calls = {}
    s:list(function(err, list) calls[#calls + 1] = {err, list} end)
    assert.is_true(wait(function() return #calls == 1 end))
    assert.equal('unavailable', calls[1][1].code)
    assert.truthy(calls[1][1].message:find('30 ms', 1, true))
    assert.equal(0, s.pending())
    worker:send({todo_store = 'reply', id = held.id, result = {}})
    wait(function() return false end, 50)
    assert.equal(1, #calls)
  end)

  it("calls back 'unavailable' at once when send raises", function()
    local fake = EventEmitter:new()
    function fake:send() error('channel closed') end
    local s = store.client(fake)
    local err = call(s, 'list')
    assert.equal('unavailable', err.code)
    assert.truthy(err.message:find('channel closed', 1, true))
    assert.equal(0, s.pending())
  end)

  it('leaves other messages alone', function()
    local _, worker_process = channel()
    local s = store.client(worker_process)
    worker_process:emit('message', 'hello')
    worker_process:emit('message', {todo_store = 'reply', id = 42})
    worker_process:emit('message', {other = true})
    assert.equal(0, s.pending())
  end)
end)

describe('store.serve', function()
  it('ignores messages that are not calls', function()
    local primary, _, worker = channel()
    store.serve(primary)
    primary:emit('message', worker, 'hello')
    primary:emit('message', worker, {todo_store = 'reply', id = 1})
    assert.equal(0, worker.sent)
  end)

  it('answers an unknown operation with an internal error', function()
    local primary, _, worker = channel()
    store.serve(primary)
    local sent
    worker.send = function(_, msg) sent = msg end
    primary:emit('message', worker, {todo_store = 'call', id = 5,
      op = 'drop_table', args = {}})
    assert.equal(5, sent.id)
    assert.equal('internal', sent.err.code)
  end)

  it('sends nothing to a worker that is gone', function()
    local primary, _, worker = channel()
    store.serve(primary)
    worker.connected = false
    primary:emit('message', worker, {todo_store = 'call', id = 1,
      op = 'list', args = {}})
    assert.equal(0, worker.sent)
  end)

  it('keeps the state it is given', function()
    local primary, worker_process = channel()
    local mem = store.memory()
    call(mem, 'create', {title = 'already there'})
    assert.equal(mem, store.serve(primary, mem))
    local s = store.client(worker_process)
    assert.equal('already there', select(2, call(s, 'get', 1)).title)
  end)
end)
