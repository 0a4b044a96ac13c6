// Issue 13's acceptance test for `tinyfed-admin`: every command against the
// real tinyfed-server binary while devices run by this test take part in
// rounds. The tool runs as a child process with --json, its output is read
// back into admin.proto's messages, and each change is checked by its
// effect on the Coordinator service, the one devices see: a rollback serves
// version N's weights and shows in lineage; a pause stops new rounds and a
// resume restarts them; a revoked device's next update gets
// PERMISSION_DENIED; each of them is in the audit log under the token's
// name. A wrong token is refused and changes nothing.
#include <sqlite3.h>
#include <sys/stat.h>
#include <sys/wait.h>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <fstream>
#include <iterator>
#include <memory>
#include <random>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include <google/protobuf/util/json_util.h>
#include <google/protobuf/util/message_differencer.h>
#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "child_process.h"
#include "server_test_support.h"
#include "tinyfed/v1/admin.pb.h"
#include "tinyfed/v1/coordinator.grpc.pb.h"
#include "tinyfed_common/host_numerics.h"

namespace tinyfed::server::testing {
namespace {

using namespace std::chrono_literals;
using google::protobuf::util::MessageDifferencer;

// Long enough that no round of this test ends by its deadline: rounds close
// only when K updates are in, when this test decides.
constexpr char kConfig[] = R"pb(
  head { feature_count: 8 class_count: 3 }
  plan { epochs: 1 batch_size: 4 }
  policy {
    target_updates: 2
    min_updates: 1
    over_selection: 2
    round_deadline_ms: 600000
    retry_after_ms: 100
  }
)pb";

constexpr char kToken[] = "tok-0123456789abcdef0123456789abcdef-alice";
constexpr char kWrongToken[] = "tok-0123456789abcdef0123456789abcdef-mallory";

struct AdminRun {
  int exit_status = -1;
  std::string out;
  std::string err;
};

std::string ReadAll(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream text;
  text << in.rdbuf();
  return text.str();
}

void WriteSecret(const std::string& path, const std::string& text) {
  std::ofstream(path, std::ios::binary | std::ios::trunc) << text;
  ASSERT_EQ(chmod(path.c_str(), 0600), 0);
}

class AdminCliTest : public ::testing::Test {
 protected:
  void SetUp() override {
    const Key256 fleet = TestFleetKey();
    WriteSecret(dir_.File("fleet.key"),
                std::string(fleet.bytes().begin(), fleet.bytes().end()));
    WriteSecret(dir_.File("admin.tokens"), absl::StrCat("# the operators\nalice ", kToken, "\n"));
    // The client's file: its own line copied from the server's file.
    WriteSecret(dir_.File("alice.token"), absl::StrCat("alice ", kToken, "\n"));
    WriteSecret(dir_.File("mallory.token"), absl::StrCat(kWrongToken, "\n"));
    std::ofstream(dir_.File("server.textproto")) << kConfig;
    address_ = absl::StrCat("127.0.0.1:", FreeLoopbackPort());
    server_ = std::make_unique<ChildProcess>(
        std::vector<std::string>{TINYFED_SERVER_BINARY, "--listen=" + address_,
                                 "--db=" + dir_.File("s.db"),
                                 "--config=" + dir_.File("server.textproto"),
                                 "--fleet_key=" + dir_.File("fleet.key"),
                                 "--admin_tokens=" + dir_.File("admin.tokens")},
        dir_.File("server.log"));
    ASSERT_TRUE(server_->WaitForLog("listening", 20s)) << server_->Log();
    coordinator_ = v1::Coordinator::NewStub(
        grpc::CreateChannel(address_, grpc::InsecureChannelCredentials()));
  }

  // tinyfed-admin with `args` and the connection flags (--server, and
  // --token_file alice's unless `token_file` names another).
  AdminRun Admin(std::vector<std::string> args, const std::string& token_file = "") {
    args.push_back("--server=" + address_);
    args.push_back("--token_file=" + (token_file.empty() ? dir_.File("alice.token") : token_file));
    std::string command = absl::StrCat("'", TINYFED_ADMIN_BINARY, "'");
    for (const std::string& arg : args) absl::StrAppend(&command, " '", arg, "'");
    const std::string out = dir_.File("admin.out"), err = dir_.File("admin.err");
    const int status = std::system(absl::StrCat(command, " >'", out, "' 2>'", err, "'").c_str());
    AdminRun run;
    run.exit_status = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
    run.out = ReadAll(out);
    run.err = ReadAll(err);
    return run;
  }

  // tinyfed-admin `args` --json, which must succeed, read back as T.
  template <typename T>
  T AdminJson(std::vector<std::string> args) {
    args.push_back("--json");
    const AdminRun run = Admin(args);
    EXPECT_EQ(run.exit_status, 0) << args[0] << ": " << run.err;
    EXPECT_EQ(run.err, "");
    T message;
    const auto parsed = google::protobuf::util::JsonStringToMessage(run.out, &message);
    EXPECT_TRUE(parsed.ok()) << args[0] << ": " << parsed.ToString() << "\n" << run.out;
    return message;
  }

  grpc::Status CheckIn(const std::string& id, v1::CheckInResponse* response) {
    v1::CheckInRequest request;
    request.set_device_id(id);
    request.mutable_capabilities()->set_sample_count(100);
    grpc::ClientContext context;
    context.set_deadline(std::chrono::system_clock::now() + 10s);
    return coordinator_->CheckIn(&context, Sign(TestFleetKey(), request), response);
  }

  // A task for `id`, which must get one.
  v1::RoundTask Task(const std::string& id) {
    v1::CheckInResponse response;
    const grpc::Status s = CheckIn(id, &response);
    EXPECT_TRUE(s.ok()) << id << ": " << s.error_message();
    EXPECT_TRUE(response.has_task()) << id << " got " << response.DebugString();
    return response.task();
  }

  // Each update carries the device's evaluation of its base version: 40
  // samples, of which 20 plus the id's last digit right ("d-3": 23).
  grpc::Status Submit(const std::string& id, const v1::RoundTask& task) {
    v1::Update update = MakeUpdate(task.model().spec(), task.round(), id, task.task_token(),
                                   task.model().version(), 50, rng_);
    v1::Evaluation& e = *update.mutable_evaluation();
    e.set_model_version(task.model().version());
    e.set_samples(40);
    e.set_correct(20 + static_cast<uint32_t>(id.back() - '0'));
    e.set_loss_sum_q16(40 * 65536);
    v1::UpdateAck ack;
    grpc::ClientContext context;
    context.set_deadline(std::chrono::system_clock::now() + 10s);
    return coordinator_->SubmitUpdate(&context, Sign(TestFleetKey(), update), &ack);
  }

  v1::ModelVersion Model(uint32_t version) {
    v1::GetModelRequest request;
    request.set_version(version);
    v1::ModelVersion model;
    grpc::ClientContext context;
    context.set_deadline(std::chrono::system_clock::now() + 10s);
    const grpc::Status s = coordinator_->GetModel(&context, request, &model);
    EXPECT_TRUE(s.ok()) << "GetModel(" << version << "): " << s.error_message();
    return model;
  }

  // Waits until the served model is `version`: a round commits after its
  // K-th ack, on the round manager's own time.
  bool WaitForLatest(uint32_t version) {
    for (auto end = std::chrono::steady_clock::now() + 20s; std::chrono::steady_clock::now() < end;
         std::this_thread::sleep_for(20ms)) {
      if (Model(0).version() == version) return true;
    }
    return false;
  }

  // A round with two devices of their own ids, committed.
  void RunRound(const std::string& a, const std::string& b, uint32_t expect_version) {
    const v1::RoundTask ta = Task(a), tb = Task(b);
    ASSERT_TRUE(Submit(a, ta).ok());
    ASSERT_TRUE(Submit(b, tb).ok());
    ASSERT_TRUE(WaitForLatest(expect_version)) << server_->Log();
  }

  TempDir dir_;
  std::string address_;
  std::unique_ptr<ChildProcess> server_;
  std::unique_ptr<v1::Coordinator::Stub> coordinator_;
  std::mt19937 rng_{13};
};

TEST_F(AdminCliTest, EveryCommandAgainstALiveServerDuringRounds) {
  // ---- status before any update: round 1 open on the initial version.
  v1::ServerStatus status = AdminJson<v1::ServerStatus>({"status"});
  EXPECT_EQ(status.latest_version(), 1u);
  EXPECT_EQ(status.round().round(), 1u);
  EXPECT_TRUE(status.round().open());
  EXPECT_EQ(status.round().target_updates(), 2u);
  EXPECT_FALSE(status.paused());

  RunRound("d-0", "d-1", 2);
  RunRound("d-2", "d-3", 3);

  // ---- versions: lineage of what the rounds committed.
  v1::ListVersionsResponse versions = AdminJson<v1::ListVersionsResponse>({"versions"});
  ASSERT_EQ(versions.versions_size(), 3);
  EXPECT_EQ(versions.versions(0).version(), 3u);
  EXPECT_EQ(versions.versions(0).parent_version(), 2u);
  EXPECT_EQ(versions.versions(0).round(), 2u);
  EXPECT_EQ(versions.versions(0).metrics().participants(), 2u);
  EXPECT_EQ(versions.versions(0).metrics().samples(), 100u) << "two updates of 50 samples";
  EXPECT_EQ(versions.versions(2).version(), 1u);
  // Devices evaluated the version they trained from: d-0 and d-1 version
  // 1 (20 + 21 of 80), d-2 and d-3 version 2 (22 + 23 of 80); version 3
  // not yet.
  EXPECT_FALSE(versions.versions(0).has_fleet_evaluation());
  EXPECT_EQ(versions.versions(1).fleet_evaluation().devices(), 2u);
  EXPECT_EQ(versions.versions(1).fleet_evaluation().samples(), 80u);
  EXPECT_EQ(versions.versions(1).fleet_evaluation().correct(), 45u);
  EXPECT_EQ(versions.versions(1).fleet_evaluation().loss_sum_q16(), 80u * 65536);
  EXPECT_EQ(versions.versions(2).fleet_evaluation().correct(), 41u);
  versions = AdminJson<v1::ListVersionsResponse>({"versions", "--newest=2", "--limit=1"});
  ASSERT_EQ(versions.versions_size(), 1);
  EXPECT_EQ(versions.versions(0).version(), 2u);

  // ---- export: each form holds the version the Coordinator serves.
  const v1::ModelVersion v2 = Model(2);
  ASSERT_EQ(v2.version(), 2u);
  AdminRun run = Admin({"export", "--version", "2", "--format=proto", "--out=" + dir_.File("v2.pb")});
  ASSERT_EQ(run.exit_status, 0) << run.err;
  v1::ModelVersion exported;
  ASSERT_TRUE(exported.ParseFromString(ReadAll(dir_.File("v2.pb"))));
  // The export also carries the version's rollout, which devices are not
  // sent: version 2 is in canary (two devices evaluated it, below the
  // default min_devices of 5).
  EXPECT_EQ(exported.rollout().stage(), v1::ROLLOUT_STAGE_CANDIDATE) << exported.DebugString();
  exported.clear_rollout();
  // And the server's Aggregation record (how the version was made, for an
  // auditor), which devices are not sent either.
  EXPECT_EQ(exported.aggregation().strategy(), "fedavg") << exported.DebugString();
  EXPECT_FALSE(v2.has_aggregation());
  exported.clear_aggregation();
  EXPECT_TRUE(MessageDifferencer::Equals(exported, v2)) << exported.DebugString();
  run = Admin({"export", "--version=2", "--format=json"});
  ASSERT_EQ(run.exit_status, 0) << run.err;
  exported.Clear();
  ASSERT_TRUE(google::protobuf::util::JsonStringToMessage(run.out, &exported).ok()) << run.out;
  exported.clear_rollout();
  exported.clear_aggregation();
  EXPECT_TRUE(MessageDifferencer::Equals(exported, v2)) << run.out;
  run = Admin({"export", "--version=2", "--format=c"});
  ASSERT_EQ(run.exit_status, 0) << run.err;
  EXPECT_NE(run.out.find("#define TINYFED_MODEL_VERSION 2u\n"), std::string::npos) << run.out;
  EXPECT_NE(run.out.find(absl::StrFormat("#define TINYFED_MODEL_CHECKSUM UINT32_C(0x%08x)\n",
                                         v2.checksum())),
            std::string::npos)
      << run.out;

  // ---- rollback during round 3 (open on version 3, one task handed out).
  const v1::RoundTask stale = Task("d-4");
  ASSERT_EQ(stale.round(), 3u);
  const auto rollback = AdminJson<v1::RollbackResponse>(
      {"rollback", "--to=2", "--reason=round 2 looked wrong"});
  EXPECT_EQ(rollback.version().version(), 4u);
  EXPECT_EQ(rollback.version().parent_version(), 3u);
  EXPECT_EQ(rollback.version().restored_from(), 2u);
  EXPECT_EQ(rollback.version().round(), 0u);
  EXPECT_EQ(rollback.abandoned_round(), 3u);
  const v1::ModelVersion served = Model(0);
  EXPECT_EQ(served.version(), 4u);
  EXPECT_EQ(served.weights(), v2.weights()) << "the served model is version 2's";
  EXPECT_EQ(served.bias(), v2.bias());
  EXPECT_EQ(served.checksum(), v2.checksum());
  EXPECT_NE(served.weights(), Model(3).weights()) << "else the rollback shows nothing";
  EXPECT_EQ(Submit("d-4", stale).error_code(), grpc::StatusCode::FAILED_PRECONDITION)
      << "an update of the abandoned round";
  versions = AdminJson<v1::ListVersionsResponse>({"versions"});
  ASSERT_GE(versions.versions_size(), 1);
  EXPECT_EQ(versions.versions(0).version(), 4u);
  EXPECT_EQ(versions.versions(0).restored_from(), 2u);
  EXPECT_EQ(versions.versions(0).parent_version(), 3u);
  // And for people: the table's header and the rollback's row.
  run = Admin({"versions"});
  ASSERT_EQ(run.exit_status, 0) << run.err;
  EXPECT_EQ(run.out.substr(0, run.out.find('\n')),
            "VERSION  PARENT  ORIGIN         STAGE        PARTICIPANTS  SAMPLES  CAPPED  CLIPPED  "
            "REJECTED    LOSS  FLEET ACC  FLEET DEVICES  COMMITTED (UTC)")
      << run.out;
  // Stages: the rollback's copy serves at once; the candidate it replaced
  // (version 2) is rolled back, version 3 was trained while it waited, and
  // the initial version served until then.
  EXPECT_NE(run.out.find("      4       3  rollback to 2  serving "), std::string::npos) << run.out;
  EXPECT_NE(run.out.find("      3       2  round 2        trained "), std::string::npos) << run.out;
  EXPECT_NE(run.out.find("      2       1  round 1        rolled back "), std::string::npos)
      << run.out;
  EXPECT_NE(run.out.find("      1       -  initial        retired "), std::string::npos) << run.out;
  // FLEET ACC and FLEET DEVICES, the two columns before the last: version
  // 2's 45 of 80 (0.5625), version 1's 41 of 80 (0.5125); version 3 has
  // none (the stale update of d-4 was refused, its evaluation with it).
  auto fleet_cells = [&](const std::string& row_start) {
    const size_t at = run.out.find("\n" + row_start);
    if (at == std::string::npos) return std::vector<std::string>{"no row " + row_start};
    std::istringstream row(run.out.substr(at + 1, run.out.find('\n', at + 1) - at - 1));
    std::vector<std::string> cells{std::istream_iterator<std::string>(row), {}};
    return std::vector<std::string>(cells.end() - 3, cells.end() - 1);
  };
  EXPECT_EQ(fleet_cells("      2       1"), (std::vector<std::string>{"0.5625", "2"})) << run.out;
  EXPECT_EQ(fleet_cells("      1       -"), (std::vector<std::string>{"0.5125", "2"})) << run.out;
  EXPECT_EQ(fleet_cells("      3       2"), (std::vector<std::string>{"-", "-"})) << run.out;

  // ---- promote: version 3 serves at once, by hand.
  const auto promoted =
      AdminJson<v1::PromoteResponse>({"promote", "3", "--reason=checked by hand"});
  EXPECT_EQ(promoted.version().version(), 3u);
  EXPECT_EQ(promoted.version().rollout().stage(), v1::ROLLOUT_STAGE_SERVING);
  EXPECT_EQ(promoted.previous_serving(), 4u);
  status = AdminJson<v1::ServerStatus>({"status"});
  EXPECT_EQ(status.serving_version(), 3u);
  EXPECT_EQ(status.latest_version(), 4u) << "training goes on from the latest";
  run = Admin({"promote", "3"});
  EXPECT_EQ(run.exit_status, 1);
  EXPECT_EQ(run.err.rfind("tinyfed-admin: FAILED_PRECONDITION: ", 0), 0u)
      << "version 3 already serves: " << run.err;
  run = Admin({"promote", "99"});
  EXPECT_EQ(run.exit_status, 1);
  EXPECT_EQ(run.err.rfind("tinyfed-admin: NOT_FOUND: ", 0), 0u) << run.err;

  // ---- revoke a device holding a task of the open round (on version 4).
  const v1::RoundTask t5 = Task("d-5"), t6 = Task("d-6"), t8 = Task("d-8");
  ASSERT_EQ(t8.model().version(), 4u);
  const auto revoked = AdminJson<v1::RevokeDeviceResponse>({"revoke", "d-8", "--reason=lost"});
  EXPECT_FALSE(revoked.already_revoked());
  EXPECT_GT(revoked.revoked_unix_ms(), 0);
  EXPECT_EQ(Submit("d-8", t8).error_code(), grpc::StatusCode::PERMISSION_DENIED);
  v1::CheckInResponse response;
  EXPECT_EQ(CheckIn("d-8", &response).error_code(), grpc::StatusCode::PERMISSION_DENIED);
  EXPECT_TRUE(AdminJson<v1::RevokeDeviceResponse>({"revoke", "d-8"}).already_revoked());

  // ---- pause: check-ins wait; the open round still closes; no new round.
  status = AdminJson<v1::ServerStatus>({"pause", "--reason=maintenance"});
  EXPECT_TRUE(status.paused());
  EXPECT_EQ(status.paused_by(), "token:alice");
  ASSERT_TRUE(CheckIn("d-7", &response).ok());
  EXPECT_TRUE(response.has_retry()) << response.DebugString();
  EXPECT_FALSE(response.has_task());
  ASSERT_TRUE(Submit("d-5", t5).ok()) << "a task handed out before the pause";
  ASSERT_TRUE(Submit("d-6", t6).ok());
  ASSERT_TRUE(WaitForLatest(5));
  const uint32_t closed_round = t5.round();
  // A new round would open at once after a commit; give it the time to.
  std::this_thread::sleep_for(500ms);
  status = AdminJson<v1::ServerStatus>({"status"});
  EXPECT_TRUE(status.paused());
  EXPECT_FALSE(status.round().open() && status.round().round() > closed_round)
      << status.DebugString();
  ASSERT_TRUE(CheckIn("d-7", &response).ok());
  EXPECT_TRUE(response.has_retry()) << "no round while paused: " << response.DebugString();

  // ---- resume: a new round opens on the latest version.
  status = AdminJson<v1::ServerStatus>({"resume"});
  EXPECT_FALSE(status.paused());
  for (auto end = std::chrono::steady_clock::now() + 10s;
       !(status.round().open() && status.round().round() > closed_round) &&
       std::chrono::steady_clock::now() < end;
       std::this_thread::sleep_for(20ms)) {
    status = AdminJson<v1::ServerStatus>({"status"});
  }
  EXPECT_TRUE(status.round().open()) << status.DebugString();
  EXPECT_GT(status.round().round(), closed_round);
  EXPECT_EQ(status.round().base_version(), 5u);
  const v1::RoundTask resumed = Task("d-7");
  EXPECT_EQ(resumed.model().version(), 5u);

  // ---- devices: seen ones with their counts, and the revoked one.
  const auto devices = AdminJson<v1::ListDevicesResponse>({"devices"});
  bool saw_d8 = false, saw_d0 = false;
  for (const v1::DeviceSeen& d : devices.seen()) {
    if (d.device_id() == "d-8") {
      saw_d8 = true;
      EXPECT_TRUE(d.revoked());
      EXPECT_EQ(d.updates(), 0u);
    }
    if (d.device_id() == "d-0") {
      saw_d0 = true;
      EXPECT_EQ(d.updates(), 1u);
      EXPECT_FALSE(d.revoked());
    }
  }
  EXPECT_TRUE(saw_d8 && saw_d0) << devices.DebugString();
  ASSERT_EQ(devices.revoked_size(), 1);
  EXPECT_EQ(devices.revoked(0).device_id(), "d-8");
  run = Admin({"devices", "--limit=3"});
  ASSERT_EQ(run.exit_status, 0) << run.err;
  EXPECT_EQ(run.out.rfind("DEVICE  LAST TASK (UTC)       LAST ROUND  TASKS  UPDATES  REVOKED\n", 0), 0u)
      << run.out;
  EXPECT_NE(run.out.find("\nd-8 "), std::string::npos) << run.out;

  // ---- audit: the five changes, newest first, by alice's token.
  const auto audit = AdminJson<v1::ListAuditResponse>({"audit"});
  std::vector<std::string> actions;
  for (const v1::AuditRecord& r : audit.records()) {
    actions.push_back(r.action());
    EXPECT_EQ(r.actor(), "token:alice") << r.DebugString();
  }
  EXPECT_EQ(actions,
            (std::vector<std::string>{"resume", "pause", "revoke", "promote", "rollback"}))
      << audit.DebugString();
  ASSERT_EQ(audit.records_size(), 5);
  EXPECT_NE(audit.records(4).detail().find("round 2 looked wrong"), std::string::npos);
  EXPECT_NE(audit.records(3).detail().find("checked by hand"), std::string::npos)
      << audit.records(3).DebugString();
  EXPECT_NE(audit.records(2).detail().find("d-8"), std::string::npos);
  EXPECT_GT(audit.records(0).id(), audit.records(1).id());
  const auto page = AdminJson<v1::ListAuditResponse>(
      {"audit", "--limit=2", absl::StrCat("--before=", audit.records(1).id())});
  ASSERT_EQ(page.records_size(), 2);
  EXPECT_EQ(page.records(0).action(), "revoke");
  run = Admin({"audit"});
  ASSERT_EQ(run.exit_status, 0) << run.err;
  // The ID column is right-aligned: the header moves with the widest id.
  const std::string header = run.out.substr(0, run.out.find('\n'));
  EXPECT_EQ(header.substr(header.find_first_not_of(' ')),
            "ID  TIME (UTC)            ACTOR        ACTION    DETAIL")
      << run.out;
  EXPECT_NE(run.out.find("token:alice  rollback"), std::string::npos) << run.out;

  // ---- a wrong token: refused with one line, exit 1, and nothing changes.
  run = Admin({"pause", "--reason=not mine"}, dir_.File("mallory.token"));
  EXPECT_EQ(run.exit_status, 1);
  EXPECT_EQ(run.out, "");
  EXPECT_EQ(run.err.rfind("tinyfed-admin: PERMISSION_DENIED: ", 0), 0u) << run.err;
  EXPECT_EQ(std::count(run.err.begin(), run.err.end(), '\n'), 1) << run.err;
  EXPECT_EQ(run.err.find(kWrongToken), std::string::npos) << "the token is not echoed";
  EXPECT_FALSE(AdminJson<v1::ServerStatus>({"status"}).paused());
  EXPECT_EQ(AdminJson<v1::ListAuditResponse>({"audit"}).records_size(), 5);
  run = Admin({"rollback", "--to=1"}, dir_.File("mallory.token"));
  EXPECT_EQ(run.exit_status, 1);
  EXPECT_NE(run.err.find("PERMISSION_DENIED"), std::string::npos) << run.err;
  EXPECT_EQ(Model(0).version(), 5u);
}

TEST_F(AdminCliTest, RefusalsNameTheStatusAndSayWhy) {
  // Server-side refusals: exit 1 with the status name.
  AdminRun run = Admin({"rollback", "--to=1"});
  EXPECT_EQ(run.exit_status, 1);
  EXPECT_EQ(run.err.rfind("tinyfed-admin: FAILED_PRECONDITION: ", 0), 0u)
      << "version 1 is the latest: " << run.err;
  run = Admin({"export", "--version=9", "--format=json"});
  EXPECT_EQ(run.exit_status, 1);
  EXPECT_EQ(run.err.rfind("tinyfed-admin: NOT_FOUND: ", 0), 0u) << run.err;
  // Bad usage: exit 2 before anything is sent.
  run = Admin({"revoke"});
  EXPECT_EQ(run.exit_status, 2);
  EXPECT_EQ(run.err, "tinyfed-admin: revoke: expected exactly 1 argument (ID), got 0\n");
  run = Admin({"revoke", "d-1", "d-2"});
  EXPECT_EQ(run.exit_status, 2);
  run = Admin({"status", "--limit=3"});
  EXPECT_EQ(run.exit_status, 2);
  EXPECT_NE(run.err.find("--limit does not apply"), std::string::npos) << run.err;
  // Nothing was revoked or recorded by any of them.
  EXPECT_EQ(AdminJson<v1::ListAuditResponse>({"audit"}).records_size(), 0);
  EXPECT_EQ(AdminJson<v1::ServerStatus>({"status"}).revoked_devices(), 0u);
}

// verify and the status's aggregation lines against the live server: a
// version the server committed matches (exit 0); after one of its stored
// updates is altered in the file (its checksum and row CRC made to fit),
// it no longer does (exit 1, one line on stderr); a version no round
// trained is FAILED_PRECONDITION (exit 1).
TEST_F(AdminCliTest, VerifyRecomputesVersionsAndFailsWhenTheStoreWasAltered) {
  RunRound("v-1", "v-2", 2);
  AdminRun run = Admin({"verify"});
  EXPECT_EQ(run.exit_status, 0) << run.err;
  EXPECT_NE(run.out.find("version:              2\n"), std::string::npos) << run.out;
  EXPECT_NE(run.out.find("strategy:             fedavg\n"), std::string::npos) << run.out;
  EXPECT_NE(run.out.find("updates:              2\n"), std::string::npos) << run.out;
  EXPECT_NE(run.out.find("result:               matches\n"), std::string::npos) << run.out;
  const v1::VerifyVersionResponse json = AdminJson<v1::VerifyVersionResponse>({"verify", "2"});
  EXPECT_TRUE(json.matches());
  EXPECT_EQ(json.committed_checksum(), Model(2).checksum());

  run = Admin({"status"});
  EXPECT_EQ(run.exit_status, 0) << run.err;
  EXPECT_NE(run.out.find("aggregation:      fedavg: server lr 1; "), std::string::npos) << run.out;
  EXPECT_NE(run.out.find("privacy:          off\n"), std::string::npos) << run.out;

  run = Admin({"verify", "1"});
  EXPECT_EQ(run.exit_status, 1);
  EXPECT_EQ(run.err.rfind("tinyfed-admin: FAILED_PRECONDITION: ", 0), 0u) << run.err;

  // One int8 value of v-1's update negated to the far end of its range.
  sqlite3* db = nullptr;
  ASSERT_EQ(sqlite3_open(dir_.File("s.db").c_str(), &db), SQLITE_OK);
  sqlite3_busy_timeout(db, 5000);
  sqlite3_stmt* read = nullptr;
  ASSERT_EQ(sqlite3_prepare_v2(db,
                               "SELECT payload, received_ms FROM updates "
                               "WHERE round = 1 AND device_id = 'v-1'",
                               -1, &read, nullptr),
            SQLITE_OK)
      << sqlite3_errmsg(db);
  ASSERT_EQ(sqlite3_step(read), SQLITE_ROW);
  v1::Update update;
  ASSERT_TRUE(update.ParseFromArray(sqlite3_column_blob(read, 0), sqlite3_column_bytes(read, 0)));
  const int64_t received_ms = sqlite3_column_int64(read, 1);
  sqlite3_finalize(read);
  std::string deltas = update.weight_delta();
  deltas[0] = static_cast<int8_t>(deltas[0]) >= 0 ? static_cast<char>(-127) : static_cast<char>(127);
  update.set_weight_delta(deltas);
  FixChecksum(&update);
  const std::string payload = update.SerializeAsString();
  sqlite3_stmt* write = nullptr;
  ASSERT_EQ(sqlite3_prepare_v2(db,
                               "UPDATE updates SET payload = ?1, crc = ?2 "
                               "WHERE round = 1 AND device_id = 'v-1'",
                               -1, &write, nullptr),
            SQLITE_OK);
  sqlite3_bind_blob(write, 1, payload.data(), static_cast<int>(payload.size()), SQLITE_STATIC);
  sqlite3_bind_int64(write, 2, UpdateRowCrc(1, "v-1", payload, received_ms));
  EXPECT_EQ(sqlite3_step(write), SQLITE_DONE) << sqlite3_errmsg(db);
  sqlite3_finalize(write);
  sqlite3_close(db);

  run = Admin({"verify", "2"});
  EXPECT_EQ(run.exit_status, 1) << run.out << run.err;
  // "1 value differs" or "N values differ": how many depends on whether
  // the change moved the norm clip of v-1's whole update.
  EXPECT_NE(run.out.find("result:               "), std::string::npos) << run.out;
  EXPECT_NE(run.out.find(" differ"), std::string::npos) << run.out;
  EXPECT_EQ(run.out.find("matches"), std::string::npos) << run.out;
  EXPECT_EQ(run.err.rfind("tinyfed-admin: DATA_LOSS: version 2 does not match its recomputation",
                          0),
            0u)
      << run.err;
}

}  // namespace
}  // namespace tinyfed::server::testing
