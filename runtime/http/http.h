/* The HTTP/1.1 module's internal header: what its files share.
 *
 *   server.c   the server: listening, adopting, closing, options, the
 *              `_http` module table and the server's methods
 *   conn.c     a connection's life: reading, writing, pausing, closing,
 *              timeouts, its Lua side (box, env, socket)
 *   parse.c    bytes to requests: llhttp's callbacks, the checks llhttp 8
 *              leaves to us, the request handed to Lua; headers as Lua
 *              tables (Node's rules for repeated ones)
 *   respond.c  responses: the head from the Lua response's fields, body
 *              framing, the status table, the header rule
 *   upgrade.c  an upgraded connection ('upgrade', 'connect'): raw bytes to
 *              and from Lua, or WebSocket frames (runtime/ws/)
 *   response.c bytes to responses, for the client and http.inject: a
 *              parser object over llhttp that calls Lua back
 *
 * lua/http.lua and lua/http/ hold the Node-shaped API over this module
 * (`_http`).
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
 *   (pipelined requests) wait in conn->in. So answers leave in order.
 *
 * Functions shared between the files are named lc__http_*; everything
 * else is static to its file. */
#ifndef LC_HTTP_H
#define LC_HTTP_H

#include <stdint.h>
#include <time.h>
#include <llhttp.h>
#include "lc.h"
#include "buf.h"
#include "ws/ws.h"

#define SERVER_MT "lc.http.server"
#define CONN_MT "lc.http.conn"

#define READ_BUF_SIZE 65536
/* Pipelined input kept while a response is in flight; past it, reading
 * stops until the parser catches up. */
#define INPUT_LIMIT (256 * 1024)

/* ---- Tables built from X-macros. ---- */

/* Node's http.STATUS_CODES. */
#define HTTP_REASON_MAP(XX)                                                    \
  XX(100, "Continue")                                                          \
  XX(101, "Switching Protocols") XX(102, "Processing") XX(                     \
      103,                                                                     \
      "Early Hints") XX(200,                                                   \
                        "OK") XX(201,                                          \
                                 "Created") XX(202,                            \
                                               "Accepted") XX(203,             \
                                                              "Non-"           \
                                                              "Authoritative " \
                                                              "Information")   \
      XX(204, "No Content") XX(205, "Reset Content") XX(206, "Partial "        \
                                                             "Content") XX(    \
          207,                                                                 \
          "Multi-Status") XX(208,                                              \
                             "Already Reported") XX(226,                       \
                                                    "IM Used") XX(300,         \
                                                                  "Multiple "  \
                                                                  "Choices")   \
          XX(301, "Moved Permanently") XX(302, "Found") XX(                    \
              303,                                                             \
              "See Other") XX(304,                                             \
                              "Not Modified") XX(305,                          \
                                                 "Use Proxy") XX(307,          \
                                                                 "Temporary "  \
                                                                 "Redirect")   \
              XX(308, "Permanent Redirect") XX(400, "Bad Request") XX(         \
                  401, "Unauthorized") XX(402,                                 \
                                          "Payment Required") XX(403,          \
                                                                 "Forbidden")  \
                  XX(404, "Not Found") XX(405, "Method Not Allowed") XX(       \
                      406,                                                     \
                      "Not Acceptable") XX(407,                                \
                                           "Proxy Authentication Required")    \
                      XX(408, "Request Timeout") XX(409, "Conflict") XX(       \
                          410,                                                 \
                          "Gone") XX(411,                                      \
                                     "Length Required") XX(412,                \
                                                           "Precondition "     \
                                                           "Failed") XX(413,   \
                                                                        "Payl" \
                                                                        "oad " \
                                                                        "Too " \
                                                                        "Larg" \
                                                                        "e")   \
                          XX(414, "URI Too Long") XX(415, "Unsupported Media " \
                                                          "Type") XX(          \
                              416, "Range Not Satisfiable") XX(417,            \
                                                               "Expectation "  \
                                                               "Failed")       \
                              XX(418, "I'm a Teapot") XX(421, "Misdirected "   \
                                                              "Request") XX(   \
                                  422,                                         \
                                  "Unprocessable Entity") XX(423,              \
                                                             "Locked") XX(424, \
                                                                          "Fa" \
                                                                          "il" \
                                                                          "ed" \
                                                                          " D" \
                                                                          "ep" \
                                                                          "en" \
                                                                          "de" \
                                                                          "nc" \
                                                                          "y") \
                                  XX(425, "Too Early") XX(426, "Upgrade "      \
                                                               "Required") XX( \
                                      428,                                     \
                                      "Precondition Required") XX(429,         \
                                                                  "Too Many "  \
                                                                  "Requests")  \
                                      XX(431, "Request Header Fields Too "     \
                                              "Large") XX(451, "Unavailable "  \
                                                               "For Legal "    \
                                                               "Reasons") XX(  \
                                          500, "Internal Server Error")        \
                                          XX(501, "Not Implemented") XX(       \
                                              502,                             \
                                              "Bad Gateway") XX(503,           \
                                                                "Service "     \
                                                                "Unavailable") \
                                              XX(504, "Gateway Timeout") XX(   \
                                                  505,                         \
                                                  "HTTP Version Not "          \
                                                  "Supported") XX(506,         \
                                                                  "Variant "   \
                                                                  "Also "      \
                                                                  "Negotiate"  \
                                                                  "s")         \
                                                  XX(507, "Insufficient "      \
                                                          "Storage") XX(       \
                                                      508, "Loop Detected")    \
                                                      XX(509, "Bandwidth "     \
                                                              "Limit "         \
                                                              "Exceeded") XX(  \
                                                          510, "Not Extended") \
                                                          XX(511,              \
                                                             "Network "        \
                                                             "Authentication " \
                                                             "Required")

/* The Lua functions and classes a server calls, by field of the table
 * given to _http.server(). */
#define HTTP_CALLBACK_MAP(XX)                                                  \
  XX(DISPATCH, "dispatch")     /* (method, url, version, head, socket,         \
                                  complete, conn, env): one per request. */    \
  XX(DATA, "data")             /* (req, chunk): a piece of request body. */    \
  XX(END, "end")               /* (req): the body is complete. */              \
  XX(DRAIN, "drain")           /* (res): the write queue emptied. */           \
  XX(ABORT, "abort")           /* (req|nil, res|nil): closed mid-request. */   \
  XX(CONNECTION, "connection") /* (socket): a new connection. */               \
  XX(CLOSE, "close")           /* (): the server is fully closed. */           \
  XX(TIMEOUT, "timeout")       /* (socket): idle past its setTimeout. */      \
  XX(UPGRADE, "upgrade")       /* (method, url, version, head, socket,         \
                                  rest, conn): an 'upgrade' or 'connect'. */   \
  XX(RAW, "raw")               /* (socket, event, data|nil): an upgraded       \
                                  connection's data, end, drain, close. */     \
  XX(WS, "ws")                 /* (socket, op, payload) a WebSocket message    \
                                  or control frame; (socket, 0, reason,        \
                                  code) a protocol error. */                   \
  XX(CLIENT_ERROR, "client_error") /* (socket, status, code): a bad request \
                                      for the 'clientError' listener. */     \
  XX(TLS_ERROR, "tlsClientError") /* (code, reason, socket): a TLS           \
                                     handshake failed (conn_tls.c). */       \
  XX(SECURE, "secureConnection") /* (socket): a TLS handshake done, when    \
                                    emit_secure (conn_tls.c). */            \
  XX(CHECK_CONTINUE, "checkContinue") /* as dispatch: Expect: 100-continue   \
                                         with a listener (no 100 sent). */  \
  XX(CHECK_EXPECTATION, "checkExpectation") /* as dispatch: another         \
                                               Expect, with a listener. */ \
  XX(SOCK_MT, "Socket")

enum {
#define XX(name, field) CB_##name,
  HTTP_CALLBACK_MAP(XX)
#undef XX
      CB_MAX
};

extern const char *const lc__http_cb_fields[];

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

/* Slots of a connection's env table, exported as _http.ENV_<name>. */
#define HTTP_ENV_MAP(XX) XX(SOCKET, 1) XX(REQ, 2) XX(RES, 3)

enum {
#define XX(name, slot) ENV_##name = slot,
  HTTP_ENV_MAP(XX)
#undef XX
};

/* The server's options and their defaults (Node's), exported as
 * _http.DEFAULTS; the response parser's head limit is maxHeaderSize's. */
#define HTTP_DEFAULT_MAP(XX)                                                   \
  XX(maxHeaderSize, 16384)                                                     \
  XX(headersTimeout, 60000)                                                    \
  XX(requestTimeout, 300000)                                                   \
  XX(keepAliveTimeout, 5000)                                                   \
  XX(highWaterMark, 16384)

enum {
#define XX(name, value) DEFAULT_##name = value,
  HTTP_DEFAULT_MAP(XX)
#undef XX
};

/* The fields of a Lua response the head is written from, in the order
 * _http.send and lc__http_write_head take them (exported to Lua as
 * _http.RES_FIELDS, from which lua/http/response.lua makes the call). */
#define HTTP_RES_FIELD_MAP(XX)                                                 \
  XX(STATUS_CODE, "statusCode")                                                \
  XX(STATUS_MESSAGE, "statusMessage")                                          \
  XX(SEND_DATE, "sendDate")                                                    \
  XX(HEADERS, "_headers")                                                      \
  XX(NAMES, "_names")                                                          \
  XX(WH, "_wh")

enum {
#define XX(name, field) RES_##name,
  HTTP_RES_FIELD_MAP(XX)
#undef XX
      RES_MAX
};

/* How a response body is framed on the wire. */
enum { FRAME_NONE, FRAME_LENGTH, FRAME_CHUNKED, FRAME_RAW };

/* ---- Structures. ---- */

typedef struct http_conn http_conn;

/* One header of a message being parsed: offsets into its head's bytes. */
typedef struct {
  uint32_t name, nlen, value, vlen;
} http_hdr;

/* The head of a message being parsed, a request's (parse.c) or a
 * response's (response.c): its bytes (the URL or the reason, then header
 * names and values, as llhttp hands them over in pieces) and where each
 * header sits in them. head_* below collect it. */
typedef struct {
  lc_buf bytes;
  http_hdr *hdrs;
  size_t n, cap;
  int state; /* 0 start, 1 in a name, 2 in a value. */
} http_head;

/* A listening or connected stream socket: TCP, or a Unix socket (Node's
 * pipe). Its first member is a uv_stream_t whichever it is, so the paths
 * they share (reads, writes, closing) use stream and handle alike. */
typedef union {
  uv_handle_t handle;
  uv_stream_t stream;
  uv_tcp_t tcp;
  uv_pipe_t pipe;
} http_sock;

typedef struct http_server {
  lua_State *L;
  double *total;      /* Requests of every server of this state. */
  uv_loop_t *loop;
  http_sock listener; /* .tcp, or .pipe with `pipe` set. */
  uv_timer_t timer; /* Scans connections for timeouts. */
  uv_idle_t idle;   /* Resumes paused parsers outside of user calls. */
  int refs[CB_MAX];
  int ref_keys;     /* The key table (HTTP_KEY_MAP, methods). */
  int ref_self;     /* Pins the box while serving. */
  int open_handles; /* Initialised handles not yet closed. */
  unsigned box_gone : 1;
  unsigned serving : 1;   /* Pinned; listening or adopting. */
  unsigned listening : 1; /* The listener handle is open. */
  unsigned closing : 1;   /* close() was called. */
  unsigned draining : 1;  /* ... as a drain: idle connections stay. */
  unsigned unref : 1;     /* The listener does not keep the loop alive. */
  unsigned pipe : 1;      /* The listener is a Unix socket. */
  unsigned emit_connection : 1;
  unsigned emit_upgrade : 1; /* An 'upgrade' listener is there. */
  unsigned emit_connect : 1; /* A 'connect' listener is there. */
  unsigned emit_client_error : 1; /* A 'clientError' listener too. */
  unsigned emit_secure : 1;       /* A 'secureConnection' listener. */
  unsigned emit_check_continue : 1;    /* A 'checkContinue' listener. */
  unsigned emit_check_expectation : 1; /* A 'checkExpectation' one. */
  unsigned rbuf_busy : 1;
  /* Limits (milliseconds for times; 0 disables). */
  size_t max_header;
  size_t hwm;
  uint64_t headers_timeout, request_timeout, keepalive_timeout;
  uint64_t socket_timeout; /* server.setTimeout: each new connection's. */
  unsigned max_requests;   /* maxRequestsPerSocket (0: no limit). */
  uint64_t scan_every; /* The timeout scan's period (ms). */
  uint64_t min_idle;   /* The shortest socket:setTimeout so far (ms). */
  char ka_header[96]; /* "Connection: keep-alive\r\nKeep-Alive: ...\r\n" */
  size_t ka_len;
  char date[48]; /* "Date: ...\r\n", refreshed each second. */
  size_t date_len;
  time_t date_sec;
  char *rbuf;       /* The shared read buffer. */
  lc_buf scratch;   /* Head data being packed. */
  http_conn *conns; /* Every open connection. */
  size_t nconns;
  lc_flush_hook flush_hook; /* Pushes the connections' output at exit. */
  http_conn *resume; /* Connections whose parser waits to resume. */
  http_conn *flush;  /* Upgraded connections whose output waits for the
                        next loop turn (lc__http_conn_queue_flush). */
  double requests;
  struct ssl_ctx_st *tls_ctx; /* Serving TLS (conn_tls.c) when set. */
  uint64_t handshake_timeout; /* ms; 0: none. */
} http_server;

typedef struct {
  http_server *s;
} server_box;

typedef struct {
  http_conn *c;
} conn_box;

struct http_conn {
  http_sock sock; /* .tcp, or .pipe with `pipe` set. */
  struct lc_tls *tls; /* The TLS engine (conn_tls.c), or NULL. */
  uv_shutdown_t shutdown_req;
  llhttp_t parser;
  http_server *s;
  http_conn *prev, *next; /* The server's list. */
  http_conn *resume_next; /* The server's resume list. */
  http_conn *flush_next;  /* The server's flush list. */
  conn_box *box;
  int ref_box, ref_env; /* LUA_NOREF until the Lua side is made. */
  const void *res_ptr;  /* The table of the response in flight. */
  lc_buf in;            /* Unparsed input while paused. */
  lc_buf trl;           /* A chunked request's trailers: name\0value\0... */
  http_head head;        /* The request's URL and headers. */
  uint32_t url_len;
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
  uint64_t idle_timeout;    /* socket:setTimeout(ms); 0: none. */
  uint64_t last_active;     /* The last read or write, with idle_timeout. */
  int depth;                /* Nesting of parser runs. */
  const char *feed_end;     /* The end of the bytes the parser runs on. */
  int framing;              /* FRAME_* of the response in flight. */
  unsigned in_msg : 1;      /* Between message begin and complete. */
  unsigned in_head : 1;     /* ... and before its headers completed. */
  unsigned req_obj : 1;     /* The request in parse has a Lua req. */
  unsigned req_body : 1;    /* ... and a body, so 'end' is reported. */
  unsigned req_whole : 1;   /* ... handed whole to dispatch: no data/end. */
  unsigned busy : 1;        /* A response is in flight. */
  unsigned out_full : 1;    /* Parsing waits for the output to drain. */
  unsigned in_trailers : 1; /* After the last chunk of the body. */
  unsigned head_sent : 1;   /* Its head is written. */
  unsigned is_head : 1;     /* The request is HEAD. */
  unsigned keep_req : 1;    /* The request allows keep-alive. */
  unsigned nreq;            /* Requests dispatched on it so far. */
  unsigned trl_state : 2;   /* 0 none, 1 in a trailer's name, 2 value. */
  unsigned keep : 1;        /* The response keeps the connection. */
  unsigned http11 : 1;      /* The request is HTTP/1.1 or later. */
  unsigned expect : 2;      /* 1: 100-continue, 2: another expectation. */
  unsigned paused : 1;      /* llhttp paused; input waits in `in`. */
  unsigned flush_queued : 1;
  unsigned resume_queued : 1;
  unsigned read_stopped : 1;
  unsigned stop_parse : 1;  /* No more requests on this connection. */
  unsigned close_after : 1; /* End the connection once output is out. */
  unsigned silent : 1;      /* Close without an error response. */
  unsigned want_drain : 1;
  unsigned shutting : 1; /* uv_shutdown issued. */
  unsigned closing : 1;  /* uv_close issued. */
  unsigned idle_fired : 1; /* 'timeout' was reported since last_active. */
  unsigned pipe : 1;       /* A Unix socket: no TCP options apply. */
  unsigned upgrading : 1;  /* Its request goes to 'upgrade' or 'connect'. */
  unsigned raw : 1;        /* Upgraded: llhttp no longer parses it. */
  unsigned raw_paused : 1; /* ... and its socket was paused. */
  unsigned raw_batch : 1;  /* ... and a read is being handed to Lua: what
                              it writes goes out together after. */
  ws_parser *ws;           /* Upgraded to a WebSocket: its frame parser. */
  unsigned tls_end : 1;    /* close_notify goes with the next seal. */
  unsigned clear : 1;      /* No TLS on a TLS server (http.inject). */
};

typedef struct {
  uv_write_t req;
  http_conn *c;
  char *base; /* Owned; freed in the callback. */
} http_write;

#define STOPPED(c) ((c)->closing || (c)->shutting || (c)->stop_parse)

/* ---- Header names and tokens (case-insensitive ASCII). ---- */

static inline char lower(char ch) {
  return (ch >= 'A' && ch <= 'Z') ? (char)(ch | 0x20) : ch;
}

/* Case-insensitive comparison of a header name with a lower-case one. */
static inline int name_is(const char *name, size_t len, const char *lc,
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
static inline int has_token(const char *s, size_t len, const char *tok) {
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

/* ---- Collecting a head (llhttp's pieces) within max bytes; each adder
 * returns 0, or -1 once the head would pass max. ---- */

static inline void head_reset(http_head *h) {
  h->bytes.len = 0;
  h->n = 0;
  h->state = 0;
}

static inline void head_free(http_head *h) {
  buf_free(&h->bytes);
  free(h->hdrs);
  h->hdrs = NULL;
  h->n = h->cap = 0;
}

/* Bytes that are not a header's (the URL, the reason). */
static inline int head_bytes(http_head *h, const char *at, size_t len,
                             size_t max) {
  if (h->bytes.len + len > max)
    return -1;
  buf_add(&h->bytes, at, len);
  return 0;
}

/* A piece of a header's name: a new header after a value. */
static inline int head_name(http_head *h, const char *at, size_t len,
                            size_t max) {
  if (h->state != 1) {
    http_hdr *x;
    if (h->n == h->cap) {
      size_t cap = h->cap ? h->cap * 2 : 16;
      h->hdrs = (http_hdr *)lc__xrealloc(h->hdrs, cap * sizeof(http_hdr));
      h->cap = cap;
    }
    x = &h->hdrs[h->n++];
    x->name = x->value = (uint32_t)h->bytes.len;
    x->nlen = x->vlen = 0;
    h->state = 1;
  }
  if (head_bytes(h, at, len, max) != 0)
    return -1;
  h->hdrs[h->n - 1].nlen += (uint32_t)len;
  return 0;
}

/* A piece of the last header's value (none before a name). */
static inline int head_value(http_head *h, const char *at, size_t len,
                             size_t max) {
  http_hdr *x;
  if (h->n == 0)
    return 0;
  x = &h->hdrs[h->n - 1];
  if (h->state != 2) {
    x->value = (uint32_t)h->bytes.len;
    h->state = 2;
  }
  if (head_bytes(h, at, len, max) != 0)
    return -1;
  x->vlen += (uint32_t)len;
  return 0;
}

/* ---- Shared between the files. ---- */

/* conn.c */
http_conn *lc__http_conn_new(http_server *s, int pipe);
void lc__http_conn_start(http_conn *c);
void lc__http_conn_free_cb(uv_handle_t *h);
void lc__http_conn_close(http_conn *c);
void lc__http_conn_fail(http_conn *c, int status);
void lc__http_conn_flush(http_conn *c);
void lc__http_conn_push(http_conn *c);
void lc__http_conn_settle(http_conn *c);
size_t lc__http_conn_queued(http_conn *c);
int lc__http_conn_idle(const http_conn *c);
void lc__http_response_done(http_conn *c);
void lc__http_conn_lua(http_conn *c);
void lc__http_conn_get(lua_State *L, http_conn *c, int slot);
void lc__http_conn_set(http_conn *c, int slot);
void lc__http_conn_socket(http_conn *c, int env);
void lc__http_timeouts(http_server *s);
http_conn *lc__http_check_conn(lua_State *L, int idx);
void lc__http_conn_end(http_conn *c);
void lc__http_conn_reading(http_conn *c, int on);
void lc__http_conn_input(http_conn *c, const char *p, size_t n);
void lc__http_conn_eof(http_conn *c);
void lc__http_conn_push_socket(http_conn *c);
extern const luaL_Reg lc__http_conn_fns[];

/* conn_tls.c: TLS at conn.c's read and write seams (c->tls set). */
int lc__http_tls_attach(http_conn *c);
void lc__http_tls_free(http_conn *c);
void lc__http_tls_input(http_conn *c, const char *p, size_t n);
int lc__http_tls_seal(http_conn *c);
void lc__http_tls_end(http_conn *c);
int lc__http_tls_timeout(http_conn *c, uint64_t now);
int lc__http_server_tls(lua_State *L, http_server *s);
void lc__http_server_tls_free(http_server *s);
extern const luaL_Reg lc__http_tls_fns[];

/* parse.c */
void lc__http_push_headers(lua_State *L, lc_buf *sc, const char *base,
                           const http_hdr *hdrs, size_t n);
void lc__http_parser_init(http_conn *c);
void lc__http_feed(http_conn *c, const char *data, size_t len, int own);
extern const luaL_Reg lc__http_parse_fns[];

/* respond.c */
const char *lc__http_reason(int status);
void lc__http_write_head(lua_State *L, http_conn *c, int res, int status,
                         size_t body_len, int last);
extern const luaL_Reg lc__http_respond_fns[];
void lc__http_respond_open(lua_State *L);

/* upgrade.c: an upgraded connection's side of conn.c's seams. */
void lc__http_raw_read(http_conn *c, char *data, ssize_t nread);
void lc__http_raw_drain(http_conn *c);
/* Sends what an upgraded connection has written and not yet sent ('drain'
 * when that was past the high-water mark and all left at once). */
void lc__http_raw_flush(http_conn *c);
/* Queues c's output to be sent on the next loop turn, with whatever else
 * is written to it until then (conn.c's idle callback). */
void lc__http_conn_queue_flush(http_conn *c);
void lc__http_raw_resume(http_conn *c);
void lc__http_raw_closed(http_conn *c);
void lc__http_raw_free(http_conn *c);
void lc__http_client_error(http_conn *c, int status);
extern const luaL_Reg lc__http_upgrade_fns[];

/* response.c */
void lc__http_response_open(lua_State *L);

/* server.c */
void lc__http_server_check_closed(http_server *s);
void lc__http_server_scan(http_server *s);

#endif
