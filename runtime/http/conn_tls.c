/* TLS under the HTTP server's connections: conn.c calls here at its read
 * and write seams when the server has a TLS context (c->tls set), and
 * nowhere else. The ciphertext read is fed to the engine
 * (runtime/tls/engine.c); the handshake runs; the plaintext goes to
 * conn.c's input path as a plain read's would. What conn.c would write
 * (c->out) is sealed into ciphertext just before it goes out. */
#include <string.h>
#include "http.h"
#include "tls/tls.h"

/* nginx's answer to plain HTTP on a TLS port. */
static const char plain_answer[] =
    "HTTP/1.1 400 Bad Request\r\n"
    "Content-Type: text/html\r\n"
    "Content-Length: 220\r\n"
    "Connection: close\r\n"
    "\r\n"
    "<html>\r\n"
    "<head><title>400 The plain HTTP request was sent to HTTPS port"
    "</title></head>\r\n"
    "<body>\r\n"
    "<center><h1>400 Bad Request</h1></center>\r\n"
    "<center>The plain HTTP request was sent to HTTPS port</center>\r\n"
    "</body>\r\n"
    "</html>\r\n";

/* Gives a new connection of a TLS server its engine; 0, or -1 when
 * OpenSSL could not make one. */
int lc__http_tls_attach(http_conn *c) {
  c->tls = lc__tls_new(c->s->tls_ctx, 1, NULL, 0);
  return c->tls ? 0 : -1;
}

void lc__http_tls_free(http_conn *c) {
  lc__tls_free(c->tls);
  c->tls = NULL;
}

/* Reports a failed handshake to Lua (the server's 'tlsClientError'),
 * with Node's code and OpenSSL's reason. */
static void report(http_conn *c, const char *code, const char *reason) {
  lua_State *L = c->s->L;
  lua_rawgeti(L, LUA_REGISTRYINDEX, c->s->refs[CB_TLS_ERROR]);
  lua_pushstring(L, code);
  lua_pushstring(L, reason);
  lc__http_conn_push_socket(c);
  lc_pcall(L, 3, 0);
}

/* The handshake failed: the alert OpenSSL made goes out, the failure is
 * reported, the connection closes. */
static void handshake_failed(http_conn *c) {
  lc_tls *t = c->tls;
  char code[sizeof(t->code)], reason[sizeof(t->reason)];
  memcpy(code, t->code, sizeof(code));
  memcpy(reason, t->reason, sizeof(reason));
  report(c, code, reason);
  if (c->closing)
    return;
  c->silent = 1;
  lc__http_conn_flush(c);
  if (!c->closing)
    lc__http_conn_close(c);
}

/* Ciphertext read from the peer: runs the handshake, then hands the
 * plaintext to conn.c's input path. */
void lc__http_tls_input(http_conn *c, const char *p, size_t n) {
  lc_tls *t = c->tls;
  char plain[16384];
  size_t k;
  int st = TLS_OK;
  lc__tls_feed(t, p, n);
  if (!t->done) {
    int r = lc__tls_advance(t);
    if (r == TLS_PLAIN) {
      /* Answered in the clear, as nginx does. */
      lc__http_tls_free(c);
      c->out.len = 0;
      buf_add(&c->out, plain_answer, sizeof(plain_answer) - 1);
      c->silent = 1;
      lc__http_conn_fail(c, 400);
      return;
    }
    if (r == TLS_ERROR) {
      handshake_failed(c);
      return;
    }
    if (r == TLS_WANT) {
      lc__http_conn_flush(c);
      return;
    }
    /* Done: the request's header timer starts now. */
    c->head_start = uv_now(c->s->loop);
    if (c->s->emit_secure) {
      lua_State *L = c->s->L;
      lua_rawgeti(L, LUA_REGISTRYINDEX, c->s->refs[CB_SECURE]);
      lc__http_conn_push_socket(c);
      lc_pcall(L, 1, 0);
      if (c->closing || c->tls == NULL)
        return;
    }
  }
  while ((k = lc__tls_read(t, plain, sizeof(plain), &st)) > 0) {
    lc__http_conn_input(c, plain, k);
    if (c->closing || c->shutting || c->tls == NULL)
      return;
    if (!lc__tls_more(t))
      break;
  }
  if (st == TLS_ERROR) {
    lc__http_conn_close(c);
    return;
  }
  if (st == TLS_CLOSED) {
    lc__http_conn_eof(c);
    return;
  }
  /* Tickets or a key update may wait to go out. */
  if (lc__tls_pending(t))
    lc__http_conn_flush(c);
}

/* Seals c->out (plaintext) into ciphertext, with whatever the engine
 * already had to send before it. On failure the plaintext is dropped and
 * -1 returned (the caller closes). */
int lc__http_tls_seal(http_conn *c) {
  lc_tls *t = c->tls;
  int r = 0;
  if (c->out.len > 0) {
    if (!t->done || lc__tls_write(t, c->out.base, c->out.len) != 0)
      r = -1;
    c->out.len = 0;
  }
  if (c->tls_end && r == 0)
    lc__tls_shutdown(t);
  lc__tls_take(t, &c->out);
  return r;
}

/* A graceful end: close_notify follows what is written (the next seal). */
void lc__http_tls_end(http_conn *c) { c->tls_end = 1; }

/* A handshake past the server's handshakeTimeout: dropped, and reported
 * as Node's ERR_TLS_HANDSHAKE_TIMEOUT. Whether it timed out. */
int lc__http_tls_timeout(http_conn *c, uint64_t now) {
  http_server *s = c->s;
  if (c->tls->done || !s->handshake_timeout ||
      now - c->head_start < s->handshake_timeout)
    return 0;
  report(c, "ERR_TLS_HANDSHAKE_TIMEOUT", "TLS handshake timeout");
  c->silent = 1;
  lc__http_conn_close(c);
  return 1;
}

/* srv:tls(ctx[, handshake_timeout_ms]): serves TLS with the context from
 * here on (new connections). */
int lc__http_server_tls(lua_State *L, http_server *s) {
  SSL_CTX *ctx = lc__tls_check_ctx(L, 2);
  lua_Number ht = luaL_optnumber(L, 3, TLS_HANDSHAKE_TIMEOUT);
  luaL_argcheck(L, ht >= 0, 3, "handshakeTimeout must not be negative");
  SSL_CTX_up_ref(ctx);
  SSL_CTX_free(s->tls_ctx);
  s->tls_ctx = ctx;
  s->handshake_timeout = (uint64_t)ht;
  return 0;
}

void lc__http_server_tls_free(http_server *s) {
  SSL_CTX_free(s->tls_ctx);
  s->tls_ctx = NULL;
}

/* _http.tls_info(c) -> nil (not TLS, or closed) | {encrypted=true,
 * authorized=, authorizationError=, alpnProtocol=, servername=,
 * protocol=, cipher=, reused=}. */
static int http_tls_info(lua_State *L) {
  http_conn *c = lc__http_check_conn(L, 1);
  const char *code;
  if (c == NULL || c->tls == NULL || !c->tls->done)
    return 0;
  lc__tls_push_info(L, c->tls);
  lua_pushboolean(L, 1);
  lua_setfield(L, -2, "encrypted");
  code = lc__tls_verify_error(c->tls);
  lua_pushboolean(L, code == NULL);
  lua_setfield(L, -2, "authorized");
  if (code) {
    lua_pushstring(L, code);
    lua_setfield(L, -2, "authorizationError");
  }
  return 1;
}

/* _http.tls_peer(c) -> the client's certificate (lua.c's table) or nil. */
static int http_tls_peer(lua_State *L) {
  http_conn *c = lc__http_check_conn(L, 1);
  if (c == NULL || c->tls == NULL || !c->tls->done)
    return 0;
  return lc__tls_push_peer(L, c->tls);
}

const luaL_Reg lc__http_tls_fns[] = {
    {"tls_info", http_tls_info}, {"tls_peer", http_tls_peer}, {NULL, NULL}};
