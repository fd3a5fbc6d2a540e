-- ngx: the part of OpenResty's `ngx` table that pure-Lua cosocket drivers
-- (resty.redis and the like) use, so they run unmodified.
--
--   require('ngx')                 -- also sets the global `ngx` the drivers
--   local redis = require('resty.redis')   -- read when they load
--
-- socket.tcp/connect (lua/cosocket.lua), null (cjson.null), sleep, now,
-- time, update_time, log and its levels, thread.spawn/wait/kill and
-- timer.at/every (lua/co.lua), worker.id/pid/count/exiting, config,
-- shared.DICT (lua/shared.lua), get_phase, the core constants, and the
-- string functions: escape_uri, unescape_uri, encode_base64,
-- decode_base64, md5, md5_bin, sha1_bin, hmac_sha1, crc32_short/long.
--
-- Differences: ngx.log writes to stderr, dropping levels above
-- ngx.log_level (default ngx.WARN; OpenResty's filter is error_log's
-- level); threads are co's handles, not Lua coroutines; worker.id() is
-- cluster's worker id minus 1 (ids are not reused, so it may reach
-- count()); timers never see premature = true.

local uv = require('uv')
local co = require('co')
local cosocket = require('cosocket')
local lc = require('_lc')
local process = require('process')

local type, tostring, tonumber, select, unpack, pairs, pcall, error =
  type, tostring, tonumber, select, unpack, pairs, pcall, error
local setmetatable, rawget, rawset, floor = setmetatable, rawget, rawset,
  math.floor

local ngx = {}

-- (Not {...} in the vararg function: see lua/co.lua.)
local function pack(...) return {n = select('#', ...), ...} end

ngx.null = require('cjson').null

-- Core constants.
ngx.OK, ngx.ERROR, ngx.AGAIN, ngx.DONE, ngx.DECLINED = 0, -1, -2, -4, -5

------------------------------------------------------------------------------
-- Sockets.

ngx.socket = {tcp = cosocket.tcp}

-- socket.connect(host, port[, opts]) -> a connected socket, or nil, err.
function ngx.socket.connect(...)
  local sock = cosocket.tcp()
  local ok, err = sock:connect(...)
  if not ok then return nil, err end
  return sock
end

------------------------------------------------------------------------------
-- Time. ngx's clock is cached per event; this one is read on each call.

-- now() -> seconds since the epoch, with milliseconds.
function ngx.now()
  local s, us = uv.gettimeofday()
  return s + floor(us / 1000) / 1000
end

function ngx.time()
  return (uv.gettimeofday())
end

function ngx.update_time() end

-- sleep(seconds): waits without blocking (inside a coroutine).
function ngx.sleep(sec)
  sec = tonumber(sec)
  if not sec or sec < 0 then error('bad argument #1 to \'sleep\'', 2) end
  co.sleep(sec * 1000)
end

------------------------------------------------------------------------------
-- Log.

local names = {[0] = 'stderr', 'emerg', 'alert', 'crit', 'error', 'warn',
  'notice', 'info', 'debug'}
ngx.STDERR, ngx.EMERG, ngx.ALERT, ngx.CRIT, ngx.ERR, ngx.WARN, ngx.NOTICE,
  ngx.INFO, ngx.DEBUG = 0, 1, 2, 3, 4, 5, 6, 7, 8
ngx.log_level = ngx.WARN

local function piece(v)
  if v == nil then return 'nil' end
  if v == ngx.null then return 'null' end
  return tostring(v)
end

-- log(level, ...): one line on stderr, as nginx's error log writes it:
-- "2024/05/01 12:00:00 [error] 4242#0: [lua] file.lua:12: message".
function ngx.log(level, ...)
  if type(level) ~= 'number' or not names[level] then
    error('bad argument #1 to \'log\' (bad log level)', 2)
  end
  if level > ngx.log_level then return end
  local n = select('#', ...)
  local parts = {}
  for i = 1, n do parts[i] = piece((select(i, ...))) end
  local info = debug.getinfo(2, 'Sl')
  local where = info and (info.short_src .. ':' .. (info.currentline or 0))
    or '?'
  lc.write(2, ('%s [%s] %d#%d: [lua] %s: %s\n'):format(
    os.date('%Y/%m/%d %H:%M:%S'), names[level], process.pid,
    ngx.worker.id(), where, table.concat(parts, '', 1, n)))
end

------------------------------------------------------------------------------
-- Light threads and timers.

ngx.thread = {spawn = co.spawn, wait = co.wait, kill = co.kill}

local pending = 0
local started = setmetatable({}, {__mode = 'k'}) -- timer threads

local function check_timer(delay, fn, level)
  delay = tonumber(delay)
  if not delay or delay < 0 then
    error('bad argument #1 (invalid delay)', level)
  end
  if type(fn) ~= 'function' then
    error('bad argument #2 (function expected, got ' .. type(fn) .. ')', level)
  end
  return floor(delay * 1000)
end

-- timer.at(delay, fn, ...) -> true: after delay seconds, fn(false, ...)
-- runs in a coroutine of its own. The timer keeps the process alive.
local function at(delay, fn, ...)
  local ms = check_timer(delay, fn, 3)
  local n = select('#', ...)
  local args = n > 0 and pack(...) or nil
  local t = uv.new_timer()
  pending = pending + 1
  uv.update_time()
  t:start(ms, 0, function()
    t:close()
    pending = pending - 1
    local th = args and co.spawn(fn, false, unpack(args, 1, args.n))
      or co.spawn(fn, false)
    started[th] = true
  end)
  return true
end

-- timer.every(delay, fn, ...) -> true: fn(false, ...) every delay seconds.
local function every(delay, fn, ...)
  local ms = check_timer(delay, fn, 3)
  if ms <= 0 then error('bad argument #1 (invalid delay)', 2) end
  local n = select('#', ...)
  local args = pack(...)
  local t = uv.new_timer()
  pending = pending + 1
  uv.update_time()
  t:start(ms, ms, function()
    started[co.spawn(fn, false, unpack(args, 1, args.n))] = true
  end)
  return true
end

ngx.timer = {
  at = at,
  every = every,
  pending_count = function() return pending end,
  -- running_count() -> timer callbacks started and not ended.
  running_count = function()
    local n = 0
    for th in pairs(started) do
      if co.status(th) == 'dead' then started[th] = nil else n = n + 1 end
    end
    return n
  end,
}

------------------------------------------------------------------------------
-- Workers: from cluster in a worker, a single process otherwise.

local function cluster_worker()
  local cluster = package.loaded.cluster
  return cluster and cluster.isWorker and cluster.worker or nil
end

ngx.worker = {}

-- id() -> 0 in a single process or the primary; the worker's id - 1.
function ngx.worker.id()
  local w = cluster_worker()
  return w and w.id - 1 or 0
end

function ngx.worker.pid() return process.pid end

-- count() -> the -w count (auto: the CPUs) when there is one, 1 in a
-- single process; nil in a worker forked by a script (it is not told how
-- many siblings it has).
function ngx.worker.count()
  local n = process._workers
  if n == 'auto' then return lc.available_parallelism() end
  if tonumber(n) then return tonumber(n) end
  if cluster_worker() then return nil end
  return 1
end

function ngx.worker.exiting() return process._exiting == true end

------------------------------------------------------------------------------
-- The rest drivers look at.

ngx.config = {
  subsystem = 'http',
  ngx_lua_version = 10026,
  nginx_version = 1021004,
  debug = false,
  prefix = function() return process.cwd() .. '/' end,
  nginx_configure = function() return '' end,
}

-- get_phase() -> 'content' inside a coroutine (it may wait), 'init'
-- outside one.
function ngx.get_phase()
  return co.running() and 'content' or 'init'
end

------------------------------------------------------------------------------
-- Strings: URI escapes, base64, digests (OpenSSL's libcrypto, linked for
-- TLS, through the FFI; crc32 is zlib's), as ngx's.

local ffi = require('ffi')
-- In pcall: declared once per process (a second load of this file, or
-- another module's identical declarations, must not fail).
pcall(ffi.cdef, [[
typedef struct evp_md_st EVP_MD;
const EVP_MD *EVP_md5(void);
const EVP_MD *EVP_sha1(void);
int EVP_Digest(const void *data, size_t count, unsigned char *md,
  unsigned int *size, const EVP_MD *type, void *impl);
unsigned char *HMAC(const EVP_MD *evp_md, const void *key, int key_len,
  const unsigned char *d, size_t n, unsigned char *md,
  unsigned int *md_len);
int EVP_EncodeBlock(unsigned char *t, const unsigned char *f, int n);
int EVP_DecodeBlock(unsigned char *t, const unsigned char *f, int n);
unsigned long crc32(unsigned long crc, const unsigned char *buf,
  unsigned int len);
]])
local C = ffi.C
local digest_buf = ffi.new('unsigned char[64]')
local digest_len = ffi.new('unsigned int[1]')

local function str_arg(v, fn)
  if type(v) == 'number' then return tostring(v) end
  if v == nil then return '' end
  if type(v) ~= 'string' then
    error(("bad argument #1 to '%s' (string expected, got %s)"):format(fn,
      type(v)), 3)
  end
  return v
end

local function digest(md, s)
  C.EVP_Digest(s, #s, digest_buf, digest_len, md, nil)
  return ffi.string(digest_buf, digest_len[0])
end

local function hex(b)
  return (b:gsub('.', function(c) return ('%02x'):format(c:byte()) end))
end

function ngx.md5_bin(s) return digest(C.EVP_md5(), str_arg(s, 'md5_bin')) end
function ngx.md5(s) return hex(digest(C.EVP_md5(), str_arg(s, 'md5'))) end
function ngx.sha1_bin(s)
  return digest(C.EVP_sha1(), str_arg(s, 'sha1_bin'))
end

function ngx.hmac_sha1(key, s)
  key, s = str_arg(key, 'hmac_sha1'), str_arg(s, 'hmac_sha1')
  C.HMAC(C.EVP_sha1(), key, #key, s, #s, digest_buf, digest_len)
  return ffi.string(digest_buf, digest_len[0])
end

function ngx.crc32_long(s)
  s = str_arg(s, 'crc32_long')
  return tonumber(C.crc32(0, s, #s))
end
ngx.crc32_short = ngx.crc32_long

-- encode_base64(s[, no_padding]).
function ngx.encode_base64(s, no_padding)
  s = str_arg(s, 'encode_base64')
  local out = ffi.new('unsigned char[?]', 4 * math.ceil(#s / 3) + 1)
  local n = C.EVP_EncodeBlock(out, s, #s)
  local r = ffi.string(out, n)
  if no_padding then r = r:gsub('=+$', '') end
  return r
end

-- decode_base64(s) -> the bytes, or nil when s is not base64 (padding
-- may be left out, as ngx's).
function ngx.decode_base64(s)
  s = str_arg(s, 'decode_base64')
  local body = s:match('^([A-Za-z0-9+/]*)=?=?$')
  if not body or #body % 4 == 1 then return nil end
  local pad = (4 - #body % 4) % 4
  local padded = body .. ('='):rep(pad)
  local out = ffi.new('unsigned char[?]', #padded / 4 * 3 + 1)
  local n = C.EVP_DecodeBlock(out, padded, #padded)
  if n < 0 then return nil end
  return ffi.string(out, n - pad)
end

-- escape_uri(s): every byte but RFC 3986's unreserved ones as %XX (ngx's
-- default type, 2).
function ngx.escape_uri(s)
  s = str_arg(s, 'escape_uri')
  return (s:gsub('[^%w%-%._~]', function(c)
    return ('%%%02X'):format(c:byte())
  end))
end

-- unescape_uri(s): %XX decoded, '+' as a space; a bad escape stays.
function ngx.unescape_uri(s)
  s = str_arg(s, 'unescape_uri')
  return (s:gsub('+', ' '):gsub('%%(%x%x)', function(x)
    return string.char(tonumber(x, 16))
  end))
end

-- shared.NAME: the shared dict of that name (lua/shared.lua), nil when
-- none is declared.
ngx.shared = setmetatable({}, {__index = function(_, name)
  local ok, dict = pcall(require('shared').dict, name)
  return ok and dict or nil
end})

if rawget(_G, 'ngx') == nil then rawset(_G, 'ngx', ngx) end

return ngx
