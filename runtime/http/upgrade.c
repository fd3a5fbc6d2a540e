/* An upgraded connection: after an 'upgrade' or 'connect' request llhttp
 * no longer parses it (parse.c hands it over); conn.c's seams (a read, a
 * drained write queue, a resume, the close) come here. Its bytes go to Lua
 * as its socket's 'data', or, once a WebSocket took the connection
 * (_http.ws_start), through the frame parser (runtime/ws/) straight from
 * the read buffer, so Lua is called once per message. Writes share the
 * HTTP path's buffer and flush (uv_try_write first), not one by one:
 * those made while a read is handed to Lua go out together once it is
 * done; others on the next loop turn (a broadcast to many clients: one
 * write each for all of that turn's messages). */
#include <stdlib.h>
#include <string.h>
#include "http.h"

/* Output queued on a connection past which it stops reading until that
 * drains: a peer that sends (pings, messages to echo) and never reads
 * cannot grow it without bound. */
#define RAW_OUT_LIMIT (256 * 1024)

/* Calls the server's raw callback: (socket, what, data|nil). */
static void raw_event(http_conn *c, const char *what, const char *data,
                      size_t len) {
  lua_State *L = c->s->L;
  if (c->ref_env == LUA_NOREF)
    return;
  lua_rawgeti(L, LUA_REGISTRYINDEX, c->s->refs[CB_RAW]);
  lc__http_conn_get(L, c, ENV_SOCKET);
  lua_pushstring(L, what);
  if (data)
    lua_pushlstring(L, data, len);
  else
    lua_pushnil(L);
  lc_pcall(L, 3, 0);
}

/* The frame parser's callbacks: (socket, op, payload), or on a protocol
 * error (socket, 0, reason, code). */
static int ws_msg(void *ud, int op, const char *data, size_t len) {
  http_conn *c = (http_conn *)ud;
  lua_State *L = c->s->L;
  lua_rawgeti(L, LUA_REGISTRYINDEX, c->s->refs[CB_WS]);
  lc__http_conn_get(L, c, ENV_SOCKET);
  lua_pushinteger(L, op);
  lua_pushlstring(L, data, len);
  lc_pcall(L, 3, 0);
  return c->closing;
}

static void ws_err(void *ud, int code, const char *reason) {
  http_conn *c = (http_conn *)ud;
  lua_State *L = c->s->L;
  lua_rawgeti(L, LUA_REGISTRYINDEX, c->s->refs[CB_WS]);
  lc__http_conn_get(L, c, ENV_SOCKET);
  lua_pushinteger(L, 0);
  lua_pushstring(L, reason);
  lua_pushinteger(L, code);
  lc_pcall(L, 4, 0);
}

/* Stops reading while the output is past RAW_OUT_LIMIT; write_cb resumes
 * (conn_resume, then lc__http_raw_resume) once it is below the mark. */
static void check_output(http_conn *c) {
  if (!c->closing && !c->out_full && lc__http_conn_queued(c) > RAW_OUT_LIMIT) {
    c->out_full = 1;
    lc__http_conn_reading(c, 0);
  }
}

void lc__http_raw_read(http_conn *c, char *data, ssize_t nread) {
  if (nread > 0) {
    /* What the messages of this read make Lua write (an echo, replies)
     * waits in c->out and leaves in one write after the last of them,
     * not a write each: a read carries several messages under load. */
    int outer = !c->raw_batch;
    c->raw_batch = 1;
    if (c->ws)
      lc__ws_feed(c->ws, data, (size_t)nread, 0, ws_msg, ws_err, c);
    else
      raw_event(c, "data", data, (size_t)nread);
    if (outer) {
      c->raw_batch = 0;
      lc__http_raw_flush(c);
    }
    check_output(c);
    return;
  }
  /* As a net.Socket without allowHalfOpen: 'end', then our side ends
   * once what is written has left. */
  if (nread == UV_EOF && !c->shutting) {
    raw_event(c, "end", NULL, 0);
    if (!c->closing)
      lc__http_conn_end(c);
  } else {
    /* A reset: 'error' (its code, as Node's err.code), then 'close'. */
    if (nread != UV_EOF) {
      const char *name = uv_err_name((int)nread);
      raw_event(c, "error", name, strlen(name));
    }
    if (!c->closing)
      lc__http_conn_close(c);
  }
}

void lc__http_raw_drain(http_conn *c) { raw_event(c, "drain", NULL, 0); }

void lc__http_raw_flush(http_conn *c) {
  lc__http_conn_flush(c);
  /* A write said "wait for drain" while its bytes waited here; if they
   * all left at once, no write callback will say it. */
  if (!c->closing && c->want_drain && c->nwrites == 0) {
    c->want_drain = 0;
    lc__http_raw_drain(c);
  }
}

void lc__http_raw_resume(http_conn *c) {
  if (!c->raw_paused)
    lc__http_conn_reading(c, 1);
}

void lc__http_raw_closed(http_conn *c) { raw_event(c, "close", NULL, 0); }

void lc__http_raw_free(http_conn *c) {
  lc__ws_parser_free(c->ws);
  free(c->ws);
  c->ws = NULL;
}

/* A bad request with a 'clientError' listener: as Node, the listener gets
 * the socket (a byte stream now, as an upgraded one: it may write its own
 * answer) and an error code; the connection ends after what it wrote,
 * unless it destroyed it. */
void lc__http_client_error(http_conn *c, int status) {
  http_server *s = c->s;
  lua_State *L = s->L;
  const char *code;
  switch (status) {
  case 408:
    code = "ERR_HTTP_REQUEST_TIMEOUT";
    break;
  case 431:
    code = "HPE_HEADER_OVERFLOW";
    break;
  case 413:
    code = "HPE_CHUNK_EXTENSIONS_OVERFLOW";
    break;
  default:
    code = llhttp_errno_name(llhttp_get_errno(&c->parser));
  }
  c->stop_parse = 1;
  c->raw = 1;
  c->in_msg = 0;
  c->in.len = 0;
  c->head_start = c->req_start = c->idle_since = 0;
  lc__http_conn_lua(c);
  /* Stack: client_error socket status code. */
  lua_rawgeti(L, LUA_REGISTRYINDEX, s->refs[CB_CLIENT_ERROR]);
  lc__http_conn_get(L, c, ENV_SOCKET);
  if (lua_isnil(L, -1)) {
    lua_pop(L, 1);
    lua_rawgeti(L, LUA_REGISTRYINDEX, c->ref_env);
    lc__http_conn_socket(c, lua_gettop(L));
    lua_remove(L, -2);
  }
  lua_pushinteger(L, status);
  lua_pushstring(L, code);
  lc_pcall(L, 3, 0);
  if (!c->closing && !c->shutting)
    lc__http_conn_end(c);
}

/* ---- Bindings. ---- */

/* Returns the live upgraded connection of the box at 1 (NULL once
 * closed); raises on one still speaking HTTP. */
static http_conn *check_raw(lua_State *L) {
  http_conn *c = lc__http_check_conn(L, 1);
  if (c != NULL && !c->raw)
    luaL_argerror(L, 1, "not an upgraded connection");
  return c;
}

/* What a write returns: whether the output is below the high-water mark
 * (else 'drain' follows), nil once the connection is closing. */
static int push_written(lua_State *L, http_conn *c) {
  size_t q;
  /* Inside one of its reads, the read sends it all after; else the next
   * loop turn does, with what else is written to it meanwhile. */
  if (!c->raw_batch)
    lc__http_conn_queue_flush(c);
  if (c->closing) {
    lua_pushnil(L);
    return 1;
  }
  q = lc__http_conn_queued(c);
  if (q >= c->s->hwm)
    c->want_drain = 1;
  lua_pushboolean(L, q < c->s->hwm);
  return 1;
}

/* _http.raw_write(c, data) -> below the high-water mark, or nil. */
static int http_raw_write(lua_State *L) {
  http_conn *c = check_raw(L);
  size_t len;
  const char *data = luaL_checklstring(L, 2, &len);
  if (c == NULL || c->closing || c->shutting) {
    lua_pushnil(L);
    return 1;
  }
  buf_add(&c->out, data, len);
  return push_written(L, c);
}

/* _http.ws_send(c, op, data[, fin[, compress]]) -> as raw_write: one
 * frame (a server's: unmasked), its header and payload in one write;
 * with compress (and permessage-deflate agreed), the whole message
 * deflated in one frame with RSV1. */
static int http_ws_send(lua_State *L) {
  http_conn *c = check_raw(L);
  lua_Integer op = luaL_checkinteger(L, 2);
  size_t len;
  const char *data = luaL_optlstring(L, 3, "", &len);
  int fin = lua_isnoneornil(L, 4) || lua_toboolean(L, 4);
  int compress = lua_toboolean(L, 5);
  unsigned char hdr[14];
  size_t hl;
  luaL_argcheck(L, op >= 0 && op <= 15, 2, "invalid opcode");
  if (c == NULL || c->closing || c->shutting) {
    lua_pushnil(L);
    return 1;
  }
  if (compress && fin && c->ws && c->ws->z) {
    lc_buf *z = &c->s->scratch;
    if (lc__ws_deflate(c->ws->z, data, len, z) != 0)
      return luaL_error(L, "deflate failed");
    hl = lc__ws_header(hdr, (int)op, 1, z->len, NULL);
    hdr[0] |= 0x40;
    buf_reserve(&c->out, hl + z->len);
    buf_add(&c->out, hdr, hl);
    buf_add(&c->out, z->base, z->len);
    return push_written(L, c);
  }
  hl = lc__ws_header(hdr, (int)op, fin, len, NULL);
  buf_reserve(&c->out, hl + len);
  buf_add(&c->out, hdr, hl);
  buf_add(&c->out, data, len);
  return push_written(L, c);
}

/* _http.ws_start(c, maxPayload, rest[, bits, ourReset, peerReset]): the
 * connection speaks WebSocket from now on, as a server; rest (bytes that
 * came after the handshake) is parsed first. With bits, permessage-deflate
 * was agreed: our window bits and each side's no_context_takeover. */
static int http_ws_start(lua_State *L) {
  http_conn *c = check_raw(L);
  lua_Number max = luaL_checknumber(L, 2);
  size_t len;
  const char *rest = luaL_optlstring(L, 3, "", &len);
  int bits = (int)luaL_optinteger(L, 4, 0);
  luaL_argcheck(L, max >= 0, 2, "maxPayload must not be negative");
  if (c == NULL || c->closing)
    return 0;
  if (c->ws == NULL) {
    ws_deflate *z = NULL;
    if (bits) {
      z = lc__ws_deflate_new(bits, lua_toboolean(L, 5), lua_toboolean(L, 6));
      if (z == NULL)
        return luaL_error(L, "out of memory");
    }
    c->ws = (ws_parser *)lc__xmalloc(sizeof(ws_parser));
    lc__ws_parser_init(c->ws, 0, (size_t)max);
    c->ws->z = z;
  }
  if (len > 0)
    lc__ws_feed(c->ws, (char *)rest, len, 1, ws_msg, ws_err, c);
  return 0;
}

/* _http.raw_reading(c, on): the socket's pause() and resume(). */
static int http_raw_reading(lua_State *L) {
  http_conn *c = check_raw(L);
  int on = lua_toboolean(L, 2);
  if (c == NULL || c->closing)
    return 0;
  c->raw_paused = !on;
  if (!on || !c->out_full)
    lc__http_conn_reading(c, on);
  return 0;
}

const luaL_Reg lc__http_upgrade_fns[] = {{"raw_write", http_raw_write},
                                         {"ws_send", http_ws_send},
                                         {"ws_start", http_ws_start},
                                         {"raw_reading", http_raw_reading},
                                         {NULL, NULL}};
