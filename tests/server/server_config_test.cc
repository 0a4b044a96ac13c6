// Configuration: text-format parsing with precise errors, documented
// defaults, range checks, and the initial model.
#include "server_config.h"

#include <gtest/gtest.h>

#include <fstream>
#include <tuple>
#include <utility>

#include "head.h"
#include "server_test_support.h"

namespace tinyfed::server {
namespace {

v1::ServerConfig Defaults() {
  v1::ServerConfig c;
  ApplyDefaults(&c);
  return c;
}

TEST(ServerConfig, DefaultsAreValidAndDocumented) {
  const v1::ServerConfig c = Defaults();
  EXPECT_TRUE(ValidateServerConfig(c).ok());
  EXPECT_EQ(c.listen(), "127.0.0.1:50051");
  EXPECT_EQ(c.db(), "tinyfed.db");
  EXPECT_EQ(c.head().feature_count(), 64u);
  EXPECT_EQ(c.head().class_count(), 10u);
  EXPECT_EQ(c.policy().target_updates(), 10u);
  EXPECT_EQ(c.policy().min_updates(), 5u);
  EXPECT_DOUBLE_EQ(c.policy().over_selection(), 1.3);
}

TEST(ServerConfig, ParsesTextFormat) {
  auto c = ParseServerConfig(
      "listen: \"0.0.0.0:6000\"\n"
      "head { feature_count: 32 class_count: 5 }\n"
      "policy { target_updates: 100 min_updates: 60 }\n");
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->listen(), "0.0.0.0:6000");
  EXPECT_EQ(c->head().feature_count(), 32u);
  EXPECT_EQ(c->policy().min_updates(), 60u);
}

TEST(ServerConfig, SyntaxErrorsNameTheLine) {
  auto c = ParseServerConfig("head {\n  feture_count: 3\n}\n");
  ASSERT_EQ(c.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(c.status().message().find("line 2"), std::string::npos) << c.status();
  EXPECT_NE(c.status().message().find("feture_count"), std::string::npos) << c.status();
}

TEST(ServerConfig, MissingFileIsNotFound) {
  EXPECT_EQ(LoadServerConfigFile("/nonexistent/tinyfed.textproto").status().code(),
            absl::StatusCode::kNotFound);
}

TEST(ServerConfig, OutOfRangeOptionsAreNamed) {
  auto expect_bad = [](auto mutate, const std::string& field) {
    v1::ServerConfig c = Defaults();
    mutate(c);
    const absl::Status s = ValidateServerConfig(c);
    EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << field;
    EXPECT_NE(s.message().find(field), std::string::npos) << s;
  };
  expect_bad([](auto& c) { c.mutable_head()->set_class_count(33); }, "head.class_count");
  expect_bad([](auto& c) { c.mutable_head()->set_feature_count(500); }, "4096");
  expect_bad([](auto& c) { c.mutable_head()->set_feature_scale(-1); }, "head.feature_scale");
  expect_bad([](auto& c) { c.mutable_head()->set_feature_zero_point(200); }, "head.feature_zero_point");
  expect_bad([](auto& c) { c.mutable_head()->set_weight_frac_bits(15); }, "head.weight_frac_bits");
  expect_bad([](auto& c) { c.mutable_plan()->set_epochs(65); }, "plan.epochs");
  expect_bad([](auto& c) { c.mutable_plan()->set_batch_size(65); }, "plan.batch_size");
  expect_bad([](auto& c) { c.mutable_plan()->set_learning_rate(17); }, "plan.learning_rate");
  expect_bad([](auto& c) { c.mutable_policy()->set_min_updates(11); }, "policy.min_updates");
  expect_bad([](auto& c) { c.mutable_policy()->set_over_selection(0.5); }, "policy.over_selection");
  expect_bad([](auto& c) { c.mutable_policy()->set_round_deadline_ms(5); }, "policy.round_deadline_ms");
  expect_bad([](auto& c) { c.mutable_policy()->set_server_learning_rate(-1); },
             "policy.server_learning_rate");
  expect_bad([](auto& c) { c.mutable_policy()->set_target_updates(5'000'000); },
             "policy.target_updates");
  expect_bad([](auto& c) { c.set_listen("nohostport"); }, "listen");
}

// Each option that needs a positive value, written explicitly as 0 in a
// config file: refused at start naming the option, never replaced by its
// default as a field left out is.
TEST(ServerConfig, AnExplicitZeroIsRefusedNotDefaulted) {
  const std::pair<const char*, const char*> cases[] = {
      {"head { feature_count: 0 }", "head.feature_count"},
      {"head { class_count: 0 }", "head.class_count"},
      {"head { feature_scale: 0 }", "head.feature_scale"},
      {"head { weight_frac_bits: 0 }", "head.weight_frac_bits"},
      {"plan { epochs: 0 }", "plan.epochs"},
      {"plan { batch_size: 0 }", "plan.batch_size"},
      {"plan { learning_rate: 0 }", "plan.learning_rate"},
      {"policy { target_updates: 0 }", "policy.target_updates"},
      {"policy { min_updates: 0 }", "policy.min_updates"},
      {"policy { over_selection: 0 }", "policy.over_selection"},
      {"policy { round_deadline_ms: 0 }", "policy.round_deadline_ms"},
      {"policy { server_learning_rate: 0 }", "policy.server_learning_rate"},
      {"policy { retry_after_ms: 0 }", "policy.retry_after_ms"},
      {"limits { max_concurrent_streams: 0 }", "limits.max_concurrent_streams"},
      {"limits { max_connection_idle_ms: 0 }", "limits.max_connection_idle_ms"},
      {"checkin_limits { max_tracked: 0 }", "checkin_limits.max_tracked"},
  };
  for (const auto& [text, option] : cases) {
    absl::StatusOr<v1::ServerConfig> c = ParseServerConfig(text);
    ASSERT_TRUE(c.ok()) << text << ": " << c.status();
    ApplyDefaults(&*c);
    const absl::Status s = ValidateServerConfig(*c);
    EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << text;
    EXPECT_NE(s.message().find(option), std::string::npos) << text << ": " << s;
  }
  // Where 0 means something (no slack for newer clients' fields), an
  // explicit 0 is kept.
  absl::StatusOr<v1::ServerConfig> c = ParseServerConfig("limits { request_slack_bytes: 0 }");
  ASSERT_TRUE(c.ok()) << c.status();
  ApplyDefaults(&*c);
  EXPECT_TRUE(ValidateServerConfig(*c).ok());
  EXPECT_EQ(c->limits().request_slack_bytes(), 0u);
}

// gRPC reads a port modulo 2^16: 99999 would serve on 34463.
TEST(ServerConfig, ListenPortsOutsideTheTcpRangeAreRefused) {
  for (const char* listen : {"127.0.0.1:99999", "127.0.0.1:65536", "127.0.0.1:", "127.0.0.1:-1",
                             "127.0.0.1:80a", "127.0.0.1:123456", "nohostport"}) {
    v1::ServerConfig c = Defaults();
    c.set_listen(listen);
    const absl::Status s = ValidateServerConfig(c);
    EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << listen;
    EXPECT_NE(s.message().find(listen), std::string::npos) << s;
  }
  for (const auto& [listen, host, port] :
       {std::tuple<const char*, const char*, int>{"127.0.0.1:65535", "127.0.0.1", 65535},
        {"[::1]:50051", "::1", 50051},
        {"localhost:0", "localhost", 0}}) {
    absl::StatusOr<ListenAddress> a = ParseListenAddress(listen);
    ASSERT_TRUE(a.ok()) << listen << ": " << a.status();
    EXPECT_EQ(a->host, host);
    EXPECT_EQ(a->port, port);
  }
}

// The metrics port is checked as the gRPC port is, and named in the error.
TEST(ServerConfig, MetricsListenIsCheckedLikeListenOnAnotherPort) {
  for (const char* bad : {"127.0.0.1:99999", "127.0.0.1:", "nohostport"}) {
    v1::ServerConfig c = Defaults();
    c.set_metrics_listen(bad);
    const absl::Status s = ValidateServerConfig(c);
    EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << bad;
    EXPECT_EQ(s.message().rfind("metrics_listen must be HOST:PORT", 0), 0u) << s;
    EXPECT_NE(s.message().find(bad), std::string::npos) << s;
  }
  v1::ServerConfig c = Defaults();
  c.set_listen("127.0.0.1:50051");
  c.set_metrics_listen("127.0.0.1:50051");
  absl::Status s = ValidateServerConfig(c);
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(s.message().find("different ports"), std::string::npos) << s;
  c.set_metrics_listen("127.0.0.1:9090");
  EXPECT_TRUE(ValidateServerConfig(c).ok());
  c.set_listen("127.0.0.1:0");  // any free port: never the same one
  c.set_metrics_listen("127.0.0.1:0");
  EXPECT_TRUE(ValidateServerConfig(c).ok());
}

// Certificate names mean something only for certificates the server
// verified; each is an X.509 common name (at most 64 bytes).
TEST(ServerConfig, AdminCertificateNamesNeedClientCertificates) {
  v1::ServerConfig c = Defaults();
  c.mutable_admin()->add_certificate_names("operator");
  absl::Status s = ValidateServerConfig(c);
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(s.message().find("admin.certificate_names needs tls.client_ca_file"), std::string::npos)
      << s;
  c.mutable_tls()->set_cert_file("server.pem");
  c.mutable_tls()->set_key_file("server.key");
  c.mutable_tls()->set_client_ca_file("ca.pem");
  EXPECT_TRUE(ValidateServerConfig(c).ok());
  for (const std::string& bad : {std::string(), std::string(65, 'n'), std::string("two\nlines")}) {
    v1::ServerConfig d = c;
    d.mutable_admin()->add_certificate_names(bad);
    s = ValidateServerConfig(d);
    EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << bad;
    EXPECT_NE(s.message().find("admin.certificate_names[1]"), std::string::npos) << s;
    EXPECT_EQ(s.message().find('\n'), std::string::npos) << "one line: " << s;
  }
}

// deploy/server.textproto is what an operator starts from: it must describe
// the very head a store made with the defaults holds, to the bit of its
// fixed-point feature scale (the store compares the serialized spec).
TEST(ServerConfig, TheDeployExampleDescribesTheDefaultHead) {
  absl::StatusOr<v1::ServerConfig> example = LoadServerConfigFile(TINYFED_DEPLOY_EXAMPLE);
  ASSERT_TRUE(example.ok()) << example.status();
  ApplyDefaults(&*example);
  ASSERT_TRUE(ValidateServerConfig(*example).ok());
  EXPECT_EQ(HeadSpecFromConfig(*example).SerializeAsString(),
            HeadSpecFromConfig(Defaults()).SerializeAsString())
      << HeadSpecFromConfig(*example).ShortDebugString() << " vs "
      << HeadSpecFromConfig(Defaults()).ShortDebugString();
}

TEST(ServerConfig, InitialModelIsZerosOrTheGivenFile) {
  v1::ServerConfig c = Defaults();
  auto zeros = InitialModel(c, 1234);
  ASSERT_TRUE(zeros.ok());
  EXPECT_EQ(zeros->version(), 1u);
  EXPECT_EQ(zeros->parent_version(), 0u);
  EXPECT_EQ(zeros->created_unix_ms(), 1234);
  EXPECT_EQ(*LoadHead(*zeros), Head::Zeros(64, 10));

  testing::TempDir dir;
  Head head = Head::Zeros(64, 10);
  head.weights[5] = 1234;
  head.bias[2] = -77;
  v1::ModelVersion file_model = *zeros;
  file_model.set_version(42);  // renumbered as version 1 of this store
  StoreHead(head, &file_model);
  {
    std::ofstream out(dir.File("model.pb"), std::ios::binary);
    out << file_model.SerializeAsString();
  }
  c.set_initial_model(dir.File("model.pb"));
  auto loaded = InitialModel(c, 1);
  ASSERT_TRUE(loaded.ok()) << loaded.status();
  EXPECT_EQ(loaded->version(), 1u);
  EXPECT_EQ(*LoadHead(*loaded), head);

  // A model of another shape, a corrupt one, or not a model at all.
  v1::ServerConfig other = c;
  other.mutable_head()->set_class_count(9);
  EXPECT_EQ(InitialModel(other, 1).status().code(), absl::StatusCode::kInvalidArgument);
  file_model.set_checksum(file_model.checksum() ^ 1);
  {
    std::ofstream out(dir.File("model.pb"), std::ios::binary | std::ios::trunc);
    out << file_model.SerializeAsString();
  }
  EXPECT_EQ(InitialModel(c, 1).status().code(), absl::StatusCode::kInvalidArgument);
  {
    std::ofstream out(dir.File("model.pb"), std::ios::binary | std::ios::trunc);
    out << "\xff\xff\xff not a protobuf";
  }
  EXPECT_EQ(InitialModel(c, 1).status().code(), absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace tinyfed::server
