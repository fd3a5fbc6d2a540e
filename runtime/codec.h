/* luacluster: the binary codec of Lua values (runtime/codec.c): the IPC
 * channel's message format, also how the shared dict stores tables. The
 * values are those lua-cjson encodes (no functions, cycles, sparse or mixed
 * tables, NaN or infinity); numbers round-trip bit for bit. */
#ifndef LC_CODEC_H
#define LC_CODEC_H

#include <stddef.h>
#include <lua.h>
#include "buf.h"

/* Appends the value at idx to b. Returns 1, or 0 (b and the stack as they
 * were) when the value cannot be encoded. Raises nothing. */
int lc_codec_put(lua_State *L, lc_buf *b, int idx);

/* Decodes one value from the bytes at [p, end) and pushes it. Returns how
 * many bytes it took, or 0 (nothing pushed) when they are malformed. */
size_t lc_codec_get(lua_State *L, const char *p, const char *end);

/* Encodes the value at idx. Returns malloc'd bytes (the caller frees them)
 * and their length in *len, or NULL when the value cannot be encoded. Raises
 * nothing. */
char *lc_codec_encode(lua_State *L, int idx, size_t *len);

/* Decodes n bytes at p and pushes the value. Returns 1, or 0 (nothing
 * pushed) when the bytes are not exactly one encoded value. */
int lc_codec_decode(lua_State *L, const char *p, size_t n);

#endif
