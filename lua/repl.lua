-- repl: the interactive prompt, started by `luacluster` with no script when
-- stdin is a terminal, as node and luajit start theirs.
--
-- Input is read from stdin through libuv's TTY on the event loop, so timers,
-- servers and workers made at the prompt run while it waits. Where stdout is
-- a terminal too, the TTY is put in raw mode and this file edits the line
-- itself (cursor keys, history, Ctrl-A/E/K/U/W, Tab completion); otherwise
-- the terminal's own line discipline does (cooked mode). Each input is
-- compiled as an expression first, so that its values print, then as a
-- statement; a chunk that ends too soon ('<eof>' in the error) waits for
-- more lines. Values print as console.dir prints them.
--
-- As Node's: Ctrl-C while typed code runs interrupts it and the prompt
-- comes back (runtime/interrupt.c); the history is kept in
-- ~/.luacluster_repl_history (LUACLUSTER_REPL_HISTORY names another file,
-- '' keeps none), each line appended as it is entered; a top-level `local`
-- lasts for the session, as a top-level let does (its names live in the
-- REPL's scope, not in _G).

local uv = require('uv')
local lc = require('_lc')
local process = require('process')
local console = require('console')

local repl = {}

local concat, insert, remove = table.concat, table.insert, table.remove
local write = lc.write

local PROMPT, MORE = '> ', '... '
local HISTORY_MAX = 1000

local HELP = [[
.break    abandon the multi-line input being typed
.exit     leave (also Ctrl-D on an empty line, or Ctrl-C twice)
.help     this list

Keys: Left/Right, Home/End (Ctrl-A/Ctrl-E), Up/Down (history), Tab
(complete a name), Backspace/Delete, Ctrl-U/Ctrl-K (cut before/after the
cursor), Ctrl-W (cut a word), Ctrl-L (clear the screen), Ctrl-C (clear the
line; while code runs, interrupt it), Ctrl-Z (suspend).
`_` holds the last value printed. A `local` at the start of an input lasts
for the session. History: ~/.luacluster_repl_history.
]]

local chunk = require('repl.chunk')
local compile, run, describe = chunk.compile, chunk.run, chunk.describe
local candidates = require('repl.complete').candidates

local function pack(...) return {n = select('#', ...), ...} end

------------------------------------------------------------------------------
-- The session: the TTY, the line being edited, history.

local S -- The running session (one per process).

-- Splits a string into characters (UTF-8 sequences), for cursor movement.
local function chars(s)
  local out = {}
  for c in s:gmatch('[%z\1-\127\192-\255][\128-\191]*') do
    out[#out + 1] = c
  end
  return out
end

local function columns()
  local w = S.tty:get_winsize()
  return (type(w) == 'number' and w > 0) and w or 80
end

-- render(): draws the prompt and the line, the cursor in place. A line
-- wider than the terminal scrolls sideways so that the cursor stays in view
-- (it never wraps, so '\r' always reaches the prompt's row).
local function render()
  if not S.raw then return end
  local line, pos = S.line, S.pos
  local avail = columns() - #S.prompt - 1
  if avail < 8 then avail = 8 end
  if pos < S.off then S.off = pos end
  if pos > S.off + avail then S.off = pos - avail end
  if #line <= avail then S.off = 0 end
  local shown = concat(line, '', S.off + 1, math.min(#line, S.off + avail))
  local col = #S.prompt + pos - S.off
  write(1, '\r' .. S.prompt .. shown .. '\27[K\r'
    .. (col > 0 and '\27[' .. col .. 'C' or ''))
  S.visible = true
end

-- hide() clears the prompt's row so that other output can take it; returns
-- true when it did (the caller then calls render() again).
local function hide()
  if not (S and S.raw and S.visible and S.waiting) then return false end
  write(1, '\r\27[K')
  S.visible = false
  return true
end

-- prompt(p): a new, empty line to edit.
local function prompt(p)
  S.prompt = p or PROMPT
  S.line, S.pos, S.off = {}, 0, 0
  S.hpos = #S.history + 1
  S.waiting = true
  if S.raw then render() else write(1, S.prompt) end
end

-- Output made while the prompt waits (a timer's console.log) goes above it:
-- the prompt row is cleared, the output written, the prompt drawn again.
local function around(fn)
  return function(...)
    if not hide() then return fn(...) end
    local r = pack(pcall(fn, ...))
    render()
    if not r[1] then error(r[2], 0) end
    return unpack(r, 2, r.n)
  end
end

-- The terminal as it was: cooked mode, as the shell left it.
local function restore()
  if S and S.raw and not S.restored then
    S.restored = true
    pcall(uv.tty_reset_mode)
  end
end

local function quit()
  S.waiting = false
  write(1, S.raw and '\r\n' or '\n')
  restore()
  if not S.tty:is_closing() then S.tty:close() end
  process.exit()
end

-- The history file: LUACLUSTER_REPL_HISTORY, else
-- ~/.luacluster_repl_history; nil when '' or there is no home.
local function history_path()
  local p = os.getenv('LUACLUSTER_REPL_HISTORY')
  if p then return p ~= '' and p or nil end
  local home = os.getenv('HOME')
  if not home or home == '' then return nil end
  return home .. '/.luacluster_repl_history'
end

-- load_history(): the last HISTORY_MAX lines of the file (a file grown to
-- twice that is cut back to them).
local function load_history()
  local path = history_path()
  if not path then return end
  local f = io.open(path, 'rb')
  if not f then return end
  local all = {}
  for line in f:lines() do
    if line ~= '' then all[#all + 1] = line end
  end
  f:close()
  local first = math.max(1, #all - HISTORY_MAX + 1)
  for i = first, #all do S.history[#S.history + 1] = all[i] end
  if #all > 2 * HISTORY_MAX then
    local w = io.open(path, 'wb')
    if w then
      w:write(concat(S.history, '\n'), '\n')
      w:close()
    end
  end
end

-- Appends a line to the file (a line typed: not a hot path).
local function save_history(text)
  local path = history_path()
  if not path then return end
  local fd = uv.fs_open(path, 'a', tonumber('600', 8))
  if not fd then return end
  uv.fs_write(fd, (text:gsub('\n', ' ')) .. '\n', -1)
  uv.fs_close(fd)
end

local function add_history(text)
  local h = S.history
  if text:match('%S') and h[#h] ~= text then
    h[#h + 1] = text
    if #h > HISTORY_MAX then remove(h, 1) end
    save_history(text)
  end
end

-- signals(on): starts or stops the REPL's own signal handles (start()).
local function signals(on)
  for _, f in ipairs(S.signals) do f(on) end
end

-- eval(text): one line entered. Returns once its chunk ran, or once it is
-- known to need more lines.
local function eval(text)
  S.waiting = false
  local buf = S.buffer
  if #buf == 0 then
    if not text:match('%S') then return prompt(PROMPT) end
    local cmd = text:match('^%s*%.(%a+)%s*$')
    if cmd == 'exit' then return quit() end
    if cmd == 'help' then
      write(1, HELP)
      return prompt(PROMPT)
    end
  elseif text:match('^%s*%.break%s*$') then
    S.buffer = {}
    return prompt(PROMPT)
  end
  buf[#buf + 1] = text
  local fn, err, incomplete, expr = compile(concat(buf, '\n'))
  if incomplete then return prompt(MORE) end
  S.buffer = {}
  if not fn then
    write(2, err .. '\n')
  else
    -- The user's code runs in the terminal's normal mode, with the default
    -- actions of signals but SIGINT's: a SIGTERM ends a line that never
    -- returns and leaves the terminal as it was; a Ctrl-C (SIGINT)
    -- interrupts the code (the JIT is off meanwhile: compiled loops run no
    -- hooks) and the prompt comes back.
    if S.raw then S.tty:set_mode(0) end
    signals(false)
    local jit_on = jit.status()
    if jit_on then jit.off() end
    lc.interruptible(true)
    run(fn, expr)
    lc.interruptible(false)
    if jit_on then jit.on() end
    signals(true)
    if S.raw and not S.restored then S.tty:set_mode(1) end
  end
  if S.tty:is_closing() then return end
  prompt(PROMPT)
end

------------------------------------------------------------------------------
-- Editing keys.

local function set_line(text)
  S.line = chars(text)
  S.pos = #S.line
  render()
end

local function insert_text(text)
  for _, c in ipairs(chars(text)) do
    S.pos = S.pos + 1
    insert(S.line, S.pos, c)
  end
  render()
end

local function is_word(c) return c:match('^[%w_\128-\255]') ~= nil end

local function word_left()
  local p = S.pos
  while p > 0 and not is_word(S.line[p]) do p = p - 1 end
  while p > 0 and is_word(S.line[p]) do p = p - 1 end
  return p
end

local function word_right()
  local p, n = S.pos, #S.line
  while p < n and not is_word(S.line[p + 1]) do p = p + 1 end
  while p < n and is_word(S.line[p + 1]) do p = p + 1 end
  return p
end

local function cut(from, to)
  for _ = from + 1, to do remove(S.line, from + 1) end
  S.pos = from
  render()
end

local function history(step)
  local h = S.history
  local i = S.hpos + step
  if i < 1 or i > #h + 1 then return end
  if S.hpos == #h + 1 then S.draft = concat(S.line) end
  S.hpos = i
  set_line(i == #h + 1 and (S.draft or '') or h[i])
end

local function complete()
  local word, list = candidates(concat(S.line, '', 1, S.pos))
  if not list or #list == 0 then return write(1, '\7') end
  -- The longest prefix every candidate shares.
  local common = list[1]
  for i = 2, #list do
    local c = list[i]
    local n = 0
    while n < #common and common:sub(n + 1, n + 1) == c:sub(n + 1, n + 1) do
      n = n + 1
    end
    common = common:sub(1, n)
  end
  if #common > #word then return insert_text(common:sub(#word + 1)) end
  if #list == 1 then return end
  -- Several, and nothing to add: list them under the line.
  local width = 0
  for _, k in ipairs(list) do width = math.max(width, #k) end
  width = width + 2
  local per = math.max(1, math.floor(columns() / width))
  local rows = {}
  for i, k in ipairs(list) do
    local r = math.floor((i - 1) / per) + 1
    rows[r] = (rows[r] or '') .. k .. (' '):rep(width - #k)
  end
  for i, r in ipairs(rows) do rows[i] = r:gsub('%s+$', '') end
  write(1, '\r\n' .. concat(rows, '\r\n') .. '\r\n')
  render()
end

local function enter()
  local text = concat(S.line)
  S.pos = #S.line
  render()
  write(1, '\r\n')
  S.visible = false
  add_history(text)
  S.draft = nil
  return eval(text)
end

local function interrupt()
  if #S.line > 0 or #S.buffer > 0 then
    S.buffer = {}
    write(1, '^C\r\n')
    return prompt(PROMPT)
  end
  if S.armed then return quit() end
  write(1, '\r\n(To exit, press Ctrl-C again or Ctrl-D or type .exit)\r\n')
  prompt(PROMPT)
  S.armed = true
end

local function suspend()
  write(1, '\r\n')
  restore()
  uv.kill(process.pid, 'sigtstp')
  -- Here once the shell resumed the process (SIGCONT).
  S.restored = false
  S.tty:set_mode(1)
  render()
end

local ctrl = {
  [1] = function() S.pos = 0 render() end, -- Ctrl-A
  [2] = function() if S.pos > 0 then S.pos = S.pos - 1 render() end end,
  [3] = interrupt,
  [4] = function() -- Ctrl-D: exit on an empty line, else delete.
    if #S.line == 0 then return quit() end
    if S.pos < #S.line then cut(S.pos, S.pos + 1) end
  end,
  [5] = function() S.pos = #S.line render() end, -- Ctrl-E
  [6] = function() if S.pos < #S.line then S.pos = S.pos + 1 render() end end,
  [8] = function() if S.pos > 0 then cut(S.pos - 1, S.pos) end end,
  [9] = complete,
  [10] = enter,
  [11] = function() cut(S.pos, #S.line) end, -- Ctrl-K
  [12] = function() write(1, '\27[H\27[2J') render() end, -- Ctrl-L
  [13] = enter,
  [14] = function() history(1) end, -- Ctrl-N
  [16] = function() history(-1) end, -- Ctrl-P
  [21] = function() cut(0, S.pos) end, -- Ctrl-U
  [23] = function() cut(word_left(), S.pos) end, -- Ctrl-W
  [26] = suspend, -- Ctrl-Z
}
ctrl[127] = ctrl[8]

local function home() S.pos = 0 render() end
local function to_end() S.pos = #S.line render() end
local function left() ctrl[2]() end
local function right() ctrl[6]() end
local function del() if S.pos < #S.line then cut(S.pos, S.pos + 1) end end
local function wleft() S.pos = word_left() render() end
local function wright() S.pos = word_right() render() end

-- Escape sequences, as xterm and the Linux console send them.
local function up() history(-1) end
local function down() history(1) end
local seqs = {
  ['\27[A'] = up, ['\27OA'] = up, ['\27[B'] = down, ['\27OB'] = down,
  ['\27[C'] = right, ['\27OC'] = right, ['\27[D'] = left, ['\27OD'] = left,
  ['\27[H'] = home, ['\27OH'] = home, ['\27[1~'] = home, ['\27[7~'] = home,
  ['\27[F'] = to_end, ['\27OF'] = to_end, ['\27[4~'] = to_end,
  ['\27[8~'] = to_end,
  ['\27[3~'] = del,
  ['\27[1;5C'] = wright, ['\27[1;3C'] = wright, ['\27f'] = wright,
  ['\27[1;5D'] = wleft, ['\27[1;3D'] = wleft, ['\27b'] = wleft,
  ['\27\127'] = function() cut(word_left(), S.pos) end,
  ['\27d'] = function() cut(S.pos, word_right()) end,
}

-- keys(data): runs the keys in data, keeping an escape sequence cut short
-- by the end of a read for the next one.
local function keys(data)
  data = S.pending .. data
  S.pending = ''
  local i, n = 1, #data
  while i <= n and not S.tty:is_closing() do
    local b = data:byte(i)
    local key, seq
    if b == 27 then
      local b2 = data:byte(i + 1)
      if not b2 then break end -- A lone Escape: ignored.
      local j = i + 1
      if b2 == 91 or b2 == 79 then -- '[' or 'O': read up to the final byte.
        j = i + 2
        while j <= n and data:byte(j) >= 0x20 and data:byte(j) <= 0x3f do
          j = j + 1
        end
        if j > n then S.pending = data:sub(i) break end
      end
      seq = data:sub(i, j)
      i = j + 1
    elseif b < 32 or b == 127 then
      key = b
      i = i + 1
    else
      -- Printable characters, as many as come in a row (a paste).
      local j = data:find('[%z\1-\31\127]', i) or n + 1
      local text = data:sub(i, j - 1)
      -- A UTF-8 sequence cut by the end of the read waits for its end.
      local tail = j > n and text:match('[\192-\255][\128-\191]*$')
      if tail and #tail < (tail:byte() >= 240 and 4
          or tail:byte() >= 224 and 3 or 2) then
        S.pending = tail
        text = text:sub(1, -#tail - 1)
      end
      S.armed = false
      insert_text(text)
      if S.pending ~= '' then break end
      i = j
    end
    if key then
      if key ~= 3 then S.armed = false end
      local f = ctrl[key]
      if f then f() end
    elseif seq then
      S.armed = false
      local f = seqs[seq]
      if f then f() end
    end
  end
end

-- lines(data): cooked mode: the terminal sends whole lines.
local function lines(data)
  data = S.pending .. data
  for line, nl in data:gmatch('([^\n]*)(\n?)') do
    if nl == '' then
      S.pending = line
      break
    end
    eval(line)
    if S.tty:is_closing() then return end
  end
end

------------------------------------------------------------------------------

-- start(): prints a greeting and starts reading stdin. Returns at once: the
-- prompt lives on the event loop, and the process exits on Ctrl-D or
-- .exit (with process.exitCode) or with process.exit().
function repl.start()
  assert(not S, 'the REPL is running already')
  local tty, err = uv.new_tty(0, true)
  if not tty then error('cannot read the terminal: ' .. tostring(err), 0) end
  S = {tty = tty, history = {}, buffer = {}, pending = '', prompt = PROMPT,
    line = {}, pos = 0, off = 0, hpos = 1, signals = {}}
  load_history()
  S.raw = lc.isatty(1) and os.getenv('TERM') ~= 'dumb'
    and tty:set_mode(1) == 0

  local v = lc.versions()
  write(1, ('luacluster %s (%s, libuv %s)\nType .help for help,'
    .. ' Ctrl-D to exit.\n'):format(v.luacluster, v.luajit, v.libuv))

  -- Output from callbacks goes above the prompt.
  for k, f in pairs(console) do
    if type(f) == 'function' then console[k] = around(f) end
  end
  _G.print = around(print)

  -- An error in a callback is printed, as one typed at the prompt is; the
  -- REPL goes on (as Node's does).
  process:on('uncaughtException', function(e)
    local hidden = hide()
    write(2, describe(e) .. '\n')
    if hidden then render() end
  end)
  -- The terminal goes back to its mode however the process ends: exit
  -- events, os.exit, and the signals that end it by default.
  process:on('exit', restore)
  local os_exit = os.exit
  os.exit = function(...)
    restore()
    return os_exit(...)
  end
  -- A signal nothing else answers ends the process as it would have, the
  -- terminal restored first: the handle stops (the default action is back)
  -- and the signal is raised again. One that a listener answers (a
  -- cluster's graceful shutdown) ends it through 'exit', if at all.
  for _, sig in ipairs({'sigterm', 'sighup'}) do
    local h = uv.new_signal()
    local function on_signal()
      if process:listenerCount(sig:upper()) > 0 then return end
      restore()
      h:stop()
      uv.kill(process.pid, sig)
    end
    h:unref()
    S.signals[#S.signals + 1] = function(on)
      if on then h:start(sig, on_signal) else h:stop() end
    end
  end
  signals(true)

  tty:read_start(function(rerr, data)
    if rerr or not data then return quit() end
    if S.raw then keys(data) else lines(data) end
  end)
  prompt(PROMPT)
end

return repl
