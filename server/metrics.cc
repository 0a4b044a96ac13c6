#include "metrics.h"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <limits>

#include "absl/strings/str_cat.h"
#include "model_store.h"
#include "round_manager.h"

namespace tinyfed::server {
namespace {

void AppendHeader(absl::string_view name, absl::string_view help, absl::string_view type,
                  std::string* out) {
  // HELP text escapes only backslash and newline; ours has neither, but a
  // future help string must not break the format.
  std::string escaped;
  for (char c : help) {
    if (c == '\\') {
      escaped += "\\\\";
    } else if (c == '\n') {
      escaped += "\\n";
    } else {
      escaped += c;
    }
  }
  absl::StrAppend(out, "# HELP ", name, " ", escaped, "\n# TYPE ", name, " ", type, "\n");
}

void AppendSample(absl::string_view name, absl::string_view labels, double value,
                  std::string* out) {
  absl::StrAppend(out, name, labels.empty() ? "" : "{", labels, labels.empty() ? "" : "}", " ",
                  FormatSampleValue(value), "\n");
}

void AppendSample(absl::string_view name, uint64_t value, std::string* out) {
  absl::StrAppend(out, name, " ", value, "\n");
}

void AppendCounter(absl::string_view name, absl::string_view help, const Counter& c,
                   std::string* out) {
  AppendHeader(name, help, "counter", out);
  AppendSample(name, c.Value(), out);
}

void AppendGauge(absl::string_view name, absl::string_view help, double value, std::string* out) {
  AppendHeader(name, help, "gauge", out);
  AppendSample(name, "", value, out);
}

// Bounds for an acknowledgement: group commit makes it a few milliseconds
// on a healthy disk, seconds when storage stalls.
const std::initializer_list<absl::Duration> kAckLatencyBounds = {
    absl::Microseconds(500), absl::Milliseconds(1),   absl::Microseconds(2500),
    absl::Milliseconds(5),   absl::Milliseconds(10),  absl::Milliseconds(25),
    absl::Milliseconds(50),  absl::Milliseconds(100), absl::Milliseconds(250),
    absl::Milliseconds(500), absl::Seconds(1),        absl::Milliseconds(2500),
    absl::Seconds(5),        absl::Seconds(10)};
// Bounds for a round: from a simulator's seconds to a real fleet's hours.
const std::initializer_list<absl::Duration> kRoundDurationBounds = {
    absl::Seconds(1),   absl::Seconds(5),    absl::Seconds(10),   absl::Seconds(30),
    absl::Minutes(1),   absl::Minutes(2),    absl::Minutes(5),    absl::Minutes(10),
    absl::Minutes(30),  absl::Hours(1),      absl::Hours(3),      absl::Hours(12)};

}  // namespace

std::string FormatSampleValue(double value) {
  if (std::isnan(value)) return "NaN";
  if (std::isinf(value)) return value > 0 ? "+Inf" : "-Inf";
  // Plain decimals where they stay short (bucket bounds read "0.0005", not
  // "5e-04"); the shortest form either way, which parses back to `value`.
  const double magnitude = std::fabs(value);
  const std::chars_format format = value == 0 || (magnitude >= 1e-6 && magnitude < 1e15)
                                       ? std::chars_format::fixed
                                       : std::chars_format::general;
  // Fixed within that range: at most 15 integer digits, or 6 leading zeros
  // and 17 significant ones.
  char buffer[64];
  const std::to_chars_result r = std::to_chars(buffer, buffer + sizeof buffer, value, format);
  return std::string(buffer, r.ptr);
}

std::string EscapeLabelValue(absl::string_view value) {
  std::string out;
  out.reserve(value.size());
  for (char c : value) {
    if (c == '\\') {
      out += "\\\\";
    } else if (c == '"') {
      out += "\\\"";
    } else if (c == '\n') {
      out += "\\n";
    } else {
      out += c;
    }
  }
  return out;
}

void StatusCodeCounter::Add(absl::StatusCode code) {
  int i = static_cast<int>(code);
  if (i < 0 || i >= kCodes) i = static_cast<int>(absl::StatusCode::kUnknown);
  counts_[static_cast<size_t>(i)].Add();
}

uint64_t StatusCodeCounter::Value(absl::StatusCode code) const {
  const int i = static_cast<int>(code);
  if (i < 0 || i >= kCodes) return 0;
  return counts_[static_cast<size_t>(i)].Value();
}

void StatusCodeCounter::AppendText(absl::string_view name, absl::string_view help,
                                   std::string* out) const {
  AppendHeader(name, help, "counter", out);
  for (int i = 1; i < kCodes; ++i) {
    const std::string code = absl::StatusCodeToString(static_cast<absl::StatusCode>(i));
    absl::StrAppend(out, name, "{code=\"", EscapeLabelValue(code), "\"} ",
                    counts_[static_cast<size_t>(i)].Value(), "\n");
  }
}

DurationHistogram::DurationHistogram(std::initializer_list<absl::Duration> upper_bounds)
    : buckets_(upper_bounds.size() + 1) {
  for (absl::Duration d : upper_bounds) bounds_us_.push_back(absl::ToInt64Microseconds(d));
}

void DurationHistogram::Observe(absl::Duration d) {
  const int64_t us = std::max<int64_t>(0, absl::ToInt64Microseconds(d));
  // A bucket holds the observations above the previous bound and at most
  // its own (`le`: less or equal).
  const size_t bucket = static_cast<size_t>(
      std::lower_bound(bounds_us_.begin(), bounds_us_.end(), us) - bounds_us_.begin());
  buckets_[bucket].fetch_add(1, std::memory_order_relaxed);
  sum_us_.fetch_add(static_cast<uint64_t>(us), std::memory_order_relaxed);
}

uint64_t DurationHistogram::Count() const {
  uint64_t n = 0;
  for (const auto& b : buckets_) n += b.load(std::memory_order_relaxed);
  return n;
}

void DurationHistogram::AppendText(absl::string_view name, absl::string_view help,
                                   std::string* out) const {
  AppendHeader(name, help, "histogram", out);
  const std::string bucket_name = absl::StrCat(name, "_bucket");
  uint64_t cumulative = 0;
  for (size_t i = 0; i < buckets_.size(); ++i) {
    cumulative += buckets_[i].load(std::memory_order_relaxed);
    const double le = i < bounds_us_.size() ? static_cast<double>(bounds_us_[i]) / 1e6
                                            : std::numeric_limits<double>::infinity();
    absl::StrAppend(out, bucket_name, "{le=\"", FormatSampleValue(le), "\"} ", cumulative, "\n");
  }
  AppendSample(absl::StrCat(name, "_sum"), "",
               static_cast<double>(sum_us_.load(std::memory_order_relaxed)) / 1e6, out);
  AppendSample(absl::StrCat(name, "_count"), cumulative, out);
}

ServerMetrics::ServerMetrics()
    : ack_latency(kAckLatencyBounds), round_duration(kRoundDurationBounds) {}

void ServerMetrics::SetRollout(uint32_t serving_version, uint32_t candidate_version,
                               size_t alerts, const EvaluationSums& serving_window) {
  absl::MutexLock lock(&rollout_mu_);
  rollout_ = Rollout{true, serving_version, candidate_version, alerts, serving_window};
}

void ServerMetrics::SetPrivacy(double epsilon_spent, bool budget_spent) {
  absl::MutexLock lock(&rollout_mu_);
  epsilon_spent_ = epsilon_spent;
  budget_spent_ = budget_spent;
}

std::string ServerMetrics::Render(const RoundSnapshot& round,
                                  const VersionEvaluation* fleet) const {
  std::string out;
  out.reserve(8192);
  AppendHeader("tinyfed_checkins_total",
               "CheckIn calls answered, by outcome: a task, a retry hint, a model to serve, or an "
               "error",
               "counter",
               &out);
  AppendSample("tinyfed_checkins_total", "outcome=\"task\"",
               static_cast<double>(check_ins_task.Value()), &out);
  AppendSample("tinyfed_checkins_total", "outcome=\"retry_after\"",
               static_cast<double>(check_ins_retry_after.Value()), &out);
  AppendSample("tinyfed_checkins_total", "outcome=\"model\"",
               static_cast<double>(check_ins_model.Value()), &out);
  AppendSample("tinyfed_checkins_total", "outcome=\"refused\"",
               static_cast<double>(check_ins_refused.Value()), &out);
  AppendCounter("tinyfed_updates_accepted_total",
                "SubmitUpdate calls acknowledged (the update durable; a retry's "
                "re-acknowledgement counts again)",
                updates_accepted, &out);
  updates_rejected.AppendText("tinyfed_updates_rejected_total",
                              "SubmitUpdate calls refused, by gRPC status code", &out);
  AppendCounter("tinyfed_rounds_committed_total", "rounds closed with a new model version",
                rounds_committed, &out);
  AppendCounter("tinyfed_rounds_abandoned_total",
                "rounds closed at their deadline with too few updates", rounds_abandoned, &out);
  ack_latency.AppendText("tinyfed_ack_latency_seconds",
                         "time from a SubmitUpdate call's arrival to its acknowledgement", &out);
  round_duration.AppendText("tinyfed_round_duration_seconds",
                            "wall time from a round's opening to its commit", &out);

  AppendGauge("tinyfed_round_open", "1 while a round accepts work, 0 otherwise",
              round.open ? 1 : 0, &out);
  AppendGauge("tinyfed_round_number", "the current round's number", round.round, &out);
  AppendGauge("tinyfed_round_base_version", "the model version the current round trains",
              round.base_version, &out);
  AppendGauge("tinyfed_round_tasks_issued", "tasks handed out in the current round",
              round.tasks_issued, &out);
  AppendGauge("tinyfed_round_updates_accepted", "durable updates in the current round",
              round.accepted, &out);
  AppendGauge("tinyfed_round_updates_pending",
              "updates of the current round being written to the store", round.pending, &out);
  AppendGauge("tinyfed_round_updates_rejected",
              "updates refused (any code) while the current round was open, since the server "
              "started", round.rejected, &out);
  AppendGauge("tinyfed_server_paused",
              "1 while an operator has paused the server (no new tasks or rounds), 0 otherwise",
              round.paused ? 1 : 0, &out);
  AppendGauge("tinyfed_round_time_left_seconds",
              "time until the current round's deadline (0 once passed)",
              static_cast<double>(round.time_left_ms) / 1e3, &out);
  AppendGauge("tinyfed_model_latest_version", "the latest committed model version",
              round.latest_version, &out);
  Rollout rollout;
  double epsilon_spent = 0;
  bool budget_spent = false;
  {
    absl::MutexLock lock(&rollout_mu_);
    rollout = rollout_;
    epsilon_spent = epsilon_spent_;
    budget_spent = budget_spent_;
  }
  AppendGauge("tinyfed_privacy_epsilon_spent",
              "central DP: epsilon spent over every noised model version, at the configured "
              "delta (0 when privacy is off)",
              epsilon_spent, &out);
  AppendGauge("tinyfed_privacy_budget_spent",
              "1 once the privacy budget allows no further round (none opens), 0 otherwise",
              budget_spent ? 1 : 0, &out);
  const double kNaN = std::numeric_limits<double>::quiet_NaN();
  AppendGauge("tinyfed_model_serving_version",
              "the model version devices serve, every device not in a candidate's canary",
              rollout.set ? rollout.serving : round.latest_version, &out);
  AppendGauge("tinyfed_model_candidate_version",
              "the version in canary awaiting promotion or rollback (0: none)", rollout.candidate,
              &out);
  AppendGauge("tinyfed_drift_alert",
              "active alerts: the serving version's accuracy over the drift window fell more "
              "than the margin below its accuracy at promotion (0: none)",
              static_cast<double>(rollout.alerts), &out);
  const EvaluationSums& w = rollout.window;
  AppendGauge("tinyfed_serving_window_devices",
              "device reports of the serving version in the drift window (each device once per "
              "round)", w.devices, &out);
  AppendGauge("tinyfed_serving_window_samples",
              "labelled samples of those reports", static_cast<double>(w.samples), &out);
  AppendGauge("tinyfed_serving_window_correct",
              "correctly classified samples of those reports", static_cast<double>(w.correct),
              &out);
  AppendGauge("tinyfed_serving_window_accuracy_ratio",
              "the serving version's accuracy over the drift window: correct / samples",
              w.samples != 0 ? static_cast<double>(w.correct) / static_cast<double>(w.samples)
                             : kNaN,
              &out);

  const v1::FleetEvaluation none;
  const v1::FleetEvaluation& f = fleet != nullptr ? fleet->fleet : none;
  AppendGauge("tinyfed_model_fleet_evaluated_version",
              "the newest model version devices have evaluated (0: none yet)",
              fleet != nullptr ? fleet->version : 0, &out);
  AppendGauge("tinyfed_model_fleet_evaluated_devices",
              "devices that evaluated that version (each counted once)", f.devices(), &out);
  AppendGauge("tinyfed_model_fleet_evaluated_samples",
              "labelled samples that version was evaluated on, over the fleet",
              static_cast<double>(f.samples()), &out);
  AppendGauge("tinyfed_model_fleet_accuracy_ratio",
              "that version's federated accuracy: correct / samples over the fleet",
              f.samples() != 0
                  ? static_cast<double>(f.correct()) / static_cast<double>(f.samples())
                  : kNaN,
              &out);
  AppendGauge("tinyfed_model_fleet_mean_loss",
              "that version's mean cross-entropy per sample over the fleet, in nats",
              f.samples() != 0 ? static_cast<double>(f.loss_sum_q16()) / 65536.0 /
                                     static_cast<double>(f.samples())
                               : kNaN,
              &out);
  return out;
}

}  // namespace tinyfed::server
