/* The `_tls` module: contexts (ctx.c) and engines (engine.c) for the Lua
 * side, which moves the ciphertext over luv sockets (lua/tls.lua,
 * lua/tls/, cosockets). An engine is a userdata owning its lc_tls; methods
 * on a freed one raise. */
#include <string.h>
#include <arpa/inet.h>
#include <openssl/ec.h>
#include <openssl/err.h>
#include <openssl/x509v3.h>
#include "tls.h"

typedef struct {
  lc_tls *t;
} engine_box;

static lc_tls *check_engine(lua_State *L, int idx) {
  engine_box *b = (engine_box *)luaL_checkudata(L, idx, TLS_ENGINE_MT);
  if (b->t == NULL)
    luaL_error(L, "TLS engine is closed");
  return b->t;
}

/* Pushes nil, reason, code for the engine's failure. */
static int push_fail(lua_State *L, lc_tls *t) {
  lua_pushnil(L);
  lua_pushstring(L, t->reason[0] ? t->reason : "TLS error");
  lua_pushstring(L, t->code[0] ? t->code : "ERR_SSL_INTERNAL_ERROR");
  return 3;
}

/* _tls.engine(ctx, server[, servername[, check_host]]) -> engine. */
static int tls_engine(lua_State *L) {
  SSL_CTX *ctx = lc__tls_check_ctx(L, 1);
  int server = lua_toboolean(L, 2);
  const char *name = luaL_optstring(L, 3, NULL);
  int check = lua_toboolean(L, 4);
  engine_box *b = (engine_box *)lua_newuserdata(L, sizeof(*b));
  b->t = NULL;
  luaL_getmetatable(L, TLS_ENGINE_MT);
  lua_setmetatable(L, -2);
  b->t = lc__tls_new(ctx, server, name, check);
  if (b->t == NULL)
    return luaL_error(L, "out of memory");
  return 1;
}

/* e:feed(ciphertext) */
static int engine_feed(lua_State *L) {
  lc_tls *t = check_engine(L, 1);
  size_t n;
  const char *p = luaL_checklstring(L, 2, &n);
  lc__tls_feed(t, p, n);
  return 0;
}

/* e:handshake() -> true (done) | false (wants more) | nil, msg, code,
 * plain (true when a plain HTTP request came). */
static int engine_handshake(lua_State *L) {
  lc_tls *t = check_engine(L, 1);
  int r;
  t->L = L; /* For the SNI callback, which may run inside. */
  r = lc__tls_advance(t);
  t->L = NULL;
  if (r == TLS_OK || r == TLS_WANT) {
    lua_pushboolean(L, r == TLS_OK);
    return 1;
  }
  push_fail(L, t);
  lua_pushboolean(L, r == TLS_PLAIN);
  return 4;
}

/* e:read() -> plaintext (all there is) | false (none yet) | nil, msg,
 * code (nil, 'closed', 'EOF' after close_notify). */
static int engine_read(lua_State *L) {
  lc_tls *t = check_engine(L, 1);
  luaL_Buffer b;
  int status = TLS_OK, any = 0;
  luaL_buffinit(L, &b);
  for (;;) {
    char *p = luaL_prepbuffer(&b);
    size_t n = lc__tls_read(t, p, LUAL_BUFFERSIZE, &status);
    if (n == 0)
      break;
    luaL_addsize(&b, n);
    any = 1;
  }
  luaL_pushresult(&b);
  if (any)
    return 1;
  if (status == TLS_WANT) {
    lua_pushboolean(L, 0);
    return 1;
  }
  if (status == TLS_CLOSED) {
    lua_pushnil(L);
    lua_pushliteral(L, "closed");
    lua_pushliteral(L, "EOF");
    return 3;
  }
  return push_fail(L, t);
}

/* e:write(plaintext) -> true | nil, msg, code */
static int engine_write(lua_State *L) {
  lc_tls *t = check_engine(L, 1);
  size_t n;
  const char *p = luaL_checklstring(L, 2, &n);
  if (lc__tls_write(t, p, n) != 0)
    return push_fail(L, t);
  lua_pushboolean(L, 1);
  return 1;
}

/* e:take() -> ciphertext to send, or nil. */
static int engine_take(lua_State *L) {
  lc_tls *t = check_engine(L, 1);
  size_t n = BIO_ctrl_pending(t->wbio);
  luaL_Buffer b;
  if (n == 0) {
    lua_pushnil(L);
    return 1;
  }
  luaL_buffinit(L, &b);
  while (n > 0) {
    char *p = luaL_prepbuffer(&b);
    int k = BIO_read(t->wbio, p, LUAL_BUFFERSIZE);
    if (k <= 0)
      break;
    luaL_addsize(&b, (size_t)k);
    n = BIO_ctrl_pending(t->wbio);
  }
  luaL_pushresult(&b);
  return 1;
}

/* e:verify_error() -> nil when the peer's certificate verified, else
 * Node's code and the reason. */
static int engine_verify_error(lua_State *L) {
  lc_tls *t = check_engine(L, 1);
  const char *code = lc__tls_verify_error(t);
  if (code == NULL)
    return 0;
  lua_pushstring(L, code);
  lua_pushstring(L, t->reason);
  return 2;
}

/* Pushes {alpn=, protocol=, cipher=, standardName=, servername=,
 * reused=} of t. */
void lc__tls_push_info(lua_State *L, lc_tls *t) {
  const unsigned char *alpn = NULL;
  unsigned int alen = 0;
  const char *sn;
  const SSL_CIPHER *c = SSL_get_current_cipher(t->ssl);
  lua_createtable(L, 0, 5);
  SSL_get0_alpn_selected(t->ssl, &alpn, &alen);
  if (alen > 0)
    lua_pushlstring(L, (const char *)alpn, alen);
  else
    lua_pushboolean(L, 0);
  lua_setfield(L, -2, "alpn");
  lua_pushstring(L, SSL_get_version(t->ssl));
  lua_setfield(L, -2, "protocol");
  if (c) {
    lua_pushstring(L, SSL_CIPHER_get_name(c));
    lua_setfield(L, -2, "cipher");
    lua_pushstring(L, SSL_CIPHER_standard_name(c));
    lua_setfield(L, -2, "standardName");
  }
  sn = SSL_get_servername(t->ssl, TLSEXT_NAMETYPE_host_name);
  if (sn) {
    lua_pushstring(L, sn);
    lua_setfield(L, -2, "servername");
  }
  lua_pushboolean(L, SSL_session_reused(t->ssl));
  lua_setfield(L, -2, "reused");
}

/* e:info() -> lc__tls_push_info's table. */
static int engine_info(lua_State *L) {
  lc__tls_push_info(L, check_engine(L, 1));
  return 1;
}

/* Pushes an X509_NAME as a table of its fields (CN=, O=, ...). */
static void push_name(lua_State *L, X509_NAME *n) {
  int i, cnt = X509_NAME_entry_count(n);
  lua_newtable(L);
  for (i = 0; i < cnt; i++) {
    X509_NAME_ENTRY *e = X509_NAME_get_entry(n, i);
    ASN1_OBJECT *o = X509_NAME_ENTRY_get_object(e);
    ASN1_STRING *d = X509_NAME_ENTRY_get_data(e);
    int nid = OBJ_obj2nid(o);
    const char *sn = nid != NID_undef ? OBJ_nid2sn(nid) : "?";
    lua_pushlstring(L, (const char *)ASN1_STRING_get0_data(d),
                    (size_t)ASN1_STRING_length(d));
    lua_setfield(L, -2, sn);
  }
}

/* Sets field name of the table on top to the text ASN1_TIME_print writes
 * ("Mar  5 12:00:00 2027 GMT", Node's valid_from/valid_to). */
static void set_time(lua_State *L, const char *name, const ASN1_TIME *tm) {
  BIO *b = BIO_new(BIO_s_mem());
  char *p;
  long n;
  if (b == NULL)
    return;
  if (ASN1_TIME_print(b, tm) > 0) {
    n = BIO_get_mem_data(b, &p);
    lua_pushlstring(L, p, (size_t)n);
    lua_setfield(L, -2, name);
  }
  BIO_free(b);
}

/* Sets field name to x's digest by md as Node writes it ("AB:CD:..."). */
static void set_fingerprint(lua_State *L, const char *name, X509 *x,
                            const EVP_MD *md) {
  static const char hex[] = "0123456789ABCDEF";
  unsigned char d[EVP_MAX_MD_SIZE];
  char out[EVP_MAX_MD_SIZE * 3];
  unsigned int n = 0, i;
  if (!X509_digest(x, md, d, &n) || n == 0)
    return;
  for (i = 0; i < n; i++) {
    out[i * 3] = hex[d[i] >> 4];
    out[i * 3 + 1] = hex[d[i] & 15];
    out[i * 3 + 2] = ':';
  }
  lua_pushlstring(L, out, n * 3 - 1);
  lua_setfield(L, -2, name);
}

/* Sets subjectaltname as Node's: "DNS:a, IP Address:127.0.0.1, ...". */
static void set_altnames(lua_State *L, X509 *x) {
  GENERAL_NAMES *names = X509_get_ext_d2i(x, NID_subject_alt_name, NULL,
                                          NULL);
  luaL_Buffer b;
  int i, n;
  if (names == NULL)
    return;
  luaL_buffinit(L, &b);
  n = sk_GENERAL_NAME_num(names);
  for (i = 0; i < n; i++) {
    const GENERAL_NAME *g = sk_GENERAL_NAME_value(names, i);
    const ASN1_STRING *str = NULL;
    const char *kind = NULL;
    char ip[64];
    if (i > 0)
      luaL_addstring(&b, ", ");
    switch (g->type) {
    case GEN_DNS:
      kind = "DNS:", str = g->d.dNSName;
      break;
    case GEN_EMAIL:
      kind = "email:", str = g->d.rfc822Name;
      break;
    case GEN_URI:
      kind = "URI:", str = g->d.uniformResourceIdentifier;
      break;
    case GEN_IPADD: {
      const unsigned char *a = ASN1_STRING_get0_data(g->d.iPAddress);
      int len = ASN1_STRING_length(g->d.iPAddress);
      luaL_addstring(&b, "IP Address:");
      if (len == 4 || len == 16) {
        if (inet_ntop(len == 4 ? AF_INET : AF_INET6, a, ip, sizeof(ip)))
          luaL_addstring(&b, ip);
      }
      continue;
    }
    default:
      luaL_addstring(&b, "othername:<unsupported>");
      continue;
    }
    luaL_addstring(&b, kind);
    luaL_addlstring(&b, (const char *)ASN1_STRING_get0_data(str),
                    (size_t)ASN1_STRING_length(str));
  }
  GENERAL_NAMES_free(names);
  luaL_pushresult(&b);
  lua_setfield(L, -2, "subjectaltname");
}

/* Sets raw (the certificate's DER) and pubkey (its public key's DER). */
static void set_der(lua_State *L, X509 *x) {
  unsigned char *der = NULL;
  EVP_PKEY *k = X509_get0_pubkey(x);
  int n = i2d_X509(x, &der);
  if (n > 0) {
    lua_pushlstring(L, (const char *)der, (size_t)n);
    lua_setfield(L, -2, "raw");
  }
  OPENSSL_free(der);
  der = NULL;
  if (k != NULL && (n = i2d_PUBKEY(k, &der)) > 0) {
    lua_pushlstring(L, (const char *)der, (size_t)n);
    lua_setfield(L, -2, "pubkey");
  }
  OPENSSL_free(der);
}

/* Sets bits, and for an EC key asn1Curve and nistCurve, as Node's. */
static void set_key(lua_State *L, X509 *x) {
  EVP_PKEY *k = X509_get0_pubkey(x);
  char group[64];
  size_t len = 0;
  if (k == NULL)
    return;
  lua_pushinteger(L, EVP_PKEY_get_bits(k));
  lua_setfield(L, -2, "bits");
  if (EVP_PKEY_get_base_id(k) == EVP_PKEY_EC &&
      EVP_PKEY_get_group_name(k, group, sizeof(group), &len)) {
    int nid = OBJ_sn2nid(group);
    const char *nist = nid != NID_undef ? EC_curve_nid2nist(nid) : NULL;
    lua_pushstring(L, group);
    lua_setfield(L, -2, "asn1Curve");
    if (nist != NULL) {
      lua_pushstring(L, nist);
      lua_setfield(L, -2, "nistCurve");
    }
  }
}

/* Pushes the peer's certificate with Node's fields (subject, issuer,
 * subjectaltname, ca, bits, asn1Curve, nistCurve, valid_from, valid_to,
 * serialNumber, fingerprint, fingerprint256, fingerprint512, raw, pubkey;
 * 0 pushed without one); returns the count pushed. */
int lc__tls_push_peer(lua_State *L, lc_tls *t) {
  X509 *x = SSL_get0_peer_certificate(t->ssl);
  ASN1_INTEGER *sn;
  BIGNUM *bn;
  if (x == NULL)
    return 0;
  lua_createtable(L, 0, 16);
  push_name(L, X509_get_subject_name(x));
  lua_setfield(L, -2, "subject");
  push_name(L, X509_get_issuer_name(x));
  lua_setfield(L, -2, "issuer");
  set_altnames(L, x);
  lua_pushboolean(L, X509_check_ca(x) > 0);
  lua_setfield(L, -2, "ca");
  set_key(L, x);
  set_time(L, "valid_from", X509_get0_notBefore(x));
  set_time(L, "valid_to", X509_get0_notAfter(x));
  sn = X509_get_serialNumber(x);
  bn = ASN1_INTEGER_to_BN(sn, NULL);
  if (bn) {
    char *hex = BN_bn2hex(bn);
    if (hex) {
      lua_pushstring(L, hex);
      lua_setfield(L, -2, "serialNumber");
      OPENSSL_free(hex);
    }
    BN_free(bn);
  }
  set_fingerprint(L, "fingerprint", x, EVP_sha1());
  set_fingerprint(L, "fingerprint256", x, EVP_sha256());
  set_fingerprint(L, "fingerprint512", x, EVP_sha512());
  set_der(L, x);
  return 1;
}

/* _tls.ciphers() -> the names of the ciphers a default context offers,
 * TLS 1.3's suites first (Node's tls.getCiphers() lower-cases them). */
static int tls_ciphers(lua_State *L) {
  SSL_CTX *ctx = SSL_CTX_new(TLS_method());
  SSL *ssl = ctx ? SSL_new(ctx) : NULL;
  STACK_OF(SSL_CIPHER) *list = ssl ? SSL_get_ciphers(ssl) : NULL;
  int i, n = list ? sk_SSL_CIPHER_num(list) : 0;
  lua_createtable(L, n, 0);
  for (i = 0; i < n; i++) {
    lua_pushstring(L, SSL_CIPHER_get_name(sk_SSL_CIPHER_value(list, i)));
    lua_rawseti(L, -2, i + 1);
  }
  SSL_free(ssl);
  SSL_CTX_free(ctx);
  return 1;
}

/* e:peer_certificate() -> the certificate's fields (above), or nil. */
static int engine_peer_certificate(lua_State *L) {
  return lc__tls_push_peer(L, check_engine(L, 1));
}

/* e:session() -> the session as DER (for set_session), or nil. */
static int engine_session(lua_State *L) {
  lc_tls *t = check_engine(L, 1);
  SSL_SESSION *s = SSL_get1_session(t->ssl);
  unsigned char *der = NULL, *p;
  int n;
  if (s == NULL || !SSL_SESSION_is_resumable(s)) {
    SSL_SESSION_free(s);
    return 0;
  }
  n = i2d_SSL_SESSION(s, NULL);
  if (n > 0 && (der = (unsigned char *)malloc((size_t)n)) != NULL) {
    p = der;
    i2d_SSL_SESSION(s, &p);
    lua_pushlstring(L, (const char *)der, (size_t)n);
    free(der);
  } else {
    lua_pushnil(L);
  }
  SSL_SESSION_free(s);
  return 1;
}

/* e:new_session() -> whether a new session came since the last ask. */
static int engine_new_session(lua_State *L) {
  lc_tls *t = check_engine(L, 1);
  lua_pushboolean(L, t->new_session);
  t->new_session = 0;
  return 1;
}

/* e:set_session(der) -> true | false (unusable). */
static int engine_set_session(lua_State *L) {
  lc_tls *t = check_engine(L, 1);
  size_t n;
  const unsigned char *p = (const unsigned char *)luaL_checklstring(L, 2, &n);
  SSL_SESSION *s = d2i_SSL_SESSION(NULL, &p, (long)n);
  int ok = s != NULL && SSL_set_session(t->ssl, s) == 1;
  SSL_SESSION_free(s);
  ERR_clear_error();
  lua_pushboolean(L, ok);
  return 1;
}

/* e:shutdown(): queues close_notify (take() it). */
static int engine_shutdown(lua_State *L) {
  lc__tls_shutdown(check_engine(L, 1));
  return 0;
}

/* e:close(): frees the engine now (also its __gc). */
static int engine_close(lua_State *L) {
  engine_box *b = (engine_box *)luaL_checkudata(L, 1, TLS_ENGINE_MT);
  lc__tls_free(b->t);
  b->t = NULL;
  return 0;
}

int luaopen_lc_tls(lua_State *L) {
  static const luaL_Reg engine_methods[] = {
      {"feed", engine_feed},
      {"handshake", engine_handshake},
      {"read", engine_read},
      {"write", engine_write},
      {"take", engine_take},
      {"verify_error", engine_verify_error},
      {"info", engine_info},
      {"peer_certificate", engine_peer_certificate},
      {"session", engine_session},
      {"set_session", engine_set_session},
      {"new_session", engine_new_session},
      {"shutdown", engine_shutdown},
      {"close", engine_close},
      {NULL, NULL}};
  static const luaL_Reg fns[] = {{"context", lc__tls_ctx_new},
                                 {"ciphers", tls_ciphers},
                                 {"engine", tls_engine},
                                 {"ticket_master", lc__tls_ticket_master},
                                 {"random", lc__tls_random},
                                 {NULL, NULL}};
  luaL_newmetatable(L, TLS_ENGINE_MT);
  lua_newtable(L);
  luaL_register(L, NULL, engine_methods);
  lua_setfield(L, -2, "__index");
  lua_pushcfunction(L, engine_close);
  lua_setfield(L, -2, "__gc");
  lua_pop(L, 1);
  luaL_newmetatable(L, TLS_CTX_MT);
  luaL_register(L, NULL, lc__tls_ctx_methods);
  lua_pushvalue(L, -1);
  lua_setfield(L, -2, "__index");
  lua_pop(L, 1);
  lua_newtable(L);
  luaL_register(L, NULL, fns);
  lua_pushinteger(L, TLS_HANDSHAKE_TIMEOUT);
  lua_setfield(L, -2, "HANDSHAKE_TIMEOUT");
  lua_pushinteger(L, TLS_TICKET_KEY_SIZE);
  lua_setfield(L, -2, "TICKET_KEY_SIZE");
  return 1;
}
