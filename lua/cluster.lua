-- cluster: Node's cluster module. The role is picked once, from the
-- environment the primary gives its workers (as lib/cluster.js does).

local lc_worker = rawget(_G, 'process') and process.env.LUACLUSTER_WORKER_ID
if lc_worker then
  return require('cluster.child')
end
return require('cluster.primary')
