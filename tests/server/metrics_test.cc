// Prometheus metrics: the exposition text of the metric types (exact
// strings written by hand from the format's rules), and tinyfed-server run
// with --metrics_listen, scraped during a run and read back by
// prometheus_client's parser, its counters and gauges compared with what
// this test's own client saw.
#include "metrics.h"

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <random>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>

#include "absl/strings/str_cat.h"
#include "child_process.h"
#include "model_store.h"
#include "round_manager.h"
#include "server_test_support.h"
#include "tinyfed/v1/coordinator.grpc.pb.h"
#include "tinyfed_common/fleet_keys.h"

namespace tinyfed::server {
namespace {

using testing::ChildProcess;
using testing::FreeLoopbackPort;
using testing::TempDir;

TEST(MetricsText, SampleValuesReadBackExactly) {
  EXPECT_EQ(FormatSampleValue(0), "0");
  EXPECT_EQ(FormatSampleValue(3), "3");
  EXPECT_EQ(FormatSampleValue(0.0005), "0.0005");
  EXPECT_EQ(FormatSampleValue(2.5), "2.5");
  EXPECT_EQ(FormatSampleValue(43200), "43200");
  EXPECT_EQ(FormatSampleValue(1.0 / 0.0), "+Inf");
  EXPECT_EQ(FormatSampleValue(-1.0 / 0.0), "-Inf");
}

TEST(MetricsText, LabelValuesAreEscaped) {
  EXPECT_EQ(EscapeLabelValue("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
}

TEST(MetricsText, HistogramBucketsAreCumulativeWithLessOrEqualBounds) {
  DurationHistogram h({absl::Milliseconds(1), absl::Milliseconds(10)});
  h.Observe(absl::Microseconds(1000));  // on the bound: in le="0.001"
  h.Observe(absl::Microseconds(1001));  // just above: in le="0.01"
  h.Observe(absl::Seconds(3));          // above every bound: +Inf only
  std::string text;
  h.AppendText("x_seconds", "help", &text);
  EXPECT_EQ(text,
            "# HELP x_seconds help\n"
            "# TYPE x_seconds histogram\n"
            "x_seconds_bucket{le=\"0.001\"} 1\n"
            "x_seconds_bucket{le=\"0.01\"} 2\n"
            "x_seconds_bucket{le=\"+Inf\"} 3\n"
            "x_seconds_sum 3.002001\n"
            "x_seconds_count 3\n");
}

TEST(MetricsText, StatusCodeCounterWritesEveryCodeButOk) {
  StatusCodeCounter c;
  c.Add(absl::StatusCode::kUnauthenticated);
  c.Add(absl::StatusCode::kUnauthenticated);
  c.Add(static_cast<absl::StatusCode>(99));  // not a code: counted as UNKNOWN
  std::string text;
  c.AppendText("y_total", "help", &text);
  EXPECT_NE(text.find("y_total{code=\"UNAUTHENTICATED\"} 2\n"), std::string::npos) << text;
  EXPECT_NE(text.find("y_total{code=\"UNKNOWN\"} 1\n"), std::string::npos) << text;
  EXPECT_NE(text.find("y_total{code=\"DATA_LOSS\"} 0\n"), std::string::npos) << text;
  EXPECT_EQ(text.find("code=\"OK\""), std::string::npos) << text;
}

TEST(MetricsText, PauseAndTheRoundsRejectedUpdatesAreGauges) {
  ServerMetrics metrics;
  RoundSnapshot round;
  round.paused = true;
  round.rejected = 7;
  const std::string text = metrics.Render(round);
  EXPECT_NE(text.find("# TYPE tinyfed_server_paused gauge\ntinyfed_server_paused 1\n"),
            std::string::npos) << text;
  EXPECT_NE(text.find("# TYPE tinyfed_round_updates_rejected gauge\n"
                      "tinyfed_round_updates_rejected 7\n"),
            std::string::npos) << text;
  round.paused = false;
  EXPECT_NE(metrics.Render(round).find("\ntinyfed_server_paused 0\n"), std::string::npos);
}

TEST(MetricsText, FleetGaugesShowTheLatestEvaluatedVersionOrNaNWithoutOne) {
  ServerMetrics metrics;
  RoundSnapshot round;
  std::string text = metrics.Render(round);
  EXPECT_NE(text.find("\ntinyfed_model_fleet_evaluated_version 0\n"), std::string::npos) << text;
  EXPECT_NE(text.find("\ntinyfed_model_fleet_evaluated_samples 0\n"), std::string::npos) << text;
  EXPECT_NE(text.find("\ntinyfed_model_fleet_accuracy_ratio NaN\n"), std::string::npos) << text;
  EXPECT_NE(text.find("\ntinyfed_model_fleet_mean_loss NaN\n"), std::string::npos) << text;

  VersionEvaluation fleet;
  fleet.version = 7;
  fleet.fleet.set_devices(3);
  fleet.fleet.set_samples(200);
  fleet.fleet.set_correct(150);
  fleet.fleet.set_loss_sum_q16(200 * 0x18000);  // 1.5 per sample
  text = metrics.Render(round, &fleet);
  EXPECT_NE(text.find("# TYPE tinyfed_model_fleet_evaluated_version gauge\n"
                      "tinyfed_model_fleet_evaluated_version 7\n"),
            std::string::npos) << text;
  EXPECT_NE(text.find("\ntinyfed_model_fleet_evaluated_devices 3\n"), std::string::npos) << text;
  EXPECT_NE(text.find("\ntinyfed_model_fleet_evaluated_samples 200\n"), std::string::npos)
      << text;
  EXPECT_NE(text.find("\ntinyfed_model_fleet_accuracy_ratio 0.75\n"), std::string::npos) << text;
  EXPECT_NE(text.find("\ntinyfed_model_fleet_mean_loss 1.5\n"), std::string::npos) << text;
}

// What metrics_scrape.py printed: samples by "name{labels}", families'
// types, and the response's content type.
struct Scrape {
  std::map<std::string, double> samples;
  std::map<std::string, std::string> types;
  std::string content_type;
  std::string raw;

  // The sample's value; a missing sample fails the test and reads -1.
  double operator[](const std::string& key) const {
    auto it = samples.find(key);
    EXPECT_NE(it, samples.end()) << "no sample " << key << " in:\n" << raw;
    return it == samples.end() ? -1 : it->second;
  }
};

Scrape ScrapeWithPrometheusClient(int port) {
  const std::string command =
      absl::StrCat(TINYFED_SYSTEM_PYTHON3, " ", TINYFED_METRICS_SCRAPE_SCRIPT,
                   " http://127.0.0.1:", port, "/metrics 2>&1");
  Scrape out;
  FILE* pipe = popen(command.c_str(), "r");
  EXPECT_NE(pipe, nullptr);
  if (pipe == nullptr) return out;
  char buffer[4096];
  while (fgets(buffer, sizeof buffer, pipe) != nullptr) out.raw += buffer;
  const int status = pclose(pipe);
  EXPECT_EQ(status, 0) << out.raw;
  std::istringstream lines(out.raw);
  std::string line;
  while (std::getline(lines, line)) {
    if (line.rfind("# CONTENT_TYPE ", 0) == 0) {
      out.content_type = line.substr(15);
    } else if (line.rfind("# TYPE ", 0) == 0) {
      std::istringstream fields(line.substr(7));
      std::string name, type;
      fields >> name >> type;
      out.types[name] = type;
    } else if (const size_t space = line.rfind(' '); space != std::string::npos) {
      out.samples[line.substr(0, space)] = std::stod(line.substr(space + 1));
    }
  }
  return out;
}

// The histogram's buckets as the parser read them: cumulative (never
// decreasing), ending in +Inf equal to _count.
void ExpectWellFormedHistogram(const Scrape& s, const std::string& name) {
  double previous = 0;
  int buckets = 0;
  std::vector<std::pair<double, double>> by_bound;
  const std::string prefix = name + "_bucket{le=\"";
  for (const auto& [key, value] : s.samples) {
    if (key.rfind(prefix, 0) != 0) continue;
    const std::string le = key.substr(prefix.size(), key.size() - prefix.size() - 2);
    by_bound.emplace_back(le == "+Inf" ? 1.0 / 0.0 : std::stod(le), value);
  }
  std::sort(by_bound.begin(), by_bound.end());
  for (const auto& [bound, cumulative] : by_bound) {
    EXPECT_GE(cumulative, previous) << name << " le=" << bound << " in:\n" << s.raw;
    previous = cumulative;
    ++buckets;
  }
  ASSERT_GE(buckets, 2) << s.raw;
  EXPECT_EQ(by_bound.back().first, 1.0 / 0.0);
  EXPECT_EQ(by_bound.back().second, s[name + "_count{}"]);
}

class MetricsServerRun : public ::testing::Test {
 protected:
  // Three updates close a round, three tasks fill it (over-selection 1),
  // and no deadline falls within the test.
  virtual std::string Policy() const {
    return "policy { target_updates: 3 min_updates: 1 over_selection: 1.0 "
           "round_deadline_ms: 600000 }\n";
  }

  void SetUp() override {
    const std::string config = dir_.path() + "/server.textproto";
    std::ofstream(config) << Policy();
    grpc_port_ = FreeLoopbackPort();
    metrics_port_ = FreeLoopbackPort();
    db_ = dir_.path() + "/store.db";
    server_ = std::make_unique<ChildProcess>(
        std::vector<std::string>{TINYFED_SERVER_BINARY, "--config", config, "--db", db_,
                                 "--listen", absl::StrCat("127.0.0.1:", grpc_port_),
                                 "--metrics_listen", absl::StrCat("127.0.0.1:", metrics_port_)},
        dir_.path() + "/server.log");
    ASSERT_TRUE(server_->WaitForLog("listening on", std::chrono::seconds(20))) << server_->Log();
    absl::StatusOr<Key256> key = LoadFleetKey(db_ + ".fleet.key");
    ASSERT_TRUE(key.ok()) << key.status();
    fleet_key_ = *key;
    stub_ = v1::Coordinator::NewStub(grpc::CreateChannel(
        absl::StrCat("127.0.0.1:", grpc_port_), grpc::InsecureChannelCredentials()));
  }

  grpc::Status CheckIn(const std::string& device, const Key256& key,
                       v1::CheckInResponse* response) {
    v1::CheckInRequest request;
    request.set_device_id(device);
    grpc::ClientContext context;
    return stub_->CheckIn(&context, testing::SignBytes(key, device, RequestType::kCheckIn,
                                                       request.SerializeAsString()),
                          response);
  }

  grpc::Status Submit(const v1::Update& update, const Key256& key) {
    v1::UpdateAck ack;
    grpc::ClientContext context;
    return stub_->SubmitUpdate(
        &context,
        testing::SignBytes(key, update.device_id(), RequestType::kUpdate,
                           update.SerializeAsString()),
        &ack);
  }

  v1::ModelVersion Latest() {
    v1::GetModelRequest request;
    v1::ModelVersion model;
    grpc::ClientContext context;
    EXPECT_TRUE(stub_->GetModel(&context, request, &model).ok());
    return model;
  }

  TempDir dir_;
  int grpc_port_ = 0;
  int metrics_port_ = 0;
  std::string db_;
  std::unique_ptr<ChildProcess> server_;
  Key256 fleet_key_{};
  std::unique_ptr<v1::Coordinator::Stub> stub_;
};

TEST_F(MetricsServerRun, ScrapedCountersMatchTheRunsOwnCounts) {
  // What this client saw, to compare the server's metrics with.
  int tasks = 0, retries = 0, check_ins_refused = 0, acks = 0;
  std::map<std::string, int> refused_by_code;
  auto count_update = [&](const grpc::Status& s) {
    if (s.ok()) {
      ++acks;
    } else {
      ++refused_by_code[absl::StatusCodeToString(static_cast<absl::StatusCode>(s.error_code()))];
    }
  };

  const v1::ModelVersion base = Latest();
  std::map<std::string, v1::RoundTask> task_of;
  for (const char* device : {"mcu-0", "mcu-1", "mcu-2", "mcu-3"}) {
    v1::CheckInResponse response;
    ASSERT_TRUE(CheckIn(device, fleet_key_, &response).ok());
    if (response.has_task()) {
      ++tasks;
      task_of[device] = response.task();
    } else {
      ++retries;
    }
  }
  // The product's rule the counts below rely on: three tasks fill the round.
  ASSERT_EQ(tasks, 3);
  ASSERT_EQ(retries, 1);
  // Not the server's key: that one was drawn at random on first start.
  const Key256 other_key = testing::TestFleetKey();
  {
    v1::CheckInResponse response;
    grpc::Status s = CheckIn("mcu-9", other_key, &response);
    ASSERT_EQ(s.error_code(), grpc::StatusCode::UNAUTHENTICATED);
    ++check_ins_refused;
  }

  std::mt19937 rng(7);
  // Each device's evaluation of the base version: (samples, correct).
  const std::map<std::string, std::pair<uint32_t, uint32_t>> evaluation_of = {
      {"mcu-0", {50, 40}}, {"mcu-1", {70, 35}}, {"mcu-2", {30, 30}}};
  auto update_for = [&](const std::string& device) {
    const v1::RoundTask& task = task_of.at(device);
    v1::Update u = testing::MakeUpdate(base.spec(), task.round(), device, task.task_token(),
                                       task.model().version(), 20, rng);
    v1::Evaluation& e = *u.mutable_evaluation();
    e.set_model_version(task.model().version());
    e.set_samples(evaluation_of.at(device).first);
    e.set_correct(evaluation_of.at(device).second);
    e.set_loss_sum_q16(uint64_t{evaluation_of.at(device).first} << 16);  // 1.0 per sample
    return u;
  };
  count_update(Submit(update_for("mcu-0"), fleet_key_));
  count_update(Submit(update_for("mcu-1"), fleet_key_));
  ASSERT_EQ(acks, 2);

  // During the round: two updates in, the round open.
  {
    const Scrape s = ScrapeWithPrometheusClient(metrics_port_);
    EXPECT_EQ(s.content_type.rfind("text/plain; version=0.0.4", 0), 0u) << s.content_type;
    EXPECT_EQ(s["tinyfed_updates_accepted_total{}"], 2);
    EXPECT_EQ(s["tinyfed_round_open{}"], 1);
    EXPECT_EQ(s["tinyfed_round_number{}"], 1);
    EXPECT_EQ(s["tinyfed_round_base_version{}"], base.version());
    EXPECT_EQ(s["tinyfed_round_tasks_issued{}"], 3);
    EXPECT_EQ(s["tinyfed_round_updates_accepted{}"], 2);
    EXPECT_EQ(s["tinyfed_rounds_committed_total{}"], 0);
    EXPECT_EQ(s["tinyfed_ack_latency_seconds_count{}"], 2);
    // mcu-0's and mcu-1's evaluations: 75 of 120 samples.
    EXPECT_EQ(s["tinyfed_model_fleet_evaluated_version{}"], base.version());
    EXPECT_EQ(s["tinyfed_model_fleet_evaluated_devices{}"], 2);
    EXPECT_EQ(s["tinyfed_model_fleet_evaluated_samples{}"], 120);
    EXPECT_DOUBLE_EQ(s["tinyfed_model_fleet_accuracy_ratio{}"], 75.0 / 120.0);
    EXPECT_EQ(s.types.at("tinyfed_updates_accepted"), "counter");
    EXPECT_EQ(s.types.at("tinyfed_round_open"), "gauge");
    EXPECT_EQ(s.types.at("tinyfed_ack_latency_seconds"), "histogram");
  }

  // Refusals: two updates under a key that is not the device's, one for a
  // task the device never got.
  count_update(Submit(update_for("mcu-2"), other_key));
  count_update(Submit(update_for("mcu-2"), other_key));
  {
    v1::Update stray = update_for("mcu-2");
    stray.set_device_id("mcu-3");
    stray.set_task_token("not-a-token");
    testing::FixChecksum(&stray);
    count_update(Submit(stray, fleet_key_));
  }
  ASSERT_EQ(refused_by_code["UNAUTHENTICATED"], 2);
  ASSERT_EQ(refused_by_code.size(), 2u) << "expected one more refusal of another code";
  // The third update closes the round.
  count_update(Submit(update_for("mcu-2"), fleet_key_));
  ASSERT_EQ(acks, 3);

  Scrape s;
  for (int i = 0; i < 200; ++i) {  // the close runs on its own thread
    s = ScrapeWithPrometheusClient(metrics_port_);
    if (s.samples["tinyfed_round_number{}"] == 2) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  const v1::ModelVersion latest = Latest();
  ASSERT_EQ(latest.version(), base.version() + 1);

  EXPECT_EQ(s["tinyfed_checkins_total{outcome=\"task\"}"], tasks);
  EXPECT_EQ(s["tinyfed_checkins_total{outcome=\"retry_after\"}"], retries);
  EXPECT_EQ(s["tinyfed_checkins_total{outcome=\"refused\"}"], check_ins_refused);
  // No device here sends a ServingState, so none is sent a model; the
  // sample is there all the same (a missing one fails the lookup).
  EXPECT_EQ(s["tinyfed_checkins_total{outcome=\"model\"}"], 0);
  EXPECT_EQ(s["tinyfed_updates_accepted_total{}"], acks);
  for (int code = 1; code <= 16; ++code) {
    const std::string name = absl::StatusCodeToString(static_cast<absl::StatusCode>(code));
    EXPECT_EQ(s["tinyfed_updates_rejected_total{code=\"" + name + "\"}"],
              refused_by_code.count(name) ? refused_by_code[name] : 0)
        << name;
  }
  EXPECT_EQ(s["tinyfed_rounds_committed_total{}"], 1);
  EXPECT_EQ(s["tinyfed_rounds_abandoned_total{}"], 0);
  EXPECT_EQ(s["tinyfed_ack_latency_seconds_count{}"], acks);
  EXPECT_GT(s["tinyfed_ack_latency_seconds_sum{}"], 0);
  ExpectWellFormedHistogram(s, "tinyfed_ack_latency_seconds");
  EXPECT_EQ(s["tinyfed_round_duration_seconds_count{}"], 1);
  ExpectWellFormedHistogram(s, "tinyfed_round_duration_seconds");
  EXPECT_EQ(s["tinyfed_model_latest_version{}"], latest.version());
  // Staged rollout: the new version is the candidate, and no device has
  // evaluated it yet, so the base version still serves.
  EXPECT_EQ(s["tinyfed_model_serving_version{}"], base.version());
  EXPECT_EQ(s["tinyfed_model_candidate_version{}"], latest.version());
  EXPECT_EQ(s["tinyfed_round_number{}"], 2);
  EXPECT_EQ(s["tinyfed_round_base_version{}"], latest.version());
  EXPECT_EQ(s["tinyfed_round_updates_accepted{}"], 0);
  EXPECT_EQ(s["tinyfed_round_tasks_issued{}"], 0);
  // The three accepted updates' evaluations, 105 of 150 samples; the
  // refused ones' not. The new version is not evaluated yet: the gauges
  // stay on the base version.
  EXPECT_EQ(s["tinyfed_model_fleet_evaluated_version{}"], base.version());
  EXPECT_EQ(s["tinyfed_model_fleet_evaluated_devices{}"], 3);
  EXPECT_EQ(s["tinyfed_model_fleet_evaluated_samples{}"], 150);
  EXPECT_DOUBLE_EQ(s["tinyfed_model_fleet_accuracy_ratio{}"], 105.0 / 150.0);
  EXPECT_DOUBLE_EQ(s["tinyfed_model_fleet_mean_loss{}"], 1.0);
  EXPECT_EQ(s.types.at("tinyfed_model_fleet_accuracy_ratio"), "gauge");

  // An idle client channel holds the server's gRPC Shutdown for seconds;
  // not what this test is about.
  stub_.reset();
  EXPECT_EQ(server_->Stop(), 0) << server_->Log();
}

TEST_F(MetricsServerRun, MetricsPortIsNotShared) {
  // A second server asking for the same metrics port exits with one line
  // (before touching its own store), and the first keeps answering.
  ChildProcess second({TINYFED_SERVER_BINARY, "--db", dir_.path() + "/second.db", "--listen",
                       "127.0.0.1:0", "--metrics_listen",
                       absl::StrCat("127.0.0.1:", metrics_port_)},
                      dir_.path() + "/second.log");
  std::optional<int> status = second.WaitExit(std::chrono::seconds(20));
  ASSERT_TRUE(status.has_value()) << second.Log();
  EXPECT_NE(*status, 0);
  EXPECT_EQ(second.Log(),
            absl::StrCat("tinyfed-server: --metrics_listen 127.0.0.1:", metrics_port_,
                         ": cannot bind (Address already in use)\n"));
  EXPECT_FALSE(std::filesystem::exists(dir_.path() + "/second.db"));
  const Scrape s = ScrapeWithPrometheusClient(metrics_port_);
  EXPECT_EQ(s["tinyfed_round_number{}"], 1);
  EXPECT_EQ(server_->Stop(), 0) << server_->Log();
}

// A round whose deadline passes with fewer updates than its minimum.
class MetricsAbandonedRound : public MetricsServerRun {
 protected:
  std::string Policy() const override {
    return "policy { target_updates: 3 min_updates: 2 over_selection: 1.0 "
           "round_deadline_ms: 1500 }\n";
  }
};

TEST_F(MetricsAbandonedRound, CountsTheAbandonedRoundAndTimesNoCommit) {
  const v1::ModelVersion base = Latest();
  v1::CheckInResponse response;
  ASSERT_TRUE(CheckIn("mcu-0", fleet_key_, &response).ok());
  ASSERT_TRUE(response.has_task());
  std::mt19937 rng(11);
  const v1::RoundTask& task = response.task();
  ASSERT_TRUE(Submit(testing::MakeUpdate(base.spec(), task.round(), "mcu-0", task.task_token(),
                                         task.model().version(), 20, rng),
                     fleet_key_)
                  .ok());
  Scrape s;
  // The deadline (1.5 s) passes and the server's 100 ms ticker closes the
  // round; 10 s leaves room for a loaded machine.
  for (int i = 0; i < 200; ++i) {
    s = ScrapeWithPrometheusClient(metrics_port_);
    if (s.samples["tinyfed_round_number{}"] == 2) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  EXPECT_EQ(s["tinyfed_round_number{}"], 2);
  EXPECT_EQ(s["tinyfed_rounds_abandoned_total{}"], 1);
  EXPECT_EQ(s["tinyfed_rounds_committed_total{}"], 0);
  EXPECT_EQ(s["tinyfed_round_duration_seconds_count{}"], 0);
  EXPECT_EQ(s["tinyfed_updates_accepted_total{}"], 1);
  EXPECT_EQ(s["tinyfed_model_latest_version{}"], base.version());
  EXPECT_EQ(Latest().version(), base.version());
  stub_.reset();
  EXPECT_EQ(server_->Stop(), 0) << server_->Log();
}

}  // namespace
}  // namespace tinyfed::server
