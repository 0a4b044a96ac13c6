// Bad input on the device: every malformed, truncated, oversized or
// wrong-shaped task gets a specific status, never undefined behaviour (this
// file also runs under AddressSanitizer and UndefinedBehaviorSanitizer), and
// a failed decode leaves no task behind.
#include <gtest/gtest.h>

#include <random>
#include <set>
#include <string>

#include "sdk_test_support.h"

namespace tinyfed::testing {
namespace {

tinyfed_status_t DecodeResponse(Device& dev, const std::string& bytes) {
  tinyfed_checkin_result_t result{};
  return tinyfed_checkin_response_decode(
      dev.ctx(), reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size(), &result);
}

bool HasTask(Device& dev) {
  tinyfed_task_info_t info;
  return tinyfed_task_info(dev.ctx(), &info) == TINYFED_OK;
}

TEST(TaskErrors, ValidTaskLoads) {
  Device dev("dev-1");
  EXPECT_EQ(dev.Load(BuildTask(TaskParams{})), TINYFED_OK);
  EXPECT_TRUE(HasTask(dev));
}

TEST(TaskErrors, EveryTruncationIsRejected) {
  const std::string full = EncodeCheckInResponse(BuildTask(TaskParams{}));
  Device dev("dev-1");
  const std::set<tinyfed_status_t> expected = {
      TINYFED_ERR_MALFORMED, TINYFED_ERR_INVALID_TASK, TINYFED_ERR_SHAPE_MISMATCH,
      TINYFED_ERR_CHECKSUM, TINYFED_ERR_UNSUPPORTED};
  for (size_t len = 0; len < full.size(); ++len) {
    const tinyfed_status_t s = DecodeResponse(dev, full.substr(0, len));
    EXPECT_TRUE(expected.count(s)) << "prefix " << len << " gave " << tinyfed_status_name(s);
    EXPECT_FALSE(HasTask(dev)) << "prefix " << len;
  }
  // Cut inside the weights field: the message ends mid-field.
  EXPECT_EQ(DecodeResponse(dev, full.substr(0, full.size() / 2)), TINYFED_ERR_MALFORMED);
}

TEST(TaskErrors, FailedDecodeDropsThePreviousTask) {
  Device dev("dev-1");
  ASSERT_EQ(dev.Load(BuildTask(TaskParams{})), TINYFED_OK);
  EXPECT_EQ(DecodeResponse(dev, "\xff\xff\xff"), TINYFED_ERR_MALFORMED);
  EXPECT_FALSE(HasTask(dev));
}

TEST(TaskErrors, OversizedMessageIsRejectedBeforeDecoding) {
  Device dev("dev-1", 64, 10, 16);
  std::string bytes = EncodeCheckInResponse(BuildTask(TaskParams{}));
  bytes.append(TINYFED_TASK_MAX_SIZE(64u, 10u) + 1 - bytes.size(), '\0');
  EXPECT_EQ(DecodeResponse(dev, bytes), TINYFED_ERR_MESSAGE_TOO_LARGE);
}

TEST(TaskErrors, HeadLargerThanTheContextIsRejected) {
  Device dev("dev-1", 64, 10, 16);
  TaskParams more_features;
  more_features.features = 65;
  EXPECT_EQ(dev.Load(BuildTask(more_features)), TINYFED_ERR_HEAD_TOO_LARGE);
  TaskParams more_classes;
  more_classes.classes = 11;
  EXPECT_EQ(dev.Load(BuildTask(more_classes)), TINYFED_ERR_HEAD_TOO_LARGE);

  // Weights bigger than the arena's head are refused while streaming, even
  // when the spec (arriving later or lying) claims a head that fits.
  v1::RoundTask task = BuildTask(TaskParams{});
  task.mutable_model()->set_weights(std::string(2 * 64 * 11, '\0'));
  EXPECT_EQ(dev.Load(task), TINYFED_ERR_HEAD_TOO_LARGE);
  EXPECT_FALSE(HasTask(dev));
}

TEST(TaskErrors, HeadBeyondProtocolBoundsIsRejected) {
  Device dev("dev-1", 128, 32, 16);
  TaskParams p;
  p.features = 64;
  p.classes = 33;
  EXPECT_EQ(dev.Load(BuildTask(p)), TINYFED_ERR_HEAD_TOO_LARGE);
}

TEST(TaskErrors, BatchLargerThanTheContextIsRejected) {
  Device dev("dev-1", 64, 10, 16);
  TaskParams p;
  p.batch_size = 17;
  EXPECT_EQ(dev.Load(BuildTask(p)), TINYFED_ERR_BATCH_TOO_LARGE);
}

TEST(TaskErrors, WeightsOfTheWrongSizeAreRejected) {
  Device dev("dev-1");
  v1::RoundTask task = BuildTask(TaskParams{});
  task.mutable_model()->set_weights(std::string(2 * 63 * 10, '\0'));
  EXPECT_EQ(dev.Load(task), TINYFED_ERR_SHAPE_MISMATCH);
  task = BuildTask(TaskParams{});
  task.mutable_model()->set_weights(std::string(2 * 640 - 1, '\0'));  // odd
  EXPECT_EQ(dev.Load(task), TINYFED_ERR_SHAPE_MISMATCH);
  task = BuildTask(TaskParams{});
  task.mutable_model()->set_bias(std::string(2 * 9, '\0'));
  EXPECT_EQ(dev.Load(task), TINYFED_ERR_SHAPE_MISMATCH);
  task = BuildTask(TaskParams{});
  task.mutable_model()->clear_bias();
  EXPECT_EQ(dev.Load(task), TINYFED_ERR_SHAPE_MISMATCH);
}

TEST(TaskErrors, CorruptedWeightIsCaughtByTheChecksum) {
  Device dev("dev-1");
  v1::RoundTask task = BuildTask(TaskParams{});
  std::string w = task.model().weights();
  w[100] = static_cast<char>(w[100] ^ 0x04);
  task.mutable_model()->set_weights(w);
  EXPECT_EQ(dev.Load(task), TINYFED_ERR_CHECKSUM);
  task = BuildTask(TaskParams{});
  task.mutable_model()->set_checksum(task.model().checksum() ^ 1u);
  EXPECT_EQ(dev.Load(task), TINYFED_ERR_CHECKSUM);
}

TEST(TaskErrors, MissingPartsAreInvalid) {
  Device dev("dev-1");
  v1::RoundTask task = BuildTask(TaskParams{});
  task.clear_plan();
  EXPECT_EQ(dev.Load(task), TINYFED_ERR_INVALID_TASK);
  task = BuildTask(TaskParams{});
  task.mutable_model()->clear_spec();
  EXPECT_EQ(dev.Load(task), TINYFED_ERR_INVALID_TASK);
  task = BuildTask(TaskParams{});
  task.mutable_model()->mutable_spec()->clear_feature_quantization();
  EXPECT_EQ(dev.Load(task), TINYFED_ERR_INVALID_TASK);
  task = BuildTask(TaskParams{});
  task.clear_model();
  EXPECT_EQ(dev.Load(task), TINYFED_ERR_INVALID_TASK);
}

TEST(TaskErrors, UnknownQuantizationSchemeIsUnsupported) {
  Device dev("dev-1");
  v1::RoundTask task = BuildTask(TaskParams{});
  task.mutable_quantization()->set_scheme(v1::QUANTIZATION_SCHEME_UNSPECIFIED);
  EXPECT_EQ(dev.Load(task), TINYFED_ERR_UNSUPPORTED);
  task.mutable_quantization()->set_scheme(static_cast<v1::QuantizationScheme>(9));
  EXPECT_EQ(dev.Load(task), TINYFED_ERR_UNSUPPORTED);
}

TEST(TaskErrors, OutOfRangeValuesAreInvalid) {
  Device dev("dev-1");
  auto with = [](auto mutate) {
    v1::RoundTask task = BuildTask(TaskParams{});
    mutate(task);
    return task;
  };
  EXPECT_EQ(dev.Load(with([](v1::RoundTask& t) { t.mutable_plan()->set_epochs(0); })),
            TINYFED_ERR_INVALID_TASK);
  EXPECT_EQ(dev.Load(with([](v1::RoundTask& t) { t.mutable_plan()->set_epochs(65); })),
            TINYFED_ERR_INVALID_TASK);
  EXPECT_EQ(dev.Load(with([](v1::RoundTask& t) { t.mutable_plan()->set_batch_size(0); })),
            TINYFED_ERR_INVALID_TASK);
  EXPECT_EQ(dev.Load(with([](v1::RoundTask& t) { t.mutable_plan()->set_batch_size(1000); })),
            TINYFED_ERR_INVALID_TASK);
  EXPECT_EQ(dev.Load(with([](v1::RoundTask& t) { t.mutable_plan()->set_learning_rate_q16(0); })),
            TINYFED_ERR_INVALID_TASK);
  EXPECT_EQ(dev.Load(with([](v1::RoundTask& t) {
              t.mutable_model()->mutable_spec()->set_weight_frac_bits(15);
            })),
            TINYFED_ERR_INVALID_TASK);
  EXPECT_EQ(dev.Load(with([](v1::RoundTask& t) {
              t.mutable_model()->mutable_spec()->mutable_feature_quantization()->set_scale_multiplier(5);
            })),
            TINYFED_ERR_INVALID_TASK);
  EXPECT_EQ(dev.Load(with([](v1::RoundTask& t) {
              t.mutable_model()->mutable_spec()->mutable_feature_quantization()->set_scale_shift(8);
            })),
            TINYFED_ERR_INVALID_TASK);
  EXPECT_EQ(dev.Load(with([](v1::RoundTask& t) {
              t.mutable_model()->mutable_spec()->mutable_feature_quantization()->set_zero_point(128);
            })),
            TINYFED_ERR_INVALID_TASK);
  EXPECT_EQ(dev.Load(with([](v1::RoundTask& t) {
              t.mutable_model()->mutable_spec()->set_class_count(1);
            })),
            TINYFED_ERR_INVALID_TASK);
  EXPECT_EQ(dev.Load(with([](v1::RoundTask& t) {
              t.mutable_plan()->set_learning_rate_q16(16 * 65536 + 1);  // above 16.0
            })),
            TINYFED_ERR_INVALID_TASK);
  // A step so small against a tiny feature scale and a coarse master format
  // that the SGD multiplier would need a shift beyond 62 bits.
  EXPECT_EQ(dev.Load(with([](v1::RoundTask& t) {
              t.mutable_plan()->set_learning_rate_q16(1);
              t.mutable_model()->mutable_spec()->set_weight_frac_bits(4);
              t.mutable_model()->mutable_spec()->mutable_feature_quantization()->set_scale_shift(-31);
            })),
            TINYFED_ERR_INVALID_TASK);
}

TEST(TaskErrors, TokenLongerThanItsBoundIsMalformed) {
  Device dev("dev-1");
  v1::RoundTask task = BuildTask(TaskParams{});
  task.set_task_token(std::string(17, 't'));
  EXPECT_EQ(dev.Load(task), TINYFED_ERR_MALFORMED);
}

TEST(TaskErrors, ResponseWithBothOrNeitherOutcomeIsMalformed) {
  Device dev("dev-1");
  v1::CheckInResponse both;
  *both.mutable_task() = BuildTask(TaskParams{});
  both.mutable_retry()->set_retry_after_ms(5);
  EXPECT_EQ(DecodeResponse(dev, both.SerializeAsString()), TINYFED_ERR_MALFORMED);
  EXPECT_EQ(DecodeResponse(dev, ""), TINYFED_ERR_MALFORMED);
}

TEST(TaskErrors, NullArgumentsAreRejected) {
  Device dev("dev-1");
  tinyfed_checkin_result_t result{};
  EXPECT_EQ(tinyfed_checkin_response_decode(dev.ctx(), nullptr, 10, &result),
            TINYFED_ERR_ARGUMENT);
  const uint8_t byte = 0;
  EXPECT_EQ(tinyfed_checkin_response_decode(dev.ctx(), &byte, 1, nullptr), TINYFED_ERR_ARGUMENT);
  EXPECT_EQ(tinyfed_checkin_response_decode(nullptr, &byte, 1, &result), TINYFED_ERR_ARGUMENT);
  EXPECT_EQ(tinyfed_task_decode(nullptr, &byte, 1), TINYFED_ERR_ARGUMENT);
}

// Random corruption of a valid task: flipped bytes, inserted and deleted
// runs. The SDK must return OK or one of its error codes, never crash or
// touch memory outside its arena (the sanitized build checks that), and
// when it returns OK the loaded head must match the spec's shape.
TEST(TaskErrors, RandomCorruptionNeverMisbehaves) {
  const std::string valid = EncodeCheckInResponse(BuildTask(TaskParams{}));
  Device dev("dev-1");
  std::mt19937 rng(2026);
  std::uniform_int_distribution<int> byte(0, 255);
  int accepted = 0;
  for (int iter = 0; iter < 3000; ++iter) {
    std::string m = valid;
    const int edits = 1 + iter % 4;
    for (int e = 0; e < edits; ++e) {
      std::uniform_int_distribution<size_t> pos(0, m.size() - 1);
      switch (rng() % 3) {
        case 0: m[pos(rng)] = static_cast<char>(byte(rng)); break;
        case 1: m.insert(pos(rng), 1 + rng() % 8, static_cast<char>(byte(rng))); break;
        default: m.erase(pos(rng), 1 + rng() % 8); break;
      }
      if (m.empty()) m.push_back('\0');
    }
    const tinyfed_status_t s = DecodeResponse(dev, m);
    ASSERT_LE(s, TINYFED_OK);
    ASSERT_GE(s, TINYFED_ERR_DATASET) << "unknown status";
    if (s == TINYFED_OK) {
      ++accepted;
      tinyfed_head_view_t head;
      ASSERT_EQ(tinyfed_global_head(dev.ctx(), &head), TINYFED_OK);
      ASSERT_LE(head.feature_count * head.class_count, 640u);
    }
  }
  // Nearly every corruption breaks the CRC or the framing; a few (in fields
  // the checksum does not cover, like the deadline) still decode.
  EXPECT_LT(accepted, 3000 / 2);
}

}  // namespace
}  // namespace tinyfed::testing
