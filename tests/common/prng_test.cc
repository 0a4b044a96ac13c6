// Tests of the training random streams: a device and the server's float
// reference must reproduce the same draws from (seed, device, stream), the
// streams must be distinct, and the derived bounded draws and permutations
// must keep their promises (in range, uniform, every sample exactly once).
#include "tinyfed_common/prng.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <numeric>
#include <random>
#include <set>
#include <vector>

namespace {

tinyfed_prng_t Seeded(uint32_t seed, uint32_t device_hash, uint32_t stream) {
  tinyfed_prng_t prng;
  tinyfed_prng_seed(&prng, seed, device_hash, stream);
  return prng;
}

std::vector<uint32_t> Draws(tinyfed_prng_t prng, int count) {
  std::vector<uint32_t> out(static_cast<size_t>(count));
  for (uint32_t& value : out) value = tinyfed_prng_next_u32(&prng);
  return out;
}

// Positions where two sequences agree; two independent streams agree at a
// given position with probability 2^-32.
int Agreements(const std::vector<uint32_t>& a, const std::vector<uint32_t>& b) {
  int same = 0;
  for (size_t i = 0; i < a.size(); ++i) same += (a[i] == b[i]) ? 1 : 0;
  return same;
}

// Upper 1e-4 quantile of the chi-square distribution with `df` degrees of
// freedom, by the Wilson-Hilferty approximation (within ~1% for df >= 3,
// erring slightly high). A uniform generator exceeds it once in 10^4 runs;
// every run here uses a fixed seed, so the outcome is deterministic.
double ChiSquareThreshold(int df) {
  const double z = 3.719;  // standard normal upper 1e-4 quantile
  const double a = 2.0 / (9.0 * df);
  return df * std::pow(1.0 - a + z * std::sqrt(a), 3.0);
}

double ChiSquare(const std::vector<uint64_t>& counts, double expected_each) {
  double chi2 = 0;
  for (uint64_t c : counts) {
    const double d = static_cast<double>(c) - expected_each;
    chi2 += d * d / expected_each;
  }
  return chi2;
}

// The seed derivation's mixer, mirrored here only to construct the one seed
// that drives the mixed state to zero (see NoInputGivesTheZeroState).
uint32_t Mix32(uint32_t x) {
  x ^= x >> 16;
  x *= 0x85EBCA6Bu;
  x ^= x >> 13;
  x *= 0xC2B2AE35u;
  x ^= x >> 16;
  return x;
}

TEST(PrngTest, SameSeedDeviceAndStreamGiveSameSequence) {
  const tinyfed_prng_t a = Seeded(42, 0xABCDEF01u, TINYFED_STREAM_SHUFFLE);
  const tinyfed_prng_t b = Seeded(42, 0xABCDEF01u, TINYFED_STREAM_SHUFFLE);
  EXPECT_EQ(Draws(a, 1000), Draws(b, 1000));
}

TEST(PrngTest, StreamsSeedsAndDevicesGiveDifferentSequences) {
  const std::vector<uint32_t> base =
      Draws(Seeded(42, 0xABCDEF01u, TINYFED_STREAM_SHUFFLE), 1000);
  // Independent 32-bit sequences of length 1000 agree at 1000 * 2^-32
  // positions on average: any agreement at all would be suspicious, but
  // allow one so the test checks independence, not a coincidence.
  EXPECT_LE(Agreements(base, Draws(Seeded(42, 0xABCDEF01u, TINYFED_STREAM_ROUNDING), 1000)), 1)
      << "shuffle and rounding streams";
  EXPECT_LE(Agreements(base, Draws(Seeded(43, 0xABCDEF01u, TINYFED_STREAM_SHUFFLE), 1000)), 1)
      << "neighbouring seeds";
  EXPECT_LE(Agreements(base, Draws(Seeded(42, 0xABCDEF00u, TINYFED_STREAM_SHUFFLE), 1000)), 1)
      << "neighbouring devices";
}

TEST(PrngTest, FirstDrawsDifferAcrossManySeeds) {
  // Neighbouring seeds (rounds 0, 1, 2, ...) must not start alike.
  std::set<uint32_t> first_draws;
  for (uint32_t seed = 0; seed < 10000; ++seed) {
    tinyfed_prng_t prng = Seeded(seed, 0, TINYFED_STREAM_SHUFFLE);
    first_draws.insert(tinyfed_prng_next_u32(&prng));
  }
  // 10^4 uniform 32-bit values have n^2 / 2^33 ~ 0.012 colliding pairs on
  // average: allow a few.
  EXPECT_GE(first_draws.size(), 9995u);
}

TEST(PrngTest, NoInputGivesTheZeroState) {
  // xorshift stays at 0 forever from state 0. The seed below makes the
  // final mix's input 0 (the mixer maps 0 to 0), which must be caught.
  const uint32_t device_hash = 0x12345678u;
  const uint32_t stream = TINYFED_STREAM_ROUNDING;
  const uint32_t zeroing_seed = Mix32(device_hash ^ Mix32(stream + 0x9E3779B9u));
  tinyfed_prng_t prng = Seeded(zeroing_seed, device_hash, stream);
  EXPECT_NE(prng.state, 0u);
  EXPECT_NE(tinyfed_prng_next_u32(&prng), tinyfed_prng_next_u32(&prng));

  std::mt19937 gen(41);
  for (int i = 0; i < 10000; ++i) {
    const tinyfed_prng_t p = Seeded(static_cast<uint32_t>(gen()),
                                    static_cast<uint32_t>(gen()),
                                    static_cast<uint32_t>(gen()));
    ASSERT_NE(p.state, 0u);
  }
}

TEST(PrngTest, EachOutputBitIsBalanced) {
  // Stochastic rounding uses the top bits and below() the whole word, so
  // every bit must be fair. Each bit count over N draws is Binomial(N, 1/2)
  // with standard deviation sqrt(N)/2; allow 5 of them.
  constexpr int kDraws = 100000;
  const double tolerance = 5.0 * std::sqrt(static_cast<double>(kDraws)) / 2.0;
  tinyfed_prng_t prng = Seeded(7, 99, TINYFED_STREAM_ROUNDING);
  std::vector<int> ones(32, 0);
  for (int i = 0; i < kDraws; ++i) {
    const uint32_t value = tinyfed_prng_next_u32(&prng);
    for (int bit = 0; bit < 32; ++bit) ones[bit] += (value >> bit) & 1u;
  }
  for (int bit = 0; bit < 32; ++bit) {
    EXPECT_NEAR(ones[bit], kDraws / 2.0, tolerance) << "bit " << bit;
  }
}

TEST(PrngBelowTest, StaysBelowBound) {
  tinyfed_prng_t prng = Seeded(1, 2, TINYFED_STREAM_SHUFFLE);
  for (uint32_t bound : {1u, 2u, 3u, 7u, 10u, 1000u, 1797u, 0x80000001u, 0xFFFFFFFFu}) {
    for (int i = 0; i < 10000; ++i) {
      ASSERT_LT(tinyfed_prng_below(&prng, bound), bound) << "bound " << bound;
    }
  }
}

TEST(PrngBelowTest, BoundZeroAndOneGiveZero) {
  tinyfed_prng_t prng = Seeded(1, 2, TINYFED_STREAM_SHUFFLE);
  for (int i = 0; i < 100; ++i) {
    EXPECT_EQ(tinyfed_prng_below(&prng, 0), 0u);
    EXPECT_EQ(tinyfed_prng_below(&prng, 1), 0u);
  }
}

TEST(PrngBelowTest, IsRoughlyUniformByChiSquare) {
  // Small bounds (shuffle offsets) and one large non-power-of-two bound
  // split into three equal ranges (the multiply maps the whole word there).
  struct Case {
    uint32_t bound;
    uint32_t bucket_width;
    int draws;
  };
  const Case cases[] = {{2, 1, 20000}, {3, 1, 30000}, {7, 1, 70000}, {10, 1, 100000},
                        {1000, 1, 200000}, {3u << 30, 1u << 30, 30000}};
  for (uint32_t seed : {1u, 2u, 3u}) {
    for (const Case& c : cases) {
      tinyfed_prng_t prng = Seeded(seed, 0xC0FFEEu, TINYFED_STREAM_SHUFFLE);
      const uint32_t buckets = c.bound / c.bucket_width;
      std::vector<uint64_t> counts(buckets, 0);
      for (int i = 0; i < c.draws; ++i) {
        ++counts[tinyfed_prng_below(&prng, c.bound) / c.bucket_width];
      }
      const double chi2 = ChiSquare(counts, static_cast<double>(c.draws) / buckets);
      EXPECT_LT(chi2, ChiSquareThreshold(static_cast<int>(buckets) - 1))
          << "bound " << c.bound << ", seed " << seed;
    }
  }
}

// ---------------------------------------------------------------------------
// tinyfed_permutation_*

TEST(PermutationTest, VisitsEveryIndexExactlyOncePerCycle) {
  // Primes (3, 7, 1797 is 3 * 599, 65521), powers of two and mixed
  // composites, each for several plans and devices.
  const uint32_t counts[] = {1, 2, 3, 4, 6, 7, 12, 64, 97, 100, 210, 1000, 1797, 4096, 65521};
  const uint32_t seeds[] = {0, 1, 2, 0xDEADBEEFu, 0xFFFFFFFFu};
  for (uint32_t count : counts) {
    for (uint32_t seed : seeds) {
      tinyfed_prng_t prng = Seeded(seed, 0x5EEDu, TINYFED_STREAM_SHUFFLE);
      tinyfed_permutation_t perm;
      tinyfed_permutation_init(&perm, count, &prng);
      if (count <= 1) {
        EXPECT_EQ(perm.stride, 0u);
      } else {
        EXPECT_GE(perm.stride, 1u);
        EXPECT_LT(perm.stride, count);
        EXPECT_EQ(std::gcd(perm.stride, count), 1u) << "count " << count;
      }
      std::vector<uint32_t> first_cycle(count);
      std::vector<bool> seen(count, false);
      for (uint32_t i = 0; i < count; ++i) {
        const uint32_t index = tinyfed_permutation_next(&perm);
        ASSERT_LT(index, count) << "count " << count << ", seed " << seed;
        ASSERT_FALSE(seen[index]) << "index " << index << " visited twice, count "
                                  << count << ", seed " << seed;
        seen[index] = true;
        first_cycle[i] = index;
      }
      // count distinct indices below count: every one was visited.
      for (uint32_t i = 0; i < count; ++i) {
        ASSERT_EQ(tinyfed_permutation_next(&perm), first_cycle[i])
            << "second cycle differs at " << i << ", count " << count;
      }
    }
  }
}

TEST(PermutationTest, SameStreamGivesSameOrder) {
  tinyfed_prng_t a = Seeded(9, 10, TINYFED_STREAM_SHUFFLE);
  tinyfed_prng_t b = Seeded(9, 10, TINYFED_STREAM_SHUFFLE);
  tinyfed_permutation_t pa;
  tinyfed_permutation_t pb;
  tinyfed_permutation_init(&pa, 1797, &a);
  tinyfed_permutation_init(&pb, 1797, &b);
  for (int i = 0; i < 1797; ++i) {
    ASSERT_EQ(tinyfed_permutation_next(&pa), tinyfed_permutation_next(&pb));
  }
}

TEST(PermutationTest, StartIndexIsUniformAcrossSeeds) {
  // Each round's plan seed must move the first sample uniformly. Same
  // chi-square threshold and reasoning as for tinyfed_prng_below.
  constexpr uint32_t kCount = 10;
  constexpr int kSeeds = 20000;
  std::vector<uint64_t> counts(kCount, 0);
  std::set<uint32_t> strides;
  for (int seed = 0; seed < kSeeds; ++seed) {
    tinyfed_prng_t prng = Seeded(static_cast<uint32_t>(seed), 77, TINYFED_STREAM_SHUFFLE);
    tinyfed_permutation_t perm;
    tinyfed_permutation_init(&perm, kCount, &prng);
    strides.insert(perm.stride);
    ++counts[tinyfed_permutation_next(&perm)];
  }
  EXPECT_LT(ChiSquare(counts, static_cast<double>(kSeeds) / kCount),
            ChiSquareThreshold(kCount - 1));
  // The order, not only the start, must change: every stride coprime to 10
  // (1, 3, 7, 9) is reachable and 20000 seeds reach each.
  EXPECT_EQ(strides, (std::set<uint32_t>{1, 3, 7, 9}));
}

TEST(PermutationTest, StepsCorrectlyForCountsAbove2To31) {
  // The header allows any count >= 1. Each step must go to
  // (index + stride) mod count, computed here in 64 bits.
  for (uint32_t count : {0x80000001u, 0xFFFFFFFBu, 0xFFFFFFFFu}) {
    for (uint32_t seed : {1u, 2u, 3u, 4u}) {
      tinyfed_prng_t prng = Seeded(seed, 0, TINYFED_STREAM_SHUFFLE);
      tinyfed_permutation_t perm;
      tinyfed_permutation_init(&perm, count, &prng);
      ASSERT_EQ(std::gcd(perm.stride, count), 1u);
      uint32_t index = tinyfed_permutation_next(&perm);
      for (int i = 0; i < 100; ++i) {
        const uint32_t next = tinyfed_permutation_next(&perm);
        const uint64_t expected = (uint64_t{index} + perm.stride) % count;
        ASSERT_EQ(next, expected) << "count " << count << ", stride " << perm.stride
                                  << ", from index " << index;
        index = next;
      }
    }
  }
}

}  // namespace
