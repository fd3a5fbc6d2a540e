-- console: log/info/debug to stdout, warn/error to stderr; each call one
-- whole line written with one write(2), so lines from several processes
-- never mix mid-line and nothing waits in a buffer.

local lc = require('_lc')
local util = require('util')
local uv = require('uv')

local console = {}
local format, write = util.format, lc.write

-- group() indents what follows by two spaces, every line of it.
local indent = ''

local function out(fd, s)
  if indent ~= '' then
    s = indent .. s:gsub('\n', '\n' .. indent)
  end
  write(fd, s .. '\n')
end

function console.log(...) out(1, format(...)) end
console.info = console.log
console.debug = console.log
function console.error(...) out(2, format(...)) end
console.warn = console.error

-- dir(value[, opts]): util.inspect(value, opts), strings quoted.
function console.dir(v, opts) out(1, util.inspect(v, opts)) end

function console.trace(...)
  local msg = select('#', ...) > 0 and 'Trace: ' .. format(...) or 'Trace'
  out(2, debug.traceback(msg, 2))
end

function console.assert(cond, ...)
  if not cond then
    if select('#', ...) > 0 then
      out(2, 'Assertion failed: ' .. format(...))
    else
      out(2, 'Assertion failed')
    end
  end
end

function console.group(...)
  if select('#', ...) > 0 then console.log(...) end
  indent = indent .. '  '
end
console.groupCollapsed = console.group

function console.groupEnd()
  indent = indent:sub(3)
end

local counts = {}

-- count([label]): "label: n", n counting the calls with that label.
function console.count(label)
  label = label == nil and 'default' or tostring(label)
  counts[label] = (counts[label] or 0) + 1
  console.log('%s: %d', label, counts[label])
end

function console.countReset(label)
  label = label == nil and 'default' or tostring(label)
  if not counts[label] then
    return console.warn("Count for '%s' does not exist", label)
  end
  counts[label] = 0
end

local timers = {}

local function elapsed(label, t)
  -- Milliseconds with three decimals, as Node prints them.
  local ms = math.floor((uv.hrtime() - t) / 1e3 + 0.5) / 1e3
  return label .. ': ' .. util.formatNumber(ms) .. 'ms'
end

function console.time(label)
  label = label == nil and 'default' or tostring(label)
  if timers[label] then
    return console.warn("Warning: Label '%s' already exists for"
      .. " console.time()", label)
  end
  timers[label] = uv.hrtime()
end

function console.timeLog(label, ...)
  label = label == nil and 'default' or tostring(label)
  local t = timers[label]
  if not t then
    return console.warn("Warning: No such label '%s' for console.timeLog()",
      label)
  end
  out(1, format('%s', elapsed(label, t), ...))
end

function console.timeEnd(label)
  label = label == nil and 'default' or tostring(label)
  local t = timers[label]
  if not t then
    return console.warn("Warning: No such label '%s' for console.timeEnd()",
      label)
  end
  timers[label] = nil
  out(1, elapsed(label, t))
end

return console
