-- One process answering GET / as bench/servers/luacluster.lua's workers
-- do; prints its port, exits on SIGTERM (so callgrind writes its counts).
local http = require('http')
local srv = http.createServer(function(req, res)
  res:writeHead(200, {['Content-Type'] = 'text/plain'})
  res:finish('Hello World\n')
end)
srv:listen(tonumber(arg[1]) or 0, '127.0.0.1', function()
  print('port ' .. srv:address().port)
end)
process:on('SIGTERM', function() os.exit(0) end)
