#include "tinyfed_common/rollout_bucket.h"

#include <cmath>
#include <cstdlib>

#include "openssl/evp.h"

namespace tinyfed {

uint32_t RolloutBucket(std::string_view device_id) {
  unsigned char digest[EVP_MAX_MD_SIZE];
  unsigned int digest_size = 0;
  // The same libcrypto fleet_keys.cc uses; a failure here means a broken
  // installation, and a bucket made up from a failed hash would silently
  // move devices between stages, so it aborts as HmacSha256 does.
  if (EVP_Digest(device_id.data(), device_id.size(), digest, &digest_size, EVP_sha256(),
                 nullptr) != 1 ||
      digest_size != 32) {
    std::abort();
  }
  uint64_t prefix = 0;
  for (int i = 0; i < 8; ++i) prefix = (prefix << 8) | digest[i];
  return static_cast<uint32_t>(prefix % kRolloutBuckets);
}

uint32_t CanaryBuckets(double fraction) {
  // NaN compares false both ways: no canary, the safe reading.
  if (!(fraction > 0)) return 0;
  if (fraction >= 1) return kRolloutBuckets;
  return static_cast<uint32_t>(std::llround(fraction * kRolloutBuckets));
}

}  // namespace tinyfed
