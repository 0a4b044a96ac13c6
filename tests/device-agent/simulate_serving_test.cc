// `tinyfed-agent simulate` driving serving, staged rollout, federated
// evaluation and drift (issue 14's acceptance): the fleet's accuracy per
// version against the devices' own data recomputed here, a bad version
// kept to its canary and rolled back, and drift alerts raised on time with
// the fleet recovering. Also --drift's parser and the drift it applies.
#include <gtest/gtest.h>
#include <openssl/sha.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <string>
#include <vector>

#include "absl/strings/str_format.h"
#include "dataset.h"
#include "in_process_server.h"
#include "server_config.h"
#include "simulate_command.h"
#include "tinyfed/v1/admin.grpc.pb.h"
#include "tinyfed_common/host_numerics.h"

namespace tinyfed::agent {
namespace {

class TempDir {
 public:
  TempDir() {
    std::string t = (std::filesystem::temp_directory_path() / "tinyfed-serving-XXXXXX").string();
    path_ = mkdtemp(t.data());
  }
  ~TempDir() { std::filesystem::remove_all(path_); }
  std::string File(const std::string& name) const { return path_ + "/" + name; }

 private:
  std::string path_;
};

absl::StatusOr<v1::SimulationReport> RunQuietly(const SimulateOptions& o) {
  std::FILE* sink = std::tmpfile();
  absl::StatusOr<v1::SimulationReport> report = RunSimulate(o, sink, sink);
  std::fclose(sink);
  return report;
}

// The run's table as the operator reads it, for the test log (and the
// lead's notes).
void PrintRows(const v1::SimulationReport& report) {
  std::cout << "round version test_acc fleet_acc devices serving candidate stage on_cand alerts\n";
  for (int i = 0; i < report.rounds_size(); ++i) {
    const v1::SimulationRound& r = report.rounds(i);
    std::cout << absl::StrFormat("%5d %7u %8.4f %9.4f %7u %7u %9u %-16s %7u %s\n", i + 1,
                                 r.model_version(), r.accuracy(), r.fleet_accuracy(),
                                 r.fleet_devices(), r.serving_version(), r.candidate_version(),
                                 r.stage(), r.devices_serving_candidate(),
                                 r.alerts_size() == 0 ? "" : r.alerts(0));
  }
}

// rollout_bucket.h's rule, written again here from its comment: the
// first 8 bytes of SHA-256(id), big-endian, mod 10000; in the canary of F
// iff below round(F x 10000).
uint32_t CanaryCount(uint32_t devices, double fraction) {
  const auto buckets = static_cast<uint64_t>(std::llround(fraction * 10000));
  uint32_t count = 0;
  for (uint32_t d = 0; d < devices; ++d) {
    const std::string id = absl::StrFormat("sim-%06u", d);
    unsigned char digest[SHA256_DIGEST_LENGTH];
    SHA256(reinterpret_cast<const unsigned char*>(id.data()), id.size(), digest);
    uint64_t v = 0;
    for (int i = 0; i < 8; ++i) v = (v << 8) | digest[i];
    count += v % 10000 < buckets;
  }
  return count;
}

// A version's prediction on one int8 sample, by docs/numerics.md's
// forward pass written again in plain int64: the exact sum of weights
// times feature offsets, rescaled to Q16.16 by the features' multiplier
// and shift (rounded to nearest, ties up), clamped to [-2^29, 2^29 - 1],
// plus the bias in Q16.16, clamped again; the largest logit wins, a tie
// going to the lowest class.
uint32_t Predict(const v1::ModelVersion& m, const int8_t* x) {
  const v1::HeadSpec& spec = m.spec();
  const uint32_t features = spec.feature_count(), classes = spec.class_count();
  const int32_t zp = spec.feature_quantization().zero_point();
  const int64_t multiplier = spec.feature_quantization().scale_multiplier();
  const int shift = 15 + static_cast<int>(spec.weight_frac_bits()) -
                    spec.feature_quantization().scale_shift();
  const auto s16 = [](const std::string& bytes, size_t i) {
    return static_cast<int16_t>(static_cast<uint8_t>(bytes[2 * i]) |
                                (static_cast<uint8_t>(bytes[2 * i + 1]) << 8));
  };
  const int64_t lo = -(int64_t{1} << 29), hi = (int64_t{1} << 29) - 1;
  const auto clamp = [&](int64_t z) { return std::clamp(z, lo, hi); };
  uint32_t best = 0;
  int64_t best_logit = 0;
  for (uint32_t c = 0; c < classes; ++c) {
    int64_t acc = 0;
    for (uint32_t f = 0; f < features; ++f) {
      acc += int64_t{s16(m.weights(), c * features + f)} * (int64_t{x[f]} - zp);
    }
    const int64_t scaled = (acc * multiplier + (int64_t{1} << (shift - 1))) >> shift;
    const int64_t bias = int64_t{s16(m.bias(), c)} * (int64_t{1} << (16 - spec.weight_frac_bits()));
    const int64_t logit = clamp(clamp(scaled) + bias);
    if (c == 0 || logit > best_logit) {
      best = c;
      best_logit = logit;
    }
  }
  return best;
}

// Acceptance: the fleet's accuracy per version (the server's exact sums of
// the devices' reports) equals the sample-weighted accuracy computed here
// from every device's shard and the version's weights. The run goes to a
// server this test starts, so the store outlives the run and its Admin
// service answers afterwards; the devices' data is rebuilt the way
// simulate builds it from the seed.
TEST(Serving, FleetAccuracyPerVersionEqualsDevicesDataExactly) {
  TempDir dir;
  const uint32_t kDevices = 30, kSeed = 3;
  absl::StatusOr<Dataset> digits = LoadDigits(DefaultDataDir());
  ASSERT_TRUE(digits.ok()) << digits.status() << " (the digits data comes from deploy/setup.sh)";
  absl::StatusOr<Split> split = StratifiedSplit(*digits, 0.2, kSeed);
  ASSERT_TRUE(split.ok()) << split.status();

  const std::string key = dir.File("fleet.key");
  std::ofstream(key) << std::string(32, 'f');
  ASSERT_EQ(chmod(key.c_str(), 0600), 0);
  v1::ServerConfig sc;
  sc.set_fleet_key_file(key);
  sc.mutable_head()->set_feature_count(64);
  sc.mutable_head()->set_class_count(10);
  sc.mutable_head()->set_feature_scale(StandardizeAndQuantize(*split).scale);
  sc.mutable_policy()->set_target_updates(10);
  sc.mutable_policy()->set_min_updates(10);
  sc.mutable_policy()->set_round_deadline_ms(120'000);
  sc.mutable_plan()->set_epochs(5);
  sc.mutable_plan()->set_batch_size(8);
  sc.mutable_plan()->set_learning_rate(0.2);
  server::ApplyDefaults(&sc);
  auto started = server::InProcessServer::Start(sc);
  ASSERT_TRUE(started.ok()) << started.status();

  SimulateOptions o;
  o.server = (*started)->address();
  o.fleet_key_file = key;
  o.devices = kDevices;
  o.rounds = 10;
  o.seed = kSeed;
  o.progress = false;
  absl::StatusOr<v1::SimulationReport> report = RunQuietly(o);
  ASSERT_TRUE(report.ok()) << report.status();
  PrintRows(*report);

  // The devices' data, as simulate built it: quantized at the server's
  // feature scale, shards of Dirichlet(0.5) over the training split.
  auto channel = grpc::CreateChannel((*started)->address(), grpc::InsecureChannelCredentials());
  auto admin = v1::Admin::NewStub(channel);
  v1::ModelVersion latest;
  {
    grpc::ClientContext context;
    ASSERT_TRUE(admin->GetVersion(&context, v1::GetVersionRequest(), &latest).ok());
  }
  const v1::FeatureQuantization& fq = latest.spec().feature_quantization();
  const QuantizedSplit data = StandardizeAndQuantize(
      *split, FromFixedScale(FixedScale{fq.scale_multiplier(), fq.scale_shift()}) * 127.0);
  absl::StatusOr<std::vector<std::vector<uint32_t>>> shards =
      PartitionDirichlet(data.train_y, data.classes, kDevices, kDefaultAlpha, kSeed);
  ASSERT_TRUE(shards.ok()) << shards.status();

  v1::ListVersionsResponse versions;
  {
    grpc::ClientContext context;
    v1::ListVersionsRequest request;
    request.set_limit(1000);
    ASSERT_TRUE(admin->ListVersions(&context, request, &versions).ok());
  }
  int checked = 0;
  for (const v1::ModelVersion& listed : versions.versions()) {
    const v1::FleetEvaluation& fleet = listed.fleet_evaluation();
    // Only a version every device reported can be recomputed without
    // knowing which devices reported it.
    if (fleet.devices() != kDevices) continue;
    v1::ModelVersion model;
    grpc::ClientContext context;
    v1::GetVersionRequest request;
    request.set_version(listed.version());
    ASSERT_TRUE(admin->GetVersion(&context, request, &model).ok());
    uint64_t samples = 0, correct = 0;
    for (const std::vector<uint32_t>& shard : *shards) {
      for (uint32_t i : shard) {
        ++samples;
        correct += Predict(model, data.train_x.data() + size_t{i} * 64) == data.train_y[i];
      }
    }
    std::cout << "v" << listed.version() << ": server " << fleet.correct() << "/"
              << fleet.samples() << ", recomputed " << correct << "/" << samples << "\n";
    EXPECT_EQ(fleet.samples(), samples) << "v" << listed.version();
    EXPECT_EQ(fleet.correct(), correct) << "v" << listed.version();
    ++checked;
  }
  // The initial version serves everyone at round 1; a promoted version
  // reaches every device (the canary first, the rest after promotion).
  EXPECT_GE(checked, 2) << "versions reported by all " << kDevices << " devices";
}

// Acceptance: attackers with valid keys and the bounds off make the
// versions of the rounds they join bad. Each such candidate stays in its
// canary (the devices holding it, counted from the devices' own buffers,
// never exceed the canary that the id hash picks), is rolled back by the
// server on its own, and the serving version's fleet accuracy never drops
// more than 1 point below its level before the attack.
TEST(Serving, BadVersionStaysInCanaryAndIsRolledBack) {
  SimulateOptions o;
  o.progress = false;
  o.rounds = 24;
  o.attack = "scaled";
  o.attackers = 0.1;
  o.attack_from_round = 13;
  o.bounded_influence = false;
  absl::StatusOr<v1::SimulationReport> report = RunQuietly(o);
  ASSERT_TRUE(report.ok()) << report.status() << " (the digits data comes from deploy/setup.sh)";
  PrintRows(*report);
  const uint32_t canary = CanaryCount(o.devices, kDefaultCanaryFraction);
  std::cout << "canary: " << canary << " of " << o.devices << " devices\n";
  ASSERT_GT(canary, 0u);
  ASSERT_LT(canary, o.devices);

  const v1::SimulationRound& before = report->rounds(static_cast<int>(o.attack_from_round) - 2);
  ASSERT_GT(before.fleet_devices(), 0u);
  int rolled_back = 0, bad_versions = 0;
  for (int i = static_cast<int>(o.attack_from_round) - 1; i < report->rounds_size(); ++i) {
    const v1::SimulationRound& r = report->rounds(i);
    SCOPED_TRACE(absl::StrFormat("round %d", i + 1));
    EXPECT_LE(r.devices_serving_candidate(), canary);
    if (r.stage().rfind("rolled back v", 0) == 0 || r.stage().rfind("promoted v", 0) == 0) {
      // Every device checks in every round, so the whole canary held the
      // candidate decided at this close.
      EXPECT_EQ(r.devices_serving_candidate(), canary) << r.stage();
    }
    // The acceptance bound itself: at most 1 point below the level before.
    EXPECT_GE(r.fleet_accuracy(), before.fleet_accuracy() - 0.01);
    rolled_back += r.stage().rfind("rolled back v", 0) == 0;
    // The attack did make bad versions: the round's own model on the
    // held-out split is far from the ~0.9 of the clean rounds.
    bad_versions += r.accuracy() < 0.5;
  }
  EXPECT_GT(bad_versions, 0) << "the attack made no bad version: the test shows nothing";
  EXPECT_GT(rolled_back, 0);
  // No bad version serves: every row's serving accuracy stays up (above)
  // and the stage never reports a promotion of a version whose round made
  // it bad.
  for (int i = static_cast<int>(o.attack_from_round) - 1; i < report->rounds_size(); ++i) {
    const v1::SimulationRound& r = report->rounds(i);
    if (r.stage().rfind("promoted v", 0) != 0) continue;
    const uint32_t promoted = static_cast<uint32_t>(std::stoul(r.stage().substr(10)));
    for (const v1::SimulationRound& made : report->rounds()) {
      if (made.model_version() == promoted) {
        EXPECT_GE(made.accuracy(), 0.5) << "v" << promoted << " was bad and got promoted";
      }
    }
  }
}

// The round (1-based, in the run) of the first row with an alert; 0 for none.
int FirstAlertRound(const v1::SimulationReport& report) {
  for (int i = 0; i < report.rounds_size(); ++i) {
    if (report.rounds(i).alerts_size() > 0) return i + 1;
  }
  return 0;
}

// Acceptance: two classes swapped on every device from round 15 of 40. No
// alert before the drift, one within 3 rounds of it, and continued
// training and rollout bring the fleet's accuracy back to within 2 points
// of its level before the drift.
TEST(Serving, WholeFleetLabelSwapAlertsAndRecovers) {
  SimulateOptions o;
  o.progress = false;
  o.rounds = 40;
  o.drift = "round=15,fraction=1.0,kind=label-swap";
  absl::StatusOr<v1::SimulationReport> report = RunQuietly(o);
  ASSERT_TRUE(report.ok()) << report.status() << " (the digits data comes from deploy/setup.sh)";
  PrintRows(*report);
  const int first = FirstAlertRound(*report);
  EXPECT_GE(first, 15) << "an alert before the drift";
  EXPECT_LE(first, 18) << "no alert within 3 rounds of the drift";
  EXPECT_NE(first, 0);
  const double level = report->rounds(13).fleet_accuracy();  // round 14, the last before
  const double final_accuracy = report->rounds(39).fleet_accuracy();
  std::cout << "fleet accuracy before the drift " << level << ", at the end " << final_accuracy
            << "\n";
  // The acceptance bound itself: within 2 points.
  EXPECT_GE(final_accuracy, level - 0.02);
}

// Half the fleet sees the swap: devices disagree, so no one head recovers
// them all, but the alert still fires within 3 rounds.
TEST(Serving, HalfFleetLabelSwapStillAlerts) {
  SimulateOptions o;
  o.progress = false;
  o.rounds = 30;
  o.drift = "round=15,fraction=0.5,kind=label-swap";
  absl::StatusOr<v1::SimulationReport> report = RunQuietly(o);
  ASSERT_TRUE(report.ok()) << report.status() << " (the digits data comes from deploy/setup.sh)";
  PrintRows(*report);
  const int first = FirstAlertRound(*report);
  EXPECT_GE(first, 15) << "an alert before the drift";
  EXPECT_LE(first, 18) << "no alert within 3 rounds of the drift";
  EXPECT_NE(first, 0);
}

TEST(DriftSpec, ParsesEachKindAndNamesTheBadPart) {
  absl::StatusOr<DriftSpec> spec = ParseDriftSpec("round=15,fraction=1.0,kind=label-swap");
  ASSERT_TRUE(spec.ok()) << spec.status();
  EXPECT_EQ(spec->round, 15u);
  EXPECT_EQ(spec->fraction, 1.0);
  EXPECT_EQ(spec->kind, DriftKind::kLabelSwap);
  spec = ParseDriftSpec("kind=feature-shift,fraction=0.25,round=3");
  ASSERT_TRUE(spec.ok()) << spec.status();
  EXPECT_EQ(spec->round, 3u);
  EXPECT_EQ(spec->fraction, 0.25);
  EXPECT_EQ(spec->kind, DriftKind::kFeatureShift);

  const std::pair<std::string, std::string> bad[] = {
      {"", "not KEY=VALUE"},
      {"round=15", "missing fraction"},
      {"round=15,fraction=1", "missing kind"},
      {"fraction=1,kind=label-swap", "missing round"},
      {"round=0,fraction=1,kind=label-swap", "round must be"},
      {"round=x,fraction=1,kind=label-swap", "round must be"},
      {"round=1,fraction=0,kind=label-swap", "fraction must be in (0, 1]"},
      {"round=1,fraction=1.5,kind=label-swap", "fraction must be in (0, 1], got '1.5'"},
      {"round=1,fraction=nan,kind=label-swap", "fraction must be"},
      {"round=1,fraction=1,kind=flip", "kind must be 'label-swap' or 'feature-shift'"},
      {"round=1,fraction=1,kind=label-swap,round=2", "round given twice"},
      {"rounds=1,fraction=1,kind=label-swap", "unknown key 'rounds'"},
  };
  for (const auto& [text, expected] : bad) {
    absl::StatusOr<DriftSpec> parsed = ParseDriftSpec(text);
    ASSERT_EQ(parsed.status().code(), absl::StatusCode::kInvalidArgument) << text;
    EXPECT_EQ(parsed.status().message().rfind("--drift: ", 0), 0u) << parsed.status();
    EXPECT_NE(parsed.status().message().find(expected), std::string::npos)
        << text << " -> " << parsed.status();
  }
}

TEST(DriftSpec, LabelSwapExchangesClassesZeroAndOneOnly) {
  std::vector<int8_t> x = {5, -5, 7, 0};
  std::vector<uint8_t> y = {0, 1, 2, 9};
  ApplyDrift(DriftKind::kLabelSwap, 1, y.size(), x.data(), y.data());
  EXPECT_EQ(y, (std::vector<uint8_t>{1, 0, 2, 9}));
  EXPECT_EQ(x, (std::vector<int8_t>{5, -5, 7, 0}));
}

TEST(DriftSpec, FeatureShiftAddsStepsAndSaturates) {
  ASSERT_EQ(kFeatureShiftSteps, 64);  // the values below are written for it
  std::vector<int8_t> x = {-127, 0, 62, 63, 64, -64};
  std::vector<uint8_t> y = {3, 4, 5};
  ApplyDrift(DriftKind::kFeatureShift, 2, y.size(), x.data(), y.data());
  EXPECT_EQ(x, (std::vector<int8_t>{-63, 64, 126, 127, 127, 0}));
  EXPECT_EQ(y, (std::vector<uint8_t>{3, 4, 5}));
}

}  // namespace
}  // namespace tinyfed::agent
