-- cluster.supervision.watchdog: kills a worker whose event loop stalls
-- (setupPrimary{heartbeat = ms}): one whose heartbeat
-- (cluster/supervision/heartbeat.lua) has not come for that long gets
-- 'unresponsive', is killed, and is replaced whatever the restart policy
-- says (cluster/supervision/restart.lua reads worker._unresponsive).
--
-- Armed once a heartbeat is set (on 'setup': cluster/supervision.lua).

local uv = require('uv')
local state = require('cluster.supervision.state')
local heartbeat = require('cluster.supervision.heartbeat')

local M = {}

local timer

local function check()
  local cluster = state.cluster
  local hb = cluster.settings.heartbeat
  if not hb or hb <= 0 then return end
  local now = uv.now()
  for _, w in pairs(cluster.workers) do
    if not w._unresponsive and w.process.pid and w.state ~= 'dead' then
      -- Before its first beat a worker is still loading its script: it
      -- gets longer (10 heartbeats, at least 5 s) to reach its loop.
      local beat = heartbeat.last(w)
      local last = beat or w._started or now
      local limit = beat and hb or math.max(10 * hb, 5000)
      if now - last > limit then
        w._unresponsive = true
        state.error('worker %d (pid %d) unresponsive for %d ms (heartbeat ' ..
          '%d ms): killing it', w.id, w.process.pid, now - last, hb)
        w:emit('unresponsive', now - last)
        cluster:emit('unresponsive', w, now - last)
        pcall(uv.kill, w.process.pid, 'sigkill')
      end
    end
  end
end

-- arm(): starts checking, every heartbeat / 4 ms, once a heartbeat is set.
function M.arm()
  local hb = state.cluster.settings.heartbeat
  if not hb or hb <= 0 or timer then return end
  timer = uv.new_timer()
  local every = math.max(10, math.floor(hb / 4))
  timer:start(every, every, check)
  timer:unref()
end

return M
