-- The application of the Kubernetes example: a plain single-process http
-- server on PORT (8000), run unmodified in N workers by `luacluster -w`
-- (see luacluster.yaml and Dockerfile beside it).
local http = require('http')
local port = tonumber(process.env.PORT) or 8000

http.createServer(function(req, res)
  res:writeHead(200, {['Content-Type'] = 'text/plain'})
  res:finish('hello from pid ' .. process.pid .. '\n')
end):listen(port)
