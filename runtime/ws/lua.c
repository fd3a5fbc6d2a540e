/* The `_ws` module: what lua/websocket/ needs of the frame codec outside a
 * server's connection (whose frames runtime/http/upgrade.c parses and
 * builds in place):
 *   _ws.frame(op, data[, mask[, fin]]) -> the frame as a string (a client's
 *     frames are masked with a random key; a broadcast's frame is built
 *     once and written to each connection)
 *   _ws.parser(client, maxPayload) -> a parser; p:feed(bytes) -> a list
 *     {op1, data1, op2, data2, ...} of what completed, or nil, reason, code
 *     on a protocol error
 *   _ws.accept(key) -> Sec-WebSocket-Accept for a Sec-WebSocket-Key
 *   _ws.random(n) -> n random bytes
 *   _ws.utf8(s) -> whether s is UTF-8
 *   _ws.check_close(payload) -> 0, or the code a close payload fails with */
#include <stdlib.h>
#include <string.h>
/* SHA-1's low-level calls are deprecated in OpenSSL 3 for new designs;
 * the handshake's key is SHA-1 by definition, and these link in alone
 * (the EVP path would pull in the provider machinery). */
#define OPENSSL_SUPPRESS_DEPRECATED
#include <openssl/sha.h>
#include "lc.h"
#include "ws.h"

#define PARSER_MT "lc.ws.parser"
#define WS_GUID "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

/* Random bytes for mask keys come from a pool, refilled from the kernel
 * (one getrandom per 1,024 frames). Per process, as the kernel's own. */
static unsigned char pool[4096];
static size_t pool_at = sizeof(pool);

static int random_bytes(unsigned char *out, size_t n) {
  while (n > 0) {
    size_t k;
    if (pool_at == sizeof(pool)) {
      if (uv_random(NULL, NULL, pool, sizeof(pool), 0, NULL) != 0)
        return -1;
      pool_at = 0;
    }
    k = sizeof(pool) - pool_at;
    if (k > n)
      k = n;
    memcpy(out, pool + pool_at, k);
    pool_at += k;
    out += k;
    n -= k;
  }
  return 0;
}

static int ws_random(lua_State *L) {
  lua_Integer n = luaL_checkinteger(L, 1);
  unsigned char *b;
  luaL_argcheck(L, n >= 0 && n <= 65536, 1, "0 to 65536 bytes");
  b = (unsigned char *)lua_newuserdata(L, (size_t)n + 1);
  if (random_bytes(b, (size_t)n) != 0)
    return luaL_error(L, "no random bytes");
  lua_pushlstring(L, (const char *)b, (size_t)n);
  return 1;
}

static int ws_frame(lua_State *L) {
  int op = (int)luaL_checkinteger(L, 1);
  size_t len;
  const char *data = luaL_optlstring(L, 2, "", &len);
  int mask = lua_toboolean(L, 3);
  int fin = lua_isnoneornil(L, 4) || lua_toboolean(L, 4);
  unsigned char key[4], *out;
  size_t hl;
  luaL_argcheck(L, op >= 0 && op <= 15, 1, "invalid opcode");
  out = (unsigned char *)lua_newuserdata(L, 14 + len);
  if (mask && random_bytes(key, 4) != 0)
    return luaL_error(L, "no random bytes");
  hl = lc__ws_header(out, op, fin, len, mask ? key : NULL);
  memcpy(out + hl, data, len);
  if (mask)
    lc__ws_mask(out + hl, len, key);
  lua_pushlstring(L, (const char *)out, hl + len);
  return 1;
}

static int ws_accept(lua_State *L) {
  static const char b64[] =
      "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  size_t len, i, o = 0;
  const char *key = luaL_checklstring(L, 1, &len);
  unsigned char md[SHA_DIGEST_LENGTH];
  char out[32];
  SHA_CTX ctx;
  SHA1_Init(&ctx);
  SHA1_Update(&ctx, key, len);
  SHA1_Update(&ctx, WS_GUID, sizeof(WS_GUID) - 1);
  SHA1_Final(md, &ctx);
  /* 20 bytes: six groups of three, then two bytes and one '='. */
  for (i = 0; i + 3 <= 18; i += 3) {
    uint32_t v =
        ((uint32_t)md[i] << 16) | ((uint32_t)md[i + 1] << 8) | md[i + 2];
    out[o++] = b64[v >> 18];
    out[o++] = b64[(v >> 12) & 63];
    out[o++] = b64[(v >> 6) & 63];
    out[o++] = b64[v & 63];
  }
  {
    uint32_t v = ((uint32_t)md[18] << 16) | ((uint32_t)md[19] << 8);
    out[o++] = b64[v >> 18];
    out[o++] = b64[(v >> 12) & 63];
    out[o++] = b64[(v >> 6) & 63];
    out[o++] = '=';
  }
  lua_pushlstring(L, out, o);
  return 1;
}

static int ws_utf8(lua_State *L) {
  size_t len;
  const char *s = luaL_checklstring(L, 1, &len);
  lua_pushboolean(L, lc__ws_utf8((const unsigned char *)s, len));
  return 1;
}

static int ws_check_close(lua_State *L) {
  size_t len;
  const char *s = luaL_checklstring(L, 1, &len);
  lua_pushinteger(L, lc__ws_check_close((const unsigned char *)s, len));
  return 1;
}

/* ---- The parser object. ---- */

typedef struct {
  ws_parser p;
  lua_State *L; /* During a feed: the caller's state, the list on top. */
  int n;
  int err_code;
  const char *err_reason;
} parser_box;

static int collect_msg(void *ud, int op, const char *data, size_t len) {
  parser_box *b = (parser_box *)ud;
  lua_pushinteger(b->L, op);
  lua_rawseti(b->L, -2, ++b->n);
  lua_pushlstring(b->L, data, len);
  lua_rawseti(b->L, -2, ++b->n);
  return 0;
}

static void collect_err(void *ud, int code, const char *reason) {
  parser_box *b = (parser_box *)ud;
  b->err_code = code;
  b->err_reason = reason;
}

static parser_box *check_parser(lua_State *L) {
  return (parser_box *)luaL_checkudata(L, 1, PARSER_MT);
}

static int parser_feed(lua_State *L) {
  parser_box *b = check_parser(L);
  size_t len;
  const char *data = luaL_checklstring(L, 2, &len);
  if (b->p.failed) {
    lua_pushnil(L);
    lua_pushstring(L, "parser failed before");
    lua_pushinteger(L, WS_PROTOCOL_ERROR);
    return 3;
  }
  lua_settop(L, 2);
  lua_newtable(L);
  b->L = L;
  b->n = 0;
  /* The bytes are copied into the parser (a Lua string is not written). */
  if (lc__ws_feed(&b->p, (char *)data, len, 1, collect_msg, collect_err, b) <
          0 &&
      b->err_code) {
    lua_pushnil(L);
    lua_pushstring(L, b->err_reason);
    lua_pushinteger(L, b->err_code);
    return 3;
  }
  return 1;
}

static int parser_gc(lua_State *L) {
  parser_box *b = check_parser(L);
  lc__ws_parser_free(&b->p);
  return 0;
}

/* p:frame(op, data[, fin[, compress]]) -> a client's frame (masked),
 * deflated with the parser's permessage-deflate state when compress. */
static int parser_frame(lua_State *L) {
  parser_box *b = check_parser(L);
  int op = (int)luaL_checkinteger(L, 2);
  size_t len;
  const char *data = luaL_optlstring(L, 3, "", &len);
  int fin = lua_isnoneornil(L, 4) || lua_toboolean(L, 4);
  int compress = lua_toboolean(L, 5) && fin && b->p.z;
  unsigned char key[4], *out;
  size_t hl;
  lc_buf z = {NULL, 0, 0};
  luaL_argcheck(L, op >= 0 && op <= 15, 2, "invalid opcode");
  if (random_bytes(key, 4) != 0)
    return luaL_error(L, "no random bytes");
  if (compress) {
    /* Copied into Lua's memory before anything may raise. */
    int r = lc__ws_deflate(b->p.z, data, len, &z);
    char *copy = (char *)lua_newuserdata(L, z.len + 1);
    if (z.len)
      memcpy(copy, z.base, z.len);
    len = z.len;
    buf_free(&z);
    if (r != 0)
      return luaL_error(L, "deflate failed");
    data = copy;
  }
  out = (unsigned char *)lua_newuserdata(L, 14 + len);
  hl = lc__ws_header(out, op, fin, len, key);
  if (compress)
    out[0] |= 0x40;
  if (len)
    memcpy(out + hl, data, len);
  lc__ws_mask(out + hl, len, key);
  lua_pushlstring(L, (const char *)out, hl + len);
  return 1;
}

/* _ws.parser(client, maxPayload[, bits, ourReset, peerReset]): with bits,
 * permessage-deflate was agreed (as ws_start's). */
static int ws_parser_new(lua_State *L) {
  int client = lua_toboolean(L, 1);
  lua_Number max = luaL_optnumber(L, 2, 0);
  int bits = (int)luaL_optinteger(L, 3, 0);
  parser_box *b;
  luaL_argcheck(L, max >= 0, 2, "maxPayload must not be negative");
  b = (parser_box *)lua_newuserdata(L, sizeof(*b));
  memset(b, 0, sizeof(*b));
  lc__ws_parser_init(&b->p, client, (size_t)max);
  if (bits) {
    b->p.z = lc__ws_deflate_new(bits, lua_toboolean(L, 4), lua_toboolean(L, 5));
    if (b->p.z == NULL)
      return luaL_error(L, "out of memory");
  }
  luaL_getmetatable(L, PARSER_MT);
  lua_setmetatable(L, -2);
  return 1;
}

int luaopen_lc_ws(lua_State *L) {
  static const luaL_Reg fns[] = {
      {"frame", ws_frame},   {"parser", ws_parser_new},
      {"accept", ws_accept}, {"random", ws_random},
      {"utf8", ws_utf8},     {"check_close", ws_check_close},
      {NULL, NULL}};
  luaL_newmetatable(L, PARSER_MT);
  lua_pushcfunction(L, parser_feed);
  lua_setfield(L, -2, "feed");
  lua_pushcfunction(L, parser_frame);
  lua_setfield(L, -2, "frame");
  lua_pushvalue(L, -1);
  lua_setfield(L, -2, "__index");
  lua_pushcfunction(L, parser_gc);
  lua_setfield(L, -2, "__gc");
  lua_pop(L, 1);
  lua_newtable(L);
  luaL_register(L, NULL, fns);
#define XX(name)                                                               \
  lua_pushinteger(L, WS_##name);                                               \
  lua_setfield(L, -2, #name);
  XX(CONT)
  XX(TEXT) XX(BINARY) XX(CLOSE) XX(PING) XX(PONG)
#undef XX
      return 1;
}
