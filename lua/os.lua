-- os: Lua's os table, extended with Node's os functions. Lua's own
-- functions (os.time, os.getenv, ...) keep working.

local uv = require('uv')
local lc = require('_lc')

local os = os

-- cpus() -> sequence of {model, speed, times = {user, nice, sys, idle,
-- irq}} (times in ms, as Node).
function os.cpus()
  local out = {}
  for i, c in ipairs(uv.cpu_info() or {}) do
    out[i] = {model = c.model, speed = c.speed, times = {user = c.times.user,
      nice = c.times.nice, sys = c.times.sys, idle = c.times.idle,
      irq = c.times.irq}}
  end
  return out
end

function os.availableParallelism() return lc.available_parallelism() end
function os.totalmem() return uv.get_total_memory() end
function os.freemem() return uv.get_free_memory() end
function os.loadavg() return {uv.loadavg()} end
function os.hostname() return uv.os_gethostname() end
function os.uptime() return (uv.uptime()) end
function os.platform() return process and process.platform or 'linux' end
function os.arch() return process and process.arch or jit.arch end
function os.tmpdir() return (uv.os_tmpdir():gsub('(.)/$', '%1')) end
function os.homedir() return uv.os_homedir() end
function os.type() return uv.os_uname().sysname end
function os.release() return uv.os_uname().release end
function os.version() return uv.os_uname().version end
function os.machine() return uv.os_uname().machine end
function os.endianness() return require('ffi').abi('le') and 'LE' or 'BE' end

-- Counts the one bits of a netmask ("255.255.0.0" or "ffff:ffff::").
local function prefix_len(mask)
  local bits = 0
  local v6 = mask:find(':', 1, true)
  for part in mask:gmatch(v6 and '[^:]+' or '[^.]+') do
    local n = tonumber(part, v6 and 16 or 10) or 0
    while n > 0 do
      bits = bits + n % 2
      n = math.floor(n / 2)
    end
  end
  return bits
end

-- networkInterfaces() -> name -> sequence of {address, netmask, family
-- ('IPv4'|'IPv6'), mac ('aa:bb:...'), internal, cidr[, scopeid]}, as Node.
function os.networkInterfaces()
  local out = {}
  for name, list in pairs(uv.interface_addresses() or {}) do
    local addrs = {}
    for i, a in ipairs(list) do
      local v6 = a.family == 'inet6'
      addrs[i] = {
        address = a.ip, netmask = a.netmask,
        family = v6 and 'IPv6' or 'IPv4',
        mac = (a.mac or ''):gsub('.', function(c)
          return ('%02x:'):format(c:byte())
        end):sub(1, -2),
        internal = a.internal,
        cidr = a.ip .. '/' .. prefix_len(a.netmask or ''),
        scopeid = v6 and (a.scopeid or 0) or nil,
      }
    end
    out[name] = addrs
  end
  return out
end
function os.userInfo()
  local p = uv.os_get_passwd()
  return {username = p.username, uid = p.uid, gid = p.gid, shell = p.shell,
    homedir = p.homedir}
end
-- getPriority([pid]) and setPriority([pid, ]priority): a process's nice
-- value (this one by default), as Node's; errors raise with their code.
function os.getPriority(pid)
  local p, err = uv.os_getpriority(pid or 0)
  if not p then
    error(require('internal.errors').sys(err, 'uv_os_getpriority'), 2)
  end
  return p
end
function os.setPriority(pid, priority)
  if priority == nil then pid, priority = 0, pid end
  local ok, err = uv.os_setpriority(pid, priority)
  if not ok then
    error(require('internal.errors').sys(err, 'uv_os_setpriority'), 2)
  end
end

os.EOL = '\n'
os.devNull = '/dev/null'
os.constants = {signals = {}}
for name, num in pairs(uv.constants) do
  if type(name) == 'string' and name:match('^SIG[A-Z0-9]+$') then
    os.constants.signals[name] = num
  end
end

return os
