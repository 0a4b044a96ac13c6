// A tinyfed server inside the agent's process, on a free loopback port, with
// its SQLite store in a temporary directory removed on destruction: what
// `tinyfed-agent simulate` runs against when no --server is given.
// Not copyable; safe for concurrent use once started.
#ifndef TINYFED_DEVICE_AGENT_IN_PROCESS_SERVER_H_
#define TINYFED_DEVICE_AGENT_IN_PROCESS_SERVER_H_

#include <memory>
#include <string>
#include <thread>

#include <grpcpp/grpcpp.h>

#include "absl/status/statusor.h"
#include "absl/synchronization/notification.h"
#include "tinyfed/v1/server_config.pb.h"

namespace tinyfed::server {
class ModelStore;
class RoundManager;
class CoordinatorService;
class SystemClock;
}  // namespace tinyfed::server

namespace tinyfed::agent {

class InProcessServer {
 public:
  // `config` must pass ValidateServerConfig() after defaults; its listen and
  // db options are replaced.
  static absl::StatusOr<std::unique_ptr<InProcessServer>> Start(v1::ServerConfig config);
  ~InProcessServer();

  const std::string& address() const { return address_; }

 private:
  InProcessServer() = default;

  std::string dir_;
  std::string address_;
  std::unique_ptr<server::SystemClock> clock_;
  std::unique_ptr<server::ModelStore> store_;
  std::unique_ptr<server::RoundManager> manager_;
  std::unique_ptr<server::CoordinatorService> service_;
  std::unique_ptr<grpc::Server> grpc_server_;
  absl::Notification stop_;
  std::unique_ptr<std::thread> ticker_;
};

}  // namespace tinyfed::agent

#endif  // TINYFED_DEVICE_AGENT_IN_PROCESS_SERVER_H_
