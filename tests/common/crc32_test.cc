// Tests of tinyfed_crc32_update: it must be the zlib/Ethernet CRC-32 (the
// server checks device payloads with it), and incremental use must agree with
// one call over the whole buffer (devices feed it chunk by chunk).
#include "tinyfed_common/crc32.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cstdint>
#include <random>
#include <string>
#include <vector>

namespace {

uint32_t CrcOf(const std::string& text) {
  return tinyfed_crc32_update(TINYFED_CRC32_INIT,
                              reinterpret_cast<const uint8_t*>(text.data()),
                              text.size());
}

// Bit-at-a-time CRC-32 straight from the definition (reflected polynomial
// 0xEDB88320, init and final XOR 0xFFFFFFFF): an independent reference for
// the library's nibble table.
uint32_t ReferenceCrc32(const std::vector<uint8_t>& data) {
  uint32_t c = 0xFFFFFFFFu;
  for (uint8_t byte : data) {
    c ^= byte;
    for (int bit = 0; bit < 8; ++bit) {
      c = (c & 1u) ? (c >> 1) ^ 0xEDB88320u : c >> 1;
    }
  }
  return ~c;
}

std::vector<uint8_t> RandomBytes(std::mt19937* gen, size_t size) {
  std::uniform_int_distribution<int> byte(0, 255);
  std::vector<uint8_t> data(size);
  for (uint8_t& b : data) b = static_cast<uint8_t>(byte(*gen));
  return data;
}

TEST(Crc32Test, MatchesStandardCheckValue) {
  EXPECT_EQ(CrcOf("123456789"), 0xCBF43926u);
}

TEST(Crc32Test, MatchesOtherPublishedVectors) {
  // Values zlib's crc32() gives for the same strings.
  EXPECT_EQ(CrcOf("a"), 0xE8B7BE43u);
  EXPECT_EQ(CrcOf("The quick brown fox jumps over the lazy dog"), 0x414FA339u);
}

TEST(Crc32Test, EmptyInputGivesInitialValueAndNullIsAllowed) {
  EXPECT_EQ(tinyfed_crc32_update(TINYFED_CRC32_INIT, nullptr, 0), 0u);
  // Extending any CRC by nothing leaves it unchanged.
  const uint32_t crc = CrcOf("123456789");
  EXPECT_EQ(tinyfed_crc32_update(crc, nullptr, 0), crc);
}

TEST(Crc32Test, MatchesBitwiseReferenceForEverySingleByte) {
  for (int value = 0; value < 256; ++value) {
    const std::vector<uint8_t> data = {static_cast<uint8_t>(value)};
    EXPECT_EQ(tinyfed_crc32_update(TINYFED_CRC32_INIT, data.data(), 1),
              ReferenceCrc32(data))
        << "byte " << value;
  }
}

TEST(Crc32Test, MatchesBitwiseReferenceOnRandomBuffers) {
  std::mt19937 gen(1);
  for (size_t size : {1u, 2u, 3u, 15u, 16u, 17u, 255u, 1024u, 4099u}) {
    const std::vector<uint8_t> data = RandomBytes(&gen, size);
    EXPECT_EQ(tinyfed_crc32_update(TINYFED_CRC32_INIT, data.data(), data.size()),
              ReferenceCrc32(data))
        << "size " << size;
  }
}

TEST(Crc32Test, IncrementalEqualsOneShotOverRandomSplits) {
  std::mt19937 gen(2);
  const std::vector<uint8_t> data = RandomBytes(&gen, 1000);
  const uint32_t one_shot =
      tinyfed_crc32_update(TINYFED_CRC32_INIT, data.data(), data.size());
  for (int trial = 0; trial < 200; ++trial) {
    // Cut the buffer into a random number of random-sized pieces, empty
    // pieces included.
    std::uniform_int_distribution<size_t> cut_point(0, data.size());
    std::uniform_int_distribution<int> cut_count(0, 12);
    std::vector<size_t> cuts = {0, data.size()};
    for (int i = cut_count(gen); i > 0; --i) cuts.push_back(cut_point(gen));
    std::sort(cuts.begin(), cuts.end());
    uint32_t crc = TINYFED_CRC32_INIT;
    for (size_t i = 0; i + 1 < cuts.size(); ++i) {
      crc = tinyfed_crc32_update(crc, data.data() + cuts[i], cuts[i + 1] - cuts[i]);
    }
    EXPECT_EQ(crc, one_shot) << "trial " << trial;
  }
}

TEST(Crc32Test, EverySingleBitFlipChangesTheCrc) {
  // A CRC detects every single-bit error; the payload check relies on it.
  std::mt19937 gen(3);
  const std::vector<uint8_t> data = RandomBytes(&gen, 64);
  const uint32_t original =
      tinyfed_crc32_update(TINYFED_CRC32_INIT, data.data(), data.size());
  for (size_t bit = 0; bit < data.size() * 8; ++bit) {
    std::vector<uint8_t> corrupted = data;
    corrupted[bit / 8] = static_cast<uint8_t>(corrupted[bit / 8] ^ (1u << (bit % 8)));
    EXPECT_NE(tinyfed_crc32_update(TINYFED_CRC32_INIT, corrupted.data(),
                                   corrupted.size()),
              original)
        << "bit " << bit;
  }
}

}  // namespace
