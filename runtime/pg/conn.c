/* The `_pg` module: one libpq connection per userdata, driven without
 * blocking. A uv poll on libpq's socket calls the Lua side
 * (lua/pg/client.lua) back as it turns readable or writable, which then
 * calls these:
 *
 *   _pg.load() -> true, or nil and why libpq could not be loaded
 *   _pg.start(conninfo) -> conn, or nil and libpq's message
 *   _pg.parse(conninfo) -> {keyword = value} of what the string sets (a
 *     URL or key=value pairs, as libpq reads them), or nil and the message
 *   conn:connect_poll() -> 'r' | 'w' (wait for that, then call again) |
 *                          'ok', or nil and the message
 *   conn:socket() -> fd (it may change while connecting)
 *   conn:send(sql[, params, n]) -> true, or nil and the message; params
 *     1..n are strings or nil/pg.null for NULL
 *   conn:prepare(name, sql) and conn:send_prepared(name, params, n): alike
 *   conn:flush() -> true when all is sent, false when more is to write
 *     (wait for writable), or nil and the message
 *   conn:consume() -> true, or nil and the message (the connection lost)
 *   conn:result() -> false while busy; a result table; false and an error
 *     table for a failed statement; nil once the statement's results end
 *   conn:put_copy(data), conn:put_copy_end([error]) -> true, false (libpq's
 *     buffer is full: wait for writable), or nil and the message
 *   conn:get_copy() -> a row of COPY TO STDOUT, false (none yet), nil (the
 *     end), or nil and the message
 *   conn:notifies() -> nil or a list of {channel, payload, processId}
 *   conn:notices() -> nil or a list of notices (the server's warnings,
 *     RAISE NOTICE), each with an error's fields (severity, message, ...)
 *   conn:cancel() -> true: asks the server to cancel what runs (libpq's
 *     PQcancel, on libuv's thread pool since it connects and waits)
 *   conn:watch(events, fn[, fresh]) -> calls fn(what) when the socket is
 *     ready: what is 'r', 'w', 'rw', or 'e' (an error state); '' stops
 *   conn:ref(on): whether that poll keeps the loop alive
 *   conn:finish(), conn:pid(), conn:ok(), conn:tx_status(),
 *   conn:server_version(), conn:message() */
#include <stdlib.h>
#include <string.h>
#include <lauxlib.h>
#include "lc.h"
#include "pg.h"

#define CONN_MT "luacluster.pg.conn"

/* The poll on the connection's socket: malloc'd, freed in its close
 * callback (libuv may touch it until then). */
typedef struct {
  uv_poll_t handle;
  lc_ctx *ctx;
  int ref;     /* The Lua function called on events (registry). */
  int stopped; /* libuv stopped it (an error state). */
} watch_t;

typedef struct {
  PGconn *pg;
  PGresult *res;  /* Being converted: cleared if Lua raised meanwhile. */
  watch_t *watch; /* NULL until conn:watch. */
  int fd;         /* The socket the poll was made for. */
  int events;     /* What the poll waits for now (0: stopped). */
  int unref;      /* The poll does not keep the loop alive. */
  lc_pq_notice *notices, *last; /* Not yet taken by Lua, oldest first. */
  int nnotices;
} conn_t;

/* Notices kept for Lua at most; more are dropped (a function that raises
 * notices in a loop). */
#define MAX_NOTICES 100

static void keep_notice(void *arg, const PGresult *res) {
  conn_t *c = (conn_t *)arg;
  lc_pq_notice *n;
  if (c->nnotices >= MAX_NOTICES)
    return;
  n = lc__pq_notice_new(res);
  if (n == NULL)
    return;
  if (c->last != NULL)
    c->last->next = n;
  else
    c->notices = n;
  c->last = n;
  c->nnotices++;
}

static void free_notices(conn_t *c) {
  lc_pq_notice *n = c->notices, *next;
  for (; n != NULL; n = next) {
    next = n->next;
    free(n);
  }
  c->notices = c->last = NULL;
  c->nnotices = 0;
}

static void watch_free_cb(uv_handle_t *h) { free(h->data); }

/* Closes the poll (before libpq closes its socket) and drops the
 * function. Safe on a connection without one. */
static void unwatch(lua_State *L, conn_t *c) {
  watch_t *w = c->watch;
  if (w == NULL)
    return;
  c->watch = NULL;
  c->events = 0;
  luaL_unref(L, LUA_REGISTRYINDEX, w->ref);
  uv_poll_stop(&w->handle);
  uv_close((uv_handle_t *)&w->handle, watch_free_cb);
}

/* Calls the watch function with 'r', 'w', 'rw' or 'e' (the socket in an
 * error state, which libuv reports as EBADF; libpq finds the cause). */
static void watch_cb(uv_poll_t *h, int status, int events) {
  watch_t *w = (watch_t *)h->data;
  lua_State *L = w->ctx->L;
  const char *what;
  if (status < 0) {
    what = "e";
    w->stopped = 1;
  } else if ((events & UV_READABLE) && (events & UV_WRITABLE))
    what = "rw";
  else if (events & UV_WRITABLE)
    what = "w";
  else
    what = "r";
  lua_rawgeti(L, LUA_REGISTRYINDEX, w->ref);
  lua_pushstring(L, what);
  lc_pcall(L, 1, 0);
}

static conn_t *check_conn(lua_State *L) {
  conn_t *c = (conn_t *)luaL_checkudata(L, 1, CONN_MT);
  if (c->pg == NULL)
    luaL_error(L, "pg: the connection is closed");
  if (c->res != NULL) {
    lc__pq.PQclear(c->res);
    c->res = NULL;
  }
  return c;
}

/* nil and libpq's current message, without its trailing newline. */
static int push_fail(lua_State *L, PGconn *pg) {
  const char *m = lc__pq.PQerrorMessage(pg);
  size_t len = strlen(m);
  while (len > 0 && (m[len - 1] == '\n' || m[len - 1] == ' '))
    len--;
  lua_pushnil(L);
  if (len == 0)
    lua_pushliteral(L, "connection lost");
  else
    lua_pushlstring(L, m, len);
  return 2;
}

static int pg_load(lua_State *L) {
  const char *why = lc__pq_load();
  if (why != NULL) {
    lua_pushnil(L);
    lua_pushstring(L, why);
    return 2;
  }
  lua_pushboolean(L, 1);
  return 1;
}

static int pg_start(lua_State *L) {
  const char *info = luaL_checkstring(L, 1);
  conn_t *c;
  PGconn *pg;
  if (lc__pq_load() != NULL)
    return luaL_error(L, "pg: %s", lc__pq_load());
  c = (conn_t *)lua_newuserdata(L, sizeof(*c));
  c->pg = NULL;
  c->res = NULL;
  c->watch = NULL;
  c->fd = -1;
  c->events = 0;
  c->unref = 0;
  c->notices = c->last = NULL;
  c->nnotices = 0;
  luaL_getmetatable(L, CONN_MT);
  lua_setmetatable(L, -2);
  pg = lc__pq.PQconnectStart(info);
  if (pg == NULL) {
    lua_pushnil(L);
    lua_pushliteral(L, "out of memory");
    return 2;
  }
  c->pg = pg; /* Owned by the userdata from here: __gc finishes it. */
  /* Notices go to Lua (conn:notices), not to stderr as libpq's default. */
  lc__pq.PQsetNoticeReceiver(pg, keep_notice, c);
  if (lc__pq.PQstatus(pg) == CONNECTION_BAD)
    return push_fail(L, pg);
  return 1;
}

static int conn_connect_poll(lua_State *L) {
  conn_t *c = check_conn(L);
  switch (lc__pq.PQconnectPoll(c->pg)) {
  case PGRES_POLLING_READING:
    lua_pushliteral(L, "r");
    return 1;
  case PGRES_POLLING_WRITING:
    lua_pushliteral(L, "w");
    return 1;
  case PGRES_POLLING_OK:
    if (lc__pq.PQsetnonblocking(c->pg, 1) != 0)
      return push_fail(L, c->pg);
    lua_pushliteral(L, "ok");
    return 1;
  default:
    return push_fail(L, c->pg);
  }
}

static int conn_socket(lua_State *L) {
  conn_t *c = check_conn(L);
  lua_pushinteger(L, lc__pq.PQsocket(c->pg));
  return 1;
}

/* The most parameters the protocol carries (a 16-bit count). */
#define MAX_PARAMS 65535
/* Up to this many, the pointers live on the C stack. */
#define SMALL_PARAMS 16

/* Reads params[1..n] (argument idx, count at idx + 1) into vals; raises
 * on a value that is neither a string nor NULL before anything is sent. */
static const char **get_params(lua_State *L, int idx, int *np,
                               const char **small) {
  int n, i;
  const char **vals = small;
  if (lua_isnoneornil(L, idx)) {
    *np = 0;
    return small;
  }
  luaL_checktype(L, idx, LUA_TTABLE);
  n = (int)luaL_checkinteger(L, idx + 1);
  luaL_argcheck(L, n >= 0 && n <= MAX_PARAMS, idx + 1,
                "at most 65535 parameters");
  if (n > SMALL_PARAMS)
    vals = (const char **)lua_newuserdata(L, sizeof(char *) * (size_t)n);
  for (i = 0; i < n; i++) {
    lua_rawgeti(L, idx, i + 1);
    if (lua_type(L, -1) == LUA_TSTRING) {
      size_t len;
      const char *v = lua_tolstring(L, -1, &len); /* The table keeps it. */
      /* Sent as a C string: a NUL would cut it short without a word. */
      if (memchr(v, '\0', len) != NULL)
        luaL_error(L,
                   "pg: parameter $%d holds a NUL byte (binary data goes "
                   "as pg.bytea(s))",
                   i + 1);
      vals[i] = v;
    } else if (lua_isnil(L, -1) ||
               (lua_islightuserdata(L, -1) && lua_touserdata(L, -1) == NULL))
      vals[i] = NULL;
    else
      luaL_error(L, "pg: parameter %d is a %s, not text or NULL", i + 1,
                 luaL_typename(L, -1));
    lua_pop(L, 1);
  }
  *np = n;
  return vals;
}

/* After a send: true, or nil and the message. */
static int sent(lua_State *L, conn_t *c, int ok) {
  if (!ok)
    return push_fail(L, c->pg);
  lua_pushboolean(L, 1);
  return 1;
}

/* The SQL text at idx; raises on a NUL byte (libpq takes C strings). */
static const char *check_sql(lua_State *L, int idx) {
  size_t len;
  const char *sql = luaL_checklstring(L, idx, &len);
  if (memchr(sql, '\0', len) != NULL)
    luaL_error(L, "pg: the SQL text holds a NUL byte");
  return sql;
}

static int conn_send(lua_State *L) {
  conn_t *c = check_conn(L);
  const char *sql = check_sql(L, 2);
  const char *small[SMALL_PARAMS];
  int n;
  const char **vals = get_params(L, 3, &n, small);
  if (lua_isnoneornil(L, 3))
    return sent(L, c, lc__pq.PQsendQuery(c->pg, sql));
  return sent(
      L, c, lc__pq.PQsendQueryParams(c->pg, sql, n, NULL, vals, NULL, NULL, 0));
}

static int conn_prepare(lua_State *L) {
  conn_t *c = check_conn(L);
  const char *name = luaL_checkstring(L, 2);
  const char *sql = check_sql(L, 3);
  return sent(L, c, lc__pq.PQsendPrepare(c->pg, name, sql, 0, NULL));
}

static int conn_send_prepared(lua_State *L) {
  conn_t *c = check_conn(L);
  const char *name = luaL_checkstring(L, 2);
  const char *small[SMALL_PARAMS];
  int n;
  const char **vals = get_params(L, 3, &n, small);
  return sent(L, c,
              lc__pq.PQsendQueryPrepared(c->pg, name, n, vals, NULL, NULL, 0));
}

static int conn_flush(lua_State *L) {
  conn_t *c = check_conn(L);
  int r = lc__pq.PQflush(c->pg);
  if (r < 0)
    return push_fail(L, c->pg);
  lua_pushboolean(L, r == 0);
  return 1;
}

static int conn_consume(lua_State *L) {
  conn_t *c = check_conn(L);
  if (!lc__pq.PQconsumeInput(c->pg))
    return push_fail(L, c->pg);
  lua_pushboolean(L, 1);
  return 1;
}

static int conn_result(lua_State *L) {
  conn_t *c = check_conn(L);
  PGresult *res;
  int n;
  if (lc__pq.PQisBusy(c->pg)) {
    lua_pushboolean(L, 0);
    return 1;
  }
  res = lc__pq.PQgetResult(c->pg);
  if (res == NULL)
    return 0;
  c->res = res;
  n = lc__pq_push_result(L, res);
  c->res = NULL;
  lc__pq.PQclear(res);
  return n;
}

/* conn:put_copy(data) -> true once queued, false when libpq's buffer is
 * full (wait for writable, flush, try again), or nil and the message. */
static int conn_put_copy(lua_State *L) {
  conn_t *c = check_conn(L);
  size_t len;
  const char *data = luaL_checklstring(L, 2, &len);
  int r;
  luaL_argcheck(L, len <= 0x7fffffff, 2, "a COPY chunk over 2 GiB");
  r = lc__pq.PQputCopyData(c->pg, data, (int)len);
  if (r < 0)
    return push_fail(L, c->pg);
  lua_pushboolean(L, r == 1);
  return 1;
}

/* conn:put_copy_end([error]) -> as put_copy; with error, the server
 * fails the COPY with that message. */
static int conn_put_copy_end(lua_State *L) {
  conn_t *c = check_conn(L);
  int r = lc__pq.PQputCopyEnd(c->pg, luaL_optstring(L, 2, NULL));
  if (r < 0)
    return push_fail(L, c->pg);
  lua_pushboolean(L, r == 1);
  return 1;
}

/* conn:get_copy() -> the next row of a COPY TO STDOUT (a string), false
 * while none has arrived (wait for readable, consume, try again), nil at
 * its end (the statement's result follows), or nil and the message. */
static int conn_get_copy(lua_State *L) {
  conn_t *c = check_conn(L);
  char *buf = NULL;
  int r = lc__pq.PQgetCopyData(c->pg, &buf, 1);
  if (r > 0) {
    /* Pushed before it is freed: a failed push leaks one row at worst. */
    lua_pushlstring(L, buf, (size_t)r);
    lc__pq.PQfreemem(buf);
    return 1;
  }
  if (r == 0) {
    lua_pushboolean(L, 0);
    return 1;
  }
  if (r == -1)
    return 0;
  return push_fail(L, c->pg);
}

static int conn_notifies(lua_State *L) {
  conn_t *c = check_conn(L);
  PGnotify *n;
  int i = 0;
  while ((n = lc__pq.PQnotifies(c->pg)) != NULL) {
    /* Copied into Lua strings first: nothing may raise while n is held
     * but these pushes, so a failure leaks one notice at worst. */
    if (i == 0)
      lua_newtable(L);
    lua_createtable(L, 0, 3);
    lua_pushstring(L, n->relname);
    lua_setfield(L, -2, "channel");
    lua_pushstring(L, n->extra != NULL ? n->extra : "");
    lua_setfield(L, -2, "payload");
    lua_pushnumber(L, (lua_Number)n->be_pid);
    lua_setfield(L, -2, "processId");
    lc__pq.PQfreemem(n);
    lua_rawseti(L, -2, ++i);
  }
  return i > 0 ? 1 : 0;
}

/* conn:notices() -> nil or the notices kept since the last call, as
 * tables with Node pg's field names. */
static int conn_notices(lua_State *L) {
  conn_t *c = check_conn(L);
  lc_pq_notice *n;
  int i = 0;
  if (c->notices == NULL)
    return 0;
  lua_createtable(L, c->nnotices, 0);
  for (n = c->notices; n != NULL; n = n->next) {
    lc__pq_push_notice(L, n);
    lua_rawseti(L, -2, ++i);
  }
  free_notices(c);
  return 1;
}

/* A cancel request in flight on the thread pool. */
typedef struct {
  uv_work_t req;
  PGcancel *cancel;
} cancel_t;

static void cancel_work(uv_work_t *req) {
  cancel_t *w = (cancel_t *)req->data;
  char buf[256];
  /* Failure is not reported: the query's own timeout handling copes. */
  (void)lc__pq.PQcancel(w->cancel, buf, (int)sizeof(buf));
}

static void cancel_done(uv_work_t *req, int status) {
  cancel_t *w = (cancel_t *)req->data;
  (void)status;
  lc__pq.PQfreeCancel(w->cancel);
  free(w);
}

static int conn_cancel(lua_State *L) {
  conn_t *c = check_conn(L);
  lc_ctx *ctx = lc_get(L);
  cancel_t *w;
  PGcancel *pc = lc__pq.PQgetCancel(c->pg);
  int err;
  if (pc == NULL) {
    lua_pushnil(L);
    lua_pushliteral(L, "no connection to cancel");
    return 2;
  }
  w = (cancel_t *)malloc(sizeof(*w));
  if (w == NULL) {
    lc__pq.PQfreeCancel(pc);
    lua_pushnil(L);
    lua_pushliteral(L, "out of memory");
    return 2;
  }
  w->cancel = pc;
  w->req.data = w;
  err = uv_queue_work(ctx->loop, &w->req, cancel_work, cancel_done);
  if (err != 0) {
    lc__pq.PQfreeCancel(pc);
    free(w);
    return lc_push_uverr(L, err);
  }
  lua_pushboolean(L, 1);
  return 1;
}

/* conn:watch(events, fn): fn(what) when the socket is ready for events
 * ('r', 'rw', 'w'; '' stops). The poll follows the socket libpq has now (a
 * connection attempt may replace it), made afresh each time `fresh` is
 * true (a new socket may reuse the number of a closed one). */
static int conn_watch(lua_State *L) {
  conn_t *c = check_conn(L);
  const char *ev = luaL_checkstring(L, 2);
  int fresh = lua_toboolean(L, 4);
  int events = 0, fd, err;
  lua_settop(L, 3);
  if (strchr(ev, 'r') != NULL)
    events |= UV_READABLE;
  if (strchr(ev, 'w') != NULL)
    events |= UV_WRITABLE;
  fd = lc__pq.PQsocket(c->pg);
  if (c->watch != NULL && (fresh || fd != c->fd)) {
    lua_rawgeti(L, LUA_REGISTRYINDEX, c->watch->ref);
    lua_replace(L, 3);
    unwatch(L, c);
  }
  if (events == 0) {
    if (c->watch != NULL && c->events != 0) {
      uv_poll_stop(&c->watch->handle);
      c->events = 0;
    }
    return 0;
  }
  if (fd < 0)
    return luaL_error(L, "pg: the connection has no socket");
  if (c->watch == NULL) {
    watch_t *w;
    lc_ctx *ctx = lc_get(L);
    int ref;
    luaL_checktype(L, 3, LUA_TFUNCTION);
    /* Everything that may raise first, then the allocation. */
    lua_pushvalue(L, 3);
    ref = luaL_ref(L, LUA_REGISTRYINDEX);
    w = (watch_t *)malloc(sizeof(*w));
    if (w == NULL) {
      luaL_unref(L, LUA_REGISTRYINDEX, ref);
      lua_pushnil(L);
      lua_pushliteral(L, "out of memory");
      return 2;
    }
    err = uv_poll_init_socket(ctx->loop, &w->handle, fd);
    if (err != 0) {
      free(w);
      luaL_unref(L, LUA_REGISTRYINDEX, ref);
      return lc_push_uverr(L, err);
    }
    w->handle.data = w;
    w->ctx = ctx;
    w->ref = ref;
    w->stopped = 0;
    c->watch = w;
    c->fd = fd;
    c->events = 0;
    if (c->unref)
      uv_unref((uv_handle_t *)&w->handle);
  }
  if (c->events != events || c->watch->stopped) {
    err = uv_poll_start(&c->watch->handle, events, watch_cb);
    if (err != 0)
      return lc_push_uverr(L, err);
    c->events = events;
    c->watch->stopped = 0;
  }
  lua_pushboolean(L, 1);
  return 1;
}

/* conn:ref(on): whether the poll keeps the loop alive. */
static int conn_ref(lua_State *L) {
  conn_t *c = check_conn(L);
  c->unref = !lua_toboolean(L, 2);
  if (c->watch != NULL) {
    if (c->unref)
      uv_unref((uv_handle_t *)&c->watch->handle);
    else
      uv_ref((uv_handle_t *)&c->watch->handle);
  }
  return 0;
}

static int conn_finish(lua_State *L) {
  conn_t *c = (conn_t *)luaL_checkudata(L, 1, CONN_MT);
  unwatch(L, c);
  if (c->res != NULL) {
    lc__pq.PQclear(c->res);
    c->res = NULL;
  }
  if (c->pg != NULL) {
    lc__pq.PQfinish(c->pg);
    c->pg = NULL;
  }
  free_notices(c);
  return 0;
}

static int conn_pid(lua_State *L) {
  conn_t *c = check_conn(L);
  lua_pushinteger(L, lc__pq.PQbackendPID(c->pg));
  return 1;
}

static int conn_ok(lua_State *L) {
  conn_t *c = (conn_t *)luaL_checkudata(L, 1, CONN_MT);
  lua_pushboolean(L, c->pg != NULL && lc__pq.PQstatus(c->pg) == CONNECTION_OK);
  return 1;
}

static int conn_tx_status(lua_State *L) {
  conn_t *c = check_conn(L);
  static const char *names[] = {"idle", "active", "intrans", "inerror",
                                "unknown"};
  PGTransactionStatusType t = lc__pq.PQtransactionStatus(c->pg);
  lua_pushstring(L, names[(unsigned)t <= 4 ? (unsigned)t : 4]);
  return 1;
}

static int conn_server_version(lua_State *L) {
  conn_t *c = check_conn(L);
  lua_pushinteger(L, lc__pq.PQserverVersion(c->pg));
  return 1;
}

static int conn_message(lua_State *L) {
  conn_t *c = check_conn(L);
  push_fail(L, c->pg);
  lua_remove(L, -2);
  return 1;
}

static int pg_parse(lua_State *L) {
  const char *info = luaL_checkstring(L, 1);
  char *err = NULL;
  PQconninfoOption *opts, *o;
  if (lc__pq_load() != NULL)
    return luaL_error(L, "pg: %s", lc__pq_load());
  opts = lc__pq.PQconninfoParse(info, &err);
  if (opts == NULL) {
    lua_pushnil(L);
    lua_pushstring(L, err ? err : "out of memory");
    if (err)
      lc__pq.PQfreemem(err);
    return 2;
  }
  lua_newtable(L);
  for (o = opts; o->keyword != NULL; o++) {
    if (o->val == NULL)
      continue;
    lua_pushstring(L, o->val);
    lua_setfield(L, -2, o->keyword);
  }
  lc__pq.PQconninfoFree(opts);
  return 1;
}

static int pg_lib_version(lua_State *L) {
  if (lc__pq_load() != NULL)
    return luaL_error(L, "pg: %s", lc__pq_load());
  lua_pushinteger(L, lc__pq.PQlibVersion());
  return 1;
}

int luaopen_lc_pg(lua_State *L) {
  static const luaL_Reg methods[] = {{"connect_poll", conn_connect_poll},
                                     {"socket", conn_socket},
                                     {"send", conn_send},
                                     {"prepare", conn_prepare},
                                     {"send_prepared", conn_send_prepared},
                                     {"flush", conn_flush},
                                     {"consume", conn_consume},
                                     {"result", conn_result},
                                     {"notifies", conn_notifies},
                                     {"put_copy", conn_put_copy},
                                     {"put_copy_end", conn_put_copy_end},
                                     {"get_copy", conn_get_copy},
                                     {"notices", conn_notices},
                                     {"cancel", conn_cancel},
                                     {"finish", conn_finish},
                                     {"watch", conn_watch},
                                     {"ref", conn_ref},
                                     {"pid", conn_pid},
                                     {"ok", conn_ok},
                                     {"tx_status", conn_tx_status},
                                     {"server_version", conn_server_version},
                                     {"message", conn_message},
                                     {NULL, NULL}};
  static const luaL_Reg funcs[] = {{"load", pg_load},
                                   {"start", pg_start},
                                   {"parse", pg_parse},
                                   {"lib_version", pg_lib_version},
                                   {NULL, NULL}};
  if (luaL_newmetatable(L, CONN_MT)) {
    lua_pushvalue(L, -1);
    lua_setfield(L, -2, "__index");
    luaL_register(L, NULL, methods);
    lua_pushcfunction(L, conn_finish);
    lua_setfield(L, -2, "__gc");
  }
  lua_pop(L, 1);
  lua_newtable(L);
  luaL_register(L, NULL, funcs);
  return 1;
}
