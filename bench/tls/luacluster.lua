-- The TLS benchmark's luacluster peer: WORKERS workers serving
-- "Hello World\n" over https on PORT with KEY and CERT (files).
local cluster = require('cluster')
local https = require('https')
local env = process.env

if cluster.isPrimary then
  for _ = 1, tonumber(env.WORKERS) or 2 do cluster.fork() end
else
  local function read(p)
    local f = assert(io.open(p, 'rb'))
    local s = f:read('*a')
    f:close()
    return s
  end
  local TEXT = {['Content-Type'] = 'text/plain'}
  https.createServer({key = read(env.KEY), cert = read(env.CERT)},
    function(_, res)
      res:writeHead(200, TEXT)
      res:finish('Hello World\n')
    end):listen(tonumber(env.PORT))
end
