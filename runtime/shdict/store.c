/* The shared dict's store (store.h says how the region is laid out and
 * why): the undo journal, the allocator, items and the LRU list,
 * formatting, validation, recovery from a process that died holding the
 * lock, and the lock. */
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "store.h"

uint32_t lc__sh_stall_left;

/* Overwrites n bytes at p (a value in place): each 8 bytes that change are
 * journaled, then written. */
void lc__sh_wbytes(sh_header *h, char *p, const void *src, size_t n) {
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

/* Microseconds from now for a TTL in seconds; 0 (never) for ttl <= 0. */
uint64_t lc__sh_expiry(double ttl) {
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
uint32_t lc__sh_blk_alloc(sh_header *h, uint32_t need) {
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

void lc__sh_lru_push(sh_header *h, uint32_t b) {
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

void lc__sh_lru_touch(sh_header *h, uint32_t b) {
  if (h->lru_head != b) {
    lru_unlink(h, b);
    lc__sh_lru_push(h, b);
  }
}

/* Finds key: returns its block, or 0. *link (when asked) gets the address
 * of the chain link that points to it. */
uint32_t lc__sh_find(sh_header *h, uint32_t hash, const char *key,
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
void lc__sh_item_remove(sh_header *h, uint32_t b, uint32_t *link) {
  w32(h, link, ITEM(h, b)->hnext);
  lru_unlink(h, b);
  w32(h, &h->count, h->count - 1);
  blk_free(h, b);
}

/* Removes the item in block b, finding its chain link first. */
void lc__sh_item_evict(sh_header *h, uint32_t b) {
  uint32_t *l = &BUCKET(h, ITEM(h, b)->hash);
  while (*l != b)
    l = &ITEM(h, *l)->hnext;
  lc__sh_item_remove(h, b, l);
}

/* Frees up to n expired items at the LRU tail (as ngx does on a store). */
void lc__sh_expire_tail(sh_header *h, int n, uint64_t *now) {
  while (n-- > 0 && h->lru_tail && expired(ITEM(h, h->lru_tail), now)) {
    lc__sh_item_evict(h, h->lru_tail);
    commit(h);
  }
}

/* ---- Format and validation ----------------------------------------------- */

/* Empties the dict: no items, one free block. Interrupted, it is done again
 * on recovery (the formatting flag). */
void lc__sh_format(sh_header *h) {
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
const char *lc__sh_validate(sh_header *h) {
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
    lc__sh_format(h);
    return;
  }
  undo(h);
  err = lc__sh_validate(h);
  if (err != NULL) {
    /* Not expected ever: say so, and serve an empty dict, not a broken one. */
    fprintf(stderr, "luacluster: shared dict '%.63s': a process died holding "
            "its lock and the store is inconsistent (%s): emptied\n",
            h->name, err);
    h->resets++;
    lc__sh_format(h);
  }
}

/* Takes the lock, spinning a little first (the sections are short). Returns
 * 0, or an errno when the mutex is unusable. */
int lc__sh_lock(sh_header *h) {
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



/* Lays a new region out in the size bytes at h (zeroed, as a new memfd or
 * mapping is) and empties it: the header, its process-shared robust lock,
 * the buckets (about one a 128 bytes, a power of two), the arena. */
void lc__sh_init(sh_header *h, size_t size, const char *name, size_t nlen) {
  pthread_mutexattr_t a;
  size_t hdr, nb;
  for (nb = 16; nb * 2 <= size / 128; nb *= 2)
    ;
  hdr = (sizeof(sh_header) + 63) & ~(size_t)63;
  h->magic = SH_MAGIC;
  h->version = SH_VERSION;
  h->size = size;
  h->nbuckets = (uint32_t)nb;
  h->buckets = (uint32_t)hdr;
  h->arena = (uint32_t)((hdr + nb * 4 + 7) & ~(size_t)7);
  h->sentinel = (uint32_t)(size - sizeof(sh_block));
  memcpy(h->name, name,
         nlen < sizeof(h->name) - 1 ? nlen : sizeof(h->name) - 1);
  pthread_mutexattr_init(&a);
  pthread_mutexattr_setpshared(&a, PTHREAD_PROCESS_SHARED);
  pthread_mutexattr_setrobust(&a, PTHREAD_MUTEX_ROBUST);
  pthread_mutex_init(&h->lock, &a);
  pthread_mutexattr_destroy(&a);
  lc__sh_format(h);
}
