// The server's gRPC port: one place that applies the configuration's
// transport security (tls) and edge limits (limits, and the receive bound
// derived from the head) to a grpc::Server, for tinyfed-server and for the
// in-process server alike.
#ifndef TINYFED_SERVER_GRPC_PORT_H_
#define TINYFED_SERVER_GRPC_PORT_H_

#include <memory>

#include <grpcpp/grpcpp.h>

#include "absl/status/statusor.h"
#include "tinyfed/v1/server_config.pb.h"

namespace tinyfed::server {

struct StartedGrpcServer {
  std::unique_ptr<grpc::Server> server;
  int port = 0;  // the bound port (the one the system chose for port 0)
};

// Starts a gRPC server on config.listen() with `credentials`
// (MakeServerCredentials(config.tls()), made by the caller so that bad PEM
// files are reported before anything else starts) serving `service` (not
// owned; it must outlive the server). gRPC refuses a message above
// RequestLimitsFromConfig(config).largest() with RESOURCE_EXHAUSTED before
// any handler runs, so it is never parsed (gRPC 1.51 checks the size once
// its transport has the whole message: the raw bytes are held until then,
// the parser's many-fold cost is not paid); a connection holds at most
// limits.max_concurrent_streams calls and is closed after
// limits.max_connection_idle_ms without one.
// REQUIRES: ValidateServerConfig(config) is OK.
// UNAVAILABLE when the address cannot be bound.
absl::StatusOr<StartedGrpcServer> StartGrpcServer(
    const v1::ServerConfig& config, std::shared_ptr<grpc::ServerCredentials> credentials,
    grpc::Service* service);

}  // namespace tinyfed::server

#endif  // TINYFED_SERVER_GRPC_PORT_H_
