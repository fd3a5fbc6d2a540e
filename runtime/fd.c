/* luacluster: descriptor helpers the C core shares (runtime/fd.h). */
#include <errno.h>
#include <fcntl.h>
#include <sys/socket.h>
#include <uv.h>
#include "fd.h"

int lc__fd_dup(int fd) {
  int nfd = fcntl(fd, F_DUPFD_CLOEXEC, 0);
  return nfd < 0 ? uv_translate_sys_error(errno) : nfd;
}

int lc__fd_cloexec(int fd) {
  int flags = fcntl(fd, F_GETFD);
  if (flags < 0 || fcntl(fd, F_SETFD, flags | FD_CLOEXEC) < 0)
    return uv_translate_sys_error(errno);
  return 0;
}

int lc__fd_socketpair(int sv[2]) {
  if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0)
    return uv_translate_sys_error(errno);
  return 0;
}
