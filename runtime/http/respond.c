/* The HTTP server's response side: the status line and headers built
 * from the Lua response's fields (validated as Node validates them), the
 * body framed by Content-Length or chunks, queued in conn->out and flushed
 * by conn.c. */
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include "http.h"

const char *lc__http_reason(int status) {
  switch (status) {
#define XX(code, text)                                                         \
  case code:                                                                   \
    return text;
    HTTP_REASON_MAP(XX)
#undef XX
  default:
    return "unknown";
  }
}

/* ---- The header rule: Node's, for every header this module writes or
 * the Lua side checks (_http.header_error). ---- */

/* What a header name or value breaks of the rule: Node's code and
 * message. */
#define HTTP_HEADER_ERR_MAP(XX)                                                \
  XX(TOKEN, "ERR_INVALID_HTTP_TOKEN",                                          \
     "Header name must be a valid HTTP token [\"%s\"]")                        \
  XX(VALUE, "ERR_HTTP_INVALID_HEADER_VALUE",                                   \
     "Invalid value \"%s\" for header \"%s\"")                                 \
  XX(CHAR, "ERR_INVALID_CHAR", "Invalid character in header content [\"%s\"]")

enum {
  HDR_OK,
#define XX(name, code, msg) HDR_##name,
  HTTP_HEADER_ERR_MAP(XX)
#undef XX
};

/* RFC 9110 token characters: ALPHA, DIGIT and !#$%&'*+-.^_`|~ (range
 * designators are GNU C, as gcc and clang take them). */
static const unsigned char token_chars[256] = {
    ['0' ... '9'] = 1, ['A' ... 'Z'] = 1, ['a' ... 'z'] = 1,
    ['!'] = 1, ['#'] = 1, ['$'] = 1, ['%'] = 1, ['&'] = 1, ['\''] = 1,
    ['*'] = 1, ['+'] = 1, ['-'] = 1, ['.'] = 1, ['^'] = 1, ['_'] = 1,
    ['`'] = 1, ['|'] = 1, ['~'] = 1};

/* Whether s is an RFC 9110 token (header names, methods). */
static inline int is_token(const char *s, size_t len) {
  size_t i;
  unsigned char ok = len > 0;
  for (i = 0; i < len; i++)
    ok &= token_chars[(unsigned char)s[i]];
  return ok;
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

/* The header value at vidx as text: a string or a number as Lua gives it,
 * a boolean as "true"/"false"; NULL for anything else. */
static const char *value_text(lua_State *L, int vidx, size_t *len) {
  if (lua_type(L, vidx) == LUA_TBOOLEAN) {
    const char *v = lua_toboolean(L, vidx) ? "true" : "false";
    *len = strlen(v);
    return v;
  }
  return lua_tolstring(L, vidx, len); /* NULL but for strings, numbers. */
}

/* What is wrong with a value's text v (NULL: not a string, number or
 * boolean): HDR_OK, HDR_VALUE or HDR_CHAR. */
static inline int value_error(const char *v, size_t vlen) {
  if (v == NULL)
    return HDR_VALUE;
  return is_field_value(v, vlen) ? HDR_OK : HDR_CHAR;
}

/* Checks one value (not an array). */
static int check_value(lua_State *L, int vidx) {
  size_t vlen = 0;
  const char *v = value_text(L, vidx, &vlen);
  return value_error(v, vlen);
}

/* Checks a header name with the value at vidx (a string, a number, a
 * boolean or an array of those) by Node's rule: the name a token, every
 * value made of field-value bytes. Returns HDR_OK or what is wrong. */
static int header_check(lua_State *L, const char *name, size_t nlen, int vidx) {
  int i, n, err;
  if (name == NULL || !is_token(name, nlen))
    return HDR_TOKEN;
  if (lua_type(L, vidx) != LUA_TTABLE)
    return check_value(L, vidx);
  n = (int)lua_objlen(L, vidx);
  for (i = 1; i <= n; i++) {
    lua_rawgeti(L, vidx, i);
    err = check_value(L, lua_gettop(L));
    lua_pop(L, 1);
    if (err != HDR_OK)
      return err;
  }
  return HDR_OK;
}

/* Pushes (and returns) Node's message for header error err about name
 * and the value at vidx. Stack: +1. */
static const char *header_message(lua_State *L, int err, const char *name,
                                  int vidx) {
  switch (err) {
#define XX(e, code, msg)                                                       \
  case HDR_##e:                                                                \
    return HDR_##e == HDR_VALUE                                                \
               ? lua_pushfstring(L, msg, luaL_typename(L, vidx), name)         \
               : lua_pushfstring(L, msg, name);
    HTTP_HEADER_ERR_MAP(XX)
#undef XX
  default:
    return lua_pushfstring(L, "invalid header [\"%s\"]", name);
  }
}

/* _http.header_error(name, value) -> nil when the header may be sent,
 * else Node's code and message. */
static int http_header_error(lua_State *L) {
  size_t nlen = 0;
  const char *name =
      lua_type(L, 1) == LUA_TSTRING ? lua_tolstring(L, 1, &nlen) : NULL;
  int err = header_check(L, name, nlen, 2);
  static const char *const codes[] = {NULL,
#define XX(e, code, msg) code,
                                      HTTP_HEADER_ERR_MAP(XX)
#undef XX
  };
  if (err == HDR_OK)
    return 0;
  if (name == NULL)
    name = lua_isnil(L, 1) ? "nil" : luaL_typename(L, 1);
  lua_pushstring(L, codes[err]);
  header_message(L, err, name, 2);
  return 2;
}

/* _http.is_token(s) -> whether s is a token (a method, a header name). */
static int http_is_token(lua_State *L) {
  size_t len;
  const char *s = lua_tolstring(L, 1, &len);
  lua_pushboolean(L, lua_type(L, 1) == LUA_TSTRING && is_token(s, len));
  return 1;
}

static void update_date(http_server *s) {
  static const char days[7][4] = {"Sun", "Mon", "Tue", "Wed",
                                  "Thu", "Fri", "Sat"};
  static const char months[12][4] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                     "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};
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

/* The response headers the server must know about. */
typedef struct {
  unsigned cl : 1, te : 1, te_chunked : 1, conn : 1, conn_close : 1, date : 1;
} head_flags;

/* Appends one header line, validating it. On bad input truncates out to
 * mark and raises. Notes the headers the server must know about in f. */
static void add_header(lua_State *L, http_conn *c, size_t mark,
                       const char *name, size_t nlen, int vidx, head_flags *f) {
  size_t vlen = 0;
  const char *v = value_text(L, vidx, &vlen);
  int err = is_token(name, nlen) ? value_error(v, vlen) : HDR_TOKEN;
  if (err != HDR_OK) {
    c->out.len = mark;
    header_message(L, err, name, vidx);
    lua_error(L);
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
void lc__http_write_head(lua_State *L, http_conn *c, int res, int status,
                         size_t body_len, int last) {
  http_server *s = c->s;
  size_t mark = c->out.len, mlen;
  const char *msg = NULL;
  head_flags f;
  int top = lua_gettop(L), send_date = 1, has_body;
  memset(&f, 0, sizeof(f));
  /* res: the stack index of the response's statusCode, then statusMessage,
   * sendDate, _headers, _names and _wh (HTTP_RES_FIELD_MAP). */
  if (res) {
    int sc = res + RES_STATUS_CODE, sd = res + RES_SEND_DATE;
    status = lua_isnil(L, sc) ? 200 : (int)lua_tointeger(L, sc);
    if (status < 100 || status > 999)
      luaL_error(L, "Invalid status code: %s",
                 lua_tostring(L, sc) ? lua_tostring(L, sc) : "(not a number)");
    msg = lua_tolstring(L, res + RES_STATUS_MESSAGE, &mlen);
    if (msg != NULL && !is_field_value(msg, mlen))
      luaL_error(L, "Invalid character in statusMessage");
    send_date = lua_isnil(L, sd) || lua_toboolean(L, sd);
  }
  if (msg == NULL) {
    msg = lc__http_reason(status);
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
    if (lua_istable(L, res + RES_HEADERS))
      add_headers(L, c, mark, res + RES_HEADERS,
                  lua_istable(L, res + RES_NAMES) ? res + RES_NAMES : 0, &f);
    if (lua_istable(L, res + RES_WH))
      add_headers(L, c, mark, res + RES_WH, 0, &f);
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

/* _http.send(c, res, chunk|nil, last, ...) -> ok: writes the head (first
 * time, from res's fields that follow: HTTP_RES_FIELD_MAP's, in its order,
 * as _http.RES_FIELDS lists them for the Lua side, which makes the call
 * from that list) and a piece of body; last finishes the response. ok is
 * false when the caller should wait for 'drain' (or the connection is
 * gone). */
static int http_send(lua_State *L) {
  http_conn *c = lc__http_check_conn(L, 1);
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
    lc__http_conn_get(L, c, ENV_RES);
    c->res_ptr = lua_topointer(L, -1);
    lua_pop(L, 1);
  }
  if (lua_topointer(L, 2) != c->res_ptr) {
    lua_pushboolean(L, 0);
    return 1;
  }
  if (!c->head_sent)
    lc__http_write_head(L, c, 5, 0, len, last);
  write_body(c, chunk, len, last);
  if (last)
    lc__http_response_done(c);
  if (c->closing || c->shutting) {
    lua_pushboolean(L, !last ? 0 : 1);
    return 1;
  }
  if (c->depth == 0 || c->out.len >= c->s->hwm)
    lc__http_conn_flush(c);
  if (!last && !c->closing && lc__http_conn_queued(c) >= c->s->hwm) {
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
  http_conn *c = lc__http_check_conn(L, 1);
  lua_pushboolean(L, c != NULL && c->busy && c->head_sent);
  return 1;
}

/* _http.write_interim(c, head): sends an interim response (100
 * Continue, 102 Processing, 103 Early Hints) before the final one: head
 * is its whole text, checked by the caller (lua/http/response.lua). */
static int http_write_interim(lua_State *L) {
  http_conn *c = lc__http_check_conn(L, 1);
  size_t len;
  const char *head = luaL_checklstring(L, 2, &len);
  if (c == NULL || c->closing || c->shutting || c->head_sent)
    return 0;
  buf_add(&c->out, head, len);
  if (c->depth == 0)
    lc__http_conn_flush(c);
  return 0;
}

static int http_status_codes(lua_State *L) {
  lua_newtable(L);
#define XX(code, text)                                                         \
  lua_pushliteral(L, text);                                                    \
  lua_rawseti(L, -2, code);
  HTTP_REASON_MAP(XX)
#undef XX
  return 1;
}

/* Sets _http.RES_FIELDS, the names of the fields _http.send takes after
 * its fourth argument, in the module table on the stack top. */
void lc__http_respond_open(lua_State *L) {
  int i = 0;
  lua_newtable(L);
#define XX(name, field)                                                        \
  lua_pushliteral(L, field);                                                   \
  lua_rawseti(L, -2, ++i);
  HTTP_RES_FIELD_MAP(XX)
#undef XX
  lua_setfield(L, -2, "RES_FIELDS");
}

const luaL_Reg lc__http_respond_fns[] = {
    {"send", http_send},
    {"header_error", http_header_error},
    {"is_token", http_is_token},
    {"head_sent", http_head_sent},
    {"write_interim", http_write_interim},
    {"status_codes", http_status_codes},
    {NULL, NULL}};
