/* `_ipc`: the socket syscalls the cluster plumbing needs and libuv 1.44
 * does not offer: a listening socket made with an immediate bind (libuv
 * defers EADDRINUSE to listen) and optional SO_REUSEPORT, and close-on-exec
 * for the inherited IPC channel. */
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include "lc.h"

/* _ipc.socket(host, port, backlog, reuseport, listen) -> fd, port
 * Makes a TCP socket bound to host:port (host nil: "::" with a fallback to
 * 0.0.0.0 where IPv6 is off), with SO_REUSEADDR and, when asked,
 * SO_REUSEPORT; listens when `listen` is true. Returns the fd (close-on-exec,
 * blocking mode untouched) and the bound port, or nil, message, code. */
static int ipc_socket(lua_State *L) {
  const char *host = luaL_optstring(L, 1, NULL);
  int port = (int)luaL_checkinteger(L, 2);
  int backlog = (int)luaL_optinteger(L, 3, 511);
  int reuseport = lua_toboolean(L, 4);
  int dolisten = lua_toboolean(L, 5);
  struct sockaddr_storage ss;
  socklen_t len;
  int fd, on = 1, rc;

  luaL_argcheck(L, port >= 0 && port <= 65535, 2, "port out of range");
  memset(&ss, 0, sizeof(ss));
  if (host == NULL) {
    rc = uv_ip6_addr("::", port, (struct sockaddr_in6 *)&ss);
  } else if ((rc = uv_ip4_addr(host, port, (struct sockaddr_in *)&ss)) != 0) {
    rc = uv_ip6_addr(host, port, (struct sockaddr_in6 *)&ss);
  }
  if (rc != 0)
    return lc_push_uverr(L, rc);

  fd = socket(ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0 && host == NULL && errno == EAFNOSUPPORT) {
    uv_ip4_addr("0.0.0.0", port, (struct sockaddr_in *)&ss);
    fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  }
  if (fd < 0)
    return lc_push_uverr(L, uv_translate_sys_error(errno));
  setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &on, sizeof(on));
  if (reuseport &&
      setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &on, sizeof(on)) != 0)
    goto fail;
  len = ss.ss_family == AF_INET6 ? sizeof(struct sockaddr_in6)
                                 : sizeof(struct sockaddr_in);
  if (bind(fd, (struct sockaddr *)&ss, len) != 0)
    goto fail;
  if (dolisten && listen(fd, backlog) != 0)
    goto fail;
  len = sizeof(ss);
  if (getsockname(fd, (struct sockaddr *)&ss, &len) != 0)
    goto fail;
  lua_pushinteger(L, fd);
  lua_pushinteger(L, ntohs(ss.ss_family == AF_INET6
                               ? ((struct sockaddr_in6 *)&ss)->sin6_port
                               : ((struct sockaddr_in *)&ss)->sin_port));
  return 2;

fail:
  rc = uv_translate_sys_error(errno);
  close(fd);
  return lc_push_uverr(L, rc);
}

/* _ipc.cloexec(fd): keeps fd from leaking into programs this process
 * spawns (a worker's channel must close when the worker dies). */
static int ipc_cloexec(lua_State *L) {
  int fd = (int)luaL_checkinteger(L, 1);
  int flags = fcntl(fd, F_GETFD);
  if (flags < 0 || fcntl(fd, F_SETFD, flags | FD_CLOEXEC) < 0)
    return lc_push_uverr(L, uv_translate_sys_error(errno));
  lua_pushboolean(L, 1);
  return 1;
}

/* ---- Message encoding ---------------------------------------------------
 * JSON for the IPC channel, written here rather than with lua-cjson for two
 * reasons: numbers must round-trip exactly (cjson stops at 14 significant
 * digits; pi and 1/3 need 17), and a table with both array and hash parts
 * must be refused, not re-keyed. Decoding stays with cjson (strtod reads 17
 * digits exactly). On failure the encoder only says "no": the Lua side
 * walks the value again to name what and where (cluster/utils.lua). */

typedef struct {
  char *data;
  size_t len, cap;
} ipc_buf;

#define IPC_MAX_DEPTH 1000

static void buf_grow(ipc_buf *b, size_t need) {
  size_t cap = b->cap ? b->cap : 256;
  char *p;
  while (cap < b->len + need)
    cap *= 2;
  p = realloc(b->data, cap);
  if (p == NULL)
    abort();
  b->data = p;
  b->cap = cap;
}

static void buf_add(ipc_buf *b, const char *s, size_t n) {
  if (b->len + n > b->cap)
    buf_grow(b, n);
  memcpy(b->data + b->len, s, n);
  b->len += n;
}

static void buf_char(ipc_buf *b, char c) {
  if (b->len + 1 > b->cap)
    buf_grow(b, 1);
  b->data[b->len++] = c;
}

static void enc_string(ipc_buf *b, const char *s, size_t n) {
  static const char hex[] = "0123456789abcdef";
  size_t i, start = 0;
  buf_char(b, '"');
  for (i = 0; i < n; i++) {
    unsigned char c = (unsigned char)s[i];
    if (c >= 0x20 && c != '"' && c != '\\')
      continue;
    buf_add(b, s + start, i - start);
    start = i + 1;
    switch (c) {
    case '"': buf_add(b, "\\\"", 2); break;
    case '\\': buf_add(b, "\\\\", 2); break;
    case '\n': buf_add(b, "\\n", 2); break;
    case '\r': buf_add(b, "\\r", 2); break;
    case '\t': buf_add(b, "\\t", 2); break;
    default: {
      char u[6] = {'\\', 'u', '0', '0', hex[c >> 4], hex[c & 15]};
      buf_add(b, u, 6);
    }
    }
  }
  buf_add(b, s + start, n - start);
  buf_char(b, '"');
}

/* The shortest of %.15g, %.16g, %.17g that reads back as the same double. */
static int enc_number(ipc_buf *b, double d) {
  char tmp[32];
  int n, p;
  if (!isfinite(d))
    return 0;
  if (d == floor(d) && fabs(d) < 9007199254740992.0) {
    n = snprintf(tmp, sizeof(tmp), "%.0f", d);
  } else {
    for (p = 15; p <= 17; p++) {
      n = snprintf(tmp, sizeof(tmp), "%.*g", p, d);
      if (strtod(tmp, NULL) == d)
        break;
    }
  }
  buf_add(b, tmp, (size_t)n);
  return 1;
}

/* Encodes the value at idx; returns 0 when it cannot be sent. */
static int enc_value(lua_State *L, ipc_buf *b, int idx, int depth) {
  switch (lua_type(L, idx)) {
  case LUA_TSTRING: {
    size_t n;
    const char *s = lua_tolstring(L, idx, &n);
    enc_string(b, s, n);
    return 1;
  }
  case LUA_TNUMBER:
    return enc_number(b, lua_tonumber(L, idx));
  case LUA_TBOOLEAN:
    if (lua_toboolean(L, idx))
      buf_add(b, "true", 4);
    else
      buf_add(b, "false", 5);
    return 1;
  case LUA_TLIGHTUSERDATA:
    /* cjson.null */
    if (lua_touserdata(L, idx) != NULL)
      return 0;
    buf_add(b, "null", 4);
    return 1;
  case LUA_TTABLE: {
    size_t n = lua_objlen(L, idx), count = 0, i;
    int strings = 0, others = 0, ok = 1;
    if (depth >= IPC_MAX_DEPTH || !lua_checkstack(L, 4))
      return 0;
    if (idx < 0)
      idx = lua_gettop(L) + idx + 1;
    lua_pushnil(L);
    while (lua_next(L, idx)) {
      count++;
      if (lua_type(L, -2) == LUA_TSTRING) {
        strings++;
      } else if (lua_type(L, -2) == LUA_TNUMBER) {
        double k = lua_tonumber(L, -2);
        if (k != floor(k) || k < 1 || k > (double)n)
          others++;
      } else {
        others++;
      }
      lua_pop(L, 1);
    }
    /* A sequence 1..n, or string keys only; anything else is refused. */
    if (others || (strings && n > 0) || (n > 0 && count != n))
      return 0;
    if (n > 0) {
      buf_char(b, '[');
      for (i = 1; ok && i <= n; i++) {
        if (i > 1)
          buf_char(b, ',');
        lua_rawgeti(L, idx, (int)i);
        ok = enc_value(L, b, -1, depth + 1);
        lua_pop(L, 1);
      }
      buf_char(b, ']');
      return ok;
    }
    buf_char(b, '{');
    i = 0;
    lua_pushnil(L);
    while (lua_next(L, idx)) {
      size_t kn;
      const char *k = lua_tolstring(L, -2, &kn);
      if (i++ > 0)
        buf_char(b, ',');
      enc_string(b, k, kn);
      buf_char(b, ':');
      if (!enc_value(L, b, -1, depth + 1)) {
        lua_pop(L, 2);
        return 0;
      }
      lua_pop(L, 1);
    }
    buf_char(b, '}');
    return 1;
  }
  default:
    return 0;
  }
}

static const char ipc_buf_key = 'b';

static int buf_gc(lua_State *L) {
  ipc_buf *b = (ipc_buf *)lua_touserdata(L, 1);
  free(b->data);
  b->data = NULL;
  return 0;
}

/* The encoder's buffer: owned by the state (freed by __gc), reused. */
static ipc_buf *get_buf(lua_State *L) {
  ipc_buf *b;
  lua_pushlightuserdata(L, (void *)&ipc_buf_key);
  lua_rawget(L, LUA_REGISTRYINDEX);
  b = (ipc_buf *)lua_touserdata(L, -1);
  lua_pop(L, 1);
  if (b == NULL) {
    lua_pushlightuserdata(L, (void *)&ipc_buf_key);
    b = (ipc_buf *)lua_newuserdata(L, sizeof(*b));
    memset(b, 0, sizeof(*b));
    lua_createtable(L, 0, 1);
    lua_pushcfunction(L, buf_gc);
    lua_setfield(L, -2, "__gc");
    lua_setmetatable(L, -2);
    lua_rawset(L, LUA_REGISTRYINDEX);
  }
  return b;
}

/* _ipc.encode(value[, prefix]) -> prefix .. json .. "\n", or nil when the
 * value cannot be sent. */
static int ipc_encode(lua_State *L) {
  ipc_buf *b = get_buf(L);
  size_t pn = 0;
  const char *prefix = luaL_optlstring(L, 2, NULL, &pn);
  lua_settop(L, 1);
  b->len = 0;
  if (prefix)
    buf_add(b, prefix, pn);
  if (lua_isnil(L, 1) || !enc_value(L, b, 1, 0)) {
    lua_pushnil(L);
    return 1;
  }
  buf_char(b, '\n');
  lua_pushlstring(L, b->data, b->len);
  /* Do not keep a huge buffer around after a large message. */
  if (b->cap > (1u << 20)) {
    free(b->data);
    b->data = NULL;
    b->cap = 0;
  }
  return 1;
}

/* _ipc.close(fd) */
static int ipc_close(lua_State *L) {
  close((int)luaL_checkinteger(L, 1));
  return 0;
}

int luaopen_lc_ipc(lua_State *L) {
  static const luaL_Reg fns[] = {
    {"socket", ipc_socket},
    {"cloexec", ipc_cloexec},
    {"close", ipc_close},
    {"encode", ipc_encode},
    {NULL, NULL}};
  lua_newtable(L);
  luaL_register(L, NULL, fns);
  return 1;
}
