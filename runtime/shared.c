/* `_shared`: the memory behind require('shared') (lua/shared.lua),
 * OpenResty's ngx.shared.DICT shared by a primary and its workers.
 *
 * A dict is one memfd that the primary creates, sizes and maps MAP_SHARED.
 * Workers are new programs (spawn and exec, not fork), so an anonymous
 * mapping would not reach them: the primary hands each worker the memfd as
 * an inherited fd (lua/cluster/primary.lua) and the worker maps the same
 * pages (attach).
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
 *
 * The hot paths (get, store, incr, ttl, expire) are plain C functions that
 * lua/shared.lua calls through LuaJIT's FFI, as lua-resty-core calls
 * nginx's: the Lua side checks their arguments. The rest is the Lua C API.
 *
 * A test hook, _shared.stall(n): the n-th journaled write this process
 * makes from then on stops it with SIGSTOP, holding the lock, halfway
 * through a step (the entry counted, the write it guards not done), so a
 * spec can kill it exactly there and watch the others recover. SIGCONT
 * lets it go on. Nothing else sets it; a write pays one test of a flag.
 */
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>
#include "lc.h"
#include "codec.h"

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

/* Value types, as lua/shared.lua knows them. */
enum { T_NIL = 0, T_FALSE, T_TRUE, T_NUMBER, T_STRING, T_TABLE };
/* Results of operations; lua/shared.lua maps them to ngx's messages. */
enum { E_OK = 0, E_EXISTS, E_NOT_FOUND, E_NO_MEMORY, E_NOT_NUMBER, E_LOCK };
/* Store operations: ngx's set, add and replace; safe_* never evict. */
enum { OP_SET = 0, OP_ADD = 1, OP_REPLACE = 2, OP_SAFE = 4 };

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

/* A value read or the outcome of a store, for the FFI side. */
typedef struct lc_shval {
  double num;      /* A number's value; incr's result; ttl's seconds. */
  const char *str; /* A string's or table's bytes (the dict's scratch). */
  uint32_t len;
  uint32_t flags;
  int forcible;    /* A store evicted items that had not expired. */
  int stale;       /* get_stale: the value has expired. */
} lc_shval;

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

static uint64_t now_us(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

/* Microseconds from now for a TTL in seconds; 0 (never) for ttl <= 0. */
static uint64_t expiry(double ttl) {
  double us;
  if (!(ttl > 0))
    return 0;
  us = ttl * 1e6;
  if (us < 1)
    us = 1;
  if (us > 1e18)
    us = 1e18;
  return now_us() + (uint64_t)us;
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
static uint32_t stall_left;

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
  if (__builtin_expect(stall_left != 0, 0) && --stall_left == 0)
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

/* Overwrites n bytes at p (a value in place): each 8 bytes that change are
 * journaled, then written. */
static void wbytes(sh_header *h, char *p, const void *src, size_t n) {
  const char *s = (const char *)src;
  uint64_t a, b;
  size_t i = 0;
  for (; i + 8 <= n; i += 8) {
    memcpy(&a, p + i, 8);
    memcpy(&b, s + i, 8);
    if (a != b) {
      jlog(h, p + i, 8);
      memcpy(p + i, &b, 8);
    }
  }
  for (; i < n; i++) {
    if (p[i] != s[i]) {
      jlog(h, p + i, 1);
      p[i] = s[i];
    }
  }
}

/* Ends a step: what was written stays. */
static inline void commit(sh_header *h) {
  fence();
  h->jn = 0;
  fence();
}

/* Rolls back an unfinished step, newest write first. */
static void undo(sh_header *h) {
  uint32_t n = h->jn;
  if (n > SH_JOURNAL)
    n = SH_JOURNAL;
  while (n-- > 0) {
    sh_undo *u = &h->journal[n];
    if (u->len <= 8 && u->off >= sizeof(uint64_t) &&
        (uint64_t)u->off + u->len <= h->size)
      memcpy((char *)h + u->off, &u->old, u->len);
  }
  commit(h);
}

/* ---- Allocator ----------------------------------------------------------- */

/* The class a free block of this size is listed in. */
static inline uint32_t class_of(uint32_t size) {
  uint32_t fl;
  if (size < 512)
    return size >> 3;
  fl = 31 - (uint32_t)__builtin_clz(size);
  return 64 + (fl - 9) * 8 + ((size >> (fl - 3)) & 7);
}

/* The first class whose every block holds size bytes (SH_CLASSES: none). */
static inline uint32_t class_up(uint32_t size) {
  uint32_t fl;
  uint64_t s;
  if (size < 512)
    return size >> 3;
  fl = 31 - (uint32_t)__builtin_clz(size);
  s = (uint64_t)size + ((1u << (fl - 3)) - 1);
  if (s > 0xffffffffu)
    return SH_CLASSES;
  return class_of((uint32_t)s);
}

/* The first class from c on with a free block, or SH_CLASSES. */
static uint32_t class_find(const sh_header *h, uint32_t c) {
  uint32_t w = c >> 6;
  uint64_t m;
  if (c >= SH_CLASSES)
    return SH_CLASSES;
  m = h->bitmap[w] & (~0ull << (c & 63));
  for (;;) {
    if (m)
      return (w << 6) + (uint32_t)__builtin_ctzll(m);
    if (++w >= (SH_CLASSES + 63) / 64)
      return SH_CLASSES;
    m = h->bitmap[w];
  }
}

static void fl_insert(sh_header *h, uint32_t b) {
  uint32_t c = class_of(bsize(BLK(h, b)));
  uint32_t head = h->heads[c];
  sh_links *l = LINKS(h, b);
  w32(h, &l->next, head);
  w32(h, &l->prev, 0);
  if (head)
    w32(h, &LINKS(h, head)->prev, b);
  else
    w64(h, &h->bitmap[c >> 6], h->bitmap[c >> 6] | (1ull << (c & 63)));
  w32(h, &h->heads[c], b);
}

/* Takes b off its free list; b's size must still be the listed one. */
static void fl_remove(sh_header *h, uint32_t b) {
  uint32_t c = class_of(bsize(BLK(h, b)));
  sh_links *l = LINKS(h, b);
  uint32_t next = l->next, prev = l->prev;
  if (prev) {
    w32(h, &LINKS(h, prev)->next, next);
  } else {
    w32(h, &h->heads[c], next);
    if (!next)
      w64(h, &h->bitmap[c >> 6], h->bitmap[c >> 6] & ~(1ull << (c & 63)));
  }
  if (next)
    w32(h, &LINKS(h, next)->prev, prev);
}

/* Returns a used block of at least need bytes (a multiple of 8), or 0.
 * Its body is the caller's to fill without the journal: the only bytes of
 * it that meant something before (the free-list links) are journaled
 * here. */
static uint32_t blk_alloc(sh_header *h, uint32_t need) {
  uint32_t c = class_find(h, class_up(need));
  uint32_t b = 0, size, n;
  if (c < SH_CLASSES) {
    b = h->heads[c];
  } else {
    /* No class is sure to fit: try a few blocks of need's own class. */
    uint32_t x = h->heads[class_of(need)];
    int i;
    for (i = 0; x && i < 32; i++, x = LINKS(h, x)->next) {
      if (bsize(BLK(h, x)) >= need) {
        b = x;
        break;
      }
    }
    if (!b)
      return 0;
  }
  fl_remove(h, b);
  size = bsize(BLK(h, b));
  if (size - need >= SH_MIN_BLOCK) {
    uint32_t r = b + need;
    w32(h, &BLK(h, b)->size, need | (BLK(h, b)->size & SH_PREV_FREE));
    w32(h, &BLK(h, r)->size, (size - need) | SH_FREE);
    fl_insert(h, r);
    n = b + size;
    w32(h, &BLK(h, n)->prev_size, size - need);
    w64(h, &h->free_bytes, h->free_bytes - need);
  } else {
    w32(h, &BLK(h, b)->size, BLK(h, b)->size & ~SH_FREE);
    n = b + size;
    w32(h, &BLK(h, n)->size, BLK(h, n)->size & ~SH_PREV_FREE);
    w64(h, &h->free_bytes, h->free_bytes - size);
  }
  jlog(h, LINKS(h, b), sizeof(sh_links));
  return b;
}

/* Frees a used block, merging it with free neighbours. */
static void blk_free(sh_header *h, uint32_t b) {
  uint32_t size = bsize(BLK(h, b)), n = b + size;
  w64(h, &h->free_bytes, h->free_bytes + size);
  if (BLK(h, n)->size & SH_FREE) {
    fl_remove(h, n);
    size += bsize(BLK(h, n));
  }
  if (BLK(h, b)->size & SH_PREV_FREE) {
    uint32_t p = b - BLK(h, b)->prev_size;
    fl_remove(h, p);
    size += bsize(BLK(h, p));
    b = p;
  }
  /* Two free blocks are never neighbours: b's own predecessor is used. */
  w32(h, &BLK(h, b)->size, size | SH_FREE);
  n = b + size;
  w32(h, &BLK(h, n)->size, BLK(h, n)->size | SH_PREV_FREE);
  w32(h, &BLK(h, n)->prev_size, size);
  fl_insert(h, b);
}

/* ---- Items --------------------------------------------------------------- */

static void lru_unlink(sh_header *h, uint32_t b) {
  sh_item *it = ITEM(h, b);
  if (it->lprev)
    w32(h, &ITEM(h, it->lprev)->lnext, it->lnext);
  else
    w32(h, &h->lru_head, it->lnext);
  if (it->lnext)
    w32(h, &ITEM(h, it->lnext)->lprev, it->lprev);
  else
    w32(h, &h->lru_tail, it->lprev);
}

static void lru_push(sh_header *h, uint32_t b) {
  sh_item *it = ITEM(h, b);
  uint32_t head = h->lru_head;
  w32(h, &it->lprev, 0);
  w32(h, &it->lnext, head);
  if (head)
    w32(h, &ITEM(h, head)->lprev, b);
  else
    w32(h, &h->lru_tail, b);
  w32(h, &h->lru_head, b);
}

static inline void lru_touch(sh_header *h, uint32_t b) {
  if (h->lru_head != b) {
    lru_unlink(h, b);
    lru_push(h, b);
  }
}

/* Finds key: returns its block, or 0. *link (when asked) gets the address
 * of the chain link that points to it. */
static uint32_t find(sh_header *h, uint32_t hash, const char *key,
                     size_t klen, uint32_t **link) {
  uint32_t *l = &BUCKET(h, hash);
  uint32_t b;
  while ((b = *l) != 0) {
    sh_item *it = ITEM(h, b);
    if (it->hash == hash && it->klen == klen &&
        memcmp(it->data, key, klen) == 0) {
      if (link)
        *link = l;
      return b;
    }
    l = &it->hnext;
  }
  return 0;
}

/* Removes the item in block b, which *link points to. */
static void item_remove(sh_header *h, uint32_t b, uint32_t *link) {
  w32(h, link, ITEM(h, b)->hnext);
  lru_unlink(h, b);
  w32(h, &h->count, h->count - 1);
  blk_free(h, b);
}

/* Removes the item in block b, finding its chain link first. */
static void item_evict(sh_header *h, uint32_t b) {
  uint32_t *l = &BUCKET(h, ITEM(h, b)->hash);
  while (*l != b)
    l = &ITEM(h, *l)->hnext;
  item_remove(h, b, l);
}

static inline int expired(const sh_item *it, uint64_t *now) {
  if (it->expires == 0)
    return 0;
  if (*now == 0)
    *now = now_us();
  return it->expires <= *now;
}

/* Frees up to n expired items at the LRU tail (as ngx does on a store). */
static void expire_tail(sh_header *h, int n, uint64_t *now) {
  while (n-- > 0 && h->lru_tail && expired(ITEM(h, h->lru_tail), now)) {
    item_evict(h, h->lru_tail);
    commit(h);
  }
}

/* ---- Format and validation ----------------------------------------------- */

/* Empties the dict: no items, one free block. Interrupted, it is done again
 * on recovery (the formatting flag). */
static void format(sh_header *h) {
  uint32_t b = h->arena, size = h->sentinel - h->arena;
  h->formatting = 1;
  fence();
  memset((char *)h + h->buckets, 0, (size_t)h->nbuckets * 4);
  memset(h->bitmap, 0, sizeof(h->bitmap));
  memset(h->heads, 0, sizeof(h->heads));
  h->lru_head = h->lru_tail = 0;
  h->count = 0;
  BLK(h, b)->size = size | SH_FREE;
  BLK(h, b)->prev_size = 0;
  BLK(h, h->sentinel)->size = sizeof(sh_block) | SH_PREV_FREE;
  BLK(h, h->sentinel)->prev_size = size;
  h->free_bytes = size;
  h->jn = 0;
  fl_insert(h, b);
  commit(h);
  h->formatting = 0;
  fence();
}

/* The walk's bitmap of where blocks start, one bit an 8-byte unit. */
static inline void mark(uint8_t *starts, const sh_header *h, uint32_t o) {
  uint32_t u = (o - h->arena) >> 3;
  starts[u >> 3] |= (uint8_t)(1u << (u & 7));
}

/* Whether o is a block the walk found: a used one (item), or a free one. */
static inline int marked(const uint8_t *starts, const sh_header *h,
                         uint32_t o, int free) {
  uint32_t u;
  if (o < h->arena || o >= h->sentinel || (o & 7))
    return 0;
  u = (o - h->arena) >> 3;
  return (starts[u >> 3] & (1u << (u & 7))) &&
         !!(BLK(h, o)->size & SH_FREE) == free;
}

/* Checks every invariant of the region. Returns NULL when all hold, else
 * what is wrong. Walks are bounded, so a cycle cannot hang it. */
static const char *validate(sh_header *h) {
  uint32_t b, nfree = 0, nused = 0, prev_free = 0, prev_size = 0, i, n;
  uint64_t free_bytes = 0;
  uint8_t *starts;
  const char *err = NULL;
  size_t span = h->sentinel - h->arena;
  if (h->magic != SH_MAGIC || h->jn != 0 || h->arena >= h->sentinel ||
      h->sentinel + sizeof(sh_block) > h->size)
    return "bad header";
  starts = calloc(span / 64 + 1, 1);
  if (starts == NULL)
    return NULL; /* Cannot tell: trust the journal's rollback. */
#define FAIL(msg) do { err = (msg); goto done; } while (0)
  for (b = h->arena; b != h->sentinel;) {
    sh_block *k = BLK(h, b);
    uint32_t s = bsize(k);
    if (s < SH_MIN_BLOCK || s > h->sentinel - b)
      FAIL("bad block size");
    if (!!(k->size & SH_PREV_FREE) != prev_free)
      FAIL("bad PREV_FREE bit");
    if (prev_free && k->prev_size != prev_size)
      FAIL("bad size of the block before");
    mark(starts, h, b);
    if (k->size & SH_FREE) {
      if (prev_free)
        FAIL("two free blocks side by side");
      nfree++;
      free_bytes += s;
    } else {
      sh_item *it = ITEM(h, b);
      nused++;
      if (it->klen == 0 || it->type < T_FALSE || it->type > T_TABLE ||
          sizeof(sh_block) + sizeof(sh_item) + (uint64_t)it->klen +
          it->vlen > s ||
          it->hash != sh_hash(it->data, it->klen))
        FAIL("bad item");
    }
    prev_free = (k->size & SH_FREE) ? 1 : 0;
    prev_size = s;
    b += s;
  }
  if (!!(BLK(h, b)->size & SH_PREV_FREE) != prev_free ||
      (prev_free && BLK(h, b)->prev_size != prev_size))
    FAIL("bad sentinel");
  if (free_bytes != h->free_bytes)
    FAIL("free bytes miscounted");
  if (nused != h->count)
    FAIL("items miscounted");
  /* Free lists. */
  n = 0;
  for (i = 0; i < SH_CLASSES; i++) {
    uint32_t x = h->heads[i], prev = 0;
    if (!!(h->bitmap[i >> 6] & (1ull << (i & 63))) != (x != 0))
      FAIL("bitmap out of step with the free lists");
    for (; x; prev = x, x = LINKS(h, x)->next) {
      if (!marked(starts, h, x, 1) || class_of(bsize(BLK(h, x))) != i ||
          LINKS(h, x)->prev != prev || ++n > nfree)
        FAIL("bad free list");
    }
  }
  if (n != nfree)
    FAIL("free block not listed");
  /* Hash chains. */
  n = 0;
  for (i = 0; i < h->nbuckets; i++) {
    uint32_t x = ((uint32_t *)((char *)h + h->buckets))[i];
    for (; x; x = ITEM(h, x)->hnext) {
      if (!marked(starts, h, x, 0) ||
          (ITEM(h, x)->hash & (h->nbuckets - 1)) != i || ++n > nused)
        FAIL("bad hash chain");
    }
  }
  if (n != nused)
    FAIL("item not in its hash chain");
  /* LRU list. */
  n = 0;
  {
    uint32_t x = h->lru_head, prev = 0;
    for (; x; prev = x, x = ITEM(h, x)->lnext) {
      if (!marked(starts, h, x, 0) || ITEM(h, x)->lprev != prev || ++n > nused)
        FAIL("bad LRU list");
    }
    if (n != nused || h->lru_tail != prev)
      FAIL("item not in the LRU list");
  }
#undef FAIL
done:
  free(starts);
  return err;
}

/* Makes the store consistent after its lock's owner died holding it. */
static void recover(sh_header *h) {
  const char *err;
  h->recoveries++;
  if (h->formatting) {
    format(h);
    return;
  }
  undo(h);
  err = validate(h);
  if (err != NULL) {
    /* Not expected ever: say so, and serve an empty dict, not a broken one. */
    fprintf(stderr, "luacluster: shared dict '%.63s': a process died holding "
            "its lock and the store is inconsistent (%s): emptied\n",
            h->name, err);
    h->resets++;
    format(h);
  }
}

/* Takes the lock, spinning a little first (the sections are short). Returns
 * 0, or an errno when the mutex is unusable. */
static int sh_lock(sh_header *h) {
  int rc, i, n;
  rc = pthread_mutex_trylock(&h->lock);
  for (n = 1; rc == EBUSY && n <= 1024; n <<= 1) {
    for (i = 0; i < n; i++)
      cpu_relax();
    rc = pthread_mutex_trylock(&h->lock);
  }
  if (rc == EBUSY)
    rc = pthread_mutex_lock(&h->lock);
  if (rc == EOWNERDEAD) {
    recover(h);
    rc = pthread_mutex_consistent(&h->lock);
  }
  return rc;
}

static inline void sh_unlock(sh_header *h) {
  pthread_mutex_unlock(&h->lock);
}

/* Makes d's scratch hold n bytes; 0, or -1 when out of memory. */
static int scratch(lc_shdict *d, size_t n) {
  size_t cap = d->cap ? d->cap : 256;
  char *p;
  if (n <= d->cap)
    return 0;
  while (cap < n)
    cap = cap * 2 > cap ? cap * 2 : n;
  p = realloc(d->buf, cap);
  if (p == NULL)
    return -1;
  d->buf = p;
  d->cap = cap;
  return 0;
}

/* ---- Operations (FFI) ----------------------------------------------------
 * The Lua side has checked the arguments: d is live, the key is 1 to 65535
 * bytes, a TTL is >= 0 (seconds; 0 is never). */

/* lc_shdict_get(d, key, klen, v, stale) -> the value's type (T_*), its
 * bytes in v->str (valid until the next call on d) or its number in
 * v->num; -E_* on failure. An expired value is T_NIL, unless stale is set
 * (ngx's get_stale: v->stale tells). */
int lc_shdict_get(lc_shdict *d, const char *key, size_t klen, lc_shval *v,
                  int stale) {
  sh_header *h = d->h;
  uint32_t hash = sh_hash(key, klen), b;
  uint64_t now = 0;
  int type = T_NIL;
  if (d->cap > SH_BUF_KEEP) {
    free(d->buf);
    d->buf = NULL;
    d->cap = 0;
  }
  if (sh_lock(h) != 0)
    return -E_LOCK;
  b = find(h, hash, key, klen, NULL);
  if (b) {
    sh_item *it = ITEM(h, b);
    int old = expired(it, &now);
    if (!old || stale) {
      const char *val = it->data + it->klen;
      type = it->type;
      v->flags = it->flags;
      v->stale = old;
      if (type == T_NUMBER) {
        memcpy(&v->num, val, sizeof(double));
      } else if (type >= T_STRING) {
        if (scratch(d, it->vlen ? it->vlen : 1) != 0) {
          sh_unlock(h);
          return -E_NO_MEMORY;
        }
        memcpy(d->buf, val, it->vlen);
        v->str = d->buf;
        v->len = d->len = it->vlen;
      }
      if (!old) {
        lru_touch(h, b);
        commit(h);
      }
    }
  }
  sh_unlock(h);
  return type;
}

/* Stores a value for the item found at b (0: none; link its chain link),
 * under the lock. Returns E_OK or E_NO_MEMORY. */
static int put(sh_header *h, uint32_t b, uint32_t *link, uint32_t hash,
               const char *key, size_t klen, int type, const void *val,
               size_t vlen, uint64_t expires, uint32_t flags, int safe,
               int *forcible) {
  uint64_t now = 0, need64;
  uint32_t need, nb;
  sh_item *it;
  if (b && ITEM(h, b)->vlen == vlen && vlen <= SH_INPLACE_MAX) {
    /* Same length: overwrite in place, every byte journaled. */
    it = ITEM(h, b);
    wbytes(h, it->data + klen, val, vlen);
    if (it->type != type)
      wbytes(h, (char *)&it->type, &(uint8_t){(uint8_t)type}, 1);
    w32(h, &it->flags, flags);
    w64(h, &it->expires, expires);
    lru_touch(h, b);
    commit(h);
    return E_OK;
  }
  if (b) {
    /* The old item goes first, as in ngx: its room may serve the new. */
    item_remove(h, b, link);
    commit(h);
  }
  need64 = (sizeof(sh_block) + sizeof(sh_item) + (uint64_t)klen + vlen + 7) &
           ~(uint64_t)7;
  if (need64 > h->sentinel - h->arena)
    return E_NO_MEMORY;
  need = (uint32_t)need64;
  if (need < SH_MIN_BLOCK)
    need = SH_MIN_BLOCK;
  while ((nb = blk_alloc(h, need)) == 0) {
    uint32_t t = h->lru_tail;
    if (safe || t == 0) {
      commit(h);
      return E_NO_MEMORY;
    }
    if (!expired(ITEM(h, t), &now))
      *forcible = 1;
    item_evict(h, t);
    commit(h);
  }
  it = ITEM(h, nb);
  it->hash = hash;
  it->klen = (uint16_t)klen;
  it->vlen = (uint32_t)vlen;
  it->type = (uint8_t)type;
  it->pad = 0;
  it->pad2 = 0;
  it->flags = flags;
  it->expires = expires;
  memcpy(it->data, key, klen);
  if (vlen)
    memcpy(it->data + klen, val, vlen);
  it->hnext = BUCKET(h, hash);
  w32(h, &BUCKET(h, hash), nb);
  it->lprev = it->lnext = 0;
  lru_push(h, nb);
  w32(h, &h->count, h->count + 1);
  commit(h);
  return E_OK;
}

/* lc_shdict_store(d, op, key, klen, type, str, slen, num, ttl, flags, v)
 * -> E_* (v->forcible set). op: OP_SET, OP_ADD or OP_REPLACE, with OP_SAFE
 * to never evict. type T_NIL deletes; T_NUMBER stores num; T_STRING and
 * T_TABLE store str's slen bytes; T_TRUE and T_FALSE nothing more. */
int lc_shdict_store(lc_shdict *d, int op, const char *key, size_t klen,
                    int type, const char *str, size_t slen, double num,
                    double ttl, uint32_t flags, lc_shval *v) {
  sh_header *h = d->h;
  uint32_t hash = sh_hash(key, klen), b, *link = NULL;
  uint64_t now = 0, expires = expiry(ttl);
  const void *val = str;
  int rc = E_OK, live;
  v->forcible = 0;
  if (type == T_NUMBER) {
    val = &num;
    slen = sizeof(double);
  } else if (type != T_STRING && type != T_TABLE) {
    slen = 0;
  }
  if (slen > SH_MAX_SIZE)
    return E_NO_MEMORY;
  if (sh_lock(h) != 0)
    return E_LOCK;
  expire_tail(h, 2, &now);
  b = find(h, hash, key, klen, &link);
  live = b && !expired(ITEM(h, b), &now);
  if ((op & 3) == OP_ADD && live) {
    rc = E_EXISTS;
  } else if ((op & 3) == OP_REPLACE && !live) {
    rc = E_NOT_FOUND;
  } else if (type == T_NIL) {
    if (b) {
      item_remove(h, b, link);
      commit(h);
    }
  } else {
    rc = put(h, b, link, hash, key, klen, type, val, slen, expires, flags,
             op & OP_SAFE, &v->forcible);
  }
  sh_unlock(h);
  return rc;
}

/* lc_shdict_incr(d, key, klen, n, has_init, init, ttl, v) -> E_*, the new
 * value in v->num. A missing (or expired) key is E_NOT_FOUND, or, given
 * init, stored as init + n with the TTL (v->forcible set). */
int lc_shdict_incr(lc_shdict *d, const char *key, size_t klen, double n,
                   int has_init, double init, double ttl, lc_shval *v) {
  sh_header *h = d->h;
  uint32_t hash = sh_hash(key, klen), b, *link = NULL;
  uint64_t now = 0;
  int rc = E_OK;
  double x;
  v->forcible = 0;
  if (sh_lock(h) != 0)
    return E_LOCK;
  b = find(h, hash, key, klen, &link);
  if (b && !expired(ITEM(h, b), &now)) {
    sh_item *it = ITEM(h, b);
    if (it->type != T_NUMBER) {
      rc = E_NOT_NUMBER;
    } else {
      memcpy(&x, it->data + it->klen, sizeof(x));
      x += n;
      wbytes(h, it->data + it->klen, &x, sizeof(x));
      lru_touch(h, b);
      commit(h);
      v->num = x;
    }
  } else if (!has_init) {
    rc = E_NOT_FOUND;
  } else {
    x = init + n;
    rc = put(h, b, link, hash, key, klen, T_NUMBER, &x, sizeof(x),
             expiry(ttl), 0, 0, &v->forcible);
    v->num = x;
  }
  sh_unlock(h);
  return rc;
}

/* lc_shdict_ttl(d, key, klen, v) -> E_OK with the seconds left in v->num
 * (0: never expires), or E_NOT_FOUND. */
int lc_shdict_ttl(lc_shdict *d, const char *key, size_t klen, lc_shval *v) {
  sh_header *h = d->h;
  uint32_t b;
  uint64_t now = 0;
  int rc = E_NOT_FOUND;
  if (sh_lock(h) != 0)
    return E_LOCK;
  b = find(h, sh_hash(key, klen), key, klen, NULL);
  if (b && !expired(ITEM(h, b), &now)) {
    uint64_t e = ITEM(h, b)->expires;
    v->num = e ? (double)(e - now) / 1e6 : 0;
    rc = E_OK;
  }
  sh_unlock(h);
  return rc;
}

/* lc_shdict_expire(d, key, klen, ttl) -> E_OK, or E_NOT_FOUND. A TTL of 0
 * makes the item never expire. */
int lc_shdict_expire(lc_shdict *d, const char *key, size_t klen, double ttl) {
  sh_header *h = d->h;
  uint32_t b;
  uint64_t now = 0, e = expiry(ttl);
  int rc = E_NOT_FOUND;
  if (sh_lock(h) != 0)
    return E_LOCK;
  b = find(h, sh_hash(key, klen), key, klen, NULL);
  if (b && !expired(ITEM(h, b), &now)) {
    w64(h, &ITEM(h, b)->expires, e);
    commit(h);
    rc = E_OK;
  }
  sh_unlock(h);
  return rc;
}

/* ---- The module (Lua C API) ---------------------------------------------- */

static const char *const errors[] = {NULL, "exists", "not found",
                                     "no memory", "not a number",
                                     "lock unusable"};

static lc_shdict *check_dict(lua_State *L, int idx) {
  lc_shdict *d = (lc_shdict *)luaL_checkudata(L, idx, SH_DICT);
  if (d->h == NULL)
    luaL_error(L, "shared dict is closed");
  return d;
}

static int push_lock_error(lua_State *L) {
  lua_pushnil(L);
  lua_pushstring(L, errors[E_LOCK]);
  return 2;
}

static lc_shdict *new_dict(lua_State *L) {
  lc_shdict *d = (lc_shdict *)lua_newuserdata(L, sizeof(*d));
  memset(d, 0, sizeof(*d));
  d->fd = -1;
  luaL_getmetatable(L, SH_DICT);
  lua_setmetatable(L, -2);
  return d;
}

/* _shared.create(name, size) -> dict, or nil, message, code. A new memfd
 * of size bytes (close-on-exec: it reaches workers only as spawn passes it
 * on), mapped and formatted. */
static int shared_create(lua_State *L) {
  size_t nlen;
  const char *name = luaL_checklstring(L, 1, &nlen);
  lua_Number want = luaL_checknumber(L, 2);
  size_t size, hdr, nb, buckets;
  pthread_mutexattr_t a;
  sh_header *h;
  lc_shdict *d;
  void *p;
  int fd;
  luaL_argcheck(L, want >= SH_MIN_SIZE && want <= SH_MAX_SIZE, 2,
                "size out of range");
  size = ((size_t)want + 4095) & ~(size_t)4095;
  if (size > SH_MAX_SIZE)
    size = SH_MAX_SIZE;
  d = new_dict(L);
  fd = memfd_create(name, MFD_CLOEXEC);
  if (fd < 0 && errno == ENOSYS) {
    /* Kernels before 3.17: an unlinked file in /dev/shm. */
    char path[] = "/dev/shm/luacluster-XXXXXX";
    fd = mkostemp(path, O_CLOEXEC);
    if (fd >= 0)
      unlink(path);
  }
  if (fd < 0)
    return lc_push_uverr(L, uv_translate_sys_error(errno));
  if (ftruncate(fd, (off_t)size) != 0) {
    int e = errno;
    close(fd);
    return lc_push_uverr(L, uv_translate_sys_error(e));
  }
  p = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  if (p == MAP_FAILED) {
    int e = errno;
    close(fd);
    return lc_push_uverr(L, uv_translate_sys_error(e));
  }
  h = (sh_header *)p;
  d->h = h;
  d->size = size;
  d->fd = fd;
  /* Buckets: about one a 128 bytes, a power of two. */
  for (nb = 16; nb * 2 <= size / 128; nb *= 2)
    ;
  hdr = (sizeof(sh_header) + 63) & ~(size_t)63;
  buckets = hdr;
  h->magic = SH_MAGIC;
  h->version = SH_VERSION;
  h->size = size;
  h->nbuckets = (uint32_t)nb;
  h->buckets = (uint32_t)buckets;
  h->arena = (uint32_t)((buckets + nb * 4 + 7) & ~(size_t)7);
  h->sentinel = (uint32_t)(size - sizeof(sh_block));
  memcpy(h->name, name, nlen < sizeof(h->name) - 1 ? nlen
                                                   : sizeof(h->name) - 1);
  pthread_mutexattr_init(&a);
  pthread_mutexattr_setpshared(&a, PTHREAD_PROCESS_SHARED);
  pthread_mutexattr_setrobust(&a, PTHREAD_MUTEX_ROBUST);
  pthread_mutex_init(&h->lock, &a);
  pthread_mutexattr_destroy(&a);
  format(h);
  return 1;
}

/* _shared.attach(fd, size) -> dict, or nil, message. Maps a dict another
 * process made (the fd it passed), then closes fd. */
static int shared_attach(lua_State *L) {
  int fd = (int)luaL_checkinteger(L, 1);
  lua_Number size = luaL_checknumber(L, 2);
  lc_shdict *d;
  sh_header *h;
  void *p;
  luaL_argcheck(L, size >= SH_MIN_SIZE && size <= SH_MAX_SIZE, 2,
                "size out of range");
  d = new_dict(L);
  p = mmap(NULL, (size_t)size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  if (p == MAP_FAILED)
    return lc_push_uverr(L, uv_translate_sys_error(errno));
  close(fd);
  h = (sh_header *)p;
  if (h->magic != SH_MAGIC || h->version != SH_VERSION ||
      h->size != (uint64_t)size) {
    munmap(p, (size_t)size);
    lua_pushnil(L);
    lua_pushliteral(L, "not a shared dict of this version");
    return 2;
  }
  d->h = h;
  d->size = (size_t)size;
  return 1;
}

/* _shared.fd(dict) -> the memfd to pass to workers, or nil (attached). */
static int shared_fd(lua_State *L) {
  lc_shdict *d = check_dict(L, 1);
  if (d->fd < 0)
    return 0;
  lua_pushinteger(L, d->fd);
  return 1;
}

/* _shared.pointer(dict) -> the dict as a light userdata, for the FFI. */
static int shared_pointer(lua_State *L) {
  lua_pushlightuserdata(L, check_dict(L, 1));
  return 1;
}

/* _shared.store_table(dict, op, key, table, ttl, flags) -> true, nil,
 * forcible; false, message, forcible; or nil, 'bad value type' when the
 * table cannot be encoded. */
static int shared_store_table(lua_State *L) {
  lc_shdict *d = check_dict(L, 1);
  int op = (int)luaL_checkinteger(L, 2);
  size_t klen, len;
  const char *key = luaL_checklstring(L, 3, &klen);
  double ttl = luaL_optnumber(L, 5, 0);
  uint32_t flags = (uint32_t)luaL_optnumber(L, 6, 0);
  lc_shval v;
  char *bytes;
  int rc;
  luaL_checktype(L, 4, LUA_TTABLE);
  luaL_argcheck(L, klen > 0 && klen <= 65535, 3, "bad key");
  luaL_argcheck(L, op >= 0 && op <= (OP_SAFE | OP_REPLACE), 2, "bad op");
  /* From here to free() nothing may raise. */
  bytes = lc_codec_encode(L, 4, &len);
  if (bytes == NULL) {
    lua_pushnil(L);
    lua_pushliteral(L, "bad value type");
    return 2;
  }
  rc = lc_shdict_store(d, op, key, klen, T_TABLE, bytes, len, 0, ttl, flags,
                       &v);
  free(bytes);
  lua_pushboolean(L, rc == E_OK);
  if (rc == E_OK)
    lua_pushnil(L);
  else
    lua_pushstring(L, errors[rc]);
  lua_pushboolean(L, v.forcible);
  return 3;
}

/* _shared.decode(dict) -> the table whose bytes the last get copied out. */
static int shared_decode(lua_State *L) {
  lc_shdict *d = check_dict(L, 1);
  if (d->buf == NULL || !lc_codec_decode(L, d->buf, d->len))
    return luaL_error(L, "shared dict: a stored table does not decode");
  return 1;
}

/* _shared.get_keys(dict, max) -> the keys of live items, most recently used
 * first, at most max of them (0: all). */
static int shared_get_keys(lua_State *L) {
  lc_shdict *d = check_dict(L, 1);
  lua_Integer max = luaL_optinteger(L, 2, 1024);
  sh_header *h = d->h;
  uint64_t now = 0;
  size_t used = 0;
  uint32_t b, n = 0, i;
  int oom = 0;
  luaL_argcheck(L, max >= 0, 2, "must be >= 0");
  if (sh_lock(h) != 0)
    return push_lock_error(L);
  /* Copied out as (u16 length, bytes), then made strings unlocked. */
  for (b = h->lru_head; b && (max == 0 || n < max); b = ITEM(h, b)->lnext) {
    sh_item *it = ITEM(h, b);
    if (expired(it, &now))
      continue;
    if (scratch(d, used + 2 + it->klen) != 0) {
      oom = 1;
      break;
    }
    memcpy(d->buf + used, &it->klen, 2);
    memcpy(d->buf + used + 2, it->data, it->klen);
    used += 2 + it->klen;
    n++;
  }
  sh_unlock(h);
  if (oom)
    return luaL_error(L, "out of memory");
  lua_createtable(L, (int)n, 0);
  for (i = 0, used = 0; i < n; i++) {
    uint16_t kl;
    memcpy(&kl, d->buf + used, 2);
    lua_pushlstring(L, d->buf + used + 2, kl);
    lua_rawseti(L, -2, (int)i + 1);
    used += 2 + kl;
  }
  return 1;
}

/* _shared.flush_all(dict) -> true: every item goes. */
static int shared_flush_all(lua_State *L) {
  lc_shdict *d = check_dict(L, 1);
  if (sh_lock(d->h) != 0)
    return push_lock_error(L);
  format(d->h);
  sh_unlock(d->h);
  lua_pushboolean(L, 1);
  return 1;
}

/* _shared.flush_expired(dict, max) -> how many expired items were freed (at
 * most max; 0: all). */
static int shared_flush_expired(lua_State *L) {
  lc_shdict *d = check_dict(L, 1);
  lua_Integer max = luaL_optinteger(L, 2, 0);
  sh_header *h = d->h;
  uint64_t now = 0;
  uint32_t b, prev;
  lua_Integer n = 0;
  luaL_argcheck(L, max >= 0, 2, "must be >= 0");
  if (sh_lock(h) != 0)
    return push_lock_error(L);
  for (b = h->lru_tail; b && (max == 0 || n < max); b = prev) {
    prev = ITEM(h, b)->lprev;
    if (expired(ITEM(h, b), &now)) {
      item_evict(h, b);
      commit(h);
      n++;
    }
  }
  sh_unlock(h);
  lua_pushinteger(L, n);
  return 1;
}

/* _shared.capacity(dict) -> bytes of the region. */
static int shared_capacity(lua_State *L) {
  lua_pushnumber(L, (lua_Number)check_dict(L, 1)->size);
  return 1;
}

/* _shared.free_space(dict) -> bytes free in the arena. */
static int shared_free_space(lua_State *L) {
  lc_shdict *d = check_dict(L, 1);
  uint64_t n;
  if (sh_lock(d->h) != 0)
    return push_lock_error(L);
  n = d->h->free_bytes;
  sh_unlock(d->h);
  lua_pushnumber(L, (lua_Number)n);
  return 1;
}

/* _shared.stats(dict) -> {count, capacity, free_space, recoveries, resets,
 * buckets}. */
static int shared_stats(lua_State *L) {
  lc_shdict *d = check_dict(L, 1);
  sh_header *h = d->h, c;
  if (sh_lock(h) != 0)
    return push_lock_error(L);
  c.count = h->count;
  c.free_bytes = h->free_bytes;
  c.recoveries = h->recoveries;
  c.resets = h->resets;
  sh_unlock(h);
  lua_createtable(L, 0, 6);
  lua_pushnumber(L, c.count);
  lua_setfield(L, -2, "count");
  lua_pushnumber(L, (lua_Number)d->size);
  lua_setfield(L, -2, "capacity");
  lua_pushnumber(L, (lua_Number)c.free_bytes);
  lua_setfield(L, -2, "free_space");
  lua_pushnumber(L, (lua_Number)c.recoveries);
  lua_setfield(L, -2, "recoveries");
  lua_pushnumber(L, (lua_Number)c.resets);
  lua_setfield(L, -2, "resets");
  lua_pushnumber(L, h->nbuckets);
  lua_setfield(L, -2, "buckets");
  return 1;
}

/* _shared.validate(dict) -> true, or false and what is wrong. */
static int shared_validate(lua_State *L) {
  lc_shdict *d = check_dict(L, 1);
  const char *err;
  if (sh_lock(d->h) != 0)
    return push_lock_error(L);
  err = validate(d->h);
  sh_unlock(d->h);
  lua_pushboolean(L, err == NULL);
  if (err == NULL)
    return 1;
  lua_pushstring(L, err);
  return 2;
}

/* _shared.stall(n): the test hook (see the top of this file): the n-th
 * journaled write from now on, in any dict, stops this process holding the
 * lock; 0 turns it off. */
static int shared_stall(lua_State *L) {
  lua_Integer n = luaL_checkinteger(L, 1);
  luaL_argcheck(L, n >= 0 && n <= 0x7fffffff, 1, "out of range");
  stall_left = (uint32_t)n;
  return 0;
}

static int dict_gc(lua_State *L) {
  lc_shdict *d = (lc_shdict *)luaL_checkudata(L, 1, SH_DICT);
  if (d->h != NULL)
    munmap(d->h, d->size);
  if (d->fd >= 0)
    close(d->fd);
  free(d->buf);
  d->h = NULL;
  d->fd = -1;
  d->buf = NULL;
  d->cap = 0;
  return 0;
}

int luaopen_lc_shared(lua_State *L) {
  static const luaL_Reg fns[] = {
    {"create", shared_create},
    {"attach", shared_attach},
    {"fd", shared_fd},
    {"pointer", shared_pointer},
    {"store_table", shared_store_table},
    {"decode", shared_decode},
    {"get_keys", shared_get_keys},
    {"flush_all", shared_flush_all},
    {"flush_expired", shared_flush_expired},
    {"capacity", shared_capacity},
    {"free_space", shared_free_space},
    {"stats", shared_stats},
    {"validate", shared_validate},
    {"stall", shared_stall},
    {NULL, NULL}};
  if (luaL_newmetatable(L, SH_DICT)) {
    lua_pushcfunction(L, dict_gc);
    lua_setfield(L, -2, "__gc");
  }
  lua_pop(L, 1);
  lua_newtable(L);
  luaL_register(L, NULL, fns);
  lua_pushinteger(L, SH_MIN_SIZE);
  lua_setfield(L, -2, "MIN_SIZE");
  lua_pushnumber(L, SH_MAX_SIZE);
  lua_setfield(L, -2, "MAX_SIZE");
  return 1;
}
