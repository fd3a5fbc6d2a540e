/* Numbers for lua-cjson, both ways. The binary is linked with
 * -Wl,--wrap=strtod,--wrap=fpconv_g_fmt (CMakeLists.txt), so every number
 * cjson decodes or encodes comes here first.
 *
 * glibc's strtod takes ~500 instructions for a number like 39.99 (it
 * works in multi-precision to round correctly in every case), and cjson's
 * snprintf("%.14g") ~1,800 to print one; a JSON API does dozens of each a
 * request. Most numbers in JSON are short decimals, and for those one
 * floating-point operation is already correctly rounded (Clinger's fast
 * path): a decimal mantissa M <= 2^53 and a power of ten 10^k with
 * k <= 22 are both exact doubles, so M * 10^k and M / 10^k are each one
 * IEEE operation, rounded once, to nearest. Reading, that is the very
 * double glibc gives; writing, it proves that a short decimal reads back
 * to the number, and then it is the one "%.14g" prints (below). Anything
 * else goes to glibc unchanged. The fast paths need doubles evaluated in
 * double precision (FLT_EVAL_METHOD 0: x86-64, aarch64); elsewhere they
 * are off. */
#include <float.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>

double __real_strtod(const char *s, char **end);
double __wrap_strtod(const char *s, char **end);
int __real_fpconv_g_fmt(char *out, double num, int precision);
int __wrap_fpconv_g_fmt(char *out, double num, int precision);

#if defined(FLT_EVAL_METHOD) && FLT_EVAL_METHOD == 0
static const double pow10[] = {1e0,  1e1,  1e2,  1e3,  1e4,  1e5,
                               1e6,  1e7,  1e8,  1e9,  1e10, 1e11,
                               1e12, 1e13, 1e14, 1e15, 1e16, 1e17,
                               1e18, 1e19, 1e20, 1e21, 1e22};
#define TWO53 9007199254740992.0

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

/* fpconv_g_fmt(out, num, precision) -> the length of num written as
 * "%.<precision>g" would (cjson's precision is 1 to 14).
 *
 * The fast path looks for the fewest decimals d that make M = num * 10^d
 * a whole number of at most `precision` digits with M / 10^d == num
 * exactly (one correctly rounded division: M's decimal reads back to
 * num). Such a decimal is what "%.Pg" prints, trailing zeros dropped:
 * "%.Pg" rounds num's exact value to the nearest P-digit decimal, and
 * P-digit decimals lie at least 10^-P apart relative to num, more than a
 * double's ulp (2^-52 relative) for P <= 15, so at most one of them is
 * within half an ulp of num, and M's is. Fixed notation is what "%g"
 * picks for it: 1e-4 <= |num| < 10^P. Zero (and -0), numbers outside
 * that range and those that need more digits go to snprintf. */
int __wrap_fpconv_g_fmt(char *out, double num, int precision) {
  double a = num < 0 ? -num : num;
  double limit;
  int d;

  if (precision < 1 || precision > 15 || !(a >= 1e-4))
    return __real_fpconv_g_fmt(out, num, precision);
  limit = pow10[precision];
  if (a >= limit)
    return __real_fpconv_g_fmt(out, num, precision);
  for (d = 0; d <= 22; d++) {
    double r = a * pow10[d];
    double m;
    if (r >= limit)
      break;
    m = floor(r + 0.5);
    if (m >= limit)
      break;
    if (m / pow10[d] == a) {
      char digits[24];
      uint64_t u = (uint64_t)m;
      int n = 0, len = 0, i;
      do {
        digits[n++] = (char)('0' + u % 10);
        u /= 10;
      } while (u);
      while (n <= d) /* 0.05: M = 5, d = 2 -> "005" */
        digits[n++] = '0';
      if (num < 0)
        out[len++] = '-';
      for (i = n - 1; i >= 0; i--) {
        out[len++] = digits[i];
        if (i == d && d > 0)
          out[len++] = '.';
      }
      out[len] = '\0';
      return len;
    }
  }
  return __real_fpconv_g_fmt(out, num, precision);
}
#else
double __wrap_strtod(const char *s, char **end) {
  return __real_strtod(s, end);
}
int __wrap_fpconv_g_fmt(char *out, double num, int precision) {
  return __real_fpconv_g_fmt(out, num, precision);
}
#endif
