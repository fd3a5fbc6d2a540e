/* TCP socket syscalls the servers need and libuv 1.44 does not offer:
 * listening sockets with SO_REUSEPORT, adopting descriptors that arrive
 * from elsewhere (a cluster primary, a systemd socket), and emptying a
 * listening socket's accept queue at once (the cluster primary, before it
 * closes a SO_REUSEPORT socket no worker will take), and the lock that
 * keeps a port to one cluster. The HTTP server uses the C functions; the
 * `_tcp` module gives the same to the Lua side. */
#include <errno.h>
#include <fcntl.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <uv.h>
#include "lc.h"
#include "tcp.h"
#include "fd.h"

/* Parses host:port into ss. Returns the address length, or 0 when host is
 * not a numeric IPv4 or IPv6 address. */
static socklen_t parse_addr(const char *host, int port,
                            struct sockaddr_storage *ss) {
  memset(ss, 0, sizeof(*ss));
  if (uv_ip4_addr(host, port, (struct sockaddr_in *)ss) == 0)
    return sizeof(struct sockaddr_in);
  if (uv_ip6_addr(host, port, (struct sockaddr_in6 *)ss) == 0)
    return sizeof(struct sockaddr_in6);
  return 0;
}

/* One attempt of lc__tcp_listen_fd for a parsed address. */
static int listen_addr(const struct sockaddr_storage *ss, socklen_t len,
                       int backlog, int reuseport) {
  int one = 1, zero = 0, fd, err;
  fd = socket(ss->ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0)
    return uv_translate_sys_error(errno);
  if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) != 0)
    goto fail;
  if (reuseport &&
      setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one)) != 0)
    goto fail;
  /* Node listens dual-stack on IPv6 addresses unless told otherwise. */
  if (ss->ss_family == AF_INET6)
    (void)setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &zero, sizeof(zero));
  if (bind(fd, (const struct sockaddr *)ss, len) != 0)
    goto fail;
  /* A negative backlog binds only: a holder of the port that takes no
   * connections (cluster's SO_REUSEPORT policy). */
  if (backlog >= 0 && listen(fd, backlog > 0 ? backlog : 511) != 0)
    goto fail;
  return fd;
fail:
  err = uv_translate_sys_error(errno);
  close(fd);
  return err;
}

int lc__tcp_listen_fd(const char *host, int port, int backlog, int reuseport) {
  struct sockaddr_storage ss;
  socklen_t len;
  int fd;
  if (port < 0 || port > 65535)
    return UV_EINVAL;
  if (host == NULL || *host == '\0') {
    /* Every address: IPv6 dual-stack first, as Node does. */
    len = parse_addr("::", port, &ss);
    fd = listen_addr(&ss, len, backlog, reuseport);
    if (fd != UV_EAFNOSUPPORT && fd != UV_EADDRNOTAVAIL)
      return fd;
    host = "0.0.0.0";
  }
  len = parse_addr(host, port, &ss);
  if (len == 0)
    return UV_EINVAL;
  return listen_addr(&ss, len, backlog, reuseport);
}

int lc__tcp_addr(const struct sockaddr *sa, char *ip, int *port, int *family) {
  int err;
  if (sa->sa_family == AF_INET) {
    const struct sockaddr_in *a = (const struct sockaddr_in *)sa;
    err = uv_ip4_name(a, ip, INET6_ADDRSTRLEN);
    *port = ntohs(a->sin_port);
    *family = 4;
  } else if (sa->sa_family == AF_INET6) {
    const struct sockaddr_in6 *a = (const struct sockaddr_in6 *)sa;
    err = uv_ip6_name(a, ip, INET6_ADDRSTRLEN);
    *port = ntohs(a->sin6_port);
    *family = 6;
  } else {
    return UV_EAFNOSUPPORT;
  }
  return err;
}

int lc__tcp_push_name(lua_State *L, int fd, int peer) {
  struct sockaddr_storage ss;
  socklen_t len = sizeof(ss);
  char ip[INET6_ADDRSTRLEN];
  int port, family, err;
  if ((peer ? getpeername(fd, (struct sockaddr *)&ss, &len)
            : getsockname(fd, (struct sockaddr *)&ss, &len)) != 0)
    return lc_push_uverr(L, uv_translate_sys_error(errno));
  err = lc__tcp_addr((const struct sockaddr *)&ss, ip, &port, &family);
  if (err != 0)
    return lc_push_uverr(L, err);
  lua_createtable(L, 0, 4);
  lua_pushstring(L, ip);
  lua_setfield(L, -2, "address");
  lua_pushinteger(L, port);
  lua_setfield(L, -2, "port");
  lua_pushstring(L, family == 4 ? "IPv4" : "IPv6");
  lua_setfield(L, -2, "family");
  lua_pushinteger(L, family);
  lua_setfield(L, -2, "addressType");
  return 1;
}

/* ---- The `_tcp` module. ---- */

/* _tcp.listen_fd(host|nil, port, backlog, reuseport) -> fd
 * or nil, message, code. A negative backlog binds without listening. */
static int tcp_listen_fd(lua_State *L) {
  const char *host = luaL_optstring(L, 1, NULL);
  int port = (int)luaL_checkinteger(L, 2);
  int backlog = (int)luaL_optinteger(L, 3, 511);
  int reuseport = lua_toboolean(L, 4);
  int fd;
  luaL_argcheck(L, port >= 0 && port <= 65535, 2, "port out of range");
  fd = lc__tcp_listen_fd(host, port, backlog, reuseport);
  if (fd < 0)
    return lc_push_uverr(L, fd);
  lua_pushinteger(L, fd);
  return 1;
}

/* _tcp.dup(fd) -> fd or nil, message, code. */
static int tcp_dup(lua_State *L) {
  int fd = lc__fd_dup((int)luaL_checkinteger(L, 1));
  if (fd < 0)
    return lc_push_uverr(L, fd);
  lua_pushinteger(L, fd);
  return 1;
}

/* _tcp.close(fd) -> true or nil, message, code. */
static int tcp_close(lua_State *L) {
  if (close((int)luaL_checkinteger(L, 1)) != 0)
    return lc_push_uverr(L, uv_translate_sys_error(errno));
  lua_pushboolean(L, 1);
  return 1;
}

/* _tcp.accept_all(fd) -> {fd, ...}: accepts every connection waiting on
 * the listening socket fd (non-blocking), each non-blocking and
 * close-on-exec, until none is left or accept fails; the caller owns them.
 * The loop runs without a return to the event loop, so a close right after
 * it leaves the fewest connections to be reset. */
static int tcp_accept_all(lua_State *L) {
  int fd = (int)luaL_checkinteger(L, 1);
  int n = 0, c;
  lua_newtable(L);
  for (;;) {
    c = accept4(fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (c < 0) {
      if (errno == EINTR || errno == ECONNABORTED)
        continue;
      break; /* EAGAIN: the queue is empty; EMFILE and the like: stop. */
    }
    lua_pushinteger(L, c);
    lua_rawseti(L, -2, ++n);
  }
  return 1;
}

/* _tcp.idle(fd) -> true when a connected socket has nothing to read and
 * no EOF waiting (a peek would block): a pooled connection fit for reuse.
 * One recv with MSG_PEEK; nothing is consumed. */
static int tcp_idle(lua_State *L) {
  int fd = (int)luaL_checkinteger(L, 1);
  char c;
  ssize_t n;
  do
    n = recv(fd, &c, 1, MSG_PEEK | MSG_DONTWAIT);
  while (n < 0 && errno == EINTR);
  lua_pushboolean(L, n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK));
  return 1;
}

/* _tcp.port_lock(port) -> fd or nil, message, code (EADDRINUSE when
 * another process holds it). SO_REUSEPORT lets any process of the same user
 * bind a port a cluster serves, and the kernel would split the traffic
 * between them; so a cluster's primary also holds this lock, a Unix socket
 * bound to an abstract name made of the port (no file; the kernel frees it
 * with the process; one namespace per network namespace, as ports). */
static int tcp_port_lock(lua_State *L) {
  int port = (int)luaL_checkinteger(L, 1);
  struct sockaddr_un sa;
  socklen_t len;
  int fd, n, err;
  luaL_argcheck(L, port >= 0 && port <= 65535, 1, "port out of range");
  memset(&sa, 0, sizeof(sa));
  sa.sun_family = AF_UNIX;
  /* sun_path[0] stays 0: the abstract namespace. */
  n = snprintf(sa.sun_path + 1, sizeof(sa.sun_path) - 1,
               "luacluster/tcp-port/%d", port);
  len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + 1 + n);
  fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0)
    return lc_push_uverr(L, uv_translate_sys_error(errno));
  if (bind(fd, (struct sockaddr *)&sa, len) != 0) {
    err = uv_translate_sys_error(errno);
    close(fd);
    return lc_push_uverr(L, err);
  }
  lua_pushinteger(L, fd);
  return 1;
}

/* _tcp.sockname(fd) -> address table. */
static int tcp_sockname(lua_State *L) {
  return lc__tcp_push_name(L, (int)luaL_checkinteger(L, 1), 0);
}

int luaopen_lc_tcp(lua_State *L) {
  static const luaL_Reg fns[] = {
    {"listen_fd", tcp_listen_fd},
    {"dup", tcp_dup},
    {"accept_all", tcp_accept_all},
    {"close", tcp_close},
    {"sockname", tcp_sockname},
    {"idle", tcp_idle},
    {"port_lock", tcp_port_lock},
    {NULL, NULL}};
  lua_newtable(L);
  luaL_register(L, NULL, fns);
  return 1;
}
