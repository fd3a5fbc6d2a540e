/* `_systemd`: what luacluster says to systemd. notify() sends sd_notify's
 * datagram (READY=1, STATUS=..., MAINPID=...) to NOTIFY_SOCKET, so a
 * Type=notify unit knows when the workers listen. (Socket activation, the
 * other half, is descriptors handed over at start:
 * lua/cluster/handles/activation.lua reads LISTEN_FDS.) */
#include <errno.h>
#include <stddef.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>
#include "lc.h"

/* _systemd.notify(path, text) -> true, or nil, message, code. Sends one
 * datagram to systemd's NOTIFY_SOCKET (a path, or "@name" in the abstract
 * namespace). */
static int systemd_notify(lua_State *L) {
  size_t plen, tlen;
  const char *path = luaL_checklstring(L, 1, &plen);
  const char *text = luaL_checklstring(L, 2, &tlen);
  struct sockaddr_un sa;
  socklen_t salen;
  int fd, rc = 0;
  luaL_argcheck(L, plen > 0 && plen < sizeof(sa.sun_path), 1,
                "bad NOTIFY_SOCKET path");
  memset(&sa, 0, sizeof(sa));
  sa.sun_family = AF_UNIX;
  memcpy(sa.sun_path, path, plen);
  if (path[0] == '@')
    sa.sun_path[0] = '\0';
  salen = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + plen);
  fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (fd < 0)
    return lc_push_uverr(L, uv_translate_sys_error(errno));
  if (sendto(fd, text, tlen, MSG_NOSIGNAL, (struct sockaddr *)&sa, salen) < 0)
    rc = uv_translate_sys_error(errno);
  close(fd);
  if (rc != 0)
    return lc_push_uverr(L, rc);
  lua_pushboolean(L, 1);
  return 1;
}

int luaopen_lc_systemd(lua_State *L) {
  static const luaL_Reg fns[] = {{"notify", systemd_notify}, {NULL, NULL}};
  lua_newtable(L);
  luaL_register(L, NULL, fns);
  return 1;
}
