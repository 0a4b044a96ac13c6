// The wire-size budgets of one 64x10 update as the device sends it, signed
// (tests/tools/budgets.sh; DESIGN.md "Performance targets"): the
// SignedRequest whose body is the Update. "Envelope" is every byte beyond
// the 650 int8 values: the Update's other fields and the SignedRequest's
// device id, body framing and tag. The updates are encoded by the SDK with
// those fields as long as the case allows: the longest device id and
// token, scales and loss in their longest varints, round, version and
// sample count as stated per case, and the device's evaluation of the task
// (tinyfed_evaluate) with each of its fields as long as the case allows.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdint>
#include <iostream>
#include <string>

#include "sdk_test_support.h"
#include "tinyfed/v1/round.pb.h"
#include "tinyfed_common/quantize.h"

#ifndef TINYFED_BUDGET_UPDATE_BYTES
#error "TINYFED_BUDGET_UPDATE_BYTES comes from tests/tools/budgets.sh through CMake"
#endif
#ifndef TINYFED_BUDGET_UPDATE_ENVELOPE_BYTES
#error "TINYFED_BUDGET_UPDATE_ENVELOPE_BYTES comes from tests/tools/budgets.sh through CMake"
#endif
#ifndef TINYFED_BUDGET_UPDATE_ENVELOPE_EXTREME_BYTES
#error "TINYFED_BUDGET_UPDATE_ENVELOPE_EXTREME_BYTES comes from tests/tools/budgets.sh through CMake"
#endif

namespace tinyfed::testing {
namespace {

// Trains one device on `samples` samples of a task for `round` and
// `version` and returns its signed update, after checking that every
// other envelope field is at its longest.
std::string LongestUpdate(uint32_t round, uint32_t version, uint32_t samples) {
  TaskParams p;
  p.round = round;
  p.version = version;
  p.epochs = 1;
  // Steps this large put every row's scale at 128 or more: a two-byte
  // varint, the longest a scale takes (at most 517).
  p.learning_rate = 8.0;
  const std::string id(TINYFED_DEVICE_ID_MAX_LEN, 'd');  // p.token is 16 bytes, the bound
  Device dev(id);
  // Classes that overlap, with those steps, drive the mean loss above 32
  // nats (2^21 in Q16.16), a four-byte varint, as a diverging device
  // reports; a fifth byte would need a mean above 4,096 nats.
  const QuantizedDataset data = MakeBlobs(21, 22, samples, 64, 10, 0.05, p.feature_scale, 0);
  EXPECT_EQ(dev.Load(BuildTask(p)), TINYFED_OK);
  const tinyfed_dataset_t view = data.view();
  // The evaluation's longest form: version and samples as the update's,
  // correct = samples (the task's zero head predicts class 0, the lowest
  // of its tied classes, so samples all labelled 0 are all right), and a
  // loss sum of ln(10) per sample, at or above 2^28 (five varint bytes,
  // the most a sum below samples x 2^21 < 2^35 takes) once the samples
  // reach 1,779.
  QuantizedDataset all_right = data;
  std::fill(all_right.y.begin(), all_right.y.end(), uint8_t{0});
  const tinyfed_dataset_t evaluated = all_right.view();
  tinyfed_evaluation_t evaluation{};
  EXPECT_EQ(tinyfed_evaluate(dev.ctx(), &evaluated, &evaluation), TINYFED_OK);
  EXPECT_EQ(tinyfed_train(dev.ctx(), &view), TINYFED_OK);
  const std::string bytes = dev.EncodeSignedUpdate();

  const Envelope envelope = ParseEnvelope(bytes);
  EXPECT_TRUE(envelope.ok);
  EXPECT_EQ(envelope.device_id, id);
  EXPECT_EQ(envelope.tag.size(), static_cast<size_t>(TINYFED_TAG_SIZE));
  v1::Update update;
  EXPECT_TRUE(update.ParseFromString(envelope.body));
  EXPECT_EQ(update.device_id().size(), TINYFED_DEVICE_ID_MAX_LEN);
  EXPECT_EQ(update.task_token().size(), 16u);
  EXPECT_EQ(update.round(), round);
  EXPECT_EQ(update.base_version(), version);
  EXPECT_EQ(update.sample_count(), samples);
  EXPECT_EQ(update.row_scales_size(), 10);
  static_assert(TINYFED_ROW_SCALE_MAX < (1u << 14), "a scale takes at most two varint bytes");
  for (uint32_t scale : update.row_scales()) EXPECT_GE(scale, 1u << 7);
  EXPECT_GE(update.local_loss_q16(), 1u << 21);
  EXPECT_LT(update.local_loss_q16(), 1u << 28);
  EXPECT_EQ(update.weight_delta().size() + update.bias_delta().size(), 650u);
  EXPECT_TRUE(update.has_evaluation());
  EXPECT_EQ(update.evaluation().model_version(), version);
  EXPECT_EQ(update.evaluation().samples(), samples);
  EXPECT_EQ(update.evaluation().correct(), samples);
  EXPECT_GE(update.evaluation().loss_sum_q16(), uint64_t{1} << 28);
  EXPECT_LE(update.evaluation().loss_sum_q16(), uint64_t{samples} << 21);
  return bytes;
}

long Headroom(size_t budget, size_t figure) {
  return static_cast<long>(budget) - static_cast<long>(figure);
}

// DESIGN.md's case: rounds and versions below 2^21 (three-byte varints;
// two million rounds, four years at one a minute) and fewer than 2^14
// samples per device (a two-byte count).
TEST(WireSize, UpdateOf64x10HeadWithinBudget) {
  const std::string bytes = LongestUpdate((1u << 21) - 1u, (1u << 21) - 1u, (1u << 14) - 1u);
  ASSERT_FALSE(bytes.empty());
  const size_t envelope = bytes.size() - 650u;
  std::cout << "signed update of a 64x10 head: " << bytes.size() << " bytes (budget "
            << TINYFED_BUDGET_UPDATE_BYTES << ", headroom "
            << Headroom(TINYFED_BUDGET_UPDATE_BYTES, bytes.size()) << "); envelope "
            << envelope << " bytes (budget " << TINYFED_BUDGET_UPDATE_ENVELOPE_BYTES
            << ", headroom " << Headroom(TINYFED_BUDGET_UPDATE_ENVELOPE_BYTES, envelope) << ")\n";
  EXPECT_LE(bytes.size(), TINYFED_BUDGET_UPDATE_BYTES)
      << "update bytes exceed TINYFED_BUDGET_UPDATE_BYTES in tests/tools/budgets.sh";
  EXPECT_LE(envelope, TINYFED_BUDGET_UPDATE_ENVELOPE_BYTES)
      << "envelope bytes exceed TINYFED_BUDGET_UPDATE_ENVELOPE_BYTES in tests/tools/budgets.sh";
}

// The protocol's far end: round and version in five-byte varints, and 2^14
// samples (a three-byte count). A fourth count byte would take 2^21
// samples, 128 MiB of features, too heavy here: that byte is not measured.
TEST(WireSize, UpdateWithLongestRoundAndVersionWithinItsBudget) {
  const std::string bytes = LongestUpdate(0xFFFFFFFFu, 0xFFFFFFFFu, 1u << 14);
  ASSERT_FALSE(bytes.empty());
  const size_t envelope = bytes.size() - 650u;
  std::cout << "signed update of a 64x10 head, longest round and version: " << bytes.size()
            << " bytes; envelope " << envelope << " bytes (budget "
            << TINYFED_BUDGET_UPDATE_ENVELOPE_EXTREME_BYTES << ", headroom "
            << Headroom(TINYFED_BUDGET_UPDATE_ENVELOPE_EXTREME_BYTES, envelope) << ")\n";
  EXPECT_LE(envelope, TINYFED_BUDGET_UPDATE_ENVELOPE_EXTREME_BYTES)
      << "envelope bytes exceed TINYFED_BUDGET_UPDATE_ENVELOPE_EXTREME_BYTES in "
         "tests/tools/budgets.sh";
}

}  // namespace
}  // namespace tinyfed::testing
