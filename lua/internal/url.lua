-- internal.url: the one parser of URLs (the http client's). No dependency
-- of the project parses URLs (luv, cjson and llhttp do not), hence this
-- file.

local errors = require('internal.errors')

local tonumber, error = tonumber, error
local lower, char = string.lower, string.char

local url = {}

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
