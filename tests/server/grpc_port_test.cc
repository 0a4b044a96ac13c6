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
#include "tinyfed/v1/coordinator.grpc.pb.h"
#include "tls_credentials.h"

namespace tinyfed::server {
namespace {

using namespace std::chrono_literals;

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

// The raw HealthCheckResponse for `service`, or the call's error.
std::string HealthCheck(int port, const std::string& service) {
  grpc::GenericStub stub(grpc::CreateChannel(absl::StrCat("127.0.0.1:", port),
                                             grpc::InsecureChannelCredentials()));
  // HealthCheckRequest: field 1 (string), when not empty.
  std::string request_bytes;
  if (!service.empty()) {
    request_bytes = std::string("\x0a", 1) + static_cast<char>(service.size()) + service;
  }
  grpc::ClientContext context;
  context.set_deadline(std::chrono::system_clock::now() + 10s);
  grpc::Slice slice(request_bytes);
  grpc::ByteBuffer request(&slice, 1), reply;
  std::promise<grpc::Status> done;
  stub.UnaryCall(&context, "/grpc.health.v1.Health/Check", grpc::StubOptions(), &request, &reply,
                 [&](grpc::Status s) { done.set_value(std::move(s)); });
  const grpc::Status status = done.get_future().get();
  if (!status.ok()) return absl::StrCat("error ", status.error_code());
  grpc::Slice all;
  if (!reply.DumpToSingleSlice(&all).ok()) return "unreadable";
  return std::string(reinterpret_cast<const char*>(all.begin()), all.size());
}

const std::string kServing("\x08\x01", 2);
const std::string kNotServing("\x08\x02", 2);

TEST(GrpcPort, HealthIsNotServingUntilTheCallerIsReady) {
  const v1::ServerConfig config = LoopbackConfig();
  v1::Coordinator::Service coordinator;
  absl::StatusOr<StartedGrpcServer> started =
      StartGrpcServer(config, Plaintext(config), &coordinator);
  ASSERT_TRUE(started.ok()) << started.status();
  EXPECT_EQ(HealthCheck(started->port, ""), kNotServing);
  EXPECT_EQ(HealthCheck(started->port, "tinyfed.v1.Coordinator"), kNotServing);
  SetServingHealth(started->server.get(), true);
  EXPECT_EQ(HealthCheck(started->port, ""), kServing);
  EXPECT_EQ(HealthCheck(started->port, "tinyfed.v1.Coordinator"), kServing);
  // The hook a pause (or a drain) uses.
  SetServingHealth(started->server.get(), false);
  EXPECT_EQ(HealthCheck(started->port, ""), kNotServing);
  EXPECT_EQ(HealthCheck(started->port, "tinyfed.v1.Coordinator"), kNotServing);
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
