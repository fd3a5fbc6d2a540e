/* The shared dict's operations that lua/shared.lua calls through LuaJIT's
 * FFI (declared once in shdict.h): get, store (set, add, replace, delete),
 * incr, ttl, expire. Each takes the lock, does its steps (each one
 * committed to the journal), and lets go; values are copied out into the
 * dict's scratch buffer under the lock. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include "store.h"

/* Makes d's scratch hold n bytes; 0, or -1 when out of memory. */
int lc__sh_scratch(lc_shdict *d, size_t n) {
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
int lc_shdict_get(void *dict, const char *key, size_t klen, lc_shval *v,
                  int stale) {
  lc_shdict *d = (lc_shdict *)dict;
  sh_header *h = d->h;
  uint32_t hash = sh_hash(key, klen), b;
  uint64_t now = 0;
  int type = T_NIL;
  if (d->cap > SH_BUF_KEEP) {
    free(d->buf);
    d->buf = NULL;
    d->cap = 0;
  }
  if (lc__sh_lock(h) != 0)
    return -E_LOCK;
  b = lc__sh_find(h, hash, key, klen, NULL);
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
        if (lc__sh_scratch(d, it->vlen ? it->vlen : 1) != 0) {
          sh_unlock(h);
          return -E_NO_MEMORY;
        }
        memcpy(d->buf, val, it->vlen);
        v->str = d->buf;
        v->len = d->len = it->vlen;
      }
      if (!old) {
        lc__sh_lru_touch(h, b);
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
    lc__sh_wbytes(h, it->data + klen, val, vlen);
    if (it->type != type)
      lc__sh_wbytes(h, (char *)&it->type, &(uint8_t){(uint8_t)type}, 1);
    w32(h, &it->flags, flags);
    w64(h, &it->expires, expires);
    lc__sh_lru_touch(h, b);
    commit(h);
    return E_OK;
  }
  if (b) {
    /* The old item goes first, as in ngx: its room may serve the new. */
    lc__sh_item_remove(h, b, link);
    commit(h);
  }
  need64 = (sizeof(sh_block) + sizeof(sh_item) + (uint64_t)klen + vlen + 7) &
           ~(uint64_t)7;
  if (need64 > h->sentinel - h->arena)
    return E_NO_MEMORY;
  need = (uint32_t)need64;
  if (need < SH_MIN_BLOCK)
    need = SH_MIN_BLOCK;
  while ((nb = lc__sh_blk_alloc(h, need)) == 0) {
    uint32_t t = h->lru_tail;
    if (safe || t == 0) {
      commit(h);
      return E_NO_MEMORY;
    }
    if (!expired(ITEM(h, t), &now))
      *forcible = 1;
    lc__sh_item_evict(h, t);
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
  lc__sh_lru_push(h, nb);
  w32(h, &h->count, h->count + 1);
  commit(h);
  return E_OK;
}

/* lc_shdict_store(d, op, key, klen, type, str, slen, num, ttl, flags, v)
 * -> E_* (v->forcible set). op: OP_SET, OP_ADD or OP_REPLACE, with OP_SAFE
 * to never evict. type T_NIL deletes; T_NUMBER stores num; T_STRING and
 * T_TABLE store str's slen bytes; T_TRUE and T_FALSE nothing more. */
int lc_shdict_store(void *dict, int op, const char *key, size_t klen,
                    int type, const char *str, size_t slen, double num,
                    double ttl, uint32_t flags, lc_shval *v) {
  lc_shdict *d = (lc_shdict *)dict;
  sh_header *h = d->h;
  uint32_t hash = sh_hash(key, klen), b, *link = NULL;
  uint64_t now = 0, expires = lc__sh_expiry(ttl);
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
  if (lc__sh_lock(h) != 0)
    return E_LOCK;
  lc__sh_expire_tail(h, 2, &now);
  b = lc__sh_find(h, hash, key, klen, &link);
  live = b && !expired(ITEM(h, b), &now);
  if ((op & 3) == OP_ADD && live) {
    rc = E_EXISTS;
  } else if ((op & 3) == OP_REPLACE && !live) {
    rc = E_NOT_FOUND;
  } else if (type == T_NIL) {
    if (b) {
      lc__sh_item_remove(h, b, link);
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
int lc_shdict_incr(void *dict, const char *key, size_t klen, double n,
                   int has_init, double init, double ttl, lc_shval *v) {
  lc_shdict *d = (lc_shdict *)dict;
  sh_header *h = d->h;
  uint32_t hash = sh_hash(key, klen), b, *link = NULL;
  uint64_t now = 0;
  int rc = E_OK;
  double x;
  v->forcible = 0;
  if (lc__sh_lock(h) != 0)
    return E_LOCK;
  b = lc__sh_find(h, hash, key, klen, &link);
  if (b && !expired(ITEM(h, b), &now)) {
    sh_item *it = ITEM(h, b);
    if (it->type != T_NUMBER) {
      rc = E_NOT_NUMBER;
    } else {
      memcpy(&x, it->data + it->klen, sizeof(x));
      x += n;
      lc__sh_wbytes(h, it->data + it->klen, &x, sizeof(x));
      lc__sh_lru_touch(h, b);
      commit(h);
      v->num = x;
    }
  } else if (!has_init) {
    rc = E_NOT_FOUND;
  } else {
    x = init + n;
    rc = put(h, b, link, hash, key, klen, T_NUMBER, &x, sizeof(x),
             lc__sh_expiry(ttl), 0, 0, &v->forcible);
    v->num = x;
  }
  sh_unlock(h);
  return rc;
}

/* lc_shdict_ttl(d, key, klen, v) -> E_OK with the seconds left in v->num
 * (0: never expires), or E_NOT_FOUND. */
int lc_shdict_ttl(void *dict, const char *key, size_t klen, lc_shval *v) {
  lc_shdict *d = (lc_shdict *)dict;
  sh_header *h = d->h;
  uint32_t b;
  uint64_t now = 0;
  int rc = E_NOT_FOUND;
  if (lc__sh_lock(h) != 0)
    return E_LOCK;
  b = lc__sh_find(h, sh_hash(key, klen), key, klen, NULL);
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
int lc_shdict_expire(void *dict, const char *key, size_t klen, double ttl) {
  lc_shdict *d = (lc_shdict *)dict;
  sh_header *h = d->h;
  uint32_t b;
  uint64_t now = 0, e = lc__sh_expiry(ttl);
  int rc = E_NOT_FOUND;
  if (lc__sh_lock(h) != 0)
    return E_LOCK;
  b = lc__sh_find(h, sh_hash(key, klen), key, klen, NULL);
  if (b && !expired(ITEM(h, b), &now)) {
    w64(h, &ITEM(h, b)->expires, e);
    commit(h);
    rc = E_OK;
  }
  sh_unlock(h);
  return rc;
}

