// Wire compatibility in both directions: what C++ protobuf (the server)
// encodes, nanopb (the SDK) decodes into the same values, and the reverse.
#include <gtest/gtest.h>

#include <random>
#include <string>
#include <vector>

#include "sdk_test_support.h"
#include "tinyfed/v1/round.pb.h"
#include "tinyfed_common/crc32.h"
#include "tinyfed_common/quantize.h"

namespace tinyfed::testing {
namespace {

std::vector<int16_t> RandomInt16(size_t n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::uniform_int_distribution<int> dist(-32768, 32767);
  std::vector<int16_t> v(n);
  for (auto& x : v) x = static_cast<int16_t>(dist(rng));
  return v;
}

TEST(WireCompat, TaskFromCppDecodesToSameValuesInSdk) {
  TaskParams p;
  p.round = 123456;
  p.version = 98765;
  p.features = 37;
  p.classes = 7;
  p.frac_bits = 11;
  p.feature_scale = 0.0123;
  p.zero_point = -17;
  p.weights = RandomInt16(37 * 7, 1);  // full int16 range, both signs
  p.bias = RandomInt16(7, 2);
  p.epochs = 5;
  p.batch_size = 12;
  p.learning_rate = 0.05;
  p.seed = 0xDEADBEEF;
  p.deadline_ms = 123000;
  p.token = std::string("\x00\x01\xff\x80" "token-16abcd", 16);
  const v1::RoundTask task = BuildTask(p);

  Device dev("dev-1");
  ASSERT_EQ(dev.Load(task), TINYFED_OK) << tinyfed_last_error_message(dev.ctx());
  tinyfed_task_info_t info;
  ASSERT_EQ(tinyfed_task_info(dev.ctx(), &info), TINYFED_OK);
  EXPECT_EQ(info.round, 123456u);
  EXPECT_EQ(info.model_version, 98765u);
  EXPECT_EQ(info.feature_count, 37u);
  EXPECT_EQ(info.class_count, 7u);
  EXPECT_EQ(info.weight_frac_bits, 11u);
  EXPECT_EQ(info.feature_zero_point, -17);
  EXPECT_EQ(info.feature_scale_multiplier,
            static_cast<uint32_t>(task.model().spec().feature_quantization().scale_multiplier()));
  EXPECT_EQ(info.feature_scale_shift, task.model().spec().feature_quantization().scale_shift());
  EXPECT_EQ(info.epochs, 5u);
  EXPECT_EQ(info.batch_size, 12u);
  EXPECT_EQ(info.learning_rate_q16, task.plan().learning_rate_q16());
  EXPECT_EQ(info.seed, 0xDEADBEEFu);
  EXPECT_EQ(info.deadline_ms, 123000u);
  ASSERT_EQ(info.task_token_len, 16u);
  EXPECT_EQ(std::string(reinterpret_cast<const char*>(info.task_token), 16), p.token);

  tinyfed_head_view_t head;
  ASSERT_EQ(tinyfed_global_head(dev.ctx(), &head), TINYFED_OK);
  EXPECT_EQ(std::vector<int16_t>(head.weights, head.weights + 37 * 7), p.weights);
  EXPECT_EQ(std::vector<int16_t>(head.bias, head.bias + 7), p.bias);
  // Before training the local head is the global head.
  tinyfed_head_view_t local;
  ASSERT_EQ(tinyfed_local_head(dev.ctx(), &local), TINYFED_OK);
  EXPECT_EQ(std::vector<int16_t>(local.weights, local.weights + 37 * 7), p.weights);
}

TEST(WireCompat, BareRoundTaskDecodesLikeTheResponse) {
  const v1::RoundTask task = BuildTask(TaskParams{});
  const std::string bytes = task.SerializeAsString();
  Device dev("dev-1");
  ASSERT_EQ(tinyfed_task_decode(dev.ctx(), reinterpret_cast<const uint8_t*>(bytes.data()),
                                bytes.size()),
            TINYFED_OK);
  tinyfed_task_info_t info;
  ASSERT_EQ(tinyfed_task_info(dev.ctx(), &info), TINYFED_OK);
  EXPECT_EQ(info.round, task.round());
}

TEST(WireCompat, RetryResponseReportsTheHint) {
  v1::CheckInResponse response;
  response.mutable_retry()->set_retry_after_ms(4500);
  const std::string bytes = response.SerializeAsString();
  Device dev("dev-1");
  tinyfed_checkin_result_t result{};
  ASSERT_EQ(tinyfed_checkin_response_decode(
                dev.ctx(), reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size(), &result),
            TINYFED_OK);
  EXPECT_EQ(result.kind, TINYFED_CHECKIN_RETRY);
  EXPECT_EQ(result.retry_after_ms, 4500u);
}

TEST(WireCompat, CheckInRequestParsesInCpp) {
  Device dev("sensor-0042", 64, 10, 16);
  uint8_t buf[TINYFED_CHECKIN_MAX_SIZE];
  size_t len = 0;
  ASSERT_EQ(tinyfed_checkin_encode(dev.ctx(), 321, buf, sizeof buf, &len), TINYFED_OK);
  // The request is the body of the signed envelope (request_auth_test.cc).
  Envelope envelope = ParseEnvelope(std::string(reinterpret_cast<const char*>(buf), len));
  ASSERT_TRUE(envelope.ok);
  v1::CheckInRequest request;
  ASSERT_TRUE(request.ParseFromString(envelope.body));
  EXPECT_EQ(request.device_id(), "sensor-0042");
  EXPECT_EQ(request.model_version(), 0u);
  EXPECT_EQ(request.capabilities().max_features(), 64u);
  EXPECT_EQ(request.capabilities().max_classes(), 10u);
  EXPECT_EQ(request.capabilities().max_batch_size(), 16u);
  EXPECT_EQ(request.capabilities().sample_count(), 321u);

  // After loading a task the device reports the version it holds.
  ASSERT_EQ(dev.Load(BuildTask(TaskParams{})), TINYFED_OK);
  ASSERT_EQ(tinyfed_checkin_encode(dev.ctx(), 321, buf, sizeof buf, &len), TINYFED_OK);
  envelope = ParseEnvelope(std::string(reinterpret_cast<const char*>(buf), len));
  ASSERT_TRUE(envelope.ok);
  ASSERT_TRUE(request.ParseFromString(envelope.body));
  EXPECT_EQ(request.model_version(), 7u);
}

TEST(WireCompat, CheckInRequestOfLongestIdFitsTheDocumentedBound) {
  const std::string id(TINYFED_DEVICE_ID_MAX_LEN, 'z');
  Device dev(id, 128, 32, 64);
  uint8_t buf[TINYFED_CHECKIN_MAX_SIZE];
  size_t len = 0;
  ASSERT_EQ(tinyfed_checkin_encode(dev.ctx(), 0xFFFFFFFFu, buf, sizeof buf, &len), TINYFED_OK);
  EXPECT_LE(len, TINYFED_CHECKIN_MAX_SIZE);
}

TEST(WireCompat, AckFromCppDecodesInSdk) {
  v1::UpdateAck ack;
  ack.set_round(77);
  ack.set_retry_after_ms(30000);
  const std::string bytes = ack.SerializeAsString();
  uint32_t round = 0, retry = 0;
  ASSERT_EQ(tinyfed_ack_decode(reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size(),
                               &round, &retry),
            TINYFED_OK);
  EXPECT_EQ(round, 77u);
  EXPECT_EQ(retry, 30000u);
  const uint8_t garbage[] = {0x08};  // tag of field 1, value missing
  EXPECT_EQ(tinyfed_ack_decode(garbage, sizeof garbage, &round, &retry), TINYFED_ERR_MALFORMED);
}

// Trains a device on a small task and returns it ready to encode.
struct TrainedDevice {
  explicit TrainedDevice(const std::string& id, const TaskParams& p = TaskParams{})
      : dev(id), data(MakeBlobs(11, 12, 200, static_cast<int>(p.features),
                                static_cast<int>(p.classes), 1.0, p.feature_scale,
                                p.zero_point)) {
    task = BuildTask(p);
    status = dev.Load(task);
    if (status != TINYFED_OK) return;
    tinyfed_dataset_t view = data.view();
    status = tinyfed_train(dev.ctx(), &view);
  }
  Device dev;
  QuantizedDataset data;
  v1::RoundTask task;
  tinyfed_status_t status = TINYFED_ERR_STATE;
};

TEST(WireCompat, UpdateFromSdkParsesInCppIntoTheSameFields) {
  TrainedDevice t("sensor-0042");
  ASSERT_EQ(t.status, TINYFED_OK);
  const std::string bytes = t.dev.EncodeUpdate();
  ASSERT_FALSE(bytes.empty());

  v1::Update update;
  ASSERT_TRUE(update.ParseFromString(bytes));
  EXPECT_EQ(update.round(), t.task.round());
  EXPECT_EQ(update.task_token(), t.task.task_token());
  EXPECT_EQ(update.device_id(), "sensor-0042");
  EXPECT_EQ(update.base_version(), t.task.model().version());
  EXPECT_EQ(update.sample_count(), 200u);
  ASSERT_EQ(update.weight_delta().size(), 640u);
  ASSERT_EQ(update.bias_delta().size(), 10u);
  ASSERT_EQ(update.row_scales_size(), 10);
  EXPECT_GT(update.local_loss_q16(), 0u);

  uint32_t crc = tinyfed_crc32_update(
      TINYFED_CRC32_INIT, reinterpret_cast<const uint8_t*>(update.weight_delta().data()),
      update.weight_delta().size());
  crc = tinyfed_crc32_update(crc, reinterpret_cast<const uint8_t*>(update.bias_delta().data()),
                             update.bias_delta().size());
  EXPECT_EQ(update.checksum(), crc);

  // The int8 values, dequantized with their row scales, are the device's
  // delta local - global to within one scale step (quantize.h's bound).
  tinyfed_head_view_t global, local;
  ASSERT_EQ(tinyfed_global_head(t.dev.ctx(), &global), TINYFED_OK);
  ASSERT_EQ(tinyfed_local_head(t.dev.ctx(), &local), TINYFED_OK);
  int nonzero = 0;
  for (int c = 0; c < 10; ++c) {
    const uint32_t scale = update.row_scales(c);
    ASSERT_GE(scale, 1u);
    ASSERT_LE(scale, TINYFED_ROW_SCALE_MAX);
    for (int f = 0; f < 64; ++f) {
      const int i = c * 64 + f;
      const auto q = static_cast<int8_t>(update.weight_delta()[static_cast<size_t>(i)]);
      const int32_t exact = local.weights[i] - global.weights[i];
      EXPECT_LT(std::abs(tinyfed_dequantize_s8(q, scale) - exact), static_cast<int32_t>(scale));
      nonzero += q != 0;
    }
    const auto qb = static_cast<int8_t>(update.bias_delta()[static_cast<size_t>(c)]);
    EXPECT_LT(std::abs(tinyfed_dequantize_s8(qb, scale) - (local.bias[c] - global.bias[c])),
              static_cast<int32_t>(scale));
  }
  EXPECT_GT(nonzero, 320) << "training should move most weights";
}

// The wire-size budgets are in wire_size_test.cc; this pins the header's
// bound, which callers size their buffers by.
TEST(WireCompat, SignedUpdateOfLongestFieldsFitsTheDocumentedBound) {
  // The longest device id and token, a large round and version, large
  // steps; the deltas are the 650 int8 values themselves.
  TaskParams p;
  p.round = 0xFFFFFFF0u;
  p.version = 0xFFFFFFF0u;
  p.learning_rate = 2.0;  // big steps: large row scales
  const std::string id(TINYFED_DEVICE_ID_MAX_LEN, 'd');
  TrainedDevice t(id, p);
  ASSERT_EQ(t.status, TINYFED_OK);
  const std::string bytes = t.dev.EncodeSignedUpdate();
  ASSERT_FALSE(bytes.empty());
  const Envelope envelope = ParseEnvelope(bytes);
  ASSERT_TRUE(envelope.ok);
  v1::Update update;
  ASSERT_TRUE(update.ParseFromString(envelope.body));
  ASSERT_EQ(update.task_token().size(), 16u);
  EXPECT_EQ(update.weight_delta().size() + update.bias_delta().size(), 650u);
  EXPECT_LE(bytes.size(), TINYFED_UPDATE_MAX_SIZE(64u, 10u));
}

}  // namespace
}  // namespace tinyfed::testing
