/* The HTTP server's parser side: bytes to requests. llhttp parses; its
 * callbacks collect the head (URL and header offsets into conn->head),
 * check what llhttp 8 lets through and Node refuses (gap_check, url_ok,
 * Host), then hand the request to Lua in one call (the server's dispatch)
 * and its body piece by piece. The headers reach Lua packed in one string,
 * expanded only if the handler looks at them (_http.headers), by the rules
 * for repeated headers that responses share (lc__http_push_headers). */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include "http.h"

/* Where llhttp stood when it called on_headers_complete or
 * on_message_complete (just past the last byte of the head or message):
 * llhttp.c is built with its internal callbacks renamed to wrappers that
 * note it (llhttp_at.c). */
extern const char *lc__llhttp_at;

/* Pushes the server's key table; returns its (absolute) index. */
static int push_keys(http_server *s) {
  lua_rawgeti(s->L, LUA_REGISTRYINDEX, s->ref_keys);
  return lua_gettop(s->L);
}

/* How Node merges a repeated header (of a request or a response). */
enum { DUP_JOIN, DUP_DROP, DUP_COOKIE, DUP_ARRAY };

static int dup_policy(const char *n, size_t len) {
  static const char *const drop[] = {"age",
                                     "authorization",
                                     "content-length",
                                     "content-type",
                                     "etag",
                                     "expires",
                                     "from",
                                     "host",
                                     "if-modified-since",
                                     "if-unmodified-since",
                                     "last-modified",
                                     "location",
                                     "max-forwards",
                                     "proxy-authorization",
                                     "referer",
                                     "retry-after",
                                     "server",
                                     "user-agent",
                                     NULL};
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
 * at offsets (hdrs) into base: names lower-cased in headers, repeats
 * merged by Node's rules (dup_policy), values without trailing blanks.
 * scratch is a buffer for lower-casing. The one place these rules live:
 * requests (_http.headers) and responses (response.c) both come here.
 * Stack: +2. */
void lc__http_push_headers(lua_State *L, lc_buf *sc, const char *base,
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
      lua_pushstring(L,
                     dup_policy(sc->base, sc->len) == DUP_COOKIE ? "; " : ", ");
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
  for (i = 0; i < c->head.n; i++) {
    const http_hdr *h = &c->head.hdrs[i];
    const char *value = c->head.bytes.base + h->value;
    size_t vlen = h->vlen;
    if (h->nlen == 4 && name_is(c->head.bytes.base + h->name, 4, "host", 4)) {
      host = 1;
      continue;
    }
    if (h->nlen != 6 || !name_is(c->head.bytes.base + h->name, 6, "expect", 6))
      continue;
    while (vlen > 0 && (value[vlen - 1] == ' ' || value[vlen - 1] == '\t'))
      vlen--;
    c->expect = (vlen == 12 && has_token(value, vlen, "100-continue")) ? 1 : 2;
  }
  return host;
}

/* Pushes the request's headers as one string, for _http.headers() to
 * expand on first use (most handlers never look at them): the count, the
 * offsets, then the head's bytes. Stack: +1. */
static void push_head_data(http_conn *c) {
  lc_buf *sc = &c->s->scratch;
  uint32_t n = (uint32_t)c->head.n;
  size_t off = sizeof(n) + n * sizeof(http_hdr);
  sc->len = 0;
  buf_reserve(sc, off + c->head.bytes.len);
  memcpy(sc->base, &n, sizeof(n));
  if (n > 0)
    memcpy(sc->base + sizeof(n), c->head.hdrs, n * sizeof(http_hdr));
  if (c->head.bytes.len > 0)
    memcpy(sc->base + off, c->head.bytes.base, c->head.bytes.len);
  lua_pushlstring(c->s->L, sc->base, off + c->head.bytes.len);
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
  lua_pushlstring(L, c->head.bytes.base, c->url_len);
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
  head_reset(&c->head);
  c->url_len = 0;
  c->expect = 0;
  c->req_obj = 0;
  c->req_body = 0;
  c->req_whole = 0;
  c->in_trailers = 0;
  c->trl.len = 0;
  c->trl_state = 0;
  c->gap_bytes = 0;
  return 0;
}

/* Past maxHeaderSize, the head is refused: 431. */
static int too_large(http_conn *c) {
  c->err_status = 431;
  return -1;
}

/* A trailer's name (state 1) or value (2) piece, kept as name\0value\0,
 * bounded by maxHeaderSize as the head. State 3: a name complete, its
 * value not begun (on_header_field_complete); a name after it had an
 * empty value. */
static int trailer_piece(http_conn *c, unsigned state, const char *at,
                         size_t len) {
  if (state == 1 && (c->trl_state == 2 || c->trl_state == 3))
    buf_byte(&c->trl, 0); /* The value before ends. */
  c->trl_state = state;
  if (c->trl.len + len > c->s->max_header)
    return too_large(c);
  buf_add(&c->trl, at, len);
  return 0;
}

static int on_url(llhttp_t *p, const char *at, size_t len) {
  http_conn *c = (http_conn *)p->data;
  if (head_bytes(&c->head, at, len, c->s->max_header) != 0)
    return too_large(c);
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
    return c->in_trailers ? trailer_piece(c, 1, at, len) : 0;
  if (head_name(&c->head, at, len, c->s->max_header) != 0)
    return too_large(c);
  return 0;
}

/* llhttp takes a line that begins with its colon as a header of no name;
 * a field name is a token, of one character at least (RFC 9110 section
 * 5.1): 400. (Trailers are not kept, nor checked for this.) */
static int on_header_field_complete(llhttp_t *p) {
  http_conn *c = (http_conn *)p->data;
  if (c->in_head &&
      (c->head.state != 1 || c->head.hdrs[c->head.n - 1].nlen == 0))
    return -1;
  if (!c->in_head && c->in_trailers && c->trl_state == 1) {
    buf_byte(&c->trl, 0); /* The trailer's name ends. */
    c->trl_state = 3;
  }
  return 0;
}

static int on_header_value(llhttp_t *p, const char *at, size_t len) {
  http_conn *c = (http_conn *)p->data;
  if (!c->in_head)
    return c->in_trailers ? trailer_piece(c, 2, at, len) : 0;
  if (head_value(&c->head, at, len, c->s->max_header) != 0)
    return too_large(c);
  return 0;
}

static int on_headers_complete(llhttp_t *p) {
  http_conn *c = (http_conn *)p->data;
  http_server *s = c->s;
  lua_State *L = s->L;
  int keys, env, cb;
  if (STOPPED(c))
    return -1;
  if (!gap_check(c, lc__llhttp_at))
    return -1;
  c->gap_bytes = 0;
  c->head_start = 0;
  c->in_head = 0;
  if (p->method == HTTP_CONNECT && !s->emit_connect) {
    /* No 'connect' listener: Node drops the connection. */
    c->silent = 1;
    return -1;
  }
  /* HTTP/1.1 requires Host (RFC 9112 section 3.2); the target must be
   * visible ASCII. Both: 400, as Node. */
  if ((!scan_head(c) && (p->http_major > 1 || p->http_minor >= 1)) ||
      !url_ok(c->head.bytes.base, c->url_len)) {
    c->err_status = 400;
    return -1;
  }
  if (p->upgrade && (p->method == HTTP_CONNECT || s->emit_upgrade)) {
    /* For 'upgrade' or 'connect' (dispatch_upgrade): no body; llhttp
     * stops after the head with HPE_PAUSED_UPGRADE. */
    c->upgrading = 1;
    return 2;
  }
  s->requests++;
  (*s->total)++;
  c->busy = 1;
  c->head_sent = 0;
  c->want_drain = 0;
  c->is_head = p->method == HTTP_HEAD;
  c->http11 = p->http_major > 1 || (p->http_major == 1 && p->http_minor >= 1);
  c->keep_req = llhttp_should_keep_alive(p) ? 1 : 0;
  /* maxRequestsPerSocket: the last one allowed is answered with
   * Connection: close, and the connection ends after it. */
  if (++c->nreq >= s->max_requests && s->max_requests)
    c->keep_req = 0;
  c->req_body = (p->flags & F_CHUNKED) ||
                ((p->flags & F_CONTENT_LENGTH) && p->content_length > 0);
  /* Expect: the server's 'checkContinue' / 'checkExpectation' listener
   * gets the request in place of 'request' (and answers it), else 100
   * Continue goes out now, or an expectation we cannot meet is 417
   * without calling the handler. */
  cb = CB_DISPATCH;
  if (c->expect == 2 && c->http11) {
    if (!s->emit_check_expectation) {
      lc__http_write_head(L, c, 0, 417, 0, 1);
      lc__http_response_done(c);
      return STOPPED(c) ? -1 : 0;
    }
    cb = CB_CHECK_EXPECTATION;
  }
  if (c->expect == 1 && c->http11) {
    if (s->emit_check_continue)
      cb = CB_CHECK_CONTINUE;
    else
      buf_lit(&c->out, "HTTP/1.1 100 Continue\r\n\r\n");
  }
  lc__http_conn_lua(c);
  /* The Lua side builds req and res with table constructors (a template
   * copy, cheaper than field stores through the C API) from what is
   * pushed here, and keeps them in env; http_send learns the response's
   * identity on its first call.
   * Pushed in call order, no shuffling.
   * Stack: keys env dispatch method url version head socket complete box env
   */
  keys = push_keys(s);
  lua_rawgeti(L, LUA_REGISTRYINDEX, c->ref_env);
  env = keys + 1;
  lua_rawgeti(L, LUA_REGISTRYINDEX, s->refs[cb]);
  push_request_fields(c, keys);
  lc__http_conn_socket(c, env);
  /* complete: true without a body; a Content-Length body already read
   * whole, after the head, goes with the head as a string (the handler's
   * req:body() returns it at once; no data or end calls follow). */
  if (c->req_body && !(p->flags & F_CHUNKED) && c->feed_end &&
      p->content_length <= (uint64_t)(c->feed_end - lc__llhttp_at)) {
    lua_pushlstring(L, lc__llhttp_at, (size_t)p->content_length);
    c->req_whole = 1;
  } else {
    lua_pushboolean(L, !c->req_body);
  }
  lua_rawgeti(L, LUA_REGISTRYINDEX, c->ref_box);
  lua_pushvalue(L, env);
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
  if (!c->req_obj || c->req_whole)
    return 0;
  /* Stack: data req chunk res|nil. */
  lua_rawgeti(L, LUA_REGISTRYINDEX, c->s->refs[CB_DATA]);
  lc__http_conn_get(L, c, ENV_REQ);
  lua_pushlstring(L, at, len);
  lc__http_conn_get(L, c, ENV_RES);
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
  if (c->req_obj) {
    if (c->req_body && !c->req_whole) {
      /* Stack: end req res|nil [trailers]. */
      int n = 2;
      lua_rawgeti(L, LUA_REGISTRYINDEX, s->refs[CB_END]);
      lc__http_conn_get(L, c, ENV_REQ);
      lc__http_conn_get(L, c, ENV_RES);
      if (c->trl_state != 0) {
        /* The last value ends (state 3: it was empty). */
        buf_byte(&c->trl, 0);
        lua_pushlstring(L, c->trl.base, c->trl.len);
        n = 3;
      }
      lc_pcall(L, n, 0);
    }
    c->req_obj = 0;
    if (!c->busy && c->ref_env != LUA_NOREF) {
      lua_pushnil(L);
      lc__http_conn_set(c, ENV_REQ);
    }
  }
  c->trl.len = 0;
  c->trl_state = 0;
  c->in_trailers = 0;
  if (STOPPED(c))
    return -1;
  if (c->busy)
    return HPE_PAUSED;
  /* A client that sends requests and does not read the answers: past the
   * high-water mark of queued output, parsing (and so reading) waits for
   * the socket to drain (write_cb), as Node's server does. */
  if (c->out.len >= s->hwm)
    lc__http_conn_flush(c);
  if (c->closing)
    return -1;
  if (lc__http_conn_queued(c) >= s->hwm) {
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

/* Prepares c's parser for requests. */
void lc__http_parser_init(http_conn *c) {
  llhttp_init(&c->parser, HTTP_REQUEST, &parser_settings);
  c->parser.data = c;
}

/* The connection of an 'upgrade' or 'connect' request leaves HTTP: Lua
 * gets the request and the bytes that followed its head (rest), and from
 * now on the connection's reads go to upgrade.c. */
static void dispatch_upgrade(http_conn *c, const char *rest, size_t len) {
  http_server *s = c->s;
  lua_State *L = s->L;
  int keys, env;
  c->upgrading = 0;
  c->raw = 1;
  c->idle_since = c->head_start = c->req_start = 0;
  lc__http_conn_lua(c);
  /* Stack: keys env upgrade method url version head socket rest box. */
  keys = push_keys(s);
  lua_rawgeti(L, LUA_REGISTRYINDEX, c->ref_env);
  env = keys + 1;
  lua_rawgeti(L, LUA_REGISTRYINDEX, s->refs[CB_UPGRADE]);
  push_request_fields(c, keys);
  lc__http_conn_socket(c, env);
  lua_pushlstring(L, rest, len);
  lua_rawgeti(L, LUA_REGISTRYINDEX, c->ref_box);
  head_free(&c->head);
  lc_pcall(L, 7, 0);
  lua_settop(L, keys - 1);
}

/* Parses len bytes at data. own: data is c->in itself. Bytes after a pause
 * stay in (or move to) c->in. */
void lc__http_feed(http_conn *c, const char *data, size_t len, int own) {
  llhttp_errno_t err;
  const char *p = data, *end = data + len, *stop;
  const char *outer_end = c->feed_end; /* A nested run's ends first. */
  c->depth++;
  c->feed_end = end;
  for (;;) {
    c->gap = p;
    err = llhttp_execute(&c->parser, p, (size_t)(end - p));
    stop = err == HPE_OK ? end : llhttp_get_error_pos(&c->parser);
    if ((err == HPE_OK || err == HPE_PAUSED || err == HPE_PAUSED_UPGRADE) &&
        !STOPPED(c) && !gap_check(c, stop))
      err = HPE_USER;
    if (err != HPE_PAUSED_UPGRADE || STOPPED(c))
      break;
    if (c->upgrading) {
      c->depth--;
      c->feed_end = outer_end;
      dispatch_upgrade(c, stop, (size_t)(end - stop));
      if (own)
        c->in.len = 0;
      lc__http_conn_settle(c);
      return;
    }
    /* An Upgrade request was answered as a plain request (no 'upgrade'
     * listener): keep reading HTTP. */
    llhttp_resume_after_upgrade(&c->parser);
    p = stop;
  }
  c->depth--;
  c->feed_end = outer_end;
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
      lc__http_conn_fail(c, c->err_status ? c->err_status : 400);
  }
  lc__http_conn_settle(c);
}

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
    luaL_argcheck(L,
                  hdrs[i].name + (size_t)hdrs[i].nlen <= len - off &&
                      hdrs[i].value + (size_t)hdrs[i].vlen <= len - off,
                  1, "not head data");
    if (hdrs[i].nlen > maxn)
      maxn = hdrs[i].nlen;
  }
  sc.base = (char *)lua_newuserdata(L, maxn + 1);
  sc.len = 0;
  sc.cap = maxn + 1;
  lc__http_push_headers(L, &sc, hd + off, hdrs, n);
  return 2;
}

/* _http.header_value(hd, name) -> the value of the first header of that
 * name (given in lower case; matched in any case) in a request's head data
 * (push_head_data), or nil: one header without expanding them all (the
 * access log's referer and user agent). */
static int http_header_value(lua_State *L) {
  size_t len, off, nlen;
  const char *hd = luaL_checklstring(L, 1, &len);
  const char *name = luaL_checklstring(L, 2, &nlen);
  uint32_t n, i, j;
  http_hdr hdr;
  luaL_argcheck(L, len >= sizeof(n), 1, "not head data");
  memcpy(&n, hd, sizeof(n));
  off = sizeof(n) + (size_t)n * sizeof(http_hdr);
  luaL_argcheck(L, off <= len, 1, "not head data");
  for (i = 0; i < n; i++) {
    memcpy(&hdr, hd + sizeof(n) + (size_t)i * sizeof(http_hdr), sizeof(hdr));
    if (hdr.nlen != nlen || hdr.name + (size_t)hdr.nlen > len - off ||
        hdr.value + (size_t)hdr.vlen > len - off)
      continue;
    for (j = 0; j < nlen; j++) {
      char c = hd[off + hdr.name + j];
      if (c >= 'A' && c <= 'Z')
        c = (char)(c - 'A' + 'a');
      if (c != name[j])
        break;
    }
    if (j == nlen) {
      lua_pushlstring(L, hd + off + hdr.value, hdr.vlen);
      return 1;
    }
  }
  lua_pushnil(L);
  return 1;
}

/* _http.methods() -> the request methods llhttp knows, in map order. */
static int http_methods(lua_State *L) {
  int i = 0;
  lua_newtable(L);
#define XX(num, name, string)                                                  \
  lua_pushliteral(L, #string);                                                 \
  lua_rawseti(L, -2, ++i);
  HTTP_METHOD_MAP(XX)
#undef XX
  return 1;
}

const luaL_Reg lc__http_parse_fns[] = {{"headers", http_headers},
                                       {"header_value", http_header_value},
                                       {"methods", http_methods},
                                       {NULL, NULL}};
