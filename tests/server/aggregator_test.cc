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
#include "reference_fedavg.h"
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

// ---- bounded influence ---------------------------------------------------

constexpr uint32_t kQ16 = 65536;

// Decides over `updates` and accumulates them in the given order.
UpdateAccumulator AccumulateBounded(const v1::HeadSpec& spec,
                                    const std::vector<v1::Update>& updates,
                                    const InfluenceBounds& bounds,
                                    InfluenceDecision* decision_out = nullptr) {
  std::vector<UpdateMeasure> measures;
  for (const v1::Update& u : updates) {
    measures.push_back(MeasureUpdate(u, spec.feature_count(), spec.class_count()));
  }
  const InfluenceDecision decision = DecideInfluence(measures, bounds);
  UpdateAccumulator acc(spec.feature_count(), spec.class_count());
  for (size_t i = 0; i < updates.size(); ++i) acc.Add(updates[i], decision.influence[i]);
  if (decision_out != nullptr) *decision_out = decision;
  return acc;
}

// The update an attacker sends: the largest count and scale, every value
// +-127 with a random sign.
v1::Update Attack(const v1::HeadSpec& spec, std::mt19937& rng) {
  std::vector<int8_t> w(static_cast<size_t>(spec.feature_count()) * spec.class_count());
  std::vector<int8_t> b(spec.class_count());
  for (int8_t& v : w) v = (rng() & 1) ? 127 : -127;
  for (int8_t& v : b) v = (rng() & 1) ? 127 : -127;
  return ExplicitUpdate(spec, kMaxSampleCount, std::vector<uint32_t>(spec.class_count(), kMaxScale),
                        w, b);
}

// Hand-worked capping, 1 feature x 2 classes, scales 1, lr 1:
//   n:        10    20   1000
//   q (w0):   10    20   -100
// lower median of n = 20, multiple 2 -> cap 40; weights 10, 20, 40.
//   W = 70, S = 10*10 + 20*20 + 40*(-100) = -3500, mean -50.
// Plain FedAvg would give (100 + 400 - 100000) / 1030 = -96.6 -> -97.
TEST(BoundedInfluenceTest, CapsTheWeightAtAMultipleOfTheMedianCount) {
  const v1::HeadSpec spec = MakeSpec(1, 2);
  const std::vector<v1::Update> updates = {
      ExplicitUpdate(spec, 10, {1, 1}, {10, 0}, {0, 0}, 100),
      ExplicitUpdate(spec, 20, {1, 1}, {20, 0}, {0, 0}, 200),
      ExplicitUpdate(spec, 1000, {1, 1}, {-100, 0}, {0, 0}, 700)};
  InfluenceDecision d;
  const UpdateAccumulator acc = AccumulateBounded(spec, updates, {2 * kQ16, 0, 0}, &d);
  EXPECT_EQ(d.weight_cap, 40u);
  EXPECT_FALSE(d.has_norm_bound);
  EXPECT_EQ(d.influence[0].weight, 10u);
  EXPECT_EQ(d.influence[1].weight, 20u);
  EXPECT_EQ(d.influence[2].weight, 40u);
  EXPECT_TRUE(d.influence[2].capped);
  EXPECT_EQ(acc.capped(), 1u);
  EXPECT_EQ(acc.clipped(), 0u);
  EXPECT_EQ(acc.weight(), 70u);
  EXPECT_EQ(acc.samples(), 1030u) << "the claimed counts stay on record";
  // Loss weighted by the capped weights: (10*100 + 20*200 + 40*700) / 70.
  EXPECT_EQ(acc.mean_loss_q16(), 471u);  // 471.43
  auto next = acc.Apply(Head::Zeros(1, 2), kLrOne);
  ASSERT_TRUE(next.ok()) << next.status();
  EXPECT_EQ(next->weights, (std::vector<int16_t>{-50, 0}));
  auto plain = Accumulate(spec, updates).Apply(Head::Zeros(1, 2), kLrOne);
  ASSERT_TRUE(plain.ok());
  EXPECT_EQ(plain->weights, (std::vector<int16_t>{-97, 0}));
}

// The median of an even count is the lower one, and a cap never falls
// below one sample.
TEST(BoundedInfluenceTest, LowerMedianAndACapOfAtLeastOne) {
  std::vector<UpdateMeasure> m = {{200, 0}, {1, 0}, {100, 0}, {2, 0}};
  InfluenceDecision d = DecideInfluence(m, {kQ16, 0, 0});
  EXPECT_EQ(d.weight_cap, 2u) << "lower median of 1, 2, 100, 200";
  EXPECT_EQ(d.capped, 2u);
  EXPECT_EQ(d.influence[0].weight, 2u);
  EXPECT_EQ(d.influence[1].weight, 1u);
  EXPECT_EQ(d.influence[2].weight, 2u);
  EXPECT_EQ(d.influence[3].weight, 2u);
  // Median 1, multiple 1.5: floor(1.5) = 1.
  d = DecideInfluence({{1, 0}, {1, 0}, {9, 0}}, {kQ16 + kQ16 / 2, 0, 0});
  EXPECT_EQ(d.weight_cap, 1u);
  EXPECT_EQ(d.influence[2].weight, 1u);
  // Nothing configured: nothing bounded.
  d = DecideInfluence(m, {});
  EXPECT_EQ(d.weight_cap, 0u);
  EXPECT_FALSE(d.has_norm_bound);
  EXPECT_EQ(d.influence[0].weight, 200u);
  EXPECT_EQ(d.capped + d.clipped, 0u);
}

// Hand-worked clipping, 2 features x 2 classes, scales 1, counts 1, lr 1:
//   update      w00 w01   |v|
//   a             3   4    5
//   b            30  41    sqrt(2581) = 50.80, ceil 51
//   c             0   5    5
// lower median |v| = 5, multiple 2 -> B = floor(2 * 5) = 10; only b is
// clipped, by 10/51: its contributions in units of 2^-16 are
//   30 * 65536 * 10 / 51 = 385505.88 -> 385506
//   41 * 65536 * 10 / 51 = 526858.04 -> 526858
// mean w00 = (3 * 65536 + 385506) / (3 * 65536) = 2.9607 -> 3
// mean w01 = (9 * 65536 + 526858) / (3 * 65536) = 5.6798 -> 6
// (unclipped: 33/3 = 11 and 50/3 = 16.67 -> 17).
TEST(BoundedInfluenceTest, ClipsTheNormToAMultipleOfTheMedianNorm) {
  const v1::HeadSpec spec = MakeSpec(2, 2);
  const std::vector<v1::Update> updates = {
      ExplicitUpdate(spec, 1, {1, 1}, {3, 4, 0, 0}, {0, 0}),
      ExplicitUpdate(spec, 1, {1, 1}, {30, 41, 0, 0}, {0, 0}),
      ExplicitUpdate(spec, 1, {1, 1}, {0, 5, 0, 0}, {0, 0})};
  EXPECT_EQ(MeasureUpdate(updates[1], 2, 2).squared_norm, 2581u);
  InfluenceDecision d;
  const UpdateAccumulator acc = AccumulateBounded(spec, updates, {0, 0, 2 * kQ16}, &d);
  ASSERT_TRUE(d.has_norm_bound);
  EXPECT_EQ(d.norm_bound, 10u);
  EXPECT_FALSE(d.influence[0].clipped);
  EXPECT_TRUE(d.influence[1].clipped);
  EXPECT_EQ(d.influence[1].clip_num, 10u);
  EXPECT_EQ(d.influence[1].clip_den, 51u);
  EXPECT_FALSE(d.influence[2].clipped);
  EXPECT_EQ(acc.clipped(), 1u);
  EXPECT_EQ(acc.capped(), 0u);
  ASSERT_EQ(acc.clipped_sums().size(), 6u);
  EXPECT_TRUE(acc.clipped_sums()[0] == 385506);
  EXPECT_TRUE(acc.clipped_sums()[1] == 526858);
  EXPECT_EQ(acc.sums()[0], 3);
  EXPECT_EQ(acc.sums()[1], 9);
  auto next = acc.Apply(Head::Zeros(2, 2), kLrOne);
  ASSERT_TRUE(next.ok()) << next.status();
  EXPECT_EQ(next->weights, (std::vector<int16_t>{3, 6, 0, 0}));

  // A fixed bound of 50 steps: b (50.80) is clipped by 50/51, a and c not;
  // at or below the bound nothing changes: 51 leaves all three alone.
  d = DecideInfluence({MeasureUpdate(updates[0], 2, 2), MeasureUpdate(updates[1], 2, 2)},
                      {0, 50, 0});
  EXPECT_TRUE(d.influence[1].clipped);
  EXPECT_EQ(d.influence[1].clip_num, 50u);
  EXPECT_EQ(d.influence[1].clip_den, 51u);
  d = DecideInfluence({MeasureUpdate(updates[1], 2, 2)}, {0, 51, 0});
  EXPECT_FALSE(d.influence[0].clipped);
  // A norm exactly at the bound is not clipped: |a| = 5.
  d = DecideInfluence({MeasureUpdate(updates[0], 2, 2)}, {0, 5, 0});
  EXPECT_FALSE(d.influence[0].clipped);
  d = DecideInfluence({MeasureUpdate(updates[0], 2, 2)}, {0, 4, 0});
  EXPECT_TRUE(d.influence[0].clipped);
  EXPECT_EQ(d.influence[0].clip_den, 5u) << "a perfect square's root is exact";
  // Both bounds: the smaller wins (adaptive 10 against fixed 7).
  d = DecideInfluence({MeasureUpdate(updates[0], 2, 2), MeasureUpdate(updates[1], 2, 2),
                       MeasureUpdate(updates[2], 2, 2)},
                      {0, 7, 2 * kQ16});
  EXPECT_EQ(d.norm_bound, 7u);
}

// A clipped contribution that falls exactly half-way rounds to the even
// neighbour. 2 features x 2 classes, one update of 1 sample:
//   row 0, scale 517: w 127, -127, bias 127;  row 1, scale 516: w 126, 8,
//   bias 3;  N2 = 3 * 65659^2 + 516^2 * (126^2 + 8^2 + 3^2) = 17179829787,
//   just below 131072^2 = 2^34, so the factor is 3 / 131072 for a fixed
//   bound of 3. In units of 2^-16: 517 * 3 * q * 2^16 / 2^17 = 1551 q / 2,
//   so +-127 gives +-98488.5 -> +-98488 (half up would give 98489 and
//   -98488, half away from zero +-98489); row 1 is 774 q exactly.
TEST(BoundedInfluenceTest, ClippedContributionsRoundHalfToEven) {
  const v1::HeadSpec spec = MakeSpec(2, 2);
  const v1::Update u = ExplicitUpdate(spec, 1, {517, 516}, {127, -127, 126, 8}, {127, 3});
  ASSERT_EQ(MeasureUpdate(u, 2, 2).squared_norm, 17179829787u);
  InfluenceDecision d;
  const UpdateAccumulator acc = AccumulateBounded(spec, {u}, {0, 3, 0}, &d);
  ASSERT_TRUE(d.influence[0].clipped);
  EXPECT_EQ(d.influence[0].clip_den, 131072u);
  const std::vector<__int128> want = {98488, -98488, 774 * 126, 774 * 8, 98488, 774 * 3};
  ASSERT_EQ(acc.clipped_sums().size(), want.size());
  for (size_t j = 0; j < want.size(); ++j) {
    EXPECT_TRUE(acc.clipped_sums()[j] == want[j])
        << "value " << j << ": " << static_cast<int64_t>(acc.clipped_sums()[j]);
  }
}

// The norm counts the row scale and the bias: |v|^2 = sum (s_row * q)^2.
TEST(BoundedInfluenceTest, NormIsOfTheDequantizedDeltaWithBias) {
  const v1::HeadSpec spec = MakeSpec(2, 2);
  const v1::Update u = ExplicitUpdate(spec, 1, {3, 517}, {1, -2, 0, 127}, {-127, 4});
  // 3^2 * (1 + 4 + 16129) + 517^2 * (16129 + 16)
  EXPECT_EQ(MeasureUpdate(u, 2, 2).squared_norm,
            static_cast<unsigned __int128>(9 * 16134 + 267289ull * 16145));
}

// 100 orders of a round's set, with attackers among them: the same
// decisions, the same sums, the same head.
TEST(BoundedInfluenceTest, ArrivalOrderDoesNotChangeTheBoundedResult) {
  std::mt19937 rng(4242);
  const v1::HeadSpec spec = MakeSpec(64, 10);
  std::vector<v1::Update> updates = RandomUpdates(spec, 27, rng, 60, 40);
  for (int i = 0; i < 3; ++i) updates.push_back(Attack(spec, rng));
  const InfluenceBounds bounds{3 * kQ16, 0, 2 * kQ16};
  InfluenceDecision first_decision;
  const UpdateAccumulator first = AccumulateBounded(spec, updates, bounds, &first_decision);
  ASSERT_GE(first.capped(), 3u) << "the attackers are capped";
  ASSERT_GE(first.clipped(), 3u) << "and clipped";
  const Head global = RandomHead(64, 10, 4000, rng);
  const absl::StatusOr<Head> want = first.Apply(global, kLrOne);
  ASSERT_TRUE(want.ok());
  for (int order = 0; order < 100; ++order) {
    std::shuffle(updates.begin(), updates.end(), rng);
    InfluenceDecision d;
    const UpdateAccumulator acc = AccumulateBounded(spec, updates, bounds, &d);
    EXPECT_EQ(d.weight_cap, first_decision.weight_cap);
    EXPECT_EQ(d.norm_bound, first_decision.norm_bound);
    ASSERT_TRUE(acc == first) << "order " << order;
    const absl::StatusOr<Head> got = acc.Apply(global, kLrOne);
    ASSERT_TRUE(got.ok());
    ASSERT_EQ(*got, *want) << "order " << order;
  }
}

// Partial sums, each over updates whose influence the whole round
// decided, merge into the flat sum bit for bit.
TEST(BoundedInfluenceTest, MergedPartsWithTheRoundsDecisionsEqualTheFlatSum) {
  std::mt19937 rng(99);
  const v1::HeadSpec spec = MakeSpec(16, 4);
  std::vector<v1::Update> updates = RandomUpdates(spec, 40, rng, 200, 517);
  for (int i = 0; i < 4; ++i) updates.push_back(Attack(spec, rng));
  std::vector<UpdateMeasure> measures;
  for (const v1::Update& u : updates) measures.push_back(MeasureUpdate(u, 16, 4));
  const InfluenceDecision d = DecideInfluence(measures, {2 * kQ16, 0, 2 * kQ16});
  ASSERT_GT(d.clipped, 0u);
  UpdateAccumulator flat(16, 4), merged(16, 4);
  UpdateAccumulator parts[3] = {UpdateAccumulator(16, 4), UpdateAccumulator(16, 4),
                                UpdateAccumulator(16, 4)};
  for (size_t i = 0; i < updates.size(); ++i) {
    flat.Add(updates[i], d.influence[i]);
    parts[i % 3].Add(updates[i], d.influence[i]);
  }
  for (const UpdateAccumulator& p : parts) ASSERT_TRUE(merged.Merge(p).ok());
  EXPECT_TRUE(merged == flat);
  EXPECT_EQ(*merged.Apply(Head::Zeros(16, 4), kLrOne), *flat.Apply(Head::Zeros(16, 4), kLrOne));
}

// The aggregator against the independent reference (tests/server/
// reference_fedavg.h), over random rounds and every kind of bound.
TEST(BoundedInfluenceTest, MatchesTheIndependentReference) {
  std::mt19937 rng(2718);
  const v1::HeadSpec spec = MakeSpec(8, 3);
  const InfluenceBounds cases[] = {
      {}, {3 * kQ16, 0, 0}, {0, 0, 2 * kQ16}, {0, 20000, 0}, {kQ16 + 12345, 30000, 3 * kQ16 + 7}};
  for (int trial = 0; trial < 40; ++trial) {
    const InfluenceBounds& b = cases[trial % 5];
    std::vector<v1::Update> updates =
        RandomUpdates(spec, 1 + trial % 9, rng, trial % 2 ? 50 : kMaxSampleCount, 517);
    if (trial % 3 == 0) updates.push_back(Attack(spec, rng));
    v1::ModelVersion base;
    base.set_version(5);
    *base.mutable_spec() = spec;
    StoreHead(RandomHead(8, 3, 30000, rng), &base);
    const uint32_t lr = trial % 4 == 0 ? 49152 : kLrOne;
    const UpdateAccumulator acc = AccumulateBounded(spec, updates, b);
    auto head = acc.Apply(*LoadHead(base), lr);
    ASSERT_TRUE(head.ok());
    v1::ModelVersion committed = base;
    committed.set_version(6);
    committed.set_parent_version(5);
    StoreHead(*head, &committed);
    v1::ModelMetrics* m = committed.mutable_metrics();
    m->set_participants(acc.participants());
    m->set_samples(acc.samples());
    m->set_mean_local_loss_q16(acc.mean_loss_q16());
    m->set_capped_updates(acc.capped());
    m->set_clipped_updates(acc.clipped());
    EXPECT_TRUE(testing::MatchesReferenceFedAvg(
        committed, base, updates, lr,
        {b.weight_median_multiple_q16, b.norm_bound, b.norm_median_multiple_q16}))
        << "trial " << trial;
  }
}

// The attack that motivated the bounds, 1 feature x 2 classes: 18 honest
// updates, counts 10..27 and w0 = 90..107 (scale 1), move w0 by
// 33285 / 333 = +99.95 steps; 2 attackers claim 2^24 samples and send
// -127 x 517 = -65659 everywhere. Plain FedAvg: w0 at the int16 floor.
// Bounded (3x median weight, 2x median norm), by hand:
//   lower median count (index 9 of 20) 19 -> cap 57;
//   lower median norm 99 -> B = 198; an attacker's norm is
//   sqrt(4 * 65659^2) = 131318 exactly, so its values become -65659 *
//   198/131318 = -99;
//   w0 = (33285 - 2 * 57 * 99) / (333 + 114) = 21999 / 447 = 49.2 -> 49,
//   every other value -11286 / 447 = -25.2 -> -25.
TEST(BoundedInfluenceTest, ScaledAttackersCannotPinTheModel) {
  const v1::HeadSpec spec = MakeSpec(1, 2);
  std::vector<v1::Update> updates;
  for (int i = 0; i < 18; ++i) {
    updates.push_back(ExplicitUpdate(spec, 10 + static_cast<uint32_t>(i), {1, 1},
                                     {static_cast<int8_t>(90 + i), 0}, {0, 0}));
  }
  for (int i = 0; i < 2; ++i) {
    updates.push_back(ExplicitUpdate(spec, kMaxSampleCount, {kMaxScale, kMaxScale}, {-127, -127},
                                     {-127, -127}));
  }
  auto plain = Accumulate(spec, updates).Apply(Head::Zeros(1, 2), kLrOne);
  ASSERT_TRUE(plain.ok());
  EXPECT_EQ(plain->weights[0], -32768);
  auto bounded =
      AccumulateBounded(spec, updates, {3 * kQ16, 0, 2 * kQ16}).Apply(Head::Zeros(1, 2), kLrOne);
  ASSERT_TRUE(bounded.ok());
  EXPECT_EQ(bounded->weights, (std::vector<int16_t>{49, -25}));
  EXPECT_EQ(bounded->bias, (std::vector<int16_t>{-25, -25}));
}

}  // namespace
}  // namespace tinyfed::server
