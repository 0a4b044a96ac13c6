// Numerics of on-device training against the float twin (the same
// algorithm in double precision, device-agent/float_twin.h), on seeded
// synthetic data: accuracy, loss, the int8 delta's error and bias, and
// determinism.
#include <gtest/gtest.h>

#include <cmath>
#include <iostream>
#include <random>
#include <string>
#include <vector>

#include "sdk_test_support.h"
#include "tinyfed_common/quantize.h"

namespace tinyfed::testing {
namespace {

constexpr int kFeatures = 64;
constexpr int kClasses = 10;
constexpr double kScale = 6.0 / 127.0;  // features clipped at about 6 sigma

// Class means spread so that the head reaches roughly 85-90% on held-out
// data: hard enough that a worse training algorithm shows up as lower
// accuracy, easy enough to train in a few epochs.
constexpr double kSeparation = 0.4;

FloatPlan TwinPlan(const TaskParams& p, const Device& dev) {
  FloatPlan plan;
  plan.epochs = p.epochs;
  plan.batch_size = p.batch_size;
  // The twin uses exactly the learning rate the device receives (Q16).
  plan.learning_rate = ToQ16(p.learning_rate) / 65536.0;
  plan.seed = p.seed;
  plan.device_hash = dev.hash();
  return plan;
}

// The float twin's starting point: the task's global head, dequantized.
FloatTwin TwinFromTask(const TaskParams& p) {
  FloatTwin twin(static_cast<int>(p.features), static_cast<int>(p.classes));
  for (uint32_t c = 0; c < p.classes; ++c) {
    for (uint32_t f = 0; f < p.features; ++f) {
      const size_t i = c * p.features + f;
      twin.weights()(c, f) = p.weights.empty() ? 0.0 : FromMaster(p.weights[i], p.frac_bits);
    }
    twin.bias()(c) = p.bias.empty() ? 0.0 : FromMaster(p.bias[c], p.frac_bits);
  }
  return twin;
}

struct Comparison {
  double int_accuracy = 0;
  double float_accuracy = 0;
  double int_loss = 0;
  double float_loss = 0;
};

Comparison TrainBoth(const TaskParams& p, const std::string& device_id,
                     const QuantizedDataset& train, const QuantizedDataset& test) {
  Device dev(device_id, p.features, p.classes, 16);
  Comparison r;
  EXPECT_EQ(dev.Load(BuildTask(p)), TINYFED_OK) << tinyfed_last_error_message(dev.ctx());
  tinyfed_dataset_t view = train.view();
  EXPECT_EQ(tinyfed_train(dev.ctx(), &view), TINYFED_OK);
  r.int_accuracy = DeviceAccuracy(dev.ctx(), test);
  v1::Update update;
  EXPECT_TRUE(update.ParseFromString(dev.EncodeUpdate()));
  r.int_loss = update.local_loss_q16() / 65536.0;

  FloatTwin twin = TwinFromTask(p);
  r.float_loss = twin.Train(TwinPlan(p, dev), train.real);
  r.float_accuracy = twin.Accuracy(test.real);
  return r;
}

TEST(Training, IntegerHeadIsWithinOnePointOfTheFloatTwin) {
  const QuantizedDataset train = MakeBlobs(7, 100, 1500, kFeatures, kClasses, kSeparation, kScale, 0);
  const QuantizedDataset test = MakeBlobs(7, 200, 3000, kFeatures, kClasses, kSeparation, kScale, 0);
  TaskParams p;
  p.epochs = 5;
  p.batch_size = 8;
  p.learning_rate = 0.1;
  for (const char* id : {"dev-a", "dev-b", "dev-c"}) {
    const Comparison r = TrainBoth(p, id, train, test);
    std::cout << id << ": integer accuracy " << r.int_accuracy << ", float twin "
              << r.float_accuracy << ", loss " << r.int_loss << " vs " << r.float_loss << "\n";
    // The task must be learnable but not trivial for the comparison to mean
    // anything.
    EXPECT_GT(r.float_accuracy, 0.70);
    EXPECT_LT(r.float_accuracy, 0.97);
    // Acceptance: within 1 percentage point (30 of 3000 test samples).
    EXPECT_NEAR(r.int_accuracy, r.float_accuracy, 0.01) << id;
    // The reported loss follows the twin's: fixed-point exp and log are
    // exact to ~2^-15, so the gap is the drift of the two trajectories
    // through stochastic rounding (measured: under 0.1%); 1% leaves room
    // for other seeds while still catching a wrong softmax or log.
    EXPECT_NEAR(r.int_loss, r.float_loss, 0.01 * r.float_loss) << id;
  }
}

TEST(Training, NonZeroStartZeroPointAndOtherFormatsTrackTheTwin) {
  // Asymmetric features (zero point -20, smaller scale), a non-zero global
  // head, 10 fraction bits, odd batch size with a short last batch.
  const double scale = 5.0 / 127.0;
  const QuantizedDataset train = MakeBlobs(9, 300, 1001, kFeatures, kClasses, kSeparation, scale, -20);
  const QuantizedDataset test = MakeBlobs(9, 400, 3000, kFeatures, kClasses, kSeparation, scale, -20);
  TaskParams p;
  p.zero_point = -20;
  p.feature_scale = scale;
  p.frac_bits = 10;
  p.epochs = 4;
  p.batch_size = 7;
  p.learning_rate = 0.15;
  std::mt19937 rng(5);
  std::normal_distribution<double> w(0.0, 0.05);
  p.weights.resize(kFeatures * kClasses);
  for (auto& v : p.weights) v = ToMaster(w(rng), p.frac_bits);
  p.bias.resize(kClasses);
  for (auto& v : p.bias) v = ToMaster(w(rng), p.frac_bits);
  const Comparison r = TrainBoth(p, "dev-z", train, test);
  std::cout << "zero point -20: integer accuracy " << r.int_accuracy << ", float twin "
            << r.float_accuracy << "\n";
  EXPECT_GT(r.float_accuracy, 0.70);
  EXPECT_NEAR(r.int_accuracy, r.float_accuracy, 0.01);
}

TEST(Training, LossOfAnUntrainedHeadIsLnOfClassCount) {
  // One epoch, one batch holding every sample: every forward pass sees the
  // zero head, so each sample's loss is exactly ln(10).
  const QuantizedDataset train = MakeBlobs(3, 4, 64, kFeatures, kClasses, 1.0, kScale, 0);
  TaskParams p;
  p.epochs = 1;
  p.batch_size = 64;
  Device dev("dev-1", kFeatures, kClasses, 64);
  ASSERT_EQ(dev.Load(BuildTask(p)), TINYFED_OK);
  tinyfed_dataset_t view = train.view();
  ASSERT_EQ(tinyfed_train(dev.ctx(), &view), TINYFED_OK);
  v1::Update update;
  ASSERT_TRUE(update.ParseFromString(dev.EncodeUpdate()));
  // Fixed-point log2 truncates below 2^-15 and exp is exact at 0: the loss
  // is within 2^-14 of ln(10).
  EXPECT_NEAR(update.local_loss_q16() / 65536.0, std::log(10.0), 1.0 / 16384);
}

// Exact delta local - global of a trained device, and its int8 form.
struct DeltaPair {
  std::vector<int32_t> exact;
  std::vector<int32_t> dequantized;
  std::vector<uint32_t> scales;  // per value, its row's scale
};

DeltaPair TrainAndQuantize(const TaskParams& p, const std::string& id,
                           const QuantizedDataset& train) {
  Device dev(id, p.features, p.classes, 16);
  DeltaPair d;
  if (dev.Load(BuildTask(p)) != TINYFED_OK) return d;
  tinyfed_dataset_t view = train.view();
  if (tinyfed_train(dev.ctx(), &view) != TINYFED_OK) return d;
  v1::Update u;
  if (!u.ParseFromString(dev.EncodeUpdate())) return d;
  tinyfed_head_view_t g, l;
  if (tinyfed_global_head(dev.ctx(), &g) != TINYFED_OK ||
      tinyfed_local_head(dev.ctx(), &l) != TINYFED_OK) {
    return d;
  }
  for (uint32_t c = 0; c < p.classes; ++c) {
    const uint32_t scale = u.row_scales(static_cast<int>(c));
    for (uint32_t f = 0; f <= p.features; ++f) {  // f == features: the bias
      const bool bias = f == p.features;
      const size_t i = c * p.features + f;
      d.exact.push_back(bias ? l.bias[c] - g.bias[c] : l.weights[i] - g.weights[i]);
      const auto q = static_cast<int8_t>(bias ? u.bias_delta()[c] : u.weight_delta()[i]);
      d.dequantized.push_back(tinyfed_dequantize_s8(q, scale));
      d.scales.push_back(scale);
    }
  }
  return d;
}

TEST(DeltaQuantization, ErrorIsWithinTheDocumentedBound) {
  const QuantizedDataset train = MakeBlobs(7, 100, 400, kFeatures, kClasses, kSeparation, kScale, 0);
  TaskParams p;
  p.learning_rate = 0.5;  // large steps, so rows need scales well above 1
  const DeltaPair d = TrainAndQuantize(p, "dev-q", train);
  ASSERT_EQ(d.exact.size(), 650u);
  double sum_sq = 0, sum_scale_sq = 0;
  uint32_t max_scale = 0;
  for (size_t i = 0; i < d.exact.size(); ++i) {
    const int32_t err = d.dequantized[i] - d.exact[i];
    // quantize.h: |q * s - delta| < s for every value.
    ASSERT_LT(std::abs(err), static_cast<int32_t>(d.scales[i])) << i;
    sum_sq += double(err) * err;
    sum_scale_sq += double(d.scales[i]) * d.scales[i];
    max_scale = std::max(max_scale, d.scales[i]);
  }
  ASSERT_GT(max_scale, 4u) << "the test needs rows that do not travel exactly";
  // Stochastic rounding's variance is r(1-r)s^2 <= s^2/4 per value; the
  // mean square error over 650 values stays below that bound.
  EXPECT_LE(sum_sq, sum_scale_sq / 4);
  std::cout << "delta RMS error " << std::sqrt(sum_sq / 650) << " steps, RMS scale "
            << std::sqrt(sum_scale_sq / 650) << "\n";
}

TEST(DeltaQuantization, DequantizedDeltaIsUnbiasedOverSeeds) {
  // Over many plan seeds the rounding error q*s - delta must average to
  // zero. Each error has mean 0 and variance <= s^2/4, so the sum over
  // seeds divided by sqrt(sum s^2/4) is a z-score: 5 sigma per value, and
  // the same for the pooled sum over all values (which floor or
  // round-to-nearest-even rounding would push to hundreds of sigma).
  const QuantizedDataset train = MakeBlobs(7, 100, 96, kFeatures, kClasses, kSeparation, kScale, 0);
  TaskParams p;
  p.learning_rate = 0.5;
  p.epochs = 1;
  constexpr int kSeeds = 300;
  std::vector<double> err_sum(650, 0.0), var_sum(650, 0.0);
  double exact_abs = 0;
  for (int s = 0; s < kSeeds; ++s) {
    p.seed = 1000u + static_cast<uint32_t>(s);
    const DeltaPair d = TrainAndQuantize(p, "dev-u", train);
    ASSERT_EQ(d.exact.size(), 650u);
    for (size_t i = 0; i < 650; ++i) {
      err_sum[i] += d.dequantized[i] - d.exact[i];
      var_sum[i] += double(d.scales[i]) * d.scales[i] / 4;
      exact_abs += std::abs(d.exact[i]);
    }
  }
  double pooled_err = 0, pooled_var = 0, worst_z = 0;
  for (size_t i = 0; i < 650; ++i) {
    const double z = err_sum[i] / std::sqrt(var_sum[i]);
    worst_z = std::max(worst_z, std::abs(z));
    pooled_err += err_sum[i];
    pooled_var += var_sum[i];
  }
  const double pooled_z = pooled_err / std::sqrt(pooled_var);
  std::cout << "unbiasedness: worst per-value z " << worst_z << ", pooled z " << pooled_z
            << ", mean |delta| " << exact_abs / (650.0 * kSeeds) << " steps\n";
  EXPECT_LT(worst_z, 5.0);
  EXPECT_LT(std::abs(pooled_z), 5.0);
}

TEST(Determinism, SameInputsGiveSameBytes) {
  const QuantizedDataset train = MakeBlobs(7, 100, 300, kFeatures, kClasses, kSeparation, kScale, 0);
  TaskParams p;
  auto run = [&](const std::string& id, uint32_t seed) {
    p.seed = seed;
    Device dev(id);
    EXPECT_EQ(dev.Load(BuildTask(p)), TINYFED_OK);
    tinyfed_dataset_t view = train.view();
    EXPECT_EQ(tinyfed_train(dev.ctx(), &view), TINYFED_OK);
    return dev.EncodeUpdate();
  };
  const std::string first = run("dev-1", 42);
  ASSERT_FALSE(first.empty());
  EXPECT_EQ(run("dev-1", 42), first);
  // Training twice on one context also repeats exactly.
  Device dev("dev-1");
  p.seed = 42;
  ASSERT_EQ(dev.Load(BuildTask(p)), TINYFED_OK);
  tinyfed_dataset_t view = train.view();
  ASSERT_EQ(tinyfed_train(dev.ctx(), &view), TINYFED_OK);
  ASSERT_EQ(tinyfed_train(dev.ctx(), &view), TINYFED_OK);
  EXPECT_EQ(dev.EncodeUpdate(), first);
  // The seed and the device id both matter.
  EXPECT_NE(run("dev-1", 43), first);
  EXPECT_NE(run("dev-2", 42), first);
}

}  // namespace
}  // namespace tinyfed::testing
