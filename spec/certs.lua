-- Certificates for the TLS specs, made with the openssl CLI in a temp
-- dir, once per spec file: a throwaway CA; server certificates for
-- localhost/127.0.0.1 ('server', 'server2': a second key and serial for
-- swaps) and other.example ('other'); a client certificate ('client');
-- a self-signed server certificate ('selfsigned') and a client
-- certificate of another CA ('rogue'). All ECDSA P-256.
--   local certs = require('certs').make()
--   certs.ca, certs.server.key, certs.server.cert, certs.dir .. '/ca.crt'

local h = require('helper')

local M = {}

local made

local SCRIPT = [[
set -e
cd "$1"
key() { openssl ecparam -name prime256v1 -genkey -noout -out "$1.key"; }
sign() { # name cn ext ca
  key "$1"
  openssl req -new -key "$1.key" -subj "/CN=$2" -out "$1.csr"
  printf '%s\n' "$3" > "$1.ext"
  openssl x509 -req -in "$1.csr" -CA "$4.crt" -CAkey "$4.key" \
    -CAcreateserial -days 2 -extfile "$1.ext" -out "$1.crt" 2>/dev/null
}
key ca
openssl req -x509 -new -key ca.key -subj /CN=luacluster-test-ca -days 2 \
  -out ca.crt
key rogueca
openssl req -x509 -new -key rogueca.key -subj /CN=rogue-ca -days 2 \
  -out rogueca.crt
sign server localhost 'subjectAltName=DNS:localhost,IP:127.0.0.1' ca
sign server2 localhost 'subjectAltName=DNS:localhost,IP:127.0.0.1' ca
sign other other.example 'subjectAltName=DNS:other.example' ca
sign client client 'extendedKeyUsage=clientAuth' ca
sign rogue rogue 'extendedKeyUsage=clientAuth' rogueca
key selfsigned
openssl req -x509 -new -key selfsigned.key -subj /CN=localhost -days 2 \
  -addext 'subjectAltName=DNS:localhost' -out selfsigned.crt
]]

local function read(path)
  local f = assert(io.open(path, 'rb'))
  local s = f:read('*a')
  f:close()
  return s
end
M.read = read

function M.make()
  if made then return made end
  local dir = os.tmpname()
  os.remove(dir)
  assert(os.execute('mkdir -p ' .. dir) == 0)
  local p = h.run({'-c', SCRIPT, 'sh', dir}, {cmd = 'sh', timeout = 30000})
  assert(p.code == 0, 'openssl failed: ' .. p.stderr)
  made = {dir = dir, ca = read(dir .. '/ca.crt')}
  for _, n in ipairs({'server', 'server2', 'other', 'client', 'rogue',
      'selfsigned'}) do
    made[n] = {key = read(dir .. '/' .. n .. '.key'),
      cert = read(dir .. '/' .. n .. '.crt'),
      keyfile = dir .. '/' .. n .. '.key',
      certfile = dir .. '/' .. n .. '.crt'}
  end
  return made
end

-- remove(): deletes the dir (a spec file's teardown).
function M.remove()
  if made then
    os.execute('rm -rf ' .. made.dir)
    made = nil
  end
end

return M
