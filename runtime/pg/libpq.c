/* libpq, opened with dlopen at the first require('pg'): the binary itself
 * needs nothing but libc, and a script that never uses PostgreSQL pays
 * nothing for it. */
#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include "pg.h"

lc_pq_api lc__pq;

static void *handle;
static char why[512];

const char *lc__pq_load(void) {
  void *h, *f;
  const char *path = getenv("LUACLUSTER_LIBPQ");
  if (handle != NULL)
    return NULL;
  if (why[0] != '\0')
    return why;
  /* LUACLUSTER_LIBPQ names another libpq (a path), e.g. a newer build. */
  if (path == NULL || *path == '\0')
    path = "libpq.so.5";
  h = dlopen(path, RTLD_NOW | RTLD_LOCAL);
  if (h == NULL) {
    snprintf(why, sizeof(why),
             "libpq could not be loaded (install Debian's libpq5 package): "
             "%s",
             dlerror());
    return why;
  }
#define LC_PQ_LOAD(name)                                                       \
  f = dlsym(h, #name);                                                         \
  if (f == NULL) {                                                             \
    snprintf(why, sizeof(why), "libpq.so.5 has no %s: too old a libpq",        \
             #name);                                                           \
    dlclose(h);                                                                \
    return why;                                                                \
  }                                                                            \
  *(void **)&lc__pq.name = f;
  LC_PQ_FUNCS(LC_PQ_LOAD)
#undef LC_PQ_LOAD
  handle = h;
  return NULL;
}
