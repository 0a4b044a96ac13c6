#include "grpc_port.h"

#include <climits>

#include "absl/strings/str_cat.h"
#include "server_config.h"

namespace tinyfed::server {

absl::StatusOr<StartedGrpcServer> StartGrpcServer(
    const v1::ServerConfig& config, std::shared_ptr<grpc::ServerCredentials> credentials,
    grpc::Service* service) {
  StartedGrpcServer started;
  grpc::ServerBuilder builder;
  builder.AddListeningPort(config.listen(), std::move(credentials), &started.port);
  builder.RegisterService(service);
  builder.SetMaxReceiveMessageSize(static_cast<int>(RequestLimitsFromConfig(config).largest()));
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
  return started;
}

}  // namespace tinyfed::server
