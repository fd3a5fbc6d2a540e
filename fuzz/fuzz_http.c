/* The libFuzzer target for the HTTP request path: arbitrary bytes go into a
 * connection of the real server (runtime/http/ under lua/http.lua, on the
 * runtime's own loop), as http.inject does it: one end of a socket pair is
 * adopted by the server, the input is written at the other end, then the
 * write side is shut and the loop runs until the connection has closed.
 *
 * The server is fuzz/http_server.lua, whose handler answers in the way the
 * words of the URL ask (at once, later, streamed, big...). What comes back
 * must be a well-formed sequence of HTTP/1.1 responses (checked with
 * llhttp as a client would parse it), and the connection must close once
 * the input has ended; either failing aborts, so libFuzzer keeps the input.
 *
 * After a refused request (400, 413, 431) nothing more may be answered.
 *
 * The first byte of an input says how the rest is delivered: bits 0-1 in
 * one, two or three writes with the loop turning in between (3: one write
 * and the end of input at once, before the server has answered), bits 2-4
 * and 5-7 where the writes are cut. Built with -DFUZZ=ON (CMakeLists.txt);
 * `make fuzz` runs it. */
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <errno.h>
#include <unistd.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <lualib.h>
#include <luv.h>
#include <llhttp.h>
#include "lc.h"

/* Turns of the loop an input may take before its connection must have
 * closed: each turn moves up to 64 KiB, so the biggest answer takes
 * dozens, and a hang is caught long before libFuzzer's -timeout. */
#define MAX_TURNS 2000

static lua_State *fz_L;
static int fz_show; /* FUZZ_HTTP_SHOW=1: each response goes to stderr. */
static lc_ctx *fz_ctx;
static int fz_ref_adopt, fz_ref_busy;
static unsigned long fz_runs;

/* ---- The response checker: llhttp as the client. ---- */

typedef struct {
  llhttp_t parser;
  size_t seen;          /* Bytes of output so far. */
  int answers;          /* Responses from the handler (200, 201). */
  char field[16];       /* The header name being read (a prefix). */
  size_t flen;
  unsigned in_conn : 1; /* The value being read is Connection's. */
  unsigned conn_close : 1;
  unsigned refused : 1; /* The server refused a request (400, 413, 431). */
} checker;

static const uint8_t *fz_input;
static size_t fz_input_len;

/* Prints n bytes of s to stderr, escaped as in a C string. */
static void print_escaped(const char *s, size_t n) {
  size_t i;
  for (i = 0; i < n && i < 4096; i++) {
    unsigned char ch = (unsigned char)s[i];
    if (ch == '\r')
      fputs("\\r", stderr);
    else if (ch == '\n')
      fputs("\\n\n", stderr);
    else if (ch == '\\')
      fputs("\\\\", stderr);
    else if (ch < 0x20 || ch >= 0x7f)
      fprintf(stderr, "\\x%02x", ch);
    else
      fputc(ch, stderr);
  }
  fputs(i < n ? "...\n" : "\n", stderr);
}

/* Prints what went wrong with the input and the output, then aborts. */
static void fail(checker *k, const char *what, const char *out, size_t len) {
  fprintf(stderr, "fuzz_http: %s after %zu bytes of output\n", what,
          k ? k->seen : 0);
  fprintf(stderr, "input (%zu bytes):\n", fz_input_len);
  print_escaped((const char *)fz_input, fz_input_len);
  if (out != NULL) {
    fprintf(stderr, "output here (%zu bytes):\n", len);
    print_escaped(out, len);
  }
  abort();
}

static checker *checker_of(llhttp_t *p) {
  return (checker *)p->data;
}

static int chk_message_begin(llhttp_t *p) {
  checker *k = checker_of(p);
  k->conn_close = 0;
  k->flen = 0;
  return 0;
}

static int chk_header_field(llhttp_t *p, const char *at, size_t len) {
  checker *k = checker_of(p);
  size_t room = sizeof(k->field) - k->flen;
  memcpy(k->field + k->flen, at, len < room ? len : room);
  k->flen += len < room ? len : room;
  return 0;
}

static int chk_header_field_complete(llhttp_t *p) {
  checker *k = checker_of(p);
  k->in_conn = k->flen == 10 && strncasecmp(k->field, "connection", 10) == 0;
  k->flen = 0;
  return 0;
}

static int chk_header_value(llhttp_t *p, const char *at, size_t len) {
  checker *k = checker_of(p);
  size_t i;
  /* The server writes "Connection: close" whole, in one buffer. */
  if (k->in_conn)
    for (i = 0; i + 5 <= len; i++)
      if (strncasecmp(at + i, "close", 5) == 0)
        k->conn_close = 1;
  return 0;
}

static int chk_headers_complete(llhttp_t *p) {
  checker *k = checker_of(p);
  if (p->http_major != 1 || p->http_minor != 1)
    fail(k, "a response not in HTTP/1.1", NULL, 0);
  /* The handler answers 200 or 201; the server itself 1xx, 400, 413, 417 or
   * 431. A 500 is the handler failing on a request. */
  if (p->status_code == 500)
    fail(k, "a 500: the handler raised", NULL, 0);
  if (p->status_code == 200 || p->status_code == 201)
    k->answers++;
  /* A refused request ends the connection: nothing after it is parsed, so
   * no answer may follow (one would be a request smuggled past it). */
  if (k->refused)
    fail(k, "a response after the server refused a request", NULL, 0);
  if (p->status_code == 400 || p->status_code == 413 ||
      p->status_code == 431)
    k->refused = 1;
  /* A final response with neither length nor chunks: the server frames a
   * body that way only to end it with the connection (Connection: close).
   * On a kept connection it is the answer to HEAD, which has no body. */
  if (p->status_code >= 200 &&
      !(p->flags & (F_CONTENT_LENGTH | F_CHUNKED)) && !k->conn_close)
    return 1;
  return 0;
}

static const llhttp_settings_t checker_settings = {
  .on_message_begin = chk_message_begin,
  .on_header_field = chk_header_field,
  .on_header_value = chk_header_value,
  .on_headers_complete = chk_headers_complete,
  .on_header_field_complete = chk_header_field_complete,
};

static void checker_init(checker *k) {
  memset(k, 0, sizeof(*k));
  llhttp_init(&k->parser, HTTP_RESPONSE, &checker_settings);
  k->parser.data = k;
}

/* Checks the next len bytes of output. */
static void checker_feed(checker *k, const char *out, size_t len) {
  llhttp_errno_t err;
  if (fz_show)
    fwrite(out, 1, len, stderr);
  if (k->seen == 0 && len > 0 &&
      memcmp(out, "HTTP/1.1 ", len < 9 ? len : 9) != 0)
    fail(k, "output that is not an HTTP/1.1 response", out, len);
  err = llhttp_execute(&k->parser, out, len);
  if (err != HPE_OK) {
    char msg[160];
    snprintf(msg, sizeof(msg), "malformed response (%s: %s)",
             llhttp_errno_name(err), llhttp_get_error_reason(&k->parser));
    fail(k, msg, out, len);
  }
  k->seen += len;
}

/* ---- Driving the server. ---- */

/* Hands the server its end of the pair (a duplicate of fd). */
static void adopt(int fd) {
  lua_rawgeti(fz_L, LUA_REGISTRYINDEX, fz_ref_adopt);
  lua_pushinteger(fz_L, fd);
  if (lc_pcall(fz_L, 1, 0) != 0)
    fail(NULL, "the server did not adopt the connection", NULL, 0);
}

/* What the harness says is going on (busy() in fuzz/http_server.lua). */
typedef struct {
  int conns;      /* Connections open. */
  int pending;    /* Answers and resumes waiting for a later turn. */
  long answered;  /* Answers begun on open connections, over all runs. */
  double requests; /* Requests dispatched, over all runs. */
} state;

/* Fills st from the harness; aborts when it found a request that breaks
 * a promise. */
static void busy(state *st) {
  lua_rawgeti(fz_L, LUA_REGISTRYINDEX, fz_ref_busy);
  if (lc_pcall(fz_L, 0, 5) != 0)
    fail(NULL, "the harness raised", NULL, 0);
  st->conns = (int)lua_tointeger(fz_L, -5);
  st->pending = (int)lua_tointeger(fz_L, -4);
  st->answered = (long)lua_tointeger(fz_L, -3);
  st->requests = lua_tonumber(fz_L, -2);
  if (lua_isstring(fz_L, -1))
    fail(NULL, lua_tostring(fz_L, -1), NULL, 0);
  lua_pop(fz_L, 5);
}

/* Reads what the server wrote into the checker; returns 1 at its end of
 * output (the server closed its side). */
static int drain(int fd, checker *k) {
  static char buf[65536];
  for (;;) {
    ssize_t n = read(fd, buf, sizeof(buf));
    if (n > 0) {
      checker_feed(k, buf, (size_t)n);
      continue;
    }
    if (n == 0)
      return 1;
    if (errno == EINTR)
      continue;
    if (errno == EAGAIN || errno == EWOULDBLOCK)
      return 0;
    /* ECONNRESET: the server cut the connection with input unread. */
    return 1;
  }
}

/* One turn of the loop, without waiting, then what came out. */
static int turn(int fd, checker *k) {
  uv_run(fz_ctx->loop, UV_RUN_NOWAIT);
  return drain(fd, k);
}

/* Bytes the server has not read yet from its end (srv, still open here). */
static int unread(int srv) {
  int n = 0;
  if (ioctl(srv, FIONREAD, &n) != 0)
    return 0;
  return n;
}

/* Writes all of p; the loop turns while the socket is full. */
static void put(int fd, checker *k, const uint8_t *p, size_t len) {
  int turns = 0;
  while (len > 0) {
    ssize_t n = write(fd, p, len);
    if (n > 0) {
      p += n;
      len -= (size_t)n;
      continue;
    }
    if (n < 0 && errno == EINTR)
      continue;
    if (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK)
      return; /* The server closed: the rest goes nowhere. */
    if (turn(fd, k) || ++turns > MAX_TURNS)
      return;
  }
}

/* Turns the loop until the server is done with what it was given: it has
 * read everything (or closed), no answer waits for a later turn, and two
 * turns in a row dispatched no request and wrote nothing (a finished
 * answer resumes its connection's parser, with pipelined requests, on the
 * next turn). */
static void settle(int fd, int srv, checker *k) {
  int turns, quiet = 0;
  state st, was;
  busy(&was);
  for (turns = 0; turns < MAX_TURNS && quiet < 2; turns++) {
    size_t seen = k->seen;
    if (turn(fd, k))
      return;
    busy(&st);
    if (st.pending == 0 && (st.conns == 0 || unread(srv) == 0) &&
        st.requests == was.requests && k->seen == seen)
      quiet++;
    else
      quiet = 0;
    was = st;
  }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  checker k;
  int sv[2], mode, turns, eof = 0;
  state st, start;
  size_t cuts[3], at = 0, i, pieces;
  fz_input = data;
  fz_input_len = size;
  if (size > 0) {
    uint8_t b = data[0];
    data++;
    size--;
    mode = b & 3;
    cuts[0] = size * (((b >> 2) & 7) + 1) / 9;
    cuts[1] = size * (((b >> 5) & 7) + 1) / 9;
  } else {
    mode = 0;
    cuts[0] = cuts[1] = 0;
  }
  pieces = mode == 1 ? 2 : mode == 2 ? 3 : 1;
  if (pieces == 3 && cuts[1] < cuts[0]) {
    size_t t = cuts[0];
    cuts[0] = cuts[1];
    cuts[1] = t;
  }
  cuts[pieces - 1] = size;

  if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0,
                 sv) != 0) {
    perror("fuzz_http: socketpair");
    abort();
  }
  checker_init(&k);
  busy(&start);
  adopt(sv[0]);
  for (i = 0; i < pieces; i++) {
    put(sv[1], &k, data + at, cuts[i] - at);
    at = cuts[i];
    if (mode != 3)
      settle(sv[1], sv[0], &k);
  }
  /* The end of input: the server sees EOF and must close. */
  close(sv[0]);
  shutdown(sv[1], SHUT_WR);
  for (turns = 0; turns < MAX_TURNS; turns++) {
    if (!eof)
      eof = turn(sv[1], &k);
    else
      uv_run(fz_ctx->loop, UV_RUN_NOWAIT);
    if (eof) {
      busy(&st);
      if (st.conns == 0 && st.pending == 0)
        break;
    }
  }
  if (turns == MAX_TURNS)
    fail(&k, eof ? "the connection closed but work is left"
                 : "the connection did not close after the input ended",
         NULL, 0);
  /* Every answer begun on an open connection reached the client. */
  if (k.answers != st.answered - start.answered) {
    char msg[96];
    snprintf(msg, sizeof(msg), "%ld answers begun, %d received",
             st.answered - start.answered, k.answers);
    fail(&k, msg, NULL, 0);
  }
  close(sv[1]);
  /* Collect now and then, so that each run starts from a like heap. */
  if (++fz_runs % 1000 == 0)
    lua_gc(fz_L, LUA_GCCOLLECT, 0);
  return 0;
}

/* ---- Start-up, as runtime/main.c does it. ---- */

static int pinit(lua_State *L) {
  lc_open(L);
  lua_createtable(L, 2, 0); /* Stack: init, init.main, argv. */
  lua_pushliteral(L, "fuzz_http");
  lua_rawseti(L, -2, 1);
  lua_pushliteral(L, LUACLUSTER_SOURCE_DIR "/fuzz/http_server.lua");
  lua_rawseti(L, -2, 2);
  return 3;
}

/* The state's memory comes from malloc rather than LuaJIT's own mmap'd
 * arenas: ASan then knows the bounds of every Lua string and userdata C
 * reads or writes, and LeakSanitizer sees the pointers to C memory that
 * Lua objects hold. */
static void *fz_alloc(void *ud, void *ptr, size_t osize, size_t nsize) {
  (void)ud;
  (void)osize;
  if (nsize == 0) {
    free(ptr);
    return NULL;
  }
  return realloc(ptr, nsize);
}

/* LeakSanitizer reads LuaJIT's tagged references (a type in a pointer's
 * high bits) as no pointers, so it takes live Lua objects for leaks: the
 * Lua heap is left to Lua's own collector, and C's allocations are still
 * checked. */
const char *__lsan_default_suppressions(void);
const char *__lsan_default_suppressions(void) {
  return "leak:lj_mem_\nleak:lj_alloc\n";
}

int LLVMFuzzerInitialize(int *argc, char ***argv) {
  const char *show = getenv("FUZZ_HTTP_SHOW");
  (void)argc;
  (void)argv;
  fz_show = show != NULL && *show != '\0' && *show != '0';
  signal(SIGPIPE, SIG_IGN);
  fz_L = lua_newstate(fz_alloc, NULL);
  if (fz_L == NULL) {
    fprintf(stderr, "fuzz_http: cannot create the Lua state\n");
    exit(1);
  }
  fz_ctx = lc_get(fz_L);
  lua_pushcfunction(fz_L, pinit);
  if (lua_pcall(fz_L, 0, 3, 0) != 0) {
    fprintf(stderr, "fuzz_http: %s\n", lua_tostring(fz_L, -1));
    exit(1);
  }
  /* Stack: init, init.main, argv. The script returns the harness. */
  if (lc_pcall(fz_L, 1, 1) != 0 || !lua_istable(fz_L, -1)) {
    fprintf(stderr, "fuzz_http: fuzz/http_server.lua gave no harness\n");
    exit(1);
  }
  lua_getfield(fz_L, -1, "adopt");
  fz_ref_adopt = luaL_ref(fz_L, LUA_REGISTRYINDEX);
  lua_getfield(fz_L, -1, "busy");
  fz_ref_busy = luaL_ref(fz_L, LUA_REGISTRYINDEX);
  lua_settop(fz_L, 0);
  return 0;
}
