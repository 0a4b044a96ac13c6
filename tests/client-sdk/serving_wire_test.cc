// The serving side of the wire as the server reads it (C++ protobuf): the
// check-in's ServingState and its bound, a response carrying a model (its
// bytes located, nothing loaded), and evaluation-only tasks with their
// signed Update.
#include <gtest/gtest.h>

#include <cstdint>
#include <string>
#include <vector>

#include "sdk_test_support.h"
#include "tinyfed/v1/coordinator.pb.h"
#include "tinyfed/v1/round.pb.h"

namespace tinyfed::testing {
namespace {

std::string CheckIn(Device& device, uint32_t sample_count, const tinyfed_serving_state_t* serving,
                    tinyfed_status_t* status = nullptr) {
  uint8_t buf[TINYFED_CHECKIN_MAX_SIZE];
  size_t len = 0;
  const tinyfed_status_t s =
      tinyfed_checkin_encode_serving(device.ctx(), sample_count, serving, buf, sizeof buf, &len);
  if (status != nullptr) *status = s;
  if (s != TINYFED_OK) return {};
  return std::string(reinterpret_cast<const char*>(buf), len);
}

// The request's body parsed by C++ protobuf, after its tag is checked
// under the device's key with the check-in label.
v1::CheckInRequest ParseCheckIn(const Device& device, const std::string& signed_bytes) {
  const Envelope e = ParseEnvelope(signed_bytes);
  EXPECT_TRUE(e.ok);
  EXPECT_EQ(e.device_id, device.id());
  EXPECT_TRUE(TagMatches(RequestTag(device.key(), RequestType::kCheckIn, e.body), e.tag));
  EXPECT_FALSE(TagMatches(RequestTag(device.key(), RequestType::kUpdate, e.body), e.tag));
  v1::CheckInRequest request;
  EXPECT_TRUE(request.ParseFromString(e.body));
  return request;
}

TEST(ServingCheckIn, CarriesTheServingStateAsTheServerParsesIt) {
  Device device("serving-7");
  const tinyfed_evaluation_t evaluation{5u, 120u, 97u, 3456789u};
  const tinyfed_serving_state_t serving{5u, &evaluation, 1u};
  const v1::CheckInRequest r = ParseCheckIn(device, CheckIn(device, 150u, &serving));
  EXPECT_EQ(r.device_id(), "serving-7");
  EXPECT_EQ(r.model_version(), 0u);  // no training task yet
  EXPECT_EQ(r.capabilities().sample_count(), 150u);
  ASSERT_TRUE(r.has_serving());
  EXPECT_EQ(r.serving().model_version(), 5u);
  EXPECT_TRUE(r.serving().defer_model());
  ASSERT_TRUE(r.serving().has_evaluation());
  EXPECT_EQ(r.serving().evaluation().model_version(), 5u);
  EXPECT_EQ(r.serving().evaluation().samples(), 120u);
  EXPECT_EQ(r.serving().evaluation().correct(), 97u);
  EXPECT_EQ(r.serving().evaluation().loss_sum_q16(), 3456789u);

  // A device that serves nothing yet says so: a ServingState of version 0,
  // no evaluation, no defer (proto3 leaves them off the wire).
  const tinyfed_serving_state_t fresh{0u, nullptr, 0u};
  const v1::CheckInRequest f = ParseCheckIn(device, CheckIn(device, 150u, &fresh));
  EXPECT_TRUE(f.has_serving());
  EXPECT_EQ(f.serving().model_version(), 0u);
  EXPECT_FALSE(f.serving().has_evaluation());
  EXPECT_FALSE(f.serving().defer_model());
}

TEST(ServingCheckIn, WithoutServingIsTheCheckInAsBefore) {
  // The body C++ protobuf writes for the same fields (fields in number
  // order, as nanopb writes them): what tinyfed_checkin_encode has always
  // sent, with no serving field.
  Device device("plain-3");
  v1::CheckInRequest expected;
  expected.set_device_id("plain-3");
  expected.mutable_capabilities()->set_max_features(64);
  expected.mutable_capabilities()->set_max_classes(10);
  expected.mutable_capabilities()->set_max_batch_size(16);
  expected.mutable_capabilities()->set_sample_count(42);
  const std::string with_null = CheckIn(device, 42u, nullptr);
  const Envelope e = ParseEnvelope(with_null);
  ASSERT_TRUE(e.ok);
  EXPECT_EQ(e.body, expected.SerializeAsString());
  uint8_t buf[TINYFED_CHECKIN_MAX_SIZE];
  size_t len = 0;
  ASSERT_EQ(tinyfed_checkin_encode(device.ctx(), 42u, buf, sizeof buf, &len), TINYFED_OK);
  EXPECT_EQ(std::string(reinterpret_cast<const char*>(buf), len), with_null);
}

TEST(ServingCheckIn, TheLongestServingCheckInFitsItsBound) {
  // Every field at its longest: a 32-byte id, the largest capacity, a
  // held version of 2^32 - 1 (from a task), the largest served version,
  // 2^24 samples and the largest loss sum the server accepts.
  Device device(std::string(32, 'z'), 4096 / 32, 32, 64);
  TaskParams p;
  p.features = 128;
  p.classes = 32;
  p.version = UINT32_MAX;
  ASSERT_EQ(device.Load(BuildTask(p)), TINYFED_OK);
  const tinyfed_evaluation_t evaluation{UINT32_MAX, TINYFED_MAX_SAMPLES, TINYFED_MAX_SAMPLES,
                                        uint64_t{TINYFED_MAX_SAMPLES} << 21};
  const tinyfed_serving_state_t serving{UINT32_MAX, &evaluation, 1u};
  const std::string longest = CheckIn(device, UINT32_MAX, &serving);
  ASSERT_FALSE(longest.empty());
  EXPECT_LE(longest.size(), size_t{TINYFED_CHECKIN_MAX_SIZE});
  const v1::CheckInRequest r = ParseCheckIn(device, longest);
  EXPECT_EQ(r.model_version(), UINT32_MAX);
  EXPECT_EQ(r.serving().evaluation().loss_sum_q16(), uint64_t{TINYFED_MAX_SAMPLES} << 21);
  // The serving state's share of the bound is exact: this ServingState is
  // as long as one can be (both bodies below 128 bytes, so the envelope's
  // length varint is one byte in each).
  const std::string plain = CheckIn(device, UINT32_MAX, nullptr);
  EXPECT_EQ(longest.size() - plain.size(), size_t{TINYFED_SERVING_STATE_MAX_SIZE});
}

TEST(ServingCheckIn, RefusesAnEvaluationTheServerWouldRefuse) {
  Device device("serving-bad");
  struct Case {
    const char* why;
    tinyfed_evaluation_t evaluation;
    uint32_t sample_count;
  };
  const Case cases[] = {
      {"another version", {6u, 10u, 5u, 100u}, 0u},
      {"no samples", {5u, 0u, 0u, 0u}, 0u},
      {"more than 2^24 samples", {5u, TINYFED_MAX_SAMPLES + 1u, 0u, 0u}, 0u},
      {"more samples than declared", {5u, 11u, 5u, 100u}, 10u},
      {"more correct than samples", {5u, 10u, 11u, 100u}, 0u},
      {"loss above samples x 2^21", {5u, 10u, 5u, (uint64_t{10} << 21) + 1u}, 0u},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.why);
    const tinyfed_serving_state_t serving{5u, &c.evaluation, 0u};
    tinyfed_status_t status = TINYFED_OK;
    CheckIn(device, c.sample_count, &serving, &status);
    EXPECT_EQ(status, TINYFED_ERR_ARGUMENT);
  }
  // At the bounds it is accepted.
  const tinyfed_evaluation_t edge{5u, 10u, 10u, uint64_t{10} << 21};
  const tinyfed_serving_state_t serving{5u, &edge, 0u};
  tinyfed_status_t status = TINYFED_ERR_ARGUMENT;
  CheckIn(device, 10u, &serving, &status);
  EXPECT_EQ(status, TINYFED_OK);
  // The version-0 state cannot carry an evaluation (versions start at 1).
  const tinyfed_evaluation_t zero{0u, 10u, 5u, 100u};
  const tinyfed_serving_state_t none{0u, &zero, 0u};
  CheckIn(device, 0u, &none, &status);
  EXPECT_EQ(status, TINYFED_ERR_ARGUMENT);
}

TEST(CheckInResponseModel, ReportsWhereTheModelLiesAndLoadsNothing) {
  Device device("serving-9");
  // A task loaded and evaluated first: the model response must leave both.
  TaskParams p;
  const v1::RoundTask task = BuildTask(p);
  ASSERT_EQ(device.Load(task), TINYFED_OK);
  const QuantizedDataset data = MakeBlobs(1, 2, 20, 64, 10, 0.4, p.feature_scale, 0);
  const tinyfed_dataset_t view = data.view();
  tinyfed_evaluation_t evaluation{};
  ASSERT_EQ(tinyfed_evaluate(device.ctx(), &view, &evaluation), TINYFED_OK);

  TaskParams served;
  served.version = 12;
  served.weights.assign(640, 0);
  for (size_t i = 0; i < served.weights.size(); ++i) served.weights[i] = static_cast<int16_t>(i * 7);
  v1::CheckInResponse response;
  *response.mutable_model() = BuildTask(served).model();
  const std::string bytes = response.SerializeAsString();
  tinyfed_checkin_result_t result{};
  ASSERT_EQ(tinyfed_checkin_response_decode(device.ctx(),
                                            reinterpret_cast<const uint8_t*>(bytes.data()),
                                            bytes.size(), &result),
            TINYFED_OK);
  EXPECT_EQ(result.kind, TINYFED_CHECKIN_MODEL);
  ASSERT_LE(result.model_offset + result.model_length, bytes.size());
  v1::ModelVersion located;
  ASSERT_TRUE(located.ParseFromString(bytes.substr(result.model_offset, result.model_length)));
  EXPECT_EQ(located.SerializeAsString(), response.model().SerializeAsString());
  // The same bytes decode as a deployed model.
  std::vector<uint32_t> model(TINYFED_MODEL_SIZE(64, 10) / 4 + 1);
  const auto& fq = located.spec().feature_quantization();
  const tinyfed_backbone_t backbone{64, fq.scale_multiplier(), fq.scale_shift(), fq.zero_point()};
  tinyfed_model_info_t info{};
  ASSERT_EQ(tinyfed_model_decode(&backbone,
                                 reinterpret_cast<const uint8_t*>(bytes.data()) +
                                     result.model_offset,
                                 result.model_length, model.data(), model.size() * 4, &info),
            TINYFED_OK);
  EXPECT_EQ(info.version, 12u);

  // The context still holds its task, untrained, and its evaluation goes
  // out with the update.
  tinyfed_task_info_t info_after{};
  ASSERT_EQ(tinyfed_task_info(device.ctx(), &info_after), TINYFED_OK);
  EXPECT_EQ(info_after.model_version, p.version);
  tinyfed_head_view_t head{};
  ASSERT_EQ(tinyfed_global_head(device.ctx(), &head), TINYFED_OK);
  EXPECT_EQ(head.weights[1], 0);  // the task's zeros, not the model's 7
  ASSERT_EQ(tinyfed_train(device.ctx(), &view), TINYFED_OK);
  v1::Update update;
  ASSERT_TRUE(update.ParseFromString(device.EncodeUpdate()));
  EXPECT_TRUE(update.has_evaluation());
  EXPECT_EQ(update.evaluation().samples(), 20u);
}

TEST(CheckInResponseModel, MoreThanOneOfTaskRetryModelIsMalformed) {
  Device device("serving-10");
  v1::CheckInResponse both;
  *both.mutable_model() = BuildTask(TaskParams{}).model();
  both.mutable_retry()->set_retry_after_ms(5);
  const std::string bytes = both.SerializeAsString();
  tinyfed_checkin_result_t result{};
  EXPECT_EQ(tinyfed_checkin_response_decode(device.ctx(),
                                            reinterpret_cast<const uint8_t*>(bytes.data()),
                                            bytes.size(), &result),
            TINYFED_ERR_MALFORMED);
}

v1::RoundTask EvaluationTask() {
  TaskParams p;
  p.weights.assign(640, 0);
  for (size_t i = 0; i < p.weights.size(); ++i) p.weights[i] = static_cast<int16_t>((i * 37) % 200 - 100);
  v1::RoundTask task = BuildTask(p);
  task.clear_plan();
  task.clear_quantization();
  task.set_evaluate_only(true);
  return task;
}

tinyfed_status_t Respond(Device& device, const v1::RoundTask& task,
                         tinyfed_checkin_result_t* result) {
  const std::string bytes = EncodeCheckInResponse(task);
  return tinyfed_checkin_response_decode(
      device.ctx(), reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size(), result);
}

std::string EncodeEvaluation(Device& device, tinyfed_status_t* status) {
  std::vector<uint8_t> buf(TINYFED_UPDATE_MAX_SIZE(64, 10));
  size_t len = 0;
  *status = tinyfed_evaluation_encode(device.ctx(), buf.data(), buf.size(), &len);
  return *status == TINYFED_OK ? std::string(reinterpret_cast<const char*>(buf.data()), len)
                               : std::string();
}

TEST(EvaluationOnlyTask, RoundTripsAsTheServerParsesIt) {
  Device device("eval-only-1");
  const v1::RoundTask task = EvaluationTask();
  tinyfed_checkin_result_t result{};
  ASSERT_EQ(Respond(device, task, &result), TINYFED_OK);
  EXPECT_EQ(result.kind, TINYFED_CHECKIN_EVALUATE);
  tinyfed_task_info_t info{};
  ASSERT_EQ(tinyfed_task_info(device.ctx(), &info), TINYFED_OK);
  EXPECT_NE(info.evaluate_only, 0u);

  tinyfed_status_t status = TINYFED_OK;
  EncodeEvaluation(device, &status);
  EXPECT_EQ(status, TINYFED_ERR_STATE) << "nothing evaluated yet";

  const QuantizedDataset data = MakeBlobs(3, 4, 30, 64, 10, 0.4, TaskParams{}.feature_scale, 0);
  const tinyfed_dataset_t view = data.view();
  EXPECT_EQ(tinyfed_train(device.ctx(), &view), TINYFED_ERR_STATE);
  std::vector<uint8_t> buf(TINYFED_UPDATE_MAX_SIZE(64, 10));
  size_t len = 0;
  EXPECT_EQ(tinyfed_update_encode(device.ctx(), buf.data(), buf.size(), &len), TINYFED_ERR_STATE);
  tinyfed_evaluation_t evaluation{};
  ASSERT_EQ(tinyfed_evaluate(device.ctx(), &view, &evaluation), TINYFED_OK);

  const std::string signed_bytes = EncodeEvaluation(device, &status);
  ASSERT_EQ(status, TINYFED_OK);
  const Envelope e = ParseEnvelope(signed_bytes);
  ASSERT_TRUE(e.ok);
  EXPECT_EQ(e.device_id, "eval-only-1");
  EXPECT_TRUE(TagMatches(RequestTag(device.key(), RequestType::kUpdate, e.body), e.tag));
  v1::Update u;
  ASSERT_TRUE(u.ParseFromString(e.body));
  EXPECT_EQ(u.round(), task.round());
  EXPECT_EQ(u.task_token(), task.task_token());
  EXPECT_EQ(u.device_id(), "eval-only-1");
  EXPECT_EQ(u.base_version(), task.model().version());
  // Only the evaluation: round.proto RoundTask.evaluate_only.
  EXPECT_EQ(u.sample_count(), 0u);
  EXPECT_TRUE(u.weight_delta().empty());
  EXPECT_TRUE(u.bias_delta().empty());
  EXPECT_EQ(u.row_scales_size(), 0);
  EXPECT_EQ(u.local_loss_q16(), 0u);
  EXPECT_EQ(u.checksum(), 0u);
  ASSERT_TRUE(u.has_evaluation());
  EXPECT_EQ(u.evaluation().model_version(), task.model().version());
  EXPECT_EQ(u.evaluation().samples(), 30u);
  EXPECT_EQ(u.evaluation().correct(), evaluation.correct);
  EXPECT_EQ(u.evaluation().loss_sum_q16(), evaluation.loss_sum_q16);
  // Nothing else: the body is exactly those fields as C++ writes them.
  v1::Update expected;
  expected.set_round(task.round());
  expected.set_task_token(task.task_token());
  expected.set_device_id("eval-only-1");
  expected.set_base_version(task.model().version());
  *expected.mutable_evaluation() = u.evaluation();
  EXPECT_EQ(e.body, expected.SerializeAsString());
}

TEST(EvaluationOnlyTask, ATrainingTaskRefusesTheEvaluationEncoder) {
  Device device("eval-only-2");
  tinyfed_checkin_result_t result{};
  ASSERT_EQ(Respond(device, BuildTask(TaskParams{}), &result), TINYFED_OK);
  EXPECT_EQ(result.kind, TINYFED_CHECKIN_TASK);
  const QuantizedDataset data = MakeBlobs(3, 4, 30, 64, 10, 0.4, TaskParams{}.feature_scale, 0);
  const tinyfed_dataset_t view = data.view();
  tinyfed_evaluation_t evaluation{};
  ASSERT_EQ(tinyfed_evaluate(device.ctx(), &view, &evaluation), TINYFED_OK);
  tinyfed_status_t status = TINYFED_OK;
  EncodeEvaluation(device, &status);
  EXPECT_EQ(status, TINYFED_ERR_STATE);
  ASSERT_EQ(tinyfed_train(device.ctx(), &view), TINYFED_OK);
  EncodeEvaluation(device, &status);
  EXPECT_EQ(status, TINYFED_ERR_STATE);
}

TEST(EvaluationOnlyTask, ATrainingTaskStillNeedsItsPlan) {
  // Without evaluate_only the plan stays required.
  Device device("eval-only-3");
  v1::RoundTask task = BuildTask(TaskParams{});
  task.clear_plan();
  tinyfed_checkin_result_t result{};
  EXPECT_EQ(Respond(device, task, &result), TINYFED_ERR_INVALID_TASK);
}

}  // namespace
}  // namespace tinyfed::testing
