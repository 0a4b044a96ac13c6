#include "tinyfed_common/fixed_point.h"

#include <stddef.h>

/* The code below relies on signed right shifts being arithmetic, as on every
 * GCC and Clang target; refuse to build where they are not. */
typedef char tinyfed_requires_arithmetic_shift[((-1) >> 1) == -1 ? 1 : -1];

int tinyfed_scale_from_ratio(uint64_t num, uint64_t den, int32_t exp2,
                             tinyfed_scale_t *out) {
  if (num == 0u || num >= (1ull << 63) || den == 0u || den >= (1ull << 32)) {
    return -1;
  }
  /* Lift num to [2^62, 2^63) and den to [2^31, 2^32): the quotient then
   * lies in [2^30, 2^32), the mantissa's 31 bits or one more. */
  const uint32_t high = (uint32_t)(num >> 32);
  const uint32_t lift =
      (high != 0u) ? tinyfed_leading_zeros_u32(high) - 1u
                   : tinyfed_leading_zeros_u32((uint32_t)num) + 31u;
  const uint32_t den_lift = tinyfed_leading_zeros_u32((uint32_t)den);
  const uint32_t d = (uint32_t)den << den_lift;
  uint32_t r = 0u;
  /* The dividend's high word is below 2^31 <= d, as udiv64_32 requires. */
  uint32_t q = tinyfed_udiv64_32(num << lift, d, &r);
  int32_t e = exp2 - (int32_t)lift + (int32_t)den_lift;
  if (q >= (1u << 31)) {
    /* One bit too many: round it off, half up. The dropped remainder
     * r / d < 1 cannot change which side of the half-way point q's low bit
     * is on, so rounding q alone is exact. */
    q = (q >> 1) + (q & 1u);
    ++e;
  } else if (r >= d - r) {
    ++q; /* round to nearest, ties up */
  }
  if (q >= (1u << 31)) { /* rounding carried into a new bit */
    q >>= 1;
    ++e;
  }
  if (e < -1000 || e > 1000) return -1;
  out->mantissa = q;
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

uint32_t tinyfed_udiv64_32(uint64_t num, uint32_t den, uint32_t *remainder) {
  uint32_t rem = (uint32_t)(num >> 32), low = (uint32_t)num, quotient = 0u;
  int bit;
  for (bit = 0; bit < 32; ++bit) {
    /* rem < den. Shifting may carry a bit out (only when den >= 2^31); the
     * true value then exceeds den and the wrapping subtraction below still
     * leaves the exact remainder. */
    const uint32_t top = rem >> 31;
    rem = (rem << 1) | (low >> 31);
    low <<= 1;
    quotient <<= 1;
    if (top != 0u || rem >= den) {
      rem -= den;
      quotient |= 1u;
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

/* High word of a * b: one UMULL on a Cortex-M. */
static uint32_t mul_high_u32(uint32_t a, uint32_t b) {
  return (uint32_t)(((uint64_t)a * b) >> 32);
}

uint32_t tinyfed_exp_neg_q16(int32_t x_q16) {
  if (x_q16 >= 0) return TINYFED_Q24_ONE;
  if (x_q16 < -17 * TINYFED_Q16_ONE) return 0u;
  /* t = x * log2(e) in Q32 (|x * log2e_q30| < 2^51), floor; t in
   * [-24.6, 0). Q16 would cost up to 177 Q24 steps near exp(0). Its low
   * word is the fraction: top 5 bits index the table, 27 bits remain. */
  const int64_t t = ((int64_t)x_q16 * (int64_t)TINYFED_LOG2E_Q30) >> 14;
  const uint32_t frac = (uint32_t)t;
  /* Q30 -> Q24, times 2^integer part: a shift in [7, 31]. */
  const uint32_t shift = (uint32_t)(6 - (int32_t)(t >> 32));
  /* y = rest * ln2 in Q30; y < 0.0217 < 2^-5, so 4y fits 32 bits and
   * (a * 4y) >> 32 is exactly (a * y) >> 30: every product below is the
   * high word of one 32x32 multiply. */
  const uint32_t y = mul_high_u32(frac & 0x7FFFFFFu, TINYFED_LN2_Q30);
  const uint32_t y2 = mul_high_u32(y, y << 2);  /* y^2 in Q30 */
  const uint32_t y3 = mul_high_u32(y2, y << 2); /* y^3 in Q30 */
  /* 2^rest = e^y ~ 1 + y + y^2/2 + y^3/6, truncation error < 1e-8; 1/6 is
   * 178956971 in Q30, times 4 still below 2^32. */
  const uint32_t poly =
      (1u << 30) + y + (y2 >> 1) + mul_high_u32(y3, 178956971u << 2);
  /* The table value (< 2^31) times poly (< 2^31), in Q30: both doubled so
   * the high word is the product >> 30. v <= 2^31, so v plus half of 2^31
   * still fits 32 bits. */
  const uint32_t v = mul_high_u32(kExp2TableQ30[frac >> 27] << 1, poly << 1);
  return (v + (1u << (shift - 1u))) >> shift;
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
