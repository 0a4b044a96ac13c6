// Integration over loopback with a real gRPC client: devices built on the
// C SDK check in, train, submit, and the committed version comes back
// through GetModel with its lineage, and is exactly the FedAvg of what the
// devices sent by the independent reference in reference_fedavg.h. Also the
// gRPC status codes and the retry-hint metadata at the edge. Every
// check-in and update travels signed (SignedRequest), as the SDK sends it;
// device_auth_test.cc tests what the server does with a bad signature.
#include "coordinator_service.h"

#include <gtest/gtest.h>
#include <grpcpp/generic/generic_stub.h>
#include <grpcpp/grpcpp.h>

#include <future>
#include <memory>
#include <random>
#include <string>
#include <tuple>
#include <vector>

#include "in_process_server.h"
#include "reference_fedavg.h"
#include "server_config.h"
#include "server_test_support.h"
#include "tinyfed/tinyfed.h"
#include "tinyfed/v1/coordinator.grpc.pb.h"

namespace tinyfed::server {
namespace {

// A real server on loopback (InProcessServer) and a gRPC client of it.
class LoopbackServer {
 public:
  explicit LoopbackServer(const v1::ServerConfig& config) {
    auto started = InProcessServer::Start(config);
    EXPECT_TRUE(started.ok()) << started.status();
    server_ = std::move(*started);
    stub_ = v1::Coordinator::NewStub(
        grpc::CreateChannel(server_->address(), grpc::InsecureChannelCredentials()));
  }
  v1::Coordinator::Stub& stub() { return *stub_; }
  const std::string& address() const { return server_->address(); }
  RoundManager& manager() { return server_->manager(); }
  const Key256& fleet_key() const { return server_->fleet_key(); }

 private:
  std::unique_ptr<InProcessServer> server_;
  std::unique_ptr<v1::Coordinator::Stub> stub_;
};

v1::ServerConfig Config() {
  v1::ServerConfig c;
  c.mutable_head()->set_feature_count(16);
  c.mutable_head()->set_class_count(4);
  c.mutable_policy()->set_target_updates(3);
  c.mutable_policy()->set_min_updates(3);
  ApplyDefaults(&c);
  return c;
}

// A device running the real SDK on random local data, with its key
// derived from the server's fleet key as `tinyfed-admin keys device` does.
class SdkDevice {
 public:
  SdkDevice(std::string id, const Key256& fleet_key)
      : id_(std::move(id)), arena_(tinyfed_arena_size(16, 4, 8)) {
    absl::StatusOr<Key256> key = DeriveDeviceKey(fleet_key, id_);
    EXPECT_TRUE(key.ok()) << key.status();
    if (key.ok()) key_ = *key;
    tinyfed_config_t cfg{id_.c_str(), 16, 4, 8, key_.bytes().data()};
    EXPECT_EQ(tinyfed_init(&ctx_, &cfg, arena_.data(), arena_.size()), TINYFED_OK);
    std::mt19937 rng(static_cast<uint32_t>(std::hash<std::string>()(id_)));
    std::uniform_int_distribution<int> feature(-100, 100), label(0, 3);
    features_.resize(40 * 16);
    labels_.resize(40);
    for (auto& f : features_) f = static_cast<int8_t>(feature(rng));
    for (auto& l : labels_) l = static_cast<uint8_t>(label(rng));
  }

  // One round: check in, train, submit. Returns the submit status; the
  // update sent, as the server received it, is in sent(). The SDK's bytes
  // are SignedRequests; parsed and sent again through the stub they stay
  // the same bytes (protobuf writes fields in order, and there are no
  // unknown ones).
  grpc::Status Round(v1::Coordinator::Stub& stub) {
    uint8_t buf[TINYFED_TASK_MAX_SIZE(16u, 4u)];
    size_t len = 0;
    EXPECT_EQ(tinyfed_checkin_encode(&ctx_, 40, buf, sizeof buf, &len), TINYFED_OK);
    v1::SignedRequest request;
    EXPECT_TRUE(request.ParseFromArray(buf, static_cast<int>(len)));
    EXPECT_EQ(request.SerializeAsString(),
              std::string(reinterpret_cast<const char*>(buf), len));
    v1::CheckInResponse response;
    grpc::ClientContext c1;
    grpc::Status s = stub.CheckIn(&c1, request, &response);
    if (!s.ok()) return s;
    const std::string bytes = response.SerializeAsString();
    tinyfed_checkin_result_t result{};
    EXPECT_EQ(tinyfed_checkin_response_decode(&ctx_, reinterpret_cast<const uint8_t*>(bytes.data()),
                                              bytes.size(), &result),
              TINYFED_OK)
        << tinyfed_last_error_message(&ctx_);
    EXPECT_EQ(result.kind, TINYFED_CHECKIN_TASK);
    tinyfed_dataset_t data{features_.data(), labels_.data(), 40, 16};
    EXPECT_EQ(tinyfed_train(&ctx_, &data), TINYFED_OK);
    EXPECT_EQ(tinyfed_update_encode(&ctx_, buf, sizeof buf, &len), TINYFED_OK);
    v1::SignedRequest signed_update;
    EXPECT_TRUE(signed_update.ParseFromArray(buf, static_cast<int>(len)));
    EXPECT_TRUE(sent_.ParseFromString(signed_update.body()));
    v1::UpdateAck ack;
    grpc::ClientContext c2;
    return stub.SubmitUpdate(&c2, signed_update, &ack);
  }
  const v1::Update& sent() const { return sent_; }

 private:
  std::string id_;
  Key256 key_;
  std::vector<uint8_t> arena_;
  tinyfed_context_t ctx_{};
  std::vector<int8_t> features_;
  std::vector<uint8_t> labels_;
  v1::Update sent_;
};

TEST(CoordinatorService, FullRoundFromCheckInToCommittedVersion) {
  LoopbackServer server(Config());
  std::vector<v1::Update> sent;
  for (const char* id : {"mcu-a", "mcu-b", "mcu-c"}) {
    SdkDevice device(id, server.fleet_key());
    grpc::Status s = device.Round(server.stub());
    ASSERT_TRUE(s.ok()) << id << ": " << s.error_message();
    sent.push_back(device.sent());
  }
  server.manager().WaitIdle();

  grpc::ClientContext context;
  v1::GetModelRequest request;  // version 0: latest
  v1::ModelVersion latest;
  ASSERT_TRUE(server.stub().GetModel(&context, request, &latest).ok());
  EXPECT_EQ(latest.version(), 2u);
  EXPECT_EQ(latest.parent_version(), 1u);
  EXPECT_EQ(latest.round(), 1u);
  EXPECT_EQ(latest.metrics().participants(), 3u);
  EXPECT_EQ(latest.metrics().samples(), 120u);
  EXPECT_GT(latest.metrics().mean_local_loss_q16(), 0u);
  EXPECT_GT(latest.created_unix_ms(), 0);
  auto head = LoadHead(latest);
  ASSERT_TRUE(head.ok()) << head.status();
  EXPECT_NE(*head, Head::Zeros(16, 4)) << "training must have moved the model";

  grpc::ClientContext c2;
  request.set_version(1);
  v1::ModelVersion parent;
  ASSERT_TRUE(server.stub().GetModel(&c2, request, &parent).ok());
  EXPECT_EQ(parent.version(), 1u);
  EXPECT_EQ(parent.parent_version(), 0u);
  EXPECT_EQ(parent.spec().SerializeAsString(), latest.spec().SerializeAsString());
  // Config() keeps the default server learning rate, 1.0 (65536 in Q16.16).
  EXPECT_TRUE(testing::MatchesReferenceFedAvg(latest, parent, sent, 65536));

  grpc::ClientContext c3;
  request.set_version(99);
  v1::ModelVersion none;
  EXPECT_EQ(server.stub().GetModel(&c3, request, &none).error_code(), grpc::StatusCode::NOT_FOUND);
}

// Trained updates rarely land on a rounding tie, so here every value is
// one: two devices of one sample each, scale 1, one sending odd int8
// values of both signs and the other zeros, so each step is q / 2 exactly
// between two integers. Sent through gRPC and read back through GetModel,
// the committed version must be the reference's, ties to even.
TEST(CoordinatorService, CommittedVersionRoundsEveryTieToEvenEndToEnd) {
  v1::ServerConfig config = Config();
  config.mutable_policy()->set_target_updates(2);
  config.mutable_policy()->set_min_updates(2);
  LoopbackServer server(config);
  std::vector<v1::Update> sent;
  for (const char* id : {"mcu-odd", "mcu-zero"}) {
    v1::CheckInRequest request;
    request.set_device_id(id);
    v1::CheckInResponse response;
    grpc::ClientContext c1;
    ASSERT_TRUE(
        server.stub().CheckIn(&c1, testing::Sign(server.fleet_key(), request), &response).ok());
    ASSERT_TRUE(response.has_task()) << id;
    const v1::RoundTask& task = response.task();
    v1::Update u;
    u.set_round(task.round());
    u.set_task_token(task.task_token());
    u.set_device_id(id);
    u.set_base_version(task.model().version());
    u.set_sample_count(1);
    const bool odd = sent.empty();
    std::string weights(16 * 4, '\0');
    for (size_t j = 0; odd && j < weights.size(); ++j) {
      weights[j] = static_cast<char>(static_cast<int8_t>(2 * static_cast<int>(j) - 63));
    }
    u.set_weight_delta(weights);
    u.set_bias_delta(odd ? std::string("\x01\xff\x03\xfd", 4) : std::string(4, '\0'));
    for (int c = 0; c < 4; ++c) u.add_row_scales(1);
    u.set_local_loss_q16(odd ? 1 : 2);  // mean 1.5 (in Q16 units): a tie too
    testing::FixChecksum(&u);
    v1::UpdateAck ack;
    grpc::ClientContext c2;
    const grpc::Status s =
        server.stub().SubmitUpdate(&c2, testing::Sign(server.fleet_key(), u), &ack);
    ASSERT_TRUE(s.ok()) << id << ": " << s.error_message();
    sent.push_back(u);
  }
  server.manager().WaitIdle();
  v1::GetModelRequest request;  // version 0: latest
  v1::ModelVersion latest;
  grpc::ClientContext c3;
  ASSERT_TRUE(server.stub().GetModel(&c3, request, &latest).ok());
  ASSERT_EQ(latest.version(), 2u);
  request.set_version(1);
  v1::ModelVersion parent;
  grpc::ClientContext c4;
  ASSERT_TRUE(server.stub().GetModel(&c4, request, &parent).ok());
  EXPECT_TRUE(testing::MatchesReferenceFedAvg(latest, parent, sent, 65536));
}

TEST(CoordinatorService, ErrorsKeepTheirCodeAtTheEdge) {
  LoopbackServer server(Config());
  // Authentic, but not a valid update: the RoundManager's code.
  v1::Update garbage;
  garbage.set_device_id("mcu-a");
  grpc::ClientContext context;
  v1::UpdateAck ack;
  grpc::Status s =
      server.stub().SubmitUpdate(&context, testing::Sign(server.fleet_key(), garbage), &ack);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_NE(s.error_message().find("sample_count"), std::string::npos) << s.error_message();

  // No device id: no key can be derived, so the envelope is refused.
  v1::SignedRequest anonymous;
  v1::CheckInRequest bad;
  anonymous.set_body(bad.SerializeAsString());
  anonymous.set_tag(std::string(32, '\0'));
  grpc::ClientContext c2;
  v1::CheckInResponse response;
  s = server.stub().CheckIn(&c2, anonymous, &response);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_NE(s.error_message().find("device id"), std::string::npos) << s.error_message();
}

// Calls `method` with `bytes` as the request, whatever they are.
grpc::Status CallWithBytes(const std::string& address, const std::string& method,
                           const std::string& bytes) {
  grpc::GenericStub stub(grpc::CreateChannel(address, grpc::InsecureChannelCredentials()));
  grpc::Slice slice(bytes);
  grpc::ByteBuffer request(&slice, 1);
  grpc::ByteBuffer response;
  grpc::ClientContext context;
  std::promise<grpc::Status> done;
  stub.UnaryCall(&context, method, grpc::StubOptions(), &request, &response,
                 [&](grpc::Status s) { done.set_value(std::move(s)); });
  return done.get_future().get();
}

TEST(CoordinatorService, BytesThatAreNotTheMessageAreInvalidArgumentWithAReason) {
  LoopbackServer server(Config());
  const std::string not_wire_format("\xff\xff\xff\xff", 4);  // a tag whose varint never ends
  const std::string truncated("\x1a\x05" "ab", 4);        // field 3 says 5 bytes, has 2
  const std::string not_utf8("\x0a\x02\xc3\x28", 4);      // field 1: an invalid UTF-8 pair
  constexpr char kCheckIn[] = "/tinyfed.v1.Coordinator/CheckIn";
  constexpr char kSubmit[] = "/tinyfed.v1.Coordinator/SubmitUpdate";
  const struct {
    const char* method;
    const char* type;
  } methods[] = {{kSubmit, "tinyfed.v1.SignedRequest"},
                 {kCheckIn, "tinyfed.v1.SignedRequest"},
                 {"/tinyfed.v1.Coordinator/GetModel", "tinyfed.v1.GetModelRequest"}};
  for (const auto& m : methods) {
    for (const std::string& bytes : {not_wire_format, truncated}) {
      grpc::Status s = CallWithBytes(server.address(), m.method, bytes);
      EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT) << m.method;
      EXPECT_NE(s.error_message().find(m.type), std::string::npos) << s.error_message();
    }
  }
  // Field 1 is a string (the device id) only in SignedRequest.
  EXPECT_EQ(CallWithBytes(server.address(), kSubmit, not_utf8).error_code(),
            grpc::StatusCode::INVALID_ARGUMENT);

  // An authentic envelope whose body is not the method's message: refused
  // after the tag, naming the body's type.
  for (const auto& [method, type, label] :
       {std::tuple{kSubmit, "tinyfed.v1.Update", RequestType::kUpdate},
        std::tuple{kCheckIn, "tinyfed.v1.CheckInRequest", RequestType::kCheckIn}}) {
    for (const std::string& body : {not_wire_format, truncated}) {
      const v1::SignedRequest envelope =
          testing::SignBytes(server.fleet_key(), "mcu-a", label, body);
      grpc::Status s = CallWithBytes(server.address(), method, envelope.SerializeAsString());
      EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT) << method;
      EXPECT_NE(s.error_message().find(type), std::string::npos) << s.error_message();
    }
  }
  EXPECT_EQ(server.manager().Snapshot().tasks_issued, 0u);
  EXPECT_EQ(server.manager().Snapshot().accepted, 0u);

  // The same route still serves well-formed requests.
  v1::CheckInRequest request;
  request.set_device_id("mcu-a");
  EXPECT_TRUE(CallWithBytes(server.address(), kCheckIn,
                            testing::Sign(server.fleet_key(), request).SerializeAsString())
                  .ok());
}

TEST(CoordinatorService, OverloadCarriesRetryHintMetadata) {
  v1::ServerConfig c = Config();
  c.set_max_pending_writes(0);
  LoopbackServer server(c);
  v1::CheckInRequest request;
  request.set_device_id("mcu-a");
  v1::CheckInResponse response;
  grpc::ClientContext c1;
  ASSERT_TRUE(
      server.stub().CheckIn(&c1, testing::Sign(server.fleet_key(), request), &response).ok());
  ASSERT_TRUE(response.has_task());
  std::mt19937 rng(1);
  const v1::RoundTask& task = response.task();
  v1::Update update = testing::MakeUpdate(task.model().spec(), task.round(), "mcu-a",
                                          task.task_token(), task.model().version(), 5, rng);
  grpc::ClientContext c2;
  v1::UpdateAck ack;
  grpc::Status s = server.stub().SubmitUpdate(&c2, testing::Sign(server.fleet_key(), update), &ack);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED);
  const auto& trailers = c2.GetServerTrailingMetadata();
  auto it = trailers.find(kRetryAfterMetadata);
  ASSERT_NE(it, trailers.end());
  EXPECT_GT(std::stoi(std::string(it->second.data(), it->second.size())), 0);
}

// The service hands the caller's address to the check-in limits: with
// loopback not exempt, this client (one peer, whatever device ids it
// holds keys of) gets its share of the round's slots, ceil(0.25 x 4) = 1, and a
// RetryAfter for the rest, as an OK response the SDK decodes. Peers on
// other addresses are tested in round_manager_test.cc (a loopback client
// cannot choose its source address through gRPC).
TEST(CoordinatorService, CheckInLimitsCountPerPeerAtTheEdge) {
  v1::ServerConfig config = Config();
  config.mutable_checkin_limits()->set_exempt_loopback(false);
  LoopbackServer server(config);
  int tasks = 0;
  for (int i = 0; i < 4; ++i) {
    v1::CheckInRequest request;
    request.set_device_id("invented-" + std::to_string(i));
    grpc::ClientContext context;
    v1::CheckInResponse response;
    const grpc::Status status =
        server.stub().CheckIn(&context, testing::Sign(server.fleet_key(), request), &response);
    ASSERT_TRUE(status.ok()) << status.error_message();
    if (response.has_task()) {
      ++tasks;
    } else {
      EXPECT_EQ(response.retry().retry_after_ms(), config.policy().retry_after_ms()) << i;
    }
  }
  EXPECT_EQ(tasks, 1);
  EXPECT_EQ(server.manager().Snapshot().tasks_issued, 1u);
}

// By default loopback is exempt: the simulator's one-address fleet gets
// every slot.
TEST(CoordinatorService, LoopbackFleetGetsEverySlotByDefault) {
  LoopbackServer server(Config());
  for (int i = 0; i < 4; ++i) {
    v1::CheckInRequest request;
    request.set_device_id("sim-" + std::to_string(i));
    grpc::ClientContext context;
    v1::CheckInResponse response;
    ASSERT_TRUE(
        server.stub().CheckIn(&context, testing::Sign(server.fleet_key(), request), &response)
            .ok());
    EXPECT_TRUE(response.has_task()) << i;
  }
}

}  // namespace
}  // namespace tinyfed::server
