#include "rollout.h"

#include <cmath>
#include <utility>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "tinyfed_common/evaluation_text.h"
#include "tinyfed_common/rollout_bucket.h"

namespace tinyfed::server {
namespace {

using u128 = unsigned __int128;

constexpr uint64_t kPpm = 1'000'000;

// The sign of p/q - r/s, exactly, for any 128-bit operands (q, s > 0):
// compares the integer parts, then the remainders' fractions by their
// reciprocals (Euclid's steps), so no product is ever formed and nothing
// can overflow however large the sums grow.
int CompareFractions(u128 p, u128 q, u128 r, u128 s) {
  int sign = 1;
  for (;;) {
    const u128 a = p / q, b = r / s;
    if (a != b) return a < b ? -sign : sign;
    const u128 p_rest = p % q, r_rest = r % s;
    if (p_rest == 0 || r_rest == 0) {
      if (p_rest == r_rest) return 0;
      return p_rest == 0 ? -sign : sign;
    }
    // p_rest/q < r_rest/s exactly when q/p_rest > s/r_rest.
    p = q;
    q = p_rest;
    r = s;
    s = r_rest;
    sign = -sign;
  }
}

// The sign of accuracy(a) + plus_ppm / 10^6 - accuracy(b).
// REQUIRES: a.samples > 0 and b.samples > 0.
int CompareAccuracyPlus(const EvaluationSums& a, uint32_t plus_ppm, const EvaluationSums& b) {
  // (correct_a x 10^6 + plus x samples_a) / (samples_a x 10^6): both below
  // 2^96 for 64-bit sums.
  const u128 numerator = static_cast<u128>(a.correct) * kPpm + static_cast<u128>(plus_ppm) * a.samples;
  const u128 denominator = static_cast<u128>(a.samples) * kPpm;
  return CompareFractions(numerator, denominator, b.correct, b.samples);
}

// correct / samples to four decimals, rounded half up, in integers.
std::string FormatAccuracy(const EvaluationSums& e) {
  if (e.samples == 0) return "-";
  return tinyfed::FormatAccuracy(e.correct, e.samples);
}

// A tolerance or margin in ppm as a decimal: four places, six when the
// value needs them.
std::string FormatPpm(uint32_t ppm) {
  if (ppm % 100 == 0) return absl::StrFormat("%d.%04d", ppm / kPpm, ppm % kPpm / 100);
  return absl::StrFormat("%d.%06d", ppm / kPpm, ppm % kPpm);
}

uint32_t ToPpm(double fraction) { return static_cast<uint32_t>(std::llround(fraction * 1e6)); }

std::string Devices(uint32_t n) { return absl::StrCat(n, n == 1 ? " device" : " devices"); }

}  // namespace

absl::StatusOr<RolloutSettings> RolloutSettingsFromConfig(const v1::ServerConfig& config) {
  auto bad = [](auto... parts) { return absl::InvalidArgumentError(absl::StrCat(parts...)); };
  RolloutSettings s;
  const v1::RolloutPolicy& r = config.rollout();
  if (r.has_enabled()) s.enabled = r.enabled();
  if (r.has_canary_fraction()) {
    const double f = r.canary_fraction();
    // Below half a bucket the canary would hold no device at all, and the
    // candidate would wait on evaluation-only tasks alone.
    if (!(f > 0 && f <= 1) || CanaryBuckets(f) == 0) {
      return bad("rollout.canary_fraction must be in (0, 1] and at least 0.0001 (one bucket of ",
                 kRolloutBuckets, "), got ", f);
    }
    s.canary_fraction = f;
  }
  s.canary_buckets = CanaryBuckets(s.canary_fraction);
  if (r.has_min_devices()) {
    if (r.min_devices() < 1) return bad("rollout.min_devices must be >= 1, got 0");
    s.min_devices = r.min_devices();
  }
  if (r.has_tolerance()) {
    if (!(r.tolerance() >= 0 && r.tolerance() <= 1)) {
      return bad("rollout.tolerance must be in [0, 1], got ", r.tolerance());
    }
    s.tolerance_ppm = ToPpm(r.tolerance());
  }
  const v1::DriftPolicy& d = config.drift();
  if (d.has_window_rounds()) {
    if (d.window_rounds() < 1) return bad("drift.window_rounds must be >= 1, got 0");
    s.window_rounds = d.window_rounds();
  }
  if (d.has_margin()) {
    // A margin that rounds to 0 ppm would alert on any dip at all.
    if (!(d.margin() > 0 && d.margin() <= 1) || ToPpm(d.margin()) == 0) {
      return bad("drift.margin must be in (0, 1] and at least 0.000001, got ", d.margin());
    }
    s.drift_margin_ppm = ToPpm(d.margin());
  }
  if (d.has_min_devices()) {
    if (d.min_devices() < 1) return bad("drift.min_devices must be >= 1, got 0");
    s.drift_min_devices = d.min_devices();
  }
  if (config.evaluation().has_tasks_per_round()) {
    s.evaluation_tasks_per_round = config.evaluation().tasks_per_round();
  }
  return s;
}

v1::FleetEvaluation EvaluationSums::ToProto() const {
  v1::FleetEvaluation p;
  p.set_devices(devices);
  p.set_samples(samples);
  p.set_correct(correct);
  p.set_loss_sum_q16(loss_sum_q16);
  return p;
}

EvaluationSums EvaluationSums::FromProto(const v1::FleetEvaluation& proto) {
  return EvaluationSums{proto.devices(), proto.samples(), proto.correct(), proto.loss_sum_q16()};
}

RolloutController::RolloutController(RolloutSettings settings) : settings_(settings) {}

void RolloutController::Restore(const RolloutState& state) {
  state_ = state;
  window_.clear();
  newest_round_ = 0;
  alerts_.clear();
  evaluation_round_ = 0;
  evaluation_tasks_ = 0;
}

uint32_t RolloutController::MeantVersion(std::string_view device_id) const {
  if (!settings_.enabled || state_.candidate_version == 0) return state_.serving_version;
  return RolloutBucket(device_id) < settings_.canary_buckets ? state_.candidate_version
                                                             : state_.serving_version;
}

bool RolloutController::RecordEvaluation(uint32_t round, std::string_view device_id,
                                         const v1::Evaluation& evaluation) {
  if (evaluation.model_version() == 0 || evaluation.samples() == 0) return false;
  // A report for a round already outside the window would be dropped at
  // once; refusing it keeps a late report from resurrecting a cell.
  if (static_cast<uint64_t>(round) + settings_.window_rounds <= newest_round_) return false;
  if (round > newest_round_) {
    newest_round_ = round;
    absl::erase_if(window_, [&](const auto& cell) {
      return static_cast<uint64_t>(cell.first.round) + settings_.window_rounds <= newest_round_;
    });
  }
  WindowCell& cell = window_[WindowKey{evaluation.model_version(), round}];
  if (!cell.devices.emplace(device_id).second) return false;
  cell.sums.devices += 1;
  cell.sums.samples += evaluation.samples();
  cell.sums.correct += evaluation.correct();
  cell.sums.loss_sum_q16 += evaluation.loss_sum_q16();
  return true;
}

EvaluationSums RolloutController::Window(uint32_t version, uint32_t current_round) const {
  EvaluationSums sums;
  for (const auto& [key, cell] : window_) {
    if (key.version != version || key.round > current_round ||
        static_cast<uint64_t>(key.round) + settings_.window_rounds <= current_round) {
      continue;
    }
    sums.devices += cell.sums.devices;
    sums.samples += cell.sums.samples;
    sums.correct += cell.sums.correct;
    sums.loss_sum_q16 += cell.sums.loss_sum_q16;
  }
  return sums;
}

RolloutDecision RolloutController::OnCommitted(uint32_t version, bool differs_from_serving) {
  RolloutDecision decision;
  if (!settings_.enabled) {
    decision.kind = RolloutDecision::Kind::kPromoted;
    decision.version = version;
    decision.previous_serving = state_.serving_version;
    decision.reason = "promoted: rollout disabled";
    state_.serving_version = version;
    state_.candidate_version = 0;
    state_.baseline = EvaluationSums{};
    alerts_.clear();
    return decision;
  }
  if (state_.candidate_version == 0 && differs_from_serving) state_.candidate_version = version;
  return decision;
}

RolloutDecision RolloutController::OnRoundClosed(uint32_t round, int64_t now_unix_ms,
                                                 const EvaluationSums& candidate_evaluations) {
  if (round > newest_round_) {
    newest_round_ = round;
    absl::erase_if(window_, [&](const auto& cell) {
      return static_cast<uint64_t>(cell.first.round) + settings_.window_rounds <= newest_round_;
    });
  }
  const uint32_t serving = state_.serving_version;
  const EvaluationSums window = Window(serving, round);

  // Drift first, so that a candidate promoted at this close is judged on
  // a later round's window, not on the evidence it replaced.
  if (state_.baseline.samples == 0) {
    if (window.devices >= settings_.drift_min_devices && window.samples != 0) {
      state_.baseline = window;
    }
  } else if (window.devices >= settings_.drift_min_devices && window.samples != 0) {
    bool raised = false;
    for (const v1::Alert& a : alerts_) {
      raised = raised || (a.kind() == "drift" && a.model_version() == serving);
    }
    if (!raised && CompareAccuracyPlus(window, settings_.drift_margin_ppm, state_.baseline) < 0) {
      v1::Alert& alert = alerts_.emplace_back();
      alert.set_kind("drift");
      alert.set_model_version(serving);
      alert.set_raised_round(round);
      alert.set_raised_unix_ms(now_unix_ms);
      *alert.mutable_window() = window.ToProto();
      *alert.mutable_baseline() = state_.baseline.ToProto();
      alert.set_message(absl::StrCat(
          "accuracy ", FormatAccuracy(window), " over the last ", settings_.window_rounds,
          settings_.window_rounds == 1 ? " round (" : " rounds (", Devices(window.devices),
          ") < ", FormatAccuracy(state_.baseline), " at promotion (",
          Devices(state_.baseline.devices), ") - margin ", FormatPpm(settings_.drift_margin_ppm)));
    }
  }

  RolloutDecision decision;
  const uint32_t candidate = state_.candidate_version;
  if (!settings_.enabled || candidate == 0 ||
      candidate_evaluations.devices < settings_.min_devices || candidate_evaluations.samples == 0) {
    return decision;
  }
  // The serving version's evidence: its window when it is wide enough,
  // else what it was promoted on. With neither the candidate waits: there
  // is nothing to hold it against.
  EvaluationSums reference;
  std::string reference_name;
  if (window.devices >= settings_.min_devices && window.samples != 0) {
    reference = window;
    reference_name = "over the drift window";
  } else if (state_.baseline.samples != 0) {
    reference = state_.baseline;
    reference_name = "at promotion";
  } else {
    return decision;
  }
  decision.version = candidate;
  decision.previous_serving = serving;
  decision.candidate = candidate_evaluations;
  decision.serving = reference;
  const bool holds =
      CompareAccuracyPlus(candidate_evaluations, settings_.tolerance_ppm, reference) >= 0;
  const std::string evidence = absl::StrCat(
      "canary accuracy ", FormatAccuracy(candidate_evaluations), " on ",
      Devices(candidate_evaluations.devices), holds ? " >= " : " < ", "serving v", serving, " ",
      FormatAccuracy(reference), " ", reference_name, " (", Devices(reference.devices), ") - ",
      FormatPpm(settings_.tolerance_ppm));
  state_.candidate_version = 0;
  if (holds) {
    decision.kind = RolloutDecision::Kind::kPromoted;
    decision.reason = absl::StrCat("promoted: ", evidence);
    state_.serving_version = candidate;
    state_.baseline = candidate_evaluations;
    alerts_.clear();
  } else {
    decision.kind = RolloutDecision::Kind::kRolledBack;
    decision.reason = absl::StrCat("rolled back: ", evidence);
  }
  return decision;
}

void RolloutController::ServeNow(uint32_t version) {
  state_.serving_version = version;
  state_.candidate_version = 0;
  state_.baseline = EvaluationSums{};
  alerts_.clear();
}

bool RolloutController::TakeEvaluationTask(uint32_t round) {
  if (!settings_.enabled || state_.candidate_version == 0) return false;
  if (round != evaluation_round_) {
    evaluation_round_ = round;
    evaluation_tasks_ = 0;
  }
  if (evaluation_tasks_ >= settings_.evaluation_tasks_per_round) return false;
  ++evaluation_tasks_;
  return true;
}

}  // namespace tinyfed::server
