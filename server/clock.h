// Time behind an interface, so tests can run rounds in simulated time.
//
// Two clocks, for two purposes. Wall time (NowMs) is what operators read
// in records: when a round opened, when a version was created. It can jump
// either way (NTP corrections, an operator setting the date, a VM resumed),
// so nothing measures an interval with it. Monotonic time (MonotonicMs)
// never goes back and does not follow wall-clock steps; deadlines, rate
// windows and every other interval are measured on it. Its origin is
// arbitrary (boot, for the system's), so a monotonic reading means nothing
// outside the process that took it and is never stored.
//
// Implementations are safe for concurrent use.
#ifndef TINYFED_SERVER_CLOCK_H_
#define TINYFED_SERVER_CLOCK_H_

#include <atomic>
#include <cstdint>

namespace tinyfed::server {

class Clock {
 public:
  virtual ~Clock() = default;
  // Wall time: milliseconds since the Unix epoch. For records only.
  virtual int64_t NowMs() const = 0;
  // Milliseconds since an arbitrary origin fixed for the process; never
  // decreases. For intervals and deadlines.
  virtual int64_t MonotonicMs() const = 0;
};

// The system's clocks: std::chrono::system_clock and steady_clock.
class SystemClock final : public Clock {
 public:
  int64_t NowMs() const override;
  int64_t MonotonicMs() const override;
};

// Clocks that move only when told to. AdvanceMs is time passing (both
// clocks move); StepWallMs is the wall clock being set, by any amount in
// either direction, while monotonic time stands still. The two start far
// apart, so code that mixes them up is wrong by decades, not by a little.
// Safe for concurrent use.
class FakeClock final : public Clock {
 public:
  explicit FakeClock(int64_t start_ms = 1'700'000'000'000) : wall_ms_(start_ms) {}
  int64_t NowMs() const override { return wall_ms_.load(); }
  int64_t MonotonicMs() const override { return monotonic_ms_.load(); }
  // REQUIRES: ms >= 0 (time does not run backwards).
  void AdvanceMs(int64_t ms) {
    monotonic_ms_ += ms;
    wall_ms_ += ms;
  }
  void StepWallMs(int64_t ms) { wall_ms_ += ms; }

 private:
  std::atomic<int64_t> wall_ms_;
  std::atomic<int64_t> monotonic_ms_{5'000'000};  // an uptime of 83 minutes
};

}  // namespace tinyfed::server

#endif  // TINYFED_SERVER_CLOCK_H_
