// The admin token file tinyfed-admin reads: its forms, its mode rule, and
// errors that never show the token.
#include "token_file.h"

#include <sys/stat.h>

#include <cstdlib>
#include <fstream>
#include <string>

#include <gtest/gtest.h>

namespace tinyfed::admin {
namespace {

constexpr char kToken[] = "s3cret-0123456789abcdef0123456789abcdef";

class TokenFileTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char pattern[] = "/tmp/tinyfed_token_XXXXXX";
    ASSERT_NE(mkdtemp(pattern), nullptr);
    dir_ = pattern;
  }
  void TearDown() override { std::system(("rm -rf '" + dir_ + "'").c_str()); }

  std::string Write(const std::string& text, mode_t mode = 0600) {
    const std::string path = dir_ + "/token";
    std::ofstream(path, std::ios::trunc) << text;
    EXPECT_EQ(chmod(path.c_str(), mode), 0);
    return path;
  }

  std::string dir_;
};

TEST_F(TokenFileTest, ATokenAloneOrAfterItsName) {
  EXPECT_EQ(*ReadAdminToken(Write(std::string(kToken) + "\n")), kToken);
  EXPECT_EQ(*ReadAdminToken(Write(std::string("alice ") + kToken)), kToken);
  EXPECT_EQ(*ReadAdminToken(Write(std::string("# mine\n\n  alice\t") + kToken + "  \r\n")),
            kToken);
  EXPECT_EQ(*ReadAdminToken(Write(kToken, 0400)), kToken) << "stricter than 0600 is fine";
}

TEST_F(TokenFileTest, AFileOthersCanReadIsRefused) {
  for (mode_t mode : {0640, 0604, 0644}) {
    absl::StatusOr<std::string> token = ReadAdminToken(Write(kToken, mode));
    ASSERT_FALSE(token.ok()) << std::oct << mode;
    EXPECT_EQ(token.status().code(), absl::StatusCode::kFailedPrecondition);
    EXPECT_NE(token.status().message().find("chmod 600"), absl::string_view::npos);
  }
}

TEST_F(TokenFileTest, MalformedFilesAreRefusedWithoutShowingTheToken) {
  const std::string t = kToken;
  for (const std::string& text :
       {std::string("alice ") + t + "\nbob " + t + "x\n", "a b " + t, std::string("# only a comment\n"),
        std::string(""), "alice " + t.substr(0, 5) + "\x01" + t.substr(5)}) {
    absl::StatusOr<std::string> token = ReadAdminToken(Write(text));
    ASSERT_FALSE(token.ok()) << text;
    EXPECT_EQ(token.status().code(), absl::StatusCode::kInvalidArgument) << token.status();
    EXPECT_EQ(token.status().message().find(t.substr(0, 8)), absl::string_view::npos)
        << token.status();
  }
  EXPECT_EQ(ReadAdminToken(dir_ + "/missing").status().code(), absl::StatusCode::kNotFound);
}

}  // namespace
}  // namespace tinyfed::admin
