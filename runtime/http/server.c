/* The HTTP server itself: its struct and Lua box, listening on a new or a
 * received socket, adopting accepted connections (round robin), options,
 * closing (at once or as a drain), and the `_http` module table. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "http.h"
#include "tcp.h"
#include "fd.h"
#include "unix.h"

const char *const lc__http_cb_fields[] = {
#define XX(name, field) field,
    HTTP_CALLBACK_MAP(XX)
#undef XX
};

static void timer_cb(uv_timer_t *t) {
  lc__http_timeouts((http_server *)t->data);
}

static void listener_cb(uv_stream_t *l, int status) {
  http_server *s = (http_server *)l->data;
  http_conn *c;
  if (status < 0)
    return; /* EMFILE and the like: the next connection may do better. */
  c = lc__http_conn_new(s, s->pipe);
  if (c == NULL)
    return;
  if (uv_accept(l, &c->sock.stream) != 0) {
    uv_close(&c->sock.handle, lc__http_conn_free_cb);
    return;
  }
  lc__http_conn_start(c);
}

/* The flush hook: every connection's output that the socket takes now. */
static void server_push(lc_flush_hook *h) {
  http_server *s =
      (http_server *)((char *)h - offsetof(http_server, flush_hook));
  http_conn *c;
  for (c = s->conns; c; c = c->next)
    lc__http_conn_push(c);
}

static void server_free_cb(uv_handle_t *h) {
  http_server *s = (http_server *)h->data;
  if (--s->open_handles > 0)
    return;
  lc_flush_remove(lc_get(s->L), &s->flush_hook);
  buf_free(&s->scratch);
  lc__http_server_tls_free(s);
  free(s->rbuf);
  free(s);
}

static void listener_close_cb(uv_handle_t *h) {
  http_server *s = (http_server *)h->data;
  s->open_handles--;
  lc__http_server_check_closed(s);
}

/* Once close() was called, the listener is closed and the last connection
 * gone: stops, unpins and tells Lua. */
void lc__http_server_check_closed(http_server *s) {
  lua_State *L = s->L;
  int i;
  if (!s->serving || !s->closing || s->listening || s->nconns > 0)
    return;
  s->serving = 0;
  uv_timer_stop(&s->timer);
  /* Stack: close. */
  lua_rawgeti(L, LUA_REGISTRYINDEX, s->refs[CB_CLOSE]);
  for (i = 0; i < CB_MAX; i++) {
    luaL_unref(L, LUA_REGISTRYINDEX, s->refs[i]);
    s->refs[i] = LUA_NOREF;
  }
  luaL_unref(L, LUA_REGISTRYINDEX, s->ref_self);
  s->ref_self = LUA_NOREF;
  lc_pcall(L, 0, 0);
}

static http_server *check_server(lua_State *L) {
  server_box *b = (server_box *)luaL_checkudata(L, 1, SERVER_MT);
  if (b->s == NULL)
    luaL_error(L, "the server is gone");
  return b->s;
}

/* (Re)starts the timeout scan, often enough to act within a quarter of
 * the shortest timeout (the server's, or the shortest socket:setTimeout
 * of its connections so far), and at least each second. */
void lc__http_server_scan(http_server *s) {
  uint64_t every = 1000, t = s->min_idle;
  if (s->headers_timeout && (!t || s->headers_timeout < t))
    t = s->headers_timeout;
  if (s->request_timeout && (!t || s->request_timeout < t))
    t = s->request_timeout;
  if (s->keepalive_timeout && (!t || s->keepalive_timeout < t))
    t = s->keepalive_timeout;
  if (s->tls_ctx && s->handshake_timeout &&
      (!t || s->handshake_timeout < t))
    t = s->handshake_timeout;
  if (t && t / 4 < every)
    every = t / 4 > 10 ? t / 4 : 10;
  if (every == s->scan_every && uv_is_active((uv_handle_t *)&s->timer))
    return;
  s->scan_every = every;
  uv_timer_start(&s->timer, timer_cb, every, every);
}

/* Pins the server (the box at stack index 1) and its callbacks, and
 * starts the timeout scan. The callbacks live in the box's environment and
 * are in the registry only while serving, so an unused server (and the
 * closures that name it) can be collected. */
static void server_serve(lua_State *L, http_server *s) {
  int i;
  if (!s->serving) {
    lua_pushvalue(L, 1);
    s->ref_self = luaL_ref(L, LUA_REGISTRYINDEX);
    lua_getfenv(L, 1);
    for (i = 0; i < CB_MAX; i++) {
      lua_getfield(L, -1, lc__http_cb_fields[i]);
      s->refs[i] = luaL_ref(L, LUA_REGISTRYINDEX);
    }
    lua_pop(L, 1);
    s->serving = 1;
  }
  s->closing = 0;
  lc__http_server_scan(s);
}

/* Sets the server's options (times in milliseconds) and the keep-alive
 * header that follows from them. */
static void set_options(http_server *s, size_t max_header,
                        uint64_t headers_timeout, uint64_t request_timeout,
                        uint64_t keepalive_timeout, size_t hwm) {
  s->max_header = max_header;
  s->headers_timeout = headers_timeout;
  s->request_timeout = request_timeout;
  s->keepalive_timeout = keepalive_timeout;
  s->hwm = hwm;
  /* Node's header: whole seconds, even when that is 0. */
  if (keepalive_timeout > 0)
    s->ka_len =
        (size_t)snprintf(s->ka_header, sizeof(s->ka_header),
                         "Connection: keep-alive\r\n"
                         "Keep-Alive: timeout=%llu\r\n",
                         (unsigned long long)(keepalive_timeout / 1000));
  else
    s->ka_len = (size_t)snprintf(s->ka_header, sizeof(s->ka_header),
                                 "Connection: keep-alive\r\n");
}

/* srv:configure(maxHeaderSize, headersTimeout, requestTimeout,
 *               keepAliveTimeout, highWaterMark) */
static int server_configure(lua_State *L) {
  http_server *s = check_server(L);
  lua_Number mh = luaL_checknumber(L, 2);
  lua_Number ht = luaL_checknumber(L, 3);
  lua_Number rt = luaL_checknumber(L, 4);
  lua_Number kt = luaL_checknumber(L, 5);
  lua_Number hw = luaL_checknumber(L, 6);
  luaL_argcheck(L, mh >= 1, 2, "maxHeaderSize must be positive");
  luaL_argcheck(L, ht >= 0 && rt >= 0 && kt >= 0, 3,
                "timeouts must not be negative");
  set_options(s, (size_t)mh, (uint64_t)ht, (uint64_t)rt, (uint64_t)kt,
              hw > 0 ? (size_t)hw : DEFAULT_highWaterMark);
  return 0;
}

/* Opens the listener on fd (owned from here on) and starts accepting: a
 * uv_pipe_t on a Unix socket, a uv_tcp_t otherwise (libuv opens each kind
 * only as its own handle type), and so will be its connections. */
static int server_open(lua_State *L, http_server *s, int fd, int backlog) {
  int err, pipe;
  if (s->listening) {
    close(fd);
    return luaL_error(L, "the server is already listening");
  }
  pipe = lc__unix_is(fd);
  if (pipe < 0) {
    close(fd);
    return lc_push_uverr(L, pipe);
  }
  err = pipe ? uv_pipe_init(s->loop, &s->listener.pipe, 0)
             : uv_tcp_init(s->loop, &s->listener.tcp);
  if (err != 0) {
    close(fd);
    return lc_push_uverr(L, err);
  }
  s->pipe = pipe ? 1 : 0;
  s->listener.handle.data = s;
  s->open_handles++;
  err = pipe ? uv_pipe_open(&s->listener.pipe, fd)
             : uv_tcp_open(&s->listener.tcp, fd);
  if (err != 0)
    close(fd); /* Not the handle's yet. */
  else
    err = uv_listen(&s->listener.stream, backlog, listener_cb);
  if (err != 0) {
    uv_close(&s->listener.handle, listener_close_cb);
    return lc_push_uverr(L, err);
  }
  s->listening = 1;
  if (s->unref)
    uv_unref(&s->listener.handle);
  server_serve(L, s);
  lua_pushboolean(L, 1);
  return 1;
}

/* srv:ref(on): whether the listening socket keeps the loop alive (Node's
 * server.ref() / server.unref()); connections always do. */
static int server_ref(lua_State *L) {
  http_server *s = check_server(L);
  s->unref = !lua_toboolean(L, 2);
  if (s->listening) {
    if (s->unref)
      uv_unref(&s->listener.handle);
    else
      uv_ref(&s->listener.handle);
  }
  return 0;
}

/* srv:listen(host|nil, port, backlog, reuseport) -> true
 * or nil, message, code. */
static int server_listen(lua_State *L) {
  http_server *s = check_server(L);
  const char *host = luaL_optstring(L, 2, NULL);
  int port = (int)luaL_checkinteger(L, 3);
  int backlog = (int)luaL_optinteger(L, 4, 511);
  int reuseport = lua_toboolean(L, 5);
  int fd;
  luaL_argcheck(L, port >= 0 && port <= 65535, 3, "port out of range");
  if (backlog < 0)
    backlog = 511; /* lc__tcp_listen_fd would bind without listening. */
  if (s->listening)
    return luaL_error(L, "the server is already listening");
  fd = lc__tcp_listen_fd(host, port, backlog, reuseport);
  if (fd < 0)
    return lc_push_uverr(L, fd);
  return server_open(L, s, fd, backlog);
}

/* srv:listen_fd(fd, backlog): listens on a duplicate of a listening
 * socket received from elsewhere; the caller may close its own. */
static int server_listen_fd(lua_State *L) {
  http_server *s = check_server(L);
  int fd = (int)luaL_checkinteger(L, 2);
  int backlog = (int)luaL_optinteger(L, 3, 511);
  if (s->listening)
    return luaL_error(L, "the server is already listening");
  fd = lc__fd_dup(fd);
  if (fd < 0)
    return lc_push_uverr(L, fd);
  return server_open(L, s, fd, backlog);
}

/* srv:serve(): serves adopted connections without a listener of its own
 * (round robin in a worker). */
static int server_serve_lua(lua_State *L) {
  http_server *s = check_server(L);
  server_serve(L, s);
  return 0;
}

/* srv:adopt(fd[, clear]): serves a duplicate of an accepted connection
 * (TCP or a Unix socket); clear: without TLS even on a TLS server
 * (http.inject's). Returns true or nil, message, code. */
static int server_adopt(lua_State *L) {
  http_server *s = check_server(L);
  int fd = (int)luaL_checkinteger(L, 2);
  int clear = lua_toboolean(L, 3);
  http_conn *c;
  int err, pipe;
  if (s->closing && s->serving)
    return lc_push_uverr(L, UV_ECANCELED);
  pipe = lc__unix_is(fd);
  if (pipe < 0)
    return lc_push_uverr(L, pipe);
  fd = lc__fd_dup(fd);
  if (fd < 0)
    return lc_push_uverr(L, fd);
  c = lc__http_conn_new(s, pipe);
  if (c == NULL) {
    close(fd);
    return lc_push_uverr(L, UV_ENOMEM);
  }
  err = pipe ? uv_pipe_open(&c->sock.pipe, fd)
             : uv_tcp_open(&c->sock.tcp, fd);
  if (err != 0) {
    close(fd);
    uv_close(&c->sock.handle, lc__http_conn_free_cb);
    return lc_push_uverr(L, err);
  }
  if (!s->serving)
    server_serve(L, s);
  c->clear = clear ? 1 : 0;
  lc__http_conn_start(c);
  lua_pushboolean(L, 1);
  return 1;
}

/* srv:address() -> {address=, port=, family=, addressType=} or nil (also
 * on a Unix socket: its path is the listening path's to tell). */
static int server_address(lua_State *L) {
  http_server *s = check_server(L);
  uv_os_fd_t fd;
  if (!s->listening || s->pipe ||
      uv_fileno(&s->listener.handle, &fd) != 0) {
    lua_pushnil(L);
    return 1;
  }
  return lc__tcp_push_name(L, fd, 0);
}

/* srv:close([drain]): stops accepting, closes idle connections (not when
 * draining); the others close after their response. The 'close'
 * callback runs once all are gone. */
static int server_close(lua_State *L) {
  http_server *s = check_server(L);
  int drain = lua_toboolean(L, 2);
  http_conn *c, *next;
  s->closing = 1;
  s->draining = drain ? 1 : 0;
  if (s->listening) {
    s->listening = 0;
    uv_close(&s->listener.handle, listener_close_cb);
  }
  /* Draining (a reload or a graceful shutdown) leaves idle keep-alive
   * connections open: a request already on its way gets its answer, with
   * Connection: close; the others end at keepAliveTimeout. */
  for (c = s->conns; c && !drain; c = next) {
    next = c->next;
    if (lc__http_conn_idle(c))
      lc__http_conn_close(c);
  }
  lc__http_server_check_closed(s);
  return 0;
}

/* srv:close_connections(all): closes idle (or all) connections now. */
static int server_close_connections(lua_State *L) {
  http_server *s = check_server(L);
  int all = lua_toboolean(L, 2);
  http_conn *c, *next;
  for (c = s->conns; c; c = next) {
    next = c->next;
    if (all || lc__http_conn_idle(c))
      lc__http_conn_close(c);
  }
  return 0;
}

/* srv:socket_timeout(ms): the idle timeout every new connection starts
 * with (Node's server.setTimeout; 0: none). */
static int server_socket_timeout(lua_State *L) {
  http_server *s = check_server(L);
  lua_Number ms = luaL_checknumber(L, 2);
  luaL_argcheck(L, ms >= 0, 2, "timeout must not be negative");
  s->socket_timeout = (uint64_t)ms;
  if (s->socket_timeout && (!s->min_idle || s->socket_timeout < s->min_idle)) {
    s->min_idle = s->socket_timeout;
    lc__http_server_scan(s);
  }
  return 0;
}

/* srv:max_requests(n): requests a connection serves before it closes
 * (Node's maxRequestsPerSocket; 0: no limit). */
static int server_max_requests(lua_State *L) {
  http_server *s = check_server(L);
  lua_Number n = luaL_checknumber(L, 2);
  luaL_argcheck(L, n >= 0 && n <= 4294967295.0, 2,
                "maxRequestsPerSocket must be a number >= 0");
  s->max_requests = (unsigned)n;
  return 0;
}

/* srv:emit_connection(on): whether each connection is reported. */
static int server_emit_connection(lua_State *L) {
  http_server *s = check_server(L);
  s->emit_connection = lua_toboolean(L, 2);
  return 0;
}

/* srv:emit_expect(continue, expectation): whether 'checkContinue' and
 * 'checkExpectation' listeners are there (without, 100 Continue goes out
 * by itself and another expectation is answered 417, as Node). */
static int server_emit_expect(lua_State *L) {
  http_server *s = check_server(L);
  s->emit_check_continue = lua_toboolean(L, 2);
  s->emit_check_expectation = lua_toboolean(L, 3);
  return 0;
}

/* srv:emit_secure(on): whether each finished TLS handshake is reported
 * ('secureConnection'). */
static int server_emit_secure(lua_State *L) {
  http_server *s = check_server(L);
  s->emit_secure = lua_toboolean(L, 2);
  return 0;
}

/* srv:emit_upgrade(upgrade, connect, clientError): whether an 'upgrade',
 * a 'connect' and a 'clientError' listener are there (without, an Upgrade
 * request is a plain request, CONNECT closes the connection and a bad
 * request is answered 400, as Node). */
static int server_emit_upgrade(lua_State *L) {
  http_server *s = check_server(L);
  s->emit_upgrade = lua_toboolean(L, 2);
  s->emit_connect = lua_toboolean(L, 3);
  s->emit_client_error = lua_toboolean(L, 4);
  return 0;
}

/* srv:stats() -> requests, connections (0, 0 once collected: a server's
 * table may outlive its box within one collection). */
static int server_stats(lua_State *L) {
  server_box *b = (server_box *)luaL_checkudata(L, 1, SERVER_MT);
  http_server *s = b->s;
  if (s == NULL) {
    lua_pushnumber(L, 0);
    lua_pushinteger(L, 0);
    return 2;
  }
  lua_pushnumber(L, s->requests);
  lua_pushinteger(L, (lua_Integer)s->nconns);
  return 2;
}

static int server_gc(lua_State *L) {
  server_box *b = (server_box *)luaL_checkudata(L, 1, SERVER_MT);
  http_server *s = b->s;
  if (s == NULL)
    return 0;
  b->s = NULL;
  s->box_gone = 1;
  luaL_unref(L, LUA_REGISTRYINDEX, s->ref_keys);
  /* Serving pins the box, so only the timer and idle handles are open and
   * the callbacks are out of the registry. */
  uv_close((uv_handle_t *)&s->timer, server_free_cb);
  uv_close((uv_handle_t *)&s->idle, server_free_cb);
  return 0;
}

/* The requests answered by every server of this Lua state since it
 * started, servers since collected included (cluster.stats): a userdata in
 * the registry, made once; each server points at it. */
static const char total_key = 't';

static double *requests_total(lua_State *L) {
  double *total;
  lua_pushlightuserdata(L, (void *)&total_key);
  lua_rawget(L, LUA_REGISTRYINDEX);
  total = (double *)lua_touserdata(L, -1);
  lua_pop(L, 1);
  if (total == NULL) {
    lua_pushlightuserdata(L, (void *)&total_key);
    total = (double *)lua_newuserdata(L, sizeof(*total));
    *total = 0;
    lua_rawset(L, LUA_REGISTRYINDEX);
  }
  return total;
}

/* srv:tls(ctx[, handshake_timeout]): see conn_tls.c. */
static int server_tls(lua_State *L) {
  http_server *s = check_server(L);
  return lc__http_server_tls(L, s);
}

/* _http.server(callbacks) -> server. callbacks holds the functions and
 * classes named in HTTP_CALLBACK_MAP. */
static int http_server_new(lua_State *L) {
  lc_ctx *ctx = lc_get(L);
  http_server *s;
  server_box *b;
  int i;
  luaL_checktype(L, 1, LUA_TTABLE);
  for (i = 0; i < CB_MAX; i++) {
    lua_getfield(L, 1, lc__http_cb_fields[i]);
    if (lua_isnil(L, -1))
      return luaL_error(L, "server callback '%s' missing",
                        lc__http_cb_fields[i]);
    lua_pop(L, 1);
  }
  b = (server_box *)lua_newuserdata(L, sizeof(*b));
  b->s = NULL;
  luaL_getmetatable(L, SERVER_MT);
  lua_setmetatable(L, -2);
  s = (http_server *)calloc(1, sizeof(*s));
  if (s != NULL)
    s->rbuf = (char *)malloc(READ_BUF_SIZE);
  if (s == NULL || s->rbuf == NULL) {
    free(s);
    return luaL_error(L, "out of memory");
  }
  s->L = ctx->L;
  s->loop = ctx->loop;
  s->total = requests_total(L);
  s->ref_self = LUA_NOREF;
  for (i = 0; i < CB_MAX; i++)
    s->refs[i] = LUA_NOREF;
  lua_pushvalue(L, 1);
  lua_setfenv(L, -2);
  /* The key table. Stack: callbacks box keys. */
  lua_createtable(L, KEY_METHODS + 64, 0);
#define XX(name, str)                                                          \
  lua_pushliteral(L, str);                                                     \
  lua_rawseti(L, -2, KEY_##name);
  HTTP_KEY_MAP(XX)
#undef XX
#define XX(num, name, string)                                                  \
  lua_pushliteral(L, #string);                                                 \
  lua_rawseti(L, -2, KEY_METHODS + num);
  HTTP_ALL_METHOD_MAP(XX)
#undef XX
  s->ref_keys = luaL_ref(L, LUA_REGISTRYINDEX);
  uv_timer_init(s->loop, &s->timer);
  uv_idle_init(s->loop, &s->idle);
  s->timer.data = s->idle.data = s;
  uv_unref((uv_handle_t *)&s->timer);
  s->open_handles = 2;
  set_options(s, DEFAULT_maxHeaderSize, DEFAULT_headersTimeout,
              DEFAULT_requestTimeout, DEFAULT_keepAliveTimeout,
              DEFAULT_highWaterMark);
  s->flush_hook.fn = server_push;
  lc_flush_add(ctx, &s->flush_hook);
  b->s = s;
  return 1;
}

/* _http.requests() -> requests answered by every server of this process
 * since it started (servers since collected included). */
static int http_requests(lua_State *L) {
  lua_pushnumber(L, *requests_total(L));
  return 1;
}

int luaopen_lc_http(lua_State *L) {
  static const luaL_Reg server_methods[] = {
      {"configure", server_configure},
      {"listen", server_listen},
      {"listen_fd", server_listen_fd},
      {"serve", server_serve_lua},
      {"adopt", server_adopt},
      {"address", server_address},
      {"close", server_close},
      {"close_connections", server_close_connections},
      {"emit_connection", server_emit_connection},
      {"socket_timeout", server_socket_timeout},
      {"max_requests", server_max_requests},
      {"emit_secure", server_emit_secure},
      {"emit_expect", server_emit_expect},
      {"emit_upgrade", server_emit_upgrade},
      {"stats", server_stats},
      {"ref", server_ref},
      {"tls", server_tls},
      {NULL, NULL}};
  static const luaL_Reg fns[] = {
      {"server", http_server_new}, {"requests", http_requests}, {NULL, NULL}};
  luaL_newmetatable(L, SERVER_MT);
  lua_newtable(L);
  luaL_register(L, NULL, server_methods);
  lua_setfield(L, -2, "__index");
  lua_pushcfunction(L, server_gc);
  lua_setfield(L, -2, "__gc");
  lua_pop(L, 1);
  luaL_newmetatable(L, CONN_MT);
  lua_pop(L, 1);
  /* The module: the server's constructor, then the connection functions
   * of each file, the response parser, and the constants the Lua side
   * shares (the env table's slots, the options' defaults). */
  lua_newtable(L);
  luaL_register(L, NULL, fns);
  luaL_register(L, NULL, lc__http_conn_fns);
  luaL_register(L, NULL, lc__http_tls_fns);
  luaL_register(L, NULL, lc__http_parse_fns);
  luaL_register(L, NULL, lc__http_respond_fns);
  luaL_register(L, NULL, lc__http_upgrade_fns);
  lc__http_respond_open(L);
  lc__http_response_open(L);
#define XX(name, slot)                                                         \
  lua_pushinteger(L, slot);                                                    \
  lua_setfield(L, -2, "ENV_" #name);
  HTTP_ENV_MAP(XX)
#undef XX
  lua_newtable(L);
#define XX(name, value)                                                        \
  lua_pushinteger(L, value);                                                   \
  lua_setfield(L, -2, #name);
  HTTP_DEFAULT_MAP(XX)
#undef XX
  lua_setfield(L, -2, "DEFAULTS");
  return 1;
}
