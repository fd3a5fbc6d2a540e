-- cluster.handles.handoff: connections the primary accepted, handed to
-- workers over their IPC channels, as Node's round_robin_handle.js does: a
-- worker holds at most one connection it has not answered for, and the
-- next connection goes to a worker that is free (answered for its last
-- one), the one free the longest first. A worker that stalls (a stopped
-- process, a loop stuck in a handler) so gets one connection, not a pile:
-- the others serve the rest, and what no worker is free for waits here, in
-- order.
--
-- The primary keeps its copy of each connection until the worker answers
-- that it took it: a worker that dies first (a crash, kill -9, a stopped
-- worker killed by a reload) never read from it, so it goes to another
-- worker instead of being lost with the channel's unread frames. A worker
-- that answers no (its server closed meanwhile) leaves the turn and the
-- connection goes to the next one.
--
-- Used by SCHED_RR for every connection, and by SCHED_REUSEPORT for those
-- queued on a socket whose worker is gone (cluster/handles/reuseport.lua).

local Handoff = {}
Handoff.__index = Handoff

-- new(key) -> Handoff for the listen key `key` (named in each 'newconn').
function Handoff.new(key)
  return setmetatable({key = key,
    members = {},   -- the workers taking connections, in the order added
    free = {},      -- those of them with nothing unanswered, oldest first
    queue = {},     -- connections waiting for a free worker, in order
    inflight = {},  -- worker -> the connection it has not answered for
  }, Handoff)
end

-- count() -> how many workers take connections now.
function Handoff:count()
  return #self.members
end

local function drop(list, worker)
  for i, w in ipairs(list) do
    if w == worker then
      table.remove(list, i)
      return true
    end
  end
  return false
end

local function member(self, worker)
  for _, w in ipairs(self.members) do
    if w == worker then return true end
  end
  return false
end

local dispatch

-- Hands c to worker w; false when w's channel is closed.
local function hand(self, w, c)
  self.inflight[w] = c
  local ch = w._channel
  local sent = ch and ch:internal({act = 'newconn', key = self.key}, c,
    function(reply)
      if self.inflight[w] ~= c then return end
      self.inflight[w] = nil
      if reply.accepted then
        c:close()
        if member(self, w) then self.free[#self.free + 1] = w end
      else
        drop(self.members, w)
        table.insert(self.queue, 1, c)
      end
      dispatch(self)
    end)
  if sent then return true end
  self.inflight[w] = nil
  return false
end

-- Hands the queued connections to the free workers, in order.
function dispatch(self)
  local queue, free = self.queue, self.free
  while queue[1] and free[1] do
    local w = table.remove(free, 1)
    local c = table.remove(queue, 1)
    if not hand(self, w, c) then
      drop(self.members, w)
      table.insert(queue, 1, c)
    end
  end
end

-- give(c): hands c (a luv tcp) to a free worker, or keeps it until one is.
function Handoff:give(c)
  self.queue[#self.queue + 1] = c
  dispatch(self)
end

-- add(worker): worker takes connections from now on; those kept waiting
-- go out at once. Call it after the worker has its listen answer (the
-- channel keeps the order).
function Handoff:add(worker)
  if member(self, worker) then return end
  self.members[#self.members + 1] = worker
  if not self.inflight[worker] then self.free[#self.free + 1] = worker end
  dispatch(self)
end

-- remove(worker): no more connections to worker. The one it has not
-- answered for goes to the others once its channel is closed (until then
-- it may still take it).
function Handoff:remove(worker)
  drop(self.members, worker)
  drop(self.free, worker)
  local ch = worker._channel
  if ch and ch.connected then return end
  local c = self.inflight[worker]
  if not c then return end
  self.inflight[worker] = nil
  table.insert(self.queue, 1, c)
  dispatch(self)
end

-- close(): closes every connection still held (none will be served).
function Handoff:close()
  for _, c in ipairs(self.queue) do
    if not c:is_closing() then c:close() end
  end
  for w, c in pairs(self.inflight) do
    if not c:is_closing() then c:close() end
    self.inflight[w] = nil
  end
  self.queue, self.members, self.free = {}, {}, {}
end

return Handoff
