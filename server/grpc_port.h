// The server's gRPC port: one place that applies the configuration's
// transport security (tls) and edge limits (limits, and the receive bound
// derived from the head) to a grpc::Server, for tinyfed-server and for the
// in-process server alike, and serves gRPC health checking
// (grpc.health.v1.Health) and server reflection
// (grpc.reflection.v1alpha.ServerReflection) beside the Coordinator and
// the Admin service.
#ifndef TINYFED_SERVER_GRPC_PORT_H_
#define TINYFED_SERVER_GRPC_PORT_H_

#include <memory>
#include <utility>
#include <vector>

#include <grpcpp/grpcpp.h>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "tinyfed/v1/server_config.pb.h"

namespace tinyfed::server {

struct StartedGrpcServer {
  std::unique_ptr<grpc::Server> server;
  int port = 0;  // the bound port (the one the system chose for port 0)
};

// Whether config.listen() can be bound now, checked with a socket of our
// own before anything else is created, so that a taken port fails before
// the store is created or changed. Every address the host resolves to is
// tried, as gRPC binds them all: UNAVAILABLE naming the address when one is
// in use by another socket (a second server on the port) or when none can
// be bound. Port 0 always passes. The port is not held: StartGrpcServer may
// still fail if another process binds it in between.
// REQUIRES: ValidateServerConfig(config) is OK.
absl::Status CheckCanListen(const v1::ServerConfig& config);

// Starts a gRPC server on config.listen() with `credentials`
// (MakeServerCredentials(config.tls()), made by the caller so that bad PEM
// files are reported before anything else starts) serving `services` (not
// owned; each must outlive the server; tinyfed-server passes the
// Coordinator and the Admin service). The port is never shared:
// SO_REUSEPORT, which gRPC sets by default and which let a second server
// take half of the first one's connections, is off, so binding a port in
// use fails. gRPC refuses a message above
// RequestLimitsFromConfig(config).largest() with RESOURCE_EXHAUSTED before
// any handler runs, so it is never parsed (gRPC 1.51 checks the size once
// its transport has the whole message: the raw bytes are held until then,
// the parser's many-fold cost is not paid); a connection holds at most
// limits.max_concurrent_streams calls and is closed after
// limits.max_connection_idle_ms without one. Health checking answers
// NOT_SERVING until the caller calls SetServingHealth(server, true) (and
// SetAdminHealth for "tinyfed.v1.Admin").
// REQUIRES: ValidateServerConfig(config) is OK.
// UNAVAILABLE when the address cannot be bound.
absl::StatusOr<StartedGrpcServer> StartGrpcServer(
    const v1::ServerConfig& config, std::shared_ptr<grpc::ServerCredentials> credentials,
    const std::vector<grpc::Service*>& services);
// The same, serving one service.
inline absl::StatusOr<StartedGrpcServer> StartGrpcServer(
    const v1::ServerConfig& config, std::shared_ptr<grpc::ServerCredentials> credentials,
    grpc::Service* service) {
  return StartGrpcServer(config, std::move(credentials), std::vector<grpc::Service*>{service});
}

// Sets what grpc.health.v1.Health answers, for the whole server (service
// "") and for "tinyfed.v1.Coordinator" alike: SERVING when `serving`,
// NOT_SERVING otherwise. Callers set SERVING once they are ready to take
// rounds and NOT_SERVING before they drain; a pause of new rounds (the
// admin service) is meant to set NOT_SERVING through here too. After
// server->Shutdown() it has no effect (gRPC answers NOT_SERVING then).
// Safe for concurrent use. REQUIRES: `server` came from StartGrpcServer.
void SetServingHealth(grpc::Server* server, bool serving);

// Sets what grpc.health.v1.Health answers for "tinyfed.v1.Admin", apart
// from the rest: a paused server takes no new rounds (NOT_SERVING above)
// but its Admin service still serves, to resume it. SERVING once the
// server is up, NOT_SERVING while it drains. Safe for concurrent use.
// REQUIRES: `server` came from StartGrpcServer.
void SetAdminHealth(grpc::Server* server, bool serving);

}  // namespace tinyfed::server

#endif  // TINYFED_SERVER_GRPC_PORT_H_
