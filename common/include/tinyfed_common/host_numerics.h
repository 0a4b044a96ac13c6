// Host-side conversions between real numbers and tinyfed's wire formats.
//
// The server, the agent and the tests use doubles where a device never does:
// to pick a feature quantization from data, to state a learning rate, to
// read a model's weights as real numbers. These functions are the only
// place such conversions happen, so every host component rounds the same
// way. Pure functions: safe for concurrent use.
#ifndef TINYFED_COMMON_HOST_NUMERICS_H_
#define TINYFED_COMMON_HOST_NUMERICS_H_

#include <cstddef>
#include <cstdint>
#include <optional>

namespace tinyfed {

// A positive scale as a Q31 multiplier in [2^30, 2^31) and a shift:
// scale = multiplier * 2^(shift - 31). The wire form of FeatureQuantization.
struct FixedScale {
  int32_t multiplier = 0;
  int32_t shift = 0;
};

// The FixedScale nearest to `scale`, or nullopt when scale is not finite,
// not positive, or outside what the wire allows (shift in [-31, 7]).
std::optional<FixedScale> ToFixedScale(double scale);

// The real value of a FixedScale.
double FromFixedScale(const FixedScale& scale);

// Affine int8 quantization of one real feature: round-half-away-from-zero of
// value / scale, plus zero_point, clamped to [-128, 127].
int8_t QuantizeFeature(double value, double scale, int32_t zero_point);

// A non-negative real as Q16.16, rounded to nearest and clamped to
// [0, UINT32_MAX].
uint32_t ToQ16(double value);

// A real weight in the int16 master format with `frac_bits` fraction bits,
// rounded to nearest and saturated.
int16_t ToMaster(double value, uint32_t frac_bits);
double FromMaster(int32_t value, uint32_t frac_bits);

// The CRC-32 of tinyfed_common/crc32.h, bit for bit, computed with
// slicing-by-8 tables (8 KB) for hosts that check thousands of updates per
// second; devices keep the 64-byte nibble table.
uint32_t Crc32Update(uint32_t crc, const void* data, size_t len);

}  // namespace tinyfed

#endif  // TINYFED_COMMON_HOST_NUMERICS_H_
