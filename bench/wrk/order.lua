-- wrk -s bench/wrk/order.lua: every request is a POST of the JSON order in
-- bench/wrk/order.json (the file next to this script), for the /order
-- route of bench/servers/*.
local dir = debug.getinfo(1, 'S').source:match('^@(.*/)') or './'
local f = assert(io.open(dir .. 'order.json', 'rb'))
local body = f:read('*a')
f:close()

wrk.method = 'POST'
wrk.body = body
wrk.headers['Content-Type'] = 'application/json'
