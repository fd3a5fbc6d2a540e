-- IPC benchmark, luacluster side (bench/ipc/node_ipc.js is the same in
-- Node). Prints one line per measure: "<name> <value> <unit>".
--   pingpong   round trips/s with one message in flight
--   roundtrip  messages/s primary -> worker -> primary, N in flight
--   oneway     messages/s primary -> worker (worker acks the last)
--   online     ms from fork() to 'online' (median of FORKS forks)
local cluster = require('cluster')
local uv = require('uv')
local N = tonumber(process.env.N) or 200000
local PINGS = tonumber(process.env.PINGS) or 20000
local FORKS = tonumber(process.env.FORKS) or 20

if cluster.isWorker then
  process.on('message', function(m)
    if m.mode == 'oneway' then
      if m.i == m.n then process.send({done = m.i}) end
    else
      process.send(m)
    end
  end)
  return
end

local function now() return uv.hrtime() / 1e6 end
local results = {}
local function report(name, value, unit)
  print(('%s %.1f %s'):format(name, value, unit))
end

local w = cluster.fork()
local steps = {}
local function nextstep()
  local s = table.remove(steps, 1)
  if s then s() else
    w:disconnect()
  end
end

steps[#steps + 1] = function()
  local t0, i = now(), 0
  local function onmsg(m)
    i = i + 1
    if i == PINGS then
      w:off('message', onmsg)
      report('pingpong', PINGS / ((now() - t0) / 1000), 'msg/s')
      return nextstep()
    end
    w:send({mode = 'pingpong', i = i, payload = 'hello world'})
  end
  w:on('message', onmsg)
  w:send({mode = 'pingpong', i = 0, payload = 'hello world'})
end

steps[#steps + 1] = function()
  local t0, got = now(), 0
  local function onmsg(m)
    got = got + 1
    if got == N then
      w:off('message', onmsg)
      report('roundtrip', N / ((now() - t0) / 1000), 'msg/s')
      return nextstep()
    end
  end
  w:on('message', onmsg)
  for i = 1, N do w:send({mode = 'roundtrip', i = i, payload = 'hello world'}) end
end

steps[#steps + 1] = function()
  local t0 = now()
  local function onmsg(m)
    w:off('message', onmsg)
    report('oneway', N / ((now() - t0) / 1000), 'msg/s')
    return nextstep()
  end
  w:on('message', onmsg)
  for i = 1, N do
    w:send({mode = 'oneway', i = i, n = N, payload = 'hello world'})
  end
end

w:on('online', nextstep)

cluster.on('exit', function(worker)
  if worker ~= w then return end
  -- fork -> online, one worker at a time.
  local times, k = {}, 0
  local function one()
    k = k + 1
    if k > FORKS then
      table.sort(times)
      report('online', times[math.ceil(#times / 2)], 'ms')
      return
    end
    local t0 = now()
    local x = cluster.fork()
    x:on('online', function()
      times[#times + 1] = now() - t0
      x:kill()
    end)
    x:on('exit', one)
  end
  one()
end)
