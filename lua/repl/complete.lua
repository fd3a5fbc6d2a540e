-- repl.complete: Tab completion for the REPL (lua/repl.lua).
--   candidates(before) -> the word typed, the sorted names it may complete
--   to, or nil: `str` -> `string`, `string.fo` -> `string.format`, `s:up`
--   -> `s:upper` for a string s; a top-level `local` of the session
--   completes too.

local declared = require('repl.chunk').declared

local M = {}

local keywords = {}
for w in ([[and break do else elseif end false for function if in local nil
    not or repeat return then true until while]]):gmatch('%a+') do
  keywords[#keywords + 1] = w
end

-- names(v) -> the string keys reachable from v by indexing: its own keys
-- and those of its __index tables (classes), a few levels up.
local function names(v)
  local out, seen = {}, {}
  if type(v) == 'string' then v = string end
  -- os gets Node's functions on its first lookup of a name it lacks.
  if rawequal(v, os) then local _ = os.EOL end
  for _ = 1, 8 do
    if type(v) ~= 'table' or seen[v] then break end
    seen[v] = true
    for k in pairs(v) do
      if type(k) == 'string' and k:match('^[%a_][%w_]*$') then
        out[k] = true
      end
    end
    local mt = getmetatable(v)
    v = type(mt) == 'table' and rawget(mt, '__index') or nil
  end
  return out
end

-- candidates(before) -> prefix typed, sorted list of completions.
function M.candidates(before)
  local path = before:match('[%a_][%w_%.:]*$')
  if not path then return nil end
  local base, sep, word = path:match('^(.-)([%.:]?)([%w_]*)$')
  local pool
  if sep == '' then
    pool = names(_G)
    for _, k in ipairs(keywords) do pool[k] = true end
    for k in pairs(declared()) do pool[k] = true end
  else
    local ok, v = pcall(function()
      local t = _G
      local first = base:match('^[^%.:]+')
      if first and declared()[first] then t = require('repl.chunk').scope end
      for part in base:gmatch('[^%.:]+') do
        if type(t) ~= 'table' then return nil end
        t = t[part]
      end
      return t
    end)
    if not ok or v == nil then return nil end
    pool = names(v)
  end
  local list = {}
  for k in pairs(pool) do
    if k:sub(1, #word) == word then list[#list + 1] = k end
  end
  table.sort(list)
  return word, list
end

return M
