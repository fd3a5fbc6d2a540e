/* luacluster: the one growable byte buffer of the C core (HTTP input and
 * output, IPC frames), and the one answer to exhausted memory.
 *
 * A buffer that cannot grow leaves a server no sane way on (a half-built
 * response, a half-encoded frame): lc__oom() says so on stderr and aborts,
 * so the primary restarts the worker. Memory that Lua owns is the other
 * kind: allocate it through Lua, which raises instead. */
#ifndef LC_BUF_H
#define LC_BUF_H

#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
  char *base;
  size_t len;
  size_t cap;
} lc_buf;

/* Prints "luacluster: out of memory" and aborts. */
void lc__oom(void);

/* malloc/realloc that never return NULL (lc__oom instead). */
void *lc__xmalloc(size_t n);
void *lc__xrealloc(void *p, size_t n);

/* Grows b to hold extra more bytes (doubling from 1 KiB). */
void lc__buf_grow(lc_buf *b, size_t extra);

static inline void buf_reserve(lc_buf *b, size_t extra) {
  if (b->len + extra > b->cap)
    lc__buf_grow(b, extra);
}

static inline void buf_add(lc_buf *b, const void *p, size_t n) {
  if (n == 0)
    return;
  buf_reserve(b, n);
  memcpy(b->base + b->len, p, n);
  b->len += n;
}

#define buf_lit(b, s) buf_add((b), (s), sizeof(s) - 1)

static inline void buf_byte(lc_buf *b, unsigned char ch) {
  buf_reserve(b, 1);
  b->base[b->len++] = (char)ch;
}

/* v as 4 bytes, little-endian. */
static inline void buf_u32le(lc_buf *b, uint32_t v) {
  unsigned char x[4] = {(unsigned char)v, (unsigned char)(v >> 8),
                        (unsigned char)(v >> 16), (unsigned char)(v >> 24)};
  buf_add(b, x, 4);
}

/* The 4 bytes at p as a little-endian number. */
static inline uint32_t lc_get_u32le(const char *p) {
  const unsigned char *u = (const unsigned char *)p;
  return (uint32_t)u[0] | ((uint32_t)u[1] << 8) | ((uint32_t)u[2] << 16) |
         ((uint32_t)u[3] << 24);
}

/* Writes v at p as 4 little-endian bytes. */
static inline void lc_set_u32le(char *p, uint32_t v) {
  p[0] = (char)v;
  p[1] = (char)(v >> 8);
  p[2] = (char)(v >> 16);
  p[3] = (char)(v >> 24);
}

/* v in decimal. */
static inline void buf_uint(lc_buf *b, uint64_t v) {
  char tmp[24];
  int i = sizeof(tmp);
  do {
    tmp[--i] = (char)('0' + v % 10);
    v /= 10;
  } while (v > 0);
  buf_add(b, tmp + i, sizeof(tmp) - (size_t)i);
}

/* v in lower-case hexadecimal. */
static inline void buf_hex(lc_buf *b, size_t v) {
  static const char digits[] = "0123456789abcdef";
  char tmp[20];
  int i = sizeof(tmp);
  do {
    tmp[--i] = digits[v & 15];
    v >>= 4;
  } while (v > 0);
  buf_add(b, tmp + i, sizeof(tmp) - (size_t)i);
}

static inline void buf_free(lc_buf *b) {
  free(b->base);
  b->base = NULL;
  b->len = b->cap = 0;
}

#endif
