-- events: Node's EventEmitter.
--
-- Listeners live in self._events[name], a plain array rebuilt on every
-- change (copy on write), so emit iterates the array it started with even
-- when a listener adds or removes listeners mid-dispatch, as Node's does. A
-- `once` listener sits in the array wrapped in a table of metatable Once.

local EventEmitter = {}
EventEmitter.__index = EventEmitter
EventEmitter.defaultMaxListeners = 10
-- errorMonitor: listen to it to see every 'error' before the 'error'
-- listeners run, without handling it (Node's events.errorMonitor; a
-- unique key, where Node has a symbol).
local ERROR_MONITOR = setmetatable({}, {__tostring = function()
  return 'events.errorMonitor'
end})
EventEmitter.errorMonitor = ERROR_MONITOR

local type, error, tostring, getmetatable, setmetatable, rawget, rawset =
  type, error, tostring, getmetatable, setmetatable, rawget, rawset

local Once = {}

-- EventEmitter:new(obj?) makes an emitter (obj gets the class as metatable).
-- A subclass is EventEmitter:extend(), whose :new() makes its instances.
function EventEmitter:new(obj)
  if self == nil then self = EventEmitter end
  if obj ~= nil and type(obj) ~= 'table' then
    error('EventEmitter:new(obj): obj must be a table, got ' .. type(obj), 2)
  end
  return setmetatable(obj or {}, self)
end

function EventEmitter:extend(class)
  class = class or {}
  class.__index = class
  class.super = self
  return setmetatable(class, self)
end

local function callable(fn)
  if type(fn) == 'function' then return true end
  local mt = type(fn) == 'table' and getmetatable(fn)
  return mt and mt.__call ~= nil or false
end

local function check_listener(fn, level)
  if not callable(fn) then
    error('The "listener" argument must be a function, got ' .. type(fn),
      level + 1)
  end
end

local function unwrap(entry)
  if getmetatable(entry) == Once then return entry.fn end
  return entry
end

-- Warns once per emitter and event when more than getMaxListeners()
-- listeners are added, as Node's MaxListenersExceededWarning does.
local function check_max(self, name, n)
  local max = self:getMaxListeners()
  if max <= 0 or n <= max then return end
  local warned = rawget(self, '_warned')
  if not warned then
    warned = {}
    rawset(self, '_warned', warned)
  end
  if warned[name] then return end
  warned[name] = true
  local msg = ('Possible EventEmitter memory leak detected. %d %s listeners'
    .. ' added. Use emitter:setMaxListeners() to increase limit'):format(n,
    tostring(name))
  local process = rawget(_G, 'process')
  if type(process) == 'table' and process.emitWarning then
    process.emitWarning(msg, 'MaxListenersExceededWarning')
  else
    io.stderr:write('MaxListenersExceededWarning: ', msg, '\n')
  end
end

-- Called in tail position by on, once, ...: error level 2 is their caller.
local function add(self, name, fn, prepend, once)
  if name == nil then error('The event name must not be nil', 2) end
  check_listener(fn, 2)
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
  local entry = once and setmetatable({fn = fn}, Once) or fn
  if prepend then
    list[1] = entry
    for i = 1, n do list[i + 1] = old[i] end
  else
    for i = 1, n do list[i] = old[i] end
    list[n + 1] = entry
  end
  events[name] = list
  check_max(self, name, n + 1)
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

-- Removes list entry i of event name and announces it.
local function remove_at(self, events, name, i)
  local old = events[name]
  local entry = old[i]
  local list = {}
  for j = 1, #old do
    if j ~= i then list[#list + 1] = old[j] end
  end
  events[name] = #list > 0 and list or nil
  if events.removeListener then
    self:emit('removeListener', name, unwrap(entry))
  end
end

function EventEmitter:off(name, fn)
  check_listener(fn, 2)
  local events = rawget(self, '_events')
  local old = events and events[name]
  if not old then return self end
  -- Node removes the most recently added matching listener.
  for i = #old, 1, -1 do
    if unwrap(old[i]) == fn then
      remove_at(self, events, name, i)
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

-- Runs one entry of a listener array: a once entry is removed (that very
-- entry, not another registration of the same function) before it runs.
local function call(self, name, entry, ...)
  if getmetatable(entry) == Once then
    local events = rawget(self, '_events')
    local list = events and events[name]
    if list then
      for i = 1, #list do
        if list[i] == entry then
          remove_at(self, events, name, i)
          break
        end
      end
    end
    return entry.fn(...)
  end
  return entry(...)
end

-- emit(name, ...) -> true when there were listeners. An 'error' with no
-- listener raises the error itself (as Node throws it); a value that is
-- neither a string nor a table is wrapped in a message.
function EventEmitter:emit(name, ...)
  local events = rawget(self, '_events')
  if name == 'error' and events and events[ERROR_MONITOR] then
    -- errorMonitor's listeners see it first, and handle nothing.
    local mon = events[ERROR_MONITOR]
    for i = 1, #mon do call(self, ERROR_MONITOR, mon[i], ...) end
  end
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
    call(self, name, list[1], ...)
    return true
  end
  for i = 1, n do
    call(self, name, list[i], ...)
  end
  return true
end

-- listenerCount(name[, fn]): how many listeners name has (only those equal
-- to fn when given). Also EventEmitter.listenerCount(emitter, name).
function EventEmitter:listenerCount(name, fn)
  local events = rawget(self, '_events')
  local list = events and events[name]
  if not list then return 0 end
  if fn == nil then return #list end
  local n = 0
  for i = 1, #list do
    if unwrap(list[i]) == fn then n = n + 1 end
  end
  return n
end

-- listeners(name) -> a new sequence of the listeners, once ones unwrapped.
function EventEmitter:listeners(name)
  local events = rawget(self, '_events')
  local list = events and events[name]
  local out = {}
  if list then
    for i = 1, #list do out[i] = unwrap(list[i]) end
  end
  return out
end

-- rawListeners(name): as listeners, with once wrappers as they are (a
-- wrapper has .fn and is callable: calling it removes and runs it).
function EventEmitter:rawListeners(name)
  local events = rawget(self, '_events')
  local list = events and events[name]
  local out = {}
  if list then
    for i = 1, #list do out[i] = list[i] end
  end
  return out
end

Once.__call = function(entry, ...)
  -- A wrapper taken from rawListeners and called: it no longer knows its
  -- emitter, so it just runs once.
  if entry.done then return end
  entry.done = true
  return entry.fn(...)
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
  if type(n) ~= 'number' or n ~= n or n < 0 then
    error('The value of "n" is out of range. It must be a non-negative'
      .. ' number. Received ' .. tostring(n), 2)
  end
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
          and k ~= 'bindSelf' and rawget(obj, k) == nil then
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
