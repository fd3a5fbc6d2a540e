-- test: `luacluster test [busted options] [specs...]`, busted's own runner
-- inside the runtime, so specs require('http'), start timers and run the
-- event loop as a script does.
--
-- busted reads its options from `arg` (lua/init.lua puts the command's
-- arguments there) and its defaults from a .busted file in the working
-- directory, as the busted command does; with neither, it runs every
-- *_spec.lua under spec/.

local process = require('process')

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

return test
