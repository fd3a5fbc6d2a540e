-- cluster.stats: the counters a worker reports to its primary with each
-- heartbeat (cluster/supervision/heartbeat.lua), which cluster.stats() and
-- the status endpoint show. A module that counts something registers a
-- function that reads it; the heartbeat sums what they return, so the
-- cluster side needs to know no module by name.
--
--   require('cluster.stats').provide('http', http._stats)
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
    error('cluster.stats.provide(name, fn): a string and a function', 2)
  end
  providers[name] = fn
end

-- collect() -> {counter = sum over every provider}: requests and
-- connections are always there (0 when nothing counts them).
function M.collect()
  local out = {requests = 0, connections = 0}
  -- Until lua/http.lua provides its counters itself, read them where it
  -- keeps them (http._stats) when it is loaded.
  if not providers.http then
    local http = package.loaded.http
    if http and http._stats then providers.http = http._stats end
  end
  for _, fn in pairs(providers) do
    for k, v in pairs(fn()) do out[k] = (out[k] or 0) + v end
  end
  return out
end

return M
