// Federated evaluation on the device (tinyfed_evaluate): its correct count
// and summed loss against an independent double-precision forward pass of
// the same int16 head and int8 features, the tie and clamp rules, the
// evaluation carried in the signed update as the C++ parser reads it, and
// the call's errors.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <iostream>
#include <random>
#include <string>
#include <vector>

#include "sdk_test_support.h"

namespace tinyfed::testing {
namespace {

constexpr double kQ16 = 65536.0;

// Per-sample results of the reference forward pass.
struct Reference {
  uint32_t correct = 0;
  // Samples whose two largest logits lie within the device's fixed-point
  // error of each other (see Ambiguity below): their argmax may differ.
  uint32_t ambiguous = 0;
  double loss_sum = 0.0;  // nats, each term's label logit floored at
                          // z_max - `floor_nats` as the contract says
};

// The device's logits are each within half a Q16 step of the exact value
// (one round-to-nearest of the scaled feature sum; the bias is exact in
// Q16), so two logits closer than two half steps may swap order.
constexpr double kAmbiguity = 1.0 / kQ16;

// logits = W x + b in double precision, from the task exactly as the
// device receives it: w * 2^-f, (q - zp) * M * 2^(sh - 31), b * 2^-f.
// Ties go to the lowest class, as tinyfed_classify documents.
Reference Evaluate(const v1::RoundTask& task, const std::vector<int16_t>& w,
                   const std::vector<int16_t>& b, const QuantizedDataset& data,
                   double floor_nats = 28.5) {
  const v1::HeadSpec& spec = task.model().spec();
  const int features = static_cast<int>(spec.feature_count());
  const int classes = static_cast<int>(spec.class_count());
  const double unit = std::ldexp(1.0, -static_cast<int>(spec.weight_frac_bits()));
  const double scale = spec.feature_quantization().scale_multiplier() *
                       std::ldexp(1.0, spec.feature_quantization().scale_shift() - 31);
  const int zp = spec.feature_quantization().zero_point();
  Reference r;
  std::vector<double> z(static_cast<size_t>(classes));
  for (size_t i = 0; i < data.size(); ++i) {
    for (int c = 0; c < classes; ++c) {
      double acc = 0.0;
      for (int f = 0; f < features; ++f) {
        const double x = (data.x[i * static_cast<size_t>(features) + static_cast<size_t>(f)] - zp) *
                         scale;
        acc += w[static_cast<size_t>(c * features + f)] * unit * x;
      }
      z[static_cast<size_t>(c)] = acc + b[static_cast<size_t>(c)] * unit;
    }
    int best = 0;
    for (int c = 1; c < classes; ++c) {
      if (z[static_cast<size_t>(c)] > z[static_cast<size_t>(best)]) best = c;
    }
    const int label = data.y[i];
    if (best == label) ++r.correct;
    for (int c = 0; c < classes; ++c) {
      if (c != best && z[static_cast<size_t>(best)] - z[static_cast<size_t>(c)] <= kAmbiguity) {
        ++r.ambiguous;
        break;
      }
    }
    const double zmax = z[static_cast<size_t>(best)];
    double s = 0.0;
    for (double v : z) s += std::exp(v - zmax);
    const double diff = std::max(z[static_cast<size_t>(label)] - zmax, -floor_nats);
    r.loss_sum += std::log(s) - diff;
  }
  return r;
}

// How far the device's loss sum may be from the reference's, in Q16
// steps, for n samples of `classes` classes. Per sample: the logits' half
// step of error moves -ln p by at most one step (the loss's gradient in
// the logits sums to at most 2 in absolute value); each exp is within 2
// Q24 steps (tinyfed_exp_neg_q16), so ln s within 2 * classes / 2^24
// nats; the running product truncates by under 2^-31; ln(2) in Q20 is
// short by 6.3e-7 relative, of a ln s below ln(32). Once: the log2 of the
// product (under 2^-15, 1.4 steps in nats) and two floors.
double LossTolerance(size_t n, int classes) {
  const double per_sample = 1.0 + 2.0 * classes / 16777216.0 * kQ16 + std::ldexp(kQ16, -31) +
                            6.3e-7 * std::log(32.0) * kQ16;
  return per_sample * static_cast<double>(n) + 1.4 + 2.0;
}

std::vector<int16_t> RandomHead(size_t n, uint32_t seed, double sigma, uint32_t frac_bits) {
  std::mt19937 rng(seed);
  std::normal_distribution<double> normal(0.0, sigma);
  std::vector<int16_t> v(n);
  for (auto& x : v) x = ToMaster(normal(rng), frac_bits);
  return v;
}

struct Shape {
  const char* name;
  uint32_t features, classes, frac_bits;
  int32_t zero_point;
  double feature_scale;
  double separation;
};

// The 64x10 head; an odd feature count with a zero point (rows not
// word-aligned); wider than one 64-feature chunk with a small scale (a
// logit shift above 32).
const Shape kShapes[] = {
    {"64x10", 64, 10, 12, 0, 6.0 / 127.0, 0.4},
    {"37x3", 37, 3, 10, -20, 5.0 / 127.0, 0.5},
    {"70x4", 70, 4, 12, 3, 0.01, 0.5},
};

TEST(Evaluation, MatchesADoublePrecisionForwardPass) {
  for (const Shape& s : kShapes) {
    SCOPED_TRACE(s.name);
    TaskParams p;
    p.features = s.features;
    p.classes = s.classes;
    p.frac_bits = s.frac_bits;
    p.zero_point = s.zero_point;
    p.feature_scale = s.feature_scale;
    // A head that gets most samples right and some wrong, as a model in
    // service does: trained (by the SDK, on another split of the same
    // problem) from a random start, so both counts and the loss matter.
    p.weights = RandomHead(size_t{s.features} * s.classes, 31, 0.1, s.frac_bits);
    p.bias = RandomHead(s.classes, 32, 0.1, s.frac_bits);
    {
      const QuantizedDataset split =
          MakeBlobs(41, 43, 300, static_cast<int>(s.features), static_cast<int>(s.classes),
                    s.separation, s.feature_scale, s.zero_point);
      Device trainer("eval-trainer", s.features, s.classes, 16);
      ASSERT_EQ(trainer.Load(BuildTask(p)), TINYFED_OK);
      const tinyfed_dataset_t v = split.view();
      ASSERT_EQ(tinyfed_train(trainer.ctx(), &v), TINYFED_OK);
      tinyfed_head_view_t head{};
      ASSERT_EQ(tinyfed_local_head(trainer.ctx(), &head), TINYFED_OK);
      p.weights.assign(head.weights, head.weights + size_t{s.features} * s.classes);
      p.bias.assign(head.bias, head.bias + s.classes);
    }
    const v1::RoundTask task = BuildTask(p);
    const QuantizedDataset data =
        MakeBlobs(41, 42, 700, static_cast<int>(s.features), static_cast<int>(s.classes),
                  s.separation, s.feature_scale, s.zero_point);
    Device dev("eval-" + std::string(s.name), s.features, s.classes, 16);
    ASSERT_EQ(dev.Load(task), TINYFED_OK) << tinyfed_last_error_message(dev.ctx());
    const tinyfed_dataset_t view = data.view();
    tinyfed_evaluation_t e{};
    ASSERT_EQ(tinyfed_evaluate(dev.ctx(), &view, &e), TINYFED_OK)
        << tinyfed_last_error_message(dev.ctx());

    const Reference ref = Evaluate(task, p.weights, p.bias, data);
    EXPECT_EQ(e.model_version, p.version);
    EXPECT_EQ(e.samples, data.size());
    // Not trivial: the head is neither always right nor always wrong.
    EXPECT_GT(ref.correct, data.size() / 2);
    EXPECT_LT(ref.correct, data.size());
    std::cout << s.name << ": " << ref.correct << " of " << data.size() << " right, "
              << ref.ambiguous << " ambiguous, mean loss "
              << ref.loss_sum / static_cast<double>(data.size()) << " nats, device off by "
              << static_cast<double>(e.loss_sum_q16) - ref.loss_sum * kQ16
              << " Q16 steps (tolerance "
              << LossTolerance(data.size(), static_cast<int>(s.classes)) << ")\n";
    // Exact unless a sample's top two logits are within the device's error.
    EXPECT_LE(ref.ambiguous, 2u);
    EXPECT_LE(std::max(e.correct, ref.correct) - std::min(e.correct, ref.correct), ref.ambiguous);
    const double tolerance = LossTolerance(data.size(), static_cast<int>(s.classes));
    EXPECT_NEAR(static_cast<double>(e.loss_sum_q16), ref.loss_sum * kQ16, tolerance)
        << "mean loss " << ref.loss_sum / static_cast<double>(data.size()) << " nats";
    EXPECT_LE(e.loss_sum_q16, uint64_t{e.samples} << 21);

    // The device's own classify decides correct the same way.
    uint32_t classified = 0;
    for (size_t i = 0; i < data.size(); ++i) {
      uint32_t label = 0;
      ASSERT_EQ(tinyfed_classify(dev.ctx(), &data.x[i * s.features], &label), TINYFED_OK);
      if (label == data.y[i]) ++classified;
    }
    EXPECT_EQ(e.correct, classified);
  }
}

// Classes 2 and 5 have the same row and bias and a bias that puts them on
// top for every sample: an exact tie, which goes to class 2.
TEST(Evaluation, TiesGoToTheLowestClass) {
  TaskParams p;
  p.classes = 6;
  p.weights = RandomHead(size_t{p.features} * p.classes, 51, 0.01, p.frac_bits);
  p.bias.assign(p.classes, 0);
  for (uint32_t f = 0; f < p.features; ++f) p.weights[5 * p.features + f] = p.weights[2 * p.features + f];
  p.bias[2] = p.bias[5] = ToMaster(6.0, p.frac_bits);
  const v1::RoundTask task = BuildTask(p);
  const QuantizedDataset data = MakeBlobs(52, 53, 300, 64, 6, 0.3, p.feature_scale, 0);
  size_t label2 = 0, label5 = 0;
  for (uint8_t y : data.y) {
    label2 += (y == 2);
    label5 += (y == 5);
  }
  ASSERT_NE(label2, label5);  // so that the wrong rule shows
  Device dev("eval-ties", 64, 6, 16);
  ASSERT_EQ(dev.Load(task), TINYFED_OK);
  const tinyfed_dataset_t view = data.view();
  tinyfed_evaluation_t e{};
  ASSERT_EQ(tinyfed_evaluate(dev.ctx(), &view, &e), TINYFED_OK);
  EXPECT_EQ(e.correct, label2);
  EXPECT_EQ(Evaluate(task, p.weights, p.bias, data).correct, label2);
  // Each sample's loss: ln(2) + the others' e^-6, near enough.
  EXPECT_NEAR(static_cast<double>(e.loss_sum_q16),
              Evaluate(task, p.weights, p.bias, data).loss_sum * kQ16,
              LossTolerance(data.size(), 6));
}

// A head whose class 1 logit lies `gap` nats above the others for every
// sample (zero weights, one bias), with 4 frac bits so the bias can reach
// 2,047 nats; the samples' labels alternate 0 and 1.
struct GapCase {
  TaskParams params;
  QuantizedDataset data;
};
GapCase Gap(double gap) {
  GapCase g;
  g.params.frac_bits = 4;
  g.params.classes = 3;
  g.params.weights.assign(size_t{g.params.features} * 3, 0);
  g.params.bias = {0, ToMaster(gap, 4), 0};
  g.data = MakeBlobs(61, 62, 40, 64, 3, 0.5, g.params.feature_scale, 0);
  for (size_t i = 0; i < g.data.size(); ++i) g.data.y[i] = static_cast<uint8_t>(i % 2);
  return g;
}

tinyfed_evaluation_t EvaluateGap(const GapCase& g) {
  Device dev("eval-gap", 64, 3, 16);
  tinyfed_evaluation_t e{};
  EXPECT_EQ(dev.Load(BuildTask(g.params)), TINYFED_OK);
  const tinyfed_dataset_t view = g.data.view();
  EXPECT_EQ(tinyfed_evaluate(dev.ctx(), &view, &e), TINYFED_OK);
  return e;
}

TEST(Evaluation, AHugelyWrongLogitCountsAsTwentyEightAndAHalfNats) {
  // 2,047.9 nats: the true loss of a label-0 sample. The contract takes
  // its z_label - z_max as -28.5, and its exponential sum is exactly 1
  // (the others' exp underflow to 0 in Q24 either way).
  const GapCase g = Gap(32767.0 / 16.0);
  const tinyfed_evaluation_t e = EvaluateGap(g);
  const size_t wrong = g.data.size() / 2;
  EXPECT_EQ(e.correct, g.data.size() - wrong);
  const double expected = 28.5 * kQ16 * static_cast<double>(wrong);  // label-1 terms are 0
  EXPECT_NEAR(static_cast<double>(e.loss_sum_q16), expected, LossTolerance(g.data.size(), 3));
  EXPECT_LE(e.loss_sum_q16, uint64_t{e.samples} << 21);
  EXPECT_LT(e.loss_sum_q16, uint64_t{e.samples} * TINYFED_EVALUATION_TERM_MAX_Q16);
}

TEST(Evaluation, TheFloorLiesBetweenTwentyEightAndTwentyNineNats) {
  // 28.25 nats below: counted as it is; 28.75 below: counted as 28.5.
  const GapCase below = Gap(28.25);
  const tinyfed_evaluation_t e = EvaluateGap(below);
  EXPECT_NEAR(static_cast<double>(e.loss_sum_q16),
              Evaluate(BuildTask(below.params), below.params.weights, below.params.bias,
                       below.data, 1e9)
                      .loss_sum *
                  kQ16,
              LossTolerance(below.data.size(), 3));
  const GapCase beyond = Gap(28.75);
  const tinyfed_evaluation_t f = EvaluateGap(beyond);
  const double unclamped = Evaluate(BuildTask(beyond.params), beyond.params.weights,
                                    beyond.params.bias, beyond.data, 1e9)
                               .loss_sum;
  const double clamped = Evaluate(BuildTask(beyond.params), beyond.params.weights,
                                  beyond.params.bias, beyond.data)
                             .loss_sum;
  // 20 samples 0.25 nats apart: far beyond the tolerance.
  ASSERT_GT((unclamped - clamped) * kQ16, 10 * LossTolerance(beyond.data.size(), 3));
  EXPECT_NEAR(static_cast<double>(f.loss_sum_q16), clamped * kQ16,
              LossTolerance(beyond.data.size(), 3));
}

// The evaluation as the server receives it: inside the signed Update.
TEST(Evaluation, TheSignedUpdateCarriesIt) {
  TaskParams p;
  p.weights = RandomHead(64 * 10, 71, 0.2, p.frac_bits);
  const QuantizedDataset data = MakeBlobs(72, 73, 120, 64, 10, 0.4, p.feature_scale, 0);
  const tinyfed_dataset_t view = data.view();

  Device plain("eval-wire");
  ASSERT_EQ(plain.Load(BuildTask(p)), TINYFED_OK);
  ASSERT_EQ(tinyfed_train(plain.ctx(), &view), TINYFED_OK);
  v1::Update without;
  ASSERT_TRUE(without.ParseFromString(plain.EncodeUpdate()));
  EXPECT_FALSE(without.has_evaluation());

  Device dev("eval-wire");
  ASSERT_EQ(dev.Load(BuildTask(p)), TINYFED_OK);
  tinyfed_evaluation_t e{};
  ASSERT_EQ(tinyfed_evaluate(dev.ctx(), &view, &e), TINYFED_OK);
  ASSERT_EQ(tinyfed_train(dev.ctx(), &view), TINYFED_OK);
  const std::string signed_update = dev.EncodeSignedUpdate();
  const Envelope envelope = ParseEnvelope(signed_update);
  ASSERT_TRUE(envelope.ok);
  v1::Update with;
  ASSERT_TRUE(with.ParseFromString(envelope.body));
  ASSERT_TRUE(with.has_evaluation());
  EXPECT_EQ(with.evaluation().model_version(), with.base_version());
  EXPECT_EQ(with.evaluation().model_version(), p.version);
  EXPECT_EQ(with.evaluation().samples(), e.samples);
  EXPECT_EQ(with.evaluation().samples(), with.sample_count());
  EXPECT_EQ(with.evaluation().correct(), e.correct);
  EXPECT_EQ(with.evaluation().loss_sum_q16(), e.loss_sum_q16);
  EXPECT_GT(e.loss_sum_q16, 0u);
  // The tag covers the body with the evaluation in it (the envelope's tag
  // is over exactly these bytes).
  EXPECT_NE(envelope.body.find(with.evaluation().SerializeAsString()), std::string::npos);

  // Evaluating first leaves training as it was: the rest of the update is
  // the same, bit for bit.
  with.clear_evaluation();
  EXPECT_EQ(with.SerializeAsString(), without.SerializeAsString());

  // A task loaded after the evaluation drops it: it was the old task's.
  ASSERT_EQ(dev.Load(BuildTask(p)), TINYFED_OK);
  ASSERT_EQ(tinyfed_train(dev.ctx(), &view), TINYFED_OK);
  v1::Update next;
  ASSERT_TRUE(next.ParseFromString(dev.EncodeUpdate()));
  EXPECT_FALSE(next.has_evaluation());
}

TEST(Evaluation, Errors) {
  TaskParams p;
  const QuantizedDataset data = MakeBlobs(81, 82, 20, 64, 10, 0.4, p.feature_scale, 0);
  tinyfed_dataset_t view = data.view();
  tinyfed_evaluation_t e{};

  Device fresh("eval-errors");
  EXPECT_EQ(tinyfed_evaluate(fresh.ctx(), &view, &e), TINYFED_ERR_STATE);  // no task

  Device dev("eval-errors");
  ASSERT_EQ(dev.Load(BuildTask(p)), TINYFED_OK);
  EXPECT_EQ(tinyfed_evaluate(nullptr, &view, &e), TINYFED_ERR_ARGUMENT);
  EXPECT_EQ(tinyfed_evaluate(dev.ctx(), nullptr, &e), TINYFED_ERR_ARGUMENT);
  EXPECT_EQ(tinyfed_evaluate(dev.ctx(), &view, nullptr), TINYFED_ERR_ARGUMENT);
  tinyfed_dataset_t bad = view;
  bad.features = nullptr;
  EXPECT_EQ(tinyfed_evaluate(dev.ctx(), &bad, &e), TINYFED_ERR_ARGUMENT);
  bad = view;
  bad.labels = nullptr;
  EXPECT_EQ(tinyfed_evaluate(dev.ctx(), &bad, &e), TINYFED_ERR_ARGUMENT);
  // More samples than the protocol counts (2^24), refused before any is
  // read: the pointers cover only 20.
  bad = view;
  bad.count = TINYFED_MAX_SAMPLES + 1u;
  EXPECT_EQ(tinyfed_evaluate(dev.ctx(), &bad, &e), TINYFED_ERR_DATASET);
  bad.count = 0;
  EXPECT_EQ(tinyfed_evaluate(dev.ctx(), &bad, &e), TINYFED_ERR_DATASET);
  bad = view;
  bad.feature_count = 63;
  EXPECT_EQ(tinyfed_evaluate(dev.ctx(), &bad, &e), TINYFED_ERR_DATASET);
  std::vector<uint8_t> labels = data.y;
  labels[7] = 10;
  bad = view;
  bad.labels = labels.data();
  EXPECT_EQ(tinyfed_evaluate(dev.ctx(), &bad, &e), TINYFED_ERR_DATASET);

  // None of the refusals left an evaluation behind.
  ASSERT_EQ(tinyfed_train(dev.ctx(), &view), TINYFED_OK);
  v1::Update update;
  ASSERT_TRUE(update.ParseFromString(dev.EncodeUpdate()));
  EXPECT_FALSE(update.has_evaluation());

  // After training the head is no longer the task's model.
  EXPECT_EQ(tinyfed_evaluate(dev.ctx(), &view, &e), TINYFED_ERR_STATE);
  EXPECT_STRNE(tinyfed_last_error_message(dev.ctx()), "");
}

}  // namespace
}  // namespace tinyfed::testing
