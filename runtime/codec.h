/* The IPC channel's binary codec (runtime/ipc.c), shared with the modules
 * that store Lua values as bytes (runtime/shared.c). The format is the
 * channel's: numbers round-trip bit for bit; the values are those lua-cjson
 * encodes (no functions, cycles, sparse or mixed tables, NaN or infinity). */
#ifndef LC_CODEC_H
#define LC_CODEC_H

#include <stddef.h>
#include <lua.h>

/* Encodes the value at idx. Returns malloc'd bytes (the caller frees them)
 * and their length in *len, or NULL when the value cannot be encoded. Raises
 * nothing. */
char *lc_codec_encode(lua_State *L, int idx, size_t *len);

/* Decodes n bytes at p and pushes the value. Returns 1, or 0 (nothing
 * pushed) when the bytes are not exactly one encoded value. */
int lc_codec_decode(lua_State *L, const char *p, size_t n);

#endif
