-- cluster.handoff: connections the primary accepted, handed to workers in
-- turn over their IPC channels. The primary keeps its copy of each one
-- until the worker answers that it took it: a worker that dies first (a
-- crash, kill -9, a stopped worker killed by a reload) never read from it,
-- so it goes to another worker instead of being lost with the channel's
-- unread frames. A worker that answers no (its server closed meanwhile) is
-- dropped from the turn and the connection goes to the next one.
--
-- Used by SCHED_RR for every connection, and by SCHED_REUSEPORT for those
-- queued on a socket whose worker is gone (cluster/reuseport_handle.lua).

local Handoff = {}
Handoff.__index = Handoff

-- new(key) -> Handoff for the listen key `key` (named in each 'newconn').
function Handoff.new(key)
  return setmetatable({key = key, list = {}, next = 1, waiting = {},
    inflight = {}}, Handoff)
end

-- count() -> how many workers take connections now.
function Handoff:count()
  return #self.list
end

local function drop(list, worker)
  for i, w in ipairs(list) do
    if w == worker then
      table.remove(list, i)
      return
    end
  end
end

-- give(c): hands c (a luv tcp) to the next worker, or keeps it until one is
-- added.
function Handoff:give(c)
  local list = self.list
  while #list > 0 do
    local i = self.next
    if i > #list then i = 1 end
    self.next = i + 1
    local w = list[i]
    local mine = self.inflight[w]
    if not mine then
      mine = {}
      self.inflight[w] = mine
    end
    mine[c] = true
    local sent = w._channel and w._channel:internal({act = 'newconn',
        key = self.key}, c, function(reply)
      if not mine[c] then return end
      mine[c] = nil
      if reply.accepted then
        c:close()
      else
        drop(self.list, w)
        self:give(c)
      end
    end)
    if sent then return end
    mine[c] = nil
    drop(list, w)
  end
  self.waiting[#self.waiting + 1] = c
end

-- add(worker): worker takes connections from now on; those kept waiting
-- go out at once. Call it after the worker has its listen answer (the
-- channel keeps the order).
function Handoff:add(worker)
  for _, w in ipairs(self.list) do
    if w == worker then return end
  end
  self.list[#self.list + 1] = worker
  local waiting = self.waiting
  self.waiting = {}
  for _, c in ipairs(waiting) do self:give(c) end
end

-- remove(worker): no more connections to worker. Those it has not answered
-- for go to the others once its channel is closed (until then it may still
-- take them).
function Handoff:remove(worker)
  drop(self.list, worker)
  local ch = worker._channel
  if ch and ch.connected then return end
  local mine = self.inflight[worker]
  if not mine then return end
  self.inflight[worker] = nil
  local list = {}
  for c in pairs(mine) do list[#list + 1] = c end
  for _, c in ipairs(list) do
    mine[c] = nil
    self:give(c)
  end
end

-- close(): closes every connection still held (none will be served).
function Handoff:close()
  for _, c in ipairs(self.waiting) do
    if not c:is_closing() then c:close() end
  end
  self.waiting = {}
  for w, mine in pairs(self.inflight) do
    for c in pairs(mine) do
      mine[c] = nil
      if not c:is_closing() then c:close() end
    end
    self.inflight[w] = nil
  end
  self.list = {}
end

return Handoff
