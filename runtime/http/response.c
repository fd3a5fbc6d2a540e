/* Bytes to HTTP responses, for the http client (lua/http/client.lua) and
 * http.inject: a parser object over llhttp, made by
 * _http.response_parser(callbacks[, maxHeaderSize]), with
 *   parser:execute(data) -> bytes used, upgraded, paused
 *                         | nil, code, reason, bytes used (a bad response)
 *   parser:finish()      -> true | nil, code, reason (the peer ended: a
 *                           body framed by the connection's end is done)
 * and Lua called back, on the state that called execute or finish (any
 * coroutine: the state is kept for that call only), by the callbacks
 * table's functions:
 *   head(statusCode, statusMessage, httpVersionMajor, httpVersionMinor,
 *        headers, rawHeaders, shouldKeepAlive, upgrade)
 *        -> nil, or _http.SKIP_BODY (the answer to HEAD: no body follows),
 *           or _http.UPGRADE (what follows is another protocol: the
 *           answer's complete comes, then execute stops and returns
 *           upgraded = true); 1xx, 204 and 304 answers never have a body
 *   body(chunk)                       a piece of body
 *   chunk()                           a chunk of a chunked body ended
 *                                     (optional)
 *   complete(trailers, rawTrailers)   the message ended (trailers nil when
 *                                     there were none); a true result
 *                                     stops the parser right after it:
 *                                     execute returns the bytes used up
 *                                     to there and paused = true (what
 *                                     follows is not this message's: a
 *                                     keep-alive client checks that
 *                                     nothing does)
 * Every message on the connection goes through them in turn: 1xx answers
 * (head, then complete), then the response, then any later ones
 * (keep-alive). Headers are merged by the rules requests use
 * (lc__http_push_headers). A callback that raises stops llhttp (its error
 * is kept aside) and is raised again once llhttp has returned, with its
 * first traceback: no error unwinds through llhttp. */
#include <stdint.h>
#include <string.h>
#include "http.h"

#define RPARSER_MT "lc.http.response_parser"

/* What a head callback may ask llhttp (its on_headers_complete returns). */
#define RESPONSE_HEAD_MAP(XX) XX(SKIP_BODY, 1) XX(UPGRADE, 2)

typedef struct {
  llhttp_t parser;
  lua_State *L;          /* The state of the execute or finish under way, else
                            NULL. */
  int cbs;               /* ... the stack index of its callbacks table, */
  int err;               /* ... and of a callback's error. */
  unsigned raised : 1;   /* A callback raised (its error is at err). */
  unsigned overflow : 1; /* The head passed max_header. */
  unsigned trailers : 1; /* After the head: header lines are trailers. */
  size_t max_header;
  http_head head;    /* The reason, header names and values. */
  size_t reason_len; /* The reason is head.bytes[0, reason_len). */
  lc_buf scratch;    /* For lower-casing names. */
  unsigned gone : 1; /* Collected. */
} rparser;

static rparser *check_rparser(lua_State *L, int idx) {
  rparser *p = (rparser *)luaL_checkudata(L, idx, RPARSER_MT);
  if (p->gone)
    luaL_error(L, "the response parser is gone");
  return p;
}

static void reset(rparser *p) {
  head_reset(&p->head);
  p->reason_len = 0;
  p->trailers = 0;
}

/* Calls callback name with the nargs values on the stack top, protected;
 * the callback's first result (or nil) is left on the stack. A raise is
 * kept at p->err. Returns 0, or -1 once a callback raised (llhttp then
 * stops: a callback's non-zero answer is an error to it). */
static int call(rparser *p, const char *name, int nargs) {
  lua_State *L = p->L;
  /* Stack: ... args -> ... fn args. (rawget: no metamethod may raise
   * here, inside llhttp.) */
  lua_pushstring(L, name);
  lua_rawget(L, p->cbs);
  if (lua_isnil(L, -1)) {
    lua_pop(L, 1 + nargs);
    lua_pushnil(L);
    return 0;
  }
  lua_insert(L, -nargs - 1);
  if (lc_pcall_catch(L, nargs, 1) != 0) {
    lua_replace(L, p->err);
    p->raised = 1;
    lua_pushnil(L);
    return -1;
  }
  return 0;
}

static int on_message_begin(llhttp_t *lp) {
  reset((rparser *)lp->data);
  return 0;
}

/* Past max_header, the head is refused: HPE_HEADER_OVERFLOW. */
static int overflow(rparser *p) {
  p->overflow = 1;
  return -1;
}

static int on_status(llhttp_t *lp, const char *at, size_t len) {
  rparser *p = (rparser *)lp->data;
  if (head_bytes(&p->head, at, len, p->max_header) != 0)
    return overflow(p);
  p->reason_len += len;
  return 0;
}

static int on_header_field(llhttp_t *lp, const char *at, size_t len) {
  rparser *p = (rparser *)lp->data;
  return head_name(&p->head, at, len, p->max_header) ? overflow(p) : 0;
}

static int on_header_value(llhttp_t *lp, const char *at, size_t len) {
  rparser *p = (rparser *)lp->data;
  return head_value(&p->head, at, len, p->max_header) ? overflow(p) : 0;
}

/* Pushes headers and rawHeaders of what was collected. Stack: +2. */
static void push_collected(rparser *p) {
  lc__http_push_headers(p->L, &p->scratch, p->head.bytes.base, p->head.hdrs,
                        p->head.n);
}

static int on_headers_complete(llhttp_t *lp) {
  rparser *p = (rparser *)lp->data;
  lua_State *L = p->L;
  int ask;
  /* Stack: status reason major minor headers raw keepAlive upgrade. */
  lua_pushinteger(L, lp->status_code);
  lua_pushlstring(L, p->reason_len ? p->head.bytes.base : "", p->reason_len);
  lua_pushinteger(L, lp->http_major);
  lua_pushinteger(L, lp->http_minor);
  push_collected(p);
  lua_pushboolean(L, llhttp_should_keep_alive(lp));
  lua_pushboolean(L, lp->upgrade);
  if (call(p, "head", 8) != 0)
    return -1;
  ask = (int)lua_tointeger(L, -1);
  lua_pop(L, 1);
  /* 1xx, 204 and 304 answers have no body, whatever their headers say
   * (RFC 9112 section 6.3); llhttp 8 would read a Content-Length's worth. */
  if (ask == 0 && (lp->status_code / 100 == 1 || lp->status_code == 204 ||
                   lp->status_code == 304))
    ask = 1;
  /* What follows the head until the message ends is trailers. */
  head_reset(&p->head);
  p->reason_len = 0;
  p->trailers = 1;
#define XX(name, n)                                                            \
  if (ask == n)                                                                \
    return n;
  RESPONSE_HEAD_MAP(XX)
#undef XX
  return 0;
}

static int on_body(llhttp_t *lp, const char *at, size_t len) {
  rparser *p = (rparser *)lp->data;
  lua_pushlstring(p->L, at, len);
  if (call(p, "body", 1) != 0)
    return -1;
  lua_pop(p->L, 1);
  return 0;
}

static int on_chunk_complete(llhttp_t *lp) {
  rparser *p = (rparser *)lp->data;
  if (call(p, "chunk", 0) != 0)
    return -1;
  lua_pop(p->L, 1);
  return 0;
}

static int on_message_complete(llhttp_t *lp) {
  rparser *p = (rparser *)lp->data;
  lua_State *L = p->L;
  int stop;
  /* Stack: trailers rawTrailers (nil, nil without). */
  if (p->trailers && p->head.n > 0) {
    push_collected(p);
  } else {
    lua_pushnil(L);
    lua_pushnil(L);
  }
  reset(p);
  if (call(p, "complete", 2) != 0)
    return -1;
  stop = lua_toboolean(L, -1);
  lua_pop(L, 1);
  return stop ? HPE_PAUSED : 0;
}

static const llhttp_settings_t settings = {
    .on_message_begin = on_message_begin,
    .on_status = on_status,
    .on_header_field = on_header_field,
    .on_header_value = on_header_value,
    .on_headers_complete = on_headers_complete,
    .on_body = on_body,
    .on_chunk_complete = on_chunk_complete,
    .on_message_complete = on_message_complete,
};

/* Readies p for a run on L (the parser at stack index 1): its callbacks
 * and a slot for a callback's error go on the stack. Stack: +2. */
static void begin_run(lua_State *L, rparser *p) {
  if (p->L != NULL)
    luaL_error(L, "the response parser is already running");
  lua_getfenv(L, 1);
  p->cbs = lua_gettop(L);
  lua_pushnil(L);
  p->err = lua_gettop(L);
  p->raised = 0;
  p->L = L;
}

/* Ends a run: raises a callback's error again, or pushes nil, code,
 * reason for a parser error. Returns the number of values pushed (0 when
 * there was no error). */
static int end_run(lua_State *L, rparser *p, llhttp_errno_t err) {
  p->L = NULL;
  if (p->raised) {
    lua_pushvalue(L, p->err);
    return lc_reraise(L);
  }
  if (err == HPE_OK || err == HPE_PAUSED || err == HPE_PAUSED_UPGRADE)
    return 0;
  lua_pushnil(L);
  if (p->overflow) {
    lua_pushliteral(L, "HPE_HEADER_OVERFLOW");
    lua_pushliteral(L, "Header overflow");
  } else {
    lua_pushstring(L, llhttp_errno_name(err));
    lua_pushstring(L, llhttp_get_error_reason(&p->parser));
  }
  return 3;
}

/* parser:execute(data) -> bytes used, upgraded, paused | nil, code,
 * reason, bytes used. */
static int rparser_execute(lua_State *L) {
  rparser *p = check_rparser(L, 1);
  size_t len;
  const char *data = luaL_checklstring(L, 2, &len);
  const char *stop;
  llhttp_errno_t err;
  int n;
  lua_settop(L, 2);
  begin_run(L, p);
  err = llhttp_execute(&p->parser, data, len);
  stop = err == HPE_OK ? data + len : llhttp_get_error_pos(&p->parser);
  if (stop == NULL)
    stop = data;
  n = end_run(L, p, err);
  if (n > 0) {
    lua_pushinteger(L, (lua_Integer)(stop - data));
    return n + 1;
  }
  lua_pushinteger(L, (lua_Integer)(stop - data));
  lua_pushboolean(L, err == HPE_PAUSED_UPGRADE);
  lua_pushboolean(L, err == HPE_PAUSED);
  return 3;
}

/* parser:finish() -> true | nil, code, reason. */
static int rparser_finish(lua_State *L) {
  rparser *p = check_rparser(L, 1);
  llhttp_errno_t err;
  int n;
  lua_settop(L, 1);
  begin_run(L, p);
  err = llhttp_finish(&p->parser);
  n = end_run(L, p, err);
  if (n > 0)
    return n;
  lua_pushboolean(L, 1);
  return 1;
}

static int rparser_gc(lua_State *L) {
  rparser *p = (rparser *)luaL_checkudata(L, 1, RPARSER_MT);
  head_free(&p->head);
  buf_free(&p->scratch);
  p->gone = 1;
  return 0;
}

/* _http.response_parser(callbacks[, maxHeaderSize]) -> parser. */
static int http_response_parser(lua_State *L) {
  lua_Number max = luaL_optnumber(L, 2, DEFAULT_maxHeaderSize);
  rparser *p;
  luaL_checktype(L, 1, LUA_TTABLE);
  luaL_argcheck(L, max >= 1, 2, "maxHeaderSize must be positive");
  p = (rparser *)lua_newuserdata(L, sizeof(*p));
  memset(p, 0, sizeof(*p));
  luaL_getmetatable(L, RPARSER_MT);
  lua_setmetatable(L, -2);
  lua_pushvalue(L, 1);
  lua_setfenv(L, -2);
  p->max_header = (size_t)max;
  llhttp_init(&p->parser, HTTP_RESPONSE, &settings);
  p->parser.data = p;
  return 1;
}

static const luaL_Reg response_fns[] = {
    {"response_parser", http_response_parser}, {NULL, NULL}};

/* Adds the parser's constructor, its metatable and the head callback's
 * answers (_http.SKIP_BODY, _http.UPGRADE) to the module table on the
 * stack top. */
void lc__http_response_open(lua_State *L) {
  static const luaL_Reg methods[] = {
      {"execute", rparser_execute}, {"finish", rparser_finish}, {NULL, NULL}};
  luaL_newmetatable(L, RPARSER_MT);
  lua_newtable(L);
  luaL_register(L, NULL, methods);
  lua_setfield(L, -2, "__index");
  lua_pushcfunction(L, rparser_gc);
  lua_setfield(L, -2, "__gc");
  lua_pop(L, 1);
  luaL_register(L, NULL, response_fns);
#define XX(name, n)                                                            \
  lua_pushinteger(L, n);                                                       \
  lua_setfield(L, -2, #name);
  RESPONSE_HEAD_MAP(XX)
#undef XX
}
