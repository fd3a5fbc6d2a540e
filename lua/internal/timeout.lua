-- internal.timeout: Node's socket.setTimeout, for net.Socket and the http
-- server's connection alike: the argument checks and the 'timeout'
-- listener here, the idle clock the class's own (self:_idle(ms): a luv
-- timer for net, the C server's scan for http).

local errors = require('internal.errors')

local tonumber, tostring, error = tonumber, tostring, error

-- setTimeout(ms[, cb]): 'timeout' after ms without reads or writes (the
-- socket stays open; 0 disables). cb is a one-time 'timeout' listener.
return function(self, ms, cb)
  ms = tonumber(ms)
  if not ms or ms < 0 or ms ~= ms then
    error(errors.range_error('ERR_OUT_OF_RANGE', 'The value of "msecs" is '
      .. 'out of range. It must be a non-negative finite number. Received '
      .. tostring(ms)), 2)
  end
  if cb then
    if ms == 0 then self:removeListener('timeout', cb)
    else self:once('timeout', cb) end
  end
  self.timeout = ms > 0 and ms or nil
  self:_idle(ms)
  return self
end
