-- app.lua's routes, through http.inject: each request goes through the
-- server's real request path (parser, headers, body events, response
-- writer) without a port, against a store in memory or a stub.
--
--   luacluster test examples/todo_api/spec     (from the repository)
--   luacluster test                            (from examples/todo_api)

local dir = debug.getinfo(1, 'S').source:match('^@(.*)/[^/]*$') or '.'
package.path = dir .. '/../?.lua;' .. package.path

local http = require('http')
local cjson = require('cjson')
local store = require('store')
local app = require('app')

-- A handler over a fresh memory store; errors it logs go to `logged`.
local logged
local function handler(s, opts)
  opts = opts or {}
  logged = {}
  opts.log = function(line) logged[#logged + 1] = line end
  return app(s or store.memory(), opts)
end

-- request(h, method, url[, body][, headers]) -> inject's result, with
-- r.json the decoded body (nil when empty).
local function request(h, method, url, body, headers)
  local r = http.inject(h, {method = method, url = url, body = body,
    headers = headers})
  if r.body ~= '' then r.json = cjson.decode(r.body) end
  return r
end

local function post(h, t)
  return request(h, 'POST', '/todos', type(t) == 'string' and t or
    cjson.encode(t), {['Content-Type'] = 'application/json'})
end

local function is_json(r)
  assert.equal('application/json', r.headers['content-type'])
end

describe('todo_api app', function()
  describe('GET /health', function()
    it('answers ok, with the store kind and the worker', function()
      local r = request(handler(nil, {worker = 3}), 'GET', '/health')
      assert.equal(200, r.statusCode)
      is_json(r)
      assert.equal('ok', r.json.status)
      assert.equal('memory', r.json.store)
      assert.equal(3, r.json.worker)
      assert.equal(process.pid, r.json.pid)
      assert.equal('3', r.headers['x-worker'])
    end)

    it('sends no X-Worker header when given no worker', function()
      local r = request(handler(), 'GET', '/health')
      assert.equal(200, r.statusCode)
      assert.is_nil(r.headers['x-worker'])
      assert.is_nil(r.json.worker)
    end)
  end)

  describe('GET /todos', function()
    it('is an empty JSON list at first', function()
      local r = request(handler(), 'GET', '/todos')
      assert.equal(200, r.statusCode)
      is_json(r)
      assert.equal('[]', r.body)
      assert.equal('2', r.headers['content-length'])
    end)

    it('lists every todo in id order', function()
      local h = handler()
      for _, title in ipairs({'a', 'b', 'c'}) do post(h, {title = title}) end
      local r = request(h, 'GET', '/todos')
      assert.equal(200, r.statusCode)
      assert.same({{id = 1, title = 'a', done = false},
        {id = 2, title = 'b', done = false},
        {id = 3, title = 'c', done = false}}, r.json)
    end)

    it('ignores a query string', function()
      local h = handler()
      post(h, {title = 'a'})
      local r = request(h, 'GET', '/todos?page=2')
      assert.equal(200, r.statusCode)
      assert.equal(1, #r.json)
    end)

    it('answers HEAD as GET, without the body', function()
      local r = request(handler(), 'HEAD', '/todos')
      assert.equal(200, r.statusCode)
      is_json(r)
      assert.equal('', r.body)
    end)
  end)

  describe('POST /todos', function()
    it('creates a todo: 201, Location, the todo as JSON', function()
      local r = post(handler(), {title = 'buy milk'})
      assert.equal(201, r.statusCode)
      is_json(r)
      assert.equal('/todos/1', r.headers['location'])
      assert.same({id = 1, title = 'buy milk', done = false}, r.json)
    end)

    it('takes done, and gives each todo the next id', function()
      local h = handler()
      assert.equal(1, post(h, {title = 'a'}).json.id)
      local r = post(h, {title = 'b', done = true})
      assert.same({id = 2, title = 'b', done = true}, r.json)
    end)

    it('reads a body sent in chunks', function()
      local r = request(handler(), 'POST', '/todos',
        '9\r\n{"title":\r\n6\r\n"tea"}\r\n0\r\n\r\n',
        {['Transfer-Encoding'] = 'chunked'})
      assert.equal(201, r.statusCode)
      assert.equal('tea', r.json.title)
    end)

    local bad = {
      {'{bad', 'invalid JSON'},
      {'', 'invalid JSON'},
      {'null', 'expected a JSON object'},
      {'"milk"', 'expected a JSON object'},
      {'["milk"]', 'expected a JSON object'},
      {'{}', 'title is required: a non-empty string'},
      {'{"done":true}', 'title is required: a non-empty string'},
      {'{"title":42}', 'title is required: a non-empty string'},
      {'{"title":"  "}', 'title is required: a non-empty string'},
      {'{"title":null}', 'title is required: a non-empty string'},
      {'{"title":"a","done":"yes"}', 'done must be a boolean'},
    }
    for _, case in ipairs(bad) do
      it('answers 400 with a JSON error to ' .. case[1], function()
        local h = handler()
        local r = post(h, case[1])
        assert.equal(400, r.statusCode)
        is_json(r)
        assert.same({error = case[2]}, r.json)
        assert.equal('[]', request(h, 'GET', '/todos').body)
      end)
    end

    it('answers 413 to a body over 64 KiB', function()
      local r = post(handler(), {title = ('x'):rep(70000)})
      assert.equal(413, r.statusCode)
      is_json(r)
      assert.truthy(r.json.error:find('larger than', 1, true))
    end)
  end)

  describe('GET /todos/:id', function()
    it('answers the todo', function()
      local h = handler()
      post(h, {title = 'a'})
      post(h, {title = 'b'})
      local r = request(h, 'GET', '/todos/2')
      assert.equal(200, r.statusCode)
      is_json(r)
      assert.same({id = 2, title = 'b', done = false}, r.json)
    end)

    it('answers 404 with a JSON error when absent', function()
      local r = request(handler(), 'GET', '/todos/7')
      assert.equal(404, r.statusCode)
      is_json(r)
      assert.same({error = 'no todo 7'}, r.json)
    end)

    it('answers 404 to an id that is not a number', function()
      local r = request(handler(), 'GET', '/todos/abc')
      assert.equal(404, r.statusCode)
      is_json(r)
    end)
  end)

  describe('PATCH /todos/:id', function()
    it('changes done and title', function()
      local h = handler()
      post(h, {title = 'a'})
      local r = request(h, 'PATCH', '/todos/1', '{"done":true}')
      assert.equal(200, r.statusCode)
      is_json(r)
      assert.same({id = 1, title = 'a', done = true}, r.json)
      r = request(h, 'PATCH', '/todos/1', '{"title":"b"}')
      assert.same({id = 1, title = 'b', done = true}, r.json)
      assert.same(r.json, request(h, 'GET', '/todos/1').json)
    end)

    it('answers 400 to nothing to change or a bad field', function()
      local h = handler()
      post(h, {title = 'a'})
      local r = request(h, 'PATCH', '/todos/1', '{}')
      assert.equal(400, r.statusCode)
      assert.same({error = 'nothing to change: give title or done'}, r.json)
      r = request(h, 'PATCH', '/todos/1', '{"done":1}')
      assert.equal(400, r.statusCode)
      r = request(h, 'PATCH', '/todos/1', '{"title":""}')
      assert.equal(400, r.statusCode)
      assert.same({id = 1, title = 'a', done = false},
        request(h, 'GET', '/todos/1').json)
    end)

    it('answers 404 when absent', function()
      local r = request(handler(), 'PATCH', '/todos/1', '{"done":true}')
      assert.equal(404, r.statusCode)
      is_json(r)
    end)
  end)

  describe('DELETE /todos/:id', function()
    it('removes the todo: 204 with no body, then 404', function()
      local h = handler()
      post(h, {title = 'a'})
      post(h, {title = 'b'})
      local r = request(h, 'DELETE', '/todos/1')
      assert.equal(204, r.statusCode)
      assert.equal('', r.body)
      assert.is_nil(r.headers['content-type'])
      assert.equal(404, request(h, 'GET', '/todos/1').statusCode)
      assert.equal(404, request(h, 'DELETE', '/todos/1').statusCode)
      assert.same({{id = 2, title = 'b', done = false}},
        request(h, 'GET', '/todos').json)
    end)
  end)

  describe('other requests', function()
    it('answers 404 with a JSON error to an unknown path', function()
      local r = request(handler(), 'GET', '/nope')
      assert.equal(404, r.statusCode)
      is_json(r)
      assert.same({error = 'not found: /nope'}, r.json)
    end)

    it('answers 405 with Allow to another method', function()
      local h = handler()
      local r = request(h, 'PUT', '/todos')
      assert.equal(405, r.statusCode)
      is_json(r)
      assert.equal('GET, POST', r.headers['allow'])
      r = request(h, 'POST', '/todos/1', '{}')
      assert.equal(405, r.statusCode)
      assert.equal('DELETE, GET, PATCH', r.headers['allow'])
      r = request(h, 'DELETE', '/health')
      assert.equal(405, r.statusCode)
      assert.equal('GET', r.headers['allow'])
    end)
  end)

  describe('failures', function()
    -- A store whose every call is fn(cb).
    local function stub(fn)
      local s = {kind = 'stub'}
      function s.call(_, op, args, cb) return fn(cb) end
      for _, m in ipairs({'list', 'get', 'create', 'update', 'remove'}) do
        s[m] = function(self, ...)
          local cb = select(select('#', ...), ...)
          return fn(cb)
        end
      end
      return s
    end

    it('answers 500 when a store raises, and logs the error', function()
      local h = handler(stub(function() error('disk on fire') end))
      local r = request(h, 'GET', '/todos')
      assert.equal(500, r.statusCode)
      is_json(r)
      assert.same({error = 'internal error'}, r.json)
      assert.equal(1, #logged)
      assert.truthy(logged[1]:find('disk on fire', 1, true))
      assert.truthy(logged[1]:find('traceback', 1, true))
    end)

    it('answers 500 when the handler raises in a later callback', function()
      -- The reply comes on a later turn of the loop, as the primary's
      -- does; a todo without an id makes building Location raise.
      local h = handler(stub(function(cb)
        setTimeout(function() cb(nil, {title = 'no id'}) end, 5)
      end))
      local r = post(h, {title = 'x'})
      assert.equal(500, r.statusCode)
      is_json(r)
      assert.same({error = 'internal error'}, r.json)
      assert.equal(1, #logged)
    end)

    it('answers 503 with Retry-After when the store is unavailable',
      function()
      local h = handler(stub(function(cb)
        cb(store.failure('unavailable', 'no answer from the primary'))
      end))
      for _, req in ipairs({{'GET', '/todos'}, {'GET', '/todos/1'},
          {'DELETE', '/todos/1'}, {'POST', '/todos', '{"title":"a"}'},
          {'PATCH', '/todos/1', '{"done":true}'}}) do
        local r = request(h, req[1], req[2], req[3])
        assert.equal(503, r.statusCode)
        is_json(r)
        assert.equal('1', r.headers['retry-after'])
        assert.same({error = 'store unavailable, try again'}, r.json)
      end
      assert.equal(0, #logged)
    end)

    it('answers 500 when the store fails otherwise, and logs it', function()
      local h = handler(stub(function(cb)
        cb(store.failure('internal', 'shared dict: no memory'))
      end))
      local r = post(h, {title = 'a'})
      assert.equal(500, r.statusCode)
      assert.same({error = 'internal error'}, r.json)
      assert.truthy(logged[1]:find('no memory', 1, true))
    end)

    it('keeps serving after an error', function()
      local n = 0
      local mem = store.memory()
      local s = stub(function(cb)
        n = n + 1
        if n == 1 then error('once') end
        mem:list(cb)
      end)
      local h = handler(s)
      assert.equal(500, request(h, 'GET', '/todos').statusCode)
      assert.equal(200, request(h, 'GET', '/todos').statusCode)
    end)
  end)
end)
