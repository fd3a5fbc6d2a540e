-- bench/shared: the measured loops, one file loaded by both sides (the
-- luacluster workers and nginx's workers), so both run the same Lua.
--
-- run(dict, nworkers, n, clock) -> lines "op seconds n" for set, get and
-- incr: each phase starts once every worker has reached it (a barrier on
-- the dict itself), then does n operations on 1000 keys.

local M = {}

local KEYS = 1000
local keys, counters = {}, {}
for i = 1, KEYS do
  keys[i] = 'key:' .. i
  counters[i] = 'counter:' .. i
end
local value = string.rep('v', 32)

local loops = {}

function loops.set(dict, n)
  for i = 1, n do dict:set(keys[i % KEYS + 1], value) end
end

function loops.get(dict, n)
  for i = 1, n do dict:get(keys[i % KEYS + 1]) end
end

function loops.incr(dict, n)
  for i = 1, n do dict:incr(counters[i % KEYS + 1], 1, 0) end
end

-- Waits until nworkers have arrived at the barrier called name.
local function barrier(dict, name, nworkers)
  dict:incr(name, 1, 0)
  while (dict:get(name) or 0) < nworkers do end
end

M.ops = {'set', 'get', 'incr'}

function M.run(dict, nworkers, n, clock)
  local out = {}
  -- Warm-up: the loops are compiled before they are timed.
  for _, op in ipairs(M.ops) do loops[op](dict, math.floor(n / 10)) end
  for _, op in ipairs(M.ops) do
    barrier(dict, 'barrier:' .. op, nworkers)
    local t0 = clock()
    loops[op](dict, n)
    out[#out + 1] = ('%s %.6f %d\n'):format(op, clock() - t0, n)
  end
  return table.concat(out)
end

return M
