// The SDK signs what it sends (tinyfed_common/request_auth.h): its HMAC
// against the header's fixed vectors (python3's hmac module) and against
// the host's OpenSSL HMAC (tinyfed_fleet_keys), and the SignedRequest its
// encoders write, parsed by C++ protobuf and verified as the server does.
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "request_tag.h"
#include "sdk_test_support.h"

namespace tinyfed::testing {
namespace {

std::string Hex(const uint8_t* bytes, size_t n) {
  static const char* kHex = "0123456789abcdef";
  std::string out;
  for (size_t i = 0; i < n; ++i) {
    out += kHex[bytes[i] >> 4];
    out += kHex[bytes[i] & 15];
  }
  return out;
}

std::string Hex(const std::string& bytes) {
  return Hex(reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size());
}

std::string Bytes(const Tag256& tag) {
  return std::string(reinterpret_cast<const char*>(tag.data()), tag.size());
}

// request_auth.h's vectors: the key of "dev-0001" under fleet key
// 0x00..0x1f, the body 0a 08 "dev-0001".
TEST(RequestTag, MatchesTheFixedVectorsOfRequestAuthH) {
  const Key256 key = TestDeviceKey("dev-0001");
  // device_key.h's vector, so that the key below is the vectors' key.
  ASSERT_EQ(Hex(key.bytes().data(), key.bytes().size()),
            "1878b31ebaf61e174862849db2e30a1aa8ff2524f81beede69b83d671f127d43");
  const std::string body = std::string("\x0a\x08", 2) + "dev-0001";
  const auto* b = reinterpret_cast<const uint8_t*>(body.data());
  uint8_t tag[TINYFED_TAG_SIZE];

  tinyfed_request_tag(key.bytes().data(),
                      reinterpret_cast<const uint8_t*>(TINYFED_CHECKIN_TAG_LABEL),
                      TINYFED_CHECKIN_TAG_LABEL_SIZE, b, body.size(), tag);
  EXPECT_EQ(Hex(tag, sizeof tag),
            "00192496c68442dbe9e8fe4348f8dc1f3c99e642127201cff3857740940f4f4e");

  tinyfed_request_tag(key.bytes().data(),
                      reinterpret_cast<const uint8_t*>(TINYFED_UPDATE_TAG_LABEL),
                      TINYFED_UPDATE_TAG_LABEL_SIZE, b, body.size(), tag);
  EXPECT_EQ(Hex(tag, sizeof tag),
            "5322a0e1ebe8d7ca60830952c04786ae95e2006e8adbe119100129e89bf7435f");
}

// Every body length from empty to past three SHA-256 blocks, so that
// label || body ends at, just before and just after each block boundary
// and at each padding case (a final block with and without room for the
// length), agrees with OpenSSL's HMAC.
TEST(RequestTag, AgreesWithOpenSslForEveryLengthAcrossBlockBoundaries) {
  const Key256 key = TestDeviceKey("sensor-0042");
  std::string body;
  for (size_t len = 0; len <= 200; ++len) {
    uint8_t tag[TINYFED_TAG_SIZE];
    tinyfed_request_tag(key.bytes().data(),
                        reinterpret_cast<const uint8_t*>(TINYFED_UPDATE_TAG_LABEL),
                        TINYFED_UPDATE_TAG_LABEL_SIZE,
                        reinterpret_cast<const uint8_t*>(body.data()), body.size(), tag);
    EXPECT_EQ(Hex(tag, sizeof tag), Hex(Bytes(RequestTag(key, RequestType::kUpdate, body))))
        << "body of " << len << " bytes";
    body.push_back(static_cast<char>(len * 37 + 11));
  }
}

// The envelope as the server sees it: `bytes` must be exactly a
// SignedRequest (re-serializing the parse gives the same bytes: nothing
// the parser skipped, no field out of canonical order) for `id`, whose tag
// OpenSSL verifies over the body under the device's key for `type` and
// not for the other type.
void ExpectSignedBy(const std::string& bytes, const std::string& id, const Key256& key,
                    RequestType type, std::string* body) {
  v1::SignedRequest request;
  ASSERT_TRUE(request.ParseFromString(bytes));
  EXPECT_EQ(Hex(request.SerializeAsString()), Hex(bytes));
  EXPECT_EQ(request.device_id(), id);
  ASSERT_EQ(request.tag().size(), static_cast<size_t>(TINYFED_TAG_SIZE));
  EXPECT_TRUE(TagMatches(RequestTag(key, type, request.body()), request.tag()));
  const RequestType other =
      type == RequestType::kUpdate ? RequestType::kCheckIn : RequestType::kUpdate;
  EXPECT_FALSE(TagMatches(RequestTag(key, other, request.body()), request.tag()));
  *body = request.body();
}

TEST(SignedCheckIn, IsASignedRequestOverTheCheckInTheServerVerifies) {
  for (const std::string& id : {std::string("a"), std::string("sensor-0042"),
                               std::string(TINYFED_DEVICE_ID_MAX_LEN, 'z')}) {
    Device dev(id, 128, 32, 64);
    uint8_t buf[TINYFED_CHECKIN_MAX_SIZE];
    size_t len = 0;
    ASSERT_EQ(tinyfed_checkin_encode(dev.ctx(), 0xFFFFFFFFu, buf, sizeof buf, &len), TINYFED_OK);
    std::string body;
    ExpectSignedBy(std::string(reinterpret_cast<const char*>(buf), len), id,
                   TestDeviceKey(id), RequestType::kCheckIn, &body);
    v1::CheckInRequest request;
    ASSERT_TRUE(request.ParseFromString(body));
    EXPECT_EQ(request.device_id(), id);
    EXPECT_EQ(request.capabilities().max_features(), 128u);
    EXPECT_EQ(request.capabilities().sample_count(), 0xFFFFFFFFu);
  }
}

TEST(SignedUpdate, IsASignedRequestOverTheUpdateTheServerVerifies) {
  for (const std::string& id : {std::string("b"), std::string(TINYFED_DEVICE_ID_MAX_LEN, 'u')}) {
    Device dev(id);
    TaskParams p;
    ASSERT_EQ(dev.Load(BuildTask(p)), TINYFED_OK);
    const QuantizedDataset data = MakeBlobs(1, 2, 40, 64, 10, 1.0, p.feature_scale, 0);
    const tinyfed_dataset_t view = data.view();
    ASSERT_EQ(tinyfed_train(dev.ctx(), &view), TINYFED_OK);
    std::string body;
    ExpectSignedBy(dev.EncodeSignedUpdate(), id, TestDeviceKey(id), RequestType::kUpdate,
                   &body);
    v1::Update update;
    ASSERT_TRUE(update.ParseFromString(body));
    EXPECT_EQ(update.device_id(), id);
    EXPECT_EQ(update.round(), p.round);
    EXPECT_EQ(update.task_token(), p.token);
    EXPECT_EQ(update.sample_count(), 40u);
    EXPECT_EQ(update.weight_delta().size(), 640u);
  }
}

// A device provisioned with another fleet's key signs with that key: the
// tag is its key's, not the one the tests' fleet would derive.
TEST(SignedUpdate, IsTaggedWithTheConfiguredKey) {
  std::array<uint8_t, Key256::kSize> other_fleet{};
  other_fleet.fill(0xA5);
  absl::StatusOr<Key256> key = DeriveDeviceKey(Key256(other_fleet), "dev-k");
  ASSERT_TRUE(key.ok());
  Device dev("dev-k", *key);
  uint8_t buf[TINYFED_CHECKIN_MAX_SIZE];
  size_t len = 0;
  ASSERT_EQ(tinyfed_checkin_encode(dev.ctx(), 5, buf, sizeof buf, &len), TINYFED_OK);
  const Envelope e = ParseEnvelope(std::string(reinterpret_cast<const char*>(buf), len));
  ASSERT_TRUE(e.ok);
  EXPECT_TRUE(TagMatches(RequestTag(*key, RequestType::kCheckIn, e.body), e.tag));
  EXPECT_FALSE(TagMatches(RequestTag(TestDeviceKey("dev-k"), RequestType::kCheckIn, e.body),
                          e.tag));
}

// The contract says the context keeps the caller's key pointer, not a
// copy (so the key can stay in flash): new bytes at that address sign the
// next request.
TEST(Init, KeepsThePointerToTheKeyNotACopy) {
  Key256 first = TestDeviceKey("dev-p");
  const Key256 second = TestDeviceKey("dev-q");
  std::vector<uint8_t> arena(tinyfed_arena_size(8, 2, 1));
  tinyfed_context_t ctx;
  tinyfed_config_t cfg{"dev-p", 8, 2, 1, first.bytes().data()};
  ASSERT_EQ(tinyfed_init(&ctx, &cfg, arena.data(), arena.size()), TINYFED_OK);
  uint8_t buf[TINYFED_CHECKIN_MAX_SIZE];
  size_t len = 0;
  ASSERT_EQ(tinyfed_checkin_encode(&ctx, 1, buf, sizeof buf, &len), TINYFED_OK);
  Envelope e = ParseEnvelope(std::string(reinterpret_cast<const char*>(buf), len));
  EXPECT_TRUE(TagMatches(RequestTag(first, RequestType::kCheckIn, e.body), e.tag));

  std::copy(second.bytes().begin(), second.bytes().end(), first.mutable_data());
  ASSERT_EQ(tinyfed_checkin_encode(&ctx, 1, buf, sizeof buf, &len), TINYFED_OK);
  e = ParseEnvelope(std::string(reinterpret_cast<const char*>(buf), len));
  EXPECT_TRUE(TagMatches(RequestTag(second, RequestType::kCheckIn, e.body), e.tag));
}

TEST(Init, RefusesANullDeviceKey) {
  std::vector<uint8_t> arena(tinyfed_arena_size(64, 10, 16));
  tinyfed_context_t ctx;
  tinyfed_config_t cfg{"dev-1", 64, 10, 16, nullptr};
  EXPECT_EQ(tinyfed_init(&ctx, &cfg, arena.data(), arena.size()), TINYFED_ERR_ARGUMENT);
  EXPECT_STRNE(tinyfed_last_error_message(&ctx), "");
  uint8_t buf[TINYFED_CHECKIN_MAX_SIZE];
  size_t len = 0;
  EXPECT_EQ(tinyfed_checkin_encode(&ctx, 1, buf, sizeof buf, &len), TINYFED_ERR_STATE);
}

// BUFFER_TOO_SMALL exactly when the signed message does not fit: a buffer
// of its length works, one byte less fails, for the shortest and longest
// ids (the encoder stages the body behind the longest envelope head).
TEST(SignedEncode, NeedsExactlyTheEnvelopesLength) {
  for (const std::string& id : {std::string("s"), std::string(TINYFED_DEVICE_ID_MAX_LEN, 'l')}) {
    Device dev(id);
    uint8_t full[TINYFED_CHECKIN_MAX_SIZE];
    size_t len = 0;
    ASSERT_EQ(tinyfed_checkin_encode(dev.ctx(), 9, full, sizeof full, &len), TINYFED_OK);
    std::vector<uint8_t> exact(len), short_by_one(len - 1);
    size_t exact_len = 0;
    ASSERT_EQ(tinyfed_checkin_encode(dev.ctx(), 9, exact.data(), exact.size(), &exact_len),
              TINYFED_OK)
        << id;
    EXPECT_EQ(Hex(exact.data(), exact_len), Hex(full, len));
    EXPECT_EQ(tinyfed_checkin_encode(dev.ctx(), 9, short_by_one.data(), short_by_one.size(),
                                     &exact_len),
              TINYFED_ERR_BUFFER_TOO_SMALL)
        << id;

    ASSERT_EQ(dev.Load(BuildTask(TaskParams{})), TINYFED_OK);
    const QuantizedDataset data = MakeBlobs(1, 2, 40, 64, 10, 1.0, 6.0 / 127, 0);
    const tinyfed_dataset_t view = data.view();
    ASSERT_EQ(tinyfed_train(dev.ctx(), &view), TINYFED_OK);
    const std::string update = dev.EncodeSignedUpdate();
    ASSERT_FALSE(update.empty());
    std::vector<uint8_t> u_exact(update.size()), u_short(update.size() - 1);
    ASSERT_EQ(tinyfed_update_encode(dev.ctx(), u_exact.data(), u_exact.size(), &exact_len),
              TINYFED_OK)
        << id;
    EXPECT_EQ(Hex(u_exact.data(), exact_len), Hex(update));
    EXPECT_EQ(tinyfed_update_encode(dev.ctx(), u_short.data(), u_short.size(), &exact_len),
              TINYFED_ERR_BUFFER_TOO_SMALL)
        << id;
  }
}

}  // namespace
}  // namespace tinyfed::testing
