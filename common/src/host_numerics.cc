#include "tinyfed_common/host_numerics.h"

#include <cmath>
#include <limits>

namespace tinyfed {

std::optional<FixedScale> ToFixedScale(double scale) {
  if (!std::isfinite(scale) || scale <= 0.0) return std::nullopt;
  int exponent = 0;
  const double mantissa = std::frexp(scale, &exponent);  // [0.5, 1)
  int64_t multiplier = std::llround(std::ldexp(mantissa, 31));
  if (multiplier == (int64_t{1} << 31)) {  // rounded up to 1.0
    multiplier >>= 1;
    ++exponent;
  }
  if (exponent < -31 || exponent > 7) return std::nullopt;
  return FixedScale{static_cast<int32_t>(multiplier), exponent};
}

double FromFixedScale(const FixedScale& scale) {
  return std::ldexp(static_cast<double>(scale.multiplier), scale.shift - 31);
}

int8_t QuantizeFeature(double value, double scale, int32_t zero_point) {
  const double q = std::round(value / scale) + zero_point;
  if (!(q > -128.0)) return -128;  // also catches NaN
  if (q > 127.0) return 127;
  return static_cast<int8_t>(q);
}

uint32_t ToQ16(double value) {
  const double q = std::round(value * 65536.0);
  if (!(q > 0.0)) return 0;
  if (q >= static_cast<double>(std::numeric_limits<uint32_t>::max())) {
    return std::numeric_limits<uint32_t>::max();
  }
  return static_cast<uint32_t>(q);
}

int16_t ToMaster(double value, uint32_t frac_bits) {
  const double q = std::round(std::ldexp(value, static_cast<int>(frac_bits)));
  if (!(q > -32768.0)) return -32768;
  if (q > 32767.0) return 32767;
  return static_cast<int16_t>(q);
}

double FromMaster(int32_t value, uint32_t frac_bits) {
  return std::ldexp(static_cast<double>(value), -static_cast<int>(frac_bits));
}

}  // namespace tinyfed
