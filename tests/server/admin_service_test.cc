// The Admin service (server/admin_service.h) against a real gRPC server:
// the in-process server on its plaintext loopback port (every local caller
// is an admin there, as "loopback:127.0.0.1"), with devices signing their
// check-ins and updates through the Coordinator, and tinyfed-server itself
// for what main.cc wires (health after a restart of a paused store).
// Every rpc's answer is compared with a source other than the service:
// the RoundManager's snapshot, the store, the Coordinator's GetModel.
// admin_auth_test.cc covers who may call.
#include "admin_service.h"

#include <chrono>
#include <future>
#include <memory>
#include <optional>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include <grpcpp/generic/generic_stub.h>
#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>

#include "absl/strings/str_cat.h"
#include "child_process.h"
#include "google/protobuf/util/message_differencer.h"
#include "in_process_server.h"
#include "model_store.h"
#include "server_config.h"
#include "server_test_support.h"
#include "tinyfed/v1/admin.grpc.pb.h"
#include "tinyfed/v1/coordinator.grpc.pb.h"

#ifndef TINYFED_SERVER_BINARY
#error "TINYFED_SERVER_BINARY must name the tinyfed-server executable"
#endif
#ifndef TINYFED_VERSION
#error "TINYFED_VERSION must be the project's version"
#endif

namespace tinyfed::server {
namespace {

using namespace std::chrono_literals;
using testing::ChildProcess;
using testing::HealthStatus;
using testing::TempDir;

constexpr char kAdmin[] = "loopback:127.0.0.1";

// K = 2, M = 2 on a 16 x 4 head: two devices commit a round.
v1::ServerConfig Config() {
  v1::ServerConfig c;
  c.mutable_head()->set_feature_count(16);
  c.mutable_head()->set_class_count(4);
  c.mutable_policy()->set_target_updates(2);
  c.mutable_policy()->set_min_updates(2);
  ApplyDefaults(&c);
  return c;
}

// An in-process server, an Admin client and devices on the Coordinator.
class AdminServiceTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto started = InProcessServer::Start(Config());
    ASSERT_TRUE(started.ok()) << started.status();
    server_ = std::move(*started);
    auto channel = grpc::CreateChannel(server_->address(), grpc::InsecureChannelCredentials());
    admin_ = v1::Admin::NewStub(channel);
    coordinator_ = v1::Coordinator::NewStub(channel);
  }

  // A signed check-in of `device` declaring 10 samples.
  grpc::Status CheckIn(const std::string& device, v1::CheckInResponse* response) {
    v1::CheckInRequest request;
    request.set_device_id(device);
    request.mutable_capabilities()->set_max_features(16);
    request.mutable_capabilities()->set_max_classes(4);
    request.mutable_capabilities()->set_max_batch_size(8);
    request.mutable_capabilities()->set_sample_count(10);
    grpc::ClientContext context;
    return coordinator_->CheckIn(&context, testing::Sign(server_->fleet_key(), request), response);
  }

  // The task `device` gets, or a failed test.
  v1::RoundTask Task(const std::string& device) {
    v1::CheckInResponse response;
    const grpc::Status s = CheckIn(device, &response);
    EXPECT_TRUE(s.ok()) << s.error_message();
    EXPECT_TRUE(response.has_task()) << device << " got no task: " << response.ShortDebugString();
    return response.task();
  }

  // A valid signed update of `device` for `task`, carrying `evaluation`
  // when given.
  grpc::Status Submit(const std::string& device, const v1::RoundTask& task,
                      const std::optional<v1::Evaluation>& evaluation = std::nullopt) {
    v1::Update update =
        testing::MakeUpdate(testing::MakeSpec(16, 4), task.round(), device, task.task_token(),
                            task.model().version(), 10, rng_);
    if (evaluation.has_value()) *update.mutable_evaluation() = *evaluation;
    grpc::ClientContext context;
    v1::UpdateAck ack;
    return coordinator_->SubmitUpdate(&context, testing::Sign(server_->fleet_key(), update), &ack);
  }

  // Two devices train on the open round; returns once its version is
  // committed.
  void CommitRound() {
    const uint32_t before = server_->manager().Snapshot().latest_version;
    for (int i = 0; i < 2; ++i) {
      const std::string device = absl::StrCat("dev-", before, "-", i);
      const grpc::Status s = Submit(device, Task(device));
      ASSERT_TRUE(s.ok()) << s.error_message();
    }
    // The close runs on the manager's own thread after the second ack.
    const auto deadline = std::chrono::steady_clock::now() + 10s;
    while (server_->manager().Snapshot().latest_version == before &&
           std::chrono::steady_clock::now() < deadline) {
      std::this_thread::sleep_for(5ms);
    }
    ASSERT_EQ(server_->manager().Snapshot().latest_version, before + 1);
  }

  std::vector<v1::AuditRecord> Audit() {
    grpc::ClientContext context;
    v1::ListAuditResponse response;
    const grpc::Status s = admin_->ListAudit(&context, v1::ListAuditRequest(), &response);
    EXPECT_TRUE(s.ok()) << s.error_message();
    return {response.records().begin(), response.records().end()};
  }

  v1::ServerStatus GetStatus() {
    grpc::ClientContext context;
    v1::ServerStatus status;
    const grpc::Status s = admin_->GetStatus(&context, v1::GetStatusRequest(), &status);
    EXPECT_TRUE(s.ok()) << s.error_message();
    return status;
  }

  grpc::Status Pause(const std::string& reason, v1::ServerStatus* status) {
    grpc::ClientContext context;
    v1::PauseRequest request;
    request.set_reason(reason);
    return admin_->Pause(&context, request, status);
  }

  grpc::Status Resume(v1::ServerStatus* status) {
    grpc::ClientContext context;
    return admin_->Resume(&context, v1::ResumeRequest(), status);
  }

  grpc::Status Rollback(uint32_t to, const std::string& reason, v1::RollbackResponse* response) {
    grpc::ClientContext context;
    v1::RollbackRequest request;
    request.set_to_version(to);
    request.set_reason(reason);
    return admin_->Rollback(&context, request, response);
  }

  grpc::Status Revoke(const std::string& device, v1::RevokeDeviceResponse* response) {
    grpc::ClientContext context;
    v1::RevokeDeviceRequest request;
    request.set_device_id(device);
    return admin_->RevokeDevice(&context, request, response);
  }

  v1::ListVersionsResponse Versions(uint32_t newest, uint32_t limit, grpc::Status* status) {
    grpc::ClientContext context;
    v1::ListVersionsRequest request;
    request.set_newest(newest);
    request.set_limit(limit);
    v1::ListVersionsResponse response;
    *status = admin_->ListVersions(&context, request, &response);
    return response;
  }

  std::mt19937 rng_{7};
  std::unique_ptr<InProcessServer> server_;
  std::unique_ptr<v1::Admin::Stub> admin_;
  std::unique_ptr<v1::Coordinator::Stub> coordinator_;
};

TEST_F(AdminServiceTest, StatusEqualsTheRoundManagersNumbers) {
  ASSERT_NO_FATAL_FAILURE(CommitRound());
  // Round 2 open on version 2: one task handed out, one update accepted.
  const v1::RoundTask task = Task("busy-device");
  ASSERT_TRUE(Submit("busy-device", task).ok());
  v1::CheckInResponse other;
  ASSERT_TRUE(CheckIn("second-device", &other).ok());

  const v1::ServerStatus status = GetStatus();
  const RoundSnapshot snapshot = server_->manager().Snapshot();
  const v1::RoundStatus& r = status.round();
  EXPECT_EQ(r.round(), snapshot.round);
  EXPECT_EQ(r.base_version(), snapshot.base_version);
  EXPECT_EQ(r.open(), snapshot.open);
  EXPECT_EQ(r.tasks_issued(), snapshot.tasks_issued);
  EXPECT_EQ(r.tasks_limit(), snapshot.tasks_limit);
  EXPECT_EQ(r.accepted(), snapshot.accepted);
  EXPECT_EQ(r.target_updates(), snapshot.target_updates);
  EXPECT_EQ(r.min_updates(), snapshot.min_updates);
  EXPECT_EQ(r.opened_unix_ms(), snapshot.opened_ms);
  EXPECT_EQ(r.deadline_unix_ms(), snapshot.deadline_ms);
  EXPECT_EQ(status.latest_version(), snapshot.latest_version);
  // And against what the test did, so that a snapshot field left 0 by
  // both sides cannot pass: round 2 on version 2, K = 2, M = 2,
  // ceil(2 x 1.3) = 3 task slots, two tasks, one update.
  EXPECT_EQ(r.round(), 2u);
  EXPECT_EQ(r.base_version(), 2u);
  EXPECT_TRUE(r.open());
  EXPECT_EQ(r.tasks_issued(), 2u);
  EXPECT_EQ(r.tasks_limit(), 3u);
  EXPECT_EQ(r.accepted(), 1u);
  EXPECT_EQ(r.target_updates(), 2u);
  EXPECT_EQ(r.min_updates(), 2u);
  // The default deadline is 60 s after the opening.
  EXPECT_EQ(r.deadline_unix_ms() - r.opened_unix_ms(), 60000);
  EXPECT_GT(r.time_left_ms(), 0);
  EXPECT_LE(r.time_left_ms(), 60000);
  EXPECT_EQ(status.latest_version(), 2u);
  // Staged rollout: version 2 differs from version 1, so it waits in
  // canary while version 1 serves.
  const RolloutSnapshot rollout = server_->manager().Rollout();
  EXPECT_EQ(rollout.state.serving_version, 1u);
  EXPECT_EQ(status.serving_version(), 1u);
  EXPECT_EQ(status.candidate_version(), 2u);
  EXPECT_EQ(status.canary_fraction(), 0.1);  // the default, as ApplyDefaults sets it
  EXPECT_FALSE(status.paused());
  EXPECT_EQ(status.revoked_devices(), 0u);
  EXPECT_EQ(status.server_version(), TINYFED_VERSION);
  // The server's wall clock, read within this test's run (10 minutes of
  // slack for a slow machine; the value is the epoch in ms, ~1.7e12).
  const int64_t now = std::chrono::duration_cast<std::chrono::milliseconds>(
                          std::chrono::system_clock::now().time_since_epoch())
                          .count();
  EXPECT_LE(status.now_unix_ms(), now);
  EXPECT_GT(status.now_unix_ms(), now - 600'000);

  // The in-process Status() (the status page's) is the rpc's answer.
  absl::StatusOr<v1::ServerStatus> direct = server_->admin().Status();
  ASSERT_TRUE(direct.ok()) << direct.status();
  EXPECT_EQ(direct->round().accepted(), r.accepted());
  EXPECT_EQ(direct->round().tasks_issued(), r.tasks_issued());
  EXPECT_EQ(direct->latest_version(), status.latest_version());
}

TEST_F(AdminServiceTest, VersionsListTheLineageNewestFirstWithoutWeights) {
  ASSERT_NO_FATAL_FAILURE(CommitRound());
  ASSERT_NO_FATAL_FAILURE(CommitRound());
  grpc::Status s;
  const v1::ListVersionsResponse all = Versions(0, 0, &s);
  ASSERT_TRUE(s.ok()) << s.error_message();
  ASSERT_EQ(all.versions_size(), 3);
  for (int i = 0; i < 3; ++i) {
    const v1::ModelVersion& v = all.versions(i);
    const uint32_t number = 3 - static_cast<uint32_t>(i);
    EXPECT_EQ(v.version(), number);
    EXPECT_EQ(v.parent_version(), number - 1);
    // Version n was committed by round n - 1; version 1 by none.
    EXPECT_EQ(v.round(), number - 1);
    EXPECT_EQ(v.metrics().participants(), number == 1 ? 0u : 2u);
    EXPECT_EQ(v.metrics().samples(), number == 1 ? 0u : 20u);
    EXPECT_TRUE(v.weights().empty());
    EXPECT_TRUE(v.bias().empty());
  }
  const v1::ListVersionsResponse page = Versions(2, 1, &s);
  ASSERT_TRUE(s.ok()) << s.error_message();
  ASSERT_EQ(page.versions_size(), 1);
  EXPECT_EQ(page.versions(0).version(), 2u);

  absl::StatusOr<std::vector<v1::ModelVersion>> direct = server_->admin().Versions(0, 2);
  ASSERT_TRUE(direct.ok()) << direct.status();
  ASSERT_EQ(direct->size(), 2u);
  EXPECT_EQ((*direct)[0].version(), 3u);
  EXPECT_EQ((*direct)[1].version(), 2u);

  Versions(0, 1001, &s);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT) << s.error_message();
  Versions(4, 0, &s);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::NOT_FOUND) << s.error_message();
}

// Devices' evaluations reach ListVersions (and the status page's
// versions, read the same way) summed per version; a version nobody has
// trained from yet has none.
TEST_F(AdminServiceTest, VersionsCarryTheFleetsEvaluations) {
  // (samples, correct, loss) of each device's evaluation, per round; at
  // most the 10 samples the fixture's devices declare at check-in.
  const uint32_t kSamples[2][2] = {{10, 8}, {9, 10}};
  const uint32_t kCorrect[2][2] = {{7, 5}, {9, 6}};
  const uint64_t kLoss[2][2] = {{10 * 30000, 8 * 50000}, {9 * 20000, 10 * 10000}};
  for (uint32_t r = 0; r < 2; ++r) {
    const uint32_t before = server_->manager().Snapshot().latest_version;
    for (uint32_t d = 0; d < 2; ++d) {
      const std::string device = absl::StrCat("eval-", r, "-", d);
      const v1::RoundTask task = Task(device);
      v1::Evaluation e;
      e.set_model_version(task.model().version());
      e.set_samples(kSamples[r][d]);
      e.set_correct(kCorrect[r][d]);
      e.set_loss_sum_q16(kLoss[r][d]);
      const grpc::Status s = Submit(device, task, e);
      ASSERT_TRUE(s.ok()) << s.error_message();
    }
    const auto deadline = std::chrono::steady_clock::now() + 10s;
    while (server_->manager().Snapshot().latest_version == before &&
           std::chrono::steady_clock::now() < deadline) {
      std::this_thread::sleep_for(5ms);
    }
    ASSERT_EQ(server_->manager().Snapshot().latest_version, before + 1);
  }
  grpc::Status s;
  const v1::ListVersionsResponse all = Versions(0, 0, &s);
  ASSERT_TRUE(s.ok()) << s.error_message();
  ASSERT_EQ(all.versions_size(), 3);
  EXPECT_FALSE(all.versions(0).has_fleet_evaluation()) << "version 3: nobody trained from it";
  for (int r = 0; r < 2; ++r) {
    const v1::ModelVersion& v = all.versions(2 - r);  // round r trained from version r + 1
    ASSERT_EQ(v.version(), static_cast<uint32_t>(r + 1));
    ASSERT_TRUE(v.has_fleet_evaluation()) << v.version();
    EXPECT_EQ(v.fleet_evaluation().devices(), 2u);
    EXPECT_EQ(v.fleet_evaluation().samples(), uint64_t{kSamples[r][0]} + kSamples[r][1]);
    EXPECT_EQ(v.fleet_evaluation().correct(), uint64_t{kCorrect[r][0]} + kCorrect[r][1]);
    EXPECT_EQ(v.fleet_evaluation().loss_sum_q16(), kLoss[r][0] + kLoss[r][1]);
  }
  absl::StatusOr<std::vector<v1::ModelVersion>> direct = server_->admin().Versions(0, 10);
  ASSERT_TRUE(direct.ok()) << direct.status();
  ASSERT_EQ(direct->size(), 3u);
  EXPECT_EQ((*direct)[1].fleet_evaluation().correct(), 15u) << "version 2: 9 + 6";
}

TEST_F(AdminServiceTest, GetVersionGivesTheStoredVersionsBytes) {
  ASSERT_NO_FATAL_FAILURE(CommitRound());
  for (uint32_t asked : {0u, 1u, 2u}) {
    grpc::ClientContext context;
    v1::GetVersionRequest request;
    request.set_version(asked);
    v1::ModelVersion got;
    const grpc::Status s = admin_->GetVersion(&context, request, &got);
    ASSERT_TRUE(s.ok()) << s.error_message();
    absl::StatusOr<v1::ModelVersion> stored = server_->store().GetVersion(asked == 0 ? 2 : asked);
    ASSERT_TRUE(stored.ok()) << stored.status();
    EXPECT_FALSE(stored->weights().empty());
    EXPECT_EQ(got.SerializeAsString(), stored->SerializeAsString()) << "version " << asked;
  }
  grpc::ClientContext context;
  v1::GetVersionRequest request;
  request.set_version(3);
  v1::ModelVersion got;
  EXPECT_EQ(admin_->GetVersion(&context, request, &got).error_code(), grpc::StatusCode::NOT_FOUND);
}

TEST_F(AdminServiceTest, RollbackServesVersionNsWeightsAndKeepsHistory) {
  ASSERT_NO_FATAL_FAILURE(CommitRound());
  ASSERT_NO_FATAL_FAILURE(CommitRound());
  // Round 3 is open on version 3, with a device holding its task.
  const v1::RoundTask stranded = Task("stranded");
  ASSERT_EQ(stranded.round(), 3u);

  v1::RollbackResponse response;
  const grpc::Status s = Rollback(2, "version 3 regressed", &response);
  ASSERT_TRUE(s.ok()) << s.error_message();
  EXPECT_EQ(response.version().version(), 4u);
  EXPECT_EQ(response.version().parent_version(), 3u);
  EXPECT_EQ(response.version().restored_from(), 2u);
  EXPECT_EQ(response.version().round(), 0u);
  EXPECT_TRUE(response.version().weights().empty());
  EXPECT_EQ(response.abandoned_round(), 3u);

  // Devices are served version 2's weights as version 4.
  absl::StatusOr<v1::ModelVersion> v2 = server_->store().GetVersion(2);
  absl::StatusOr<v1::ModelVersion> v3 = server_->store().GetVersion(3);
  ASSERT_TRUE(v2.ok() && v3.ok());
  ASSERT_NE(v2->weights(), v3->weights());  // else the rollback would show nothing
  grpc::ClientContext context;
  v1::ModelVersion served;
  ASSERT_TRUE(coordinator_->GetModel(&context, v1::GetModelRequest(), &served).ok());
  EXPECT_EQ(served.version(), 4u);
  EXPECT_EQ(served.weights(), v2->weights());
  EXPECT_EQ(served.bias(), v2->bias());
  // The update trained on version 3 in the abandoned round is refused,
  // and a new round trains from version 4.
  EXPECT_EQ(Submit("stranded", stranded).error_code(), grpc::StatusCode::FAILED_PRECONDITION);
  const v1::RoundTask fresh = Task("fresh");
  EXPECT_EQ(fresh.model().version(), 4u);
  EXPECT_GT(fresh.round(), 3u);

  // History is kept: every version is still listed.
  grpc::Status ls;
  const v1::ListVersionsResponse all = Versions(0, 0, &ls);
  ASSERT_TRUE(ls.ok());
  ASSERT_EQ(all.versions_size(), 4);
  EXPECT_EQ(all.versions(0).restored_from(), 2u);
  EXPECT_EQ(all.versions(1).version(), 3u);

  // Refusals: the latest version, an unknown one, version 0.
  EXPECT_EQ(Rollback(4, "", &response).error_code(), grpc::StatusCode::FAILED_PRECONDITION);
  EXPECT_EQ(Rollback(9, "", &response).error_code(), grpc::StatusCode::NOT_FOUND);
  EXPECT_EQ(Rollback(0, "", &response).error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  const std::vector<v1::AuditRecord> audit = Audit();
  ASSERT_EQ(audit.size(), 1u);  // the refused ones recorded nothing
  EXPECT_EQ(audit[0].action(), "rollback");
  EXPECT_EQ(audit[0].actor(), kAdmin);
  EXPECT_NE(audit[0].detail().find("version 3 regressed"), std::string::npos) << audit[0].detail();
}

TEST_F(AdminServiceTest, PauseStopsTasksAndHealthAndResumeRestoresThem) {
  const std::string& address = server_->address();
  EXPECT_EQ(HealthStatus(address, ""), "SERVING");
  v1::ServerStatus status;
  ASSERT_TRUE(Pause("maintenance", &status).ok());
  EXPECT_TRUE(status.paused());
  EXPECT_EQ(status.paused_by(), kAdmin);
  EXPECT_GT(status.paused_since_unix_ms(), 0);
  EXPECT_EQ(HealthStatus(address, ""), "NOT_SERVING");
  EXPECT_EQ(HealthStatus(address, "tinyfed.v1.Coordinator"), "NOT_SERVING");
  EXPECT_EQ(HealthStatus(address, "tinyfed.v1.Admin"), "SERVING");  // to resume with
  v1::CheckInResponse response;
  ASSERT_TRUE(CheckIn("while-paused", &response).ok());
  EXPECT_FALSE(response.has_task());
  EXPECT_GT(response.retry().retry_after_ms(), 0u);
  // Pausing again changes nothing and records nothing.
  ASSERT_TRUE(Pause("again", &status).ok());
  EXPECT_TRUE(status.paused());

  ASSERT_TRUE(Resume(&status).ok());
  EXPECT_FALSE(status.paused());
  EXPECT_EQ(status.paused_by(), "");
  EXPECT_EQ(HealthStatus(address, ""), "SERVING");
  EXPECT_EQ(HealthStatus(address, "tinyfed.v1.Coordinator"), "SERVING");
  ASSERT_TRUE(CheckIn("while-paused", &response).ok());
  EXPECT_TRUE(response.has_task());
  ASSERT_TRUE(Resume(&status).ok());  // not recorded either

  const std::vector<v1::AuditRecord> audit = Audit();
  ASSERT_EQ(audit.size(), 2u);
  EXPECT_EQ(audit[0].action(), "resume");
  EXPECT_EQ(audit[1].action(), "pause");
  EXPECT_NE(audit[1].detail().find("maintenance"), std::string::npos) << audit[1].detail();
}

TEST_F(AdminServiceTest, RevokedDevicesNextUpdateIsRefused) {
  const v1::RoundTask task = Task("rogue");
  Task("honest");
  v1::RevokeDeviceResponse response;
  const int64_t before = GetStatus().now_unix_ms();
  ASSERT_TRUE(Revoke("rogue", &response).ok());
  EXPECT_FALSE(response.already_revoked());
  EXPECT_GE(response.revoked_unix_ms(), before);
  EXPECT_EQ(Submit("rogue", task).error_code(), grpc::StatusCode::PERMISSION_DENIED);
  v1::CheckInResponse check_in;
  EXPECT_EQ(CheckIn("rogue", &check_in).error_code(), grpc::StatusCode::PERMISSION_DENIED);

  // Again: OK, with the first time, and not recorded again.
  v1::RevokeDeviceResponse again;
  ASSERT_TRUE(Revoke("rogue", &again).ok());
  EXPECT_TRUE(again.already_revoked());
  EXPECT_EQ(again.revoked_unix_ms(), response.revoked_unix_ms());
  EXPECT_EQ(Audit().size(), 1u);
  EXPECT_EQ(GetStatus().revoked_devices(), 1u);

  grpc::ClientContext context;
  v1::ListDevicesResponse devices;
  ASSERT_TRUE(admin_->ListDevices(&context, v1::ListDevicesRequest(), &devices).ok());
  ASSERT_EQ(devices.revoked_size(), 1);
  EXPECT_EQ(devices.revoked(0).device_id(), "rogue");
  EXPECT_EQ(devices.revoked(0).revoked_unix_ms(), response.revoked_unix_ms());
  ASSERT_EQ(devices.seen_size(), 2);
  for (const v1::DeviceSeen& d : devices.seen()) {
    EXPECT_EQ(d.revoked(), d.device_id() == "rogue") << d.device_id();
    EXPECT_EQ(d.tasks(), 1u);
    EXPECT_EQ(d.last_round(), 1u);
  }
}

TEST_F(AdminServiceTest, AuditListsEveryChangeWithItsActorNewestFirst) {
  ASSERT_NO_FATAL_FAILURE(CommitRound());
  v1::RollbackResponse rollback;
  ASSERT_TRUE(Rollback(1, "", &rollback).ok());
  v1::ServerStatus status;
  ASSERT_TRUE(Pause("", &status).ok());
  ASSERT_TRUE(Resume(&status).ok());
  v1::RevokeDeviceResponse revoke;
  ASSERT_TRUE(Revoke("lost-device", &revoke).ok());

  const std::vector<v1::AuditRecord> audit = Audit();
  ASSERT_EQ(audit.size(), 4u);
  const char* actions[] = {"revoke", "resume", "pause", "rollback"};
  for (size_t i = 0; i < 4; ++i) {
    EXPECT_EQ(audit[i].action(), actions[i]);
    EXPECT_EQ(audit[i].actor(), kAdmin);
    EXPECT_GT(audit[i].at_unix_ms(), 0);
    if (i > 0) {
      EXPECT_LT(audit[i].id(), audit[i - 1].id());
    }
  }
  EXPECT_NE(audit[0].detail().find("lost-device"), std::string::npos) << audit[0].detail();

  // Paging: the two records before the second newest.
  grpc::ClientContext context;
  v1::ListAuditRequest request;
  request.set_before_id(audit[1].id());
  request.set_limit(2);
  v1::ListAuditResponse page;
  ASSERT_TRUE(admin_->ListAudit(&context, request, &page).ok());
  ASSERT_EQ(page.records_size(), 2);
  EXPECT_EQ(page.records(0).id(), audit[2].id());
  EXPECT_EQ(page.records(1).id(), audit[3].id());
}

TEST_F(AdminServiceTest, FieldsOutOfRangeAreRefusedAndChangeNothing) {
  ASSERT_NO_FATAL_FAILURE(CommitRound());
  const std::string long_reason(201, 'x');
  v1::ServerStatus status;
  EXPECT_EQ(Pause(long_reason, &status).error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(Pause("two\nlines", &status).error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  v1::RollbackResponse rollback;
  EXPECT_EQ(Rollback(1, long_reason, &rollback).error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  v1::RevokeDeviceResponse revoke;
  for (const std::string& bad : {std::string(), std::string(33, 'd'), std::string("has space")}) {
    EXPECT_EQ(Revoke(bad, &revoke).error_code(), grpc::StatusCode::INVALID_ARGUMENT) << bad;
  }
  {
    grpc::ClientContext context;
    v1::ListDevicesRequest request;
    request.set_limit(10001);
    v1::ListDevicesResponse response;
    EXPECT_EQ(admin_->ListDevices(&context, request, &response).error_code(),
              grpc::StatusCode::INVALID_ARGUMENT);
  }
  {
    grpc::ClientContext context;
    v1::ListAuditRequest request;
    request.set_limit(1001);
    v1::ListAuditResponse response;
    EXPECT_EQ(admin_->ListAudit(&context, request, &response).error_code(),
              grpc::StatusCode::INVALID_ARGUMENT);
  }
  // A 200-byte reason is within the bound.
  EXPECT_TRUE(Pause(std::string(200, 'y'), &status).ok());

  const std::vector<v1::AuditRecord> audit = Audit();
  ASSERT_EQ(audit.size(), 1u);
  EXPECT_EQ(audit[0].action(), "pause");
  EXPECT_EQ(GetStatus().latest_version(), 2u);
  EXPECT_EQ(GetStatus().revoked_devices(), 0u);
}

// tinyfed-server: a paused store stays paused across a restart, and its
// health says so from the start; the start-up log says who is an admin.
// An in-process server with `config`, an Admin stub on it, and devices
// committing rounds, for the aggregation and privacy a test configures.
class AdminAggregationTest : public AdminServiceTest {
 protected:
  void SetUp() override {}
  void Start(const v1::ServerConfig& config) {
    auto started = InProcessServer::Start(config);
    ASSERT_TRUE(started.ok()) << started.status();
    server_ = std::move(*started);
    auto channel = grpc::CreateChannel(server_->address(), grpc::InsecureChannelCredentials());
    admin_ = v1::Admin::NewStub(channel);
    coordinator_ = v1::Coordinator::NewStub(channel);
  }
  grpc::Status Verify(uint32_t version, v1::VerifyVersionResponse* response) {
    grpc::ClientContext context;
    v1::VerifyVersionRequest request;
    request.set_version(version);
    return admin_->VerifyVersion(&context, request, response);
  }
};

// Versions the server committed itself, by the round manager, recompute
// from its store; the codes admin.proto states for the others.
TEST_F(AdminAggregationTest, VerifyVersionRecomputesWhatTheServerCommitted) {
  v1::ServerConfig config = Config();
  config.mutable_aggregation()->set_strategy("median");
  ASSERT_NO_FATAL_FAILURE(Start(config));
  ASSERT_NO_FATAL_FAILURE(CommitRound());
  ASSERT_NO_FATAL_FAILURE(CommitRound());
  for (uint32_t version : {0u, 2u, 3u}) {
    SCOPED_TRACE(version);
    v1::VerifyVersionResponse r;
    const grpc::Status s = Verify(version, &r);
    ASSERT_TRUE(s.ok()) << s.error_message();
    EXPECT_TRUE(r.matches()) << r.ShortDebugString();
    EXPECT_EQ(r.version(), version == 0 ? 3u : version);
    EXPECT_EQ(r.strategy(), "median");
    EXPECT_EQ(r.updates(), 2u);  // K = 2
    EXPECT_EQ(r.differing_values(), 0u);
    EXPECT_EQ(r.committed_checksum(),
              server_->store().GetVersion(r.version()).value().checksum());
    EXPECT_EQ(r.recomputed_checksum(), r.committed_checksum());
  }
  v1::VerifyVersionResponse r;
  EXPECT_EQ(Verify(1, &r).error_code(), grpc::StatusCode::FAILED_PRECONDITION);
  EXPECT_EQ(Verify(9, &r).error_code(), grpc::StatusCode::NOT_FOUND);
}

// GetStatus shows the aggregation the next version will record and the
// privacy spent so far, as the round manager has them, and the privacy
// figures move with each committed (noised) version.
TEST_F(AdminAggregationTest, StatusShowsTheAggregationAndThePrivacyBudget) {
  v1::ServerConfig config = Config();
  config.mutable_aggregation()->set_strategy("fedavg");
  config.mutable_influence()->set_max_update_norm(0.5);  // 0.5 x 2^12 = 2048 master steps
  config.mutable_influence()->set_max_norm_median_multiple(0);
  config.mutable_privacy()->set_noise_multiplier(1);
  config.mutable_privacy()->set_delta(1e-5);
  config.mutable_privacy()->set_epsilon_budget(1000);
  ASSERT_NO_FATAL_FAILURE(Start(config));
  const v1::ServerStatus before = GetStatus();
  EXPECT_EQ(before.aggregation().strategy(), "fedavg");
  EXPECT_TRUE(before.aggregation().uniform_weights());
  EXPECT_EQ(before.aggregation().norm_bound(), 2048u);
  EXPECT_TRUE(before.privacy().enabled());
  EXPECT_EQ(before.privacy().delta(), 1e-5);
  EXPECT_EQ(before.privacy().epsilon_budget(), 1000);
  EXPECT_EQ(before.privacy().noised_versions(), 0u);
  EXPECT_EQ(before.privacy().epsilon_spent(), 0);

  ASSERT_NO_FATAL_FAILURE(CommitRound());
  const v1::ServerStatus after = GetStatus();
  EXPECT_EQ(after.privacy().noised_versions(), 1u);
  EXPECT_GT(after.privacy().epsilon_spent(), 0);
  // The status's figures are the committed version's own record.
  const v1::ModelVersion v2 = server_->store().GetVersion(2).value();
  EXPECT_EQ(after.privacy().epsilon_spent(), v2.aggregation().epsilon_spent());
  EXPECT_TRUE(google::protobuf::util::MessageDifferencer::Equals(
      after.aggregation(), server_->manager().AggregationInForce()));
  // And the noised version recomputes with its stored noise.
  v1::VerifyVersionResponse r;
  ASSERT_TRUE(Verify(2, &r).ok());
  EXPECT_TRUE(r.matches()) << r.ShortDebugString();
}

TEST(AdminServerBinary, PausedStoreStartsNotServingUntilResumed) {
  TempDir dir;
  const int port = testing::FreeLoopbackPort();
  const std::string address = absl::StrCat("127.0.0.1:", port);
  const std::vector<std::string> argv = {TINYFED_SERVER_BINARY, "--listen", address, "--db",
                                         dir.File("store.db")};
  auto pause = [&](bool paused) {
    auto admin = v1::Admin::NewStub(grpc::CreateChannel(address, grpc::InsecureChannelCredentials()));
    grpc::ClientContext context;
    context.set_deadline(std::chrono::system_clock::now() + 10s);
    v1::ServerStatus status;
    const grpc::Status s = paused ? admin->Pause(&context, v1::PauseRequest(), &status)
                                  : admin->Resume(&context, v1::ResumeRequest(), &status);
    EXPECT_TRUE(s.ok()) << s.error_message();
    EXPECT_EQ(status.paused(), paused);
  };
  {
    ChildProcess server(argv, dir.File("first.log"));
    ASSERT_TRUE(server.WaitForLog("listening on", 20s)) << server.Log();
    EXPECT_NE(server.Log().find("admin calls are taken from: plaintext callers on loopback"),
              std::string::npos)
        << server.Log();
    EXPECT_EQ(HealthStatus(address, ""), "SERVING");
    pause(true);
    EXPECT_EQ(HealthStatus(address, ""), "NOT_SERVING");
    EXPECT_NE(server.Log().find("paused by loopback:127.0.0.1"), std::string::npos)
        << server.Log();
    EXPECT_EQ(server.Stop(), 0) << server.Log();
  }
  ChildProcess server(argv, dir.File("second.log"));
  ASSERT_TRUE(server.WaitForLog("listening on", 20s)) << server.Log();
  EXPECT_EQ(HealthStatus(address, ""), "NOT_SERVING");
  EXPECT_EQ(HealthStatus(address, "tinyfed.v1.Coordinator"), "NOT_SERVING");
  EXPECT_EQ(HealthStatus(address, "tinyfed.v1.Admin"), "SERVING");
  pause(false);
  EXPECT_EQ(HealthStatus(address, ""), "SERVING");
  EXPECT_EQ(server.Stop(), 0) << server.Log();
}

// Staged rollout through the Admin service: the status shows the
// candidate, its evaluations and the serving window as devices reported
// them; Promote serves a version at once (and rolls the candidate back);
// Rollback's copy serves too. Compared with the store and with what the
// Coordinator sends a device that serves models.
TEST_F(AdminServiceTest, PromoteAndRollbackSteerWhichVersionDevicesServe) {
  ASSERT_NO_FATAL_FAILURE(CommitRound());  // version 2: the candidate
  // A training update on version 2 that evaluates it, and a device serving
  // version 1 that reports on it.
  v1::Evaluation on_candidate;
  on_candidate.set_model_version(2);
  on_candidate.set_samples(10);
  on_candidate.set_correct(9);
  ASSERT_TRUE(Submit("evaluator", Task("evaluator"), on_candidate).ok());
  v1::CheckInRequest serving;
  serving.set_device_id("server-of-v1");
  serving.mutable_serving()->set_model_version(1);
  v1::Evaluation* on_serving = serving.mutable_serving()->mutable_evaluation();
  on_serving->set_model_version(1);
  on_serving->set_samples(8);
  on_serving->set_correct(6);
  {
    grpc::ClientContext context;
    v1::CheckInResponse response;
    ASSERT_TRUE(
        coordinator_->CheckIn(&context, testing::Sign(server_->fleet_key(), serving), &response)
            .ok());
  }
  ASSERT_TRUE(server_->store().Flush().ok());
  v1::ServerStatus status = GetStatus();
  EXPECT_EQ(status.serving_version(), 1u);
  EXPECT_EQ(status.candidate_version(), 2u);
  EXPECT_EQ(status.candidate_evaluation().devices(), 1u);
  EXPECT_EQ(status.candidate_evaluation().correct(), 9u);
  EXPECT_EQ(status.serving_window().devices(), 1u);
  EXPECT_EQ(status.serving_window().samples(), 8u);
  EXPECT_EQ(status.serving_window().correct(), 6u);

  // Promote version 2 by hand.
  v1::PromoteRequest promote;
  promote.set_version(2);
  promote.set_reason("canary looks fine");
  v1::PromoteResponse promoted;
  {
    grpc::ClientContext context;
    const grpc::Status s = admin_->Promote(&context, promote, &promoted);
    ASSERT_TRUE(s.ok()) << s.error_message();
  }
  EXPECT_EQ(promoted.previous_serving(), 1u);
  EXPECT_EQ(promoted.version().version(), 2u);
  EXPECT_TRUE(promoted.version().weights().empty());
  EXPECT_EQ(promoted.version().rollout().stage(), v1::ROLLOUT_STAGE_SERVING);
  EXPECT_EQ(server_->store().GetVersion(2)->rollout().stage(), v1::ROLLOUT_STAGE_SERVING);
  status = GetStatus();
  EXPECT_EQ(status.serving_version(), 2u);
  EXPECT_EQ(status.candidate_version(), 0u);
  {
    grpc::ClientContext context;
    v1::CheckInResponse response;
    ASSERT_TRUE(
        coordinator_->CheckIn(&context, testing::Sign(server_->fleet_key(), serving), &response)
            .ok());
    ASSERT_TRUE(response.has_model()) << response.ShortDebugString();
    EXPECT_EQ(response.model().version(), 2u);
    EXPECT_EQ(response.model().weights(), server_->store().GetVersion(2)->weights());
  }
  {
    grpc::ClientContext context;
    EXPECT_EQ(admin_->Promote(&context, promote, &promoted).error_code(),
              grpc::StatusCode::FAILED_PRECONDITION)
        << "version 2 already serves";
  }
  for (uint32_t bad : {0u, 99u}) {
    grpc::ClientContext context;
    v1::PromoteRequest request;
    request.set_version(bad);
    EXPECT_EQ(admin_->Promote(&context, request, &promoted).error_code(),
              bad == 0 ? grpc::StatusCode::INVALID_ARGUMENT : grpc::StatusCode::NOT_FOUND);
  }
  const std::vector<v1::AuditRecord> audit = Audit();
  ASSERT_EQ(audit.size(), 1u);
  EXPECT_EQ(audit[0].action(), "promote");
  EXPECT_EQ(audit[0].actor(), kAdmin);
  EXPECT_NE(audit[0].detail().find("canary looks fine"), std::string::npos) << audit[0].detail();

  // Version 3 becomes the candidate (round 2 holds the evaluator's update:
  // one more closes it); a rollback to 1 serves its copy and rolls 3 back.
  ASSERT_TRUE(Submit("closer", Task("closer")).ok());
  const auto deadline = std::chrono::steady_clock::now() + 10s;
  while (server_->manager().Snapshot().latest_version < 3 &&
         std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(5ms);
  }
  server_->manager().WaitIdle();
  ASSERT_EQ(GetStatus().candidate_version(), 3u);
  v1::RollbackResponse rolled;
  ASSERT_TRUE(Rollback(1, "back to the start", &rolled).ok());
  EXPECT_EQ(rolled.version().version(), 4u);
  status = GetStatus();
  EXPECT_EQ(status.serving_version(), 4u);
  EXPECT_EQ(status.candidate_version(), 0u);
  EXPECT_EQ(server_->store().GetVersion(3)->rollout().stage(), v1::ROLLOUT_STAGE_ROLLED_BACK);
  EXPECT_EQ(server_->store().GetVersion(2)->rollout().stage(), v1::ROLLOUT_STAGE_RETIRED);
  grpc::ClientContext context;
  v1::GetVersionRequest get;
  get.set_version(4);
  v1::ModelVersion v4;
  ASSERT_TRUE(admin_->GetVersion(&context, get, &v4).ok());
  EXPECT_EQ(v4.rollout().stage(), v1::ROLLOUT_STAGE_SERVING);
  EXPECT_EQ(v4.weights(), server_->store().GetVersion(1)->weights());
}

}  // namespace
}  // namespace tinyfed::server
