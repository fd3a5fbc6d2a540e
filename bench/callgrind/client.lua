-- client.lua PORT N: N keep-alive GET / one after the other (the next sent
-- once the last answer is in), then exits.
local net = require('net')
local port, n = tonumber(arg[1]), tonumber(arg[2])
local req = 'GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n'
local sock = net.connect(port, '127.0.0.1')
local done, buf = 0, ''
sock:on('connect', function() sock:write(req) end)
sock:on('data', function(d)
  buf = buf .. d
  while true do
    local e = buf:find('Hello World\n', 1, true)
    if not e then break end
    buf = buf:sub(e + 12)
    done = done + 1
    if done == n then sock:destroy() return end
    sock:write(req)
  end
end)
