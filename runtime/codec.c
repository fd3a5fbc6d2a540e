/* The binary codec of Lua values: the IPC channel's message format
 * (runtime/ipc.c), also how the shared dict stores tables (runtime/shdict).
 * Numbers round-trip bit for bit (cjson could not keep 17 digits); decoding
 * builds each table at its final size. */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include "codec.h"

#define CODEC_MAX_DEPTH 1000

/* The format: 'T' true, 'F' false, 'z' null (cjson.null), 'i' int32, 'd' double
 * (8 bytes), 's' u32 length + bytes, 'a' u32 n + n values (a sequence 1..n),
 * 'o' u32 n + n (string key, value) pairs. The values are those lua-cjson
 * encodes; a table with both array and hash parts, a sparse array, NaN or
 * infinity, functions, threads and userdata are refused (the encoder only
 * says no; cluster/utils.lua names what and where). */

static int enc_value(lua_State *L, lc_buf *b, int idx, int depth);

static void enc_str(lc_buf *b, const char *s, size_t n) {
  buf_byte(b, 's');
  buf_u32le(b, (uint32_t)n);
  buf_add(b, s, n);
}

/* A table without a sequence part: one pass, string keys only. */
static int enc_object(lua_State *L, lc_buf *b, int idx, int depth) {
  size_t at, count = 0;
  buf_byte(b, 'o');
  at = b->len;
  buf_u32le(b, 0);
  lua_pushnil(L);
  while (lua_next(L, idx)) {
    size_t kn;
    const char *k;
    if (lua_type(L, -2) != LUA_TSTRING) {
      lua_pop(L, 2);
      return 0;
    }
    k = lua_tolstring(L, -2, &kn);
    enc_str(b, k, kn);
    if (!enc_value(L, b, lua_gettop(L), depth + 1)) {
      lua_pop(L, 2);
      return 0;
    }
    lua_pop(L, 1);
    count++;
  }
  lc_set_u32le(b->base + at, (uint32_t)count);
  return 1;
}

static int enc_table(lua_State *L, lc_buf *b, int idx, int depth) {
  size_t n = lua_objlen(L, idx), count = 0, i;
  int strings = 0, others = 0;
  if (depth >= CODEC_MAX_DEPTH || !lua_checkstack(L, 4))
    return 0;
  if (n == 0)
    return enc_object(L, b, idx, depth);
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
  if (others || strings || count != n)
    return 0;
  {
    buf_byte(b, 'a');
    buf_u32le(b, (uint32_t)n);
    for (i = 1; i <= n; i++) {
      int ok;
      lua_rawgeti(L, idx, (int)i);
      ok = enc_value(L, b, lua_gettop(L), depth + 1);
      lua_pop(L, 1);
      if (!ok)
        return 0;
    }
    return 1;
  }
}

/* Encodes the value at the absolute index idx; returns 0 when it cannot be
 * sent (the buffer then holds a partial frame the caller drops). */
static int enc_value(lua_State *L, lc_buf *b, int idx, int depth) {
  switch (lua_type(L, idx)) {
  case LUA_TSTRING: {
    size_t n;
    const char *s = lua_tolstring(L, idx, &n);
    enc_str(b, s, n);
    return 1;
  }
  case LUA_TNUMBER: {
    double d = lua_tonumber(L, idx);
    if (!isfinite(d))
      return 0;
    if (d == (double)(int32_t)d && !(d == 0 && signbit(d))) {
      buf_byte(b, 'i');
      buf_u32le(b, (uint32_t)(int32_t)d);
    } else {
      buf_byte(b, 'd');
      buf_add(b, &d, sizeof(d));
    }
    return 1;
  }
  case LUA_TBOOLEAN:
    buf_byte(b, lua_toboolean(L, idx) ? 'T' : 'F');
    return 1;
  case LUA_TLIGHTUSERDATA:
    if (lua_touserdata(L, idx) != NULL)
      return 0;
    buf_byte(b, 'z');
    return 1;
  case LUA_TTABLE:
    return enc_table(L, b, idx, depth);
  default:
    return 0;
  }
}

typedef struct {
  const char *p, *end;
} codec_cursor;

/* Decodes one value onto the stack; returns 0 on malformed input (the
 * stack is then left as it was). */
static int dec_value(lua_State *L, codec_cursor *c, int depth) {
  char tag;
  uint32_t n, i;
  /* Room on the stack: a scalar takes the slot its caller made sure of; a
   * table checks for its key and value below. */
  if (c->p >= c->end || depth >= CODEC_MAX_DEPTH)
    return 0;
  tag = *c->p++;
  switch (tag) {
  case 'T':
  case 'F':
    lua_pushboolean(L, tag == 'T');
    return 1;
  case 'z':
    lua_pushlightuserdata(L, NULL);
    return 1;
  case 'i':
    if (c->end - c->p < 4)
      return 0;
    lua_pushnumber(L, (lua_Number)(int32_t)lc_get_u32le(c->p));
    c->p += 4;
    return 1;
  case 'd': {
    double d;
    if (c->end - c->p < 8)
      return 0;
    memcpy(&d, c->p, 8);
    c->p += 8;
    lua_pushnumber(L, d);
    return 1;
  }
  case 's':
    if (c->end - c->p < 4)
      return 0;
    n = lc_get_u32le(c->p);
    c->p += 4;
    if ((size_t)(c->end - c->p) < n)
      return 0;
    lua_pushlstring(L, c->p, n);
    c->p += n;
    return 1;
  case 'a':
  case 'o':
    if (c->end - c->p < 4)
      return 0;
    n = lc_get_u32le(c->p);
    c->p += 4;
    /* Each element takes a byte at least: bounds n before allocating. */
    if ((size_t)(c->end - c->p) < n || !lua_checkstack(L, 4))
      return 0;
    if (tag == 'a') {
      lua_createtable(L, (int)n, 0);
      for (i = 1; i <= n; i++) {
        if (!dec_value(L, c, depth + 1)) {
          lua_pop(L, 1);
          return 0;
        }
        lua_rawseti(L, -2, (int)i);
      }
    } else {
      lua_createtable(L, 0, (int)n);
      for (i = 0; i < n; i++) {
        if (c->p >= c->end || *c->p != 's' || !dec_value(L, c, depth + 1)) {
          lua_pop(L, 1);
          return 0;
        }
        if (!dec_value(L, c, depth + 1)) {
          lua_pop(L, 2);
          return 0;
        }
        lua_rawset(L, -3);
      }
    }
    return 1;
  default:
    return 0;
  }
}

int lc_codec_put(lua_State *L, lc_buf *b, int idx) {
  size_t start = b->len;
  int top = lua_gettop(L);
  if (idx < 0)
    idx = top + idx + 1;
  if (!enc_value(L, b, idx, 0)) {
    lua_settop(L, top);
    b->len = start;
    return 0;
  }
  return 1;
}

size_t lc_codec_get(lua_State *L, const char *p, const char *end) {
  codec_cursor c;
  c.p = p;
  c.end = end;
  if (!lua_checkstack(L, 2) || !dec_value(L, &c, 0))
    return 0;
  return (size_t)(c.p - p);
}

char *lc_codec_encode(lua_State *L, int idx, size_t *len) {
  lc_buf b = {NULL, 0, 0};
  if (!lc_codec_put(L, &b, idx)) {
    free(b.base);
    return NULL;
  }
  *len = b.len;
  return b.base;
}

int lc_codec_decode(lua_State *L, const char *p, size_t n) {
  size_t used = lc_codec_get(L, p, p + n);
  if (used == 0)
    return 0;
  if (used != n) {
    lua_pop(L, 1);
    return 0;
  }
  return 1;
}
