-- cluster.round_robin_handle: SCHED_RR. The primary accepts every
-- connection and hands it to the next worker in turn over its IPC channel,
-- which spreads load evenly whatever the kernel does, at the cost of the
-- primary touching every new connection.

local uv = require('uv')
local utils = require('cluster.utils')

local RoundRobinHandle = {}
RoundRobinHandle.__index = RoundRobinHandle

function RoundRobinHandle.new(key, opts)
  local self = setmetatable({key = key, list = {}, next = 1, waiting = {}},
    RoundRobinHandle)
  local fd, port = utils.listener(opts)
  if not fd then
    self.err = port
    return self
  end
  self.port = port
  local server = uv.new_tcp()
  server:open(fd)
  server:listen(opts.backlog or 511, function(err)
    if not err then self:_accept() end
  end)
  self.server = server
  return self
end

function RoundRobinHandle:_accept()
  local c = uv.new_tcp()
  if not self.server:accept(c) then
    c:close()
    return
  end
  if #self.list == 0 then
    -- No worker yet (or all gone): hold it until one is added.
    self.waiting[#self.waiting + 1] = c
    return
  end
  self:_handoff(c)
end

function RoundRobinHandle:_handoff(c)
  local n = #self.list
  local i = self.next
  if i > n then i = 1 end
  self.next = i + 1
  local worker = self.list[i]
  local ch = worker._channel
  -- The channel passes a duplicate of the socket: ours closes at once.
  if ch then ch:internal({act = 'newconn', key = self.key}, c:fileno()) end
  c:close()
end

-- requeue(c): a connection a worker could not take goes to another.
function RoundRobinHandle:requeue(c)
  if #self.list == 0 then
    self.waiting[#self.waiting + 1] = c
  else
    self:_handoff(c)
  end
end

function RoundRobinHandle:add(worker, send)
  if self.err then return send(self.err) end
  for _, w in ipairs(self.list) do
    if w == worker then return send(nil, {port = self.port}) end
  end
  self.list[#self.list + 1] = worker
  send(nil, {port = self.port})
  local waiting = self.waiting
  self.waiting = {}
  for _, c in ipairs(waiting) do self:_handoff(c) end
end

function RoundRobinHandle:remove(worker)
  for i, w in ipairs(self.list) do
    if w == worker then
      table.remove(self.list, i)
      break
    end
  end
  return #self.list == 0
end

function RoundRobinHandle:close()
  if self.server and not self.server:is_closing() then
    self.server:close()
  end
  for _, c in ipairs(self.waiting) do c:close() end
  self.waiting = {}
end

return RoundRobinHandle
