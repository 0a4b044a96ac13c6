#include "rejection_log.h"

#include "spdlog/spdlog.h"

namespace tinyfed::server {

void RejectionLog::Warn(std::string_view what, std::string_view who, const absl::Status& status,
                        int64_t now_ms) {
  absl::MutexLock lock(&mu_);
  if (!started_ || now_ms - window_start_ms_ >= window_ms_) {
    if (suppressed_ > 0) {
      spdlog::warn("{} more rejections not logged in the last {} s", suppressed_,
                   window_ms_ / 1000);
    }
    started_ = true;
    window_start_ms_ = now_ms;
    logged_ = 0;
    suppressed_ = 0;
  }
  if (logged_ < burst_) {
    ++logged_;
    spdlog::warn("rejected {} from {}: {}", what, who, status.ToString());
  } else {
    ++suppressed_;
  }
}

}  // namespace tinyfed::server
