// A fleet of virtual devices taking part in rounds against a real server.
//
// Each device is an instance of the C SDK (its own context and arena while
// it is active) with its own shard of the training data. The bytes a
// device encodes with nanopb travel to the server unchanged through gRPC's
// generic API, and the server's bytes come back to the SDK unchanged, so
// every round exercises the real wire. No thread per device: a device has
// an SDK context only while it holds a task, and `concurrency` workers
// train those, so memory is bounded by the round's tasks, not the fleet.
//
// Attack mode (the "scaled" attack of DESIGN.md "Trust"): a device marked
// as an attacker holds a task like any other, but declares 2^24 samples
// at check-in and, instead of its trained delta, sends the largest legal
// update: sample_count 2^24, every row scale 517 and every int8 value +127
// or -127 with a random sign (seeded by the fleet's seed, the round and the
// device, so a run is reproducible), with a correct checksum. That is all
// an attacker holding its own valid identity can claim: it cannot exceed
// the protocol's bounds (the server refuses that) nor claim more samples
// than it declared (refused too), so it declares the most.
//
// Keys: every device signs its check-ins and updates with its own device
// key, derived from the fleet key the server holds (device_key.h), as a
// provisioned device would; an attacker signs its rewritten update with
// its own valid key, so the server's authentication lets it through and
// only bounded influence stands between it and the model.
//
// A VirtualFleet requires external synchronization (one RunRound at a time).
#ifndef TINYFED_DEVICE_AGENT_VIRTUAL_FLEET_H_
#define TINYFED_DEVICE_AGENT_VIRTUAL_FLEET_H_

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include <grpcpp/generic/generic_stub.h>
#include <grpcpp/grpcpp.h>

#include "absl/status/statusor.h"
#include "dataset.h"
#include "tinyfed_common/fleet_keys.h"
#include "tinyfed/v1/coordinator.grpc.pb.h"

namespace tinyfed::agent {

struct FleetOptions {
  // The server's fleet key, from which each device's key is derived.
  Key256 fleet_key;
  uint32_t concurrency = 2;
  uint64_t seed = 1;
  // How long to wait for a round to commit after the fleet is done with it.
  double round_timeout_s = 120;
  // Devices that attack, by index (empty or false: honest).
  std::vector<bool> attackers;
};

// The sample count an attacker declares and claims: the protocol's largest.
inline constexpr uint32_t kAttackSampleCount = uint32_t{1} << 24;

struct RoundProgress {
  uint32_t checked_in = 0;
  uint32_t trained = 0;
  uint32_t accepted = 0;
  uint32_t rejected = 0;
};

struct RoundResult {
  uint32_t round = 0;          // the round the server ran
  uint32_t model_version = 0;  // the version it committed (or kept)
  bool committed = false;
  uint32_t participants = 0;   // updates in the committed version
  double accuracy = 0;         // of the version on the test split
  double loss = 0;             // mean cross-entropy on the test split
  uint64_t uplink_bytes = 0;   // check-ins and updates, as encoded by devices
  uint64_t downlink_bytes = 0; // responses and acks, as received by devices
  double seconds = 0;
};

// Accuracy and mean cross-entropy of a model version on real features.
struct Evaluation {
  double accuracy = 0;
  double loss = 0;
};
absl::StatusOr<Evaluation> EvaluateModel(const v1::ModelVersion& model,
                                         const Eigen::MatrixXd& features,
                                         const std::vector<uint8_t>& labels);

class VirtualFleet {
 public:
  // `data` and `shards` (training-sample indices per device) must outlive
  // the fleet. Device i is named "sim-<i>", zero-padded.
  VirtualFleet(const QuantizedSplit* data, const std::vector<std::vector<uint32_t>>* shards,
               std::shared_ptr<grpc::Channel> channel, FleetOptions options);

  // The latest committed version on the server.
  absl::StatusOr<v1::ModelVersion> LatestModel();

  // Runs one round: devices check in in a seeded random order until the
  // server stops handing out tasks; those with a task train and submit.
  // Then waits for the server to commit (or the timeout) and evaluates the
  // latest version on the test split. `progress` is called from worker
  // threads as devices finish steps.
  absl::StatusOr<RoundResult> RunRound(const std::function<void(const RoundProgress&)>& progress);

 private:
  const QuantizedSplit* data_;
  const std::vector<std::vector<uint32_t>>* shards_;
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<grpc::GenericStub> generic_;
  std::unique_ptr<v1::Coordinator::Stub> stub_;
  FleetOptions options_;
  uint32_t rounds_run_ = 0;
};

}  // namespace tinyfed::agent

#endif  // TINYFED_DEVICE_AGENT_VIRTUAL_FLEET_H_
