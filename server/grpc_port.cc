#include "grpc_port.h"

#include <netdb.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <climits>
#include <cstring>
#include <string>

#include <grpcpp/ext/proto_server_reflection_plugin.h>
#include <grpcpp/health_check_service_interface.h>

#include "absl/strings/str_cat.h"
#include "server_config.h"
#include "tinyfed/v1/admin.grpc.pb.h"
#include "tinyfed/v1/coordinator.grpc.pb.h"

namespace tinyfed::server {
namespace {

// errno of binding one resolved address with the options gRPC uses
// (SO_REUSEADDR, so a port whose old connections linger in TIME_WAIT is
// not refused), or 0 when it binds.
int TryBind(const addrinfo& address) {
  const int fd = socket(address.ai_family, address.ai_socktype | SOCK_CLOEXEC, address.ai_protocol);
  if (fd < 0) return errno;
  const int on = 1;
  setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &on, sizeof(on));
  const int error = bind(fd, address.ai_addr, address.ai_addrlen) == 0 ? 0 : errno;
  close(fd);
  return error;
}

}  // namespace

absl::Status CheckCanListen(const v1::ServerConfig& config) {
  absl::StatusOr<ListenAddress> listen = ParseListenAddress(config.listen());
  if (!listen.ok()) return listen.status();
  if (listen->port == 0) return absl::OkStatus();
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_PASSIVE;
  addrinfo* addresses = nullptr;
  const std::string port = std::to_string(listen->port);
  if (const int error = getaddrinfo(listen->host.empty() ? nullptr : listen->host.c_str(),
                                    port.c_str(), &hints, &addresses);
      error != 0) {
    return absl::UnavailableError(
        absl::StrCat("cannot listen on ", config.listen(), ": ", gai_strerror(error)));
  }
  int first_error = 0;
  bool bound = false;
  for (const addrinfo* a = addresses; a != nullptr; a = a->ai_next) {
    const int error = TryBind(*a);
    if (error == EADDRINUSE) {
      freeaddrinfo(addresses);
      return absl::UnavailableError(absl::StrCat(
          "cannot listen on ", config.listen(),
          ": the port is in use (another tinyfed-server, or another program, listens on it)"));
    }
    if (error == 0) bound = true;
    if (first_error == 0) first_error = error;
  }
  freeaddrinfo(addresses);
  if (!bound) {
    return absl::UnavailableError(
        absl::StrCat("cannot listen on ", config.listen(), ": ", std::strerror(first_error)));
  }
  return absl::OkStatus();
}

absl::StatusOr<StartedGrpcServer> StartGrpcServer(
    const v1::ServerConfig& config, std::shared_ptr<grpc::ServerCredentials> credentials,
    const std::vector<grpc::Service*>& services) {
  // Both are process-wide switches that every server built afterwards
  // picks up; setting them again is harmless.
  grpc::EnableDefaultHealthCheckService(true);
  grpc::reflection::InitProtoReflectionServerBuilderPlugin();
  StartedGrpcServer started;
  grpc::ServerBuilder builder;
  builder.AddListeningPort(config.listen(), std::move(credentials), &started.port);
  for (grpc::Service* service : services) builder.RegisterService(service);
  builder.SetMaxReceiveMessageSize(static_cast<int>(RequestLimitsFromConfig(config).largest()));
  builder.AddChannelArgument(GRPC_ARG_ALLOW_REUSEPORT, 0);
  const v1::EdgeLimits& limits = config.limits();
  builder.AddChannelArgument(
      GRPC_ARG_MAX_CONCURRENT_STREAMS,
      static_cast<int>(std::min<uint32_t>(limits.max_concurrent_streams(), INT_MAX)));
  builder.AddChannelArgument(
      GRPC_ARG_MAX_CONNECTION_IDLE_MS,
      static_cast<int>(std::min<uint32_t>(limits.max_connection_idle_ms(), INT_MAX)));
  started.server = builder.BuildAndStart();
  if (started.server == nullptr || started.port == 0) {
    return absl::UnavailableError(absl::StrCat("cannot listen on ", config.listen()));
  }
  // gRPC's default health service starts out SERVING; the caller says when
  // it is.
  SetServingHealth(started.server.get(), false);
  SetAdminHealth(started.server.get(), false);
  return started;
}

void SetServingHealth(grpc::Server* server, bool serving) {
  grpc::HealthCheckServiceInterface* health = server->GetHealthCheckService();
  if (health == nullptr) return;
  // By name: gRPC's unnamed SetServingStatus sets every service, the
  // Admin service's too, which a pause must leave serving.
  health->SetServingStatus("", serving);
  health->SetServingStatus(v1::Coordinator::service_full_name(), serving);
}

void SetAdminHealth(grpc::Server* server, bool serving) {
  grpc::HealthCheckServiceInterface* health = server->GetHealthCheckService();
  if (health == nullptr) return;
  health->SetServingStatus(v1::Admin::service_full_name(), serving);
}

}  // namespace tinyfed::server
