/* The HTTP/1.1 server's hot path: libuv reads, llhttp parses, C builds each
 * request and calls one Lua function per request; responses are buffered
 * here and written with uv_try_write, queueing only what the socket did not
 * take. lua/http.lua holds the Node-shaped API over this module (`_http`).
 *
 * Ownership, in short:
 * - http_server is malloc'd; its Lua box (userdata) points to it. While it
 *   serves (listening or adopting connections) a registry ref pins the box.
 *   The struct is freed once the box was collected and its libuv handles
 *   (listener, timer, idle) are all closed, in the last close callback.
 * - http_conn is malloc'd per connection and freed in its close callback.
 *   Its Lua side (a box userdata and an env table {socket, req, res}) is
 *   made on first need and pinned by refs until then.
 * - Only one response per connection is in flight: after a request whose
 *   response is not finished, llhttp is paused and the bytes that follow
 *   (pipelined requests) wait in conn->in. So answers leave in order. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <llhttp.h>
#include "lc.h"
#include "tcp.h"

#define SERVER_MT "lc.http.server"
#define CONN_MT "lc.http.conn"

#define READ_BUF_SIZE 65536
/* Pipelined input kept while a response is in flight; past it, reading
 * stops until the parser catches up. */
#define INPUT_LIMIT (256 * 1024)

/* ---- Tables built from X-macros. ---- */

/* Node's http.STATUS_CODES. */
#define HTTP_REASON_MAP(XX)                                                   \
  XX(100, "Continue") XX(101, "Switching Protocols") XX(102, "Processing")    \
  XX(103, "Early Hints") XX(200, "OK") XX(201, "Created")                     \
  XX(202, "Accepted") XX(203, "Non-Authoritative Information")                \
  XX(204, "No Content") XX(205, "Reset Content") XX(206, "Partial Content")   \
  XX(207, "Multi-Status") XX(208, "Already Reported") XX(226, "IM Used")      \
  XX(300, "Multiple Choices") XX(301, "Moved Permanently") XX(302, "Found")   \
  XX(303, "See Other") XX(304, "Not Modified") XX(305, "Use Proxy")           \
  XX(307, "Temporary Redirect") XX(308, "Permanent Redirect")                 \
  XX(400, "Bad Request") XX(401, "Unauthorized")                              \
  XX(402, "Payment Required") XX(403, "Forbidden") XX(404, "Not Found")       \
  XX(405, "Method Not Allowed") XX(406, "Not Acceptable")                     \
  XX(407, "Proxy Authentication Required") XX(408, "Request Timeout")         \
  XX(409, "Conflict") XX(410, "Gone") XX(411, "Length Required")              \
  XX(412, "Precondition Failed") XX(413, "Payload Too Large")                 \
  XX(414, "URI Too Long") XX(415, "Unsupported Media Type")                   \
  XX(416, "Range Not Satisfiable") XX(417, "Expectation Failed")              \
  XX(418, "I'm a Teapot") XX(421, "Misdirected Request")                      \
  XX(422, "Unprocessable Entity") XX(423, "Locked")                           \
  XX(424, "Failed Dependency") XX(425, "Too Early")                           \
  XX(426, "Upgrade Required") XX(428, "Precondition Required")                \
  XX(429, "Too Many Requests") XX(431, "Request Header Fields Too Large")     \
  XX(451, "Unavailable For Legal Reasons") XX(500, "Internal Server Error")   \
  XX(501, "Not Implemented") XX(502, "Bad Gateway")                           \
  XX(503, "Service Unavailable") XX(504, "Gateway Timeout")                   \
  XX(505, "HTTP Version Not Supported") XX(506, "Variant Also Negotiates")    \
  XX(507, "Insufficient Storage") XX(508, "Loop Detected")                    \
  XX(509, "Bandwidth Limit Exceeded") XX(510, "Not Extended")                 \
  XX(511, "Network Authentication Required")

/* The Lua functions and classes a server calls, by field of the table
 * given to _http.server(). */
#define HTTP_CALLBACK_MAP(XX)                                                 \
  XX(DISPATCH, "dispatch")     /* (method, url, version, head, socket,     \
                                  complete, conn, env): one per request. */ \
  XX(DATA, "data")             /* (req, chunk): a piece of request body. */   \
  XX(END, "end")               /* (req): the body is complete. */             \
  XX(DRAIN, "drain")           /* (res): the write queue emptied. */          \
  XX(ABORT, "abort")           /* (req|nil, res|nil): closed mid-request. */  \
  XX(CONNECTION, "connection") /* (socket): a new connection. */              \
  XX(CLOSE, "close")           /* (): the server is fully closed. */          \
  XX(SOCK_MT, "Socket")

enum {
#define XX(name, field) CB_##name,
  HTTP_CALLBACK_MAP(XX)
#undef XX
  CB_MAX
};

static const char *const cb_fields[] = {
#define XX(name, field) field,
  HTTP_CALLBACK_MAP(XX)
#undef XX
};

/* Strings the hot path pushes, interned once per server in a key table
 * (lua_pushstring would look each up in the string table per use). */
#define HTTP_KEY_MAP(XX) XX(V10, "1.0") XX(V11, "1.1")

enum {
  KEY_NONE,
#define XX(name, str) KEY_##name,
  HTTP_KEY_MAP(XX)
#undef XX
  KEY_MAX
};

/* keys[KEY_METHODS + m] is the name of llhttp method m. */
#define KEY_METHODS 64

/* Slots of a connection's env table. */
enum { ENV_SOCKET = 1, ENV_REQ = 2, ENV_RES = 3 };

/* How a response body is framed on the wire. */
enum { FRAME_NONE, FRAME_LENGTH, FRAME_CHUNKED, FRAME_RAW };

/* ---- Buffers. ---- */

typedef struct {
  char *base;
  size_t len;
  size_t cap;
} lc_buf;

/* Makes room for extra more bytes; aborts when memory is exhausted (there
 * is no sane way on for a server that cannot grow a buffer). */
static void buf_reserve(lc_buf *b, size_t extra) {
  size_t need = b->len + extra;
  if (need <= b->cap)
    return;
  {
    size_t cap = b->cap ? b->cap : 1024;
    char *p;
    while (cap < need)
      cap *= 2;
    p = (char *)realloc(b->base, cap);
    if (p == NULL) {
      fprintf(stderr, "luacluster: out of memory\n");
      abort();
    }
    b->base = p;
    b->cap = cap;
  }
}

static void buf_add(lc_buf *b, const char *p, size_t n) {
  if (n == 0)
    return;
  buf_reserve(b, n);
  memcpy(b->base + b->len, p, n);
  b->len += n;
}

#define buf_lit(b, s) buf_add((b), (s), sizeof(s) - 1)

static void buf_uint(lc_buf *b, uint64_t v) {
  char tmp[24];
  int i = sizeof(tmp);
  do {
    tmp[--i] = (char)('0' + v % 10);
    v /= 10;
  } while (v > 0);
  buf_add(b, tmp + i, sizeof(tmp) - (size_t)i);
}

static void buf_hex(lc_buf *b, size_t v) {
  static const char digits[] = "0123456789abcdef";
  char tmp[20];
  int i = sizeof(tmp);
  do {
    tmp[--i] = digits[v & 15];
    v >>= 4;
  } while (v > 0);
  buf_add(b, tmp + i, sizeof(tmp) - (size_t)i);
}

static void buf_free(lc_buf *b) {
  free(b->base);
  b->base = NULL;
  b->len = b->cap = 0;
}

/* ---- Structures. ---- */

typedef struct http_conn http_conn;

/* One header of the request being parsed: offsets into conn->head. */
typedef struct {
  uint32_t name, nlen, value, vlen;
} http_hdr;

typedef struct http_server {
  lua_State *L;
  lc_ctx *ctx;
  uv_loop_t *loop;
  uv_tcp_t listener;
  uv_timer_t timer;  /* Scans connections for timeouts. */
  uv_idle_t idle;    /* Resumes paused parsers outside of user calls. */
  int refs[CB_MAX];
  int ref_keys;      /* The key table (HTTP_KEY_MAP, methods). */
  int ref_self;      /* Pins the box while serving. */
  int open_handles;  /* Initialised handles not yet closed. */
  unsigned box_gone : 1;
  unsigned serving : 1;   /* Pinned; listening or adopting. */
  unsigned listening : 1; /* The listener handle is open. */
  unsigned closing : 1;   /* close() was called. */
  unsigned draining : 1;  /* ... as a drain: idle connections stay. */
  unsigned unref : 1;     /* The listener does not keep the loop alive. */
  unsigned emit_connection : 1;
  unsigned rbuf_busy : 1;
  /* Limits (milliseconds for times; 0 disables). */
  size_t max_header;
  size_t hwm;
  uint64_t headers_timeout, request_timeout, keepalive_timeout;
  char ka_header[96]; /* "Connection: keep-alive\r\nKeep-Alive: ...\r\n" */
  size_t ka_len;
  char date[48]; /* "Date: ...\r\n", refreshed each second. */
  size_t date_len;
  time_t date_sec;
  char *rbuf;         /* The shared read buffer. */
  lc_buf scratch;     /* Lower-cased header names. */
  http_conn *conns;   /* Every open connection. */
  size_t nconns;
  http_conn *resume;  /* Connections whose parser waits to resume. */
  double requests;
} http_server;

typedef struct {
  http_server *s;
} server_box;

typedef struct {
  http_conn *c;
} conn_box;

struct http_conn {
  uv_tcp_t tcp;
  uv_shutdown_t shutdown_req;
  llhttp_t parser;
  http_server *s;
  http_conn *prev, *next;   /* The server's list. */
  http_conn *resume_next;   /* The server's resume list. */
  conn_box *box;
  int ref_box, ref_env;     /* LUA_NOREF until the Lua side is made. */
  const void *res_ptr;      /* The table of the response in flight. */
  lc_buf in;                /* Unparsed input while paused. */
  lc_buf head;              /* URL and header bytes of the request. */
  http_hdr *hdrs;
  size_t nhdrs, hcap;
  uint32_t url_len;
  int hstate;               /* 0 start, 1 in a field, 2 in a value. */
  int err_status;           /* 431 when headers overflowed. */
  const char *gap;          /* Bytes parsed since the last body span start
                               here (in the buffer being parsed). */
  size_t gap_bytes;         /* ... and so many before it, since the head
                               or the last body span. */
  char gap_last;            /* The byte before gap (0 after a body span). */
  lc_buf out;               /* Response bytes not yet handed to libuv. */
  size_t nwrites;           /* uv_write requests in flight. */
  uint64_t head_start;      /* When headers began (0: not waiting). */
  uint64_t req_start;       /* When the request began (0: complete). */
  uint64_t idle_since;      /* When keep-alive idleness began. */
  int depth;                /* Nesting of parser runs. */
  int framing;              /* FRAME_* of the response in flight. */
  unsigned in_msg : 1;      /* Between message begin and complete. */
  unsigned in_head : 1;     /* ... and before its headers completed. */
  unsigned req_obj : 1;     /* The request in parse has a Lua req. */
  unsigned req_body : 1;    /* ... and a body, so 'end' is reported. */
  unsigned busy : 1;        /* A response is in flight. */
  unsigned out_full : 1;    /* Parsing waits for the output to drain. */
  unsigned in_trailers : 1; /* After the last chunk of the body. */
  unsigned head_sent : 1;   /* Its head is written. */
  unsigned is_head : 1;     /* The request is HEAD. */
  unsigned keep_req : 1;    /* The request allows keep-alive. */
  unsigned keep : 1;        /* The response keeps the connection. */
  unsigned http11 : 1;      /* The request is HTTP/1.1 or later. */
  unsigned expect : 2;      /* 1: 100-continue, 2: another expectation. */
  unsigned paused : 1;      /* llhttp paused; input waits in `in`. */
  unsigned resume_queued : 1;
  unsigned read_stopped : 1;
  unsigned stop_parse : 1;  /* No more requests on this connection. */
  unsigned close_after : 1; /* End the connection once output is out. */
  unsigned silent : 1;      /* Close without an error response. */
  unsigned want_drain : 1;
  unsigned shutting : 1;    /* uv_shutdown issued. */
  unsigned closing : 1;     /* uv_close issued. */
};

typedef struct {
  uv_write_t req;
  http_conn *c;
  char *base; /* Owned; freed in the callback. */
} http_write;

static void conn_close(http_conn *c);
static void conn_end(http_conn *c);
static void conn_flush(http_conn *c);
static void conn_feed(http_conn *c, const char *data, size_t len, int own);
static void server_check_closed(http_server *s);

#define STOPPED(c) ((c)->closing || (c)->shutting || (c)->stop_parse)

/* ---- Small helpers. ---- */

static const char *reason_of(int status) {
  switch (status) {
#define XX(code, text) case code: return text;
    HTTP_REASON_MAP(XX)
#undef XX
  default:
    return "unknown";
  }
}

static char lower(char ch) {
  return (ch >= 'A' && ch <= 'Z') ? (char)(ch | 0x20) : ch;
}

/* Case-insensitive comparison of a header name with a lower-case one. */
static int name_is(const char *name, size_t len, const char *lc,
                   size_t lclen) {
  size_t i;
  if (len != lclen)
    return 0;
  for (i = 0; i < len; i++)
    if (lower(name[i]) != lc[i])
      return 0;
  return 1;
}

#define NAME_IS(n, l, lit) name_is((n), (l), (lit), sizeof(lit) - 1)

/* Whether s (case-insensitively) contains the lower-case token tok. */
static int has_token(const char *s, size_t len, const char *tok) {
  size_t tl = strlen(tok), i, j;
  if (tl > len)
    return 0;
  for (i = 0; i + tl <= len; i++) {
    for (j = 0; j < tl && lower(s[i + j]) == tok[j]; j++)
      ;
    if (j == tl)
      return 1;
  }
  return 0;
}

/* RFC 7230 token characters (header names). */
static int is_token(const char *s, size_t len) {
  size_t i;
  if (len == 0)
    return 0;
  for (i = 0; i < len; i++) {
    unsigned char ch = (unsigned char)s[i];
    if (ch >= 'a' && ch <= 'z')
      continue;
    if (ch >= 'A' && ch <= 'Z')
      continue;
    if (ch >= '0' && ch <= '9')
      continue;
    if (strchr("!#$%&'*+-.^_`|~", ch) == NULL || ch == 0)
      return 0;
  }
  return 1;
}

/* Header values may hold tabs and bytes 0x20-0x7e, 0x80-0xff (Node's
 * check, which keeps CR and LF out of responses). */
static int is_field_value(const char *s, size_t len) {
  size_t i;
  for (i = 0; i < len; i++) {
    unsigned char ch = (unsigned char)s[i];
    if ((ch < 0x20 && ch != '\t') || ch == 0x7f)
      return 0;
  }
  return 1;
}

static void update_date(http_server *s) {
  static const char days[7][4] = {"Sun", "Mon", "Tue", "Wed", "Thu", "Fri",
                                  "Sat"};
  static const char months[12][4] = {"Jan", "Feb", "Mar", "Apr", "May",
                                     "Jun", "Jul", "Aug", "Sep", "Oct",
                                     "Nov", "Dec"};
  time_t now = time(NULL);
  struct tm tm;
  if (now == s->date_sec && s->date_len > 0)
    return;
  s->date_sec = now;
  gmtime_r(&now, &tm);
  s->date_len = (size_t)snprintf(
      s->date, sizeof(s->date), "Date: %s, %02d %s %04d %02d:%02d:%02d GMT\r\n",
      days[tm.tm_wday % 7], tm.tm_mday, months[tm.tm_mon % 12],
      tm.tm_year + 1900, tm.tm_hour, tm.tm_min, tm.tm_sec);
}

/* ---- The Lua side of a connection. ---- */

/* Makes the connection's box and env table on first need. */
static void conn_lua(http_conn *c) {
  lua_State *L = c->s->L;
  if (c->ref_box != LUA_NOREF)
    return;
  c->box = (conn_box *)lua_newuserdata(L, sizeof(conn_box));
  c->box->c = c;
  luaL_getmetatable(L, CONN_MT);
  lua_setmetatable(L, -2);
  c->ref_box = luaL_ref(L, LUA_REGISTRYINDEX);
  lua_createtable(L, 3, 0);
  c->ref_env = luaL_ref(L, LUA_REGISTRYINDEX);
}

/* Pushes env[slot] on L (nil when the Lua side was never made). L is the
 * server's state in callbacks, the caller's (maybe a coroutine) in
 * bindings: what is pushed is read on the same state. */
static void conn_get(lua_State *L, http_conn *c, int slot) {
  if (c->ref_env == LUA_NOREF) {
    lua_pushnil(L);
    return;
  }
  lua_rawgeti(L, LUA_REGISTRYINDEX, c->ref_env);
  lua_rawgeti(L, -1, slot);
  lua_remove(L, -2);
}

/* Pops the stack top into env[slot]. */
static void conn_set(http_conn *c, int slot) {
  lua_State *L = c->s->L;
  lua_rawgeti(L, LUA_REGISTRYINDEX, c->ref_env);
  lua_insert(L, -2);
  lua_rawseti(L, -2, slot);
  lua_pop(L, 1);
}

/* Pushes the connection's socket object from env (an absolute index),
 * making it on first need. */
static void conn_socket(http_conn *c, int env) {
  lua_State *L = c->s->L;
  lua_rawgeti(L, env, ENV_SOCKET);
  if (!lua_isnil(L, -1))
    return;
  lua_pop(L, 1);
  lua_createtable(L, 0, 4);
  lua_rawgeti(L, LUA_REGISTRYINDEX, c->ref_box);
  lua_setfield(L, -2, "_c");
  lua_rawgeti(L, LUA_REGISTRYINDEX, c->s->refs[CB_SOCK_MT]);
  lua_setmetatable(L, -2);
  lua_pushvalue(L, -1);
  lua_rawseti(L, env, ENV_SOCKET);
}

/* Pushes the connection's socket object. */
static void conn_push_socket(http_conn *c) {
  lua_State *L = c->s->L;
  conn_lua(c);
  lua_rawgeti(L, LUA_REGISTRYINDEX, c->ref_env);
  conn_socket(c, lua_gettop(L));
  lua_remove(L, -2);
}

/* Calls callback cb with env[slot] as its argument. */
static void conn_callback(http_conn *c, int cb, int slot) {
  lua_State *L = c->s->L;
  lua_rawgeti(L, LUA_REGISTRYINDEX, c->s->refs[cb]);
  conn_get(L, c, slot);
  lc_pcall(L, 1, 0);
}

/* Pushes the server's key table; returns its (absolute) index. */
static int push_keys(http_server *s) {
  lua_rawgeti(s->L, LUA_REGISTRYINDEX, s->ref_keys);
  return lua_gettop(s->L);
}

/* ---- Building the request. ---- */

/* How Node merges a repeated request header. */
enum { DUP_JOIN, DUP_DROP, DUP_COOKIE, DUP_ARRAY };

static int dup_policy(const char *n, size_t len) {
  static const char *const drop[] = {
    "age", "authorization", "content-length", "content-type", "etag",
    "expires", "from", "host", "if-modified-since", "if-unmodified-since",
    "last-modified", "location", "max-forwards", "proxy-authorization",
    "referer", "retry-after", "server", "user-agent", NULL};
  int i;
  if (len == 10 && memcmp(n, "set-cookie", 10) == 0)
    return DUP_ARRAY;
  if (len == 6 && memcmp(n, "cookie", 6) == 0)
    return DUP_COOKIE;
  for (i = 0; drop[i]; i++)
    if (strlen(drop[i]) == len && memcmp(drop[i], n, len) == 0)
      return DUP_DROP;
  return DUP_JOIN;
}

/* Pushes headers and rawHeaders for n headers whose names and values are
 * at offsets (hdrs) into base. scratch is a buffer for lower-casing.
 * Stack: +2. */
static void push_headers(lua_State *L, lc_buf *sc, const char *base,
                         const http_hdr *hdrs, size_t n) {
  size_t i, j;
  int hi, ri;
  lua_createtable(L, 0, (int)n);
  lua_createtable(L, (int)n * 2, 0);
  hi = lua_gettop(L) - 1;
  ri = hi + 1;
  for (i = 0; i < n; i++) {
    const http_hdr *h = &hdrs[i];
    const char *name = base + h->name;
    const char *value = base + h->value;
    size_t vlen = h->vlen;
    while (vlen > 0 && (value[vlen - 1] == ' ' || value[vlen - 1] == '\t'))
      vlen--;
    sc->len = 0;
    buf_reserve(sc, h->nlen);
    for (j = 0; j < h->nlen; j++)
      sc->base[j] = lower(name[j]);
    sc->len = h->nlen;
    /* Stack: ... headers raw. */
    lua_pushlstring(L, name, h->nlen);
    lua_rawseti(L, ri, (int)(2 * i + 1));
    lua_pushlstring(L, value, vlen);
    lua_pushvalue(L, -1);
    lua_rawseti(L, ri, (int)(2 * i + 2));
    lua_pushlstring(L, sc->base, sc->len);
    /* Stack: ... headers raw value lname. */
    lua_pushvalue(L, -1);
    lua_rawget(L, hi);
    if (lua_isnil(L, -1)) {
      lua_pop(L, 1);
      if (sc->len == 10 && memcmp(sc->base, "set-cookie", 10) == 0) {
        lua_createtable(L, 1, 0);
        lua_pushvalue(L, -3);
        lua_rawseti(L, -2, 1);
        lua_replace(L, -3);
      }
      lua_insert(L, -2);
      lua_rawset(L, hi);
      continue;
    }
    /* Stack: ... headers raw value lname old. */
    switch (dup_policy(sc->base, sc->len)) {
    case DUP_DROP:
      lua_pop(L, 3);
      break;
    case DUP_ARRAY:
      lua_pushvalue(L, -3);
      lua_rawseti(L, -2, (int)lua_objlen(L, -2) + 1);
      lua_pop(L, 3);
      break;
    default:
      lua_pushstring(L, dup_policy(sc->base, sc->len) == DUP_COOKIE
                            ? "; " : ", ");
      lua_pushvalue(L, -4);
      lua_concat(L, 3);
      /* Stack: ... headers raw value lname joined. */
      lua_rawset(L, hi);
      lua_pop(L, 1);
      break;
    }
  }
}

/* Notes an Expect header of the parsed request in c->expect. Returns
 * whether it has a Host header. */
static int scan_head(http_conn *c) {
  size_t i;
  int host = 0;
  c->expect = 0;
  for (i = 0; i < c->nhdrs; i++) {
    const http_hdr *h = &c->hdrs[i];
    const char *value = c->head.base + h->value;
    size_t vlen = h->vlen;
    if (h->nlen == 4 && name_is(c->head.base + h->name, 4, "host", 4)) {
      host = 1;
      continue;
    }
    if (h->nlen != 6 || !name_is(c->head.base + h->name, 6, "expect", 6))
      continue;
    while (vlen > 0 && (value[vlen - 1] == ' ' || value[vlen - 1] == '\t'))
      vlen--;
    c->expect = (vlen == 12 && has_token(value, vlen, "100-continue")) ? 1
                                                                        : 2;
  }
  return host;
}

/* Pushes the request's headers as one string, for http.c's headers() to
 * expand on first use (most handlers never look at them): the count, the
 * offsets, then the head's bytes. Stack: +1. */
static void push_head_data(http_conn *c) {
  lc_buf *sc = &c->s->scratch;
  uint32_t n = (uint32_t)c->nhdrs;
  size_t off = sizeof(n) + n * sizeof(http_hdr);
  sc->len = 0;
  buf_reserve(sc, off + c->head.len);
  memcpy(sc->base, &n, sizeof(n));
  if (n > 0)
    memcpy(sc->base + sizeof(n), c->hdrs, n * sizeof(http_hdr));
  if (c->head.len > 0)
    memcpy(sc->base + off, c->head.base, c->head.len);
  lua_pushlstring(c->s->L, sc->base, off + c->head.len);
}

/* Pushes method, url, httpVersion and the packed headers of the parsed
 * head (keys: the key table's stack index). Stack: +4. */
static void push_request_fields(http_conn *c, int keys) {
  lua_State *L = c->s->L;
  const llhttp_t *p = &c->parser;
  lua_rawgeti(L, keys, KEY_METHODS + p->method);
  if (lua_isnil(L, -1)) {
    lua_pop(L, 1);
    lua_pushstring(L, llhttp_method_name((llhttp_method_t)p->method));
  }
  lua_pushlstring(L, c->head.base, c->url_len);
  if (p->http_major == 1 && p->http_minor <= 1) {
    lua_rawgeti(L, keys, p->http_minor ? KEY_V11 : KEY_V10);
  } else {
    char ver[3];
    ver[0] = (char)('0' + p->http_major % 10);
    ver[1] = '.';
    ver[2] = (char)('0' + p->http_minor % 10);
    lua_pushlstring(L, ver, 3);
  }
  push_head_data(c);
}

/* ---- Writing the response. ---- */

/* The response headers the server must know about. */
typedef struct {
  unsigned cl : 1, te : 1, te_chunked : 1, conn : 1, conn_close : 1,
      date : 1;
} head_flags;

/* Appends one header line, validating it. On bad input truncates out to
 * mark and raises. Notes the headers the server must know about in f. */
static void add_header(lua_State *L, http_conn *c, size_t mark,
                       const char *name, size_t nlen, int vidx,
                       head_flags *f) {
  size_t vlen;
  const char *v;
  if (!is_token(name, nlen)) {
    c->out.len = mark;
    luaL_error(L, "Header name must be a valid HTTP token [\"%s\"]", name);
  }
  if (lua_type(L, vidx) == LUA_TBOOLEAN) {
    v = lua_toboolean(L, vidx) ? "true" : "false";
    vlen = strlen(v);
  } else {
    v = lua_tolstring(L, vidx, &vlen);
  }
  if (v == NULL) {
    c->out.len = mark;
    luaL_error(L, "Invalid value \"%s\" for header \"%s\"",
               luaL_typename(L, vidx), name);
  }
  if (!is_field_value(v, vlen)) {
    c->out.len = mark;
    luaL_error(L, "Invalid character in header content [\"%s\"]", name);
  }
  switch (nlen) {
  case 4:
    if (NAME_IS(name, nlen, "date"))
      f->date = 1;
    break;
  case 10:
    if (NAME_IS(name, nlen, "connection")) {
      f->conn = 1;
      if (has_token(v, vlen, "close"))
        f->conn_close = 1;
    }
    break;
  case 14:
    if (NAME_IS(name, nlen, "content-length"))
      f->cl = 1;
    break;
  case 17:
    if (NAME_IS(name, nlen, "transfer-encoding")) {
      f->te = 1;
      if (has_token(v, vlen, "chunked"))
        f->te_chunked = 1;
    }
    break;
  default:
    break;
  }
  buf_reserve(&c->out, nlen + vlen + 4);
  buf_add(&c->out, name, nlen);
  buf_lit(&c->out, ": ");
  buf_add(&c->out, v, vlen);
  buf_lit(&c->out, "\r\n");
}

/* Appends the lines of header name with the value at vidx (a string, a
 * number, a boolean or an array of those). */
static void add_header_value(lua_State *L, http_conn *c, size_t mark,
                             const char *name, size_t nlen, int vidx,
                             head_flags *f) {
  if (lua_type(L, vidx) == LUA_TTABLE) {
    int i, n = (int)lua_objlen(L, vidx);
    for (i = 1; i <= n; i++) {
      lua_rawgeti(L, vidx, i);
      add_header(L, c, mark, name, nlen, lua_gettop(L), f);
      lua_pop(L, 1);
    }
  } else {
    add_header(L, c, mark, name, nlen, vidx, f);
  }
}

/* Appends the headers of table t; names from table names (by key) when
 * names is not 0. */
static void add_headers(lua_State *L, http_conn *c, size_t mark, int t,
                        int names, head_flags *f) {
  lua_pushnil(L);
  while (lua_next(L, t) != 0) {
    /* Stack: ... key value. */
    int vidx = lua_gettop(L);
    const char *name;
    size_t nlen;
    if (lua_type(L, -2) != LUA_TSTRING) {
      c->out.len = mark;
      luaL_error(L, "header names must be strings");
    }
    if (names) {
      lua_pushvalue(L, -2);
      lua_rawget(L, names);
      if (lua_type(L, -1) != LUA_TSTRING) {
        lua_pop(L, 1);
        lua_pushvalue(L, -2);
      }
    } else {
      lua_pushvalue(L, -2);
    }
    name = lua_tolstring(L, -1, &nlen);
    add_header_value(L, c, mark, name, nlen, vidx, f);
    lua_pop(L, 2);
  }
}

/* Appends the status line and headers of the response. With res (a stack
 * index) they come from its own fields statusCode (default 200),
 * statusMessage, sendDate (default true), _headers/_names and _wh;
 * without, status is used with no headers. When last, body_len is the
 * whole body, so it gets a Content-Length. */
static void write_head(lua_State *L, http_conn *c, int res, int status,
                       size_t body_len, int last) {
  http_server *s = c->s;
  size_t mark = c->out.len, mlen;
  const char *msg = NULL;
  head_flags f;
  int top = lua_gettop(L), send_date = 1, has_body;
  memset(&f, 0, sizeof(f));
  /* res: the stack index of the response's statusCode, then statusMessage,
   * sendDate, _headers, _names and _wh (the Lua side passes them along). */
  if (res) {
    status = lua_isnil(L, res) ? 200 : (int)lua_tointeger(L, res);
    if (status < 100 || status > 999)
      luaL_error(L, "Invalid status code: %s", lua_tostring(L, res)
                                                     ? lua_tostring(L, res)
                                                     : "(not a number)");
    msg = lua_tolstring(L, res + 1, &mlen);
    if (msg != NULL && !is_field_value(msg, mlen))
      luaL_error(L, "Invalid character in statusMessage");
    send_date = lua_isnil(L, res + 2) || lua_toboolean(L, res + 2);
  }
  if (msg == NULL) {
    msg = reason_of(status);
    mlen = strlen(msg);
  }
  buf_reserve(&c->out, 256 + mlen);
  buf_lit(&c->out, "HTTP/1.1 ");
  c->out.base[c->out.len++] = (char)('0' + status / 100);
  c->out.base[c->out.len++] = (char)('0' + status / 10 % 10);
  c->out.base[c->out.len++] = (char)('0' + status % 10);
  c->out.base[c->out.len++] = ' ';
  buf_add(&c->out, msg, mlen);
  buf_lit(&c->out, "\r\n");
  if (res) {
    if (lua_istable(L, res + 3))
      add_headers(L, c, mark, res + 3, lua_istable(L, res + 4) ? res + 4 : 0,
                  &f);
    if (lua_istable(L, res + 5))
      add_headers(L, c, mark, res + 5, 0, &f);
  }
  lua_settop(L, top);

  has_body = !c->is_head && status != 204 && status != 304 &&
             !(status >= 100 && status < 200);
  if (!has_body)
    c->framing = FRAME_NONE;
  else if (f.cl)
    c->framing = FRAME_LENGTH;
  else if (f.te_chunked)
    c->framing = FRAME_CHUNKED;
  else if (f.te)
    c->framing = FRAME_RAW;
  else if (last)
    c->framing = FRAME_LENGTH;
  else if (c->http11)
    c->framing = FRAME_CHUNKED;
  else
    c->framing = FRAME_RAW;
  c->keep = c->keep_req && !f.conn_close && c->framing != FRAME_RAW &&
            !s->closing && !c->stop_parse;

  if (send_date && !f.date) {
    update_date(s);
    buf_add(&c->out, s->date, s->date_len);
  }
  if (!f.conn) {
    if (c->keep)
      buf_add(&c->out, s->ka_header, s->ka_len);
    else
      buf_lit(&c->out, "Connection: close\r\n");
  }
  if (has_body && !f.cl && !f.te) {
    if (c->framing == FRAME_LENGTH) {
      buf_lit(&c->out, "Content-Length: ");
      buf_uint(&c->out, body_len);
      buf_lit(&c->out, "\r\n");
    } else if (c->framing == FRAME_CHUNKED) {
      buf_lit(&c->out, "Transfer-Encoding: chunked\r\n");
    }
  }
  buf_lit(&c->out, "\r\n");
  c->head_sent = 1;
}

static void write_body(http_conn *c, const char *p, size_t len, int last) {
  switch (c->framing) {
  case FRAME_NONE:
    return;
  case FRAME_CHUNKED:
    if (len > 0) {
      buf_reserve(&c->out, len + 24);
      buf_hex(&c->out, len);
      buf_lit(&c->out, "\r\n");
      buf_add(&c->out, p, len);
      buf_lit(&c->out, "\r\n");
    }
    if (last)
      buf_lit(&c->out, "0\r\n\r\n");
    return;
  default:
    if (len > 0)
      buf_add(&c->out, p, len);
    return;
  }
}

static size_t conn_queued(http_conn *c) {
  return uv_stream_get_write_queue_size((uv_stream_t *)&c->tcp) + c->out.len;
}

static void idle_cb(uv_idle_t *h);
static void alloc_cb(uv_handle_t *h, size_t hint, uv_buf_t *buf);
static void read_cb(uv_stream_t *st, ssize_t nread, const uv_buf_t *buf);

/* Resumes the connection's paused parser on the next loop turn, outside
 * of any user call. */
static void conn_queue_resume(http_conn *c) {
  http_server *s = c->s;
  if (c->resume_queued)
    return;
  c->resume_queued = 1;
  c->resume_next = s->resume;
  s->resume = c;
  uv_idle_start(&s->idle, idle_cb);
}

/* The response in flight is complete: decides what the connection does
 * next. */
static void response_done(http_conn *c) {
  http_server *s = c->s;
  c->busy = 0;
  c->want_drain = 0;
  c->res_ptr = NULL;
  if (c->ref_env != LUA_NOREF) {
    lua_State *L = s->L;
    lua_rawgeti(L, LUA_REGISTRYINDEX, c->ref_env);
    lua_pushnil(L);
    lua_rawseti(L, -2, ENV_RES);
    if (!c->in_msg) {
      lua_pushnil(L);
      lua_rawseti(L, -2, ENV_REQ);
    }
    lua_pop(L, 1);
  }
  /* A plain close() ends each connection with its response; a drain
   * leaves idle ones to their next request or keepAliveTimeout. */
  if (!c->keep || (s->closing && !s->draining)) {
    c->stop_parse = 1;
    c->close_after = 1;
  } else if (c->paused) {
    conn_queue_resume(c);
  } else if (!c->in_msg) {
    c->idle_since = uv_now(s->loop);
  }
  /* Outside a parser run nobody else will act on close_after. */
  if (c->close_after && c->depth == 0)
    conn_end(c);
}

/* ---- Writes. ---- */

static void write_cb(uv_write_t *req, int status) {
  http_write *w = (http_write *)req;
  http_conn *c = w->c;
  free(w->base);
  free(w);
  c->nwrites--;
  if (c->closing)
    return;
  if (status < 0) {
    conn_close(c);
    return;
  }
  if (c->out_full && conn_queued(c) < c->s->hwm) {
    c->out_full = 0;
    conn_queue_resume(c);
  }
  if (c->nwrites > 0)
    return;
  /* Keep-alive idleness counts from when the last response has left. */
  if (c->idle_since)
    c->idle_since = uv_now(c->s->loop);
  if (c->want_drain) {
    c->want_drain = 0;
    if (c->busy)
      conn_callback(c, CB_DRAIN, ENV_RES);
  }
}

/* Hands c->out to the socket: uv_try_write first, then a uv_write of what
 * the socket did not take (the buffer moves to the write request). */
static void conn_flush(http_conn *c) {
  uv_buf_t b;
  http_write *w;
  int n;
  if (c->out.len == 0 || c->closing)
    return;
  b = uv_buf_init(c->out.base, (unsigned int)c->out.len);
  if (c->nwrites == 0) {
    n = uv_try_write((uv_stream_t *)&c->tcp, &b, 1);
    if (n == (int)b.len) {
      c->out.len = 0;
      return;
    }
    if (n < 0 && n != UV_EAGAIN) {
      conn_close(c);
      return;
    }
    if (n > 0) {
      b.base += n;
      b.len -= (unsigned int)n;
    }
  }
  w = (http_write *)malloc(sizeof(*w));
  if (w == NULL) {
    fprintf(stderr, "luacluster: out of memory\n");
    abort();
  }
  w->c = c;
  w->base = c->out.base;
  c->out.base = NULL;
  c->out.len = c->out.cap = 0;
  if (uv_write(&w->req, (uv_stream_t *)&c->tcp, &b, 1, write_cb) != 0) {
    free(w->base);
    free(w);
    conn_close(c);
    return;
  }
  c->nwrites++;
}

/* ---- Closing. ---- */

static void conn_close_cb(uv_handle_t *h) {
  http_conn *c = (http_conn *)h->data;
  http_server *s = c->s;
  lua_State *L = s->L;
  if (c->prev)
    c->prev->next = c->next;
  else
    s->conns = c->next;
  if (c->next)
    c->next->prev = c->prev;
  s->nconns--;
  if (c->ref_box != LUA_NOREF) {
    luaL_unref(L, LUA_REGISTRYINDEX, c->ref_box);
    luaL_unref(L, LUA_REGISTRYINDEX, c->ref_env);
  }
  buf_free(&c->in);
  buf_free(&c->head);
  buf_free(&c->out);
  free(c->hdrs);
  free(c);
  server_check_closed(s);
}

/* Closes the connection now. A request or response in flight is reported
 * to Lua (its 'close'/'aborted' events). */
static void conn_close(http_conn *c) {
  http_server *s = c->s;
  int aborted;
  if (c->closing)
    return;
  c->closing = 1;
  aborted = c->busy || c->req_obj;
  if (c->resume_queued) {
    http_conn **pp = &s->resume;
    while (*pp && *pp != c)
      pp = &(*pp)->resume_next;
    if (*pp)
      *pp = c->resume_next;
    c->resume_queued = 0;
  }
  if (c->box)
    c->box->c = NULL;
  /* What was written before the cut still gets its chance. */
  if (c->out.len > 0 && c->nwrites == 0) {
    uv_buf_t b = uv_buf_init(c->out.base, (unsigned int)c->out.len);
    (void)uv_try_write((uv_stream_t *)&c->tcp, &b, 1);
  }
  uv_close((uv_handle_t *)&c->tcp, conn_close_cb);
  if (aborted && c->ref_env != LUA_NOREF) {
    lua_State *L = s->L;
    /* Stack: abort req|nil res|nil. */
    lua_rawgeti(L, LUA_REGISTRYINDEX, s->refs[CB_ABORT]);
    conn_get(L, c, ENV_REQ);
    conn_get(L, c, ENV_RES);
    lc_pcall(L, 2, 0);
  }
}

static void shutdown_cb(uv_shutdown_t *req, int status) {
  http_conn *c = (http_conn *)req->data;
  (void)status;
  conn_close(c);
}

/* Ends the connection gracefully: flushes, then shuts the write side down
 * once the queue drains, then closes. */
static void conn_end(http_conn *c) {
  if (c->closing || c->shutting)
    return;
  c->stop_parse = 1;
  conn_flush(c);
  if (c->closing)
    return;
  c->shutting = 1;
  c->shutdown_req.data = c;
  if (uv_shutdown(&c->shutdown_req, (uv_stream_t *)&c->tcp, shutdown_cb) != 0)
    conn_close(c);
}

/* Answers a protocol error (400, 408, 431) unless a response has started,
 * then ends the connection. */
static void conn_fail(http_conn *c, int status) {
  if (c->closing || c->shutting)
    return;
  if (!c->silent && !(c->busy && c->head_sent)) {
    const char *msg = reason_of(status);
    buf_lit(&c->out, "HTTP/1.1 ");
    buf_uint(&c->out, (uint64_t)status);
    buf_lit(&c->out, " ");
    buf_add(&c->out, msg, strlen(msg));
    buf_lit(&c->out, "\r\nConnection: close\r\n\r\n");
  }
  c->stop_parse = 1;
  if (c->depth == 0)
    conn_end(c);
  else
    c->close_after = 1;
}

/* ---- llhttp callbacks. ---- */

/* Where llhttp stood when it called on_headers_complete or
 * on_message_complete (just past the last byte of the head or message):
 * llhttp.c is built with its internal callbacks renamed to wrappers that
 * note it (runtime/llhttp_at.c). */
extern const char *lc__llhttp_at;

/* Checks the bytes parsed since the last check, up to `to`, outside any
 * body: the request line, header lines, chunk-size lines and trailers.
 * llhttp 8 takes a bare LF as a line end and a line that begins with a
 * space or tab as the continuation of the one before (obs-fold); a proxy in
 * front that reads either otherwise sees other requests than we do
 * (request smuggling), so both are refused (400), as Node does. After the
 * head, such bytes (chunk extensions, trailers) count against
 * maxHeaderSize between two pieces of body: 413 (431 in trailers).
 * Returns 0 when the request must be refused (err_status set). */
static int gap_check(http_conn *c, const char *to) {
  const char *from = c->gap, *p = from, *nl;
  if (to <= from)
    return 1;
  if ((c->gap_last == '\n' && (*from == ' ' || *from == '\t')) ||
      (*from == '\n' && c->gap_last != '\r'))
    goto bad;
  while ((nl = (const char *)memchr(p, '\n', (size_t)(to - p))) != NULL) {
    if (nl > from && nl[-1] != '\r')
      goto bad;
    if (nl + 1 < to && (nl[1] == ' ' || nl[1] == '\t'))
      goto bad;
    p = nl + 1;
  }
  c->gap_last = to[-1];
  c->gap = to;
  c->gap_bytes += (size_t)(to - from);
  if (!c->in_head && c->gap_bytes > c->s->max_header) {
    c->err_status = c->in_trailers ? 431 : 413;
    return 0;
  }
  return 1;
bad:
  c->err_status = 400;
  return 0;
}

/* Whether the request target holds only visible ASCII (Node refuses tabs,
 * controls and bytes >= 0x80 in it; llhttp 8 lets them through). */
static int url_ok(const char *u, size_t len) {
  size_t i;
  for (i = 0; i < len; i++) {
    unsigned char ch = (unsigned char)u[i];
    if (ch <= 0x20 || ch >= 0x7f)
      return 0;
  }
  return 1;
}

static int on_message_begin(llhttp_t *p) {
  http_conn *c = (http_conn *)p->data;
  uint64_t now;
  if (STOPPED(c))
    return -1;
  now = uv_now(c->s->loop);
  c->in_msg = 1;
  c->in_head = 1;
  c->head_start = now;
  c->req_start = now;
  c->idle_since = 0;
  c->head.len = 0;
  c->nhdrs = 0;
  c->url_len = 0;
  c->hstate = 0;
  c->expect = 0;
  c->req_obj = 0;
  c->req_body = 0;
  c->in_trailers = 0;
  c->gap_bytes = 0;
  return 0;
}

/* Adds a span of the head, enforcing maxHeaderSize. */
static int head_add(http_conn *c, const char *at, size_t len) {
  if (c->head.len + len > c->s->max_header) {
    c->err_status = 431;
    return -1;
  }
  buf_add(&c->head, at, len);
  return 0;
}

static int on_url(llhttp_t *p, const char *at, size_t len) {
  http_conn *c = (http_conn *)p->data;
  if (head_add(c, at, len) != 0)
    return -1;
  c->url_len += (uint32_t)len;
  return 0;
}

static int on_header_field(llhttp_t *p, const char *at, size_t len) {
  http_conn *c = (http_conn *)p->data;
  /* llhttp lets spaces between a field name and its colon through, as
   * part of the name (but for Content-Length and Transfer-Encoding); a
   * server must refuse them with 400 (RFC 9112 section 5.1). */
  if (memchr(at, ' ', len) != NULL)
    return -1;
  if (!c->in_head)
    return 0; /* A trailer: not kept. */
  if (c->hstate != 1) {
    http_hdr *h;
    if (c->nhdrs == c->hcap) {
      size_t cap = c->hcap ? c->hcap * 2 : 16;
      http_hdr *n = (http_hdr *)realloc(c->hdrs, cap * sizeof(http_hdr));
      if (n == NULL) {
        fprintf(stderr, "luacluster: out of memory\n");
        abort();
      }
      c->hdrs = n;
      c->hcap = cap;
    }
    h = &c->hdrs[c->nhdrs++];
    h->name = (uint32_t)c->head.len;
    h->nlen = 0;
    h->value = (uint32_t)c->head.len;
    h->vlen = 0;
    c->hstate = 1;
  }
  if (head_add(c, at, len) != 0)
    return -1;
  c->hdrs[c->nhdrs - 1].nlen += (uint32_t)len;
  return 0;
}

/* llhttp takes a line that begins with its colon as a header of no name;
 * a field name is a token, of one character at least (RFC 9110 section
 * 5.1): 400. (Trailers are not kept, nor checked for this.) */
static int on_header_field_complete(llhttp_t *p) {
  http_conn *c = (http_conn *)p->data;
  if (c->in_head && (c->hstate != 1 || c->hdrs[c->nhdrs - 1].nlen == 0))
    return -1;
  return 0;
}

static int on_header_value(llhttp_t *p, const char *at, size_t len) {
  http_conn *c = (http_conn *)p->data;
  http_hdr *h;
  if (!c->in_head || c->nhdrs == 0)
    return 0;
  h = &c->hdrs[c->nhdrs - 1];
  if (c->hstate != 2) {
    h->value = (uint32_t)c->head.len;
    c->hstate = 2;
  }
  if (head_add(c, at, len) != 0)
    return -1;
  h->vlen += (uint32_t)len;
  return 0;
}

static int on_headers_complete(llhttp_t *p) {
  http_conn *c = (http_conn *)p->data;
  http_server *s = c->s;
  lua_State *L = s->L;
  int keys;
  if (STOPPED(c))
    return -1;
  if (!gap_check(c, lc__llhttp_at))
    return -1;
  c->gap_bytes = 0;
  c->head_start = 0;
  c->in_head = 0;
  if (p->method == HTTP_CONNECT) {
    /* No 'connect' listener: Node drops the connection. */
    c->silent = 1;
    return -1;
  }
  /* HTTP/1.1 requires Host (RFC 9112 section 3.2); the target must be
   * visible ASCII. Both: 400, as Node. */
  if ((!scan_head(c) && (p->http_major > 1 || p->http_minor >= 1)) ||
      !url_ok(c->head.base, c->url_len)) {
    c->err_status = 400;
    return -1;
  }
  s->requests++;
  s->ctx->http_requests++;
  c->busy = 1;
  c->head_sent = 0;
  c->want_drain = 0;
  c->is_head = p->method == HTTP_HEAD;
  c->http11 = p->http_major > 1 || (p->http_major == 1 && p->http_minor >= 1);
  c->keep_req = llhttp_should_keep_alive(p) ? 1 : 0;
  c->req_body = (p->flags & F_CHUNKED) ||
                ((p->flags & F_CONTENT_LENGTH) && p->content_length > 0);
  if (c->expect == 2 && c->http11) {
    /* An expectation we cannot meet: 417, without calling the handler. */
    write_head(L, c, 0, 417, 0, 1);
    response_done(c);
    return STOPPED(c) ? -1 : 0;
  }
  if (c->expect == 1 && c->http11)
    buf_lit(&c->out, "HTTP/1.1 100 Continue\r\n\r\n");
  conn_lua(c);
  /* The Lua side builds req and res with table constructors (a template
   * copy, cheaper than field stores through the C API) from what is
   * pushed here, and keeps them in env; http_send learns the response's
   * identity on its first call.
   * Stack: keys dispatch method url version head socket complete box env */
  keys = push_keys(s);
  lua_rawgeti(L, LUA_REGISTRYINDEX, s->refs[CB_DISPATCH]);
  push_request_fields(c, keys);
  lua_rawgeti(L, LUA_REGISTRYINDEX, c->ref_env);
  conn_socket(c, lua_gettop(L));
  lua_insert(L, -2);
  lua_pushboolean(L, !c->req_body);
  lua_insert(L, -2);
  lua_rawgeti(L, LUA_REGISTRYINDEX, c->ref_box);
  lua_insert(L, -2);
  c->res_ptr = NULL;
  c->req_obj = 1;
  lc_pcall(L, 8, 0);
  lua_settop(L, keys - 1);
  return c->closing ? -1 : 0;
}

static int on_body(llhttp_t *p, const char *at, size_t len) {
  http_conn *c = (http_conn *)p->data;
  lua_State *L = c->s->L;
  if (c->closing || !gap_check(c, at))
    return -1;
  c->gap = at + len;
  c->gap_last = 0;
  c->gap_bytes = 0;
  if (!c->req_obj)
    return 0;
  /* Stack: data req chunk res|nil. */
  lua_rawgeti(L, LUA_REGISTRYINDEX, c->s->refs[CB_DATA]);
  conn_get(L, c, ENV_REQ);
  lua_pushlstring(L, at, len);
  conn_get(L, c, ENV_RES);
  lc_pcall(L, 3, 0);
  return c->closing ? -1 : 0;
}

static int on_message_complete(llhttp_t *p) {
  http_conn *c = (http_conn *)p->data;
  http_server *s = c->s;
  lua_State *L = s->L;
  if (c->closing || !gap_check(c, lc__llhttp_at))
    return -1;
  c->in_msg = 0;
  c->req_start = 0;
  c->in_trailers = 0;
  if (c->req_obj) {
    if (c->req_body) {
      /* Stack: end req res|nil. */
      lua_rawgeti(L, LUA_REGISTRYINDEX, s->refs[CB_END]);
      conn_get(L, c, ENV_REQ);
      conn_get(L, c, ENV_RES);
      lc_pcall(L, 2, 0);
    }
    c->req_obj = 0;
    if (!c->busy && c->ref_env != LUA_NOREF) {
      lua_pushnil(L);
      conn_set(c, ENV_REQ);
    }
  }
  if (STOPPED(c))
    return -1;
  if (c->busy)
    return HPE_PAUSED;
  /* A client that sends requests and does not read the answers: past the
   * high-water mark of queued output, parsing (and so reading) waits for
   * the socket to drain (write_cb), as Node's server does. */
  if (c->out.len >= s->hwm)
    conn_flush(c);
  if (c->closing)
    return -1;
  if (conn_queued(c) >= s->hwm) {
    c->out_full = 1;
    return HPE_PAUSED;
  }
  c->idle_since = uv_now(s->loop);
  return 0;
}

/* Each chunk's extensions (and the CRLFs around them) are counted against
 * maxHeaderSize (gap_check); the last chunk begins the trailers. */
static int on_chunk_header(llhttp_t *p) {
  http_conn *c = (http_conn *)p->data;
  if (p->content_length == 0)
    c->in_trailers = 1;
  return 0;
}

static const llhttp_settings_t parser_settings = {
  .on_message_begin = on_message_begin,
  .on_url = on_url,
  .on_header_field = on_header_field,
  .on_header_value = on_header_value,
  .on_headers_complete = on_headers_complete,
  .on_body = on_body,
  .on_message_complete = on_message_complete,
  .on_header_field_complete = on_header_field_complete,
  .on_chunk_header = on_chunk_header,
};

/* ---- Reading. ---- */

/* After a parser run or a response: acts on what they decided. */
static void conn_settle(http_conn *c) {
  if (c->closing)
    return;
  if (c->close_after) {
    conn_end(c);
    return;
  }
  conn_flush(c);
  if (c->closing)
    return;
  if (c->want_drain && c->nwrites == 0) {
    c->want_drain = 0;
    if (c->busy)
      conn_callback(c, CB_DRAIN, ENV_RES);
  }
}

/* Parses len bytes at data. own: data is c->in itself. Bytes after a pause
 * stay in (or move to) c->in. */
static void conn_feed(http_conn *c, const char *data, size_t len, int own) {
  llhttp_errno_t err;
  const char *p = data, *end = data + len, *stop;
  c->depth++;
  for (;;) {
    c->gap = p;
    err = llhttp_execute(&c->parser, p, (size_t)(end - p));
    stop = err == HPE_OK ? end : llhttp_get_error_pos(&c->parser);
    if ((err == HPE_OK || err == HPE_PAUSED || err == HPE_PAUSED_UPGRADE) &&
        !STOPPED(c) && !gap_check(c, stop))
      err = HPE_USER;
    if (err != HPE_PAUSED_UPGRADE || STOPPED(c))
      break;
    /* An Upgrade request was answered as a plain request (no 'upgrade'
     * listener): keep reading HTTP. */
    llhttp_resume_after_upgrade(&c->parser);
    p = stop;
  }
  c->depth--;
  if (err == HPE_PAUSED) {
    size_t rest = (size_t)(end - stop);
    c->paused = 1;
    if (own) {
      memmove(c->in.base, stop, rest);
      c->in.len = rest;
    } else {
      buf_add(&c->in, stop, rest);
    }
  } else {
    if (own)
      c->in.len = 0;
    if (err != HPE_OK && !STOPPED(c))
      conn_fail(c, c->err_status ? c->err_status : 400);
  }
  conn_settle(c);
}

/* Resumes a parser paused behind a response that has now finished. */
static void conn_resume(http_conn *c) {
  if (c->closing || c->out_full)
    return;
  c->paused = 0;
  llhttp_resume(&c->parser);
  if (c->in.len > 0)
    conn_feed(c, c->in.base, c->in.len, 1);
  if (c->closing || c->paused)
    return;
  if (c->read_stopped) {
    c->read_stopped = 0;
    uv_read_start((uv_stream_t *)&c->tcp, alloc_cb, read_cb);
  }
  if (!c->busy && !c->in_msg)
    c->idle_since = uv_now(c->s->loop);
}

static void idle_cb(uv_idle_t *h) {
  http_server *s = (http_server *)h->data;
  http_conn *c;
  while ((c = s->resume) != NULL) {
    s->resume = c->resume_next;
    c->resume_queued = 0;
    conn_resume(c);
  }
  uv_idle_stop(h);
}

static void alloc_cb(uv_handle_t *h, size_t hint, uv_buf_t *buf) {
  http_conn *c = (http_conn *)h->data;
  http_server *s = c->s;
  (void)hint;
  if (!s->rbuf_busy) {
    s->rbuf_busy = 1;
    *buf = uv_buf_init(s->rbuf, READ_BUF_SIZE);
  } else {
    /* A read nested in another's callback (a loop run from a handler). */
    buf->base = (char *)malloc(READ_BUF_SIZE);
    buf->len = buf->base ? READ_BUF_SIZE : 0;
  }
}

static void read_cb(uv_stream_t *st, ssize_t nread, const uv_buf_t *buf) {
  http_conn *c = (http_conn *)st->data;
  http_server *s = c->s;
  if (nread > 0 && !c->closing && !c->shutting) {
    if (c->paused || c->in.len > 0) {
      buf_add(&c->in, buf->base, (size_t)nread);
      if (c->in.len > INPUT_LIMIT) {
        uv_read_stop(st);
        c->read_stopped = 1;
      }
    } else {
      conn_feed(c, buf->base, (size_t)nread, 0);
    }
  } else if (nread < 0 && !c->closing) {
    /* The peer is gone or done sending. As Node (allowHalfOpen false), a
     * request in flight is aborted; an idle connection ends gracefully. */
    if (nread == UV_EOF && !c->busy && !c->in_msg && !c->paused)
      conn_end(c);
    else
      conn_close(c);
  }
  if (buf->base == s->rbuf)
    s->rbuf_busy = 0;
  else
    free(buf->base);
}

/* Starts serving an accepted (or adopted) connection. */
static void conn_start(http_conn *c) {
  http_server *s = c->s;
  c->next = s->conns;
  if (s->conns)
    s->conns->prev = c;
  s->conns = c;
  s->nconns++;
  c->head_start = uv_now(s->loop);
  uv_tcp_nodelay(&c->tcp, 1);
  if (uv_read_start((uv_stream_t *)&c->tcp, alloc_cb, read_cb) != 0) {
    conn_close(c);
    return;
  }
  if (s->emit_connection) {
    lua_rawgeti(s->L, LUA_REGISTRYINDEX, s->refs[CB_CONNECTION]);
    conn_push_socket(c);
    lc_pcall(s->L, 1, 0);
  }
}

/* Allocates a connection with its handle initialised. NULL on failure. */
static http_conn *conn_new(http_server *s) {
  http_conn *c = (http_conn *)calloc(1, sizeof(*c));
  if (c == NULL)
    return NULL;
  if (uv_tcp_init(s->loop, &c->tcp) != 0) {
    free(c);
    return NULL;
  }
  c->s = s;
  c->tcp.data = c;
  c->ref_box = c->ref_env = LUA_NOREF;
  llhttp_init(&c->parser, HTTP_REQUEST, &parser_settings);
  c->parser.data = c;
  return c;
}

/* A handle closed before conn_start: frees without the list. */
static void conn_free_cb(uv_handle_t *h) {
  free(h->data);
}

static void listener_cb(uv_stream_t *l, int status) {
  http_server *s = (http_server *)l->data;
  http_conn *c;
  if (status < 0)
    return; /* EMFILE and the like: the next connection may do better. */
  c = conn_new(s);
  if (c == NULL)
    return;
  if (uv_accept(l, (uv_stream_t *)&c->tcp) != 0) {
    uv_close((uv_handle_t *)&c->tcp, conn_free_cb);
    return;
  }
  conn_start(c);
}

/* ---- Timeouts. ---- */

static void timer_cb(uv_timer_t *t) {
  http_server *s = (http_server *)t->data;
  uint64_t now = uv_now(s->loop);
  http_conn *c, *next;
  for (c = s->conns; c; c = next) {
    next = c->next;
    if (c->closing || c->shutting)
      continue;
    if (c->head_start && s->headers_timeout &&
        now - c->head_start >= s->headers_timeout)
      conn_fail(c, 408);
    else if (c->req_start && s->request_timeout &&
             now - c->req_start >= s->request_timeout)
      conn_fail(c, 408);
    else if (c->idle_since && !c->busy && c->nwrites == 0 &&
             s->keepalive_timeout &&
             now - c->idle_since >= s->keepalive_timeout)
      conn_close(c);
  }
}

/* ---- The server. ---- */

static void server_free_cb(uv_handle_t *h) {
  http_server *s = (http_server *)h->data;
  if (--s->open_handles > 0)
    return;
  buf_free(&s->scratch);
  free(s->rbuf);
  free(s);
}

static void listener_close_cb(uv_handle_t *h) {
  http_server *s = (http_server *)h->data;
  s->open_handles--;
  server_check_closed(s);
}

/* Once close() was called, the listener is closed and the last connection
 * gone: stops, unpins and tells Lua. */
static void server_check_closed(http_server *s) {
  lua_State *L = s->L;
  int i;
  if (!s->serving || !s->closing || s->listening || s->nconns > 0)
    return;
  s->serving = 0;
  uv_timer_stop(&s->timer);
  /* Stack: close. */
  lua_rawgeti(L, LUA_REGISTRYINDEX, s->refs[CB_CLOSE]);
  for (i = 0; i < CB_MAX; i++) {
    luaL_unref(L, LUA_REGISTRYINDEX, s->refs[i]);
    s->refs[i] = LUA_NOREF;
  }
  luaL_unref(L, LUA_REGISTRYINDEX, s->ref_self);
  s->ref_self = LUA_NOREF;
  lc_pcall(L, 0, 0);
}

static http_server *check_server(lua_State *L) {
  server_box *b = (server_box *)luaL_checkudata(L, 1, SERVER_MT);
  if (b->s == NULL)
    luaL_error(L, "the server is gone");
  return b->s;
}

/* Pins the server (the box at stack index 1) and its callbacks, and
 * starts the timeout scan. The callbacks live in the box's environment and
 * are in the registry only while serving, so an unused server (and the
 * closures that name it) can be collected. */
static void server_serve(lua_State *L, http_server *s) {
  uint64_t every = 1000, t;
  int i;
  if (!s->serving) {
    lua_pushvalue(L, 1);
    s->ref_self = luaL_ref(L, LUA_REGISTRYINDEX);
    lua_getfenv(L, 1);
    for (i = 0; i < CB_MAX; i++) {
      lua_getfield(L, -1, cb_fields[i]);
      s->refs[i] = luaL_ref(L, LUA_REGISTRYINDEX);
    }
    lua_pop(L, 1);
    s->serving = 1;
  }
  s->closing = 0;
  /* Scan often enough to act within a quarter of the shortest timeout,
   * and at least each second. */
  t = s->headers_timeout;
  if (s->request_timeout && (!t || s->request_timeout < t))
    t = s->request_timeout;
  if (s->keepalive_timeout && (!t || s->keepalive_timeout < t))
    t = s->keepalive_timeout;
  if (t && t / 4 < every)
    every = t / 4 > 10 ? t / 4 : 10;
  uv_timer_start(&s->timer, timer_cb, every, every);
}

/* srv:configure(maxHeaderSize, headersTimeout, requestTimeout,
 *               keepAliveTimeout, highWaterMark) */
static int server_configure(lua_State *L) {
  http_server *s = check_server(L);
  lua_Number mh = luaL_checknumber(L, 2);
  lua_Number ht = luaL_checknumber(L, 3);
  lua_Number rt = luaL_checknumber(L, 4);
  lua_Number kt = luaL_checknumber(L, 5);
  lua_Number hw = luaL_checknumber(L, 6);
  luaL_argcheck(L, mh >= 1, 2, "maxHeaderSize must be positive");
  luaL_argcheck(L, ht >= 0 && rt >= 0 && kt >= 0, 3,
                "timeouts must not be negative");
  s->max_header = (size_t)mh;
  s->headers_timeout = (uint64_t)ht;
  s->request_timeout = (uint64_t)rt;
  s->keepalive_timeout = (uint64_t)kt;
  s->hwm = hw > 0 ? (size_t)hw : 16384;
  /* Node's header: whole seconds, even when that is 0. */
  if (s->keepalive_timeout > 0)
    s->ka_len = (size_t)snprintf(s->ka_header, sizeof(s->ka_header),
                                 "Connection: keep-alive\r\n"
                                 "Keep-Alive: timeout=%llu\r\n",
                                 (unsigned long long)(kt / 1000));
  else
    s->ka_len = (size_t)snprintf(s->ka_header, sizeof(s->ka_header),
                                 "Connection: keep-alive\r\n");
  return 0;
}

/* Opens the listener on fd (owned from here on) and starts accepting. */
static int server_open(lua_State *L, http_server *s, int fd, int backlog) {
  int err;
  if (s->listening) {
    close(fd);
    return luaL_error(L, "the server is already listening");
  }
  err = uv_tcp_init(s->loop, &s->listener);
  if (err != 0) {
    close(fd);
    return lc_push_uverr(L, err);
  }
  s->listener.data = s;
  s->open_handles++;
  err = uv_tcp_open(&s->listener, fd);
  if (err != 0)
    close(fd); /* Not the handle's yet. */
  else
    err = uv_listen((uv_stream_t *)&s->listener, backlog, listener_cb);
  if (err != 0) {
    uv_close((uv_handle_t *)&s->listener, listener_close_cb);
    return lc_push_uverr(L, err);
  }
  s->listening = 1;
  if (s->unref)
    uv_unref((uv_handle_t *)&s->listener);
  server_serve(L, s);
  lua_pushboolean(L, 1);
  return 1;
}

/* srv:ref(on): whether the listening socket keeps the loop alive (Node's
 * server.ref() / server.unref()); connections always do. */
static int server_ref(lua_State *L) {
  http_server *s = check_server(L);
  s->unref = !lua_toboolean(L, 2);
  if (s->listening) {
    if (s->unref)
      uv_unref((uv_handle_t *)&s->listener);
    else
      uv_ref((uv_handle_t *)&s->listener);
  }
  return 0;
}

/* srv:listen(host|nil, port, backlog, reuseport) -> true
 * or nil, message, code. */
static int server_listen(lua_State *L) {
  http_server *s = check_server(L);
  const char *host = luaL_optstring(L, 2, NULL);
  int port = (int)luaL_checkinteger(L, 3);
  int backlog = (int)luaL_optinteger(L, 4, 511);
  int reuseport = lua_toboolean(L, 5);
  int fd;
  luaL_argcheck(L, port >= 0 && port <= 65535, 3, "port out of range");
  if (backlog < 0)
    backlog = 511; /* lc__tcp_listen_fd would bind without listening. */
  if (s->listening)
    return luaL_error(L, "the server is already listening");
  fd = lc__tcp_listen_fd(host, port, backlog, reuseport);
  if (fd < 0)
    return lc_push_uverr(L, fd);
  return server_open(L, s, fd, backlog);
}

/* srv:listen_fd(fd, backlog): listens on a duplicate of a listening
 * socket received from elsewhere; the caller may close its own. */
static int server_listen_fd(lua_State *L) {
  http_server *s = check_server(L);
  int fd = (int)luaL_checkinteger(L, 2);
  int backlog = (int)luaL_optinteger(L, 3, 511);
  if (s->listening)
    return luaL_error(L, "the server is already listening");
  fd = lc__tcp_dup(fd);
  if (fd < 0)
    return lc_push_uverr(L, fd);
  return server_open(L, s, fd, backlog);
}

/* srv:serve(): serves adopted connections without a listener of its own
 * (round robin in a worker). */
static int server_serve_lua(lua_State *L) {
  http_server *s = check_server(L);
  server_serve(L, s);
  return 0;
}

/* srv:adopt(fd): serves a duplicate of an accepted connection. Returns
 * true or nil, message, code. */
static int server_adopt(lua_State *L) {
  http_server *s = check_server(L);
  int fd = (int)luaL_checkinteger(L, 2);
  http_conn *c;
  int err;
  if (s->closing && s->serving)
    return lc_push_uverr(L, UV_ECANCELED);
  fd = lc__tcp_dup(fd);
  if (fd < 0)
    return lc_push_uverr(L, fd);
  c = conn_new(s);
  if (c == NULL) {
    close(fd);
    return lc_push_uverr(L, UV_ENOMEM);
  }
  err = uv_tcp_open(&c->tcp, fd);
  if (err != 0) {
    close(fd);
    uv_close((uv_handle_t *)&c->tcp, conn_free_cb);
    return lc_push_uverr(L, err);
  }
  if (!s->serving)
    server_serve(L, s);
  conn_start(c);
  lua_pushboolean(L, 1);
  return 1;
}

/* srv:address() -> {address=, port=, family=, addressType=} or nil. */
static int server_address(lua_State *L) {
  http_server *s = check_server(L);
  uv_os_fd_t fd;
  if (!s->listening || uv_fileno((uv_handle_t *)&s->listener, &fd) != 0) {
    lua_pushnil(L);
    return 1;
  }
  return lc__tcp_push_name(L, fd, 0);
}

/* Whether the connection waits for a request (nothing in flight). */
static int conn_idle(const http_conn *c) {
  return !c->busy && !c->in_msg && !c->paused && c->in.len == 0;
}

/* srv:close([drain]): stops accepting, closes idle connections (not when
 * draining); the others close after their response. The 'close'
 * callback runs once all are gone. */
static int server_close(lua_State *L) {
  http_server *s = check_server(L);
  int drain = lua_toboolean(L, 2);
  http_conn *c, *next;
  s->closing = 1;
  s->draining = drain ? 1 : 0;
  if (s->listening) {
    s->listening = 0;
    uv_close((uv_handle_t *)&s->listener, listener_close_cb);
  }
  /* Draining (a reload or a graceful shutdown) leaves idle keep-alive
   * connections open: a request already on its way gets its answer, with
   * Connection: close; the others end at keepAliveTimeout. */
  for (c = s->conns; c && !drain; c = next) {
    next = c->next;
    if (conn_idle(c))
      conn_close(c);
  }
  server_check_closed(s);
  return 0;
}

/* srv:close_connections(all): closes idle (or all) connections now. */
static int server_close_connections(lua_State *L) {
  http_server *s = check_server(L);
  int all = lua_toboolean(L, 2);
  http_conn *c, *next;
  for (c = s->conns; c; c = next) {
    next = c->next;
    if (all || conn_idle(c))
      conn_close(c);
  }
  return 0;
}

/* srv:emit_connection(on): whether each connection is reported. */
static int server_emit_connection(lua_State *L) {
  http_server *s = check_server(L);
  s->emit_connection = lua_toboolean(L, 2);
  return 0;
}

/* srv:stats() -> requests, connections (0, 0 once collected: a server's
 * table may outlive its box within one collection). */
static int server_stats(lua_State *L) {
  server_box *b = (server_box *)luaL_checkudata(L, 1, SERVER_MT);
  http_server *s = b->s;
  if (s == NULL) {
    lua_pushnumber(L, 0);
    lua_pushinteger(L, 0);
    return 2;
  }
  lua_pushnumber(L, s->requests);
  lua_pushinteger(L, (lua_Integer)s->nconns);
  return 2;
}

static int server_gc(lua_State *L) {
  server_box *b = (server_box *)luaL_checkudata(L, 1, SERVER_MT);
  http_server *s = b->s;
  if (s == NULL)
    return 0;
  b->s = NULL;
  s->box_gone = 1;
  luaL_unref(L, LUA_REGISTRYINDEX, s->ref_keys);
  /* Serving pins the box, so only the timer and idle handles are open and
   * the callbacks are out of the registry. */
  uv_close((uv_handle_t *)&s->timer, server_free_cb);
  uv_close((uv_handle_t *)&s->idle, server_free_cb);
  return 0;
}

/* _http.server(callbacks) -> server. callbacks holds the functions and
 * classes named in HTTP_CALLBACK_MAP. */
static int http_server_new(lua_State *L) {
  lc_ctx *ctx = lc_get(L);
  http_server *s;
  server_box *b;
  int i;
  luaL_checktype(L, 1, LUA_TTABLE);
  for (i = 0; i < CB_MAX; i++) {
    lua_getfield(L, 1, cb_fields[i]);
    if (lua_isnil(L, -1))
      return luaL_error(L, "server callback '%s' missing", cb_fields[i]);
    lua_pop(L, 1);
  }
  b = (server_box *)lua_newuserdata(L, sizeof(*b));
  b->s = NULL;
  luaL_getmetatable(L, SERVER_MT);
  lua_setmetatable(L, -2);
  s = (http_server *)calloc(1, sizeof(*s));
  if (s != NULL)
    s->rbuf = (char *)malloc(READ_BUF_SIZE);
  if (s == NULL || s->rbuf == NULL) {
    free(s);
    return luaL_error(L, "out of memory");
  }
  s->L = ctx->L;
  s->loop = ctx->loop;
  s->ctx = ctx;
  s->ref_self = LUA_NOREF;
  for (i = 0; i < CB_MAX; i++)
    s->refs[i] = LUA_NOREF;
  lua_pushvalue(L, 1);
  lua_setfenv(L, -2);
  /* The key table. Stack: callbacks box keys. */
  lua_createtable(L, KEY_METHODS + 64, 0);
#define XX(name, str)                                                         \
  lua_pushliteral(L, str);                                                    \
  lua_rawseti(L, -2, KEY_##name);
  HTTP_KEY_MAP(XX)
#undef XX
#define XX(num, name, string)                                                 \
  lua_pushliteral(L, #string);                                                \
  lua_rawseti(L, -2, KEY_METHODS + num);
  HTTP_ALL_METHOD_MAP(XX)
#undef XX
  s->ref_keys = luaL_ref(L, LUA_REGISTRYINDEX);
  uv_timer_init(s->loop, &s->timer);
  uv_idle_init(s->loop, &s->idle);
  s->timer.data = s->idle.data = s;
  uv_unref((uv_handle_t *)&s->timer);
  s->open_handles = 2;
  s->max_header = 16384;
  s->hwm = 16384;
  s->headers_timeout = 60000;
  s->request_timeout = 300000;
  s->keepalive_timeout = 5000;
  s->ka_len = (size_t)snprintf(s->ka_header, sizeof(s->ka_header),
                               "Connection: keep-alive\r\n"
                               "Keep-Alive: timeout=5\r\n");
  b->s = s;
  return 1;
}

/* ---- Connection functions (first argument: the connection box). ---- */

/* Returns the live connection of the box at idx, or NULL once closed. */
static http_conn *check_conn(lua_State *L, int idx) {
  conn_box *b = (conn_box *)luaL_checkudata(L, idx, CONN_MT);
  return b->c;
}

/* _http.send(c, res, chunk|nil, last, statusCode, statusMessage, sendDate,
 * _headers, _names, _wh) -> ok: writes the head (first time, from res's
 * fields passed along) and a piece of body; last finishes the response. ok
 * is false when the caller should wait for 'drain' (or the connection is
 * gone). */
static int http_send(lua_State *L) {
  http_conn *c = check_conn(L, 1);
  size_t len = 0;
  const char *chunk;
  int last = lua_toboolean(L, 4);
  luaL_checktype(L, 2, LUA_TTABLE);
  chunk = luaL_optlstring(L, 3, NULL, &len);
  if (c == NULL || c->closing || c->shutting || !c->busy) {
    lua_pushboolean(L, 0);
    return 1;
  }
  /* Only the response in flight may write. Its table is pinned in env
   * while in flight, so its address identifies it (learnt here first). */
  if (c->res_ptr == NULL) {
    conn_get(L, c, ENV_RES);
    c->res_ptr = lua_topointer(L, -1);
    lua_pop(L, 1);
  }
  if (lua_topointer(L, 2) != c->res_ptr) {
    lua_pushboolean(L, 0);
    return 1;
  }
  if (!c->head_sent)
    write_head(L, c, 5, 0, len, last);
  write_body(c, chunk, len, last);
  if (last)
    response_done(c);
  if (c->closing || c->shutting) {
    lua_pushboolean(L, !last ? 0 : 1);
    return 1;
  }
  if (c->depth == 0 || c->out.len >= c->s->hwm)
    conn_flush(c);
  if (!last && !c->closing && conn_queued(c) >= c->s->hwm) {
    c->want_drain = 1;
    lua_pushboolean(L, 0);
  } else {
    lua_pushboolean(L, !c->closing);
  }
  return 1;
}

/* _http.head_sent(c) -> whether the response in flight has written its
 * head (false once the connection is gone). */
static int http_head_sent(lua_State *L) {
  http_conn *c = check_conn(L, 1);
  lua_pushboolean(L, c != NULL && c->busy && c->head_sent);
  return 1;
}

/* _http.write_continue(c): sends "100 Continue". */
static int http_write_continue(lua_State *L) {
  http_conn *c = check_conn(L, 1);
  if (c == NULL || c->closing || c->shutting || c->head_sent)
    return 0;
  buf_lit(&c->out, "HTTP/1.1 100 Continue\r\n\r\n");
  if (c->depth == 0)
    conn_flush(c);
  return 0;
}

/* _http.destroy(c): closes the connection at once. */
static int http_destroy(lua_State *L) {
  http_conn *c = check_conn(L, 1);
  if (c != NULL)
    conn_close(c);
  return 0;
}

/* _http.end_connection(c): ends the connection after what is written. */
static int http_end_connection(lua_State *L) {
  http_conn *c = check_conn(L, 1);
  if (c != NULL) {
    c->stop_parse = 1;
    if (c->depth == 0)
      conn_end(c);
    else
      c->close_after = 1;
  }
  return 0;
}

/* _http.name(c, peer) -> address table, or nil once closed. */
static int http_name(lua_State *L) {
  http_conn *c = check_conn(L, 1);
  uv_os_fd_t fd;
  if (c == NULL || uv_fileno((uv_handle_t *)&c->tcp, &fd) != 0) {
    lua_pushnil(L);
    return 1;
  }
  return lc__tcp_push_name(L, fd, lua_toboolean(L, 2));
}

/* _http.nodelay(c, on) */
static int http_nodelay(lua_State *L) {
  http_conn *c = check_conn(L, 1);
  if (c != NULL && !c->closing)
    uv_tcp_nodelay(&c->tcp, lua_toboolean(L, 2));
  return 0;
}

/* _http.reading(c, on): pauses or resumes reading (req:pause()). */
static int http_reading(lua_State *L) {
  http_conn *c = check_conn(L, 1);
  int on = lua_toboolean(L, 2);
  if (c == NULL || c->closing)
    return 0;
  if (on && c->read_stopped && c->in.len <= INPUT_LIMIT) {
    c->read_stopped = 0;
    uv_read_start((uv_stream_t *)&c->tcp, alloc_cb, read_cb);
  } else if (!on && !c->read_stopped) {
    c->read_stopped = 1;
    uv_read_stop((uv_stream_t *)&c->tcp);
  }
  return 0;
}

/* _http.writable_length(c) -> bytes queued and not yet written. */
static int http_writable_length(lua_State *L) {
  http_conn *c = check_conn(L, 1);
  lua_pushinteger(L, c ? (lua_Integer)conn_queued(c) : 0);
  return 1;
}

/* _http.status_codes() -> {[code] = reason}. */
/* _http.headers(hd) -> headers, rawHeaders: expands a request's head
 * data (push_head_data). */
static int http_headers(lua_State *L) {
  size_t len, off;
  const char *hd = luaL_checklstring(L, 1, &len);
  uint32_t n, i, maxn = 0;
  http_hdr *hdrs;
  lc_buf sc;
  luaL_argcheck(L, len >= sizeof(n), 1, "not head data");
  memcpy(&n, hd, sizeof(n));
  off = sizeof(n) + (size_t)n * sizeof(http_hdr);
  luaL_argcheck(L, off <= len, 1, "not head data");
  /* The offsets may be unaligned in the string: copied out, into memory
   * Lua owns (so nothing leaks if a push raises), as is the buffer for
   * lower-casing names. Stack: hd hdrs scratch. */
  hdrs = (http_hdr *)lua_newuserdata(L, n * sizeof(http_hdr) + 1);
  memcpy(hdrs, hd + sizeof(n), n * sizeof(http_hdr));
  for (i = 0; i < n; i++) {
    luaL_argcheck(L, hdrs[i].name + (size_t)hdrs[i].nlen <= len - off &&
                         hdrs[i].value + (size_t)hdrs[i].vlen <= len - off,
                  1, "not head data");
    if (hdrs[i].nlen > maxn)
      maxn = hdrs[i].nlen;
  }
  sc.base = (char *)lua_newuserdata(L, maxn + 1);
  sc.len = 0;
  sc.cap = maxn + 1;
  push_headers(L, &sc, hd + off, hdrs, n);
  return 2;
}

/* _http.requests() -> requests answered by every server of this process
 * since it started (servers since collected included). */
static int http_requests(lua_State *L) {
  lua_pushnumber(L, lc_get(L)->http_requests);
  return 1;
}

static int http_status_codes(lua_State *L) {
  lua_newtable(L);
#define XX(code, text)                                                        \
  lua_pushliteral(L, text);                                                   \
  lua_rawseti(L, -2, code);
  HTTP_REASON_MAP(XX)
#undef XX
  return 1;
}

/* _http.methods() -> the request methods llhttp knows, in map order. */
static int http_methods(lua_State *L) {
  int i = 0;
  lua_newtable(L);
#define XX(num, name, string)                                                 \
  lua_pushliteral(L, #string);                                                \
  lua_rawseti(L, -2, ++i);
  HTTP_METHOD_MAP(XX)
#undef XX
  return 1;
}

int luaopen_lc_http(lua_State *L) {
  static const luaL_Reg server_methods[] = {
    {"configure", server_configure},
    {"listen", server_listen},
    {"listen_fd", server_listen_fd},
    {"serve", server_serve_lua},
    {"adopt", server_adopt},
    {"address", server_address},
    {"close", server_close},
    {"close_connections", server_close_connections},
    {"emit_connection", server_emit_connection},
    {"stats", server_stats},
    {"ref", server_ref},
    {NULL, NULL}};
  static const luaL_Reg fns[] = {
    {"server", http_server_new},
    {"requests", http_requests},
    {"send", http_send},
    {"head_sent", http_head_sent},
    {"write_continue", http_write_continue},
    {"destroy", http_destroy},
    {"end_connection", http_end_connection},
    {"name", http_name},
    {"nodelay", http_nodelay},
    {"reading", http_reading},
    {"writable_length", http_writable_length},
    {"status_codes", http_status_codes},
    {"headers", http_headers},
    {"methods", http_methods},
    {NULL, NULL}};
  luaL_newmetatable(L, SERVER_MT);
  lua_newtable(L);
  luaL_register(L, NULL, server_methods);
  lua_setfield(L, -2, "__index");
  lua_pushcfunction(L, server_gc);
  lua_setfield(L, -2, "__gc");
  lua_pop(L, 1);
  luaL_newmetatable(L, CONN_MT);
  lua_pop(L, 1);
  lua_newtable(L);
  luaL_register(L, NULL, fns);
  return 1;
}
