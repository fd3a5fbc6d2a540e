/* PostgreSQL through libpq, loaded on demand: the table of libpq's
 * functions (runtime/pg/libpq.c), the connection binding (conn.c) and the
 * conversion of results to Lua (result.c). */
#ifndef LC_PG_H
#define LC_PG_H

#include <libpq-fe.h>
#include <lua.h>

/* Every libpq function the binding calls, by name. */
#define LC_PQ_FUNCS(X)                                                         \
  X(PQconnectStart)                                                            \
  X(PQconnectPoll)                                                             \
  X(PQstatus)                                                                  \
  X(PQsocket)                                                                  \
  X(PQerrorMessage)                                                            \
  X(PQfinish)                                                                  \
  X(PQsetnonblocking)                                                          \
  X(PQsendQuery)                                                               \
  X(PQsendQueryParams)                                                         \
  X(PQsendPrepare)                                                             \
  X(PQsendQueryPrepared)                                                       \
  X(PQflush)                                                                   \
  X(PQconsumeInput)                                                            \
  X(PQisBusy)                                                                  \
  X(PQgetResult)                                                               \
  X(PQclear)                                                                   \
  X(PQresultStatus)                                                            \
  X(PQresultErrorField)                                                        \
  X(PQresultErrorMessage)                                                      \
  X(PQntuples)                                                                 \
  X(PQnfields)                                                                 \
  X(PQfname)                                                                   \
  X(PQftype)                                                                   \
  X(PQftable)                                                                  \
  X(PQftablecol)                                                               \
  X(PQgetvalue)                                                                \
  X(PQgetlength)                                                               \
  X(PQgetisnull)                                                               \
  X(PQcmdStatus)                                                               \
  X(PQcmdTuples)                                                               \
  X(PQnotifies)                                                                \
  X(PQfreemem)                                                                 \
  X(PQgetCancel)                                                               \
  X(PQfreeCancel)                                                              \
  X(PQcancel)                                                                  \
  X(PQunescapeBytea)                                                           \
  X(PQbackendPID)                                                              \
  X(PQtransactionStatus)                                                       \
  X(PQserverVersion)                                                           \
  X(PQlibVersion)                                                              \
  X(PQsetNoticeReceiver)                                                       \
  X(PQconninfoParse)                                                           \
  X(PQconninfoFree)                                                            \
  X(PQputCopyData)                                                             \
  X(PQputCopyEnd)                                                              \
  X(PQgetCopyData)

typedef struct {
#define LC_PQ_FIELD(name) __typeof__(&name) name;
  LC_PQ_FUNCS(LC_PQ_FIELD)
#undef LC_PQ_FIELD
} lc_pq_api;

/* The loaded functions (valid once lc__pq_load returned NULL). */
extern lc_pq_api lc__pq;

/* Loads libpq.so.5 once per process. Returns NULL, or why it could not. */
const char *lc__pq_load(void);

/* A notice (a warning or a RAISE NOTICE the server sent), kept until Lua
 * takes it: its fields under Node pg's names, in one allocation. */
/* Room for every error field libpq reports (result.c names 17). */
#define LC_PQ_NOTICE_FIELDS 20

typedef struct lc_pq_notice {
  struct lc_pq_notice *next;
  int n;                                   /* fields present */
  const char *names[LC_PQ_NOTICE_FIELDS];  /* static strings */
  const char *values[LC_PQ_NOTICE_FIELDS]; /* into text */
  char text[];
} lc_pq_notice;

/* A malloc'd copy of res's fields, or NULL (out of memory). */
lc_pq_notice *lc__pq_notice_new(const PGresult *res);

/* Pushes a notice as a table (the caller frees it after). */
void lc__pq_push_notice(lua_State *L, const lc_pq_notice *n);

/* Pushes the result res as a Lua table (see result.c) and returns 1, or
 * pushes false and an error table (a failed statement) and returns 2.
 * Does not clear res. */
int lc__pq_push_result(lua_State *L, PGresult *res);

#endif
