/* `_json`: what require('cjson') needs beyond Debian's lua-cjson 2.1.0
 * (lua/internal/cjson.lua): unslash, which turns the '\/' that cjson
 * writes for every '/' back into '/', as JSON.stringify writes it. */
#include <string.h>
#include "lc.h"

/* _json.unslash(json) -> json with each escaped '/' plain; the same
 * string when it has none. Escapes are read in pairs, so the '/' after an
 * escaped backslash ('\\/', never written by cjson) is left alone. */
static int json_unslash(lua_State *L) {
  size_t len, i, from = 0;
  const char *s = luaL_checklstring(L, 1, &len);
  const char *p;
  luaL_Buffer b;
  int copying = 0;
  i = 0;
  while (i + 1 < len) {
    p = (const char *)memchr(s + i, '\\', len - i - 1);
    if (p == NULL)
      break;
    i = (size_t)(p - s);
    if (s[i + 1] == '/') {
      if (!copying) {
        luaL_buffinit(L, &b);
        copying = 1;
      }
      luaL_addlstring(&b, s + from, i - from);
      from = i + 1; /* The '/' starts the next piece. */
    }
    i += 2;
  }
  if (!copying) {
    lua_settop(L, 1);
    return 1;
  }
  luaL_addlstring(&b, s + from, len - from);
  luaL_pushresult(&b);
  return 1;
}

int luaopen_lc_json(lua_State *L) {
  static const luaL_Reg fns[] = {{"unslash", json_unslash}, {NULL, NULL}};
  lua_newtable(L);
  luaL_register(L, NULL, fns);
  return 1;
}
