-- cluster: Node's cluster module. The role is picked once, from the
-- environment the primary gives its workers (as lib/cluster.js does):
-- cluster/child.lua in a worker, cluster/primary.lua in the primary, with
-- supervision (cluster/supervision.lua: what goes beyond Node) attached to
-- it.

local lc_worker = rawget(_G, 'process') and process.env.LUACLUSTER_WORKER_ID
if lc_worker then
  return require('cluster.child')
end
local cluster = require('cluster.primary')
require('cluster.supervision').attach(cluster)
return cluster
