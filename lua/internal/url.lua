-- internal.url: the one parser of URLs and of numeric host addresses
-- (net.isIP), for the http client and listening. No dependency of the
-- project parses URLs (luv, cjson and llhttp do not), hence this file.

local uv = require('uv')
local errors = require('internal.errors')

local type, tonumber, error = type, tonumber, error
local lower, char = string.lower, string.char

local url = {}

-- isIP(s) -> 4, 6 or 0, asking getaddrinfo for a numeric host only (no
-- lookup happens).
function url.isIP(s)
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

local function unescape(s)
  return (s:gsub('%%(%x%x)', function(x) return char(tonumber(x, 16)) end))
end

local function invalid(input, level)
  local e = errors.type_error('ERR_INVALID_URL', 'Invalid URL')
  e.input = input
  error(e, level + 1)
end

-- parse('http://user:pw@host:port/path?q#frag') -> {protocol = 'http:',
-- auth = 'user:pw' (unescaped) or nil, hostname = 'host' (lower case,
-- without an IPv6 address's brackets), port = number or nil, path =
-- '/path?q'}; raises Node's ERR_INVALID_URL (at the caller's caller, or
-- at level) for what is not an absolute URL with a host.
function url.parse(input, level)
  level = (level or 2) + 1
  local scheme, rest = input:match('^(%a[%w+.-]*):(.*)$')
  if not scheme or rest:sub(1, 2) ~= '//' then invalid(input, level) end
  rest = rest:sub(3)
  local authority, path = rest:match('^([^/?#]*)(.*)$')
  path = path:gsub('#.*$', '')
  if path == '' or path:sub(1, 1) == '?' then path = '/' .. path end
  local o = {protocol = lower(scheme) .. ':', path = path}
  local userinfo, hostport = authority:match('^(.*)@(.*)$')
  if userinfo then
    o.auth = unescape(userinfo)
  else
    hostport = authority
  end
  local host, port = hostport:match('^%[([^%]]+)%]:?(%d*)$')
  if not host then host, port = hostport:match('^([^:]*):?(%d*)$') end
  if not host or host == '' then invalid(input, level) end
  o.hostname = lower(host)
  o.port = tonumber(port)
  return o
end

return url
