#include "progress_line.h"

#include <algorithm>
#include <cmath>

#include "absl/strings/str_format.h"

namespace tinyfed::agent {

ProgressLine::ProgressLine(FILE* out, std::chrono::steady_clock::duration min_interval,
                           Clock now)
    : out_(out), min_interval_(min_interval), now_(std::move(now)) {}

void ProgressLine::Update(absl::FunctionRef<std::string()> text) {
  const auto t = now_();
  if (redraws_ > 0 && t - last_ < min_interval_) return;
  const std::string line = text();
  const size_t pad = width_ > line.size() ? width_ - line.size() : 0;
  std::fprintf(out_, "\r%s%*s", line.c_str(), static_cast<int>(pad), "");
  std::fflush(out_);
  drawn_ = true;
  last_ = t;
  width_ = line.size();
  ++redraws_;
}

void ProgressLine::Clear() {
  if (!drawn_) return;
  std::fprintf(out_, "\r%*s\r", static_cast<int>(width_), "");
  std::fflush(out_);
  drawn_ = false;
  width_ = 0;
}

double EstimateSecondsLeft(double finished_rounds_seconds, uint32_t finished_rounds,
                           uint32_t total_rounds, double current_round_seconds) {
  if (finished_rounds == 0) return -1;
  const double per_round = finished_rounds_seconds / finished_rounds;
  const uint32_t to_run = total_rounds > finished_rounds ? total_rounds - finished_rounds : 0;
  return std::max(0.0, per_round * to_run - current_round_seconds);
}

std::string FormatTimeLeft(double seconds) {
  if (seconds < 0) return "time left: after round 1";
  // Whole seconds, rounded up: "0s left" while work remains would mislead.
  const auto s = static_cast<long long>(std::ceil(seconds));
  if (s < 60) return absl::StrFormat("about %llds left", s);
  if (s < 3600) return absl::StrFormat("about %lldm%02llds left", s / 60, s % 60);
  return absl::StrFormat("about %lldh%02lldm left", s / 3600, (s % 3600) / 60);
}

}  // namespace tinyfed::agent
