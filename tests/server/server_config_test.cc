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

// The aggregation and privacy options' documented defaults
// (server_config.proto), and the integers the strategies are given. Each
// expected integer is worked out here by hand from the proto's units:
// Q16.16 is x 65536, real units to 2^-16 master steps are x 2^(12 + 16)
// for the default 12 fraction bits, millionths are x 10^6, each to the
// nearest.
TEST(ServerConfig, AggregationAndPrivacyDefaults) {
  const v1::ServerConfig c = Defaults();
  ASSERT_TRUE(ValidateServerConfig(c).ok()) << ValidateServerConfig(c);
  EXPECT_EQ(c.aggregation().strategy(), "fedavg");
  // Defaulted for the trimmed mean only (so that one written for another
  // strategy is an error, not a silent no-op).
  EXPECT_FALSE(c.aggregation().has_trim_fraction());
  EXPECT_DOUBLE_EQ(c.aggregation().momentum(), 0.9);
  EXPECT_DOUBLE_EQ(c.aggregation().second_moment_decay(), 0.99);
  EXPECT_DOUBLE_EQ(c.aggregation().adam_learning_rate(), 0.01);
  EXPECT_DOUBLE_EQ(c.aggregation().adam_tau(), 0.001);
  EXPECT_EQ(c.privacy().noise_multiplier(), 0);
  EXPECT_DOUBLE_EQ(c.privacy().delta(), 1e-5);
  EXPECT_EQ(c.privacy().epsilon_budget(), 0);

  const StrategyParams p = StrategyParamsFromConfig(c);
  EXPECT_EQ(p.kind, StrategyKind::kFedAvg);
  EXPECT_EQ(p.trim_fraction_ppm, 0u);
  EXPECT_EQ(p.server_lr_q16, 65536u);              // 1.0
  EXPECT_EQ(p.momentum_q16, 58982u);               // 0.9 x 65536 = 58982.4
  EXPECT_EQ(p.second_moment_decay_q16, 64881u);    // 0.99 x 65536 = 64880.64
  EXPECT_EQ(p.adam_step, 2684355u);                // 0.01 x 2^28 = 2684354.56
  EXPECT_EQ(p.adam_tau, 268435u);                  // 0.001 x 2^28 = 268435.456
  EXPECT_EQ(p.bounds.weight_median_multiple_q16, 3u * 65536);
  EXPECT_EQ(p.bounds.norm_bound, 0u);
  EXPECT_EQ(p.bounds.norm_median_multiple_q16, 2u * 65536);
  EXPECT_FALSE(p.uniform_weights);
  EXPECT_FALSE(PrivacyParamsFromConfig(c).enabled());
  EXPECT_EQ(PrivacyParamsFromConfig(c).sigma, 0u);

  absl::StatusOr<v1::ServerConfig> trimmed = ParseServerConfig(
      "aggregation { strategy: \"trimmed-mean\" }\n"
      "policy { server_learning_rate: 0.5 }\n"
      "head { weight_frac_bits: 10 }\n");
  ASSERT_TRUE(trimmed.ok()) << trimmed.status();
  ApplyDefaults(&*trimmed);
  ASSERT_TRUE(ValidateServerConfig(*trimmed).ok()) << ValidateServerConfig(*trimmed);
  EXPECT_DOUBLE_EQ(trimmed->aggregation().trim_fraction(), 0.2);
  const StrategyParams t = StrategyParamsFromConfig(*trimmed);
  EXPECT_EQ(t.kind, StrategyKind::kTrimmedMean);
  EXPECT_EQ(t.trim_fraction_ppm, 200000u);
  EXPECT_EQ(t.server_lr_q16, 32768u);
  EXPECT_EQ(t.adam_step, 671089u);  // 0.01 x 2^26 = 671088.64: the head's 10 fraction bits
  EXPECT_EQ(t.adam_tau, 67109u);    // 0.001 x 2^26 = 67108.864
}

// Privacy on: noise_multiplier to Q16.16, the clip bound to master steps,
// sigma their product in 2^-16 master steps, and every update weighs 1.
TEST(ServerConfig, PrivacyParamsAreTheMechanismsIntegers) {
  absl::StatusOr<v1::ServerConfig> c = ParseServerConfig(
      "aggregation { strategy: \"fedadam\" }\n"
      "influence { max_update_norm: 0.5 max_norm_median_multiple: 0 }\n"
      "privacy { noise_multiplier: 1.5 delta: 1e-6 epsilon_budget: 8 }\n");
  ASSERT_TRUE(c.ok()) << c.status();
  ApplyDefaults(&*c);
  ASSERT_TRUE(ValidateServerConfig(*c).ok()) << ValidateServerConfig(*c);
  const PrivacyParams p = PrivacyParamsFromConfig(*c);
  EXPECT_TRUE(p.enabled());
  EXPECT_EQ(p.noise_multiplier_q16, 98304u);  // 1.5 x 65536
  EXPECT_EQ(p.norm_bound, 2048u);             // 0.5 x 2^12 master steps
  EXPECT_EQ(p.sigma, 98304u * 2048u);
  EXPECT_DOUBLE_EQ(p.delta, 1e-6);
  EXPECT_DOUBLE_EQ(p.epsilon_budget, 8);
  const StrategyParams s = StrategyParamsFromConfig(*c);
  EXPECT_EQ(s.kind, StrategyKind::kFedAdam);
  EXPECT_TRUE(s.uniform_weights);
  EXPECT_EQ(s.bounds.norm_bound, 2048u);
  EXPECT_EQ(s.bounds.norm_median_multiple_q16, 0u);
}

// Each bad aggregation or privacy value stops the server with one line
// naming the option.
TEST(ServerConfig, BadAggregationAndPrivacyValuesAreNamed) {
  const std::pair<const char*, const char*> cases[] = {
      {"aggregation { strategy: \"krum\" }",
       "aggregation.strategy must be one of fedavg, trimmed-mean, median, fedavgm, fedadam; got "
       "'krum'"},
      {"aggregation { strategy: \"FedAvg\" }", "aggregation.strategy"},
      {"aggregation { trim_fraction: 0.2 }",
       "aggregation.trim_fraction applies to strategy trimmed-mean only, not fedavg"},
      {"aggregation { strategy: \"median\" trim_fraction: 0.1 }", "aggregation.trim_fraction"},
      {"aggregation { strategy: \"trimmed-mean\" trim_fraction: 0.5 }",
       "aggregation.trim_fraction must be in [0, 0.5)"},
      // Below 0.5 as a double, but 500000 millionths once rounded.
      {"aggregation { strategy: \"trimmed-mean\" trim_fraction: 0.4999996 }",
       "aggregation.trim_fraction must be in [0, 0.5)"},
      {"aggregation { strategy: \"trimmed-mean\" trim_fraction: -0.1 }",
       "aggregation.trim_fraction"},
      {"aggregation { momentum: 1 }", "aggregation.momentum must be in [0, 1)"},
      // 65535.67 rounds to 65536: 1.0 in Q16.16.
      {"aggregation { momentum: 0.999995 }", "aggregation.momentum"},
      {"aggregation { momentum: -0.5 }", "aggregation.momentum"},
      {"aggregation { second_moment_decay: 1.5 }", "aggregation.second_moment_decay"},
      {"aggregation { adam_learning_rate: 0 }", "aggregation.adam_learning_rate"},
      {"aggregation { adam_learning_rate: 2 }", "aggregation.adam_learning_rate"},
      {"aggregation { adam_tau: 0 }", "aggregation.adam_tau"},
      {"aggregation { adam_tau: 1.5 }", "aggregation.adam_tau"},
      {"privacy { noise_multiplier: 0.05 }", "privacy.noise_multiplier must be 0 (off) or in"},
      {"privacy { noise_multiplier: 2000 }", "privacy.noise_multiplier"},
      {"privacy { delta: 0 }", "privacy.delta must be in (0, 0.1]"},
      {"privacy { delta: 0.2 }", "privacy.delta"},
      {"privacy { epsilon_budget: -1 }", "privacy.epsilon_budget"},
      {"privacy { epsilon_budget: 4 }", "privacy.epsilon_budget needs privacy.noise_multiplier"},
  };
  for (const auto& [text, expected] : cases) {
    absl::StatusOr<v1::ServerConfig> c = ParseServerConfig(text);
    ASSERT_TRUE(c.ok()) << text << ": " << c.status();
    ApplyDefaults(&*c);
    const absl::Status s = ValidateServerConfig(*c);
    EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << text;
    EXPECT_NE(s.message().find(expected), std::string::npos) << text << ": " << s;
    EXPECT_EQ(s.message().find('\n'), std::string::npos) << "one line: " << s;
  }
}

// Central DP's constraints (server_config.proto PrivacyPolicy): a fixed
// clip bound, no bound from the round's median, a strategy whose
// sensitivity is the noise's, and a sigma the exact sampler takes.
TEST(ServerConfig, PrivacyNeedsAFixedClipBoundAndAFedAvgFamilyStrategy) {
  const std::string on = "privacy { noise_multiplier: 1 }\n";
  const std::string fixed = "influence { max_update_norm: 0.5 max_norm_median_multiple: 0 }\n";
  const std::pair<std::string, std::string> cases[] = {
      {on, "privacy.noise_multiplier needs influence.max_update_norm > 0"},
      // The default median multiple (2) is still on.
      {on + "influence { max_update_norm: 0.5 }",
       "privacy.noise_multiplier needs influence.max_norm_median_multiple: 0"},
      {on + fixed + "aggregation { strategy: \"median\" }",
       "privacy.noise_multiplier needs aggregation.strategy fedavg, fedavgm or fedadam, not median"},
      {on + fixed + "aggregation { strategy: \"trimmed-mean\" }",
       "privacy.noise_multiplier needs aggregation.strategy fedavg, fedavgm or fedadam, not "
       "trimmed-mean"},
      // 1000 x 65536 x (1e6 x 2^14) is about 2^60 units: beyond the
      // sampler's 2^52.
      {"privacy { noise_multiplier: 1000 }\nhead { weight_frac_bits: 14 }\n"
       "influence { max_update_norm: 1e6 max_norm_median_multiple: 0 }\n",
       "privacy.noise_multiplier x influence.max_update_norm must give a noise sigma in [1, 2^52]"},
  };
  for (const auto& [text, expected] : cases) {
    absl::StatusOr<v1::ServerConfig> c = ParseServerConfig(text);
    ASSERT_TRUE(c.ok()) << text << ": " << c.status();
    ApplyDefaults(&*c);
    const absl::Status s = ValidateServerConfig(*c);
    EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << text;
    EXPECT_NE(s.message().find(expected), std::string::npos) << text << ": " << s;
  }
  for (const char* strategy : {"fedavg", "fedavgm", "fedadam"}) {
    absl::StatusOr<v1::ServerConfig> c = ParseServerConfig(
        on + fixed + "aggregation { strategy: \"" + strategy + "\" }\n");
    ASSERT_TRUE(c.ok()) << c.status();
    ApplyDefaults(&*c);
    EXPECT_TRUE(ValidateServerConfig(*c).ok()) << strategy << ": " << ValidateServerConfig(*c);
  }
  // The largest sigma the sampler takes, 2^52, is accepted: 2^52 / 2^16 is
  // 2^36 master steps of clip bound at noise multiplier 1; with 14
  // fraction bits, a bound of 2^22 real units (above the proto's 1e6), so
  // the edge is reached with a multiplier instead: 64 x 65536 x 2^30.
  absl::StatusOr<v1::ServerConfig> edge = ParseServerConfig(
      "privacy { noise_multiplier: 64 }\nhead { weight_frac_bits: 14 }\n"
      "influence { max_update_norm: 65536 max_norm_median_multiple: 0 }\n");
  ASSERT_TRUE(edge.ok()) << edge.status();
  ApplyDefaults(&*edge);
  EXPECT_TRUE(ValidateServerConfig(*edge).ok()) << ValidateServerConfig(*edge);
  EXPECT_EQ(PrivacyParamsFromConfig(*edge).sigma, uint64_t{1} << 52);
  edge->mutable_influence()->set_max_update_norm(65536 + 1.0 / 16384);  // one master step more
  EXPECT_EQ(ValidateServerConfig(*edge).code(), absl::StatusCode::kInvalidArgument);
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
