/* luacluster: the host's shared context and the one way C calls into Lua. */
#ifndef LC_H
#define LC_H

#include <stddef.h>
#include <lua.h>
#include <lauxlib.h>
#include <uv.h>

/* One embedded Lua module: its require name, source path (chunk name) and
 * bytecode. The table lc_lua_modules is generated at build time. */
typedef struct {
  const char *name;
  const char *path;
  const unsigned char *data;
  size_t size;
} lc_module;

extern const lc_module lc_lua_modules[];

/* Output to push out before the process ends at once (process.exit, an
 * uncaught error, a signal it sends itself): what a module has queued for
 * its sockets and libuv has not taken yet. A module embeds one in the
 * object that queues (an http server) and adds it while that lives. fn
 * writes what the sockets take now without blocking and calls no Lua. */
typedef struct lc_flush_hook {
  void (*fn)(struct lc_flush_hook *h);
  struct lc_flush_hook *prev, *next;
} lc_flush_hook;

/* Per-state context, owned by the Lua state (a userdata under a registry
 * key). Every libuv handle of the runtime reaches it through its data. */
typedef struct lc_ctx {
  lua_State *L;
  uv_loop_t *loop;
  int ref_onerror;  /* function(err, traceback): uncaughtException policy. */
  int ref_ontick;   /* function(): drains the nextTick queue. */
  int ref_traceback; /* The error handler of every protected call. */
  int tick_pending; /* set when nextTick queued something. */
  int depth;        /* nesting of lc_pcall; ticks drain at depth 0. */
  lc_flush_hook *flush_hooks; /* See lc_flush_hook. */
} lc_ctx;

lc_ctx *lc_get(lua_State *L);

/* Adds or removes a flush hook; lc_flush runs every one (the exit path
 * does, and _lc.flush()). */
void lc_flush_add(lc_ctx *ctx, lc_flush_hook *h);
void lc_flush_remove(lc_ctx *ctx, lc_flush_hook *h);
void lc_flush(lc_ctx *ctx);

/* Calls the function below nargs arguments on the stack, protected, with a
 * traceback. On error the error goes to process' policy (uncaughtException
 * or traceback and exit 1) and nothing is left on the stack. After the
 * outermost call the nextTick queue is drained. Returns 0 on success (with
 * nresults pushed) or the Lua error code. */
int lc_pcall(lua_State *L, int nargs, int nresults);

/* For C that calls Lua from inside a library that must not be unwound (a
 * parser's callback): calls the function below nargs arguments protected,
 * with the traceback handler, and reports nothing. Returns 0 (nresults
 * pushed) or the Lua error code (the error pushed). */
int lc_pcall_catch(lua_State *L, int nargs, int nresults);

/* Raises the value on the stack top again, once the library has returned:
 * the traceback of its first raise (lc_pcall_catch) is the one reported.
 * Does not return. */
int lc_reraise(lua_State *L);

/* Opens the runtime in L and pushes the init module and init.main (in
 * protected mode: raises on failure). Stack: +2. */
void lc_open(lua_State *L);

/* luv's callback hook: lc_pcall's policy for the `uv` module's callbacks. */
int lc_luv_pcall(lua_State *L, int nargs, int nresults, int flags);

/* Registers the embedded modules and the C modules in package.preload.
 * With LUACLUSTER_LUA_DIR set, Lua modules are loaded from that folder. */
void lc_preload(lua_State *L);

/* C modules. */
int luaopen_lc_core(lua_State *L);
int luaopen_lc_ipc(lua_State *L);
int luaopen_lc_http(lua_State *L);
int luaopen_lc_ws(lua_State *L);

/* _lc.interruptible(on): SIGINT interrupts the running Lua code with an
 * error while on (the REPL; runtime/interrupt.c). */
int lc__interruptible(lua_State *L);

/* Pushes nil, message, code (luv's convention for operational errors). */
int lc_push_uverr(lua_State *L, int err);

#endif
