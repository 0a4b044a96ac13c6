// Durable state of the server: model versions with their lineage, rounds,
// the tasks handed out in a round and the updates accepted in it, and the
// devices whose keys are revoked.
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
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
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

class ModelStore {
 public:
  virtual ~ModelStore() = default;

  // ---- reads -------------------------------------------------------------
  // The committed version with the highest number, if any.
  virtual absl::StatusOr<std::optional<v1::ModelVersion>> LatestVersion() = 0;
  // NOT_FOUND when there is no such version.
  virtual absl::StatusOr<v1::ModelVersion> GetVersion(uint32_t version) = 0;
  // The round with the highest number, if any.
  virtual absl::StatusOr<std::optional<RoundRecord>> LatestRound() = 0;
  // Everything recorded for `round`, in insertion order.
  virtual absl::StatusOr<std::vector<TaskRecord>> RoundTasks(uint32_t round) = 0;
  virtual absl::StatusOr<std::vector<StoredUpdate>> RoundUpdates(uint32_t round) = 0;
  // The ids of every revoked device, in byte order.
  virtual absl::StatusOr<std::vector<std::string>> RevokedDevices() = 0;

  // ---- writes ------------------------------------------------------------
  // Stores the first version (version 1, parent 0, round 0, else
  // INVALID_ARGUMENT). ALREADY_EXISTS when a version exists.
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
  virtual void AppendUpdate(StoredUpdate update, DoneCallback done) = 0;
  // In one transaction: marks the open `round` committed at `closed_ms` and
  // stores `next` (whose parent must be the latest version and whose round
  // must be `round`). FAILED_PRECONDITION when the round is not open or the
  // lineage is wrong; INVALID_ARGUMENT when next.round() != round.
  virtual absl::Status CommitRound(uint32_t round, int64_t closed_ms,
                                   const v1::ModelVersion& next) = 0;
  // Marks the open `round` abandoned; the model stays as it is.
  virtual absl::Status AbandonRound(uint32_t round, int64_t closed_ms) = 0;
  // Adds `device_id` (not empty, else INVALID_ARGUMENT) to the revocation
  // list, durably, as revoked at `revoked_unix_ms`. Revoking a revoked
  // device is OK and keeps the first time. There is no un-revoke: a
  // device's key is derived from its id, so a device back in service gets
  // a new id, and with it a new key.
  virtual absl::Status RevokeDevice(const std::string& device_id, int64_t revoked_unix_ms) = 0;

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
// when opened (its tasks then have declared_samples 0), a file from an
// unknown schema gives FAILED_PRECONDITION. Damage found in the file gives
// DATA_LOSS naming it.
absl::StatusOr<std::unique_ptr<ModelStore>> OpenSqliteModelStore(const std::string& path);

}  // namespace tinyfed::server

#endif  // TINYFED_SERVER_MODEL_STORE_H_
