/* One TLS connection over memory BIOs (see tls.h): what reads feed in,
 * the handshake, decrypting, encrypting, the ciphertext to send, and what
 * went wrong as Node's codes. */
#include <ctype.h>
#include <stdio.h>
#include <string.h>
#include <openssl/err.h>
#include <openssl/x509v3.h>
#include "tls.h"

/* Node's names for the verification results it reports (X509_V_ERR_*
 * without the prefix). */
#define TLS_VERIFY_MAP(XX)                                                     \
  XX(X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT, "UNABLE_TO_GET_ISSUER_CERT")        \
  XX(X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY,                             \
     "UNABLE_TO_GET_ISSUER_CERT_LOCALLY")                                      \
  XX(X509_V_ERR_UNABLE_TO_VERIFY_LEAF_SIGNATURE,                               \
     "UNABLE_TO_VERIFY_LEAF_SIGNATURE")                                        \
  XX(X509_V_ERR_DEPTH_ZERO_SELF_SIGNED_CERT, "DEPTH_ZERO_SELF_SIGNED_CERT")    \
  XX(X509_V_ERR_SELF_SIGNED_CERT_IN_CHAIN, "SELF_SIGNED_CERT_IN_CHAIN")        \
  XX(X509_V_ERR_CERT_HAS_EXPIRED, "CERT_HAS_EXPIRED")                          \
  XX(X509_V_ERR_CERT_NOT_YET_VALID, "CERT_NOT_YET_VALID")                      \
  XX(X509_V_ERR_CERT_REVOKED, "CERT_REVOKED")                                  \
  XX(X509_V_ERR_CERT_UNTRUSTED, "CERT_UNTRUSTED")                              \
  XX(X509_V_ERR_CERT_REJECTED, "CERT_REJECTED")                                \
  XX(X509_V_ERR_CERT_SIGNATURE_FAILURE, "CERT_SIGNATURE_FAILURE")              \
  XX(X509_V_ERR_INVALID_CA, "INVALID_CA")                                      \
  XX(X509_V_ERR_HOSTNAME_MISMATCH, "ERR_TLS_CERT_ALTNAME_INVALID")

static const char *verify_code(long v) {
  switch (v) {
#define XX(num, name)                                                          \
  case num:                                                                    \
    return name;
    TLS_VERIFY_MAP(XX)
#undef XX
  default:
    return "UNABLE_TO_VERIFY_LEAF_SIGNATURE";
  }
}

/* OpenSSL's error queue is cleared wherever an error was seen (fail(),
 * ctx.c), so it is empty before each call and SSL_get_error reads it
 * right without a clear per call (which costs on every read). */

lc_tls *lc__tls_new(SSL_CTX *ctx, int server, const char *servername,
                    int check_host) {
  lc_tls *t = (lc_tls *)calloc(1, sizeof(*t));
  if (t == NULL)
    return NULL;
  t->ssl = SSL_new(ctx);
  t->rbio = BIO_new(BIO_s_mem());
  t->wbio = BIO_new(BIO_s_mem());
  if (t->ssl == NULL || t->rbio == NULL || t->wbio == NULL) {
    BIO_free(t->rbio);
    BIO_free(t->wbio);
    SSL_free(t->ssl);
    free(t);
    return NULL;
  }
  /* A read of an empty memory BIO is "retry", not EOF. */
  BIO_set_mem_eof_return(t->rbio, -1);
  BIO_set_mem_eof_return(t->wbio, -1);
  SSL_set_bio(t->ssl, t->rbio, t->wbio);
  SSL_set_app_data(t->ssl, t);
  t->server = server ? 1 : 0;
  if (server) {
    SSL_set_accept_state(t->ssl);
  } else {
    SSL_set_connect_state(t->ssl);
    /* SNI takes names, never addresses (RFC 6066). */
    if (servername && *servername && !strchr(servername, ':') &&
        strspn(servername, "0123456789.") != strlen(servername))
      SSL_set_tlsext_host_name(t->ssl, servername);
    if (check_host && servername && *servername) {
      X509_VERIFY_PARAM *vp = SSL_get0_param(t->ssl);
      X509_VERIFY_PARAM_set_hostflags(vp, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
      if (strspn(servername, "0123456789.:abcdefABCDEF") ==
              strlen(servername) &&
          (strchr(servername, ':') ||
           strspn(servername, "0123456789.") == strlen(servername)))
        X509_VERIFY_PARAM_set1_ip_asc(vp, servername);
      else
        SSL_set1_host(t->ssl, servername);
    }
  }
  ERR_clear_error();
  return t;
}

void lc__tls_free(lc_tls *t) {
  if (t == NULL)
    return;
  SSL_free(t->ssl); /* And both BIOs. */
  free(t);
}

void lc__tls_feed(lc_tls *t, const char *p, size_t n) {
  while (n > 0) {
    int k = BIO_write(t->rbio, p, n > 0x40000000 ? 0x40000000 : (int)n);
    if (k <= 0)
      break;
    p += k;
    n -= (size_t)k;
  }
}

/* Records the failure behind an SSL error: Node's code (ERR_SSL_ and
 * OpenSSL's reason in capitals, as Node makes them) and the reason.
 * Returns TLS_PLAIN for an HTTP request on a TLS port. */
static int fail(lc_tls *t, int err) {
  unsigned long e = ERR_peek_last_error();
  int ret = TLS_ERROR;
  size_t i;
  t->failed = 1;
  if (e != 0 && ERR_GET_LIB(e) == ERR_LIB_SSL &&
      ERR_GET_REASON(e) == SSL_R_HTTP_REQUEST)
    ret = TLS_PLAIN;
  if (e != 0) {
    const char *r = ERR_reason_error_string(e);
    if (r == NULL)
      r = "unknown error";
    if (ERR_GET_REASON(e) == SSL_R_CERTIFICATE_VERIFY_FAILED)
      /* Which check failed: the peer certificate's verification. */
      snprintf(t->reason, sizeof(t->reason), "%s: %s", r,
               X509_verify_cert_error_string(SSL_get_verify_result(t->ssl)));
    else
      snprintf(t->reason, sizeof(t->reason), "%s", r);
    snprintf(t->code, sizeof(t->code), "ERR_SSL_%s", r);
    for (i = 8; t->code[i]; i++)
      t->code[i] = t->code[i] == ' ' ? '_' : (char)toupper(t->code[i]);
  } else if (err == SSL_ERROR_SYSCALL || err == SSL_ERROR_ZERO_RETURN) {
    snprintf(t->reason, sizeof(t->reason), "%s",
             "Client network socket disconnected before secure TLS "
             "connection was established");
    snprintf(t->code, sizeof(t->code), "%s", "ECONNRESET");
  } else {
    snprintf(t->reason, sizeof(t->reason), "TLS error %d", err);
    snprintf(t->code, sizeof(t->code), "%s", "ERR_SSL_INTERNAL_ERROR");
  }
  ERR_clear_error();
  return ret;
}

int lc__tls_advance(lc_tls *t) {
  int r, err;
  if (t->failed)
    return TLS_ERROR;
  if (t->done)
    return TLS_OK;
  r = SSL_do_handshake(t->ssl);
  if (r == 1) {
    t->done = 1;
    return TLS_OK;
  }
  err = SSL_get_error(t->ssl, r);
  if (err == SSL_ERROR_WANT_READ || err == SSL_ERROR_WANT_WRITE)
    return TLS_WANT;
  return fail(t, err);
}

size_t lc__tls_read(lc_tls *t, char *buf, size_t cap, int *status) {
  size_t got = 0;
  int r, err;
  if (t->failed) {
    *status = TLS_ERROR;
    return 0;
  }
  r = SSL_read_ex(t->ssl, buf, cap, &got);
  if (r == 1) {
    *status = TLS_OK;
    return got;
  }
  err = SSL_get_error(t->ssl, 0);
  if (err == SSL_ERROR_WANT_READ || err == SSL_ERROR_WANT_WRITE)
    *status = TLS_WANT;
  else if (err == SSL_ERROR_ZERO_RETURN)
    *status = TLS_CLOSED;
  else {
    (void)fail(t, err);
    *status = TLS_ERROR;
  }
  return 0;
}

int lc__tls_write(lc_tls *t, const char *p, size_t n) {
  size_t done = 0;
  if (t->failed)
    return TLS_ERROR;
  while (done < n) {
    size_t w = 0;
    if (SSL_write_ex(t->ssl, p + done, n - done, &w) != 1) {
      fail(t, SSL_get_error(t->ssl, 0));
      return TLS_ERROR;
    }
    done += w;
  }
  return 0;
}

int lc__tls_pending(lc_tls *t) { return BIO_ctrl_pending(t->wbio) > 0; }

int lc__tls_more(lc_tls *t) {
  return SSL_pending(t->ssl) > 0 || BIO_ctrl_pending(t->rbio) > 0;
}

void lc__tls_take(lc_tls *t, lc_buf *out) {
  size_t n = BIO_ctrl_pending(t->wbio);
  int k;
  if (n == 0)
    return;
  buf_reserve(out, n);
  k = BIO_read(t->wbio, out->base + out->len, (int)n);
  if (k > 0)
    out->len += (size_t)k;
}

void lc__tls_shutdown(lc_tls *t) {
  if (t->done && !t->failed) {
    ERR_clear_error();
    (void)SSL_shutdown(t->ssl);
    ERR_clear_error();
  }
}

const char *lc__tls_verify_error(lc_tls *t) {
  long v;
  X509 *peer = SSL_get0_peer_certificate(t->ssl);
  if (peer == NULL) {
    snprintf(t->reason, sizeof(t->reason), "%s",
             "peer did not return a certificate");
    return "UNABLE_TO_GET_ISSUER_CERT";
  }
  v = SSL_get_verify_result(t->ssl);
  if (v == X509_V_OK)
    return NULL;
  if (v == X509_V_ERR_HOSTNAME_MISMATCH)
    snprintf(t->reason, sizeof(t->reason), "%s",
             "Hostname/IP does not match certificate's altnames");
  else
    snprintf(t->reason, sizeof(t->reason), "%s",
             X509_verify_cert_error_string(v));
  return verify_code(v);
}
