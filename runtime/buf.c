/* luacluster: the byte buffer's growth and the answer to exhausted memory
 * (runtime/buf.h). */
#include <stdio.h>
#include <stdlib.h>
#include "buf.h"

void lc__oom(void) {
  fputs("luacluster: out of memory\n", stderr);
  abort();
}

void *lc__xmalloc(size_t n) {
  void *p = malloc(n);
  if (p == NULL)
    lc__oom();
  return p;
}

void *lc__xrealloc(void *p, size_t n) {
  p = realloc(p, n);
  if (p == NULL && n > 0)
    lc__oom();
  return p;
}

void lc__buf_grow(lc_buf *b, size_t extra) {
  size_t need = b->len + extra;
  size_t cap = b->cap ? b->cap : 1024;
  while (cap < need)
    cap *= 2;
  b->base = (char *)lc__xrealloc(b->base, cap);
  b->cap = cap;
}
