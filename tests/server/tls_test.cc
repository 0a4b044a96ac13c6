// TLS on the gRPC port (server/tls_credentials.h, server/grpc_port.h) and
// on the agent's channel: certificates are made at test time with the
// openssl command line (a CA, a server certificate for 127.0.0.1 and
// localhost, client certificates from that CA and from another one).
// In-process servers show what a client with and without the right
// credentials gets; the binaries show a round completed over TLS and the
// refusal to serve plaintext to the network.
#include <chrono>
#include <cstdlib>
#include <fstream>
#include <memory>
#include <regex>
#include <string>

#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>

#include "absl/strings/str_cat.h"
#include "child_process.h"
#include "in_process_server.h"
#include "server_config.h"
#include "server_test_support.h"
#include "tinyfed/v1/coordinator.grpc.pb.h"
#include "tinyfed_common/fleet_keys.h"
#include "tls_credentials.h"

#ifndef TINYFED_SERVER_BINARY
#error "TINYFED_SERVER_BINARY must name the tinyfed-server executable"
#endif
#ifndef TINYFED_AGENT_BINARY
#error "TINYFED_AGENT_BINARY must name the tinyfed-agent executable"
#endif

namespace tinyfed::server {
namespace {

using namespace std::chrono_literals;
using testing::ChildProcess;
using testing::TempDir;

void Run(const std::string& command) {
  ASSERT_EQ(std::system((command + " >/dev/null 2>&1").c_str()), 0) << command;
}

// A CA, a server certificate it signed for 127.0.0.1 and localhost, a client
// certificate it signed, and a client certificate signed by another CA.
class Certificates {
 public:
  explicit Certificates(const TempDir& dir) : dir_(dir) {}
  void Make() {
    const std::string ec = "-newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes";
    for (const char* ca : {"ca", "other_ca"}) {
      Run(absl::StrCat("openssl req -x509 ", ec, " -days 2 -subj /CN=", ca, " -keyout ",
                       File(ca, "key"), " -out ", File(ca, "pem")));
    }
    Leaf("server", "ca", "subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n");
    Leaf("client", "ca", "extendedKeyUsage=clientAuth\n");
    Leaf("stranger", "other_ca", "extendedKeyUsage=clientAuth\n");
  }
  std::string File(const std::string& name, const std::string& ext) const {
    return dir_.File(name + "." + ext);
  }

 private:
  void Leaf(const std::string& name, const std::string& ca, const std::string& extensions) {
    std::ofstream(File(name, "ext")) << extensions;
    Run(absl::StrCat("openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -subj /CN=",
                     name, " -keyout ", File(name, "key"), " -out ", File(name, "csr")));
    Run(absl::StrCat("openssl x509 -req -days 2 -in ", File(name, "csr"), " -CA ", File(ca, "pem"),
                     " -CAkey ", File(ca, "key"), " -CAcreateserial -extfile ", File(name, "ext"),
                     " -out ", File(name, "pem")));
  }
  const TempDir& dir_;
};

std::string ReadAll(const std::string& path) {
  std::ifstream in(path);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

// A check-in, signed under the server's fleet key, and its status over
// `credentials`; a handshake that fails shows as UNAVAILABLE once the 5 s
// deadline's retries are exhausted.
grpc::Status CheckIn(const InProcessServer& server,
                     std::shared_ptr<grpc::ChannelCredentials> credentials) {
  const std::string& address = server.address();
  auto stub = v1::Coordinator::NewStub(grpc::CreateChannel(address, credentials));
  grpc::ClientContext context;
  context.set_deadline(std::chrono::system_clock::now() + 5s);
  v1::CheckInRequest request;
  request.set_device_id("tls-device");
  request.mutable_capabilities()->set_max_features(64);
  request.mutable_capabilities()->set_max_classes(10);
  request.mutable_capabilities()->set_max_batch_size(8);
  request.mutable_capabilities()->set_sample_count(10);
  v1::CheckInResponse response;
  grpc::Status status =
      stub->CheckIn(&context, testing::Sign(server.fleet_key(), request), &response);
  if (status.ok() && !response.has_task()) {
    return grpc::Status(grpc::StatusCode::INTERNAL, "answered without a task");
  }
  return status;
}

class TlsTest : public ::testing::Test {
 protected:
  void SetUp() override { ASSERT_NO_FATAL_FAILURE(certs_.Make()); }

  std::unique_ptr<InProcessServer> Start(bool require_client_certificates) {
    v1::ServerConfig config;
    ApplyDefaults(&config);
    config.mutable_tls()->set_cert_file(certs_.File("server", "pem"));
    config.mutable_tls()->set_key_file(certs_.File("server", "key"));
    if (require_client_certificates) {
      config.mutable_tls()->set_client_ca_file(certs_.File("ca", "pem"));
    }
    auto started = InProcessServer::Start(config);
    EXPECT_TRUE(started.ok()) << started.status();
    return started.ok() ? std::move(*started) : nullptr;
  }

  std::shared_ptr<grpc::ChannelCredentials> Tls(const std::string& client = "") {
    grpc::SslCredentialsOptions options;
    options.pem_root_certs = ReadAll(certs_.File("ca", "pem"));
    if (!client.empty()) {
      options.pem_cert_chain = ReadAll(certs_.File(client, "pem"));
      options.pem_private_key = ReadAll(certs_.File(client, "key"));
    }
    return grpc::SslCredentials(options);
  }

  TempDir dir_;
  Certificates certs_{dir_};
};

TEST_F(TlsTest, ClientTrustingTheCaIsServedAndPlaintextClientIsNot) {
  std::unique_ptr<InProcessServer> server = Start(false);
  ASSERT_NE(server, nullptr);
  const grpc::Status tls = CheckIn(*server, Tls());
  EXPECT_TRUE(tls.ok()) << tls.error_code() << " " << tls.error_message();
  const grpc::Status plain = CheckIn(*server, grpc::InsecureChannelCredentials());
  EXPECT_EQ(plain.error_code(), grpc::StatusCode::UNAVAILABLE) << plain.error_message();
}

TEST_F(TlsTest, ClientThatDoesNotTrustTheServersCaIsRefused) {
  std::unique_ptr<InProcessServer> server = Start(false);
  ASSERT_NE(server, nullptr);
  grpc::SslCredentialsOptions options;
  options.pem_root_certs = ReadAll(certs_.File("other_ca", "pem"));
  const grpc::Status s = CheckIn(*server, grpc::SslCredentials(options));
  EXPECT_EQ(s.error_code(), grpc::StatusCode::UNAVAILABLE) << s.error_message();
}

TEST_F(TlsTest, ClientCaRequiresACertificateFromThatCa) {
  std::unique_ptr<InProcessServer> server = Start(true);
  ASSERT_NE(server, nullptr);
  const grpc::Status with = CheckIn(*server, Tls("client"));
  EXPECT_TRUE(with.ok()) << with.error_code() << " " << with.error_message();
  const grpc::Status without = CheckIn(*server, Tls());
  EXPECT_EQ(without.error_code(), grpc::StatusCode::UNAVAILABLE) << without.error_message();
  const grpc::Status stranger = CheckIn(*server, Tls("stranger"));
  EXPECT_EQ(stranger.error_code(), grpc::StatusCode::UNAVAILABLE) << stranger.error_message();
}

TEST_F(TlsTest, BadPemFilesAreRefusedWithTheFlagAndFile) {
  v1::TlsConfig tls;
  tls.set_cert_file(dir_.File("missing.pem"));
  tls.set_key_file(certs_.File("server", "key"));
  absl::Status s = MakeServerCredentials(tls).status();
  EXPECT_EQ(s.code(), absl::StatusCode::kNotFound);
  EXPECT_NE(s.message().find("--tls_cert " + dir_.File("missing.pem")), std::string::npos) << s;

  tls.set_cert_file(certs_.File("server", "key"));  // a key where a certificate belongs
  s = MakeServerCredentials(tls).status();
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(s.message().find("no PEM certificate"), std::string::npos) << s;

  tls.set_cert_file(certs_.File("server", "pem"));
  tls.set_key_file(certs_.File("server", "pem"));  // a certificate where the key belongs
  s = MakeServerCredentials(tls).status();
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(s.message().find("no unencrypted PEM private key"), std::string::npos) << s;

  tls.set_key_file(certs_.File("client", "key"));  // another certificate's key
  s = MakeServerCredentials(tls).status();
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(s.message().find("not the key of --tls_cert"), std::string::npos) << s;
}

TEST(LoopbackAddress, OnlyLoopbackHostsCount) {
  for (const char* a : {"127.0.0.1:50051", "127.1.2.3:1", "localhost:50051", "[::1]:50051",
                        "[::ffff:127.0.0.1]:5"}) {
    EXPECT_TRUE(IsLoopbackAddress(a)) << a;
  }
  for (const char* a : {"0.0.0.0:50051", "[::]:50051", "10.0.0.1:50051", "example.com:50051",
                        "128.0.0.1:1", "localhost.example.com:1", "dns:///localhost:1", "127.0.0.1"}) {
    EXPECT_FALSE(IsLoopbackAddress(a)) << a;
  }
}

// A small CSV the agent can train on: 4 features, 3 well separated classes.
void WriteCsv(const std::string& path) {
  std::ofstream out(path);
  for (int i = 0; i < 300; ++i) {
    const int label = i % 3;
    for (int f = 0; f < 4; ++f) out << (f == label ? 3.0 : 0.0) + 0.01 * ((i * 7 + f * 13) % 50) << ",";
    out << label << "\n";
  }
}

TEST_F(TlsTest, AgentCompletesARoundWithTheServerBinaryOverTls) {
  const int port = testing::FreeLoopbackPort();
  // The agent's devices derive their keys from the server's fleet key.
  const std::string fleet_key = dir_.File("fleet.key");
  ASSERT_TRUE(CreateFleetKeyFile(fleet_key).ok());
  std::ofstream(dir_.File("server.textproto"))
      << "head { feature_count: 4 class_count: 3 }\n"
         "policy { target_updates: 5 min_updates: 5 }\n";
  ChildProcess server({TINYFED_SERVER_BINARY, "--config=" + dir_.File("server.textproto"),
                       "--db=" + dir_.File("store.db"), absl::StrCat("--listen=127.0.0.1:", port),
                       "--tls_cert=" + certs_.File("server", "pem"),
                       "--tls_key=" + certs_.File("server", "key"), "--fleet_key=" + fleet_key},
                      dir_.File("server.log"));
  ASSERT_TRUE(server.WaitForLog("listening", 20s)) << server.Log();
  EXPECT_NE(server.Log().find("TLS"), std::string::npos) << server.Log();
  WriteCsv(dir_.File("data.csv"));
  const std::string address = absl::StrCat("127.0.0.1:", port);
  auto agent = [&](const std::string& name, std::vector<std::string> extra) {
    std::vector<std::string> argv = {TINYFED_AGENT_BINARY, "simulate", "--server=" + address,
                                     "--dataset=" + dir_.File("data.csv"), "--devices=10",
                                     "--rounds=1", "--progress=false", "--fleet_key=" + fleet_key};
    argv.insert(argv.end(), extra.begin(), extra.end());
    return std::make_unique<ChildProcess>(argv, dir_.File(name));
  };

  auto tls = agent("tls.log", {"--tls_ca=" + certs_.File("ca", "pem")});
  const std::optional<int> tls_exit = tls->WaitExit(120s);
  ASSERT_EQ(tls_exit, 0) << tls->Log();
  // Round 1 committed version 2: the row's first two numbers.
  EXPECT_TRUE(std::regex_search(tls->Log(), std::regex(R"(\n +1 +2 +[0-9]+ +[01]\.[0-9]+)")))
      << tls->Log();
  EXPECT_EQ(tls->Log().find("not committed"), std::string::npos) << tls->Log();

  auto plain = agent("plain.log", {});
  const std::optional<int> plain_exit = plain->WaitExit(60s);
  ASSERT_TRUE(plain_exit.has_value()) << plain->Log();
  EXPECT_NE(*plain_exit, 0) << plain->Log();
  EXPECT_NE(plain->Log().find("cannot reach the server"), std::string::npos) << plain->Log();
}

TEST(TlsCli, ServerRefusesPlaintextOnANetworkAddressAndNamesTheFlag) {
  TempDir dir;
  const std::string listen = absl::StrCat("--listen=0.0.0.0:", testing::FreeLoopbackPort());
  ChildProcess refused({TINYFED_SERVER_BINARY, listen, "--db=" + dir.File("a.db")},
                       dir.File("refused.log"));
  const std::optional<int> code = refused.WaitExit(20s);
  ASSERT_TRUE(code.has_value()) << "the server started: " << refused.Log();
  EXPECT_EQ(*code, 2);
  EXPECT_TRUE(std::regex_match(refused.Log(),
                               std::regex("tinyfed-server: listen 0\\.0\\.0\\.0:[0-9]+ is not a "
                                          "loopback address: serve TLS with --tls_cert [^\n]*"
                                          "--insecure_plaintext[^\n]*\n")))
      << refused.Log();

  ChildProcess allowed({TINYFED_SERVER_BINARY, listen, "--db=" + dir.File("b.db"),
                        "--insecure_plaintext"},
                       dir.File("allowed.log"));
  ASSERT_TRUE(allowed.WaitForLog("listening", 20s)) << allowed.Log();
  EXPECT_TRUE(std::regex_search(allowed.Log(),
                                std::regex("\\[warning\\] --insecure_plaintext: serving plaintext")))
      << allowed.Log();
  EXPECT_EQ(allowed.Stop(), 0);
}

TEST(TlsCli, AgentRefusesPlaintextToANetworkAddress) {
  TempDir dir;
  ChildProcess agent({TINYFED_AGENT_BINARY, "simulate", "--server=192.0.2.1:50051", "--rounds=1"},
                     dir.File("agent.log"));
  const std::optional<int> code = agent.WaitExit(20s);
  ASSERT_TRUE(code.has_value()) << agent.Log();
  EXPECT_EQ(*code, 2);
  EXPECT_EQ(agent.Log(),
            "tinyfed-agent: --server 192.0.2.1:50051 is not a loopback address: give --tls_ca FILE "
            "(the CA of the server's certificate); plaintext goes to loopback addresses only\n");
}

}  // namespace
}  // namespace tinyfed::server
