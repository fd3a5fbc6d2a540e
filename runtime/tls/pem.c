/* Key material for a TLS context (ctx.c builds contexts with these):
 * PEM private keys (with a passphrase) and certificates with their chain,
 * PKCS#12 (PFX) bundles, and CA certificates to trust. */
#include <string.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/pkcs12.h>
#include "tls.h"

static int pass_cb(char *buf, int size, int rw, void *u) {
  const char *p = (const char *)u;
  size_t n;
  (void)rw;
  if (p == NULL)
    return 0;
  n = strlen(p);
  if (n > (size_t)size)
    n = (size_t)size;
  memcpy(buf, p, n);
  return (int)n;
}

/* The string or the strings of the array at opts[field], each passed to
 * fn(ctx, pem, len, arg); 0 when fn failed. */
int lc__tls_each_pem(lua_State *L, int opts, const char *field,
                     int (*fn)(SSL_CTX *, const char *, size_t, void *),
                     SSL_CTX *ctx, void *arg) {
  int ok = 1;
  size_t len, i, n;
  lua_getfield(L, opts, field);
  if (lua_type(L, -1) == LUA_TSTRING) {
    const char *p = lua_tolstring(L, -1, &len);
    ok = fn(ctx, p, len, arg);
  } else if (lua_istable(L, -1)) {
    n = lua_objlen(L, -1);
    for (i = 1; ok && i <= n; i++) {
      lua_rawgeti(L, -1, (int)i);
      if (lua_type(L, -1) == LUA_TSTRING) {
        const char *p = lua_tolstring(L, -1, &len);
        ok = fn(ctx, p, len, arg);
      }
      lua_pop(L, 1);
    }
  }
  lua_pop(L, 1);
  return ok;
}

int lc__tls_use_key(SSL_CTX *ctx, const char *pem, size_t len, void *pass) {
  BIO *b = BIO_new_mem_buf(pem, (int)len);
  EVP_PKEY *k = b ? PEM_read_bio_PrivateKey(b, NULL, pass_cb, pass) : NULL;
  int ok = k != NULL && SSL_CTX_use_PrivateKey(ctx, k) == 1;
  EVP_PKEY_free(k);
  BIO_free(b);
  return ok;
}

/* The first certificate is the leaf; those after it, its chain. */
int lc__tls_use_cert(SSL_CTX *ctx, const char *pem, size_t len,
                     void *arg) {
  BIO *b = BIO_new_mem_buf(pem, (int)len);
  X509 *x;
  int ok;
  (void)arg;
  if (b == NULL)
    return 0;
  x = PEM_read_bio_X509_AUX(b, NULL, NULL, NULL);
  ok = x != NULL && SSL_CTX_use_certificate(ctx, x) == 1;
  X509_free(x);
  while (ok && (x = PEM_read_bio_X509(b, NULL, NULL, NULL)) != NULL) {
    if (SSL_CTX_add0_chain_cert(ctx, x) != 1) {
      X509_free(x);
      ok = 0;
    }
  }
  ERR_clear_error(); /* The end of the chain reads as "no start line". */
  BIO_free(b);
  return ok;
}

/* One PKCS#12 (PFX) bundle, DER bytes: its key, its certificate, and
 * the certificates that came with them as the chain. 0 on failure (a
 * wrong passphrase: the MAC does not verify). */
static int use_pfx(SSL_CTX *ctx, const char *der, size_t len,
                   const char *pass) {
  BIO *b = BIO_new_mem_buf(der, (int)len);
  PKCS12 *p12 = b ? d2i_PKCS12_bio(b, NULL) : NULL;
  EVP_PKEY *key = NULL;
  X509 *cert = NULL;
  STACK_OF(X509) *ca = NULL;
  int ok = p12 != NULL && PKCS12_parse(p12, pass ? pass : "", &key, &cert,
                                       &ca) == 1;
  int i;
  if (ok && cert != NULL)
    ok = SSL_CTX_use_certificate(ctx, cert) == 1;
  if (ok && key != NULL)
    ok = SSL_CTX_use_PrivateKey(ctx, key) == 1;
  for (i = 0; ok && ca != NULL && i < sk_X509_num(ca); i++)
    ok = SSL_CTX_add1_chain_cert(ctx, sk_X509_value(ca, i)) == 1;
  sk_X509_pop_free(ca, X509_free);
  X509_free(cert);
  EVP_PKEY_free(key);
  PKCS12_free(p12);
  BIO_free(b);
  return ok;
}

/* opts.pfx: a list of {buf = DER, passphrase = s|nil} (lua/tls.lua
 * makes it from Node's forms), each with pass when it has none. */
int lc__tls_each_pfx(lua_State *L, int opts, SSL_CTX *ctx,
                     const char *pass) {
  int ok = 1;
  size_t i, n, len;
  lua_getfield(L, opts, "pfx");
  if (lua_istable(L, -1)) {
    n = lua_objlen(L, -1);
    for (i = 1; ok && i <= n; i++) {
      const char *der, *p;
      lua_rawgeti(L, -1, (int)i);
      lua_getfield(L, -1, "buf");
      lua_getfield(L, -2, "passphrase");
      der = lua_tolstring(L, -2, &len);
      p = lua_isstring(L, -1) ? lua_tostring(L, -1) : pass;
      ok = der != NULL && use_pfx(ctx, der, len, p);
      lua_pop(L, 3);
    }
  }
  lua_pop(L, 1);
  return ok;
}

/* Trusts every certificate of the PEM; a server also names them to
 * clients as acceptable issuers (requestCert). */
int lc__tls_add_ca(SSL_CTX *ctx, const char *pem, size_t len,
                   void *server) {
  BIO *b = BIO_new_mem_buf(pem, (int)len);
  X509 *x;
  int n = 0;
  if (b == NULL)
    return 0;
  while ((x = PEM_read_bio_X509(b, NULL, NULL, NULL)) != NULL) {
    X509_STORE_add_cert(SSL_CTX_get_cert_store(ctx), x);
    if (server)
      SSL_CTX_add_client_CA(ctx, x);
    X509_free(x);
    n++;
  }
  ERR_clear_error();
  BIO_free(b);
  return n > 0;
}
