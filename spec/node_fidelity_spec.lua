-- Node fidelity (issue 17): each case runs a Node program
-- (spec/fixtures/node/NAME.js, under `node`) and its Lua port
-- (spec/fixtures/node/NAME.lua, under luacluster) and asserts the two agree
-- on what a user sees: output, event order, exit codes. Each case also
-- asserts the expected output itself, so a difference in Node cannot make
-- a broken port pass.

local h = require('helper')

local DIR = 'spec/fixtures/node/'

-- both(name[, opts]) -> node's process, luacluster's process, both ended.
-- opts.env: extra environment for both.
local function both(name, opts)
  opts = opts or {}
  local js = h.spawn({DIR .. name .. '.js'}, {cmd = 'node', env = opts.env})
  local lua = h.spawn({DIR .. name .. '.lua'}, {env = opts.env})
  assert(js:wait(opts.timeout or 15000), 'node timed out: ' .. name)
  assert(lua:wait(opts.timeout or 15000), 'luacluster timed out: ' .. name)
  return js, lua
end

after_each(function() h.cleanup() end)

describe('cluster as Node', function()
  it("keeps a worker with a 'disconnect' listener until it fires", function()
    -- Several runs: the event must come every time, as in Node.
    for _ = 1, 3 do
      local js, lua = both('disconnect_listener')
      local want = 'worker disconnect\nexit 0 null true\n'
      assert.equal(want, js.stdout)
      assert.equal(js.stdout, lua.stdout)
      assert.equal(js.code, lua.code)
      assert.equal(0, lua.code)
    end
  end)

  it("forwards the worker's process 'error' to cluster.worker", function()
    local js, lua = both('worker_error')
    assert.equal('worker error: boom\nprimary got: error boom\n'
      .. 'listening worker exit 0 null\nunlistened worker exit 1 null\n',
      js.stdout)
    assert.equal(js.stdout, lua.stdout)
    assert.equal(js.code, lua.code)
    -- Unheard, the error is uncaught in the worker, as Node's.
    assert.truthy(lua.stderr:find('unheard', 1, true))
  end)
end)

describe('http and net as Node', function()
  it('sends a response finished just before the worker ends itself',
      function()
    local js, lua = both('exit_flush')
    assert.equal('kill: worker is dead: false\n'
      .. 'kill: 200 Current process PID\n'
      .. 'kill: exit null SIGTERM, worker is dead: true\n'
      .. 'exit: worker is dead: false\n'
      .. 'exit: 200 Current process PID\n'
      .. 'exit: exit 3 null, worker is dead: true\n', js.stdout)
    assert.equal(js.stdout, lua.stdout)
    assert.equal(js.code, lua.code)
  end)

  it('makes http.Server and net.Server by a call and by new', function()
    local js, lua = both('server_construct')
    local want = {}
    for _, name in ipairs({'http call', 'http new', 'net call', 'net new'}) do
      want[#want + 1] = name .. ' instance true\n' .. name .. ' answered '
        .. name .. '\n'
    end
    assert.equal(table.concat(want), js.stdout)
    assert.equal(js.stdout, lua.stdout)
    assert.equal(0, js.code)
    assert.equal(0, lua.code)
  end)
end)

describe('listen errors as Node', function()
  it("says 'bind' where a worker's bind failed, 'listen' alone", function()
    local js, lua = both('eaddrinuse')
    assert.equal(
      'primary EADDRINUSE -98 listen 127.0.0.1 true listen EADDRINUSE: '
      .. 'address already in use 127.0.0.1:PORT\n'
      .. 'worker EADDRINUSE -98 bind 127.0.0.1 true bind EADDRINUSE '
      .. '127.0.0.1:PORT\n'
      .. 'worker any EADDRINUSE -98 bind null true bind EADDRINUSE '
      .. 'null:PORT\n'
      .. 'worker exit 3\n', js.stdout)
    assert.equal(js.stdout, lua.stdout)
    assert.equal(js.code, lua.code)
  end)
end)

describe('cjson as JSON.stringify', function()
  it("writes '/' unescaped in a JSON body, as Node's", function()
    local js, lua = both('json_slash')
    assert.equal('200 45\n{"links":["http://example.com/a/b","/x/y/z"]}\n'
      .. 'http://example.com/a/b\n', js.stdout)
    assert.equal(js.stdout, lua.stdout)
  end)

  it('keeps encode_escape_forward_slash as a switch per instance', function()
    local cjson = require('cjson')
    assert.is_false(cjson.encode_escape_forward_slash())
    -- Backslashes next to slashes survive the round trip.
    for _, s in ipairs({'a/b', '\\/', '\\\\/', '/\\', 'x\\', '\\'}) do
      assert.equal(s, cjson.decode(cjson.encode(s)))
    end
    assert.equal('["\\\\/"]', cjson.encode({'\\/'}))
    local j = cjson.new()
    assert.is_true(j.encode_escape_forward_slash(true))
    assert.equal('["a\\/b"]', j.encode({'a/b'}))
    assert.equal('["a/b"]', cjson.encode({'a/b'}))
    assert.equal('["a/b"]', require('json').encode({'a/b'}))
    assert.equal('["a/b"]', require('cjson.safe').encode({'a/b'}))
    local v, err = require('cjson.safe').encode(print)
    assert.is_nil(v)
    assert.truthy(err:find('Cannot serialise function', 1, true))
    -- A refused value is reported at the caller's line, as cjson does.
    local ok, e = pcall(function()
      local x = cjson.encode(print)
      return x
    end)
    assert.is_false(ok)
    assert.truthy(e:find('node_fidelity_spec.lua:%d+: Cannot serialise'))
    assert.has_error(function() j.encode_escape_forward_slash('yes') end)
  end)
end)

describe('pipe as Node', function()
  it('echoes with socket:pipe(socket), events and {end = false}',
      function()
    local js, lua = both('pipe_echo')
    assert.equal('echoed: hello world\n'
      .. 'pipe true, returns destination true, finish, unpipe true\n'
      .. 'without end: body[tail]\n', js.stdout)
    assert.equal(js.stdout, lua.stdout)
    assert.equal(0, lua.code)
  end)

  it('proxies: req:pipe(upstream request), upstream response:pipe(res)',
      function()
    local js, lua = both('pipe_proxy')
    assert.equal('201 100000 1048576 1048576 true\n'
      .. 'upstream request pipe, upstream request unpipe, res pipe, '
      .. 'res finish, res unpipe\n', js.stdout)
    assert.equal(js.stdout, lua.stdout)
    assert.equal(0, lua.code)
  end)

  it('pipes into process.stdout without ending it; unpipe pauses',
      function()
    local js, lua = both('pipe_unpipe')
    assert.equal('body to stdout [stdout unpipe]\nstatus 200\n'
      .. 'unpipe true\nreturns source true, paused true\n'
      .. 'client got firstdone\n', js.stdout)
    assert.equal(js.stdout, lua.stdout)
    assert.equal(0, lua.code)
  end)

  it('pauses the source while the destination is full', function()
    local js, lua = both('pipe_backpressure')
    assert.equal('paused true\nread less than all true\n'
      .. 'no reading while paused true\nsink got 16777216\n', js.stdout)
    assert.equal(js.stdout, lua.stdout)
    assert.equal(0, lua.code)
  end)
end)
