-- cluster.supervision.heartbeat: both ends of the heartbeat. A worker's
-- event loop reports to the primary every second (every heartbeat / 4 ms
-- with the watchdog on) over the IPC channel: its rss, how late the loop
-- ran, and the counters modules provide (internal/stats.lua). The primary
-- keeps the last report of each worker, which cluster.stats() shows
-- (cluster/supervision/status.lua) and the watchdog watches
-- (cluster/supervision/watchdog.lua): a loop that stalls stops reporting.
--
-- The primary tells each worker the heartbeat setting in its environment
-- (LUACLUSTER_HEARTBEAT, through the primary's internal 'spawn' event);
-- the reports come back as the control message 'beat' (the internal event
-- of that name).

local uv = require('uv')
local stats = require('internal.stats')

local M = {}

------------------------------------------------------------------------------
-- The worker's end.

-- start(send): reports with send(msg) from now on (cluster/child.lua, once
-- the channel is open). The timers do not keep the worker alive.
function M.start(send)
  local heartbeat = tonumber(process.env.LUACLUSTER_HEARTBEAT)
  process.env.LUACLUSTER_HEARTBEAT = nil
  local interval = 1000
  if heartbeat and heartbeat > 0 then
    interval = math.max(10, math.min(1000, math.floor(heartbeat / 4)))
  end
  local timer = uv.new_timer()
  local last = uv.now()
  local function beat()
    local now = uv.now()
    local lag = math.max(0, now - last - interval)
    last = now
    local counts = stats.collect()
    send({act = 'beat', rss = uv.resident_set_memory(), lag = lag,
      requests = counts.requests, connections = counts.connections})
  end
  timer:start(interval, interval, beat)
  timer:unref()
  -- The first beat goes out as soon as the loop runs.
  local first = uv.new_timer()
  first:start(0, 0, function()
    first:close()
    beat()
  end)
  first:unref()
end

------------------------------------------------------------------------------
-- The primary's end.

-- figures(worker) -> the worker's last report: {rss, lag, requests,
-- connections, rate} (zeros before the first); rate is requests a second
-- between the last two reports.
function M.figures(worker)
  local s = worker._stats
  if not s then
    s = {rss = 0, lag = 0, requests = 0, connections = 0, rate = 0}
    worker._stats = s
  end
  return s
end

-- last(worker) -> uv.now() of the worker's last report, or nil.
function M.last(worker)
  return worker._beat
end

local function on_beat(worker, msg)
  local now, prev = uv.now(), worker._beat
  worker._beat = now
  local s = M.figures(worker)
  if prev and now > prev and msg.requests then
    s.rate = math.floor(math.max(0, msg.requests - s.requests) * 10000 /
      (now - prev) + 0.5) / 10
  end
  s.rss, s.lag = msg.rss or s.rss, msg.lag or s.lag
  s.requests, s.connections = msg.requests or 0, msg.connections or 0
end

function M.attach(cluster)
  cluster._internal:on('beat', on_beat)
  cluster._internal:on('spawn', function(_, env)
    local hb = cluster.settings.heartbeat
    env.LUACLUSTER_HEARTBEAT = hb and tostring(hb) or nil
  end)
end

return M
