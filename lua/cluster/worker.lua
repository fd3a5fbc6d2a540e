-- cluster.worker: the Worker object, shared by both sides (Node's
-- lib/internal/cluster/worker.js). The primary's Worker wraps a child
-- process (its kill and disconnect are in cluster/primary.lua); the
-- worker's own (cluster.worker) wraps process (cluster/child.lua). Methods
-- work with a dot and with a colon.

local EventEmitter = require('events')
local utils = require('cluster.utils')

local Worker = EventEmitter:extend()

-- Worker.new{id=, process=, state=} -> Worker
function Worker.new(opts)
  local w = EventEmitter.new(Worker, {
    id = opts.id,
    process = opts.process,
    state = opts.state or 'none',
    exitedAfterDisconnect = nil,
  })
  EventEmitter.bindMethods(w, Worker)
  return w
end

function Worker:isDead()
  return self.state == 'dead'
end

function Worker:isConnected()
  return self._channel ~= nil and not self._channel.closing
end

-- Reports a send on a closed channel (apart from send, which then has no
-- closure: a closure in it would keep the JIT from compiling the send path).
local function send_closed(self, cb)
  local err = utils.error('ERR_IPC_CHANNEL_CLOSED', 'Channel closed')
  if cb then process.nextTick(cb, err)
  else process.nextTick(function() self:emit('error', err) end) end
  return false
end

-- send(msg[, cb]) -> true, or false when the channel is closed (cb or
-- the 'error' event gets the error). Raises when msg cannot be encoded.
function Worker:send(msg, cb)
  local ch = self._channel
  if not ch or ch.closing then return send_closed(self, cb) end
  return ch:send(msg, cb)
end

return Worker
