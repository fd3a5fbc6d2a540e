-- cluster.supervision.top: the `luacluster status [PORT]` command. Reads
-- /stats from the status endpoint of a running cluster (`-w` with
-- --status-port, or setupPrimary{statusPort}) on 127.0.0.1:PORT
-- (LUACLUSTER_STATUS_PORT, else 9100) and prints its workers as a table,
-- as `pm2 ls` does:
--   slot  id  pid    uptime  restarts  rss      requests  req/s  conns  lag
--   1     3   41872  2m 5s   1         21.4 MB  10423     51.2   4      0 ms
-- --watch[=SECONDS] redraws it every 2 s (or SECONDS) until Ctrl-C;
-- --json prints /stats as it came. Exits 1 when the endpoint does not
-- answer.

local uv = require('uv')
local cjson = require('cjson')

local M = {}

local USAGE = 'usage: luacluster status [PORT] [--watch[=SECONDS]] [--json]\n'

local function fail(msg)
  io.stderr:write('luacluster status: ', msg, '\n')
  process.exitCode = 1
end

-- Human sizes and durations.
local function bytes(n)
  if n >= 1024 * 1024 * 1024 then
    return ('%.1f GB'):format(n / 1024 / 1024 / 1024)
  elseif n >= 1024 * 1024 then
    return ('%.1f MB'):format(n / 1024 / 1024)
  end
  return ('%.0f KB'):format(n / 1024)
end

local function duration(s)
  s = math.floor(s)
  if s < 60 then return s .. 's' end
  if s < 3600 then return ('%dm %ds'):format(s / 60, s % 60) end
  if s < 86400 then return ('%dh %dm'):format(s / 3600, s % 3600 / 60) end
  return ('%dd %dh'):format(s / 86400, s % 86400 / 3600)
end

local COLUMNS = {'slot', 'id', 'pid', 'uptime', 'restarts', 'rss',
  'requests', 'req/s', 'conns', 'lag', 'state'}

-- table_text(stats) -> the table, one line a worker, columns aligned.
function M.table_text(stats)
  local rows = {COLUMNS}
  local sorted = {}
  for i, s in ipairs(stats) do sorted[i] = s end
  table.sort(sorted, function(a, b)
    return (a.slot or a.id) < (b.slot or b.id) or
      ((a.slot or a.id) == (b.slot or b.id) and a.id < b.id)
  end)
  for _, s in ipairs(sorted) do
    rows[#rows + 1] = {tostring(s.slot or s.id), tostring(s.id),
      tostring(s.pid or '-'), duration(s.uptime or 0),
      tostring(s.restarts or 0), bytes(s.rss or 0), tostring(s.requests or 0),
      ('%.1f'):format(s.reqPerSec or 0), tostring(s.connections or 0),
      ('%d ms'):format(s.loopLag or 0), tostring(s.state or '')}
  end
  local width = {}
  for _, r in ipairs(rows) do
    for i, c in ipairs(r) do width[i] = math.max(width[i] or 0, #c) end
  end
  local out = {}
  for _, r in ipairs(rows) do
    local cells = {}
    for i, c in ipairs(r) do
      cells[i] = i < #r and c .. (' '):rep(width[i] - #c) or c
    end
    out[#out + 1] = table.concat(cells, '  ')
  end
  return table.concat(out, '\n') .. '\n'
end

-- fetch(port, cb): cb(body) or cb(nil, message) for GET /stats.
local function fetch(port, cb)
  local c = uv.new_tcp()
  local data, done = {}, false
  local function finish(body, err)
    if done then return end
    done = true
    if not c:is_closing() then c:close() end
    cb(body, err)
  end
  local timer = uv.new_timer()
  timer:start(3000, 0, function()
    timer:close()
    finish(nil, 'no answer within 3 s')
  end)
  c:connect('127.0.0.1', port, function(err)
    if err then
      if not timer:is_closing() then timer:close() end
      return finish(nil, ('cannot reach the status endpoint on ' ..
        '127.0.0.1:%d (%s); start the cluster with --status-port %d'):format(
        port, err, port))
    end
    c:read_start(function(e, chunk)
      if chunk then data[#data + 1] = chunk return end
      if not timer:is_closing() then timer:close() end
      if e then return finish(nil, e) end
      local raw = table.concat(data)
      local status = raw:match('^HTTP/1%.%d (%d+)')
      local body = raw:match('\r\n\r\n(.*)$')
      if status ~= '200' or not body then
        return finish(nil, 'unexpected answer: ' .. raw:sub(1, 80))
      end
      finish(body)
    end)
    c:write('GET /stats HTTP/1.1\r\nHost: 127.0.0.1\r\n' ..
      'Connection: close\r\n\r\n')
  end)
end

-- run(args): the command.
function M.run(args)
  local port, watch, json
  for _, a in ipairs(args) do
    if a == '--watch' or a == '-w' then
      watch = 2
    elseif a:match('^%-%-watch=') then
      watch = tonumber(a:match('=(.*)$'))
      if not watch or watch <= 0 then
        return fail('--watch=SECONDS needs a number > 0')
      end
    elseif a == '--json' then
      json = true
    elseif a == '-h' or a == '--help' then
      io.stdout:write(USAGE)
      return
    elseif tonumber(a) and not port then
      port = tonumber(a)
    else
      io.stderr:write(USAGE)
      process.exitCode = 9
      return
    end
  end
  port = port or tonumber(process.env.LUACLUSTER_STATUS_PORT) or 9100
  local function once(after)
    fetch(port, function(body, err)
      if not body then
        fail(err)
        if after then after(false) end
        return
      end
      local text
      if json then
        text = body .. '\n'
      else
        local ok, stats = pcall(cjson.decode, body)
        if not ok or type(stats) ~= 'table' then
          fail('unexpected /stats: ' .. body:sub(1, 80))
          if after then after(false) end
          return
        end
        text = M.table_text(stats)
      end
      if watch then
        -- Clear the screen and redraw, as watch(1) does.
        io.stdout:write('\27[H\27[2J', ('luacluster status 127.0.0.1:%d' ..
          '  every %gs  %s\n\n'):format(port, watch, os.date('%H:%M:%S')),
          text)
        io.stdout:flush()
      else
        io.stdout:write(text)
      end
      if after then after(true) end
    end)
  end
  if not watch then return once() end
  local timer = uv.new_timer()
  local function tick()
    once(function()
      process.exitCode = 0
      timer:start(watch * 1000, 0, tick)
    end)
  end
  tick()
  process.on('SIGINT', function()
    timer:close()
    process.exit(0)
  end)
end

return M
