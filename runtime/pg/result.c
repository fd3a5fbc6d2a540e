/* A libpq result as Lua values: rows of column name -> value, with the
 * basic types converted here (the others are left as text for lua/pg/
 * types.lua), or a failed statement's error fields under Node pg's names. */
#include <stdlib.h>
#include <string.h>
#include <lauxlib.h>
#include "pg.h"

/* Type OIDs converted here (pg_type.h's values, stable across versions). */
enum {
  OID_BOOL = 16,
  OID_BYTEA = 17,
  OID_INT8 = 20,
  OID_INT2 = 21,
  OID_INT4 = 23,
  OID_OID = 26,
  OID_FLOAT4 = 700,
  OID_FLOAT8 = 701
};

/* 2^53: the largest integer a Lua number (a double) holds exactly. */
#define EXACT_MAX 9007199254740992LL

static int hexval(int c) {
  if (c >= '0' && c <= '9')
    return c - '0';
  if (c >= 'a' && c <= 'f')
    return c - 'a' + 10;
  if (c >= 'A' && c <= 'F')
    return c - 'A' + 10;
  return -1;
}

/* Pushes a bytea's text form as the raw bytes: the hex format
 * (bytea_output = hex, the default) is decoded here, the old escape
 * format by libpq. */
static void push_bytea(lua_State *L, const char *v, int len) {
  if (len >= 2 && v[0] == '\\' && v[1] == 'x') {
    luaL_Buffer b;
    int i;
    luaL_buffinit(L, &b);
    for (i = 2; i + 1 < len; i += 2) {
      int hi = hexval((unsigned char)v[i]),
          lo = hexval((unsigned char)v[i + 1]);
      if (hi < 0 || lo < 0)
        break;
      luaL_addchar(&b, (char)(hi * 16 + lo));
    }
    luaL_pushresult(&b);
  } else {
    size_t n = 0;
    unsigned char *raw = lc__pq.PQunescapeBytea((const unsigned char *)v, &n);
    if (raw == NULL) {
      lua_pushlstring(L, v, (size_t)len);
      return;
    }
    /* Copied before anything may raise, then freed. */
    lua_pushlstring(L, (const char *)raw, n);
    lc__pq.PQfreemem(raw);
  }
}

static void push_value(lua_State *L, PGresult *res, int row, int col,
                       Oid type) {
  const char *v;
  int len;
  if (lc__pq.PQgetisnull(res, row, col)) {
    lua_pushlightuserdata(L, NULL); /* pg.null, which is cjson.null */
    return;
  }
  v = lc__pq.PQgetvalue(res, row, col);
  len = lc__pq.PQgetlength(res, row, col);
  switch (type) {
  case OID_BOOL:
    lua_pushboolean(L, v[0] == 't');
    break;
  case OID_INT2:
  case OID_INT4:
  case OID_OID:
    lua_pushnumber(L, (lua_Number)strtoll(v, NULL, 10));
    break;
  case OID_INT8: {
    long long n = strtoll(v, NULL, 10);
    if (n >= -EXACT_MAX && n <= EXACT_MAX)
      lua_pushnumber(L, (lua_Number)n);
    else
      lua_pushlstring(L, v, (size_t)len);
    break;
  }
  case OID_FLOAT4:
  case OID_FLOAT8:
    /* strtod reads NaN, Infinity and -Infinity as PostgreSQL writes them. */
    lua_pushnumber(L, (lua_Number)strtod(v, NULL));
    break;
  case OID_BYTEA:
    push_bytea(L, v, len);
    break;
  default:
    lua_pushlstring(L, v, (size_t)len);
  }
}

/* Pushes {name, dataTypeID, tableID, columnID} for every column. */
static void push_fields(lua_State *L, PGresult *res, int nf) {
  int c;
  lua_createtable(L, nf, 0);
  for (c = 0; c < nf; c++) {
    lua_createtable(L, 0, 4);
    lua_pushstring(L, lc__pq.PQfname(res, c));
    lua_setfield(L, -2, "name");
    lua_pushnumber(L, (lua_Number)lc__pq.PQftype(res, c));
    lua_setfield(L, -2, "dataTypeID");
    lua_pushnumber(L, (lua_Number)lc__pq.PQftable(res, c));
    lua_setfield(L, -2, "tableID");
    lua_pushnumber(L, (lua_Number)lc__pq.PQftablecol(res, c));
    lua_setfield(L, -2, "columnID");
    lua_rawseti(L, -2, c + 1);
  }
}

/* The command tag's first word and its count (nil when it has none). */
static void push_command(lua_State *L, PGresult *res) {
  const char *tag = lc__pq.PQcmdStatus(res);
  const char *n = lc__pq.PQcmdTuples(res);
  size_t len = strcspn(tag, " ");
  if (len > 0) {
    lua_pushlstring(L, tag, len);
    lua_setfield(L, -2, "command");
  }
  if (n != NULL && *n != '\0') {
    lua_pushnumber(L, (lua_Number)strtoll(n, NULL, 10));
    lua_setfield(L, -2, "rowCount");
  }
}

static void push_rows(lua_State *L, PGresult *res, int nf) {
  int nt = lc__pq.PQntuples(res), r, c, base;
  luaL_checkstack(L, nf + 4, "too many columns");
  /* The column names once, then a row table per row. */
  base = lua_gettop(L);
  for (c = 0; c < nf; c++)
    lua_pushstring(L, lc__pq.PQfname(res, c));
  lua_createtable(L, nt, 0);
  for (r = 0; r < nt; r++) {
    lua_createtable(L, 0, nf);
    for (c = 0; c < nf; c++) {
      lua_pushvalue(L, base + 1 + c);
      push_value(L, res, r, c, lc__pq.PQftype(res, c));
      lua_rawset(L, -3);
    }
    lua_rawseti(L, -2, r + 1);
  }
  lua_replace(L, base + 1);
  lua_settop(L, base + 1);
}

/* PQresultErrorField codes and Node pg's names for them. */
static const struct {
  int code;
  const char *name;
} error_fields[] = {{PG_DIAG_SEVERITY_NONLOCALIZED, "severity"},
                    {PG_DIAG_SQLSTATE, "code"},
                    {PG_DIAG_MESSAGE_PRIMARY, "message"},
                    {PG_DIAG_MESSAGE_DETAIL, "detail"},
                    {PG_DIAG_MESSAGE_HINT, "hint"},
                    {PG_DIAG_STATEMENT_POSITION, "position"},
                    {PG_DIAG_INTERNAL_POSITION, "internalPosition"},
                    {PG_DIAG_INTERNAL_QUERY, "internalQuery"},
                    {PG_DIAG_CONTEXT, "where"},
                    {PG_DIAG_SCHEMA_NAME, "schema"},
                    {PG_DIAG_TABLE_NAME, "table"},
                    {PG_DIAG_COLUMN_NAME, "column"},
                    {PG_DIAG_DATATYPE_NAME, "dataType"},
                    {PG_DIAG_CONSTRAINT_NAME, "constraint"},
                    {PG_DIAG_SOURCE_FILE, "file"},
                    {PG_DIAG_SOURCE_LINE, "line"},
                    {PG_DIAG_SOURCE_FUNCTION, "routine"},
                    {0, NULL}};

static void push_error(lua_State *L, PGresult *res) {
  int i;
  lua_createtable(L, 0, 6);
  for (i = 0; error_fields[i].name != NULL; i++) {
    const char *v = lc__pq.PQresultErrorField(res, error_fields[i].code);
    if (v != NULL) {
      lua_pushstring(L, v);
      lua_setfield(L, -2, error_fields[i].name);
    }
  }
  lua_getfield(L, -1, "message");
  if (lua_isnil(L, -1)) {
    /* An error of libpq's own (the connection lost): its message. */
    const char *m = lc__pq.PQresultErrorMessage(res);
    size_t len = strlen(m);
    while (len > 0 && (m[len - 1] == '\n' || m[len - 1] == ' '))
      len--;
    lua_pushlstring(L, m, len);
    lua_setfield(L, -3, "message");
  }
  lua_pop(L, 1);
}

lc_pq_notice *lc__pq_notice_new(const PGresult *res) {
  size_t size = 0, len;
  int i, n = 0;
  lc_pq_notice *no;
  char *p;
  for (i = 0; error_fields[i].name != NULL && i < LC_PQ_NOTICE_FIELDS; i++) {
    const char *v = lc__pq.PQresultErrorField(res, error_fields[i].code);
    if (v != NULL)
      size += strlen(v) + 1;
  }
  no = (lc_pq_notice *)malloc(sizeof(*no) + size);
  if (no == NULL)
    return NULL;
  no->next = NULL;
  p = no->text;
  for (i = 0; error_fields[i].name != NULL && i < LC_PQ_NOTICE_FIELDS; i++) {
    const char *v = lc__pq.PQresultErrorField(res, error_fields[i].code);
    if (v == NULL)
      continue;
    len = strlen(v) + 1;
    memcpy(p, v, len);
    no->names[n] = error_fields[i].name;
    no->values[n] = p;
    n++;
    p += len;
  }
  no->n = n;
  return no;
}

void lc__pq_push_notice(lua_State *L, const lc_pq_notice *n) {
  int i;
  lua_createtable(L, 0, n->n + 1);
  for (i = 0; i < n->n; i++) {
    lua_pushstring(L, n->values[i]);
    lua_setfield(L, -2, n->names[i]);
  }
  lua_pushliteral(L, "notice");
  lua_setfield(L, -2, "name");
}

int lc__pq_push_result(lua_State *L, PGresult *res) {
  ExecStatusType st = lc__pq.PQresultStatus(res);
  int nf;
  switch (st) {
  case PGRES_TUPLES_OK:
  case PGRES_COMMAND_OK:
  case PGRES_EMPTY_QUERY:
  case PGRES_SINGLE_TUPLE:
    nf = lc__pq.PQnfields(res);
    lua_createtable(L, 0, 4);
    push_command(L, res);
    push_rows(L, res, nf);
    lua_setfield(L, -2, "rows");
    push_fields(L, res, nf);
    lua_setfield(L, -2, "fields");
    return 1;
  case PGRES_COPY_IN:
  case PGRES_COPY_OUT:
    /* The statement waits for COPY's data to be sent or read
     * (conn:put_copy, conn:get_copy): false and {copy = 'in' | 'out'}. */
    lua_pushboolean(L, 0);
    lua_createtable(L, 0, 1);
    if (st == PGRES_COPY_IN)
      lua_pushliteral(L, "in");
    else
      lua_pushliteral(L, "out");
    lua_setfield(L, -2, "copy");
    return 2;
  case PGRES_COPY_BOTH:
    lua_pushboolean(L, 0);
    lua_createtable(L, 0, 2);
    lua_pushliteral(L, "COPY BOTH (replication) is not supported by this "
                       "client");
    lua_setfield(L, -2, "message");
    lua_pushliteral(L, "0A000");
    lua_setfield(L, -2, "code");
    /* The connection is left in COPY mode: the Lua side drops it. */
    lua_pushboolean(L, 1);
    lua_setfield(L, -2, "fatal");
    return 2;
  default:
    lua_pushboolean(L, 0);
    push_error(L, res);
    return 2;
  }
}
