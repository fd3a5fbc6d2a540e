/* Unix domain stream sockets, Node's "pipes" on Unix: a listening socket
 * on a path, and telling a Unix socket from a TCP one (a descriptor that
 * comes from a cluster primary or is being adopted), so that each becomes
 * the libuv handle its kind calls for: uv_pipe_t here, uv_tcp_t for TCP.
 *
 * libuv's uv_pipe_bind would bind too, but it removes the file when that
 * very handle closes; the listening path (lua/internal/listen.lua) removes
 * it when the server closes instead, whichever process or handle listens
 * on a duplicate. The `_unix` module gives the same to the Lua side. */
#include <errno.h>
#include <string.h>
#include <unistd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <uv.h>
#include "lc.h"
#include "unix.h"

/* Adds read and/or write permission for everyone to the file at path, as
 * libuv's uv_pipe_chmod does. Returns 0 or a negative libuv error. */
static int open_up(const char *path, int readable_all, int writable_all) {
  struct stat st;
  mode_t want = 0;
  if (readable_all)
    want |= S_IRUSR | S_IRGRP | S_IROTH;
  if (writable_all)
    want |= S_IWUSR | S_IWGRP | S_IWOTH;
  if (want == 0)
    return 0;
  if (stat(path, &st) != 0)
    return uv_translate_sys_error(errno);
  if ((st.st_mode & want) == want)
    return 0;
  if (chmod(path, (st.st_mode | want) & 07777) != 0)
    return uv_translate_sys_error(errno);
  return 0;
}

int lc__unix_listen_fd(const char *path, size_t len, int backlog,
                       int readable_all, int writable_all) {
  struct sockaddr_un sa;
  int fd, err;
  if (len == 0 || memchr(path, '\0', len) != NULL)
    return UV_EINVAL;
  if (len >= sizeof(sa.sun_path))
    return UV_ENAMETOOLONG;
  memset(&sa, 0, sizeof(sa));
  sa.sun_family = AF_UNIX;
  memcpy(sa.sun_path, path, len);
  fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0)
    return uv_translate_sys_error(errno);
  /* bind fails with EADDRINUSE on any file already there, a stale socket
   * included: Node leaves removing it to the user. */
  if (bind(fd, (const struct sockaddr *)&sa, sizeof(sa)) != 0) {
    err = uv_translate_sys_error(errno);
    close(fd);
    return err;
  }
  err = open_up(sa.sun_path, readable_all, writable_all);
  if (err == 0 && listen(fd, backlog > 0 ? backlog : 511) != 0)
    err = uv_translate_sys_error(errno);
  if (err != 0) {
    /* The file is ours (bind made it): no listener is left behind. */
    unlink(sa.sun_path);
    close(fd);
    return err;
  }
  return fd;
}

int lc__unix_is(int fd) {
  struct sockaddr_storage ss;
  socklen_t len = sizeof(ss);
  if (getsockname(fd, (struct sockaddr *)&ss, &len) != 0)
    return uv_translate_sys_error(errno);
  return ss.ss_family == AF_UNIX;
}

/* ---- The `_unix` module. ---- */

/* _unix.listen_fd(path, backlog[, readableAll][, writableAll]) -> fd
 * or nil, message, code. */
static int unix_listen_fd(lua_State *L) {
  size_t len;
  const char *path = luaL_checklstring(L, 1, &len);
  int backlog = (int)luaL_optinteger(L, 2, 511);
  int fd = lc__unix_listen_fd(path, len, backlog, lua_toboolean(L, 3),
                              lua_toboolean(L, 4));
  if (fd < 0)
    return lc_push_uverr(L, fd);
  lua_pushinteger(L, fd);
  return 1;
}

/* _unix.is_unix(fd) -> whether fd is a Unix domain socket, or nil,
 * message, code (not a socket, a closed fd). */
static int unix_is_unix(lua_State *L) {
  int r = lc__unix_is((int)luaL_checkinteger(L, 1));
  if (r < 0)
    return lc_push_uverr(L, r);
  lua_pushboolean(L, r);
  return 1;
}

int luaopen_lc_unix(lua_State *L) {
  static const luaL_Reg fns[] = {
    {"listen_fd", unix_listen_fd},
    {"is_unix", unix_is_unix},
    {NULL, NULL}};
  lua_newtable(L);
  luaL_register(L, NULL, fns);
  return 1;
}
