// The tinyfed server in-process for benchmarks: store, round manager,
// device authenticator and Coordinator service on a loopback port, wired as
// tinyfed-server wires them, plus a fleet of devices checked in to its
// open round and their updates signed as the devices would sign them.
//
// tinyfed-server always updates its ServerMetrics on the request path
// (--metrics_listen only decides whether they are served), so this server
// does too.
//
// A second Coordinator service over the same round manager, on a port of
// its own, is the baseline that shows what one part of the server costs:
// with authentication off (no DeviceAuthenticator: the envelope is
// unwrapped, its tag not checked), or with metrics off (no ServerMetrics;
// the round manager, shared, still counts closed rounds, once per round).
// Both take updates of the same round, so a benchmark can alternate
// between them on one fleet.
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
#include "device_auth.h"
#include "metrics.h"
#include "round_manager.h"
#include "tinyfed/v1/round.pb.h"
#include "tinyfed/v1/server_config.pb.h"
#include "tinyfed_common/fleet_keys.h"

namespace tinyfed::bench {

// What the baseline service leaves out; everything else is as deployed.
enum class Baseline { kNoAuthentication, kNoMetrics };

class ServerUnderTest {
 public:
  // Opens config.db(), authenticates devices under `fleet_key` and listens
  // on 127.0.0.1 on two free ports (the server as deployed, and the
  // baseline).
  // REQUIRES: ValidateServerConfig(config) is OK.
  static absl::StatusOr<std::unique_ptr<ServerUnderTest>> Start(const v1::ServerConfig& config,
                                                                const Key256& fleet_key,
                                                                Baseline baseline);
  ~ServerUnderTest();

  server::RoundManager& manager() { return *manager_; }
  server::ModelStore& store() { return *store_; }
  // Updated by the server as deployed (and by the baseline without
  // authentication), never by the baseline without metrics.
  const server::ServerMetrics& metrics() const { return metrics_; }
  // The server as deployed: every request's tag checked, metrics updated.
  int port() const { return port_; }
  // The benchmark's baseline only.
  int baseline_port() const { return baseline_port_; }

 private:
  ServerUnderTest() = default;
  server::SystemClock clock_;
  server::ServerMetrics metrics_;  // declared first: outlives all that update it
  std::unique_ptr<server::ModelStore> store_;
  std::unique_ptr<server::RoundManager> manager_;
  std::unique_ptr<server::DeviceAuthenticator> auth_;
  std::unique_ptr<server::CoordinatorService> service_;
  std::unique_ptr<server::CoordinatorService> baseline_service_;
  std::unique_ptr<grpc::Server> server_;
  std::unique_ptr<grpc::Server> baseline_server_;
  int port_ = 0;
  int baseline_port_ = 0;
};

// "bench-000042": device i of the fleet.
std::string DeviceId(uint32_t i);

// Checks devices 0..count-1 in directly through the manager (no gRPC) and
// builds each one's valid update for the task it got, with a random sample
// count in [1, 200]. Fails when a device gets no task.
absl::StatusOr<std::vector<v1::Update>> CheckInFleet(server::RoundManager& manager, uint32_t count,
                                                     std::mt19937& rng);

// Each update serialized in its SignedRequest, tagged with its device's
// key under `fleet_key`, as the bytes a device sends to SubmitUpdate.
std::vector<grpc::ByteBuffer> SignedRequests(const Key256& fleet_key,
                                             const std::vector<v1::Update>& updates);

}  // namespace tinyfed::bench

#endif  // TINYFED_TESTS_BENCH_SERVER_UNDER_TEST_H_
