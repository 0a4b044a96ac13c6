// tinyfed-server as an operator first runs it: the example configuration
// in deploy/ on a store made with the defaults, and SIGHUP.
#include <signal.h>

#include <chrono>
#include <memory>
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

bool ServesModel(const std::string& address) {
  auto stub = v1::Coordinator::NewStub(
      grpc::CreateChannel(address, grpc::InsecureChannelCredentials()));
  grpc::ClientContext context;
  context.set_deadline(std::chrono::system_clock::now() + 10s);
  v1::ModelVersion model;
  return stub->GetModel(&context, v1::GetModelRequest(), &model).ok() && model.version() >= 1;
}

// The store records the head it was made with and refuses a config that
// describes another; the example must be the defaults' head.
TEST(ServerBinary, TheDeployExampleStartsOnAStoreMadeWithTheDefaults) {
  TempDir dir;
  const std::string db = "--db=" + dir.File("s.db");
  {
    ChildProcess defaults({TINYFED_SERVER_BINARY, db,
                           absl::StrCat("--listen=127.0.0.1:", testing::FreeLoopbackPort())},
                          dir.File("defaults.log"));
    ASSERT_TRUE(defaults.WaitForLog("listening", 20s)) << defaults.Log();
    ASSERT_EQ(defaults.Stop(), 0) << defaults.Log();
  }
  const std::string address = absl::StrCat("127.0.0.1:", testing::FreeLoopbackPort());
  ChildProcess example({TINYFED_SERVER_BINARY, "--config=" TINYFED_DEPLOY_EXAMPLE, db,
                        "--listen=" + address},
                       dir.File("example.log"));
  ASSERT_TRUE(example.WaitForLog("listening", 20s)) << example.Log();
  EXPECT_TRUE(ServesModel(address)) << example.Log();
  EXPECT_EQ(example.Stop(), 0) << example.Log();
}

TEST(ServerBinary, SighupIsLoggedAndIgnored) {
  TempDir dir;
  const std::string address = absl::StrCat("127.0.0.1:", testing::FreeLoopbackPort());
  ChildProcess server({TINYFED_SERVER_BINARY, "--db=" + dir.File("s.db"), "--listen=" + address},
                      dir.File("server.log"));
  ASSERT_TRUE(server.WaitForLog("listening", 20s)) << server.Log();
  ASSERT_EQ(kill(server.pid(), SIGHUP), 0);
  ASSERT_TRUE(server.WaitForLog("SIGHUP ignored", 20s)) << server.Log();
  EXPECT_EQ(server.WaitExit(200ms), std::nullopt) << "the server ended: " << server.Log();
  EXPECT_TRUE(ServesModel(address)) << server.Log();
  EXPECT_EQ(server.Stop(), 0) << server.Log();
}

}  // namespace
}  // namespace tinyfed::server
