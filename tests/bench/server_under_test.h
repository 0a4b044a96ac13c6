// The tinyfed server in-process for benchmarks: store, round manager and
// Coordinator service on a loopback port, wired as tinyfed-server wires
// them, plus a fleet of devices checked in to its open round.
//
// ServerUnderTest is safe for concurrent use through its manager and its
// port; it owns everything it starts and stops it in its destructor.
#ifndef TINYFED_TESTS_BENCH_SERVER_UNDER_TEST_H_
#define TINYFED_TESTS_BENCH_SERVER_UNDER_TEST_H_

#include <grpcpp/grpcpp.h>

#include <cstdint>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "clock.h"
#include "coordinator_service.h"
#include "model_store.h"
#include "round_manager.h"
#include "tinyfed/v1/round.pb.h"
#include "tinyfed/v1/server_config.pb.h"

namespace tinyfed::bench {

class ServerUnderTest {
 public:
  // Opens config.db() and listens on 127.0.0.1 on a free port.
  // REQUIRES: ValidateServerConfig(config) is OK.
  static absl::StatusOr<std::unique_ptr<ServerUnderTest>> Start(const v1::ServerConfig& config);
  ~ServerUnderTest();

  server::RoundManager& manager() { return *manager_; }
  server::ModelStore& store() { return *store_; }
  int port() const { return port_; }

 private:
  ServerUnderTest() = default;
  server::SystemClock clock_;
  std::unique_ptr<server::ModelStore> store_;
  std::unique_ptr<server::RoundManager> manager_;
  std::unique_ptr<server::CoordinatorService> service_;
  std::unique_ptr<grpc::Server> server_;
  int port_ = 0;
};

// "bench-000042": device i of the fleet.
std::string DeviceId(uint32_t i);

// Checks devices 0..count-1 in directly through the manager (no gRPC) and
// builds each one's valid update for the task it got, with a random sample
// count in [1, 200]. Fails when a device gets no task.
absl::StatusOr<std::vector<v1::Update>> CheckInFleet(server::RoundManager& manager, uint32_t count,
                                                     std::mt19937& rng);

}  // namespace tinyfed::bench

#endif  // TINYFED_TESTS_BENCH_SERVER_UNDER_TEST_H_
