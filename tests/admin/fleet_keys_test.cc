// The host's key library (common/include/tinyfed_common/fleet_keys.h):
// HMAC-SHA256 against RFC 4231's published vectors, the derivation of
// device_key.h against vectors computed by python3's standard hmac module,
// and the fleet key file's rules.
#include "tinyfed_common/fleet_keys.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <string>
#include <vector>

#include "gtest/gtest.h"

namespace tinyfed {
namespace {

std::string ToHex(absl::Span<const uint8_t> bytes) {
  static const char kDigits[] = "0123456789abcdef";
  std::string out;
  for (uint8_t b : bytes) {
    out.push_back(kDigits[b >> 4]);
    out.push_back(kDigits[b & 15]);
  }
  return out;
}

std::string Repeat(const std::string& s, int n) {
  std::string out;
  for (int i = 0; i < n; ++i) out += s;
  return out;
}

std::string Hmac(const std::vector<uint8_t>& key, const std::string& message) {
  uint8_t out[32];
  HmacSha256(key, absl::MakeConstSpan(reinterpret_cast<const uint8_t*>(message.data()),
                                      message.size()),
             out);
  return ToHex(out);
}

// RFC 4231 section 4.2: test case 1 (20-byte key).
TEST(HmacSha256, Rfc4231Case1) {
  EXPECT_EQ(Hmac(std::vector<uint8_t>(20, 0x0b), "Hi There"),
            "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7");
}

// RFC 4231 section 4.3: test case 2 (a key shorter than the output).
TEST(HmacSha256, Rfc4231Case2) {
  EXPECT_EQ(Hmac({'J', 'e', 'f', 'e'}, "what do ya want for nothing?"),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843");
}

// RFC 4231 sections 4.7 and 4.8: a 131-byte key, longer than SHA-256's
// 64-byte block, so it is hashed first.
TEST(HmacSha256, Rfc4231Cases6And7LongKey) {
  const std::vector<uint8_t> key(131, 0xaa);
  EXPECT_EQ(Hmac(key, "Test Using Larger Than Block-Size Key - Hash Key First"),
            "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54");
  EXPECT_EQ(Hmac(key,
                 "This is a test using a larger than block-size key and a larger than "
                 "block-size data. The key needs to be hashed before being used by the HMAC "
                 "algorithm."),
            "9b09ffa71b942fcb27635fbcd5b0e944bfdc63644f0713938a7f51535c3a35e2");
}

Key256 CountingFleetKey() {
  std::array<uint8_t, 32> bytes;
  for (size_t i = 0; i < bytes.size(); ++i) bytes[i] = static_cast<uint8_t>(i);
  return Key256(bytes);
}

// Expected values from python3's hmac module, not from this library:
//   python3 -c 'import hmac,hashlib; print(hmac.new(bytes(range(32)),
//       b"tinyfed/v1 device key\0" + b"dev-0001", hashlib.sha256).hexdigest())'
// and the same with b"!" * 32 (the longest id, the lowest legal byte).
TEST(DeriveDeviceKey, MatchesPythonHmacOfLabelAndId) {
  absl::StatusOr<Key256> key = DeriveDeviceKey(CountingFleetKey(), "dev-0001");
  ASSERT_TRUE(key.ok()) << key.status();
  EXPECT_EQ(ToHex(key->bytes()),
            "1878b31ebaf61e174862849db2e30a1aa8ff2524f81beede69b83d671f127d43");
  key = DeriveDeviceKey(CountingFleetKey(), std::string(32, '!'));
  ASSERT_TRUE(key.ok()) << key.status();
  EXPECT_EQ(ToHex(key->bytes()),
            "63ab47e51e8a0de7feafc597fdb4c02abd201ee9ab7130695aa6b2484009f5ae");
}

// request_auth.h's fixed vectors, from python3's hmac module:
//   dk = bytes.fromhex("1878b31e...127d43")   # dev-0001's key above
//   hmac.new(dk, b"tinyfed/v1 CheckInRequest\0" + b"\x0a\x08dev-0001",
//            hashlib.sha256).hexdigest()
// and the same with b"tinyfed/v1 Update\0".
TEST(RequestTag, MatchesPythonHmacOfLabelAndBody) {
  absl::StatusOr<Key256> key = DeriveDeviceKey(CountingFleetKey(), "dev-0001");
  ASSERT_TRUE(key.ok()) << key.status();
  const std::string body = std::string("\x0a\x08", 2) + "dev-0001";
  EXPECT_EQ(ToHex(RequestTag(*key, RequestType::kCheckIn, body)),
            "00192496c68442dbe9e8fe4348f8dc1f3c99e642127201cff3857740940f4f4e");
  EXPECT_EQ(ToHex(RequestTag(*key, RequestType::kUpdate, body)),
            "5322a0e1ebe8d7ca60830952c04786ae95e2006e8adbe119100129e89bf7435f");
}

TEST(TagMatches, AcceptsTheExactTagOnly) {
  absl::StatusOr<Key256> key = DeriveDeviceKey(CountingFleetKey(), "dev-0001");
  ASSERT_TRUE(key.ok()) << key.status();
  const Tag256 tag = RequestTag(*key, RequestType::kUpdate, "body");
  const std::string exact(tag.begin(), tag.end());
  EXPECT_TRUE(TagMatches(tag, exact));
  EXPECT_FALSE(TagMatches(tag, ""));
  EXPECT_FALSE(TagMatches(tag, exact.substr(0, 16)));  // a shortened tag
  EXPECT_FALSE(TagMatches(tag, exact + "x"));
  for (size_t i = 0; i < exact.size(); ++i) {
    std::string flipped = exact;
    flipped[i] = static_cast<char>(flipped[i] ^ 0x01);
    EXPECT_FALSE(TagMatches(tag, flipped)) << "byte " << i;
  }
}

// The same derivation by a second, independent implementation, run now:
// python3's hmac over a fleet key this test draws at random.
TEST(DeriveDeviceKey, MatchesPythonForARandomFleetKey) {
  if (std::system("python3 -c 'import hmac' >/dev/null 2>&1") != 0) {
    GTEST_SKIP() << "python3 is not available; the fixed vectors above still check";
  }
  std::array<uint8_t, 32> bytes;
  std::srand(static_cast<unsigned>(::getpid()));
  for (uint8_t& b : bytes) b = static_cast<uint8_t>(std::rand());
  const Key256 fleet(bytes);
  const std::string id = "node~42";
  const std::string command = "python3 -c 'import hmac,hashlib,sys; print(hmac.new(bytes.fromhex("
                              "sys.argv[1]), b\"tinyfed/v1 device key\\0\" + sys.argv[2].encode(), "
                              "hashlib.sha256).hexdigest())' " +
                              ToHex(fleet.bytes()) + " '" + id + "'";
  FILE* pipe = ::popen(command.c_str(), "r");
  ASSERT_NE(pipe, nullptr);
  char line[128] = {};
  ASSERT_NE(std::fgets(line, sizeof line, pipe), nullptr);
  ASSERT_EQ(::pclose(pipe), 0);
  absl::StatusOr<Key256> key = DeriveDeviceKey(fleet, id);
  ASSERT_TRUE(key.ok()) << key.status();
  EXPECT_EQ(ToHex(key->bytes()) + "\n", std::string(line));
}

TEST(DeriveDeviceKey, EachDeviceAndEachFleetGetsItsOwnKey) {
  const Key256 fleet = CountingFleetKey();
  const std::string a = ToHex(DeriveDeviceKey(fleet, "dev-0001")->bytes());
  const std::string b = ToHex(DeriveDeviceKey(fleet, "dev-0002")->bytes());
  std::array<uint8_t, 32> other_bytes{};
  other_bytes[31] = 1;
  const std::string c = ToHex(DeriveDeviceKey(Key256(other_bytes), "dev-0001")->bytes());
  EXPECT_NE(a, b);
  EXPECT_NE(a, c);
}

// The server's rule (server/update_validation.cc): 1..32 bytes of 0x21..0x7E.
TEST(ValidateDeviceId, AcceptsWhatTheServerAcceptsOnly) {
  EXPECT_TRUE(ValidateDeviceId("!").ok());
  EXPECT_TRUE(ValidateDeviceId(std::string(32, '~')).ok());
  EXPECT_EQ(ValidateDeviceId("").code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(ValidateDeviceId(std::string(33, 'a')).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(ValidateDeviceId("dev 1").code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(ValidateDeviceId("dev\x7f").code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(ValidateDeviceId(std::string("a\0b", 3)).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(ValidateDeviceId("d\xc3\xa9v").code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(DeriveDeviceKey(CountingFleetKey(), "dev 1").status().code(),
            absl::StatusCode::kInvalidArgument);
}

class FleetKeyFileTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char pattern[] = "/tmp/tinyfed_fleet_keys_XXXXXX";
    ASSERT_NE(::mkdtemp(pattern), nullptr);
    dir_ = pattern;
  }
  void TearDown() override { std::system(("rm -rf '" + dir_ + "'").c_str()); }

  // Writes `bytes` to a new file of mode `mode` (exactly, whatever the umask).
  std::string Write(const std::string& name, const std::string& bytes, mode_t mode) {
    const std::string path = dir_ + "/" + name;
    std::ofstream(path, std::ios::binary) << bytes;
    EXPECT_EQ(::chmod(path.c_str(), mode), 0);
    return path;
  }

  std::string dir_;
};

TEST_F(FleetKeyFileTest, LoadsThirtyTwoBytesOfMode0600Or0400) {
  const std::string bytes(32, 'k');
  for (mode_t mode : {0600, 0400}) {
    absl::StatusOr<Key256> key = LoadFleetKey(Write("fleet.key", bytes, mode));
    ASSERT_TRUE(key.ok()) << key.status();
    EXPECT_EQ(ToHex(key->bytes()), Repeat("6b", 32));  // 'k' is 0x6b
  }
}

TEST_F(FleetKeyFileTest, RefusesAModeWiderThan0600) {
  for (mode_t mode : {0644, 0640, 0604, 0700, 0660, 04600}) {
    const std::string path = Write("fleet.key", std::string(32, 'k'), mode);
    absl::StatusOr<Key256> key = LoadFleetKey(path);
    EXPECT_EQ(key.status().code(), absl::StatusCode::kFailedPrecondition) << std::oct << mode;
    EXPECT_NE(key.status().message().find(path), std::string::npos) << key.status();
    char octal[8];
    std::snprintf(octal, sizeof octal, "%04o", static_cast<unsigned>(mode));
    EXPECT_NE(key.status().message().find(octal), std::string::npos) << key.status();
  }
}

TEST_F(FleetKeyFileTest, RefusesAnyOtherSizeWithoutShowingTheBytes) {
  // 64 hex digits and a newline is not the format: the file holds raw bytes.
  for (const std::string& bytes :
       {std::string(), std::string(31, 'S'), std::string(33, 'S'), std::string(64, 'a') + "\n"}) {
    const std::string path = Write("fleet.key", bytes, 0600);
    absl::StatusOr<Key256> key = LoadFleetKey(path);
    EXPECT_EQ(key.status().code(), absl::StatusCode::kInvalidArgument) << bytes.size();
    EXPECT_NE(key.status().message().find(path), std::string::npos) << key.status();
    EXPECT_NE(key.status().message().find("expected exactly 32 bytes"), std::string::npos);
    EXPECT_EQ(key.status().message().find("SSS"), std::string::npos) << key.status();
    EXPECT_EQ(key.status().message().find("aaa"), std::string::npos) << key.status();
  }
}

TEST_F(FleetKeyFileTest, RefusesAMissingFileAndADirectory) {
  const std::string missing = dir_ + "/none.key";
  absl::StatusOr<Key256> key = LoadFleetKey(missing);
  EXPECT_EQ(key.status().code(), absl::StatusCode::kNotFound);
  EXPECT_NE(key.status().message().find(missing), std::string::npos) << key.status();
  ASSERT_EQ(::chmod(dir_.c_str(), 0700), 0);
  EXPECT_EQ(LoadFleetKey(dir_).status().code(), absl::StatusCode::kFailedPrecondition);
}

TEST_F(FleetKeyFileTest, NewKeyIsMode0600WhateverTheUmaskAndLoadsBack) {
  const std::string path = dir_ + "/fleet.key";
  const mode_t old_umask = ::umask(0);
  absl::StatusOr<Key256> created = CreateFleetKeyFile(path);
  ::umask(old_umask);
  ASSERT_TRUE(created.ok()) << created.status();
  struct stat st;
  ASSERT_EQ(::stat(path.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 07777, 0600u);
  EXPECT_EQ(st.st_size, 32);
  absl::StatusOr<Key256> loaded = LoadFleetKey(path);
  ASSERT_TRUE(loaded.ok()) << loaded.status();
  EXPECT_EQ(ToHex(loaded->bytes()), ToHex(created->bytes()));
  // Two keys drawn from the CSPRNG: equal only if it were broken (2^-256).
  absl::StatusOr<Key256> second = CreateFleetKeyFile(dir_ + "/second.key");
  ASSERT_TRUE(second.ok()) << second.status();
  EXPECT_NE(ToHex(second->bytes()), ToHex(created->bytes()));
}

TEST_F(FleetKeyFileTest, NewRefusesToOverwriteAnything) {
  const std::string path = Write("fleet.key", std::string(32, 'k'), 0600);
  absl::StatusOr<Key256> created = CreateFleetKeyFile(path);
  EXPECT_EQ(created.status().code(), absl::StatusCode::kAlreadyExists);
  EXPECT_NE(created.status().message().find(path), std::string::npos) << created.status();
  absl::StatusOr<Key256> kept = LoadFleetKey(path);
  ASSERT_TRUE(kept.ok()) << kept.status();
  EXPECT_EQ(ToHex(kept->bytes()), Repeat("6b", 32));  // still the 'k' bytes written
  // A dangling symbolic link is refused too: following it would create a
  // file wherever the link points.
  const std::string link = dir_ + "/link.key";
  ASSERT_EQ(::symlink((dir_ + "/elsewhere.key").c_str(), link.c_str()), 0);
  EXPECT_EQ(CreateFleetKeyFile(link).status().code(), absl::StatusCode::kAlreadyExists);
  EXPECT_NE(::access((dir_ + "/elsewhere.key").c_str(), F_OK), 0);
}

TEST_F(FleetKeyFileTest, NewInAMissingDirectoryFailsNamingThePath) {
  const std::string path = dir_ + "/no/such/dir/fleet.key";
  absl::StatusOr<Key256> created = CreateFleetKeyFile(path);
  EXPECT_EQ(created.status().code(), absl::StatusCode::kNotFound);
  EXPECT_NE(created.status().message().find(path), std::string::npos) << created.status();
}

}  // namespace
}  // namespace tinyfed
