// The protocol's largest heads end to end: 4,096 weights (model.options),
// as 128 features x 32 classes (the most values, row scales and bias
// entries on the wire) and as 2,048 features x 2 classes (the longest
// rows). A real server on loopback hands the task to devices running the
// real SDK in contexts sized for exactly that head; they decode it, train,
// encode their updates into buffers of exactly the documented maximum size
// and submit them; the round commits, and the committed version is checked
// against the independent FedAvg reference of the updates the devices
// sent. Each device signs with its own key, derived from the server's
// fleet key, and its check-ins and updates travel as the SDK wrote them,
// in their SignedRequest. Two rounds, so the second task carries a committed version with
// its metrics, the largest task the server sends.
#include <gtest/gtest.h>
#include <grpcpp/grpcpp.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <iostream>
#include <memory>
#include <ostream>
#include <random>
#include <string>
#include <vector>

#include "in_process_server.h"
#include "reference_fedavg.h"
#include "round_manager.h"
#include "server_config.h"
#include "tinyfed/tinyfed.h"
#include "tinyfed/v1/coordinator.grpc.pb.h"
#include "tinyfed_common/fleet_keys.h"

namespace tinyfed::server {
namespace {

struct Shape {
  uint32_t features, classes;
};

void PrintTo(const Shape& shape, std::ostream* os) {
  *os << shape.features << "x" << shape.classes;
}

constexpr uint32_t kDevices = 4;
constexpr uint32_t kSamples = 48;  // six batches of 8 per epoch
constexpr uint32_t kBatch = 8;
// 0.75 in Q16.16, exactly: the server's step is then not the identity.
constexpr double kServerLearningRate = 0.75;
constexpr uint32_t kServerLearningRateQ16 = 49152;

// A device of the largest head: the SDK in a context sized for it, and
// local samples drawn around one mean per class. A fifth of the labels are
// replaced by random ones: 2,048 features separate the classes so well
// that a clean problem is solved in one round (loss 0, no more steps),
// and the second round must still move every row.
class LargeDevice {
 public:
  LargeDevice(std::string id, Shape shape, const Key256& fleet_key)
      : id_(std::move(id)),
        shape_(shape),
        arena_(TINYFED_ARENA_SIZE(shape.features, shape.classes, kBatch)) {
    absl::StatusOr<Key256> key = DeriveDeviceKey(fleet_key, id_);
    if (!key.ok()) {
      ADD_FAILURE() << id_ << ": " << key.status();
      return;  // init_status_ stays an error
    }
    device_key_ = *key;
    const tinyfed_config_t cfg{id_.c_str(), shape.features, shape.classes, kBatch,
                               device_key_.bytes().data()};
    init_status_ = tinyfed_init(&ctx_, &cfg, arena_.data(), arena_.size());
    std::mt19937 means_rng(77);  // the same problem on every device
    std::normal_distribution<double> normal(0.0, 1.0);
    std::vector<double> means(size_t{shape.features} * shape.classes);
    for (double& m : means) m = 20.0 * normal(means_rng);
    std::mt19937 rng(static_cast<uint32_t>(std::hash<std::string>()(id_)));
    std::uniform_int_distribution<uint32_t> label(0, shape.classes - 1);
    std::bernoulli_distribution mislabel(0.2);
    for (uint32_t i = 0; i < kSamples; ++i) {
      const uint32_t y = label(rng);
      labels_.push_back(static_cast<uint8_t>(mislabel(rng) ? label(rng) : y));
      for (uint32_t f = 0; f < shape.features; ++f) {
        const double v = means[size_t{y} * shape.features + f] + 30.0 * normal(rng);
        features_.push_back(static_cast<int8_t>(std::max(-127.0, std::min(127.0, std::round(v)))));
      }
    }
  }

  tinyfed_status_t init_status() const { return init_status_; }
  // Byte counts of the last task received and update sent.
  size_t task_bytes() const { return task_bytes_; }
  size_t update_bytes() const { return update_bytes_; }
  const v1::Update& sent() const { return sent_; }

  // One round: check in, decode the task, train, encode and submit. Fails
  // the test (and returns false) at the first step that goes wrong.
  bool Round(v1::Coordinator::Stub& stub) {
    uint8_t checkin[TINYFED_CHECKIN_MAX_SIZE];
    size_t len = 0;
    EXPECT_EQ(tinyfed_checkin_encode(&ctx_, kSamples, checkin, sizeof checkin, &len), TINYFED_OK);
    v1::SignedRequest signed_check_in;
    v1::CheckInRequest request;
    if (!signed_check_in.ParseFromArray(checkin, static_cast<int>(len)) ||
        !request.ParseFromString(signed_check_in.body())) {
      ADD_FAILURE() << id_ << ": check-in is not a CheckInRequest in a SignedRequest";
      return false;
    }
    EXPECT_EQ(signed_check_in.device_id(), id_);
    v1::CheckInResponse response;
    grpc::ClientContext c1;
    const grpc::Status checked_in = stub.CheckIn(&c1, signed_check_in, &response);
    if (!checked_in.ok() || !response.has_task()) {
      ADD_FAILURE() << id_ << ": no task: " << checked_in.error_message();
      return false;
    }
    const std::string task = response.SerializeAsString();
    task_bytes_ = task.size();
    // The documented bound the device's receive buffer is sized by.
    EXPECT_LE(task.size(), TINYFED_TASK_MAX_SIZE(shape_.features, shape_.classes)) << id_;
    tinyfed_checkin_result_t result{};
    const tinyfed_status_t decoded = tinyfed_checkin_response_decode(
        &ctx_, reinterpret_cast<const uint8_t*>(task.data()), task.size(), &result);
    if (decoded != TINYFED_OK || result.kind != TINYFED_CHECKIN_TASK) {
      ADD_FAILURE() << id_ << ": task decode: " << tinyfed_status_name(decoded) << " "
                    << tinyfed_last_error_message(&ctx_);
      return false;
    }
    tinyfed_task_info_t info{};
    EXPECT_EQ(tinyfed_task_info(&ctx_, &info), TINYFED_OK);
    EXPECT_EQ(info.feature_count, shape_.features);
    EXPECT_EQ(info.class_count, shape_.classes);
    const tinyfed_dataset_t data{features_.data(), labels_.data(), kSamples, shape_.features};
    const tinyfed_status_t trained = tinyfed_train(&ctx_, &data);
    if (trained != TINYFED_OK) {
      ADD_FAILURE() << id_ << ": train: " << tinyfed_status_name(trained);
      return false;
    }
    // Exactly the documented maximum: an encoder that needs more fails here.
    std::vector<uint8_t> out(TINYFED_UPDATE_MAX_SIZE(shape_.features, shape_.classes));
    const tinyfed_status_t encoded = tinyfed_update_encode(&ctx_, out.data(), out.size(), &len);
    if (encoded != TINYFED_OK) {
      ADD_FAILURE() << id_ << ": update encode: " << tinyfed_status_name(encoded) << " into "
                    << out.size() << " bytes";
      return false;
    }
    update_bytes_ = len;
    v1::SignedRequest signed_update;
    if (!signed_update.ParseFromArray(out.data(), static_cast<int>(len)) ||
        !sent_.ParseFromString(signed_update.body())) {
      ADD_FAILURE() << id_ << ": update is not an Update in a SignedRequest";
      return false;
    }
    EXPECT_EQ(sent_.weight_delta().size(), size_t{shape_.features} * shape_.classes);
    EXPECT_EQ(static_cast<uint32_t>(sent_.row_scales_size()), shape_.classes);
    v1::UpdateAck ack;
    grpc::ClientContext c2;
    const grpc::Status submitted = stub.SubmitUpdate(&c2, signed_update, &ack);
    if (!submitted.ok()) {
      ADD_FAILURE() << id_ << ": update refused: " << submitted.error_message();
      return false;
    }
    return true;
  }

 private:
  std::string id_;
  Shape shape_;
  Key256 device_key_;  // the context points to it
  std::vector<uint8_t> arena_;
  tinyfed_context_t ctx_{};
  tinyfed_status_t init_status_ = TINYFED_ERR_STATE;
  std::vector<int8_t> features_;
  std::vector<uint8_t> labels_;
  size_t task_bytes_ = 0, update_bytes_ = 0;
  v1::Update sent_;
};

v1::ModelVersion GetModel(v1::Coordinator::Stub& stub, uint32_t version) {
  grpc::ClientContext context;
  v1::GetModelRequest request;
  request.set_version(version);
  v1::ModelVersion model;
  const grpc::Status s = stub.GetModel(&context, request, &model);
  EXPECT_TRUE(s.ok()) << "GetModel(" << version << "): " << s.error_message();
  return model;
}

class LargestHead : public ::testing::TestWithParam<Shape> {};

TEST_P(LargestHead, TaskTrainingUpdateAndAggregationAtTheProtocolBound) {
  const Shape shape = GetParam();
  ASSERT_EQ(shape.features * shape.classes, TINYFED_MAX_WEIGHTS);
  v1::ServerConfig config;
  config.mutable_head()->set_feature_count(shape.features);
  config.mutable_head()->set_class_count(shape.classes);
  config.mutable_plan()->set_batch_size(kBatch);
  config.mutable_policy()->set_target_updates(kDevices);
  config.mutable_policy()->set_min_updates(kDevices);
  config.mutable_policy()->set_server_learning_rate(kServerLearningRate);
  ApplyDefaults(&config);
  auto started = InProcessServer::Start(config);
  ASSERT_TRUE(started.ok()) << started.status();
  std::unique_ptr<InProcessServer> server = std::move(*started);
  auto stub = v1::Coordinator::NewStub(
      grpc::CreateChannel(server->address(), grpc::InsecureChannelCredentials()));

  std::vector<std::unique_ptr<LargeDevice>> devices;
  for (uint32_t d = 0; d < kDevices; ++d) {
    devices.push_back(
        std::make_unique<LargeDevice>("mcu-" + std::to_string(d), shape, server->fleet_key()));
    ASSERT_EQ(devices.back()->init_status(), TINYFED_OK);
  }
  for (uint32_t round = 1; round <= 2; ++round) {
    const v1::ModelVersion base = GetModel(*stub, 0);
    ASSERT_EQ(base.version(), round);
    std::vector<v1::Update> sent;
    for (auto& device : devices) {
      ASSERT_TRUE(device->Round(*stub)) << "round " << round;
      sent.push_back(device->sent());
    }
    server->manager().WaitIdle();
    const v1::ModelVersion committed = GetModel(*stub, 0);
    ASSERT_EQ(committed.version(), round + 1) << "the round did not commit";
    EXPECT_EQ(committed.metrics().participants(), kDevices);
    EXPECT_TRUE(testing::MatchesReferenceFedAvg(committed, base, sent, kServerLearningRateQ16))
        << "round " << round;
    // The comparison is only worth something if the model moved, in every
    // class row.
    for (uint32_t c = 0; c < shape.classes; ++c) {
      bool moved = false;
      for (uint32_t f = 0; f < shape.features; ++f) {
        const size_t i = size_t{c} * shape.features + f;
        moved = moved || committed.weights()[2 * i] != base.weights()[2 * i] ||
                committed.weights()[2 * i + 1] != base.weights()[2 * i + 1];
      }
      EXPECT_TRUE(moved) << "class row " << c << " did not move in round " << round;
    }
    std::cout << shape.features << "x" << shape.classes << " round " << round << ": task "
              << devices[0]->task_bytes() << " of "
              << TINYFED_TASK_MAX_SIZE(shape.features, shape.classes) << " bytes, update "
              << devices[0]->update_bytes() << " of "
              << TINYFED_UPDATE_MAX_SIZE(shape.features, shape.classes) << " bytes\n";
  }
}

INSTANTIATE_TEST_SUITE_P(ProtocolBound, LargestHead,
                         ::testing::Values(Shape{128, 32}, Shape{2048, 2}),
                         [](const ::testing::TestParamInfo<Shape>& info) {
                           return std::to_string(info.param.features) + "x" +
                                  std::to_string(info.param.classes);
                         });

}  // namespace
}  // namespace tinyfed::server
