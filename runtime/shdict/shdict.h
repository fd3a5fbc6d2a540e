/* luacluster: the shared dict's ABI between C and lua/shared.lua, written
 * once.
 *
 * - The value types, results and store operations: X-macros, turned into
 *   enums here and into fields of the `_shared` module (T_*, E_*, OP_*,
 *   and `errors`, ngx's message for each result) by lua.c.
 * - The hot operations, which lua/shared.lua calls through LuaJIT's FFI (as
 *   lua-resty-core calls nginx's shdict): LC_SHDICT_FFI is both their C
 *   declarations (below) and, stringified, the ffi.cdef (`_shared.cdef`).
 *   The dict is a `void *` there: its layout is C's business alone. */
#ifndef LC_SHDICT_H
#define LC_SHDICT_H

#include <stddef.h>
#include <stdint.h>

/* Value types. */
#define LC_SHDICT_TYPES(XX)                                                   \
  XX(T_NIL, 0) XX(T_FALSE, 1) XX(T_TRUE, 2) XX(T_NUMBER, 3) XX(T_STRING, 4)   \
  XX(T_TABLE, 5)

/* Results of operations, with ngx's message for each failure. */
#define LC_SHDICT_RESULTS(XX)                                                 \
  XX(E_OK, 0, "ok") XX(E_EXISTS, 1, "exists")                                 \
  XX(E_NOT_FOUND, 2, "not found") XX(E_NO_MEMORY, 3, "no memory")             \
  XX(E_NOT_NUMBER, 4, "not a number") XX(E_LOCK, 5, "lock unusable")

/* Store operations: ngx's set, add and replace; OP_SAFE (added to one of
 * them) never evicts. */
#define LC_SHDICT_OPS(XX)                                                     \
  XX(OP_SET, 0) XX(OP_ADD, 1) XX(OP_REPLACE, 2) XX(OP_SAFE, 4)

enum {
#define XX(name, num) name = num,
  LC_SHDICT_TYPES(XX) LC_SHDICT_OPS(XX)
#undef XX
#define XX(name, num, msg) name = num,
  LC_SHDICT_RESULTS(XX)
#undef XX
};

/* lc_shval: a value read or the outcome of a store. num: a number's value,
 * incr's result, ttl's seconds; str/len: a string's or table's bytes (the
 * dict's scratch, valid until its next call); flags: ngx's user flags;
 * forcible: a store evicted items that had not expired; stale: get_stale's
 * value has expired. The functions are described in ffi.c. */
#define LC_SHDICT_FFI                                                         \
  typedef struct lc_shval {                                                   \
    double num;                                                               \
    const char *str;                                                          \
    uint32_t len;                                                             \
    uint32_t flags;                                                           \
    int forcible;                                                             \
    int stale;                                                                \
  } lc_shval;                                                                 \
  int lc_shdict_get(void *d, const char *key, size_t klen, lc_shval *v,       \
                    int stale);                                               \
  int lc_shdict_store(void *d, int op, const char *key, size_t klen,          \
                      int type, const char *str, size_t slen, double num,     \
                      double ttl, uint32_t flags, lc_shval *v);               \
  int lc_shdict_incr(void *d, const char *key, size_t klen, double n,         \
                     int has_init, double init, double ttl, lc_shval *v);     \
  int lc_shdict_ttl(void *d, const char *key, size_t klen, lc_shval *v);      \
  int lc_shdict_expire(void *d, const char *key, size_t klen, double ttl);

LC_SHDICT_FFI

#define LC_SHDICT_STR_(...) #__VA_ARGS__
#define LC_SHDICT_STR(...) LC_SHDICT_STR_(__VA_ARGS__)
/* The declarations above as one string, for ffi.cdef. */
#define LC_SHDICT_CDEF LC_SHDICT_STR(LC_SHDICT_FFI)

#endif
