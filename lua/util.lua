-- util: Node's util.format and util.inspect for Lua values.
--
-- inspect prints tables as Lua constructors: sequences as { 1, 2, 3 },
-- other keys sorted (numbers, then strings, then the rest) as { a = 1 };
-- nested past `depth` as [table]; a table met again on its own path as
-- [Circular]. Short tables stay on one line; long ones break with two-space
-- indents, as Node's do past 72 columns.

local cjson = require('cjson')

local util = {}

local type, tostring, pairs, concat, sort, format = type, tostring, pairs,
  table.concat, table.sort, string.format

local function quote(s)
  return "'" .. s:gsub("[\\'\n\r\t%z\1-\31\127]", function(c)
    if c == '\n' then return '\\n' end
    if c == '\r' then return '\\r' end
    if c == '\t' then return '\\t' end
    if c == '\\' then return '\\\\' end
    if c == "'" then return "\\'" end
    return format('\\x%02X', c:byte())
  end) .. "'"
end

local function keyorder(a, b)
  local ta, tb = type(a), type(b)
  if ta ~= tb then
    if ta == 'number' then return true end
    if tb == 'number' then return false end
    if ta == 'string' then return true end
    if tb == 'string' then return false end
    return ta < tb
  end
  if ta == 'number' or ta == 'string' then return a < b end
  return tostring(a) < tostring(b)
end

local function fmtnum(n)
  if n ~= n then return 'NaN' end
  if n == math.huge then return 'Infinity' end
  if n == -math.huge then return '-Infinity' end
  if n == math.floor(n) and math.abs(n) < 2^53 then
    return format('%d', n)
  end
  return format('%.17g', n):gsub('^(.-)$', function(s)
    -- The shortest form that reads back the same number.
    for p = 1, 17 do
      local t = format('%.' .. p .. 'g', n)
      if tonumber(t) == n then return t end
    end
    return s
  end)
end
util.formatNumber = fmtnum

local function key_repr(k)
  if type(k) == 'string' and k:match('^[%a_][%w_]*$') then return k end
  if type(k) == 'string' then return '[' .. quote(k) .. ']' end
  if type(k) == 'number' then return '[' .. fmtnum(k) .. ']' end
  return '[' .. tostring(k) .. ']'
end

local inspect

local function inspect_table(t, opts, depth, path, indent)
  if path[t] then return '[Circular]' end
  local mt = getmetatable(t)
  if mt and mt.__tostring then return tostring(t) end
  if mt and mt.__inspect then return mt.__inspect(t, opts) end
  if depth > opts.depth then return '[table]' end
  path[t] = true
  local parts = {}
  local n = #t
  for i = 1, n do
    parts[#parts + 1] = inspect(t[i], opts, depth + 1, path, indent .. '  ')
  end
  local keys = {}
  for k in pairs(t) do
    if not (type(k) == 'number' and k >= 1 and k <= n and k % 1 == 0) then
      keys[#keys + 1] = k
    end
  end
  sort(keys, keyorder)
  for _, k in ipairs(keys) do
    parts[#parts + 1] = key_repr(k) .. ' = ' ..
      inspect(t[k], opts, depth + 1, path, indent .. '  ')
  end
  path[t] = nil
  if #parts == 0 then return '{}' end
  local one = '{ ' .. concat(parts, ', ') .. ' }'
  if #one + #indent <= 72 and not one:find('\n') then return one end
  return '{\n' .. indent .. '  ' .. concat(parts, ',\n' .. indent .. '  ')
    .. '\n' .. indent .. '}'
end

function inspect(v, opts, depth, path, indent)
  local tv = type(v)
  if tv == 'string' then return depth == 0 and opts.raw and v or quote(v) end
  if tv == 'number' then return fmtnum(v) end
  if tv == 'table' then return inspect_table(v, opts, depth, path, indent) end
  if tv == 'function' then
    local info = debug.getinfo(v, 'S')
    if info and info.what ~= 'C' and info.short_src then
      return '[function ' .. info.short_src .. ':' .. info.linedefined .. ']'
    end
    return '[function]'
  end
  if v == cjson.null then return 'null' end
  return tostring(v)
end

-- inspect(value[, opts]) -> string. opts.depth (default 2, as Node's)
-- limits nesting; math.huge shows everything.
function util.inspect(v, opts)
  opts = opts or {}
  local o = {depth = opts.depth or 2}
  if o.depth == nil then o.depth = math.huge end
  return inspect(v, o, 0, {}, '')
end

local function tojson(v)
  local ok, s = pcall(cjson.encode, v)
  if ok then return s end
  if tostring(s):find('[Cc]ycle') or tostring(s):find('depth') then
    return '[Circular]'
  end
  return 'undefined'
end

local function show(v)
  if type(v) == 'string' then return v end
  return util.inspect(v)
end

-- format(fmt, ...): %s %d %i %f %j %o %O %c %%, as Node's util.format.
-- Arguments left over are appended, separated by spaces.
function util.format(...)
  local n = select('#', ...)
  if n == 0 then return '' end
  local args = {...}
  local first = args[1]
  local out, used = {}, 1
  if type(first) == 'string' and first:find('%', 1, true) then
    used = 1
    local s = first:gsub('%%([sdifjoOc%%])', function(c)
      if c == '%' then return '%' end
      if used >= n then return '%' .. c end
      used = used + 1
      local a = args[used]
      if c == 's' then
        if type(a) == 'string' then return a end
        if type(a) == 'table' then return util.inspect(a, {depth = 1}) end
        return type(a) == 'number' and fmtnum(a) or tostring(a)
      elseif c == 'd' or c == 'i' then
        local x = tonumber(a)
        if x == nil then return 'NaN' end
        if c == 'i' then x = x < 0 and math.ceil(x) or math.floor(x) end
        return fmtnum(x)
      elseif c == 'f' then
        local x = tonumber(a)
        return x and fmtnum(x) or 'NaN'
      elseif c == 'j' then
        return tojson(a)
      elseif c == 'o' then
        return util.inspect(a, {depth = 4})
      elseif c == 'O' then
        return util.inspect(a)
      else -- %c: CSS in browsers; consumed and dropped.
        return ''
      end
    end)
    out[1] = s
  else
    out[1] = show(first)
  end
  for i = used + 1, n do out[#out + 1] = show(args[i]) end
  return concat(out, ' ')
end

return util
