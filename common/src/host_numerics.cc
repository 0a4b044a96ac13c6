#include "tinyfed_common/host_numerics.h"

#include <array>
#include <cmath>
#include <cstring>
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

namespace {

// table[k][b]: CRC of byte b followed by k zero bytes (reflected 0xEDB88320).
using Crc32Tables = std::array<std::array<uint32_t, 256>, 8>;

Crc32Tables MakeCrc32Tables() {
  Crc32Tables t{};
  for (uint32_t b = 0; b < 256; ++b) {
    uint32_t c = b;
    for (int i = 0; i < 8; ++i) c = (c >> 1) ^ ((c & 1u) ? 0xEDB88320u : 0u);
    t[0][b] = c;
  }
  for (uint32_t b = 0; b < 256; ++b) {
    for (size_t k = 1; k < 8; ++k) t[k][b] = (t[k - 1][b] >> 8) ^ t[0][t[k - 1][b] & 0xFFu];
  }
  return t;
}

const Crc32Tables& Tables() {
  static const Crc32Tables tables = MakeCrc32Tables();
  return tables;
}

}  // namespace

uint32_t Crc32Update(uint32_t crc, const void* data, size_t len) {
  const Crc32Tables& t = Tables();
  const auto* p = static_cast<const uint8_t*>(data);
  uint32_t c = ~crc;
  while (len >= 8) {
    // Little-endian load of 8 bytes, as the reflected CRC consumes them.
    const uint32_t lo = c ^ (uint32_t{p[0]} | uint32_t{p[1]} << 8 | uint32_t{p[2]} << 16 |
                             uint32_t{p[3]} << 24);
    const uint32_t hi = uint32_t{p[4]} | uint32_t{p[5]} << 8 | uint32_t{p[6]} << 16 |
                        uint32_t{p[7]} << 24;
    c = t[7][lo & 0xFF] ^ t[6][(lo >> 8) & 0xFF] ^ t[5][(lo >> 16) & 0xFF] ^ t[4][lo >> 24] ^
        t[3][hi & 0xFF] ^ t[2][(hi >> 8) & 0xFF] ^ t[1][(hi >> 16) & 0xFF] ^ t[0][hi >> 24];
    p += 8;
    len -= 8;
  }
  while (len-- > 0) c = (c >> 8) ^ t[0][(c ^ *p++) & 0xFFu];
  return ~c;
}

double FromMaster(int32_t value, uint32_t frac_bits) {
  return std::ldexp(static_cast<double>(value), -static_cast<int>(frac_bits));
}

}  // namespace tinyfed
