-- internal.timeout: Node's socket.setTimeout, for net.Socket, the http
-- server's connection and the client's request alike: the argument checks
-- and the 'timeout' listener here (arm), the idle clock the class's own
-- (self:_idle(ms): a luv timer for net, the C server's scan for http; the
-- client's request hands it to its socket).

local errors = require('internal.errors')

local tonumber, tostring, error = tonumber, tostring, error

-- arm(self, ms, cb, level) -> ms, checked: cb becomes a one-time 'timeout'
-- listener (0 removes it) and self.timeout says the delay. level: where a
-- bad ms is blamed, counted from arm's caller.
local function arm(self, ms, cb, level)
  ms = tonumber(ms)
  if not ms or ms < 0 or ms ~= ms then
    error(errors.range_error('ERR_OUT_OF_RANGE', 'The value of "msecs" is '
      .. 'out of range. It must be a non-negative finite number. Received '
      .. tostring(ms)), level + 1)
  end
  if cb then
    if ms == 0 then self:removeListener('timeout', cb)
    else self:once('timeout', cb) end
  end
  self.timeout = ms > 0 and ms or nil
  return ms
end

-- setTimeout(ms[, cb]): 'timeout' after ms without reads or writes (the
-- socket stays open; 0 disables). cb is a one-time 'timeout' listener.
local function setTimeout(self, ms, cb)
  self:_idle(arm(self, ms, cb, 2))
  return self
end

return {setTimeout = setTimeout, arm = arm}
