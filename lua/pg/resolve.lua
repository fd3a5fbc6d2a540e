-- pg.resolve: the host names of a connection string looked up on libuv's
-- thread pool, before libpq connects. libpq resolves a name inside
-- PQconnectStart/PQconnectPoll itself, with a blocking getaddrinfo: the
-- worker would stop for as long as DNS takes (a container's
-- postgres://db/... at every new pool connection). Here each name becomes
-- its addresses in `hostaddr`, beside the name in `host` (which libpq
-- still uses for TLS verification, the password file and messages), so
-- libpq never resolves anything.
--
--   resolve(info, cb): cb(info') once every name is looked up, or
--   cb(nil, message) when none of the hosts resolved. info' is info
--   itself when there is nothing to look up (unix sockets, addresses, a
--   hostaddr given, or a string libpq cannot parse: it says why).
--
-- A name with several addresses becomes several hosts of the list, tried
-- in order as libpq tries a name's addresses; a name that does not resolve
-- is left out when other hosts remain.

local uv = require('uv')
local lpg = require('_pg')

local M = {}

-- At most this many addresses of one name are tried.
local MAX_ADDRS = 8

-- A name to look up: not empty, not a socket directory (/path, @abstract),
-- not an IPv4 or IPv6 address.
local function is_name(h)
  local c = h:sub(1, 1)
  if h == '' or c == '/' or c == '@' then return false end
  if h:find(':', 1, true) then return false end
  return not h:match('^%d+%.%d+%.%d+%.%d+$')
end

-- libpq's comma-separated lists.
local function split(s)
  local t = {}
  for part in (s .. ','):gmatch('([^,]*),') do t[#t + 1] = part end
  return t
end

-- build({keyword = value}) -> libpq's key=value string, keywords sorted,
-- each value quoted (also Client.conninfo's, for an options table).
local function build(o)
  local parts = {}
  for k, v in pairs(o) do
    parts[#parts + 1] = k .. "='" .. tostring(v):gsub("[\\']", '\\%0')
      .. "'"
  end
  table.sort(parts)
  return table.concat(parts, ' ')
end
M.build = build

-- The addresses of res (getaddrinfo's list), each once, at most MAX_ADDRS.
local function addresses(res)
  local out, seen = {}, {}
  for _, a in ipairs(res or {}) do
    if a.addr and not seen[a.addr] then
      seen[a.addr] = true
      out[#out + 1] = a.addr
      if #out == MAX_ADDRS then break end
    end
  end
  return out
end

function M.resolve(info, cb)
  local o = lpg.parse(info)
  if not o then return cb(info) end
  local host = o.host or os.getenv('PGHOST')
  if not host or o.hostaddr or os.getenv('PGHOSTADDR') then
    return cb(info)
  end
  local hosts = split(host)
  local names = 0
  for _, h in ipairs(hosts) do
    if is_name(h) then names = names + 1 end
  end
  if names == 0 then return cb(info) end
  -- One port is every host's (left as it is); a list has one a host
  -- (libpq's rule), expanded with them.
  local ports = o.port and split(o.port)
  if ports and (#ports < 2 or #ports ~= #hosts) then ports = nil end

  local found, failed = {}, {}
  local function finish()
    local oh, oa, op = {}, {}, {}
    for i, h in ipairs(hosts) do
      local addrs = is_name(h) and found[i] or {''}
      for _, a in ipairs(addrs) do
        oh[#oh + 1], oa[#oa + 1] = h, a
        if ports then op[#op + 1] = ports[i] end
      end
    end
    if #oh == 0 then
      local i, err = next(failed)
      return cb(nil, ('could not translate host name "%s" to address: %s')
        :format(hosts[i], err))
    end
    o.host, o.hostaddr = table.concat(oh, ','), table.concat(oa, ',')
    if ports then o.port = table.concat(op, ',') end
    cb(build(o))
  end

  local pending = names
  for i, h in ipairs(hosts) do
    if is_name(h) then
      local ok, err = uv.getaddrinfo(h, nil, {socktype = 'stream'},
        function(e, res)
          local addrs = not e and addresses(res) or {}
          if #addrs == 0 then
            failed[i] = e or 'no address'
          end
          found[i] = addrs
          pending = pending - 1
          if pending == 0 then finish() end
        end)
      if not ok then
        failed[i], found[i] = err, {}
        pending = pending - 1
      end
    end
  end
  if pending == 0 then finish() end
end

return M
