// Which devices serve a candidate version first (staged rollout,
// docs/mlops.md).
//
// A device's bucket is fixed by its id alone, so a device stays in its
// stage across check-ins, restarts and candidates, and the canary of a
// fraction F is the same devices for every candidate (F x 10000 buckets
// of 10000):
//   bucket = (first 8 bytes of SHA-256(device_id), big-endian) mod 10000
// A device is in the canary of fraction F iff bucket < round(F x 10000).
#ifndef TINYFED_COMMON_ROLLOUT_BUCKET_H_
#define TINYFED_COMMON_ROLLOUT_BUCKET_H_

#include <cstdint>
#include <string_view>

namespace tinyfed {

inline constexpr uint32_t kRolloutBuckets = 10000;

// The device's bucket in [0, kRolloutBuckets).
uint32_t RolloutBucket(std::string_view device_id);

// round(fraction x kRolloutBuckets), fraction clamped to [0, 1].
uint32_t CanaryBuckets(double fraction);

inline bool InCanary(std::string_view device_id, double fraction) {
  return RolloutBucket(device_id) < CanaryBuckets(fraction);
}

}  // namespace tinyfed

#endif  // TINYFED_COMMON_ROLLOUT_BUCKET_H_
