/* WebSocket frames (RFC 6455): the codec both sides share.
 *
 *   frame.c  parsing (headers, unmasking, UTF-8 validation, fragments
 *            reassembled within maxPayload, close payloads checked) and
 *            building (headers, masking)
 *   deflate.c permessage-deflate (RFC 7692) over zlib
 *   lua.c    the `_ws` module: frames for a client or a broadcast built in
 *            one string, a parser object for a client's socket, the
 *            handshake's accept key, random bytes for keys and masks
 *
 * The server's connections parse frames straight from their reads
 * (runtime/http/upgrade.c); lua/websocket/ holds the API. */
#ifndef LC_WS_H
#define LC_WS_H

#include <stddef.h>
#include <stdint.h>
#include "buf.h"

enum {
  WS_CONT = 0x0,
  WS_TEXT = 0x1,
  WS_BINARY = 0x2,
  WS_CLOSE = 0x8,
  WS_PING = 0x9,
  WS_PONG = 0xA
};

/* The close codes the codec itself answers with. */
#define WS_PROTOCOL_ERROR 1002
#define WS_INVALID_DATA 1007
#define WS_TOO_BIG 1009

/* A complete message (text or binary, reassembled) or control frame:
 * returns 0 to go on, non-zero to stop parsing (the connection is gone). */
typedef int (*ws_on_msg)(void *ud, int op, const char *data, size_t len);
/* A protocol error: the close code to answer with and why. */
typedef void (*ws_on_err)(void *ud, int code, const char *reason);

/* A connection's permessage-deflate state (deflate.c). */
typedef struct ws_deflate ws_deflate;

typedef struct {
  lc_buf part;         /* A frame not yet complete. */
  lc_buf msg;          /* The fragments of a message so far. */
  int msg_op;          /* WS_TEXT or WS_BINARY while fragments come. */
  int msg_z;           /* ... and that message is compressed (RSV1). */
  ws_deflate *z;       /* permessage-deflate was agreed (owned). */
  lc_buf zout;         /* An inflated message. */
  size_t max_payload;  /* Of a message (all its fragments); 0: no limit. */
  unsigned client : 1; /* Frames come from a server: unmasked. */
  unsigned failed : 1; /* A protocol error was reported: no more parsing. */
} ws_parser;

void lc__ws_parser_init(ws_parser *p, int client, size_t max_payload);
void lc__ws_parser_free(ws_parser *p);
/* Parses len bytes at data (unmasked in place, so writable; with copy,
 * they are copied first and left as they are). Returns 0, or -1 once a
 * callback stopped it or a protocol error was reported. */
int lc__ws_feed(ws_parser *p, char *data, size_t len, int copy, ws_on_msg msg,
                ws_on_err err, void *ud);
/* Writes a frame's header for a payload of len bytes into out (14 bytes
 * at most), with the mask key when mask is not NULL; returns its size. */
size_t lc__ws_header(unsigned char *out, int op, int fin, uint64_t len,
                     const unsigned char *mask);
/* XORs len bytes with the 4-byte key, word at a time. */
void lc__ws_mask(unsigned char *data, size_t len, const unsigned char *key);
/* Whether len bytes are well-formed UTF-8. */
int lc__ws_utf8(const unsigned char *s, size_t len);
/* Whether a close frame's payload is acceptable: a valid code, UTF-8 in
 * the reason. Returns 0, or the close code to fail with. */
int lc__ws_check_close(const unsigned char *s, size_t len);

/* deflate.c: def_bits is our window (9-15); def_reset and inf_reset are
 * no_context_takeover for what we send and what we receive. */
ws_deflate *lc__ws_deflate_new(int def_bits, int def_reset, int inf_reset);
void lc__ws_deflate_free(ws_deflate *z);
/* Inflates a whole message into out: 0, -1 on bad data, -2 past max
 * bytes (0: no limit). */
int lc__ws_inflate(ws_deflate *z, const char *in, size_t len, lc_buf *out,
                   size_t max);
/* Deflates a whole message into out: 0, or -1. */
int lc__ws_deflate(ws_deflate *z, const char *in, size_t len, lc_buf *out);

#endif
