-- console: log/info/debug to stdout, warn/error to stderr; each call one
-- whole line written with one write(2), so lines from several processes
-- never mix mid-line and nothing waits in a buffer.

local lc = require('_lc')
local util = require('util')

local console = {}
local format, write = util.format, lc.write

function console.log(...) write(1, format(...) .. '\n') end
console.info = console.log
console.debug = console.log
function console.error(...) write(2, format(...) .. '\n') end
console.warn = console.error

function console.dir(v, opts) write(1, util.inspect(v, opts) .. '\n') end

function console.trace(...)
  write(2, debug.traceback('Trace: ' .. format(...), 2) .. '\n')
end

function console.assert(cond, ...)
  if not cond then
    if select('#', ...) > 0 then
      write(2, 'Assertion failed: ' .. format(...) .. '\n')
    else
      write(2, 'Assertion failed\n')
    end
  end
end

local timers = {}
function console.time(label)
  timers[label or 'default'] = require('uv').hrtime()
end
function console.timeEnd(label)
  label = label or 'default'
  local t = timers[label]
  if not t then
    return console.warn("Warning: No such label '" .. label .. "'")
  end
  timers[label] = nil
  console.log('%s: %sms', label, util.formatNumber(
    math.floor((require('uv').hrtime() - t) / 1e3) / 1e3))
end

return console
