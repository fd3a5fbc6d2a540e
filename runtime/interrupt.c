/* Ctrl-C for the REPL (lua/repl.lua): while the code typed at the prompt
 * runs, SIGINT interrupts it with an error instead of ending the process,
 * as Node's REPL does, and the prompt comes back.
 *
 * The handler sets a hook (lua_sethook is safe to call from a signal
 * handler, as lua.c does) that raises "interrupted" at the next call,
 * return or instruction the interpreter runs. The hook belongs to the
 * global state, so the handler reaches it through the state that turned
 * the interruption on, held in the registry meanwhile: a signal handler
 * has no other way to a state. Compiled code runs no hooks: the REPL turns
 * the JIT off while the typed code runs. A second Ctrl-C before the hook
 * ran (code stuck in a C call) ends the process, as SIGINT does. */
#include <signal.h>
#include <string.h>
#include <lauxlib.h>
#include "lc.h"

static lua_State *volatile interrupt_L;
static volatile sig_atomic_t pending;
static int interrupt_ref = LUA_NOREF;
static struct sigaction previous;

static void on_hook(lua_State *L, lua_Debug *ar) {
  (void)ar;
  pending = 0;
  lua_sethook(L, NULL, 0, 0);
  luaL_error(L, "interrupted (Ctrl-C)");
}

static void on_sigint(int sig) {
  lua_State *L = interrupt_L;
  (void)sig;
  if (pending || L == NULL) {
    /* A second Ctrl-C before the hook ran (the code is inside a C call
     * that does not return): SIGINT ends the process, as by default. */
    signal(SIGINT, SIG_DFL);
    raise(SIGINT);
    return;
  }
  pending = 1;
  lua_sethook(L, on_hook, LUA_MASKCALL | LUA_MASKRET | LUA_MASKCOUNT, 1);
}

/* _lc.interruptible(on): on, SIGINT interrupts the running Lua code; off,
 * SIGINT's handling is what it was before (libuv's, or the default). */
int lc__interruptible(lua_State *L) {
  int on = lua_toboolean(L, 1);
  if (on && interrupt_L == NULL) {
    struct sigaction sa;
    lua_pushthread(L);
    interrupt_ref = luaL_ref(L, LUA_REGISTRYINDEX);
    interrupt_L = L;
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = on_sigint;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, &previous);
  } else if (!on && interrupt_L != NULL) {
    sigaction(SIGINT, &previous, NULL);
    interrupt_L = NULL;
    pending = 0;
    lua_sethook(L, NULL, 0, 0);
    luaL_unref(L, LUA_REGISTRYINDEX, interrupt_ref);
    interrupt_ref = LUA_NOREF;
  }
  return 0;
}
