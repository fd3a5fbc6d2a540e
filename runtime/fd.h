/* luacluster: descriptor helpers the C core shares (runtime/fd.c). Each
 * returns a negative libuv error code on failure. */
#ifndef LC_FD_H
#define LC_FD_H

/* Duplicates fd, close-on-exec, so the caller may close its own copy.
 * Returns the new fd. */
int lc__fd_dup(int fd);

/* Marks fd close-on-exec: it does not leak into programs this process
 * spawns. Returns 0. */
int lc__fd_cloexec(int fd);

/* A connected pair of Unix stream sockets, both close-on-exec. Returns 0. */
int lc__fd_socketpair(int sv[2]);

#endif
