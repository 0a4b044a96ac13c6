// The training kernels' edge shapes on the host (the portable variants; the
// Cortex-M4 variants are compared with these byte for byte by
// tests/tools/cortex_m4_bitexact.sh on the same shapes), the protocol's
// largest heads in contexts of exactly their size, and the 64-by-32
// division the device uses for step scales and the mean loss.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <functional>
#include <random>
#include <string>

#include "sdk_test_support.h"
#include "tinyfed_common/fixed_point.h"
#include "tinyfed_common/quantize.h"

namespace tinyfed::testing {
namespace {

TEST(Udiv64By32, MatchesBuiltInDivisionWheneverTheQuotientFits32Bits) {
  std::mt19937_64 rng(32);
  for (int i = 0; i < 200000; ++i) {
    uint32_t den = static_cast<uint32_t>(rng() >> (rng() % 32));
    if (den == 0) den = 1;
    // A high word below den keeps the quotient within 32 bits.
    const uint64_t num = (((rng() >> 32) % den) << 32) | static_cast<uint32_t>(rng());
    uint32_t rem = 0;
    ASSERT_EQ(tinyfed_udiv64_32(num, den, &rem), num / den) << num << " / " << den;
    ASSERT_EQ(rem, num % den);
  }
  // The extremes: the largest quotient and divisors with the top bit set,
  // where the remainder's shift carries out of the word.
  uint32_t rem = 0;
  EXPECT_EQ(tinyfed_udiv64_32(0xFFFFFFFFull, 1, &rem), 0xFFFFFFFFu);
  EXPECT_EQ(rem, 0u);
  const uint64_t top = (uint64_t{0xFFFFFFFEu} << 32) | 0xFFFFFFFFu;
  EXPECT_EQ(tinyfed_udiv64_32(top, 0xFFFFFFFFu, &rem), top / 0xFFFFFFFFu);
  EXPECT_EQ(rem, top % 0xFFFFFFFFu);
  EXPECT_EQ(tinyfed_udiv64_32(uint64_t{1} << 63, 0x80000001u, nullptr),
            (uint64_t{1} << 63) / 0x80000001u);
}

struct Shape {
  const char* name;
  uint32_t features, classes, batch, samples, frac_bits;
  int32_t zero_point;
  double feature_scale, learning_rate;
};

// The shapes tests/client-sdk/fixture_gen.cc gives the Cortex-M4 firmware:
// an odd feature count with a one-feature last quad and an odd batch, a
// head wider than one 64-feature chunk with a last batch of one, the
// largest batch, and fewer features than a quad with batches of one and
// steps large enough to saturate.
const Shape kShapes[] = {
    {"odd", 37, 3, 5, 23, 10, -20, 5.0 / 127.0, 0.15},
    {"wide", 70, 4, 3, 10, 12, 3, 0.01, 0.3},
    {"big-batch", 20, 2, 64, 130, 12, 0, 6.0 / 127.0, 0.05},
    {"tiny", 3, 2, 1, 7, 14, 0, 0.1, 16.0},
};

TEST(Kernels, EveryShapeTrainsDeterministicallyAndQuantizesWithinTheBound) {
  for (const Shape& s : kShapes) {
    TaskParams p;
    p.features = s.features;
    p.classes = s.classes;
    p.batch_size = s.batch;
    p.frac_bits = s.frac_bits;
    p.zero_point = s.zero_point;
    p.feature_scale = s.feature_scale;
    p.learning_rate = s.learning_rate;
    p.epochs = 2;
    const QuantizedDataset data =
        MakeBlobs(3, 4, s.samples, static_cast<int>(s.features), static_cast<int>(s.classes),
                  1.0, s.feature_scale, s.zero_point);
    std::string first;
    for (int run = 0; run < 2; ++run) {
      Device dev(s.name, s.features, s.classes, s.batch);
      ASSERT_EQ(dev.Load(BuildTask(p)), TINYFED_OK) << s.name;
      tinyfed_dataset_t view = data.view();
      ASSERT_EQ(tinyfed_train(dev.ctx(), &view), TINYFED_OK) << s.name;
      const std::string update = dev.EncodeUpdate();
      ASSERT_FALSE(update.empty()) << s.name;
      if (run == 0) {
        first = update;
      } else {
        EXPECT_EQ(update, first) << s.name << ": training is not deterministic";
      }
      v1::Update u;
      ASSERT_TRUE(u.ParseFromString(update)) << s.name;
      tinyfed_head_view_t g, l;
      ASSERT_EQ(tinyfed_global_head(dev.ctx(), &g), TINYFED_OK);
      ASSERT_EQ(tinyfed_local_head(dev.ctx(), &l), TINYFED_OK);
      int32_t moved = 0;
      for (uint32_t c = 0; c < s.classes; ++c) {
        const uint32_t scale = u.row_scales(static_cast<int>(c));
        for (uint32_t f = 0; f <= s.features; ++f) {  // f == features: the bias
          const bool bias = f == s.features;
          const size_t i = c * s.features + f;
          const int32_t exact = bias ? l.bias[c] - g.bias[c] : l.weights[i] - g.weights[i];
          const auto q = static_cast<int8_t>(bias ? u.bias_delta()[c] : u.weight_delta()[i]);
          // quantize.h: |q * s - delta| < s for every value.
          ASSERT_LT(std::abs(tinyfed_dequantize_s8(q, scale) - exact),
                    static_cast<int32_t>(scale))
              << s.name << " class " << c << " value " << f;
          moved += exact != 0;
        }
      }
      // Two epochs of separable data must move the head.
      EXPECT_GT(moved, 0) << s.name;
    }
  }
}

// Checks that tinyfed_classify() picks, for every sample of `data`, the
// argmax of the exact logits of `head` computed here: acc_c = sum_f
// w[c][f] * (x_f - zp) in integers, logit_c = (acc_c * s_x + b_c) / 2^fb
// with s_x the task's fixed-point feature scale. The device rounds each
// logit to Q16 (within 2^-17), so a sample whose two best exact logits are
// closer than 2^-15 is a tie either way and is skipped. Returns the number
// of samples checked.
size_t ExpectClassifyIsArgmaxOfExactLogits(const tinyfed_context_t* ctx,
                                           const tinyfed_head_view_t& head,
                                           const QuantizedDataset& data, double feature_scale,
                                           int32_t zp) {
  const auto fixed = ToFixedScale(feature_scale);
  const double s_x = FromFixedScale(*fixed);
  const double unit = std::ldexp(1.0, -static_cast<int>(head.weight_frac_bits));
  size_t checked = 0;
  for (size_t i = 0; i < data.size(); ++i) {
    const int8_t* x = data.x.data() + i * head.feature_count;
    std::vector<double> logits(head.class_count);
    for (uint32_t c = 0; c < head.class_count; ++c) {
      int64_t acc = 0;
      for (uint32_t f = 0; f < head.feature_count; ++f) {
        acc += int64_t{head.weights[size_t{c} * head.feature_count + f]} * (x[f] - zp);
      }
      logits[c] = (static_cast<double>(acc) * s_x + head.bias[c]) * unit;
    }
    std::vector<double> sorted = logits;
    std::sort(sorted.begin(), sorted.end(), std::greater<double>());
    if (sorted[0] - sorted[1] < std::ldexp(1.0, -15)) continue;
    uint32_t label = 0;
    EXPECT_EQ(tinyfed_classify(ctx, x, &label), TINYFED_OK);
    EXPECT_EQ(logits[label], sorted[0]) << "sample " << i << " of a " << head.feature_count
                                        << "x" << head.class_count << " head";
    ++checked;
  }
  return checked;
}

TEST(Kernels, LargestHeadsTrainAndEncodeWithinTheDocumentedSizes) {
  // The protocol's bound, 4,096 weights, as the most rows (128 x 32) and
  // the longest rows (2,048 x 2, 32 forward chunks), with the largest
  // batch, in contexts of exactly that capacity: the arena and the update
  // buffer are heap blocks of exactly the documented sizes, so the
  // sanitized copy of this test sees any access past them.
  const struct {
    uint32_t features, classes;
  } shapes[] = {{128, 32}, {2048, 2}};
  for (const auto& s : shapes) {
    ASSERT_EQ(s.features * s.classes, TINYFED_MAX_WEIGHTS);
    TaskParams p;
    p.features = s.features;
    p.classes = s.classes;
    p.batch_size = TINYFED_MAX_BATCH;
    p.epochs = 2;
    p.learning_rate = 0.2;
    p.zero_point = -5;
    p.feature_scale = 0.05;
    std::mt19937 rng(s.features);
    std::uniform_int_distribution<int> start(-3000, 3000);
    p.weights.resize(size_t{s.features} * s.classes);
    for (auto& w : p.weights) w = static_cast<int16_t>(start(rng));
    p.bias.resize(s.classes);
    for (auto& b : p.bias) b = static_cast<int16_t>(start(rng));
    const std::string task = EncodeCheckInResponse(BuildTask(p));
    EXPECT_LE(task.size(), TINYFED_TASK_MAX_SIZE(s.features, s.classes));
    // 150 samples: two full batches of 64 and a short one of 22.
    const QuantizedDataset data = MakeBlobs(5, 6, 150, static_cast<int>(s.features),
                                            static_cast<int>(s.classes), 0.3, p.feature_scale,
                                            p.zero_point);
    Device dev("largest", s.features, s.classes, TINYFED_MAX_BATCH);
    ASSERT_EQ(dev.Load(BuildTask(p)), TINYFED_OK) << tinyfed_last_error_message(dev.ctx());
    // The forward pass of the widest rows (2,048 features: 32 chunks), on
    // the task's head and then on the trained one. Near-ties are rare:
    // nearly every sample must be checked for the check to mean anything.
    tinyfed_head_view_t g, l;
    ASSERT_EQ(tinyfed_global_head(dev.ctx(), &g), TINYFED_OK);
    EXPECT_GE(ExpectClassifyIsArgmaxOfExactLogits(dev.ctx(), g, data, p.feature_scale, p.zero_point),
              140u);
    tinyfed_dataset_t view = data.view();
    ASSERT_EQ(tinyfed_train(dev.ctx(), &view), TINYFED_OK);
    ASSERT_EQ(tinyfed_local_head(dev.ctx(), &l), TINYFED_OK);
    EXPECT_GE(ExpectClassifyIsArgmaxOfExactLogits(dev.ctx(), l, data, p.feature_scale, p.zero_point),
              140u);
    const std::string update = dev.EncodeUpdate();  // into exactly TINYFED_UPDATE_MAX_SIZE
    ASSERT_FALSE(update.empty()) << tinyfed_last_error_message(dev.ctx());
    EXPECT_LE(update.size(), TINYFED_UPDATE_MAX_SIZE(s.features, s.classes));
    v1::Update u;
    ASSERT_TRUE(u.ParseFromString(update));
    ASSERT_EQ(u.weight_delta().size(), size_t{s.features} * s.classes);
    ASSERT_EQ(u.bias_delta().size(), size_t{s.classes});
    ASSERT_EQ(static_cast<uint32_t>(u.row_scales_size()), s.classes);
    // The views of before training expired with it (tinyfed.h).
    ASSERT_EQ(tinyfed_global_head(dev.ctx(), &g), TINYFED_OK);
    ASSERT_EQ(tinyfed_local_head(dev.ctx(), &l), TINYFED_OK);
    for (size_t i = 0; i < p.weights.size(); ++i) {
      ASSERT_EQ(g.weights[i], p.weights[i]) << "the global head is the task's, " << i;
    }
    uint32_t rows_moved = 0;
    for (uint32_t c = 0; c < s.classes; ++c) {
      const uint32_t scale = u.row_scales(static_cast<int>(c));
      bool moved = false;
      for (uint32_t f = 0; f <= s.features; ++f) {  // f == features: the bias
        const bool bias = f == s.features;
        const size_t i = size_t{c} * s.features + f;
        const int32_t exact = bias ? l.bias[c] - g.bias[c] : l.weights[i] - g.weights[i];
        const auto q = static_cast<int8_t>(bias ? u.bias_delta()[c] : u.weight_delta()[i]);
        // quantize.h: |q * s - delta| < s for every value.
        ASSERT_LT(std::abs(tinyfed_dequantize_s8(q, scale) - exact), static_cast<int32_t>(scale))
            << s.features << "x" << s.classes << " class " << c << " value " << f;
        moved = moved || exact != 0;
      }
      rows_moved += moved;
    }
    EXPECT_EQ(rows_moved, s.classes) << "training must reach every class row";
  }
}

}  // namespace
}  // namespace tinyfed::testing
