-- cluster.supervision.reload: the rolling reload (cluster.reload([cb]),
-- SIGHUP): one worker at a time, a new one forked into the old one's slot
-- (cluster/supervision/restart.lua) and listening before the old one is
-- told to drain (cluster/supervision/shutdown.lua, retire), so no request
-- is refused or dropped. Emits 'reload'(err) when done.

local state = require('cluster.supervision.state')
local readiness = require('cluster.supervision.readiness')
local restart = require('cluster.supervision.restart')
local shutdown = require('cluster.supervision.shutdown')
local utils = require('cluster.utils')

local M = {}

-- Runs fn(item, done) for each item in turn; done(e) stops on an error;
-- then cb(e).
local function each(list, fn, cb)
  local i = 0
  local function step(e)
    if e then return cb(e) end
    i = i + 1
    if i > #list then return cb() end
    fn(list[i], step)
  end
  step()
end

-- Replaces worker w: its successor listens (or is online, if w never
-- listened) before w drains. done(err) once w is gone, or the successor
-- exited first.
local function replace(w, done)
  if w.state == 'dead' then return done() end
  local wanted = w.state == 'listening' and 'listening' or 'online'
  local nw = restart.fork(w._env, restart.slot(w))
  local settled = false
  local on_exit
  local function on_ready()
    if settled then return end
    settled = true
    nw:off('exit', on_exit)
    shutdown.retire(w, function() done() end)
  end
  on_exit = function(code, signal)
    if settled then return end
    settled = true
    nw:off(wanted, on_ready)
    done(utils.error('ERR_RELOAD_FAILED', ('worker %d, replacing worker ' ..
      '%d, exited (%s) before %s'):format(nw.id, w.id,
      signal or ('code ' .. tostring(code)), wanted)))
  end
  nw:once(wanted, on_ready)
  nw:once('exit', on_exit)
end

-- reload([cb]): cb(err), err nil on success.
function M.reload(cb)
  local log = state.log
  cb = cb or function(e)
    if e then state.error('reload failed: %s', e.message) end
  end
  if state.shutting then
    return process.nextTick(cb, utils.error('ERR_SHUTTING_DOWN',
      'cannot reload: shutting down'))
  end
  if state.reloading then
    return process.nextTick(cb, utils.error('ERR_RELOAD_IN_PROGRESS',
      'a reload is already in progress'))
  end
  state.reloading = true
  readiness.notify('RELOADING=1')
  local old = {}
  for _, w in pairs(state.cluster.workers) do
    if w.state ~= 'dead' and not w._replaced then old[#old + 1] = w end
  end
  table.sort(old, function(a, b) return a.id < b.id end)
  log('reloading %d worker(s), one at a time', #old)
  each(old, replace, function(e)
    state.reloading = false
    readiness.notify('READY=1')
    if not e then log('reload done') end
    state.cluster:emit('reload', e)
    cb(e)
  end)
end

return M
