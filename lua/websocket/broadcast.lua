-- websocket.broadcast: channels of WebSocket clients. ws:subscribe(ch)
-- and ws:unsubscribe(ch) keep this process's subscribers; broadcast(ch,
-- data[, options]) reaches every client subscribed to ch on every worker
-- (lua/cluster/broadcast.lua carries it to each once, a sender's in
-- order), where one frame is built for all of them and written to each.

local W = require('_ws')
local cluster_broadcast = require('cluster.broadcast')

local pairs, next, tostring, type = pairs, next, tostring, type

local M = {}

local channels = {}                        -- ch -> {ws = true}
local subs = setmetatable({}, {__mode = 'k'}) -- ws -> {ch = true}

function M.subscribe(ws, ch)
  if not ws._c then
    error('subscribe: only a server\'s WebSocket has channels', 3)
  end
  ch = tostring(ch)
  local set = channels[ch]
  if not set then
    set = {}
    channels[ch] = set
  end
  set[ws] = true
  local mine = subs[ws]
  if not mine then
    mine = {}
    subs[ws] = mine
  end
  mine[ch] = true
end

function M.unsubscribe(ws, ch)
  ch = tostring(ch)
  local set = channels[ch]
  if set then
    set[ws] = nil
    if next(set) == nil then channels[ch] = nil end
  end
  local mine = subs[ws]
  if mine then mine[ch] = nil end
end

-- forget(ws): a closed WebSocket leaves its channels.
function M.forget(ws)
  local mine = subs[ws]
  if not mine then return end
  for ch in pairs(mine) do M.unsubscribe(ws, ch) end
  subs[ws] = nil
end

-- deliver(ch, data, binary) -> how many clients it was written to.
function M.deliver(ch, data, binary)
  local set = channels[ch]
  if not set then return 0 end
  local frame = W.frame(binary and W.BINARY or W.TEXT, data, false)
  local n = 0
  for ws in pairs(set) do
    if ws:_sendRaw(frame) ~= nil then n = n + 1 end
  end
  return n
end

-- broadcast(ch, data[, options]): options.binary (default: text).
function M.broadcast(ch, data, options)
  if type(data) ~= 'string' then data = tostring(data) end
  return cluster_broadcast.send({kind = 'ws', ch = tostring(ch),
    data = data, bin = (options and options.binary) and true or false})
end

-- subscribers(ch) -> how many of this process's clients are on ch.
function M.subscribers(ch)
  local n = 0
  for _ in pairs(channels[tostring(ch)] or {}) do n = n + 1 end
  return n
end

return M
