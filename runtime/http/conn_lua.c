/* The `_http` functions on a server's connection (its box, `_c` on the
 * Lua side): destroy, end_connection, name, nodelay, reading,
 * set_timeout, ref, writable_length. The connection itself is conn.c's. */
#include "http.h"
#include "tcp.h"

/* Returns the live connection of the box at idx, or NULL once closed. */
http_conn *lc__http_check_conn(lua_State *L, int idx) {
  conn_box *b = (conn_box *)luaL_checkudata(L, idx, CONN_MT);
  return b->c;
}

/* _http.destroy(c): closes the connection at once. */
static int http_destroy(lua_State *L) {
  http_conn *c = lc__http_check_conn(L, 1);
  if (c == NULL)
    return 0;
  /* Written in this read's batch (upgrade.c): tried now, as a write made
   * just before a destroy always was. */
  if (c->raw_batch)
    lc__http_conn_flush(c);
  if (!c->closing)
    lc__http_conn_close(c);
  return 0;
}

/* _http.end_connection(c): ends the connection after what is written. */
static int http_end_connection(lua_State *L) {
  http_conn *c = lc__http_check_conn(L, 1);
  if (c != NULL)
    lc__http_conn_end(c);
  return 0;
}

/* _http.name(c, peer) -> address table ({} on a Unix socket: Node gives
 * a pipe's sockets no address), or nil once closed. */
static int http_name(lua_State *L) {
  http_conn *c = lc__http_check_conn(L, 1);
  uv_os_fd_t fd;
  if (c == NULL || uv_fileno(&c->sock.handle, &fd) != 0) {
    lua_pushnil(L);
    return 1;
  }
  if (c->pipe) {
    lua_createtable(L, 0, 0);
    return 1;
  }
  return lc__tcp_push_name(L, fd, lua_toboolean(L, 2));
}

/* _http.nodelay(c, on) */
static int http_nodelay(lua_State *L) {
  http_conn *c = lc__http_check_conn(L, 1);
  if (c != NULL && !c->closing && !c->pipe)
    uv_tcp_nodelay(&c->sock.tcp, lua_toboolean(L, 2));
  return 0;
}

/* _http.reading(c, on): pauses or resumes reading (req:pause()). */
static int http_reading(lua_State *L) {
  http_conn *c = lc__http_check_conn(L, 1);
  int on = lua_toboolean(L, 2);
  if (c == NULL || (on && c->in.len > INPUT_LIMIT))
    return 0;
  lc__http_conn_reading(c, on);
  return 0;
}

/* _http.set_timeout(c, ms): the socket's 'timeout' comes after ms without
 * reads or writes (0: never). */
static int http_set_timeout(lua_State *L) {
  http_conn *c = lc__http_check_conn(L, 1);
  lua_Number ms = luaL_checknumber(L, 2);
  luaL_argcheck(L, ms >= 0, 2, "timeout must not be negative");
  if (c == NULL || c->closing)
    return 0;
  c->idle_timeout = (uint64_t)ms;
  c->idle_fired = 0;
  c->last_active = uv_now(c->s->loop);
  if (c->idle_timeout &&
      (!c->s->min_idle || c->idle_timeout < c->s->min_idle)) {
    c->s->min_idle = c->idle_timeout;
    lc__http_server_scan(c->s);
  }
  return 0;
}

/* _http.ref(c, on): whether the connection keeps the loop alive (Node's
 * socket.ref() / socket.unref()). */
static int http_ref(lua_State *L) {
  http_conn *c = lc__http_check_conn(L, 1);
  if (c == NULL || c->closing)
    return 0;
  if (lua_toboolean(L, 2))
    uv_ref(&c->sock.handle);
  else
    uv_unref(&c->sock.handle);
  return 0;
}

/* _http.writable_length(c) -> bytes queued and not yet written. */
static int http_writable_length(lua_State *L) {
  http_conn *c = lc__http_check_conn(L, 1);
  lua_pushinteger(L, c ? (lua_Integer)lc__http_conn_queued(c) : 0);
  return 1;
}

const luaL_Reg lc__http_conn_fns[] = {{"destroy", http_destroy},
                                      {"end_connection", http_end_connection},
                                      {"name", http_name},
                                      {"nodelay", http_nodelay},
                                      {"reading", http_reading},
                                      {"writable_length", http_writable_length},
                                      {"set_timeout", http_set_timeout},
                                      {"ref", http_ref},
                                      {NULL, NULL}};
