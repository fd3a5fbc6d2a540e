-- cluster.handles.registry: the primary's listening handles, one per listen
-- key (address, port, address type, index), each of the strategy the
-- scheduling policy names: it answers a worker's queryServer, takes a
-- worker off the handles it leaves, and closes a handle no worker will use
-- (Node keeps the same table in lib/internal/cluster/primary.js).
--
-- Listening sockets are the primary's under every policy, so a worker that
-- dies or is replaced leaves its queued connections to the next worker
-- instead of having them reset. Whether a handle no worker listens on
-- stays open for workers to come is not the primary's to know: Node's
-- answer (it closes) holds unless supervision says otherwise through
-- retain() (cluster/supervision/restart.lua).

local activation = require('cluster.handles.activation')

local M = {}

-- The strategy of each policy (cluster.SCHED_NONE, _RR, _REUSEPORT).
local STRATEGY = {
  [1] = 'cluster.handles.shared_socket',
  [2] = 'cluster.handles.round_robin',
  [3] = 'cluster.handles.reuseport',
}
local SCHED_NONE, SCHED_REUSEPORT = 1, 3

local handles = {}   -- key -> handle
M.workers = {}       -- cluster.workers, set by cluster/primary.lua

-- Node's answers: a handle without workers closes, and no worker is
-- announced beyond those forked.
local keeper = {
  keepsSockets = function() return false end,
  expected = function() return 0 end,
}

-- retain(k): k.keepsSockets() -> whether a handle no worker listens on
-- stays open (connections wait in its backlog for a replacement);
-- k.expected() -> how many workers are announced and not forked yet.
function M.retain(k)
  keeper = k
end

-- newcomers(handle) -> how many workers may still ask handle for a socket:
-- those forked, connected, not leaving and not listening through it yet,
-- and those announced.
local function newcomers(handle)
  local n = keeper.expected()
  for _, w in pairs(M.workers) do
    if w._channel.connected and not w.exitedAfterDisconnect and
        not handle:knows(w) then
      n = n + 1
    end
  end
  return n
end

-- query(worker, msg, policy, answer): the worker asks for a listening
-- socket (msg: address, port, addressType, index, backlog); answer(err,
-- reply, socket) with reply.key the listen key.
function M.query(worker, msg, policy, answer)
  local key = ('%s:%s:%s:%s'):format(tostring(msg.address), msg.port,
    msg.addressType, msg.index)
  local handle = handles[key]
  if not handle then
    -- A Unix socket (Node's pipe: port -1, the path in address) is round
    -- robin under SCHED_RR, as in Node, and otherwise the one socket
    -- shared: SO_REUSEPORT groups are for TCP.
    local path = msg.port == -1 and msg.address or nil
    local fd = not path and activation.socket(msg.port) or nil
    if (fd or path) and policy == SCHED_REUSEPORT then policy = SCHED_NONE end
    handle = require(STRATEGY[policy]).new(key, {address = msg.address,
      port = msg.port, backlog = msg.backlog, fd = fd, path = path,
      readableAll = msg.readableAll, writableAll = msg.writableAll})
    handles[key] = handle
  end
  handle:add(worker, function(err, reply, socket)
    if err and handle.err and handles[key] == handle then
      handles[key] = nil
    end
    reply = reply or {}
    reply.key = key
    answer(err, reply, socket)
  end)
end

-- closed(worker, key): the worker closed the server it had through key.
function M.closed(worker, key)
  local handle = handles[key]
  if not handle then return end
  if handle:remove(worker, true) and not keeper.keepsSockets() then
    handles[key] = nil
    handle:close()
  elseif handle.trim then
    handle:trim(newcomers(handle))
  end
end

-- remove(worker): the worker leaves every handle. One whose channel is
-- still open (told to drain or disconnect) stops counting now but may
-- still accept; once the channel has closed it is gone. A handle left
-- with no worker closes, unless the keeper keeps it.
function M.remove(worker)
  local keep = keeper.keepsSockets()
  local gone = not worker._channel.connected
  for key, handle in pairs(handles) do
    if handle:remove(worker, gone) and not keep then
      handles[key] = nil
      handle:close()
    end
  end
end

-- trim(): closes the SO_REUSEPORT sockets no worker will take (see
-- cluster/handles/reuseport.lua).
function M.trim()
  for _, handle in pairs(handles) do
    if handle.trim then handle:trim(newcomers(handle)) end
  end
end

-- closeAll(): every listening socket closes now (a shutdown: a new
-- connection is refused; or no worker will come back).
function M.closeAll()
  for key, handle in pairs(handles) do
    handles[key] = nil
    handle:close()
  end
end

return M
