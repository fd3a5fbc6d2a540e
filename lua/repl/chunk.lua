-- repl.chunk: what the REPL (lua/repl.lua) does with a typed input: it
-- compiles it in the REPL's scope (an expression first, so that its values
-- print, then a statement; a top-level `local` declares its names in the
-- scope for the session), runs it, and prints its values or its error.
--   compile(src) -> fn, or nil, err, incomplete; fn, nil, false, true for
--     an expression
--   run(fn, expr), describe(err), declared() -> the names `local` made

local lc = require('_lc')
local util = require('util')

local concat = table.concat
local write = lc.write

local M = {}

-- The REPL's scope: what a top-level `local` declares lives on here, and
-- every chunk typed runs in it; other names are _G's, read and written.

local declared, values = {}, {}
local scope = setmetatable({}, {
  __index = function(_, k)
    if declared[k] then return values[k] end
    return _G[k]
  end,
  __newindex = function(_, k, v)
    if declared[k] then values[k] = v else _G[k] = v end
  end,
})

local function is_name(s)
  return s:match('^[%a_][%w_]*$') ~= nil and not ({['and'] = 1,
    ['break'] = 1, ['do'] = 1, ['else'] = 1, ['elseif'] = 1, ['end'] = 1,
    ['false'] = 1, ['for'] = 1, ['function'] = 1, ['if'] = 1, ['in'] = 1,
    ['local'] = 1, ['nil'] = 1, ['not'] = 1, ['or'] = 1, ['repeat'] = 1,
    ['return'] = 1, ['then'] = 1, ['true'] = 1, ['until'] = 1,
    ['while'] = 1})[s]
end

-- unlocal(src) -> src without the `local` that starts it, and the names it
-- declared ({} when it does not start with one): `local x, y = 1, 2` runs
-- as `x, y = 1, 2` with x and y in the REPL's scope, `local function f`
-- as `function f`. A `local` further in (in a block, after a `;`) is left
-- as it is.
local function unlocal(src)
  local fname, rest = src:match('^%s*local%s+function%s+([%a_][%w_]*)(.*)$')
  if fname and is_name(fname) then
    return 'function ' .. fname .. rest, {fname}
  end
  local list, tail = src:match('^%s*local%s+([%a_][%w_%s,]-)%s*(=.*)$')
  if not list then
    list = src:match('^%s*local%s+([%a_][%w_%s,]-)%s*;?%s*$')
    tail = list and ''
  end
  if not list then return src, {} end
  local names = {}
  for n in (list .. ','):gmatch('%s*([^,]-)%s*,') do
    if not is_name(n) then return src, {} end
    names[#names + 1] = n
  end
  if tail == '' then
    -- `local x`: x is nil from now on.
    return table.concat(names, ', ') .. ' = nil', names
  end
  return table.concat(names, ', ') .. ' ' .. tail, names
end

------------------------------------------------------------------------------
-- Compiling and running a chunk.

-- compile(src) -> fn, or nil, err, incomplete. An expression list is tried
-- first so that `1 + 1` prints 2: as the arguments of a call to the chunk's
-- first argument (see run), not as `return src`, whose tail call would take
-- the chunk's line from errors (`error('x')` would read 'x', not
-- 'stdin:1: x'). A chunk whose error is at its end ('<eof>') is incomplete:
-- the caller reads another line and tries again.
local function compile(src)
  local fn = loadstring('return (...)(' .. src .. '\n)', '=stdin')
  if fn then return setfenv(fn, scope), nil, false, true end
  local err
  fn, err = loadstring(src, '=stdin')
  if not fn then return nil, err, err:find("near '<eof>'$") ~= nil end
  -- A statement: one that starts with `local` declares its names in the
  -- REPL's scope (once it compiles as written, so errors read as typed).
  local plain, names = unlocal(src)
  if names[1] then
    local fn2 = loadstring(plain, '=stdin')
    if fn2 then
      fn = function(...)
        for _, n in ipairs(names) do
          if not declared[n] then
            declared[n] = true
            values[n] = nil
          end
        end
        return fn2(...)
      end
      setfenv(fn2, scope)
      return fn
    end
  end
  return setfenv(fn, scope)
end

local function pack(...) return {n = select('#', ...), ...} end

-- Traceback handler: the error and the stack down to the chunk, without the
-- REPL's own frames below it.
local function catch(e)
  local tb = debug.traceback('', 2)
  local cut = tb:find("\n%s*%[C%]: in function 'xpcall'")
  if cut then tb = tb:sub(1, cut - 1) end
  return {err = e, tb = (tb:gsub('^\n', ''))}
end

-- describe(err) -> the text an error shows as (as the runtime's policy
-- prints an uncaught one).
local function describe(err)
  if type(err) == 'string' then return err end
  local mt = getmetatable(err)
  if mt and mt.__tostring then return 'Uncaught ' .. tostring(err) end
  return 'Uncaught ' .. util.inspect(err)
end

-- show(...) prints values tab-separated, as console.dir prints one; `_`
-- gets the first. Nothing to show prints nothing.
local function show(...)
  local n = select('#', ...)
  if n == 0 then return end
  local out = {}
  for i = 1, n do out[i] = util.inspect((select(i, ...))) end
  _G._ = (...)
  write(1, concat(out, '\t') .. '\n')
end

-- run(fn, expr): calls a compiled chunk and prints its values or its error.
-- An expression chunk hands its values to pack (its first argument).
local function run(fn, expr)
  local r = pack(xpcall(fn, catch, pack))
  if not r[1] then
    local e = r[2]
    -- Ctrl-C (runtime/interrupt.c): where it struck says nothing.
    if type(e.err) == 'string' and e.err:find('interrupted %(Ctrl%-C%)$')
    then
      return write(2, 'interrupted (Ctrl-C)\n')
    end
    return write(2, describe(e.err) .. (e.tb ~= '' and '\n' .. e.tb or '')
      .. '\n')
  end
  if expr then return show(unpack(r[2], 1, r[2].n)) end
  return show(unpack(r, 2, r.n))
end

M.compile, M.run, M.describe, M.scope = compile, run, describe, scope

-- declared() -> the names a top-level `local` declared so far (a set).
function M.declared() return declared end

return M
