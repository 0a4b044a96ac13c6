#include "strategy.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <random>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "aggregator.h"
#include "head.h"
#include "reference_fedavg.h"
#include "server_test_support.h"
#include "update_validation.h"

namespace tinyfed::server {
namespace {

using testing::FixChecksum;
using testing::MakeSpec;
using testing::MakeUpdate;

using uint128 = unsigned __int128;

constexpr uint32_t kLrOne = 65536;  // 1.0 in Q16.16
constexpr double kStep = 65536.0;   // units of 2^-16 per master step

const StrategyKind kAllKinds[] = {StrategyKind::kFedAvg, StrategyKind::kTrimmedMean,
                                  StrategyKind::kMedian, StrategyKind::kFedAvgM,
                                  StrategyKind::kFedAdam};

// An update with explicit contents, checked against the validator so that
// AggregateRound's REQUIRES holds.
v1::Update ExplicitUpdate(const v1::HeadSpec& spec, uint32_t sample_count,
                          const std::vector<uint32_t>& scales, const std::vector<int8_t>& weights,
                          const std::vector<int8_t>& bias, uint32_t loss_q16 = 0) {
  v1::Update u;
  u.set_round(1);
  u.set_device_id("dev-explicit");
  u.set_base_version(1);
  u.set_sample_count(sample_count);
  u.set_weight_delta(std::string(weights.begin(), weights.end()));
  u.set_bias_delta(std::string(bias.begin(), bias.end()));
  for (uint32_t s : scales) u.add_row_scales(s);
  u.set_local_loss_q16(loss_q16);
  FixChecksum(&u);
  EXPECT_TRUE(ValidateUpdate(u, spec).ok()) << ValidateUpdate(u, spec);
  return u;
}

// Random valid updates with random sample counts and a random largest row
// scale per update, so that norms differ and a norm bound clips some.
std::vector<v1::Update> RandomUpdates(const v1::HeadSpec& spec, int count, std::mt19937& rng) {
  std::uniform_int_distribution<uint32_t> samples(1, 300);
  std::uniform_int_distribution<uint32_t> max_scale(1, 517);
  std::vector<v1::Update> out;
  for (int i = 0; i < count; ++i) {
    out.push_back(MakeUpdate(spec, 7, "dev-" + std::to_string(i), "tok", 3, samples(rng), rng,
                             max_scale(rng)));
  }
  return out;
}

std::vector<const v1::Update*> Pointers(const std::vector<v1::Update>& updates) {
  std::vector<const v1::Update*> out;
  for (const v1::Update& u : updates) out.push_back(&u);
  return out;
}

Head RandomHead(uint32_t features, uint32_t classes, int bound, std::mt19937& rng) {
  std::uniform_int_distribution<int> value(-bound, bound);
  Head h = Head::Zeros(features, classes);
  for (int16_t& w : h.weights) w = static_cast<int16_t>(value(rng));
  for (int16_t& b : h.bias) b = static_cast<int16_t>(value(rng));
  return h;
}

// A state as a previous round could leave it: v within what real deltas
// produce (|u| < 2^32 units, so v < 2^64); |m| up to 4096 master steps,
// small enough that one more step does not saturate the head.
OptimizerState RandomState(size_t values, std::mt19937_64& rng) {
  OptimizerState s;
  std::uniform_int_distribution<int64_t> m(-(int64_t{1} << 28), int64_t{1} << 28);
  std::uniform_int_distribution<uint64_t> v(0, uint64_t{1} << 62);
  for (size_t j = 0; j < values; ++j) {
    s.momentum.push_back(m(rng));
    s.second_moment.push_back(v(rng));
  }
  return s;
}

StrategyParams ParamsFor(StrategyKind kind) {
  StrategyParams p;
  p.kind = kind;
  p.trim_fraction_ppm = 200000;
  p.server_lr_q16 = 80000;  // about 1.22: lr != 1 exercises the scaling
  p.momentum_q16 = 58982;   // about 0.9
  p.second_moment_decay_q16 = 64880;  // about 0.99
  p.adam_step = 41u * 65536;          // 41 master steps: 0.01 of a unit at 12 fraction bits
  p.adam_tau = 4u * 65536 + 123;      // about 0.001 of a unit
  return p;
}

int16_t ValueAt(const Head& h, size_t j) {
  return j < h.weights.size() ? h.weights[j] : h.bias[j - h.weights.size()];
}

int8_t DeltaAt(const v1::Update& u, size_t j) {
  const size_t weight_count = u.weight_delta().size();
  return j < weight_count ? static_cast<int8_t>(u.weight_delta()[j])
                          : static_cast<int8_t>(u.bias_delta()[j - weight_count]);
}

uint32_t RowOf(size_t j, uint32_t features, uint32_t classes) {
  const size_t weight_count = static_cast<size_t>(features) * classes;
  return static_cast<uint32_t>(j < weight_count ? j / features : j - weight_count);
}

// --- Order independence ------------------------------------------------

TEST(StrategyTest, EveryStrategyIsAFunctionOfTheSetNotTheOrder) {
  const v1::HeadSpec spec = MakeSpec(8, 3);
  std::mt19937 rng(15);
  std::mt19937_64 rng64(15);
  const std::vector<v1::Update> updates = RandomUpdates(spec, 60, rng);
  const Head base = RandomHead(8, 3, 2000, rng);
  const OptimizerState state = RandomState(27, rng64);
  for (StrategyKind kind : kAllKinds) {
    SCOPED_TRACE(std::string(StrategyName(kind)));
    StrategyParams p = ParamsFor(kind);
    // The median norm as the bound clips about half of the updates; the
    // weight cap at the median sample count caps about half.
    p.bounds = {kLrOne, 0, kLrOne};
    std::vector<const v1::Update*> order = Pointers(updates);
    const absl::StatusOr<RoundAggregate> first = AggregateRound(p, base, state, order, {});
    ASSERT_TRUE(first.ok()) << first.status();
    EXPECT_GT(first->clipped, 10u);
    EXPECT_LT(first->clipped, 50u);
    EXPECT_NE(first->next, base);
    for (int trial = 0; trial < 100; ++trial) {
      std::shuffle(order.begin(), order.end(), rng);
      const absl::StatusOr<RoundAggregate> again = AggregateRound(p, base, state, order, {});
      ASSERT_TRUE(again.ok());
      ASSERT_EQ(again->next, first->next) << "trial " << trial;
      ASSERT_EQ(again->state, first->state) << "trial " << trial;
      ASSERT_EQ(again->mean_loss_q16, first->mean_loss_q16);
      ASSERT_EQ(again->clipped, first->clipped);
      ASSERT_EQ(again->capped, first->capped);
    }
  }
}

// --- FedAvg is today's rule ---------------------------------------------

TEST(StrategyTest, FedAvgEqualsTheReferenceFedAvgBitForBit) {
  const v1::HeadSpec spec = MakeSpec(64, 10);
  std::mt19937 rng(3);
  for (int trial = 0; trial < 5; ++trial) {
    const std::vector<v1::Update> updates = RandomUpdates(spec, 40, rng);
    Head base = RandomHead(64, 10, 3000, rng);
    v1::ModelVersion base_version;
    *base_version.mutable_spec() = spec;
    StoreHead(base, &base_version);
    const uint32_t lr = 30000 + 20000 * static_cast<uint32_t>(trial);
    StrategyParams p;
    p.server_lr_q16 = lr;
    p.bounds = {3 * kLrOne, 0, 2 * kLrOne};
    const absl::StatusOr<RoundAggregate> got = AggregateRound(p, base, {}, Pointers(updates), {});
    ASSERT_TRUE(got.ok()) << got.status();
    const testing::ReferenceResult want =
        testing::ReferenceFedAvg(base_version, updates, lr, {3 * kLrOne, 0, 2 * kLrOne});
    EXPECT_EQ(got->next.weights, want.weights);
    EXPECT_EQ(got->next.bias, want.bias);
    EXPECT_EQ(got->capped, want.capped);
    EXPECT_EQ(got->clipped, want.clipped);
    EXPECT_EQ(got->samples, want.samples);
    EXPECT_EQ(got->mean_loss_q16, want.mean_local_loss_q16);
    EXPECT_TRUE(got->state.momentum.empty());
  }
}

TEST(StrategyTest, FedAvgNoiseIsAddedToTheSumBeforeTheDivision) {
  const v1::HeadSpec spec = MakeSpec(1, 2);
  // Two updates of weight 1 (uniform), deltas 1 and 2 master steps on
  // value 0, zero elsewhere: T_0 = 3 * 2^16, W = 2.
  const std::vector<v1::Update> updates = {
      ExplicitUpdate(spec, 5, {1, 1}, {1, 0}, {0, 0}),
      ExplicitUpdate(spec, 9, {1, 1}, {2, 0}, {0, 0})};
  StrategyParams p;
  p.uniform_weights = true;
  const Head base = Head::Zeros(1, 2);
  // Value 0: (3 * 2^16 + 2^16) / 2 = 2 master steps exactly.
  // Value 1: 2^16 / 2 = a half step: a tie, to the even 0.
  // Value 2: 3 * 2^16 / 2 = 1.5 steps: a tie, to the even 2.
  // Value 3: -(3 * 2^16) / 2: -1.5, to -2.
  const std::vector<int64_t> noise = {65536, 65536, 3 * 65536, -3 * 65536};
  const absl::StatusOr<RoundAggregate> got = AggregateRound(p, base, {}, Pointers(updates), noise);
  ASSERT_TRUE(got.ok()) << got.status();
  EXPECT_EQ(got->next.weights, (std::vector<int16_t>{2, 0}));
  EXPECT_EQ(got->next.bias, (std::vector<int16_t>{2, -2}));
  // Uniform weights: the mean of the deltas, not weighted by 5 and 9.
  const absl::StatusOr<RoundAggregate> plain = AggregateRound(p, base, {}, Pointers(updates), {});
  ASSERT_TRUE(plain.ok());
  EXPECT_EQ(plain->next.weights[0], 2);  // (1 + 2) / 2 = 1.5 -> 2 (weighted: 23/14 -> 2 also)
  EXPECT_EQ(plain->next.weights[1], 0);
  // Noise of the wrong length, or for a robust strategy, is refused.
  EXPECT_EQ(AggregateRound(p, base, {}, Pointers(updates), {1, 2, 3}).status().code(),
            absl::StatusCode::kInvalidArgument);
  p.kind = StrategyKind::kMedian;
  EXPECT_EQ(AggregateRound(p, base, {}, Pointers(updates), noise).status().code(),
            absl::StatusCode::kInvalidArgument);
}

// --- Agreement with a double-precision reference --------------------------

// Update i's value j in master steps, as doubles, with the norm bound
// `bound` (0: none) applied as the real-valued factor bound / ceil(norm).
std::vector<std::vector<double>> RealDeltas(const std::vector<v1::Update>& updates,
                                            uint32_t features, uint32_t classes, double bound) {
  const size_t values = static_cast<size_t>(features) * classes + classes;
  std::vector<std::vector<double>> out;
  for (const v1::Update& u : updates) {
    std::vector<double> d(values);
    double squares = 0;
    for (size_t j = 0; j < values; ++j) {
      d[j] = static_cast<double>(u.row_scales(static_cast<int>(RowOf(j, features, classes)))) *
             DeltaAt(u, j);
      squares += d[j] * d[j];
    }
    // squares is an exact integer below 2^53, so sqrt and ceil are exact
    // for perfect squares and correctly rounded otherwise.
    if (bound > 0 && squares > bound * bound) {
      const double factor = bound / std::ceil(std::sqrt(squares));
      for (double& x : d) x *= factor;
    }
    out.push_back(d);
  }
  return out;
}

TEST(StrategyTest, EveryStrategyAgreesWithADoubleReferenceWithinItsRoundings) {
  const uint32_t features = 16;
  const uint32_t classes = 4;
  const size_t values = features * classes + classes;
  const v1::HeadSpec spec = MakeSpec(features, classes);
  std::mt19937 rng(7);
  std::mt19937_64 rng64(7);
  for (int trial = 0; trial < 4; ++trial) {
    const std::vector<v1::Update> updates = RandomUpdates(spec, 41 + trial, rng);
    const Head base = RandomHead(features, classes, 1000, rng);
    const OptimizerState state = RandomState(values, rng64);
    const uint64_t bound = 20000;  // master steps: clips the updates with large scales
    const std::vector<std::vector<double>> x = RealDeltas(updates, features, classes, bound);
    const size_t k = updates.size();
    for (StrategyKind kind : kAllKinds) {
      SCOPED_TRACE(std::string(StrategyName(kind)) + " trial " + std::to_string(trial));
      StrategyParams p = ParamsFor(kind);
      p.bounds.norm_bound = bound;
      const absl::StatusOr<RoundAggregate> got = AggregateRound(p, base, state, Pointers(updates), {});
      ASSERT_TRUE(got.ok()) << got.status();
      ASSERT_GT(got->clipped, 0u);
      const double lr = p.server_lr_q16 / 65536.0;
      const double b1 = p.momentum_q16 / 65536.0;
      const double b2 = p.second_moment_decay_q16 / 65536.0;
      // Each clipped value is rounded once to 2^-16 of a step: a mean or
      // order statistic of them is off by at most half a unit.
      const double clip_err = 0.5 / kStep;
      // Double arithmetic over at most a few hundred terms below 2^26:
      // relative 2^-52 each, far below this.
      const double fp = 1e-6;
      for (size_t j = 0; j < values; ++j) {
        std::vector<double> col;
        double weighted = 0;
        double weight = 0;
        for (size_t i = 0; i < k; ++i) {
          col.push_back(x[i][j]);
          weighted += updates[i].sample_count() * x[i][j];
          weight += updates[i].sample_count();
        }
        std::sort(col.begin(), col.end());
        const double mean = weighted / weight;
        const double g = ValueAt(base, j);
        double want = 0;
        double tolerance = 0;
        switch (kind) {
          case StrategyKind::kFedAvg:
            // One final rounding (half a step) after the clip roundings.
            want = g + lr * mean;
            tolerance = 0.5 + lr * clip_err + fp;
            break;
          case StrategyKind::kTrimmedMean: {
            const size_t t = static_cast<size_t>(uint64_t{p.trim_fraction_ppm} * k / 1000000);
            double sum = 0;
            for (size_t i = t; i < k - t; ++i) sum += col[i];
            want = g + lr * sum / static_cast<double>(k - 2 * t);
            tolerance = 0.5 + lr * clip_err + fp;
            break;
          }
          case StrategyKind::kMedian:
            want = g + lr * (col[(k - 1) / 2] + col[k / 2]) / 2;
            tolerance = 0.5 + lr * clip_err + fp;
            break;
          case StrategyKind::kFedAvgM: {
            // u is rounded to 2^-16 (half a unit) after the clip error, the
            // decayed momentum too (half a unit): 1.5 units, times lr.
            const double m = b1 * (state.momentum[j] / kStep) + mean;
            want = g + lr * m;
            tolerance = 0.5 + lr * 1.5 / kStep + fp;
            EXPECT_NEAR(got->state.momentum[j] / kStep, m, 1.5 / kStep + fp);
            break;
          }
          case StrategyKind::kFedAdam: {
            const double m = b1 * (state.momentum[j] / kStep) + (1 - b1) * mean;
            const double v = b2 * (static_cast<double>(state.second_moment[j]) / (kStep * kStep)) +
                             (1 - b2) * mean * mean;
            const double eta = static_cast<double>(p.adam_step) / kStep;
            const double tau = static_cast<double>(p.adam_tau) / kStep;
            // Error of u: the clip (half a unit) and its rounding (half).
            const double err_u = 1.0 / kStep;
            // m: (1 - b1) err_u and its own rounding.
            const double err_m = (1 - b1) * err_u + 0.5 / kStep;
            // v: (1 - b2) |u^2 - u'^2| <= (1 - b2)(2|u| err_u + err_u^2),
            // its rounding (half of 2^-32), v's double rounding (relative).
            const double err_v = (1 - b2) * (2 * std::fabs(mean) * err_u + err_u * err_u) +
                                 0.5 / (kStep * kStep) + v * 1e-12;
            // |sqrt(a) - sqrt(b)| <= sqrt(|a - b|), plus the floor (1 unit).
            const double err_d = std::sqrt(err_v) + 1.0 / kStep;
            const double d = std::sqrt(v) + tau;
            // eta m / d moves by at most eta (err_m / d' + |m| err_d / (d d'))
            // for d' = d - err_d, the smallest divisor the errors allow.
            const double d_low = d - err_d;
            want = g + eta * m / d;
            tolerance = 0.5 + eta * (err_m / d_low + (std::fabs(m) + err_m) * err_d / (d * d_low)) + fp;
            // The bound must say something: well under a step for these
            // parameters (tau is about 4 steps, so d > 4).
            EXPECT_LT(tolerance, 1.0);
            EXPECT_NEAR(got->state.momentum[j] / kStep, m, err_m + fp);
            EXPECT_NEAR(static_cast<double>(got->state.second_moment[j]) / (kStep * kStep), v,
                        err_v + fp);
            break;
          }
        }
        ASSERT_GT(want, -32768) << "saturation would hide the rule";
        ASSERT_LT(want, 32767) << "saturation would hide the rule";
        EXPECT_NEAR(ValueAt(got->next, j), want, tolerance) << "value " << j;
      }
    }
  }
}

// --- Exact hand-computed cases -------------------------------------------

// A 1x2 head has four values: weights 0, 1 then bias 0, 1; the updates
// below use scale 1, so each int8 is its delta in master steps.
std::vector<v1::Update> UpdatesFromColumns(const v1::HeadSpec& spec,
                                           const std::vector<std::vector<int8_t>>& per_update,
                                           const std::vector<uint32_t>& samples) {
  std::vector<v1::Update> out;
  for (size_t i = 0; i < per_update.size(); ++i) {
    const std::vector<int8_t>& d = per_update[i];
    out.push_back(ExplicitUpdate(spec, samples[i], {1, 1}, {d[0], d[1]}, {d[2], d[3]}));
  }
  return out;
}

std::vector<int16_t> AllValues(const Head& h) {
  std::vector<int16_t> v = h.weights;
  v.insert(v.end(), h.bias.begin(), h.bias.end());
  return v;
}

TEST(StrategyTest, MedianOfThreeIsTheMiddleValue) {
  const v1::HeadSpec spec = MakeSpec(1, 2);
  const auto updates = UpdatesFromColumns(
      spec, {{5, -3, 0, 7}, {-3, -4, 0, 9}, {100, 20, 0, 8}}, {1, 1000, 1});
  StrategyParams p;
  p.kind = StrategyKind::kMedian;
  Head base = Head::Zeros(1, 2);
  base.weights[0] = 10;
  const absl::StatusOr<RoundAggregate> got = AggregateRound(p, base, {}, Pointers(updates), {});
  ASSERT_TRUE(got.ok()) << got.status();
  EXPECT_EQ(AllValues(got->next), (std::vector<int16_t>{15, -3, 0, 8}));
  EXPECT_EQ(got->samples, 1002u);
}

TEST(StrategyTest, EvenMedianRoundsTheHalfSumOnceHalfToEven) {
  const v1::HeadSpec spec = MakeSpec(1, 2);
  // Value 0: middles 1, 2 -> 1.5 -> 2.   Value 1: middles 2, 3 -> 2.5 -> 2.
  // Value 2: middles -2, -1 -> -1.5 -> -2. Value 3: middles 4, 6 -> 5.
  const auto updates = UpdatesFromColumns(
      spec, {{0, 2, -100, 6}, {100, 3, -2, 4}, {1, -50, -1, 127}, {2, 90, 7, -127}},
      {1, 1, 1, 1});
  StrategyParams p;
  p.kind = StrategyKind::kMedian;
  const absl::StatusOr<RoundAggregate> got =
      AggregateRound(p, Head::Zeros(1, 2), {}, Pointers(updates), {});
  ASSERT_TRUE(got.ok()) << got.status();
  EXPECT_EQ(AllValues(got->next), (std::vector<int16_t>{2, 2, -2, 5}));
  // With lr 0.5 the half-sums are halved before the one rounding: 0.75 -> 1,
  // 1.25 -> 1, -0.75 -> -1, 2.5 -> 2 (a tie, to even).
  p.server_lr_q16 = kLrOne / 2;
  const absl::StatusOr<RoundAggregate> half =
      AggregateRound(p, Head::Zeros(1, 2), {}, Pointers(updates), {});
  ASSERT_TRUE(half.ok());
  EXPECT_EQ(AllValues(half->next), (std::vector<int16_t>{1, 1, -1, 2}));
}

TEST(StrategyTest, TrimmedMeanWithNothingTrimmedIsTheUnweightedMean) {
  const v1::HeadSpec spec = MakeSpec(1, 2);
  // 0.3 of 3 updates is 0.9: nothing is trimmed.
  const auto updates =
      UpdatesFromColumns(spec, {{1, 3, -1, 0}, {2, 3, -1, 0}, {4, 4, -2, 1}}, {1, 100, 1000});
  StrategyParams p;
  p.kind = StrategyKind::kTrimmedMean;
  p.trim_fraction_ppm = 300000;
  const absl::StatusOr<RoundAggregate> got =
      AggregateRound(p, Head::Zeros(1, 2), {}, Pointers(updates), {});
  ASSERT_TRUE(got.ok()) << got.status();
  EXPECT_EQ(got->trimmed, 0u);
  // 7/3 -> 2 (weighted by samples it would be 4201/1101 -> 4); 10/3 -> 3;
  // -4/3 -> -1; 1/3 -> 0.
  EXPECT_EQ(AllValues(got->next), (std::vector<int16_t>{2, 3, -1, 0}));
}

TEST(StrategyTest, TrimmedMeanNearOneHalfLeavesOneOrTwoValues) {
  const v1::HeadSpec spec = MakeSpec(1, 2);
  StrategyParams p;
  p.kind = StrategyKind::kTrimmedMean;
  p.trim_fraction_ppm = 499999;
  // k = 5: t = floor(2.499995) = 2, the middle value is left.
  const auto five = UpdatesFromColumns(
      spec, {{-100, 0, 0, 0}, {1, 0, 0, 0}, {7, 0, 0, 0}, {8, 0, 0, 0}, {50, 0, 0, 0}},
      {1, 1, 1, 1, 1});
  const absl::StatusOr<RoundAggregate> got5 =
      AggregateRound(p, Head::Zeros(1, 2), {}, Pointers(five), {});
  ASSERT_TRUE(got5.ok());
  EXPECT_EQ(got5->trimmed, 2u);
  EXPECT_EQ(got5->next.weights[0], 7);
  // k = 4: t = floor(1.999996) = 1, two values left: (3 + 4) / 2 = 3.5 -> 4,
  // and (3 + 6) / 2 = 4.5 -> 4 (ties to even).
  const auto four = UpdatesFromColumns(
      spec, {{-100, 6, 0, 0}, {3, 3, 0, 0}, {4, -9, 0, 0}, {50, 100, 0, 0}}, {1, 1, 1, 1});
  const absl::StatusOr<RoundAggregate> got4 =
      AggregateRound(p, Head::Zeros(1, 2), {}, Pointers(four), {});
  ASSERT_TRUE(got4.ok());
  EXPECT_EQ(got4->trimmed, 1u);
  EXPECT_EQ(got4->next.weights[0], 4);
  EXPECT_EQ(got4->next.weights[1], 4);
}

// --- Large rounds against an exact sorting reference ------------------------

// round_half_even(num / den) written for the test: floor, then compare twice
// the remainder with den. REQUIRES: den > 0.
__int128 RoundHalfEven(__int128 num, __int128 den) {
  __int128 q = num / den;
  __int128 r = num % den;
  if (r < 0) {
    q -= 1;
    r += den;
  }
  if (2 * r > den || (2 * r == den && q % 2 != 0)) q += 1;
  return q;
}

// The robust rules of strategy.h by sorting every value's k deltas (no
// bounds, so x_ij = s * q * 2^16 exactly).
std::vector<int16_t> SortingReference(const StrategyParams& p, const Head& base,
                                      const std::vector<v1::Update>& updates) {
  const size_t k = updates.size();
  const size_t values = base.weights.size() + base.bias.size();
  std::vector<int16_t> out;
  for (size_t j = 0; j < values; ++j) {
    std::vector<int64_t> col;
    for (const v1::Update& u : updates) {
      col.push_back(int64_t{u.row_scales(static_cast<int>(RowOf(j, base.features, base.classes)))} *
                    DeltaAt(u, j) * 65536);
    }
    std::sort(col.begin(), col.end());
    __int128 num = 0;
    __int128 den = 0;
    if (p.kind == StrategyKind::kMedian) {
      num = __int128{p.server_lr_q16} * (col[(k - 1) / 2] + col[k / 2]);
      den = __int128{2} << 32;
    } else {
      const size_t t = uint64_t{p.trim_fraction_ppm} * k / 1000000;
      for (size_t i = t; i < k - t; ++i) num += col[i];
      num *= p.server_lr_q16;
      den = static_cast<__int128>(k - 2 * t) << 32;
    }
    const __int128 v = ValueAt(base, j) + RoundHalfEven(num, den);
    out.push_back(static_cast<int16_t>(std::clamp<__int128>(v, -32768, 32767)));
  }
  return out;
}

// Median and trimmed mean (several betas) of a features x classes head
// against SortingReference, on `k` random updates and on k - 1 updates of
// few distinct values (most of a value's updates tie), each set also less
// one update (the other parity of k).
void ExpectRobustStrategiesEqualTheSortingReference(uint32_t features, uint32_t classes,
                                                    int k) {
  const v1::HeadSpec spec = MakeSpec(features, classes);
  std::mt19937 rng(1000);
  std::vector<v1::Update> wide = RandomUpdates(spec, k, rng);
  std::vector<v1::Update> ties;
  std::uniform_int_distribution<int> small(-2, 2);
  for (int i = 0; i < k - 1; ++i) {
    std::vector<int8_t> w(features * classes), b(classes);
    for (int8_t& x : w) x = static_cast<int8_t>(small(rng));
    for (int8_t& x : b) x = static_cast<int8_t>(small(rng));
    ties.push_back(ExplicitUpdate(spec, 1, std::vector<uint32_t>(classes, 1), w, b));
  }
  const Head base = RandomHead(features, classes, 100, rng);
  for (const std::vector<v1::Update>* set : {&wide, &ties}) {
    for (StrategyKind kind : {StrategyKind::kMedian, StrategyKind::kTrimmedMean}) {
      for (uint32_t ppm : {0u, 1000u, 250000u, 499999u}) {
        if (kind == StrategyKind::kMedian && ppm != 0) continue;
        SCOPED_TRACE(std::string(StrategyName(kind)) + " ppm " + std::to_string(ppm) + " k " +
                     std::to_string(set->size()));
        StrategyParams p;
        p.kind = kind;
        p.trim_fraction_ppm = ppm;
        p.server_lr_q16 = 70001;
        const std::vector<v1::Update> less_one(set->begin(), set->end() - 1);
        for (const std::vector<v1::Update>* s : {set, &less_one}) {
          const absl::StatusOr<RoundAggregate> got = AggregateRound(p, base, {}, Pointers(*s), {});
          ASSERT_TRUE(got.ok()) << got.status();
          EXPECT_EQ(AllValues(got->next), SortingReference(p, base, *s));
        }
      }
    }
  }
}

TEST(StrategyTest, RobustStrategiesEqualASortingReferenceOnLargeRounds) {
  ExpectRobustStrategiesEqualTheSortingReference(16, 4, 1001);
}

// A 64x10 head: stripes of values that span weights and bias, and both
// threads' halves.
TEST(StrategyTest, RobustStrategiesEqualASortingReferenceOnWideHeads) {
  ExpectRobustStrategiesEqualTheSortingReference(64, 10, 301);
}

// --- Attack resistance ----------------------------------------------------

TEST(StrategyTest, RobustStrategiesResistAThirdOfLargestOppositeUpdates) {
  const uint32_t features = 8;
  const uint32_t classes = 3;
  const size_t values = features * classes + classes;
  const v1::HeadSpec spec = MakeSpec(features, classes);
  std::mt19937 rng(70);
  std::uniform_int_distribution<int> direction(-20, 20);
  std::uniform_int_distribution<int> jitter(-3, 3);
  std::vector<int> d(values);
  for (int& x : d) {
    do x = direction(rng);
    while (std::abs(x) < 5);
  }
  std::vector<v1::Update> updates;
  std::vector<double> lowest(values, 1e9), highest(values, -1e9), mean(values, 0);
  for (int i = 0; i < 70; ++i) {
    std::vector<int8_t> q(values);
    for (size_t j = 0; j < values; ++j) {
      q[j] = static_cast<int8_t>(d[j] + jitter(rng));
      const double delta = 100.0 * q[j];
      lowest[j] = std::min(lowest[j], delta);
      highest[j] = std::max(highest[j], delta);
      mean[j] += delta / 70;
    }
    updates.push_back(ExplicitUpdate(spec, 10, std::vector<uint32_t>(classes, 100),
                                     {q.begin(), q.begin() + features * classes},
                                     {q.begin() + features * classes, q.end()}));
  }
  // Attackers: the largest legal delta against the direction, claiming many
  // samples.
  for (int i = 0; i < 30; ++i) {
    std::vector<int8_t> q(values);
    for (size_t j = 0; j < values; ++j) q[j] = static_cast<int8_t>(d[j] > 0 ? -127 : 127);
    updates.push_back(ExplicitUpdate(spec, 1000, std::vector<uint32_t>(classes, 517),
                                     {q.begin(), q.begin() + features * classes},
                                     {q.begin() + features * classes, q.end()}));
  }
  std::shuffle(updates.begin(), updates.end(), rng);
  const Head base = Head::Zeros(features, classes);
  for (StrategyKind kind : {StrategyKind::kMedian, StrategyKind::kTrimmedMean}) {
    SCOPED_TRACE(std::string(StrategyName(kind)));
    StrategyParams p;
    p.kind = kind;
    p.trim_fraction_ppm = 300000;
    const absl::StatusOr<RoundAggregate> got = AggregateRound(p, base, {}, Pointers(updates), {});
    ASSERT_TRUE(got.ok()) << got.status();
    for (size_t j = 0; j < values; ++j) {
      // With 30 of 100 at one extreme, the median and the mean of the
      // middle 40 are order statistics or means of honest values only:
      // within the honest range, up to the final rounding (half a step).
      EXPECT_GE(ValueAt(got->next, j), lowest[j] - 0.5) << j;
      EXPECT_LE(ValueAt(got->next, j), highest[j] + 0.5) << j;
    }
  }
  StrategyParams fedavg;
  const absl::StatusOr<RoundAggregate> dragged =
      AggregateRound(fedavg, base, {}, Pointers(updates), {});
  ASSERT_TRUE(dragged.ok());
  for (size_t j = 0; j < values; ++j) {
    // Pulled to the attackers' side of zero, beyond every honest value.
    EXPECT_LT(ValueAt(dragged->next, j) * d[j], 0) << j;
    EXPECT_FALSE(ValueAt(dragged->next, j) >= lowest[j] && ValueAt(dragged->next, j) <= highest[j]);
  }
}

// --- fedavgm with beta1 = 0 against fedavg ----------------------------------

TEST(StrategyTest, FedAvgMWithoutMomentumIsFedAvgRoundedTwice) {
  const v1::HeadSpec spec = MakeSpec(1, 2);
  // Three updates of weight 1, value 0's deltas 1, 0, 0: T = 2^16, W = 3.
  // fedavg: rhe(lr * 2^16 / (3 * 2^32)); with lr = 3 * 2^15 + 1 that is
  // rhe(98305 / 196608 = 0.500005) = 1. fedavgm: u = rhe(65536 / 3) =
  // 21845, then rhe(98305 * 21845 / 2^32 = 2147472725 / 2^32 < 1/2) = 0.
  const auto updates = UpdatesFromColumns(
      spec, {{1, 3, 3, 2}, {0, 3, 3, 0}, {0, 3, 3, 0}}, {1, 1, 1});
  StrategyParams avg;
  avg.server_lr_q16 = 3 * 32768 + 1;
  StrategyParams avgm = avg;
  avgm.kind = StrategyKind::kFedAvgM;
  const Head base = Head::Zeros(1, 2);
  const absl::StatusOr<RoundAggregate> a = AggregateRound(avg, base, {}, Pointers(updates), {});
  const absl::StatusOr<RoundAggregate> m = AggregateRound(avgm, base, {}, Pointers(updates), {});
  ASSERT_TRUE(a.ok() && m.ok());
  EXPECT_EQ(a->next.weights[0], 1);
  EXPECT_EQ(m->next.weights[0], 0);
  EXPECT_EQ(m->state.momentum[0], 21845);
  // u of the last value: 2 * 2^16 / 3 = 43690.67, rounded to the nearest.
  EXPECT_EQ(m->state.momentum[3], 43691);
  // Where W divides T (value 1: equal deltas 3; 3 * 1.5000153 = 4.50005
  // -> 5), both round the same exact value once.
  EXPECT_EQ(a->next.weights[1], 5);
  EXPECT_EQ(m->next.weights[1], 5);
  EXPECT_EQ(m->next.bias, a->next.bias);

  // On random sets: within one step everywhere, equal for a single update.
  std::mt19937 rng(1);
  const v1::HeadSpec big = MakeSpec(16, 4);
  for (int trial = 0; trial < 20; ++trial) {
    const std::vector<v1::Update> set = RandomUpdates(big, trial == 0 ? 1 : 30, rng);
    const Head h = RandomHead(16, 4, 1000, rng);
    avg.server_lr_q16 = avgm.server_lr_q16 = 40000 + 1000 * static_cast<uint32_t>(trial);
    const absl::StatusOr<RoundAggregate> x = AggregateRound(avg, h, {}, Pointers(set), {});
    const absl::StatusOr<RoundAggregate> y = AggregateRound(avgm, h, {}, Pointers(set), {});
    ASSERT_TRUE(x.ok() && y.ok());
    for (size_t j = 0; j < 68; ++j) {
      if (trial == 0) {
        ASSERT_EQ(ValueAt(x->next, j), ValueAt(y->next, j)) << j;
      } else {
        ASSERT_LE(std::abs(ValueAt(x->next, j) - ValueAt(y->next, j)), 1) << j;
      }
    }
  }
}

TEST(StrategyTest, ServerOptimizersHandComputed) {
  const v1::HeadSpec spec = MakeSpec(1, 2);
  // One update of weight 1: value 0's delta 1 step (u = 65536), value 1's
  // delta -3 (u = -196608), the bias 0.
  const auto updates = UpdatesFromColumns(spec, {{1, -3, 0, 0}}, {1});
  const Head base = Head::Zeros(1, 2);

  StrategyParams m;
  m.kind = StrategyKind::kFedAvgM;
  m.momentum_q16 = 32768;  // 0.5
  // Momentum 3 and -5 units: halves 1.5 and -2.5 round to 2 and -2 (even).
  OptimizerState state;
  state.momentum = {3, -5, 1, 0};
  const absl::StatusOr<RoundAggregate> gm = AggregateRound(m, base, state, Pointers(updates), {});
  ASSERT_TRUE(gm.ok()) << gm.status();
  EXPECT_EQ(gm->state.momentum, (std::vector<int64_t>{65538, -196610, 0, 0}));
  // new = rhe(m' / 2^16) with lr 1: 1.00003 -> 1, -3.00003 -> -3.
  EXPECT_EQ(AllValues(gm->next), (std::vector<int16_t>{1, -3, 0, 0}));

  StrategyParams a;
  a.kind = StrategyKind::kFedAdam;
  a.momentum_q16 = 32768;
  a.second_moment_decay_q16 = 32768;
  a.adam_step = 10 * 65536;  // 10 master steps
  a.adam_tau = 1;
  const absl::StatusOr<RoundAggregate> ga = AggregateRound(a, base, {}, Pointers(updates), {});
  ASSERT_TRUE(ga.ok()) << ga.status();
  // m = u / 2: 32768 and -98304; v = u^2 / 2: 2^31 and 9 * 2^31.
  EXPECT_EQ(ga->state.momentum, (std::vector<int64_t>{32768, -98304, 0, 0}));
  EXPECT_EQ(ga->state.second_moment,
            (std::vector<uint128>{uint128{1} << 31, uint128{9} << 31, 0, 0}));
  // floor_sqrt(2^31) = 46340 (46341^2 > 2^31), floor_sqrt(9 * 2^31) =
  // 139022 (139022^2 = 19327116484 <= 19327352832 < 139023^2): steps
  // 10 * 32768 / 46341 = 7.07 -> 7 and -10 * 98304 / 139023 = -7.07 -> -7;
  // values with u = 0 stay (0 / tau).
  EXPECT_EQ(AllValues(ga->next), (std::vector<int16_t>{7, -7, 0, 0}));
  // A step large enough that one unit of the divisor shows: 3e9 * 32768 /
  // (46341 * 2^16) = 32368.74 -> 32369 (with 46342 it would be 32368.05).
  a.adam_step = 3000000000;
  const absl::StatusOr<RoundAggregate> big = AggregateRound(a, base, {}, Pointers(updates), {});
  ASSERT_TRUE(big.ok());
  EXPECT_EQ(AllValues(big->next), (std::vector<int16_t>{32369, -32369, 0, 0}));
}

// --- State and record round trips --------------------------------------------

TEST(StrategyTest, OptimizerStateRoundTripsAndWrongSizesAreDataLoss) {
  std::mt19937_64 rng(9);
  OptimizerState s = RandomState(27, rng);
  s.second_moment[0] = (uint128{1} << 110) + 12345;  // the largest a round gives
  s.momentum[1] = INT64_MIN + 1;
  v1::AggregationState proto;
  proto.add_noise(42);
  OptimizerStateToProto(s, &proto);
  EXPECT_EQ(proto.noise_size(), 1);  // untouched
  ASSERT_EQ(proto.second_moment().size(), 27u * 16);
  // Little-endian: v[0]'s first byte is 12345 & 0xff, its byte 13 holds 2^110's bit.
  EXPECT_EQ(static_cast<uint8_t>(proto.second_moment()[0]), 12345 & 0xff);
  EXPECT_EQ(static_cast<uint8_t>(proto.second_moment()[13]), 1u << 6);
  const absl::StatusOr<OptimizerState> back = OptimizerStateFromProto(proto, 27);
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_EQ(*back, s);

  EXPECT_EQ(OptimizerStateFromProto(proto, 26).status().code(), absl::StatusCode::kDataLoss);
  v1::AggregationState short_v = proto;
  short_v.mutable_second_moment()->pop_back();
  EXPECT_EQ(OptimizerStateFromProto(short_v, 27).status().code(), absl::StatusCode::kDataLoss);
  v1::AggregationState short_m = proto;
  short_m.mutable_momentum()->RemoveLast();
  EXPECT_EQ(OptimizerStateFromProto(short_m, 27).status().code(), absl::StatusCode::kDataLoss);
  v1::AggregationState huge = proto;
  (*huge.mutable_second_moment())[15 + 16] = static_cast<char>(0x80);  // v[1] >= 2^127
  EXPECT_EQ(OptimizerStateFromProto(huge, 27).status().code(), absl::StatusCode::kDataLoss);
  // Empty reads as all zeros: an empty state.
  const absl::StatusOr<OptimizerState> empty = OptimizerStateFromProto({}, 27);
  ASSERT_TRUE(empty.ok());
  EXPECT_TRUE(empty->momentum.empty() && empty->second_moment.empty());
}

TEST(StrategyTest, StateCarriesAcrossRoundsAsAFunctionOfTheSets) {
  // Two fedadam rounds through the proto equal two rounds kept in memory.
  const v1::HeadSpec spec = MakeSpec(8, 3);
  std::mt19937 rng(4);
  const auto r1 = RandomUpdates(spec, 20, rng);
  const auto r2 = RandomUpdates(spec, 25, rng);
  const StrategyParams p = ParamsFor(StrategyKind::kFedAdam);
  const Head base = RandomHead(8, 3, 500, rng);
  const absl::StatusOr<RoundAggregate> a1 = AggregateRound(p, base, {}, Pointers(r1), {});
  ASSERT_TRUE(a1.ok());
  v1::AggregationState stored;
  OptimizerStateToProto(a1->state, &stored);
  const absl::StatusOr<OptimizerState> loaded = OptimizerStateFromProto(stored, 27);
  ASSERT_TRUE(loaded.ok());
  const absl::StatusOr<RoundAggregate> a2 = AggregateRound(p, a1->next, *loaded, Pointers(r2), {});
  const absl::StatusOr<RoundAggregate> b2 =
      AggregateRound(p, a1->next, a1->state, Pointers(r2), {});
  ASSERT_TRUE(a2.ok() && b2.ok());
  EXPECT_EQ(a2->next, b2->next);
  EXPECT_EQ(a2->state, b2->state);
  // The state matters: from a zero state the second round differs.
  const absl::StatusOr<RoundAggregate> c2 = AggregateRound(p, a1->next, {}, Pointers(r2), {});
  ASSERT_TRUE(c2.ok());
  EXPECT_NE(c2->state, b2->state);
  // A state of the wrong length is refused.
  OptimizerState wrong = a1->state;
  wrong.momentum.pop_back();
  EXPECT_EQ(AggregateRound(p, a1->next, wrong, Pointers(r2), {}).status().code(),
            absl::StatusCode::kInvalidArgument);
}

TEST(StrategyTest, ParamsRoundTripThroughTheVersionRecord) {
  std::mt19937 rng(11);
  for (StrategyKind kind : kAllKinds) {
    StrategyParams p = ParamsFor(kind);
    p.trim_fraction_ppm = std::uniform_int_distribution<uint32_t>(0, 499999)(rng);
    p.bounds = {static_cast<uint32_t>(rng()), rng() | 1, static_cast<uint32_t>(rng())};
    p.server_lr_q16 = static_cast<uint32_t>(rng());
    p.uniform_weights = (rng() & 1) != 0;
    v1::Aggregation record;
    record.set_noise_sigma(77);
    RecordStrategyParams(p, &record);
    EXPECT_EQ(record.strategy(), StrategyName(kind));
    EXPECT_EQ(record.noise_sigma(), 77u);
    const absl::StatusOr<StrategyParams> back = StrategyParamsFromRecord(record);
    ASSERT_TRUE(back.ok()) << back.status();
    EXPECT_TRUE(*back == p) << StrategyName(kind);
    EXPECT_EQ(ParseStrategy(StrategyName(kind)), kind);
  }
  v1::Aggregation bad;
  bad.set_strategy("krum");
  EXPECT_EQ(StrategyParamsFromRecord(bad).status().code(), absl::StatusCode::kInvalidArgument);
  bad.set_strategy("fedadam");  // eta and tau 0
  EXPECT_EQ(StrategyParamsFromRecord(bad).status().code(), absl::StatusCode::kInvalidArgument);
  bad.set_strategy("trimmed-mean");
  bad.set_trim_fraction_ppm(500000);
  EXPECT_EQ(StrategyParamsFromRecord(bad).status().code(), absl::StatusCode::kInvalidArgument);
}

TEST(StrategyTest, EmptyRoundIsAFailedPrecondition) {
  StrategyParams p;
  EXPECT_EQ(AggregateRound(p, Head::Zeros(2, 2), {}, {}, {}).status().code(),
            absl::StatusCode::kFailedPrecondition);
}

}  // namespace
}  // namespace tinyfed::server
