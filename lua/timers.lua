-- timers: setTimeout, setInterval, setImmediate and their clear functions.
--
-- A Timeout owns one libuv timer while it is pending. Immediates are a FIFO
-- run by one check handle; an idle handle keeps the poll phase from
-- blocking while any are queued, as Node does. nextTick callbacks queued by
-- an immediate run before the next immediate (Node 11 and later).

local uv = require('uv')
local lc = require('_lc')

local timers = {}

local type, select, unpack, tonumber, getmetatable, setmetatable =
  type, select, unpack, tonumber, getmetatable, setmetatable

local TIMEOUT_MAX = 2147483647

local function check_fn(fn, level)
  if type(fn) ~= 'function' and not (type(fn) == 'table'
      and getmetatable(fn) and getmetatable(fn).__call) then
    error('The "callback" argument must be a function, got ' .. type(fn),
      level + 1)
  end
end

local function warn(msg, kind)
  local process = rawget(_G, 'process')
  if type(process) == 'table' and process.emitWarning then
    process.emitWarning(msg, kind)
  end
end

-- Node coerces the delay to a number and clamps anything outside
-- [1, 2^31-1] (and NaN) to 1 ms, warning when it overflows.
local function delay(ms)
  local n = tonumber(ms)
  if n and n > TIMEOUT_MAX then
    warn(('%s does not fit into a 32-bit signed integer.\nTimeout duration'
      .. ' was set to 1.'):format(tostring(ms)), 'TimeoutOverflowWarning')
    return 1
  end
  if not n or n ~= n or n < 1 then return 1 end
  return math.floor(n)
end

------------------------------------------------------------------------------
-- Timeout: what setTimeout and setInterval return.

local Timeout = {}
Timeout.__index = Timeout

local function new_timeout(fn, ms, rep, ...)
  local t = setmetatable({_ms = delay(ms), _repeat = rep, _fn = fn,
    _ref = true}, Timeout)
  local n = select('#', ...)
  if n > 0 then t._args = {n = n, ...} end
  t:_start()
  return t
end

-- Starts (or restarts) the libuv timer from now.
function Timeout:_start()
  local h = self._handle
  if not h then
    h = uv.new_timer()
    self._handle = h
  end
  -- The loop's clock is cached per iteration; Node reads the time afresh,
  -- so a delay counts from now even after long synchronous code.
  uv.update_time()
  h:start(self._ms, self._repeat and self._ms or 0, function()
    -- A one-shot timer is done before its callback runs, so clearTimeout
    -- or an error in the callback finds nothing to undo.
    if not self._repeat then self:_close() end
    local a = self._args
    if a then self._fn(unpack(a, 1, a.n)) else self._fn() end
  end)
  if self._ref then h:ref() else h:unref() end
end

function Timeout:_close()
  local h = self._handle
  if h then
    self._handle = nil
    h:close()
  end
end

-- ref() / unref(): whether this timer keeps the process alive.
function Timeout:ref()
  self._ref = true
  if self._handle then self._handle:ref() end
  return self
end

function Timeout:unref()
  self._ref = false
  if self._handle then self._handle:unref() end
  return self
end

function Timeout:hasRef() return self._ref end

-- refresh(): restarts the timer from now with the same delay and callback,
-- even after it fired; a cleared timer stays cleared (as in Node).
function Timeout:refresh()
  if not self._cleared then self:_start() end
  return self
end

-- close(): as clearTimeout(self).
function Timeout:close()
  self._cleared = true
  self:_close()
  return self
end

function timers.setTimeout(fn, ms, ...)
  check_fn(fn, 2)
  return new_timeout(fn, ms, false, ...)
end

function timers.setInterval(fn, ms, ...)
  check_fn(fn, 2)
  return new_timeout(fn, ms, true, ...)
end

-- clearTimeout(t): anything that is not a live Timeout is ignored, as in
-- Node (nil, a fired timer, one already cleared).
function timers.clearTimeout(t)
  if getmetatable(t) == Timeout then t:close() end
end
timers.clearInterval = timers.clearTimeout

------------------------------------------------------------------------------
-- Immediates.

local Immediate = {}
Immediate.__index = Immediate

local queue, qhead, qtail = {}, 1, 0
local check, idle
local refs = 0

local function noop() end

local function run_immediates()
  -- Only those queued before this turn run now; new ones wait a turn.
  local last = qtail
  while qhead <= last do
    local im = queue[qhead]
    queue[qhead] = nil
    qhead = qhead + 1
    if not im._cleared then
      im._cleared = true
      if im._ref then refs = refs - 1 end
      local a = im._args
      if a then im._fn(unpack(a, 1, a.n)) else im._fn() end
      lc.drain_ticks()
    end
  end
  if qhead > qtail then
    check:stop()
    idle:stop()
    queue, qhead, qtail = {}, 1, 0
  elseif refs == 0 then
    idle:stop()
  end
end

function timers.setImmediate(fn, ...)
  check_fn(fn, 2)
  if not check then
    check = uv.new_check()
    idle = uv.new_idle()
    check:unref()
  end
  local im = setmetatable({_fn = fn, _ref = true}, Immediate)
  local n = select('#', ...)
  if n > 0 then im._args = {n = n, ...} end
  qtail = qtail + 1
  queue[qtail] = im
  refs = refs + 1
  if not check:is_active() then check:start(run_immediates) end
  if not idle:is_active() then idle:start(noop) end
  return im
end

function timers.clearImmediate(im)
  if getmetatable(im) == Immediate and not im._cleared then
    im._cleared = true
    if im._ref then
      refs = refs - 1
      if refs == 0 and idle then idle:stop() end
    end
  end
end

function Immediate:ref()
  if not self._ref and not self._cleared then
    self._ref = true
    refs = refs + 1
    if not idle:is_active() then idle:start(noop) end
  end
  return self
end

function Immediate:unref()
  if self._ref and not self._cleared then
    self._ref = false
    refs = refs - 1
    if refs == 0 then idle:stop() end
  end
  return self
end

function Immediate:hasRef() return self._ref end

timers.Timeout = Timeout
timers.Immediate = Immediate
return timers
