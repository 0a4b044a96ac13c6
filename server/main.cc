// tinyfed-server: runs FedAvg rounds for a fleet over gRPC.
#include <csignal>
#include <cstdio>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include <google/protobuf/stubs/logging.h>
#include <grpcpp/grpcpp.h>

#include "absl/flags/flag.h"
#include "absl/flags/usage.h"
#include "tinyfed_common/flag_help.h"
#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "clock.h"
#include "coordinator_service.h"
#include "model_store.h"
#include "round_manager.h"
#include "server_config.h"
#include "spdlog/spdlog.h"

ABSL_FLAG(std::string, listen, "", "address to serve on, HOST:PORT (default 127.0.0.1:50051)");
ABSL_FLAG(std::string, db, "", "SQLite file holding models, rounds and updates (default tinyfed.db)");
ABSL_FLAG(std::string, config, "",
          "ServerConfig in protobuf text format (see proto/tinyfed/v1/server_config.proto); "
          "flags override it");
ABSL_FLAG(std::string, log_level, "info", "trace, debug, info, warn, error");

namespace {

// Protobuf's own messages go to the debug level: the one a request can
// trigger (a string field that is not UTF-8) is answered and logged by the
// service already, rate-limited, and must not let a device flood the log.
void ProtobufLogToDebug(google::protobuf::LogLevel level, const char* file, int line,
                        const std::string& message) {
  if (level >= google::protobuf::LOGLEVEL_FATAL) {
    spdlog::critical("protobuf {}:{}: {}", file, line, message);
  } else {
    spdlog::debug("protobuf {}:{}: {}", file, line, message);
  }
}

int Fail(const std::string& message) {
  std::fprintf(stderr, "tinyfed-server: %s\n", message.c_str());
  return 2;
}

}  // namespace

int main(int argc, char** argv) {
  tinyfed::ConfigureFlagHelp(
      "the tinyfed aggregation server.\n\n"
      "  tinyfed-server [--config FILE] [--listen HOST:PORT] [--db FILE]\n\n"
      "Opens rounds on the latest model version, hands tasks to devices, accepts their\n"
      "int8 updates durably and commits FedAvg versions to the SQLite store. Restarting\n"
      "on the same --db resumes where it stopped.");
  tinyfed::ParseFlagsOrAnswerHelp(std::vector<char*>(argv, argv + argc));
  // Debian's Abseil checks every mutex acquisition for lock-order cycles
  // (it is built without NDEBUG); that bookkeeping costs ~15% of the
  // server's throughput and finds nothing the tests don't.
  absl::SetMutexDeadlockDetectionMode(absl::OnDeadlockCycle::kIgnore);
  spdlog::set_level(spdlog::level::from_str(absl::GetFlag(FLAGS_log_level)));
  google::protobuf::SetLogHandler(&ProtobufLogToDebug);

  using tinyfed::server::ApplyDefaults;
  tinyfed::v1::ServerConfig config;
  if (const std::string path = absl::GetFlag(FLAGS_config); !path.empty()) {
    absl::StatusOr<tinyfed::v1::ServerConfig> loaded = tinyfed::server::LoadServerConfigFile(path);
    if (!loaded.ok()) return Fail(std::string(loaded.status().message()));
    config = *loaded;
  }
  if (const std::string v = absl::GetFlag(FLAGS_listen); !v.empty()) config.set_listen(v);
  if (const std::string v = absl::GetFlag(FLAGS_db); !v.empty()) config.set_db(v);
  ApplyDefaults(&config);
  if (absl::Status s = tinyfed::server::ValidateServerConfig(config); !s.ok()) {
    return Fail(std::string(s.message()));
  }

  tinyfed::server::SystemClock clock;
  absl::StatusOr<tinyfed::v1::ModelVersion> initial =
      tinyfed::server::InitialModel(config, clock.NowMs());
  if (!initial.ok()) return Fail(std::string(initial.status().message()));
  absl::StatusOr<std::unique_ptr<tinyfed::server::ModelStore>> store =
      tinyfed::server::OpenSqliteModelStore(config.db());
  if (!store.ok()) return Fail(absl::StrCat(config.db(), ": ", store.status().message()));
  absl::StatusOr<std::unique_ptr<tinyfed::server::RoundManager>> manager =
      tinyfed::server::RoundManager::Create(config, *initial, store->get(), &clock);
  if (!manager.ok()) return Fail(std::string(manager.status().message()));

  // SIGINT/SIGTERM stop the server gracefully; block them in every thread
  // and wait for them in one.
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGINT);
  sigaddset(&signals, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);

  tinyfed::server::CoordinatorService service(manager->get());
  grpc::ServerBuilder builder;
  int port = 0;
  builder.AddListeningPort(config.listen(), grpc::InsecureServerCredentials(), &port);
  builder.RegisterService(&service);
  std::unique_ptr<grpc::Server> server = builder.BuildAndStart();
  if (server == nullptr || port == 0) return Fail("cannot listen on " + config.listen());
  spdlog::info("tinyfed-server listening on {} (port {}), store {}", config.listen(), port,
               config.db());

  absl::Notification stop;
  std::thread ticker([&] {
    while (!stop.WaitForNotificationWithTimeout(absl::Milliseconds(100))) (*manager)->Tick();
  });
  int received = 0;
  sigwait(&signals, &received);
  spdlog::info("signal {}: shutting down", received);
  server->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(5));
  stop.Notify();
  ticker.join();
  manager->reset();
  store->reset();
  spdlog::info("stopped");
  return 0;
}
