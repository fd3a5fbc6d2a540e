/* bench/ws/load.c: the load of bench/ws/run.sh, a single-threaded epoll
 * WebSocket client (RFC 6455, client side), like wrk is for HTTP.
 *
 *   load echo PORT CONNS DUR_S SIZE WINDOW
 *     CONNS connections to ws://127.0.0.1:PORT/echo, each keeping WINDOW
 *     text messages of SIZE bytes in flight; once all are open, counts the
 *     echoes for DUR_S seconds and prints {"msgs":N,"secs":S}.
 *   load fan PORT CLIENTS N SIZE
 *     CLIENTS connections to /fan; once every handshake is answered, waits
 *     200 ms, opens /ctl and sends 'BCAST N SIZE' (the clock starts), and
 *     prints {"deliveries":CLIENTS*N,"secs":S} once every client has N
 *     messages of SIZE bytes.
 *
 * Any failure (refused connection or handshake, a close frame, a wrong
 * length, 60 s in all) prints {"error":"..."} and exits with status 1. On
 * success, stderr gets {"cpu_s":X,"reads":R,"writes":W,"waits":E}: this
 * process's CPU time (user + sys) and its read(), send() and epoll_wait()
 * calls over the measured window, from the start of the count to the result.
 *
 * Every frame is masked with a fresh 4-byte mask; the frames due on a
 * connection in one loop turn go out in one write(). Reads go through one
 * shared 256 KiB buffer into a streaming frame parser (7/16/64-bit lengths,
 * frames split across reads or many per read, fragmented messages, pings
 * answered with pongs). The handshake's Sec-WebSocket-Accept is checked.
 *
 *   cc -O2 -Wall -Wextra -o build/ws_load bench/ws/load.c
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/random.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define RBUF (256 * 1024)
#define HS_MAX 16384
#define TIMEOUT_S 60.0
#define GUID "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

enum { K_ECHO, K_FAN, K_CTL };
enum { S_CONNECTING, S_HANDSHAKE, S_OPEN };

struct conn {
  int fd, kind, state, writable, dirty;
  char key[32]; /* Sec-WebSocket-Key, base64 of 16 random bytes */
  char *hs;     /* the handshake's answer until its blank line */
  size_t hslen;
  /* frame parser */
  unsigned char hdr[14];
  int hlen, hneed, inpayload, op, fin, inmsg;
  uint64_t flen, rem, msglen;
  unsigned char ctl[125];
  int ctllen;
  /* output */
  unsigned char *wb;
  size_t wlen, woff, wcap;
  long got;
};

static int fan_mode, port, epfd;
static long nconns, window_, nmsgs;
static size_t size;
static double dur, t0, start, deadline, ctl_at;
static int started;
static long nopen, done;
static unsigned long long msgs;
static double cpu0;
static unsigned long long nreads, nwrites, nwaits, r0, w0, e0; /* syscalls */
static unsigned char *payload, *rbuf;
static struct conn **dirty;
static size_t ndirty;
static uint64_t rng;

static void fail(const char *fmt, ...) {
  char m[512];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(m, sizeof m, fmt, ap);
  va_end(ap);
  for (char *p = m; *p; p++)
    if (*p == '"' || *p == '\\' || (unsigned char)*p < 0x20) *p = ' ';
  printf("{\"error\":\"%s\"}\n", m);
  fflush(stdout);
  exit(1);
}

static double now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec + ts.tv_nsec / 1e9;
}

static double cpu_now(void) {
  struct rusage ru;
  getrusage(RUSAGE_SELF, &ru);
  return ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6 + ru.ru_stime.tv_sec +
         ru.ru_stime.tv_usec / 1e6;
}

static void entropy(void *p, size_t n) {
  unsigned char *b = p;
  while (n) {
    ssize_t k = getrandom(b, n, 0);
    if (k < 0) {
      if (errno == EINTR) continue;
      fail("getrandom: %s", strerror(errno));
    }
    b += k;
    n -= (size_t)k;
  }
}

/* xorshift64*: the masks (a fresh one per frame). */
static uint32_t rnd32(void) {
  rng ^= rng >> 12;
  rng ^= rng << 25;
  rng ^= rng >> 27;
  return (uint32_t)((rng * 0x2545F4914F6CDD1DULL) >> 32);
}

/* ---- SHA-1 and base64, for the handshake ---- */

static uint32_t rol(uint32_t x, int n) { return x << n | x >> (32 - n); }

static void sha1_block(uint32_t h[5], const unsigned char *p) {
  uint32_t w[80], a = h[0], b = h[1], c = h[2], d = h[3], e = h[4];
  for (int i = 0; i < 16; i++)
    w[i] = (uint32_t)p[4 * i] << 24 | (uint32_t)p[4 * i + 1] << 16 |
           (uint32_t)p[4 * i + 2] << 8 | p[4 * i + 3];
  for (int i = 16; i < 80; i++)
    w[i] = rol(w[i - 3] ^ w[i - 8] ^ w[i - 14] ^ w[i - 16], 1);
  for (int i = 0; i < 80; i++) {
    uint32_t f, k;
    if (i < 20) f = (b & c) | (~b & d), k = 0x5A827999;
    else if (i < 40) f = b ^ c ^ d, k = 0x6ED9EBA1;
    else if (i < 60) f = (b & c) | (b & d) | (c & d), k = 0x8F1BBCDC;
    else f = b ^ c ^ d, k = 0xCA62C1D6;
    uint32_t t = rol(a, 5) + f + e + k + w[i];
    e = d, d = c, c = rol(b, 30), b = a, a = t;
  }
  h[0] += a, h[1] += b, h[2] += c, h[3] += d, h[4] += e;
}

static void sha1(const unsigned char *m, size_t len, unsigned char out[20]) {
  uint32_t h[5] = {0x67452301, 0xEFCDAB89, 0x98BADCFE, 0x10325476, 0xC3D2E1F0};
  unsigned char blk[64];
  size_t full = len / 64, r = len % 64;
  uint64_t bits = (uint64_t)len * 8;
  for (size_t i = 0; i < full; i++) sha1_block(h, m + 64 * i);
  memset(blk, 0, sizeof blk);
  memcpy(blk, m + 64 * full, r);
  blk[r] = 0x80;
  if (r >= 56) {
    sha1_block(h, blk);
    memset(blk, 0, sizeof blk);
  }
  for (int i = 0; i < 8; i++) blk[63 - i] = (unsigned char)(bits >> (8 * i));
  sha1_block(h, blk);
  for (int i = 0; i < 5; i++) {
    out[4 * i] = (unsigned char)(h[i] >> 24);
    out[4 * i + 1] = (unsigned char)(h[i] >> 16);
    out[4 * i + 2] = (unsigned char)(h[i] >> 8);
    out[4 * i + 3] = (unsigned char)h[i];
  }
}

static void base64(const unsigned char *in, size_t n, char *out) {
  static const char t[] =
      "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  size_t i = 0;
  for (; i + 2 < n; i += 3) {
    uint32_t v = (uint32_t)in[i] << 16 | (uint32_t)in[i + 1] << 8 | in[i + 2];
    *out++ = t[v >> 18], *out++ = t[v >> 12 & 63];
    *out++ = t[v >> 6 & 63], *out++ = t[v & 63];
  }
  if (i < n) {
    uint32_t v = (uint32_t)in[i] << 16 | (i + 1 < n ? (uint32_t)in[i + 1] << 8 : 0);
    *out++ = t[v >> 18], *out++ = t[v >> 12 & 63];
    *out++ = i + 1 < n ? t[v >> 6 & 63] : '=';
    *out++ = '=';
  }
  *out = 0;
}

/* ---- output ---- */

static void mark_dirty(struct conn *c) {
  if (!c->dirty) {
    c->dirty = 1;
    dirty[ndirty++] = c;
  }
}

static unsigned char *reserve(struct conn *c, size_t n) {
  if (c->wlen + n > c->wcap) {
    if (c->woff) {
      memmove(c->wb, c->wb + c->woff, c->wlen - c->woff);
      c->wlen -= c->woff;
      c->woff = 0;
    }
    if (c->wlen + n > c->wcap) {
      size_t cap = c->wcap ? c->wcap : 4096;
      while (cap < c->wlen + n) cap *= 2;
      c->wb = realloc(c->wb, cap);
      if (!c->wb) fail("out of memory");
      c->wcap = cap;
    }
  }
  return c->wb + c->wlen;
}

static void send_frame(struct conn *c, int op, const unsigned char *p, size_t len) {
  unsigned char *o = reserve(c, len + 14), mk[4];
  size_t h = 0;
  o[h++] = (unsigned char)(0x80 | op);
  if (len < 126) {
    o[h++] = (unsigned char)(0x80 | len);
  } else if (len < 65536) {
    o[h++] = 0x80 | 126;
    o[h++] = (unsigned char)(len >> 8);
    o[h++] = (unsigned char)len;
  } else {
    o[h++] = 0x80 | 127;
    for (int i = 7; i >= 0; i--) o[h++] = (unsigned char)((uint64_t)len >> (8 * i));
  }
  uint32_t m = rnd32();
  memcpy(mk, &m, 4);
  memcpy(o + h, mk, 4);
  h += 4;
  for (size_t i = 0; i < len; i++) o[h + i] = p[i] ^ mk[i & 3];
  c->wlen += h + len;
  mark_dirty(c);
}

static void flush(struct conn *c) {
  while (c->woff < c->wlen) {
    ssize_t k = send(c->fd, c->wb + c->woff, c->wlen - c->woff, MSG_NOSIGNAL);
    nwrites++;
    if (k > 0) {
      c->woff += (size_t)k;
    } else if (k < 0 && errno == EINTR) {
      continue;
    } else if (k < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
      c->writable = 0; /* the rest goes at the next EPOLLOUT */
      return;
    } else {
      fail("write: %s", k < 0 ? strerror(errno) : "wrote nothing");
    }
  }
  c->woff = c->wlen = 0;
}

/* ---- connections ---- */

static struct conn *open_conn(int kind, const char *path) {
  struct conn *c = calloc(1, sizeof *c);
  struct sockaddr_in a;
  unsigned char k[16];
  int one = 1;
  if (!c) fail("out of memory");
  c->kind = kind;
  c->fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (c->fd < 0) fail("socket: %s", strerror(errno));
  setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  memset(&a, 0, sizeof a);
  a.sin_family = AF_INET;
  a.sin_port = htons((uint16_t)port);
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (connect(c->fd, (struct sockaddr *)&a, sizeof a) == 0) {
    c->state = S_HANDSHAKE;
    c->writable = 1;
  } else if (errno == EINPROGRESS) {
    c->state = S_CONNECTING;
  } else {
    fail("connect to 127.0.0.1:%d: %s", port, strerror(errno));
  }
  entropy(k, sizeof k);
  base64(k, sizeof k, c->key);
  char req[512];
  int n = snprintf(req, sizeof req,
                   "GET %s HTTP/1.1\r\nHost: 127.0.0.1:%d\r\n"
                   "Upgrade: websocket\r\nConnection: Upgrade\r\n"
                   "Sec-WebSocket-Key: %s\r\nSec-WebSocket-Version: 13\r\n\r\n",
                   path, port, c->key);
  memcpy(reserve(c, (size_t)n), req, (size_t)n);
  c->wlen += (size_t)n;
  mark_dirty(c);
  struct epoll_event ev = {.events = EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET,
                           .data.ptr = c};
  if (epoll_ctl(epfd, EPOLL_CTL_ADD, c->fd, &ev) < 0)
    fail("epoll_ctl: %s", strerror(errno));
  return c;
}

static void finish(const char *what, unsigned long long count) {
  double t = now(), cpu = cpu_now() - cpu0;
  printf("{\"%s\":%llu,\"secs\":%.6f}\n", what, count, t - start);
  fflush(stdout);
  fprintf(stderr, "{\"cpu_s\":%.6f,\"reads\":%llu,\"writes\":%llu,\"waits\":%llu}\n",
          cpu, nreads - r0, nwrites - w0, nwaits - e0);
  exit(0);
}

static void on_open(struct conn *c) {
  c->state = S_OPEN;
  switch (c->kind) {
  case K_ECHO:
    for (long k = 0; k < window_; k++) send_frame(c, 1, payload, size);
    if (++nopen == nconns) {
      start = now();
      deadline = start + dur;
      cpu0 = cpu_now();
      r0 = nreads, w0 = nwrites, e0 = nwaits;
      started = 1;
    }
    break;
  case K_FAN:
    if (++nopen == nconns) ctl_at = now() + 0.2;
    break;
  case K_CTL: {
    char m[64];
    int n = snprintf(m, sizeof m, "BCAST %ld %zu", nmsgs, size);
    start = now();
    cpu0 = cpu_now();
    r0 = nreads, w0 = nwrites, e0 = nwaits;
    started = 1;
    send_frame(c, 1, (unsigned char *)m, (size_t)n);
    break;
  }
  }
}

static void on_message(struct conn *c, uint64_t len) {
  switch (c->kind) {
  case K_ECHO:
    if (len != size)
      fail("an echo of %llu bytes, %zu sent", (unsigned long long)len, size);
    if (started) msgs++;
    send_frame(c, 1, payload, size);
    break;
  case K_FAN:
    if (len != size)
      fail("a broadcast of %llu bytes, %zu asked", (unsigned long long)len, size);
    if (++c->got == nmsgs && ++done == nconns)
      finish("deliveries", (unsigned long long)nconns * (unsigned long long)nmsgs);
    break;
  default: /* /ctl answers 'sent' */
    break;
  }
}

static void frame_done(struct conn *c) {
  switch (c->op) {
  case 0:
    if (!c->inmsg) fail("a continuation frame outside a message");
    c->msglen += c->flen;
    if (c->fin) {
      c->inmsg = 0;
      on_message(c, c->msglen);
    }
    break;
  case 1:
  case 2:
    if (c->inmsg) fail("a new message inside a fragmented one");
    if (c->fin) {
      on_message(c, c->flen);
    } else {
      c->inmsg = 1;
      c->msglen = c->flen;
    }
    break;
  case 8:
    fail("a close frame from the server (code %d)",
         c->ctllen >= 2 ? c->ctl[0] << 8 | c->ctl[1] : 1005);
    break;
  case 9:
    send_frame(c, 10, c->ctl, (size_t)c->ctllen);
    break;
  case 10:
    break;
  default:
    fail("a frame of unknown opcode %d", c->op);
  }
}

/* The frames of n bytes read on an open connection, however they are cut. */
static void frames(struct conn *c, const unsigned char *p, size_t n) {
  while (n) {
    if (!c->inpayload) {
      if (c->hlen < 2) {
        c->hdr[c->hlen++] = *p++, n--;
        if (c->hlen < 2) continue;
        if (c->hdr[1] & 0x80) fail("a masked frame from the server");
        int l7 = c->hdr[1] & 0x7f;
        c->hneed = 2 + (l7 == 126 ? 2 : l7 == 127 ? 8 : 0);
      }
      while (c->hlen < c->hneed && n) c->hdr[c->hlen++] = *p++, n--;
      if (c->hlen < c->hneed) break;
      uint64_t len = c->hdr[1] & 0x7f;
      if (len == 126) {
        len = (uint64_t)c->hdr[2] << 8 | c->hdr[3];
      } else if (len == 127) {
        len = 0;
        for (int i = 2; i < 10; i++) len = len << 8 | c->hdr[i];
        if (len >> 63) fail("a frame length with its top bit set");
      }
      if (c->hdr[0] & 0x70) fail("a frame with reserved bits set");
      c->fin = c->hdr[0] >> 7;
      c->op = c->hdr[0] & 15;
      if (c->op >= 8 && (!c->fin || len > 125)) fail("a bad control frame");
      c->flen = c->rem = len;
      c->ctllen = 0;
      c->hlen = 0;
      if (len == 0) {
        frame_done(c);
        continue;
      }
      c->inpayload = 1;
    }
    size_t take = c->rem < n ? (size_t)c->rem : n;
    if (c->op >= 8) {
      memcpy(c->ctl + c->ctllen, p, take);
      c->ctllen += (int)take;
    }
    p += take, n -= take, c->rem -= take;
    if (c->rem == 0) {
      c->inpayload = 0;
      frame_done(c);
    }
  }
}

/* Checks the 101 answer in h (NUL-terminated, up to its blank line). */
static void check_handshake(struct conn *c, char *h) {
  char *eol = strstr(h, "\r\n");
  *eol = 0;
  if (strncmp(h, "HTTP/1.1 101", 12) != 0 || (h[12] != ' ' && h[12] != 0))
    fail("handshake refused: %.200s", h);
  char want[64], acc[64];
  unsigned char dg[20];
  int n = snprintf(acc, sizeof acc, "%s" GUID, c->key);
  sha1((unsigned char *)acc, (size_t)n, dg);
  base64(dg, sizeof dg, want);
  for (char *l = eol + 2; *l; l = eol + 2) {
    eol = strstr(l, "\r\n");
    if (!eol) break;
    *eol = 0;
    if (strncasecmp(l, "Sec-WebSocket-Accept:", 21) == 0) {
      char *v = l + 21, *e = eol;
      while (*v == ' ' || *v == '\t') v++;
      while (e > v && (e[-1] == ' ' || e[-1] == '\t')) *--e = 0;
      if (strcmp(v, want) != 0)
        fail("a wrong Sec-WebSocket-Accept: %.60s, not %s", v, want);
      return;
    }
  }
  fail("a 101 answer without Sec-WebSocket-Accept");
}

static void consume(struct conn *c, const unsigned char *p, size_t n) {
  if (c->state == S_OPEN) {
    frames(c, p, n);
    return;
  }
  if (!c->hs && !(c->hs = malloc(HS_MAX + 1))) fail("out of memory");
  if (c->hslen + n > HS_MAX) fail("a handshake answer over %d bytes", HS_MAX);
  memcpy(c->hs + c->hslen, p, n);
  c->hslen += n;
  c->hs[c->hslen] = 0;
  char *end = memmem(c->hs, c->hslen, "\r\n\r\n", 4);
  if (!end) return;
  size_t hend = (size_t)(end - c->hs) + 4, rest = c->hslen - hend;
  unsigned char *more = NULL;
  if (rest) {
    more = malloc(rest);
    if (!more) fail("out of memory");
    memcpy(more, c->hs + hend, rest);
  }
  c->hs[hend - 2] = 0;
  check_handshake(c, c->hs);
  free(c->hs);
  c->hs = NULL;
  on_open(c);
  if (rest) frames(c, more, rest);
  free(more);
}

static void on_readable(struct conn *c) {
  for (;;) {
    ssize_t k = read(c->fd, rbuf, RBUF);
    nreads++;
    if (k > 0) {
      consume(c, rbuf, (size_t)k);
      if (k < RBUF) return; /* drained: a later byte is a new edge */
    } else if (k == 0) {
      fail("the server closed a connection");
    } else if (errno == EINTR) {
      continue;
    } else if (errno == EAGAIN || errno == EWOULDBLOCK) {
      return;
    } else {
      fail("read: %s", strerror(errno));
    }
  }
}

static long arg(const char *s, const char *what) {
  char *e;
  long v = strtol(s, &e, 10);
  if (*s == 0 || *e || v <= 0) fail("bad %s: %s", what, s);
  return v;
}

int main(int argc, char **argv) {
  if (argc == 7 && strcmp(argv[1], "echo") == 0) {
    fan_mode = 0;
    window_ = arg(argv[6], "WINDOW");
    dur = (double)arg(argv[4], "DUR_S");
  } else if (argc == 6 && strcmp(argv[1], "fan") == 0) {
    fan_mode = 1;
    nmsgs = arg(argv[4], "N");
  } else {
    fprintf(stderr, "usage: %s echo PORT CONNS DUR_S SIZE WINDOW\n"
                    "       %s fan PORT CLIENTS N SIZE\n", argv[0], argv[0]);
    fail("bad arguments");
  }
  port = (int)arg(argv[2], "PORT");
  nconns = arg(argv[3], fan_mode ? "CLIENTS" : "CONNS");
  size = (size_t)arg(argv[5], "SIZE");
  t0 = now();
  signal(SIGPIPE, SIG_IGN);

  struct rlimit rl;
  if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max &&
      rl.rlim_cur < (rlim_t)nconns + 64) {
    rl.rlim_cur = rl.rlim_max;
    setrlimit(RLIMIT_NOFILE, &rl);
  }
  entropy(&rng, sizeof rng);
  rng |= 1;
  if (!(payload = malloc(size)) || !(rbuf = malloc(RBUF)) ||
      !(dirty = calloc((size_t)nconns + 2, sizeof *dirty)))
    fail("out of memory");
  memset(payload, 'x', size);
  if ((epfd = epoll_create1(EPOLL_CLOEXEC)) < 0)
    fail("epoll_create1: %s", strerror(errno));

  for (long i = 0; i < nconns; i++)
    open_conn(fan_mode ? K_FAN : K_ECHO, fan_mode ? "/fan" : "/echo");

  struct epoll_event evs[512];
  for (;;) {
    double t = now(), wake = t0 + TIMEOUT_S;
    if (t >= wake) fail("timeout: %.0f s", TIMEOUT_S);
    if (!fan_mode && started) {
      if (t >= deadline) finish("msgs", msgs);
      if (deadline < wake) wake = deadline;
    }
    if (ctl_at > 0) {
      if (t >= ctl_at) {
        ctl_at = 0;
        open_conn(K_CTL, "/ctl");
      } else if (ctl_at < wake) {
        wake = ctl_at;
      }
    }
    for (size_t i = 0; i < ndirty; i++) {
      struct conn *c = dirty[i];
      c->dirty = 0;
      if (c->writable) flush(c);
    }
    ndirty = 0;
    int ms = (int)((wake - t) * 1000) + 1;
    int ne = epoll_wait(epfd, evs, 512, ms);
    nwaits++;
    if (ne < 0) {
      if (errno == EINTR) continue;
      fail("epoll_wait: %s", strerror(errno));
    }
    for (int i = 0; i < ne; i++) {
      struct conn *c = evs[i].data.ptr;
      uint32_t e = evs[i].events;
      if (e & EPOLLERR) {
        int err = 0;
        socklen_t l = sizeof err;
        getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &l);
        fail("%s: %s", c->state == S_CONNECTING ? "connect" : "socket",
             err ? strerror(err) : "error");
      }
      if (e & EPOLLOUT) {
        if (c->state == S_CONNECTING) c->state = S_HANDSHAKE;
        c->writable = 1;
        if (c->wlen > c->woff) mark_dirty(c);
      }
      if (e & (EPOLLIN | EPOLLHUP | EPOLLRDHUP)) on_readable(c);
    }
  }
}
