-- events: Node's EventEmitter, in-process.
local EventEmitter = require('events')

-- Records calls: rec.fn is a listener appending {tag, ...} to rec.calls.
local function recorder()
  local rec = {calls = {}}
  function rec.fn(tag)
    return function(...) rec.calls[#rec.calls + 1] = {tag, ...} end
  end
  return rec
end

describe('events', function()
  it('is the EventEmitter class, also as .EventEmitter', function()
    assert.equal(EventEmitter, EventEmitter.EventEmitter)
    assert.is_function(EventEmitter.new)
    local e = EventEmitter:new()
    assert.equal(EventEmitter, getmetatable(e))
    assert.equal(10, e:getMaxListeners())
  end)

  it('new(obj) makes obj an emitter; a non-table raises', function()
    local obj = {name = 'x'}
    local e = EventEmitter:new(obj)
    assert.equal(obj, e)
    assert.equal('x', e.name)
    assert.has_error(function() EventEmitter:new(42) end,
      'EventEmitter:new(obj): obj must be a table, got number')
    -- A dot call makes a plain emitter.
    assert.equal(EventEmitter, getmetatable(EventEmitter.new()))
  end)

  it('on / addListener / emit pass the arguments in order', function()
    local e = EventEmitter:new()
    local rec = recorder()
    assert.equal(e, e:on('x', rec.fn('a')))
    assert.equal(e, e:addListener('x', rec.fn('b')))
    assert.is_true(e:emit('x', 1, nil, 3))
    assert.same({{'a', 1, nil, 3}, {'b', 1, nil, 3}}, rec.calls)
    assert.equal(3, select('#', unpack(rec.calls[1], 2, 4)))
  end)

  it('emit returns false with no listener', function()
    local e = EventEmitter:new()
    assert.is_false(e:emit('nothing', 1))
  end)

  it('once runs a listener one time only', function()
    local e = EventEmitter:new()
    local n = 0
    e:once('x', function(v) n = n + v end)
    assert.equal(1, e:listenerCount('x'))
    assert.is_true(e:emit('x', 5))
    assert.is_false(e:emit('x', 5))
    assert.equal(5, n)
    assert.equal(0, e:listenerCount('x'))
  end)

  it('once removes its own entry, not another registration of the same'
      .. ' function', function()
    local e = EventEmitter:new()
    local n = 0
    local function f() n = n + 1 end
    e:once('x', f)
    e:on('x', f)
    e:emit('x')
    assert.equal(2, n)
    assert.equal(1, e:listenerCount('x'))
    e:emit('x')
    e:emit('x')
    assert.equal(4, n)
  end)

  it('prependListener and prependOnceListener go first', function()
    local e = EventEmitter:new()
    local rec = recorder()
    e:on('x', rec.fn('on'))
    e:prependListener('x', rec.fn('pre'))
    e:prependOnceListener('x', rec.fn('preonce'))
    e:emit('x')
    e:emit('x')
    assert.same({{'preonce'}, {'pre'}, {'on'}, {'pre'}, {'on'}}, rec.calls)
  end)

  it('off / removeListener remove the most recent matching listener',
      function()
    local e = EventEmitter:new()
    local rec = recorder()
    local a, b = rec.fn('a'), rec.fn('b')
    e:on('x', a)
    e:on('x', b)
    e:on('x', a)
    assert.equal(e, e:off('x', a))
    e:emit('x')
    assert.same({{'a'}, {'b'}}, rec.calls)
    e:removeListener('x', a)
    e:removeListener('x', b)
    assert.equal(0, e:listenerCount('x'))
    assert.is_false(e:emit('x'))
    -- Removing what is not there is harmless.
    assert.equal(e, e:off('x', a))
    assert.equal(e, e:off('never', a))
  end)

  it('off removes a once listener by its function', function()
    local e = EventEmitter:new()
    local called = false
    local function f() called = true end
    e:once('x', f)
    e:off('x', f)
    assert.is_false(e:emit('x'))
    assert.is_false(called)
  end)

  it('removeAllListeners(name) and removeAllListeners()', function()
    local e = EventEmitter:new()
    local f = function() end
    e:on('a', f)
    e:on('a', f)
    e:on('b', f)
    assert.equal(e, e:removeAllListeners('a'))
    assert.equal(0, e:listenerCount('a'))
    assert.equal(1, e:listenerCount('b'))
    e:on('c', f)
    e:removeAllListeners()
    assert.equal(0, e:listenerCount('b'))
    assert.equal(0, e:listenerCount('c'))
    assert.same({}, e:eventNames())
    -- On an emitter that never had a listener.
    assert.has_no_error(function() EventEmitter:new():removeAllListeners() end)
  end)

  it('emits newListener before adding and removeListener after removing',
      function()
    local e = EventEmitter:new()
    local log = {}
    local f = function() end
    e:on('removeListener', function(name, fn)
      log[#log + 1] = {'removed', name, fn == f, e:listenerCount(name)}
    end)
    e:on('newListener', function(name, fn)
      log[#log + 1] = {'new', name, fn == f, e:listenerCount(name)}
    end)
    -- A second newListener listener is announced to the first.
    e:on('newListener', f)
    e:off('newListener', f)
    assert.same({{'new', 'newListener', true, 1},
      {'removed', 'newListener', true, 1}}, log)
    log = {}
    e:on('x', f)
    e:once('y', f)
    e:off('x', f)
    e:emit('y')
    e:on('z', f)
    e:removeAllListeners('z')
    assert.same({{'new', 'x', true, 0}, {'new', 'y', true, 0},
      {'removed', 'x', true, 0}, {'removed', 'y', true, 0},
      {'new', 'z', true, 0}, {'removed', 'z', true, 0}}, log)
  end)

  it('listenerCount, listeners and rawListeners', function()
    local e = EventEmitter:new()
    local f, g = function() end, function() end
    assert.equal(0, e:listenerCount('x'))
    assert.same({}, e:listeners('x'))
    e:on('x', f)
    e:once('x', g)
    e:on('x', f)
    assert.equal(3, e:listenerCount('x'))
    assert.equal(2, e:listenerCount('x', f))
    assert.equal(1, e:listenerCount('x', g))
    -- Also as Node's static form.
    assert.equal(3, EventEmitter.listenerCount(e, 'x'))
    local ls = e:listeners('x')
    assert.same({f, g, f}, ls)
    ls[1] = nil -- a copy: the emitter is unchanged.
    assert.equal(3, e:listenerCount('x'))
    local raw = e:rawListeners('x')
    assert.equal(f, raw[1])
    assert.is_table(raw[2])
    assert.equal(g, raw[2].fn)
  end)

  it('eventNames lists the events with listeners', function()
    local e = EventEmitter:new()
    e:on('a', print)
    e:on('b', print)
    local names = e:eventNames()
    table.sort(names)
    assert.same({'a', 'b'}, names)
  end)

  it('a listener added during emit does not run in that emit', function()
    local e = EventEmitter:new()
    local rec = recorder()
    e:on('x', function()
      rec.fn('first')()
      e:on('x', rec.fn('late'))
    end)
    e:emit('x')
    assert.same({{'first'}}, rec.calls)
    e:emit('x')
    assert.same({{'first'}, {'first'}, {'late'}}, rec.calls)
  end)

  it('a listener removed during emit still runs in that emit', function()
    local e = EventEmitter:new()
    local rec = recorder()
    local second = rec.fn('second')
    e:on('x', function() e:off('x', second) end)
    e:on('x', second)
    e:emit('x')
    assert.same({{'second'}}, rec.calls)
    e:emit('x')
    assert.same({{'second'}}, rec.calls)
  end)

  it("emitting 'error' without a listener raises the error", function()
    local e = EventEmitter:new()
    local err = {code = 'EBAD', message = 'bad'}
    local ok, got = pcall(e.emit, e, 'error', err)
    assert.is_false(ok)
    assert.equal(err, got)
    assert.has_error(function() e:emit('error', 'plain message') end,
      'plain message')
    ok, got = pcall(e.emit, e, 'error')
    assert.is_false(ok)
    assert.matches('Unhandled error%. %(nil%)', got)
    ok, got = pcall(e.emit, e, 'error', 42)
    assert.matches('Unhandled error%. %(42%)', got)
  end)

  it("emitting 'error' with a listener calls it instead", function()
    local e = EventEmitter:new()
    local got
    e:on('error', function(err) got = err end)
    assert.is_true(e:emit('error', 'oops'))
    assert.equal('oops', got)
  end)

  it('raises clear errors on bad arguments', function()
    local e = EventEmitter:new()
    assert.has_error(function() e:on('x', 42) end,
      'The "listener" argument must be a function, got number')
    assert.has_error(function() e:once('x') end,
      'The "listener" argument must be a function, got nil')
    assert.has_error(function() e:prependListener('x', 'f') end,
      'The "listener" argument must be a function, got string')
    assert.has_error(function() e:off('x', {}) end,
      'The "listener" argument must be a function, got table')
    assert.has_error(function() e:on(nil, print) end,
      'The event name must not be nil')
    local ok2, msg2 = pcall(function() e:once(nil, print) end)
    assert.is_false(ok2)
    assert.matches('events_spec%.lua:%d+: The event name', msg2)
    assert.has_error(function() e:setMaxListeners(-1) end)
    assert.has_error(function() e:setMaxListeners('x') end)
    -- The message points at the caller, not at events.lua.
    for _, m in ipairs({'on', 'once', 'prependListener',
        'prependOnceListener', 'off'}) do
      local ok, msg = pcall(function() e[m](e, 'x', 1) end)
      assert.is_false(ok)
      assert.matches('events_spec%.lua:%d+:', msg)
    end
  end)

  it('accepts a callable table as a listener', function()
    local e = EventEmitter:new()
    local got
    local callable = setmetatable({}, {__call = function(_, v) got = v end})
    e:on('x', callable)
    e:emit('x', 7)
    assert.equal(7, got)
  end)

  it('any value but nil names an event', function()
    local e = EventEmitter:new()
    local key, n = {}, 0
    e:on(key, function() n = n + 1 end)
    e:on(1, function() n = n + 10 end)
    e:emit(key)
    e:emit(1)
    assert.equal(11, n)
  end)

  it('warns once past getMaxListeners(); setMaxListeners(0) never',
      function()
    local e = EventEmitter:new()
    local warned = {}
    local orig = process.emitWarning
    process.emitWarning = function(msg, kind) warned[#warned + 1] = kind end
    for _ = 1, 12 do e:on('x', print) end
    local f = EventEmitter:new():setMaxListeners(0)
    for _ = 1, 20 do f:on('x', print) end
    local g = EventEmitter:new()
    assert.equal(g, g:setMaxListeners(2))
    assert.equal(2, g:getMaxListeners())
    for _ = 1, 3 do g:on('y', print) end
    process.emitWarning = orig
    assert.same({'MaxListenersExceededWarning',
      'MaxListenersExceededWarning'}, warned)
  end)

  it('supports subclassing with extend()', function()
    local Dog = EventEmitter:extend()
    function Dog:new(name)
      local d = EventEmitter.new(self)
      d.name = name
      return d
    end
    function Dog:bark() return self:emit('bark', self.name) end
    local d = Dog:new('rex')
    local heard
    d:on('bark', function(n) heard = n end)
    assert.is_true(d:bark())
    assert.equal('rex', heard)
    assert.equal(EventEmitter, Dog.super)
    -- A subclass of the subclass.
    local Puppy = Dog:extend()
    local p = Puppy:new('bit')
    assert.equal(Puppy, getmetatable(p))
    assert.is_false(p:bark())
  end)

  it('bindMethods allows dot and colon calls on one object', function()
    local obj = EventEmitter:new()
    EventEmitter.bindMethods(obj, EventEmitter)
    local n = 0
    obj.on('x', function(v) n = n + v end)
    obj:on('x', function(v) n = n + v end)
    obj.emit('x', 1)
    obj:emit('x', 10)
    assert.equal(22, n)
  end)

  it('errorMonitor sees an error first and handles nothing', function()
    local EventEmitter = require('events')
    local e = EventEmitter:new()
    local order = {}
    e:on(EventEmitter.errorMonitor, function(err) order[#order + 1] = 'm:' .. err end)
    local ok, err = pcall(e.emit, e, 'error', 'boom')
    assert.is_false(ok)
    assert.equal('boom', err)
    assert.same({'m:boom'}, order)
    e:on('error', function(x) order[#order + 1] = 'e:' .. x end)
    assert.is_true(e:emit('error', 'again'))
    assert.same({'m:boom', 'm:again', 'e:again'}, order)
    assert.equal('events.errorMonitor', tostring(EventEmitter.errorMonitor))
  end)
end)
