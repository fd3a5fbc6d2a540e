/* luacluster: Unix domain stream sockets, Node's "pipes" on Unix
 * (runtime/unix.c). */
#ifndef LC_UNIX_H
#define LC_UNIX_H

#include <stddef.h>
#include <lua.h>

/* Creates a Unix stream socket bound to path (len bytes, no NUL inside)
 * and listening with the given backlog (511 when not positive). The socket
 * file is made as the umask says; readable_all and writable_all then add
 * read or write permission for everyone (Node's readableAll, writableAll).
 * A path that exists fails with UV_EADDRINUSE: nothing is removed. The
 * socket is non-blocking and close-on-exec; removing the file once done is
 * the caller's. Returns the fd (the caller owns it) or a negative libuv
 * error code. */
int lc__unix_listen_fd(const char *path, size_t len, int backlog,
                       int readable_all, int writable_all);

/* Whether fd is a Unix domain socket: 1, 0 (another kind), or a negative
 * libuv error code. */
int lc__unix_is(int fd);

/* The `_unix` Lua module: the same for the Lua side of net and cluster. */
int luaopen_lc_unix(lua_State *L);

#endif
