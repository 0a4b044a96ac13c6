// The gRPC port: a port in use is refused by gRPC's own bind, and health
// checking answers NOT_SERVING until its caller says it is ready. Health is
// read with hand-encoded grpc.health.v1 messages (HealthCheckRequest
// {service = 1}, HealthCheckResponse {status = 1}: SERVING = 1,
// NOT_SERVING = 2), independent of gRPC's own health code.
#include "grpc_port.h"

#include <chrono>
#include <future>
#include <memory>
#include <string>

#include <grpcpp/generic/generic_stub.h>
#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>

#include "absl/strings/str_cat.h"
#include "server_config.h"
#include "server_test_support.h"
#include "tinyfed/v1/coordinator.grpc.pb.h"
#include "tls_credentials.h"

namespace tinyfed::server {
namespace {

using namespace std::chrono_literals;
using testing::HealthStatus;

v1::ServerConfig LoopbackConfig() {
  v1::ServerConfig config;
  ApplyDefaults(&config);
  config.set_listen("127.0.0.1:0");
  return config;
}

std::shared_ptr<grpc::ServerCredentials> Plaintext(const v1::ServerConfig& config) {
  absl::StatusOr<std::shared_ptr<grpc::ServerCredentials>> credentials =
      MakeServerCredentials(config.tls());
  EXPECT_TRUE(credentials.ok()) << credentials.status();
  return credentials.ok() ? *credentials : nullptr;
}

// HealthStatus at the server's loopback port.
std::string HealthCheck(int port, const std::string& service) {
  return HealthStatus(absl::StrCat("127.0.0.1:", port), service);
}


TEST(GrpcPort, HealthIsNotServingUntilTheCallerIsReady) {
  const v1::ServerConfig config = LoopbackConfig();
  v1::Coordinator::Service coordinator;
  absl::StatusOr<StartedGrpcServer> started =
      StartGrpcServer(config, Plaintext(config), &coordinator);
  ASSERT_TRUE(started.ok()) << started.status();
  EXPECT_EQ(HealthCheck(started->port, ""), "NOT_SERVING");
  EXPECT_EQ(HealthCheck(started->port, "tinyfed.v1.Coordinator"), "NOT_SERVING");
  SetServingHealth(started->server.get(), true);
  EXPECT_EQ(HealthCheck(started->port, ""), "SERVING");
  EXPECT_EQ(HealthCheck(started->port, "tinyfed.v1.Coordinator"), "SERVING");
  // The hook a pause (or a drain) uses.
  SetServingHealth(started->server.get(), false);
  EXPECT_EQ(HealthCheck(started->port, ""), "NOT_SERVING");
  EXPECT_EQ(HealthCheck(started->port, "tinyfed.v1.Coordinator"), "NOT_SERVING");
  started->server->Shutdown();
}

// The check before the store is only a first line of defence (another
// process may bind in between); gRPC's own bind must refuse a port in use
// too, which it does only with SO_REUSEPORT off.
TEST(GrpcPort, StartGrpcServerRefusesAPortInUse) {
  v1::ServerConfig config = LoopbackConfig();
  const std::shared_ptr<grpc::ServerCredentials> credentials = Plaintext(config);
  v1::Coordinator::Service first_coordinator, second_coordinator;
  absl::StatusOr<StartedGrpcServer> first =
      StartGrpcServer(config, credentials, &first_coordinator);
  ASSERT_TRUE(first.ok()) << first.status();
  config.set_listen(absl::StrCat("127.0.0.1:", first->port));
  EXPECT_EQ(CheckCanListen(config).code(), absl::StatusCode::kUnavailable);
  absl::StatusOr<StartedGrpcServer> second =
      StartGrpcServer(config, credentials, &second_coordinator);
  EXPECT_EQ(second.status().code(), absl::StatusCode::kUnavailable)
      << "a second gRPC server bound port " << first->port;
  first->server->Shutdown();
  if (second.ok()) second->server->Shutdown();
}

}  // namespace
}  // namespace tinyfed::server
