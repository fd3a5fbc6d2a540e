-- pg.types: Lua values to PostgreSQL parameters and PostgreSQL's text
-- output to Lua values, for the types runtime/pg/result.c leaves as text.
--
-- Converted in C: bool, int2, int4, oid, float4, float8 (numbers), int8 (a
-- number up to 2^53 in magnitude, else a string), bytea (raw bytes), NULL
-- (pg.null, which is cjson.null). Here: json and jsonb (cjson, JSON null as
-- pg.null), timestamp and timestamptz (ISO 8601: 'T' between date and
-- time, the zone as +hh:mm), and one-dimensional or nested arrays of the
-- types above, text and numeric. Everything else (numeric, date, time,
-- uuid, interval, ...) stays PostgreSQL's text.

local cjson = require('cjson')
local cjson_safe = require('cjson.safe')

local type, tostring, tonumber, pairs, next, error, getmetatable,
  setmetatable, select = type, tostring, tonumber, pairs, next, error,
  getmetatable, setmetatable, select
local format, byte, char, sub, find, gsub, concat, floor, huge =
  string.format, string.byte, string.char, string.sub, string.find,
  string.gsub, table.concat, math.floor, math.huge

local M = {}

local null = cjson.null
M.null = null

------------------------------------------------------------------------------
-- Parameters.

-- Wrappers that say how a table or string goes out.
local Json = {}
local Bytea = {}
local Array = {}

-- json(v): v sent as JSON even if it is a sequence (or a string).
function M.json(v) return setmetatable({v = v}, Json) end
-- bytea(s): s sent as bytea (raw bytes).
function M.bytea(s)
  if type(s) ~= 'string' then
    error('pg.bytea: expected a string, got ' .. type(s), 2)
  end
  return setmetatable({v = s}, Bytea)
end
-- array(t): t sent as an array literal even if empty or sparse.
function M.array(t, n) return setmetatable({v = t, n = n}, Array) end

local EXACT = 2 ^ 53

local function number(n)
  if n ~= n then return 'NaN' end
  if n == huge then return 'Infinity' end
  if n == -huge then return '-Infinity' end
  if n == floor(n) and n > -EXACT and n < EXACT then
    return format('%d', n)
  end
  return format('%.17g', n)
end

local function hex(s)
  return '\\x' .. gsub(s, '.', function(c) return format('%02x', byte(c)) end)
end

-- A sequence: keys 1..#t and nothing else (an empty table is not).
local function is_sequence(t)
  local n = #t
  if n == 0 then return false end
  local count = 0
  for _ in pairs(t) do count = count + 1 end
  return count == n
end

local encode

local function element(v)
  if v == nil or v == null then return 'NULL' end
  local tv = type(v)
  if tv == 'number' then return number(v) end
  if tv == 'boolean' then return v and 't' or 'f' end
  if tv == 'table' and getmetatable(v) == nil and (next(v) == nil
      or is_sequence(v)) then
    return nil -- nested: the caller recurses
  end
  local s = encode(v)
  return '"' .. gsub(s, '[\\"]', '\\%0') .. '"'
end

local function array_literal(t, n)
  n = n or #t
  local parts = {}
  for i = 1, n do
    local v = t[i]
    local e = element(v)
    if e == nil then e = array_literal(v) end
    parts[i] = e
  end
  return '{' .. concat(parts, ',') .. '}'
end

-- encode(v) -> text, or nil for NULL. Raises on what has no SQL form.
function encode(v)
  local tv = type(v)
  if tv == 'string' then
    -- libpq sends text as C strings: a NUL would cut it short.
    if find(v, '\0', 1, true) then
      error('holds a NUL byte (binary data goes as pg.bytea(s))', 0)
    end
    return v
  end
  if tv == 'number' then return number(v) end
  if tv == 'boolean' then return v and 't' or 'f' end
  if v == nil or v == null then return nil end
  if tv == 'table' then
    local mt = getmetatable(v)
    if mt == Json then return cjson.encode(v.v) end
    if mt == Bytea then return hex(v.v) end
    if mt == Array then return array_literal(v.v, v.n) end
    -- {} is both an empty array and an empty JSON object.
    if next(v) == nil then return '{}' end
    if is_sequence(v) then return array_literal(v) end
    return cjson.encode(v)
  end
  error('a ' .. tv .. ' has no PostgreSQL form', 0)
end
M.encode = encode

-- params(n, ...) -> a table of the n encoded values (nil for NULL).
function M.params(n, ...)
  local out = {}
  for i = 1, n do
    local ok, s = pcall(encode, (select(i, ...)))
    if not ok then error('parameter $' .. i .. ': ' .. s, 0) end
    out[i] = s
  end
  return out
end

------------------------------------------------------------------------------
-- Results.

local function json(s)
  local v = cjson_safe.decode(s)
  if v == nil then return s end
  return v
end

-- '2024-01-02 03:04:05.5+01' -> '2024-01-02T03:04:05.5+01:00'
local function timestamp(s)
  local d, t, z = s:match('^(%d%d%d%d+%-%d%d%-%d%d) (%d%d:%d%d:[%d%.]+)(.*)$')
  if not d then return s end -- infinity, BC dates, another DateStyle
  if z == '' then return d .. 'T' .. t end
  if find(z, '^[+-]%d%d$') then z = z .. ':00' end
  if z == '+00:00' then z = 'Z' end
  return d .. 'T' .. t .. z
end

-- As C does: a number when exact (|n| <= 2^53), else the text.
local function int8(s)
  local n = tonumber(s)
  if not n then return s end
  if n > -EXACT and n < EXACT then return n end
  if s == '9007199254740992' or s == '-9007199254740992' then return n end
  return s
end

local function bool(s) return s == 't' end

local function unhex(s)
  if sub(s, 1, 2) ~= '\\x' then return s end
  return (gsub(sub(s, 3), '%x%x', function(h)
    return char(tonumber(h, 16))
  end))
end

-- Converters of an array's elements, by the array type's OID.
local elements = {
  [1000] = bool, [1001] = unhex, [1005] = tonumber, [1007] = tonumber,
  [1016] = int8, [1021] = tonumber, [1022] = tonumber, [1028] = tonumber,
  [1231] = false, [1009] = false, [1015] = false, [1014] = false,
  [199] = json, [3807] = json, [1115] = timestamp, [1185] = timestamp,
  [1182] = false, [2951] = false,
}

-- Parses an array literal from position i (at '{'); returns the table and
-- the position after its '}'.
local function parse_array(s, i, conv)
  local out, n = {}, 0
  i = i + 1
  if sub(s, i, i) == '}' then return out, i + 1 end
  while true do
    local c = sub(s, i, i)
    local v
    if c == '{' then
      v, i = parse_array(s, i, conv)
    elseif c == '"' then
      local parts, j = {}, i + 1
      while true do
        local k = find(s, '[\\"]', j)
        if not k then error('bad array literal', 0) end
        parts[#parts + 1] = sub(s, j, k - 1)
        if sub(s, k, k) == '"' then
          i = k + 1
          break
        end
        parts[#parts + 1] = sub(s, k + 1, k + 1)
        j = k + 2
      end
      v = concat(parts)
      if conv then v = conv(v) end
    else
      local k = find(s, '[,}]', i)
      if not k then error('bad array literal', 0) end
      v = sub(s, i, k - 1)
      i = k
      if v == 'NULL' then
        v = null
      elseif conv then
        v = conv(v)
      end
    end
    n = n + 1
    out[n] = v
    c = sub(s, i, i)
    i = i + 1
    if c == '}' then return out, i end
    if c ~= ',' then error('bad array literal', 0) end
  end
end

local function array_of(conv)
  return function(s)
    -- Bounds other than 1 come first: '[0:1]={a,b}'.
    local start = find(s, '{', 1, true)
    if not start then return s end
    local ok, t = pcall(parse_array, s, start, conv)
    if ok then return t end
    return s
  end
end

-- Converters of a column, by its type's OID (nil: as C gave it).
local columns = {[114] = json, [3802] = json, [1114] = timestamp,
  [1184] = timestamp}
for oid, conv in pairs(elements) do
  columns[oid] = array_of(conv or nil)
end
M.columns = columns

-- convert(res): applies the converters to res.rows in place.
function M.convert(res)
  local fields = res.fields
  local nf = #fields
  if nf == 0 then return res end
  local names, convs, k = nil, nil, 0
  for i = 1, nf do
    local conv = columns[fields[i].dataTypeID]
    if conv then
      if not names then names, convs = {}, {} end
      k = k + 1
      names[k], convs[k] = fields[i].name, conv
    end
  end
  if k == 0 then return res end
  local rows = res.rows
  for r = 1, #rows do
    local row = rows[r]
    for j = 1, k do
      local name = names[j]
      local v = row[name]
      if v ~= null then row[name] = convs[j](v) end
    end
  end
  return res
end

return M
