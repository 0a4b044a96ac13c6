// Staged rollout and drift alerts: which version each device should serve,
// when a candidate is promoted or rolled back, and when the serving
// version's accuracy has drifted (docs/mlops.md; ServerConfig.rollout,
// .drift and .evaluation say what an operator sets).
//
// This is the decision logic alone: no store, no RPCs, no clock. The
// RoundManager feeds it the evaluations devices report and the rounds'
// closes, stores what it decides (the stage of each version, the serving
// and candidate versions, the baseline at promotion) and restores it with
// Restore() after a restart. The drift window and the alerts live only
// here, in memory: after a restart the window fills again from new reports
// and an alert is raised again if the drift persists.
//
// Arithmetic: accuracies are compared exactly as fractions of integers
// (128-bit, by Euclid's steps, so no sum is too large); tolerance and margin are taken in
// millionths of accuracy (rounded to the nearest), so no float rounding
// can decide a promotion one way on one machine and the other on another.
//
// Not thread-safe: the RoundManager calls it under its own lock.
#ifndef TINYFED_SERVER_ROLLOUT_H_
#define TINYFED_SERVER_ROLLOUT_H_

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "absl/status/statusor.h"
#include "tinyfed/v1/admin.pb.h"
#include "tinyfed/v1/model.pb.h"
#include "tinyfed/v1/server_config.pb.h"

namespace tinyfed::server {

// ServerConfig.rollout, .drift and .evaluation with defaults applied.
struct RolloutSettings {
  bool enabled = true;
  uint32_t canary_buckets = 1000;        // canary_fraction x 10000, rounded
  double canary_fraction = 0.1;
  uint32_t min_devices = 5;
  uint32_t tolerance_ppm = 10000;        // 0.01
  uint32_t window_rounds = 3;
  uint32_t drift_margin_ppm = 50000;     // 0.05
  uint32_t drift_min_devices = 5;
  uint32_t evaluation_tasks_per_round = 32;
};

// The settings of a config, INVALID_ARGUMENT naming the field (e.g.
// "rollout.canary_fraction must be in (0, 1], got 1.5") when out of range.
absl::StatusOr<RolloutSettings> RolloutSettingsFromConfig(const v1::ServerConfig& config);

// Exact sums of evaluations (model.proto FleetEvaluation).
struct EvaluationSums {
  uint32_t devices = 0;
  uint64_t samples = 0;
  uint64_t correct = 0;
  uint64_t loss_sum_q16 = 0;

  v1::FleetEvaluation ToProto() const;
  static EvaluationSums FromProto(const v1::FleetEvaluation& proto);
};

// What the store keeps for the controller between restarts.
struct RolloutState {
  uint32_t serving_version = 0;    // >= 1 once a version exists
  uint32_t candidate_version = 0;  // 0: none
  // The serving version's evaluations when it was promoted (drift
  // baseline); devices 0 when it has none yet.
  EvaluationSums baseline;
};

// What the close of a round decided about the candidate.
struct RolloutDecision {
  enum class Kind { kNone, kPromoted, kRolledBack };
  Kind kind = Kind::kNone;
  uint32_t version = 0;          // the candidate decided on
  uint32_t previous_serving = 0;
  EvaluationSums candidate;      // the evidence: its evaluations
  EvaluationSums serving;        // what it was compared with
  // For people and for the version's Rollout.reason, e.g. "promoted:
  // canary accuracy 0.9512 on 12 devices >= serving 0.9480 - 0.0100".
  // The RoundManager appends what it did on a rollback ("; training
  // restarts from v14 as v17").
  std::string reason;
};

class RolloutController {
 public:
  explicit RolloutController(RolloutSettings settings);

  // Takes the stored state (after a restart, or the first version's
  // {serving = 1}). Clears the window and alerts.
  void Restore(const RolloutState& state);
  const RolloutState& state() const { return state_; }
  const RolloutSettings& settings() const { return settings_; }

  // The version `device_id` should serve: the candidate for a device in
  // its canary (tinyfed_common/rollout_bucket.h), the serving version
  // otherwise. With rollout disabled, always the serving version.
  uint32_t MeantVersion(std::string_view device_id) const;

  // One device's evaluation of a version, reported during `round` (from a
  // check-in's ServingState, an update or an evaluation-only task; the
  // caller has validated it). Adds it to the window of (version, round)
  // unless that device already reported that version in that round;
  // returns whether it was added. Rounds older than the window are
  // forgotten as newer ones arrive, so memory is bounded by the window.
  bool RecordEvaluation(uint32_t round, std::string_view device_id,
                        const v1::Evaluation& evaluation);

  // The window of `version`: its evaluations reported in rounds
  // [current_round - window_rounds + 1, current_round].
  EvaluationSums Window(uint32_t version, uint32_t current_round) const;

  // Version `version` was committed; `differs_from_serving` is whether its
  // checksum differs from the serving version's. With rollout disabled it
  // becomes the serving version at once (returns kPromoted, reason
  // "promoted: rollout disabled"); otherwise it becomes the candidate when
  // there is none and it differs (returns kNone either way).
  RolloutDecision OnCommitted(uint32_t version, bool differs_from_serving);

  // The round `round` closed (committed or abandoned). First judges drift
  // on the serving version (may raise an alert; see alerts()), then the
  // candidate: once `candidate_evaluations` (its FleetEvaluation from the
  // store: each device's first report) covers min_devices devices, it is
  // promoted when its accuracy >= the serving version's window accuracy
  // (or baseline, when the window has fewer than min_devices devices) -
  // tolerance, else rolled back. Promotion makes it serving with the
  // evidence as its baseline and clears the alerts; a rollback leaves no
  // candidate (the caller commits the copy of the serving version that
  // training restarts from). The serving version with no baseline (the
  // initial one, or one promoted by hand) takes its first window of at
  // least drift_min_devices devices as its baseline.
  RolloutDecision OnRoundClosed(uint32_t round, int64_t now_unix_ms,
                                const EvaluationSums& candidate_evaluations);

  // An operator made `version` serve at once (Admin Promote, or the copy
  // an Admin Rollback commits): no baseline until its first full window;
  // a candidate other than it is dropped (the caller marks it rolled
  // back); alerts cleared.
  void ServeNow(uint32_t version);

  // Alerts raised and not cleared, oldest first. Raising logs nothing
  // here: OnRoundClosed's caller compares before and after.
  const std::vector<v1::Alert>& alerts() const { return alerts_; }

  // Whether round `round` may hand out one more evaluation-only task
  // (counts it when it may): only while a candidate exists and below
  // evaluation_tasks_per_round in the round.
  bool TakeEvaluationTask(uint32_t round);

 private:
  RolloutSettings settings_;
  RolloutState state_;
  struct WindowKey {
    uint32_t version;
    uint32_t round;
    template <typename H>
    friend H AbslHashValue(H h, const WindowKey& k) {
      return H::combine(std::move(h), k.version, k.round);
    }
    bool operator==(const WindowKey& o) const { return version == o.version && round == o.round; }
  };
  struct WindowCell {
    EvaluationSums sums;
    absl::flat_hash_set<std::string> devices;
  };
  absl::flat_hash_map<WindowKey, WindowCell> window_;
  uint32_t newest_round_ = 0;
  std::vector<v1::Alert> alerts_;
  uint32_t evaluation_round_ = 0;
  uint32_t evaluation_tasks_ = 0;
};

}  // namespace tinyfed::server

#endif  // TINYFED_SERVER_ROLLOUT_H_
