// The round lifecycle of one model: open a round on the latest version,
// hand out tasks (over-selecting), accept updates exactly once, close at K
// accepted updates or at the deadline with at least M, abandon below M,
// commit the next version and open the next round.
//
// Every accepted update is durable in the ModelStore before it is
// acknowledged, and after a restart Create() resumes the open round with
// the updates already accepted, so none is lost and none counted twice.
//
// Time: a round's deadline is measured on the clock's monotonic time, so
// a wall-clock step (NTP, an operator setting the date) neither closes a
// round early nor holds it open, and tasks report the monotonic time left.
// Wall time goes only into records: the stored RoundRecord's opened,
// deadline and closed times, and the versions' creation times. Monotonic
// readings do not survive a restart, so Create() resumes an open round
// with the time its stored wall deadline leaves at the restart, at least
// zero and at most the round's full length (deadline - opened). The wall
// deadline is the only time that survives a restart, so a wall-clock step
// while the server is down shifts that one round's remaining time: at
// worst it closes at the first Tick() after the restart, or runs one full
// length from the restart.
//
// Over-selection hands out ceil(K x factor) tasks, with the factor taken
// to the nearest millionth first, so that 50 x 1.1 gives 55 tasks and not
// the 56 of the double product 55.00000000000001.
//
// Bounded influence (aggregator.h has the exact rule): a device's task
// remembers the sample count it declared at check-in
// (capabilities.sample_count; a second check-in in the same round does not
// change it), stored with the task so that it survives a restart, and an
// update claiming more is refused. At the close, the round's set of
// accepted updates decides every update's weight (capped at a multiple of
// the round's median) and clip factor (the norm bound), from
// ServerConfig.influence; the committed version's metrics count the capped
// and clipped updates. A device that declares nothing (0), and a task
// stored by a server before declared counts were stored, is bounded by the
// median cap and the 2^24 limit alone.
//
// Check-in limits (checkin_limiter.h, ServerConfig.checkin_limits): a
// check-in over its peer's or its device's rate, or a new task beyond its
// peer's share of the round's task slots, gets a RetryAfter, never an
// error status: every device SDK and the agent's fleet take a RetryAfter
// on their normal path (back off, check in later), while an error fails
// their call. The share counts restart with each round.
//
// Serving and staged rollout (rollout.h decides, docs/mlops.md): the
// manager owns a RolloutController, restored from the store by Create().
// A check-in that carries a ServingState has its evaluation counted (the
// drift window at once; the store through its writer queue: the check-in
// is answered without waiting for that write, and a report lost to a
// crash is sent again with the device's next check-in, which counts it
// then), and is answered with the model the device is meant to serve
// when it holds another and did not defer; a check-in without one never
// gets a model. A device that sent a ServingState and that the round
// needs no training task from (the round's task slots are taken, or it
// already submitted its update) is given an evaluation-only task of the
// candidate, within EvaluationPolicy.tasks_per_round, unless it is in the
// canary (it reports on the candidate with its check-ins). Those tasks
// live in memory only: after a restart their devices check in again. At
// every round close, committed or abandoned, the controller judges drift
// and the candidate; its decisions are stored with the versions' stages,
// and a rollback commits a copy of the serving version that the next
// round trains from. When a close promotes the candidate and commits a
// version, that version is the next candidate at once.
//
// Aggregation (strategy.h, ServerConfig.aggregation): a committed round's
// version is AggregateRound over the round's accepted training updates
// (evaluation-only ones are no participants), from the base version's head
// and optimizer state. The version records the parameters used
// (model.proto Aggregation) and the store keeps, beside it and in the same
// transaction, the optimizer state after the round and the noise added
// (aggregation.proto AggregationState): everything needed to recompute it.
// The base optimizer state is kept in memory next to the latest head and
// read back by Create() (the latest version's stored state), so a restart
// resumes it exactly; a rollback's copy carries the state of the version
// it copies (the store writes it; the manager reads it back).
//
// Central differential privacy (privacy.h, ServerConfig.privacy): with it
// on, every update weighs 1, and the round's integer sums get discrete
// Gaussian noise of sigma = noise_multiplier_q16 x norm bound (2^-16
// master steps) from the RandomSource given to Create() (the OS CSPRNG by
// default). Each noised version records its rho, the total rho spent over
// every noised version (zCDP adds) and that total as (epsilon, delta).
// Create() takes the total from the newest version that recorded noise
// (rollback copies record none). With epsilon_budget set, no round opens
// once RoundsWithinBudget says not one more release fits: decided at every
// round open (Create, a close, a resume, a rollback), from the stored
// totals, so a restart keeps it closed; an open round found at Create()
// whose release no longer fits (a budget lowered meanwhile) is abandoned.
// While closed, check-ins get a RetryAfter as when paused (models are still
// served) and one warning line is logged. Neither the noise nor an
// update's values reach a log.
//
// Versions as devices are sent them (tasks, models to serve, GetModel)
// carry no Aggregation record: it is for operators and auditors.
//
// Safe for concurrent use. Results arrive through callbacks, which may run
// on the caller's thread or on the store's writer thread; they must not
// block. The RoundManager must outlive every pending callback; its
// destructor waits for a round being closed.
#ifndef TINYFED_SERVER_ROUND_MANAGER_H_
#define TINYFED_SERVER_ROUND_MANAGER_H_

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/random/random.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "aggregator.h"
#include "checkin_limiter.h"
#include "clock.h"
#include "head.h"
#include "model_store.h"
#include "privacy.h"
#include "rejection_log.h"
#include "rollout.h"
#include "server_config.h"
#include "strategy.h"
#include "tinyfed/v1/admin.pb.h"
#include "tinyfed/v1/coordinator.pb.h"
#include "tinyfed/v1/server_config.pb.h"

namespace tinyfed::server {

class ServerMetrics;

// Payload key of the retry hint carried by RESOURCE_EXHAUSTED and
// UNAVAILABLE statuses (decimal milliseconds).
inline constexpr char kRetryAfterPayload[] = "tinyfed/retry-after-ms";

// Milliseconds from a status's retry hint, if it has one.
std::optional<uint32_t> RetryAfterMs(const absl::Status& status);

struct RoundSnapshot {
  uint32_t round = 0;
  uint32_t base_version = 0;
  bool open = false;
  uint32_t tasks_issued = 0;
  uint32_t tasks_limit = 0;     // ceil(K x over_selection)
  uint32_t accepted = 0;
  uint32_t pending = 0;
  uint32_t target_updates = 0;  // K
  uint32_t min_updates = 0;     // M
  int64_t opened_ms = 0;     // wall time, as the round's record holds it
  int64_t deadline_ms = 0;   // wall time, as the round's record holds it
  int64_t time_left_ms = 0;  // monotonic time until the deadline; 0 once passed
  uint32_t latest_version = 0;
  // Updates refused while this round was open, counted since the manager
  // was created (see Rejected counting in RoundManager).
  uint32_t rejected = 0;
  bool paused = false;
};

// The rollout as the Admin status and the status page show it.
struct RolloutSnapshot {
  RolloutState state;
  v1::FleetEvaluation serving_window;  // the drift window of the serving version
  std::vector<v1::Alert> alerts;
  double canary_fraction = 0;
  bool enabled = true;
};

class RoundManager {
 public:
  using CheckInDone = std::function<void(absl::StatusOr<v1::CheckInResponse>)>;
  using SubmitDone = std::function<void(absl::StatusOr<v1::UpdateAck>)>;

  // Resumes from `store`: the latest committed version (or `initial`, stored
  // as version 1 when the store is empty) and the open round with its tasks
  // and accepted updates (or a new round). `config` must have passed
  // ValidateServerConfig(). `store` and `clock` must outlive the manager.
  // FAILED_PRECONDITION when the store's model has another shape than the
  // config's head. `metrics`, when given, counts closed rounds and times
  // committed ones; it must outlive the manager.
  // `random` is the noise's source when privacy is on (null: an
  // OsRandomSource); the manager owns it and uses it from one thread at a
  // time. FAILED_PRECONDITION also when the latest version's stored
  // optimizer state does not fit the head; DATA_LOSS when it is damaged.
  static absl::StatusOr<std::unique_ptr<RoundManager>> Create(
      const v1::ServerConfig& config, const v1::ModelVersion& initial, ModelStore* store,
      const Clock* clock, ServerMetrics* metrics = nullptr,
      std::unique_ptr<RandomSource> random = nullptr);
  // Waits for the store to write what this manager queued (answering those
  // callers) and for a round close in progress. Destroy it only after the
  // last call into it has returned, e.g. after the gRPC server's Shutdown.
  ~RoundManager();

  // A model to serve, a task for the device (the same one again if it
  // already has one in the open round), or a retry hint (see the top for
  // models and evaluation-only tasks). INVALID_ARGUMENT for a bad device
  // id, and for a ServingState out of its bounds (ValidateServingState);
  // FAILED_PRECONDITION when the device declares it cannot hold the head;
  // UNAVAILABLE when the task could not be recorded. `peer` is the
  // caller's PeerKey() for the check-in limits; "" (the overload without
  // it: in-process callers) is exempt from them. A RetryAfter for a check-in over a limit (see the top).
  void CheckIn(const v1::CheckInRequest& request, std::string_view peer, CheckInDone done);
  void CheckIn(const v1::CheckInRequest& request, CheckInDone done) {
    CheckIn(request, "", std::move(done));
  }

  // Validates, records durably, accumulates and acknowledges `update`,
  // which must stay valid until `done` has run (CoordinatorService keeps it
  // in the callback).
  // An evaluation it carries is recorded with it, in its transaction, as
  // its device's evaluation of the base version (the first one per device
  // and version counts: ModelStore::AppendUpdate).
  // INVALID_ARGUMENT (shape, ranges, checksum, an evaluation out of its
  // bounds, a sample count or evaluation.samples above the count declared
  // at check-in); FAILED_PRECONDITION (round
  // not open, unknown task token, round already has K updates); ABORTED
  // (built on another base version, or the round closed while it was being
  // recorded); ALREADY_EXISTS (the device sent different bytes before);
  // RESOURCE_EXHAUSTED with a retry hint (too many writes pending);
  // UNAVAILABLE (storage failed). The same bytes again get the original
  // acknowledgement, also in the round after the one that took them.
  //
  // The update of an evaluation-only task carries only its evaluation
  // (ValidateEvaluationOnlyUpdate; INVALID_ARGUMENT otherwise, also for
  // evaluation.samples above the count declared at check-in): it is
  // acknowledged once the evaluation is durable, counted as the
  // evaluation of a training update is, and is no participant of the
  // round; the same bytes again get the same acknowledgement.
  void SubmitUpdate(const v1::Update& update, SubmitDone done);

  // A committed version (0 = latest: the one training goes on from), as
  // devices are sent it (no rollout). NOT_FOUND for an unknown one.
  absl::StatusOr<v1::ModelVersion> GetModel(uint32_t version);

  // Closes the open round when its deadline has passed: commits with at
  // least M accepted updates, abandons otherwise. Call periodically.
  void Tick();

  // Blocks until no round is being closed (tests and shutdown).
  void WaitIdle();

  RoundSnapshot Snapshot() const;
  RolloutSnapshot Rollout() const;

  // The aggregation in force, as the next version will record it
  // (RecordStrategyParams; with privacy, noise_sigma, sensitivity and the
  // rho of one release), with rho_spent, epsilon_spent and delta set to
  // the totals spent so far (0 without privacy); trimmed is 0.
  v1::Aggregation AggregationInForce() const;
  // Central DP's state (admin.proto PrivacyStatus); all 0 when off.
  v1::PrivacyStatus PrivacyInForce() const;

  // Warns that a request (`what`, e.g. "update") from `who` was refused
  // with `status`, through the manager's rate-limited rejection log, which
  // SubmitUpdate's own rejections also go to.
  //
  // Rejected counting: every SubmitUpdate refusal (any code) and every
  // LogRejected call with `what` == "update" (a refusal at the service's
  // edge, e.g. authentication) counts as one rejected update of the round
  // open at the time (RoundSnapshot.rejected). A committed version's
  // metrics.rejected_updates is its round's count. The count lives in
  // memory only: a restart mid-round starts it again from 0.
  void LogRejected(std::string_view what, std::string_view who, const absl::Status& status);

  // ---- operator controls (the Admin service) -----------------------------

  // Holds back new work (paused) or lets it go again. While paused:
  // CheckIn answers a RetryAfter (policy.retry_after_ms) and hands out no
  // task; updates for tasks already handed out are still taken, and the
  // open round closes as usual (K accepted, or its deadline), but no next
  // round opens. Resuming with no round open opens one at once.
  // `audit` names the caller (at_unix_ms, actor) and its reason (detail);
  // its action is set here ("pause" or "resume"). The state is written to
  // the store, with `audit`, before anything changes in memory: a store
  // error is returned and nothing changes. Asking for the state already in
  // effect is OK and writes nothing. The stored state is read by Create(),
  // so a restarted server stays paused. When the round a resume opens
  // cannot be stored, the resume stands and the store's error is returned;
  // SetPaused(false) again retries opening it. While paused with no round
  // open, Snapshot() shows the last round, closed (open false).
  absl::Status SetPaused(bool paused, AuditEntry audit);
  PauseState Paused() const;

  struct RollbackResult {
    v1::ModelVersion version;     // the new version, weights and bias included
    uint32_t abandoned_round = 0;  // 0 when no round was open
  };
  // Commits version latest+1 equal to `to_version` (spec, weights, bias,
  // checksum copied; parent the previous latest, round 0, restored_from
  // `to_version`, metrics empty, created now), abandoning the open round,
  // in one store write with `audit` (action "rollback", set here; detail
  // "to version N as version V; abandoned round R; reason: <audit.detail>").
  // Then the open round's tasks and updates are dropped: an update of that
  // round still being written is answered ABORTED (the round it was for
  // was abandoned under it), and every later update for it gets
  // FAILED_PRECONDITION (round not open), so its device checks in again;
  // a new round opens on the new version unless paused.
  // INVALID_ARGUMENT for `to_version` 0; NOT_FOUND for an unknown one;
  // FAILED_PRECONDITION when it is the latest, or while a round is being
  // closed (try again); the store's error otherwise. Nothing changes on an
  // error.
  //
  // The new version serves at once for every device (ServeNow), the
  // serving one before it is RETIRED, and a candidate is ROLLED_BACK;
  // stored with the version, in its transaction.
  absl::StatusOr<RollbackResult> Rollback(uint32_t to_version, AuditEntry audit);

  struct PromoteResult {
    v1::ModelVersion version;  // the version now serving, with its Rollout; no weights
    uint32_t previous_serving = 0;
  };
  // Makes the committed `version` serve at once for every device: the
  // serving one before it RETIRED, a candidate other than it ROLLED_BACK,
  // its reason "promoted by ACTOR[: reason]"; written with `audit`
  // (action "promote", set here) in one transaction before anything
  // changes in memory. Training goes on from the latest version.
  // INVALID_ARGUMENT for 0; NOT_FOUND for an unknown version;
  // FAILED_PRECONDITION when it already serves, or while a round is being
  // closed (try again); the store's error otherwise.
  absl::StatusOr<PromoteResult> Promote(uint32_t version, AuditEntry audit);

 private:
  RoundManager(const v1::ServerConfig& config, ModelStore* store, const Clock* clock,
               ServerMetrics* metrics, RolloutSettings rollout,
               std::unique_ptr<RandomSource> random);

  // The optimizer state stored with `version`, or an empty one (logged)
  // when it cannot be read or does not fit the head.
  OptimizerState StoredStateOrEmpty(uint32_t version);
  // Whether not one more release fits the budget after `rho_spent`
  // (false without a budget).
  bool BudgetSpent(double rho_spent) const;
  // Gives the metrics (when given) the privacy totals.
  void PublishPrivacyLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // The budget warning, once per time it is found spent.
  void WarnBudgetSpentLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  // An evaluation-only task in the open round (kept in memory only).
  struct EvaluationTask {
    std::string token;
    uint32_t declared_samples = 0;
    std::string payload;  // the update taken, once one is
    bool durable = false;
    std::vector<SubmitDone> waiters;
  };

  struct Task {
    std::string token;
    uint32_t declared_samples = 0;  // at check-in; 0 = none declared
  };
  struct Entry {
    std::string payload;          // serialized update
    bool durable = false;
    v1::Update update;            // parsed, once durable: aggregated at the close
    std::vector<SubmitDone> waiters;  // retries waiting for the first write
  };

  absl::Status Resume(const v1::ModelVersion& initial);
  // `now_monotonic_ms` is the clock's MonotonicMs().
  v1::RoundTask MakeTaskLocked(const std::string& token, int64_t now_monotonic_ms) const
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // A new round's record, opened now with the configured deadline; sets
  // `*deadline_monotonic_ms` to the same deadline on the monotonic clock.
  RoundRecord NewRound(uint32_t round, uint32_t base_version,
                       int64_t* deadline_monotonic_ms) const;
  v1::UpdateAck MakeAckLocked(uint32_t round) const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // The store's result for one update, recorded by its `done` callback
  // and applied with the rest of its batch by ApplyWritten().
  struct Written {
    uint32_t round;
    const v1::Update* update;
    absl::Status status;
  };
  // Applies the results recorded since the last call under one lock, then
  // answers their callers; the store's batch hook.
  void ApplyWritten();
  // Starts closing the open round on the closer thread.
  void BeginCloseLocked(bool deadline) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void CloseRound(bool deadline);
  // Opens round round_.round + 1 on the latest version when no round is
  // open, nothing is closing and the server is not paused.
  absl::Status OpenRoundIfIdle() ABSL_EXCLUSIVE_LOCKS_REQUIRED(control_mu_);
  // `version` as devices are sent it (weights, bias, spec, version,
  // checksum; nothing else), cached per version; a store read on a miss.
  absl::StatusOr<std::shared_ptr<const v1::ModelVersion>> DeviceModelLocked(uint32_t version)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Drops cached models that are neither serving nor the candidate.
  void TrimModelCacheLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // An evaluation-only task of the candidate for `device`, if it may have
  // one (see the top); fills `response` and returns true when it does.
  bool EvaluationTaskLocked(const v1::CheckInRequest& request, uint32_t declared,
                            int64_t now_monotonic_ms, v1::CheckInResponse* response)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // SubmitUpdate for an evaluation-only task's token (or the same bytes
  // again after its round closed); false when `update` is not one.
  bool SubmitEvaluationOnly(const v1::Update& update, SubmitDone& done);
  // The rollout's part of closing `round` (see the top): `committed` is
  // the version the close committed, if any. Returns the version the next
  // round trains from when a rollback committed a copy (with its head).
  std::optional<std::pair<v1::ModelVersion, Head>> CloseRollout(
      uint32_t round, const v1::ModelVersion* committed, int64_t now)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(control_mu_);
  // Gives the metrics (when given) the rollout as it stands.
  void PublishRolloutLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Logs a warning for each alert raised or cleared between the two lists
  // and sets the alert gauge.
  void ReportAlerts(const std::vector<v1::Alert>& before, const std::vector<v1::Alert>& after);
  // Counts one refused update against the open round.
  void CountRejected();
  // Forgets the tasks, updates and counts of the round that just closed or
  // was abandoned (its pending writes answered or waited for first).
  void ClearRoundLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  // Serializes the operator controls (SetPaused, Rollback) with each other
  // and with the closer's decision to open the next round, so that a
  // resume and a close never both open a round, or both leave none open.
  // Held across store writes; taken before mu_, never inside it.
  absl::Mutex control_mu_ ABSL_ACQUIRED_BEFORE(mu_);

  const v1::ServerConfig config_;
  ModelStore* const store_;
  const Clock* const clock_;
  ServerMetrics* const metrics_;  // may be null
  RejectionLog rejections_;
  const uint32_t task_limit_;      // ceil(K * over_selection)
  const uint32_t learning_rate_q16_;
  InfluenceBounds bounds_;  // set once by Create(), immutable after
  v1::HeadSpec spec_;  // set once by Create(), immutable after
  // Set once by Create(), immutable after: the strategy's integers, central
  // DP's, the number of values (weights and bias) and one release's rho.
  StrategyParams params_;
  PrivacyParams privacy_;
  size_t values_ = 0;
  double rho_per_round_ = 0;
  // The noise's source; only the closer thread uses it (one close at a time).
  std::unique_ptr<RandomSource> random_;

  mutable absl::Mutex mu_;
  v1::ModelVersion latest_ ABSL_GUARDED_BY(mu_);
  Head latest_head_ ABSL_GUARDED_BY(mu_);
  // The server optimizer's state stored with latest_ (the next round's base).
  OptimizerState latest_state_ ABSL_GUARDED_BY(mu_);
  // Privacy totals over every noised version committed: rho (zCDP adds),
  // their number, and whether the budget allows no further release.
  double rho_spent_ ABSL_GUARDED_BY(mu_) = 0;
  uint32_t noised_versions_ ABSL_GUARDED_BY(mu_) = 0;
  bool budget_spent_ ABSL_GUARDED_BY(mu_) = false;
  RoundRecord round_ ABSL_GUARDED_BY(mu_);
  // The open round's deadline on the monotonic clock; round_.deadline_ms is
  // the wall time written to the record.
  int64_t deadline_monotonic_ms_ ABSL_GUARDED_BY(mu_) = 0;
  bool open_ ABSL_GUARDED_BY(mu_) = false;     // accepting work
  bool closing_ ABSL_GUARDED_BY(mu_) = false;  // closer thread at work
  // No round is open in the store (closed or abandoned while paused, or a
  // failed open): round_ is the last round, and the next is round_ + 1.
  bool idle_ ABSL_GUARDED_BY(mu_) = false;
  // A rollback is between its checks and its end: no close may begin (it
  // would race the rollback's abandoning of the same round).
  bool rolling_back_ ABSL_GUARDED_BY(mu_) = false;
  PauseState pause_ ABSL_GUARDED_BY(mu_);
  uint32_t rejected_ ABSL_GUARDED_BY(mu_) = 0;  // refused updates, this round
  absl::flat_hash_map<std::string, Task> tasks_ ABSL_GUARDED_BY(mu_);  // by device
  absl::flat_hash_map<std::string, Entry> updates_ ABSL_GUARDED_BY(mu_);      // device -> entry
  // Payloads accepted in the previous round, to re-acknowledge retries.
  uint32_t previous_round_ ABSL_GUARDED_BY(mu_) = 0;
  absl::flat_hash_map<std::string, std::string> previous_updates_ ABSL_GUARDED_BY(mu_);
  uint32_t accepted_ ABSL_GUARDED_BY(mu_) = 0;
  uint32_t pending_ ABSL_GUARDED_BY(mu_) = 0;
  // Evaluation-only updates being written: a close waits for them too,
  // but they take no training slot (accepted_ + pending_ <= K).
  uint32_t evaluations_pending_ ABSL_GUARDED_BY(mu_) = 0;
  absl::BitGen token_bits_ ABSL_GUARDED_BY(mu_);
  CheckInLimiter limiter_ ABSL_GUARDED_BY(mu_);
  RolloutController rollout_ ABSL_GUARDED_BY(mu_);
  absl::flat_hash_map<uint32_t, std::shared_ptr<const v1::ModelVersion>> device_models_
      ABSL_GUARDED_BY(mu_);
  absl::flat_hash_map<std::string, EvaluationTask> evaluation_tasks_ ABSL_GUARDED_BY(mu_);
  // Filled by the store's callbacks, emptied by ApplyWritten(). Its own
  // lock so that recording a result never waits for request handling.
  absl::Mutex written_mu_;
  std::vector<Written> written_ ABSL_GUARDED_BY(written_mu_);
  std::thread closer_;
};

}  // namespace tinyfed::server

#endif  // TINYFED_SERVER_ROUND_MANAGER_H_
