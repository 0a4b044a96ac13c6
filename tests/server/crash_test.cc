// Crash safety: tinyfed-server runs as a separate process and is killed
// with SIGKILL at random moments while devices check in and submit, then
// restarted on the same database, again and again. Afterwards the store is
// read back: every acknowledged update is among the updates of its round,
// each committed version is exactly its parent plus the FedAvg of that
// round's stored updates (so each counted once; judged by the independent
// reference in reference_fedavg.h, not by the server's aggregator), and
// lineage and checksums are intact. Every request is signed with its
// device's key; each device declares its sample count at check-in and
// first claims one more, which must be refused (INVALID_ARGUMENT) also
// when a restart came between its check-in and its submission.
#include <gtest/gtest.h>
#include <grpcpp/grpcpp.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <fstream>
#include <map>
#include <mutex>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "head.h"
#include "model_store.h"
#include "reference_fedavg.h"
#include "server_test_support.h"
#include "tinyfed/v1/coordinator.grpc.pb.h"
#include "tinyfed_common/fleet_keys.h"

#ifndef TINYFED_SERVER_BINARY
#error "TINYFED_SERVER_BINARY must name the tinyfed-server executable"
#endif

namespace tinyfed::server {
namespace {

using namespace std::chrono_literals;

int FreePort() {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = 0;
  bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr);
  socklen_t len = sizeof addr;
  getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len);
  close(fd);
  return ntohs(addr.sin_port);
}

class ServerProcess {
 public:
  ServerProcess(std::string config, std::string db, std::string fleet_key, std::string listen,
                std::string log)
      : config_(std::move(config)), db_(std::move(db)), fleet_key_(std::move(fleet_key)),
        listen_(std::move(listen)), log_(std::move(log)) {}
  ~ServerProcess() { Kill(); }

  void Start() {
    pid_ = fork();
    if (pid_ == 0) {
      // The server logs to stdout and reports fatal errors on stderr.
      if (freopen(log_.c_str(), "a", stdout) == nullptr || dup2(fileno(stdout), 2) < 0) _exit(126);
      execl(TINYFED_SERVER_BINARY, TINYFED_SERVER_BINARY, ("--config=" + config_).c_str(),
            ("--db=" + db_).c_str(), ("--fleet_key=" + fleet_key_).c_str(),
            ("--listen=" + listen_).c_str(), "--log_level=warn",
            static_cast<char*>(nullptr));
      _exit(127);
    }
  }
  void Kill() {
    if (pid_ <= 0) return;
    kill(pid_, SIGKILL);
    waitpid(pid_, nullptr, 0);
    pid_ = -1;
  }
  // SIGTERM and wait: a clean stop.
  int Stop() {
    if (pid_ <= 0) return -1;
    kill(pid_, SIGTERM);
    int status = 0;
    waitpid(pid_, &status, 0);
    pid_ = -1;
    return status;
  }

 private:
  std::string config_, db_, fleet_key_, listen_, log_;
  pid_t pid_ = -1;
};

struct Acked {
  uint32_t round;
  std::string device;
  std::string payload;
};

TEST(CrashTest, KilledServerLosesNoAcknowledgedUpdateAndCountsNoneTwice) {
  testing::TempDir dir;
  const std::string config_path = dir.File("server.textproto");
  {
    std::ofstream config(config_path);
    config << "head { feature_count: 16 class_count: 4 }\n"
              "policy { target_updates: 12 min_updates: 12 over_selection: 4\n"
              "         round_deadline_ms: 600000 retry_after_ms: 20 }\n";
  }
  // Made here rather than by the server's first start, which a kill could
  // interrupt.
  const absl::StatusOr<Key256> fleet_key = CreateFleetKeyFile(dir.File("fleet.key"));
  ASSERT_TRUE(fleet_key.ok()) << fleet_key.status();
  const std::string listen = "127.0.0.1:" + std::to_string(FreePort());
  ServerProcess server(config_path, dir.File("store.db"), dir.File("fleet.key"), listen,
                       dir.File("server.log"));
  server.Start();

  std::mutex mu;
  std::vector<Acked> acked;
  std::atomic<bool> stop{false};
  std::atomic<int> device_counter{0};
  std::atomic<int> over_declared_refused{0};

  // Devices: check in, build a valid update for the task, submit it, and
  // on UNAVAILABLE retry the same bytes until answered.
  auto device_loop = [&](int seed) {
    std::mt19937 rng(seed);
    // Reconnect quickly: the server is down for milliseconds at a time.
    grpc::ChannelArguments args;
    args.SetInt(GRPC_ARG_INITIAL_RECONNECT_BACKOFF_MS, 10);
    args.SetInt(GRPC_ARG_MIN_RECONNECT_BACKOFF_MS, 10);
    args.SetInt(GRPC_ARG_MAX_RECONNECT_BACKOFF_MS, 50);
    auto channel = grpc::CreateCustomChannel(listen, grpc::InsecureChannelCredentials(), args);
    auto stub = v1::Coordinator::NewStub(channel);
    while (!stop) {
      const std::string id = "dev-" + std::to_string(device_counter++);
      const uint32_t samples = 1 + rng() % 50;
      v1::CheckInRequest request;
      request.set_device_id(id);
      request.mutable_capabilities()->set_sample_count(samples);
      const v1::SignedRequest signed_check_in = testing::Sign(*fleet_key, request);
      v1::CheckInResponse response;
      grpc::Status s;
      do {
        grpc::ClientContext context;
        context.set_deadline(std::chrono::system_clock::now() + 2s);
        context.set_wait_for_ready(true);
        s = stub->CheckIn(&context, signed_check_in, &response);
        if (!s.ok()) std::this_thread::sleep_for(20ms);
      } while (!s.ok() && !stop);
      if (stop) return;
      if (!response.has_task()) {
        std::this_thread::sleep_for(std::chrono::milliseconds(response.retry().retry_after_ms()));
        continue;
      }
      const v1::RoundTask& task = response.task();
      auto make = [&](uint32_t claimed) {
        return testing::MakeUpdate(task.model().spec(), task.round(), id, task.task_token(),
                                   task.model().version(), claimed, rng, 60);
      };
      // One sample more than declared: refused, whether or not the server
      // restarted since the check-in; retried while the server is down.
      const v1::SignedRequest over = testing::Sign(*fleet_key, make(samples + 1));
      for (int attempt = 0; attempt < 500 && !stop; ++attempt) {
        grpc::ClientContext context;
        context.set_deadline(std::chrono::system_clock::now() + 2s);
        context.set_wait_for_ready(true);
        v1::UpdateAck ack;
        s = stub->SubmitUpdate(&context, over, &ack);
        if (s.error_code() == grpc::StatusCode::UNAVAILABLE ||
            s.error_code() == grpc::StatusCode::DEADLINE_EXCEEDED ||
            s.error_code() == grpc::StatusCode::RESOURCE_EXHAUSTED) {
          std::this_thread::sleep_for(20ms);
          continue;
        }
        EXPECT_FALSE(s.ok()) << id << ": an update above its declared count was acknowledged";
        if (s.error_code() == grpc::StatusCode::INVALID_ARGUMENT) ++over_declared_refused;
        break;
      }
      const v1::Update update = make(samples);
      const v1::SignedRequest signed_update = testing::Sign(*fleet_key, update);
      for (int attempt = 0; attempt < 500 && !stop; ++attempt) {
        grpc::ClientContext context;
        context.set_deadline(std::chrono::system_clock::now() + 2s);
        context.set_wait_for_ready(true);
        v1::UpdateAck ack;
        s = stub->SubmitUpdate(&context, signed_update, &ack);
        if (s.ok()) {
          std::lock_guard<std::mutex> lock(mu);
          acked.push_back({update.round(), id, update.SerializeAsString()});
          break;
        }
        if (s.error_code() != grpc::StatusCode::UNAVAILABLE &&
            s.error_code() != grpc::StatusCode::DEADLINE_EXCEEDED &&
            s.error_code() != grpc::StatusCode::RESOURCE_EXHAUSTED) {
          // The round moved on (FAILED_PRECONDITION or ABORTED): give up on
          // this update, as a device would, and check in again.
          EXPECT_TRUE(s.error_code() == grpc::StatusCode::FAILED_PRECONDITION ||
                      s.error_code() == grpc::StatusCode::ABORTED)
              << s.error_code() << " " << s.error_message();
          break;
        }
        std::this_thread::sleep_for(20ms);
      }
    }
  };
  std::vector<std::thread> devices;
  for (int i = 0; i < 4; ++i) devices.emplace_back(device_loop, 100 + i);

  // Kill at random moments: between 100 and 600 ms of service each time.
  std::mt19937 chaos(2026);
  constexpr int kKills = 12;
  for (int k = 0; k < kKills; ++k) {
    std::this_thread::sleep_for(std::chrono::milliseconds(100 + chaos() % 500));
    server.Kill();
    server.Start();
  }
  std::this_thread::sleep_for(500ms);
  stop = true;
  for (auto& t : devices) t.join();
  EXPECT_EQ(WEXITSTATUS(server.Stop()), 0) << "clean shutdown after the last restart";

  // Read the store back.
  auto store_or = OpenSqliteModelStore(dir.File("store.db"));
  ASSERT_TRUE(store_or.ok()) << store_or.status();
  ModelStore& store = **store_or;
  auto latest = store.LatestVersion();
  ASSERT_TRUE(latest.ok() && latest->has_value());
  const uint32_t versions = (*latest)->version();
  std::cout << kKills << " kills, " << acked.size() << " acknowledged updates, " << versions
            << " versions committed, " << over_declared_refused
            << " updates above their declared count refused\n";
  EXPECT_GT(over_declared_refused.load(), 0);
  ASSERT_GE(versions, 3u) << "rounds must have committed between the kills";

  std::map<uint32_t, std::map<std::string, std::string>> stored_by_round;
  std::map<uint32_t, uint32_t> round_of_version;
  for (uint32_t v = 2; v <= versions; ++v) {
    auto model = store.GetVersion(v);
    ASSERT_TRUE(model.ok()) << model.status();
    auto parent = store.GetVersion(v - 1);
    ASSERT_TRUE(parent.ok());
    EXPECT_EQ(model->parent_version(), v - 1);
    auto head = LoadHead(*model);  // checks shape and checksum
    ASSERT_TRUE(head.ok()) << "version " << v << ": " << head.status();
    const uint32_t round = model->round();
    round_of_version[v] = round;
    auto updates = store.RoundUpdates(round);
    ASSERT_TRUE(updates.ok());
    std::vector<v1::Update> parsed;
    for (const StoredUpdate& u : *updates) {
      ASSERT_TRUE(parsed.emplace_back().ParseFromString(u.payload));
      ASSERT_TRUE(stored_by_round[round].emplace(u.device_id, u.payload).second)
          << "device stored twice in a round";
    }
    EXPECT_EQ(model->metrics().participants(), updates->size()) << "version " << v;
    EXPECT_EQ(updates->size(), 12u) << "rounds close at K";
    // The config's server learning rate is the default, 1.0 (65536 in Q16.16).
    EXPECT_TRUE(testing::MatchesReferenceFedAvg(*model, *parent, parsed, 65536))
        << "version " << v << " is not parent + FedAvg of round " << round << "'s updates";
  }
  // Every acknowledged update is stored in its round, bit for bit; those of
  // committed rounds are therefore in the committed models exactly once.
  size_t in_committed = 0;
  for (const Acked& a : acked) {
    auto updates = store.RoundUpdates(a.round);
    ASSERT_TRUE(updates.ok());
    bool found = false;
    for (const StoredUpdate& u : *updates) {
      if (u.device_id == a.device) {
        v1::Update stored, sent;
        ASSERT_TRUE(stored.ParseFromString(u.payload));
        ASSERT_TRUE(sent.ParseFromString(a.payload));
        EXPECT_EQ(stored.SerializeAsString(), sent.SerializeAsString());
        found = true;
      }
    }
    EXPECT_TRUE(found) << "acknowledged update of " << a.device << " in round " << a.round
                       << " was lost";
    in_committed += stored_by_round.count(a.round) ? 1 : 0;
  }
  EXPECT_GT(in_committed, 0u);
}

}  // namespace
}  // namespace tinyfed::server
