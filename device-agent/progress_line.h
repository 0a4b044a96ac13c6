// A status line kept in place on a terminal: redrawn with a carriage
// return, never scrolled, and at most once per interval however often its
// content changes (a run's devices report thousands of steps a second; a
// terminal, or a log that captures it, needs ten redraws a second at most).
// Requires external synchronization: one caller at a time.
#ifndef TINYFED_DEVICE_AGENT_PROGRESS_LINE_H_
#define TINYFED_DEVICE_AGENT_PROGRESS_LINE_H_

#include <chrono>
#include <cstdint>
#include <cstdio>
#include <functional>
#include <string>

#include "absl/functional/function_ref.h"

namespace tinyfed::agent {

class ProgressLine {
 public:
  using Clock = std::function<std::chrono::steady_clock::time_point()>;

  // Writes to `out`, which must outlive the line. `now` is the clock the
  // interval is measured on (tests pass a fake one).
  explicit ProgressLine(FILE* out,
                        std::chrono::steady_clock::duration min_interval = std::chrono::milliseconds(100),
                        Clock now = std::chrono::steady_clock::now);

  // Redraws the line with `text()` when at least `min_interval` passed since
  // the last redraw (the first call always draws); otherwise does nothing
  // and does not call `text`. A longer text than the last one's is drawn
  // whole; a shorter one is padded so nothing of the old one remains.
  void Update(absl::FunctionRef<std::string()> text);

  // Blanks the line and returns the cursor to its start, if anything is
  // drawn. The interval still runs from the last redraw: a run of short
  // rounds, cleared after each, is redrawn no more often than one long one.
  void Clear();

  uint64_t redraws() const { return redraws_; }

 private:
  FILE* out_;
  std::chrono::steady_clock::duration min_interval_;
  Clock now_;
  bool drawn_ = false;  // something is on the line
  std::chrono::steady_clock::time_point last_{};
  size_t width_ = 0;  // of the text on the line now
  uint64_t redraws_ = 0;
};

// The time a run has left, in seconds, from the rounds it finished: their
// mean duration times the rounds still to run, less the time the current
// one has already taken (never below 0). Negative when no round has
// finished: there is nothing to estimate from yet.
double EstimateSecondsLeft(double finished_rounds_seconds, uint32_t finished_rounds,
                           uint32_t total_rounds, double current_round_seconds);

// "about 7s left", "about 2m05s left", "about 1h03m left"; "time left:
// after round 1" while there is no estimate (negative seconds).
std::string FormatTimeLeft(double seconds);

}  // namespace tinyfed::agent

#endif  // TINYFED_DEVICE_AGENT_PROGRESS_LINE_H_
