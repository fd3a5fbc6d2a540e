-- shared: OpenResty's ngx.shared.DICT, shared by a primary and its workers.
--
--   local shared = require('shared')
--   local cache = shared.dict('cache', '10m')  -- declares it (the primary)
--   if cluster.isPrimary then cluster.fork() cluster.fork() return end
--   -- A worker runs the script again from the top: there the same call,
--   -- or shared.dict('cache') without a size, returns the store the
--   -- primary declared (the size is not looked at again).
--   cache:set('k', 'v', 30)       --> true, nil, forcible
--   cache:get('k')                --> 'v'
--   cache:incr('hits', 1, 0)      --> 1, nil, forcible
--
-- shared.dict(name, size) declares a dict in the primary before it forks:
-- workers forked from then on get it by name, through shared.dict(name).
-- size is in bytes, or a string as nginx writes sizes ('512k', '10m',
-- '1g'); at least 8k. `luacluster -w N --shared name:size script.lua`
-- declares dicts in the built-in primary. A worker asking for a dict its
-- primary did not declare gets an error (it would not be shared).
--
-- Methods, with ngx's arguments and results:
--   get(key)                       value[, flags]; nil when missing
--   get_stale(key)                 value, flags, stale (expired values too)
--   set(key, value[, ttl[, flags]]) ok, err, forcible (a nil value deletes)
--   safe_set, add, safe_add, replace: the same; add fails with 'exists',
--                                  replace with 'not found', safe_* with
--                                  'no memory' rather than evict
--   delete(key)                    true
--   incr(key, n[, init[, init_ttl]]) newval, err, forcible ('not found'
--                                  without init, 'not a number')
--   ttl(key)                       seconds left (0: never), or nil, err
--   expire(key, ttl)               true, or nil, 'not found'
--   flush_all()                    every item goes (memory freed at once)
--   flush_expired([max])           how many expired items were freed
--   get_keys([max])                keys, most recently used first (at most
--                                  max, default 1024; 0: all)
--   capacity(), free_space()       bytes
-- Values: strings, numbers, booleans, and tables (those the cluster channel
-- carries, encoded; another table is nil, 'bad value type'). A TTL is in
-- seconds (fractions too); 0 or none is never. When the store is full, set
-- evicts the least recently used items (get counts as a use), and its
-- forcible result tells when any of them had not expired yet. A value
-- bigger than the whole store fails with 'no memory'. Keys: strings
-- (others through tostring), 1 to 65535 bytes; nil is nil, 'nil key', ''
-- nil, 'empty key'.
--
-- The memory is a memfd mapped by every process (runtime/shdict/store.h
-- has the layout and how a process killed mid-write is recovered from); the
-- hot methods call C through the FFI (runtime/shdict/ffi.c).

local ffi = require('ffi')
local core = require('_shared')

local C = ffi.C
local ffi_string = ffi.string
local type, tostring, tonumber, error = type, tostring, tonumber, error
local setmetatable = setmetatable

-- The FFI declarations, the value types, results and store operations
-- come from C (runtime/shdict/shdict.h), never copied here.
if not pcall(ffi.typeof, 'lc_shval') then ffi.cdef(core.cdef) end
local T_NIL, T_FALSE, T_TRUE, T_NUMBER, T_STRING, T_TABLE = core.T_NIL,
  core.T_FALSE, core.T_TRUE, core.T_NUMBER, core.T_STRING, core.T_TABLE
local ERRORS = core.errors
local OP_SET, OP_ADD, OP_REPLACE, OP_SAFE = core.OP_SET, core.OP_ADD,
  core.OP_REPLACE, core.OP_SAFE

-- One result buffer for every call (one Lua state, no reentrance).
local V = ffi.new('lc_shval')

local M = {}

local dicts = {}   -- name -> Dict
local order = {}   -- names, in declaration order
local inherited = false

local Dict = {}
Dict.__index = Dict

local function bad_self()
  error('shared dict: call methods with a colon (dict:get(key))', 3)
end

-- key -> key, length; or nil, message (ngx's wording).
local function checkkey(key)
  if type(key) ~= 'string' then
    if key == nil then return nil, 'nil key' end
    key = tostring(key)
  end
  local n = #key
  if n == 0 then return nil, 'empty key' end
  if n > 65535 then return nil, 'key too long' end
  return key, n
end

local function checkttl(ttl, what)
  if ttl == nil then return 0 end
  if type(ttl) ~= 'number' or ttl < 0 or ttl ~= ttl then
    error('bad "' .. what .. '" argument: a number of seconds >= 0 expected',
      3)
  end
  return ttl
end

local function checkflags(flags)
  if flags == nil then return 0 end
  if type(flags) ~= 'number' or flags < 0 or flags > 4294967295
      or flags % 1 ~= 0 then
    error('bad "flags" argument: an integer from 0 to 2^32-1 expected', 3)
  end
  return flags
end

local function value_of(t, self)
  if t == T_NUMBER then return V.num end
  if t == T_STRING then return ffi_string(V.str, V.len) end
  if t == T_TRUE then return true end
  if t == T_FALSE then return false end
  return core.decode(self._ud)
end

-- The lookup of get and get_stale: the value's type (> 0, its value in V),
-- or nil and the error.
local function lookup(self, key, stale)
  local h = self._h
  if h == nil then bad_self() end
  local k, n = checkkey(key)
  if not k then return nil, n end
  local t = C.lc_shdict_get(h, k, n, V, stale)
  if t <= 0 then
    if t == 0 then return nil end
    return nil, ERRORS[-t]
  end
  return t
end

function Dict:get(key)
  local t, err = lookup(self, key, 0)
  if not t then
    if err then return nil, err end
    return nil
  end
  local val = value_of(t, self)
  local flags = V.flags
  if flags ~= 0 then return val, flags end
  return val
end

function Dict:get_stale(key)
  local t, err = lookup(self, key, 1)
  if not t then
    if err then return nil, err end
    return nil
  end
  local val = value_of(t, self)
  local flags = V.flags
  return val, flags ~= 0 and flags or nil, V.stale ~= 0
end

local function store(self, op, key, value, ttl, flags)
  local h = self._h
  if h == nil then bad_self() end
  ttl = checkttl(ttl, 'exptime')
  flags = checkflags(flags)
  local k, n = checkkey(key)
  if not k then return nil, n end
  local vt = type(value)
  local rc
  if vt == 'string' then
    rc = C.lc_shdict_store(h, op, k, n, T_STRING, value, #value, 0, ttl,
      flags, V)
  elseif vt == 'number' then
    rc = C.lc_shdict_store(h, op, k, n, T_NUMBER, nil, 0, value, ttl, flags,
      V)
  elseif vt == 'boolean' then
    rc = C.lc_shdict_store(h, op, k, n, value and T_TRUE or T_FALSE, nil, 0,
      0, ttl, flags, V)
  elseif value == nil then
    rc = C.lc_shdict_store(h, op, k, n, T_NIL, nil, 0, 0, 0, 0, V)
  elseif vt == 'table' then
    return core.store_table(self._ud, op, k, value, ttl, flags)
  else
    return nil, 'bad value type'
  end
  if rc == 0 then return true, nil, V.forcible ~= 0 end
  return false, ERRORS[rc], V.forcible ~= 0
end

function Dict:set(key, value, ttl, flags)
  return store(self, OP_SET, key, value, ttl, flags)
end

function Dict:safe_set(key, value, ttl, flags)
  return store(self, OP_SET + OP_SAFE, key, value, ttl, flags)
end

function Dict:add(key, value, ttl, flags)
  return store(self, OP_ADD, key, value, ttl, flags)
end

function Dict:safe_add(key, value, ttl, flags)
  return store(self, OP_ADD + OP_SAFE, key, value, ttl, flags)
end

function Dict:replace(key, value, ttl, flags)
  return store(self, OP_REPLACE, key, value, ttl, flags)
end

function Dict:delete(key)
  return store(self, OP_SET, key, nil)
end

-- incr(key, n[, init[, init_ttl]]): as ngx, the result has no forcible
-- flag unless init was given.
function Dict:incr(key, value, init, init_ttl)
  local h = self._h
  if h == nil then bad_self() end
  local k, n = checkkey(key)
  if not k then return nil, n end
  if type(value) ~= 'number' then
    local v = tonumber(value)
    if v == nil then
      error('bad "value" argument: a number expected, got ' ..
        type(value), 2)
    end
    value = v
  end
  if init == nil then
    if init_ttl ~= nil then
      error('must provide "init" when providing "init_ttl"', 2)
    end
    local rc = C.lc_shdict_incr(h, k, n, value, 0, 0, 0, V)
    if rc ~= 0 then return nil, ERRORS[rc] end
    return V.num
  end
  if type(init) ~= 'number' then
    local v = tonumber(init)
    if v == nil then
      error('bad "init" argument: a number expected, got ' .. type(init), 2)
    end
    init = v
  end
  local rc = C.lc_shdict_incr(h, k, n, value, 1, init,
    checkttl(init_ttl, 'init_ttl'), V)
  if rc ~= 0 then return nil, ERRORS[rc], V.forcible ~= 0 end
  return V.num, nil, V.forcible ~= 0
end

function Dict:ttl(key)
  local h = self._h
  if h == nil then bad_self() end
  local k, n = checkkey(key)
  if not k then return nil, n end
  local rc = C.lc_shdict_ttl(h, k, n, V)
  if rc ~= 0 then return nil, ERRORS[rc] end
  return V.num
end

function Dict:expire(key, ttl)
  local h = self._h
  if h == nil then bad_self() end
  if ttl == nil then error('bad "exptime" argument: a number expected', 2) end
  ttl = checkttl(ttl, 'exptime')
  local k, n = checkkey(key)
  if not k then return nil, n end
  local rc = C.lc_shdict_expire(h, k, n, ttl)
  if rc ~= 0 then return nil, ERRORS[rc] end
  return true
end

local function checkmax(max, default)
  if max == nil then return default end
  if type(max) ~= 'number' or max < 0 or max % 1 ~= 0 then
    error('bad "max_count" argument: an integer >= 0 expected', 3)
  end
  return max
end

function Dict:flush_all()
  if self._h == nil then bad_self() end
  core.flush_all(self._ud)
end

function Dict:flush_expired(max)
  if self._h == nil then bad_self() end
  return core.flush_expired(self._ud, checkmax(max, 0))
end

function Dict:get_keys(max)
  if self._h == nil then bad_self() end
  return core.get_keys(self._ud, checkmax(max, 1024))
end

function Dict:capacity()
  if self._h == nil then bad_self() end
  return core.capacity(self._ud)
end

function Dict:free_space()
  if self._h == nil then bad_self() end
  return core.free_space(self._ud)
end

-- _stats(): {count, capacity, free_space, recoveries, resets, buckets};
-- recoveries counts locks taken over from a process that died holding it.
function Dict:_stats()
  return core.stats(self._ud)
end

-- _validate() -> true, or false and what is wrong (walks the whole store).
function Dict:_validate()
  return core.validate(self._ud)
end

function Dict:__tostring()
  return 'shared.dict: ' .. self.name
end

------------------------------------------------------------------------------
-- Declaring and finding dicts.

local UNITS = {[''] = 1, k = 1024, m = 1024 * 1024, g = 1024 * 1024 * 1024}

-- parse_size(size) -> bytes, or nil: a number, or '512k', '10m', '1g'.
local function parse_size(size)
  if type(size) == 'number' then
    return size % 1 == 0 and size or nil
  end
  if type(size) ~= 'string' then return nil end
  local num, unit = size:match('^%s*(%d+)%s*([kKmMgG]?)%s*$')
  if not num then return nil end
  return tonumber(num) * UNITS[unit:lower()]
end
M._parse_size = parse_size

local function register(name, ud, size)
  local d = setmetatable({name = name, _ud = ud, _size = size,
    _h = ffi.cast('void *', core.pointer(ud))}, Dict)
  dicts[name] = d
  order[#order + 1] = name
  return d
end

-- Whether this process is a cluster worker (lua/init.lua decides the role
-- at start-up and notes it in process._role; this module never looks at
-- the cluster module above it).
local function is_worker()
  return inherited or process._role == 'worker'
end

-- dict(name[, size]) -> the dict of that name; with a size, in the primary
-- (or a process without workers), declares it if it is new.
function M.dict(name, size)
  if type(name) ~= 'string' or not name:match('^[%w_%.%-]+$') or #name > 63
      then
    error('shared.dict: name must be 1 to 63 letters, digits, "_", "." ' ..
      'or "-", got ' .. tostring(name), 2)
  end
  local d = dicts[name]
  if d then return d end
  if is_worker() then
    error(("shared.dict: no dict '%s' here: declare it in the primary " ..
      "before it forks (shared.dict(name, size), or --shared %s:SIZE)")
      :format(name, name), 2)
  end
  if size == nil then
    error(("shared.dict: no dict '%s': declare it first with " ..
      "shared.dict('%s', size)"):format(name, name), 2)
  end
  local bytes = parse_size(size)
  if not bytes or bytes < core.MIN_SIZE or bytes > core.MAX_SIZE then
    error(("shared.dict: bad size %s for '%s': bytes or '512k', '10m', " ..
      "'1g', from 8k to under 4g"):format(tostring(size), name), 2)
  end
  local ud, err = core.create(name, bytes)
  if not ud then
    error(("shared.dict: cannot create '%s': %s"):format(name, err), 2)
  end
  return register(name, ud, core.capacity(ud))
end

-- The primary's side of cluster.fork (lua/cluster/primary.lua):
-- _stdio(stdio) appends each dict's memfd to the worker's stdio list (so
-- the worker gets them as fds 4, 5, ...) and returns the value of
-- LUACLUSTER_SHARED (name:fd:size,...) naming them, or nil.
function M._stdio(stdio)
  local parts = {}
  for _, name in ipairs(order) do
    local d = dicts[name]
    local fd = core.fd(d._ud)
    if fd then
      stdio[#stdio + 1] = fd
      parts[#parts + 1] = ('%s:%d:%d'):format(name, #stdio - 1, d._size)
    end
  end
  if parts[1] == nil then return nil end
  return table.concat(parts, ',')
end

-- The worker's side, at start-up (lua/init.lua): maps the dicts
-- LUACLUSTER_SHARED names, closes their fds (so nothing this worker spawns
-- inherits them) and drops the variable.
function M._inherit()
  local spec = process.env.LUACLUSTER_SHARED
  inherited = true
  if not spec then return end
  process.env.LUACLUSTER_SHARED = nil
  require('uv').os_unsetenv('LUACLUSTER_SHARED')
  for name, fd, size in spec:gmatch('([^:,]+):(%d+):(%d+)') do
    local ud, err = core.attach(tonumber(fd), tonumber(size))
    if not ud then
      error(("shared: cannot map dict '%s' from the primary: %s"):format(
        name, tostring(err)))
    end
    register(name, ud, tonumber(size))
  end
end

return M
