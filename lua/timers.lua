-- timers: setTimeout, setInterval, setImmediate and their clear functions.
--
-- A Timeout owns one libuv timer. Immediates are a FIFO run by one check
-- handle; an idle handle keeps the poll phase from blocking while any are
-- queued, as Node does.

local uv = require('uv')

local timers = {}

local Timeout = {}
Timeout.__index = Timeout

local function check_fn(fn)
  if type(fn) ~= 'function' and not (type(fn) == 'table'
      and getmetatable(fn) and getmetatable(fn).__call) then
    error('The "callback" argument must be a function, got ' .. type(fn), 3)
  end
end

-- Node clamps delays outside [1, 2^31-1] (and non-numbers) to 1 ms.
local function delay(ms)
  ms = tonumber(ms)
  if not ms or ms ~= ms or ms < 1 or ms > 2147483647 then return 1 end
  return math.floor(ms)
end

local function new_timeout(fn, ms, rep, ...)
  check_fn(fn)
  local t = setmetatable({_ms = delay(ms), _repeat = rep, _fn = fn,
    _ref = true}, Timeout)
  local n = select('#', ...)
  if n > 0 then t._args = {n = n, ...} end
  t._handle = uv.new_timer()
  t:_start()
  return t
end

function Timeout:_start()
  local h = self._handle
  h:start(self._ms, self._repeat and self._ms or 0, function()
    if not self._repeat then self:close() end
    local a = self._args
    if a then self._fn(unpack(a, 1, a.n)) else self._fn() end
  end)
  if not self._ref then h:unref() end
end

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

function Timeout:hasRef() return self._ref and self._handle ~= nil end

-- refresh(): restarts the timer from now with the same delay and callback.
function Timeout:refresh()
  if not self._handle then
    self._handle = uv.new_timer()
  end
  self._handle:stop()
  self:_start()
  return self
end

function Timeout:close()
  local h = self._handle
  if h then
    self._handle = nil
    h:stop()
    h:close()
  end
  return self
end

function timers.setTimeout(fn, ms, ...)
  return new_timeout(fn, ms, false, ...)
end

function timers.setInterval(fn, ms, ...)
  return new_timeout(fn, ms, true, ...)
end

function timers.clearTimeout(t)
  if type(t) == 'table' and getmetatable(t) == Timeout then t:close() end
end
timers.clearInterval = timers.clearTimeout

------------------------------------------------------------------------------
-- Immediates.

local Immediate = {}
Immediate.__index = Immediate

local queue, qhead, qtail = {}, 1, 0
local check, idle
local refs = 0

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
  check_fn(fn)
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
  if not idle:is_active() then idle:start(function() end) end
  return im
end

function timers.clearImmediate(im)
  if type(im) == 'table' and getmetatable(im) == Immediate
      and not im._cleared then
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
    if not idle:is_active() then idle:start(function() end) end
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

function Immediate:hasRef() return self._ref and not self._cleared end

timers.Timeout = Timeout
timers.Immediate = Immediate
return timers
