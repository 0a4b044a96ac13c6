// Device authentication (server/device_auth.h, coordinator_service.h): the
// DeviceAuthenticator on its own, then the acceptance tests of issue 12
// through gRPC against an InProcessServer. Each attack asserts its status
// code and that it changed nothing: the round then completes with honest
// signed devices, and the committed version is the independent reference
// FedAvg (reference_fedavg.h) of the honest updates alone, with their
// number of participants. Last, tinyfed-server's fleet key file.
#include "device_auth.h"

#include <sys/stat.h>

#include <array>
#include <chrono>
#include <cstdint>
#include <future>
#include <memory>
#include <random>
#include <map>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include <grpcpp/generic/generic_stub.h>
#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "child_process.h"
#include "in_process_server.h"
#include "model_store.h"
#include "reference_fedavg.h"
#include "server_config.h"
#include "server_test_support.h"
#include "tinyfed/v1/coordinator.grpc.pb.h"

#ifndef TINYFED_SERVER_BINARY
#error "TINYFED_SERVER_BINARY must name the tinyfed-server executable"
#endif

namespace tinyfed::server {
namespace {

using namespace std::chrono_literals;
using testing::Sign;
using testing::SignBytes;
using testing::TempDir;
using testing::TestFleetKey;

// A fleet key other than TestFleetKey() and the servers' own.
Key256 OtherFleetKey() {
  std::array<uint8_t, Key256::kSize> bytes;
  for (size_t i = 0; i < bytes.size(); ++i) bytes[i] = static_cast<uint8_t>(0xA5 ^ (7 * i));
  return Key256(bytes);
}

std::string TagOf(const Key256& fleet_key, const std::string& key_of, RequestType type,
                  const std::string& body) {
  absl::StatusOr<Key256> key = DeriveDeviceKey(fleet_key, key_of);
  EXPECT_TRUE(key.ok()) << key.status();
  const Tag256 tag = RequestTag(*key, type, body);
  return std::string(tag.begin(), tag.end());
}

// An envelope naming `envelope_id`, around `body`, tagged with the key of
// `key_of` under `fleet_key`.
std::string Envelope(const Key256& fleet_key, const std::string& envelope_id,
                     const std::string& key_of, RequestType type, const std::string& body) {
  v1::SignedRequest r;
  r.set_device_id(envelope_id);
  r.set_body(body);
  r.set_tag(TagOf(fleet_key, key_of, type, body));
  return r.SerializeAsString();
}

v1::CheckInRequest CheckInOf(const std::string& id, uint32_t declared = 20) {
  v1::CheckInRequest r;
  r.set_device_id(id);
  r.mutable_capabilities()->set_sample_count(declared);
  return r;
}

// ---- the DeviceAuthenticator alone, over a SQLite store ---------------------

class DeviceAuthenticatorTest : public ::testing::Test {
 protected:
  void SetUp() override {
    absl::StatusOr<std::unique_ptr<ModelStore>> store = OpenSqliteModelStore(dir_.File("s.db"));
    ASSERT_TRUE(store.ok()) << store.status();
    store_ = std::move(*store);
    absl::StatusOr<std::unique_ptr<DeviceAuthenticator>> auth =
        DeviceAuthenticator::Create(TestFleetKey(), store_.get());
    ASSERT_TRUE(auth.ok()) << auth.status();
    auth_ = std::move(*auth);
  }
  absl::StatusCode Code(RequestType type, const std::string& raw) {
    return auth_->Authenticate(type, raw).status().code();
  }

  TempDir dir_;
  std::unique_ptr<ModelStore> store_;
  std::unique_ptr<DeviceAuthenticator> auth_;
};

// request_auth.h's fixed vector (computed with python3's hmac module, not
// with this code): device "dev-0001" under fleet key 0x00..0x1f, body
// 0a 08 "dev-0001", check-in label.
TEST_F(DeviceAuthenticatorTest, AcceptsTheContractsFixedVector) {
  const std::string body = std::string("\x0a\x08", 2) + "dev-0001";
  v1::SignedRequest r;
  r.set_device_id("dev-0001");
  r.set_body(body);
  r.set_tag(absl::HexStringToBytes(
      "00192496c68442dbe9e8fe4348f8dc1f3c99e642127201cff3857740940f4f4e"));
  absl::StatusOr<Authenticated> ok = auth_->Authenticate(RequestType::kCheckIn,
                                                         r.SerializeAsString());
  ASSERT_TRUE(ok.ok()) << ok.status();
  EXPECT_EQ(ok->device_id, "dev-0001");
  EXPECT_EQ(ok->body, body);
  // The same tag does not pass for an update: the label differs.
  EXPECT_EQ(Code(RequestType::kUpdate, r.SerializeAsString()),
            absl::StatusCode::kUnauthenticated);
  // The update label's vector.
  r.set_tag(absl::HexStringToBytes(
      "5322a0e1ebe8d7ca60830952c04786ae95e2006e8adbe119100129e89bf7435f"));
  EXPECT_TRUE(auth_->Authenticate(RequestType::kUpdate, r.SerializeAsString()).ok());
}

TEST_F(DeviceAuthenticatorTest, EachCheckHasItsCode) {
  const std::string body = CheckInOf("dev-a").SerializeAsString();
  const std::string tag = TagOf(TestFleetKey(), "dev-a", RequestType::kCheckIn, body);
  auto raw = [&](const std::string& id, const std::string& t) {
    v1::SignedRequest r;
    r.set_device_id(id);
    r.set_body(body);
    r.set_tag(t);
    return r.SerializeAsString();
  };
  EXPECT_TRUE(auth_->Authenticate(RequestType::kCheckIn, raw("dev-a", tag)).ok());
  EXPECT_EQ(Code(RequestType::kCheckIn, "\xff\xff"), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(Code(RequestType::kCheckIn, raw("", tag)), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(Code(RequestType::kCheckIn, raw("dev a", tag)), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(Code(RequestType::kCheckIn, raw(std::string(33, 'a'), tag)),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(Code(RequestType::kCheckIn, raw("dev-a", "")), absl::StatusCode::kUnauthenticated);
  // A shortened tag, even the right tag's first 16 or 31 bytes, and one
  // byte more than the tag: the whole 32 bytes or nothing.
  EXPECT_EQ(Code(RequestType::kCheckIn, raw("dev-a", tag.substr(0, 16))),
            absl::StatusCode::kUnauthenticated);
  EXPECT_EQ(Code(RequestType::kCheckIn, raw("dev-a", tag.substr(0, 31))),
            absl::StatusCode::kUnauthenticated);
  EXPECT_EQ(Code(RequestType::kCheckIn, raw("dev-a", tag + "x")),
            absl::StatusCode::kUnauthenticated);
  // Each single byte of the tag matters, the last ones too.
  for (size_t i = 0; i < tag.size(); ++i) {
    std::string t = tag;
    t[i] = static_cast<char>(t[i] ^ 0x01);
    EXPECT_EQ(Code(RequestType::kCheckIn, raw("dev-a", t)), absl::StatusCode::kUnauthenticated)
        << "byte " << i;
  }
  const std::string message =
      std::string(auth_->Authenticate(RequestType::kCheckIn, raw("dev-a", std::string(32, 'x')))
                      .status()
                      .message());
  EXPECT_EQ(message.find(tag), std::string::npos) << "the right tag must not be told";
}

TEST_F(DeviceAuthenticatorTest, RevokedIsRefusedOnlyOnceAuthenticAndStaysRevoked) {
  const std::string body = CheckInOf("dev-r").SerializeAsString();
  const std::string good = Envelope(TestFleetKey(), "dev-r", "dev-r", RequestType::kCheckIn, body);
  const std::string forged =
      Envelope(OtherFleetKey(), "dev-r", "dev-r", RequestType::kCheckIn, body);
  ASSERT_TRUE(auth_->Authenticate(RequestType::kCheckIn, good).ok());
  ASSERT_TRUE(auth_->Revoke("dev-r", 1234).ok());
  EXPECT_TRUE(auth_->IsRevoked("dev-r"));
  EXPECT_EQ(Code(RequestType::kCheckIn, good), absl::StatusCode::kPermissionDenied);
  // Without the key, a caller cannot tell a revoked device from another.
  EXPECT_EQ(Code(RequestType::kCheckIn, forged), absl::StatusCode::kUnauthenticated);
  EXPECT_TRUE(auth_->Revoke("dev-r", 5678).ok()) << "revoking again is OK";
  EXPECT_EQ(auth_->Revoke("bad id", 1).code(), absl::StatusCode::kInvalidArgument);
  // Others are unaffected.
  EXPECT_TRUE(auth_
                  ->Authenticate(RequestType::kCheckIn,
                                 Envelope(TestFleetKey(), "dev-s", "dev-s", RequestType::kCheckIn,
                                          CheckInOf("dev-s").SerializeAsString()))
                  .ok());

  // Persisted: a new authenticator over the same store, after a reopen.
  auth_.reset();
  store_.reset();
  absl::StatusOr<std::unique_ptr<ModelStore>> store = OpenSqliteModelStore(dir_.File("s.db"));
  ASSERT_TRUE(store.ok()) << store.status();
  absl::StatusOr<std::unique_ptr<DeviceAuthenticator>> again =
      DeviceAuthenticator::Create(TestFleetKey(), store->get());
  ASSERT_TRUE(again.ok()) << again.status();
  EXPECT_EQ((*again)->Authenticate(RequestType::kCheckIn, good).status().code(),
            absl::StatusCode::kPermissionDenied);
  EXPECT_EQ((*store)->RevokedDevices().value(), std::vector<std::string>{"dev-r"});
}

// More devices than the key cache holds: every one authenticates, and so
// does the first again after the cache was emptied.
TEST_F(DeviceAuthenticatorTest, MoreDevicesThanTheKeyCacheHoldsAllAuthenticate) {
  const size_t n = DeviceAuthenticator::kMaxCachedKeys + 100;
  std::vector<std::string> raws;
  for (size_t i = 0; i < n; ++i) {
    const std::string id = absl::StrCat("cache-", i);
    raws.push_back(Envelope(TestFleetKey(), id, id, RequestType::kCheckIn,
                            CheckInOf(id).SerializeAsString()));
  }
  for (int pass = 0; pass < 2; ++pass) {
    for (size_t i = 0; i < n; ++i) {
      ASSERT_TRUE(auth_->Authenticate(RequestType::kCheckIn, raws[i]).ok()) << pass << " " << i;
    }
  }
  // A cached key is the key of its id only.
  EXPECT_EQ(Code(RequestType::kCheckIn, Envelope(TestFleetKey(), "cache-1", "cache-2",
                                                 RequestType::kCheckIn,
                                                 CheckInOf("cache-1").SerializeAsString())),
            absl::StatusCode::kUnauthenticated);
}

// ---- acceptance through gRPC -------------------------------------------------

constexpr char kCheckInMethod[] = "/tinyfed.v1.Coordinator/CheckIn";
constexpr char kSubmitMethod[] = "/tinyfed.v1.Coordinator/SubmitUpdate";

v1::ServerConfig RoundConfig(uint32_t target = 3) {
  v1::ServerConfig c;
  c.mutable_head()->set_feature_count(16);
  c.mutable_head()->set_class_count(4);
  c.mutable_policy()->set_target_updates(target);
  c.mutable_policy()->set_min_updates(target);
  // Room for the attackers' tasks beside the honest devices'.
  c.mutable_policy()->set_over_selection(2.0);
  ApplyDefaults(&c);
  return c;
}

class AuthAcceptanceTest : public ::testing::Test {
 protected:
  void SetUp() override { ASSERT_NO_FATAL_FAILURE(Start(RoundConfig())); }

  void Start(const v1::ServerConfig& config) {
    auto started = InProcessServer::Start(config);
    ASSERT_TRUE(started.ok()) << started.status();
    server_ = std::move(*started);
    stub_ = std::make_unique<grpc::GenericStub>(
        grpc::CreateChannel(server_->address(), grpc::InsecureChannelCredentials()));
  }
  const Key256& fleet() const { return server_->fleet_key(); }

  // Calls `method` with these exact bytes; the response's bytes into
  // *response when OK.
  grpc::Status Call(const char* method, const std::string& bytes,
                    std::string* response = nullptr) {
    grpc::ClientContext context;
    context.set_deadline(std::chrono::system_clock::now() + 30s);
    grpc::Slice slice(bytes);
    grpc::ByteBuffer request(&slice, 1);
    grpc::ByteBuffer reply;
    std::promise<grpc::Status> done;
    stub_->UnaryCall(&context, method, grpc::StubOptions(), &request, &reply,
                     [&](grpc::Status s) { done.set_value(std::move(s)); });
    grpc::Status status = done.get_future().get();
    if (status.ok() && response != nullptr) {
      grpc::Slice all;
      EXPECT_TRUE(reply.DumpToSingleSlice(&all).ok());
      response->assign(reinterpret_cast<const char*>(all.begin()), all.size());
    }
    return status;
  }
  grpc::StatusCode CheckInCode(const std::string& raw) { return Call(kCheckInMethod, raw).error_code(); }
  grpc::StatusCode SubmitCode(const std::string& raw) { return Call(kSubmitMethod, raw).error_code(); }

  // An honest signed check-in that must get a task.
  v1::RoundTask TaskFor(const std::string& id, uint32_t declared = 20) {
    std::string bytes;
    const grpc::Status s =
        Call(kCheckInMethod, Sign(fleet(), CheckInOf(id, declared)).SerializeAsString(), &bytes);
    EXPECT_TRUE(s.ok()) << id << ": " << s.error_message();
    v1::CheckInResponse response;
    EXPECT_TRUE(response.ParseFromString(bytes));
    EXPECT_TRUE(response.has_task()) << id << " got no task";
    return response.task();
  }
  v1::Update UpdateFor(const v1::RoundTask& task, const std::string& id, uint32_t samples = 20) {
    return testing::MakeUpdate(task.model().spec(), task.round(), id, task.task_token(),
                               task.model().version(), samples, rng_, 40);
  }
  // A task and an update for each id, submitted signed; each must be
  // accepted. Returns the accepted ones (a refused one fails the test, and
  // leaves the list one short of the round's participants).
  std::vector<v1::Update> HonestUpdates(const std::vector<std::string>& ids) {
    std::vector<v1::Update> sent;
    for (const std::string& id : ids) {
      const v1::RoundTask task = TaskFor(id);
      if (!task.has_model()) continue;
      const v1::Update u = UpdateFor(task, id);
      const grpc::Status s = Call(kSubmitMethod, Sign(fleet(), u).SerializeAsString());
      EXPECT_TRUE(s.ok()) << id << ": " << s.error_message();
      if (s.ok()) sent.push_back(u);
    }
    return sent;
  }
  v1::ModelVersion Version(uint32_t version) {
    absl::StatusOr<v1::ModelVersion> v = server_->manager().GetModel(version);
    EXPECT_TRUE(v.ok()) << v.status();
    return v.ok() ? *v : v1::ModelVersion();
  }
  // The round just completed committed `version`, the reference FedAvg of
  // exactly `honest` on the version before it.
  ::testing::AssertionResult CommittedOnly(uint32_t version, const std::vector<v1::Update>& honest) {
    server_->manager().WaitIdle();
    const v1::ModelVersion latest = Version(0);
    if (latest.version() != version) {
      return ::testing::AssertionFailure()
             << "latest version " << latest.version() << ", expected " << version;
    }
    if (latest.metrics().participants() != honest.size()) {
      return ::testing::AssertionFailure() << latest.metrics().participants() << " participants, "
                                           << honest.size() << " honest";
    }
    return testing::MatchesReferenceFedAvg(latest, Version(version - 1), honest);
  }

  std::mt19937 rng_{12};
  std::unique_ptr<InProcessServer> server_;
  std::unique_ptr<grpc::GenericStub> stub_;
};

TEST_F(AuthAcceptanceTest, NoTagIsUnauthenticatedAndChangesNothing) {
  v1::SignedRequest check_in = Sign(fleet(), CheckInOf("dev-v"));
  check_in.clear_tag();
  EXPECT_EQ(CheckInCode(check_in.SerializeAsString()), grpc::StatusCode::UNAUTHENTICATED);
  EXPECT_EQ(server_->manager().Snapshot().tasks_issued, 0u) << "no task for an unsigned check-in";

  const v1::RoundTask task = TaskFor("dev-v");
  v1::SignedRequest forged = Sign(fleet(), UpdateFor(task, "dev-v", 1 << 24));
  forged.clear_tag();
  EXPECT_EQ(SubmitCode(forged.SerializeAsString()), grpc::StatusCode::UNAUTHENTICATED);
  EXPECT_EQ(server_->manager().Snapshot().accepted + server_->manager().Snapshot().pending, 0u);
  // Counted as the round's one rejected update (the refused check-in is
  // not an update), though the manager never saw it.
  EXPECT_EQ(server_->manager().Snapshot().rejected, 1u);

  // dev-v's own update is still its first: the unsigned one left no trace.
  const std::vector<v1::Update> honest = HonestUpdates({"dev-v", "dev-b", "dev-c"});
  EXPECT_TRUE(CommittedOnly(2, honest));
  absl::StatusOr<v1::ModelVersion> committed = server_->manager().GetModel(2);
  ASSERT_TRUE(committed.ok()) << committed.status();
  EXPECT_EQ(committed->metrics().rejected_updates(), 1u);
}

TEST_F(AuthAcceptanceTest, AnotherFleetsKeyIsUnauthenticated) {
  EXPECT_EQ(CheckInCode(Sign(OtherFleetKey(), CheckInOf("dev-v")).SerializeAsString()),
            grpc::StatusCode::UNAUTHENTICATED);
  EXPECT_EQ(server_->manager().Snapshot().tasks_issued, 0u);
  const v1::RoundTask task = TaskFor("dev-v");
  EXPECT_EQ(SubmitCode(Sign(OtherFleetKey(), UpdateFor(task, "dev-v")).SerializeAsString()),
            grpc::StatusCode::UNAUTHENTICATED);
  const std::vector<v1::Update> honest = HonestUpdates({"dev-v", "dev-b", "dev-c"});
  EXPECT_TRUE(CommittedOnly(2, honest));
}

// Impersonation, both ways: device A holds a valid key, its own.
TEST_F(AuthAcceptanceTest, ADevicesKeyCannotActForAnotherDevice) {
  const std::string a = "dev-a", b = "dev-b";
  // A's key, B's id in the envelope and the body: the tag is not B's.
  EXPECT_EQ(CheckInCode(Envelope(fleet(), b, a, RequestType::kCheckIn,
                                 CheckInOf(b).SerializeAsString())),
            grpc::StatusCode::UNAUTHENTICATED);
  // A's own authentic envelope around a body claiming B.
  EXPECT_EQ(CheckInCode(Envelope(fleet(), a, a, RequestType::kCheckIn,
                                 CheckInOf(b).SerializeAsString())),
            grpc::StatusCode::PERMISSION_DENIED);
  EXPECT_EQ(server_->manager().Snapshot().tasks_issued, 0u) << "B got a task from A";

  // B's task exists; A even knows its token (the worst case): neither form
  // of A's update for B is taken.
  const v1::RoundTask task_b = TaskFor(b);
  const std::string body = UpdateFor(task_b, b, 1 << 24).SerializeAsString();
  EXPECT_EQ(SubmitCode(Envelope(fleet(), b, a, RequestType::kUpdate, body)),
            grpc::StatusCode::UNAUTHENTICATED);
  EXPECT_EQ(SubmitCode(Envelope(fleet(), a, a, RequestType::kUpdate, body)),
            grpc::StatusCode::PERMISSION_DENIED);
  EXPECT_EQ(server_->manager().Snapshot().accepted + server_->manager().Snapshot().pending, 0u);

  // B's own update is accepted (not ALREADY_EXISTS): nothing was recorded
  // for it.
  const std::vector<v1::Update> honest = HonestUpdates({b, "dev-c", "dev-d"});
  EXPECT_TRUE(CommittedOnly(2, honest));
}

// The code the Coordinator's contract (coordinator.proto) gives a request
// of these bytes in which something was changed, so that its tag cannot
// match: INVALID_ARGUMENT when they are not a SignedRequest or name no
// valid device id (1 to 32 bytes 0x21-0x7E), UNAUTHENTICATED otherwise.
// Written here from the contract, not with the server's code.
grpc::StatusCode ContractCodeOfAlteredEnvelope(const std::string& bytes) {
  v1::SignedRequest parsed;
  if (!parsed.ParseFromString(bytes)) return grpc::StatusCode::INVALID_ARGUMENT;
  const std::string& id = parsed.device_id();
  if (id.empty() || id.size() > 32) return grpc::StatusCode::INVALID_ARGUMENT;
  for (char ch : id) {
    if (ch < 0x21 || ch > 0x7E) return grpc::StatusCode::INVALID_ARGUMENT;
  }
  return grpc::StatusCode::UNAUTHENTICATED;
}

// Every byte of a signed check-in and of a signed update flipped in turn
// (x ^ 0xFF, and x ^ 0x01 so that id bytes stay printable): never OK, and
// nothing recorded. A changed body or tag byte is UNAUTHENTICATED; a
// changed id byte names another device (UNAUTHENTICATED) or is not UTF-8,
// so the envelope does not parse (INVALID_ARGUMENT). A changed framing byte
// (a field's key or length) makes the bytes a different protobuf: what
// they then hold can depend on the random task token and tag, so the code
// expected for each is the contract's for those bytes
// (ContractCodeOfAlteredEnvelope); the test counts which it was.
TEST_F(AuthAcceptanceTest, OneFlippedByteAnywhereInTheEnvelopeIsRefused) {
  const std::string id = "dev-flip";
  int framing_invalid = 0, framing_unauthenticated = 0;
  // Layout: [0] 0x0a id key, [1] 0x08 id length, [2, 10) id, [10] 0x12 body
  // key, [11] the body's length (below 128: one byte), the body, 0x1a tag
  // key, 0x20 tag length, 32 tag bytes.
  auto check = [&](const char* method, const std::string& envelope, size_t body_size) {
    ASSERT_LT(body_size, 128u);
    ASSERT_EQ(envelope.substr(0, 2), std::string("\x0a\x08", 2));
    ASSERT_EQ(envelope.substr(2, 8), id);
    ASSERT_EQ(envelope[10], '\x12');
    const size_t body_start = 12;
    const size_t tag_key = body_start + body_size;
    ASSERT_EQ(envelope.size(), tag_key + 2 + 32);
    ASSERT_EQ(envelope[tag_key], '\x1a');
    ASSERT_EQ(envelope[tag_key + 1], '\x20');
    for (size_t i = 0; i < envelope.size(); ++i) {
      for (uint8_t mask : {uint8_t{0xFF}, uint8_t{0x01}}) {
        std::string flipped = envelope;
        flipped[i] = static_cast<char>(static_cast<uint8_t>(flipped[i]) ^ mask);
        const grpc::StatusCode code = Call(method, flipped).error_code();
        ASSERT_NE(code, grpc::StatusCode::OK) << method << " byte " << i << " mask " << int{mask};
        grpc::StatusCode expected;
        if ((i >= body_start && i < tag_key) || i >= tag_key + 2) {
          expected = grpc::StatusCode::UNAUTHENTICATED;  // body or tag
        } else if (i >= 2 && i < 10) {
          expected = mask == 0x01 ? grpc::StatusCode::UNAUTHENTICATED   // another id
                                  : grpc::StatusCode::INVALID_ARGUMENT;  // not UTF-8
        } else {
          expected = ContractCodeOfAlteredEnvelope(flipped);
          (expected == grpc::StatusCode::INVALID_ARGUMENT ? framing_invalid
                                                          : framing_unauthenticated)++;
        }
        EXPECT_EQ(code, expected) << method << " byte " << i << " mask " << int{mask};
      }
    }
  };
  const v1::SignedRequest check_in = Sign(fleet(), CheckInOf(id));
  check(kCheckInMethod, check_in.SerializeAsString(), check_in.body().size());
  EXPECT_EQ(server_->manager().Snapshot().tasks_issued, 0u);

  const v1::RoundTask task = TaskFor(id);
  const v1::Update mine = UpdateFor(task, id);
  const v1::SignedRequest update = Sign(fleet(), mine);
  check(kSubmitMethod, update.SerializeAsString(), update.body().size());
  EXPECT_EQ(server_->manager().Snapshot().accepted + server_->manager().Snapshot().pending, 0u);
  // 2 envelopes x 6 framing bytes x 2 flips.
  EXPECT_EQ(framing_invalid + framing_unauthenticated, 24);
  std::printf("framing bytes flipped: %d INVALID_ARGUMENT, %d UNAUTHENTICATED\n", framing_invalid,
              framing_unauthenticated);

  // The unflipped update is still the device's first.
  ASSERT_TRUE(Call(kSubmitMethod, update.SerializeAsString()).ok());
  std::vector<v1::Update> honest = HonestUpdates({"dev-b", "dev-c"});
  honest.push_back(mine);
  EXPECT_TRUE(CommittedOnly(2, honest));
}

TEST_F(AuthAcceptanceTest, RevokedDeviceIsPermissionDenied) {
  // Revoked before its check-in: no task.
  ASSERT_TRUE(server_->auth().Revoke("dev-gone", 1).ok());
  EXPECT_EQ(CheckInCode(Sign(fleet(), CheckInOf("dev-gone")).SerializeAsString()),
            grpc::StatusCode::PERMISSION_DENIED);
  EXPECT_EQ(server_->manager().Snapshot().tasks_issued, 0u);
  // Revoked while it holds a task: its update is refused.
  const v1::RoundTask task = TaskFor("dev-late");
  ASSERT_TRUE(server_->auth().Revoke("dev-late", 2).ok());
  EXPECT_EQ(SubmitCode(Sign(fleet(), UpdateFor(task, "dev-late")).SerializeAsString()),
            grpc::StatusCode::PERMISSION_DENIED);
  // With a wrong tag, a revoked device is only unauthenticated.
  EXPECT_EQ(CheckInCode(Sign(OtherFleetKey(), CheckInOf("dev-gone")).SerializeAsString()),
            grpc::StatusCode::UNAUTHENTICATED);
  const std::vector<v1::Update> honest = HonestUpdates({"dev-a", "dev-b", "dev-c"});
  EXPECT_TRUE(CommittedOnly(2, honest));
}

// An update is tagged with its round and task token: sent again in a later
// round it never counts there. In the next round the very bytes the server
// took get their original acknowledgement (a retry after a lost ack); an
// update the server never took, or any update two rounds later, is
// FAILED_PRECONDITION (its round is not open).
TEST_F(AuthAcceptanceTest, UpdateReplayedIntoALaterRoundIsRefused) {
  const v1::Update withheld = UpdateFor(TaskFor("dev-x"), "dev-x");  // never sent in round 1
  const std::vector<v1::Update> round1 = HonestUpdates({"dev-a", "dev-b", "dev-c"});
  ASSERT_TRUE(CommittedOnly(2, round1));

  std::string ack_bytes;
  ASSERT_TRUE(Call(kSubmitMethod, Sign(fleet(), round1[0]).SerializeAsString(), &ack_bytes).ok());
  v1::UpdateAck ack;
  ASSERT_TRUE(ack.ParseFromString(ack_bytes));
  EXPECT_EQ(ack.round(), 1u) << "the original acknowledgement, of round 1";
  EXPECT_EQ(SubmitCode(Sign(fleet(), withheld).SerializeAsString()),
            grpc::StatusCode::FAILED_PRECONDITION);
  EXPECT_EQ(server_->manager().Snapshot().accepted + server_->manager().Snapshot().pending, 0u);
  const std::vector<v1::Update> round2 = HonestUpdates({"dev-d", "dev-e", "dev-f"});
  EXPECT_TRUE(CommittedOnly(3, round2));

  // Round 3 is open: round 1's updates, taken or not, are refused; round
  // 2's taken bytes get their original acknowledgement and do not count.
  EXPECT_EQ(SubmitCode(Sign(fleet(), round1[1]).SerializeAsString()),
            grpc::StatusCode::FAILED_PRECONDITION);
  EXPECT_EQ(SubmitCode(Sign(fleet(), withheld).SerializeAsString()),
            grpc::StatusCode::FAILED_PRECONDITION);
  EXPECT_EQ(SubmitCode(Sign(fleet(), round2[0]).SerializeAsString()), grpc::StatusCode::OK);
  EXPECT_EQ(server_->manager().Snapshot().accepted + server_->manager().Snapshot().pending, 0u);
  const std::vector<v1::Update> round3 = HonestUpdates({"dev-a", "dev-b", "dev-x"});
  EXPECT_TRUE(CommittedOnly(4, round3));
}

TEST_F(AuthAcceptanceTest, SampleCountAboveTheDeclaredOrTheCapIsInvalidArgument) {
  const v1::RoundTask declared_20 = TaskFor("dev-20", 20);
  EXPECT_EQ(SubmitCode(Sign(fleet(), UpdateFor(declared_20, "dev-20", 21)).SerializeAsString()),
            grpc::StatusCode::INVALID_ARGUMENT);
  // Declaring nothing (0), or more than the cap, leaves the cap of 2^24.
  for (uint32_t declared : {0u, (1u << 24) + 1000}) {
    const std::string id = absl::StrCat("dev-cap-", declared);
    const v1::RoundTask task = TaskFor(id, declared);
    EXPECT_EQ(SubmitCode(Sign(fleet(), UpdateFor(task, id, (1u << 24) + 1)).SerializeAsString()),
              grpc::StatusCode::INVALID_ARGUMENT)
        << declared;
  }
  EXPECT_EQ(server_->manager().Snapshot().accepted + server_->manager().Snapshot().pending, 0u);
  // dev-20 then sends what it declared, and counts once.
  std::vector<v1::Update> honest;
  const v1::Update ok = UpdateFor(declared_20, "dev-20", 20);
  ASSERT_TRUE(Call(kSubmitMethod, Sign(fleet(), ok).SerializeAsString()).ok());
  honest.push_back(ok);
  for (const v1::Update& u : HonestUpdates({"dev-b", "dev-c"})) honest.push_back(u);
  EXPECT_TRUE(CommittedOnly(2, honest));
}

TEST_F(AuthAcceptanceTest, SameSignedUpdateTwiceGetsTheOriginalAckAndCountsOnce) {
  const v1::Update u = UpdateFor(TaskFor("dev-a"), "dev-a");
  const std::string raw = Sign(fleet(), u).SerializeAsString();
  std::string first, second;
  ASSERT_TRUE(Call(kSubmitMethod, raw, &first).ok());
  ASSERT_TRUE(Call(kSubmitMethod, raw, &second).ok());
  EXPECT_EQ(first, second);
  v1::UpdateAck ack;
  ASSERT_TRUE(ack.ParseFromString(first));
  EXPECT_EQ(ack.round(), 1u);
  EXPECT_EQ(server_->manager().Snapshot().accepted, 1u);
  std::vector<v1::Update> honest = HonestUpdates({"dev-b", "dev-c"});
  honest.push_back(u);
  EXPECT_TRUE(CommittedOnly(2, honest));
}

// One credential floods check-ins while 10 honest devices do their round;
// half the flood names ids it holds no key for. The check-in limits count
// per device and per peer; on loopback every client is one peer, so the
// peer limits are off here (a share of 1, no peer rate), and what stands
// between the flood and the round is authentication (no task for an id
// without its key) and the per-device limits (one task per device and
// round, and a rate).
TEST_F(AuthAcceptanceTest, FloodOfCheckInsUnderOneCredentialDoesNotStopTheRound) {
  v1::ServerConfig config = RoundConfig(10);
  config.mutable_policy()->set_over_selection(1.3);  // 13 slots: 3 to spare
  config.mutable_checkin_limits()->set_exempt_loopback(false);
  config.mutable_checkin_limits()->set_peer_task_share(1);
  config.mutable_checkin_limits()->set_peer_checkins_per_second(0);
  server_.reset();
  ASSERT_NO_FATAL_FAILURE(Start(config));

  constexpr int kFlood = 400;
  int tasks = 0, retries = 0, unauthenticated = 0, other = 0;
  std::map<uint32_t, std::set<std::string>> tokens;  // by round
  std::thread flood([&] {
    grpc::GenericStub stub(
        grpc::CreateChannel(server_->address(), grpc::InsecureChannelCredentials()));
    for (int sent = 0; sent < kFlood; ++sent) {
      const std::string id = sent % 2 == 0 ? "flooder" : absl::StrCat("invented-", sent);
      // Every request made with the flooder's own key.
      const std::string raw = Envelope(fleet(), id, "flooder", RequestType::kCheckIn,
                                       CheckInOf(id).SerializeAsString());
      grpc::ClientContext context;
      grpc::Slice slice(raw);
      grpc::ByteBuffer request(&slice, 1), reply;
      std::promise<grpc::Status> done;
      stub.UnaryCall(&context, kCheckInMethod, grpc::StubOptions(), &request, &reply,
                     [&](grpc::Status s) { done.set_value(std::move(s)); });
      const grpc::Status s = done.get_future().get();
      v1::CheckInResponse response;
      grpc::Slice all;
      if (s.error_code() == grpc::StatusCode::UNAUTHENTICATED) {
        ++unauthenticated;
      } else if (!s.ok() || !reply.DumpToSingleSlice(&all).ok() ||
                 !response.ParseFromArray(all.begin(), static_cast<int>(all.size()))) {
        ++other;
      } else if (response.has_task()) {
        ++tasks;
        tokens[response.task().round()].insert(response.task().task_token());
      } else {
        ++retries;
      }
    }
  });
  // The flood starts first (the flooder has its task), and goes on while
  // the honest devices do their round.
  while (server_->manager().Snapshot().tasks_issued == 0) std::this_thread::sleep_for(1ms);
  std::vector<std::string> ids;
  for (int i = 0; i < 10; ++i) ids.push_back(absl::StrCat("honest-", i));
  const std::vector<v1::Update> honest = HonestUpdates(ids);
  flood.join();
  EXPECT_TRUE(CommittedOnly(2, honest));
  std::printf("flood: %d check-ins: %d tasks, %d retries, %d unauthenticated\n", kFlood, tasks,
              retries, unauthenticated);
  EXPECT_EQ(other, 0);
  EXPECT_EQ(unauthenticated, kFlood / 2) << "every invented id refused";
  EXPECT_EQ(tokens[1].size(), 1u) << "one credential, one task";
  for (const auto& [round, in_round] : tokens) EXPECT_EQ(in_round.size(), 1u) << round;
  EXPECT_GT(retries, 0) << "the device rate limit never answered the flood";
}

// ---- tinyfed-server's fleet key file ----------------------------------------

class FleetKeyFileTest : public ::testing::Test {
 protected:
  std::unique_ptr<testing::ChildProcess> Run(std::vector<std::string> extra,
                                             const std::string& log) {
    address_ = absl::StrCat("127.0.0.1:", testing::FreeLoopbackPort());
    std::vector<std::string> argv{TINYFED_SERVER_BINARY, "--listen=" + address_,
                                  "--db=" + dir_.File("s.db")};
    argv.insert(argv.end(), extra.begin(), extra.end());
    return std::make_unique<testing::ChildProcess>(argv, dir_.File(log));
  }
  // Whether a check-in signed under `fleet_key` gets a task from the
  // running server.
  bool TaskWith(const Key256& fleet_key, const std::string& id) {
    grpc::GenericStub stub(grpc::CreateChannel(address_, grpc::InsecureChannelCredentials()));
    const std::string raw = Sign(fleet_key, CheckInOf(id)).SerializeAsString();
    grpc::ClientContext context;
    context.set_deadline(std::chrono::system_clock::now() + 10s);
    grpc::Slice slice(raw);
    grpc::ByteBuffer request(&slice, 1), reply;
    std::promise<grpc::Status> done;
    stub.UnaryCall(&context, kCheckInMethod, grpc::StubOptions(), &request, &reply,
                   [&](grpc::Status s) { done.set_value(std::move(s)); });
    const grpc::Status s = done.get_future().get();
    grpc::Slice all;
    v1::CheckInResponse response;
    return s.ok() && reply.DumpToSingleSlice(&all).ok() &&
           response.ParseFromArray(all.begin(), static_cast<int>(all.size())) &&
           response.has_task();
  }

  TempDir dir_;
  std::string address_;
};

TEST_F(FleetKeyFileTest, AKeyOthersCanReadIsRefusedWithExitStatus2) {
  const std::string path = dir_.File("fleet.key");
  ASSERT_TRUE(CreateFleetKeyFile(path).ok());
  ASSERT_EQ(chmod(path.c_str(), 0644), 0);
  auto named = Run({"--fleet_key=" + path}, "named.log");
  EXPECT_EQ(named->WaitExit(20s), 2) << named->Log();
  EXPECT_NE(named->Log().find("tinyfed-server: fleet key: " + path), std::string::npos)
      << named->Log();
  EXPECT_NE(named->Log().find("0644"), std::string::npos) << named->Log();
  // The default key beside the store is held to the same rule.
  const std::string beside = dir_.File("s.db.fleet.key");
  ASSERT_TRUE(CreateFleetKeyFile(beside).ok());
  ASSERT_EQ(chmod(beside.c_str(), 0640), 0);
  auto by_default = Run({}, "default.log");
  EXPECT_EQ(by_default->WaitExit(20s), 2) << by_default->Log();
  EXPECT_NE(by_default->Log().find("tinyfed-server: fleet key: " + beside), std::string::npos)
      << by_default->Log();
  EXPECT_NE(by_default->Log().find("0640"), std::string::npos) << by_default->Log();
}

// InProcessServer takes config.fleet_key_file under the same rule.
TEST(InProcessServerFleetKey, UsesTheConfiguredFileAndRefusesOneOthersCanRead) {
  TempDir dir;
  const std::string path = dir.File("fleet.key");
  absl::StatusOr<Key256> key = CreateFleetKeyFile(path);
  ASSERT_TRUE(key.ok()) << key.status();
  v1::ServerConfig config = RoundConfig();
  config.set_fleet_key_file(path);
  {
    auto server = InProcessServer::Start(config);
    ASSERT_TRUE(server.ok()) << server.status();
    EXPECT_TRUE(std::equal(key->bytes().begin(), key->bytes().end(),
                           (*server)->fleet_key().bytes().begin()));
  }
  ASSERT_EQ(chmod(path.c_str(), 0644), 0);
  auto refused = InProcessServer::Start(config);
  EXPECT_EQ(refused.status().code(), absl::StatusCode::kFailedPrecondition) << refused.status();
}

TEST_F(FleetKeyFileTest, FirstStartCreatesTheKeyBesideTheStoreAndTheNextReusesIt) {
  const std::string path = dir_.File("s.db.fleet.key");
  auto first = Run({}, "first.log");
  ASSERT_TRUE(first->WaitForLog("listening", 20s)) << first->Log();
  struct stat st;
  ASSERT_EQ(stat(path.c_str(), &st), 0) << "no key beside the store";
  EXPECT_EQ(st.st_mode & 07777, 0600u);
  absl::StatusOr<Key256> key = LoadFleetKey(path);
  ASSERT_TRUE(key.ok()) << key.status();
  EXPECT_NE(first->Log().find("created the fleet key " + path), std::string::npos)
      << first->Log();
  EXPECT_NE(first->Log().find("tinyfed-admin keys device --fleet " + path), std::string::npos);
  const std::string hex = absl::BytesToHexString(
      std::string(reinterpret_cast<const char*>(key->bytes().data()), key->bytes().size()));
  EXPECT_EQ(first->Log().find(hex), std::string::npos) << "the key's bytes were logged";
  EXPECT_TRUE(TaskWith(*key, "dev-1"));
  EXPECT_FALSE(TaskWith(OtherFleetKey(), "dev-2"));
  EXPECT_EQ(first->Stop(), 0);

  auto second = Run({}, "second.log");
  ASSERT_TRUE(second->WaitForLog("listening", 20s)) << second->Log();
  EXPECT_EQ(second->Log().find("created the fleet key"), std::string::npos) << second->Log();
  absl::StatusOr<Key256> again = LoadFleetKey(path);
  ASSERT_TRUE(again.ok()) << again.status();
  EXPECT_TRUE(std::equal(again->bytes().begin(), again->bytes().end(), key->bytes().begin()));
  EXPECT_TRUE(TaskWith(*key, "dev-3")) << "the second start serves the same key";
  EXPECT_EQ(second->Stop(), 0);
}

}  // namespace
}  // namespace tinyfed::server
