-- cluster.output: a worker's stdout or stderr as the primary passes it on
-- (a silent worker's worker.process.stdout and .stderr; under
-- `luacluster -w` every worker is silent): 'data' events for whoever
-- listens, else lines, each written whole with the time, a level (info for
-- stdout, error for stderr) and the worker's id (internal/log.lua: text or
-- JSON), so lines of different workers never mix.
--
-- The primary's loop must stay free for signals, the IPC channels and the
-- status port whatever a worker prints: each byte read is looked at once
-- (no rescan of a partial line), and a line that goes on without a newline
-- is written in pieces of about MAX_LINE bytes instead of being held, the
-- pieces after the first marked "[id]+" (in JSON, "cont":true).

local lc = require('_lc')
local log = require('internal.log')
local EventEmitter = require('events')

local M = {}

-- How much of an unfinished line may wait for its newline. Past it, what
-- was read of the line goes out as a line of its own (cut at a byte, not a
-- character), and the rest of that line follows as continuation lines.
M.MAX_LINE = 64 * 1024

-- lines(fd, id[, pid]) -> write(chunk), finish(). write takes what the
-- worker wrote, in pieces of any size, and writes the complete lines among
-- them to fd with one write per call (all stamped with the time of that
-- call); finish() writes what is left of a last line that had no newline.
function M.lines(fd, id, pid)
  local level = fd == 2 and 'error' or 'info'
  local line = log.line
  local parts, size = {}, 0 -- the unfinished line, as read
  local cont = false        -- whether a piece of this line went out already

  -- Appends the unfinished line, ended by tail (what follows it up to the
  -- newline, excluded), to out, and forgets it. A newline right after a
  -- cut adds nothing: the cut ended that line.
  local function close_line(out, tail, time)
    if cont and size == 0 and tail == '' then return end
    local msg = tail
    if parts[1] then
      parts[#parts + 1] = tail
      msg = table.concat(parts)
      for i = #parts, 1, -1 do parts[i] = nil end
    end
    out[#out + 1] = line(level, id, pid, msg, time, cont)
    size = 0
  end

  local function write(data)
    local out = {}
    local pos = 1
    local time = log.now()
    while true do
      local nl = data:find('\n', pos, true)
      if not nl then break end
      close_line(out, data:sub(pos, nl - 1), time)
      cont = false
      pos = nl + 1
    end
    if pos <= #data then
      parts[#parts + 1] = pos == 1 and data or data:sub(pos)
      size = size + #data - pos + 1
      if size >= M.MAX_LINE then
        close_line(out, '', time)
        cont = true
      end
    end
    if #out > 0 then lc.write(fd, table.concat(out)) end
  end

  local function finish()
    if size > 0 then
      local out = {}
      close_line(out, '')
      lc.write(fd, table.concat(out))
    end
    cont = false
  end

  return write, finish
end

-- stream(pipe, fd, id[, pid]) -> an emitter of 'data' (chunks) and 'end' for a
-- silent worker's stdout (fd 1) or stderr (fd 2) read from pipe. With no
-- 'data' listener the chunks go to our fd as lines (M.lines).
function M.stream(pipe, fd, id, pid)
  local s = EventEmitter:new()
  local write, finish = M.lines(fd, id, pid)
  pipe:read_start(function(_, data)
    if data then
      if s:listenerCount('data') > 0 then s:emit('data', data)
      else write(data) end
    else
      pipe:close()
      finish()
      s:emit('end')
    end
  end)
  return s
end

return M
