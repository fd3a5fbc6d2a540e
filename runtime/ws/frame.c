/* WebSocket frames: parsing and building (RFC 6455 section 5). A parser
 * keeps at most one incomplete frame (its header tells the payload's
 * length first, checked against maxPayload before anything is kept) and
 * the fragments of one message, so its memory is bounded by maxPayload. */
#include <stdlib.h>
#include <string.h>
#include "ws.h"

void lc__ws_parser_init(ws_parser *p, int client, size_t max_payload) {
  memset(p, 0, sizeof(*p));
  p->client = client ? 1 : 0;
  p->max_payload = max_payload;
}

void lc__ws_parser_free(ws_parser *p) {
  buf_free(&p->part);
  buf_free(&p->msg);
  buf_free(&p->zout);
  lc__ws_deflate_free(p->z);
  p->z = NULL;
}

/* ---- Masking and UTF-8. ---- */

void lc__ws_mask(unsigned char *data, size_t len, const unsigned char *key) {
  uint64_t k8;
  uint32_t k4;
  size_t i = 0;
  memcpy(&k4, key, 4);
  k8 = ((uint64_t)k4 << 32) | k4;
  for (; i + 8 <= len; i += 8) {
    uint64_t w;
    memcpy(&w, data + i, 8);
    w ^= k8;
    memcpy(data + i, &w, 8);
  }
  for (; i < len; i++)
    data[i] ^= key[i & 3];
}

int lc__ws_utf8(const unsigned char *s, size_t len) {
  size_t i = 0;
  while (i < len) {
    unsigned char c = s[i];
    /* ASCII eight bytes at a time. */
    if (c < 0x80) {
      while (i + 8 <= len) {
        uint64_t w;
        memcpy(&w, s + i, 8);
        if (w & 0x8080808080808080ULL)
          break;
        i += 8;
      }
      while (i < len && s[i] < 0x80)
        i++;
      continue;
    }
    if (c >= 0xC2 && c <= 0xDF) {
      if (i + 1 >= len || (s[i + 1] & 0xC0) != 0x80)
        return 0;
      i += 2;
    } else if (c >= 0xE0 && c <= 0xEF) {
      unsigned char c1;
      if (i + 2 >= len)
        return 0;
      c1 = s[i + 1];
      if ((c1 & 0xC0) != 0x80 || (s[i + 2] & 0xC0) != 0x80)
        return 0;
      if ((c == 0xE0 && c1 < 0xA0) || (c == 0xED && c1 > 0x9F))
        return 0; /* Overlong, or a surrogate. */
      i += 3;
    } else if (c >= 0xF0 && c <= 0xF4) {
      unsigned char c1;
      if (i + 3 >= len)
        return 0;
      c1 = s[i + 1];
      if ((c1 & 0xC0) != 0x80 || (s[i + 2] & 0xC0) != 0x80 ||
          (s[i + 3] & 0xC0) != 0x80)
        return 0;
      if ((c == 0xF0 && c1 < 0x90) || (c == 0xF4 && c1 > 0x8F))
        return 0; /* Overlong, or past U+10FFFF. */
      i += 4;
    } else {
      return 0;
    }
  }
  return 1;
}

/* The codes a peer may send (RFC 6455 section 7.4; 1004-1006 and 1015 are
 * reserved for reports, never sent). */
static int code_ok(unsigned code) {
  if (code >= 3000 && code <= 4999)
    return 1;
  return (code >= 1000 && code <= 1003) || (code >= 1007 && code <= 1014);
}

int lc__ws_check_close(const unsigned char *s, size_t len) {
  if (len == 0)
    return 0;
  if (len == 1 || !code_ok(((unsigned)s[0] << 8) | s[1]))
    return WS_PROTOCOL_ERROR;
  if (!lc__ws_utf8(s + 2, len - 2))
    return WS_INVALID_DATA;
  return 0;
}

/* ---- Building. ---- */

size_t lc__ws_header(unsigned char *out, int op, int fin, uint64_t len,
                     const unsigned char *mask) {
  size_t n = 2;
  out[0] = (unsigned char)((fin ? 0x80 : 0) | (op & 0x0F));
  if (len < 126) {
    out[1] = (unsigned char)len;
  } else if (len <= 0xFFFF) {
    out[1] = 126;
    out[2] = (unsigned char)(len >> 8);
    out[3] = (unsigned char)len;
    n = 4;
  } else {
    int i;
    out[1] = 127;
    for (i = 0; i < 8; i++)
      out[2 + i] = (unsigned char)(len >> (56 - 8 * i));
    n = 10;
  }
  if (mask) {
    out[1] |= 0x80;
    memcpy(out + n, mask, 4);
    n += 4;
  }
  return n;
}

/* ---- Parsing. ---- */

static long fail(ws_parser *p, ws_on_err err, void *ud, int code,
                 const char *why) {
  p->failed = 1;
  p->part.len = 0;
  p->msg.len = 0;
  err(ud, code, why);
  return -1;
}

/* A complete message: inflated when compressed (z), checked (text must
 * be UTF-8) and handed over. */
static long deliver(ws_parser *p, int op, int z, const char *data, size_t len,
                    ws_on_msg msg, ws_on_err err, void *ud) {
  if (z) {
    int r = lc__ws_inflate(p->z, data, len, &p->zout, p->max_payload);
    if (r == -2)
      return fail(p, err, ud, WS_TOO_BIG, "max payload size exceeded");
    if (r != 0)
      return fail(p, err, ud, WS_INVALID_DATA, "invalid compressed data");
    data = p->zout.base;
    len = p->zout.len;
  }
  if (op == WS_TEXT && !lc__ws_utf8((const unsigned char *)data, len))
    return fail(p, err, ud, WS_INVALID_DATA, "invalid UTF-8 sequence");
  return msg(ud, op, data, len) ? -1 : 0;
}

/* Parses the frame at b (n bytes there): returns the bytes it took, 0
 * when it is not complete yet, -1 when parsing stops. */
static long frame(ws_parser *p, unsigned char *b, size_t n, ws_on_msg msg,
                  ws_on_err err, void *ud) {
  int fin, op, masked;
  uint64_t plen;
  size_t hl = 2;
  unsigned char *payload;
  if (n < 2)
    return 0;
  fin = b[0] & 0x80;
  op = b[0] & 0x0F;
  masked = (b[1] & 0x80) != 0;
  plen = b[1] & 0x7F;
  /* RSV1 marks a compressed message (its first frame) once
   * permessage-deflate was agreed; the others must be clear. */
  if ((b[0] & 0x70) & ~(p->z ? 0x40 : 0))
    return fail(p, err, ud, WS_PROTOCOL_ERROR, "RSV bits must be clear");
  if ((b[0] & 0x40) && (op == WS_CONT || op >= WS_CLOSE))
    return fail(p, err, ud, WS_PROTOCOL_ERROR, "RSV1 must be clear");
  if (op > WS_BINARY && (op < WS_CLOSE || op > WS_PONG))
    return fail(p, err, ud, WS_PROTOCOL_ERROR, "invalid opcode");
  if (op >= WS_CLOSE && (!fin || plen > 125))
    return fail(p, err, ud, WS_PROTOCOL_ERROR, "invalid control frame");
  if (!p->client && !masked)
    return fail(p, err, ud, WS_PROTOCOL_ERROR, "MASK must be set");
  if (p->client && masked)
    return fail(p, err, ud, WS_PROTOCOL_ERROR, "MASK must be clear");
  if (plen == 126) {
    if (n < 4)
      return 0;
    plen = ((uint64_t)b[2] << 8) | b[3];
    hl = 4;
  } else if (plen == 127) {
    int i;
    if (n < 10)
      return 0;
    plen = 0;
    for (i = 0; i < 8; i++)
      plen = (plen << 8) | b[2 + i];
    if (plen >> 63)
      return fail(p, err, ud, WS_PROTOCOL_ERROR, "invalid payload length");
    hl = 10;
  }
  if (op < WS_CLOSE) {
    if (op == WS_CONT && !p->msg_op)
      return fail(p, err, ud, WS_PROTOCOL_ERROR, "unexpected continuation");
    if (op != WS_CONT && p->msg_op)
      return fail(p, err, ud, WS_PROTOCOL_ERROR, "expected a continuation");
    if (p->max_payload && plen + p->msg.len > p->max_payload)
      return fail(p, err, ud, WS_TOO_BIG, "max payload size exceeded");
  }
  if (masked)
    hl += 4;
  if (n < hl || n - hl < plen)
    return 0;
  payload = b + hl;
  if (masked)
    lc__ws_mask(payload, (size_t)plen, payload - 4);
  switch (op) {
  case WS_CLOSE: {
    int code = lc__ws_check_close(payload, (size_t)plen);
    if (code)
      return fail(p, err, ud, code, "invalid close frame");
    return msg(ud, op, (const char *)payload, (size_t)plen) ? -1
                                                            : (long)(hl + plen);
  }
  case WS_PING:
  case WS_PONG:
    return msg(ud, op, (const char *)payload, (size_t)plen) ? -1
                                                            : (long)(hl + plen);
  case WS_CONT:
    buf_add(&p->msg, payload, (size_t)plen);
    if (fin) {
      int mop = p->msg_op;
      long r;
      p->msg_op = 0;
      r = deliver(p, mop, p->msg_z, p->msg.base, p->msg.len, msg, err, ud);
      p->msg.len = 0;
      /* A large message's buffers are not kept for the next. */
      if (p->msg.cap > 65536)
        buf_free(&p->msg);
      if (p->zout.cap > 65536)
        buf_free(&p->zout);
      if (r < 0)
        return -1;
    }
    return (long)(hl + plen);
  default:
    if (!fin) {
      p->msg_op = op;
      p->msg_z = (b[0] & 0x40) != 0;
      p->msg.len = 0;
      buf_add(&p->msg, payload, (size_t)plen);
      return (long)(hl + plen);
    }
    if (deliver(p, op, (b[0] & 0x40) != 0, (const char *)payload, (size_t)plen,
                msg, err, ud) < 0)
      return -1;
    if (p->zout.cap > 65536)
      buf_free(&p->zout);
    return (long)(hl + plen);
  }
}

int lc__ws_feed(ws_parser *p, char *data, size_t len, int copy, ws_on_msg msg,
                ws_on_err err, void *ud) {
  size_t off = 0;
  int from_part = 0;
  if (p->failed)
    return -1;
  if (p->part.len > 0 || copy) {
    buf_add(&p->part, data, len);
    data = p->part.base;
    len = p->part.len;
    from_part = 1;
  }
  for (;;) {
    long r = frame(p, (unsigned char *)data + off, len - off, msg, err, ud);
    if (r < 0) {
      p->part.len = 0;
      return -1;
    }
    if (r == 0)
      break;
    off += (size_t)r;
  }
  if (from_part) {
    /* The callbacks may not feed this parser (a read's callback cannot
     * run inside another's), so part still holds data. */
    memmove(p->part.base, p->part.base + off, len - off);
    p->part.len = len - off;
    if (p->part.len == 0 && p->part.cap > 65536)
      buf_free(&p->part);
  } else if (off < len) {
    buf_add(&p->part, data + off, len - off);
  }
  return 0;
}
