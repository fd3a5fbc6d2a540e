-- cluster.child: the worker's side of cluster (Node's
-- lib/internal/cluster/child.js). Opens the IPC channel the primary passed
-- on fd 3, says online, asks the primary for listening sockets (for net
-- and http: _getServer), takes the connections it hands over, disconnects,
-- and exits when the primary goes away. The heartbeat that feeds the
-- primary's watchdog and stats runs from here too
-- (cluster/supervision/heartbeat.lua).

local ipc = require('_ipc')
local EventEmitter = require('events')
local Worker = require('cluster.worker')
local utils = require('cluster.utils')
local heartbeat = require('cluster.supervision.heartbeat')

local cluster = EventEmitter:new()

cluster.isWorker = true
cluster.isMaster = false
cluster.isPrimary = false
cluster.Worker = Worker
cluster.SCHED_NONE = 1
cluster.SCHED_RR = 2
cluster.SCHED_REUSEPORT = 3
cluster.worker = nil

local servers = {}   -- key -> {lst=, owner=}
local indexes = {}   -- address:port:type -> next index
local channel

-- The channel keeps the worker alive only while something waits on it: an
-- answer from the primary, or a 'message' or process 'disconnect' listener
-- (as Node's _forkChild refs its channel for 'message' and 'disconnect'
-- listeners: one waiting for the disconnect sees it).
-- A round-robin server has no handle of its own here: like Node's faux
-- handle, it holds the channel ref'd while it listens.
local waiting_replies, rr_servers = 0, 0
local function update_ref()
  if not channel or channel.closing then return end
  local w = cluster.worker
  if waiting_replies > 0 or rr_servers > 0
      or process:listenerCount('message') > 0
      or process:listenerCount('disconnect') > 0
      or (w and w:listenerCount('message') > 0) then
    channel:ref(true)
  else
    channel:ref(false)
  end
end

local function send(msg, reply)
  if not channel then return end
  if reply then
    waiting_replies = waiting_replies + 1
    update_ref()
    local inner = reply
    reply = function(...)
      waiting_replies = waiting_replies - 1
      update_ref()
      return inner(...)
    end
  end
  return channel:internal(msg, nil, reply)
end

-- _sendInternal(msg): a control message to the primary (cluster.broadcast).
function cluster._sendInternal(msg) return send(msg) end

-- broadcast(msg): msg to every worker's process 'message' (this one's
-- too), through the primary (lua/cluster/broadcast.lua).
function cluster.broadcast(msg)
  if msg == nil then error('cluster.broadcast: cannot send nil', 2) end
  return require('cluster.broadcast').send({kind = 'msg', msg = msg})
end

------------------------------------------------------------------------------
-- Listening.

-- _getServer(opts, cb[, owner]): asks the primary for a listening socket.
-- opts = {address=, port=, addressType=, backlog=}; for a Unix socket,
-- address is its path, port and addressType -1 (as Node's), with
-- readableAll, writableAll. cb(err, lst) where lst is {handle = luv tcp
-- (or pipe) listening socket | nil, address = {address=, port=,
-- addressType=}, close = function()}. handle is the socket to accept from:
-- shared by every worker (SCHED_NONE), or this worker's own SO_REUSEPORT
-- socket, which the primary keeps for its replacement (SCHED_REUSEPORT);
-- none under round robin. The caller sets lst.onconnection(tcp) to receive
-- the connections the primary accepted (every one under round robin, those
-- a gone worker's SO_REUSEPORT socket queued otherwise); a server without
-- it receives none. owner (the server) is closed by worker:disconnect()
-- through owner:close.
function cluster._getServer(opts, cb, owner)
  local ikey = ('%s:%s:%s'):format(tostring(opts.address), opts.port,
    opts.addressType or 4)
  local index = indexes[ikey] or 0
  indexes[ikey] = index + 1
  local msg = {act = 'queryServer', address = opts.address,
    port = opts.port, addressType = opts.addressType or 4,
    backlog = opts.backlog, index = index,
    readableAll = opts.readableAll, writableAll = opts.writableAll}
  send(msg, function(reply, handle)
    if reply.errno then
      if handle then handle:close() end
      -- The primary failed to bind: 'bind EADDRINUSE 127.0.0.1:8000', as
      -- Node's listenInCluster words it (a path has no port).
      local where = opts.port and opts.port > 0
        and ('%s:%d'):format(opts.address or 'null', opts.port)
        or tostring(opts.address)
      return cb(utils.error(reply.errno, ('bind %s %s'):format(reply.errno,
        where), {errno = reply.errno, syscall = 'bind',
          address = opts.address, port = opts.port}))
    end
    local key = reply.key
    local lst = {
      handle = handle,
      address = {address = opts.address or '::', port = reply.port,
        addressType = opts.addressType or 4},
    }
    local rr = not handle
    local entry = {lst = lst, owner = owner}
    servers[key] = entry
    if rr then
      rr_servers = rr_servers + 1
      update_ref()
    end
    function lst.close()
      if servers[key] ~= entry then return end
      servers[key] = nil
      if rr then
        rr_servers = rr_servers - 1
        update_ref()
      end
      send({act = 'close', key = key})
    end
    cb(nil, lst)
    if servers[key] == entry then
      cluster.worker.state = 'listening'
      send({act = 'listening', address = opts.address, port = reply.port,
        addressType = opts.addressType or 4})
    end
  end)
end

-- A connection handed over by the primary. The answer says whether this
-- worker took it: the primary keeps its own copy until then, and gives one
-- that arrives after its server closed here (a reload or shutdown in
-- progress) to another worker, so none is dropped. The answer goes out
-- before the connection is read from (writes leave before the loop polls),
-- so one the primary hands on was never touched here.
local function onconnection(msg, handle)
  local entry = servers[msg.key]
  local taken = handle ~= nil and entry ~= nil and
    entry.lst.onconnection ~= nil
  if msg.seq then send({ack = msg.seq, accepted = taken}) end
  if taken then
    entry.lst.onconnection(handle)
  elseif handle then
    handle:close()
  end
end

------------------------------------------------------------------------------
-- Disconnecting.

-- Closes every server; when all are closed, closes the channel (the primary
-- initiated) or first tells the primary (the worker initiated).
local function disconnect(worker, primaryInitiated)
  worker.exitedAfterDisconnect = true
  local waiting = 1
  local function check()
    waiting = waiting - 1
    if waiting == 0 then
      if primaryInitiated then
        process.disconnect()
      else
        send({act = 'exitedAfterDisconnect'}, function()
          process.disconnect()
        end)
      end
    end
  end
  local list = {}
  for _, entry in pairs(servers) do list[#list + 1] = entry end
  for _, entry in ipairs(list) do
    waiting = waiting + 1
    local owner = entry.owner
    if owner and owner._drain then
      -- Stop accepting; requests in flight finish, each keep-alive
      -- connection closes after its next response (Connection: close).
      owner:_drain(check)
    elseif owner and owner.close then
      owner:close(check)
    else
      if entry.lst.handle and not entry.lst.handle:is_closing() then
        entry.lst.handle:close()
      end
      check()
    end
    -- The owner's close normally calls lst.close; make sure it happened.
    entry.lst.close()
  end
  check()
end

function Worker:disconnect()
  if self.state ~= 'disconnecting' and self.state ~= 'destroying' then
    self.state = 'disconnecting'
    disconnect(self, false)
  end
  return self
end

-- kill()/destroy() in a worker: leave at once, telling the primary first.
function Worker:destroy()
  if self.state == 'destroying' then return end
  self.exitedAfterDisconnect = true
  if not self:isConnected() then
    process.exit(0)
  else
    self.state = 'destroying'
    send({act = 'exitedAfterDisconnect'}, function() process.disconnect() end)
    process:once('disconnect', function() process.exit(0) end)
  end
end
Worker.kill = Worker.destroy

------------------------------------------------------------------------------
-- Set-up: runs once, when the runtime starts a worker.

function cluster._setupWorker(id, fd)
  ipc.cloexec(fd)
  local worker = Worker.new({id = id, process = process, state = 'online'})
  cluster.worker = worker
  -- From now on net and http servers listen through the primary.
  require('internal.listen').broker = cluster._getServer

  channel = utils.Channel(fd, {
    message = function(msg)
      process:emit('message', msg)
      worker:emit('message', msg)
    end,
    internal = function(msg, handle)
      if msg.act == 'newconn' then onconnection(msg, handle)
      elseif msg.act == 'broadcast' then
        require('cluster.broadcast').receive(msg)
      elseif msg.act == 'disconnect' then
        -- From a reload or shutdown: leave once the servers are done.
        if msg.exit then worker._exitOnDisconnect = true end
        disconnect(worker, true)
      elseif handle then handle:close() end
    end,
    close = function()
      process.connected = false
      process:emit('disconnect')
      worker:emit('disconnect')
      if not worker.exitedAfterDisconnect or worker._exitOnDisconnect then
        -- The primary is gone (or closed the channel): leave at once.
        process.exit(0)
      end
    end,
    error = function(e)
      io.stderr:write('luacluster worker ', id, ': ', e, '\n')
    end,
  })
  worker._channel = channel
  -- The channel does not keep a worker alive by itself, as in Node: a
  -- worker whose script has nothing left to do exits.
  local function on_listeners(name)
    if name == 'message' or name == 'disconnect' then
      process.nextTick(update_ref)
    end
  end
  process:on('newListener', on_listeners)
  process:on('removeListener', on_listeners)
  worker:on('newListener', on_listeners)
  worker:on('removeListener', on_listeners)
  update_ref()

  -- The process's 'error' events are the worker's, as Node's Worker
  -- forwards its process's (lib/internal/cluster/worker.js): with no
  -- listener on cluster.worker, the error is uncaught there.
  process:on('error', function(...) worker:emit('error', ...) end)

  process.connected = true
  -- process.send(msg[, cb]) / process:send(msg[, cb])
  rawset(process, 'send', function(a, b, c)
    if a == process then a, b = b, c end
    return worker:send(a, b)
  end)
  -- process.disconnect(): closes the channel to the primary.
  rawset(process, 'disconnect', function()
    channel:close()
  end)
  -- What the worker sent reaches the primary even if it exits right away.
  process:on('exit', function() channel:flush() end)
  send({act = 'online'})
  heartbeat.start(send)
end

EventEmitter.bindSelf(cluster)
EventEmitter.bindMethods(cluster, EventEmitter)
return cluster
