-- co: code that waits without blocking the event loop.
--
-- A per-process pool of reusable coroutines. Each one runs a loop that
-- takes a job (fn and its arguments), runs it and yields DONE, so starting
-- a job is one resume, never a coroutine.create. A job that waits
-- (co.sleep, co.await, a cosocket) yields WAIT; the event that ends the wait
-- resumes it (wake). A coroutine goes back to the pool when its job returns;
-- one whose job raised is dead and dropped, one still waiting is in use.
--
--   co.run(fn, ...)      the entry point for request dispatch: runs fn in a
--                        pooled coroutine, true when it returned without
--                        waiting (no allocation then)
--   co.spawn(fn, ...)    -> thread: as ngx.thread.spawn, fn runs at once
--                        until it first waits
--   co.sleep(ms), co.await(fn, ...), co.wait(t, ...), co.all(t, ...),
--   co.kill(t), co.status(t), co.running(), co.pool_size([n])
--
-- An error nobody waits for goes to the process's uncaught-error policy
-- (process 'uncaughtException' listeners, else the traceback on stderr and
-- exit 1). A spawned thread's error is left for its parent to collect with
-- co.wait until the parent's job ends; co.wait then returns false, err, as
-- ngx.thread.wait does.
--
-- For I/O modules (lua/cosocket.lua): co._current(what), co._suspend(c,
-- token[, cancel]) and co._wake(c, token, ...) build other waits.

local process = require('process')
local timers = require('timers')
local uv = require('uv')
local lc = require('_lc')

local create, resume, yield, running, costatus = coroutine.create,
  coroutine.resume, coroutine.yield, coroutine.running, coroutine.status
local type, select, unpack, pairs, setmetatable, getmetatable, error,
  tonumber, tostring = type, select, unpack, pairs, setmetatable,
  getmetatable, error, tonumber, tostring

local co = {}

-- Tags a pooled coroutine yields to its resumer: its job returned (DONE),
-- or it waits for an event (WAIT). Anything else is a bare
-- coroutine.yield() of user code, resumed on the loop's next turn (DEFER).
local DONE, WAIT, DEFER = {}, {}, {}

local max_pool = 256
local pool, npool = {}, 0

-- Per coroutine, weak so that a coroutine whose waker is gone (a timer
-- closed, a socket collected) is collected too:
--   jobs[c]    false for a pooled coroutine without a handle, the Thread of
--              its job when there is one, nil for other coroutines
--   waiting[c] the token of the wait in progress (wake checks it)
--   cancels[c] what undoes that wait when the thread is killed
local weak = {__mode = 'k'}
local jobs = setmetatable({}, weak)
local waiting = setmetatable({}, weak)
local cancels = setmetatable({}, weak)

-- The body of every pooled coroutine: run a job, yield DONE, take the next
-- job from the resume that follows. A job is fn, the count n of its
-- arguments and the arguments: up to three in place, more in a table (a),
-- so a job's arguments cost no allocation and fn sees exactly n of them.
-- A job's results are dropped (a thread's job keeps them itself).
local function cycle(fn, n, a, b, d)
  while true do
    if n == 2 then fn(a, b)
    elseif n == 1 then fn(a)
    elseif n == 3 then fn(a, b, d)
    elseif n == 0 then fn()
    else fn(unpack(a, 1, n)) end
    fn, n, a, b, d = yield(DONE)
  end
end

-- Tables of arguments. (LuaJIT 2.1-20230119 compiles {...} made in a vararg
-- function and handed to coroutine.resume into code that allocates some
-- 12 KB a call: see resume_many.)
local function pack(...) return {n = select('#', ...), ...} end
local function list(...) return {...} end

local function new()
  local c = create(cycle)
  jobs[c] = false
  return c
end

local function take()
  if npool > 0 then
    local c = pool[npool]
    pool[npool] = nil
    npool = npool - 1
    return c
  end
  return new()
end

local function release(c)
  if npool < max_pool then
    npool = npool + 1
    pool[npool] = c
  end
end

------------------------------------------------------------------------------
-- Threads: the handles of spawned jobs (and, made on demand, of run jobs).

local Thread = {}
Thread.__index = Thread

local function is_thread(t) return getmetatable(t) == Thread end

local function new_thread(c)
  local t = setmetatable({co = c}, Thread)
  jobs[c] = t
  return t
end

function Thread:__tostring()
  return 'co.thread (' .. co.status(self) .. ')'
end

------------------------------------------------------------------------------
-- Uncaught errors.

local function describe(err, c)
  if type(err) == 'string' then return debug.traceback(c, err) end
  local mt = getmetatable(err)
  local what = (mt and mt.__tostring) and tostring(err)
    or require('util').inspect(err)
  return 'Uncaught ' .. what .. '\n' .. debug.traceback(c)
end

-- Runs as a nextTick callback, under the host's protected call, so the
-- error reaches process's policy: raised as it is for 'uncaughtException'
-- listeners; with none, the coroutine's traceback (the one that matters) is
-- printed here and the policy's quiet failure (error with no value) sets
-- exit code 1 and exits.
local function raise(t, err, c)
  if t and t.claimed then return end
  if process:listenerCount('uncaughtException') > 0 then error(err, 0) end
  lc.write(2, (describe(err, c):gsub('\n?$', '\n', 1)))
  error()
end

-- report(t, err, c): err raised in coroutine c (dead, its stack intact)
-- is uncaught unless t gets claimed (waited for) before the next tick.
local function report(t, err, c)
  process.nextTick(raise, t, err, c)
end

------------------------------------------------------------------------------
-- Running, finishing, waking.

local settle, finish

-- step(c, ...): resumes c with ... and deals with how it stopped. Returns
-- true when its job is over (returned or raised), false when it waits.
local function step(c, ...)
  return settle(c, resume(c, ...))
end

-- wake(c, token, ...): resumes c with ... if it still waits on token (a
-- second call, a late callback, a killed thread find nothing to do).
local function wake(c, token, ...)
  if waiting[c] ~= token then return false end
  waiting[c] = nil
  cancels[c] = nil
  return step(c, ...)
end

-- suspend(c, token[, cancel]): c (the running coroutine, from _current)
-- waits until wake(c, token, ...), and returns what wake passed. cancel()
-- undoes the wait (closes its timer) if the thread is killed meanwhile.
local function suspend(c, token, cancel)
  waiting[c] = token
  if cancel then cancels[c] = cancel end
  return yield(WAIT)
end

function settle(c, ok, tag)
  if tag == WAIT then return false end
  if tag == DONE then
    local t = jobs[c]
    if t then jobs[c] = false end
    release(c)
    if t then finish(t, t.ret or {n = 1, true}) end
    return true
  end
  if not ok then
    -- The coroutine is dead: never reused.
    local t = jobs[c]
    jobs[c], waiting[c], cancels[c] = nil, nil, nil
    if t then
      t.dead = c
      finish(t, {n = 2, false, tag})
    else
      report(nil, tag, c)
    end
    return true
  end
  -- coroutine.yield() called by the job itself: as ngx's scheduler does,
  -- resume it on the loop's next turn.
  waiting[c] = DEFER
  timers.setImmediate(wake, c, DEFER)
  return false
end

-- A parent keeps the set of its children still running or ended with an
-- error nobody collected (t.kids); claim(t) takes t out of it.
local function claim(t)
  t.claimed = true
  local p = t.parent
  if p then
    t.parent = nil
    if p.kids then p.kids[t] = nil end
  end
end

-- A parent's job ended: its children's errors nobody collected are
-- uncaught; children still running report their own when they end.
local function orphan(kids)
  for k in pairs(kids) do
    k.parent = nil
    local r = k.res
    if r and not r[1] and not k.claimed then report(k, r[2], k.dead) end
  end
end

-- finish(t, res): thread t ended; res is {n = count, ok, results...} (or
-- {n = 2, false, err}).
function finish(t, res)
  t.co, t.ret = nil, nil
  t.res = res
  local ok = res[1]
  local kids = t.kids
  if kids then
    t.kids = nil
    orphan(kids)
  end
  local ws = t.waiters
  if ws then
    t.waiters = nil
    for i = 1, #ws do
      local w = ws[i]
      if waiting[w.c] == w then
        claim(t)
        wake(w.c, w, unpack(res, 1, res.n))
      end
    end
  end
  local p = t.parent
  if ok or t.claimed then
    if p then claim(t) end
  elseif not (p and p.co) then
    report(t, res[2], t.dead)
  end
  -- Else the parent, still running, may yet wait for it (orphan decides).
end

local function check_fn(fn, what)
  if type(fn) ~= 'function' and not (type(fn) == 'table'
      and getmetatable(fn) and getmetatable(fn).__call) then
    error(what .. ': expected a function, got ' .. type(fn), 3)
  end
end

local HOWTO = ': not inside a coroutine; run this code in '
  .. 'co.spawn(function() ... end) (request handlers run in one)'

-- _current(what) -> the running pooled coroutine; raises (at the caller of
-- the function named what) outside one, or inside a coroutine of the
-- caller's own (whose yields would not come back to this scheduler).
local function current(what)
  local c = running()
  if c and jobs[c] ~= nil then return c end
  error(what .. HOWTO, 3)
end

------------------------------------------------------------------------------
-- The API.

-- More than three arguments go in a table. Kept out of the compiler: its
-- traces of this path (stitched around coroutine.resume) allocated some
-- 12 KB a call (spec/co_spec.lua checks).
local function resume_many(c, fn, n, ...)
  return resume(c, fn, n, list(...))
end
jit.off(resume_many)

-- run(fn, ...) -> true when fn returned (or raised) without waiting, false
-- when it waits (it goes on later, from the event it waits for). Its
-- results are dropped; an error goes to the uncaught-error policy, so a
-- caller that answers errors itself runs a function that catches them.
function co.run(fn, ...)
  local c = take()
  local n = select('#', ...)
  local ok, tag
  if n <= 3 then
    ok, tag = resume(c, fn, n, ...)
  else
    ok, tag = resume_many(c, fn, n, ...)
  end
  if tag == DONE then
    local t = jobs[c]
    if t then
      jobs[c] = false
      finish(t, {n = 1, true})
    end
    release(c)
    return true
  end
  return settle(c, ok, tag)
end

-- A thread's job, in its coroutine: fn's results kept in the thread.
local function body(t, ...)
  local fn = t.fn
  t.fn = nil
  t.ret = pack(true, fn(...))
end

-- spawn(fn, ...) -> thread. fn runs at once, until it returns or first
-- waits; spawn returns then. Works from anywhere (main chunk, callback,
-- another coroutine).
function co.spawn(fn, ...)
  check_fn(fn, 'co.spawn')
  local c = take()
  local t = new_thread(c)
  local p = running()
  local pt = p and jobs[p]
  if pt == false then pt = new_thread(p) end
  if pt then
    t.parent = pt
    local kids = pt.kids
    if kids then kids[t] = true else pt.kids = {[t] = true} end
  end
  t.fn = fn
  local n = select('#', ...) + 1
  if n <= 3 then
    step(c, body, n, t, ...)
  else
    step(c, body, n, list(t, ...))
  end
  return t
end

-- running() -> the thread of the running pooled coroutine, or nil.
function co.running()
  local c = running()
  if not c then return nil end
  local t = jobs[c]
  if t == false then t = new_thread(c) end
  return t or nil
end

-- sleep(ms): waits ms milliseconds (0: until the loop's next turn).
function co.sleep(ms)
  local c = current('co.sleep')
  local n = tonumber(ms)
  if not n or n < 0 or n ~= n then
    error('co.sleep: expected milliseconds >= 0, got ' .. tostring(ms), 2)
  end
  local timer = uv.new_timer()
  local function cancel() timer:close() end
  uv.update_time()
  timer:start(math.floor(n), 0, function()
    timer:close()
    wake(c, timer)
  end)
  suspend(c, timer, cancel)
end

-- await(fn, ...) -> what fn's callback got. Calls fn(..., cb); when cb
-- runs during that call, returns at once; a second call of cb is ignored.
function co.await(fn, ...)
  local c = current('co.await')
  check_fn(fn, 'co.await')
  local state, got = 'calling', nil
  local function cb(...)
    if state == 'calling' then
      state, got = 'done', pack(...)
    elseif state == 'waiting' then
      state = 'done'
      wake(c, cb, ...)
    end
  end
  local n = select('#', ...)
  if n == 0 then
    fn(cb)
  elseif n == 1 then
    fn(..., cb)
  else
    local args = list(...)
    args[n + 1] = cb
    fn(unpack(args, 1, n + 1))
  end
  if state == 'done' then return unpack(got, 1, got.n) end
  state = 'waiting'
  return suspend(c, cb)
end

local function check_threads(what, c, ...)
  local n = select('#', ...)
  if n == 0 then error(what .. ': expected at least one thread', 3) end
  for i = 1, n do
    local t = select(i, ...)
    if not is_thread(t) then
      error(('%s: argument #%d is not a thread (co.spawn returns them)')
        :format(what, i), 3)
    end
    if t.co == c then error(what .. ': a thread cannot wait for itself', 3) end
  end
  return n
end

-- wait(t1, ...) -> ok, results... of the first of the threads to end (ok
-- false and the error when it raised), as ngx.thread.wait. A thread that
-- already ended answers at once.
function co.wait(...)
  local c = current('co.wait')
  local n = check_threads('co.wait', c, ...)
  for i = 1, n do
    local t = select(i, ...)
    local r = t.res
    if r then
      claim(t)
      return unpack(r, 1, r.n)
    end
  end
  local w = {c = c}
  for i = 1, n do
    local t = select(i, ...)
    local ws = t.waiters
    if ws then ws[#ws + 1] = w else t.waiters = {w} end
  end
  return suspend(c, w)
end

-- all(t1, ...) -> {{ok, ...}, ...}: waits for every thread; each result is
-- {ok, results...} (or {false, err}) with its count in n.
function co.all(...)
  local c = current('co.all')
  local n = check_threads('co.all', c, ...)
  local out = {}
  for i = 1, n do
    local t = select(i, ...)
    if not t.res then co.wait(t) end
    claim(t)
    out[i] = t.res
  end
  return out
end
co.join = co.all

-- kill(t) -> true, or nil and why: ends a waiting thread where it waits
-- (its timer or socket is closed); waiters get false, 'killed'.
function co.kill(t)
  if not is_thread(t) then
    error('co.kill: expected a thread (co.spawn returns them)', 2)
  end
  if t.res then
    return nil, t.killed and 'already waited or killed' or 'already terminated'
  end
  local c = t.co
  if costatus(c) ~= 'suspended' then return nil, 'thread is running' end
  local cancel = cancels[c]
  jobs[c], waiting[c], cancels[c] = nil, nil, nil
  if cancel then cancel() end
  t.killed = true
  claim(t)
  finish(t, {n = 2, false, 'killed'})
  return true
end

-- status(t) -> 'running' | 'normal' (it started the running one) |
-- 'suspended' (waiting) | 'dead'.
function co.status(t)
  if not is_thread(t) then
    error('co.status: expected a thread (co.spawn returns them)', 2)
  end
  return t.co and costatus(t.co) or 'dead'
end

-- pool_size([n]) -> the most idle coroutines kept for reuse (default 256);
-- sets it when n is given.
function co.pool_size(n)
  if n ~= nil then
    n = tonumber(n)
    if not n or n < 0 then error('co.pool_size: expected a number >= 0', 2) end
    max_pool = math.floor(n)
    while npool > max_pool do
      pool[npool] = nil
      npool = npool - 1
    end
  end
  return max_pool
end

co._current = current
co._suspend = suspend
co._wake = wake
co.Thread = Thread

return co
