/* Where llhttp stood when it reported the end of a message head or of a
 * whole message.
 *
 * llhttp calls on_headers_complete and on_message_complete without a
 * position, and the HTTP server needs one: the bytes up to there are
 * checked for bare LFs, folded lines and oversized chunk extensions or
 * trailers before the request is dispatched or completed (parse.c,
 * gap_check). llhttp's generated parser reaches those callbacks through its
 * internal llhttp__on_headers_complete(state, p, endp) and
 * llhttp__on_message_complete; llhttp.c is compiled with those names mapped
 * to the wrappers below (cmake/Dependencies.cmake), which note p and call
 * the originals in llhttp's api.c. The runtime is single-threaded, so one
 * variable is enough. */
#include <llhttp.h>

const char *lc__llhttp_at;

int llhttp__on_headers_complete(llhttp_t *s, const char *p, const char *endp);
int llhttp__on_message_complete(llhttp_t *s, const char *p, const char *endp);

int lc__llhttp_on_headers_complete(llhttp_t *s, const char *p,
                                   const char *endp) {
  lc__llhttp_at = p;
  return llhttp__on_headers_complete(s, p, endp);
}

int lc__llhttp_on_message_complete(llhttp_t *s, const char *p,
                                   const char *endp) {
  lc__llhttp_at = p;
  return llhttp__on_message_complete(s, p, endp);
}
