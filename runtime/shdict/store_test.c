/* The shared dict's store and operations, tested without Lua: a region in
 * a shared anonymous mapping, the operations lua/shared.lua calls through
 * the FFI, validation after each phase, and recovery from a process that
 * dies holding the lock halfway through a step. Built beside the binary
 * (shdict_store_test); spec/shdict_store_spec.lua runs it. Prints one line
 * per failed check and a summary; exits 0 when every check passed. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>
#include "store.h"

static int checks, failed;

#define CHECK(cond)                                                           \
  do {                                                                        \
    checks++;                                                                 \
    if (!(cond)) {                                                            \
      failed++;                                                               \
      fprintf(stderr, "store_test.c:%d: failed: %s\n", __LINE__, #cond);      \
    }                                                                         \
  } while (0)

static lc_shdict *new_dict(size_t size) {
  static lc_shdict d;
  void *p = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANON,
                 -1, 0);
  if (p == MAP_FAILED) {
    perror("mmap");
    exit(2);
  }
  memset(&d, 0, sizeof(d));
  d.h = (sh_header *)p;
  d.size = size;
  d.fd = -1;
  lc__sh_init(d.h, size, "test", 4);
  return &d;
}

static int set_str(lc_shdict *d, int op, const char *k, const char *v,
                   lc_shval *out) {
  return lc_shdict_store(d, op, k, strlen(k), T_STRING, v, strlen(v), 0, 0,
                         0, out);
}

static void basics(lc_shdict *d) {
  lc_shval v;
  memset(&v, 0, sizeof(v));
  CHECK(lc_shdict_get(d, "a", 1, &v, 0) == T_NIL);
  CHECK(set_str(d, OP_SET, "a", "hello", &v) == E_OK);
  CHECK(lc_shdict_get(d, "a", 1, &v, 0) == T_STRING);
  CHECK(v.len == 5 && memcmp(v.str, "hello", 5) == 0);
  CHECK(set_str(d, OP_ADD, "a", "x", &v) == E_EXISTS);
  CHECK(set_str(d, OP_REPLACE, "b", "x", &v) == E_NOT_FOUND);
  CHECK(set_str(d, OP_REPLACE, "a", "world!", &v) == E_OK);
  CHECK(lc_shdict_get(d, "a", 1, &v, 0) == T_STRING && v.len == 6);
  CHECK(lc_shdict_incr(d, "n", 1, 2, 0, 0, 0, &v) == E_NOT_FOUND);
  CHECK(lc_shdict_incr(d, "n", 1, 2, 1, 40, 0, &v) == E_OK && v.num == 42);
  CHECK(lc_shdict_incr(d, "n", 1, 0.5, 0, 0, 0, &v) == E_OK &&
        v.num == 42.5);
  CHECK(lc_shdict_incr(d, "a", 1, 1, 0, 0, 0, &v) == E_NOT_NUMBER);
  CHECK(lc_shdict_expire(d, "n", 1, 100) == E_OK);
  CHECK(lc_shdict_ttl(d, "n", 1, &v) == E_OK && v.num > 99 && v.num <= 100);
  CHECK(lc_shdict_ttl(d, "zz", 2, &v) == E_NOT_FOUND);
  /* A value that expired is gone, or stale for get_stale. */
  CHECK(lc_shdict_store(d, OP_SET, "t", 1, T_TRUE, NULL, 0, 0, 0.001, 0,
                        &v) == E_OK);
  usleep(5000);
  CHECK(lc_shdict_get(d, "t", 1, &v, 0) == T_NIL);
  CHECK(lc_shdict_get(d, "t", 1, &v, 1) == T_TRUE && v.stale);
  /* Delete. */
  CHECK(lc_shdict_store(d, OP_SET, "a", 1, T_NIL, NULL, 0, 0, 0, 0, &v) ==
        E_OK);
  CHECK(lc_shdict_get(d, "a", 1, &v, 0) == T_NIL);
  CHECK(lc__sh_validate(d->h) == NULL);
}

/* Fills the dict: a set evicts the least recently used (forcible), a safe
 * set fails instead, and a value bigger than the store never fits. */
static void eviction(lc_shdict *d) {
  char key[32], val[200];
  lc_shval v;
  int i, forcible = 0;
  uint32_t before;
  memset(val, 'v', sizeof(val) - 1);
  val[sizeof(val) - 1] = 0;
  for (i = 0; i < 2000; i++) {
    snprintf(key, sizeof(key), "k%d", i);
    CHECK(set_str(d, OP_SET, key, val, &v) == E_OK);
    forcible |= v.forcible;
  }
  CHECK(forcible);
  CHECK(lc_shdict_get(d, "k0", 2, &v, 0) == T_NIL);
  CHECK(lc_shdict_get(d, "k1999", 5, &v, 0) == T_STRING);
  before = d->h->count;
  CHECK(set_str(d, OP_SET | OP_SAFE, "new", val, &v) == E_NO_MEMORY);
  CHECK(d->h->count == before);
  {
    size_t big = d->size + 1;
    char *huge = calloc(1, big);
    CHECK(lc_shdict_store(d, OP_SET, "huge", 4, T_STRING, huge, big, 0, 0, 0,
                          &v) == E_NO_MEMORY);
    free(huge);
  }
  CHECK(lc__sh_validate(d->h) == NULL);
}

/* A child takes the lock, journals a write and dies before the step ends:
 * the next locker rolls the write back and goes on. */
static void recovery(lc_shdict *d) {
  lc_shval v;
  uint32_t count = d->h->count;
  pid_t pid;
  int st;
  CHECK(set_str(d, OP_SET, "keep", "me", &v) == E_OK);
  count = d->h->count;
  pid = fork();
  if (pid == 0) {
    if (lc__sh_lock(d->h) != 0)
      _exit(3);
    w32(d->h, &d->h->count, 12345);
    _exit(0);
  }
  waitpid(pid, &st, 0);
  CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0);
  CHECK(d->h->count == 12345);
  CHECK(lc_shdict_get(d, "keep", 4, &v, 0) == T_STRING);
  CHECK(d->h->recoveries == 1 && d->h->resets == 0);
  CHECK(d->h->count == count);
  CHECK(lc__sh_validate(d->h) == NULL);
}

int main(void) {
  lc_shdict *d = new_dict(SH_MIN_SIZE * 8);
  basics(d);
  eviction(d);
  recovery(d);
  free(d->buf);
  printf("store_test: %d checks, %d failed\n", checks, failed);
  return failed == 0 ? 0 : 1;
}
