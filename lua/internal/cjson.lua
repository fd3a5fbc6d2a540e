-- internal.cjson: what require('cjson') (and 'cjson.safe', 'json') gives:
-- Debian's lua-cjson (2.1.0), whose encode writes '/' as '\/', made to
-- write it as JSON.stringify does, with OpenResty's lua-cjson switch
-- encode_escape_forward_slash([on]) -> the setting (false here by
-- default: Node's bodies are what a port is compared with; true restores
-- lua-cjson's '\/'). Each cjson.new() instance has its own setting.
--
-- Undoing the escape afterwards is exact: cjson writes every '\' of a
-- string as '\\' and every '/' as '\/'; _json.unslash (runtime/json.c)
-- reads the escapes in pairs and makes each '\/' a '/'.

local unslash = require('_json').unslash
local pcall, error, type = pcall, error, type

local M = {}

function M.wrap(m)
  if rawget(m, 'encode_escape_forward_slash') then return m end
  local encode, new = m.encode, m.new
  local escape = false
  m.encode = function(v)
    -- cjson's error names the caller's line: raise it at ours' caller.
    local ok, s, err = pcall(encode, v)
    if not ok then error(s, 2) end
    if s == nil then return nil, err end
    if not escape then s = unslash(s) end
    return s
  end
  m.encode_escape_forward_slash = function(on)
    if on ~= nil then
      if type(on) ~= 'boolean' then
        error('bad argument #1 to encode_escape_forward_slash (boolean'
          .. ' expected, got ' .. type(on) .. ')', 2)
      end
      escape = on
    end
    return escape
  end
  if new then
    m.new = function() return M.wrap(new()) end
  end
  return m
end

-- install(): the preloads of cjson and cjson.safe give wrapped modules
-- (and one already loaded is wrapped in place).
function M.install()
  for _, name in ipairs({'cjson', 'cjson.safe'}) do
    if package.loaded[name] then
      M.wrap(package.loaded[name])
    else
      local load = package.preload[name]
      if load then
        package.preload[name] = function(...) return M.wrap(load(...)) end
      end
    end
  end
end

return M
