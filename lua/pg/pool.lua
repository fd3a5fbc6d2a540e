-- pg.pool: a worker's connections to one database, as Node pg's Pool.
--
-- At most `max` connections, made as needed; a query takes an idle one or
-- makes one, else waits in a queue (at most maxQueue waiting, each at most
-- connectionTimeoutMillis). A released connection goes to the first
-- waiter, else idles (closed after idleTimeoutMillis, or once older than
-- maxLifetimeSeconds). A connection that broke, or is left inside a
-- transaction, is closed rather than reused; the pool makes new ones, so
-- it outlives a server restart. Idle connections do not keep the process
-- alive (as Node's allowExitOnIdle).
--
-- LISTEN: pool:listen(channel, fn) keeps one more connection, outside
-- `max`, that listens to every channel asked for, and makes it again
-- (listening again, 'listening' emitted once it does) when it is lost.

local uv = require('uv')
local EventEmitter = require('events')
local Client = require('pg.client')
local Q = require('pg.query')

local type, pairs, ipairs, error, pcall, select, unpack, tostring,
  setmetatable = type, pairs, ipairs, error, pcall, select, unpack, tostring,
  setmetatable
local pg_error = Client.error

local Pool = EventEmitter:extend()

local function later(fn, ...)
  local n, args = select('#', ...), {...}
  local t = uv.new_timer()
  t:start(0, 0, function()
    t:close()
    fn(unpack(args, 1, n))
  end)
end

local function number_opt(opts, name, default)
  local v = opts[name]
  if v == nil then return default end
  if type(v) ~= 'number' or v < 0 then
    error('pg.pool: ' .. name .. ' must be a number >= 0', 3)
  end
  return v
end

function Pool.new(opts)
  if type(opts) == 'string' then opts = {connectionString = opts} end
  opts = opts or {}
  if type(opts) ~= 'table' then
    error('pg.pool: expected an options table or a connection string', 2)
  end
  local self = setmetatable({
    info = Client.conninfo(opts),
    opts = opts,
    max = number_opt(opts, 'max', 10),
    idleTimeoutMillis = number_opt(opts, 'idleTimeoutMillis', 10000),
    connectionTimeoutMillis = number_opt(opts, 'connectionTimeoutMillis', 0),
    maxLifetimeSeconds = number_opt(opts, 'maxLifetimeSeconds', 0),
    maxQueue = number_opt(opts, 'maxQueue', math.huge),
    totalCount = 0, idleCount = 0, waitingCount = 0,
    clients = {}, idle = {}, waiters = {}, whead = 1, wtail = 0,
  }, Pool)
  if self.max < 1 then error('pg.pool: max must be at least 1', 2) end
  return self
end

------------------------------------------------------------------------------
-- Taking and giving back connections.

local function expired(self, c)
  local life = self.maxLifetimeSeconds
  return life > 0 and uv.now() - c.born >= life * 1000
end

local function shift_waiter(self)
  while self.whead <= self.wtail do
    local h = self.whead
    local w = self.waiters[h]
    self.waiters[h] = nil
    self.whead = h + 1
    if not w.gone then
      self.waitingCount = self.waitingCount - 1
      if w.timer then
        w.timer:stop()
        w.timer:close()
      end
      return w
    end
  end
  self.whead, self.wtail = 1, 0
end

local function unidle(self, c)
  local idle = self.idle
  for i = #idle, 1, -1 do
    if idle[i] == c then
      table.remove(idle, i)
      self.idleCount = self.idleCount - 1
      break
    end
  end
  if c.idle_timer then c.idle_timer:stop() end
end

local grow

-- pump(): connections for waiters while there is room.
local function pump(self)
  while self.whead <= self.wtail and self.totalCount < self.max do
    local w = shift_waiter(self)
    if not w then break end
    grow(self, w.cb)
  end
end

-- A client of this pool ended (closed, lost, destroyed).
local function gone(self, c)
  if not self.clients[c] then return end
  self.clients[c] = nil
  self.totalCount = self.totalCount - 1
  unidle(self, c)
  if c.idle_timer then
    c.idle_timer:close()
    c.idle_timer = nil
  end
  if not self.ended then pump(self) end
end

function grow(self, cb)
  self.totalCount = self.totalCount + 1
  local placeholder = {}
  self.clients[placeholder] = true
  Client.new(self.info, self.opts, function(err, c)
    self.clients[placeholder] = nil
    if err then
      self.totalCount = self.totalCount - 1
      cb(err)
      if not self.ended then pump(self) end
      return
    end
    if self.ended then
      self.totalCount = self.totalCount - 1
      c:close()
      return cb(pg_error(nil, '08003', 'the pool was closed'))
    end
    self.clients[c] = true
    c.pool, c.born = self, uv.now()
    c:on('end', function() gone(self, c) end)
    c:on('error', function(e)
      if self:listenerCount('error') > 0 then self:emit('error', e, c) end
    end)
    self:emit('connect', c)
    cb(nil, c)
  end)
end

-- acquire(cb): cb(err, client) with a client for this caller alone.
function Pool:_acquire(cb)
  if self.ended then
    return later(cb, pg_error(nil, '08003',
      'Cannot use a pool after calling end on the pool'))
  end
  local idle = self.idle
  while #idle > 0 do
    local c = idle[#idle]
    idle[#idle] = nil
    self.idleCount = self.idleCount - 1
    if c.idle_timer then c.idle_timer:stop() end
    if c:ok() and not expired(self, c) then
      c:_ref(true)
      return cb(nil, c)
    end
    c:close()
  end
  if self.totalCount < self.max then return grow(self, cb) end
  if self.waitingCount >= self.maxQueue then
    return later(cb, pg_error(nil, '53300', 'the pool\'s queue is full ('
      .. self.maxQueue .. ' waiting)'))
  end
  local w = {cb = cb}
  local tail = self.wtail + 1
  self.waiters[tail] = w
  self.wtail = tail
  self.waitingCount = self.waitingCount + 1
  local ms = self.connectionTimeoutMillis
  if ms > 0 then
    local t = uv.new_timer()
    w.timer = t
    t:start(ms, 0, function()
      t:close()
      w.timer, w.gone = nil, true
      self.waitingCount = self.waitingCount - 1
      cb(pg_error(nil, '08001', 'timeout exceeded when trying to connect'))
    end)
  end
end

-- release(c[, destroy]): c back to the pool (closed if destroy, broken,
-- inside a transaction or too old).
function Pool:_release(c, destroy)
  if not self.clients[c] then return end
  if destroy or self.ended or not c:ok() or c:busy()
      or c:tx_status() ~= 'idle' or expired(self, c) then
    c:close() -- 'end': gone() counts it out and makes room
    return
  end
  local w = shift_waiter(self)
  if w then return w.cb(nil, c) end
  c:_ref(false)
  local idle = self.idle
  idle[#idle + 1] = c
  self.idleCount = self.idleCount + 1
  local ms = self.idleTimeoutMillis
  if ms > 0 then
    local t = c.idle_timer
    if not t then
      t = uv.new_timer()
      t:unref()
      c.idle_timer = t
    end
    t:start(ms, 0, function()
      unidle(self, c)
      c:close()
    end)
  end
end

------------------------------------------------------------------------------
-- The API.

local function release_method(c, destroy)
  local p = c.pool
  if p then p:_release(c, destroy) end
end

-- connect([cb]) -> client (client:release([destroy]) gives it back), or
-- nil and err.
function Pool:connect(cb)
  local function start(done)
    self:_acquire(function(err, c)
      if c then c.release = release_method end
      done(err, c)
    end)
  end
  if cb ~= nil then
    if type(cb) ~= 'function' then
      error('pool:connect: the callback must be a function', 2)
    end
    return start(cb)
  end
  return Q.wait('pool:connect', start)
end

function Pool:_query(q, cb)
  self:_acquire(function(err, c)
    if err then return cb(err) end
    q.cb = function(qerr, res)
      self:_release(c)
      cb(qerr, res)
    end
    c:_submit(q)
  end)
end

-- query(sql, ...) -> res, or nil and err (in a coroutine); with a
-- callback last, cb(err, res).
function Pool:query(sql, ...)
  local q, cb = Q.make('pool:query', sql, ...)
  if cb then return self:_query(q, cb) end
  return Q.wait('pool:query', function(done) self:_query(q, done) end)
end

-- copyFrom(sql, data[, cb]), copyTo(sql[, cb]): as the client's
-- (lua/pg.lua), on a connection of the pool.
function Pool:copyFrom(sql, data, cb)
  local q
  q, cb = Q.copy('pool:copyFrom', sql, data, cb)
  if cb then return self:_query(q, cb) end
  return Q.wait('pool:copyFrom', function(done) self:_query(q, done) end)
end
Pool.copyTo = Pool.query

local function pack(...) return {n = select('#', ...), ...} end

-- transaction(fn) -> fn's results, or nil and err. fn(client) runs between
-- BEGIN and COMMIT on one connection; if it raises, or a statement in it
-- failed, the transaction is rolled back.
function Pool:transaction(fn)
  if type(fn) ~= 'function' then
    error('pool:transaction: expected a function', 2)
  end
  local c, err = self:connect()
  if not c then return nil, err end
  local _, berr = c:query('BEGIN')
  if berr then
    c:release(true)
    return nil, berr
  end
  c.last_error = nil
  local r = pack(pcall(fn, c))
  if r[1] then
    local res, cerr = c:query('COMMIT')
    if not res then
      c:release(true)
      return nil, cerr
    end
    if res.command == 'ROLLBACK' then
      local e = c.last_error or pg_error(nil, '25P02',
        'the transaction was rolled back')
      c:release()
      return nil, e
    end
    c:release()
    return unpack(r, 2, r.n)
  end
  local _, rerr = c:query('ROLLBACK')
  c:release(rerr ~= nil)
  local e = r[2]
  if type(e) ~= 'table' then
    e = pg_error(nil, nil, tostring(e))
    e.code = nil
  end
  return nil, e
end

------------------------------------------------------------------------------
-- LISTEN / NOTIFY.

local function quote_ident(s)
  return '"' .. s:gsub('"', '""') .. '"'
end

local function dispatch(self, msg)
  local fns = self.channels and self.channels[msg.channel]
  if not fns then return end
  for _, fn in ipairs({unpack(fns)}) do fn(msg) end
end

local listen_client

local function listen_again(self)
  if self.ended or self.lretry then return end
  local ms = self.lbackoff or 100
  self.lbackoff = math.min(ms * 2, 5000)
  local t = uv.new_timer()
  self.lretry = t
  t:start(ms, 0, function()
    t:close()
    self.lretry = nil
    listen_client(self)
  end)
end

function listen_client(self)
  if self.lclient or self.ended then return end
  local c
  c = Client.new(self.info, self.opts, function(err)
    if err then
      self.lclient = nil
      if self:listenerCount('error') > 0 then self:emit('error', err) end
      return listen_again(self)
    end
    self.lbackoff = nil
    local sql = {}
    for ch in pairs(self.channels) do
      sql[#sql + 1] = 'LISTEN ' .. quote_ident(ch)
    end
    if #sql == 0 then return self:emit('listening') end
    -- 'listening' once the server listens (a lost connection: 'end').
    c:_submit({text = table.concat(sql, '; '), n = 0, cb = function(qerr)
      if not qerr then self:emit('listening') end
    end})
  end)
  self.lclient = c
  c:on('notification', function(msg) dispatch(self, msg) end)
  c:on('end', function()
    if self.lclient == c then self.lclient = nil end
    listen_again(self)
  end)
end

-- listen(channel, fn): fn(msg) for every notification on channel, msg as
-- Node pg's {channel, payload, processId}.
function Pool:listen(channel, fn)
  if type(channel) ~= 'string' or type(fn) ~= 'function' then
    error('pool:listen: expected a channel name and a function', 2)
  end
  self.channels = self.channels or {}
  local fns = self.channels[channel]
  if fns then
    fns[#fns + 1] = fn
    return
  end
  self.channels[channel] = {fn}
  local c = self.lclient
  if c and c.state == 'ready' then
    c:_submit({text = 'LISTEN ' .. quote_ident(channel), n = 0,
      cb = function() end})
  elseif not c then
    listen_client(self)
  end
end

-- unlisten(channel[, fn]): stops calling fn (every function if none).
function Pool:unlisten(channel, fn)
  local fns = self.channels and self.channels[channel]
  if not fns then return end
  if fn then
    for i = #fns, 1, -1 do
      if fns[i] == fn then table.remove(fns, i) end
    end
    if #fns > 0 then return end
  end
  self.channels[channel] = nil
  local c = self.lclient
  if c and c.state == 'ready' then
    c:_submit({text = 'UNLISTEN ' .. quote_ident(channel), n = 0,
      cb = function() end})
  end
end

-- notify(channel, payload[, cb]) -> res, or nil and err.
function Pool:notify(channel, payload, cb)
  local sql = 'SELECT pg_notify($1, $2)'
  payload = payload == nil and '' or payload
  if cb then return self:query(sql, channel, payload, cb) end
  return self:query(sql, channel, payload)
end

-- close([cb]): no more queries; idle connections close now, the others
-- when released; waiters fail. Node's pool:end().
function Pool:close(cb)
  if not self.ended then
    self.ended = true
    local idle = self.idle
    self.idle = {}
    self.idleCount = 0
    for i = 1, #idle do idle[i]:close() end
    local err = pg_error(nil, '08003', 'the pool was closed')
    while true do
      local w = shift_waiter(self)
      if not w then break end
      w.cb(err)
    end
    if self.lretry then
      self.lretry:stop()
      self.lretry:close()
      self.lretry = nil
    end
    if self.lclient then
      local c = self.lclient
      self.lclient = nil
      c:close()
    end
  end
  if cb then later(cb) end
end
Pool['end'] = Pool.close

return Pool
