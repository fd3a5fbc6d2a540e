-- cluster.utils: the IPC channel between a primary and a worker.
--
-- Framing: one message a line. A user message is its JSON text; an
-- internal (control) message is '!' followed by its JSON text, so the two
-- never mix: no JSON text starts with '!'. A message that carries a handle
-- (a listening socket, or a connection under round robin) is written with
-- write2 and says so with h = true; the reader takes the next pending handle
-- when it reaches that line.
--
-- Writes are batched: messages sent during one callback leave in one write
-- after it (on the next tick), in order. Internal requests that expect an
-- answer carry seq; the answer carries ack = seq.

local uv = require('uv')
local cjson = require('cjson')

local utils = {}

local find, sub, concat, type, pairs, next = string.find, string.sub,
  table.concat, type, pairs, next
local huge = math.huge

-- Encoding is runtime/ipc.c's (numbers round-trip exactly, mixed tables
-- are refused); decoding is cjson's.
local ipc_encode = require('_ipc').encode
local json = cjson.new()
json.decode_max_depth(1000)
local decode = json.decode
local null = cjson.null

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

-- encode(msg[, prefix]) -> prefix .. json .. '\n'; raises a clear error,
-- naming what and where, for what cannot be sent.
function utils.encode(msg, prefix)
  local line = ipc_encode(msg, prefix)
  if line then return line end
  if msg == nil then error('cannot send nil', 0) end
  check(msg, 'msg', {})
  error('cannot send this value', 0)
end

utils.decode = decode

------------------------------------------------------------------------------
-- Channel.

local Channel = {}
Channel.__index = Channel

-- Channel.new(pipe, handlers) wraps an open IPC luv pipe. handlers:
--   message(msg)            a user message
--   internal(msg, handle)   a control message (handle: a luv tcp or nil)
--   close()                 the channel closed (EOF, error or close())
--   error(err)              a line that is not JSON, or a write error
function utils.Channel(pipe, handlers)
  local self = setmetatable({pipe = pipe, h = handlers, queue = {},
    qn = 0, cbs = nil, connected = true, seq = 0, pending = {}}, Channel)
  self._flush = function() self:flush() end
  pipe:read_start(function(err, data)
    if err then
      self:_closed(err)
    elseif data then
      self:_data(data)
    else
      self:_closed()
    end
  end)
  return self
end

function Channel:_line(line)
  local c = sub(line, 1, 1)
  if c == '!' then
    local ok, msg = pcall(decode, sub(line, 2))
    if not ok or type(msg) ~= 'table' then
      return self.h.error('bad control message on the IPC channel: ' ..
        sub(line, 1, 80))
    end
    local handle
    if msg.h then
      handle = self:_take_handle()
    end
    if msg.ack and self.pending[msg.ack] then
      local cb = self.pending[msg.ack]
      self.pending[msg.ack] = nil
      return cb(msg, handle)
    end
    return self.h.internal(msg, handle)
  end
  local ok, msg = pcall(decode, line)
  if not ok then
    return self.h.error('bad message on the IPC channel (not JSON): ' ..
      sub(line, 1, 80))
  end
  return self.h.message(msg)
end

function Channel:_take_handle()
  local pipe = self.pipe
  if pipe:pending_count() == 0 then return nil end
  local kind = pipe:pending_type()
  local handle
  if kind == 'tcp' then handle = uv.new_tcp()
  elseif kind == 'pipe' then handle = uv.new_pipe(false)
  else return nil end
  if not pipe:accept(handle) then
    handle:close()
    return nil
  end
  return handle
end

-- Splits data into lines. The position is kept on self so that when a
-- handler raises, the lines after it still run (on the next tick).
function Channel:_data(data)
  local partial = self.partial
  if partial then
    local nl = find(data, '\n', 1, true)
    if not nl then
      partial[#partial + 1] = data
      return
    end
    partial[#partial + 1] = sub(data, 1, nl - 1)
    self.partial = nil
    self.buf, self.pos = data, nl + 1
    self:_line(concat(partial))
  else
    self.buf, self.pos = data, 1
  end
  self:_drain()
end

function Channel:_drain()
  local data = self.buf
  while data and self.connected do
    local pos = self.pos
    local nl = find(data, '\n', pos, true)
    if not nl then
      if pos <= #data then self.partial = {sub(data, pos)} end
      break
    end
    self.pos = nl + 1
    local ok, err = pcall(self._line, self, sub(data, pos, nl - 1))
    if not ok then
      -- Let the error policy see it; the rest of the buffer follows.
      process.nextTick(function() self:_drain() end)
      error(err, 0)
    end
  end
  if self.buf == data then self.buf = nil end
end

function Channel:_closed(err)
  if not self.connected then return end
  self.connected = false
  local pipe = self.pipe
  if not pipe:is_closing() then pipe:close() end
  -- Callbacks waiting on writes or answers learn the channel is gone.
  local cbs = self.cbs
  self.cbs = nil
  if cbs then
    for i = 1, #cbs do cbs[i]('channel closed') end
  end
  for seq, cb in pairs(self.pending) do
    self.pending[seq] = nil
  end
  self.h.close(err)
end

-- write(line[, cb]): queues one framed line; flushed after this callback.
function Channel:write(line, cb)
  if not self.connected or self.closing then
    return false, 'channel closed'
  end
  local n = self.qn + 1
  self.qn = n
  self.queue[n] = line
  if cb then
    local cbs = self.cbs
    if not cbs then cbs = {} self.cbs = cbs end
    cbs[#cbs + 1] = cb
  end
  if n == 1 then process.nextTick(self._flush) end
  return true
end

function Channel:flush()
  local n = self.qn
  if n == 0 or not self.connected then return end
  local data = n == 1 and self.queue[1] or concat(self.queue, '', 1, n)
  self.queue, self.qn = {}, 0
  local cbs = self.cbs
  self.cbs = nil
  local ok, err = self.pipe:write(data, cbs and function(e)
    for i = 1, #cbs do cbs[i](e) end
  end or nil)
  if not ok and cbs then
    for i = 1, #cbs do cbs[i](err) end
  end
end

-- send(msg[, cb]) a user message; raises if msg cannot be encoded. cb(err)
-- runs once written (err nil) or when the channel is closed.
function Channel:send(msg, cb)
  local line = utils.encode(msg)
  local ok, err = self:write(line, cb)
  if not ok and cb then process.nextTick(cb, err) end
  return ok, err
end

-- internal(msg[, handle][, reply][, written]): a control message.
-- reply(answer, handle) runs when the other side answers with ack = msg.seq;
-- written(err) once a passed handle has left (the caller may close it).
function Channel:internal(msg, handle, reply, written)
  if reply then
    self.seq = self.seq + 1
    msg.seq = self.seq
    self.pending[self.seq] = reply
  end
  if handle then
    msg.h = true
    if not self.connected or self.closing then
      if written then written('channel closed') end
      return false
    end
    -- Everything queued before goes first, then the line with the handle.
    self:flush()
    local ok, err = self.pipe:write2(utils.encode(msg, '!'), handle,
      written)
    if not ok and written then written(err) end
    return ok
  end
  return self:write(utils.encode(msg, '!'))
end

function Channel:close()
  if not self.connected or self.closing then return end
  self:flush()
  self.closing = true
  local pipe = self.pipe
  -- Close once what is queued has left.
  pipe:shutdown(function() self:_closed() end)
  pipe:read_stop()
end

utils.null = null
return utils
