/* The libFuzzer target for the TLS read path: arbitrary bytes go into a
 * server-side engine (runtime/tls/engine.c) as ciphertext from a client,
 * in up to three pieces, each followed by what the HTTP server's
 * connections do with a read (runtime/http/conn_tls.c): run the handshake
 * while it is not done, then decrypt everything there is, and take what
 * the engine has to send. Nothing may crash, leak or loop; a failed
 * handshake must stay failed.
 *
 * The server's context holds a P-256 key and a self-signed certificate
 * made once at start, and asks for client certificates (more of OpenSSL's
 * parsing is reached). The first byte says where the input is cut. Built
 * with -DFUZZ=ON; `make fuzz` runs it after fuzz_http. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <openssl/evp.h>
#include <openssl/x509.h>
#include "tls/tls.h"

static SSL_CTX *fz_ctx;

/* ctx.c's Lua side (the SNI callback, ctx:sni_callback) is never reached
 * here: there is no Lua state. */
int lc_pcall_catch(lua_State *L, int nargs, int nresults) {
  (void)L, (void)nargs, (void)nresults;
  abort();
}

lc_ctx *lc_get(lua_State *L) {
  (void)L;
  abort();
}

/* A server context with a throwaway P-256 key and self-signed cert. */
static SSL_CTX *make_ctx(void) {
  SSL_CTX *ctx = SSL_CTX_new(TLS_method());
  EVP_PKEY *key = EVP_EC_gen("P-256");
  X509 *x = X509_new();
  X509_NAME *name;
  if (ctx == NULL || key == NULL || x == NULL)
    abort();
  ASN1_INTEGER_set(X509_get_serialNumber(x), 1);
  X509_gmtime_adj(X509_getm_notBefore(x), 0);
  X509_gmtime_adj(X509_getm_notAfter(x), 86400);
  X509_set_pubkey(x, key);
  name = X509_get_subject_name(x);
  X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC,
                             (const unsigned char *)"localhost", -1, -1, 0);
  X509_set_issuer_name(x, name);
  if (X509_sign(x, key, EVP_sha256()) == 0 ||
      SSL_CTX_use_certificate(ctx, x) != 1 ||
      SSL_CTX_use_PrivateKey(ctx, key) != 1)
    abort();
  SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
  SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
  lc__tls_ctx_tickets(ctx);
  X509_free(x);
  EVP_PKEY_free(key);
  return ctx;
}

/* One read's worth: what conn_tls.c does with it. */
static void one_read(lc_tls *t, const uint8_t *p, size_t n, lc_buf *out) {
  char plain[16384];
  int st = TLS_OK;
  int was_failed = t->failed;
  lc__tls_feed(t, (const char *)p, n);
  if (!t->done) {
    int r = lc__tls_advance(t);
    if (was_failed && r != TLS_ERROR)
      abort(); /* A failure is final. */
    out->len = 0;
    lc__tls_take(t, out);
    if (r != TLS_OK)
      return;
  }
  while (lc__tls_read(t, plain, sizeof(plain), &st) > 0)
    ;
  out->len = 0;
  lc__tls_take(t, out);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  lc_tls *t;
  lc_buf out = {NULL, 0, 0};
  size_t cut1, cut2;
  if (fz_ctx == NULL)
    fz_ctx = make_ctx();
  if (size < 1)
    return 0;
  cut1 = size > 1 ? (data[0] & 15) * (size - 1) / 16 : 0;
  cut2 = size > 1 ? (data[0] >> 4) * (size - 1) / 16 : 0;
  if (cut2 < cut1) {
    size_t x = cut1;
    cut1 = cut2;
    cut2 = x;
  }
  data++;
  size--;
  t = lc__tls_new(fz_ctx, 1, NULL, 0);
  if (t == NULL)
    abort();
  one_read(t, data, cut1, &out);
  one_read(t, data + cut1, cut2 - cut1, &out);
  one_read(t, data + cut2, size - cut2, &out);
  lc__tls_free(t);
  buf_free(&out);
  return 0;
}
