#include "device_auth.h"

#include <utility>

#include "absl/strings/str_cat.h"
#include "tinyfed/v1/coordinator.pb.h"

namespace tinyfed::server {

absl::StatusOr<std::unique_ptr<DeviceAuthenticator>> DeviceAuthenticator::Create(
    const Key256& fleet_key, ModelStore* store) {
  absl::StatusOr<std::vector<std::string>> revoked = store->RevokedDevices();
  if (!revoked.ok()) return revoked.status();
  return std::unique_ptr<DeviceAuthenticator>(
      new DeviceAuthenticator(fleet_key, store, std::move(*revoked)));
}

DeviceAuthenticator::DeviceAuthenticator(const Key256& fleet_key, ModelStore* store,
                                         std::vector<std::string> revoked)
    : fleet_key_(fleet_key), store_(store), revoked_(revoked.begin(), revoked.end()) {}

absl::StatusOr<Authenticated> DeviceAuthenticator::Authenticate(RequestType type,
                                                                std::string_view raw_request) const {
  v1::SignedRequest envelope;
  if (!envelope.ParseFromArray(raw_request.data(), static_cast<int>(raw_request.size()))) {
    return absl::InvalidArgumentError(absl::StrCat(
        "the request (", raw_request.size(),
        " bytes) is not a valid tinyfed.v1.SignedRequest: not protobuf wire format, or a "
        "device id that is not UTF-8"));
  }
  if (absl::Status s = ValidateDeviceId(envelope.device_id()); !s.ok()) {
    return absl::InvalidArgumentError(absl::StrCat("envelope's ", s.message()));
  }
  if (envelope.tag().empty()) {
    return absl::UnauthenticatedError("the request has no tag");
  }
  if (envelope.tag().size() != TINYFED_TAG_SIZE) {
    return absl::UnauthenticatedError(absl::StrCat("the request's tag is ", envelope.tag().size(),
                                                   " bytes, not ", TINYFED_TAG_SIZE));
  }
  absl::StatusOr<Key256> device_key = DeviceKey(envelope.device_id());
  if (!device_key.ok()) return device_key.status();
  if (!TagMatches(RequestTag(*device_key, type, envelope.body()), envelope.tag())) {
    return absl::UnauthenticatedError(absl::StrCat(
        "the tag is not ", envelope.device_id(), "'s over the body (",
        type == RequestType::kCheckIn ? "CheckInRequest" : "Update", ")"));
  }
  if (IsRevoked(envelope.device_id())) {
    return absl::PermissionDeniedError(
        absl::StrCat("device ", envelope.device_id(), " is revoked"));
  }
  return Authenticated{std::move(*envelope.mutable_device_id()),
                       std::move(*envelope.mutable_body())};
}

absl::StatusOr<Key256> DeviceAuthenticator::DeviceKey(std::string_view device_id) const {
  {
    // Shared: every request of a cached device only reads the cache.
    absl::ReaderMutexLock lock(&keys_mu_);
    // Debian's Abseil has a string_view of its own.
    if (auto it = keys_.find(absl::string_view(device_id.data(), device_id.size()));
        it != keys_.end()) {
      return it->second;
    }
  }
  // Derived outside the lock: two threads may derive the same key at once,
  // which costs a derivation and changes nothing.
  absl::StatusOr<Key256> derived = DeriveDeviceKey(fleet_key_, device_id);
  if (!derived.ok()) return derived.status();
  absl::MutexLock lock(&keys_mu_);
  if (keys_.size() >= kMaxCachedKeys) keys_.clear();
  keys_.try_emplace(std::string(device_id), *derived);
  return derived;
}

bool DeviceAuthenticator::IsRevoked(std::string_view device_id) const {
  absl::ReaderMutexLock lock(&revoked_mu_);
  return revoked_.contains(absl::string_view(device_id.data(), device_id.size()));
}

absl::Status DeviceAuthenticator::Revoke(const std::string& device_id, int64_t revoked_unix_ms) {
  if (absl::Status s = ValidateDeviceId(device_id); !s.ok()) return s;
  absl::MutexLock order(&revoke_mu_);
  // Durable first: a revocation that answered OK survives a restart.
  if (absl::Status s = store_->RevokeDevice(device_id, revoked_unix_ms); !s.ok()) return s;
  absl::MutexLock lock(&revoked_mu_);
  revoked_.insert(device_id);
  return absl::OkStatus();
}

absl::StatusOr<DeviceAuthenticator::RevokeOutcome> DeviceAuthenticator::Revoke(
    const std::string& device_id, int64_t revoked_unix_ms, const AuditEntry& audit) {
  if (absl::Status s = ValidateDeviceId(device_id); !s.ok()) return s;
  absl::MutexLock order(&revoke_mu_);
  // The set mirrors the store's list (loaded at Create, and every
  // revocation goes through here under revoke_mu_), so it tells whether
  // the store will record this one.
  if (IsRevoked(device_id)) {
    absl::StatusOr<std::vector<Revocation>> all = store_->Revocations();
    if (!all.ok()) return all.status();
    for (const Revocation& r : *all) {
      if (r.device_id == device_id) return RevokeOutcome{r.revoked_unix_ms, true};
    }
    return absl::InternalError(absl::StrCat("device ", device_id,
                                            " is refused as revoked but the store does not list it"));
  }
  if (absl::Status s = store_->RevokeDevice(device_id, revoked_unix_ms, audit); !s.ok()) return s;
  absl::MutexLock lock(&revoked_mu_);
  revoked_.insert(device_id);
  return RevokeOutcome{revoked_unix_ms, false};
}

absl::StatusOr<Key256> LoadOrCreateFleetKey(const std::string& path, bool* created) {
  *created = false;
  absl::StatusOr<Key256> key = LoadFleetKey(path);
  if (key.ok() || !absl::IsNotFound(key.status())) return key;
  key = CreateFleetKeyFile(path);
  *created = key.ok();
  return key;
}

}  // namespace tinyfed::server
