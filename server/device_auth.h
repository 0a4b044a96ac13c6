// The server's check of a device's SignedRequest (proto/tinyfed/v1/
// coordinator.proto; the tag's contract is tinyfed_common/request_auth.h):
// which device sent it and whether its key made the tag over the body's
// exact bytes, before anything parses the body.
//
// One fleet key authenticates every device: a device's key is derived from
// it and the device's id (tinyfed_common/device_key.h), so there is no
// per-device table, only the revocation list, which the store holds.
//
// Derived device keys are kept in a bounded cache (kMaxCachedKeys entries,
// each 32 bytes plus its id): deriving one is an HMAC of its own and costs
// as much as checking a tag, so without the cache a device's second and
// later requests would pay twice. When the cache is full it is emptied and
// refilled by the requests that follow; a key is wiped when it leaves it.
//
// Safe for concurrent use. The store passed to Create() must outlive the
// authenticator.
#ifndef TINYFED_SERVER_DEVICE_AUTH_H_
#define TINYFED_SERVER_DEVICE_AUTH_H_

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "model_store.h"
#include "tinyfed_common/fleet_keys.h"

namespace tinyfed::server {

// What an authentic request carries: the device its key named, and the
// body it tagged (not parsed here).
struct Authenticated {
  std::string device_id;
  std::string body;
};

class DeviceAuthenticator {
 public:
  // Derived keys kept at most; 4096 x ~100 bytes of cache. A fleet larger
  // than that still authenticates, paying a derivation per request once
  // the cache churns.
  static constexpr size_t kMaxCachedKeys = 4096;

  // An authenticator for `fleet_key` that refuses the devices `store` lists
  // as revoked, and records further revocations there. `store` is not
  // owned and must outlive the authenticator. The store's error if the list
  // cannot be read.
  static absl::StatusOr<std::unique_ptr<DeviceAuthenticator>> Create(const Key256& fleet_key,
                                                                     ModelStore* store);

  DeviceAuthenticator(const DeviceAuthenticator&) = delete;
  DeviceAuthenticator& operator=(const DeviceAuthenticator&) = delete;

  // Checks `raw_request`, the bytes of a SignedRequest whose body is of
  // `type`, in this order (the first failing check answers):
  //   not a SignedRequest in protobuf wire format -> INVALID_ARGUMENT;
  //   device_id not 1..32 bytes 0x21-0x7E (ValidateDeviceId) ->
  //     INVALID_ARGUMENT;
  //   tag absent, not 32 bytes, or not RequestTag(device key, type, body)
  //     (compared in constant time) -> UNAUTHENTICATED;
  //   device revoked -> PERMISSION_DENIED (after the tag, so that a caller
  //     without the device's key cannot learn whether it is revoked).
  // Nothing is recorded either way. Messages name the check that failed,
  // never key or tag bytes.
  absl::StatusOr<Authenticated> Authenticate(RequestType type, std::string_view raw_request) const;

  // Revokes `device_id` (ValidateDeviceId, else INVALID_ARGUMENT): written
  // to the store first (its error is returned and nothing changes), then
  // every later Authenticate refuses the device. Revoking a revoked device
  // is OK.
  absl::Status Revoke(const std::string& device_id, int64_t revoked_unix_ms);

  // What an operator's revocation did.
  struct RevokeOutcome {
    int64_t revoked_unix_ms = 0;  // `revoked_unix_ms`, or the first revocation's time
    bool already_revoked = false;
  };
  // An operator's revocation (the Admin service's RevokeDevice): as Revoke
  // above, with `audit` written in the same store transaction
  // (ModelStore::RevokeDevice with an entry) when the device was not
  // revoked yet. For a device revoked already nothing is written and the
  // outcome gives the time it was first revoked, read from the store.
  // Revocations are serialized: of concurrent calls for one device,
  // exactly one reports already_revoked false. The store's error (nothing
  // changed) when it cannot be written or read.
  absl::StatusOr<RevokeOutcome> Revoke(const std::string& device_id, int64_t revoked_unix_ms,
                                       const AuditEntry& audit);

  bool IsRevoked(std::string_view device_id) const;

 private:
  DeviceAuthenticator(const Key256& fleet_key, ModelStore* store,
                      std::vector<std::string> revoked);

  // The device's key, from the cache or derived (and cached);
  // DeriveDeviceKey's error for an id ValidateDeviceId refuses.
  absl::StatusOr<Key256> DeviceKey(std::string_view device_id) const;

  const Key256 fleet_key_;
  ModelStore* const store_;

  // Held across a revocation's store write, so that revocations of one
  // device are ordered; Authenticate never waits for it.
  absl::Mutex revoke_mu_ ABSL_ACQUIRED_BEFORE(revoked_mu_);
  mutable absl::Mutex revoked_mu_;
  absl::flat_hash_set<std::string> revoked_ ABSL_GUARDED_BY(revoked_mu_);

  // A cache: filling it changes no answer, so the const methods may.
  mutable absl::Mutex keys_mu_;
  mutable absl::flat_hash_map<std::string, Key256> keys_ ABSL_GUARDED_BY(keys_mu_);
};

// The fleet key at `path`, made there first (CreateFleetKeyFile) when no
// file exists; `*created` tells which. LoadFleetKey's errors otherwise
// (a mode above 0600 is FAILED_PRECONDITION), and CreateFleetKeyFile's.
absl::StatusOr<Key256> LoadOrCreateFleetKey(const std::string& path, bool* created);

}  // namespace tinyfed::server

#endif  // TINYFED_SERVER_DEVICE_AUTH_H_
