// The host CRC (slicing-by-8) against the device CRC (nibble table): the
// server checks what devices compute, so they must agree on every input.
#include <gtest/gtest.h>

#include <random>
#include <vector>

#include "tinyfed_common/crc32.h"
#include "tinyfed_common/host_numerics.h"

namespace tinyfed {
namespace {

TEST(HostCrc32, MatchesTheDeviceCrcOnEveryLengthAndAlignment) {
  std::mt19937 rng(9);
  std::vector<uint8_t> data(4200);
  for (auto& b : data) b = static_cast<uint8_t>(rng());
  // Lengths across the 8-byte blocks and their tails, at odd offsets, and
  // chained from non-initial CRC values.
  for (size_t offset = 0; offset < 9; ++offset) {
    for (size_t len : {0u, 1u, 7u, 8u, 9u, 15u, 16u, 17u, 650u, 651u, 4096u, 4191u}) {
      const uint8_t* p = data.data() + offset;
      EXPECT_EQ(Crc32Update(0, p, len), tinyfed_crc32_update(TINYFED_CRC32_INIT, p, len))
          << offset << "+" << len;
      const uint32_t seed = tinyfed_crc32_update(TINYFED_CRC32_INIT, data.data(), 5);
      EXPECT_EQ(Crc32Update(seed, p, len), tinyfed_crc32_update(seed, p, len));
    }
  }
  const char check[] = "123456789";
  EXPECT_EQ(Crc32Update(0, check, 9), 0xCBF43926u);
}

}  // namespace
}  // namespace tinyfed
