-- internal.url: the one parser of URLs (the http client's), and the
-- resolver of a reference against a base (fetch's redirects). No
-- dependency of the project parses URLs (luv, cjson and llhttp do not),
-- hence this file.

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

-- Removes '.' and '..' segments from an absolute path (RFC 3986, 5.2.4).
local function remove_dots(path)
  local out = {}
  local trailing = path:match('/%.%.?$') or path:sub(-1) == '/'
  for seg in path:gmatch('[^/]+') do
    if seg == '..' then
      out[#out] = nil
    elseif seg ~= '.' then
      out[#out + 1] = seg
    end
  end
  local p = '/' .. table.concat(out, '/')
  if trailing and p ~= '/' then p = p .. '/' end
  return p
end

-- resolve(base, ref) -> the absolute URL ref names, read against the
-- absolute URL base (RFC 3986, 5.2): 'http://h/a/b' and '../c' give
-- 'http://h/c'; '//h2/x', '/x', '?q' and a full URL work as a browser's
-- Location does. The fragment is dropped.
function url.resolve(base, ref)
  ref = ref:gsub('#.*$', '')
  if ref:match('^%a[%w+.-]*:') then return ref end
  local scheme, authority, path, query = base:match(
    '^(%a[%w+.-]*:)//([^/?#]*)([^?#]*)(%??[^#]*)')
  if not scheme then invalid(base, 2) end
  if path == '' then path = '/' end
  if ref:sub(1, 2) == '//' then return scheme .. ref end
  local origin = scheme .. '//' .. authority
  if ref == '' then return origin .. path .. query end
  if ref:sub(1, 1) == '?' then return origin .. path .. ref end
  local rpath, rquery = ref:match('^([^?]*)(.*)$')
  if rpath:sub(1, 1) ~= '/' then
    rpath = path:gsub('[^/]*$', '') .. rpath
  end
  return origin .. remove_dots(rpath) .. rquery
end

return url
