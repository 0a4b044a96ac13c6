/* int8 quantization of model deltas: the reference both sides share.
 *
 * A device sends the change of each class row (its weights and its bias) as
 * int8 values q with one integer scale s per row, in steps of the master
 * format (see fixed_point.h):
 *
 *     delta ~= q * s,   q in [-127, 127],   s >= 1
 *
 * s is the smallest integer with max|delta| <= 127 * s, so a row whose
 * changes are all within +-127 steps travels exactly (s = 1). Rounding is
 * stochastic, so E[q * s] = delta: averaging many devices' updates does not
 * accumulate a rounding bias. The error of one value is below s.
 *
 * Pure functions: safe from any thread or interrupt.
 */
#ifndef TINYFED_COMMON_QUANTIZE_H_
#define TINYFED_COMMON_QUANTIZE_H_

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define TINYFED_S8_QUANT_MAX 127

/* Largest row scale a valid update can carry: the widest delta between two
 * int16 values is 65535 steps, and ceil(65535 / 127) = 517. */
#define TINYFED_ROW_SCALE_MAX 517u

/* Scale for a row whose largest |delta| is max_abs (in master steps):
 * max(1, ceil(max_abs / 127)). REQUIRES max_abs <= 65535. */
uint32_t tinyfed_row_scale_s8(uint32_t max_abs);

/* Quantizes `delta` (master steps, |delta| <= 127 * scale) to int8 with
 * stochastic rounding: floor(delta / scale) plus one with probability
 * equal to the remainder / scale, decided by `random` (a uniform 32-bit
 * draw). Result in [-127, 127]; |result * scale - delta| < scale.
 * REQUIRES 1 <= scale <= TINYFED_ROW_SCALE_MAX. */
int8_t tinyfed_quantize_stochastic_s8(int32_t delta, uint32_t scale,
                                      uint32_t random);

/* q * scale: the delta in master steps. Exact (|result| <= 65659). */
int32_t tinyfed_dequantize_s8(int8_t q, uint32_t scale);

#ifdef __cplusplus
}
#endif

#endif /* TINYFED_COMMON_QUANTIZE_H_ */
