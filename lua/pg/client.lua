-- pg.client: one connection to PostgreSQL, driven by the event loop.
--
-- libpq (runtime/pg/conn.c) does the protocol; a uv poll on its socket
-- says when to call it: while connecting, as PQconnectPoll asks; then
-- always readable (results, notifications, the server going away) and
-- writable while a query is not yet all sent. Queries queue and run one at
-- a time, as Node pg's Client does. A query with parameters runs as a
-- statement prepared once per connection (named after its SQL text); one
-- without runs as a simple query (several statements allowed: a list of
-- results, as Node pg's).
--
-- Everything here is callback-shaped (cb(err, res)); lua/pg.lua gives the
-- sync-style form inside a coroutine.

local uv = require('uv')
local EventEmitter = require('events')
local errors = require('internal.errors')
local types = require('pg.types')
local lpg = require('_pg')
local resolve = require('pg.resolve').resolve
local build_conninfo = require('pg.resolve').build

local type, tostring, pairs, error, setmetatable, select, pcall =
  type, tostring, pairs, error, setmetatable, select, pcall
local concat = table.concat
local convert = types.convert

local Client = EventEmitter:extend()

-- Statements kept prepared per connection; past this, queries with
-- parameters run unnamed (parsed every time).
local MAX_PREPARED = 200
-- A connection is given this long to connect unless told otherwise (ms).
local CONNECT_TIMEOUT = 30000

-- An Error with Node pg's fields (a failed statement: code is its
-- SQLSTATE; libpq's own errors: 08006, connection failure).
local function pg_error(fields, code, message)
  fields = fields or {}
  fields.name = fields.name or 'error'
  return errors.new(fields.code or code, fields.message or message, fields)
end
Client.error = pg_error

local function lost_error(msg)
  return pg_error(nil, '08006', 'Connection terminated unexpectedly' ..
    (msg and msg ~= '' and (': ' .. msg) or ''))
end

------------------------------------------------------------------------------
-- Connection strings.

-- Options that are not libpq's: the pool's and this client's.
local not_libpq = {max = true, min = true, idleTimeoutMillis = true,
  connectionTimeoutMillis = true, maxLifetimeSeconds = true,
  maxQueue = true, query_timeout = true, connectionString = true,
  url = true, allowExitOnIdle = true, maxUses = true}

-- conninfo(url_or_opts) -> libpq's connection string. A string is libpq's
-- (key=value or a postgres:// URL); a table gives connectionString (or
-- url), or libpq's keywords (Node's `database` as dbname).
function Client.conninfo(o)
  if o == nil then return os.getenv('DATABASE_URL') or '' end
  if type(o) == 'string' then return o end
  if type(o) ~= 'table' then
    error('pg: expected a connection string or an options table, got ' ..
      type(o), 3)
  end
  local s = o.connectionString or o.url
  if s then return s end
  local kw, any = {}, false
  for k, v in pairs(o) do
    if not not_libpq[k] and type(k) == 'string' then
      kw[k == 'database' and 'dbname' or k], any = v, true
    end
  end
  if not any then return os.getenv('DATABASE_URL') or '' end
  return build_conninfo(kw)
end

------------------------------------------------------------------------------
-- The poll.

local on_poll

-- watch(self, events[, fresh]): the poll (C's, on libpq's socket) waits
-- for events ('r', 'rw' or 'w').
local function watch(self, events, fresh)
  if self.events == events and not fresh then return end
  self.events = events
  local ok, err = self.conn:watch(events, self.on_poll, fresh)
  if ok == nil then self.events = nil end
  return ok, err
end

-- Stops and closes the connect timer, if one runs.
local function stop_timer(self)
  local t = self.timer
  if t then
    self.timer = nil
    t:stop()
    t:close()
  end
end

-- Closes the poll and the connection (C closes the poll first: libpq
-- closes the socket).
local function teardown(self)
  stop_timer(self)
  local conn = self.conn
  if conn then
    self.conn = nil
    conn:finish()
  end
end

------------------------------------------------------------------------------
-- Connecting.

local function connected(self, err)
  local cb = self.connect_cb
  self.connect_cb = nil
  if err then
    teardown(self)
    self.state = 'closed'
  else
    self.state = 'ready'
    self.processID = self.conn:pid()
    self.serverVersion = self.conn:server_version()
    watch(self, 'r')
  end
  if cb then cb(err, self) end
  if not err then self:_next() end
end

local function connect_step(self)
  local st, msg = self.conn:connect_poll()
  if st == 'ok' then
    stop_timer(self)
    return connected(self)
  end
  if not st then
    return connected(self, pg_error(nil, '08001', msg))
  end
  -- A new socket may have the number of the old one, closed meanwhile:
  -- the poll starts afresh each step.
  local ok, err = watch(self, st, true)
  if ok == nil then connected(self, pg_error(nil, '08001', err)) end
end

-- new(info, opts) -> a Client connecting; cb(err, client) once connected
-- or failed (never before new returns). The host names in info are looked
-- up first without blocking (pg/resolve.lua); the connect timeout counts
-- from here.
function Client.new(info, opts, cb)
  local self = setmetatable({state = 'connecting', queue = {}, qhead = 1,
    qtail = 0, stmts = {}, nstmts = 0, seq = 0}, Client)
  self.on_poll = function(events) on_poll(self, events) end
  self.connect_cb = cb
  self.query_timeout = opts and opts.query_timeout
  local ms = opts and (opts.connectionTimeoutMillis or opts.connect_timeout_ms)
  if not ms or ms <= 0 then ms = CONNECT_TIMEOUT end
  local t = uv.new_timer()
  self.timer = t
  t:start(ms, 0, function()
    if self.state == 'connecting' then
      connected(self, pg_error(nil, '08001', 'timeout expired after ' ..
        ms .. ' ms while connecting'))
    end
  end)
  local sync = true
  resolve(info, function(resolved, msg)
    if self.state ~= 'connecting' then return end
    local conn, err
    if resolved then conn, err = lpg.start(resolved) else err = msg end
    if conn then
      self.conn = conn
      -- libpq asks first to wait for the socket to be writable.
      return watch(self, 'w')
    end
    if not sync then return connected(self, pg_error(nil, '08001', err)) end
    -- Failed at once: told on the next turn of the loop, after new returns.
    local e = uv.new_timer()
    e:start(0, 0, function()
      e:close()
      if self.state == 'connecting' then
        connected(self, pg_error(nil, '08001', err))
      end
    end)
  end)
  sync = false
  return self
end

------------------------------------------------------------------------------
-- Losing the connection.

local function fail_all(self, err)
  local q = self.active
  self.active = nil
  local queue = self.queue
  local pending = {}
  if q then pending[1] = q end
  for i = self.qhead, self.qtail do
    pending[#pending + 1] = queue[i]
    queue[i] = nil
  end
  self.qhead, self.qtail = 1, 0
  for i = 1, #pending do
    local p = pending[i]
    if p.timer then
      p.timer:stop()
      p.timer:close()
      p.timer = nil
    end
    p.cb(err)
  end
end

-- lost(self, msg): the connection is gone (or unusable): closed, and every
-- query still to answer fails.
local function lost(self, msg)
  if self.state == 'closed' then return end
  if self.state == 'connecting' then
    return connected(self, pg_error(nil, '08001', msg))
  end
  self.state = 'closed'
  teardown(self)
  local err = lost_error(msg)
  fail_all(self, err)
  if self:listenerCount('error') > 0 then self:emit('error', err) end
  self:emit('end')
end
Client._lost = lost

------------------------------------------------------------------------------
-- Queries.

local function send(self, q)
  local conn = self.conn
  local ok, msg
  if q.n == 0 and not q.name then
    ok, msg = conn:send(q.text)
  else
    local name = self.stmts[q.text]
    if name then
      ok, msg = conn:send_prepared(name, q.params, q.n)
    elseif self.nstmts < MAX_PREPARED then
      self.seq = self.seq + 1
      name = 'lc' .. self.seq
      q.preparing = name
      ok, msg = conn:prepare(name, q.text)
    else
      ok, msg = conn:send(q.text, q.params, q.n)
    end
  end
  if not ok then return lost(self, msg) end
  local done, ferr = conn:flush()
  if done == nil then return lost(self, ferr) end
  if not done then watch(self, 'rw') end
end

local function on_timeout(self, q)
  q.timer:close()
  q.timer = nil
  if self.active ~= q then return end
  q.timed_out = true
  local conn = self.conn
  if conn then conn:cancel() end
  -- The server answers a cancel within moments; if not, the connection
  -- goes (the query fails with it).
  local t = uv.new_timer()
  q.timer = t
  t:start(2000 + q.timeout, 0, function()
    t:close()
    q.timer = nil
    if self.active == q then
      lost(self, 'no answer to the cancel of a query that timed out')
    end
  end)
end

-- _next(): sends the first queued query if none runs.
function Client:_next()
  if self.active or self.state ~= 'ready' then return end
  local h = self.qhead
  if h > self.qtail then return end
  local q = self.queue[h]
  self.queue[h] = nil
  self.qhead = h + 1
  if self.qhead > self.qtail then self.qhead, self.qtail = 1, 0 end
  self.active = q
  local ms = q.timeout
  if ms and ms > 0 then
    local t = uv.new_timer()
    q.timer = t
    t:start(ms, 0, function() on_timeout(self, q) end)
  end
  send(self, q)
  if self.active == q and not self.processing then self:_process() end
end

-- Notices the server sent (RAISE NOTICE, warnings): 'notice' events,
-- before the result of the statement that raised them.
local function emit_notices(self)
  local list = self.conn:notices()
  if list then
    for i = 1, #list do self:emit('notice', list[i]) end
  end
end

-- The active query's results have all come: its callback, then the next.
local function complete(self, q)
  if self.conn then emit_notices(self) end
  self.active = nil
  if q.timer then
    q.timer:stop()
    q.timer:close()
    q.timer = nil
  end
  local err, res = q.err, q.res
  if err and not self.last_error then self.last_error = err end
  if q.timed_out then
    if err and err.code == '57014' then
      err.message = 'query timeout (' .. q.timeout .. ' ms): ' .. err.message
      err.timeout = true
    else
      -- Done before the cancel landed: the cancel could yet hit the next
      -- query, so this connection is not used again.
      self.doomed = true
    end
  end
  if err and err.code == '26000' then
    -- A prepared statement vanished (DEALLOCATE, DISCARD ALL).
    self.stmts, self.nstmts = {}, 0
  end
  if self.doomed and self.state == 'ready' then
    self.state = 'closed'
    teardown(self)
    fail_all(self, lost_error('the connection was closed'))
    self:emit('end')
  elseif self.conn and not self.conn:ok() then
    lost(self, err and err.message)
  else
    self:_next()
  end
  if err then
    q.cb(err)
  elseif q.multi then
    -- Node pg's array of results, one a statement; the last one's fields
    -- (rows, rowCount, command, fields) are on the list too.
    local list = {}
    for i = 1, #q.multi do list[i] = convert(q.multi[i]) end
    for k, v in pairs(list[#list]) do list[k] = v end
    q.cb(nil, list)
  else
    res = convert(res or {rows = {}, fields = {}})
    -- COPY TO STDOUT: its rows, as the server wrote them.
    if q.copied then res.data = concat(q.copied) end
    q.cb(nil, res)
  end
end

-- A prepare ended: cache it and run the statement, or fail the query.
local function prepared(self, q)
  local name = q.preparing
  q.preparing = nil
  if q.err then return complete(self, q) end
  self.stmts[q.text] = name
  self.nstmts = self.nstmts + 1
  q.res = nil
  local ok, msg = self.conn:send_prepared(name, q.params, q.n)
  if not ok then return lost(self, msg) end
  local done, ferr = self.conn:flush()
  if done == nil then return lost(self, ferr) end
  if not done then watch(self, 'rw') end
end

-- COPY's data, while the statement waits for it: sends q.copy_data (a
-- list of strings) to a COPY FROM STDIN, or reads a COPY TO STDOUT's rows
-- into q.copied. true once done (the statement's result follows), false
-- to wait for the socket.
local function copy_step(self, q)
  local conn = self.conn
  if q.copying == 'out' then
    local rows = q.copied
    while true do
      local row, err = conn:get_copy()
      if row then
        rows[#rows + 1] = row
      elseif row == false then
        return false -- the poll waits for readable
      else
        q.copying = nil
        if err then lost(self, err) return false end
        return true
      end
    end
  end
  local data = q.copy_data
  if data == nil then
    -- query() of a COPY FROM STDIN: nothing to send; the server fails it
    -- (57014) and the connection stays usable.
    data, q.copy_fail = {}, 'COPY FROM STDIN needs its data: use ' ..
      'copyFrom(sql, data)'
  end
  while q.copy_i <= #data do
    local ok, err = conn:put_copy(data[q.copy_i])
    if ok == nil then lost(self, err) return false end
    if not ok then watch(self, 'rw') return false end
    q.copy_i = q.copy_i + 1
  end
  local ok, err = conn:put_copy_end(q.copy_fail)
  if ok == nil then lost(self, err) return false end
  if not ok then watch(self, 'rw') return false end
  q.copying = nil
  local done, ferr = conn:flush()
  if done == nil then lost(self, ferr) return false end
  if not done then watch(self, 'rw') end
  return true
end

-- _process(): takes what results libpq has parsed.
function Client:_process()
  self.processing = true
  while self.active and self.conn do
    local q = self.active
    if q.copying and not copy_step(self, q) then break end
    if self.active ~= q or not self.conn then break end
    local res, e = self.conn:result()
    if res == false and e == nil then break end -- busy
    if res == nil then
      if q.preparing then prepared(self, q) else complete(self, q) end
    elseif res then
      -- Several statements in one simple query: a result each.
      if q.res then
        q.multi = q.multi or {q.res}
        q.multi[#q.multi + 1] = res
      end
      q.res = res
    elseif e.copy then
      -- COPY FROM STDIN / TO STDOUT: its data goes or comes first.
      q.copying, q.copy_i = e.copy, 1
      if e.copy == 'out' then q.copied = q.copied or {} end
    else
      q.err = q.err or pg_error(e)
      if e.fatal then
        -- COPY BOTH: libpq would hand out the same state again; the
        -- connection goes (complete closes a doomed one).
        self.doomed = true
        q.preparing = nil
        complete(self, q)
      end
    end
  end
  self.processing = false
end

local function notify(self)
  local conn = self.conn
  local list = conn:notifies()
  if list then
    for i = 1, #list do self:emit('notification', list[i]) end
  end
  if self.conn then emit_notices(self) end
end

function on_poll(self, events)
  if not self.conn then return end
  -- 'e': the socket is in an error state (the poll stopped); libpq finds
  -- the cause.
  if self.state == 'connecting' then return connect_step(self) end
  if events == 'e' then
    self.events = nil
    local ok, msg = self.conn:consume()
    return lost(self, not ok and msg or 'socket error')
  end
  if events ~= 'r' then
    local done, ferr = self.conn:flush()
    if done == nil then return lost(self, ferr) end
    if done then watch(self, 'r') end
    -- A COPY FROM STDIN that waited for room goes on.
    local q = self.active
    if q and q.copying == 'in' and not self.processing then
      self:_process()
      if not self.conn then return end
    end
  end
  if events ~= 'w' then
    local ok, msg = self.conn:consume()
    if not ok then return lost(self, msg) end
    if self.active and not self.processing then self:_process() end
    if self.conn then notify(self) end
    if self.conn and not self.conn:ok() then lost(self, self.conn:message()) end
  end
end

-- submit(q): q = {text, params, n, timeout, cb(err, res)}.
function Client:_submit(q)
  if self.state == 'closed' then
    local t = uv.new_timer()
    t:start(0, 0, function()
      t:close()
      q.cb(pg_error(nil, '08003', 'Client was closed and is not queryable'))
    end)
    return
  end
  if q.timeout == nil then q.timeout = self.query_timeout end
  local tail = self.qtail + 1
  self.queue[tail] = q
  self.qtail = tail
  self:_next()
end

-- Keeps the process alive (or not) while connected.
function Client:_ref(on)
  if self.conn then self.conn:ref(on) end
end

-- busy() -> whether a query runs or waits.
function Client:busy()
  return self.active ~= nil or self.qhead <= self.qtail
end

function Client:ok()
  return self.state == 'ready' and self.conn ~= nil and self.conn:ok()
    and not self.doomed
end

-- tx_status() -> 'idle' | 'active' | 'intrans' | 'inerror' | 'unknown'
function Client:tx_status()
  if not self.conn then return 'unknown' end
  return self.conn:tx_status()
end

-- close(): ends the connection; queries not yet answered fail.
function Client:close()
  if self.state == 'closed' then return end
  local connecting = self.state == 'connecting'
  self.state = 'closed'
  teardown(self)
  local err = pg_error(nil, '08003', 'Connection terminated')
  if connecting then
    local cb = self.connect_cb
    self.connect_cb = nil
    if cb then cb(err, self) end
  end
  fail_all(self, err)
  self:emit('end')
end
Client['end'] = Client.close

return Client
