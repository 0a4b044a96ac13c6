#include "in_process_server.h"

#include <cstdlib>
#include <filesystem>
#include <thread>

#include "absl/strings/str_cat.h"
#include "admin_auth.h"
#include "admin_service.h"
#include "clock.h"
#include "coordinator_service.h"
#include "device_auth.h"
#include "grpc_port.h"
#include "model_store.h"
#include "round_manager.h"
#include "server_config.h"
#include "tls_credentials.h"

namespace tinyfed::server {

absl::StatusOr<std::unique_ptr<InProcessServer>> InProcessServer::Start(v1::ServerConfig config) {
  std::unique_ptr<InProcessServer> s(new InProcessServer());
  std::string templ = (std::filesystem::temp_directory_path() / "tinyfed-sim-XXXXXX").string();
  if (mkdtemp(templ.data()) == nullptr) {
    return absl::UnavailableError("cannot create a temporary directory for the store");
  }
  s->dir_ = templ;
  absl::StatusOr<Key256> fleet_key = config.fleet_key_file().empty()
                                         ? CreateFleetKeyFile(s->dir_ + "/fleet.key")
                                         : LoadFleetKey(config.fleet_key_file());
  if (!fleet_key.ok()) return fleet_key.status();
  s->fleet_key_ = *fleet_key;
  config.set_listen("127.0.0.1:0");
  config.set_db(s->dir_ + "/store.db");
  if (absl::Status v = ValidateServerConfig(config); !v.ok()) return v;
  absl::StatusOr<std::shared_ptr<grpc::ServerCredentials>> credentials =
      MakeServerCredentials(config.tls());
  if (!credentials.ok()) return credentials.status();
  s->clock_ = std::make_unique<SystemClock>();
  absl::StatusOr<v1::ModelVersion> initial = InitialModel(config, s->clock_->NowMs());
  if (!initial.ok()) return initial.status();
  absl::StatusOr<std::unique_ptr<ModelStore>> store =
      OpenSqliteModelStore(config.db());
  if (!store.ok()) return store.status();
  s->store_ = std::move(*store);
  absl::StatusOr<std::unique_ptr<RoundManager>> manager =
      RoundManager::Create(config, *initial, s->store_.get(), s->clock_.get());
  if (!manager.ok()) return manager.status();
  s->manager_ = std::move(*manager);
  absl::StatusOr<std::unique_ptr<DeviceAuthenticator>> auth =
      DeviceAuthenticator::Create(s->fleet_key_, s->store_.get());
  if (!auth.ok()) return auth.status();
  s->auth_ = std::move(*auth);
  s->service_ = std::make_unique<CoordinatorService>(s->manager_.get(), s->auth_.get(),
                                                     RequestLimitsFromConfig(config));
  absl::StatusOr<std::unique_ptr<AdminAuthorizer>> authorizer = AdminAuthorizer::Create(config);
  if (!authorizer.ok()) return authorizer.status();
  s->authorizer_ = std::move(*authorizer);
  InProcessServer* raw = s.get();
  s->admin_ = std::make_unique<AdminService>(
      s->manager_.get(), s->store_.get(), s->auth_.get(), s->authorizer_.get(), s->clock_.get(),
      TINYFED_VERSION, [raw](bool serving) {
        absl::MutexLock lock(&raw->health_mu_);
        if (raw->health_server_ != nullptr) SetServingHealth(raw->health_server_, serving);
      });
  absl::StatusOr<StartedGrpcServer> started =
      StartGrpcServer(config, *credentials, {s->service_.get(), s->admin_.get()});
  if (!started.ok()) return started.status();
  s->grpc_server_ = std::move(started->server);
  {
    // Nothing is left to start: health checking says so (StartGrpcServer
    // leaves it NOT_SERVING, for servers that are not ready yet), unless
    // the store says the server was paused. Under the hook's lock, so that
    // a pause or resume already answered is not overwritten.
    absl::MutexLock lock(&s->health_mu_);
    s->health_server_ = s->grpc_server_.get();
    SetServingHealth(s->grpc_server_.get(), !s->manager_->Paused().paused);
    SetAdminHealth(s->grpc_server_.get(), true);
  }
  s->address_ = absl::StrCat("127.0.0.1:", started->port);
  s->ticker_ = std::make_unique<std::thread>([raw] {
    while (!raw->stop_.WaitForNotificationWithTimeout(absl::Milliseconds(50))) {
      raw->manager_->Tick();
    }
  });
  return s;
}

InProcessServer::~InProcessServer() {
  if (grpc_server_) grpc_server_->Shutdown();
  {
    absl::MutexLock lock(&health_mu_);
    health_server_ = nullptr;
  }
  stop_.Notify();
  if (ticker_) ticker_->join();
  manager_.reset();
  auth_.reset();
  store_.reset();
  if (!dir_.empty()) {
    std::error_code ec;
    std::filesystem::remove_all(dir_, ec);
  }
}

}  // namespace tinyfed::server
