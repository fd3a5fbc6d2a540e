/* package.preload: the embedded Lua modules and the C modules. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <lualib.h>
#include <luv.h>
#include <lua-cjson.h>
#include "lc.h"

int luaopen_cjson_safe(lua_State *L);
int luaopen_lc_tcp(lua_State *L);
int luaopen_lc_unix(lua_State *L);
int luaopen_lc_shared(lua_State *L);
int luaopen_lc_systemd(lua_State *L);
int luaopen_lc_json(lua_State *L);
int luaopen_lc_pg(lua_State *L);
int luaopen_lc_tls(lua_State *L);

/* Loader for an embedded module; upvalue 1 is its lc_module. With
 * LUACLUSTER_LUA_DIR set, the file of the same path is loaded from there
 * instead, so developers edit lua/ without rebuilding. */
static int load_embedded(lua_State *L) {
  const lc_module *m = (const lc_module *)lua_touserdata(L,
                                                         lua_upvalueindex(1));
  const char *dir = getenv("LUACLUSTER_LUA_DIR");
  int rc;
  if (dir != NULL && *dir != '\0') {
    /* m->path is "lua/<name>.lua"; the folder replaces "lua". */
    lua_pushfstring(L, "%s/%s", dir, m->path + 4);
    rc = luaL_loadfile(L, lua_tostring(L, -1));
    lua_remove(L, -2);
  } else {
    rc = luaL_loadbuffer(L, (const char *)m->data, m->size, m->path);
  }
  if (rc != 0)
    return lua_error(L);
  lua_pushvalue(L, 1);
  lua_call(L, 1, 1);
  return 1;
}

/* Loader for the `json` alias of cjson. */
static int load_json(lua_State *L) {
  lua_getglobal(L, "require");
  lua_pushliteral(L, "cjson");
  lua_call(L, 1, 1);
  return 1;
}

/* uv.walk would hand luv the runtime's own handles (http, ipc), whose data
 * is not luv's: it refuses instead of crashing. */
static int uv_walk_refused(lua_State *L) {
  return luaL_error(L, "uv.walk is not available in luacluster: the "
                       "runtime's own handles are not luv handles");
}

/* Loader for `uv` (and `luv`): luv on the runtime's loop, minus walk. */
static int load_uv(lua_State *L) {
  luaopen_luv(L);
  lua_pushcfunction(L, uv_walk_refused);
  lua_setfield(L, -2, "walk");
  return 1;
}

void lc_preload(lua_State *L) {
  static const luaL_Reg cmods[] = {
    {"uv", load_uv},
    {"luv", load_uv},
    {"cjson", luaopen_cjson},
    {"cjson.safe", luaopen_cjson_safe},
    {"json", load_json},
    {"_lc", luaopen_lc_core},
    {"_http", luaopen_lc_http},
    {"_ws", luaopen_lc_ws},
    {"_tcp", luaopen_lc_tcp},
    {"_unix", luaopen_lc_unix},
    {"_ipc", luaopen_lc_ipc},
    {"_shared", luaopen_lc_shared},
    {"_systemd", luaopen_lc_systemd},
    {"_json", luaopen_lc_json},
    {"_pg", luaopen_lc_pg},
    {"_tls", luaopen_lc_tls},
    {NULL, NULL}};
  const lc_module *m;
  const luaL_Reg *r;
  lua_getglobal(L, "package");
  lua_getfield(L, -1, "preload");
  for (r = cmods; r->name; r++) {
    lua_pushcfunction(L, r->func);
    lua_setfield(L, -2, r->name);
  }
  for (m = lc_lua_modules; m->name; m++) {
    lua_pushlightuserdata(L, (void *)m);
    lua_pushcclosure(L, load_embedded, 1);
    lua_setfield(L, -2, m->name);
  }
  lua_pop(L, 2);
}
