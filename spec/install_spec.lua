-- Installing: `make install` (cmake --install, under a prefix), the Debian
-- package CPack builds (`make deb`) with the licence as its copyright
-- file, and the man page, kept in step with
-- `luacluster --help`. Runs against the build folder of the binary under
-- test, into temporary folders.
local h = require('helper')
local uv = require('uv')

local build = h.bin:match('^(.*)/[^/]*$')
local function exists(path) return uv.fs_stat(path) ~= nil end
local function cached(name)
  local f = io.open(build .. '/CMakeCache.txt')
  if not f then return nil end
  local text = f:read('*a')
  f:close()
  return text:match('\n' .. name .. ':[%w_]+=([^\n]*)')
end

local function tmpdir()
  return assert(uv.fs_mkdtemp(os.tmpname():gsub('[^/]*$', '') ..
    'lc-install-XXXXXX'))
end

local function read(path)
  local f = assert(io.open(path, 'rb'))
  local s = f:read('*a')
  f:close()
  return s
end

local function version()
  return h.run({'-v'}).stdout:match('^luacluster (%S+)')
end

describe('install', function()
  local dirs = {}
  after_each(function()
    h.cleanup()
    for _, d in ipairs(dirs) do os.execute("rm -rf '" .. d .. "'") end
    dirs = {}
  end)
  local function tmp()
    local d = tmpdir()
    dirs[#dirs + 1] = d
    return d
  end

  it('cmake --install --prefix puts bin/luacluster, its man page and the '
      .. 'licence there', function()
    if not exists(build .. '/CMakeCache.txt') then
      return pending('the binary under test is not in a build folder')
    end
    local prefix = tmp()
    local p = h.run({'--install', build, '--prefix', prefix},
      {cmd = 'cmake'})
    assert.equal(0, p.code, p.stdout .. p.stderr)
    assert.is_true(exists(prefix .. '/share/man/man1/luacluster.1'))
    assert.equal(read(h.root .. '/LICENSE'),
      read(prefix .. '/share/doc/luacluster/copyright'))
    local v = h.run({'-v'}, {cmd = prefix .. '/bin/luacluster'})
    assert.equal(0, v.code)
    assert.matches('^luacluster ' .. version():gsub('%p', '%%%0') .. '\n',
      v.stdout)
  end)

  it('builds a .deb whose binary runs and which depends on libc6 and ' ..
      'libssl3 alone',
      function()
    if not exists(build .. '/CPackConfig.cmake') then
      return pending('the binary under test is not in a build folder')
    end
    local out = tmp()
    local p = h.run({'-G', 'DEB', '--config', build .. '/CPackConfig.cmake',
      '-B', out}, {cmd = 'cpack', timeout = 60000})
    assert.equal(0, p.code, p.stdout .. p.stderr)
    local arch = io.popen('dpkg --print-architecture'):read('*l')
    local deb = out .. '/luacluster_' .. version() .. '_' .. arch .. '.deb'
    assert.is_true(exists(deb), 'no ' .. deb)

    local root = tmp()
    assert.equal(0, h.run({'-x', deb, root}, {cmd = 'dpkg-deb'}).code)
    local v = h.run({'-v'}, {cmd = root .. '/usr/bin/luacluster'})
    assert.equal(0, v.code)
    assert.matches('^luacluster %d', v.stdout)
    assert.is_true(exists(root .. '/usr/share/man/man1/luacluster.1'))

    -- The licence, where Debian's policy puts it.
    local files = h.run({'-c', deb}, {cmd = 'dpkg-deb'}).stdout
    assert.matches('\n[^\n]* %./usr/share/doc/luacluster/copyright\n',
      '\n' .. files)
    assert.equal(read(h.root .. '/LICENSE'),
      read(root .. '/usr/share/doc/luacluster/copyright'))
    -- The changelog (gzipped, as the policy wants), the examples and the
    -- systemd units.
    local doc = root .. '/usr/share/doc/luacluster/'
    local log = io.popen('gzip -dc ' .. doc .. 'changelog.gz'):read('*a')
    assert.matches('^luacluster %(' .. version():gsub('%p', '%%%0') .. '%)',
      log)
    for _, f in ipairs({'hello_cluster.lua', 'luacluster.service',
        'luacluster.socket', 'todo_api/server.lua'}) do
      assert.equal(read(h.root .. '/examples/' .. f),
        read(doc .. 'examples/' .. f))
    end

    local depends = h.run({'-f', deb, 'Depends'}, {cmd = 'dpkg-deb'}).stdout
    if cached('SANITIZE') == 'ON' then
      -- The sanitizers' run-time libraries come on top.
      assert.matches('libc6', depends)
    else
      -- OpenSSL is linked dynamically (Debian's security updates).
      local list = {}
      for d in depends:gsub('\n$', ''):gmatch('[^,]+') do
        list[#list + 1] = d:match('^%s*(%S+)')
      end
      table.sort(list)
      assert.same({'libc6', 'libssl3'}, list)
    end
    local name = h.run({'-f', deb, 'Package'}, {cmd = 'dpkg-deb'}).stdout
    assert.equal('luacluster\n', name)
  end)
end)

describe('man page', function()
  local man = read(h.root .. '/man/luacluster.1')
  local help = h.run({'--help'}).stdout

  -- section(text, start, stop) -> the lines between a heading and the next.
  local function section(text, start, stop)
    local a = assert(text:find(start, 1, true), start)
    local b = text:find(stop, a + #start, true) or #text + 1
    return text:sub(a, b - 1)
  end

  -- Options: -x and --xxx as they appear at the start of an entry.
  local function options_of_help()
    local set = {}
    for line in section(help, 'Options:', '\n\n'):gmatch('[^\n]+') do
      local lead = line:match('^  (%-[^ ].-)  ') or line:match('^  (%-%S+)$')
      if lead then
        for o in lead:gmatch('%-%-?[%w][%w-]*') do set[o] = true end
      end
    end
    return set
  end

  local function options_of_man()
    local set = {}
    -- Each entry of OPTIONS is the line after a .TP.
    for head in section(man, '.SH OPTIONS', '\n.SH '):gmatch(
        '%.TP\n([^\n]*)') do
      head = head:gsub('\\%-', '-'):gsub('\\f%a', '')
      for o in head:gmatch('%f[%w-]%-%-?[%w][%w-]*') do set[o] = true end
    end
    return set
  end

  local function keys(t)
    local out = {}
    for k in pairs(t) do out[#out + 1] = k end
    table.sort(out)
    return out
  end

  it('has every option of --help, and no other', function()
    local from_help, from_man = options_of_help(), options_of_man()
    assert.is_true(#keys(from_help) >= 8, table.concat(keys(from_help), ' '))
    assert.same(keys(from_help), keys(from_man))
  end)

  it('names every variable and command of --help, and no other of ours',
      function()
    local function vars(text)
      local set = {}
      for v in text:gmatch('LUACLUSTER_[%u_]+') do set[v] = true end
      return keys(set)
    end
    assert.same(vars(section(help, 'Environment:', '\n\n')),
      vars(section(man, '.SH ENVIRONMENT', '\n.SH ')))
    assert.matches('\n  test  ', section(help, 'Commands:', '\n\n'))
    assert.matches('\n%.B test\n', section(man, '.SH COMMANDS', '\n.SH '))
  end)

  it('gives the version of the binary', function()
    local v = h.run({'-v'}).stdout:match('^luacluster (%S+)')
    assert.matches('\n%.TH LUACLUSTER 1 "[^"]*" "luacluster '
      .. v:gsub('%p', '%%%0') .. '"', man)
  end)

  it('reads as a man page (no groff warnings)', function()
    local ok, p = pcall(h.run, {'-man', '-Tutf8', '-ww', '-z', h.root
      .. '/man/luacluster.1'}, {cmd = 'groff'})
    if not ok then return pending('groff is not installed') end
    assert.equal('', p.stderr)
    assert.equal(0, p.code)
  end)
end)
