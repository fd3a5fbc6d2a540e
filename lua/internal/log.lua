-- internal.log: the form of the lines the runtime writes about itself (a
-- primary's supervision) and of the worker lines a primary passes on
-- (cluster/output.lua): each with an ISO-8601 UTC time and a level, as
--   2026-12-06T07:20:01.123Z info  [primary] worker 1 (pid 4242) started
--   2026-12-06T07:20:01.130Z info  [1] listening on 8000
-- or, with `--log-format=json` (LUACLUSTER_LOG_FORMAT=json), one JSON
-- object a line for log shippers:
--   {"time":"2026-12-06T07:20:01.123Z","level":"info","worker":1,
--    "pid":4243,"msg":"listening on 8000"}
-- (worker 0 is the primary). The time is read once per call, and its text
-- made once per second.

local uv = require('uv')
local encode = require('cjson').encode

local M = {}

M.FORMATS = {text = true, json = true}

-- The format in use: 'text' or 'json'.
M.format = 'text'

local PAD = {info = 'info ', warn = 'warn ', error = 'error', debug = 'debug'}

local last_sec, last_text

-- now() -> the time as 2026-12-06T07:20:01.123Z.
function M.now()
  local sec, usec = uv.gettimeofday()
  if sec ~= last_sec then
    last_sec = sec
    last_text = os.date('!%Y-%m-%dT%H:%M:%S', sec)
  end
  return ('%s.%03dZ'):format(last_text, math.floor(usec / 1000))
end

-- set(format): 'text' or 'json'; anything else raises.
function M.set(format)
  if not M.FORMATS[format] then
    error('log format must be text or json, got "' .. tostring(format)
      .. '"', 2)
  end
  M.format = format
end

-- line(level, worker, pid, msg[, time][, cont]) -> the line (with its
-- newline) in the format in use; worker is an id, or 0 (or nil) for the
-- primary; cont marks the continuation of a line cut for its length.
function M.line(level, worker, pid, msg, time, cont)
  time = time or M.now()
  if M.format == 'json' then
    -- Built in this order (a table would encode in any order).
    return ('{"time":"%s","level":"%s","worker":%d,"pid":%d,%s"msg":%s}\n')
      :format(time, level, worker or 0, pid or 0,
        cont and '"cont":true,' or '', encode(msg))
  end
  local who = (worker == nil or worker == 0) and 'primary' or worker
  return ('%s %s [%s]%s %s\n'):format(time, PAD[level] or level, who,
    cont and '+' or '', msg)
end

-- write(level, fmt, ...): one line of the primary's on stderr.
function M.write(level, fmt, ...)
  local msg = select('#', ...) > 0 and fmt:format(...) or fmt
  io.stderr:write(M.line(level, 0, uv.os_getpid(), msg))
end

return M
