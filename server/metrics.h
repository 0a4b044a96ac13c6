// The server's Prometheus metrics: counters and histograms updated on the
// request path, gauges read from the RoundManager when scraped, and the
// Prometheus text exposition format (version 0.0.4) they are written in.
//
// Names follow Prometheus conventions: tinyfed_<thing>_<unit>, `_total` on
// counters, base units (seconds). Label values come from fixed sets only
// (status code names, check-in outcomes), never from a request: a device id
// or a peer address never becomes a label.
//
// The request path pays one relaxed atomic add per counter and, for a
// histogram, two (its bucket and its sum); nothing there takes a lock or
// allocates. A scrape reads each atomic once: the numbers of one scrape
// are each exact but not taken at one instant (a histogram's _count is the
// sum of its buckets as read, so those two always agree).
//
// Safe for concurrent use.
#ifndef TINYFED_SERVER_METRICS_H_
#define TINYFED_SERVER_METRICS_H_

#include <array>
#include <atomic>
#include <cstdint>
#include <initializer_list>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/base/thread_annotations.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "rollout.h"

namespace tinyfed::server {

struct RoundSnapshot;
struct VersionEvaluation;

// A count that only goes up.
class Counter {
 public:
  void Add(uint64_t n = 1) { value_.fetch_add(n, std::memory_order_relaxed); }
  uint64_t Value() const { return value_.load(std::memory_order_relaxed); }

 private:
  std::atomic<uint64_t> value_{0};
};

// One counter per absl::StatusCode, written as one metric with a `code`
// label holding the code's name (PERMISSION_DENIED, as gRPC names it).
class StatusCodeCounter {
 public:
  // Codes outside absl's numbering count as UNKNOWN.
  void Add(absl::StatusCode code);
  uint64_t Value(absl::StatusCode code) const;
  // Every code but OK, in code order, including those still at zero (a
  // series that appears late breaks rate() over its first interval).
  void AppendText(absl::string_view name, absl::string_view help, std::string* out) const;

 private:
  static constexpr int kCodes = 17;  // absl::StatusCode 0..16
  std::array<Counter, kCodes> counts_;
};

// Observations of a duration in fixed buckets, written with `le` bounds in
// seconds. The sum is kept in whole microseconds (a duration below 1 us
// adds 0 to the sum; it is still counted).
class DurationHistogram {
 public:
  // REQUIRES: `upper_bounds` strictly increasing and positive; +Inf is
  // added to them.
  explicit DurationHistogram(std::initializer_list<absl::Duration> upper_bounds);
  void Observe(absl::Duration d);
  uint64_t Count() const;
  void AppendText(absl::string_view name, absl::string_view help, std::string* out) const;

 private:
  std::vector<int64_t> bounds_us_;                 // immutable after construction
  std::vector<std::atomic<uint64_t>> buckets_;     // bounds_us_.size() + 1 (+Inf); not cumulative
  std::atomic<uint64_t> sum_us_{0};
};

// The metrics tinyfed-server exports. The service and the RoundManager
// update them; Render() writes them with the round's gauges.
class ServerMetrics {
 public:
  ServerMetrics();

  // CheckIn calls by what they got: a task (evaluation-only ones too), a
  // RetryAfter, a model to serve, or an error status (any code, before or
  // inside the RoundManager).
  Counter check_ins_task;
  Counter check_ins_retry_after;
  Counter check_ins_model;
  Counter check_ins_refused;
  // SubmitUpdate calls answered OK (an idempotent retry's acknowledgement
  // counts again: it is another call answered), and those refused, by code.
  Counter updates_accepted;
  StatusCodeCounter updates_rejected;
  // Rounds closed with a committed version, and closed without one.
  Counter rounds_committed;
  Counter rounds_abandoned;
  // From the SubmitUpdate call's arrival to its OK answer (the update
  // durable): what a device waits for its acknowledgement.
  DurationHistogram ack_latency;
  // A committed round's wall time from opening to commit. Abandoned rounds
  // are not observed (they last their deadline by definition).
  DurationHistogram round_duration;

  // The staged rollout as the RoundManager last decided it: the serving
  // version, the candidate (0: none), the number of active alerts, and
  // the serving version's evaluations over the drift window. Call it
  // whenever one changes (at start, at each round close, on a promotion
  // by hand); Render() writes them as tinyfed_model_serving_version,
  // tinyfed_model_candidate_version, tinyfed_drift_alert and
  // tinyfed_serving_window_{devices,samples,correct,accuracy_ratio}.
  // Until the first call the serving version is the round's latest
  // version, as it was before staged rollout, and the rest are 0 (the
  // accuracy NaN). The four values are taken and read together, so a
  // scrape never mixes two calls.
  void SetRollout(uint32_t serving_version, uint32_t candidate_version, size_t alerts,
                  const EvaluationSums& serving_window);

  // Central DP's totals as the RoundManager last computed them (at start
  // and at each noised commit): the epsilon spent over every noised
  // version at the configured delta, and whether the budget allows no
  // further round. Render() writes them as tinyfed_privacy_epsilon_spent
  // and tinyfed_privacy_budget_spent (1: spent, no round opens; 0
  // otherwise), always, 0 and 0 while privacy is off or before the first
  // call, so that their series exist from the first scrape.
  void SetPrivacy(double epsilon_spent, bool budget_spent);

  // The exposition text of every metric, with the gauges of `round` and
  // those of `fleet`: the store's LatestFleetEvaluation, the newest
  // version devices have evaluated. Without one (null: none yet, or the
  // store could not say) its gauges are still written, the version and
  // counts as 0 and the accuracy and loss as NaN, so that their series
  // exist from the first scrape.
  std::string Render(const RoundSnapshot& round, const VersionEvaluation* fleet = nullptr) const;

 private:
  struct Rollout {
    bool set = false;
    uint32_t serving = 0;
    uint32_t candidate = 0;
    size_t alerts = 0;
    EvaluationSums window;
  };
  // Not on the request path: written a few times per round.
  mutable absl::Mutex rollout_mu_;
  Rollout rollout_ ABSL_GUARDED_BY(rollout_mu_);
  double epsilon_spent_ ABSL_GUARDED_BY(rollout_mu_) = 0;
  bool budget_spent_ ABSL_GUARDED_BY(rollout_mu_) = false;
};

// Exposition-format pieces, exposed for tests. A value is written as
// Prometheus parses it back exactly: integers in decimal, other doubles in
// their shortest round-trip form, infinities as +Inf/-Inf.
std::string FormatSampleValue(double value);
// `"` `\` and newline escaped as the format requires of label values.
std::string EscapeLabelValue(absl::string_view value);

}  // namespace tinyfed::server

#endif  // TINYFED_SERVER_METRICS_H_
