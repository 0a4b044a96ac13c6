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
// Attacks: a device marked as an attacker holds a task like any other
// (its check-ins and updates signed with its own valid key) and from the
// run's round `attack_from_round` on sends, instead of its honest update:
//   - scaled: declares 2^24 samples at check-in and sends the largest
//     legal update: sample_count 2^24, every row scale 517 (the
//     protocol's largest) and every int8 value +127 or -127 with a random
//     sign. That is all an attacker holding its own valid identity can
//     claim: it cannot exceed the protocol's bounds (the server refuses
//     that) nor claim more samples than it declared (refused too), so it
//     declares the most.
//   - sign-flip: trains honestly, then sends its delta negated and
//     amplified: every int8 value q becomes -q (the quantizer's range is
//     symmetric, so -q is legal), every row scale s becomes min(10 s, 517),
//     with its honest sample count.
//   - random: uniform int8 values in [-127, 127] at row scale 517 on
//     every row, with its honest sample count (noise of the largest
//     legal magnitude, not aimed anywhere).
//   - label-flip: trains honestly on its own samples with every label c
//     read as classes - 1 - c (data poisoning; the update itself is a
//     correct device's). Its federated evaluation and serving state use the
//     true labels: it attacks the model, not the monitoring.
// Random choices (signs, values) are seeded by the fleet's seed, the
// round and the device, so a run is reproducible. A rewritten update
// keeps the task's ids and base version, carries a correct checksum and
// is signed again with the attacker's key (RewriteUpdateAsAttack).
//
// Keys: every device signs its check-ins and updates with its own device
// key, derived from the fleet key the server holds (device_key.h), as a
// provisioned device would; an attacker signs its rewritten update with
// its own valid key, so the server's authentication lets it through and
// only bounded influence stands between it and the model.
//
// Serving (docs/mlops.md): every device is also a serving device. It holds
// a deployed model in a buffer of its own (TINYFED_MODEL_SIZE bytes: 1,342
// for a 64x10 head, allocated at its first model; none before), apart from
// the training arena it has only while it holds a task. At every check-in
// it evaluates that model on its own labelled shard (tinyfed_model_evaluate)
// and sends the result as its ServingState, so the server sees the whole
// fleet's accuracy every round. Every device checks in every round: a
// MODEL answer is decoded (tinyfed_model_decode, with the backbone spec of
// the server's model) into a spare buffer and swapped in only when valid,
// then the device checks in again; a TASK is trained and submitted as
// before; an EVALUATE task is evaluated and submitted at once; a RETRY ends
// the device's round.
//
// Drift (dataset.h DriftSpec): from the run's round `drift.round` on, the
// devices marked in `drifted` read their shard through ApplyDrift, for
// serving, evaluation and training alike; with every device drifted the
// held-out test split drifts too (it is the same world), otherwise it
// keeps the original world.
//
// A VirtualFleet requires external synchronization (one RunRound at a time).
#ifndef TINYFED_DEVICE_AGENT_VIRTUAL_FLEET_H_
#define TINYFED_DEVICE_AGENT_VIRTUAL_FLEET_H_

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <grpcpp/generic/generic_stub.h>
#include <grpcpp/grpcpp.h>

#include "absl/status/statusor.h"
#include "dataset.h"
#include "tinyfed_common/fleet_keys.h"
#include "tinyfed/v1/admin.grpc.pb.h"
#include "tinyfed/v1/coordinator.grpc.pb.h"

namespace tinyfed::agent {

// The attacks of the header comment.
enum class AttackKind { kNone, kScaled, kSignFlip, kRandom, kLabelFlip };
// "none", "scaled", "sign-flip", "random", "label-flip"; nullopt otherwise.
std::optional<AttackKind> ParseAttack(std::string_view name);

struct FleetOptions {
  // The server's fleet key, from which each device's key is derived.
  Key256 fleet_key;
  uint32_t concurrency = 2;
  uint64_t seed = 1;
  // How long to wait for a round to commit after the fleet is done with it.
  double round_timeout_s = 120;
  // Devices that attack, by index (empty or false: honest), from the
  // run's round attack_from_round on (honest before it), with `attack`.
  AttackKind attack = AttackKind::kNone;
  std::vector<bool> attackers;
  uint32_t attack_from_round = 1;
  // Drift: none when drift.round is 0; devices whose data drifts, by index.
  DriftSpec drift;
  std::vector<bool> drifted;
};

// The sample count a scaled attacker declares and claims: the protocol's
// largest.
inline constexpr uint32_t kAttackSampleCount = uint32_t{1} << 24;
// The largest row scale the protocol accepts (master steps per int8 step).
inline constexpr uint32_t kLargestRowScale = 517;
// How much a sign-flip attacker amplifies its row scales (then capped at
// kLargestRowScale).
inline constexpr uint32_t kSignFlipGain = 10;

// Rewrites `signed_update` (a SignedRequest around an Update, as the SDK
// encodes it) as `kind` demands of an attacker's update (header comment):
// kScaled, kSignFlip and kRandom change the Update; kLabelFlip and kNone
// leave it as it is (label-flip changes the data, not the update). The
// checksum is recomputed and the envelope signed again with `device_key`.
// `seed` draws the random signs and values.
// Errors: INTERNAL when the bytes are not a SignedRequest around an Update.
absl::Status RewriteUpdateAsAttack(AttackKind kind, std::vector<uint8_t>* signed_update,
                                   const Key256& device_key, uint64_t seed);

struct RoundProgress {
  uint32_t checked_in = 0;
  uint32_t trained = 0;
  uint32_t accepted = 0;
  uint32_t rejected = 0;
  uint32_t models = 0;     // deployed models installed
  uint32_t evaluated = 0;  // evaluation-only tasks submitted
};

// The serving side of the fleet after a round, from the server's Admin
// GetStatus (admin.proto ServerStatus) and the devices' own buffers.
struct FleetStatus {
  bool known = false;            // false: the Admin service refused or is absent
  std::string unknown_reason;    // why, when !known
  double accuracy = 0;           // serving_window correct / samples; 0 when empty
  uint32_t devices = 0;          // serving_window devices
  uint32_t serving_version = 0;
  uint32_t candidate_version = 0;
  // "none", "canary", "promoted vN" or "rolled back vN" (the candidate of
  // the round before, decided at this round's close).
  std::string stage = "none";
  std::vector<std::string> alerts;  // "drift on v14: <the server's message>"
  // Virtual devices holding the candidate that was in canary while the
  // round ran (the one the round before reported), whatever the close then
  // decided about it: a new candidate is committed at a close and reaches
  // devices only at the next round's check-ins.
  uint32_t devices_serving_candidate = 0;
  // Central DP (admin.proto PrivacyStatus), after the round's close: the
  // (epsilon, delta)-DP spent by every version committed so far, and
  // whether the budget is spent (no round opens any more).
  bool privacy = false;
  double epsilon_spent = 0;
  double epsilon_budget = 0;  // 0: none
  bool budget_spent = false;
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
  uint32_t models_installed = 0;   // deployed models devices swapped in
  uint32_t models_refused = 0;     // deployed models tinyfed_model_decode refused
  uint32_t evaluation_tasks = 0;   // evaluation-only tasks submitted and acknowledged
  FleetStatus fleet;
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
  // A committed version (0: the latest), from the Coordinator service.
  absl::StatusOr<v1::ModelVersion> GetModel(uint32_t version);

  // Runs one round: every device checks in, in a seeded random order, with
  // its ServingState (and again after installing a model); those with a
  // task train and submit. Then waits for the server to commit (or the
  // timeout) and to open its next round, evaluates the latest version on
  // the test split and reads the serving side (FleetStatus). `progress` is
  // called from worker threads as devices finish steps.
  absl::StatusOr<RoundResult> RunRound(const std::function<void(const RoundProgress&)>& progress);

  // The version device `device` serves, 0 for none.
  uint32_t ServingVersion(size_t device) const { return devices_[device].version; }

 private:
  // What a device keeps between rounds: its deployed model.
  struct DeviceState {
    uint32_t version = 0;
    std::vector<uint32_t> model;  // TINYFED_MODEL_SIZE bytes once it has one; 4-byte aligned
  };
  // Device `device`'s shard, contiguous as firmware holds it, drifted when
  // the round says so.
  void LocalData(uint32_t device, std::vector<int8_t>* x, std::vector<uint8_t>* y) const;
  bool Drifted(uint32_t device) const;
  FleetStatus ReadFleetStatus(uint32_t after_round);

  const QuantizedSplit* data_;
  const std::vector<std::vector<uint32_t>>* shards_;
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<grpc::GenericStub> generic_;
  std::unique_ptr<v1::Coordinator::Stub> stub_;
  FleetOptions options_;
  uint32_t rounds_run_ = 0;
  std::unique_ptr<v1::Admin::Stub> admin_;
  std::vector<DeviceState> devices_;
  uint32_t previous_candidate_ = 0;
  // The test split as the world is now: the original, or drifted with the
  // whole fleet.
  std::vector<uint8_t> test_y_;
  Eigen::MatrixXd test_real_;
};

}  // namespace tinyfed::agent

#endif  // TINYFED_DEVICE_AGENT_VIRTUAL_FLEET_H_
