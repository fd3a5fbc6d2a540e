/* TLS contexts (SSL_CTX) from Node's options, the per-name contexts a
 * server picks by SNI, ALPN, and the session ticket keys a cluster's
 * workers share. The Lua binding of a context is here too: `_tls.context`
 * and its methods. */
#include <ctype.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <openssl/core_names.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/x509v3.h>
#include "tls.h"

/* What a context keeps beside OpenSSL's own state (ex_data). */
typedef struct {
  unsigned char alpn[256]; /* The server's protocols, wire format. */
  size_t alpn_len;
  struct sni_name {
    char *name; /* Lower case; "*.example.com" matches one label. */
    SSL_CTX *ctx;
  } * names;
  size_t nnames;
  lua_State *L; /* The main state, with sni_ref. */
  int sni_ref;  /* function(servername) -> context | nil; or LUA_NOREF. */
} ctx_data;

typedef struct {
  SSL_CTX *ctx;
} ctx_box;

static int data_index = -1;

/* The system's CA store (Debian's ca-certificates: OpenSSL's default
 * file, or SSL_CERT_FILE; and SSL_CERT_DIR when set), loaded once per
 * process into memory and shared by every context that verifies without
 * a `ca` of its own. OpenSSL's default paths would add a lookup that reads
 * the certificate directory on every handshake. */
static X509_STORE *system_store;

static X509_STORE *get_system_store(void) {
  const char *file, *dir;
  if (system_store != NULL)
    return system_store;
  system_store = X509_STORE_new();
  if (system_store == NULL)
    return NULL;
  file = getenv(X509_get_default_cert_file_env());
  if (file == NULL || *file == '\0')
    file = X509_get_default_cert_file();
  (void)X509_STORE_load_file(system_store, file);
  dir = getenv(X509_get_default_cert_dir_env());
  if (dir != NULL && *dir != '\0')
    (void)X509_STORE_load_path(system_store, dir);
  ERR_clear_error();
  return system_store;
}

/* The session ticket keys of this process: the current one seals new
 * tickets, the previous one still opens tickets sealed in the period
 * before. Both derive from a master secret and the number of the period
 * (the Unix time over the period's length), so every process that has the
 * same master has the same keys at the same time and they rotate
 * together with no message: a cluster's primary makes the master once and
 * hands it to its workers (lua/cluster/primary.lua, lua/tls.lua). They
 * belong to the process rather than to a context for that reason, and
 * because a handshake may end on another context (SNI). A process with no
 * master makes its own. */
static struct {
  unsigned char master[32];
  unsigned char cur[TLS_TICKET_KEY_SIZE], prev[TLS_TICKET_KEY_SIZE];
  int has_master;
  long period; /* Seconds. */
  long n;      /* The period the keys are for. */
} keys;

/* out = 80 bytes of HMAC-SHA256(master, "luacluster ticket <n> <i>"),
 * i = 0, 1, 2. */
static void derive(unsigned char *out, long n) {
  unsigned char md[EVP_MAX_MD_SIZE], all[96];
  unsigned int mdlen = 0;
  char label[64];
  int i, len;
  for (i = 0; i < 3; i++) {
    len = snprintf(label, sizeof(label), "luacluster ticket %ld %d", n, i);
    HMAC(EVP_sha256(), keys.master, sizeof(keys.master),
         (const unsigned char *)label, (size_t)len, md, &mdlen);
    memcpy(all + 32 * i, md, 32);
  }
  memcpy(out, all, TLS_TICKET_KEY_SIZE);
  OPENSSL_cleanse(all, sizeof(all));
  OPENSSL_cleanse(md, sizeof(md));
}

/* Brings the keys to the current period. 0, or -1 without randomness. */
static int keys_refresh(void) {
  long n;
  if (!keys.has_master) {
    if (RAND_bytes(keys.master, sizeof(keys.master)) != 1)
      return -1;
    keys.has_master = 1;
    if (keys.period <= 0)
      keys.period = TLS_TICKET_PERIOD;
    keys.n = -1;
  }
  n = (long)(time(NULL) / keys.period);
  if (n != keys.n) {
    derive(keys.cur, n);
    derive(keys.prev, n - 1);
    keys.n = n;
  }
  return 0;
}

static void data_free(void *parent, void *ptr, CRYPTO_EX_DATA *ad, int idx,
                      long argl, void *argp) {
  ctx_data *d = (ctx_data *)ptr;
  size_t i;
  (void)parent, (void)ad, (void)idx, (void)argl, (void)argp;
  if (d == NULL)
    return;
  if (d->sni_ref != LUA_NOREF && d->L != NULL)
    luaL_unref(d->L, LUA_REGISTRYINDEX, d->sni_ref);
  for (i = 0; i < d->nnames; i++) {
    free(d->names[i].name);
    SSL_CTX_free(d->names[i].ctx);
  }
  free(d->names);
  free(d);
}

static ctx_data *get_data(SSL_CTX *ctx) {
  return (ctx_data *)SSL_CTX_get_ex_data(ctx, data_index);
}

/* ---- Session tickets. ---- */

/* OpenSSL's ticket key callback: seals with the current key (enc 1) or
 * opens with whichever key's name the ticket carries (enc 0; 2 asks for a
 * fresh ticket when it was the previous key). */
static int ticket_cb(SSL *s, unsigned char name[16], unsigned char iv[16],
                     EVP_CIPHER_CTX *cctx, EVP_MAC_CTX *hctx, int enc) {
  const unsigned char *k;
  OSSL_PARAM params[3];
  int ret = 1;
  (void)s;
  if (keys_refresh() != 0)
    return -1;
  if (enc) {
    k = keys.cur;
    memcpy(name, k, 16);
    if (RAND_bytes(iv, 16) != 1)
      return -1;
    if (EVP_EncryptInit_ex(cctx, EVP_aes_256_cbc(), NULL, k + 16, iv) != 1)
      return -1;
  } else {
    if (memcmp(name, keys.cur, 16) == 0) {
      k = keys.cur;
    } else if (memcmp(name, keys.prev, 16) == 0) {
      k = keys.prev;
      ret = 2;
    } else {
      return 0; /* Unknown: a full handshake. */
    }
    if (EVP_DecryptInit_ex(cctx, EVP_aes_256_cbc(), NULL, k + 16, iv) != 1)
      return -1;
  }
  params[0] = OSSL_PARAM_construct_octet_string(OSSL_MAC_PARAM_KEY,
                                                (void *)(k + 48), 32);
  params[1] = OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST,
                                               (char *)"SHA256", 0);
  params[2] = OSSL_PARAM_construct_end();
  if (EVP_MAC_CTX_set_params(hctx, params) != 1)
    return -1;
  return ret;
}

void lc__tls_ctx_tickets(SSL_CTX *ctx) {
  SSL_CTX_set_tlsext_ticket_key_evp_cb(ctx, ticket_cb);
}

/* ---- Callbacks: SNI, ALPN, client certificates. ---- */

static int name_matches(const char *pat, const char *name) {
  if (pat[0] == '*' && pat[1] == '.') {
    const char *dot = strchr(name, '.');
    return dot != NULL && dot != name && strcasecmp(dot, pat + 1) == 0;
  }
  return strcasecmp(pat, name) == 0;
}

/* Asks the Lua SNI callback for the name's context, on the state of the
 * Lua call driving the engine (tls.Server) or else the main one (the HTTP
 * server's connections, from the loop). Inside OpenSSL: the call is
 * caught (lua/tls.lua's wrapper reports the callback's errors later). */
static void sni_lua(SSL *s, ctx_data *d, const char *name) {
  lc_tls *t = (lc_tls *)SSL_get_app_data(s);
  lua_State *L = t != NULL && t->L != NULL ? t->L : d->L;
  ctx_box *b;
  int top = lua_gettop(L);
  lua_rawgeti(L, LUA_REGISTRYINDEX, d->sni_ref);
  lua_pushstring(L, name);
  if (lc_pcall_catch(L, 1, 1) == 0) {
    b = (ctx_box *)luaL_testudata(L, -1, TLS_CTX_MT);
    if (b != NULL && b->ctx != NULL)
      SSL_set_SSL_CTX(s, b->ctx);
  }
  lua_settop(L, top);
}

/* Switches the connection to the context for the name the client asked
 * for: the SNI callback's, or else the last added (addContext) that
 * matches, as Node's. */
static int servername_cb(SSL *s, int *al, void *arg) {
  ctx_data *d = (ctx_data *)arg;
  const char *name = SSL_get_servername(s, TLSEXT_NAMETYPE_host_name);
  size_t i;
  (void)al;
  if (name == NULL || d == NULL)
    return SSL_TLSEXT_ERR_OK;
  if (d->sni_ref != LUA_NOREF) {
    sni_lua(s, d, name);
    return SSL_TLSEXT_ERR_OK;
  }
  for (i = d->nnames; i-- > 0;) {
    if (name_matches(d->names[i].name, name)) {
      SSL_set_SSL_CTX(s, d->names[i].ctx);
      break;
    }
  }
  return SSL_TLSEXT_ERR_OK;
}

/* Picks the first of the server's protocols the client offers; none in
 * common is a fatal alert (Node's no_application_protocol). */
static int alpn_cb(SSL *s, const unsigned char **out, unsigned char *outlen,
                   const unsigned char *in, unsigned int inlen, void *arg) {
  ctx_data *d = (ctx_data *)arg;
  unsigned char *o = NULL;
  (void)s;
  if (d == NULL || d->alpn_len == 0)
    return SSL_TLSEXT_ERR_NOACK;
  if (SSL_select_next_proto(&o, outlen, d->alpn, (unsigned int)d->alpn_len, in,
                            inlen) != OPENSSL_NPN_NEGOTIATED)
    return SSL_TLSEXT_ERR_ALERT_FATAL;
  *out = o;
  return SSL_TLSEXT_ERR_OK;
}

/* A client's new session (a TLS 1.3 ticket comes after the handshake):
 * noted on the engine, whose owner asks for it (e:new_session()). */
static int new_session_cb(SSL *s, SSL_SESSION *sess) {
  lc_tls *t = (lc_tls *)SSL_get_app_data(s);
  (void)sess;
  if (t != NULL)
    t->new_session = 1;
  return 0; /* Not kept: the owner takes it with SSL_get1_session. */
}

/* With rejectUnauthorized false the handshake goes on whatever the
 * verification says; the result stays readable (authorizationError). */
static int verify_accept_cb(int ok, X509_STORE_CTX *x) {
  (void)ok, (void)x;
  return 1;
}

/* ---- Building a context from options. ---- */

/* Returns nil, OpenSSL's reason, Node's code (ERR_OSSL_...) for the
 * error on the queue, or msg with code when the queue is empty. */
static int push_error(lua_State *L, const char *msg, const char *code) {
  unsigned long e = ERR_peek_last_error();
  char c[96];
  size_t i;
  lua_pushnil(L);
  if (e != 0 && ERR_reason_error_string(e) != NULL) {
    const char *r = ERR_reason_error_string(e);
    lua_pushfstring(L, "%s: %s", msg, r);
    snprintf(c, sizeof(c), "ERR_OSSL_%s", r);
    for (i = 9; c[i]; i++)
      c[i] = c[i] == ' ' ? '_' : (char)toupper(c[i]);
    lua_pushstring(L, c);
  } else {
    lua_pushstring(L, msg);
    lua_pushstring(L, code);
  }
  ERR_clear_error();
  return 3;
}

static int version_of(const char *v) {
  if (v == NULL)
    return 0;
  if (strcmp(v, "TLSv1.3") == 0)
    return TLS1_3_VERSION;
  if (strcmp(v, "TLSv1.2") == 0)
    return TLS1_2_VERSION;
  if (strcmp(v, "TLSv1.1") == 0)
    return TLS1_1_VERSION;
  if (strcmp(v, "TLSv1") == 0)
    return TLS1_VERSION;
  return -1;
}

static const char *opt_string(lua_State *L, int opts, const char *field) {
  const char *s;
  lua_getfield(L, opts, field);
  s = lua_type(L, -1) == LUA_TSTRING ? lua_tostring(L, -1) : NULL;
  lua_pop(L, 1); /* Still anchored by the options table. */
  return s;
}

static int opt_bool(lua_State *L, int opts, const char *field, int dflt) {
  int v;
  lua_getfield(L, opts, field);
  v = lua_isnil(L, -1) ? dflt : lua_toboolean(L, -1);
  lua_pop(L, 1);
  return v;
}

/* Reads ALPNProtocols (an array of strings) into wire format; -1 when
 * too long. */
static int alpn_wire(lua_State *L, int opts, unsigned char *out, size_t cap) {
  size_t n = 0, i, cnt, len;
  lua_getfield(L, opts, "ALPNProtocols");
  if (!lua_istable(L, -1)) {
    lua_pop(L, 1);
    return 0;
  }
  cnt = lua_objlen(L, -1);
  for (i = 1; i <= cnt; i++) {
    const char *p;
    lua_rawgeti(L, -1, (int)i);
    p = lua_tolstring(L, -1, &len);
    if (p == NULL || len == 0 || len > 255 || n + 1 + len > cap) {
      lua_pop(L, 2);
      return -1;
    }
    out[n++] = (unsigned char)len;
    memcpy(out + n, p, len);
    n += len;
    lua_pop(L, 1);
  }
  lua_pop(L, 1);
  return (int)n;
}

/* _tls.context(opts) -> context | nil, msg, code. opts: server (bool),
 * key, cert, ca (PEM strings or arrays of them), pfx (a list of {buf,
 * passphrase}), passphrase, minVersion, maxVersion, ciphers,
 * ALPNProtocols, requestCert, rejectUnauthorized, sessionTimeout (s). */
int lc__tls_ctx_new(lua_State *L) {
  int server, min, max, alpn_len, has_ca;
  const char *pass, *ciphers;
  unsigned char alpn[256];
  ctx_box *b;
  SSL_CTX *ctx;
  ctx_data *d;
  luaL_checktype(L, 1, LUA_TTABLE);
  server = opt_bool(L, 1, "server", 0);
  min = version_of(opt_string(L, 1, "minVersion"));
  max = version_of(opt_string(L, 1, "maxVersion"));
  luaL_argcheck(L, min >= 0 && max >= 0, 1,
                "minVersion/maxVersion must be 'TLSv1.2' or 'TLSv1.3'");
  alpn_len = alpn_wire(L, 1, alpn, sizeof(alpn));
  luaL_argcheck(L, alpn_len >= 0, 1, "ALPNProtocols: too long or empty");
  pass = opt_string(L, 1, "passphrase");
  ciphers = opt_string(L, 1, "ciphers");
  /* Allocated from here on: nothing below raises. */
  b = (ctx_box *)lua_newuserdata(L, sizeof(*b));
  b->ctx = NULL;
  luaL_getmetatable(L, TLS_CTX_MT);
  lua_setmetatable(L, -2);
  if (data_index < 0)
    data_index = SSL_CTX_get_ex_new_index(0, NULL, NULL, NULL, data_free);
  ctx = SSL_CTX_new(TLS_method());
  d = (ctx_data *)calloc(1, sizeof(*d));
  if (ctx == NULL || d == NULL) {
    SSL_CTX_free(ctx);
    free(d);
    return push_error(L, "SSL_CTX_new failed", "ERR_OSSL_MALLOC_FAILURE");
  }
  b->ctx = ctx;
  d->sni_ref = LUA_NOREF;
  SSL_CTX_set_ex_data(ctx, data_index, d);
  SSL_CTX_set_min_proto_version(ctx, min ? min : TLS1_2_VERSION);
  if (max)
    SSL_CTX_set_max_proto_version(ctx, max);
  SSL_CTX_set_mode(ctx, SSL_MODE_RELEASE_BUFFERS);
  SSL_CTX_set_options(ctx, SSL_OP_NO_RENEGOTIATION |
                               SSL_OP_CIPHER_SERVER_PREFERENCE);
  if (ciphers && SSL_CTX_set_cipher_list(ctx, ciphers) != 1)
    return push_error(L, "No cipher match", "ERR_SSL_NO_CIPHER_MATCH");
  if (!lc__tls_each_pem(L, 1, "cert", lc__tls_use_cert, ctx, NULL))
    return push_error(L, "cannot read the certificate (cert)",
                      "ERR_OSSL_PEM_NO_START_LINE");
  if (!lc__tls_each_pem(L, 1, "key", lc__tls_use_key, ctx, (void *)pass))
    return push_error(L, "cannot read the private key (key)",
                      "ERR_OSSL_BAD_DECRYPT");
  if (!lc__tls_each_pfx(L, 1, ctx, pass))
    return push_error(L, "cannot read the PFX (pfx): not PKCS#12, or a "
                         "wrong passphrase",
                      "ERR_OSSL_PKCS12_MAC_VERIFY_FAILURE");
  lua_getfield(L, 1, "key");
  if (lua_isnil(L, -1)) {
    lua_pop(L, 1);
    lua_getfield(L, 1, "pfx");
  }
  if (!lua_isnil(L, -1) && SSL_CTX_check_private_key(ctx) != 1) {
    lua_pop(L, 1);
    return push_error(L, "the key does not match the certificate",
                      "ERR_OSSL_X509_KEY_VALUES_MISMATCH");
  }
  lua_pop(L, 1);
  lua_getfield(L, 1, "ca");
  has_ca = !lua_isnil(L, -1);
  lua_pop(L, 1);
  if (has_ca) {
    if (!lc__tls_each_pem(L, 1, "ca", lc__tls_add_ca, ctx,
                          server ? (void *)ctx : NULL))
      return push_error(L, "cannot read a CA certificate (ca)",
                        "ERR_OSSL_PEM_NO_START_LINE");
  } else if (!server || opt_bool(L, 1, "requestCert", 0)) {
    /* A server that verifies nobody needs no store: an empty one keeps
     * OpenSSL from looking for its chain anywhere else. */
    X509_STORE *st = get_system_store();
    if (st != NULL)
      SSL_CTX_set1_cert_store(ctx, st);
  }
  if (server) {
    static const unsigned char sid[] = "luacluster";
    SSL_CTX_set_session_id_context(ctx, sid, sizeof(sid) - 1);
    /* Sessions resume from tickets, which every worker can open; a
     * per-process cache would only hold memory. */
    SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
    SSL_CTX_set_tlsext_servername_callback(ctx, servername_cb);
    SSL_CTX_set_tlsext_servername_arg(ctx, d);
    if (alpn_len > 0) {
      memcpy(d->alpn, alpn, (size_t)alpn_len);
      d->alpn_len = (size_t)alpn_len;
      SSL_CTX_set_alpn_select_cb(ctx, alpn_cb, d);
    }
    if (opt_bool(L, 1, "requestCert", 0)) {
      if (opt_bool(L, 1, "rejectUnauthorized", 1))
        SSL_CTX_set_verify(
            ctx, SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT, NULL);
      else
        SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, verify_accept_cb);
    }
    lua_getfield(L, 1, "sessionTimeout");
    if (lua_isnumber(L, -1))
      SSL_CTX_set_timeout(ctx, (long)lua_tonumber(L, -1));
    lua_pop(L, 1);
    lc__tls_ctx_tickets(ctx);
  } else {
    /* The client checks after the handshake (Node's rejectUnauthorized),
     * so the reason reaches its error. */
    SSL_CTX_set_verify(ctx, SSL_VERIFY_NONE, NULL);
    SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_CLIENT |
                                            SSL_SESS_CACHE_NO_INTERNAL_STORE);
    SSL_CTX_sess_set_new_cb(ctx, new_session_cb);
    if (alpn_len > 0)
      SSL_CTX_set_alpn_protos(ctx, alpn, (unsigned int)alpn_len);
  }
  return 1;
}

SSL_CTX *lc__tls_check_ctx(lua_State *L, int idx) {
  ctx_box *b = (ctx_box *)luaL_checkudata(L, idx, TLS_CTX_MT);
  luaL_argcheck(L, b->ctx != NULL, idx, "a TLS context that failed");
  return b->ctx;
}

/* ctx:add_context(hostname, ctx2): serves hostname (or "*.domain") with
 * ctx2's certificate (Node's server.addContext). */
static int ctx_add_context(lua_State *L) {
  SSL_CTX *ctx = lc__tls_check_ctx(L, 1);
  const char *name = luaL_checkstring(L, 2);
  SSL_CTX *sub = lc__tls_check_ctx(L, 3);
  ctx_data *d = get_data(ctx);
  struct sni_name *nn;
  char *copy;
  if (d == NULL)
    return luaL_error(L, "not a server context");
  nn =
      (struct sni_name *)realloc(d->names, (d->nnames + 1) * sizeof(*d->names));
  if (nn == NULL)
    return luaL_error(L, "out of memory");
  d->names = nn;
  copy = strdup(name);
  if (copy == NULL)
    return luaL_error(L, "out of memory");
  SSL_CTX_up_ref(sub);
  d->names[d->nnames].name = copy;
  d->names[d->nnames].ctx = sub;
  d->nnames++;
  return 0;
}

/* ctx:sni_callback(fn): fn(servername) -> a context (userdata) or nil
 * (this one), called during each handshake that names a server. */
static int ctx_sni_callback(lua_State *L) {
  SSL_CTX *ctx = lc__tls_check_ctx(L, 1);
  ctx_data *d = get_data(ctx);
  luaL_checktype(L, 2, LUA_TFUNCTION);
  if (d->sni_ref != LUA_NOREF)
    luaL_unref(L, LUA_REGISTRYINDEX, d->sni_ref);
  d->L = lc_get(L)->L;
  lua_pushvalue(L, 2);
  d->sni_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  return 0;
}

static int ctx_gc(lua_State *L) {
  ctx_box *b = (ctx_box *)luaL_checkudata(L, 1, TLS_CTX_MT);
  SSL_CTX_free(b->ctx);
  b->ctx = NULL;
  return 0;
}

const luaL_Reg lc__tls_ctx_methods[] = {{"add_context", ctx_add_context},
                                        {"sni_callback", ctx_sni_callback},
                                        {"__gc", ctx_gc},
                                        {NULL, NULL}};

/* _tls.ticket_master(secret[, period]): the master secret (32 bytes)
 * the process's ticket keys derive from, and the rotation period in
 * seconds (TLS_TICKET_PERIOD by default). */
int lc__tls_ticket_master(lua_State *L) {
  size_t n;
  const char *m = luaL_checklstring(L, 1, &n);
  lua_Number period = luaL_optnumber(L, 2, TLS_TICKET_PERIOD);
  luaL_argcheck(L, n == sizeof(keys.master), 1, "the secret is 32 bytes");
  luaL_argcheck(L, period >= 1, 2, "the period is at least 1 s");
  memcpy(keys.master, m, n);
  keys.has_master = 1;
  keys.period = (long)period;
  keys.n = -1;
  return 0;
}

/* _tls.random(n) -> n random bytes (OpenSSL's generator). */
int lc__tls_random(lua_State *L) {
  int n = (int)luaL_checkinteger(L, 1);
  luaL_Buffer b;
  char *p;
  luaL_argcheck(L, n > 0 && n <= LUAL_BUFFERSIZE, 1, "1 to BUFSIZ bytes");
  luaL_buffinit(L, &b);
  p = luaL_prepbuffer(&b);
  if (RAND_bytes((unsigned char *)p, n) != 1)
    return luaL_error(L, "no randomness available");
  luaL_addsize(&b, (size_t)n);
  luaL_pushresult(&b);
  return 1;
}
