/* Fixed-point arithmetic that devices and the server agree on bit for bit.
 *
 * Formats used across tinyfed (Qm.n: m integer bits including sign, n
 * fraction bits):
 *   - master weights and bias: int16, Q(15-f).f with f = weight_frac_bits
 *   - logits and their differences: int32, Q16.16
 *   - softmax probabilities and errors: int32, Q15 (1.0 = 32768)
 *   - exponentials: uint32, Q8.24 (1.0 = 2^24)
 *   - losses: uint32, Q16.16
 *   - scales: tinyfed_scale_t, a Q31 mantissa and a power-of-two exponent
 *
 * Everything is integer-only (no float, no division in the per-sample
 * path), uses no memory and no state: safe from any thread or interrupt.
 * Signed right shifts are arithmetic (floor); the build checks this.
 */
#ifndef TINYFED_COMMON_FIXED_POINT_H_
#define TINYFED_COMMON_FIXED_POINT_H_

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define TINYFED_Q15_ONE 32768
#define TINYFED_Q16_ONE 65536
#define TINYFED_Q24_ONE 16777216u

/* A positive real number mantissa * 2^exponent, with mantissa normalised to
 * [2^30, 2^31) so it keeps 31 significant bits (a Q31 value in [0.5, 1)
 * times 2^(exponent + 31), the convention of CMSIS-NN's multiplier/shift). */
typedef struct tinyfed_scale {
  uint32_t mantissa;
  int32_t exponent;
} tinyfed_scale_t;

/* Sets *out to (num / den) * 2^exp2, rounded to nearest in the mantissa.
 * Returns 0 on success, -1 when num is outside [1, 2^63), den outside
 * [1, 2^32), or the exponent would leave [-1000, 1000]. */
int tinyfed_scale_from_ratio(uint64_t num, uint64_t den, int32_t exp2,
                             tinyfed_scale_t *out);

/* num / den and num % den for den >= 1 (den = 0 gives 0 and num), by
 * shift-and-subtract: a few hundred instructions, but no 64-bit division
 * routine from the compiler's runtime (700 bytes of flash on a Cortex-M),
 * for the few divisions per task that need 64 bits. */
uint64_t tinyfed_udiv64(uint64_t num, uint64_t den, uint64_t *remainder);

/* Leading zero bits of x, for x != 0: one CLZ on a Cortex-M. */
static inline uint32_t tinyfed_leading_zeros_u32(uint32_t x) {
#if defined(__GNUC__) || defined(__clang__)
  return (uint32_t)__builtin_clz(x);
#else
  uint32_t n = 0;
  while ((x & 0x80000000u) == 0u) {
    x <<= 1;
    ++n;
  }
  return n;
#endif
}

/* num / den when the quotient fits 32 bits, that is num / 2^32 < den; sets
 * *remainder (if not NULL) to num % den. 32 shift-subtract steps on the
 * remainder word: the division the device needs (step scales and the mean
 * loss), without tinyfed_udiv64's 64 steps on 64-bit words.
 * REQUIRES: den >= 1 and (num >> 32) < den. */
uint32_t tinyfed_udiv64_32(uint64_t num, uint32_t den, uint32_t *remainder);

/* Clamps to [INT16_MIN, INT16_MAX]. */
int16_t tinyfed_saturate_s16(int64_t x);

/* Clamps to [lo, hi]. REQUIRES lo <= hi. */
int32_t tinyfed_clamp_s32(int64_t x, int32_t lo, int32_t hi);

/* x / 2^k rounded to nearest, ties toward +infinity. k in [0, 62]; the
 * caller keeps |x| < 2^62. */
int64_t tinyfed_round_shift_s64(int64_t x, uint32_t k);

/* x / 2^k rounded stochastically: floor((x + r) / 2^k) with r drawn from the
 * top bits of `random` (uniform in [0, 2^k) for k <= 32, the top 32 of k
 * bits beyond that). The result's expectation over a uniform `random` is
 * x / 2^k to within 2^-32. k in [0, 62]; the caller keeps |x| < 2^62. */
int64_t tinyfed_stochastic_shift_s64(int64_t x, uint32_t k, uint32_t random);

/* exp(x) for x <= 0 given in Q16.16, returned in Q8.24 (exp(0) = 2^24).
 * Inputs below -17.0 give 0 (the true value is under 0.7 Q24 steps).
 * Absolute error at most 2 Q24 steps (x * log2(e) in Q32, a table of
 * 2^(i/32), then a cubic for the remaining 27 fraction bits). Positive
 * inputs are treated as 0. */
uint32_t tinyfed_exp_neg_q16(int32_t x_q16);

/* log2(x) for x >= 1 as Q16.16 (log2(1) = 0), truncated toward zero; bits
 * found by repeated squaring, error below 2^-15. x = 0 returns 0. */
int32_t tinyfed_log2_u32_q16(uint32_t x);

#ifdef __cplusplus
}
#endif

#endif /* TINYFED_COMMON_FIXED_POINT_H_ */
