-- test: `luacluster test [busted options] [specs...]`, busted's own runner
-- inside the runtime, so specs require('http'), start timers and run the
-- event loop as a script does.
--
-- busted reads its options from `arg` (lua/init.lua puts the command's
-- arguments there) and its defaults from a .busted file in the working
-- directory, as the busted command does; with neither, it runs every
-- *_spec.lua under spec/.

local process = require('process')
local uv = require('uv')
local lc = require('_lc')

local test = {}

local MISSING = [[
luacluster test: busted is not installed. It runs the specs; install it with
  apt-get install lua-busted                 (Debian, Ubuntu)
  luarocks --lua-version 5.1 install busted  (elsewhere)
]]

-- busted names itself after the file that calls its runner: a chunk named
-- "@luacluster test" makes its usage and messages read `luacluster test`.
-- Not a tail call, or that frame would be gone.
local CALL = 'local runner = ...\nrunner({standalone = false})\nreturn true'

-- run(): runs the specs, then exits: 0 when every spec passed, 1 when one
-- failed or raised (busted's own codes), 1 with a message when busted is
-- missing.
function test.run()
  local ok, runner = pcall(require, 'busted.runner')
  if not ok then
    if tostring(runner):find("module 'busted.runner' not found", 1, true) then
      io.stderr:write(MISSING)
    else
      io.stderr:write('luacluster test: cannot load busted: ',
        tostring(runner), '\n')
    end
    return process.exit(1)
  end
  local call = assert(loadstring(CALL, '@luacluster test'))
  -- busted reports failures by raising nil once its output is written
  -- (error() is its quiet exit); anything else raised is an error of ours
  -- or of busted's, shown with its traceback.
  local done, err = xpcall(call, function(e)
    if e == nil then return nil end
    return debug.traceback(tostring(e), 2)
  end, runner)
  if not done and err ~= nil then
    io.stderr:write('luacluster test: ', err, '\n')
  end
  -- As busted's own command, the run ends here: a timer or a server a
  -- spec left behind does not keep the process alive.
  process.exit(done and 0 or 1)
end

-- For specs (busted under `luacluster test`): the event loop as plain
-- code, from the main chunk (a spec body), never from a callback.
--
-- wait(cond, timeout_ms) -> true when cond() became true, false when the
-- deadline passed first. Runs the event loop meanwhile. An error raised by
-- a callback meanwhile fails the spec (raised again here) instead of
-- ending the runner through the uncaughtException policy.
function test.wait(cond, timeout)
  timeout = timeout or 5000
  uv.update_time()
  local deadline = uv.now() + timeout
  if cond() then return true end
  local caught
  local function catch(err)
    if caught == nil then caught = {err} end
  end
  process:on('uncaughtException', catch)
  local tick = uv.new_timer()
  tick:start(10, 10, function() end)
  local ok = false
  while true do
    lc.run('once')
    if caught then break end
    if cond() then ok = true break end
    uv.update_time()
    if uv.now() >= deadline then break end
  end
  tick:close()
  lc.run('nowait')
  process:off('uncaughtException', catch)
  if caught then error(caught[1], 0) end
  return ok
end

-- sleep(ms): runs the loop for ms milliseconds.
function test.sleep(ms)
  local done = false
  local t = uv.new_timer()
  uv.update_time() -- from now, not from the loop's last turn
  t:start(ms, 0, function() done = true end)
  test.wait(function() return done end, ms + 1000)
  t:close()
end

-- await(fn, timeout): fn(cb) starts something async that calls cb(...)
-- once; returns what cb got (raises on timeout).
function test.await(fn, timeout)
  local got
  fn(function(...) got = {n = select('#', ...), ...} end)
  assert(test.wait(function() return got ~= nil end, timeout or 5000),
    'timed out waiting for a callback')
  return unpack(got, 1, got.n)
end

return test
