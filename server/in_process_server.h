// A tinyfed server inside the caller's process, on a free loopback port,
// with its SQLite store in a temporary directory removed on destruction:
// what `tinyfed-agent simulate` runs against when no --server is given, and
// what integration tests talk to. Deadlines are checked every 50 ms.
// Devices authenticate as with tinyfed-server (DeviceAuthenticator), with
// the fleet key of config.fleet_key_file, or else a new one created in the
// temporary directory (fleet_key() gives it, to derive device keys).
// It serves the Admin service too (admin_service.h), authorized as
// tinyfed-server authorizes it (admin_auth.h: on the default plaintext
// loopback port every local caller is an admin); a pause sets health to
// NOT_SERVING and a resume back to SERVING, as in tinyfed-server.
// Not copyable; safe for concurrent use once started.
#ifndef TINYFED_SERVER_IN_PROCESS_SERVER_H_
#define TINYFED_SERVER_IN_PROCESS_SERVER_H_

#include <memory>
#include <string>
#include <thread>

#include <grpcpp/grpcpp.h>

#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "tinyfed_common/fleet_keys.h"
#include "tinyfed/v1/server_config.pb.h"

namespace tinyfed::server {

class ModelStore;
class RoundManager;
class CoordinatorService;
class DeviceAuthenticator;
class SystemClock;
class AdminAuthorizer;
class AdminService;

class InProcessServer {
 public:
  // `config` has its defaults applied (ApplyDefaults) and must pass
  // ValidateServerConfig() (INVALID_ARGUMENT otherwise); its listen and db
  // options are replaced. Its tls and limits apply as in tinyfed-server
  // (StartGrpcServer), so tests can run TLS and the edge limits in process.
  // LoadFleetKey's error for a bad config.fleet_key_file;
  // AdminAuthorizer::Create's for a bad config.admin.token_file.
  static absl::StatusOr<std::unique_ptr<InProcessServer>> Start(v1::ServerConfig config);
  ~InProcessServer();

  const std::string& address() const { return address_; }
  RoundManager& manager() { return *manager_; }
  const Key256& fleet_key() const { return fleet_key_; }
  // Revokes devices, as an operator would.
  DeviceAuthenticator& auth() { return *auth_; }
  // The store the server writes (tests compare what the Admin service
  // answers with it) and the Admin service (its in-process Status() and
  // Versions(), as the status page calls them).
  ModelStore& store() { return *store_; }
  AdminService& admin() { return *admin_; }

 private:
  InProcessServer() = default;

  std::string dir_;
  std::string address_;
  std::unique_ptr<SystemClock> clock_;
  std::unique_ptr<ModelStore> store_;
  std::unique_ptr<RoundManager> manager_;
  Key256 fleet_key_;
  std::unique_ptr<DeviceAuthenticator> auth_;
  std::unique_ptr<CoordinatorService> service_;
  std::unique_ptr<AdminAuthorizer> authorizer_;
  std::unique_ptr<AdminService> admin_;
  // The admin's health hook may run as soon as the port serves, before
  // Start() has stored grpc_server_: it sets health through this pointer,
  // null until then.
  absl::Mutex health_mu_;
  grpc::Server* health_server_ ABSL_GUARDED_BY(health_mu_) = nullptr;
  std::unique_ptr<grpc::Server> grpc_server_;
  absl::Notification stop_;
  std::unique_ptr<std::thread> ticker_;
};

}  // namespace tinyfed::server

#endif  // TINYFED_SERVER_IN_PROCESS_SERVER_H_
