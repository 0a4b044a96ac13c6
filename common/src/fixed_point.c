#include "tinyfed_common/fixed_point.h"

#include <stddef.h>

/* The code below relies on signed right shifts being arithmetic, as on every
 * GCC and Clang target; refuse to build where they are not. */
typedef char tinyfed_requires_arithmetic_shift[((-1) >> 1) == -1 ? 1 : -1];

static uint32_t count_leading_zeros_u64(uint64_t x) {
  uint32_t n = 0;
  if (x == 0u) return 64u;
  while ((x & 0x8000000000000000ull) == 0u) {
    x <<= 1;
    ++n;
  }
  return n;
}

int tinyfed_scale_from_ratio(uint64_t num, uint64_t den, int32_t exp2,
                             tinyfed_scale_t *out) {
  if (num == 0u || num >= (1ull << 63) || den == 0u || den >= (1ull << 32)) {
    return -1;
  }
  /* Lift num to 63 significant bits before dividing: with den < 2^32 the
   * quotient then keeps at least 31 bits. */
  uint32_t lz = count_leading_zeros_u64(num);
  uint64_t n = num << (lz - 1u);
  int32_t e = exp2 - (int32_t)(lz - 1u);
  uint64_t r = 0u;
  uint64_t q = tinyfed_udiv64(n, den, &r); /* in (2^30, 2^63) */
  uint32_t shift = 0u;
  while ((q >> shift) >= (1ull << 31)) ++shift;
  uint64_t mant;
  if (shift > 0u) {
    /* The dropped remainder r / den < 1 cannot change which side of the
     * half-way point q's low bits are on, so rounding q alone is exact. */
    mant = (q + (1ull << (shift - 1u))) >> shift;
  } else {
    mant = q + ((r >= den - r) ? 1u : 0u);
  }
  e += (int32_t)shift;
  if (mant >= (1ull << 31)) { /* rounding carried into a new bit */
    mant >>= 1;
    ++e;
  }
  if (e < -1000 || e > 1000) return -1;
  out->mantissa = (uint32_t)mant;
  out->exponent = e;
  return 0;
}

uint64_t tinyfed_udiv64(uint64_t num, uint64_t den, uint64_t *remainder) {
  uint64_t quotient = 0u, rem = 0u;
  int bit;
  if (den == 0u) {
    if (remainder != NULL) *remainder = num;
    return 0u;
  }
  for (bit = 63; bit >= 0; --bit) {
    /* rem < den. Shifting may carry a bit out (only when den >= 2^63); the
     * true value then exceeds den and the wrapping subtraction below still
     * leaves the exact remainder. */
    const uint64_t top = rem >> 63;
    rem = (rem << 1) | ((num >> bit) & 1u);
    if (top != 0u || rem >= den) {
      rem -= den;
      quotient |= (uint64_t)1 << bit;
    }
  }
  if (remainder != NULL) *remainder = rem;
  return quotient;
}

int16_t tinyfed_saturate_s16(int64_t x) {
  if (x > INT16_MAX) return INT16_MAX;
  if (x < INT16_MIN) return INT16_MIN;
  return (int16_t)x;
}

int32_t tinyfed_clamp_s32(int64_t x, int32_t lo, int32_t hi) {
  if (x > hi) return hi;
  if (x < lo) return lo;
  return (int32_t)x;
}

int64_t tinyfed_round_shift_s64(int64_t x, uint32_t k) {
  if (k == 0u) return x;
  return (x + ((int64_t)1 << (k - 1u))) >> k;
}

int64_t tinyfed_stochastic_shift_s64(int64_t x, uint32_t k, uint32_t random) {
  int64_t r;
  if (k == 0u) return x;
  if (k <= 32u) {
    r = (int64_t)(random >> (32u - k));
  } else {
    r = (int64_t)((uint64_t)random << (k - 32u));
  }
  return (x + r) >> k;
}

/* 2^(i/32) for i = 0..31 in Q30. */
static const uint32_t kExp2TableQ30[32] = {
    1073741824u, 1097253708u, 1121280436u, 1145833280u, 1170923762u,
    1196563654u, 1222764986u, 1249540052u, 1276901417u, 1304861917u,
    1333434672u, 1362633090u, 1392470869u, 1422962010u, 1454120821u,
    1485961921u, 1518500250u, 1551751076u, 1585730000u, 1620452965u,
    1655936265u, 1692196547u, 1729250827u, 1767116489u, 1805811301u,
    1845353420u, 1885761398u, 1927054196u, 1969251188u, 2012372174u,
    2056437387u, 2101467502u,
};

#define TINYFED_LN2_Q30 744261118u        /* ln(2) * 2^30 */
#define TINYFED_LOG2E_Q30 1549082005u     /* log2(e) * 2^30 */

uint32_t tinyfed_exp_neg_q16(int32_t x_q16) {
  if (x_q16 >= 0) return TINYFED_Q24_ONE;
  if (x_q16 < -17 * TINYFED_Q16_ONE) return 0u;
  /* t = x * log2(e) in Q32 (|x * log2e_q30| < 2^51), floor; t in
   * [-24.6, 0). Q16 would cost up to 177 Q24 steps near exp(0). */
  int64_t t = ((int64_t)x_q16 * (int64_t)TINYFED_LOG2E_Q30) >> 14;
  int64_t integer = t >> 32;                                   /* <= -1 */
  uint64_t frac = (uint64_t)(t - integer * 4294967296LL);     /* [0, 2^32) */
  uint32_t index = (uint32_t)(frac >> 27);                     /* top 5 bits */
  uint64_t rest = frac & 0x7FFFFFFu;                           /* 27 bits, < 1/32 */
  /* y = rest * ln2 in Q30; y < 0.0217. */
  uint64_t y = (rest * TINYFED_LN2_Q30) >> 32;
  uint64_t y2 = (y * y) >> 30;
  uint64_t y3 = (y2 * y) >> 30;
  /* 2^rest = e^y ~ 1 + y + y^2/2 + y^3/6, truncation error < 1e-8. */
  uint64_t poly = (1ull << 30) + y + (y2 >> 1) + (y3 * 178956971u >> 30);
  uint64_t v = ((uint64_t)kExp2TableQ30[index] * poly) >> 30; /* Q30 */
  uint32_t shift = (uint32_t)(6 - integer); /* Q30 -> Q24, times 2^integer */
  if (shift >= 40u) return 0u;
  return (uint32_t)((v + (1ull << (shift - 1u))) >> shift);
}

int32_t tinyfed_log2_u32_q16(uint32_t x) {
  if (x == 0u) return 0;
  uint32_t msb = 31u;
  while ((x & 0x80000000u) == 0u) {
    x <<= 1;
    --msb;
  }
  /* x is now the mantissa in [1, 2) as Q31; find 16 fraction bits. */
  uint64_t m = x;
  int32_t result = (int32_t)(msb << 16);
  int32_t bit;
  for (bit = 15; bit >= 0; --bit) {
    m = (m * m) >> 31;
    if (m >= (1ull << 32)) {
      m >>= 1;
      result |= (int32_t)1 << bit;
    }
  }
  return result;
}
