/* luacluster: runs a Lua script on a libuv loop, the way node runs a file.
 *
 * Start-up is small and protected: C sets up the state, the loop and the
 * preloads, then hands over to lua/init.lua, which reads the command line,
 * installs the globals and runs the script. The loop then runs until
 * nothing is left, and the process exits with process.exitCode. */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <lualib.h>
#include <luv.h>
#include "lc.h"

/* Runs in protected mode: builds the state and calls init.main(argv). */
static int pmain(lua_State *L) {
  char **argv = (char **)lua_touserdata(L, 1);
  int argc = (int)lua_tointeger(L, 2);
  int i;
  lc_open(L);
  lua_createtable(L, argc, 0); /* Stack: init, init.main, argv. */
  for (i = 0; i < argc; i++) {
    lua_pushstring(L, argv[i]);
    lua_rawseti(L, -2, i + 1);
  }
  return 3;
}

int main(int argc, char **argv) {
  lua_State *L;
  lc_ctx *ctx;
  int code = 0;

  argv = uv_setup_args(argc, argv);
  /* Writes to a closed socket or pipe are errors to handle, not deaths. */
  signal(SIGPIPE, SIG_IGN);
  /* Lines reach a pipe or file whole (console writes with one write(2);
   * this covers io.write and print). */
  setvbuf(stdout, NULL, _IOLBF, 1 << 16);

  L = luaL_newstate();
  if (L == NULL) {
    fprintf(stderr, "luacluster: cannot create the Lua state\n");
    return 1;
  }
  ctx = lc_get(L);
  lua_pushcfunction(L, pmain);
  lua_pushlightuserdata(L, argv);
  lua_pushinteger(L, argc);
  if (lua_pcall(L, 2, 3, 0) != 0) {
    const char *msg = lua_tostring(L, -1);
    fprintf(stderr, "luacluster: %s\n", msg ? msg : "start-up failed");
    return 1;
  }
  /* Stack: init, init.main, argv. Run main(argv) under the policy: an error
   * either ends the process there or went to an uncaughtException
   * listener, after which the loop runs as usual. */
  lc_pcall(L, 1, 0);
  /* Stack: init. Run the loop until it is empty; process emits
   * 'beforeExit', whose listeners may schedule more work, as in Node. */
  do {
    uv_run(ctx->loop, UV_RUN_DEFAULT);
    lua_getfield(L, -1, "before_exit");
    lc_pcall(L, 0, 0);
  } while (uv_loop_alive(ctx->loop));

  /* Nothing is left: process emits 'exit' and gives the exit code. */
  lua_getfield(L, -1, "finish");
  if (lc_pcall(L, 0, 1) == 0) {
    code = (int)lua_tointeger(L, -1);
    lua_pop(L, 1);
  }
  fflush(stdout);
  fflush(stderr);
  return code;
}
