// The inference API on deployed models (tinyfed_model_*): a decoded model
// classifies as an independent double-precision forward pass of the same
// int16 head says, and as the training context does with the same head;
// every refused model leaves the model being served untouched; buffers
// that hold no model are refused whatever their bytes.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "sdk_test_support.h"
#include "tinyfed/v1/model.pb.h"

namespace tinyfed::testing {
namespace {

constexpr uint32_t kFeatures = 64;
constexpr uint32_t kClasses = 10;
constexpr size_t kModelWords = TINYFED_MODEL_SIZE(kFeatures, kClasses) / 4 + 1;

// A 4-byte-aligned model buffer of TINYFED_MODEL_SIZE(64, 10) bytes.
struct ModelBuffer {
  uint32_t words[kModelWords] = {};
  void* data() { return words; }
  const void* data() const { return words; }
  static constexpr size_t size() { return TINYFED_MODEL_SIZE(kFeatures, kClasses); }
};

std::vector<int16_t> RandomValues(size_t n, uint32_t seed, double sigma, uint32_t frac_bits) {
  std::mt19937 rng(seed);
  std::normal_distribution<double> normal(0.0, sigma);
  std::vector<int16_t> v(n);
  for (auto& x : v) x = ToMaster(normal(rng), frac_bits);
  return v;
}

TaskParams ModelParams(uint32_t version, uint32_t seed, uint32_t features = kFeatures,
                       uint32_t classes = kClasses) {
  TaskParams p;
  p.version = version;
  p.features = features;
  p.classes = classes;
  p.zero_point = -3;
  p.weights = RandomValues(size_t{features} * classes, seed, 0.3, p.frac_bits);
  p.bias = RandomValues(classes, seed + 1, 0.3, p.frac_bits);
  return p;
}

// The backbone the task helper's feature quantization describes.
tinyfed_backbone_t BackboneOf(const v1::ModelVersion& m) {
  const auto& fq = m.spec().feature_quantization();
  return tinyfed_backbone_t{m.spec().feature_count(), fq.scale_multiplier(), fq.scale_shift(),
                            fq.zero_point()};
}

// argmax of W x + b in double precision, from the model's own bytes; -1
// when the two largest logits are within 2^-16 of each other, the device's
// logits being each within half a Q16 step of exact (one rounding of the
// scaled feature sum; the bias is exact), so such a sample may go either
// way.
int ReferenceClass(const v1::ModelVersion& m, const int8_t* x) {
  const auto& spec = m.spec();
  const int features = static_cast<int>(spec.feature_count());
  const int classes = static_cast<int>(spec.class_count());
  const double unit = std::ldexp(1.0, -static_cast<int>(spec.weight_frac_bits()));
  const auto& fq = spec.feature_quantization();
  const double scale = fq.scale_multiplier() * std::ldexp(1.0, fq.scale_shift() - 31);
  auto value = [](const std::string& bytes, int i) {
    const auto lo = static_cast<uint8_t>(bytes[2 * static_cast<size_t>(i)]);
    const auto hi = static_cast<uint8_t>(bytes[2 * static_cast<size_t>(i) + 1]);
    return static_cast<int16_t>(static_cast<uint16_t>(lo | (hi << 8)));
  };
  std::vector<double> z(static_cast<size_t>(classes));
  for (int c = 0; c < classes; ++c) {
    double acc = value(m.bias(), c) * unit;
    for (int f = 0; f < features; ++f) {
      acc += value(m.weights(), c * features + f) * unit * (x[f] - fq.zero_point()) * scale;
    }
    z[static_cast<size_t>(c)] = acc;
  }
  int best = 0;
  for (int c = 1; c < classes; ++c) {
    if (z[static_cast<size_t>(c)] > z[static_cast<size_t>(best)]) best = c;
  }
  for (int c = 0; c < classes; ++c) {
    if (c != best && z[static_cast<size_t>(best)] - z[static_cast<size_t>(c)] <= 1.0 / 65536.0) {
      return -1;
    }
  }
  return best;
}

QuantizedDataset Samples(uint32_t seed, size_t count = 400) {
  return MakeBlobs(11, seed, count, kFeatures, kClasses, 0.4, 6.0 / 127.0, -3);
}

std::vector<uint32_t> ClassifyAll(const ModelBuffer& model, const QuantizedDataset& data) {
  std::vector<uint32_t> labels(data.size());
  for (size_t i = 0; i < data.size(); ++i) {
    EXPECT_EQ(tinyfed_model_classify(model.data(), model.size(),
                                     data.x.data() + i * kFeatures, &labels[i]),
              TINYFED_OK);
  }
  return labels;
}

tinyfed_status_t Decode(const tinyfed_backbone_t& backbone, const std::string& msg,
                        ModelBuffer& model, tinyfed_model_info_t* info = nullptr) {
  return tinyfed_model_decode(&backbone, reinterpret_cast<const uint8_t*>(msg.data()),
                              msg.size(), model.data(), model.size(), info);
}

TEST(ModelDecode, ClassifiesAsADoublePrecisionForwardPassOfTheSameHead) {
  const v1::ModelVersion m = BuildTask(ModelParams(9, 5)).model();
  ModelBuffer model;
  tinyfed_model_info_t info{};
  ASSERT_EQ(Decode(BackboneOf(m), m.SerializeAsString(), model, &info), TINYFED_OK);
  EXPECT_EQ(info.version, 9u);
  EXPECT_EQ(info.feature_count, kFeatures);
  EXPECT_EQ(info.class_count, kClasses);
  EXPECT_EQ(info.weight_frac_bits, 12u);
  EXPECT_EQ(info.checksum, m.checksum());

  const QuantizedDataset data = Samples(21);
  const std::vector<uint32_t> labels = ClassifyAll(model, data);
  size_t compared = 0;
  std::vector<int> seen(kClasses, 0);
  for (size_t i = 0; i < data.size(); ++i) {
    const int expected = ReferenceClass(m, data.x.data() + i * kFeatures);
    if (expected < 0) continue;
    ++compared;
    ++seen[labels[i]];
    EXPECT_EQ(labels[i], static_cast<uint32_t>(expected)) << "sample " << i;
  }
  // Near-ties are rare (two logits within 2^-16 in a spread of several
  // units): nearly every sample must be compared, and the head must not
  // be one that answers a single class (the check would prove little).
  EXPECT_GE(compared, data.size() - 4);
  int classes_seen = 0;
  for (int n : seen) classes_seen += n > 0;
  EXPECT_GE(classes_seen, 5);
}

TEST(ModelDecode, ClassifiesAndEvaluatesExactlyAsTheTrainingContextDoes) {
  // The same head loaded as a task: tinyfed_classify and tinyfed_evaluate
  // are the reference of the contract "the same integer arithmetic".
  for (uint32_t features : {kFeatures, 37u}) {
    SCOPED_TRACE(features);
    const TaskParams p = ModelParams(4, 77, features, 6);
    const v1::RoundTask task = BuildTask(p);
    Device device("model-ref", kFeatures, kClasses, 16);
    ASSERT_EQ(device.Load(task), TINYFED_OK);
    ModelBuffer model;
    ASSERT_EQ(Decode(BackboneOf(task.model()), task.model().SerializeAsString(), model),
              TINYFED_OK);
    const QuantizedDataset data =
        MakeBlobs(12, 13, 200, static_cast<int>(features), 6, 0.5, 6.0 / 127.0, -3);
    for (size_t i = 0; i < data.size(); ++i) {
      uint32_t from_model = 99, from_task = 98;
      const int8_t* x = data.x.data() + i * features;
      ASSERT_EQ(tinyfed_model_classify(model.data(), model.size(), x, &from_model), TINYFED_OK);
      ASSERT_EQ(tinyfed_classify(device.ctx(), x, &from_task), TINYFED_OK);
      ASSERT_EQ(from_model, from_task) << "sample " << i;
    }
    const tinyfed_dataset_t view = data.view();
    tinyfed_evaluation_t a{}, b{};
    ASSERT_EQ(tinyfed_model_evaluate(model.data(), model.size(), &view, &a), TINYFED_OK);
    ASSERT_EQ(tinyfed_evaluate(device.ctx(), &view, &b), TINYFED_OK);
    EXPECT_EQ(a.model_version, 4u);
    EXPECT_EQ(a.samples, b.samples);
    EXPECT_EQ(a.correct, b.correct);
    EXPECT_EQ(a.loss_sum_q16, b.loss_sum_q16);
    EXPECT_GT(a.correct, 0u);
    EXPECT_LT(a.correct, a.samples);
  }
}

// One refused model: its bytes, the status the SDK must give, and why.
struct BadModel {
  const char* why;
  std::string bytes;
  tinyfed_status_t expected;
};

TEST(ModelDecode, RefusesABadModelAndTheServedModelClassifiesAsBefore) {
  const v1::ModelVersion good = BuildTask(ModelParams(3, 1)).model();
  const tinyfed_backbone_t backbone = BackboneOf(good);
  ModelBuffer serving;
  ASSERT_EQ(Decode(backbone, good.SerializeAsString(), serving), TINYFED_OK);
  const QuantizedDataset data = Samples(22, 100);
  const std::vector<uint32_t> before = ClassifyAll(serving, data);
  const ModelBuffer serving_copy = serving;

  const v1::ModelVersion next = BuildTask(ModelParams(4, 2)).model();
  std::vector<BadModel> bad;
  {
    v1::ModelVersion m = next;
    m.set_checksum(m.checksum() ^ 1u);
    bad.push_back({"wrong checksum", m.SerializeAsString(), TINYFED_ERR_CHECKSUM});
  }
  {
    v1::ModelVersion m = next;
    std::string w = m.weights();
    w[100] = static_cast<char>(w[100] ^ 0x10);  // one weight changed in transit
    m.set_weights(w);
    bad.push_back({"corrupted weight", m.SerializeAsString(), TINYFED_ERR_CHECKSUM});
  }
  {
    v1::ModelVersion m = next;
    m.set_weights(m.weights().substr(0, m.weights().size() - 2));  // one weight short
    bad.push_back({"weights short of the shape", m.SerializeAsString(),
                   TINYFED_ERR_SHAPE_MISMATCH});
  }
  {
    v1::ModelVersion m = next;
    m.mutable_spec()->set_class_count(9);  // the bytes hold 10 classes
    bad.push_back({"spec's shape not the bytes'", m.SerializeAsString(),
                   TINYFED_ERR_SHAPE_MISMATCH});
  }
  {
    // Another backbone's head: 32 features, consistent in itself.
    const v1::ModelVersion m = BuildTask(ModelParams(4, 3, 32, kClasses)).model();
    bad.push_back({"another backbone's feature count", m.SerializeAsString(),
                   TINYFED_ERR_FEATURE_SPEC});
  }
  {
    TaskParams p = ModelParams(4, 2);
    p.feature_scale = 4.0 / 127.0;
    bad.push_back({"another backbone's feature scale", BuildTask(p).model().SerializeAsString(),
                   TINYFED_ERR_FEATURE_SPEC});
  }
  {
    TaskParams p = ModelParams(4, 2);
    p.zero_point = 0;
    bad.push_back({"another backbone's zero point", BuildTask(p).model().SerializeAsString(),
                   TINYFED_ERR_FEATURE_SPEC});
  }
  {
    v1::ModelVersion m = next;
    m.set_version(0);
    bad.push_back({"version 0", m.SerializeAsString(), TINYFED_ERR_INVALID_TASK});
  }
  {
    v1::ModelVersion m = next;
    m.mutable_spec()->set_weight_frac_bits(15);
    bad.push_back({"weight format out of range", m.SerializeAsString(),
                   TINYFED_ERR_INVALID_TASK});
  }
  {
    v1::ModelVersion m = next;
    m.clear_spec();
    bad.push_back({"no spec", m.SerializeAsString(), TINYFED_ERR_INVALID_TASK});
  }
  {
    const std::string bytes = next.SerializeAsString();
    bad.push_back({"truncated by one byte", bytes.substr(0, bytes.size() - 1),
                   TINYFED_ERR_MALFORMED});
    bad.push_back({"truncated in the weights", bytes.substr(0, 300), TINYFED_ERR_MALFORMED});
  }
  {
    // Bias (6) before weights (5): the SDK cannot place it.
    std::string bytes;
    v1::ModelVersion head = next;
    head.clear_weights();
    head.clear_bias();
    v1::ModelVersion w;
    w.set_weights(next.weights());
    v1::ModelVersion b;
    b.set_bias(next.bias());
    bytes = head.SerializeAsString() + b.SerializeAsString() + w.SerializeAsString();
    bad.push_back({"bias before weights", bytes, TINYFED_ERR_MALFORMED});
  }

  for (const BadModel& b : bad) {
    SCOPED_TRACE(b.why);
    ModelBuffer spare;
    // The spare slot held a valid model before: a failed decode must not
    // leave it looking like one.
    ASSERT_EQ(Decode(backbone, good.SerializeAsString(), spare), TINYFED_OK);
    tinyfed_model_info_t info{};
    EXPECT_EQ(Decode(backbone, b.bytes, spare, &info), b.expected);
    uint32_t label = 0;
    EXPECT_EQ(tinyfed_model_classify(spare.data(), spare.size(), data.x.data(), &label),
              TINYFED_ERR_NO_MODEL);
    EXPECT_EQ(tinyfed_model_info(spare.data(), spare.size(), 0, &info), TINYFED_ERR_NO_MODEL);
    // The served model: not a byte changed, and the same answers.
    EXPECT_EQ(std::memcmp(serving.words, serving_copy.words, sizeof serving.words), 0);
    EXPECT_EQ(ClassifyAll(serving, data), before);
  }
  // The good next version is accepted by the same path.
  ModelBuffer spare;
  EXPECT_EQ(Decode(backbone, next.SerializeAsString(), spare), TINYFED_OK);
}

TEST(ModelDecode, ABufferTooSmallForTheHeadIsHeadTooLarge) {
  const v1::ModelVersion m = BuildTask(ModelParams(3, 1)).model();
  ModelBuffer model;
  const tinyfed_backbone_t backbone = BackboneOf(m);
  const std::string bytes = m.SerializeAsString();
  for (size_t size : {size_t{TINYFED_MODEL_SIZE(kFeatures, kClasses) - 1},
                      size_t{TINYFED_MODEL_SIZE(kFeatures, kClasses) / 2},
                      size_t{TINYFED_MODEL_HEADER_SIZE}, size_t{8}}) {
    SCOPED_TRACE(size);
    EXPECT_EQ(tinyfed_model_decode(&backbone, reinterpret_cast<const uint8_t*>(bytes.data()),
                                   bytes.size(), model.data(), size, nullptr),
              TINYFED_ERR_HEAD_TOO_LARGE);
  }
  // Exactly TINYFED_MODEL_SIZE is enough.
  EXPECT_EQ(tinyfed_model_decode(&backbone, reinterpret_cast<const uint8_t*>(bytes.data()),
                                 bytes.size(), model.data(),
                                 TINYFED_MODEL_SIZE(kFeatures, kClasses), nullptr),
            TINYFED_OK);
  // A message longer than any valid ModelVersion (the largest head, 4,096
  // weights and 32 biases of 2 bytes, and 320 more) is not parsed.
  const std::string padded = bytes + std::string(2 * 4096 + 2 * 32 + 320 + 1 - bytes.size(), '\0');
  EXPECT_EQ(Decode(backbone, padded, model), TINYFED_ERR_MESSAGE_TOO_LARGE);
}

TEST(ModelDecode, ArgumentsAreChecked) {
  const v1::ModelVersion m = BuildTask(ModelParams(3, 1)).model();
  const tinyfed_backbone_t backbone = BackboneOf(m);
  const std::string bytes = m.SerializeAsString();
  const auto* msg = reinterpret_cast<const uint8_t*>(bytes.data());
  ModelBuffer model;
  EXPECT_EQ(tinyfed_model_decode(nullptr, msg, bytes.size(), model.data(), model.size(), nullptr),
            TINYFED_ERR_ARGUMENT);
  EXPECT_EQ(tinyfed_model_decode(&backbone, nullptr, bytes.size(), model.data(), model.size(),
                                 nullptr),
            TINYFED_ERR_ARGUMENT);
  EXPECT_EQ(tinyfed_model_decode(&backbone, msg, bytes.size(), nullptr, model.size(), nullptr),
            TINYFED_ERR_ARGUMENT);
  auto* misaligned = reinterpret_cast<uint8_t*>(model.data()) + 2;
  EXPECT_EQ(tinyfed_model_decode(&backbone, msg, bytes.size(), misaligned, model.size() - 4,
                                 nullptr),
            TINYFED_ERR_ARGUMENT);
}

TEST(ModelBuffer, HoldingNoModelIsRefusedWhateverItsBytes) {
  const QuantizedDataset data = Samples(23, 10);
  const tinyfed_dataset_t view = data.view();
  uint32_t label = 0;
  tinyfed_evaluation_t evaluation{};
  tinyfed_model_info_t info{};
  auto expect_no_model = [&](const ModelBuffer& b, size_t size) {
    EXPECT_EQ(tinyfed_model_classify(b.data(), size, data.x.data(), &label),
              TINYFED_ERR_NO_MODEL);
    EXPECT_EQ(tinyfed_model_evaluate(b.data(), size, &view, &evaluation), TINYFED_ERR_NO_MODEL);
    EXPECT_EQ(tinyfed_model_info(b.data(), size, 1, &info), TINYFED_ERR_NO_MODEL);
  };
  {
    SCOPED_TRACE("zeroed");
    ModelBuffer zeroed;
    expect_no_model(zeroed, zeroed.size());
  }
  {
    SCOPED_TRACE("random bytes");
    std::mt19937 rng(5);
    for (int trial = 0; trial < 100; ++trial) {
      ModelBuffer garbage;
      for (auto& w : garbage.words) w = rng();
      expect_no_model(garbage, garbage.size());
    }
  }
  const v1::ModelVersion m = BuildTask(ModelParams(3, 1)).model();
  ModelBuffer valid;
  ASSERT_EQ(Decode(BackboneOf(m), m.SerializeAsString(), valid), TINYFED_OK);
  {
    SCOPED_TRACE("every single header byte changed (a torn or damaged header)");
    for (size_t byte = 0; byte < TINYFED_MODEL_HEADER_SIZE; ++byte) {
      for (uint8_t flip : {uint8_t{0x01}, uint8_t{0x80}, uint8_t{0xFF}}) {
        ModelBuffer torn = valid;
        reinterpret_cast<uint8_t*>(torn.data())[byte] ^= flip;
        SCOPED_TRACE(byte);
        expect_no_model(torn, torn.size());
      }
    }
  }
  {
    SCOPED_TRACE("a valid model with a size too small for its head");
    expect_no_model(valid, TINYFED_MODEL_SIZE(kFeatures, kClasses) - 1);
  }
  {
    SCOPED_TRACE("a model of another backbone fed a dataset of this one");
    EXPECT_EQ(tinyfed_model_classify(valid.data(), valid.size(), data.x.data(), &label),
              TINYFED_OK);
    QuantizedDataset narrow = MakeBlobs(1, 2, 10, 32, kClasses, 0.4, 6.0 / 127.0, -3);
    const tinyfed_dataset_t narrow_view = narrow.view();
    EXPECT_EQ(tinyfed_model_evaluate(valid.data(), valid.size(), &narrow_view, &evaluation),
              TINYFED_ERR_DATASET);
  }
}

TEST(ModelBuffer, InfoWithVerificationCatchesAWeightChangedInStorage) {
  const v1::ModelVersion m = BuildTask(ModelParams(6, 8)).model();
  ModelBuffer model;
  ASSERT_EQ(Decode(BackboneOf(m), m.SerializeAsString(), model), TINYFED_OK);
  tinyfed_model_info_t info{};
  ASSERT_EQ(tinyfed_model_info(model.data(), model.size(), 1, &info), TINYFED_OK);
  EXPECT_EQ(info.version, 6u);
  EXPECT_EQ(info.checksum, m.checksum());
  for (size_t at : {size_t{TINYFED_MODEL_HEADER_SIZE},  // first weight
                    size_t{TINYFED_MODEL_HEADER_SIZE + 2 * kFeatures * kClasses + 3}}) {  // a bias
    SCOPED_TRACE(at);
    ModelBuffer flipped = model;
    reinterpret_cast<uint8_t*>(flipped.data())[at] ^= 0x04;
    EXPECT_EQ(tinyfed_model_info(flipped.data(), flipped.size(), 1, &info),
              TINYFED_ERR_CHECKSUM);
    // Without verification the header alone is checked (the cheap check
    // classify makes at every call).
    EXPECT_EQ(tinyfed_model_info(flipped.data(), flipped.size(), 0, &info), TINYFED_OK);
  }
}

}  // namespace
}  // namespace tinyfed::testing
