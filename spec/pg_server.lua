-- A real PostgreSQL for the specs: Debian's `postgresql` binaries (from
-- /usr/lib/postgresql/<version>/bin), a cluster made by initdb in a temp
-- dir as the postgres user (PostgreSQL refuses to run as root), listening
-- on a unix socket in that dir and on 127.0.0.1 at a free port. Stopped
-- by PID (immediate shutdown, then SIGKILL).
--
--   local srv = require('pg_server').start()
--   srv.url        -- libpq URL over the unix socket
--   srv.tcp_url    -- the same over TCP
--   srv:kill()     -- immediate shutdown (as a crash: no goodbye)
--   srv:restart()  -- the same cluster, the same port
--   srv:stop()     -- kills it and removes the temp dir
local h = require('helper')
local uv = require('uv')

local M = {}
local Server = {}
Server.__index = Server

-- sh(cmd) -> whether it exited 0, its output.
local function sh(cmd)
  local f = io.popen('(' .. cmd .. ') 2>&1; echo "exit=$?"')
  local out = f:read('*a')
  f:close()
  local code = tonumber(out:match('exit=(%d+)%s*$'))
  return code == 0, (out:gsub('exit=%d+%s*$', ''))
end

-- bindir() -> the newest /usr/lib/postgresql/*/bin with initdb, or nil.
function M.bindir()
  local ok, out = sh('ls -d /usr/lib/postgresql/*/bin/initdb 2>/dev/null | '
    .. 'sort -V | tail -n 1')
  if not ok or out == '' then return nil end
  return (out:gsub('/initdb%s*$', ''))
end

-- The postgres user drops root for every command.
local function as_postgres(args)
  local out = {'--reuid=postgres', '--regid=postgres', '--init-groups',
    '--'}
  for _, a in ipairs(args) do out[#out + 1] = a end
  return out
end

function Server:launch()
  self.proc = h.spawn(as_postgres({self.bin .. '/postgres', '-D', self.data,
    '-k', self.dir, '-p', tostring(self.port),
    -- fsync off: what is committed survives the process (the specs kill
    -- it), though not the machine.
    '-c', 'listen_addresses=127.0.0.1', '-c', 'fsync=off',
    '-c', 'full_page_writes=off',
    '-c', 'max_connections=60', '-c', 'shared_buffers=16MB'}),
    {cmd = 'setpriv'})
  local sock = self.dir .. '/.s.PGSQL.' .. self.port
  local ready = h.wait(function()
    if self.proc.exited then return true end
    if not uv.fs_stat(sock) then return false end
    local ok = sh(self.bin .. '/pg_isready -q -h ' .. self.dir .. ' -p ' ..
      self.port)
    return ok
  end, 20000)
  assert(ready and not self.proc.exited, 'postgres did not start: ' ..
    self.proc.stderr .. self.proc.stdout)
end

function M.start()
  local bin = M.bindir()
  assert(bin, 'PostgreSQL is missing: run vendor/setup.sh test')
  local dir = assert(uv.fs_mkdtemp(uv.os_tmpdir() .. '/luacluster-pg-XXXXXX'))
  assert(sh('chown postgres: ' .. dir))
  local self = setmetatable({bin = bin, dir = dir, data = dir .. '/data',
    port = h.free_port()}, Server)
  local p = h.spawn(as_postgres({bin .. '/initdb', '-D', self.data,
    '-A', 'trust', '-U', 'postgres', '-E', 'UTF8', '--locale=C',
    '--no-sync'}), {cmd = 'setpriv', cwd = dir})
  assert(p:wait(60000), 'initdb timed out')
  assert(p.code == 0, 'initdb failed: ' .. p.stderr .. p.stdout)
  self.url = ('postgresql://postgres@/postgres?host=%s&port=%d')
    :format(dir, self.port)
  self.tcp_url = ('postgresql://postgres@127.0.0.1:%d/postgres')
    :format(self.port)
  self:launch()
  return self
end

-- kill(): immediate shutdown (SIGQUIT: every backend ends at once, no
-- checkpoint), as close to a crash as a restart allows; waits.
function Server:kill()
  local p = self.proc
  if not p or p.exited then return end
  p:kill('sigquit')
  if not p:wait(5000) then
    p:kill('sigkill')
    p:wait(5000)
  end
end

function Server:restart()
  self:kill()
  self:launch()
end

function Server:stop()
  self:kill()
  sh('rm -rf ' .. self.dir)
end

return M
