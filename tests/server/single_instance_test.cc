// One server per store and per port, against the real binary: a second
// tinyfed-server on the same --db or the same port exits at once with one
// line, touches none of the first one's files (and, for the port, creates
// no store of its own), and the first keeps serving.
#include <signal.h>
#include <sys/stat.h>

#include <chrono>
#include <memory>
#include <optional>
#include <regex>
#include <string>
#include <vector>

#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>

#include "absl/strings/str_cat.h"
#include "child_process.h"
#include "server_test_support.h"
#include "tinyfed/v1/coordinator.grpc.pb.h"

namespace tinyfed::server {
namespace {

using namespace std::chrono_literals;
using testing::ChildProcess;
using testing::TempDir;

bool Exists(const std::string& path) {
  struct stat st;
  return stat(path.c_str(), &st) == 0;
}

// Whether the server at `address` answers GetModel with its latest
// version, a call that needs its store.
bool ServesModel(const std::string& address) {
  auto stub = v1::Coordinator::NewStub(
      grpc::CreateChannel(address, grpc::InsecureChannelCredentials()));
  grpc::ClientContext context;
  context.set_deadline(std::chrono::system_clock::now() + 10s);
  v1::GetModelRequest request;
  v1::ModelVersion model;
  const grpc::Status status = stub->GetModel(&context, request, &model);
  return status.ok() && model.version() >= 1;
}

class SingleInstanceTest : public ::testing::Test {
 protected:
  std::unique_ptr<ChildProcess> Server(const std::string& listen, const std::string& db,
                                       const std::string& log) {
    return std::make_unique<ChildProcess>(
        std::vector<std::string>{TINYFED_SERVER_BINARY, "--listen=" + listen,
                                 "--db=" + dir_.File(db)},
        dir_.File(log));
  }
  static std::string Loopback(int port) { return absl::StrCat("127.0.0.1:", port); }

  TempDir dir_;
};

TEST_F(SingleInstanceTest, ASecondServerOnTheSameStoreExitsNamingTheHolder) {
  const std::string first_address = Loopback(testing::FreeLoopbackPort());
  auto first = Server(first_address, "s.db", "first.log");
  ASSERT_TRUE(first->WaitForLog("listening", 20s)) << first->Log();

  auto second = Server(Loopback(testing::FreeLoopbackPort()), "s.db", "second.log");
  const std::optional<int> code = second->WaitExit(20s);
  ASSERT_TRUE(code.has_value()) << "the second server started: " << second->Log();
  EXPECT_EQ(*code, 2);
  EXPECT_TRUE(std::regex_match(
      second->Log(),
      std::regex(absl::StrCat("tinyfed-server: [^\n]*s\\.db: the store is in use by another "
                              "tinyfed-server \\(pid ",
                              first->pid(), ", lock [^\n]*s\\.db\\.lock\\)[^\n]*\n"))))
      << second->Log();
  EXPECT_TRUE(ServesModel(first_address)) << first->Log();
  EXPECT_EQ(first->Stop(), 0) << first->Log();
}

// The kernel drops the lock with its holder, however it died: the crash
// test's SIGKILL and restart depend on it.
TEST_F(SingleInstanceTest, AKilledServerLeavesNoLockBehind) {
  auto first = Server(Loopback(testing::FreeLoopbackPort()), "s.db", "first.log");
  ASSERT_TRUE(first->WaitForLog("listening", 20s)) << first->Log();
  ASSERT_EQ(kill(first->pid(), SIGKILL), 0);
  ASSERT_EQ(first->WaitExit(20s), -SIGKILL) << first->Log();
  ASSERT_TRUE(Exists(dir_.File("s.db.lock")));

  const std::string address = Loopback(testing::FreeLoopbackPort());
  auto next = Server(address, "s.db", "next.log");
  ASSERT_TRUE(next->WaitForLog("listening", 20s)) << next->Log();
  EXPECT_TRUE(ServesModel(address)) << next->Log();
  EXPECT_EQ(next->Stop(), 0) << next->Log();
}

TEST_F(SingleInstanceTest, ASecondServerOnTheSamePortExitsBeforeMakingItsStore) {
  const std::string address = Loopback(testing::FreeLoopbackPort());
  auto first = Server(address, "a.db", "first.log");
  ASSERT_TRUE(first->WaitForLog("listening", 20s)) << first->Log();

  auto second = Server(address, "b.db", "second.log");
  const std::optional<int> code = second->WaitExit(20s);
  ASSERT_TRUE(code.has_value()) << "the second server started: " << second->Log();
  EXPECT_EQ(*code, 2);
  EXPECT_EQ(second->Log(), absl::StrCat("tinyfed-server: cannot listen on ", address,
                                        ": the port is in use (another tinyfed-server, or "
                                        "another program, listens on it)\n"));
  for (const char* file : {"b.db", "b.db.lock", "b.db.fleet.key", "b.db-wal", "b.db-journal"}) {
    EXPECT_FALSE(Exists(dir_.File(file))) << file << " was created by the refused server";
  }
  // Every new connection still reaches the first server's store: with the
  // port shared, the kernel would spread them over both.
  for (int i = 0; i < 8; ++i) EXPECT_TRUE(ServesModel(address)) << first->Log();
  EXPECT_EQ(first->Stop(), 0) << first->Log();
}

}  // namespace
}  // namespace tinyfed::server
