// tinyfed-admin's output for the staged rollout: the status's candidate,
// serving window and alerts, the versions' STAGE column, and promote.
#include <string>

#include <gtest/gtest.h>

#include "admin_output.h"

namespace tinyfed::admin {
namespace {

v1::FleetEvaluation Fleet(uint32_t devices, uint64_t samples, uint64_t correct) {
  v1::FleetEvaluation f;
  f.set_devices(devices);
  f.set_samples(samples);
  f.set_correct(correct);
  return f;
}

bool Has(const std::string& text, const std::string& line) {
  return text.find(line) != std::string::npos;
}

TEST(RolloutOutputTest, StatusShowsCandidateServingWindowAndAlerts) {
  v1::ServerStatus status;
  status.set_latest_version(9);
  status.set_serving_version(7);
  status.set_candidate_version(8);
  status.set_canary_fraction(0.1);
  *status.mutable_candidate_evaluation() = Fleet(12, 2000, 1902);
  *status.mutable_serving_window() = Fleet(40, 4558, 4321);
  v1::Alert* alert = status.add_alerts();
  alert->set_kind("drift");
  alert->set_model_version(7);
  alert->set_raised_round(15);
  alert->set_raised_unix_ms(1714566896000);
  alert->set_message("accuracy 0.8120 over the last 3 rounds (25 devices) < 0.9480 at promotion "
                     "(30 devices) - margin 0.0500");
  const std::string text = FormatServerStatus(status);
  // Values start one column after the longest key ("serving version"), as
  // before the rollout lines were added.
  EXPECT_TRUE(Has(text, "serving version:  7\n")) << text;
  EXPECT_TRUE(Has(text,
                  "candidate:        8 (canary: 10% of devices); accuracy 0.9510 (1902 of 2000 "
                  "samples, 12 devices)\n"))
      << text;
  // 4321 / 4558 = 0.948003...
  EXPECT_TRUE(Has(text, "serving window:   accuracy 0.9480 (4321 of 4558 samples, 40 devices)\n"))
      << text;
  EXPECT_TRUE(Has(text,
                  "alert:            drift on version 7 since round 15 (2024-05-01T12:34:56Z): "
                  "accuracy 0.8120 over the last 3 rounds (25 devices) < 0.9480 at promotion "
                  "(30 devices) - margin 0.0500\n"))
      << text;
  EXPECT_FALSE(Has(text, "alerts:")) << text;
}

TEST(RolloutOutputTest, StatusSaysWhenThereIsNothingToShow) {
  v1::ServerStatus status;
  status.set_serving_version(3);
  status.set_canary_fraction(0.25);
  const std::string text = FormatServerStatus(status);
  EXPECT_TRUE(Has(text, "candidate:        none\n")) << text;
  EXPECT_TRUE(Has(text, "serving window:   no evaluations yet\n")) << text;
  EXPECT_TRUE(Has(text, "alerts:           none\n")) << text;

  status.set_candidate_version(4);
  EXPECT_TRUE(Has(FormatServerStatus(status),
                  "candidate:        4 (canary: 25% of devices); no evaluations yet\n"))
      << FormatServerStatus(status);
}

TEST(RolloutOutputTest, StatusListsEveryAlert) {
  v1::ServerStatus status;
  for (uint32_t v : {5u, 6u}) {
    v1::Alert* a = status.add_alerts();
    a->set_kind("drift");
    a->set_model_version(v);
  }
  const std::string text = FormatServerStatus(status);
  EXPECT_TRUE(Has(text, "alert:            drift on version 5")) << text;
  EXPECT_TRUE(Has(text, "alert:            drift on version 6")) << text;
}

// The STAGE cell of a one-version table.
std::string StageCell(const v1::ModelVersion& version) {
  v1::ListVersionsResponse response;
  *response.add_versions() = version;
  const std::string table = FormatVersions(response);
  const std::string header = table.substr(0, table.find('\n'));
  const std::string row = table.substr(header.size() + 1);
  // Left-aligned: the cell starts under "STAGE" and ends before the
  // right-aligned PARTICIPANTS column's padding.
  const size_t start = header.find("STAGE");
  const size_t end = row.find("  ", start);
  return row.substr(start, end - start);
}

TEST(RolloutOutputTest, VersionsNameEachStage) {
  const std::pair<v1::RolloutStage, const char*> stages[] = {
      {v1::ROLLOUT_STAGE_TRAINED, "trained"},
      {v1::ROLLOUT_STAGE_CANDIDATE, "candidate"},
      {v1::ROLLOUT_STAGE_SERVING, "serving"},
      {v1::ROLLOUT_STAGE_RETIRED, "retired"},
      {v1::ROLLOUT_STAGE_ROLLED_BACK, "rolled back"},
  };
  for (const auto& [stage, name] : stages) {
    v1::ModelVersion v;
    v.set_version(4);
    v.mutable_rollout()->set_stage(stage);
    EXPECT_EQ(StageCell(v), name);
  }
  // A server that fills no Rollout (before staged rollout) shows "-".
  v1::ModelVersion old;
  old.set_version(4);
  EXPECT_EQ(StageCell(old), "-");
}

TEST(RolloutOutputTest, PromoteNamesBothVersionsAndTheReason) {
  v1::PromoteResponse response;
  response.set_previous_serving(7);
  response.mutable_version()->set_version(5);
  response.mutable_version()->mutable_rollout()->set_reason("promoted by token:alice: v7 drifts");
  EXPECT_EQ(FormatPromote(response),
            "version 5 now serves every device (was version 7): promoted by token:alice: v7 "
            "drifts\n");
  response.mutable_version()->clear_rollout();
  EXPECT_EQ(FormatPromote(response), "version 5 now serves every device (was version 7)\n");
}

}  // namespace
}  // namespace tinyfed::admin
