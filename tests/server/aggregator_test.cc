#include "aggregator.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <numeric>
#include <random>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "head.h"
#include "server_test_support.h"
#include "update_validation.h"

namespace tinyfed::server {
namespace {

using testing::FixChecksum;
using testing::MakeSpec;
using testing::MakeUpdate;

constexpr uint32_t kLrOne = 65536;  // 1.0 in Q16.16
constexpr uint32_t kMaxSampleCount = uint32_t{1} << 24;
constexpr uint32_t kMaxScale = 517;

// An update with explicit contents, checked against the validator so every
// Add() below honours its REQUIRES.
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

// `count` random valid updates for `spec` with sample counts uniform in
// [1, max_samples] and row scales uniform in [1, max_scale].
std::vector<v1::Update> RandomUpdates(const v1::HeadSpec& spec, int count, std::mt19937& rng,
                                      uint32_t max_samples, uint32_t max_scale) {
  std::uniform_int_distribution<uint32_t> samples(1, max_samples);
  std::vector<v1::Update> out;
  for (int i = 0; i < count; ++i) {
    out.push_back(
        MakeUpdate(spec, 7, "dev-" + std::to_string(i), "tok", 3, samples(rng), rng, max_scale));
    EXPECT_TRUE(ValidateUpdate(out.back(), spec).ok());
  }
  return out;
}

Head RandomHead(uint32_t features, uint32_t classes, int16_t bound, std::mt19937& rng) {
  std::uniform_int_distribution<int> value(-bound, bound);
  Head h = Head::Zeros(features, classes);
  for (int16_t& w : h.weights) w = static_cast<int16_t>(value(rng));
  for (int16_t& b : h.bias) b = static_cast<int16_t>(value(rng));
  return h;
}

UpdateAccumulator Accumulate(const v1::HeadSpec& spec, const std::vector<v1::Update>& updates) {
  UpdateAccumulator acc(spec.feature_count(), spec.class_count());
  for (const v1::Update& u : updates) acc.Add(u);
  return acc;
}

int8_t DeltaAt(const v1::Update& u, uint32_t features, uint32_t classes, size_t j) {
  const size_t weight_count = static_cast<size_t>(features) * classes;
  return static_cast<int8_t>(j < weight_count ? u.weight_delta()[j]
                                              : u.bias_delta()[j - weight_count]);
}

uint32_t RowOf(uint32_t features, uint32_t classes, size_t j) {
  const size_t weight_count = static_cast<size_t>(features) * classes;
  return static_cast<uint32_t>(j < weight_count ? j / features : j - weight_count);
}

TEST(UpdateAccumulatorTest, SumsAreWeightsRowMajorThenBias) {
  // 3 features x 2 classes: each entry of sums() is n * s_row * q.
  const v1::HeadSpec spec = MakeSpec(3, 2);
  const v1::Update u = ExplicitUpdate(spec, 5, {2, 7}, {1, -2, 3, -4, 5, -127}, {127, -1});
  UpdateAccumulator acc(3, 2);
  acc.Add(u);
  UpdateAccumulator::Sums expected(8);
  expected << 5 * 2 * 1, 5 * 2 * -2, 5 * 2 * 3,  // class 0 weights
      5 * 7 * -4, 5 * 7 * 5, 5 * 7 * -127,       // class 1 weights
      5 * 2 * 127, 5 * 7 * -1;                   // bias of class 0, class 1
  EXPECT_EQ(acc.sums(), expected);
  EXPECT_EQ(acc.samples(), 5u);
  EXPECT_EQ(acc.participants(), 1u);
}

TEST(UpdateAccumulatorTest, FedAvgMatchesDoublePrecisionWithinHalfStep) {
  std::mt19937 rng(20240611);
  const v1::HeadSpec spec = MakeSpec(64, 10);
  // Scales up to 100 and |global| <= 8000 keep every result inside int16
  // even at lr 1.5 (8000 + 1.5 * 127 * 100 < 32767): the weighted mean of
  // the deltas never exceeds the largest |s * q|. Saturation is tested below.
  const std::vector<v1::Update> updates = RandomUpdates(spec, 30, rng, 1u << 20, 100);
  const Head global = RandomHead(64, 10, 8000, rng);
  const UpdateAccumulator acc = Accumulate(spec, updates);

  const uint64_t total_samples =
      std::accumulate(updates.begin(), updates.end(), uint64_t{0},
                      [](uint64_t n, const v1::Update& u) { return n + u.sample_count(); });
  ASSERT_EQ(acc.samples(), total_samples);

  for (uint32_t lr_q16 : {kLrOne / 2, kLrOne, kLrOne + kLrOne / 2}) {
    SCOPED_TRACE(lr_q16);
    auto next = acc.Apply(global, lr_q16);
    ASSERT_TRUE(next.ok()) << next.status();
    const size_t total = 64 * 10 + 10;
    for (size_t j = 0; j < total; ++j) {
      // Each n * s * q is an integer below 2^41 and the 30 of them sum below
      // 2^53, so the double sum is exact; the division adds a relative error
      // of 2^-53 on a value below 2^15 (about 4e-12). The integer result
      // rounds to the nearest step, hence |int - double| <= 0.5 step, and
      // 1e-9 covers the reference's own error at exact ties.
      double weighted = 0.0;
      for (const v1::Update& u : updates) {
        weighted += static_cast<double>(u.sample_count()) *
                    u.row_scales(static_cast<int>(RowOf(64, 10, j))) * DeltaAt(u, 64, 10, j);
      }
      const double lr = lr_q16 / 65536.0;
      const int16_t old = j < 640 ? global.weights[j] : global.bias[j - 640];
      const int16_t got = j < 640 ? next->weights[j] : next->bias[j - 640];
      const double want = old + lr * weighted / static_cast<double>(total_samples);
      ASSERT_LE(std::abs(got - want), 0.5 + 1e-9) << "entry " << j;
    }
  }
}

TEST(UpdateAccumulatorTest, ArrivalOrderDoesNotChangeTheResult) {
  std::mt19937 rng(7);
  const v1::HeadSpec spec = MakeSpec(64, 10);
  std::vector<v1::Update> updates = RandomUpdates(spec, 50, rng, kMaxSampleCount, kMaxScale);
  const Head global = RandomHead(64, 10, 20000, rng);
  const UpdateAccumulator reference = Accumulate(spec, updates);
  const auto reference_head = reference.Apply(global, kLrOne);
  ASSERT_TRUE(reference_head.ok()) << reference_head.status();

  for (int trial = 0; trial < 100; ++trial) {
    std::shuffle(updates.begin(), updates.end(), rng);
    const UpdateAccumulator acc = Accumulate(spec, updates);
    ASSERT_EQ(acc.sums(), reference.sums()) << "order " << trial;
    ASSERT_EQ(acc.mean_loss_q16(), reference.mean_loss_q16());
    ASSERT_TRUE(acc == reference);
    const auto head = acc.Apply(global, kLrOne);
    ASSERT_TRUE(head.ok()) << head.status();
    ASSERT_EQ(*head, *reference_head) << "order " << trial;
  }
}

TEST(UpdateAccumulatorTest, MergedPartialSumsEqualTheFlatSum) {
  std::mt19937 rng(11);
  const v1::HeadSpec spec = MakeSpec(64, 10);
  const std::vector<v1::Update> updates = RandomUpdates(spec, 60, rng, kMaxSampleCount, kMaxScale);
  const Head global = RandomHead(64, 10, 20000, rng);
  const UpdateAccumulator flat = Accumulate(spec, updates);
  const auto flat_head = flat.Apply(global, kLrOne);
  ASSERT_TRUE(flat_head.ok()) << flat_head.status();

  for (int trial = 0; trial < 30; ++trial) {
    SCOPED_TRACE(trial);
    // Random partition into 1..12 groups; some groups may stay empty, as an
    // edge aggregator that received nothing would.
    const int groups = std::uniform_int_distribution<int>(1, 12)(rng);
    std::vector<UpdateAccumulator> parts(groups, UpdateAccumulator(64, 10));
    std::uniform_int_distribution<int> pick_group(0, groups - 1);
    for (const v1::Update& u : updates) parts[pick_group(rng)].Add(u);

    // Random tree: merge two random partial sums until one is left. Odd
    // trials instead fold left-to-right in a shuffled order (a chain).
    if (trial % 2 == 0) {
      while (parts.size() > 1) {
        std::uniform_int_distribution<size_t> pick(0, parts.size() - 1);
        const size_t a = pick(rng);
        size_t b = pick(rng);
        if (a == b) continue;
        ASSERT_TRUE(parts[a].Merge(parts[b]).ok());
        parts.erase(parts.begin() + static_cast<std::ptrdiff_t>(b));
      }
    } else {
      std::shuffle(parts.begin(), parts.end(), rng);
      for (size_t i = 1; i < parts.size(); ++i) ASSERT_TRUE(parts[0].Merge(parts[i]).ok());
      parts.resize(1, UpdateAccumulator(64, 10));
    }
    const UpdateAccumulator& merged = parts[0];
    EXPECT_TRUE(merged == flat);
    EXPECT_EQ(merged.sums(), flat.sums());
    EXPECT_EQ(merged.samples(), flat.samples());
    EXPECT_EQ(merged.participants(), 60u);
    EXPECT_EQ(merged.mean_loss_q16(), flat.mean_loss_q16());
    const auto head = merged.Apply(global, kLrOne);
    ASSERT_TRUE(head.ok()) << head.status();
    EXPECT_EQ(*head, *flat_head);
  }
}

TEST(UpdateAccumulatorTest, AccumulatorsOfDifferentUpdatesAreNotEqual) {
  // operator== is what the merge test relies on: it must see a difference
  // in any single field.
  const v1::HeadSpec spec = MakeSpec(4, 2);
  const v1::Update a = ExplicitUpdate(spec, 10, {1, 1}, {1, 2, 3, 4, 5, 6, 7, 8}, {9, 10}, 100);
  UpdateAccumulator base(4, 2);
  base.Add(a);

  v1::Update other_value = a;
  other_value.mutable_weight_delta()->back() = 9;
  FixChecksum(&other_value);
  v1::Update other_count = a;
  other_count.set_sample_count(11);
  v1::Update other_loss = a;
  other_loss.set_local_loss_q16(101);
  for (const v1::Update& u : {other_value, other_count, other_loss}) {
    UpdateAccumulator acc(4, 2);
    acc.Add(u);
    EXPECT_FALSE(acc == base);
  }
  // Same sums and samples from one update of n = 10 versus two of n = 5.
  v1::Update half = a;
  half.set_sample_count(5);
  UpdateAccumulator two(4, 2);
  two.Add(half);
  two.Add(half);
  EXPECT_EQ(two.sums(), base.sums());
  EXPECT_EQ(two.samples(), base.samples());
  EXPECT_FALSE(two == base) << "participants differ";
  EXPECT_FALSE(UpdateAccumulator(4, 2) == UpdateAccumulator(2, 4));
}

TEST(UpdateAccumulatorTest, RoundsExactTiesToEven) {
  const v1::HeadSpec spec = MakeSpec(4, 2);
  // One update, n = 1, s = 1: at lr 0.5 each delta is q / 2.
  const v1::Update u = ExplicitUpdate(spec, 1, {1, 1}, {1, 3, 5, -1, -3, -5, 2, 7}, {-7, 127});
  UpdateAccumulator acc(4, 2);
  acc.Add(u);
  Head global = Head::Zeros(4, 2);
  auto next = acc.Apply(global, kLrOne / 2);
  ASSERT_TRUE(next.ok()) << next.status();
  //  0.5 -> 0, 1.5 -> 2, 2.5 -> 2, -0.5 -> 0, -1.5 -> -2, -2.5 -> -2, 1, 3.5 -> 4
  EXPECT_EQ(next->weights, (std::vector<int16_t>{0, 2, 2, 0, -2, -2, 1, 4}));
  // -3.5 -> -4, 63.5 -> 64
  EXPECT_EQ(next->bias, (std::vector<int16_t>{-4, 64}));

  // The delta is rounded, not global + delta: an odd global does not change
  // which way a tie goes.
  global.weights = {1, 1, 1, 1, 1, 1, 1, 1};
  next = acc.Apply(global, kLrOne / 2);
  ASSERT_TRUE(next.ok()) << next.status();
  EXPECT_EQ(next->weights, (std::vector<int16_t>{1, 3, 3, 1, -1, -1, 2, 5}));
}

TEST(UpdateAccumulatorTest, RoundsTheSampleWeightedMeanToNearest) {
  const v1::HeadSpec spec = MakeSpec(4, 2);
  // Sums over N = 2 (ties) and N = 3 (thirds) at lr 1.
  UpdateAccumulator two(4, 2);
  two.Add(ExplicitUpdate(spec, 1, {1, 1}, {1, 3, -1, -3, 2, 0, 0, 0}, {5, -5}));
  two.Add(ExplicitUpdate(spec, 1, {1, 1}, {0, 0, 0, 0, 0, 0, 0, 0}, {0, 0}));
  auto next = two.Apply(Head::Zeros(4, 2), kLrOne);
  ASSERT_TRUE(next.ok()) << next.status();
  EXPECT_EQ(next->weights, (std::vector<int16_t>{0, 2, 0, -2, 1, 0, 0, 0}));
  EXPECT_EQ(next->bias, (std::vector<int16_t>{2, -2}));

  UpdateAccumulator three(4, 2);
  three.Add(ExplicitUpdate(spec, 1, {1, 1}, {1, 2, -1, -2, 4, 5, 0, 0}, {0, 0}));
  three.Add(ExplicitUpdate(spec, 2, {1, 1}, {0, 0, 0, 0, 0, 0, 0, 0}, {0, 0}));
  next = three.Apply(Head::Zeros(4, 2), kLrOne);
  ASSERT_TRUE(next.ok()) << next.status();
  // 1/3 -> 0, 2/3 -> 1, -1/3 -> 0, -2/3 -> -1, 4/3 -> 1, 5/3 -> 2
  EXPECT_EQ(next->weights, (std::vector<int16_t>{0, 1, 0, -1, 1, 2, 0, 0}));
}

TEST(UpdateAccumulatorTest, ServerLearningRateScalesTheMeanDelta) {
  const v1::HeadSpec spec = MakeSpec(4, 2);
  // n = 1 and n = 3 at scale 4: class 0 sums 1*4*8 + 3*4*(-4) = -16 over
  // N = 4, a mean delta of -4; class 1 sums 1*2*20 + 3*2*10 = 100, mean 25.
  UpdateAccumulator acc(4, 2);
  acc.Add(ExplicitUpdate(spec, 1, {4, 2}, {8, 8, 8, 8, 20, 20, 20, 20}, {8, 20}));
  acc.Add(ExplicitUpdate(spec, 3, {4, 2}, {-4, -4, -4, -4, 10, 10, 10, 10}, {-4, 10}));
  Head global = Head::Zeros(4, 2);
  global.weights = {100, -100, 0, 7, 100, -100, 0, 7};
  global.bias = {50, -50};

  struct Case {
    uint32_t lr_q16;
    int16_t class0_delta;
    int16_t class1_delta;
  };
  // lr 1.5: -6 and 37.5 -> 38 (tie to even); lr 0.5: -2 and 12.5 -> 12;
  // lr 0: the global model unchanged.
  for (const Case& c : {Case{kLrOne, -4, 25}, Case{kLrOne + kLrOne / 2, -6, 38},
                        Case{kLrOne / 2, -2, 12}, Case{0, 0, 0}}) {
    SCOPED_TRACE(c.lr_q16);
    const auto next = acc.Apply(global, c.lr_q16);
    ASSERT_TRUE(next.ok()) << next.status();
    for (size_t f = 0; f < 4; ++f) {
      EXPECT_EQ(next->weights[f], global.weights[f] + c.class0_delta);
      EXPECT_EQ(next->weights[4 + f], global.weights[4 + f] + c.class1_delta);
    }
    EXPECT_EQ(next->bias[0], global.bias[0] + c.class0_delta);
    EXPECT_EQ(next->bias[1], global.bias[1] + c.class1_delta);
  }
}

TEST(UpdateAccumulatorTest, SaturatesAtInt16Bounds) {
  const v1::HeadSpec spec = MakeSpec(4, 2);
  // Largest deltas a valid update carries: +-127 * 517 = +-65659 steps.
  UpdateAccumulator acc(4, 2);
  acc.Add(ExplicitUpdate(spec, 1, {517, 517}, {127, -127, 127, -127, 1, -1, 0, 0}, {127, -127}));
  Head global = Head::Zeros(4, 2);
  global.weights = {32000, -32000, -32768, 32767, 32767, -32768, 32767, -32768};
  global.bias = {-32768, 32767};
  auto next = acc.Apply(global, kLrOne);
  ASSERT_TRUE(next.ok()) << next.status();
  // Class 1 moves by +-517: 32767 + 517 and -32768 - 517 clip; a zero delta
  // leaves the bounds themselves untouched.
  EXPECT_EQ(next->weights,
            (std::vector<int16_t>{32767, -32768, 32767, -32768, 32767, -32768, 32767, -32768}));
  EXPECT_EQ(next->bias, (std::vector<int16_t>{32767, -32768}));

  // The largest server learning rate (almost 65536.0) on the smallest delta
  // still saturates instead of wrapping.
  UpdateAccumulator small(4, 2);
  small.Add(ExplicitUpdate(spec, 1, {1, 1}, {1, -1, 0, 0, 0, 0, 0, 0}, {0, 0}));
  next = small.Apply(Head::Zeros(4, 2), std::numeric_limits<uint32_t>::max());
  ASSERT_TRUE(next.ok()) << next.status();
  EXPECT_EQ(next->weights[0], 32767);
  EXPECT_EQ(next->weights[1], -32768);
  EXPECT_EQ(next->weights[2], 0);
}

TEST(UpdateAccumulatorTest, ApplyWithoutUpdatesFailsPrecondition) {
  UpdateAccumulator acc(64, 10);
  EXPECT_EQ(acc.Apply(Head::Zeros(64, 10), kLrOne).status().code(),
            absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(acc.participants(), 0u);
  EXPECT_EQ(acc.samples(), 0u);
  EXPECT_EQ(acc.mean_loss_q16(), 0u);
  // Merging empty partial sums is still empty.
  ASSERT_TRUE(acc.Merge(UpdateAccumulator(64, 10)).ok());
  EXPECT_EQ(acc.Apply(Head::Zeros(64, 10), kLrOne).status().code(),
            absl::StatusCode::kFailedPrecondition);
}

TEST(UpdateAccumulatorTest, MergeRejectsAnotherShapeAndKeepsItsSums) {
  std::mt19937 rng(5);
  const v1::HeadSpec spec = MakeSpec(64, 10);
  const UpdateAccumulator acc = Accumulate(spec, RandomUpdates(spec, 3, rng, 100, kMaxScale));
  // 10x64 has as many sums as 64x10 but is another head.
  for (const auto& [features, classes] :
       std::vector<std::pair<uint32_t, uint32_t>>{{63, 10}, {64, 11}, {10, 64}}) {
    const v1::HeadSpec other_spec = MakeSpec(features, classes);
    UpdateAccumulator other = Accumulate(other_spec, RandomUpdates(other_spec, 1, rng, 100, 5));
    UpdateAccumulator target = acc;
    const absl::Status status = target.Merge(other);
    EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument) << features << "x" << classes;
    EXPECT_FALSE(status.message().empty());
    EXPECT_TRUE(target == acc) << "a rejected merge must not change the sums";
  }
}

TEST(UpdateAccumulatorTest, ApplyRejectsAGlobalHeadOfAnotherShape) {
  std::mt19937 rng(9);
  const v1::HeadSpec spec = MakeSpec(64, 10);
  const UpdateAccumulator acc = Accumulate(spec, RandomUpdates(spec, 2, rng, 100, kMaxScale));
  Head truncated = Head::Zeros(64, 10);
  truncated.weights.pop_back();  // declared 64x10, one weight short
  Head no_bias = Head::Zeros(64, 10);
  no_bias.bias.clear();
  for (const Head& global : {Head::Zeros(10, 64), Head::Zeros(64, 9), truncated, no_bias}) {
    const auto next = acc.Apply(global, kLrOne);
    EXPECT_EQ(next.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_FALSE(next.status().message().empty());
  }
}

TEST(UpdateAccumulatorTest, MeanLossIsSampleWeighted) {
  const v1::HeadSpec spec = MakeSpec(4, 2);
  const std::vector<int8_t> zeros(8, 0);
  auto with = [&](uint32_t n, uint32_t loss) {
    return ExplicitUpdate(spec, n, {1, 1}, zeros, {0, 0}, loss);
  };
  UpdateAccumulator acc(4, 2);
  acc.Add(with(1, 100));
  acc.Add(with(3, 200));
  EXPECT_EQ(acc.mean_loss_q16(), 175u);  // (1*100 + 3*200) / 4

  // Ties go to the even neighbour, like Apply(): 0.5 -> 0 and 1.5 -> 2.
  UpdateAccumulator tie_down(4, 2);
  tie_down.Add(with(1, 0));
  tie_down.Add(with(1, 1));
  EXPECT_EQ(tie_down.mean_loss_q16(), 0u);
  UpdateAccumulator tie_up(4, 2);
  tie_up.Add(with(1, 1));
  tie_up.Add(with(1, 2));
  EXPECT_EQ(tie_up.mean_loss_q16(), 2u);
  UpdateAccumulator thirds(4, 2);
  thirds.Add(with(2, 1));
  thirds.Add(with(1, 0));
  EXPECT_EQ(thirds.mean_loss_q16(), 1u);  // 2/3

  // The largest losses and sample counts do not overflow.
  UpdateAccumulator big(4, 2);
  for (int i = 0; i < 1000; ++i) big.Add(with(kMaxSampleCount, UINT32_MAX));
  EXPECT_EQ(big.mean_loss_q16(), UINT32_MAX);
}

TEST(UpdateAccumulatorTest, LargestUpdatesSumExactly) {
  std::mt19937 rng(13);
  const v1::HeadSpec spec = MakeSpec(64, 10);
  constexpr int kUpdates = 10000;
  const size_t total = 64 * 10 + 10;

  // Extreme case: every update at the largest count, scale and |value|,
  // weights all +127 and bias all -127.
  const v1::Update extreme =
      ExplicitUpdate(spec, kMaxSampleCount, std::vector<uint32_t>(10, 517),
                     std::vector<int8_t>(640, 127), std::vector<int8_t>(10, -127));
  UpdateAccumulator acc(64, 10);
  for (int i = 0; i < kUpdates; ++i) acc.Add(extreme);
  const __int128 per_value = static_cast<__int128>(kMaxSampleCount) * 517 * 127;
  const __int128 want = per_value * kUpdates;  // about 2^53.3
  for (size_t j = 0; j < total; ++j) {
    const __int128 expected = j < 640 ? want : -want;
    ASSERT_TRUE(static_cast<__int128>(acc.sums()[static_cast<Eigen::Index>(j)]) == expected)
        << "entry " << j;
  }
  EXPECT_EQ(acc.samples(), uint64_t{kMaxSampleCount} * kUpdates);
  EXPECT_EQ(acc.participants(), static_cast<uint32_t>(kUpdates));
  // Mean delta 65659 steps: lr 1 saturates, lr 2^-16 moves by
  // round(65659 / 65536) = 1 step; neither overflows the 128-bit product.
  auto next = acc.Apply(Head::Zeros(64, 10), kLrOne);
  ASSERT_TRUE(next.ok()) << next.status();
  EXPECT_EQ(next->weights, std::vector<int16_t>(640, 32767));
  EXPECT_EQ(next->bias, std::vector<int16_t>(10, -32768));
  next = acc.Apply(Head::Zeros(64, 10), 1);
  ASSERT_TRUE(next.ok()) << next.status();
  EXPECT_EQ(next->weights, std::vector<int16_t>(640, 1));
  EXPECT_EQ(next->bias, std::vector<int16_t>(10, -1));

  // Mixed signs: 100 random updates at the largest count and scale, each
  // added 100 times, against a 128-bit reference.
  std::vector<v1::Update> updates = RandomUpdates(spec, 100, rng, 1, kMaxScale);
  for (v1::Update& u : updates) {
    u.set_sample_count(kMaxSampleCount);
    for (int c = 0; c < 10; ++c) u.set_row_scales(c, 517);
  }
  UpdateAccumulator mixed(64, 10);
  std::vector<__int128> reference(total, 0);
  for (int rep = 0; rep < kUpdates / 100; ++rep) {
    for (const v1::Update& u : updates) {
      mixed.Add(u);
      for (size_t j = 0; j < total; ++j) {
        reference[j] += static_cast<__int128>(u.sample_count()) *
                        u.row_scales(static_cast<int>(RowOf(64, 10, j))) * DeltaAt(u, 64, 10, j);
      }
    }
  }
  for (size_t j = 0; j < total; ++j) {
    ASSERT_TRUE(static_cast<__int128>(mixed.sums()[static_cast<Eigen::Index>(j)]) == reference[j])
        << "entry " << j;
  }
}

}  // namespace
}  // namespace tinyfed::server
