// Durable state of the server: model versions with their lineage, rounds,
// the tasks handed out in a round and the updates accepted in it, the
// devices' evaluations of the versions (federated evaluation), where each
// version stands in the staged rollout (the serving and candidate versions,
// each version's v1::Rollout), and the devices whose keys are revoked.
//
// Writes are durable when they complete: synchronous calls return after
// their transaction commits; AppendTask/AppendUpdate queue the record and
// call `done` after the transaction holding it commits. Queued records are
// written together, one transaction per batch (group commit), so many
// concurrent appends cost one sync to disk. Writes are applied in the
// order they were issued.
//
// By the time a synchronous write returns, the callbacks of every append
// issued before it have run. The destructor writes everything queued and
// runs its callbacks, so whatever they capture must outlive the store.
//
// Implementations are safe for concurrent use. `done` callbacks run on the
// store's writer thread: they must be short and must not call back into
// the store's synchronous methods (those return FAILED_PRECONDITION there).
#ifndef TINYFED_SERVER_MODEL_STORE_H_
#define TINYFED_SERVER_MODEL_STORE_H_

#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "tinyfed/v1/aggregation.pb.h"
#include "tinyfed/v1/model.pb.h"

namespace tinyfed::server {

// Stored in the database as these numbers: never renumber.
enum class RoundState { kOpen = 0, kCommitted = 1, kAbandoned = 2 };

struct RoundRecord {
  uint32_t round = 0;
  uint32_t base_version = 0;  // the version devices train from
  RoundState state = RoundState::kOpen;
  int64_t opened_ms = 0;
  int64_t deadline_ms = 0;
  int64_t closed_ms = 0;      // 0 while open
};

struct TaskRecord {
  uint32_t round = 0;
  std::string device_id;
  std::string token;
  int64_t issued_ms = 0;
  // The sample count the device declared at check-in (0 = declared none),
  // kept so that a restarted server still refuses an update claiming more.
  uint32_t declared_samples = 0;
};

struct StoredUpdate {
  uint32_t round = 0;
  std::string device_id;
  std::string payload;  // the v1::Update, serialized
  int64_t received_ms = 0;
};

using DoneCallback = std::function<void(absl::Status)>;

// The fleet's evaluations of one version (model.proto FleetEvaluation).
struct VersionEvaluation {
  uint32_t version = 0;
  v1::FleetEvaluation fleet;
};

// One operator action, written in the same transaction as the change it
// records (the Admin service's audit log, proto/tinyfed/v1/admin.proto).
struct AuditEntry {
  int64_t id = 0;         // assigned by the store, increasing; ignored when written
  int64_t at_unix_ms = 0;
  std::string actor;      // "token:NAME", "cert:SUBJECT", "loopback:ADDRESS"
  std::string action;     // "rollback", "pause", "resume", "revoke"
  std::string detail;
};

// Whether new rounds are held back (RoundManager::SetPaused), kept so that
// a restarted server stays paused.
struct PauseState {
  bool paused = false;
  int64_t since_unix_ms = 0;  // 0 when not paused
  std::string by;             // the actor who paused; empty when not paused
};

// A device that was handed a task, as the tasks and updates tables show it.
struct DeviceActivity {
  std::string device_id;
  int64_t last_task_ms = 0;  // the latest issued_ms of its tasks
  uint32_t last_round = 0;   // the round of that task
  uint32_t tasks = 0;        // its tasks, over all rounds
  uint32_t updates = 0;      // its accepted updates, over all rounds
};

struct Revocation {
  std::string device_id;
  int64_t revoked_unix_ms = 0;
};

// The staged rollout as stored (rollout.h's RolloutController decides it).
// Exactly one version serves; at most one is the candidate (0: none). A
// version with no stored Rollout is ROLLOUT_STAGE_TRAINED.
struct StoredRollout {
  uint32_t serving_version = 0;
  uint32_t candidate_version = 0;
  // The serving version's Rollout.at_promotion (the drift baseline).
  v1::FleetEvaluation serving_baseline;
};

// One change of the rollout, written in one transaction: the new serving
// and candidate versions and the Rollout of every version whose stage
// changed (replacing what was stored for it).
struct RolloutWrite {
  uint32_t serving_version = 0;
  uint32_t candidate_version = 0;
  std::vector<std::pair<uint32_t, v1::Rollout>> stages;
};

class ModelStore {
 public:
  virtual ~ModelStore() = default;

  // ---- reads -------------------------------------------------------------
  // The committed version with the highest number, if any.
  virtual absl::StatusOr<std::optional<v1::ModelVersion>> LatestVersion() = 0;
  // The version with its rollout set (stage TRAINED when none was stored).
  // NOT_FOUND when there is no such version.
  virtual absl::StatusOr<v1::ModelVersion> GetVersion(uint32_t version) = 0;
  // The round with the highest number, if any.
  virtual absl::StatusOr<std::optional<RoundRecord>> LatestRound() = 0;
  // Everything recorded for `round`, in insertion order.
  virtual absl::StatusOr<std::vector<TaskRecord>> RoundTasks(uint32_t round) = 0;
  virtual absl::StatusOr<std::vector<StoredUpdate>> RoundUpdates(uint32_t round) = 0;
  // The ids of every revoked device, in byte order.
  virtual absl::StatusOr<std::vector<std::string>> RevokedDevices() = 0;
  // Every revoked device with its time, in byte order of the ids.
  virtual absl::StatusOr<std::vector<Revocation>> Revocations() = 0;
  // Versions numbered `newest` and below (0: from the latest), newest
  // first, at most `limit`, with weights and bias cleared (lineage and
  // metrics only: the admin's versions table, the status page), rollout
  // set as GetVersion sets it, and fleet_evaluation set on each version some device has evaluated (left
  // unset on the others). Sums are exact; OUT_OF_RANGE when one would
  // exceed 2^64 - 1, which takes more than 2^19 devices at the largest
  // loss sum a valid evaluation carries (2^45), or 2^40 at the largest
  // sample count (2^24); DATA_LOSS when an evaluation row fails its CRC.
  virtual absl::StatusOr<std::vector<v1::ModelVersion>> ListVersions(uint32_t newest,
                                                                     size_t limit) = 0;
  // The `limit` devices with the most recent tasks, most recent first
  // (ties by id). Reads every task row: meant for an operator's occasional
  // look, not for a request path. Task rows are checked against their CRCs
  // (DATA_LOSS); update rows are only counted, unchecked (checking them
  // would read every payload ever stored; RoundUpdates checks them).
  virtual absl::StatusOr<std::vector<DeviceActivity>> RecentDevices(size_t limit) = 0;
  // Audit entries with an id below `before_id` (0: from the newest),
  // newest first, at most `limit`.
  virtual absl::StatusOr<std::vector<AuditEntry>> AuditLog(int64_t before_id, size_t limit) = 0;
  // The stored pause state (not paused in a store that never recorded one).
  virtual absl::StatusOr<PauseState> Paused() = 0;
  // The summed evaluations of the highest-numbered version that has any
  // (none when no device reported one), exact and checked as in
  // ListVersions.
  virtual absl::StatusOr<std::optional<VersionEvaluation>> LatestFleetEvaluation() = 0;
  // The summed evaluations of `version` (empty, devices 0, when none),
  // exact and checked as in ListVersions.
  virtual absl::StatusOr<v1::FleetEvaluation> FleetEvaluationOf(uint32_t version) = 0;
  // The serving and candidate versions with the serving one's baseline.
  // NOT_FOUND in a store that holds no version yet.
  virtual absl::StatusOr<StoredRollout> Rollout() = 0;
  // The v1::AggregationState stored with `version` (aggregation.proto): an
  // empty message when none was stored (the initial version, versions
  // committed before schema 7 or by the 3-argument CommitRound). NOT_FOUND
  // for a version the store does not hold; DATA_LOSS when its row fails
  // its CRC or does not parse.
  virtual absl::StatusOr<v1::AggregationState> AggregationStateOf(uint32_t version) = 0;

  // ---- writes ------------------------------------------------------------
  // Stores the first version (version 1, parent 0, round 0, else
  // INVALID_ARGUMENT), serving (stage SERVING, reason "initial version").
  // ALREADY_EXISTS when a version exists.
  virtual absl::Status PutInitialVersion(const v1::ModelVersion& model) = 0;
  // Records a new open round (number >= 1, state open, closed_ms 0, else
  // INVALID_ARGUMENT). ALREADY_EXISTS for a known round number;
  // FAILED_PRECONDITION while another round is open or for a number below
  // an existing round's.
  virtual absl::Status OpenRound(const RoundRecord& round) = 0;
  // Group-committed appends. `done` gets OK once durable, ALREADY_EXISTS
  // when the (round, device) pair is already recorded, FAILED_PRECONDITION
  // when the round is not open, or the storage error.
  virtual void AppendTask(TaskRecord task, DoneCallback done) = 0;
  // AppendUpdate with no evaluation.
  void AppendUpdate(StoredUpdate update, DoneCallback done) {
    AppendUpdate(std::move(update), std::nullopt, std::move(done));
  }
  // `evaluation`, when given, is the one the update carries (it must have
  // passed ValidateUpdate, else INVALID_ARGUMENT with nothing written). It
  // is recorded as the device's evaluation of evaluation.model_version in
  // the update's transaction: both are written or neither is. A device's
  // first evaluation of a version counts; a later one of the same version,
  // in any round, is ignored (the update is still recorded).
  virtual void AppendUpdate(StoredUpdate update, std::optional<v1::Evaluation> evaluation,
                            DoneCallback done) = 0;
  // In one transaction: marks the open `round` committed at `closed_ms` and
  // stores `next` (whose parent must be the latest version and whose round
  // must be `round`). FAILED_PRECONDITION when the round is not open or the
  // lineage is wrong; INVALID_ARGUMENT when next.round() != round.
  // Stores an empty AggregationState for `next`.
  virtual absl::Status CommitRound(uint32_t round, int64_t closed_ms,
                                   const v1::ModelVersion& next) = 0;
  // CommitRound, with `state` stored as next's AggregationState in the
  // same transaction: both are written or neither is.
  virtual absl::Status CommitRound(uint32_t round, int64_t closed_ms, const v1::ModelVersion& next,
                                   const v1::AggregationState& state) = 0;
  // Marks the open `round` abandoned; the model stays as it is.
  virtual absl::Status AbandonRound(uint32_t round, int64_t closed_ms) = 0;
  // Adds `device_id` (not empty, else INVALID_ARGUMENT) to the revocation
  // list, durably, as revoked at `revoked_unix_ms`. Revoking a revoked
  // device is OK and keeps the first time. There is no un-revoke: a
  // device's key is derived from its id, so a device back in service gets
  // a new id, and with it a new key.
  virtual absl::Status RevokeDevice(const std::string& device_id, int64_t revoked_unix_ms) = 0;
  // RevokeDevice, and `audit` appended in the same transaction when the
  // device was not revoked yet (revoking again records nothing).
  virtual absl::Status RevokeDevice(const std::string& device_id, int64_t revoked_unix_ms,
                                    const AuditEntry& audit) = 0;
  // An operator's rollback, in one transaction: marks `abandon_round`
  // abandoned at `closed_ms` when it is not 0, stores `next` and appends
  // `audit`. FAILED_PRECONDITION, with nothing written, unless: `next` has
  // round 0, parent the latest version, number latest + 1, restored_from a
  // stored version other than the latest and that version's checksum;
  // `abandon_round` is the open round when one is open (a round training
  // from the version rolled away from could never commit), and 0 when none
  // is. The copy is stored with the AggregationState of the version it
  // copies, its noise cleared: a copy carries the optimizer state of what
  // it copies, and adds no noise of its own (model.proto Aggregation).
  virtual absl::Status CommitRestoredVersion(uint32_t abandon_round, int64_t closed_ms,
                                             const v1::ModelVersion& next,
                                             const AuditEntry& audit) = 0;
  // Stores `state` (as given: the caller keeps since and by empty when not
  // paused) and appends `audit`, in one transaction.
  virtual absl::Status SetPaused(const PauseState& state, const AuditEntry& audit) = 0;

  // Writes `write` (every version it names must exist, the serving one
  // nonzero, else FAILED_PRECONDITION with nothing written), with `audit`
  // appended in the same transaction when given.
  virtual absl::Status WriteRollout(const RolloutWrite& write, const AuditEntry* audit) = 0;
  // CommitRestoredVersion, with `rollout` (which may name `next`) written
  // in the same transaction, and `audit` appended only when given (a
  // rollback the server decided itself has no operator to record).
  virtual absl::Status CommitRestoredVersion(uint32_t abandon_round, int64_t closed_ms,
                                             const v1::ModelVersion& next,
                                             const AuditEntry* audit,
                                             const RolloutWrite& rollout) = 0;
  // A device's evaluation of evaluation.model_version (a check-in's
  // ServingState or an evaluation-only task; the caller has validated
  // it), reported during `round`, queued on the writer as the appends are
  // (group commit, in order) and kept only when it is the device's first
  // of that version, as for AppendUpdate. `done` may be empty.
  virtual void AppendEvaluation(uint32_t round, std::string device_id,
                                v1::Evaluation evaluation, DoneCallback done) = 0;

  // Appends queued and not yet durable (for back-pressure).
  virtual size_t PendingWrites() const = 0;
  // Returns once every append queued before the call has been written (or
  // has failed) and its `done` callback and the batch hook have run. The
  // status is FAILED_PRECONDITION when called from a callback or the hook.
  virtual absl::Status Flush() = 0;

  // Group-commit counters since the store was opened: the transactions
  // that wrote appends, and the appends they held. Their ratio is the mean
  // batch, over which each sync to disk is shared. wait_us sums, over the
  // appends, the time from being queued to being durable (just before
  // `done` runs): over appends, the mean time an acknowledgement waits.
  struct WriteStats {
    uint64_t batches = 0;
    uint64_t appends = 0;
    uint64_t wait_us = 0;
  };
  virtual WriteStats Stats() const = 0;

  // Runs `hook` after the `done` callbacks of every group-committed batch,
  // on the thread that ran them. A caller whose callbacks only record their
  // results can then apply a whole batch under one lock, instead of taking
  // its lock once per record against concurrent callers. Empty clears it.
  // When SetBatchHook returns, the previous hook is not running and will not
  // run again, so its captures may go. The hook must not block and must not
  // call SetBatchHook.
  virtual void SetBatchHook(std::function<void()> hook) = 0;
};

// A SQLite store in one file (WAL mode, synchronous=FULL), created when
// missing. The schema is versioned; a file of an older schema is migrated
// when opened (its tasks then have declared_samples 0, no version has
// evaluations, and the latest version is the serving one, with reason
// "serving when the store was migrated to schema 6", every other version
// TRAINED, and every version has an empty AggregationState), a file from an unknown schema gives FAILED_PRECONDITION.
// Damage found in the file gives DATA_LOSS naming it.
absl::StatusOr<std::unique_ptr<ModelStore>> OpenSqliteModelStore(const std::string& path);

}  // namespace tinyfed::server

#endif  // TINYFED_SERVER_MODEL_STORE_H_
