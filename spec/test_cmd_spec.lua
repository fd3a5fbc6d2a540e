-- `luacluster test`: busted's runner inside the runtime, over spec/ or the
-- paths given, in folders made for each spec as a user's project would be.
local h = require('helper')
local uv = require('uv')

-- project(files) -> a new folder holding files (path -> content).
local function project(files)
  local dir = assert(uv.fs_mkdtemp(os.tmpname():gsub('[^/]*$', '') ..
    'lc-test-XXXXXX'))
  for path, content in pairs(files) do
    local sub = path:match('^(.*)/')
    if sub then os.execute("mkdir -p '" .. dir .. '/' .. sub .. "'") end
    local f = assert(io.open(dir .. '/' .. path, 'wb'))
    f:write(content)
    f:close()
  end
  return dir
end

local PASSING = [[
local http = require('http')
describe('a handler', function()
  it('answers 200 (http.inject)', function()
    local r = http.inject(function(req, res)
      res:writeHead(200, {['Content-Type'] = 'text/plain'})
      res:finish('hi ' .. req.url)
    end, {url = '/x'})
    assert.equal(200, r.statusCode)
    assert.equal('hi /x', r.body)
  end)
  it('sees a timer fire', function()
    local fired = false
    setTimeout(function() fired = true end, 10)
    local t = require('uv').new_timer()
    local done = false
    t:start(50, 0, function() done = true t:close() end)
    while not done do require('_lc').run('once') end
    assert.is_true(fired)
  end)
end)
]]

local FAILING = [[
describe('math', function()
  it('passes', function() assert.equal(2, 1 + 1) end)
  it('fails', function() assert.equal(3, 1 + 1) end)
end)
]]

describe('luacluster test', function()
  local dirs = {}
  local function dir(files)
    local d = project(files)
    dirs[#dirs + 1] = d
    return d
  end

  after_each(function()
    h.cleanup()
    for _, d in ipairs(dirs) do os.execute("rm -rf '" .. d .. "'") end
    dirs = {}
  end)

  it('runs spec/ and exits 0 when every spec passes', function()
    local d = dir({['spec/handler_spec.lua'] = PASSING})
    local p = h.run({'test'}, {cwd = d})
    assert.equal(0, p.code, p.stdout .. p.stderr)
    assert.matches('2 successes / 0 failures / 0 errors', p.stdout)
  end)

  it('exits non-zero when a spec fails, and says which', function()
    local d = dir({['spec/math_spec.lua'] = FAILING})
    local p = h.run({'test'}, {cwd = d})
    assert.is_true(p.code ~= 0)
    assert.matches('1 success / 1 failure', p.stdout)
    assert.matches('math fails', p.stdout)
  end)

  it('runs the paths given and passes busted\'s options through',
      function()
    local d = dir({['spec/math_spec.lua'] = FAILING,
      ['other/ok_spec.lua'] = PASSING})
    local p = h.run({'test', 'other'}, {cwd = d})
    assert.equal(0, p.code, p.stdout .. p.stderr)
    assert.matches('2 successes', p.stdout)
    -- --filter: only the passing spec of the failing file runs.
    p = h.run({'test', '--filter=passes', 'spec'}, {cwd = d})
    assert.equal(0, p.code, p.stdout .. p.stderr)
    assert.matches('1 success / 0 failures', p.stdout)
    -- -o: another of busted's output handlers.
    p = h.run({'test', '-o', 'TAP', 'spec'}, {cwd = d})
    assert.is_true(p.code ~= 0)
    assert.matches('not ok 2 %- math fails', p.stdout)
    -- busted's own errors, named after the command.
    p = h.run({'test', '--no-such-option'}, {cwd = d})
    assert.is_true(p.code ~= 0)
    assert.matches('^luacluster test: error: ', p.stderr)
  end)

  it('reads a .busted file as busted does', function()
    local d = dir({['checks/a_check.lua'] = PASSING,
      ['.busted'] = "return {default = {ROOT = {'checks'},"
        .. " pattern = '_check'}}\n"})
    local p = h.run({'test'}, {cwd = d})
    assert.equal(0, p.code, p.stdout .. p.stderr)
    assert.matches('2 successes', p.stdout)
  end)

  it('a file named test in the folder runs as a script instead', function()
    local d = dir({test = 'print("the script")'})
    local p = h.run({'test'}, {cwd = d})
    assert.equal(0, p.code)
    assert.equal('the script\n', p.stdout)
    -- test.lua is a script name, never the command.
    d = dir({['test.lua'] = 'print("test.lua", ...)'})
    p = h.run({'test.lua', 'a'}, {cwd = d})
    assert.equal('test.lua\ta\n', p.stdout)
  end)

  it('without busted: says how to install it, exits 1', function()
    local d = dir({['spec/math_spec.lua'] = FAILING})
    local p = h.run({'test'}, {cwd = d,
      env = {LUA_PATH = d .. '/?.lua', LUA_CPATH = d .. '/?.so'}})
    assert.equal(1, p.code)
    assert.matches('busted is not installed', p.stderr)
    assert.matches('lua%-busted', p.stderr)
    assert.matches('luarocks', p.stderr)
    assert.equal('', p.stdout)
  end)
end)
