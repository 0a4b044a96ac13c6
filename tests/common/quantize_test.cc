// Tests of the int8 delta quantization: the row scale is the smallest that
// fits, every quantized value is within one scale step of the delta and in
// int8 range, rows within +-127 steps travel exactly, and stochastic
// rounding is unbiased, which is what lets the server average many devices.
#include "tinyfed_common/quantize.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <random>

namespace {

const uint32_t kScales[] = {1, 2, 3, 7, 64, 127, 128, 255, 516, TINYFED_ROW_SCALE_MAX};

// floor(a / b) for b > 0, independent of the library's own floor division.
int32_t FloorDiv(int32_t a, int32_t b) {
  return static_cast<int32_t>(std::floor(static_cast<double>(a) / b));
}

TEST(RowScaleS8Test, KnownValues) {
  EXPECT_EQ(tinyfed_row_scale_s8(0), 1u);
  EXPECT_EQ(tinyfed_row_scale_s8(1), 1u);
  EXPECT_EQ(tinyfed_row_scale_s8(127), 1u);
  EXPECT_EQ(tinyfed_row_scale_s8(128), 2u);
  EXPECT_EQ(tinyfed_row_scale_s8(254), 2u);
  EXPECT_EQ(tinyfed_row_scale_s8(255), 3u);
  EXPECT_EQ(tinyfed_row_scale_s8(65535), 517u);
  EXPECT_EQ(tinyfed_row_scale_s8(65535), TINYFED_ROW_SCALE_MAX);
}

TEST(RowScaleS8Test, IsTheSmallestScaleThatFitsForEveryInput) {
  // The header's definition: the smallest s >= 1 with max_abs <= 127 * s.
  for (uint32_t max_abs = 0; max_abs <= 65535; ++max_abs) {
    const uint32_t s = tinyfed_row_scale_s8(max_abs);
    ASSERT_GE(s, 1u) << max_abs;
    ASSERT_LE(max_abs, 127u * s) << "scale " << s << " too small for " << max_abs;
    if (s > 1) {
      ASSERT_GT(max_abs, 127u * (s - 1)) << "scale " << s << " not smallest for " << max_abs;
    }
    ASSERT_LE(s, TINYFED_ROW_SCALE_MAX) << max_abs;
  }
}

TEST(QuantizeStochasticS8Test, InRangeAndWithinOneStepForEveryDelta) {
  std::mt19937 gen(51);
  for (uint32_t scale : kScales) {
    const int32_t s = static_cast<int32_t>(scale);
    for (int32_t delta = -127 * s; delta <= 127 * s; ++delta) {
      // The extreme draws and one arbitrary one.
      for (uint32_t random : {0u, 0xFFFFFFFFu, static_cast<uint32_t>(gen())}) {
        const int8_t q = tinyfed_quantize_stochastic_s8(delta, scale, random);
        ASSERT_GE(q, -127) << "delta " << delta << ", scale " << scale;
        ASSERT_LE(q, 127) << "delta " << delta << ", scale " << scale;
        const int32_t error = q * s - delta;
        ASSERT_LT(std::abs(error), s)
            << "delta " << delta << ", scale " << scale << ", random " << random
            << " -> q " << int{q};
        // Stochastic rounding only ever picks one of the two neighbours.
        const int32_t floor = FloorDiv(delta, s);
        ASSERT_TRUE(q == floor || q == floor + 1)
            << "delta " << delta << ", scale " << scale << " -> q " << int{q};
      }
    }
  }
}

TEST(QuantizeStochasticS8Test, ExactWhenScaleIsOne) {
  std::mt19937 gen(52);
  for (int32_t delta = -127; delta <= 127; ++delta) {
    for (int i = 0; i < 20; ++i) {
      EXPECT_EQ(tinyfed_quantize_stochastic_s8(delta, 1, static_cast<uint32_t>(gen())), delta);
    }
    EXPECT_EQ(tinyfed_quantize_stochastic_s8(delta, 1, 0xFFFFFFFFu), delta);
  }
}

TEST(QuantizeStochasticS8Test, ExactMultiplesOfTheScaleNeverRound) {
  std::mt19937 gen(53);
  for (uint32_t scale : kScales) {
    const int32_t s = static_cast<int32_t>(scale);
    for (int32_t k = -127; k <= 127; ++k) {
      for (uint32_t random : {0u, 0xFFFFFFFFu, static_cast<uint32_t>(gen())}) {
        ASSERT_EQ(tinyfed_quantize_stochastic_s8(k * s, scale, random), k)
            << "delta " << k * s << ", scale " << scale;
      }
    }
  }
}

TEST(QuantizeStochasticS8Test, MeanOfManyDrawsEqualsDelta) {
  // q * scale is floor(delta / s) * s plus s with probability p = rem / s,
  // so its variance is s^2 p (1 - p) and the mean of N draws has standard
  // error s sqrt(p (1 - p) / N). Allow 5 standard errors (a false failure
  // has probability ~6e-7, and the seed is fixed so the outcome is
  // deterministic) plus s * 2^-32 for the bias of mapping a 32-bit draw to
  // [0, s). 5 SE is at most 5 * s * 0.5 / sqrt(N) ~ 0.011 s here, so a
  // round-up probability off by more than about 1% is caught.
  constexpr int kDraws = 50000;
  struct Case {
    int32_t delta;
    uint32_t scale;
  };
  const Case cases[] = {{1, 2},      {-1, 2},     {5, 3},       {-5, 3},
                        {100, 7},    {-100, 7},   {1, 517},     {-1, 517},
                        {300, 517},  {-300, 517}, {516, 517},   {65000, 517},
                        {-65000, 517}, {65659, 517}, {12345, 128}, {-12345, 128}};
  std::mt19937 gen(54);
  for (const Case& c : cases) {
    const int32_t s = static_cast<int32_t>(c.scale);
    const int32_t rem = c.delta - FloorDiv(c.delta, s) * s;
    const double p = static_cast<double>(rem) / s;
    const double standard_error = s * std::sqrt(p * (1 - p) / kDraws);
    const double tolerance = 5 * standard_error + s * std::ldexp(1.0, -32);
    double sum = 0;
    for (int i = 0; i < kDraws; ++i) {
      const int8_t q =
          tinyfed_quantize_stochastic_s8(c.delta, c.scale, static_cast<uint32_t>(gen()));
      sum += tinyfed_dequantize_s8(q, c.scale);
    }
    EXPECT_NEAR(sum / kDraws, c.delta, tolerance)
        << "delta " << c.delta << ", scale " << c.scale;
  }
}

TEST(DequantizeS8Test, IsExactProductForAllCodesAndScales) {
  for (uint32_t scale : kScales) {
    for (int q = -127; q <= 127; ++q) {
      EXPECT_EQ(tinyfed_dequantize_s8(static_cast<int8_t>(q), scale),
                static_cast<int64_t>(q) * scale)
          << "q " << q << ", scale " << scale;
    }
  }
  EXPECT_EQ(tinyfed_dequantize_s8(127, TINYFED_ROW_SCALE_MAX), 65659);
  EXPECT_EQ(tinyfed_dequantize_s8(-127, TINYFED_ROW_SCALE_MAX), -65659);
}

TEST(QuantizeS8Test, RowScaleThenQuantizeFitsEveryRowMaximum) {
  // The pipeline a device runs: scale from the row's largest |delta|, then
  // quantize; the largest delta itself must come back within one step.
  std::mt19937 gen(55);
  for (uint32_t max_abs = 0; max_abs <= 65535; max_abs += 7) {
    const uint32_t scale = tinyfed_row_scale_s8(max_abs);
    for (int32_t delta : {static_cast<int32_t>(max_abs), -static_cast<int32_t>(max_abs)}) {
      const int8_t q = tinyfed_quantize_stochastic_s8(delta, scale, static_cast<uint32_t>(gen()));
      ASSERT_LT(std::abs(tinyfed_dequantize_s8(q, scale) - delta),
                static_cast<int32_t>(scale))
          << "max_abs " << max_abs;
    }
  }
}

}  // namespace
