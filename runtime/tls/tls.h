/* TLS on OpenSSL 3: the internal header of runtime/tls/.
 *
 *   engine.c  one TLS connection over memory BIOs: ciphertext in (feed),
 *             plaintext out (read), plaintext in (write), ciphertext out
 *             (take); the handshake and its outcome as Node's codes. It
 *             knows no sockets: the HTTP server's connections
 *             (runtime/http/conn_tls.c) and the Lua side (net's
 *             TLSSocket, the client, cosockets) move the bytes.
 *   ctx.c     contexts (SSL_CTX) from Node's options: key, cert, ca,
 *             passphrase, minVersion, ciphers, ALPN, requestCert,
 *             rejectUnauthorized, per-name contexts (SNI), session ticket
 *             keys (shared by a cluster's workers).
 *   lua.c     the `_tls` module: contexts and engines as userdata.
 *
 * No key material is ever printed: errors carry OpenSSL's reason strings
 * and Node's codes only. */
#ifndef LC_TLS_H
#define LC_TLS_H

#include <stddef.h>
#include <openssl/ssl.h>
#include <lua.h>
#include <lauxlib.h>
#include "buf.h"
#include "lc.h"

#define TLS_CTX_MT "lc.tls.ctx"
#define TLS_ENGINE_MT "lc.tls.engine"

/* How long a handshake may take by default (Node's tls.Server
 * handshakeTimeout), in milliseconds. */
#define TLS_HANDSHAKE_TIMEOUT 10000

/* A session ticket key: its name (sent in the clear in tickets), the
 * AES-256 key and the HMAC-SHA256 key: 80 bytes. */
#define TLS_TICKET_KEY_SIZE 80
/* How often ticket keys rotate by default (s); a ticket stays good for up
 * to two periods. */
#define TLS_TICKET_PERIOD 3600

/* Results of lc__tls_advance and lc__tls_read. */
enum {
  TLS_OK = 0,     /* Progress; maybe nothing to hand over yet. */
  TLS_WANT = 1,   /* Needs more ciphertext. */
  TLS_CLOSED = 2, /* The peer sent close_notify. */
  TLS_ERROR = -1, /* Fatal: see lc_tls.code / reason. */
  TLS_PLAIN = -2  /* A plain HTTP request came to a TLS port. */
};

typedef struct lc_tls {
  SSL *ssl;
  BIO *rbio, *wbio; /* Ciphertext in, ciphertext out (both owned by ssl). */
  unsigned server : 1;
  unsigned done : 1;        /* The handshake finished. */
  unsigned failed : 1;      /* A fatal error was seen. */
  unsigned new_session : 1; /* A client got a session (ticket) to keep. */
  lua_State *L;     /* The state of the Lua call driving it, while one does. */
  char code[64];    /* Node's code of the failure ("" while none). */
  char reason[160]; /* OpenSSL's words for it. */
} lc_tls;

/* ---- engine.c ---- */

/* A new engine over ctx (its reference taken); servername (may be NULL)
 * is sent as SNI and checked against the peer's certificate by a client
 * that verifies. NULL when OpenSSL refuses (memory). */
lc_tls *lc__tls_new(SSL_CTX *ctx, int server, const char *servername,
                    int check_host);
void lc__tls_free(lc_tls *t);
/* Hands the engine ciphertext read from the peer. */
void lc__tls_feed(lc_tls *t, const char *p, size_t n);
/* Runs the handshake as far as the ciphertext fed allows: TLS_OK once
 * done, TLS_WANT, TLS_ERROR or TLS_PLAIN. */
int lc__tls_advance(lc_tls *t);
/* Decrypts into buf (up to cap): bytes read (> 0), or 0 with *status one
 * of TLS_WANT, TLS_CLOSED, TLS_ERROR. */
size_t lc__tls_read(lc_tls *t, char *buf, size_t cap, int *status);
/* Encrypts p; the ciphertext waits for lc__tls_take. 0 or TLS_ERROR. */
int lc__tls_write(lc_tls *t, const char *p, size_t n);
/* Appends the ciphertext waiting to go to the peer to out. */
void lc__tls_take(lc_tls *t, lc_buf *out);
/* Whether ciphertext waits to go out. */
int lc__tls_pending(lc_tls *t);
/* Whether a read may give more plaintext (decrypted bytes buffered, or
 * ciphertext not yet looked at). */
int lc__tls_more(lc_tls *t);
/* Queues close_notify. */
void lc__tls_shutdown(lc_tls *t);
/* The peer certificate's verification: NULL when it passed, else Node's
 * code (e.g. "DEPTH_ZERO_SELF_SIGNED_CERT") with the reason in t. */
const char *lc__tls_verify_error(lc_tls *t);

/* ---- lua.c ---- */

void lc__tls_push_info(lua_State *L, lc_tls *t);
int lc__tls_push_peer(lua_State *L, lc_tls *t);

/* ---- ctx.c ---- */

/* Installs the ticket key callback on ctx (the process's keys). */
void lc__tls_ctx_tickets(SSL_CTX *ctx);
int lc__tls_ticket_master(lua_State *L);
int lc__tls_random(lua_State *L);
/* The context's Lua binding helpers (lua.c). */
int lc__tls_ctx_new(lua_State *L);

/* pem.c: key material into a context; each returns 0 on failure. */
int lc__tls_each_pem(lua_State *L, int opts, const char *field,
                     int (*fn)(SSL_CTX *, const char *, size_t, void *),
                     SSL_CTX *ctx, void *arg);
int lc__tls_use_key(SSL_CTX *ctx, const char *pem, size_t len, void *pass);
int lc__tls_use_cert(SSL_CTX *ctx, const char *pem, size_t len, void *arg);
int lc__tls_add_ca(SSL_CTX *ctx, const char *pem, size_t len, void *server);
int lc__tls_each_pfx(lua_State *L, int opts, SSL_CTX *ctx, const char *pass);
SSL_CTX *lc__tls_check_ctx(lua_State *L, int idx);
extern const luaL_Reg lc__tls_ctx_methods[];

#endif
