#include "tinyfed_common/quantize.h"

uint32_t tinyfed_row_scale_s8(uint32_t max_abs) {
  if (max_abs <= TINYFED_S8_QUANT_MAX) return 1u;
  return (max_abs + (TINYFED_S8_QUANT_MAX - 1u)) / TINYFED_S8_QUANT_MAX;
}

int8_t tinyfed_quantize_stochastic_s8(int32_t delta, uint32_t scale,
                                      uint32_t random) {
  int32_t s = (int32_t)scale;
  /* Floor division: C truncates toward zero, so step down for negatives. */
  int32_t q = delta / s;
  int32_t rem = delta - q * s;
  if (rem < 0) {
    q -= 1;
    rem += s;
  }
  /* u uniform in [0, scale): round up with probability rem / scale. */
  uint32_t u = (uint32_t)(((uint64_t)random * scale) >> 32);
  if (u < (uint32_t)rem) q += 1;
  if (q > TINYFED_S8_QUANT_MAX) q = TINYFED_S8_QUANT_MAX;
  if (q < -TINYFED_S8_QUANT_MAX) q = -TINYFED_S8_QUANT_MAX;
  return (int8_t)q;
}

int32_t tinyfed_dequantize_s8(int8_t q, uint32_t scale) {
  return (int32_t)q * (int32_t)scale;
}
