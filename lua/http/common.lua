-- http.common: what the server's and the client's halves of http share
-- about outgoing headers: the one rule a header must meet (Node's, kept in
-- C: runtime/http/respond.c checks every head it writes by it too), the
-- error of a header set too late, and the lines a header makes.

local C = require('_http')
local errors = require('internal.errors')

local type, tostring, error = type, tostring, error
local header_error = C.header_error

local common = {}

-- is_token(s) -> whether s is an HTTP token (a method, a header name).
common.is_token = C.is_token

-- check_header(name, value, level): raises Node's TypeError (at level,
-- counted from the caller) unless name is a token and value a string, a
-- number, a boolean or an array of those, without CR, LF or other
-- controls.
function common.check_header(name, value, level)
  local code, msg = header_error(name, value)
  if code then error(errors.type_error(code, msg), level + 1) end
end

-- headers_sent(what) -> Node's ERR_HTTP_HEADERS_SENT for 'set',
-- 'remove', 'write'.
function common.headers_sent(what)
  return errors.new('ERR_HTTP_HEADERS_SENT',
    'Cannot ' .. what .. ' headers after they are sent to the client')
end

-- add_lines(lines, name, value): appends 'name: value' to lines, one line
-- an element when value is an array.
function common.add_lines(lines, name, value)
  if type(value) == 'table' then
    for i = 1, #value do
      lines[#lines + 1] = name .. ': ' .. tostring(value[i])
    end
  else
    lines[#lines + 1] = name .. ': ' .. tostring(value)
  end
end

return common
