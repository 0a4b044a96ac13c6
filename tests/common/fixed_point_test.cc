// Tests of the fixed-point primitives against their header contracts: every
// error bound is checked against a floating-point or exact-integer reference
// at the bound the header documents, never a looser one.
#include "tinyfed_common/fixed_point.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <limits>
#include <random>
#include <utility>
#include <vector>

namespace {

constexpr int32_t kExpLowestInput = -17 * TINYFED_Q16_ONE;

// ---------------------------------------------------------------------------
// tinyfed_exp_neg_q16

// exp(x) in Q24 units, computed in long double: its 64-bit mantissa puts the
// reference's own error near 1e-12 Q24 steps, far below the 2-step bound.
long double ExactExpQ24(int32_t x_q16) {
  return std::exp(static_cast<long double>(x_q16) / TINYFED_Q16_ONE) *
         static_cast<long double>(TINYFED_Q24_ONE);
}

TEST(ExpNegQ16Test, WithinTwoQ24StepsOfStdExpOnEveryInputDownToMinus17) {
  // Every Q16.16 input in [-17, 0], so no table segment or polynomial
  // range is skipped. Reports the worst input rather than a million failures.
  long double worst_error = 0;
  int32_t worst_x = 0;
  for (int32_t x = kExpLowestInput; x <= 0; ++x) {
    const long double error =
        std::fabs(static_cast<long double>(tinyfed_exp_neg_q16(x)) - ExactExpQ24(x));
    if (error > worst_error) {
      worst_error = error;
      worst_x = x;
    }
  }
  EXPECT_LE(worst_error, 2.0L)
      << "worst at x_q16 = " << worst_x << " (x = "
      << static_cast<double>(worst_x) / TINYFED_Q16_ONE
      << "): got " << tinyfed_exp_neg_q16(worst_x) << ", exact "
      << static_cast<double>(ExactExpQ24(worst_x));
}

TEST(ExpNegQ16Test, ExpOfZeroIsExactlyOne) {
  EXPECT_EQ(tinyfed_exp_neg_q16(0), TINYFED_Q24_ONE);
  EXPECT_EQ(TINYFED_Q24_ONE, 1u << 24);
}

TEST(ExpNegQ16Test, PositiveInputsAreTreatedAsZero) {
  EXPECT_EQ(tinyfed_exp_neg_q16(1), TINYFED_Q24_ONE);
  EXPECT_EQ(tinyfed_exp_neg_q16(5 * TINYFED_Q16_ONE), TINYFED_Q24_ONE);
  EXPECT_EQ(tinyfed_exp_neg_q16(std::numeric_limits<int32_t>::max()),
            TINYFED_Q24_ONE);
}

TEST(ExpNegQ16Test, IsMonotonicNonIncreasingAsInputDecreases) {
  // Softmax relies on a larger logit never getting a smaller weight.
  uint32_t previous = tinyfed_exp_neg_q16(0);
  for (int32_t x = -1; x >= kExpLowestInput - 2; --x) {
    const uint32_t value = tinyfed_exp_neg_q16(x);
    ASSERT_LE(value, previous) << "increases at x_q16 = " << x;
    previous = value;
  }
}

TEST(ExpNegQ16Test, InputsBelowMinus17GiveZero) {
  EXPECT_EQ(tinyfed_exp_neg_q16(kExpLowestInput - 1), 0u);
  EXPECT_EQ(tinyfed_exp_neg_q16(-20 * TINYFED_Q16_ONE), 0u);
  EXPECT_EQ(tinyfed_exp_neg_q16(std::numeric_limits<int32_t>::min()), 0u);
}

// ---------------------------------------------------------------------------
// tinyfed_log2_u32_q16

// Checks result <= log2(x) (truncation) and log2(x) - result < 2^-15 (the
// documented bound). long double's log2 is accurate to ~1e-18 here; the
// 1e-15 slack only keeps that reference rounding from failing the
// truncation check when log2(x) lies within 1e-15 above a multiple of 2^-16.
void ExpectLog2WithinBound(uint32_t x) {
  const long double exact = std::log2(static_cast<long double>(x));
  const long double got =
      static_cast<long double>(tinyfed_log2_u32_q16(x)) / TINYFED_Q16_ONE;
  const long double error = exact - got;
  EXPECT_GE(error, -1e-15L) << "not truncated for x = " << x;
  EXPECT_LT(error, std::ldexp(1.0L, -15)) << "too far below log2 for x = " << x;
}

TEST(Log2U32Q16Test, ExactForPowersOfTwo) {
  for (uint32_t k = 0; k < 32; ++k) {
    EXPECT_EQ(tinyfed_log2_u32_q16(1u << k), static_cast<int32_t>(k << 16))
        << "2^" << k;
  }
}

TEST(Log2U32Q16Test, ZeroReturnsZero) { EXPECT_EQ(tinyfed_log2_u32_q16(0), 0); }

TEST(Log2U32Q16Test, TruncatedAndWithinBoundForAllSmallInputs) {
  for (uint32_t x = 1; x <= (1u << 17); ++x) ExpectLog2WithinBound(x);
}

TEST(Log2U32Q16Test, TruncatedAndWithinBoundNextToPowersOfTwo) {
  // Just below a power of two the fraction is all ones: the squaring loop's
  // truncation errors matter most there.
  for (uint32_t k = 2; k < 32; ++k) {
    ExpectLog2WithinBound((1u << k) - 1u);
    ExpectLog2WithinBound((1u << k) + 1u);
  }
  ExpectLog2WithinBound(0xFFFFFFFFu);
}

TEST(Log2U32Q16Test, TruncatedAndWithinBoundForRandomInputs) {
  std::mt19937 gen(11);
  for (int i = 0; i < 200000; ++i) {
    // Random bit width first, so small and large magnitudes are both covered.
    const uint32_t width = 1u + gen() % 32u;
    uint32_t x = static_cast<uint32_t>(gen()) >> (32u - width);
    if (x == 0) x = 1;
    ExpectLog2WithinBound(x);
  }
}

// ---------------------------------------------------------------------------
// tinyfed_scale_from_ratio

// Exact comparison of mantissa * 2^exponent with num / den * 2^exp2 in
// 128-bit integers (a GCC/Clang extension; the tests run on the host only).
// With s = exponent - exp2, both sides are multiplied by
// den * 2^(max(-s, 0) - exp2), which turns them into these integers:
struct ScaleComparison {
  unsigned __int128 got;         // mantissa * den * 2^max(s, 0)
  unsigned __int128 exact;       // num * 2^max(-s, 0)
  unsigned __int128 ulp_scaled;  // den * 2^max(s, 0): one mantissa step
};

// Brings both sides to integers: got/exact = value/true value, and
// got - exact = (mantissa - exact mantissa) * ulp_scaled.
::testing::AssertionResult Compare(uint64_t num, uint64_t den, int32_t exp2,
                                   const tinyfed_scale_t& scale,
                                   ScaleComparison* out) {
  const int32_t s = scale.exponent - exp2;
  // With den < 2^32 and a mantissa in [2^30, 2^31), 2^s = num / (den *
  // mantissa) lies in (2^-63, 2^34); anything outside is wrong anyway and
  // would overflow the 128-bit arithmetic below.
  if (s < -64 || s > 64) {
    return ::testing::AssertionFailure() << "exponent " << scale.exponent
                                         << " far off for exp2 " << exp2;
  }
  out->got = static_cast<unsigned __int128>(scale.mantissa) * den;
  out->exact = num;
  out->ulp_scaled = den;
  if (s >= 0) {
    out->got <<= s;
    out->ulp_scaled <<= s;
  } else {
    out->exact <<= -s;
  }
  return ::testing::AssertionSuccess();
}

unsigned __int128 AbsDiff(unsigned __int128 a, unsigned __int128 b) {
  return a > b ? a - b : b - a;
}

// Runs tinyfed_scale_from_ratio and checks what holds for every result:
// success and a normalised mantissa. Then *diff = |got - exact| and
// *ulp_scaled = one mantissa step, on the common integer scale of Compare().
void RunScale(uint64_t num, uint64_t den, int32_t exp2, tinyfed_scale_t* scale,
              unsigned __int128* diff, unsigned __int128* exact,
              unsigned __int128* ulp_scaled) {
  ASSERT_EQ(tinyfed_scale_from_ratio(num, den, exp2, scale), 0)
      << num << "/" << den << " * 2^" << exp2;
  EXPECT_GE(scale->mantissa, 1u << 30) << num << "/" << den;
  EXPECT_LT(scale->mantissa, 1u << 31) << num << "/" << den;
  ScaleComparison c = {0, 0, 0};
  ASSERT_TRUE(Compare(num, den, exp2, *scale, &c)) << num << "/" << den;
  *diff = AbsDiff(c.got, c.exact);
  *exact = c.exact;
  *ulp_scaled = c.ulp_scaled;
}

// Relative error at most 2^-30 (a 31-bit mantissa, however it is rounded).
void ExpectScaleWithinRelative2ToMinus30(uint64_t num, uint64_t den, int32_t exp2) {
  tinyfed_scale_t scale = {0, 0};
  unsigned __int128 diff = 0, exact = 0, ulp_scaled = 0;
  RunScale(num, den, exp2, &scale, &diff, &exact, &ulp_scaled);
  // |got - exact| <= exact / 2^30.
  EXPECT_LE(diff, exact >> 30)
      << "relative error above 2^-30 for " << num << "/" << den << " * 2^" << exp2
      << ": mantissa " << scale.mantissa << ", exponent " << scale.exponent;
}

// The header's "rounded to nearest in the mantissa": |mantissa - exact
// mantissa| <= 1/2.
void ExpectScaleRoundedToNearest(uint64_t num, uint64_t den, int32_t exp2) {
  tinyfed_scale_t scale = {0, 0};
  unsigned __int128 diff = 0, exact = 0, ulp_scaled = 0;
  RunScale(num, den, exp2, &scale, &diff, &exact, &ulp_scaled);
  EXPECT_LE(2 * diff, ulp_scaled)
      << "not rounded to nearest for " << num << "/" << den << " * 2^" << exp2
      << ": mantissa " << scale.mantissa << ", exponent " << scale.exponent;
}

// Inputs across the allowed range: num < 2^63 and den < 2^32 of random bit
// widths (so both tiny and full-width values occur), exp2 in [-200, 200].
template <typename Check>
void ForRandomScaleInputs(uint64_t seed, Check check) {
  std::mt19937_64 gen(seed);
  for (int i = 0; i < 100000; ++i) {
    const uint32_t num_bits = 1u + static_cast<uint32_t>(gen() % 63u);
    const uint32_t den_bits = 1u + static_cast<uint32_t>(gen() % 32u);
    uint64_t num = gen() >> (64u - num_bits);
    uint64_t den = gen() >> (64u - den_bits);
    if (num == 0) num = 1;
    if (den == 0) den = 1;
    const int32_t exp2 = static_cast<int32_t>(gen() % 401u) - 200;
    check(num, den, exp2);
    if (::testing::Test::HasFailure()) {
      FAIL() << "stopping after the first failing input (iteration " << i << ")";
    }
  }
}

TEST(ScaleFromRatioTest, ExactCases) {
  tinyfed_scale_t scale = {0, 0};
  ASSERT_EQ(tinyfed_scale_from_ratio(1, 1, 0, &scale), 0);
  EXPECT_EQ(scale.mantissa, 1u << 30);
  EXPECT_EQ(scale.exponent, -30);

  ASSERT_EQ(tinyfed_scale_from_ratio(3, 1, 5, &scale), 0);  // 3 * 2^5 = 0.75 * 2^7
  EXPECT_EQ(scale.mantissa, 3u << 29);
  EXPECT_EQ(scale.exponent, 5 - 29);

  // 1/3 = 1431655765.33... * 2^-32, rounds down.
  ASSERT_EQ(tinyfed_scale_from_ratio(1, 3, 0, &scale), 0);
  EXPECT_EQ(scale.mantissa, 1431655765u);
  EXPECT_EQ(scale.exponent, -32);

  // 2/3 = 1431655765.33... * 2^-31.
  ASSERT_EQ(tinyfed_scale_from_ratio(2, 3, 0, &scale), 0);
  EXPECT_EQ(scale.mantissa, 1431655765u);
  EXPECT_EQ(scale.exponent, -31);
}

TEST(ScaleFromRatioTest, RoundingCarryRenormalizes) {
  // (2^31 - 1/2) rounds up to 2^31, which must become 2^30 with exponent + 1.
  tinyfed_scale_t scale = {0, 0};
  ASSERT_EQ(tinyfed_scale_from_ratio((1ull << 32) - 1u, 1, 0, &scale), 0);
  EXPECT_EQ(scale.mantissa, 1u << 30);
  EXPECT_EQ(scale.exponent, 2);
}

TEST(ScaleFromRatioTest, RoundsToNearestWhenTheQuotientHasExactly31Bits) {
  // 1 / (3 * 2^30 - 1) = 1431655765.78 * 2^-62: the library's 63-bit
  // quotient 2^62 / den already fits in 31 bits, so no shift with rounding
  // happens there; round to nearest must still give ...766, not ...765.
  ExpectScaleRoundedToNearest(1, 3ull * (1ull << 30) - 1u, 0);
}

TEST(ScaleFromRatioTest, WithinRelative2ToMinus30ForRandomInputs) {
  ForRandomScaleInputs(21, ExpectScaleWithinRelative2ToMinus30);
}

TEST(ScaleFromRatioTest, RoundedToNearestForRandomInputs) {
  ForRandomScaleInputs(22, ExpectScaleRoundedToNearest);
}

TEST(ScaleFromRatioTest, RejectsInputsOutsideTheDocumentedDomain) {
  // The header limits num to [1, 2^63) and den to [1, 2^32); anything else
  // is reported, never computed with an out-of-range shift.
  tinyfed_scale_t scale = {0, 0};
  EXPECT_EQ(tinyfed_scale_from_ratio(1ull << 63, 1, 0, &scale), -1);
  EXPECT_EQ(tinyfed_scale_from_ratio(std::numeric_limits<uint64_t>::max(), 1, 0, &scale), -1);
  EXPECT_EQ(tinyfed_scale_from_ratio(0, 1, 0, &scale), -1);
  EXPECT_EQ(tinyfed_scale_from_ratio(1, 0, 0, &scale), -1);
  EXPECT_EQ(tinyfed_scale_from_ratio(1, 1ull << 32, 0, &scale), -1);
  // The largest accepted inputs still work.
  ExpectScaleWithinRelative2ToMinus30((1ull << 63) - 1, 0xFFFFFFFFull, 0);
  ExpectScaleRoundedToNearest((1ull << 63) - 1, 0xFFFFFFFFull, 0);
}

TEST(ScaleFromRatioTest, ReportsExponentOutsidePlusMinus1000) {
  tinyfed_scale_t scale = {0, 0};
  // 1 = 2^30 * 2^-30, so exp2 = 1030 lands exactly on exponent 1000.
  EXPECT_EQ(tinyfed_scale_from_ratio(1, 1, 1030, &scale), 0);
  EXPECT_EQ(scale.exponent, 1000);
  EXPECT_EQ(tinyfed_scale_from_ratio(1, 1, 1031, &scale), -1);
  EXPECT_EQ(tinyfed_scale_from_ratio(1, 1, -970, &scale), 0);
  EXPECT_EQ(scale.exponent, -1000);
  EXPECT_EQ(tinyfed_scale_from_ratio(1, 1, -971, &scale), -1);
}

// ---------------------------------------------------------------------------
// tinyfed_round_shift_s64

TEST(RoundShiftS64Test, ExactCasesWithTiesTowardPlusInfinity) {
  EXPECT_EQ(tinyfed_round_shift_s64(5, 1), 3);    // 2.5
  EXPECT_EQ(tinyfed_round_shift_s64(-5, 1), -2);  // -2.5
  EXPECT_EQ(tinyfed_round_shift_s64(6, 2), 2);    // 1.5
  EXPECT_EQ(tinyfed_round_shift_s64(-6, 2), -1);  // -1.5
  EXPECT_EQ(tinyfed_round_shift_s64(7, 2), 2);    // 1.75
  EXPECT_EQ(tinyfed_round_shift_s64(-7, 2), -2);  // -1.75
  EXPECT_EQ(tinyfed_round_shift_s64(5, 2), 1);    // 1.25
  EXPECT_EQ(tinyfed_round_shift_s64(-5, 2), -1);  // -1.25
  EXPECT_EQ(tinyfed_round_shift_s64(-1, 1), 0);   // -0.5
  EXPECT_EQ(tinyfed_round_shift_s64(-123, 0), -123);
}

TEST(RoundShiftS64Test, LargestShiftAndMagnitude) {
  const int64_t limit = (int64_t{1} << 62) - 1;  // |x| < 2^62
  EXPECT_EQ(tinyfed_round_shift_s64(limit, 62), 1);
  EXPECT_EQ(tinyfed_round_shift_s64(-limit, 62), -1);
  EXPECT_EQ(tinyfed_round_shift_s64(int64_t{1} << 61, 62), 1);    // 0.5
  EXPECT_EQ(tinyfed_round_shift_s64(-(int64_t{1} << 61), 62), 0);  // -0.5
  EXPECT_EQ(tinyfed_round_shift_s64(limit, 0), limit);
}

TEST(RoundShiftS64Test, MatchesFloorOfXPlusHalfForSmallInputs) {
  // floor(x / 2^k + 1/2) is exact in long double for these magnitudes.
  for (uint32_t k = 0; k <= 12; ++k) {
    for (int64_t x = -5000; x <= 5000; ++x) {
      const long double expected =
          std::floor(std::ldexp(static_cast<long double>(x), -static_cast<int>(k)) + 0.5L);
      ASSERT_EQ(tinyfed_round_shift_s64(x, k), static_cast<int64_t>(expected))
          << "x = " << x << ", k = " << k;
    }
  }
}

// ---------------------------------------------------------------------------
// tinyfed_stochastic_shift_s64

// floor(x / 2^k), exact in long double for |x| < 2^62 (64-bit mantissa).
int64_t FloorShift(int64_t x, uint32_t k) {
  return static_cast<int64_t>(
      std::floor(std::ldexp(static_cast<long double>(x), -static_cast<int>(k))));
}

const std::vector<int64_t>& SampleInputs() {
  static const std::vector<int64_t> inputs = {
      0, 1, -1, 2, -2, 3, -3, 7, -7, 1000, -1000, 123456789, -123456789,
      (int64_t{1} << 40) + 12345, -(int64_t{1} << 40) - 12345,
      (int64_t{1} << 62) - 1, -((int64_t{1} << 62) - 1)};
  return inputs;
}

TEST(StochasticShiftS64Test, ZeroRandomGivesFloor) {
  for (int64_t x : SampleInputs()) {
    for (uint32_t k = 0; k <= 62; ++k) {
      EXPECT_EQ(tinyfed_stochastic_shift_s64(x, k, 0), FloorShift(x, k))
          << "x = " << x << ", k = " << k;
    }
  }
}

TEST(StochasticShiftS64Test, LargestRandomGivesCeilingUpTo32Bits) {
  // For k <= 32, r = 2^k - 1 and floor((x + 2^k - 1) / 2^k) = ceil(x / 2^k).
  for (int64_t x : SampleInputs()) {
    for (uint32_t k = 0; k <= 32; ++k) {
      EXPECT_EQ(tinyfed_stochastic_shift_s64(x, k, 0xFFFFFFFFu), -FloorShift(-x, k))
          << "x = " << x << ", k = " << k;
    }
  }
}

TEST(StochasticShiftS64Test, ZeroShiftIgnoresRandom) {
  EXPECT_EQ(tinyfed_stochastic_shift_s64(-77, 0, 0xDEADBEEFu), -77);
  EXPECT_EQ(tinyfed_stochastic_shift_s64(77, 0, 0xFFFFFFFFu), 77);
}

TEST(StochasticShiftS64Test, ResultIsFloorOrFloorPlusOne) {
  std::mt19937 gen(31);
  for (int64_t x : SampleInputs()) {
    for (uint32_t k = 1; k <= 62; ++k) {
      const uint32_t random = static_cast<uint32_t>(gen());
      const int64_t result = tinyfed_stochastic_shift_s64(x, k, random);
      const int64_t floor = FloorShift(x, k);
      EXPECT_TRUE(result == floor || result == floor + 1)
          << "x = " << x << ", k = " << k << ", random = " << random
          << ": " << result;
    }
  }
}

TEST(StochasticShiftS64Test, MeanOverAllTopBitPatternsIsExactForSmallShifts) {
  // For k <= 32 only the top k bits of `random` matter. Summing over all
  // 2^k of them (with arbitrary low bits) must give exactly x, i.e. the
  // mean is x / 2^k with no bias at all (Hermite's identity).
  std::mt19937 gen(32);
  for (int64_t x : SampleInputs()) {
    for (uint32_t k = 1; k <= 12; ++k) {
      int64_t sum = 0;
      for (uint32_t top = 0; top < (1u << k); ++top) {
        const uint32_t low_bits = static_cast<uint32_t>(gen()) >> k;
        const uint32_t random = (top << (32u - k)) | low_bits;
        sum += tinyfed_stochastic_shift_s64(x, k, random);
      }
      // |sum| is about |x| < 2^62: no overflow.
      EXPECT_EQ(sum, x) << "x = " << x << ", k = " << k;
    }
  }
}

TEST(StochasticShiftS64Test, MeanOverUniformDrawsIsUnbiasedForLargeShifts) {
  // For k > 12 enumerating is too slow, so draw `random` uniformly. Each
  // result is floor(x / 2^k) or that plus one, a Bernoulli offset with
  // variance <= 1/4, so the mean of N draws has standard error <=
  // 1 / (2 sqrt(N)). Allow 5 standard errors (a false failure has
  // probability ~6e-7; the seed is fixed anyway) plus the header's 2^-32
  // bias allowance for k > 32.
  constexpr int kDraws = 40000;
  const long double tolerance = 5.0L / (2.0L * std::sqrt(static_cast<long double>(kDraws))) +
                                std::ldexp(1.0L, -32);
  std::mt19937 gen(33);
  for (uint32_t k : {20u, 32u, 33u, 40u, 50u, 62u}) {
    for (long double fraction : {0.3L, 0.5L, 0.9L}) {
      for (int sign : {1, -1}) {
        // x / 2^k = sign * fraction (plus a few units for k < 60, so the
        // integer part is exercised too).
        const long double target = sign * (fraction + (k < 60 ? 3 : 0));
        const int64_t x = static_cast<int64_t>(std::ldexp(target, static_cast<int>(k)));
        long double sum = 0;
        for (int i = 0; i < kDraws; ++i) {
          sum += static_cast<long double>(
              tinyfed_stochastic_shift_s64(x, k, static_cast<uint32_t>(gen())));
        }
        const long double mean = sum / kDraws;
        const long double exact = std::ldexp(static_cast<long double>(x), -static_cast<int>(k));
        EXPECT_NEAR(static_cast<double>(mean), static_cast<double>(exact),
                    static_cast<double>(tolerance))
            << "x = " << x << ", k = " << k;
      }
    }
  }
}

TEST(StochasticShiftS64Test, BiasBeyond32BitsStaysBelow2ToMinus32) {
  // With k > 32, only multiples of 2^(k-32) are added, so x = 2^(k-32) - 1
  // (x / 2^k just under 2^-32) never rounds up, even for the largest random:
  // the mean is 0, off by less than the documented 2^-32.
  for (uint32_t k : {33u, 40u, 62u}) {
    const int64_t x = (int64_t{1} << (k - 32u)) - 1;
    EXPECT_EQ(tinyfed_stochastic_shift_s64(x, k, 0xFFFFFFFFu), 0) << "k = " << k;
    // One more and the largest random does round up.
    EXPECT_EQ(tinyfed_stochastic_shift_s64(x + 1, k, 0xFFFFFFFFu), 1) << "k = " << k;
  }
}

// ---------------------------------------------------------------------------
// tinyfed_saturate_s16, tinyfed_clamp_s32

TEST(SaturateS16Test, ClampsAtBothEnds) {
  EXPECT_EQ(tinyfed_saturate_s16(0), 0);
  EXPECT_EQ(tinyfed_saturate_s16(-5), -5);
  EXPECT_EQ(tinyfed_saturate_s16(32767), 32767);
  EXPECT_EQ(tinyfed_saturate_s16(32768), 32767);
  EXPECT_EQ(tinyfed_saturate_s16(-32768), -32768);
  EXPECT_EQ(tinyfed_saturate_s16(-32769), -32768);
  EXPECT_EQ(tinyfed_saturate_s16(int64_t{1} << 40), 32767);
  EXPECT_EQ(tinyfed_saturate_s16(std::numeric_limits<int64_t>::max()), 32767);
  EXPECT_EQ(tinyfed_saturate_s16(std::numeric_limits<int64_t>::min()), -32768);
  // 65536 + 5 must not wrap to 5.
  EXPECT_EQ(tinyfed_saturate_s16(65541), 32767);
}

TEST(ClampS32Test, ClampsToTheGivenRange) {
  EXPECT_EQ(tinyfed_clamp_s32(5, -10, 10), 5);
  EXPECT_EQ(tinyfed_clamp_s32(10, -10, 10), 10);
  EXPECT_EQ(tinyfed_clamp_s32(11, -10, 10), 10);
  EXPECT_EQ(tinyfed_clamp_s32(-10, -10, 10), -10);
  EXPECT_EQ(tinyfed_clamp_s32(-11, -10, 10), -10);
  EXPECT_EQ(tinyfed_clamp_s32(-1000, 7, 7), 7);  // lo == hi
  EXPECT_EQ(tinyfed_clamp_s32(1000, 7, 7), 7);
}

TEST(ClampS32Test, HandlesValuesBeyond32Bits) {
  constexpr int32_t kMin = std::numeric_limits<int32_t>::min();
  constexpr int32_t kMax = std::numeric_limits<int32_t>::max();
  EXPECT_EQ(tinyfed_clamp_s32(int64_t{kMax} + 1, kMin, kMax), kMax);
  EXPECT_EQ(tinyfed_clamp_s32(int64_t{kMin} - 1, kMin, kMax), kMin);
  EXPECT_EQ(tinyfed_clamp_s32(std::numeric_limits<int64_t>::max(), kMin, kMax), kMax);
  EXPECT_EQ(tinyfed_clamp_s32(std::numeric_limits<int64_t>::min(), kMin, kMax), kMin);
  // 2^32 + 3 must not wrap to 3.
  EXPECT_EQ(tinyfed_clamp_s32((int64_t{1} << 32) + 3, -10, 10), 10);
}

}  // namespace

namespace {

// tinyfed_udiv64 replaces the compiler's 64-bit division on devices: it must
// agree with it everywhere, including the extremes.
TEST(Udiv64Test, MatchesBuiltInDivision) {
  std::mt19937_64 rng(64);
  for (int i = 0; i < 20000; ++i) {
    const uint64_t num = rng() >> (rng() % 64);
    const uint64_t den = std::max<uint64_t>(1, rng() >> (rng() % 64));
    uint64_t rem = 0;
    ASSERT_EQ(tinyfed_udiv64(num, den, &rem), num / den) << num << " / " << den;
    ASSERT_EQ(rem, num % den);
  }
  const uint64_t max = std::numeric_limits<uint64_t>::max();
  uint64_t rem = 0;
  EXPECT_EQ(tinyfed_udiv64(max, 1, &rem), max);
  EXPECT_EQ(tinyfed_udiv64(max, max, &rem), 1u);
  EXPECT_EQ(tinyfed_udiv64(max - 1, max, &rem), 0u);
  EXPECT_EQ(rem, max - 1);
  EXPECT_EQ(tinyfed_udiv64(max, (1ull << 63) + 1, &rem), 1u);
  EXPECT_EQ(rem, max - (1ull << 63) - 1);
  EXPECT_EQ(tinyfed_udiv64(7, 0, &rem), 0u);
  EXPECT_EQ(rem, 7u);
}

}  // namespace
