-- internal.dns: names and addresses, for net and listening: isIP (a
-- numeric address, no lookup) and lookup (a name's addresses, as Node's
-- dns.lookup).

local uv = require('uv')
local errors = require('internal.errors')

local type, tonumber, ipairs = type, tonumber, ipairs

local dns = {}

-- isIP(s) -> 4, 6 or 0, asking getaddrinfo for a numeric host only (no
-- lookup happens).
function dns.isIP(s)
  if type(s) ~= 'string' or s == '' then return 0 end
  if s:match('^%d+%.%d+%.%d+%.%d+$') then
    for part in s:gmatch('%d+') do
      if #part > 3 or tonumber(part) > 255 then return 0 end
    end
    return 4
  end
  if not s:find(':', 1, true) then return 0 end
  local res = uv.getaddrinfo(s, nil, {numerichost = true, family = 'inet6'})
  return res and res[1] and 6 or 0
end

-- lookup(host, family, cb): resolves a name as Node's dns.lookup does, and
-- calls cb(nil, addresses) with its addresses in getaddrinfo's order (no
-- repeats), or cb(err) with Node's ENOTFOUND error. family: 'inet',
-- 'inet6' or nil. 'localhost' always resolves (RFC 6761): to what
-- /etc/hosts says, or, where nothing does (a minimal root has no
-- /etc/hosts), to 127.0.0.1 and ::1.
function dns.lookup(host, family, cb)
  uv.getaddrinfo(host, nil, {socktype = 'stream', family = family},
    function(err, res)
      local addrs, seen = {}, {}
      for _, r in ipairs(res or {}) do
        if not seen[r.addr] then
          seen[r.addr] = true
          addrs[#addrs + 1] = r.addr
        end
      end
      if not addrs[1] and host:lower() == 'localhost' then
        if family ~= 'inet6' then addrs[#addrs + 1] = '127.0.0.1' end
        if family ~= 'inet' then addrs[#addrs + 1] = '::1' end
      end
      if not addrs[1] then
        return cb(errors.dns(err or 'ENOTFOUND', host))
      end
      cb(nil, addrs)
    end)
end

return dns
