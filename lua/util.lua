-- util: Node's util.format and util.inspect for Lua values.
--
-- inspect prints tables as Lua constructors: sequences as { 1, 2, 3 },
-- other keys sorted (numbers, then strings, then the rest) as { a = 1 };
-- nested past `depth` as [table]; a table met again on its own path as
-- [Circular]. Short tables stay on one line; long ones break with two-space
-- indents, as Node's do past 72 columns. Strings are quoted as Node quotes
-- them; functions show where they are defined.

local cjson = require('cjson')

local util = {}

local type, tostring, pairs, concat, sort, format = type, tostring, pairs,
  table.concat, table.sort, string.format

-- Quotes a string as Node does: single quotes, or double quotes when the
-- string holds a single quote and no double quote.
local function quote(s)
  local q = "'"
  if s:find("'", 1, true) and not s:find('"', 1, true) then q = '"' end
  return q .. s:gsub('[\\\'"\n\r\t%z\1-\31\127]', function(c)
    if c == '\n' then return '\\n' end
    if c == '\r' then return '\\r' end
    if c == '\t' then return '\\t' end
    if c == '\\' then return '\\\\' end
    if c == "'" or c == '"' then return c == q and '\\' .. c or c end
    return format('\\x%02X', c:byte())
  end) .. q
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
  if n == 0 and 1 / n < 0 then return '-0' end
  if n == math.floor(n) and math.abs(n) < 2^53 then
    return format('%d', n)
  end
  -- The shortest form that reads back the same number.
  for p = 1, 17 do
    local t = format('%.' .. p .. 'g', n)
    if tonumber(t) == n then return t end
  end
  return format('%.17g', n)
end
util.formatNumber = fmtnum

local keywords = {}
for w in ([[and break do else elseif end false for function if in local nil
    not or repeat return then true until while goto]]):gmatch('%a+') do
  keywords[w] = true
end

local function key_repr(k)
  if type(k) == 'string' and k:match('^[%a_][%w_]*$') and not keywords[k] then
    return k
  end
  if type(k) == 'string' then return '[' .. quote(k) .. ']' end
  if type(k) == 'number' then return '[' .. fmtnum(k) .. ']' end
  return '[' .. tostring(k) .. ']'
end

local inspect

-- Node shows at most 100 entries of an array or object.
local MAX_ITEMS = 100

local function inspect_table(t, opts, depth, path, indent)
  if path[t] then return '[Circular]' end
  local mt = getmetatable(t)
  if mt and mt.__inspect then return mt.__inspect(t, opts) end
  if mt and mt.__tostring then return tostring(t) end
  if depth > opts.depth then return '[table]' end
  path[t] = true
  local parts = {}
  -- The sequence part runs up to the first nil: # is ambiguous with holes.
  local n = 0
  while t[n + 1] ~= nil do n = n + 1 end
  local inner = indent .. '  '
  for i = 1, math.min(n, MAX_ITEMS) do
    parts[#parts + 1] = inspect(t[i], opts, depth + 1, path, inner)
  end
  if n > MAX_ITEMS then
    parts[#parts + 1] = '... ' .. (n - MAX_ITEMS) .. ' more item'
      .. (n - MAX_ITEMS > 1 and 's' or '')
  end
  local keys = {}
  for k in pairs(t) do
    if not (type(k) == 'number' and k >= 1 and k <= n and k % 1 == 0) then
      keys[#keys + 1] = k
    end
  end
  sort(keys, keyorder)
  for i = 1, math.min(#keys, MAX_ITEMS) do
    local k = keys[i]
    parts[#parts + 1] = key_repr(k) .. ' = ' ..
      inspect(t[k], opts, depth + 1, path, inner)
  end
  if #keys > MAX_ITEMS then
    parts[#parts + 1] = '... ' .. (#keys - MAX_ITEMS) .. ' more key'
      .. (#keys - MAX_ITEMS > 1 and 's' or '')
  end
  path[t] = nil
  if #parts == 0 then return '{}' end
  local one = '{ ' .. concat(parts, ', ') .. ' }'
  if #one + #indent <= 72 and not one:find('\n') then return one end
  if #keys == 0 and n > 6 then
    -- A long list of short items fills lines rather than one item a line.
    local widest = 0
    for i = 1, #parts do widest = math.max(widest, #parts[i]) end
    if widest <= 16 and not one:find('\n') then
      local items = math.min(n, MAX_ITEMS)
      local lines, line = {}, parts[1]
      for i = 2, items do
        if #inner + #line + #parts[i] + 3 > 72 then -- ", " and ","
          lines[#lines + 1] = line
          line = parts[i]
        else
          line = line .. ', ' .. parts[i]
        end
      end
      lines[#lines + 1] = line
      -- "... n more items" on a line of its own, as Node puts it.
      lines[#lines + 1] = parts[items + 1]
      return '{\n' .. inner .. concat(lines, ',\n' .. inner) .. '\n'
        .. indent .. '}'
    end
  end
  return '{\n' .. inner .. concat(parts, ',\n' .. inner) .. '\n' .. indent
    .. '}'
end

function inspect(v, opts, depth, path, indent)
  local tv = type(v)
  if tv == 'string' then return quote(v) end
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
-- limits nesting; math.huge shows everything. A table whose metatable has
-- __inspect(t, opts) or __tostring shows as that returns.
function util.inspect(v, opts)
  if opts ~= nil and type(opts) ~= 'table' then
    error('util.inspect: opts must be a table, got ' .. type(opts), 2)
  end
  local depth = opts and opts.depth or 2
  if type(depth) ~= 'number' then
    error('util.inspect: opts.depth must be a number, got ' .. type(depth),
      2)
  end
  return inspect(v, {depth = depth}, 0, {}, '')
end

------------------------------------------------------------------------------
-- format

-- JSON for %j: lua-cjson on its own configuration (sparse arrays become
-- objects), with a cycle shown as '[Circular]' and anything cjson refuses
-- (functions, ...) as 'undefined', as JSON.stringify would give.
local json = cjson.new()
json.encode_sparse_array(true)

local function has_cycle(v, path)
  if type(v) ~= 'table' then return false end
  if path[v] then return true end
  path[v] = true
  for k, x in pairs(v) do
    if has_cycle(k, path) or has_cycle(x, path) then return true end
  end
  path[v] = nil
  return false
end

local function tojson(v)
  if has_cycle(v, {}) then return '[Circular]' end
  local ok, s = pcall(json.encode, v)
  if not ok then return 'undefined' end
  -- cjson escapes '/', JSON.stringify does not.
  return (s:gsub('\\(.)', function(c) if c == '/' then return '/' end end))
end

-- Number(v), parseInt(v) and parseFloat(v) for %d, %i and %f.
local function to_number(v)
  if type(v) == 'number' then return v end
  if type(v) == 'boolean' then return v and 1 or 0 end
  if type(v) == 'string' then
    if v:match('^%s*$') then return 0 end
    return tonumber(v) or 0 / 0
  end
  return 0 / 0
end

local function parse_int(v)
  if type(v) == 'number' then
    if v ~= v or v == math.huge or v == -math.huge then return 0 / 0 end
    return v < 0 and math.ceil(v) or math.floor(v)
  end
  local digits = tostring(v):match('^%s*([-+]?%d+)')
  return digits and tonumber(digits) or 0 / 0
end

local function parse_float(v)
  if type(v) == 'number' then return v end
  local s = tostring(v):match('^%s*(.*)$')
  local sign, rest = s:match('^([-+]?)(.*)$')
  if rest:sub(1, 8) == 'Infinity' then
    return sign == '-' and -math.huge or math.huge
  end
  local num = rest:match('^%d*%.?%d*[eE][-+]?%d+') or rest:match('^%d*%.?%d*')
  return tonumber(sign .. num) or 0 / 0
end

local function show(v)
  if type(v) == 'string' then return v end
  return util.inspect(v)
end

-- format(fmt, ...): %s %d %i %f %j %o %O %c %%, as Node's util.format.
-- A placeholder without an argument stays as it is; arguments left over
-- are appended, separated by spaces (strings as they are, other values
-- inspected).
function util.format(...)
  local n = select('#', ...)
  if n == 0 then return '' end
  local args = {...}
  local first = args[1]
  local out, used = {}, 1
  if type(first) == 'string' and first:find('%', 1, true) then
    out[1] = first:gsub('%%([sdifjoOc%%])', function(c)
      if c == '%' then return '%' end
      if used >= n then return '%' .. c end
      used = used + 1
      local a = args[used]
      if c == 's' then
        if type(a) == 'string' then return a end
        if type(a) == 'number' then return fmtnum(a) end
        if type(a) == 'table' then return util.inspect(a, {depth = 0}) end
        return tostring(a)
      elseif c == 'd' then
        return fmtnum(to_number(a))
      elseif c == 'i' then
        return fmtnum(parse_int(a))
      elseif c == 'f' then
        return fmtnum(parse_float(a))
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
  else
    out[1] = show(first)
  end
  for i = used + 1, n do out[#out + 1] = show(args[i]) end
  return concat(out, ' ')
end

return util
