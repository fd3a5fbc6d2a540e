-- events: Node's EventEmitter.
--
-- Listeners live in self._events[name], a plain array rebuilt on removal
-- (copy on write), so emit can iterate the array it started with even when
-- a listener adds or removes listeners mid-dispatch, as Node's does.

local EventEmitter = {}
EventEmitter.__index = EventEmitter
EventEmitter.defaultMaxListeners = 10

local unpack, select, type, error, tostring = unpack, select, type, error,
  tostring

-- EventEmitter:new(obj?) makes an emitter (obj gets the class as metatable).
-- A subclass is EventEmitter:extend(), whose :new() makes its instances.
function EventEmitter:new(obj)
  obj = obj or {}
  setmetatable(obj, self)
  return obj
end

function EventEmitter:extend(class)
  class = class or {}
  class.__index = class
  class.super = self
  return setmetatable(class, self)
end

local function check_listener(fn)
  if type(fn) ~= 'function' and not (type(fn) == 'table'
      and getmetatable(fn) and getmetatable(fn).__call) then
    error('The "listener" argument must be a function, got ' .. type(fn), 3)
  end
end

local function add(self, name, fn, prepend, once)
  if name == nil then error('event name must not be nil', 3) end
  check_listener(fn)
  local events = rawget(self, '_events')
  if not events then
    events = {}
    rawset(self, '_events', events)
  end
  if events.newListener then
    self:emit('newListener', name, fn)
  end
  local old = events[name]
  local list = {}
  local n = old and #old or 0
  local entry = once and {fn = fn, once = true} or fn
  if prepend then
    list[1] = entry
    for i = 1, n do list[i + 1] = old[i] end
  else
    for i = 1, n do list[i] = old[i] end
    list[n + 1] = entry
  end
  events[name] = list
  return self
end

function EventEmitter:on(name, fn) return add(self, name, fn, false, false) end
EventEmitter.addListener = EventEmitter.on
function EventEmitter:once(name, fn) return add(self, name, fn, false, true) end
function EventEmitter:prependListener(name, fn)
  return add(self, name, fn, true, false)
end
function EventEmitter:prependOnceListener(name, fn)
  return add(self, name, fn, true, true)
end

local function unwrap(entry)
  if type(entry) == 'table' and entry.once then return entry.fn end
  return entry
end

function EventEmitter:off(name, fn)
  check_listener(fn)
  local events = rawget(self, '_events')
  local old = events and events[name]
  if not old then return self end
  -- Node removes the most recently added matching listener.
  for i = #old, 1, -1 do
    if unwrap(old[i]) == fn then
      local list = {}
      for j = 1, #old do
        if j ~= i then list[#list + 1] = old[j] end
      end
      events[name] = #list > 0 and list or nil
      if events.removeListener then
        self:emit('removeListener', name, fn)
      end
      break
    end
  end
  return self
end
EventEmitter.removeListener = EventEmitter.off

function EventEmitter:removeAllListeners(name)
  local events = rawget(self, '_events')
  if not events then return self end
  local names = {}
  if name ~= nil then
    names[1] = name
  else
    for k in pairs(events) do
      if k ~= 'removeListener' then names[#names + 1] = k end
    end
    names[#names + 1] = 'removeListener'
  end
  for _, k in ipairs(names) do
    local list = events[k]
    if list then
      events[k] = nil
      if events.removeListener and k ~= 'removeListener' then
        for i = #list, 1, -1 do
          self:emit('removeListener', k, unwrap(list[i]))
        end
      end
    end
  end
  return self
end

-- emit(name, ...) -> true when there were listeners. An 'error' with no
-- listener raises the error itself (as Node throws it).
function EventEmitter:emit(name, ...)
  local events = rawget(self, '_events')
  local list = events and events[name]
  if not list then
    if name == 'error' then
      local err = ...
      if type(err) == 'table' or type(err) == 'string' then error(err, 0) end
      error('Unhandled error. (' .. tostring(err) .. ')', 2)
    end
    return false
  end
  local n = #list
  if n == 1 then
    local entry = list[1]
    if type(entry) == 'table' and entry.once then
      self:off(name, entry.fn)
      entry.fn(...)
    else
      entry(...)
    end
    return true
  end
  for i = 1, n do
    local entry = list[i]
    if type(entry) == 'table' and entry.once then
      self:off(name, entry.fn)
      entry.fn(...)
    else
      entry(...)
    end
  end
  return true
end

function EventEmitter:listenerCount(name)
  local events = rawget(self, '_events')
  local list = events and events[name]
  return list and #list or 0
end

function EventEmitter:listeners(name)
  local events = rawget(self, '_events')
  local list = events and events[name]
  local out = {}
  if list then
    for i = 1, #list do out[i] = unwrap(list[i]) end
  end
  return out
end

function EventEmitter:eventNames()
  local events = rawget(self, '_events')
  local out = {}
  if events then
    for k in pairs(events) do out[#out + 1] = k end
  end
  return out
end

function EventEmitter:setMaxListeners(n)
  rawset(self, '_maxListeners', n)
  return self
end

function EventEmitter:getMaxListeners()
  return rawget(self, '_maxListeners') or EventEmitter.defaultMaxListeners
end

-- Makes every method of obj's class callable with a dot as well as a colon
-- (cluster.on('exit', f) and cluster:on('exit', f)), as API.md asks of the
-- singletons and Worker objects. A call whose first argument is obj itself
-- is a colon call.
function EventEmitter.bindMethods(obj, class)
  local seen = {}
  local c = class
  while c do
    for k, v in pairs(c) do
      if type(v) == 'function' and not seen[k] and k:sub(1, 2) ~= '__'
          and k ~= 'new' and k ~= 'extend' and k ~= 'bindMethods'
          and rawget(obj, k) == nil then
        seen[k] = true
        rawset(obj, k, function(first, ...)
          if first == obj then return v(obj, ...) end
          return v(obj, first, ...)
        end)
      end
    end
    c = rawget(c, 'super')
  end
  return obj
end

-- Makes obj's own functions callable with a colon as well as a dot
-- (process.exit(1) and process:exit(1)).
function EventEmitter.bindSelf(obj)
  for k, v in pairs(obj) do
    if type(v) == 'function' then
      rawset(obj, k, function(first, ...)
        if first == obj then return v(...) end
        return v(first, ...)
      end)
    end
  end
  return obj
end

-- require('events') is the class itself, as in Node; .EventEmitter too.
EventEmitter.EventEmitter = EventEmitter
return EventEmitter
