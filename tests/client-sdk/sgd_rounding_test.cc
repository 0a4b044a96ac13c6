// The SGD step's stochastic rounding into the int16 master weights is
// unbiased, tested through tinyfed_train() itself: the rounding train.c
// really performs (stochastic_step() and the portable kernel on the host;
// the Cortex-M4 assembly gives the same bytes, which
// tests/tools/cortex_m4_bitexact.sh pins), not a reference copy of it.
//
// The trick that makes the exact update known: one epoch of one batch
// holding one sample, from an all-zero head. Every logit is then exactly 0,
// so with two classes the softmax is exactly 1/2 each (Q15 16384) and the
// error of the labelled class is -1/2, of the other +1/2. The documented
// update (docs/numerics.md, tinyfed_step_scale in sdk_internal.h) is then
// a rational number per weight, computed here from the task's integers
// alone:
//   delta w[c][f] = -lr * err_c * real(x_f) / B            (in real units)
//                 = -L * M * e_c * (x_f - zp) / (B * 2^(62 - sh - fb))
// in master steps, with L the Q16 learning rate, M * 2^(sh - 31) the
// feature scale, fb the fraction bits and e_c = err_c in Q15; and for the
// bias  -L * e_c / (B * 2^(31 - fb)).
// A learning rate of 3 * 2^-16 keeps these between -2.5 and 2.5 master
// steps with all sorts of fractional parts, so round-to-nearest (or floor,
// or any deterministic rounding) is off by a tenth of a step or more on
// most weights, while stochastic rounding must match them on average.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <iostream>
#include <vector>

#include "sdk_test_support.h"

namespace tinyfed::testing {
namespace {

// floor(num / 2^e) for any sign, without relying on >> of negatives.
int64_t FloorShift(int64_t num, int e) {
  const int64_t den = int64_t{1} << e;
  int64_t q = num / den;
  if (num % den != 0 && num < 0) --q;
  return q;
}

// An exact rational num / 2^e, split into floor and fraction in [0, 1).
struct Exact {
  int64_t floor = 0;
  double frac = 0;  // exact: the remainder has fewer than 53 bits
  double value() const { return static_cast<double>(floor) + frac; }
};

Exact FromDyadic(int64_t num, int e) {
  Exact x;
  x.floor = FloorShift(num, e);
  x.frac = std::ldexp(static_cast<double>(num - x.floor * (int64_t{1} << e)), -e);
  return x;
}

TEST(SgdRounding, TrainedWeightsAverageTheExactStepOverSeeds) {
  // x_f - zp chosen to spread the fractional parts of the steps over
  // (0, 1), both below and above 1/2, plus a zero (no step at all) and a
  // negative feature.
  const int32_t kZeroPoint = -3;
  const std::vector<int32_t> offsets = {0, 5, 13, 21, 27, 37, 48, 61, 80, 99, 117, 130, -125};
  const uint32_t kFeatures = static_cast<uint32_t>(offsets.size());  // 13: a short last quad
  constexpr uint32_t kClasses = 2;

  TaskParams p;
  p.features = kFeatures;
  p.classes = kClasses;
  p.frac_bits = 14;
  p.feature_scale = 0.05;
  p.zero_point = kZeroPoint;
  p.epochs = 1;
  p.batch_size = 1;
  p.learning_rate = 3.0 / 65536.0;  // Q16 value 3
  const v1::RoundTask task = BuildTask(p);
  const uint64_t L = task.plan().learning_rate_q16();
  const int64_t M = task.model().spec().feature_quantization().scale_multiplier();
  const int sh = task.model().spec().feature_quantization().scale_shift();
  const int fb = static_cast<int>(task.model().spec().weight_frac_bits());
  const int64_t B = task.plan().batch_size();
  ASSERT_EQ(L, 3u);
  ASSERT_EQ(B, 1);  // so the division by B below is exact

  QuantizedDataset data;
  data.features = static_cast<int>(kFeatures);
  data.classes = kClasses;
  for (int32_t d : offsets) data.x.push_back(static_cast<int8_t>(kZeroPoint + d));
  data.y = {0};  // label 0: e_0 = -16384, e_1 = +16384

  // The exact steps, weights row-major then the two biases.
  const int32_t e[kClasses] = {-16384, 16384};
  std::vector<Exact> exact;
  for (uint32_t c = 0; c < kClasses; ++c) {
    for (int32_t d : offsets) {
      exact.push_back(FromDyadic(-static_cast<int64_t>(L) * M * e[c] * d, 62 - sh - fb));
    }
  }
  for (uint32_t c = 0; c < kClasses; ++c) {
    exact.push_back(FromDyadic(-static_cast<int64_t>(L) * e[c], 31 - fb));
  }
  // The test means something only if deterministic roundings miss by far
  // more than the tolerance below: fractions on both sides of 1/2, away
  // from 0 and 1.
  int below_half = 0, above_half = 0;
  for (const Exact& x : exact) {
    below_half += x.frac > 0.08 && x.frac < 0.45;
    above_half += x.frac > 0.55 && x.frac < 0.92;
    // The tolerance below relies on no fraction being close to 0 or 1.
    ASSERT_TRUE(x.frac == 0 || (x.frac >= 0.03 && x.frac <= 0.97)) << x.frac;
  }
  ASSERT_GE(below_half, 6);
  ASSERT_GE(above_half, 6);

  // 40,000 independent roundings of every value: each training's dither
  // stream is seeded from the plan seed, which changes per trial.
  constexpr int kTrials = 40000;
  const size_t n = exact.size();
  std::vector<int64_t> sum(n, 0);
  std::vector<int> ups(n, 0);
  Device dev("sgd-rounding", kFeatures, kClasses, 1);
  const tinyfed_dataset_t view = data.view();
  for (int t = 0; t < kTrials; ++t) {
    p.seed = 0x5eed0000u + static_cast<uint32_t>(t);
    ASSERT_EQ(dev.Load(BuildTask(p)), TINYFED_OK) << tinyfed_last_error_message(dev.ctx());
    ASSERT_EQ(tinyfed_train(dev.ctx(), &view), TINYFED_OK);
    tinyfed_head_view_t g, l;
    ASSERT_EQ(tinyfed_global_head(dev.ctx(), &g), TINYFED_OK);
    ASSERT_EQ(tinyfed_local_head(dev.ctx(), &l), TINYFED_OK);
    for (size_t i = 0; i < n; ++i) {
      const size_t w = kClasses * kFeatures;
      const int32_t moved = i < w ? l.weights[i] - g.weights[i] : l.bias[i - w] - g.bias[i - w];
      // Stochastic rounding never leaves the two neighbours of the exact
      // value (and stays put when the step is whole).
      if (moved != exact[i].floor && !(exact[i].frac > 0 && moved == exact[i].floor + 1)) {
        FAIL() << "value " << i << " moved " << moved << " for an exact step of "
               << exact[i].value() << " (trial " << t << ")";
      }
      sum[i] += moved;
      ups[i] += moved != exact[i].floor;
    }
  }

  double worst_z = 0;
  for (size_t i = 0; i < n; ++i) {
    const double mean = static_cast<double>(sum[i]) / kTrials;
    const double frac = exact[i].frac;
    if (frac == 0) {
      EXPECT_EQ(mean, exact[i].value()) << "value " << i << ": a whole step must be exact";
      continue;
    }
    // Each trial rounds up with probability frac, so the mean has standard
    // error sqrt(frac (1 - frac) / T) (at most 0.0025 here). Six standard
    // errors: a false failure has probability about 2e-9 per value (normal
    // approximation of a binomial with T = 40,000 and frac in
    // [0.03, 0.97]), below 1e-7 for all 28 values; and the run is seeded,
    // so it passes or fails the same way every time. The 1e-6 covers the
    // step scale's 31-bit mantissa (2^-31 relative, below 1.2e-9 steps
    // here) and the dither's 32 bits (2^-32): both far below one standard
    // error.
    const double se = std::sqrt(frac * (1 - frac) / kTrials);
    const double z = (mean - exact[i].value()) / se;
    worst_z = std::max(worst_z, std::abs(z));
    EXPECT_LE(std::abs(mean - exact[i].value()), 6 * se + 1e-6)
        << "value " << i << ": mean step " << mean << ", exact " << exact[i].value();
    // Not a deterministic rounding: both neighbours occur. With frac >=
    // 0.03 the chance of missing one in 40,000 trials is below 1e-500.
    EXPECT_GT(ups[i], 0) << "value " << i << " never rounded up (exact " << exact[i].value() << ")";
    EXPECT_LT(ups[i], kTrials) << "value " << i << " never rounded down (exact "
                               << exact[i].value() << ")";
  }
  std::cout << "SGD stochastic rounding over " << kTrials << " seeds: worst |z| " << worst_z
            << " of " << n << " values\n";
}

}  // namespace
}  // namespace tinyfed::testing
