// tinyfed-server: runs FedAvg rounds for a fleet over gRPC.
#include <csignal>
#include <cstdio>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include <google/protobuf/stubs/logging.h>
#include <grpc/support/log.h>
#include <grpcpp/grpcpp.h>

#include "absl/flags/flag.h"
#include "absl/flags/usage.h"
#include "absl/flags/usage_config.h"
#include "absl/strings/str_cat.h"
#include "tinyfed_common/flag_help.h"
#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "admin_auth.h"
#include "admin_service.h"
#include "clock.h"
#include "coordinator_service.h"
#include "device_auth.h"
#include "grpc_port.h"
#include "metrics.h"
#include "metrics_http.h"
#include "model_store.h"
#include "round_manager.h"
#include "server_config.h"
#include "spdlog/spdlog.h"
#include "status_page.h"
#include "store_lock.h"
#include "tls_credentials.h"

ABSL_FLAG(std::string, listen, "", "address to serve on, HOST:PORT (default 127.0.0.1:50051)");
ABSL_FLAG(std::string, db, "", "SQLite file holding models, rounds and updates (default tinyfed.db)");
ABSL_FLAG(std::string, config, "",
          "ServerConfig in protobuf text format (see proto/tinyfed/v1/server_config.proto); "
          "flags override it");
ABSL_FLAG(std::string, log_level, "info", "trace, debug, info, warn, error");
ABSL_FLAG(std::string, tls_cert, "",
          "PEM certificate chain to serve TLS with (needs --tls_key); required to listen on an "
          "address that is not loopback");
ABSL_FLAG(std::string, tls_key, "", "PEM private key of --tls_cert (unencrypted, mode 0600)");
ABSL_FLAG(std::string, tls_client_ca, "",
          "PEM CA certificates: every client must present a certificate they signed (mTLS)");
ABSL_FLAG(std::string, fleet_key, "",
          "the fleet key file (32 bytes, mode 0600) every device key is derived from; default "
          "<db>.fleet.key, created on first start");
ABSL_FLAG(bool, insecure_plaintext, false,
          "serve plaintext on an address that is not loopback (anyone on the path can read and "
          "alter updates); warned at start");
ABSL_FLAG(std::string, metrics_listen, "",
          "serve Prometheus metrics at http://HOST:PORT/metrics (no authentication: a loopback "
          "address, or one only the scraper reaches); overrides the config's metrics_listen; off "
          "by default");
ABSL_FLAG(std::string, admin_tokens, "",
          "admin token file (lines NAME TOKEN, mode 0600): a caller sending 'authorization: "
          "Bearer TOKEN' may use the Admin service; overrides the config's admin.token_file");

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

// gRPC's own lines name its source files and internal errors (a failed
// bind prints a JSON error tree); the server reports what an operator must
// act on in its own words, so gRPC's lines are debug output.
void GrpcLogToDebug(gpr_log_func_args* args) {
  spdlog::debug("grpc {}:{}: {}", args->file, args->line, args->message);
}

// The log levels --log_level accepts; spdlog reads any other name as "off",
// which would run the server silently.
bool IsLogLevel(const std::string& name) {
  for (const char* level : {"trace", "debug", "info", "warn", "error"}) {
    if (name == level) return true;
  }
  return false;
}

int Fail(const std::string& message) {
  std::fprintf(stderr, "tinyfed-server: %s\n", message.c_str());
  return 2;
}

}  // namespace

int main(int argc, char** argv) {
  // SIGINT/SIGTERM stop the server gracefully; block them in every thread
  // and wait for them in one. SIGHUP, whose default action would kill the
  // server (a closed terminal, or an operator expecting a reload), is
  // waited for too and only logged. Blocked first, before any thread
  // exists (the store's writer, gRPC's), since threads inherit the mask: a
  // thread started earlier would take a SIGHUP with its default action and
  // end the process. One that arrives during start-up waits, pending,
  // for the sigwait below.
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGINT);
  sigaddset(&signals, SIGTERM);
  sigaddset(&signals, SIGHUP);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);

  tinyfed::ConfigureFlagHelp(
      "the tinyfed aggregation server.\n\n"
      "  tinyfed-server [--config FILE] [--listen HOST:PORT] [--db FILE]\n"
      "                 [--tls_cert FILE --tls_key FILE [--tls_client_ca FILE]]\n"
      "                 [--fleet_key FILE]\n\n"
      "Opens rounds on the latest model version, hands tasks to devices, accepts their\n"
      "int8 updates durably and commits FedAvg versions to the SQLite store. Restarting\n"
      "on the same --db resumes where it stopped.\n\n"
      "Serves TLS with --tls_cert and --tls_key. Plaintext is served only on a loopback\n"
      "address (the default 127.0.0.1:50051), unless --insecure_plaintext is given.\n\n"
      "Every check-in and update must be signed with its device's key, derived from the\n"
      "fleet key (--fleet_key, or <db>.fleet.key created on first start):\n"
      "  tinyfed-admin keys device --fleet FLEET_KEY --device ID\n\n"
      "The Admin service (tinyfed-admin) answers a caller with a token of --admin_tokens,\n"
      "a client certificate from --tls_client_ca, or, on a plaintext port, a caller on\n"
      "loopback. A paused server answers health checks NOT_SERVING.\n\n"
      "One server per store and per port: a second server on the same --db (locked\n"
      "through <db>.lock) or the same port exits at once with status 2.\n"
      "grpc.health.v1 answers SERVING once the server is ready, NOT_SERVING while it\n"
      "shuts down; server reflection lists its services.\n\n"
      "SIGINT and SIGTERM stop the server gracefully. SIGHUP is logged and ignored:\n"
      "the configuration is read only at start, so restart to change it.");
  {
    absl::FlagsUsageConfig usage = absl::flags_internal::GetUsageConfig();
    usage.version_string = [] { return std::string("tinyfed-server " TINYFED_VERSION "\n"); };
    absl::SetFlagsUsageConfig(usage);
  }
  gpr_set_log_function(&GrpcLogToDebug);
  const std::vector<char*> positional =
      tinyfed::ParseFlagsOrAnswerHelp(std::vector<char*>(argv, argv + argc));
  if (positional.size() > 1) {
    return Fail(absl::StrCat("unexpected argument '", positional[1],
                             "': options are flags (--db FILE); see --help"));
  }
  if (!IsLogLevel(absl::GetFlag(FLAGS_log_level))) {
    return Fail(absl::StrCat("--log_level must be trace, debug, info, warn or error, got '",
                             absl::GetFlag(FLAGS_log_level), "'"));
  }
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
  if (const std::string v = absl::GetFlag(FLAGS_tls_cert); !v.empty()) {
    config.mutable_tls()->set_cert_file(v);
  }
  if (const std::string v = absl::GetFlag(FLAGS_tls_key); !v.empty()) {
    config.mutable_tls()->set_key_file(v);
  }
  if (const std::string v = absl::GetFlag(FLAGS_tls_client_ca); !v.empty()) {
    config.mutable_tls()->set_client_ca_file(v);
  }
  if (absl::GetFlag(FLAGS_insecure_plaintext)) config.mutable_tls()->set_insecure_plaintext(true);
  if (const std::string v = absl::GetFlag(FLAGS_fleet_key); !v.empty()) {
    config.set_fleet_key_file(v);
  }
  if (const std::string v = absl::GetFlag(FLAGS_admin_tokens); !v.empty()) {
    config.mutable_admin()->set_token_file(v);
  }
  if (const std::string v = absl::GetFlag(FLAGS_metrics_listen); !v.empty()) {
    config.set_metrics_listen(v);
  }
  ApplyDefaults(&config);
  if (absl::Status s = tinyfed::server::ValidateServerConfig(config); !s.ok()) {
    return Fail(std::string(s.message()));
  }

  absl::StatusOr<std::shared_ptr<grpc::ServerCredentials>> credentials =
      tinyfed::server::MakeServerCredentials(config.tls());
  if (!credentials.ok()) return Fail(std::string(credentials.status().message()));
  absl::StatusOr<std::unique_ptr<tinyfed::server::AdminAuthorizer>> authorizer =
      tinyfed::server::AdminAuthorizer::Create(config);
  if (!authorizer.ok()) return Fail(std::string(authorizer.status().message()));
  // The port, then the store's lock, before any file beside the store is
  // created or changed: a second server on either exits here, leaving the
  // first one's files alone.
  if (absl::Status s = tinyfed::server::CheckCanListen(config); !s.ok()) {
    return Fail(std::string(s.message()));
  }
  // Bound now, with the gRPC port's check; served once the server is up.
  tinyfed::server::ServerMetrics metrics;
  std::unique_ptr<tinyfed::server::MetricsHttpServer> metrics_http;
  if (const std::string& v = config.metrics_listen(); !v.empty()) {
    absl::StatusOr<std::unique_ptr<tinyfed::server::MetricsHttpServer>> bound =
        tinyfed::server::MetricsHttpServer::Bind(v);
    if (!bound.ok()) return Fail(std::string(bound.status().message()));
    metrics_http = std::move(*bound);
  }
  absl::StatusOr<std::unique_ptr<tinyfed::server::StoreLock>> lock =
      tinyfed::server::StoreLock::Acquire(config.db());
  if (!lock.ok()) return Fail(absl::StrCat(config.db(), ": ", lock.status().message()));

  // A named key must exist; the default one beside the store is made on
  // first start. Both are refused with a mode above 0600.
  const bool default_fleet_key = config.fleet_key_file().empty();
  const std::string fleet_key_path =
      default_fleet_key ? config.db() + ".fleet.key" : config.fleet_key_file();
  bool created_fleet_key = false;
  absl::StatusOr<tinyfed::Key256> fleet_key =
      default_fleet_key
          ? tinyfed::server::LoadOrCreateFleetKey(fleet_key_path, &created_fleet_key)
          : tinyfed::LoadFleetKey(fleet_key_path);
  if (!fleet_key.ok()) {
    return Fail(absl::StrCat("fleet key: ", fleet_key.status().message()));
  }
  if (created_fleet_key) {
    spdlog::info("created the fleet key {} (mode 0600): back it up, and give each device its key "
                 "with: tinyfed-admin keys device --fleet {} --device ID",
                 fleet_key_path, fleet_key_path);
  }

  tinyfed::server::SystemClock clock;
  absl::StatusOr<tinyfed::v1::ModelVersion> initial =
      tinyfed::server::InitialModel(config, clock.NowMs());
  if (!initial.ok()) return Fail(std::string(initial.status().message()));
  absl::StatusOr<std::unique_ptr<tinyfed::server::ModelStore>> store =
      tinyfed::server::OpenSqliteModelStore(config.db());
  if (!store.ok()) return Fail(absl::StrCat(config.db(), ": ", store.status().message()));
  absl::StatusOr<std::unique_ptr<tinyfed::server::RoundManager>> manager =
      tinyfed::server::RoundManager::Create(config, *initial, store->get(), &clock,
                                            &metrics);
  if (!manager.ok()) return Fail(std::string(manager.status().message()));

  absl::StatusOr<std::unique_ptr<tinyfed::server::DeviceAuthenticator>> auth =
      tinyfed::server::DeviceAuthenticator::Create(*fleet_key, store->get());
  if (!auth.ok()) {
    return Fail(absl::StrCat(config.db(), ": revocation list: ", auth.status().message()));
  }
  const tinyfed::server::RequestLimits limits = tinyfed::server::RequestLimitsFromConfig(config);
  tinyfed::server::CoordinatorService service(manager->get(), auth->get(), limits, &metrics);
  // Health follows pause and resume, from the first call the port takes
  // until the drain, which has the last word: a resume answered while the
  // server shuts down does not turn it back to SERVING.
  absl::Mutex health_mu;
  grpc::Server* health_server = nullptr;  // guarded by health_mu; set once serving
  bool draining = false;                  // guarded by health_mu
  tinyfed::server::AdminService admin(
      manager->get(), store->get(), auth->get(), authorizer->get(), &clock, TINYFED_VERSION,
      [&](bool serving) {
        absl::MutexLock lock(&health_mu);
        if (health_server != nullptr && !draining) {
          tinyfed::server::SetServingHealth(health_server, serving);
        }
      });
  absl::StatusOr<tinyfed::server::StartedGrpcServer> started =
      tinyfed::server::StartGrpcServer(config, *credentials, {&service, &admin});
  if (!started.ok()) return Fail(std::string(started.status().message()));
  std::unique_ptr<grpc::Server> server = std::move(started->server);
  const tinyfed::v1::TlsConfig& tls = config.tls();
  if (tls.insecure_plaintext() && !tinyfed::server::IsLoopbackAddress(config.listen())) {
    spdlog::warn("--insecure_plaintext: serving plaintext on {}; anyone on the path can read "
                 "and alter every update. Use --tls_cert and --tls_key.",
                 config.listen());
  }
  // Served only from here on: every exit after this point stops it before
  // the manager it reads goes away.
  if (metrics_http != nullptr) {
    metrics_http->Serve(
        [&metrics, m = manager->get(), s = store->get()] {
          // A store that cannot answer costs the scrape its fleet gauges
          // (written as NaN), not the round's.
          absl::StatusOr<std::optional<tinyfed::server::VersionEvaluation>> fleet =
              s->LatestFleetEvaluation();
          return metrics.Render(m->Snapshot(),
                                fleet.ok() && fleet->has_value() ? &**fleet : nullptr);
        },
        [&admin]() -> absl::StatusOr<std::string> {
          absl::StatusOr<tinyfed::v1::ServerStatus> status = admin.Status();
          if (!status.ok()) return status.status();
          absl::StatusOr<std::vector<tinyfed::v1::ModelVersion>> versions =
              admin.Versions(0, tinyfed::server::kStatusPageVersions);
          if (!versions.ok()) return versions.status();
          return tinyfed::server::RenderStatusPage(*status, *versions);
        });
    spdlog::info("metrics on http://{}/metrics and the status page on http://{}/ (port {})",
                 config.metrics_listen(), config.metrics_listen(), metrics_http->port());
  }
  // Ready: the store is open and the round manager has resumed it. Tests
  // and scripts wait for the "listening" line below, so it comes after.
  const tinyfed::server::PauseState paused = (*manager)->Paused();
  {
    absl::MutexLock lock(&health_mu);
    health_server = server.get();
    tinyfed::server::SetServingHealth(server.get(), !paused.paused);
    tinyfed::server::SetAdminHealth(server.get(), true);
  }
  if (paused.paused) {
    spdlog::warn("paused by {} since {} ms after the epoch: no round opens and health checks "
                 "answer NOT_SERVING until an admin resumes (tinyfed-admin resume)",
                 paused.by, paused.since_unix_ms);
  }
  spdlog::info("admin calls are taken from: {}", (*authorizer)->Describe());
  if ((*authorizer)->token_count() > 0 && tls.cert_file().empty() &&
      !tinyfed::server::IsLoopbackAddress(config.listen())) {
    spdlog::warn("admin tokens travel in plaintext on {}: anyone on the path can read them and "
                 "act as an admin. Use --tls_cert and --tls_key.",
                 config.listen());
  }
  spdlog::info("tinyfed-server listening on {} (port {}, {}), store {}, fleet key {}",
               config.listen(), started->port,
               tls.cert_file().empty()            ? "plaintext"
               : tls.client_ca_file().empty()     ? "TLS"
                                                  : "TLS with client certificates",
               config.db(), fleet_key_path);
  spdlog::info("largest request: CheckIn {} bytes, SubmitUpdate {} bytes; at most {} calls per "
               "connection; idle connections closed after {} ms",
               limits.check_in_bytes, limits.update_bytes,
               config.limits().max_concurrent_streams(), config.limits().max_connection_idle_ms());

  absl::Notification stop;
  std::thread ticker([&] {
    while (!stop.WaitForNotificationWithTimeout(absl::Milliseconds(100))) (*manager)->Tick();
  });
  int received = 0;
  while (sigwait(&signals, &received) == 0 && received == SIGHUP) {
    spdlog::info("SIGHUP ignored: the configuration is read only at start; restart the server "
                 "to change it");
  }
  spdlog::info("signal {}: shutting down", received);
  // Health checkers see NOT_SERVING before the port stops taking calls, so
  // that balancers move new work elsewhere while the last calls finish.
  {
    absl::MutexLock lock(&health_mu);
    draining = true;
    tinyfed::server::SetServingHealth(server.get(), false);
    tinyfed::server::SetAdminHealth(server.get(), false);
  }
  server->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(5));
  stop.Notify();
  ticker.join();
  metrics_http.reset();
  manager->reset();
  auth->reset();
  store->reset();
  lock->reset();
  spdlog::info("stopped");
  return 0;
}
