// What operators see of the staged rollout and drift alerts without the
// CLI: the Prometheus gauges (metrics.h SetRollout) and the status page's
// alert banner, rollout section and stage column (status_page.h).
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "metrics.h"
#include "round_manager.h"
#include "status_page.h"

namespace tinyfed::server {
namespace {

bool Has(const std::string& text, const std::string& piece) {
  return text.find(piece) != std::string::npos;
}

TEST(RolloutMetrics, GaugesFollowTheLastSetRollout) {
  ServerMetrics metrics;
  RoundSnapshot round;
  round.latest_version = 9;
  metrics.SetRollout(7, 8, 1, EvaluationSums{40, 4000, 3000, 123});
  const std::string text = metrics.Render(round);
  EXPECT_TRUE(Has(text, "\ntinyfed_model_serving_version 7\n")) << text;
  EXPECT_TRUE(Has(text, "\ntinyfed_model_candidate_version 8\n")) << text;
  EXPECT_TRUE(Has(text, "# TYPE tinyfed_drift_alert gauge\ntinyfed_drift_alert 1\n")) << text;
  EXPECT_TRUE(Has(text, "\ntinyfed_serving_window_devices 40\n")) << text;
  EXPECT_TRUE(Has(text, "\ntinyfed_serving_window_samples 4000\n")) << text;
  EXPECT_TRUE(Has(text, "\ntinyfed_serving_window_correct 3000\n")) << text;
  // 3000 / 4000 is exact in binary.
  EXPECT_TRUE(Has(text, "\ntinyfed_serving_window_accuracy_ratio 0.75\n")) << text;

  metrics.SetRollout(8, 0, 0, EvaluationSums{});
  const std::string after = metrics.Render(round);
  EXPECT_TRUE(Has(after, "\ntinyfed_model_serving_version 8\n")) << after;
  EXPECT_TRUE(Has(after, "\ntinyfed_model_candidate_version 0\n")) << after;
  EXPECT_TRUE(Has(after, "\ntinyfed_drift_alert 0\n")) << after;
  EXPECT_TRUE(Has(after, "\ntinyfed_serving_window_accuracy_ratio NaN\n")) << after;
}

TEST(RolloutMetrics, BeforeAnySetRolloutTheLatestVersionServes) {
  ServerMetrics metrics;
  RoundSnapshot round;
  round.latest_version = 4;
  const std::string text = metrics.Render(round);
  // Every series exists from the first scrape.
  EXPECT_TRUE(Has(text, "\ntinyfed_model_serving_version 4\n")) << text;
  EXPECT_TRUE(Has(text, "\ntinyfed_model_candidate_version 0\n")) << text;
  EXPECT_TRUE(Has(text, "\ntinyfed_drift_alert 0\n")) << text;
  EXPECT_TRUE(Has(text, "\ntinyfed_serving_window_devices 0\n")) << text;
  EXPECT_TRUE(Has(text, "\ntinyfed_serving_window_accuracy_ratio NaN\n")) << text;
}

v1::ServerStatus RolloutStatus() {
  v1::ServerStatus s;
  s.set_server_version("0.1.0");
  s.set_latest_version(9);
  s.set_serving_version(7);
  s.set_candidate_version(8);
  s.set_canary_fraction(0.1);
  s.set_now_unix_ms(1'700'000'000'000);
  s.mutable_candidate_evaluation()->set_devices(12);
  s.mutable_candidate_evaluation()->set_samples(2000);
  s.mutable_candidate_evaluation()->set_correct(1902);
  s.mutable_serving_window()->set_devices(40);
  s.mutable_serving_window()->set_samples(4558);
  s.mutable_serving_window()->set_correct(4321);
  return s;
}

std::vector<v1::ModelVersion> StagedVersions() {
  std::vector<v1::ModelVersion> versions;
  const std::pair<uint32_t, v1::RolloutStage> stages[] = {
      {9, v1::ROLLOUT_STAGE_TRAINED},  {8, v1::ROLLOUT_STAGE_CANDIDATE},
      {7, v1::ROLLOUT_STAGE_SERVING},  {6, v1::ROLLOUT_STAGE_ROLLED_BACK},
      {5, v1::ROLLOUT_STAGE_RETIRED}};
  for (const auto& [version, stage] : stages) {
    v1::ModelVersion& v = versions.emplace_back();
    v.set_version(version);
    v.set_parent_version(version - 1);
    v.set_round(version - 1);
    v.mutable_rollout()->set_stage(stage);
  }
  return versions;
}

// The <tr> of `version` in the versions table.
std::string Row(const std::string& page, uint32_t version) {
  const size_t start = page.find("<tr data-version=\"" + std::to_string(version) + "\"");
  if (start == std::string::npos) return "";
  return page.substr(start, page.find("</tr>", start) - start);
}

TEST(RolloutStatusPage, NoAlertNoBanner) {
  const std::string page = RenderStatusPage(RolloutStatus(), StagedVersions());
  EXPECT_FALSE(Has(page, "role=\"alert\"")) << page;
  EXPECT_FALSE(Has(page, "id=\"alerts\"")) << page;
}

TEST(RolloutStatusPage, DriftAlertIsABannerFirstThingOnThePage) {
  v1::ServerStatus status = RolloutStatus();
  v1::Alert* a = status.add_alerts();
  a->set_kind("drift");
  a->set_model_version(7);
  a->set_raised_round(15);
  a->set_raised_unix_ms(1'700'000'000'000);
  a->set_message("accuracy 0.8120 < 0.9480 at promotion - margin 0.0500 <script>");
  const std::string page = RenderStatusPage(status, StagedVersions());
  const size_t banner = page.find("<div class=\"banner alert\" id=\"alerts\" role=\"alert\">");
  ASSERT_NE(banner, std::string::npos) << page;
  EXPECT_LT(banner, page.find("<section id=\"round\">"));
  EXPECT_TRUE(Has(page, "<li data-kind=\"drift\" data-version=\"7\"><strong>drift on v7</strong> "
                        "since round 15 (2023-11-14 22:13:20 UTC): accuracy 0.8120 &lt; 0.9480 "
                        "at promotion - margin 0.0500 &lt;script&gt;</li>"))
      << page;
  EXPECT_FALSE(Has(page, "<script>"));
}

TEST(RolloutStatusPage, RolloutSectionShowsServingWindowAndCandidate) {
  const std::string page = RenderStatusPage(RolloutStatus(), StagedVersions());
  const size_t start = page.find("<section id=\"rollout\">");
  ASSERT_NE(start, std::string::npos) << page;
  const std::string section = page.substr(start, page.find("</section>", start) - start);
  // 4321 / 4558 = 0.94800; 1902 / 2000 = 0.951.
  EXPECT_TRUE(Has(section, "0.9480 <span class=\"muted\">(4321 of 4558 samples, 40 devices)")) << section;
  EXPECT_TRUE(Has(section, "v8 <span class=\"muted\">canary 10% of devices</span>")) << section;
  EXPECT_TRUE(Has(section, "0.9510 <span class=\"muted\">(1902 of 2000 samples, 12 devices)")) << section;

  v1::ServerStatus none = RolloutStatus();
  none.set_candidate_version(0);
  none.clear_candidate_evaluation();
  none.clear_serving_window();
  const std::string quiet = RenderStatusPage(none, StagedVersions());
  const size_t s2 = quiet.find("<section id=\"rollout\">");
  const std::string section2 = quiet.substr(s2, quiet.find("</section>", s2) - s2);
  EXPECT_TRUE(Has(section2, "<div class=\"label\">Candidate</div><div class=\"value\">none</div>"))
      << section2;
  EXPECT_FALSE(Has(section2, "Candidate accuracy")) << section2;
  // A dash, not a made-up accuracy, for a window without reports.
  EXPECT_TRUE(Has(section2, "(drift window)</div><div class=\"value\">\xE2\x80\x94</div>"))
      << section2;
}

TEST(RolloutStatusPage, VersionsTableHasEachStageAndTagsServingAndCandidate) {
  const std::string page = RenderStatusPage(RolloutStatus(), StagedVersions());
  EXPECT_TRUE(Has(page, "<th>From</th><th>Stage</th><th>Participants</th>")) << page;
  EXPECT_TRUE(Has(Row(page, 9), "<td>round 8</td><td>trained</td>")) << Row(page, 9);
  EXPECT_TRUE(Has(Row(page, 8), "<td>round 7</td><td>candidate</td>")) << Row(page, 8);
  EXPECT_TRUE(Has(Row(page, 8), "<span class=\"tag candidate\">candidate</span>")) << Row(page, 8);
  EXPECT_TRUE(Has(Row(page, 7), "<td>round 6</td><td>serving</td>")) << Row(page, 7);
  EXPECT_TRUE(Has(Row(page, 7), "<span class=\"tag\">serving</span>")) << Row(page, 7);
  EXPECT_FALSE(Has(Row(page, 7), "tag candidate")) << Row(page, 7);
  EXPECT_TRUE(Has(Row(page, 6), "<td>round 5</td><td>rolled back</td>")) << Row(page, 6);
  EXPECT_TRUE(Has(Row(page, 5), "<td>round 4</td><td>retired</td>")) << Row(page, 5);
}

TEST(RolloutStatusPage, StillLoadsNothingFromElsewhere) {
  v1::ServerStatus status = RolloutStatus();
  status.add_alerts()->set_kind("drift");
  const std::string page = RenderStatusPage(status, StagedVersions());
  for (const char* external : {"<script", "src=", "http://", "https://", "@import", "url("}) {
    EXPECT_FALSE(Has(page, external)) << external;
  }
}

}  // namespace
}  // namespace tinyfed::server
