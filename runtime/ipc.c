/* `_ipc`: the channel between a primary and its workers (sockets
 * themselves are runtime/tcp.c's and runtime/unix.c's, descriptors
 * runtime/fd.c's).
 *
 * The channel is a Unix socket pair. Messages travel as frames:
 *   u32 length (little-endian, of what follows), u8 flags, payload
 * flags: IPC_INTERNAL (a control message, kept apart from user messages),
 * IPC_HANDLE (a socket rides along, passed with SCM_RIGHTS by uv_write2).
 * The payload is a Lua value in runtime/codec.c's binary form, so numbers
 * round-trip bit for bit and decoding builds tables at their final size. Frames
 * written during one turn of the loop leave in one write just before the loop
 * polls again (a prepare handle), whatever their number. */
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/select.h>
#include <unistd.h>
#include "lc.h"
#include "buf.h"
#include "codec.h"
#include "fd.h"
#include "unix.h"

#define IPC_INTERNAL 1
#define IPC_HANDLE 2
#define IPC_MAX_FRAME (1u << 30)
#define IPC_READ_CHUNK 65536

/* ---- Channel ------------------------------------------------------------ */

#define IPC_CHANNEL "lc.ipc.channel"

typedef struct ipc_chan {
  uv_pipe_t pipe;
  uv_prepare_t flusher; /* Runs the batched write before the loop polls. */
  lua_State *L;
  int ref_self; /* Pins the userdata while the channel is open. */
  int ref_cb;   /* on_event(kind, value, fd) */
  lc_buf in;    /* Bytes read, from in_pos on not yet parsed. */
  size_t in_pos;
  lc_buf out;              /* Frames waiting for the next flush. */
  int closing;             /* close() called or EOF seen: no more events. */
  int shutting;            /* close() waits for pending writes. */
  int bad;                 /* A malformed frame arrived: the channel ends. */
  int handles;             /* Open uv handles of this struct (pipe, flusher). */
  struct ipc_chan **owner; /* The userdata's pointer, wiped when freed. */
} ipc_chan;

/* A write in flight: owns its bytes, and optionally a Lua callback and a
 * temporary handle for a passed socket. */
typedef struct {
  uv_write_t req;
  ipc_chan *ch;
  char *data;
  int ref_cb;
  uv_stream_t *send_handle;
} ipc_write;

/* What on_event(kind, ...) is told; exported as _ipc.EV_* so the Lua
 * side (cluster/utils.lua) never keeps its own copy. */
#define IPC_EVENT_MAP(XX)                                                      \
  XX(MESSAGE, 0)  /* (value, fd|false): a user message. */                     \
  XX(INTERNAL, 1) /* (value, fd|false): a control message. */                  \
  XX(CLOSE, 2)    /* (): the channel closed. */                                \
  XX(ERROR, 3)    /* (text): the channel failed. */                            \
  XX(BATCH, 4)    /* (batch, n): n frames {kind, value, fd|false, ...}. */     \
  XX(RESUME, 5)   /* (): go on with the batch a raising handler cut. */

enum {
#define XX(name, num) EV_##name = num,
  IPC_EVENT_MAP(XX)
#undef XX
};

/* Frames delivered to Lua per call. */
#define IPC_BATCH 256

static void chan_handle_closed(uv_handle_t *h) {
  ipc_chan *ch = (ipc_chan *)h->data;
  if (--ch->handles > 0)
    return;
  free(ch->in.base);
  free(ch->out.base);
  if (ch->owner)
    *ch->owner = NULL;
  free(ch);
}

static void tmp_closed(uv_handle_t *h) { free(h); }

/* Calls on_event(kind[, value][, fd]); value/fd are on the stack (nargs). */
static void chan_emit(ipc_chan *ch, int kind, int nargs) {
  lua_State *L = ch->L;
  lua_rawgeti(L, LUA_REGISTRYINDEX, ch->ref_cb);
  lua_pushinteger(L, kind);
  if (nargs > 0) {
    lua_insert(L, -2 - nargs);
    lua_insert(L, -2 - nargs);
  }
  lc_pcall(L, nargs + 1, 0);
}

static void chan_error(ipc_chan *ch, const char *msg) {
  lua_pushstring(ch->L, msg);
  chan_emit(ch, EV_ERROR, 1);
}

/* Closes the channel now (no flush), and reports EV_CLOSE once. */
static void chan_close_now(ipc_chan *ch) {
  lua_State *L = ch->L;
  int was_closing = ch->closing;
  if (uv_is_closing((uv_handle_t *)&ch->pipe))
    return;
  ch->closing = 1;
  uv_close((uv_handle_t *)&ch->pipe, chan_handle_closed);
  uv_close((uv_handle_t *)&ch->flusher, chan_handle_closed);
  if (!was_closing || ch->shutting)
    chan_emit(ch, EV_CLOSE, 0);
  luaL_unref(L, LUA_REGISTRYINDEX, ch->ref_cb);
  luaL_unref(L, LUA_REGISTRYINDEX, ch->ref_self);
  ch->ref_cb = ch->ref_self = LUA_NOREF;
}

static void write_done(uv_write_t *req, int status) {
  ipc_write *w = (ipc_write *)req;
  ipc_chan *ch = w->ch;
  lua_State *L = ch->L;
  free(w->data);
  if (w->send_handle)
    uv_close((uv_handle_t *)w->send_handle, tmp_closed);
  if (w->ref_cb != LUA_NOREF) {
    lua_rawgeti(L, LUA_REGISTRYINDEX, w->ref_cb);
    luaL_unref(L, LUA_REGISTRYINDEX, w->ref_cb);
    if (status < 0 && status != UV_ECANCELED) {
      lua_pushstring(L, uv_strerror(status));
    } else if (status == UV_ECANCELED) {
      lua_pushliteral(L, "channel closed");
    } else {
      lua_pushnil(L);
    }
    lc_pcall(L, 1, 0);
  }
  free(w);
}

/* Writes what out holds: as much as the socket takes at once, the rest
 * through a queued write. ref_cb (or LUA_NOREF) runs once all is written.
 * send_handle, when given, rides along with the whole buffer. */
static int chan_write(ipc_chan *ch, int ref_cb, uv_stream_t *send_handle) {
  ipc_write *w;
  uv_buf_t buf;
  size_t off = 0;
  int rc;
  if (send_handle == NULL && ch->out.len > 0 &&
      uv_stream_get_write_queue_size((uv_stream_t *)&ch->pipe) == 0) {
    buf = uv_buf_init(ch->out.base, (unsigned)ch->out.len);
    rc = uv_try_write((uv_stream_t *)&ch->pipe, &buf, 1);
    if (rc > 0)
      off = (size_t)rc;
  }
  if (off == ch->out.len && send_handle == NULL) {
    ch->out.len = 0;
    if (ref_cb != LUA_NOREF) {
      /* Written already: call back on a write of nothing, in order. */
      w = lc__xmalloc(sizeof(*w));
      memset(w, 0, sizeof(*w));
      w->ch = ch;
      w->ref_cb = ref_cb;
      buf = uv_buf_init(NULL, 0);
      rc = uv_write(&w->req, (uv_stream_t *)&ch->pipe, &buf, 1, write_done);
      if (rc < 0)
        write_done(&w->req, rc);
    }
    return 0;
  }
  w = lc__xmalloc(sizeof(*w));
  memset(w, 0, sizeof(*w));
  w->ch = ch;
  w->ref_cb = ref_cb;
  w->send_handle = send_handle;
  /* The write owns the bytes left; out starts afresh. */
  if (off == 0) {
    w->data = ch->out.base;
    ch->out.base = NULL;
    ch->out.cap = 0;
  } else {
    w->data = lc__xmalloc(ch->out.len - off);
    memcpy(w->data, ch->out.base + off, ch->out.len - off);
  }
  buf = uv_buf_init(w->data, (unsigned)(ch->out.len - off));
  ch->out.len = 0;
  if (send_handle)
    rc = uv_write2(&w->req, (uv_stream_t *)&ch->pipe, &buf, 1,
                   send_handle, write_done);
  else
    rc = uv_write(&w->req, (uv_stream_t *)&ch->pipe, &buf, 1, write_done);
  if (rc < 0) {
    write_done(&w->req, rc);
    return rc;
  }
  return 0;
}

static void flusher_cb(uv_prepare_t *p) {
  ipc_chan *ch = (ipc_chan *)p->data;
  uv_prepare_stop(p);
  if (!ch->closing && ch->out.len > 0)
    chan_write(ch, LUA_NOREF, NULL);
}

static void shutdown_done(uv_shutdown_t *req, int status) {
  ipc_chan *ch = (ipc_chan *)req->data;
  (void)status;
  free(req);
  chan_close_now(ch);
}

static void chan_alloc(uv_handle_t *h, size_t hint, uv_buf_t *buf) {
  ipc_chan *ch = (ipc_chan *)h->data;
  (void)hint;
  /* Parsed bytes go; what is left moves to the front. */
  if (ch->in_pos > 0) {
    memmove(ch->in.base, ch->in.base + ch->in_pos, ch->in.len - ch->in_pos);
    ch->in.len -= ch->in_pos;
    ch->in_pos = 0;
  }
  buf_reserve(&ch->in, IPC_READ_CHUNK);
  /* A frame known to be large: room for all of it in one read. */
  if (ch->in.len >= 4) {
    size_t need = 4 + (size_t)lc_get_u32le(ch->in.base);
    if (need > ch->in.len && need <= IPC_MAX_FRAME + 4)
      buf_reserve(&ch->in, need - ch->in.len);
  }
  *buf = uv_buf_init(ch->in.base + ch->in.len,
                     (unsigned)(ch->in.cap - ch->in.len));
}

/* Takes the socket passed with a frame (TCP or a Unix socket): returns a
 * new fd, or -1. */
static int chan_take_handle(ipc_chan *ch) {
  union uv_any_handle *t;
  uv_handle_type type;
  uv_os_fd_t fd;
  int dupfd = -1, err;
  if (uv_pipe_pending_count(&ch->pipe) == 0)
    return -1;
  type = uv_pipe_pending_type(&ch->pipe);
  if (type != UV_TCP && type != UV_NAMED_PIPE)
    return -1;
  t = lc__xmalloc(sizeof(*t));
  err = type == UV_TCP ? uv_tcp_init(ch->pipe.loop, &t->tcp)
                       : uv_pipe_init(ch->pipe.loop, &t->pipe, 0);
  if (err != 0) {
    free(t);
    return -1;
  }
  if (uv_accept((uv_stream_t *)&ch->pipe, &t->stream) == 0 &&
      uv_fileno(&t->handle, &fd) == 0)
    dupfd = lc__fd_dup(fd);
  uv_close(&t->handle, tmp_closed);
  return dupfd;
}

/* A handle of the socket fd's kind (a uv_pipe_t on a Unix socket, else a
 * uv_tcp_t) opened on a duplicate of fd, to ride along a write; NULL when
 * fd cannot be. Freed by tmp_closed. */
static uv_stream_t *send_handle_of(uv_loop_t *loop, int fd) {
  union uv_any_handle *t;
  int pipe = lc__unix_is(fd), dupfd, err;
  if (pipe < 0)
    return NULL;
  dupfd = lc__fd_dup(fd);
  if (dupfd < 0)
    return NULL;
  t = lc__xmalloc(sizeof(*t));
  err = pipe ? uv_pipe_init(loop, &t->pipe, 0) : uv_tcp_init(loop, &t->tcp);
  if (err != 0) {
    close(dupfd);
    free(t);
    return NULL;
  }
  err = pipe ? uv_pipe_open(&t->pipe, dupfd) : uv_tcp_open(&t->tcp, dupfd);
  if (err != 0) {
    close(dupfd);
    uv_close(&t->handle, tmp_closed);
    return NULL;
  }
  return &t->stream;
}

/* Delivers the complete frames in the read buffer to Lua in batches: up
 * to IPC_BATCH frames decoded into one table {kind, value, fd|false, ...}
 * and one on_event(EV_BATCH, batch, n) call, so the Lua side walks them in
 * a loop the JIT compiles, rather than being entered from C per message.
 * All under one protected call (as Node emits every message of a read
 * before its nextTick queue runs). Upvalue: the channel. Sets ch->bad on a
 * malformed frame. A raising handler ends the call; chan_read has the Lua
 * side finish its batch (EV_RESUME) and delivers the frames after it. */
static int chan_deliver(lua_State *L) {
  ipc_chan *ch = (ipc_chan *)lua_touserdata(L, lua_upvalueindex(1));
  while (!ch->closing && !ch->bad && ch->in.len - ch->in_pos >= 5) {
    int n = 0, batch, ready = 0;
    size_t at = ch->in_pos;
    /* Complete frames waiting (up to a batch): the table's size. */
    while (ready < IPC_BATCH && ch->in.len - at >= 4) {
      size_t flen = (size_t)lc_get_u32le(ch->in.base + at);
      if (ch->in.len - at < 4 + flen)
        break;
      at += 4 + flen;
      ready++;
    }
    lua_rawgeti(L, LUA_REGISTRYINDEX, ch->ref_cb);
    lua_pushinteger(L, EV_BATCH);
    lua_createtable(L, 3 * (ready > 0 ? ready : 1), 0);
    batch = lua_gettop(L);
    while (n < IPC_BATCH && ch->in.len - ch->in_pos >= 5) {
      const char *p = ch->in.base + ch->in_pos;
      uint32_t len = lc_get_u32le(p);
      unsigned flags;
      size_t used;
      int fd = -1;
      if (len == 0 || len > IPC_MAX_FRAME) {
        ch->bad = 1;
        break;
      }
      if (ch->in.len - ch->in_pos < 4 + (size_t)len)
        break;
      flags = (unsigned char)p[4];
      ch->in_pos += 4 + (size_t)len;
      if (flags & IPC_HANDLE)
        fd = chan_take_handle(ch);
      used = lc_codec_get(L, p + 5, p + 4 + len);
      if (used != len - 1) {
        if (used > 0)
          lua_pop(L, 1);
        lua_settop(L, batch);
        if (fd >= 0)
          close(fd);
        ch->bad = 1;
        break;
      }
      lua_rawseti(L, batch, 3 * n + 2);
      lua_pushinteger(L, (flags & IPC_INTERNAL) ? EV_INTERNAL : EV_MESSAGE);
      lua_rawseti(L, batch, 3 * n + 1);
      if (fd >= 0)
        lua_pushinteger(L, fd);
      else
        lua_pushboolean(L, 0);
      lua_rawseti(L, batch, 3 * n + 3);
      n++;
    }
    if (n == 0) {
      lua_settop(L, batch - 3);
      break; /* An incomplete frame, or a bad one. */
    }
    lua_pushinteger(L, n);
    lua_call(L, 3, 0);
  }
  return 0;
}

static void chan_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf) {
  ipc_chan *ch = (ipc_chan *)s->data;
  lua_State *L = ch->L;
  (void)buf;
  if (nread < 0) {
    chan_close_now(ch);
    return;
  }
  ch->in.len += (size_t)nread;
  while (!ch->closing && !ch->bad && ch->in.len - ch->in_pos >= 5) {
    size_t before = ch->in_pos;
    lua_pushlightuserdata(L, ch);
    lua_pushcclosure(L, chan_deliver, 1);
    if (lc_pcall(L, 0, 0) != 0) {
      /* A handler raised (and the policy let us go on): the messages of
       * its batch after it still run, in order. */
      do {
        if (ch->closing)
          break;
        lua_rawgeti(L, LUA_REGISTRYINDEX, ch->ref_cb);
        lua_pushinteger(L, EV_RESUME);
      } while (lc_pcall(L, 1, 0) != 0);
    }
    if (ch->in_pos == before)
      break; /* An incomplete frame: wait for more bytes. */
  }
  if (ch->bad && !ch->closing) {
    chan_error(ch, "bad frame on the IPC channel (garbage written to it?)");
    chan_close_now(ch);
    return;
  }
  if (ch->in_pos == ch->in.len) {
    ch->in.len = ch->in_pos = 0;
    /* Let a buffer grown for a large message go. */
    if (ch->in.cap > 4 * IPC_READ_CHUNK) {
      free(ch->in.base);
      ch->in.base = NULL;
      ch->in.cap = 0;
    }
  }
}

/* The channel at argument 1. Methods hold the metatable as upvalue 1, so
 * the check is a pointer comparison (luaL_checkudata would look the name up
 * in the registry on every send). */
static ipc_chan *check_chan(lua_State *L) {
  ipc_chan **pp = (ipc_chan **)lua_touserdata(L, 1);
  int ok = pp != NULL && lua_getmetatable(L, 1);
  if (ok) {
    ok = lua_rawequal(L, -1, lua_upvalueindex(1));
    lua_pop(L, 1);
  }
  if (!ok)
    luaL_typerror(L, 1, IPC_CHANNEL);
  if (*pp == NULL || (*pp)->closing)
    luaL_error(L, "IPC channel is closed");
  return *pp;
}

/* _ipc.channel(fd, on_event) -> channel. Takes ownership of fd. on_event
 * (kind, value, fd): kind 0 a user message, 1 a control message (fd: a
 * passed socket, owned by the callee), 2 closed, 3 error (value: text). */
static int ipc_channel(lua_State *L) {
  int fd = (int)luaL_checkinteger(L, 1);
  ipc_chan *ch, **pp;
  int rc;
  luaL_checktype(L, 2, LUA_TFUNCTION);
  ch = calloc(1, sizeof(*ch));
  if (ch == NULL)
    return luaL_error(L, "out of memory");
  uv_pipe_init(lc_get(L)->loop, &ch->pipe, 1);
  rc = uv_pipe_open(&ch->pipe, fd);
  if (rc < 0) {
    ch->handles = 1;
    uv_close((uv_handle_t *)&ch->pipe, chan_handle_closed);
    return lc_push_uverr(L, rc);
  }
  uv_prepare_init(lc_get(L)->loop, &ch->flusher);
  ch->pipe.data = ch->flusher.data = ch;
  ch->handles = 2;
  /* Events are delivered on the main state: L may be a coroutine's, which
   * may be dead by then. */
  ch->L = lc_get(L)->L;
  pp = (ipc_chan **)lua_newuserdata(L, sizeof(*pp));
  *pp = ch;
  ch->owner = pp;
  luaL_getmetatable(L, IPC_CHANNEL);
  lua_setmetatable(L, -2);
  lua_pushvalue(L, -1);
  ch->ref_self = luaL_ref(L, LUA_REGISTRYINDEX);
  lua_pushvalue(L, 2);
  ch->ref_cb = luaL_ref(L, LUA_REGISTRYINDEX);
  uv_read_start((uv_stream_t *)&ch->pipe, chan_alloc, chan_read);
  return 1;
}

/* channel:send(internal, value[, fd][, cb]) -> true, or false when value
 * cannot be sent. fd: a socket to pass along (duplicated: the caller keeps
 * its own). cb(err): once written. */
static int chan_send(lua_State *L) {
  ipc_chan *ch = check_chan(L);
  int internal = lua_toboolean(L, 2);
  int fd = (int)luaL_optinteger(L, 4, -1);
  size_t start = ch->out.len;
  int ref_cb = LUA_NOREF;
  uv_stream_t *t = NULL;
  luaL_checkany(L, 3);
  if (!lua_isnoneornil(L, 5))
    luaL_checktype(L, 5, LUA_TFUNCTION); /* Before anything is queued. */
  buf_u32le(&ch->out, 0);
  buf_byte(&ch->out, (unsigned char)((internal ? IPC_INTERNAL : 0) |
                                     (fd >= 0 ? IPC_HANDLE : 0)));
  if (!lc_codec_put(L, &ch->out, 3)) {
    ch->out.len = start;
    lua_pushboolean(L, 0);
    return 1;
  }
  lc_set_u32le(ch->out.base + start, (uint32_t)(ch->out.len - start - 4));
  if (!lua_isnoneornil(L, 5)) {
    lua_pushvalue(L, 5);
    ref_cb = luaL_ref(L, LUA_REGISTRYINDEX);
  }
  if (fd >= 0)
    t = send_handle_of(ch->pipe.loop, fd);
  if (t != NULL || ref_cb != LUA_NOREF) {
    /* Frames before it first, then this one with its socket. */
    if (t != NULL && start > 0) {
      size_t total = ch->out.len;
      char *frame = lc__xmalloc(total - start);
      memcpy(frame, ch->out.base + start, total - start);
      ch->out.len = start;
      chan_write(ch, LUA_NOREF, NULL);
      buf_add(&ch->out, frame, total - start);
      free(frame);
    }
    chan_write(ch, ref_cb, t);
  } else if (ch->out.len >= IPC_READ_CHUNK) {
    /* A burst: let the reader start on it while we go on encoding. */
    chan_write(ch, LUA_NOREF, NULL);
  } else if (!uv_is_active((uv_handle_t *)&ch->flusher)) {
    uv_prepare_start(&ch->flusher, flusher_cb);
  }
  lua_pushboolean(L, 1);
  return 1;
}

/* channel:flush(): writes what is queued now, blocking at most until the
 * socket takes it (for process.exit). */
static int chan_flush(lua_State *L) {
  ipc_chan *ch = check_chan(L);
  size_t off = 0;
  int fd = -1;
  uv_fileno((uv_handle_t *)&ch->pipe, &fd);
  if (uv_stream_get_write_queue_size((uv_stream_t *)&ch->pipe) > 0) {
    /* Queued writes must go first: let libuv finish them. */
    chan_write(ch, LUA_NOREF, NULL);
    return 0;
  }
  while (off < ch->out.len && fd >= 0) {
    ssize_t n = write(fd, ch->out.base + off, ch->out.len - off);
    if (n < 0 && errno == EINTR)
      continue;
    if (n < 0 && errno == EAGAIN) {
      fd_set w;
      FD_ZERO(&w);
      FD_SET(fd, &w);
      select(fd + 1, NULL, &w, NULL, NULL);
      continue;
    }
    if (n <= 0)
      break;
    off += (size_t)n;
  }
  ch->out.len = 0;
  return 0;
}

/* channel:close(): closes once queued frames are written; EV_CLOSE then. */
static int chan_close(lua_State *L) {
  ipc_chan *ch = check_chan(L);
  uv_shutdown_t *req;
  if (ch->out.len > 0)
    chan_write(ch, LUA_NOREF, NULL);
  ch->closing = 1;
  ch->shutting = 1;
  uv_read_stop((uv_stream_t *)&ch->pipe);
  req = lc__xmalloc(sizeof(*req));
  req->data = ch;
  if (uv_shutdown(req, (uv_stream_t *)&ch->pipe, shutdown_done) < 0) {
    free(req);
    chan_close_now(ch);
  }
  return 0;
}

/* channel:ref(bool): whether the channel alone keeps the loop alive. */
static int chan_ref(lua_State *L) {
  ipc_chan *ch = check_chan(L);
  if (lua_toboolean(L, 2))
    uv_ref((uv_handle_t *)&ch->pipe);
  else
    uv_unref((uv_handle_t *)&ch->pipe);
  return 0;
}

static int chan_gc(lua_State *L) {
  ipc_chan **pp = (ipc_chan **)lua_touserdata(L, 1);
  /* An open channel pins its userdata: here it is closed or closing. */
  if (*pp)
    (*pp)->owner = NULL;
  return 0;
}

/* _ipc.cloexec(fd): keeps fd from leaking into programs this process
 * spawns (a worker's channel must close when the worker dies). */
static int ipc_cloexec(lua_State *L) {
  int err = lc__fd_cloexec((int)luaL_checkinteger(L, 1));
  if (err < 0)
    return lc_push_uverr(L, err);
  lua_pushboolean(L, 1);
  return 1;
}

/* _ipc.socketpair() -> fd for this side (close-on-exec), fd for the child
 * (given to it as fd 3 by spawn; close it here after spawning). */
static int ipc_socketpair(lua_State *L) {
  int sv[2], err = lc__fd_socketpair(sv);
  if (err < 0)
    return lc_push_uverr(L, err);
  lua_pushinteger(L, sv[0]);
  lua_pushinteger(L, sv[1]);
  return 2;
}

int luaopen_lc_ipc(lua_State *L) {
  static const luaL_Reg fns[] = {{"cloexec", ipc_cloexec},
                                 {"socketpair", ipc_socketpair},
                                 {"channel", ipc_channel},
                                 {NULL, NULL}};
  static const luaL_Reg methods[] = {{"send", chan_send},
                                     {"flush", chan_flush},
                                     {"close", chan_close},
                                     {"ref", chan_ref},
                                     {NULL, NULL}};
  if (luaL_newmetatable(L, IPC_CHANNEL)) {
    const luaL_Reg *m;
    lua_newtable(L);
    for (m = methods; m->name; m++) {
      lua_pushvalue(L, -2);
      lua_pushcclosure(L, m->func, 1);
      lua_setfield(L, -2, m->name);
    }
    lua_setfield(L, -2, "__index");
    lua_pushcfunction(L, chan_gc);
    lua_setfield(L, -2, "__gc");
  }
  lua_pop(L, 1);
  lua_newtable(L);
  luaL_register(L, NULL, fns);
#define XX(name, num)                                                          \
  lua_pushinteger(L, num);                                                     \
  lua_setfield(L, -2, "EV_" #name);
  IPC_EVENT_MAP(XX)
#undef XX
  return 1;
}
