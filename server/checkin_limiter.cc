#include "checkin_limiter.h"

#include <algorithm>
#include <cmath>

#include "absl/strings/match.h"

namespace tinyfed::server {
namespace {

constexpr int64_t kMilli = 1000;  // one check-in, in a bucket's units

// This Abseil's string_view is its own type, not std::string_view.
absl::string_view A(std::string_view s) { return absl::string_view(s.data(), s.size()); }

uint32_t PeerTaskCap(double share, uint32_t task_limit) {
  // As TaskLimit() in round_manager.cc: the share to the nearest millionth,
  // the ceiling in integers (task_limit < 2^32, millionths <= 10^6).
  const int64_t share_millionths = std::llround(share * 1e6);
  const int64_t product = static_cast<int64_t>(task_limit) * share_millionths;
  return static_cast<uint32_t>(std::max<int64_t>(1, (product + 999'999) / 1'000'000));
}

}  // namespace

std::string PeerKey(std::string_view grpc_peer) {
  if (!absl::StartsWith(A(grpc_peer), "ipv4:") && !absl::StartsWith(A(grpc_peer), "ipv6:")) {
    return std::string(grpc_peer);
  }
  const size_t colon = grpc_peer.rfind(':');
  // "ipv4:" itself has the only colon when there is no port.
  if (colon <= 4) return std::string(grpc_peer);
  return std::string(grpc_peer.substr(0, colon));
}

bool IsLoopbackPeer(std::string_view key) {
  return absl::StartsWith(A(key), "ipv4:127.") || key == "ipv6:[::1]" ||
         absl::StartsWith(A(key), "ipv6:[::ffff:127.") || absl::StartsWith(A(key), "unix:") ||
         absl::StartsWith(A(key), "unix-abstract:");
}

CheckInLimiter::CheckInLimiter(const v1::CheckInLimits& limits, uint32_t task_limit)
    : peer_rate_{limits.peer_checkins_per_second(),
                 static_cast<int64_t>(limits.peer_burst()) * kMilli},
      device_rate_{limits.device_checkins_per_second(),
                   static_cast<int64_t>(limits.device_burst()) * kMilli},
      exempt_loopback_(limits.exempt_loopback()),
      max_tracked_(limits.max_tracked()),
      peer_task_cap_(PeerTaskCap(limits.peer_task_share(), task_limit)) {}

bool CheckInLimiter::LimitsPeer(std::string_view peer) const {
  return !peer.empty() && !(exempt_loopback_ && IsLoopbackPeer(peer));
}

CheckInLimiter::Bucket* CheckInLimiter::Refill(Buckets& buckets, const Rate& rate,
                                               size_t max_tracked, std::string_view key,
                                               int64_t now_ms) {
  auto it = buckets.find(A(key));
  if (it == buckets.end()) {
    if (buckets.size() >= max_tracked) {
      absl::erase_if(buckets, [&](const auto& entry) {
        const Bucket& b = entry.second;
        return b.milli + (now_ms - b.updated_ms) * rate.per_second >= rate.burst_milli;
      });
      if (buckets.size() >= max_tracked) return nullptr;
    }
    it = buckets.emplace(std::string(key), Bucket{rate.burst_milli, now_ms}).first;
  }
  Bucket& b = it->second;
  // per_second check-ins a second are per_second thousandths a millisecond.
  const int64_t elapsed = std::max<int64_t>(0, now_ms - b.updated_ms);
  b.milli = std::min(rate.burst_milli, b.milli + elapsed * rate.per_second);
  b.updated_ms = now_ms;
  return &b;
}

uint32_t CheckInLimiter::WaitMs(const Bucket& bucket, const Rate& rate) {
  if (bucket.milli >= kMilli) return 0;
  return static_cast<uint32_t>((kMilli - bucket.milli + rate.per_second - 1) / rate.per_second);
}

uint32_t CheckInLimiter::Admit(std::string_view peer, std::string_view device, int64_t now_ms) {
  if (!LimitsPeer(peer)) return 0;
  Bucket* by_peer = nullptr;
  Bucket* by_device = nullptr;
  if (peer_rate_.per_second != 0) {
    by_peer = Refill(peer_buckets_, peer_rate_, max_tracked_, peer, now_ms);
  }
  if (device_rate_.per_second != 0) {
    by_device = Refill(device_buckets_, device_rate_, max_tracked_, device, now_ms);
  }
  const uint32_t wait = std::max(by_peer ? WaitMs(*by_peer, peer_rate_) : 0,
                                 by_device ? WaitMs(*by_device, device_rate_) : 0);
  if (wait != 0) return wait;
  if (by_peer) by_peer->milli -= kMilli;
  if (by_device) by_device->milli -= kMilli;
  return 0;
}

bool CheckInLimiter::MayTakeTask(std::string_view peer) const {
  if (!LimitsPeer(peer)) return true;
  auto it = tasks_by_peer_.find(A(peer));
  return it == tasks_by_peer_.end() || it->second < peer_task_cap_;
}

void CheckInLimiter::TookTask(std::string_view peer) {
  if (LimitsPeer(peer)) ++tasks_by_peer_[A(peer)];
}

void CheckInLimiter::ReleaseTask(std::string_view peer) {
  auto it = tasks_by_peer_.find(A(peer));
  if (it == tasks_by_peer_.end()) return;
  if (--it->second == 0) tasks_by_peer_.erase(it);
}

}  // namespace tinyfed::server
