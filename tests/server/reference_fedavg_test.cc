// Pins the test-only FedAvg reference (reference_fedavg.h) to cases worked
// out by hand from the rule in server/aggregator.h, so that the tests which
// judge committed versions by it do not trust it blindly. Every expected
// number below is derived in the comment beside it, never by running code;
// the aggregator plays no part in them.
//
// With lr = 1.0 (65536 in Q16.16) the rule reduces to
//   new_j = saturate_int16(old_j + round_half_even(S_j / N)),
//   S_j = sum_i n_i * s_i,row(j) * q_ij,  N = sum_i n_i.
#include "reference_fedavg.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cstdint>
#include <string>
#include <vector>

#include "server_test_support.h"

namespace tinyfed::server {
namespace {

using testing::kNoBounds;
using testing::MakeSpec;
using testing::MatchesReferenceFedAvg;
using testing::ReferenceFedAvg;
using testing::ReferenceResult;

constexpr uint32_t kLrOne = 65536;  // 1.0 in Q16.16

// Little-endian int16 bytes, as ModelVersion carries them (model.proto).
std::string Int16Bytes(const std::vector<int16_t>& values) {
  std::string out;
  for (int16_t v : values) {
    const auto u = static_cast<uint16_t>(v);
    out.push_back(static_cast<char>(u & 0xFF));
    out.push_back(static_cast<char>(u >> 8));
  }
  return out;
}

std::string Int8Bytes(const std::vector<int>& values) {
  std::string out;
  for (int v : values) out.push_back(static_cast<char>(static_cast<int8_t>(v)));
  return out;
}

v1::ModelVersion Base(uint32_t features, uint32_t classes, const std::vector<int16_t>& weights,
                      const std::vector<int16_t>& bias) {
  v1::ModelVersion m;
  m.set_version(7);
  m.set_parent_version(6);
  *m.mutable_spec() = MakeSpec(features, classes);
  m.set_weights(Int16Bytes(weights));
  m.set_bias(Int16Bytes(bias));
  return m;
}

// The reference reads only these fields (no checksum, token or round).
v1::Update Upd(uint32_t samples, const std::vector<uint32_t>& scales, const std::vector<int>& q,
               const std::vector<int>& bias_q, uint32_t loss_q16) {
  v1::Update u;
  u.set_sample_count(samples);
  for (uint32_t s : scales) u.add_row_scales(s);
  u.set_weight_delta(Int8Bytes(q));
  u.set_bias_delta(Int8Bytes(bias_q));
  u.set_local_loss_q16(loss_q16);
  return u;
}

// 3x2 head, two updates of one sample each and scale 1, so S_j = qa + qb,
// N = 2 and every value is a half: ties both ways and on both signs.
//   j:      0    1    2    3    4    5   bias0 bias1
//   qa:     1    3    5   -1   -3    2    -5     7
//   qb:     0    0    0    0    0    1     0     0
//   S/2:  0.5  1.5  2.5 -0.5 -1.5  1.5  -2.5   3.5
//   even:   0    2    2    0   -2    2    -2     4
// (half up would give 1 2 3 0 -1 2 -2 4; half away from zero 1 2 3 -1 -2 2 -3 4)
//   old:   10   20   30  -40  -50   60     1    -1
//   new:   10   22   32  -40  -52   62    -1     3
// Loss: (1*100 + 1*201) / 2 = 150.5 -> 150 (even).
TEST(ReferenceFedAvg, TiesRoundHalfToEvenOnBothSigns) {
  const v1::ModelVersion base = Base(3, 2, {10, 20, 30, -40, -50, 60}, {1, -1});
  const std::vector<v1::Update> updates = {
      Upd(1, {1, 1}, {1, 3, 5, -1, -3, 2}, {-5, 7}, 100),
      Upd(1, {1, 1}, {0, 0, 0, 0, 0, 1}, {0, 0}, 201)};
  const ReferenceResult r = ReferenceFedAvg(base, updates, kLrOne);
  EXPECT_EQ(r.weights, (std::vector<int16_t>{10, 22, 32, -40, -52, 62}));
  EXPECT_EQ(r.bias, (std::vector<int16_t>{-1, 3}));
  EXPECT_EQ(r.participants, 2u);
  EXPECT_EQ(r.samples, 2u);
  EXPECT_EQ(r.mean_local_loss_q16, 150u);
}

// 2x2 head; weighting by sample count and by the row scale of each class.
//   u1: n=3, scales {2, 5}, q {10, -7 | 4, 0},   bias {1, -2},   loss 1000
//   u2: n=1, scales {7, 1}, q {-20, 3 | -1, 127}, bias {-128, 9}, loss 3
// N = 4.
//   j0: 3*2*10 + 7*(-20)  = -80  -> -20
//   j1: 3*2*(-7) + 7*3    = -21  -> -5.25  -> -5
//   j2: 3*5*4 + 1*(-1)    =  59  -> 14.75  -> 15
//   j3: 3*5*0 + 1*127     = 127  -> 31.75  -> 32
//   b0: 3*2*1 + 7*(-128)  = -890 -> -222.5 -> -222 (even)
//   b1: 3*5*(-2) + 1*9    = -21  -> -5.25  -> -5
// old {5, 5, -5, -5}, bias {100, -100} -> new {-15, 0, 10, 27}, bias {-122, -105}.
// (Dividing by the 2 participants instead would give j0 = 5 - 40 = -35.)
// Loss: (3*1000 + 1*3) / 4 = 750.75 -> 751 (the unweighted mean is 501.5).
TEST(ReferenceFedAvg, WeightsBySamplesAndRowScaleAndIgnoresOrder) {
  const v1::ModelVersion base = Base(2, 2, {5, 5, -5, -5}, {100, -100});
  std::vector<v1::Update> updates = {Upd(3, {2, 5}, {10, -7, 4, 0}, {1, -2}, 1000),
                                     Upd(1, {7, 1}, {-20, 3, -1, 127}, {-128, 9}, 3)};
  for (int pass = 0; pass < 2; ++pass) {
    const ReferenceResult r = ReferenceFedAvg(base, updates, kLrOne);
    EXPECT_EQ(r.weights, (std::vector<int16_t>{-15, 0, 10, 27})) << "pass " << pass;
    EXPECT_EQ(r.bias, (std::vector<int16_t>{-122, -105})) << "pass " << pass;
    EXPECT_EQ(r.participants, 2u);
    EXPECT_EQ(r.samples, 4u);
    EXPECT_EQ(r.mean_local_loss_q16, 751u);
    std::reverse(updates.begin(), updates.end());
  }
}

// Saturation applies to old + step, at both int16 limits, and a step wider
// than int16 itself is not clipped before it is added.
// 3x2 head, one update n=2, scales {1, 517}: the step is s*q.
//   j0: 32760 + 8         =  32768 -> 32767
//   j1: -32760 - 9        = -32769 -> -32768
//   j2: 0 + 127           =    127
//   j3: -32768 + 517*127  =  32891 -> 32767  (clipping the step to 32767 first: -1)
//   j4: 32767 - 517*127   = -32892 -> -32768 (clipping the step first: -1)
//   j5: 100 - 517         =   -417
//   b0: 32767 + 1 -> 32767;  b1: -32768 - 517 -> -32768
TEST(ReferenceFedAvg, SaturatesAtBothInt16Limits) {
  const v1::ModelVersion base =
      Base(3, 2, {32760, -32760, 0, -32768, 32767, 100}, {32767, -32768});
  const std::vector<v1::Update> updates = {
      Upd(2, {1, 517}, {8, -9, 127, 127, -127, -1}, {1, -1}, 7)};
  const ReferenceResult r = ReferenceFedAvg(base, updates, kLrOne);
  EXPECT_EQ(r.weights, (std::vector<int16_t>{32767, -32768, 127, 32767, -32768, -417}));
  EXPECT_EQ(r.bias, (std::vector<int16_t>{32767, -32768}));
  EXPECT_EQ(r.participants, 1u);
  EXPECT_EQ(r.samples, 2u);
  EXPECT_EQ(r.mean_local_loss_q16, 7u);
}

// lr = 1.25 (81920): step = round_half_even(1.25 * S / N), one rounding
// after the scaling. One update n = 1, scale 1, loss 101, and a second one
// n = 1 with zero deltas and loss 202, so N = 2 and the step is
// round_half_even(1.25 * q / 2):
//   q:         4    12   -12     5 | bias -4    20
//   1.25*q/2: 2.5  7.5  -7.5  3.125 |    -2.5  12.5
//   even:      2     8    -8     3 |      -2    12
// (Rounding q/2 first and scaling after gives 2.5 -> 2 -> 2.5 -> 2 for q = 5.)
// Loss: (101 + 202) / 2 = 151.5 -> 152 (even, upward this time).
TEST(ReferenceFedAvg, ServerLearningRateAboveOne) {
  const v1::ModelVersion base = Base(2, 2, {0, 0, 0, 0}, {0, 0});
  const std::vector<v1::Update> updates = {Upd(1, {1, 1}, {4, 12, -12, 5}, {-4, 20}, 101),
                                           Upd(1, {1, 1}, {0, 0, 0, 0}, {0, 0}, 202)};
  const ReferenceResult r = ReferenceFedAvg(base, updates, 81920);
  EXPECT_EQ(r.weights, (std::vector<int16_t>{2, 8, -8, 3}));
  EXPECT_EQ(r.bias, (std::vector<int16_t>{-2, 12}));
  EXPECT_EQ(r.mean_local_loss_q16, 152u);
}

// lr = 0.75 (49152), one update n = 1, scale 1: step = round(0.75 * q).
//   q:         3     5    -3    -7 | bias 1   -1
//   0.75*q:  2.25  3.75 -2.25 -5.25 | 0.75 -0.75
//   rounded:   2     4    -2    -5  |   1    -1
// And the smallest rate, lr = 2^-16 (1), where the step is s*q / 65536
// (n = 3 cancels), scales {512, 516}:
//   j0: 512*64   = 32768  -> 0.5     -> 0 (even)
//   j1: 512*65   = 33280  -> 0.5078  -> 1
//   j2: 516*127  = 65532  -> 0.99994 -> 1
//   j3: 516*-64  = -33024 -> -0.5039 -> -1
//   b0: 512*-65  = -33280 -> -0.5078 -> -1;  b1: 0 -> 0
TEST(ReferenceFedAvg, ServerLearningRateBelowOne) {
  {
    const v1::ModelVersion base = Base(2, 2, {0, 0, 0, 0}, {0, 0});
    const ReferenceResult r =
        ReferenceFedAvg(base, {Upd(1, {1, 1}, {3, 5, -3, -7}, {1, -1}, 0)}, 49152);
    EXPECT_EQ(r.weights, (std::vector<int16_t>{2, 4, -2, -5}));
    EXPECT_EQ(r.bias, (std::vector<int16_t>{1, -1}));
  }
  {
    const v1::ModelVersion base = Base(2, 2, {0, 0, 0, 0}, {0, 0});
    const ReferenceResult r =
        ReferenceFedAvg(base, {Upd(3, {512, 516}, {64, 65, 127, -64}, {-65, 0}, 0)}, 1);
    EXPECT_EQ(r.weights, (std::vector<int16_t>{0, 1, 1, -1}));
    EXPECT_EQ(r.bias, (std::vector<int16_t>{-1, 0}));
  }
}

// Sums far beyond 64 bits: 1,000 updates at the protocol's extremes, n =
// 2^24, scale 517; 500 with q = 127 and 500 with q = -126 (in j0; the
// opposite signs in j1). With lr = 1.0 the numerator lr * S reaches
// 2^16 * 500 * 2^24 * 517 * 127 ~ 2^64.9 for the positive half alone.
//   S_j0 / N = 517 * (500*127 - 500*126) / 1000 = 258.5 -> 258 (even)
//   S_j1 / N = -258.5 -> -258
// j2, j3 and the bias: q = 0. Every loss is 2^32 - 1, so the weighted
// loss sum is 1000 * 2^24 * (2^32 - 1) ~ 2^66 and the mean is 2^32 - 1.
TEST(ReferenceFedAvg, WideSumsDoNotOverflow) {
  const v1::ModelVersion base = Base(2, 2, {0, 0, 0, 0}, {0, 0});
  std::vector<v1::Update> updates;
  for (int i = 0; i < 1000; ++i) {
    const int q = i % 2 == 0 ? 127 : -126;
    updates.push_back(Upd(1u << 24, {517, 517}, {q, -q, 0, 0}, {0, 0}, 0xFFFFFFFFu));
  }
  const ReferenceResult r = ReferenceFedAvg(base, updates, kLrOne);
  EXPECT_EQ(r.weights, (std::vector<int16_t>{258, -258, 0, 0}));
  EXPECT_EQ(r.bias, (std::vector<int16_t>{0, 0}));
  EXPECT_EQ(r.participants, 1000u);
  EXPECT_EQ(r.samples, 1000ull << 24);
  EXPECT_EQ(r.mean_local_loss_q16, 0xFFFFFFFFu);
}

// The matcher accepts the hand-built committed version of the sample-
// weighting case above and names each kind of difference it must refuse.
TEST(ReferenceFedAvg, MatcherRefusesEveryKindOfDifference) {
  const v1::ModelVersion base = Base(2, 2, {5, 5, -5, -5}, {100, -100});
  const std::vector<v1::Update> updates = {Upd(3, {2, 5}, {10, -7, 4, 0}, {1, -2}, 1000),
                                           Upd(1, {7, 1}, {-20, 3, -1, 127}, {-128, 9}, 3)};
  v1::ModelVersion good = base;
  good.set_version(8);
  good.set_parent_version(7);
  good.set_weights(Int16Bytes({-15, 0, 10, 27}));
  good.set_bias(Int16Bytes({-122, -105}));
  good.mutable_metrics()->set_participants(2);
  good.mutable_metrics()->set_samples(4);
  good.mutable_metrics()->set_mean_local_loss_q16(751);
  EXPECT_TRUE(MatchesReferenceFedAvg(good, base, updates, kLrOne, kNoBounds));

  auto refused = [&](v1::ModelVersion m, const char* what) {
    const ::testing::AssertionResult r = MatchesReferenceFedAvg(m, base, updates, kLrOne, kNoBounds);
    EXPECT_FALSE(r) << what;
    EXPECT_NE(std::string(r.message()).find("version 8"), std::string::npos)
        << what << ": " << r.message();
  };
  v1::ModelVersion m = good;
  m.set_weights(Int16Bytes({-15, 0, 10, 28}));  // off by one LSB
  refused(m, "weight");
  m = good;
  m.set_bias(Int16Bytes({-123, -105}));
  refused(m, "bias");
  m = good;
  m.set_weights(Int16Bytes({-15, 0, 10}));
  refused(m, "size");
  m = good;
  m.mutable_metrics()->set_participants(3);
  refused(m, "participants");
  m = good;
  m.mutable_metrics()->set_samples(5);
  refused(m, "samples");
  m = good;
  m.mutable_metrics()->set_mean_local_loss_q16(750);
  refused(m, "loss");
  m = good;
  m.set_parent_version(6);
  refused(m, "parent");
  m = good;
  m.mutable_spec()->set_feature_count(4);
  refused(m, "shape");
  // The same bytes judged against another learning rate do not match.
  EXPECT_FALSE(MatchesReferenceFedAvg(good, base, updates, 81920, kNoBounds));
  EXPECT_FALSE(MatchesReferenceFedAvg(good, base, {}, kLrOne, kNoBounds));
}

}  // namespace
}  // namespace tinyfed::server
