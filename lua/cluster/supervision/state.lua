-- cluster.supervision.state: what the parts of supervision share: the
-- cluster they supervise, its settings with their defaults, what the
-- primary is doing (shutting down, reloading), the checks of setupPrimary's
-- supervision options, and the one-line log of what the primary does on
-- its own.
--
-- What supervision keeps on each Worker (the primary knows none of it):
--   _slot          the role it fills, with the backoff and restart count
--                  (restart.lua; the SO_REUSEPORT handle reads it too)
--   _started       uv.now() at its 'fork' (restart.lua)
--   _beat, _stats  its last heartbeat and figures (heartbeat.lua)
--   _unresponsive  killed by the watchdog (watchdog.lua)
--   _replaced      drained by a reload or a shutdown (shutdown.lua)

local M = {}

M.cluster = nil       -- cluster.primary, set by cluster/supervision.lua
M.shutting = false    -- a shutdown began: no restart, no reload
M.reloading = false   -- a rolling reload is under way

local DEFAULTS = {
  restart = 'never',
  restartDelay = 100,
  maxRestarts = 10,
  restartWindow = 60000,
  shutdownTimeout = 30000,
}

-- setting(name) -> cluster.settings[name], or its default.
function M.setting(name)
  local v = M.cluster.settings[name]
  if v == nil then return DEFAULTS[name] end
  return v
end

-- One line on stderr for each thing the primary does on its own, with its
-- time and level (internal/log.lua): log is info; warn and error as named.
local logw = require('internal.log').write
function M.log(fmt, ...) logw('info', fmt, ...) end
function M.warn(fmt, ...) logw('warn', fmt, ...) end
function M.error(fmt, ...) logw('error', fmt, ...) end

local RESTART = {never = true, ['on-failure'] = true, always = true}
local NUMBERS = {'restartDelay', 'maxRestarts', 'restartWindow', 'heartbeat',
  'shutdownTimeout', 'statusPort'}

-- check(options, problems): appends to problems what is wrong with
-- setupPrimary's supervision options (the primary raises the first).
function M.check(o, problems)
  if o.restart ~= nil and not RESTART[o.restart] then
    problems[#problems + 1] = ("restart must be 'never', 'on-failure' or " ..
      "'always', got %s"):format(tostring(o.restart))
  end
  for _, k in ipairs(NUMBERS) do
    local v = o[k]
    if v ~= nil and (type(v) ~= 'number' or v < 0 or v ~= v) then
      problems[#problems + 1] = ('%s must be a number >= 0, got %s'):format(
        k, tostring(v))
    end
  end
end

return M
