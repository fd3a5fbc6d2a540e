/* permessage-deflate (RFC 7692) with zlib: a message is inflated whole
 * (its frames' payloads and the 00 00 ff ff the sender removed) within
 * maxPayload, and deflated whole with a sync flush, the same four bytes
 * removed. Context takeover is zlib's own: a stream kept from message to
 * message unless no_context_takeover was agreed for that direction. */
#include <stdlib.h>
#include <string.h>
#include <zlib.h>
#include "ws.h"

struct ws_deflate {
  z_stream inf, def;
  int def_bits;
  unsigned inf_ready : 1, def_ready : 1;
  unsigned inf_reset : 1; /* The peer's no_context_takeover. */
  unsigned def_reset : 1; /* Ours. */
};

ws_deflate *lc__ws_deflate_new(int def_bits, int def_reset, int inf_reset) {
  ws_deflate *z = (ws_deflate *)calloc(1, sizeof(*z));
  if (z == NULL)
    return NULL;
  /* zlib's raw deflate has no 8-bit window (9 is the least). */
  z->def_bits = def_bits < 9 ? 9 : def_bits > 15 ? 15 : def_bits;
  z->def_reset = def_reset ? 1 : 0;
  z->inf_reset = inf_reset ? 1 : 0;
  return z;
}

void lc__ws_deflate_free(ws_deflate *z) {
  if (z == NULL)
    return;
  if (z->inf_ready)
    inflateEnd(&z->inf);
  if (z->def_ready)
    deflateEnd(&z->def);
  free(z);
}

int lc__ws_inflate(ws_deflate *z, const char *in, size_t len, lc_buf *out,
                   size_t max) {
  static const unsigned char tail[4] = {0x00, 0x00, 0xff, 0xff};
  int pass, ret = Z_OK;
  out->len = 0;
  if (!z->inf_ready) {
    if (inflateInit2(&z->inf, -15) != Z_OK)
      return -1;
    z->inf_ready = 1;
  }
  for (pass = 0; pass < 2; pass++) {
    z->inf.next_in = (Bytef *)(pass ? tail : (const unsigned char *)in);
    z->inf.avail_in = pass ? 4 : (uInt)len;
    while (z->inf.avail_in > 0) {
      size_t room;
      buf_reserve(out, 16384);
      room = out->cap - out->len;
      z->inf.next_out = (Bytef *)out->base + out->len;
      z->inf.avail_out = (uInt)room;
      ret = inflate(&z->inf, Z_SYNC_FLUSH);
      out->len += room - z->inf.avail_out;
      if (max && out->len > max)
        return -2;
      if (ret == Z_STREAM_END) {
        /* A final block: what follows starts a new stream. */
        inflateReset(&z->inf);
        if (pass == 0 && z->inf.avail_in > 0)
          return -1;
        break;
      }
      if (ret == Z_BUF_ERROR && z->inf.avail_out != 0)
        break;
      if (ret != Z_OK && ret != Z_BUF_ERROR)
        return -1;
    }
    if (ret == Z_STREAM_END)
      break;
  }
  if (z->inf_reset)
    inflateReset(&z->inf);
  return 0;
}

int lc__ws_deflate(ws_deflate *z, const char *in, size_t len, lc_buf *out) {
  out->len = 0;
  if (!z->def_ready) {
    if (deflateInit2(&z->def, Z_DEFAULT_COMPRESSION, Z_DEFLATED, -z->def_bits,
                     8, Z_DEFAULT_STRATEGY) != Z_OK)
      return -1;
    z->def_ready = 1;
  }
  z->def.next_in = (Bytef *)in;
  z->def.avail_in = (uInt)len;
  do {
    size_t room;
    buf_reserve(out, len / 2 + 64);
    room = out->cap - out->len;
    z->def.next_out = (Bytef *)out->base + out->len;
    z->def.avail_out = (uInt)room;
    if (deflate(&z->def, Z_SYNC_FLUSH) == Z_STREAM_ERROR)
      return -1;
    out->len += room - z->def.avail_out;
  } while (z->def.avail_out == 0);
  /* The sync flush's empty block, which the receiver adds back. */
  if (out->len >= 4)
    out->len -= 4;
  if (z->def_reset)
    deflateReset(&z->def);
  return 0;
}
