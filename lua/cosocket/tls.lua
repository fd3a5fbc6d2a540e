-- cosocket.tls: TLS on a sync-style socket, OpenResty's
-- sock:sslhandshake(reused_session, server_name, verify) and
-- sock:tlshandshake(opts) (opts: reused_session, server_name, verify,
-- and ca, client_cert, client_priv_key: PEM strings). The connection's
-- luv handle is wrapped in a TLS engine (lua/tls/handle.lua), which has
-- the handle's methods, so receive and send are unchanged. Verification
-- is against the system's CA store (Debian's ca-certificates;
-- SSL_CERT_FILE / SSL_CERT_DIR as OpenSSL reads them) or opts.ca; errors
-- are ngx's words: 'handshake failed', '<n>: <reason>' for a certificate
-- that did not verify, 'certificate host mismatch', 'timeout', 'closed'.

local C = require('_tls')
local co = require('co')
local uv = require('uv')
local Conn = require('cosocket.conn')
local Handle = require('tls.handle')

local type, tostring = type, tostring
local current, suspend, wake = co._current, co._suspend, co._wake

local M = {}

-- X509 verification codes, for ngx's '<n>: <reason>'.
local VERIFY_NUM = {UNABLE_TO_GET_ISSUER_CERT = 2,
  UNABLE_TO_GET_ISSUER_CERT_LOCALLY = 20,
  UNABLE_TO_VERIFY_LEAF_SIGNATURE = 21, DEPTH_ZERO_SELF_SIGNED_CERT = 18,
  SELF_SIGNED_CERT_IN_CHAIN = 19, CERT_HAS_EXPIRED = 10,
  CERT_NOT_YET_VALID = 9, CERT_REVOKED = 23}

-- Contexts, one per set of options (made once: a context loads the CA
-- store).
local contexts = {}

local function context(opts)
  local key = tostring(opts.ca) .. '\0' .. tostring(opts.client_cert)
    .. '\0' .. tostring(opts.client_priv_key)
  local ctx = contexts[key]
  if ctx then return ctx end
  local err, code
  ctx, err, code = C.context({ca = opts.ca, cert = opts.client_cert,
    key = opts.client_priv_key})
  if not ctx then return nil, err, code end
  contexts[key] = ctx
  return ctx
end

-- handshake(sock, opts, ms) -> the session (a string for a later
-- reused_session; true when there is none yet, or reused_session is
-- false) | nil, err.
function M.handshake(self, opts, ms)
  local c = current('tcpsock:sslhandshake')
  local conn = self._c
  if not conn or not conn.h then return nil, 'closed' end
  if conn.tls then
    -- A connection from the pool, secured by its first user.
    if opts.reused_session == false then return true end
    return conn.h:engine():session() or true
  end
  if conn.reader or conn.writer then return nil, 'socket busy' end
  local ctx, cerr = context(opts)
  if not ctx then return nil, cerr end
  local name = opts.server_name
  if name ~= nil and type(name) ~= 'string' then
    error("bad argument #2 to 'sslhandshake' (string expected, got "
      .. type(name) .. ')', 3)
  end
  local e = C.engine(ctx, false, name, opts.verify and name ~= nil)
  if type(opts.reused_session) == 'string' then
    e:set_session(opts.reused_session)
  end
  local raw = conn.h
  raw:read_stop()
  local token, waiting, done, err = {}, false, false, nil
  local th = Handle.new(raw, e, function(e2)
    done, err = true, e2
    if waiting then wake(c, token) end
  end)
  conn.h = th
  th:start()
  if not done then
    waiting = true
    local timer = uv.new_timer()
    uv.update_time()
    timer:start(ms, 0, function()
      if not done then
        done, err = true, 'timeout'
        wake(c, token)
      end
    end)
    raw:ref()
    suspend(c, token, conn.cancel)
    timer:close()
    if conn.h then raw:unref() end
  end
  local function fail(msg)
    if self._c == conn then self._c = nil end
    Conn.close(conn)
    return nil, msg
  end
  if not conn.h then return nil, 'closed' end
  if err == 'timeout' then return fail('timeout') end
  if err then return fail('handshake failed') end
  if opts.verify then
    local code, reason = e:verify_error()
    if code == 'ERR_TLS_CERT_ALTNAME_INVALID' then
      return fail('certificate host mismatch')
    elseif code then
      return fail((VERIFY_NUM[code] or 0) .. ': ' .. tostring(reason))
    end
  end
  conn.tls = true
  th:read_start(conn.on_read)
  if opts.reused_session == false then return true end
  return e:session() or true
end

return M
