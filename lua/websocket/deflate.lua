-- websocket.deflate: negotiating permessage-deflate (RFC 7692), off by
-- default as in `ws`. The compression itself is C's (runtime/ws/deflate.c);
-- this side reads offers and answers, and says what each end agreed:
-- {bits = our window bits, ourReset = our no_context_takeover, peerReset
-- = the peer's, threshold = the smallest message compressed}.

local tonumber, type = tonumber, type

local M = {}

local DEFAULT_THRESHOLD = 1024

-- params(ext) -> a list of {name, params} from a Sec-WebSocket-Extensions
-- value, or nil when it does not parse.
local function parse(value)
  local list = {}
  for offer in (value or ''):gmatch('[^,]+') do
    local name, rest = offer:match('^%s*([%w_%-]+)%s*(.*)$')
    if not name then return nil end
    local params = {}
    for p in rest:gmatch(';%s*([^;]+)') do
      local k, v = p:match('^([%w_%-]+)%s*=%s*"?([^"%s]*)"?%s*$')
      if not k then
        k = p:match('^([%w_%-]+)%s*$')
        if not k then return nil end
        v = true
      end
      if params[k] ~= nil then return nil end
      params[k] = v
    end
    list[#list + 1] = {name = name:lower(), params = params}
  end
  return list
end

local function bits_ok(v)
  local n = tonumber(v)
  return n and n >= 8 and n <= 15 and n == math.floor(n) and n or nil
end

-- opts(o) -> the option table for true, or nil when off.
local function opts_of(o)
  if not o then return nil end
  if type(o) ~= 'table' then o = {} end
  return o
end

-- server(option, header) -> agreed, response header value; or nil.
function M.server(option, header)
  local o = opts_of(option)
  if not o or not header then return nil end
  local offers = parse(header)
  if not offers then return nil end
  for _, offer in ipairs(offers) do
    local p = offer.params
    local ok = offer.name == 'permessage-deflate'
    for k, v in pairs(p) do
      if k == 'server_no_context_takeover' or k == 'client_no_context_takeover'
      then ok = ok and v == true
      elseif k == 'server_max_window_bits' then
        -- zlib's raw deflate has no 8-bit window.
        ok = ok and bits_ok(v) and bits_ok(v) >= 9
      elseif k == 'client_max_window_bits' then
        ok = ok and (v == true or bits_ok(v) ~= nil)
      else ok = false end
    end
    if ok then
      local bits = math.min(o.serverMaxWindowBits or 15,
        bits_ok(p.server_max_window_bits) or 15)
      local ours = p.server_no_context_takeover or o.serverNoContextTakeover
      local theirs = p.client_no_context_takeover or o.clientNoContextTakeover
      local answer = 'permessage-deflate'
      if ours then answer = answer .. '; server_no_context_takeover' end
      if theirs then answer = answer .. '; client_no_context_takeover' end
      if p.server_max_window_bits or o.serverMaxWindowBits then
        answer = answer .. '; server_max_window_bits=' .. bits
      end
      if p.client_max_window_bits and o.clientMaxWindowBits then
        answer = answer .. '; client_max_window_bits=' .. o.clientMaxWindowBits
      end
      return {bits = bits, ourReset = ours and true or false,
        peerReset = theirs and true or false,
        threshold = o.threshold or DEFAULT_THRESHOLD}, answer
    end
  end
  return nil
end

-- offer(option) -> the client's Sec-WebSocket-Extensions, or nil.
function M.offer(option)
  local o = opts_of(option)
  if not o then return nil end
  local s = 'permessage-deflate; client_max_window_bits'
  if o.serverNoContextTakeover then s = s .. '; server_no_context_takeover' end
  if o.clientNoContextTakeover then s = s .. '; client_no_context_takeover' end
  return s
end

-- client(option, header) -> agreed (or false: none), or nil, why.
function M.client(option, header)
  local o = opts_of(option)
  if not header then return false end
  local list = parse(header)
  if not o or not list or #list ~= 1 or list[1].name ~= 'permessage-deflate'
  then
    return nil, 'Server indicated an extension that was not requested'
  end
  local p = list[1].params
  local bits = 15
  for k, v in pairs(p) do
    if k == 'client_max_window_bits' then
      bits = bits_ok(v)
      if not bits or bits < 9 then
        return nil, 'Invalid value for parameter "client_max_window_bits"'
      end
    elseif k == 'server_max_window_bits' then
      if not bits_ok(v) then
        return nil, 'Invalid value for parameter "server_max_window_bits"'
      end
    elseif k ~= 'server_no_context_takeover'
        and k ~= 'client_no_context_takeover' or v ~= true then
      return nil, 'Invalid parameter "' .. k .. '"'
    end
  end
  return {bits = bits, ourReset = p.client_no_context_takeover and true
    or o.clientNoContextTakeover and true or false,
    peerReset = p.server_no_context_takeover and true or false,
    threshold = o.threshold or DEFAULT_THRESHOLD}
end

return M
