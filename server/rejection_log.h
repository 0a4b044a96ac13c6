// Warnings for rejected requests, rate-limited so that a misbehaving fleet
// cannot flood the log: at most `burst` lines per window, the rest counted
// and reported in one line when the next window starts.
#ifndef TINYFED_SERVER_REJECTION_LOG_H_
#define TINYFED_SERVER_REJECTION_LOG_H_

#include <cstdint>
#include <string_view>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"

namespace tinyfed::server {

class RejectionLog {
 public:
  explicit RejectionLog(int64_t window_ms = 10'000, int burst = 20)
      : window_ms_(window_ms), burst_(burst) {}

  // Logs "rejected <what> from <who>: <status>" as a warning, unless this
  // window already has `burst` of them. `now_ms` is the caller's clock.
  // Safe for concurrent use.
  void Warn(std::string_view what, std::string_view who, const absl::Status& status,
            int64_t now_ms);

 private:
  const int64_t window_ms_;
  const int burst_;
  absl::Mutex mu_;
  bool started_ ABSL_GUARDED_BY(mu_) = false;
  int64_t window_start_ms_ ABSL_GUARDED_BY(mu_) = 0;
  int logged_ ABSL_GUARDED_BY(mu_) = 0;
  int64_t suppressed_ ABSL_GUARDED_BY(mu_) = 0;
};

}  // namespace tinyfed::server

#endif  // TINYFED_SERVER_REJECTION_LOG_H_
