// Who may call the Admin service (server/admin_auth.h): the token file's
// rules, and every way in and every refusal through a real gRPC server
// (the in-process server, over TLS with certificates made at test time by
// the openssl command line, or plaintext on loopback), each refusal
// checked to change nothing; and tinyfed-server refusing a bad token file
// at start with one line.
#include "admin_auth.h"

#include <sys/stat.h>

#include <chrono>
#include <cstdlib>
#include <fstream>
#include <memory>
#include <string>
#include <vector>

#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>

#include "absl/strings/str_cat.h"
#include "child_process.h"
#include "in_process_server.h"
#include "server_config.h"
#include "server_test_support.h"
#include "tinyfed/v1/admin.grpc.pb.h"

#ifndef TINYFED_SERVER_BINARY
#error "TINYFED_SERVER_BINARY must name the tinyfed-server executable"
#endif

namespace tinyfed::server {
namespace {

using namespace std::chrono_literals;
using testing::ChildProcess;
using testing::TempDir;

const std::string kAliceToken = "alice-token-0123456789abcdefghijklmnop";  // 37 bytes
const std::string kBobToken = "bob-token-0123456789abcdefghijklmnopqrs";

// Writes `text` to `path` with `mode`.
void WriteFile(const std::string& path, const std::string& text, mode_t mode = 0600) {
  std::ofstream(path, std::ios::trunc) << text;
  ASSERT_EQ(chmod(path.c_str(), mode), 0) << path;
}

absl::Status CreateWithTokenFile(const std::string& path) {
  v1::ServerConfig config;
  ApplyDefaults(&config);
  config.mutable_admin()->set_token_file(path);
  return AdminAuthorizer::Create(config).status();
}

TEST(AdminTokenFile, NamesTokensCommentsAndBlankLinesAreRead) {
  TempDir dir;
  WriteFile(dir.File("tokens"), absl::StrCat("# operators\n\nalice ", kAliceToken, "\n  bob\t",
                                             kBobToken, "  \r\n"));
  v1::ServerConfig config;
  ApplyDefaults(&config);
  config.mutable_admin()->set_token_file(dir.File("tokens"));
  absl::StatusOr<std::unique_ptr<AdminAuthorizer>> a = AdminAuthorizer::Create(config);
  ASSERT_TRUE(a.ok()) << a.status();
  EXPECT_EQ((*a)->token_count(), 2u);
  EXPECT_NE((*a)->Describe().find("2 tokens of " + dir.File("tokens")), std::string::npos)
      << (*a)->Describe();
  EXPECT_EQ((*a)->Describe().find(kAliceToken), std::string::npos);
}

TEST(AdminTokenFile, EachBadFileIsRefusedNamingTheLineAndNeverTheToken) {
  TempDir dir;
  const std::string path = dir.File("tokens");
  struct Case {
    std::string text;
    absl::StatusCode code;
    std::string message;
  };
  const std::string short_token = "short-token-of-31-bytes-xxxxxxx";
  ASSERT_EQ(short_token.size(), 31u);
  const std::vector<Case> cases = {
      {absl::StrCat("alice ", kAliceToken, "\nbob\n"), absl::StatusCode::kInvalidArgument,
       "line 2: expected NAME TOKEN, found 1 fields"},
      {absl::StrCat("alice ", kAliceToken, " extra\n"), absl::StatusCode::kInvalidArgument,
       "line 1: expected NAME TOKEN, found 3 fields"},
      {absl::StrCat("# c\nalice ", short_token, "\n"), absl::StatusCode::kInvalidArgument,
       "line 2: the token must be at least 32 bytes"},
      {absl::StrCat(std::string(65, 'n'), " ", kAliceToken, "\n"),
       absl::StatusCode::kInvalidArgument, "line 1: the name must be 1 to 64 bytes"},
      {absl::StrCat("alice ", kAliceToken, "\nalice ", kBobToken, "\n"),
       absl::StatusCode::kInvalidArgument, "line 2: the name is line 1's already"},
      {absl::StrCat("alice ", kAliceToken, "\n\nbob ", kAliceToken, "\n"),
       absl::StatusCode::kInvalidArgument, "line 3: the token is line 1's already"},
      {"# nothing but a comment\n\n", absl::StatusCode::kInvalidArgument, "no token"},
  };
  for (const Case& c : cases) {
    WriteFile(path, c.text);
    const absl::Status s = CreateWithTokenFile(path);
    EXPECT_EQ(s.code(), c.code) << c.text << " -> " << s;
    EXPECT_NE(s.message().find(c.message), std::string::npos) << c.text << " -> " << s;
    EXPECT_NE(s.message().find(path), std::string::npos) << s;
    for (const std::string& secret : {kAliceToken, kBobToken, short_token}) {
      EXPECT_EQ(s.message().find(secret), std::string::npos) << s;
    }
  }
  WriteFile(path, absl::StrCat("alice ", kAliceToken, "\n"), 0640);
  EXPECT_EQ(CreateWithTokenFile(path).code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(CreateWithTokenFile(dir.File("missing")).code(), absl::StatusCode::kNotFound);
}

void RunCommand(const std::string& command) {
  ASSERT_EQ(std::system((command + " >/dev/null 2>&1").c_str()), 0) << command;
}

std::string ReadAll(const std::string& path) {
  std::ifstream in(path);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

// A CA; a server certificate for 127.0.0.1; client certificates it signed
// for the common names "operator" and "gateway".
class AdminOverTlsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    const std::string ec = "-newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes";
    ASSERT_NO_FATAL_FAILURE(RunCommand(absl::StrCat("openssl req -x509 ", ec, " -days 2 -subj /CN=ca",
                                             " -keyout ", File("ca.key"), " -out ", File("ca.pem"))));
    ASSERT_NO_FATAL_FAILURE(Leaf("server", "subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth\n"));
    ASSERT_NO_FATAL_FAILURE(Leaf("operator", "extendedKeyUsage=clientAuth\n"));
    ASSERT_NO_FATAL_FAILURE(Leaf("gateway", "extendedKeyUsage=clientAuth\n"));
    WriteFile(File("tokens"), absl::StrCat("alice ", kAliceToken, "\n"));
  }

  void Leaf(const std::string& name, const std::string& extensions) {
    std::ofstream(File(name + ".ext")) << extensions;
    RunCommand(absl::StrCat("openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -subj ",
                     "/O=tinyfed/CN=", name, " -keyout ", File(name + ".key"), " -out ",
                     File(name + ".csr")));
    RunCommand(absl::StrCat("openssl x509 -req -days 2 -in ", File(name + ".csr"), " -CA ", File("ca.pem"),
                     " -CAkey ", File("ca.key"), " -CAcreateserial -extfile ", File(name + ".ext"),
                     " -out ", File(name + ".pem")));
  }

  std::string File(const std::string& name) const { return dir_.File(name); }

  // A TLS server with the token file; with client certificates required
  // when `certificate_names` is given (empty: none required).
  std::unique_ptr<InProcessServer> Start(bool client_ca,
                                         const std::vector<std::string>& certificate_names) {
    v1::ServerConfig config;
    ApplyDefaults(&config);
    config.mutable_tls()->set_cert_file(File("server.pem"));
    config.mutable_tls()->set_key_file(File("server.key"));
    if (client_ca) config.mutable_tls()->set_client_ca_file(File("ca.pem"));
    config.mutable_admin()->set_token_file(File("tokens"));
    for (const std::string& n : certificate_names) config.mutable_admin()->add_certificate_names(n);
    auto started = InProcessServer::Start(config);
    EXPECT_TRUE(started.ok()) << started.status();
    return started.ok() ? std::move(*started) : nullptr;
  }

  std::unique_ptr<v1::Admin::Stub> Stub(const InProcessServer& server,
                                        const std::string& client = "") {
    grpc::SslCredentialsOptions options;
    options.pem_root_certs = ReadAll(File("ca.pem"));
    if (!client.empty()) {
      options.pem_cert_chain = ReadAll(File(client + ".pem"));
      options.pem_private_key = ReadAll(File(client + ".key"));
    }
    return v1::Admin::NewStub(grpc::CreateChannel(server.address(), grpc::SslCredentials(options)));
  }

  TempDir dir_;
};

// A Pause with `token` (none when empty); its status, and its answer's
// paused_by in *actor.
grpc::Status Pause(v1::Admin::Stub& stub, const std::string& token, std::string* actor) {
  grpc::ClientContext context;
  context.set_deadline(std::chrono::system_clock::now() + 10s);
  if (!token.empty()) context.AddMetadata("authorization", "Bearer " + token);
  v1::ServerStatus status;
  grpc::Status s = stub.Pause(&context, v1::PauseRequest(), &status);
  *actor = status.paused_by();
  return s;
}

// The audit log and pause state, read in process (no credential needed):
// what a refused call must leave alone.
void ExpectUnchanged(InProcessServer& server) {
  absl::StatusOr<std::vector<AuditEntry>> audit = server.store().AuditLog(0, 100);
  ASSERT_TRUE(audit.ok()) << audit.status();
  EXPECT_TRUE(audit->empty());
  EXPECT_FALSE(server.manager().Paused().paused);
}

TEST_F(AdminOverTlsTest, TokensDecideOnATlsServerWithoutClientCertificates) {
  std::unique_ptr<InProcessServer> server = Start(false, {});
  ASSERT_NE(server, nullptr);
  auto stub = Stub(*server);
  std::string actor;
  grpc::Status s = Pause(*stub, "", &actor);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::UNAUTHENTICATED) << s.error_message();
  EXPECT_NE(s.error_message().find("Bearer TOKEN"), std::string::npos) << s.error_message();
  s = Pause(*stub, kBobToken, &actor);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::PERMISSION_DENIED) << s.error_message();
  ASSERT_NO_FATAL_FAILURE(ExpectUnchanged(*server));

  s = Pause(*stub, kAliceToken, &actor);
  ASSERT_TRUE(s.ok()) << s.error_message();
  EXPECT_EQ(actor, "token:alice");
  absl::StatusOr<std::vector<AuditEntry>> audit = server->store().AuditLog(0, 100);
  ASSERT_TRUE(audit.ok());
  ASSERT_EQ(audit->size(), 1u);
  EXPECT_EQ((*audit)[0].actor, "token:alice");
}

TEST_F(AdminOverTlsTest, ClientCertificatesAreAdminsWhenNamed) {
  std::unique_ptr<InProcessServer> server = Start(true, {"operator"});
  ASSERT_NE(server, nullptr);
  std::string actor;
  grpc::Status s = Pause(*Stub(*server, "gateway"), "", &actor);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::PERMISSION_DENIED) << s.error_message();
  // A certificate that would pass does not save a wrong token.
  s = Pause(*Stub(*server, "operator"), kBobToken, &actor);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::PERMISSION_DENIED) << s.error_message();
  ASSERT_NO_FATAL_FAILURE(ExpectUnchanged(*server));

  s = Pause(*Stub(*server, "operator"), "", &actor);
  ASSERT_TRUE(s.ok()) << s.error_message();
  // The subject as gRPC reports it (RFC 2253 order: most specific first).
  EXPECT_EQ(actor, "cert:CN=operator,O=tinyfed");
}

TEST_F(AdminOverTlsTest, AnyVerifiedCertificateWhenNoNamesAreListed) {
  std::unique_ptr<InProcessServer> server = Start(true, {});
  ASSERT_NE(server, nullptr);
  std::string actor;
  const grpc::Status s = Pause(*Stub(*server, "gateway"), "", &actor);
  ASSERT_TRUE(s.ok()) << s.error_message();
  EXPECT_EQ(actor, "cert:CN=gateway,O=tinyfed");
}

TEST(AdminOnLoopback, PlaintextLoopbackCallersAreAdminsButAWrongTokenIsNot) {
  TempDir dir;
  WriteFile(dir.File("tokens"), absl::StrCat("alice ", kAliceToken, "\n"));
  v1::ServerConfig config;
  ApplyDefaults(&config);
  config.mutable_admin()->set_token_file(dir.File("tokens"));
  auto started = InProcessServer::Start(config);
  ASSERT_TRUE(started.ok()) << started.status();
  InProcessServer& server = **started;
  auto stub = v1::Admin::NewStub(
      grpc::CreateChannel(server.address(), grpc::InsecureChannelCredentials()));
  std::string actor;
  grpc::Status s = Pause(*stub, kBobToken, &actor);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::PERMISSION_DENIED) << s.error_message();
  ASSERT_NO_FATAL_FAILURE(ExpectUnchanged(server));
  s = Pause(*stub, "", &actor);
  ASSERT_TRUE(s.ok()) << s.error_message();
  EXPECT_EQ(actor, "loopback:127.0.0.1");
}

TEST(AdminServerBinary, BadTokenFileIsRefusedAtStartWithOneLineNamingTheLine) {
  TempDir dir;
  WriteFile(dir.File("tokens"), absl::StrCat("# ops\nalice ", kAliceToken, "\nbob short\n"));
  ChildProcess server({TINYFED_SERVER_BINARY, "--listen",
                       absl::StrCat("127.0.0.1:", testing::FreeLoopbackPort()), "--db",
                       dir.File("store.db"), "--admin_tokens", dir.File("tokens")},
                      dir.File("server.log"));
  const std::optional<int> status = server.WaitExit(20s);
  ASSERT_TRUE(status.has_value()) << server.Log();
  EXPECT_EQ(*status, 2);
  EXPECT_EQ(server.Log(),
            absl::StrCat("tinyfed-server: admin token file ", dir.File("tokens"),
                         " line 3: the token must be at least 32 bytes 0x21-0x7E, found 5 bytes\n"));
  // Refused before the store was created.
  struct stat st {};
  EXPECT_NE(stat(dir.File("store.db").c_str(), &st), 0);
}

}  // namespace
}  // namespace tinyfed::server
