-- cluster.broadcast: one message to every worker, from any worker or the
-- primary, over the IPC channels: a worker sends it to the primary, which
-- relays it to every worker (the sender included) in the order it came,
-- so each worker gets each message once and a sender's messages in order.
-- Two kinds ride on it:
--   msg  cluster.broadcast(msg): each worker's process 'message'
--   ws   websocket.broadcast(channel, data): each worker writes one frame,
--        built once, to its clients subscribed to the channel
--        (lua/websocket/broadcast.lua); the primary's own clients too

local B = {}

local pairs = pairs

-- What a message of each kind does where it arrives.
local function deliver(msg)
  if msg.kind == 'msg' then
    local cluster = require('cluster')
    if cluster.isWorker then
      require('process'):emit('message', msg.msg)
      if cluster.worker then cluster.worker:emit('message', msg.msg) end
    end
  elseif msg.kind == 'ws' then
    -- A process that never loaded websocket has no subscribers.
    local wsb = package.loaded['websocket.broadcast']
    if wsb then wsb.deliver(msg.ch, msg.data, msg.bin) end
  end
end

-- The primary: to every worker, and its own clients.
function B.relay(msg)
  local cluster = require('cluster')
  msg.act = 'broadcast'
  for _, w in pairs(cluster.workers) do
    if w._channel and w.state ~= 'dead' then w._channel:internal(msg) end
  end
  if msg.kind == 'ws' then deliver(msg) end
end

-- A worker got one from the primary.
B.receive = deliver

-- send(msg): msg.kind and its fields; from a worker through the primary,
-- from the primary at once, outside a cluster (no workers) here.
function B.send(msg)
  local cluster = require('cluster')
  msg.act = 'broadcast'
  if cluster.isWorker then
    return cluster._sendInternal(msg)
  end
  return B.relay(msg)
end

return B
