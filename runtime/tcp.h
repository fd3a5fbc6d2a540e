/* luacluster: TCP socket syscalls shared by the servers (runtime/tcp.c). */
#ifndef LC_TCP_H
#define LC_TCP_H

#include <sys/socket.h>
#include <lua.h>

/* Creates a TCP socket bound to host:port and listening with the given
 * backlog. host NULL (or "") means every address: "::" dual-stack, or
 * "0.0.0.0" where IPv6 is missing. With reuseport, SO_REUSEPORT is set
 * before bind, so sibling processes may bind the same port. The socket is
 * non-blocking and close-on-exec. A negative backlog binds without
 * listening. Returns the fd (the caller owns it) or a negative libuv error
 * code. */
int lc__tcp_listen_fd(const char *host, int port, int backlog, int reuseport);

/* Writes the numeric address of sa into ip (INET6_ADDRSTRLEN bytes), its
 * port and its family (4 or 6). Returns 0 or a negative libuv error. */
int lc__tcp_addr(const struct sockaddr *sa, char *ip, int *port,
                 int *family);

/* Pushes {address=, port=, family='IPv4'|'IPv6', addressType=4|6} for the
 * local (peer 0) or remote (peer 1) end of fd, or nil, message, code. */
int lc__tcp_push_name(lua_State *L, int fd, int peer);

/* The `_tcp` Lua module: the same syscalls for the Lua side of net and
 * cluster. */
int luaopen_lc_tcp(lua_State *L);

#endif
