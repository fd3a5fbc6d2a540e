-- cluster.supervision.status: what the primary tells of its workers.
-- cluster.stats(), from each worker's last heartbeat
-- (cluster/supervision/heartbeat.lua), and the opt-in status endpoint
-- (setupPrimary{statusPort = 9100[, statusHost = '127.0.0.1']}, or
-- LUACLUSTER_STATUS_PORT=9100 under `luacluster -w N`):
--   GET /stats    cluster.stats() as JSON
--   GET /metrics  the same in Prometheus' text format
--   GET /health   200 while at least one worker listens, else 503
--
-- The endpoint starts with the first 'setup' that names a statusPort
-- (cluster/supervision.lua).

local uv = require('uv')
local cjson = require('cjson')
local heartbeat = require('cluster.supervision.heartbeat')
local state = require('cluster.supervision.state')

local M = {}
local server

-- stats(workers) -> sequence ordered by id of {slot, id, pid, uptime,
-- restarts, rss, requests, reqPerSec, connections, loopLag, state}; slot is
-- the worker's place 1..N, which its replacements keep.
function M.stats(workers)
  local out = {}
  local now = uv.now()
  for id, w in pairs(workers) do
    local s = heartbeat.figures(w)
    out[#out + 1] = {slot = w._slot and w._slot.n or id, id = id,
      pid = w.process.pid, reqPerSec = s.rate,
      uptime = math.floor((now - (w._started or now)) / 100) / 10,
      restarts = w._slot and w._slot.restarts or 0, rss = s.rss,
      requests = s.requests, connections = s.connections,
      loopLag = s.lag, state = w.state}
  end
  table.sort(out, function(a, b) return a.id < b.id end)
  return out
end

local METRICS = {
  {'requests', 'requests_total', 'counter',
    'Requests served by the worker since it started.'},
  {'reqPerSec', 'requests_per_second', 'gauge',
    'Requests a second between the worker\'s last two heartbeats.'},
  {'connections', 'connections', 'gauge', 'Open client connections.'},
  {'rss', 'rss_bytes', 'gauge', 'Resident memory of the worker.'},
  {'loopLag', 'loop_lag_milliseconds', 'gauge',
    'How late the worker\'s event loop ran its last heartbeat.'},
  {'uptime', 'uptime_seconds', 'gauge', 'Seconds since the worker started.'},
  {'restarts', 'restarts_total', 'counter',
    'Restarts of this worker slot.'},
}

-- prometheus(stats) -> text exposition format 0.0.4.
function M.prometheus(stats)
  local out = {}
  out[#out + 1] = '# HELP luacluster_workers Live workers.'
  out[#out + 1] = '# TYPE luacluster_workers gauge'
  out[#out + 1] = 'luacluster_workers ' .. #stats
  for _, m in ipairs(METRICS) do
    local name = 'luacluster_worker_' .. m[2]
    out[#out + 1] = '# HELP ' .. name .. ' ' .. m[4]
    out[#out + 1] = '# TYPE ' .. name .. ' ' .. m[3]
    for _, s in ipairs(stats) do
      out[#out + 1] = ('%s{slot="%d",worker="%d",pid="%d"} %s'):format(name,
        s.slot, s.id, s.pid or 0, require('util').formatNumber(s[m[1]] or 0))
    end
  end
  return table.concat(out, '\n') .. '\n'
end

-- start(cluster): serves on settings.statusPort, once.
function M.start(cluster)
  if server or not cluster.settings.statusPort then return end
  local http = require('http')
  local port = cluster.settings.statusPort
  server = http.createServer({accessLog = false}, function(req, res)
    local path = req.url:match('^[^?]*')
    local body, ctype, status = nil, 'application/json', 200
    if path == '/stats' or path == '/' then
      body = cjson.encode(M.stats(cluster.workers))
      -- An empty list encodes as {} in cjson; it is a list.
      if body == '{}' then body = '[]' end
    elseif path == '/metrics' then
      body = M.prometheus(M.stats(cluster.workers))
      ctype = 'text/plain; version=0.0.4'
    elseif path == '/health' then
      local listening = 0
      for _, w in pairs(cluster.workers) do
        if w.state == 'listening' then listening = listening + 1 end
      end
      status = listening > 0 and 200 or 503
      body = cjson.encode({status = status == 200 and 'ok' or 'unavailable',
        listening = listening})
    else
      status, body, ctype = 404, 'not found\n', 'text/plain'
    end
    res:writeHead(status, {['Content-Type'] = ctype})
    res:finish(body)
  end)
  server:on('error', function(err)
    state.error('status endpoint: %s', tostring(err.message or err))
  end)
  server:listen(port, cluster.settings.statusHost or '127.0.0.1')
  -- The endpoint does not keep the primary alive by itself.
  if server.unref then server:unref() end
end

-- stop(): the endpoint closes (a shutdown).
function M.stop()
  if server then
    server:close()
    server = nil
  end
end

return M
