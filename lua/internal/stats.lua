-- internal.stats: the counters of this process that a cluster worker
-- reports to its primary with each heartbeat (cluster/supervision/
-- heartbeat.lua), which cluster.stats() and the status endpoint show. A
-- module that counts something registers a function that reads it (http
-- does, lua/http/server.lua); the heartbeat sums what they return. So the
-- counting modules know nothing of the cluster, and the cluster side knows
-- no module by name.
--
--   require('internal.stats').provide('http', server.stats)
--
-- Works in any process (a primary's own servers may provide too: nothing
-- reads them there).

local M = {}

local providers = {}   -- name -> fn() -> {counter = number, ...}

-- provide(name, fn): fn() returns a table of counters (requests,
-- connections, ...); a second provide under the same name replaces the
-- first.
function M.provide(name, fn)
  if type(name) ~= 'string' or type(fn) ~= 'function' then
    error('stats.provide(name, fn): a string and a function', 2)
  end
  providers[name] = fn
end

-- collect() -> {counter = sum over every provider}: requests and
-- connections are always there (0 when nothing counts them).
function M.collect()
  local out = {requests = 0, connections = 0}
  for _, fn in pairs(providers) do
    for k, v in pairs(fn()) do out[k] = (out[k] or 0) + v end
  end
  return out
end

return M
