-- pg.query: the arguments of a query call, and waiting for an answer
-- inside a coroutine (the callback form needs neither).
--
--   make(what, sql, ...) -> q, cb: sql is the text (with $1.. for the
--     arguments that follow) or Node's config {text, values[, timeout]};
--     a function as the last argument is the callback cb(err, res)
--   copy(what, sql, data[, cb]) -> q, cb: a COPY ... FROM STDIN with data
--   wait(what, start) -> res, or nil and err: start(done) begins the
--     operation; done(err, res) ends the wait (at once if called at once)

local co = require('co')
local types = require('pg.types')

local type, select, error, unpack, pcall = type, select, error, unpack, pcall
local current, suspend, wake = co._current, co._suspend, co._wake
local params = types.params

local M = {}

function M.make(what, sql, ...)
  local n = select('#', ...)
  local cb
  if n > 0 then
    local last = select(n, ...)
    if type(last) == 'function' then
      cb, n = last, n - 1
    end
  end
  local q
  if type(sql) == 'string' then
    q = {text = sql, n = n}
    if n > 0 then
      local ok, p = pcall(params, n, ...)
      if not ok then error(what .. ': ' .. p, 3) end
      q.params = p
    end
  elseif type(sql) == 'table' and type(sql.text) == 'string' then
    local values = sql.values
    if values == nil and n > 0 then values = (...) end
    local vn = 0
    if type(values) == 'table' then vn = values.n or #values end
    q = {text = sql.text, n = vn, timeout = sql.timeout}
    if vn > 0 then
      local ok, p = pcall(params, vn, unpack(values, 1, vn))
      if not ok then error(what .. ': ' .. p, 3) end
      q.params = p
    end
  else
    error(what .. ': expected the SQL text (a string) or {text = ..., '
      .. 'values = {...}}, got ' .. type(sql), 3)
  end
  if q.text:find('\0', 1, true) then
    error(what .. ': the SQL text holds a NUL byte', 3)
  end
  if q.timeout ~= nil and type(q.timeout) ~= 'number' then
    error(what .. ': timeout must be a number of milliseconds', 3)
  end
  return q, cb
end

-- copy(what, sql, data[, cb]) -> q, cb for a COPY ... FROM STDIN: data
-- is a string or a list of strings (rows or pieces, sent as they are, in
-- COPY's text or CSV format as the SQL says).
function M.copy(what, sql, data, cb)
  if type(sql) ~= 'string' then
    error(what .. ': expected the COPY statement (a string), got ' ..
      type(sql), 3)
  end
  local list
  if type(data) == 'string' then
    list = {data}
  elseif type(data) == 'table' then
    list = {}
    for i = 1, #data do
      if type(data[i]) ~= 'string' then
        error(what .. ': data[' .. i .. '] is a ' .. type(data[i]) ..
          ', not a string', 3)
      end
      list[i] = data[i]
    end
  else
    error(what .. ': data must be a string or a list of strings, got ' ..
      type(data), 3)
  end
  if cb ~= nil and type(cb) ~= 'function' then
    error(what .. ': the callback must be a function', 3)
  end
  return {text = sql, n = 0, copy_data = list}, cb
end

function M.wait(what, start)
  local c = current(what)
  local state, r1, r2 = 'calling', nil, nil
  local token = {}
  start(function(err, res)
    if state == 'calling' then
      state, r1, r2 = 'done', err, res
    elseif state == 'waiting' then
      state = 'done'
      wake(c, token, err, res)
    end
  end)
  if state ~= 'done' then
    state = 'waiting'
    r1, r2 = suspend(c, token, function() state = 'killed' end)
  end
  if r1 then return nil, r1 end
  return r2
end

return M
