/* `_shared`: the Lua side of the shared dict that is not on the hot path
 * (create, attach, the memfd, keys, flush, stats, validation, the test
 * hook), its constants and the FFI declarations (shdict.h), as the module
 * lua/shared.lua is built on: OpenResty's ngx.shared.DICT, shared by a
 * primary and its workers. The hot operations are ffi.c's.
 *
 * A dict is one memfd that the primary creates, sizes and maps MAP_SHARED.
 * Workers are new programs (spawn and exec, not fork), so an anonymous
 * mapping would not reach them: the primary hands each worker the memfd as
 * an inherited fd (lua/cluster/primary.lua) and the worker maps the same
 * pages (attach).
 *
 * A test hook, _shared.stall(n): the n-th journaled write this process
 * makes from then on stops it with SIGSTOP, holding the lock, halfway
 * through a step (the entry counted, the write it guards not done), so a
 * spec can kill it exactly there and watch the others recover. SIGCONT
 * lets it go on. Nothing else sets it; a write pays one test of a flag. */
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>
#include "lc.h"
#include "codec.h"
#include "store.h"

static const char *const errors[] = {
#define XX(name, num, msg) [num] = msg,
    LC_SHDICT_RESULTS(XX)
#undef XX
};

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
  size_t size;
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
  d->h = (sh_header *)p;
  d->size = size;
  d->fd = fd;
  lc__sh_init(d->h, size, name, nlen);
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
  if (lc__sh_lock(h) != 0)
    return push_lock_error(L);
  /* Copied out as (u16 length, bytes), then made strings unlocked. */
  for (b = h->lru_head; b && (max == 0 || n < max); b = ITEM(h, b)->lnext) {
    sh_item *it = ITEM(h, b);
    if (expired(it, &now))
      continue;
    if (lc__sh_scratch(d, used + 2 + it->klen) != 0) {
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
  if (lc__sh_lock(d->h) != 0)
    return push_lock_error(L);
  lc__sh_format(d->h);
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
  if (lc__sh_lock(h) != 0)
    return push_lock_error(L);
  for (b = h->lru_tail; b && (max == 0 || n < max); b = prev) {
    prev = ITEM(h, b)->lprev;
    if (expired(ITEM(h, b), &now)) {
      lc__sh_item_evict(h, b);
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
  if (lc__sh_lock(d->h) != 0)
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
  if (lc__sh_lock(h) != 0)
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
  if (lc__sh_lock(d->h) != 0)
    return push_lock_error(L);
  err = lc__sh_validate(d->h);
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
  lc__sh_stall_left = (uint32_t)n;
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
  /* The ABI's one source (shdict.h): constants, messages, FFI cdef. */
#define XX(name, num)                                                         \
  lua_pushinteger(L, num);                                                    \
  lua_setfield(L, -2, #name);
  LC_SHDICT_TYPES(XX)
  LC_SHDICT_OPS(XX)
#undef XX
  lua_newtable(L);
#define XX(name, num, msg)                                                    \
  lua_pushinteger(L, num);                                                    \
  lua_setfield(L, -3, #name);                                                 \
  lua_pushliteral(L, msg);                                                    \
  lua_rawseti(L, -2, num);
  LC_SHDICT_RESULTS(XX)
#undef XX
  lua_setfield(L, -2, "errors");
  lua_pushliteral(L, LC_SHDICT_CDEF);
  lua_setfield(L, -2, "cdef");
  return 1;
}
