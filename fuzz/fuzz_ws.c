/* The libFuzzer target of the WebSocket frame parser (runtime/ws/frame.c):
 * arbitrary bytes are parsed as frames from a client (masked) or from a
 * server (unmasked), cut into pieces, with a small maxPayload. What is
 * delivered must hold the parser's promises, else it aborts so libFuzzer
 * keeps the input:
 * - a text message is UTF-8, a message is within maxPayload, a control
 *   frame within 125 bytes, a close payload acceptable;
 * - after a protocol error nothing more is delivered;
 * - a delivered message built again as a frame (masked for a server's
 *   parser) and parsed by a fresh parser comes back the same.
 *
 * The first byte says how: bit 0 the side (1: a client's parser), bits 1-3
 * and 4-6 where the input is cut, bit 7 permessage-deflate (compressed
 * messages are inflated within maxPayload; context kept between them). Built
 * with -DFUZZ=ON; `make fuzz` runs it after fuzz_http. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include "ws/ws.h"

#define MAX_PAYLOAD 4096

typedef struct {
  int failed;
  int client;
  int count;
} state;

typedef struct {
  const char *want;
  size_t len;
  int op;
  int seen;
} again;

static int check_again(void *ud, int op, const char *data, size_t len) {
  again *a = (again *)ud;
  if (a->seen || op != a->op || len != a->len ||
      (len > 0 && memcmp(data, a->want, len) != 0))
    abort();
  a->seen = 1;
  return 0;
}

static void no_error(void *ud, int code, const char *reason) {
  (void)ud;
  (void)code;
  (void)reason;
  abort();
}

/* Builds the message again as one frame and parses it with a fresh parser
 * of the same side. */
static void round_trip(int client, int op, const char *data, size_t len) {
  unsigned char key[4] = {0x12, 0x34, 0x56, 0x78};
  unsigned char *f = (unsigned char *)malloc(14 + len + 1);
  size_t hl = lc__ws_header(f, op, 1, len, client ? NULL : key);
  ws_parser p;
  again a = {data, len, op, 0};
  if (len > 0)
    memcpy(f + hl, data, len);
  if (!client)
    lc__ws_mask(f + hl, len, key);
  lc__ws_parser_init(&p, client, MAX_PAYLOAD);
  lc__ws_feed(&p, (char *)f, hl + len, 0, check_again, no_error, &a);
  if (!a.seen)
    abort();
  lc__ws_parser_free(&p);
  free(f);
}

static int on_msg(void *ud, int op, const char *data, size_t len) {
  state *s = (state *)ud;
  if (s->failed)
    abort();
  s->count++;
  if (op == WS_TEXT && !lc__ws_utf8((const unsigned char *)data, len))
    abort();
  if ((op == WS_TEXT || op == WS_BINARY) && len > MAX_PAYLOAD)
    abort();
  if (op >= WS_CLOSE && len > 125)
    abort();
  if (op == WS_CLOSE && lc__ws_check_close((const unsigned char *)data, len))
    abort();
  round_trip(s->client, op, data, len);
  return 0;
}

static void on_err(void *ud, int code, const char *reason) {
  state *s = (state *)ud;
  (void)reason;
  if (code != WS_PROTOCOL_ERROR && code != WS_INVALID_DATA &&
      code != WS_TOO_BIG)
    abort();
  s->failed = 1;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  ws_parser p;
  state s = {0, 0, 0};
  char *copy;
  size_t cut1, cut2, n;
  if (size < 1)
    return 0;
  s.client = data[0] & 1;
  data++;
  size--;
  cut1 = size ? (size_t)((data[-1] >> 1) & 7) * size / 8 : 0;
  cut2 = size ? (size_t)((data[-1] >> 4) & 7) * size / 8 : 0;
  if (cut2 < cut1)
    cut2 = cut1;
  /* A copy: the parser unmasks in place. */
  copy = (char *)malloc(size + 1);
  memcpy(copy, data, size);
  lc__ws_parser_init(&p, s.client, MAX_PAYLOAD);
  if (data[-1] & 0x80)
    p.z = lc__ws_deflate_new(15, 0, 0);
  n = 0;
  if (lc__ws_feed(&p, copy, cut1, 0, on_msg, on_err, &s) == 0)
    n = cut1;
  if (n == cut1 &&
      lc__ws_feed(&p, copy + cut1, cut2 - cut1, 0, on_msg, on_err, &s) == 0)
    n = cut2;
  if (n == cut2)
    lc__ws_feed(&p, copy + cut2, size - cut2, 0, on_msg, on_err, &s);
  /* What a parser keeps is bounded by one frame of maxPayload and one
   * message's fragments. */
  if (p.part.len > 14 + MAX_PAYLOAD || p.msg.len > MAX_PAYLOAD)
    abort();
  lc__ws_parser_free(&p);
  free(copy);
  return 0;
}
