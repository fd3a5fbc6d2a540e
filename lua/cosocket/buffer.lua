-- cosocket.buffer: the bytes a cosocket has read and not yet handed out.
--
-- A queue of the chunks libuv delivered, an offset into the first, and the
-- byte count. Chunks are never joined while they wait: take(n) copies the
-- n bytes it returns once, and find() scans each byte once when the caller
-- passes back how far it already looked, so reading a long line or a large
-- body in many chunks stays linear.
--
-- Positions are 1-based from the first unread byte.

local sub, find, concat = string.sub, string.find, table.concat
local setmetatable, max = setmetatable, math.max

local Buffer = {}
Buffer.__index = Buffer

local function new()
  -- q: chunks from index h to t; off: bytes of q[h] already taken.
  return setmetatable({q = {}, h = 1, t = 0, off = 0, n = 0}, Buffer)
end

-- push(s): appends a chunk (the empty string is ignored).
function Buffer:push(s)
  local len = #s
  if len == 0 then return end
  local t = self.t + 1
  self.t = t
  self.q[t] = s
  self.n = self.n + len
end

-- Drops the first chunk once it is used up; an empty queue starts over at
-- index 1 so indices stay small.
local function advance(self)
  local h = self.h
  self.q[h] = nil
  self.off = 0
  if h >= self.t then
    self.h, self.t = 1, 0
  else
    self.h = h + 1
  end
end

-- take(k) -> the first k bytes (k <= n), removed. One copy: a string of
-- the head chunk, or one concat of the pieces.
function Buffer:take(k)
  if k <= 0 then return '' end
  local q, h, off = self.q, self.h, self.off
  local s = q[h]
  local avail = #s - off
  self.n = self.n - k
  if k <= avail then
    local r = (off == 0 and k == #s) and s or sub(s, off + 1, off + k)
    if k == avail then advance(self) else self.off = off + k end
    return r
  end
  local parts, np = {}, 0
  while k > 0 do
    s = q[self.h]
    off = self.off
    avail = #s - off
    np = np + 1
    if k >= avail then
      parts[np] = off == 0 and s or sub(s, off + 1)
      k = k - avail
      advance(self)
    else
      parts[np] = sub(s, off + 1, off + k)
      self.off = off + k
      k = 0
    end
  end
  return concat(parts, '', 1, np)
end

-- skip(k): drops the first k bytes (k <= n).
function Buffer:skip(k)
  self.n = self.n - k
  while k > 0 do
    local avail = #self.q[self.h] - self.off
    if k >= avail then
      k = k - avail
      advance(self)
    else
      self.off = self.off + k
      k = 0
    end
  end
end

-- The first k bytes of the chunks from index i on (k small: the tail of
-- a pattern that crosses chunks).
local function head_from(q, i, last, k)
  local parts, np, got = {}, 0, 0
  while i <= last and got < k do
    local s = q[i]
    np = np + 1
    parts[np] = #s > k - got and sub(s, 1, k - got) or s
    got = got + #parts[np]
    i = i + 1
  end
  return concat(parts, '', 1, np)
end

-- find(pat, from) -> the position of the first match of the plain string
-- pat that starts after position from (0: anywhere), or nil. A caller
-- that gets nil and waits for more may pass n - #pat + 1 next time: no
-- match starts at or before that.
function Buffer:find(pat, from)
  local m = #pat
  local q, last = self.q, self.t
  local base = 0 -- bytes before chunk i
  for i = self.h, last do
    local s = q[i]
    local skip = i == self.h and self.off or 0
    local len = #s - skip
    if from < base + len then
      local st = max(from - base, 0) + 1 + skip -- index in s
      local p = find(s, pat, st, true)
      if p then return base + p - skip end
      -- Matches that start in this chunk and run into the next ones.
      if m > 1 and i < last then
        local first = max(st, #s - m + 2)
        if first <= #s then
          local w = sub(s, first) .. head_from(q, i + 1, last, m - 1)
          local p2 = find(w, pat, 1, true)
          if p2 then return base + first - skip + p2 - 1 end
        end
      end
    end
    base = base + len
  end
  return nil
end

return {new = new}
