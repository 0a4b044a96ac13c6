// Fuzzes the server's first handling of a check-in's or an update's bytes:
// DeviceAuthenticator::Authenticate (server/device_auth.cc) on the
// SignedRequest, then what CoordinatorService does with an authentic one
// (server/coordinator_service.cc): the body's parse as the method's
// message, its device id against the envelope's, and for an update
// ValidateUpdate against the 64x10 head.
//
// Input: byte 0, bit 0: the method (0 CheckIn, 1 SubmitUpdate); bit 1:
// re-sign. The rest is the SignedRequest's bytes. Re-signed inputs whose
// bytes parse as a SignedRequest with a valid device id get their tag
// replaced by the right one before they are sent, so the fuzzer's
// mutations of ids and bodies reach the code behind the tag check, which
// random bytes never pass. The fleet key is 0x00..0x1f (the seeds' key);
// device "revoked-1" is revoked.
//
// Beyond "no crash, no undefined behaviour, no leak": every answer is one
// of the contract's codes (INVALID_ARGUMENT, UNAUTHENTICATED,
// PERMISSION_DENIED, or OK); OK exactly when the envelope parses, its id is
// valid and not revoked, and its tag is the body's under that id's key (an
// independent recomputation); an OK answer hands on the envelope's id and
// its exact body bytes.
#include <array>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <memory>
#include <string>
#include <string_view>
#include <type_traits>

#include "google/protobuf/stubs/logging.h"

#include "device_auth.h"
#include "model_store.h"
#include "server_config.h"
#include "tinyfed/v1/coordinator.pb.h"
#include "tinyfed/v1/round.pb.h"
#include "tinyfed_common/fleet_keys.h"
#include "update_validation.h"

namespace {

namespace server = tinyfed::server;
namespace v1 = tinyfed::v1;
using tinyfed::RequestType;

void Require(bool condition) {
  if (!condition) std::abort();  // libFuzzer keeps the input that got here
}

tinyfed::Key256 FleetKey() {
  std::array<uint8_t, tinyfed::Key256::kSize> bytes;
  for (size_t i = 0; i < bytes.size(); ++i) bytes[i] = static_cast<uint8_t>(i);
  return tinyfed::Key256(bytes);
}

// An authenticator over a store in a directory of its own, removed at exit.
struct Harness {
  std::filesystem::path dir;
  std::unique_ptr<server::ModelStore> store;
  std::unique_ptr<server::DeviceAuthenticator> auth;
  v1::HeadSpec spec;

  Harness() {
    std::string pattern =
        (std::filesystem::temp_directory_path() / "tinyfed-fuzz-XXXXXX").string();
    Require(mkdtemp(pattern.data()) != nullptr);
    dir = pattern;
    auto opened = server::OpenSqliteModelStore((dir / "fuzz.db").string());
    Require(opened.ok());
    store = std::move(*opened);
    auto created = server::DeviceAuthenticator::Create(FleetKey(), store.get());
    Require(created.ok());
    auth = std::move(*created);
    Require(auth->Revoke("revoked-1", 1).ok());
    v1::ServerConfig config;
    server::ApplyDefaults(&config);
    spec = server::HeadSpecFromConfig(config);
  }
  ~Harness() {
    auth.reset();
    store.reset();
    std::error_code ignored;
    std::filesystem::remove_all(dir, ignored);
  }
};

bool ValidId(const std::string& id) { return tinyfed::ValidateDeviceId(id).ok(); }

// The tag the contract requires of `envelope`, or "" when its id is not
// valid (no key exists for it).
std::string RightTag(const v1::SignedRequest& envelope, RequestType type) {
  absl::StatusOr<tinyfed::Key256> key = tinyfed::DeriveDeviceKey(FleetKey(), envelope.device_id());
  if (!key.ok()) return "";
  const tinyfed::Tag256 tag = tinyfed::RequestTag(*key, type, envelope.body());
  return std::string(tag.begin(), tag.end());
}

// The service's steps after authentication, for a body of `Message`.
template <typename Message>
void ServiceSteps(const server::Authenticated& authentic, const v1::HeadSpec* spec) {
  Message message;
  if (!message.ParseFromString(authentic.body)) return;  // INVALID_ARGUMENT
  if (message.device_id() != authentic.device_id) return;  // PERMISSION_DENIED
  if constexpr (std::is_same_v<Message, v1::Update>) {
    const absl::Status status = server::ValidateUpdate(message, *spec);
    Require(status.ok() || status.code() == absl::StatusCode::kInvalidArgument);
  }
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  // protobuf logs every string field that is not UTF-8; the fuzzer makes
  // millions, and the log would drown its own output.
  google::protobuf::SetLogHandler(nullptr);
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static Harness* const h = new Harness();  // lives across inputs, freed at exit
  static const int registered = std::atexit([] { delete h; });
  (void)registered;
  if (size < 1) return 0;
  const RequestType type = (data[0] & 1u) != 0 ? RequestType::kUpdate : RequestType::kCheckIn;
  std::string raw(reinterpret_cast<const char*>(data + 1), size - 1);

  v1::SignedRequest envelope;
  const bool parses = envelope.ParseFromString(raw);
  if ((data[0] & 2u) != 0 && parses && ValidId(envelope.device_id())) {
    envelope.set_tag(RightTag(envelope, type));
    raw = envelope.SerializeAsString();
  }

  const absl::StatusOr<server::Authenticated> result = h->auth->Authenticate(type, raw);
  const bool authentic = parses && ValidId(envelope.device_id()) &&
                         envelope.tag() == RightTag(envelope, type);
  const bool revoked = parses && envelope.device_id() == "revoked-1";
  if (result.ok()) {
    Require(authentic && !revoked);
    Require(result->device_id == envelope.device_id() && result->body == envelope.body());
    if (type == RequestType::kUpdate) {
      ServiceSteps<v1::Update>(*result, &h->spec);
    } else {
      ServiceSteps<v1::CheckInRequest>(*result, nullptr);
    }
    return 0;
  }
  Require(!authentic || revoked);
  switch (result.status().code()) {
    case absl::StatusCode::kInvalidArgument:
      Require(!parses || !ValidId(envelope.device_id()));
      break;
    case absl::StatusCode::kUnauthenticated:
      Require(parses && ValidId(envelope.device_id()) && !authentic);
      break;
    case absl::StatusCode::kPermissionDenied:
      Require(authentic && revoked);
      break;
    default:
      Require(false);
  }
  return 0;
}
