/* The context, the callback policy and the `_lc` core module. */
#include <errno.h>
#include <stdio.h>
#include <stdio_ext.h>
#include <stdlib.h>
#include <string.h>
#include <poll.h>
#include <unistd.h>
#include <lualib.h>
#include <luajit.h>
#include <luv.h>
#include "lc.h"

static const char lc_ctx_key = 'c';
static const char lc_tb_key = 't';
static const char lc_reraise_key = 'r';

/* The context of the state lc_get found last, by its registry (which the
 * state's coroutines share): a cache of the registry lookup below, the
 * hot path's most frequent call. The context's __gc forgets it, so a state
 * closed and another opened at the same address cannot be confused. */
static const void *last_registry;
static lc_ctx *last_ctx;

static int ctx_gc(lua_State *L) {
  if (lua_touserdata(L, 1) == (void *)last_ctx) {
    last_ctx = NULL;
    last_registry = NULL;
  }
  return 0;
}

lc_ctx *lc_get(lua_State *L) {
  lc_ctx *ctx;
  const void *registry = lua_topointer(L, LUA_REGISTRYINDEX);
  if (registry == last_registry && last_ctx != NULL)
    return last_ctx;
  lua_pushlightuserdata(L, (void *)&lc_ctx_key);
  lua_rawget(L, LUA_REGISTRYINDEX);
  ctx = (lc_ctx *)lua_touserdata(L, -1);
  lua_pop(L, 1);
  if (ctx == NULL) {
    lua_pushlightuserdata(L, (void *)&lc_ctx_key);
    ctx = (lc_ctx *)lua_newuserdata(L, sizeof(*ctx));
    memset(ctx, 0, sizeof(*ctx));
    ctx->L = L;
    ctx->loop = uv_default_loop();
    ctx->ref_onerror = LUA_NOREF;
    ctx->ref_ontick = LUA_NOREF;
    ctx->ref_traceback = LUA_NOREF;
    lua_createtable(L, 0, 1);
    lua_pushcfunction(L, ctx_gc);
    lua_setfield(L, -2, "__gc");
    lua_setmetatable(L, -2);
    lua_rawset(L, LUA_REGISTRYINDEX);
  }
  last_registry = registry;
  last_ctx = ctx;
  return ctx;
}

/* Error handler: keeps the error value as it is (uncaughtException gets
 * what was raised) and stores the traceback beside it in the registry. A
 * string error heads its traceback; any other value gets a bare one, as
 * debug.traceback would return a non-string message unchanged. */
static int lc_traceback(lua_State *L) {
  /* lua_tostring would turn a number into a string in place. */
  const char *msg = lua_type(L, 1) == LUA_TSTRING ? lua_tostring(L, 1)
                                                   : NULL;
  int again;
  lua_settop(L, 1);
  /* An error raised again by lc_reraise keeps the traceback of its first
   * raise (the one that says where it came from). */
  lua_pushlightuserdata(L, (void *)&lc_reraise_key);
  lua_rawget(L, LUA_REGISTRYINDEX);
  again = !lua_isnil(L, 2) && lua_rawequal(L, 1, 2);
  lua_pop(L, 1);
  if (!lua_isnil(L, 1)) {
    lua_pushlightuserdata(L, (void *)&lc_reraise_key);
    lua_pushnil(L);
    lua_rawset(L, LUA_REGISTRYINDEX);
  }
  if (again)
    return 1;
  lua_pushlightuserdata(L, (void *)&lc_tb_key);
  luaL_traceback(L, L, msg, 1);
  lua_rawset(L, LUA_REGISTRYINDEX);
  return 1;
}

void lc_flush_add(lc_ctx *ctx, lc_flush_hook *h) {
  h->prev = NULL;
  h->next = ctx->flush_hooks;
  if (h->next)
    h->next->prev = h;
  ctx->flush_hooks = h;
}

void lc_flush_remove(lc_ctx *ctx, lc_flush_hook *h) {
  if (h->prev)
    h->prev->next = h->next;
  else if (ctx->flush_hooks == h)
    ctx->flush_hooks = h->next;
  if (h->next)
    h->next->prev = h->prev;
  h->prev = h->next = NULL;
}

void lc_flush(lc_ctx *ctx) {
  lc_flush_hook *h, *next;
  for (h = ctx->flush_hooks; h; h = next) {
    next = h->next;
    h->fn(h);
  }
}

/* Pushes out what the sockets were given (as Node's writes have tried the
 * socket when they were made), flushes stdio and ends the process. */
static void lc_exit(lc_ctx *ctx, int code) {
  lc_flush(ctx);
  fflush(stdout);
  fflush(stderr);
  exit(code);
}

/* Prints the error at index idx with the traceback stored by lc_traceback,
 * when there is one. A nil error prints nothing, as Lua's own interpreter
 * does: error() is a quiet way to fail. */
static void lc_print_error(lua_State *L, int idx) {
  const char *msg;
  const char *tb;
  if (lua_isnil(L, idx))
    return;
  lua_pushlightuserdata(L, (void *)&lc_tb_key);
  lua_rawget(L, LUA_REGISTRYINDEX);
  tb = lua_tostring(L, -1);
  if (lua_type(L, idx) == LUA_TSTRING)
    msg = tb ? tb : lua_tostring(L, idx);
  else
    msg = lua_pushfstring(L, "(error object is a %s value)\n%s",
                          luaL_typename(L, idx), tb ? tb : "");
  fflush(stdout);
  fprintf(stderr, "luacluster: %s\n", msg);
}

/* Hands an error (on the stack top) to the Lua policy, popping it. When no
 * policy is installed yet (during start-up) prints it and exits 1. */
static void lc_report(lua_State *L, lc_ctx *ctx) {
  int err = lua_gettop(L);
  lua_pushlightuserdata(L, (void *)&lc_tb_key);
  lua_rawget(L, LUA_REGISTRYINDEX);
  if (ctx->ref_onerror != LUA_NOREF) {
    /* Stack: err, traceback, handler, policy, err, traceback. */
    lua_pushcfunction(L, lc_traceback);
    lua_rawgeti(L, LUA_REGISTRYINDEX, ctx->ref_onerror);
    lua_pushvalue(L, err);
    lua_pushvalue(L, err + 1);
    if (lua_pcall(L, 2, 0, err + 2) == 0) {
      lua_settop(L, err - 1);
      return;
    }
    /* The policy itself failed (an uncaughtException listener raised):
     * Node exits 7 then. */
    lc_print_error(L, lua_gettop(L));
    lc_exit(ctx, 7);
  }
  lc_print_error(L, err);
  lc_exit(ctx, 1);
}

static void lc_drain_ticks(lua_State *L, lc_ctx *ctx) {
  while (ctx->tick_pending && ctx->ref_ontick != LUA_NOREF) {
    ctx->tick_pending = 0;
    ctx->depth++;
    lua_pushcfunction(L, lc_traceback);
    lua_rawgeti(L, LUA_REGISTRYINDEX, ctx->ref_ontick);
    if (lua_pcall(L, 0, 0, -2) != 0) {
      lua_remove(L, -2);
      /* Ticks left after the failing one run on the next drain. */
      ctx->tick_pending = 1;
      ctx->depth--;
      lc_report(L, ctx);
      continue;
    }
    lua_pop(L, 1);
    ctx->depth--;
  }
}

/* The traceback handler of every protected call, on the stack. */
static void push_traceback(lua_State *L, lc_ctx *ctx) {
  if (ctx->ref_traceback == LUA_NOREF) {
    lua_pushcfunction(L, lc_traceback);
    ctx->ref_traceback = luaL_ref(L, LUA_REGISTRYINDEX);
  }
  lua_rawgeti(L, LUA_REGISTRYINDEX, ctx->ref_traceback);
}

int lc_pcall(lua_State *L, int nargs, int nresults) {
  lc_ctx *ctx = lc_get(L);
  int base = lua_gettop(L) - nargs;
  int rc;
  /* The handler from the registry: lua_pushcfunction would allocate a new
   * function object on every call. */
  push_traceback(L, ctx);
  lua_insert(L, base);
  ctx->depth++;
  rc = lua_pcall(L, nargs, nresults, base);
  ctx->depth--;
  lua_remove(L, base);
  if (rc != 0)
    lc_report(L, ctx);
  if (ctx->depth == 0) {
    lc_drain_ticks(L, ctx);
    /* What print or io.write left in stdout's buffer goes out before the
     * next event, as console output does. */
    if (__fpending(stdout) > 0)
      fflush(stdout);
  }
  return rc;
}

int lc_pcall_catch(lua_State *L, int nargs, int nresults) {
  int base = lua_gettop(L) - nargs;
  int rc;
  push_traceback(L, lc_get(L));
  lua_insert(L, base);
  rc = lua_pcall(L, nargs, nresults, base);
  lua_remove(L, base);
  return rc;
}

int lc_reraise(lua_State *L) {
  lua_pushlightuserdata(L, (void *)&lc_reraise_key);
  lua_pushvalue(L, -2);
  lua_rawset(L, LUA_REGISTRYINDEX);
  return lua_error(L);
}

/* Opens the runtime in L: the standard libraries, luv on the runtime's loop
 * and callback policy, the preloads; pushes the init module and init.main.
 * Start-up allocates only what lives on (the libraries, the modules), so
 * the collector stays stopped; lua/init.lua restarts it before the script
 * runs. Raises on failure (call it in protected mode). Stack: +2. */
void lc_open(lua_State *L) {
  lua_gc(L, LUA_GCSTOP, 0);
  luaL_openlibs(L);
  luv_set_loop(L, uv_default_loop());
  luv_set_callback(L, lc_luv_pcall);
  lc_preload(L);
  lua_getglobal(L, "require");
  lua_pushliteral(L, "init");
  lua_call(L, 1, 1);
  lua_getfield(L, -1, "main");
}

/* luv's callback hook: the same policy for callbacks of the `uv` module. */
int lc_luv_pcall(lua_State *L, int nargs, int nresults, int flags) {
  int top = lua_gettop(L) - nargs - 1;
  int rc;
  (void)flags;
  rc = lc_pcall(L, nargs, nresults);
  if (rc != 0)
    return -rc;
  return nresults == LUA_MULTRET ? lua_gettop(L) - top : nresults;
}

int lc_push_uverr(lua_State *L, int err) {
  lua_pushnil(L);
  lua_pushfstring(L, "%s: %s", uv_err_name(err), uv_strerror(err));
  lua_pushstring(L, uv_err_name(err));
  return 3;
}

/* ---- The `_lc` core module: what the Lua side needs from the host. ---- */

/* _lc.set_handlers(onerror, ontick) */
static int core_set_handlers(lua_State *L) {
  lc_ctx *ctx = lc_get(L);
  luaL_checktype(L, 1, LUA_TFUNCTION);
  luaL_checktype(L, 2, LUA_TFUNCTION);
  luaL_unref(L, LUA_REGISTRYINDEX, ctx->ref_onerror);
  luaL_unref(L, LUA_REGISTRYINDEX, ctx->ref_ontick);
  lua_pushvalue(L, 2);
  ctx->ref_ontick = luaL_ref(L, LUA_REGISTRYINDEX);
  lua_pushvalue(L, 1);
  ctx->ref_onerror = luaL_ref(L, LUA_REGISTRYINDEX);
  return 0;
}

/* _lc.tick_pending(): marks the nextTick queue non-empty. */
static int core_tick_pending(lua_State *L) {
  lc_get(L)->tick_pending = 1;
  return 0;
}

/* _lc.drain_ticks(): runs the nextTick queue now, under the error policy,
 * for Lua code that runs several callbacks in one event (immediates). */
static int core_drain_ticks(lua_State *L) {
  lc_drain_ticks(L, lc_get(L));
  return 0;
}

/* _lc.exit(code): pushes out queued socket output, flushes stdio and
 * ends the process at once. */
static int core_exit(lua_State *L) {
  int code = (int)luaL_optinteger(L, 1, 0);
  lc_exit(lc_get(L), code);
  return 0;
}

/* _lc.flush(): pushes out the output queued for sockets that they take
 * now (before process.kill of this process). */
static int core_flush(lua_State *L) {
  lc_flush(lc_get(L));
  return 0;
}

/* _lc.write(fd, str): one write(2) of the whole string, retried on short
 * writes, so a console line is never split by this process. */
static int core_write(lua_State *L) {
  int fd = (int)luaL_checkinteger(L, 1);
  size_t len;
  const char *s = luaL_checklstring(L, 2, &len);
  /* Whatever print or io.write buffered comes first. */
  if (fd == 1)
    fflush(stdout);
  while (len > 0) {
    ssize_t n = write(fd, s, len);
    if (n < 0) {
      if (errno == EINTR)
        continue;
      if (errno == EAGAIN) {
        /* The fd is non-blocking (shared with a parent's libuv): wait
         * until it takes more. */
        struct pollfd p;
        p.fd = fd;
        p.events = POLLOUT;
        p.revents = 0;
        poll(&p, 1, -1);
        continue;
      }
      return lc_push_uverr(L, uv_translate_sys_error(errno));
    }
    s += n;
    len -= (size_t)n;
  }
  lua_pushboolean(L, 1);
  return 1;
}

/* _lc.isatty(fd) */
static int core_isatty(lua_State *L) {
  lua_pushboolean(L, isatty((int)luaL_checkinteger(L, 1)));
  return 1;
}

/* _lc.run(mode): runs the loop once ("once"/"nowait") or to the end
 * ("default"); returns whether handles are still alive. Used by the spec
 * helper to run the loop from the main chunk. */
static int core_run(lua_State *L) {
  static const char *const modes[] = {"default", "once", "nowait", NULL};
  static const uv_run_mode map[] = {UV_RUN_DEFAULT, UV_RUN_ONCE,
                                    UV_RUN_NOWAIT};
  int m = luaL_checkoption(L, 1, "default", modes);
  lc_ctx *ctx = lc_get(L);
  int depth = ctx->depth;
  /* Callbacks run from here are outermost calls: ticks drain after each. */
  ctx->depth = 0;
  lua_pushboolean(L, uv_run(ctx->loop, map[m]) != 0);
  ctx->depth = depth;
  return 1;
}

static int core_versions(lua_State *L) {
  lua_newtable(L);
  lua_pushstring(L, LUACLUSTER_VERSION);
  lua_setfield(L, -2, "luacluster");
  lua_pushstring(L, LUAJIT_VERSION);
  lua_setfield(L, -2, "luajit");
  lua_pushstring(L, uv_version_string());
  lua_setfield(L, -2, "libuv");
  return 1;
}

/* _lc.available_parallelism(): CPUs this process may run on. */
static int core_available_parallelism(lua_State *L) {
  lua_pushinteger(L, (lua_Integer)uv_available_parallelism());
  return 1;
}

int luaopen_lc_core(lua_State *L) {
  static const luaL_Reg fns[] = {
    {"set_handlers", core_set_handlers},
    {"tick_pending", core_tick_pending},
    {"drain_ticks", core_drain_ticks},
    {"exit", core_exit},
    {"flush", core_flush},
    {"write", core_write},
    {"isatty", core_isatty},
    {"run", core_run},
    {"versions", core_versions},
    {"available_parallelism", core_available_parallelism},
    {"interruptible", lc__interruptible},
    {NULL, NULL}};
  lua_newtable(L);
  luaL_register(L, NULL, fns);
  /* libuv's error codes and messages (Node's err.errno is the negative
   * code): uv_errno = {EADDRINUSE = -98, ...}, uv_messages = {EADDRINUSE =
   * 'address already in use', ...}, for lua/internal/errors.lua. */
  lua_newtable(L);
  lua_newtable(L);
#define XX(code, msg)                                                         \
  lua_pushinteger(L, UV_##code);                                              \
  lua_setfield(L, -3, #code);                                                 \
  lua_pushliteral(L, msg);                                                    \
  lua_setfield(L, -2, #code);
  UV_ERRNO_MAP(XX)
#undef XX
  lua_setfield(L, -3, "uv_messages");
  lua_setfield(L, -2, "uv_errno");
  return 1;
}
