// The host side of device identity (device_key.h is the contract): HMAC-
// SHA256, the fleet key file, and per-device keys derived from it. Built on
// OpenSSL's libcrypto, which gRPC links already; no primitive is written here.
//
// Secrets never reach a message: every error names the file or the check
// that failed, never key bytes. Key256 wipes its bytes when destroyed.
//
// All functions are safe for concurrent use (they share no state); a Key256
// requires external synchronization like any value.
#ifndef TINYFED_COMMON_FLEET_KEYS_H_
#define TINYFED_COMMON_FLEET_KEYS_H_

#include <array>
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "tinyfed_common/device_key.h"
#include "tinyfed_common/request_auth.h"

namespace tinyfed {

// 32 secret bytes (a fleet key or a device key) that are overwritten with
// OPENSSL_cleanse when the object is destroyed or assigned over. Copies are
// separate secrets, each wiped in turn.
class Key256 {
 public:
  static constexpr size_t kSize = 32;
  Key256() : bytes_{} {}
  explicit Key256(const std::array<uint8_t, kSize>& bytes) : bytes_(bytes) {}
  Key256(const Key256&) = default;
  Key256& operator=(const Key256& other);
  ~Key256();

  absl::Span<const uint8_t> bytes() const { return absl::MakeConstSpan(bytes_); }
  uint8_t* mutable_data() { return bytes_.data(); }

 private:
  std::array<uint8_t, kSize> bytes_;
};

// HMAC-SHA256 (RFC 2104 with SHA-256) of `message` under `key` (any length,
// RFC 4231's test vectors included) into `out`. Cannot fail for inputs that
// fit in memory; aborts if libcrypto itself fails, which means a broken
// installation rather than bad input.
void HmacSha256(absl::Span<const uint8_t> key, absl::Span<const uint8_t> message,
                uint8_t out[32]);

// OK, or INVALID_ARGUMENT naming the rule broken: 1..32 bytes, each
// printable ASCII 0x21..0x7E (device_key.h; the server's update validation
// applies the same rule).
absl::Status ValidateDeviceId(std::string_view device_id);

// device_key.h's derivation. INVALID_ARGUMENT for an id ValidateDeviceId
// refuses (no key is derived for an id the server would never accept).
absl::StatusOr<Key256> DeriveDeviceKey(const Key256& fleet_key, std::string_view device_id);

// The body types a SignedRequest can carry; each has its own label in the
// tag's input (request_auth.h).
enum class RequestType { kCheckIn, kUpdate };

using Tag256 = std::array<uint8_t, TINYFED_TAG_SIZE>;

// request_auth.h's tag of `body` (the encoded message's exact bytes) under
// `device_key`. Cannot fail; aborts like HmacSha256 on a broken libcrypto.
Tag256 RequestTag(const Key256& device_key, RequestType type, std::string_view body);

// True when `tag` is exactly the 32 bytes of `expected`, compared in
// constant time (CRYPTO_memcmp), so the time taken does not tell an
// attacker how many leading bytes of a forged tag were right. A tag of any
// other length is false.
bool TagMatches(const Tag256& expected, std::string_view tag);

// The fleet key file: exactly 32 raw bytes (the key itself, no encoding),
// a regular file (a symbolic link to one is followed) whose permission
// bits are 0600 or a subset of them (0400, 0200 ...): no group or other
// access, no execute or set-id bits.
//
// Reads the file at `path`. Errors (each message names `path` and the
// check, never the bytes): NOT_FOUND when there is no such file;
// PERMISSION_DENIED when it cannot be opened; FAILED_PRECONDITION when it
// is not a regular file or its mode allows more than 0600 (the message
// gives the mode and the chmod that fixes it); INVALID_ARGUMENT when its
// size is not 32 bytes; INTERNAL on a read error.
absl::StatusOr<Key256> LoadFleetKey(const std::string& path);

// Creates a new fleet key file at `path`: 32 bytes from OpenSSL's CSPRNG
// (seeded by the kernel's getrandom), mode 0600 whatever the umask,
// written and fsync'd with its directory before OK is returned, and returns
// the key. Never overwrites: ALREADY_EXISTS if anything exists at `path` (a
// dangling symbolic link included). Other errors: the errno's code naming
// the path (e.g. NOT_FOUND for a missing directory); a write that fails
// removes the partial file. A crash while writing can leave a short file,
// which LoadFleetKey then refuses by its size.
absl::StatusOr<Key256> CreateFleetKeyFile(const std::string& path);

}  // namespace tinyfed

#endif  // TINYFED_COMMON_FLEET_KEYS_H_
