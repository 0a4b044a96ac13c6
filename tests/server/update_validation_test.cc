#include "update_validation.h"

#include <gtest/gtest.h>

#include <cstdint>
#include <cstdio>
#include <random>
#include <string>

#include "absl/status/status.h"
#include "server_test_support.h"

namespace tinyfed::server {
namespace {

using testing::FixChecksum;
using testing::MakeSpec;
using testing::MakeUpdate;

constexpr uint32_t kMaxSampleCount = uint32_t{1} << 24;

// INVALID_ARGUMENT whose message names `field` and shows `actual`: operators
// find the cause of a rejection in the logs from the message alone.
::testing::AssertionResult Rejected(const absl::Status& status, const std::string& field,
                                    const std::string& actual) {
  if (status.code() != absl::StatusCode::kInvalidArgument) {
    return ::testing::AssertionFailure() << "expected INVALID_ARGUMENT, got " << status;
  }
  const std::string message(status.message());
  if (message.find(field) == std::string::npos) {
    return ::testing::AssertionFailure() << "message does not name " << field << ": " << message;
  }
  if (message.find(actual) == std::string::npos) {
    return ::testing::AssertionFailure()
           << "message does not show the actual value " << actual << ": " << message;
  }
  return ::testing::AssertionSuccess();
}

std::string Hex(uint32_t v) {
  char buf[16];
  std::snprintf(buf, sizeof buf, "0x%08x", v);
  return buf;
}

class ValidateUpdateTest : public ::testing::Test {
 protected:
  ValidateUpdateTest()
      : rng_(42),
        spec_(MakeSpec(64, 10)),
        update_(MakeUpdate(spec_, 3, "sim-000042", "0123456789abcdef", 1, 120, rng_)) {}

  std::mt19937 rng_;
  v1::HeadSpec spec_;
  v1::Update update_;
};

TEST_F(ValidateUpdateTest, AcceptsAValidUpdate) {
  EXPECT_TRUE(ValidateUpdate(update_, spec_).ok()) << ValidateUpdate(update_, spec_);
  // Other shapes too, and an empty task token (it is opaque to this check).
  const v1::HeadSpec small = MakeSpec(1, 2);
  v1::Update u = MakeUpdate(small, 1, "d", "", 1, 1, rng_);
  EXPECT_TRUE(ValidateUpdate(u, small).ok()) << ValidateUpdate(u, small);
}

TEST_F(ValidateUpdateTest, DeviceIdLength) {
  update_.set_device_id(std::string(32, 'a'));
  EXPECT_TRUE(ValidateUpdate(update_, spec_).ok()) << ValidateUpdate(update_, spec_);
  update_.set_device_id("x");
  EXPECT_TRUE(ValidateUpdate(update_, spec_).ok()) << ValidateUpdate(update_, spec_);

  update_.set_device_id(std::string(33, 'a'));
  EXPECT_TRUE(Rejected(ValidateUpdate(update_, spec_), "device_id", "got 33"));
  update_.set_device_id("");
  EXPECT_TRUE(Rejected(ValidateUpdate(update_, spec_), "device_id", "got 0"));
}

TEST_F(ValidateUpdateTest, DeviceIdMustBePrintableAscii) {
  // The printable range ends at 0x21 '!' and 0x7E '~'.
  update_.set_device_id("!~");
  EXPECT_TRUE(ValidateUpdate(update_, spec_).ok()) << ValidateUpdate(update_, spec_);

  update_.set_device_id("sim 42");  // space
  EXPECT_TRUE(Rejected(ValidateUpdate(update_, spec_), "device_id", "0x20"));
  update_.set_device_id(std::string("sim\x7F", 4));  // DEL
  EXPECT_TRUE(Rejected(ValidateUpdate(update_, spec_), "device_id", "0x7f"));
  update_.set_device_id(std::string("a\0b", 3));  // NUL would cut logs short
  EXPECT_TRUE(Rejected(ValidateUpdate(update_, spec_), "device_id", "0x00"));
  update_.set_device_id("caf\xC3\xA9");  // UTF-8 is not printable ASCII
  EXPECT_TRUE(Rejected(ValidateUpdate(update_, spec_), "device_id", "0xc3"));
}

TEST_F(ValidateUpdateTest, TaskTokenAtMost16Bytes) {
  update_.set_task_token(std::string(16, '\xFF'));
  EXPECT_TRUE(ValidateUpdate(update_, spec_).ok()) << ValidateUpdate(update_, spec_);
  update_.set_task_token(std::string(17, 't'));
  EXPECT_TRUE(Rejected(ValidateUpdate(update_, spec_), "task_token", "17"));
}

TEST_F(ValidateUpdateTest, SampleCountBounds) {
  for (uint32_t n : {1u, 2u, kMaxSampleCount - 1, kMaxSampleCount}) {
    update_.set_sample_count(n);
    EXPECT_TRUE(ValidateUpdate(update_, spec_).ok()) << n << ": " << ValidateUpdate(update_, spec_);
  }
  update_.set_sample_count(0);
  EXPECT_TRUE(Rejected(ValidateUpdate(update_, spec_), "sample_count", "got 0"));
  update_.set_sample_count(kMaxSampleCount + 1);
  EXPECT_TRUE(Rejected(ValidateUpdate(update_, spec_), "sample_count", "16777217"));
  update_.set_sample_count(UINT32_MAX);
  EXPECT_TRUE(Rejected(ValidateUpdate(update_, spec_), "sample_count", "4294967295"));
}

TEST_F(ValidateUpdateTest, WeightDeltaMustMatchTheShape) {
  v1::Update shorter = update_;
  shorter.mutable_weight_delta()->pop_back();
  FixChecksum(&shorter);
  EXPECT_TRUE(Rejected(ValidateUpdate(shorter, spec_), "weight_delta", "639"));

  v1::Update longer = update_;
  longer.mutable_weight_delta()->push_back('\x01');
  FixChecksum(&longer);
  EXPECT_TRUE(Rejected(ValidateUpdate(longer, spec_), "weight_delta", "641"));

  // A correct update for a 64x10 head is wrong for a 64x9 one.
  EXPECT_TRUE(Rejected(ValidateUpdate(update_, MakeSpec(64, 9)), "weight_delta", "640"));
}

TEST_F(ValidateUpdateTest, BiasDeltaMustHaveOneValuePerClass) {
  v1::Update shorter = update_;
  shorter.mutable_bias_delta()->pop_back();
  FixChecksum(&shorter);
  EXPECT_TRUE(Rejected(ValidateUpdate(shorter, spec_), "bias_delta", "got 9"));

  v1::Update longer = update_;
  longer.mutable_bias_delta()->push_back('\x01');
  FixChecksum(&longer);
  EXPECT_TRUE(Rejected(ValidateUpdate(longer, spec_), "bias_delta", "got 11"));
}

TEST_F(ValidateUpdateTest, ValueMinus128IsRejected) {
  // -127 and 127 are the quantizer's range; -128 only comes from a bug or
  // a forged update (it would also make the range asymmetric).
  v1::Update edge = update_;
  (*edge.mutable_weight_delta())[0] = static_cast<char>(-127);
  (*edge.mutable_weight_delta())[639] = static_cast<char>(127);
  (*edge.mutable_bias_delta())[9] = static_cast<char>(-127);
  FixChecksum(&edge);
  EXPECT_TRUE(ValidateUpdate(edge, spec_).ok()) << ValidateUpdate(edge, spec_);

  v1::Update weight = update_;
  (*weight.mutable_weight_delta())[3 * 64 + 5] = static_cast<char>(-128);
  FixChecksum(&weight);
  EXPECT_TRUE(Rejected(ValidateUpdate(weight, spec_), "weight_delta", "-128"));

  v1::Update bias = update_;
  (*bias.mutable_bias_delta())[9] = static_cast<char>(-128);
  FixChecksum(&bias);
  EXPECT_TRUE(Rejected(ValidateUpdate(bias, spec_), "bias_delta", "-128"));
}

TEST_F(ValidateUpdateTest, RowScalesMustBeOnePerClass) {
  v1::Update fewer = update_;
  fewer.mutable_row_scales()->RemoveLast();
  EXPECT_TRUE(Rejected(ValidateUpdate(fewer, spec_), "row_scales", "got 9"));

  v1::Update more = update_;
  more.add_row_scales(1);
  EXPECT_TRUE(Rejected(ValidateUpdate(more, spec_), "row_scales", "got 11"));
}

TEST_F(ValidateUpdateTest, RowScaleBounds) {
  for (uint32_t s : {1u, 517u}) {
    v1::Update u = update_;
    for (int c = 0; c < u.row_scales_size(); ++c) u.set_row_scales(c, s);
    EXPECT_TRUE(ValidateUpdate(u, spec_).ok()) << s << ": " << ValidateUpdate(u, spec_);
  }
  for (uint32_t s : {0u, 518u, UINT32_MAX}) {
    v1::Update u = update_;
    u.set_row_scales(9, s);  // the last row, so every row is looked at
    EXPECT_TRUE(Rejected(ValidateUpdate(u, spec_), "row_scales", "got " + std::to_string(s)));
  }
}

TEST_F(ValidateUpdateTest, ChecksumMustCoverWeightsThenBias) {
  v1::Update wrong = update_;
  wrong.set_checksum(update_.checksum() ^ 1u);
  EXPECT_TRUE(Rejected(ValidateUpdate(wrong, spec_), "checksum", Hex(wrong.checksum())));

  // A payload byte changed in transit, checksum left as sent.
  v1::Update corrupted = update_;
  (*corrupted.mutable_weight_delta())[100] ^= 0x04;
  EXPECT_EQ(ValidateUpdate(corrupted, spec_).code(), absl::StatusCode::kInvalidArgument);
  v1::Update corrupted_bias = update_;
  (*corrupted_bias.mutable_bias_delta())[0] ^= 0x01;
  EXPECT_EQ(ValidateUpdate(corrupted_bias, spec_).code(), absl::StatusCode::kInvalidArgument);

  // Order matters: the CRC of bias followed by weights is not accepted.
  v1::Update swapped = update_;
  swapped.set_weight_delta(update_.bias_delta());
  swapped.set_bias_delta(update_.weight_delta());
  FixChecksum(&swapped);
  const uint32_t swapped_crc = swapped.checksum();
  v1::Update reordered = update_;
  reordered.set_checksum(swapped_crc);
  EXPECT_TRUE(Rejected(ValidateUpdate(reordered, spec_), "checksum", Hex(swapped_crc)));
}

// An evaluation valid for update_ (base version 1) with `samples`.
v1::Evaluation Evaluation(uint32_t samples, uint32_t correct, uint64_t loss_sum_q16) {
  v1::Evaluation e;
  e.set_model_version(1);
  e.set_samples(samples);
  e.set_correct(correct);
  e.set_loss_sum_q16(loss_sum_q16);
  return e;
}

TEST_F(ValidateUpdateTest, AcceptsAnEvaluationAtItsBounds) {
  for (const v1::Evaluation& e :
       {Evaluation(1, 0, 0), Evaluation(1, 1, uint64_t{1} << 21),
        Evaluation(kMaxSampleCount, kMaxSampleCount, uint64_t{kMaxSampleCount} << 21),
        Evaluation(500, 437, 500 * 40000)}) {
    *update_.mutable_evaluation() = e;
    EXPECT_TRUE(ValidateUpdate(update_, spec_).ok())
        << e.ShortDebugString() << ": " << ValidateUpdate(update_, spec_);
  }
}

TEST_F(ValidateUpdateTest, EvaluationMustBeOfTheBaseVersion) {
  *update_.mutable_evaluation() = Evaluation(10, 5, 0);
  update_.mutable_evaluation()->set_model_version(2);
  EXPECT_TRUE(Rejected(ValidateUpdate(update_, spec_), "evaluation.model_version", "got 2"));
  update_.mutable_evaluation()->set_model_version(0);
  EXPECT_TRUE(Rejected(ValidateUpdate(update_, spec_), "evaluation.model_version", "got 0"));
}

TEST_F(ValidateUpdateTest, EvaluationSampleBounds) {
  *update_.mutable_evaluation() = Evaluation(0, 0, 0);
  EXPECT_TRUE(Rejected(ValidateUpdate(update_, spec_), "evaluation.samples", "got 0"));
  *update_.mutable_evaluation() = Evaluation(kMaxSampleCount + 1, 0, 0);
  EXPECT_TRUE(Rejected(ValidateUpdate(update_, spec_), "evaluation.samples",
                       std::to_string(kMaxSampleCount + 1)));
}

TEST_F(ValidateUpdateTest, EvaluationCorrectAtMostSamples) {
  *update_.mutable_evaluation() = Evaluation(10, 11, 0);
  EXPECT_TRUE(Rejected(ValidateUpdate(update_, spec_), "evaluation.correct", "got 11"));
}

TEST_F(ValidateUpdateTest, EvaluationLossAtMostSamplesTimes2To21) {
  // 10 samples: at most 10 x 2^21 = 20971520 in Q16.16.
  *update_.mutable_evaluation() = Evaluation(10, 3, 20971521);
  EXPECT_TRUE(Rejected(ValidateUpdate(update_, spec_), "evaluation.loss_sum_q16", "20971521"));
  // The largest uint64: no overflow in the bound's arithmetic lets it by.
  *update_.mutable_evaluation() = Evaluation(kMaxSampleCount, 3, UINT64_MAX);
  EXPECT_TRUE(Rejected(ValidateUpdate(update_, spec_), "evaluation.loss_sum_q16",
                       std::to_string(UINT64_MAX)));
}

TEST_F(ValidateUpdateTest, AnUpdateWithoutAnEvaluationIsValid) {
  update_.clear_evaluation();
  EXPECT_FALSE(update_.has_evaluation());
  EXPECT_TRUE(ValidateUpdate(update_, spec_).ok());
}

TEST_F(ValidateUpdateTest, ReportsTheFirstProblemInTheDocumentedOrder) {
  update_.set_sample_count(0);
  update_.set_checksum(update_.checksum() ^ 1u);
  update_.mutable_row_scales()->Clear();
  EXPECT_TRUE(Rejected(ValidateUpdate(update_, spec_), "sample_count", "got 0"));
}

}  // namespace
}  // namespace tinyfed::server
