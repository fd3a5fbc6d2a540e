/* The shared dict's store: the region's layout and what its files share
 * (store.c: journal, allocator, items, format, validation, recovery, the
 * lock; ffi.c: the operations; lua.c: the `_shared` module). No Lua here:
 * the store and its operations build and run without it (store_test.c).
 *
 * The region, every link a 32-bit byte offset from its start (0: none):
 *   header   the lock, the LRU list's ends, the allocator's free lists and
 *            the undo journal (sh_header)
 *   buckets  heads of the hash chains (open hashing), a power of two of them
 *   arena    blocks, each an 8-byte tag (its size with FREE and PREV_FREE
 *            bits; the size of the block before it when that one is free)
 *            and a body: an item, or the links of a free list. A used
 *            8-byte sentinel ends the arena.
 * Allocation is segregated fit with boundary tags: one class a size below
 * 512 bytes, eight classes a power of two above, a bitmap of the classes
 * that have blocks, and coalescing on free. An item is one block: its hash
 * chain and LRU links, hash, lengths, type, flags and expiry, then the key,
 * then the value. Nothing is malloc'd in the region.
 *
 * Locking and crashes: one process-shared, robust mutex guards the region.
 * Every write that changes something meaningful first appends the old bytes
 * to the undo journal (offset, length, bytes); a step of an operation ends
 * by emptying the journal (one store). Long operations are several steps,
 * each leaving the store consistent (an eviction, then the insertion). A
 * process killed while it holds the lock leaves the journal as it was: the
 * next locker gets EOWNERDEAD, rolls the journal back, validates the whole
 * structure (and, should that ever fail, empties the dict rather than serve
 * a broken one), then marks the mutex consistent. So the others go on, and
 * see either all of the dead process's last step or none of it. Bytes
 * written only into a block allocated in the same step (a new item's key
 * and value) need no journal: rolled back, that block is free again.
 */
#ifndef LC_SHDICT_STORE_H
#define LC_SHDICT_STORE_H

#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include "shdict.h"

#define SH_MAGIC 0x48534c43u /* "LCSH" */
#define SH_VERSION 1
#define SH_CLASSES 248
#define SH_JOURNAL 128
#define SH_INPLACE_MAX 256  /* Longer values are never overwritten in place. */
#define SH_MIN_SIZE 8192
#define SH_MAX_SIZE 0xfff00000u
#define SH_MIN_BLOCK 16
#define SH_FREE 1u
#define SH_PREV_FREE 2u
#define SH_SIZE_MASK (~7u)
#define SH_BUF_KEEP (1u << 20) /* A bigger scratch buffer is let go. */
#define SH_DICT "lc.shared.dict"

typedef struct {
  uint32_t off, len; /* Where, and how many bytes (at most 8). */
  uint64_t old;      /* The bytes there before the write. */
} sh_undo;

typedef struct {
  uint32_t magic, version;
  uint64_t size;        /* Bytes of the region. */
  pthread_mutex_t lock; /* Process-shared and robust. */
  uint32_t nbuckets;    /* A power of two. */
  uint32_t buckets;     /* Offset of the bucket array. */
  uint32_t arena;       /* Offset of the first block. */
  uint32_t sentinel;    /* Offset of the used tag that ends the arena. */
  uint32_t lru_head;    /* Most recently used item. */
  uint32_t lru_tail;    /* Least recently used: evicted first. */
  uint32_t count;       /* Items. */
  uint32_t formatting;  /* Set while the arena is rebuilt: redo it. */
  uint64_t free_bytes;  /* Sum of the free blocks' sizes. */
  uint64_t recoveries;  /* Locks taken over from a dead process. */
  uint64_t resets;      /* Recoveries that found a broken store. */
  uint64_t bitmap[(SH_CLASSES + 63) / 64]; /* Classes with free blocks. */
  uint32_t heads[SH_CLASSES];              /* Free lists. */
  uint32_t jn;                             /* Journal entries in use. */
  uint32_t pad;
  sh_undo journal[SH_JOURNAL];
  char name[64];
} sh_header;

typedef struct {
  uint32_t size;      /* Bytes, tag included; low bits SH_FREE, SH_PREV_FREE. */
  uint32_t prev_size; /* Bytes of the block before, when that one is free. */
} sh_block;

typedef struct {
  uint32_t next, prev; /* A free block's neighbours in its class's list. */
} sh_links;

typedef struct {
  uint32_t hnext;        /* Next item in the hash chain. */
  uint32_t lprev, lnext; /* LRU neighbours (prev: more recent). */
  uint32_t hash;
  uint32_t vlen;
  uint32_t flags;        /* ngx's user flags. */
  uint16_t klen;
  uint8_t type;
  uint8_t pad;
  uint32_t pad2;
  uint64_t expires;      /* CLOCK_MONOTONIC microseconds; 0: never. */
  char data[];           /* The key, then the value. */
} sh_item;

/* This process's view of a dict: the userdata's body. */
typedef struct lc_shdict {
  sh_header *h;   /* The mapping. */
  size_t size;
  int fd;         /* The memfd in the process that made it, else -1. */
  char *buf;      /* Scratch: values copied out under the lock. */
  size_t cap;
  uint32_t len;   /* Bytes of the last value copied into buf. */
} lc_shdict;

#define fence() __atomic_signal_fence(__ATOMIC_SEQ_CST)
#define BLK(h, o) ((sh_block *)((char *)(h) + (o)))
#define LINKS(h, o) ((sh_links *)((char *)(h) + (o) + sizeof(sh_block)))
#define ITEM(h, o) ((sh_item *)((char *)(h) + (o) + sizeof(sh_block)))
#define BUCKET(h, hash) \
  (((uint32_t *)((char *)(h) + (h)->buckets))[(hash) & ((h)->nbuckets - 1)])

static inline uint32_t bsize(const sh_block *b) {
  return b->size & SH_SIZE_MASK;
}

static inline void cpu_relax(void) {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#elif defined(__aarch64__)
  __asm__ volatile("yield");
#endif
}

static inline uint64_t now_us(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

/* A 32-bit hash of a key, eight bytes a round. */
static inline uint32_t sh_hash(const char *p, size_t n) {
  uint64_t h = 0x6a09e667f3bcc909ull ^ (n * 0x9e3779b97f4a7c15ull);
  uint64_t w;
  while (n >= 8) {
    memcpy(&w, p, 8);
    h = (h ^ w) * 0xff51afd7ed558ccdull;
    h ^= h >> 32;
    p += 8;
    n -= 8;
  }
  if (n > 0) {
    w = 0;
    memcpy(&w, p, n);
    h = (h ^ w) * 0xc4ceb9fe1a85ec53ull;
    h ^= h >> 29;
  }
  h *= 0x9e3779b97f4a7c15ull;
  return (uint32_t)(h >> 32);
}

/* ---- Journal -------------------------------------------------------------
 * An entry is written, then counted, then the write it guards is done; the
 * compiler fences keep that order (a killed process's stores are all seen
 * by the next locker, in program order). */

/* Journaled writes left before the test hook stops this process (0: off;
 * see _shared.stall). Process-wide: it is the process that stops. */
extern uint32_t lc__sh_stall_left;

static inline void jlog(sh_header *h, void *p, uint32_t len) {
  uint32_t n = h->jn;
  sh_undo *u;
  /* A step never needs more: overflowing is a bug here, never bad data. */
  if (__builtin_expect(n >= SH_JOURNAL, 0))
    abort();
  u = &h->journal[n];
  u->off = (uint32_t)((char *)p - (char *)h);
  u->len = len;
  memcpy(&u->old, p, len);
  fence();
  h->jn = n + 1;
  fence();
  if (__builtin_expect(lc__sh_stall_left != 0, 0) && --lc__sh_stall_left == 0)
    raise(SIGSTOP);
}

static inline void w32(sh_header *h, uint32_t *p, uint32_t v) {
  if (*p == v)
    return;
  jlog(h, p, 4);
  *p = v;
}

static inline void w64(sh_header *h, uint64_t *p, uint64_t v) {
  if (*p == v)
    return;
  jlog(h, p, 8);
  *p = v;
}

/* Ends a step: what was written stays. */
static inline void commit(sh_header *h) {
  fence();
  h->jn = 0;
  fence();
}

static inline int expired(const sh_item *it, uint64_t *now) {
  if (it->expires == 0)
    return 0;
  if (*now == 0)
    *now = now_us();
  return it->expires <= *now;
}

static inline void sh_unlock(sh_header *h) {
  pthread_mutex_unlock(&h->lock);
}

/* store.c */
uint64_t lc__sh_expiry(double ttl);
void lc__sh_wbytes(sh_header *h, char *p, const void *src, size_t n);
uint32_t lc__sh_blk_alloc(sh_header *h, uint32_t need);
void lc__sh_lru_push(sh_header *h, uint32_t b);
void lc__sh_lru_touch(sh_header *h, uint32_t b);
uint32_t lc__sh_find(sh_header *h, uint32_t hash, const char *key,
                     size_t klen, uint32_t **link);
void lc__sh_item_remove(sh_header *h, uint32_t b, uint32_t *link);
void lc__sh_item_evict(sh_header *h, uint32_t b);
void lc__sh_expire_tail(sh_header *h, int n, uint64_t *now);
void lc__sh_format(sh_header *h);
const char *lc__sh_validate(sh_header *h);
int lc__sh_lock(sh_header *h);
void lc__sh_init(sh_header *h, size_t size, const char *name, size_t nlen);

/* ffi.c */
int lc__sh_scratch(lc_shdict *d, size_t n);

#endif
