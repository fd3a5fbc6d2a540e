-- The hello server of the access log bench (bench/access_log/run.sh).
require('http').createServer(function(req, res)
  res:writeHead(200, {['Content-Type'] = 'text/plain'})
  res:finish('hello\n')
end):listen(tonumber(process.env.PORT) or 18090, '127.0.0.1')
