-- cosocket.receive: tcpsock:receive, receiveany and receiveuntil, with
-- ngx's return shapes: data, or nil, err, partial (the bytes read so far,
-- consumed). Each waits in the calling coroutine for the socket's read
-- timeout at most; the bytes come from the connection's buffer
-- (cosocket/buffer.lua), which these scan once each.

local co = require('co')
local Conn = require('cosocket.conn')

local current = co._current
local wait_read, ended, timeout_of = Conn.wait_read, Conn.ended,
  Conn.timeout_of
local TIMEOUT, CLOSED = Conn.TIMEOUT, Conn.CLOSED
local type, tostring, tonumber, error = type, tostring, tonumber, error
local sub, find, gsub, floor, max, huge = string.sub, string.find,
  string.gsub, math.floor, math.max, math.huge

local M = {}

-- The socket's connection if it may be read, else nil and ngx's error.
local function readable(self)
  local conn = self._c
  if not conn or not conn.h or conn.rclosed then return nil, 'closed' end
  if conn.reader then return nil, 'socket busy reading' end
  return conn
end

-- A read that cannot be satisfied: the rest of the buffer is the partial
-- data. EOF ends the reading side; an error closes the connection; a
-- timeout keeps it (as ngx).
local function read_failed(self, conn, why, strip)
  local partial = conn.buf:take(conn.buf.n)
  if strip and find(partial, '\r', 1, true) then
    partial = gsub(partial, '\r', '')
  end
  if why == TIMEOUT then return nil, 'timeout', partial end
  if why == CLOSED or not conn.rerr then
    conn.rclosed = true
    return nil, 'closed', partial
  end
  if self._c == conn then Conn.detach(self) end
  Conn.close(conn)
  return nil, conn.rerr, partial
end

local function read_size(self, conn, c, size)
  local buf = conn.buf
  while buf.n < size do
    if ended(conn) then return read_failed(self, conn) end
    local why = wait_read(conn, c, size, timeout_of(self._rt))
    if why then return read_failed(self, conn, why) end
  end
  return buf:take(size)
end

-- A line ends at LF; every CR in it is dropped (ngx's '*l').
local function read_line(self, conn, c)
  local buf, from = conn.buf, 0
  while true do
    local p = buf:find('\n', from)
    if p then
      local line = buf:take(p - 1)
      buf:skip(1)
      local r = find(line, '\r', 1, true)
      if r == #line then return sub(line, 1, -2) end
      if r then return (gsub(line, '\r', '')) end
      return line
    end
    from = buf.n
    if ended(conn) then return read_failed(self, conn, nil, true) end
    local why = wait_read(conn, c, buf.n + 1, timeout_of(self._rt))
    if why then return read_failed(self, conn, why, true) end
  end
end

local function read_all(self, conn, c)
  local buf = conn.buf
  while not conn.eof do
    if ended(conn) then return read_failed(self, conn) end
    local why = wait_read(conn, c, huge, timeout_of(self._rt))
    if why then return read_failed(self, conn, why) end
  end
  return buf:take(buf.n)
end

-- receive([pattern | size]) -> data, or nil, err, partial. pattern: '*l'
-- (the default: a line, without CR/LF), '*a' (everything until the peer
-- closes); a number (or numeric string): exactly that many bytes.
function M.receive(self, pat)
  local c = current('tcpsock:receive')
  local size = tonumber(pat)
  local kind
  if size then
    if size < 0 then
      error("bad argument #2 to 'receive' (bad pattern argument)", 2)
    end
  elseif pat == nil then
    kind = 'l'
  elseif type(pat) == 'string' and sub(pat, 1, 1) == '*' then
    kind = sub(pat, 2, 2)
  end
  if not size and kind ~= 'l' and kind ~= 'a' then
    error("bad argument #2 to 'receive' (bad pattern argument: " ..
      tostring(pat) .. ')', 2)
  end
  local conn, err = readable(self)
  if not conn then return nil, err end
  if size then return read_size(self, conn, c, floor(size)) end
  if kind == 'l' then return read_line(self, conn, c) end
  return read_all(self, conn, c)
end

-- receiveany(max) -> what is there (at least a byte, at most max), or nil,
-- err.
function M.receiveany(self, most)
  local c = current('tcpsock:receiveany')
  most = tonumber(most)
  if not most or most <= 0 then
    error("bad argument #2 to 'receiveany' (bad max argument)", 2)
  end
  local conn, err = readable(self)
  if not conn then return nil, err end
  local buf = conn.buf
  while buf.n == 0 do
    if ended(conn) then return read_failed(self, conn) end
    local why = wait_read(conn, c, 1, timeout_of(self._rt))
    if why then return read_failed(self, conn, why) end
  end
  return buf:take(buf.n < most and buf.n or floor(most))
end

-- receiveuntil(pattern[, {inclusive = bool}]) -> iterator. iterator() ->
-- the data before the pattern (with it when inclusive), the pattern
-- consumed; iterator(size) -> the next at most size bytes of it, then nil
-- (the pattern reached), after which the iterator starts over. Errors:
-- nil, err, partial.
function M.receiveuntil(self, pat, opts)
  if type(pat) ~= 'string' then
    error("bad argument #2 to 'receiveuntil' (string expected, got " ..
      type(pat) .. ')', 2)
  end
  if pat == '' then return nil, 'pattern is empty' end
  local inclusive = type(opts) == 'table' and opts.inclusive and true
  local m = #pat
  local finished = false
  return function(size)
    local c = current('receiveuntil iterator')
    if size ~= nil then
      size = tonumber(size)
      if not size or size <= 0 then
        error('bad argument #1 to iterator (bad size)', 2)
      end
    end
    local conn, err = readable(self)
    if not conn then return nil, err end
    if finished then
      finished = false
      return nil, nil
    end
    local buf, from = conn.buf, 0
    while true do
      local p = buf:find(pat, from)
      if p then
        local before = p - 1
        if not size then
          local d = buf:take(inclusive and before + m or before)
          if not inclusive then buf:skip(m) end
          return d
        end
        local upto = inclusive and before + m or before
        if upto <= size or before == 0 then
          -- The rest of the data fits (or only the pattern is left).
          local d = buf:take(upto)
          if not inclusive then buf:skip(m) end
          if upto == 0 then return nil, nil end
          finished = true
          return d
        end
        return buf:take(before < size and before or size)
      end
      -- Bytes that cannot begin a match.
      local safe = buf.n - m + 1
      if size and safe >= size then return buf:take(size) end
      from = max(safe, 0)
      if ended(conn) then return read_failed(self, conn) end
      local why = wait_read(conn, c, buf.n + 1, timeout_of(self._rt))
      if why then return read_failed(self, conn, why) end
    end
  end
end

return M
