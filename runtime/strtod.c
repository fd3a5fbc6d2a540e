/* strtod for lua-cjson's decoder: the binary is linked with
 * -Wl,--wrap=strtod (cmake/Dependencies.cmake), so every number cjson
 * decodes comes here first.
 *
 * glibc's strtod takes ~500 instructions for a number like 39.99 (it
 * works in multi-precision to round correctly in every case); a JSON API
 * decodes dozens a request. Most numbers a JSON document holds are short
 * decimals, and for those one floating-point operation is already
 * correctly rounded (Clinger's fast path): a decimal mantissa M < 2^53 and
 * a power of ten 10^k with k <= 22 are both exact doubles, so M * 10^k and
 * M / 10^k are each one IEEE operation, rounded once, to nearest. The
 * result is the very double glibc gives. Anything else (more digits, a
 * larger exponent, hex, inf, nan, leading space) goes to glibc unchanged.
 * x86-64 and aarch64 evaluate doubles in double precision
 * (FLT_EVAL_METHOD 0), which the fast path needs; elsewhere it is off. */
#include <float.h>
#include <stdint.h>
#include <stdlib.h>

double __real_strtod(const char *s, char **end);
double __wrap_strtod(const char *s, char **end);

#if defined(FLT_EVAL_METHOD) && FLT_EVAL_METHOD == 0
static const double pow10[] = {1e0,  1e1,  1e2,  1e3,  1e4,  1e5,
                               1e6,  1e7,  1e8,  1e9,  1e10, 1e11,
                               1e12, 1e13, 1e14, 1e15, 1e16, 1e17,
                               1e18, 1e19, 1e20, 1e21, 1e22};

#define IS_DIGIT(c) ((unsigned)((c) - '0') < 10)

double __wrap_strtod(const char *s, char **end) {
  const char *p = s;
  uint64_t m = 0;
  int digits = 0, frac = 0, exp = 0, any = 0;
  int neg = 0;
  double v;

  if (*p == '-' || *p == '+')
    neg = *p++ == '-';
  /* Leading zeros count for nothing (and "0x" is hex: glibc's). */
  while (*p == '0')
    p++, any = 1;
  if (*p == 'x' || *p == 'X')
    return __real_strtod(s, end);
  for (; IS_DIGIT(*p); p++, any = 1)
    if (++digits <= 19)
      m = m * 10 + (uint64_t)(*p - '0');
  if (*p == '.') {
    if (!IS_DIGIT(p[1]))
      return __real_strtod(s, end); /* "5.", ".": glibc's. */
    p++;
    if (m == 0)
      while (*p == '0')
        p++, frac++, any = 1;
    for (; IS_DIGIT(*p); p++, any = 1) {
      if (++digits <= 19)
        m = m * 10 + (uint64_t)(*p - '0');
      frac++;
    }
  }
  if (!any || digits > 19)
    return __real_strtod(s, end);
  if (*p == 'e' || *p == 'E') {
    const char *q = p + 1;
    int eneg = 0, edigits = 0;
    if (*q == '-' || *q == '+')
      eneg = *q++ == '-';
    if (!IS_DIGIT(*q))
      return __real_strtod(s, end); /* "1e", "1e+": glibc says where. */
    for (; IS_DIGIT(*q); q++)
      if (++edigits <= 4)
        exp = exp * 10 + (*q - '0');
    if (edigits > 4)
      return __real_strtod(s, end);
    if (eneg)
      exp = -exp;
    p = q;
  }
  exp -= frac;
  if (m > ((uint64_t)1 << 53) || exp < -22 || exp > 22)
    return __real_strtod(s, end);
  v = (double)m;
  if (exp < 0)
    v /= pow10[-exp];
  else
    v *= pow10[exp];
  if (end)
    *end = (char *)p;
  return neg ? -v : v;
}
#else
double __wrap_strtod(const char *s, char **end) {
  return __real_strtod(s, end);
}
#endif
