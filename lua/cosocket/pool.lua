-- cosocket.pool: the per-process keepalive pools of cosocket connections,
-- as OpenResty keeps them.
--
-- A pool is named by the connect's `pool` option, else "host:port" (the
-- host as given) or the "unix:/path" string. It holds at most `size` idle
-- connections, the most recently used handed out first and the least
-- recently used closed to make room. It counts its connections (idle, in
-- use, being made: `active`); with a `backlog`, at most `size` exist at
-- once and up to `backlog` connects wait in a queue for one to be closed or
-- put back. The size of a pool is fixed once it is made.
--
-- What a connection is (its handle, when it is alive) is cosocket.lua's
-- business: a pool calls conn_close(conn) to drop one.

local co = require('co')

local remove = table.remove

local Pool = {}
Pool.__index = Pool

local pools = {}

local M = {}

function M.get(key) return pools[key] end

-- create(key, size[, backlog]) -> the pool (size > 0; backlog >= 0 or nil
-- for no limit on connections).
function M.create(key, size, backlog)
  local p = setmetatable({key = key, size = size, backlog = backlog,
    idle = {}, active = 0, queue = {}}, Pool)
  pools[key] = p
  return p
end

-- pop() -> the most recently kept idle connection, or nil. The caller
-- checks that it is still fit to use.
function Pool:pop()
  return remove(self.idle)
end

-- push(conn) -> the connection this one evicts (the least recently used,
-- when the pool is full), for the caller to close; nil otherwise.
function Pool:push(conn)
  local idle = self.idle
  local evicted
  if #idle >= self.size then evicted = remove(idle, 1) end
  idle[#idle + 1] = conn
  return evicted
end

-- drop(conn): an idle connection that died leaves the pool.
function Pool:drop(conn)
  local idle = self.idle
  for i = #idle, 1, -1 do
    if idle[i] == conn then
      remove(idle, i)
      return
    end
  end
end

-- full() -> true when a new connection must wait (a backlog is set and
-- `size` connections exist).
function Pool:full()
  return self.backlog ~= nil and self.active >= self.size
end

-- queue_full() -> true when no more connects may wait.
function Pool:queue_full()
  return #self.queue >= (self.backlog or 0)
end

-- enqueue(c, token): coroutine c waits for a connection slot (the caller
-- suspends on token); dequeue removes it (timed out).
function Pool:enqueue(c, token)
  local q = self.queue
  q[#q + 1] = {c, token}
end

function Pool:dequeue(token)
  local q = self.queue
  for i = 1, #q do
    if q[i][2] == token then
      remove(q, i)
      return
    end
  end
end

-- signal(): a connection was closed or put back: the oldest waiting
-- connect tries again.
function Pool:signal()
  local w = remove(self.queue, 1)
  if w then co._wake(w[1], w[2]) end
end

-- released(): a counted connection was closed.
function Pool:released()
  self.active = self.active - 1
  self:signal()
end

return M
