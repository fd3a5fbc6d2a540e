/* The HTTP server's connections: reading (into the parser, or into
 * conn->in while the parser waits), writing (uv_try_write first, then a
 * queued write of what the socket did not take), pausing while a response
 * is in flight or the output is above the high-water mark, closing
 * (graceful or at once), timeouts, and the Lua side of a connection (its
 * box, its env table {socket, req, res}); its `_http` functions are in
 * conn_lua.c. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "http.h"

static void idle_cb(uv_idle_t *h);

/* Takes c out of the singly linked list at *head, linked by field. */
#define LIST_UNLINK(head, c, field)                                            \
  do {                                                                         \
    http_conn **pp_ = (head);                                                  \
    while (*pp_ && *pp_ != (c))                                                \
      pp_ = &(*pp_)->field;                                                    \
    if (*pp_)                                                                  \
      *pp_ = (c)->field;                                                       \
  } while (0)
static void conn_callback(http_conn *c, int cb, int slot);
static void conn_end(http_conn *c);
static void conn_end_soon(http_conn *c);
static void conn_queue_resume(http_conn *c);
static void conn_resume(http_conn *c);
static inline void touch(http_conn *c);
static void alloc_cb(uv_handle_t *h, size_t hint, uv_buf_t *buf);
static void read_cb(uv_stream_t *st, ssize_t nread, const uv_buf_t *buf);

/* Makes the connection's box and env table on first need. */
void lc__http_conn_lua(http_conn *c) {
  lua_State *L = c->s->L;
  if (c->ref_box != LUA_NOREF)
    return;
  c->box = (conn_box *)lua_newuserdata(L, sizeof(conn_box));
  c->box->c = c;
  luaL_getmetatable(L, CONN_MT);
  lua_setmetatable(L, -2);
  c->ref_box = luaL_ref(L, LUA_REGISTRYINDEX);
  lua_createtable(L, 3, 0);
  c->ref_env = luaL_ref(L, LUA_REGISTRYINDEX);
}

/* Pushes env[slot] on L (nil when the Lua side was never made). L is the
 * server's state in callbacks, the caller's (maybe a coroutine) in
 * bindings: what is pushed is read on the same state. */
void lc__http_conn_get(lua_State *L, http_conn *c, int slot) {
  if (c->ref_env == LUA_NOREF) {
    lua_pushnil(L);
    return;
  }
  lua_rawgeti(L, LUA_REGISTRYINDEX, c->ref_env);
  lua_rawgeti(L, -1, slot);
  lua_remove(L, -2);
}

/* Pops the stack top into env[slot]. */
void lc__http_conn_set(http_conn *c, int slot) {
  lua_State *L = c->s->L;
  lua_rawgeti(L, LUA_REGISTRYINDEX, c->ref_env);
  lua_insert(L, -2);
  lua_rawseti(L, -2, slot);
  lua_pop(L, 1);
}

/* Pushes the connection's socket object from env (an absolute index),
 * making it on first need. */
void lc__http_conn_socket(http_conn *c, int env) {
  lua_State *L = c->s->L;
  lua_rawgeti(L, env, ENV_SOCKET);
  if (!lua_isnil(L, -1))
    return;
  lua_pop(L, 1);
  lua_createtable(L, 0, 4);
  lua_rawgeti(L, LUA_REGISTRYINDEX, c->ref_box);
  lua_setfield(L, -2, "_c");
  lua_rawgeti(L, LUA_REGISTRYINDEX, c->s->refs[CB_SOCK_MT]);
  lua_setmetatable(L, -2);
  lua_pushvalue(L, -1);
  lua_rawseti(L, env, ENV_SOCKET);
}

/* Pushes the connection's socket object. */
void lc__http_conn_push_socket(http_conn *c) {
  lua_State *L = c->s->L;
  lc__http_conn_lua(c);
  lua_rawgeti(L, LUA_REGISTRYINDEX, c->ref_env);
  lc__http_conn_socket(c, lua_gettop(L));
  lua_remove(L, -2);
}

/* Calls callback cb with env[slot] as its argument. */
static void conn_callback(http_conn *c, int cb, int slot) {
  lua_State *L = c->s->L;
  lua_rawgeti(L, LUA_REGISTRYINDEX, c->s->refs[cb]);
  lc__http_conn_get(L, c, slot);
  lc_pcall(L, 1, 0);
}

size_t lc__http_conn_queued(http_conn *c) {
  return uv_stream_get_write_queue_size(&c->sock.stream) + c->out.len;
}

/* Resumes the connection's paused parser on the next loop turn, outside
 * of any user call. */
static void conn_queue_resume(http_conn *c) {
  http_server *s = c->s;
  if (c->resume_queued)
    return;
  c->resume_queued = 1;
  c->resume_next = s->resume;
  s->resume = c;
  uv_idle_start(&s->idle, idle_cb);
}

/* The response in flight is complete: decides what the connection does
 * next. */
void lc__http_response_done(http_conn *c) {
  http_server *s = c->s;
  c->busy = 0;
  c->want_drain = 0;
  c->res_ptr = NULL;
  if (c->ref_env != LUA_NOREF) {
    lua_State *L = s->L;
    lua_rawgeti(L, LUA_REGISTRYINDEX, c->ref_env);
    lua_pushnil(L);
    lua_rawseti(L, -2, ENV_RES);
    if (!c->in_msg) {
      lua_pushnil(L);
      lua_rawseti(L, -2, ENV_REQ);
    }
    lua_pop(L, 1);
  }
  /* A plain close() ends each connection with its response; a drain
   * leaves idle ones to their next request or keepAliveTimeout. */
  if (!c->keep || (s->closing && !s->draining)) {
    conn_end_soon(c);
    return;
  }
  if (c->paused)
    conn_queue_resume(c);
  else if (!c->in_msg)
    c->idle_since = uv_now(s->loop);
  /* Outside a parser run nobody else acts on a close_after set earlier. */
  if (c->close_after && c->depth == 0)
    conn_end(c);
}

static void write_cb(uv_write_t *req, int status) {
  http_write *w = (http_write *)req;
  http_conn *c = w->c;
  free(w->base);
  free(w);
  c->nwrites--;
  if (c->closing)
    return;
  if (status < 0) {
    lc__http_conn_close(c);
    return;
  }
  if (c->out_full && lc__http_conn_queued(c) < c->s->hwm) {
    c->out_full = 0;
    conn_queue_resume(c);
  }
  if (c->nwrites > 0)
    return;
  /* Keep-alive idleness counts from when the last response has left. */
  if (c->idle_since)
    c->idle_since = uv_now(c->s->loop);
  if (c->want_drain) {
    c->want_drain = 0;
    if (c->busy)
      conn_callback(c, CB_DRAIN, ENV_RES);
    else if (c->raw)
      lc__http_raw_drain(c);
  }
}

/* Hands c->out to the socket: uv_try_write first, then a uv_write of what
 * the socket did not take (the buffer moves to the write request). */
void lc__http_conn_flush(http_conn *c) {
  uv_buf_t b;
  http_write *w;
  int n;
  if (c->tls && !c->closing && lc__http_tls_seal(c) != 0) {
    lc__http_conn_close(c);
    return;
  }
  if (c->out.len == 0 || c->closing)
    return;
  touch(c);
  b = uv_buf_init(c->out.base, (unsigned int)c->out.len);
  if (c->nwrites == 0) {
    n = uv_try_write(&c->sock.stream, &b, 1);
    if (n == (int)b.len) {
      c->out.len = 0;
      return;
    }
    if (n < 0 && n != UV_EAGAIN) {
      lc__http_conn_close(c);
      return;
    }
    if (n > 0) {
      b.base += n;
      b.len -= (unsigned int)n;
    }
  }
  w = (http_write *)lc__xmalloc(sizeof(*w));
  w->c = c;
  w->base = c->out.base;
  c->out.base = NULL;
  c->out.len = c->out.cap = 0;
  if (uv_write(&w->req, &c->sock.stream, &b, 1, write_cb) != 0) {
    free(w->base);
    free(w);
    lc__http_conn_close(c);
    return;
  }
  c->nwrites++;
}

/* Before the process ends at once: one uv_try_write of what c->out holds
 * when libuv has nothing of this connection queued (so the order stays),
 * as Node's writes have tried the socket when they were made; what the
 * socket took leaves c->out, so the connection goes on if the process
 * does. Never blocks; calls no Lua. */
void lc__http_conn_push(http_conn *c) {
  uv_buf_t b;
  int n;
  if (c->closing || c->nwrites > 0)
    return;
  /* Over TLS, c->out holds plaintext until sealed. */
  if (c->tls && lc__http_tls_seal(c) != 0)
    return;
  if (c->out.len == 0)
    return;
  b = uv_buf_init(c->out.base, (unsigned int)c->out.len);
  n = uv_try_write(&c->sock.stream, &b, 1);
  if (n <= 0)
    return;
  memmove(c->out.base, c->out.base + n, c->out.len - (size_t)n);
  c->out.len -= (size_t)n;
}

static void conn_close_cb(uv_handle_t *h) {
  http_conn *c = (http_conn *)h->data;
  http_server *s = c->s;
  lua_State *L = s->L;
  if (c->prev)
    c->prev->next = c->next;
  else
    s->conns = c->next;
  if (c->next)
    c->next->prev = c->prev;
  s->nconns--;
  if (c->ref_box != LUA_NOREF) {
    luaL_unref(L, LUA_REGISTRYINDEX, c->ref_box);
    luaL_unref(L, LUA_REGISTRYINDEX, c->ref_env);
  }
  if (c->ws)
    lc__http_raw_free(c);
  if (c->tls)
    lc__http_tls_free(c);
  buf_free(&c->in);
  buf_free(&c->trl);
  head_free(&c->head);
  buf_free(&c->out);
  free(c);
  lc__http_server_check_closed(s);
}

/* Closes the connection now. A request or response in flight is reported
 * to Lua (its 'close'/'aborted' events). */
void lc__http_conn_close(http_conn *c) {
  http_server *s = c->s;
  int aborted;
  if (c->closing)
    return;
  c->closing = 1;
  aborted = c->busy || c->req_obj;
  if (c->resume_queued) {
    LIST_UNLINK(&s->resume, c, resume_next);
    c->resume_queued = 0;
  }
  if (c->flush_queued) {
    LIST_UNLINK(&s->flush, c, flush_next);
    c->flush_queued = 0;
  }
  if (c->box)
    c->box->c = NULL;
  /* What was written before the cut still gets its chance. */
  if (c->tls && c->nwrites == 0)
    (void)lc__http_tls_seal(c);
  if (c->out.len > 0 && c->nwrites == 0) {
    uv_buf_t b = uv_buf_init(c->out.base, (unsigned int)c->out.len);
    (void)uv_try_write(&c->sock.stream, &b, 1);
  }
  uv_close(&c->sock.handle, conn_close_cb);
  if (c->raw)
    lc__http_raw_closed(c);
  if (aborted && c->ref_env != LUA_NOREF) {
    lua_State *L = s->L;
    /* Stack: abort req|nil res|nil. */
    lua_rawgeti(L, LUA_REGISTRYINDEX, s->refs[CB_ABORT]);
    lc__http_conn_get(L, c, ENV_REQ);
    lc__http_conn_get(L, c, ENV_RES);
    lc_pcall(L, 2, 0);
  }
}

static void shutdown_cb(uv_shutdown_t *req, int status) {
  http_conn *c = (http_conn *)req->data;
  (void)status;
  lc__http_conn_close(c);
}

/* Ends the connection gracefully: flushes, then shuts the write side down
 * once the queue drains, then closes. When the socket took everything at
 * once (the usual end of a Connection: close response), it closes now:
 * the close sends the FIN after the data, as the shutdown would, without
 * a wait for writable and a loop turn more. */
static void conn_end(http_conn *c) {
  if (c->closing || c->shutting)
    return;
  c->stop_parse = 1;
  if (c->tls)
    lc__http_tls_end(c);
  lc__http_conn_flush(c);
  if (c->closing)
    return;
  if (c->nwrites == 0) {
    lc__http_conn_close(c);
    return;
  }
  c->shutting = 1;
  c->shutdown_req.data = c;
  if (uv_shutdown(&c->shutdown_req, &c->sock.stream, shutdown_cb) != 0)
    lc__http_conn_close(c);
}

/* Answers a protocol error (400, 408, 431) unless a response has started,
 * then ends the connection; with a 'clientError' listener (and no response
 * in flight), the listener answers. */
void lc__http_conn_fail(http_conn *c, int status) {
  if (c->closing || c->shutting)
    return;
  if (c->s->emit_client_error && !c->silent && !c->busy && !c->raw) {
    /* The listener answers (or not): upgrade.c. */
    lc__http_client_error(c, status);
    return;
  }
  if (!c->silent && !(c->busy && c->head_sent)) {
    const char *msg = lc__http_reason(status);
    buf_lit(&c->out, "HTTP/1.1 ");
    buf_uint(&c->out, (uint64_t)status);
    buf_lit(&c->out, " ");
    buf_add(&c->out, msg, strlen(msg));
    buf_lit(&c->out, "\r\nConnection: close\r\n\r\n");
  }
  conn_end_soon(c);
}

/* Ends the connection after what is written: now, or, inside a parser run
 * (a handler called from llhttp's callbacks), once that run returns
 * (conn_settle acts on close_after). */
static void conn_end_soon(http_conn *c) {
  c->stop_parse = 1;
  if (c->depth == 0)
    conn_end(c);
  else
    c->close_after = 1;
}

/* After a parser run or a response: acts on what they decided. */
void lc__http_conn_settle(http_conn *c) {
  if (c->closing)
    return;
  if (c->close_after) {
    conn_end(c);
    return;
  }
  lc__http_conn_flush(c);
  if (c->closing)
    return;
  if (c->want_drain && c->nwrites == 0) {
    c->want_drain = 0;
    if (c->busy)
      conn_callback(c, CB_DRAIN, ENV_RES);
  }
}

/* Resumes a parser paused behind a response that has now finished. */
static void conn_resume(http_conn *c) {
  if (c->closing || c->out_full)
    return;
  if (c->raw) {
    lc__http_raw_resume(c);
    return;
  }
  c->paused = 0;
  llhttp_resume(&c->parser);
  if (c->in.len > 0)
    lc__http_feed(c, c->in.base, c->in.len, 1);
  if (c->closing || c->paused)
    return;
  if (c->read_stopped) {
    c->read_stopped = 0;
    uv_read_start(&c->sock.stream, alloc_cb, read_cb);
  }
  if (!c->busy && !c->in_msg)
    c->idle_since = uv_now(c->s->loop);
}

/* Sends c's output on the next loop turn: an upgraded connection written
 * outside its own reads (a broadcast, a timer) gets everything written to
 * it until then in one write. */
void lc__http_conn_queue_flush(http_conn *c) {
  http_server *s = c->s;
  if (c->flush_queued)
    return;
  c->flush_queued = 1;
  c->flush_next = s->flush;
  s->flush = c;
  uv_idle_start(&s->idle, idle_cb);
}

static void idle_cb(uv_idle_t *h) {
  http_server *s = (http_server *)h->data;
  http_conn *c;
  while ((c = s->flush) != NULL) {
    s->flush = c->flush_next;
    c->flush_queued = 0;
    lc__http_raw_flush(c);
  }
  while ((c = s->resume) != NULL) {
    s->resume = c->resume_next;
    c->resume_queued = 0;
    conn_resume(c);
  }
  uv_idle_stop(h);
}

static void alloc_cb(uv_handle_t *h, size_t hint, uv_buf_t *buf) {
  http_conn *c = (http_conn *)h->data;
  http_server *s = c->s;
  (void)hint;
  if (!s->rbuf_busy) {
    s->rbuf_busy = 1;
    *buf = uv_buf_init(s->rbuf, READ_BUF_SIZE);
  } else {
    /* A read nested in another's callback (a loop run from a handler). */
    buf->base = (char *)malloc(READ_BUF_SIZE);
    buf->len = buf->base ? READ_BUF_SIZE : 0;
  }
}

/* Notes activity for socket:setTimeout (when one is set). */
static inline void touch(http_conn *c) {
  if (c->idle_timeout) {
    c->last_active = uv_now(c->s->loop);
    c->idle_fired = 0;
  }
}

/* Bytes of requests (plaintext) read: parsed now, or kept in c->in while
 * the parser waits. */
static inline void conn_input(http_conn *c, const char *p, size_t n) {
  if (c->raw) {
    lc__http_raw_read(c, (char *)p, (ssize_t)n);
    return;
  }
  if (c->paused || c->in.len > 0) {
    buf_add(&c->in, p, n);
    if (c->in.len > INPUT_LIMIT && !c->read_stopped) {
      uv_read_stop(&c->sock.stream);
      c->read_stopped = 1;
    }
  } else {
    lc__http_feed(c, p, n, 0);
  }
}

void lc__http_conn_input(http_conn *c, const char *p, size_t n) {
  conn_input(c, p, n);
}

/* The peer is done sending. As Node (allowHalfOpen false), a request in
 * flight is aborted; an idle connection ends gracefully. */
void lc__http_conn_eof(http_conn *c) {
  if (c->raw) {
    lc__http_raw_read(c, NULL, UV_EOF);
    return;
  }
  if (!c->busy && !c->in_msg && !c->paused)
    conn_end(c);
  else
    lc__http_conn_close(c);
}

static void read_cb(uv_stream_t *st, ssize_t nread, const uv_buf_t *buf) {
  http_conn *c = (http_conn *)st->data;
  http_server *s = c->s;
  if (c->raw && !c->tls) {
    /* Upgraded: the bytes are no longer HTTP (upgrade.c). Over TLS they
     * come decrypted through conn_input and lc__http_conn_eof. */
    if (nread != 0 && !c->closing) {
      if (nread > 0)
        touch(c);
      lc__http_raw_read(c, buf->base, nread);
    }
  } else if (nread > 0 && !c->closing && !c->shutting) {
    touch(c);
    if (c->tls)
      lc__http_tls_input(c, buf->base, (size_t)nread);
    else
      conn_input(c, buf->base, (size_t)nread);
  } else if (nread < 0 && !c->closing) {
    if (c->raw)
      lc__http_raw_read(c, NULL, nread);
    else if (nread == UV_EOF)
      lc__http_conn_eof(c);
    else
      lc__http_conn_close(c);
  }
  if (buf->base == s->rbuf)
    s->rbuf_busy = 0;
  else
    free(buf->base);
}

/* Starts serving an accepted (or adopted) connection. */
void lc__http_conn_start(http_conn *c) {
  http_server *s = c->s;
  c->next = s->conns;
  if (s->conns)
    s->conns->prev = c;
  s->conns = c;
  s->nconns++;
  c->head_start = uv_now(s->loop);
  if (s->socket_timeout) {
    c->idle_timeout = s->socket_timeout;
    c->last_active = c->head_start;
  }
  if (s->tls_ctx && !c->clear && lc__http_tls_attach(c) != 0) {
    lc__http_conn_close(c);
    return;
  }
  if (!c->pipe)
    uv_tcp_nodelay(&c->sock.tcp, 1);
  if (uv_read_start(&c->sock.stream, alloc_cb, read_cb) != 0) {
    lc__http_conn_close(c);
    return;
  }
  if (s->emit_connection) {
    lua_rawgeti(s->L, LUA_REGISTRYINDEX, s->refs[CB_CONNECTION]);
    lc__http_conn_push_socket(c);
    lc_pcall(s->L, 1, 0);
  }
}

/* Allocates a connection with its handle initialised: a uv_pipe_t for a
 * Unix socket (pipe), else a uv_tcp_t. NULL on failure. */
http_conn *lc__http_conn_new(http_server *s, int pipe) {
  http_conn *c = (http_conn *)calloc(1, sizeof(*c));
  if (c == NULL)
    return NULL;
  if ((pipe ? uv_pipe_init(s->loop, &c->sock.pipe, 0)
            : uv_tcp_init(s->loop, &c->sock.tcp)) != 0) {
    free(c);
    return NULL;
  }
  c->pipe = pipe ? 1 : 0;
  c->s = s;
  c->sock.handle.data = c;
  c->ref_box = c->ref_env = LUA_NOREF;
  lc__http_parser_init(c);
  return c;
}

/* A handle closed before conn_start: frees without the list. */
void lc__http_conn_free_cb(uv_handle_t *h) { free(h->data); }

/* The server's timer: fails requests past headersTimeout or
 * requestTimeout (408), closes connections idle past keepAliveTimeout, and
 * reports those quiet past their socket:setTimeout ('timeout'). */
void lc__http_timeouts(http_server *s) {
  uint64_t now = uv_now(s->loop);
  http_conn *c, *next;
  for (c = s->conns; c; c = next) {
    next = c->next;
    if (c->closing || c->shutting)
      continue;
    if (c->tls && lc__http_tls_timeout(c, now))
      continue;
    if (c->head_start && s->headers_timeout &&
        now - c->head_start >= s->headers_timeout)
      lc__http_conn_fail(c, 408);
    else if (c->req_start && s->request_timeout &&
             now - c->req_start >= s->request_timeout)
      lc__http_conn_fail(c, 408);
    else if (c->idle_since && !c->busy && c->nwrites == 0 &&
             s->keepalive_timeout &&
             now - c->idle_since >= s->keepalive_timeout)
      lc__http_conn_close(c);
    if (c->idle_timeout && !c->idle_fired && !c->closing && !c->shutting &&
        now - c->last_active >= c->idle_timeout) {
      /* Reported once per idle spell, as Node's socket timeout. */
      c->idle_fired = 1;
      lua_rawgeti(s->L, LUA_REGISTRYINDEX, s->refs[CB_TIMEOUT]);
      lc__http_conn_push_socket(c);
      lc_pcall(s->L, 1, 0);
    }
  }
}

/* Whether the connection waits for a request (nothing in flight). */
int lc__http_conn_idle(const http_conn *c) {
  return !c->raw && !c->busy && !c->in_msg && !c->paused && c->in.len == 0;
}

/* Ends the connection once what is written has left. */
void lc__http_conn_end(http_conn *c) { conn_end_soon(c); }

/* Starts or stops reading the connection (for what is not paused for
 * another reason: read_stopped says which it is). */
void lc__http_conn_reading(http_conn *c, int on) {
  if (c->closing)
    return;
  if (on && c->read_stopped) {
    c->read_stopped = 0;
    uv_read_start(&c->sock.stream, alloc_cb, read_cb);
  } else if (!on && !c->read_stopped) {
    c->read_stopped = 1;
    uv_read_stop(&c->sock.stream);
  }
}
