-- cluster.utils: what both roles share: the IPC channel between a primary
-- and a worker, the checks that name what in a message cannot be sent, and
-- the one maker of the errors lua/cluster hands to callbacks and events.
--
-- The channel itself is C (runtime/ipc.c): framed binary messages, user
-- and control messages kept apart by a flag, sockets passed along with
-- their frame, writes batched until the loop is about to poll. This side
-- adds seq/ack for control requests that expect an answer, and clear errors
-- for values that cannot be sent.
--
-- Error conventions, by layer (the project's rule, DESIGN.md "Conventions"):
--   * C bindings (_ipc, _tcp, _systemd, uv) raise on misuse (a wrong type,
--     a closed handle) and return nil, message, code on an operational
--     error (luv's rule). The Lua helpers that wrap them keep that shape:
--     the handles' socket helpers (cluster/handles/base.lua) return nil,
--     message, code; Channel:send returns false, message, code on a closed
--     channel.
--   * What lua/cluster hands to a user's callback or 'error' listener is a
--     Node Error: a table with Node's `code` and a `message`, printing as
--     its message (utils.error). The scheduling handles answer a worker's
--     listen through a callback too, so they pass such an error; the
--     primary sends its code and message over the channel and the worker
--     rebuilds a Node listen error from them (cluster/child.lua).
--   * Wrong arguments from a script raise at the call, naming the function
--     (setupPrimary's options, a value `send` cannot encode).
--   * ngx-compatible modules (lua/ngx, lua/shared.lua) keep ngx's shapes;
--     nothing here is one.

local uv = require('uv')
local cjson = require('cjson')

local utils = {}

local type, pairs, tostring = type, pairs, tostring
local huge = math.huge

local ipc = require('_ipc')
local tcp = require('_tcp')
local unix = require('_unix')
local null = cjson.null

------------------------------------------------------------------------------
-- Errors.

-- error(code, message[, fields]) -> a Node-style error: fields (or a new
-- table) with code and message, printing as message (the one factory,
-- lua/internal/errors.lua).
utils.error = require('internal.errors').new

------------------------------------------------------------------------------
-- Validation: cjson would quietly turn {1, 2, x = 3} into an object with
-- string keys, or raise a terse error for a function. Say where instead.

local function keyname(path, k)
  if type(k) == 'string' and k:match('^[%a_][%w_]*$') then
    return path .. '.' .. k
  end
  return path .. '[' .. (type(k) == 'string' and ('%q'):format(k)
    or tostring(k)) .. ']'
end

local function check(v, path, seen)
  local t = type(v)
  if t == 'string' or t == 'boolean' then return end
  if t == 'number' then
    if v ~= v or v == huge or v == -huge then
      error('cannot send ' .. tostring(v) .. ' at ' .. path, 0)
    end
    return
  end
  if t == 'table' then
    if seen[v] then error('cannot send a cycle at ' .. path, 0) end
    seen[v] = true
    local n = #v
    local count = 0
    local haskeys = false
    for k, x in pairs(v) do
      count = count + 1
      local tk = type(k)
      if tk == 'string' then
        haskeys = true
      elseif tk ~= 'number' or k < 1 or k > n or k % 1 ~= 0 then
        if tk == 'number' then
          error('cannot send a sparse array (key ' .. tostring(k) ..
            ') at ' .. path, 0)
        end
        error('cannot send a table with ' .. tk .. ' keys at ' .. path, 0)
      end
      check(x, keyname(path, k), seen)
    end
    if haskeys and n > 0 then
      error('cannot send a table with both array and hash parts at ' ..
        path .. ' (keys would be lost)', 0)
    end
    seen[v] = nil
    return
  end
  if v == null then return end
  error('cannot send a ' .. t .. ' at ' .. path, 0)
end

-- cannot_send(msg): raises the error that names what in msg cannot be
-- sent and where (the channel only said no).
function utils.cannot_send(msg)
  if msg == nil then error('cannot send nil', 0) end
  check(msg, 'msg', {})
  error('cannot send this value', 0)
end


------------------------------------------------------------------------------
-- Channel.

local Channel = {}
Channel.__index = Channel

local EV_MESSAGE, EV_CLOSE, EV_BATCH, EV_RESUME = ipc.EV_MESSAGE,
  ipc.EV_CLOSE, ipc.EV_BATCH, ipc.EV_RESUME

-- wrap_fd(fd) -> a luv handle owning the socket fd: a pipe for a Unix
-- socket, a tcp otherwise; or nil (fd closed) if it is not a socket.
local function wrap_fd(fd)
  if not fd then return nil end
  local t = unix.is_unix(fd) and uv.new_pipe(false) or uv.new_tcp()
  if not t:open(fd) then
    t:close()
    tcp.close(fd)
    return nil
  end
  return t
end
utils.wrap_fd = wrap_fd

-- utils.Channel(fd, handlers) opens the channel on fd (owned from now on).
-- handlers:
--   message(msg)            a user message
--   internal(msg, handle)   a control message (handle: a luv tcp or pipe,
--                           or nil)
--   close()                 the channel closed (EOF, error or close())
--   error(text)             garbage on the channel (it is closed after)
function utils.Channel(fd, handlers)
  local self = setmetatable({connected = true, closing = false, seq = 0,
    pending = {}, h = handlers}, Channel)
  local pending = self.pending
  local on_message, on_internal = handlers.message, handlers.internal

  local function deliver(kind, value, hfd)
    if kind == EV_MESSAGE then
      if hfd then tcp.close(hfd) end
      return on_message(value)
    end
    local ack = value.ack
    if ack and pending[ack] then
      local cb = pending[ack]
      pending[ack] = nil
      return cb(value, wrap_fd(hfd))
    end
    return on_internal(value, wrap_fd(hfd))
  end

  -- Messages come in batches of {kind, value, fd|false, ...}; the position
  -- is kept outside the loop so that after a handler raised, EV_RESUME
  -- goes on with the next message.
  local batch, bi, bn
  local function run_batch()
    while bi <= bn and not self.closing do
      local j = 3 * bi
      bi = bi + 1
      local hfd = batch[j]
      deliver(batch[j - 2], batch[j - 1], hfd or nil)
    end
    batch = nil
  end

  local c, err = ipc.channel(fd, function(kind, value, n)
    if kind == EV_BATCH then
      batch, bi, bn = value, 1, n
      return run_batch()
    elseif kind == EV_RESUME then
      if batch then return run_batch() end
    elseif kind == EV_CLOSE then
      return self:_closed()
    else
      return handlers.error(value)
    end
  end)
  assert(c, err)
  self.c = c
  return self
end

function Channel:_closed()
  if not self.connected then return end
  self.connected = false
  self.closing = true
  for seq in pairs(self.pending) do self.pending[seq] = nil end
  self.h.close()
end

-- send(msg[, cb]) a user message -> true, or false, message, code when the
-- channel is closed. Raises if msg cannot be encoded. cb(err) once written
-- (err: nil, or the C side's message).
function Channel:send(msg, cb)
  if self.closing then
    return false, 'channel closed', 'ERR_IPC_CHANNEL_CLOSED'
  end
  if not self.c:send(false, msg, nil, cb) then utils.cannot_send(msg) end
  return true
end

-- internal(msg[, handle][, reply]) -> true, or false, message, code when
-- the channel is closed: a control message. handle (an fd, or a luv tcp
-- or pipe) rides along; the caller may close its own copy at once. reply(answer, handle) runs when
-- the other side answers with ack = msg.seq (never, if the channel closes
-- first).
function Channel:internal(msg, handle, reply)
  if self.closing then
    return false, 'channel closed', 'ERR_IPC_CHANNEL_CLOSED'
  end
  if reply then
    self.seq = self.seq + 1
    msg.seq = self.seq
    self.pending[self.seq] = reply
  end
  if handle and type(handle) ~= 'number' then handle = handle:fileno() end
  return self.c:send(true, msg, handle)
end

-- flush(): writes what is queued now (before process.exit).
function Channel:flush()
  if not self.closing then self.c:flush() end
end

function Channel:ref(on)
  if not self.closing then self.c:ref(on) end
end

-- close(): closes once what is queued has been written.
function Channel:close()
  if self.closing then return end
  self.closing = true
  self.c:close()
end

return utils
