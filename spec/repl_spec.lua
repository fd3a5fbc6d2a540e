-- The REPL, driven through a pseudo-terminal as a user at a terminal drives
-- it: `script` (util-linux) runs `luacluster` on a pty and passes our
-- keystrokes to it. Each spec waits for the prompt before typing, as a user
-- does (bytes sent earlier would meet the terminal still in cooked mode).
local h = require('helper')
local uv = require('uv')

-- screen(s) -> the text a terminal shows for output s, line by line: a
-- carriage return goes back to the line's start, ESC [ K erases to its
-- end, ESC [ n C and ESC [ n D move the cursor; other sequences are dropped.
local function screen(s)
  local lines, line, col = {}, {}, 0
  local i, n = 1, #s
  while i <= n do
    local c = s:sub(i, i)
    if c == '\27' then
      local num, final = s:match('^%[([%d;]*)([%a@~])', i + 1)
      if num then
        i = i + 2 + #num
        local k = tonumber(num) or 1
        if final == 'K' then
          for j = col + 1, #line do line[j] = nil end
        elseif final == 'C' then col = col + k
        elseif final == 'D' then col = math.max(0, col - k) end
      end
    elseif c == '\r' then col = 0
    elseif c == '\n' then
      lines[#lines + 1] = table.concat(line)
      line, col = {}, 0
    else
      for j = #line + 1, col do line[j] = ' ' end
      col = col + 1
      line[col] = c
    end
    i = i + 1
  end
  lines[#lines + 1] = table.concat(line)
  return table.concat(lines, '\n')
end
local plain = screen

-- pty(command) runs a shell command on a pseudo-terminal under script,
-- its output captured, its input a pipe left open for typing. Returns
-- {stdout, stdin, code, exited, wait(ms)}.
local live = {}
local function pty(command)
  local p = {stdout = ''}
  local inp, out = uv.new_pipe(false), uv.new_pipe(false)
  local handle, pid = uv.spawn('/usr/bin/script', {
    args = {'-qfec', command, '/dev/null'}, stdio = {inp, out, 2},
  }, function(code)
    p.code, p.exited = code, true
    live[p] = nil
  end)
  assert(handle, 'cannot run script: ' .. tostring(pid))
  p.pid, p.stdin = pid, inp
  live[p] = true
  out:read_start(function(_, data)
    if data then p.stdout = p.stdout .. data
    else p.outdone = true out:close() end
  end)
  function p.wait(self, ms)
    return h.wait(function() return self.exited and self.outdone end, ms)
  end
  return p
end

local function kill_all()
  for p in pairs(live) do pcall(uv.kill, p.pid, 'sigkill') end
  h.wait(function() return next(live) == nil end, 3000)
end

local Session = {}
Session.__index = Session

-- session() starts the REPL on a pty; s.out is everything it wrote.
-- history: the history file (LUACLUSTER_REPL_HISTORY), none by default.
local function session(history)
  local s = setmetatable({mark = 1}, Session)
  -- exec: the REPL, not a shell waiting on it, takes the terminal's SIGINT
  -- (dash, /bin/sh, would die of it and script report 130).
  s.proc = pty("exec env LUACLUSTER_REPL_HISTORY='" .. (history or '') ..
    "' '" .. h.bin .. "'")
  return s
end

-- expect(pattern, ms) -> true once the screen from the end of the last
-- match on matches pattern (a Lua pattern); the mark then moves to the end
-- of this match. Raises, showing the screen, when ms pass first.
function Session:expect(pattern, ms)
  local found
  h.wait(function()
    local text = plain(self.proc.stdout)
    local a, b = text:find(pattern, self.mark)
    if a then found = b end
    return found or self.proc.exited
  end, ms or 3000)
  if found then self.mark = found return true end
  error(('no %q in:\n%s\n(raw: %q)'):format(pattern,
    plain(self.proc.stdout):sub(self.mark), self.proc.stdout), 2)
end

function Session:send(keys)
  self.proc.stdin:write(keys)
end

-- prompt(): waits until a prompt ('> ' or '... ') ends the screen.
function Session:prompt()
  assert(h.wait(function()
    return plain(self.proc.stdout):find('[>.] $') or self.proc.exited
  end, 3000), 'no prompt: ' .. plain(self.proc.stdout))
end

-- eof(): Ctrl-D at the prompt; returns the exit code.
function Session:eof()
  self:prompt()
  self:send('\4')
  assert(self.proc:wait(3000), 'still running after Ctrl-D')
  return self.proc.code
end

-- line(text): types text and Enter, once a prompt ('> ' or '... ') shows.
function Session:line(text)
  self:prompt()
  self:send(text .. '\r')
end

describe('repl', function()
  after_each(kill_all)

  it('prints a value, an expression or a statement, strings quoted',
      function()
    local s = session()
    assert(s:expect('Type %.help'))
    s:line('1 + 1')
    assert(s:expect('\n2\n'))
    s:line("'a' .. 'b'")
    assert(s:expect("\n'ab'\n"))
    s:line('t = {1, 2, x = {y = true}}')
    s:line('t')
    assert(s:expect('\n{ 1, 2, x = { y = true } }\n'))
    s:line('_.x.y')
    assert(s:expect('\ntrue\n'))
    s:line('return 1, nil, "z"')
    assert(s:expect("\n1\tnil\t'z'\n"))
    assert.equal(0, s:eof())
  end)

  it('runs the event loop while the prompt waits: a timer fires', function()
    local s = session()
    s:line('setTimeout(function() print("fired " .. 6 * 7) end, 200) and nil')
    assert(s:expect('\nnil\n'))
    -- Nothing typed meanwhile: the prompt waits, the timer fires, the
    -- prompt is drawn again below its output.
    assert(s:expect('\nfired 42\n> $', 2000))
    s:line('2 + 2')
    assert(s:expect('\n4\n'))
    assert.equal(0, s:eof())
  end)

  it('reads more lines while the chunk is incomplete', function()
    local s = session()
    s:line('function f(a)')
    assert(s:expect('%.%.%. $'))
    s:line('  return a * 2')
    s:line('end')
    s:line('f(21)')
    assert(s:expect('\n42\n'))
    s:line('x = [[one')
    s:line('two]]')
    s:line('x')
    assert(s:expect("\n'one\\ntwo'\n"))
    assert.equal(0, s:eof())
  end)

  it('prints errors and goes on, a callback\'s error too', function()
    local s = session()
    s:line('error("boom")')
    assert(s:expect('stdin:1: boom\nstack traceback:'))
    s:line('x = = 1')
    assert(s:expect("stdin:1: unexpected symbol near '='"))
    s:line('setTimeout(function() error("later") end, 10) and nil')
    assert(s:expect('stdin:1: later\n'))
    s:line('"still here"')
    assert(s:expect("\n'still here'\n"))
    assert.equal(0, s:eof())
  end)

  it('edits the line: cursor keys, home/end, backspace, delete, history',
      function()
    local s = session()
    -- "12" then left, "3" between: 132.
    s:line('12\27[D3')
    assert(s:expect('\n132\n'))
    -- Home, end, backspace and delete: "x5" -> home, delete -> "5",
    -- end, "67", backspace -> "56".
    s:line('x5\27[H\27[3~\27[F67\127')
    assert(s:expect('\n56\n'))
    -- Up recalls the last line; Ctrl-A/Ctrl-E move to its ends.
    s:line('\27[A\1(\5 + 1) * 2')
    assert(s:expect('\n114\n'))
    s:line('\27[A\27[A\27[B')
    assert(s:expect('\n114\n'))
    assert.equal(0, s:eof())
  end)

  it('Ctrl-C clears the line, twice on an empty line exits; .exit exits',
      function()
    local s = session()
    assert(s:expect('> $'))
    s:send('nonsense(')
    s:send('\3')
    assert(s:expect('%^C\n'))
    s:line('3 * 3')
    assert(s:expect('\n9\n'))
    assert(s:expect('> $'))
    s:send('\3')
    assert(s:expect('press Ctrl%-C again'))
    s:send('\3')
    assert(s.proc:wait(3000))
    assert.equal(0, s.proc.code)

    s = session()
    s:line('process.exitCode = 3')
    s:line('.exit')
    assert(s.proc:wait(3000))
    assert.equal(3, s.proc.code)
  end)

  it('Ctrl-C interrupts running code and the prompt comes back', function()
    local s = session()
    s:line('n = 0')
    -- Compiled, this loop would run no hook: the JIT is off while it runs.
    s:line('while true do n = n + 1 end')
    h.sleep(300)
    s:send('\3')
    assert(s:expect('interrupted %(Ctrl%-C%)\n>'))
    s:line('n > 1000, 6 * 7')
    assert(s:expect('\ntrue\t42\n'))
    -- The JIT is back on for what runs after.
    s:line('setTimeout(function() print("jit", jit.status()) end, 10)')
    assert(s:expect('\njit\ttrue'))
    -- Once more, inside a function called from the line.
    s:line('function spin() while true do end end')
    s:line('spin()')
    h.sleep(200)
    s:send('\3')
    assert(s:expect('interrupted'))
    s:line('"alive"')
    assert(s:expect("\n'alive'\n"))
    assert.equal(0, s:eof())
  end)

  it('keeps a top-level local for the session, out of _G', function()
    local s = session()
    s:line('local x = 5')
    s:line('x')
    assert(s:expect('\n5\n'))
    s:line('local a, b = 1, 2')
    s:line('a + b + x, rawget(_G, "x")')
    assert(s:expect('\n8\tnil\n'))
    s:line('local function twice(v) return 2 * v end')
    s:line('twice(x)')
    assert(s:expect('\n10\n'))
    s:line('x = x + 1')
    s:line('function getx() return x end')
    s:line('getx()')
    assert(s:expect('\n6\n'))
    s:line('local y')
    s:line('y == nil')
    assert(s:expect('\ntrue\n'))
    -- A local in a block stays the block's.
    s:line('do local z = 1 end')
    s:line('z')
    assert(s:expect('\nnil\n'))
    assert.equal(0, s:eof())
  end)

  it('keeps the history in a file across sessions', function()
    local path = os.tmpname()
    local s = session(path)
    s:line('1 + 41')
    assert(s:expect('\n42\n'))
    s:line('"second"')
    assert(s:expect("'second'"))
    assert.equal(0, s:eof())
    local f = io.open(path)
    assert.equal('1 + 41\n"second"\n', f:read('*a'))
    f:close()
    -- The next session finds it: Up Up recalls the first line.
    s = session(path)
    s:line('\27[A\27[A')
    assert(s:expect('\n42\n'))
    assert.equal(0, s:eof())
    os.remove(path)
  end)

  it('Tab completes names', function()
    local s = session()
    s:line('string.up\9("abc")')
    assert(s:expect("\n'ABC'\n"))
    s:line('#os.cp\9()')
    assert(s:expect('\n%d+\n'))
    -- A top-level local of the session, and its fields.
    s:line('local zebra_count = {stripes = 7}')
    s:line('zebra_c\9.str\9')
    assert(s:expect('\n7\n'))
    assert.equal(0, s:eof())
  end)

  it('restores the terminal mode when it exits', function()
    -- stty reads the pty's settings after the REPL is gone.
    local p = pty("LUACLUSTER_REPL_HISTORY= '" .. h.bin .. "'; stty -a")
    assert(h.wait(function() return plain(p.stdout):find('> $') end, 3000))
    p.stdin:write('\4')
    assert(p:wait(3000))
    local stty = plain(p.stdout)
    for _, flag in ipairs({'icanon', 'echo', 'isig', 'icrnl'}) do
      assert.matches('%s' .. flag .. '%s', stty)
    end
  end)

  it('restores it when a signal ends the process, which dies of it',
      function()
    local p = pty("LUACLUSTER_REPL_HISTORY= '" .. h.bin ..
      "'; echo status=$?; stty -a")
    assert(h.wait(function() return plain(p.stdout):find('> $') end, 3000))
    p.stdin:write("process.kill(process.pid, 'SIGTERM')\r")
    assert(p:wait(3000))
    local out = plain(p.stdout)
    assert.matches('status=143\n', out)
    for _, flag in ipairs({'icanon', 'echo', 'isig'}) do
      assert.matches('%s' .. flag .. '%s', out)
    end
  end)
end)
