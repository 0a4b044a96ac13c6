// Time behind an interface, so tests can run rounds in simulated time.
// Implementations are safe for concurrent use.
#ifndef TINYFED_SERVER_CLOCK_H_
#define TINYFED_SERVER_CLOCK_H_

#include <atomic>
#include <cstdint>

namespace tinyfed::server {

class Clock {
 public:
  virtual ~Clock() = default;
  // Milliseconds since the Unix epoch.
  virtual int64_t NowMs() const = 0;
};

// The system's wall clock.
class SystemClock final : public Clock {
 public:
  int64_t NowMs() const override;
};

// A clock that moves only when told to. Safe for concurrent use.
class FakeClock final : public Clock {
 public:
  explicit FakeClock(int64_t start_ms = 1'700'000'000'000) : now_ms_(start_ms) {}
  int64_t NowMs() const override { return now_ms_.load(); }
  void AdvanceMs(int64_t ms) { now_ms_ += ms; }

 private:
  std::atomic<int64_t> now_ms_;
};

}  // namespace tinyfed::server

#endif  // TINYFED_SERVER_CLOCK_H_
