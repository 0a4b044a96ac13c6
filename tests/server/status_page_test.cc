// The status page's HTML from the Admin service's messages (what an
// operator reads: the round, the paused banner, rollback rows, one plot
// point per version, every string escaped), and the page served at / of
// the metrics port next to /metrics. The browser's view of the same page
// is status_page_browser_test.py.
#include "status_page.h"

#include <httplib.h>

#include <map>
#include <regex>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "metrics_http.h"

namespace tinyfed::server {
namespace {

// 2023-11-14 22:13:20 UTC, a round number of seconds since the epoch.
constexpr int64_t kNowMs = 1'700'000'000'000;

v1::ModelVersion Version(uint32_t version, uint32_t round, uint32_t participants,
                         uint32_t rejected, uint32_t loss_q16, uint32_t restored_from = 0) {
  v1::ModelVersion v;
  v.set_version(version);
  v.set_parent_version(version - 1);
  v.set_round(round);
  v.set_restored_from(restored_from);
  v.set_created_unix_ms(kNowMs - 1000 * (10 - version));
  v1::ModelMetrics& m = *v.mutable_metrics();
  m.set_participants(participants);
  m.set_samples(participants * 20);
  m.set_rejected_updates(rejected);
  m.set_mean_local_loss_q16(loss_q16);
  m.set_clipped_updates(participants > 0 ? 1 : 0);
  m.set_capped_updates(participants > 1 ? 2 : 0);
  return v;
}

// v1 initial, v2..v4 trained in rounds 1..3, v5 a rollback to v2: newest
// first, as ListVersions answers.
std::vector<v1::ModelVersion> History() {
  return {Version(5, 0, 0, 0, 0, /*restored_from=*/2), Version(4, 3, 8, 1, 0x6000),
          Version(3, 2, 4, 3, 0x10000), Version(2, 1, 6, 0, 0x18000), Version(1, 0, 0, 0, 0)};
}

v1::ServerStatus Status() {
  v1::ServerStatus s;
  s.set_server_version("0.1.0");
  s.set_latest_version(5);
  s.set_serving_version(5);
  s.set_now_unix_ms(kNowMs);
  v1::RoundStatus& r = *s.mutable_round();
  r.set_round(4);
  r.set_base_version(5);
  r.set_open(true);
  r.set_tasks_issued(3);
  r.set_tasks_limit(6);
  r.set_accepted(2);
  r.set_target_updates(5);
  r.set_min_updates(2);
  r.set_rejected(7);
  r.set_deadline_unix_ms(kNowMs + 65'000);
  r.set_time_left_ms(65'000);
  return s;
}

struct PlotPoint {
  std::string series;
  uint32_t version;
  double cx, cy;
};

// Every <circle class="point" ...> of the page, read with a pattern that
// does not care for the attributes' order beyond the documented prefix.
std::vector<PlotPoint> Points(const std::string& page) {
  static const std::regex point(
      R"re(<circle class="point" data-series="([a-z-]+)" data-version="([0-9]+)"[^>]*? cx="([0-9.]+)" cy="([0-9.]+)")re");
  std::vector<PlotPoint> out;
  for (auto it = std::sregex_iterator(page.begin(), page.end(), point);
       it != std::sregex_iterator(); ++it) {
    out.push_back({(*it)[1], static_cast<uint32_t>(std::stoul((*it)[2])), std::stod((*it)[3]),
                   std::stod((*it)[4])});
  }
  return out;
}

// The row of `version` in the versions table, from <tr to </tr>.
std::string Row(const std::string& page, uint32_t version) {
  const size_t start = page.find(absl::StrCat("<tr data-version=\"", version, "\""));
  if (start == std::string::npos) return "";
  return page.substr(start, page.find("</tr>", start) - start);
}

TEST(StatusPage, EachCountPlotHasOnePointPerVersionAndLossOnePerTrainedVersion) {
  const std::string page = RenderStatusPage(Status(), History());
  std::map<std::string, std::vector<uint32_t>> by_series;
  for (const PlotPoint& p : Points(page)) by_series[p.series].push_back(p.version);
  // Oldest first, left to right: the order the points are drawn in.
  const std::vector<uint32_t> all = {1, 2, 3, 4, 5};
  EXPECT_EQ(by_series["participants"], all);
  EXPECT_EQ(by_series["accepted"], all);
  EXPECT_EQ(by_series["rejected"], all);
  // v1 (initial) and v5 (rollback) aggregated no round.
  EXPECT_EQ(by_series["loss"], (std::vector<uint32_t>{2, 3, 4}));
  EXPECT_EQ(by_series.size(), 4u);
}

TEST(StatusPage, PointsGoLeftToRightByVersionAndUpWithTheirValue) {
  const std::string page = RenderStatusPage(Status(), History());
  std::map<uint32_t, PlotPoint> participants, loss;
  for (const PlotPoint& p : Points(page)) {
    if (p.series == "participants") participants[p.version] = p;
    if (p.series == "loss") loss[p.version] = p;
  }
  ASSERT_EQ(participants.size(), 5u);
  for (uint32_t v = 2; v <= 5; ++v) EXPECT_LT(participants[v - 1].cx, participants[v].cx) << v;
  // SVG's y grows downwards: more participants, smaller cy.
  EXPECT_LT(participants[4].cy, participants[2].cy);  // 8 above 6
  EXPECT_LT(participants[2].cy, participants[3].cy);  // 6 above 4
  EXPECT_EQ(participants[1].cy, participants[5].cy);  // both 0
  EXPECT_GT(participants[1].cy, participants[3].cy);  // 0 below 4
  ASSERT_EQ(loss.size(), 3u);
  EXPECT_LT(loss[2].cy, loss[3].cy);  // 1.5 above 1.0
  EXPECT_LT(loss[3].cy, loss[4].cy);  // 1.0 above 0.375
}

TEST(StatusPage, AZeroSitsOnTheAxisOfItsPlot) {
  const std::string page = RenderStatusPage(Status(), History());
  const size_t plot = page.find("id=\"plot-participants\"");
  ASSERT_NE(plot, std::string::npos);
  std::smatch axis;
  const std::string rest = page.substr(plot);
  ASSERT_TRUE(std::regex_search(rest, axis, std::regex(R"re(class="axis"[^>]*? y1="([0-9.]+)")re")));
  for (const PlotPoint& p : Points(page)) {
    if (p.series == "participants" && (p.version == 1 || p.version == 5)) {
      EXPECT_DOUBLE_EQ(p.cy, std::stod(axis[1])) << p.version;
    }
  }
}

TEST(StatusPage, VersionsTableSaysWhereEachVersionCameFrom) {
  const std::string page = RenderStatusPage(Status(), History());
  const std::string rollback = Row(page, 5);
  EXPECT_NE(rollback.find("rollback of v2"), std::string::npos) << rollback;
  EXPECT_NE(rollback.find("class=\"restored\""), std::string::npos) << rollback;
  EXPECT_NE(rollback.find("serving"), std::string::npos) << rollback;
  const std::string trained = Row(page, 3);
  EXPECT_NE(trained.find("round 2"), std::string::npos) << trained;
  EXPECT_EQ(trained.find("rollback"), std::string::npos) << trained;
  EXPECT_EQ(trained.find("serving"), std::string::npos) << trained;
  // 4 participants, 80 samples, 1 clipped / 2 capped, 3 rejected, loss 1.0.
  EXPECT_NE(trained.find("<td>4</td><td>80</td><td>1 / 2</td><td>3</td><td>1.0000</td>"),
            std::string::npos)
      << trained;
  // 0x6000 / 2^16 = 0.375.
  EXPECT_NE(Row(page, 4).find("<td>0.3750</td>"), std::string::npos) << Row(page, 4);
  EXPECT_NE(Row(page, 1).find("initial"), std::string::npos) << Row(page, 1);
  // Committed at kNowMs - 7 s.
  EXPECT_NE(Row(page, 3).find("2023-11-14 22:13:13"), std::string::npos) << Row(page, 3);
  // Newest first, as given.
  EXPECT_LT(page.find("<tr data-version=\"5\""), page.find("<tr data-version=\"1\""));
}

TEST(StatusPage, OpenRoundShowsItsCountsAndDeadline) {
  const std::string page = RenderStatusPage(Status(), History());
  EXPECT_NE(page.find("Round 4"), std::string::npos);
  EXPECT_NE(page.find("3 / 6"), std::string::npos);  // tasks issued / limit
  EXPECT_NE(page.find("2 <span class=\"muted\">of 5 (min 2)"), std::string::npos);
  EXPECT_NE(page.find("2023-11-14 22:14:25"), std::string::npos);  // now + 65 s
  EXPECT_NE(page.find("1 m 05 s left"), std::string::npos);
  EXPECT_NE(page.find("<div class=\"label\">Rejected</div><div class=\"value\">7</div>"),
            std::string::npos);
}

TEST(StatusPage, PausedBannerNamesWhoPausedOnlyWhilePaused) {
  v1::ServerStatus status = Status();
  EXPECT_EQ(RenderStatusPage(status, History()).find("id=\"paused\""), std::string::npos);
  status.set_paused(true);
  status.set_paused_since_unix_ms(kNowMs - 60'000);
  status.set_paused_by("token:oncall");
  const std::string page = RenderStatusPage(status, History());
  const size_t banner = page.find("id=\"paused\"");
  ASSERT_NE(banner, std::string::npos);
  const std::string text = page.substr(banner, page.find("</div>", banner) - banner);
  EXPECT_NE(text.find("token:oncall"), std::string::npos) << text;
  EXPECT_NE(text.find("2023-11-14 22:12:20"), std::string::npos) << text;
}

TEST(StatusPage, StringsFromOperatorsAreEscaped) {
  v1::ServerStatus status = Status();
  status.set_paused(true);
  status.set_paused_by("cert:CN=<script>alert(\"x\")</script>&'");
  status.set_server_version("0.1<b>");
  const std::string page = RenderStatusPage(status, History());
  EXPECT_EQ(page.find("<script"), std::string::npos);
  EXPECT_EQ(page.find("<b>"), std::string::npos);
  EXPECT_NE(page.find("cert:CN=&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;&amp;&#39;"),
            std::string::npos);
  EXPECT_NE(page.find("0.1&lt;b&gt;"), std::string::npos);

  const std::string error = RenderStatusPageError(absl::UnavailableError("db <locked> & \"x\""));
  EXPECT_EQ(error.find("<locked>"), std::string::npos) << error;
  EXPECT_NE(error.find("db &lt;locked&gt; &amp; &quot;x&quot;"), std::string::npos) << error;
}

// The <section id="aggregation" ...> start tag, or "" when there is none.
std::string AggregationTag(const std::string& page) {
  const size_t start = page.find("<section id=\"aggregation\"");
  if (start == std::string::npos) return "";
  return page.substr(start, page.find('>', start) - start + 1);
}

TEST(StatusPage, AggregationSectionNamesTheStrategyAndItsParameters) {
  v1::ServerStatus status = Status();
  v1::Aggregation& a = *status.mutable_aggregation();
  a.set_strategy("trimmed-mean");
  a.set_server_lr_q16(1u << 16);
  a.set_trim_fraction_ppm(300000);
  a.set_norm_bound(8);
  const std::string page = RenderStatusPage(status, History());
  const std::string tag = AggregationTag(page);
  EXPECT_NE(tag.find("data-strategy=\"trimmed-mean\""), std::string::npos) << tag;
  EXPECT_NE(tag.find("data-privacy=\"off\""), std::string::npos) << tag;
  EXPECT_EQ(tag.find("data-epsilon-spent"), std::string::npos) << tag;
  EXPECT_NE(page.find("trim 0.3 per end"), std::string::npos);
  EXPECT_NE(page.find("norm bound 8"), std::string::npos);
}

TEST(StatusPage, PrivacyBudgetIsShownWithItsFigures) {
  v1::ServerStatus status = Status();
  status.mutable_aggregation()->set_strategy("fedavg");
  v1::PrivacyStatus& p = *status.mutable_privacy();
  p.set_enabled(true);
  p.set_epsilon_spent(1.25);
  p.set_epsilon_budget(8);
  p.set_delta(1e-5);
  p.set_noised_versions(12);
  p.set_rounds_left(40);
  const std::string page = RenderStatusPage(status, History());
  const std::string tag = AggregationTag(page);
  for (const char* attribute :
       {"data-strategy=\"fedavg\"", "data-privacy=\"on\"", "data-epsilon-spent=\"1.25\"",
        "data-epsilon-budget=\"8\"", "data-delta=\"1e-05\"", "data-noised-versions=\"12\"",
        "data-rounds-left=\"40\""}) {
    EXPECT_NE(tag.find(attribute), std::string::npos) << attribute << " in " << tag;
  }
  EXPECT_EQ(page.find("budget spent"), std::string::npos);
  p.set_budget_spent(true);
  p.set_rounds_left(0);
  EXPECT_NE(RenderStatusPage(status, History()).find("budget spent, training stopped"),
            std::string::npos);
}

// The strategy is the server's own record, but a damaged or hostile one
// is still text.
TEST(StatusPage, TheStrategyNameIsEscaped) {
  v1::ServerStatus status = Status();
  status.mutable_aggregation()->set_strategy("\"><script>x</script>");
  const std::string page = RenderStatusPage(status, History());
  EXPECT_EQ(page.find("<script"), std::string::npos);
  EXPECT_NE(AggregationTag(page).find("data-strategy=\"&quot;&gt;&lt;script&gt;"),
            std::string::npos)
      << AggregationTag(page);
}

TEST(StatusPage, EscapeHtmlReplacesEveryMarkupCharacter) {
  EXPECT_EQ(EscapeHtml("a&b<c>d\"e'f"), "a&amp;b&lt;c&gt;d&quot;e&#39;f");
  EXPECT_EQ(EscapeHtml("plain text 123"), "plain text 123");
}

TEST(StatusPage, RefreshesItselfAndReferencesNothingOutside) {
  for (const std::string& page : {RenderStatusPage(Status(), History()),
                                  RenderStatusPageError(absl::UnavailableError("x"))}) {
    EXPECT_NE(page.find(absl::StrCat("<meta http-equiv=\"refresh\" content=\"",
                                     kStatusPageRefreshSeconds, "\">")),
              std::string::npos);
    for (const char* external : {"http:", "https:", "//", "src=", "<script", "stylesheet",
                                 "@import", "url(", "@font-face"}) {
      EXPECT_EQ(page.find(external), std::string::npos) << external;
    }
  }
}

TEST(StatusPage, LeavesRoomForTheFleetsAccuracyAndLoss) {
  const std::string page = RenderStatusPage(Status(), History());
  const size_t panel = page.find("id=\"plot-fleet\"");
  ASSERT_NE(panel, std::string::npos);
  EXPECT_NE(page.find("Fleet accuracy and loss", panel), std::string::npos);
}

void SetFleet(v1::ModelVersion* v, uint32_t devices, uint64_t samples, uint64_t correct,
              uint64_t loss_sum_q16) {
  v1::FleetEvaluation& f = *v->mutable_fleet_evaluation();
  f.set_devices(devices);
  f.set_samples(samples);
  f.set_correct(correct);
  f.set_loss_sum_q16(loss_sum_q16);
}

// Versions 1 to 3 were trained from, so devices evaluated them; v4 and the
// rollback v5 not yet.
std::vector<v1::ModelVersion> HistoryWithFleet() {
  std::vector<v1::ModelVersion> versions = History();
  SetFleet(&versions[4], 6, 1000, 500, 1000 * 0x20000);   // v1: 0.5, loss 2.0
  SetFleet(&versions[3], 4, 400, 300, 400 * 0x10000);     // v2: 0.75, loss 1.0
  SetFleet(&versions[2], 8, 2000, 1800, 2000 * 0x8000);   // v3: 0.9, loss 0.5
  return versions;
}

TEST(StatusPage, FleetPanelHasOnePointPerEvaluatedVersionInEachSeries) {
  const std::string page = RenderStatusPage(Status(), HistoryWithFleet());
  std::map<std::string, std::vector<uint32_t>> by_series;
  for (const PlotPoint& p : Points(page)) by_series[p.series].push_back(p.version);
  EXPECT_EQ(by_series["fleet-accuracy"], (std::vector<uint32_t>{1, 2, 3}));
  EXPECT_EQ(by_series["fleet-loss"], (std::vector<uint32_t>{1, 2, 3}));
  // The other plots are as they were.
  EXPECT_EQ(by_series["participants"], (std::vector<uint32_t>{1, 2, 3, 4, 5}));
  EXPECT_EQ(by_series.size(), 6u);
  // The panel is drawn, no longer the dashed placeholder, and every fleet
  // point is inside it.
  const size_t panel = page.find("<figure id=\"plot-fleet\"");
  ASSERT_NE(panel, std::string::npos);
  EXPECT_EQ(page.find("<figure id=\"plot-fleet\" class=\"pending\""), std::string::npos);
  const size_t panel_end = page.find("</figure>", panel);
  const std::string inside = page.substr(panel, panel_end - panel);
  EXPECT_EQ(Points(inside).size(), 6u);
}

TEST(StatusPage, FleetAccuracyRisesAndLossFallsOnThePlotAndInTheTable) {
  const std::string page = RenderStatusPage(Status(), HistoryWithFleet());
  std::map<uint32_t, PlotPoint> accuracy, loss;
  for (const PlotPoint& p : Points(page)) {
    if (p.series == "fleet-accuracy") accuracy[p.version] = p;
    if (p.series == "fleet-loss") loss[p.version] = p;
  }
  ASSERT_EQ(accuracy.size(), 3u);
  ASSERT_EQ(loss.size(), 3u);
  // SVG's y grows downwards: 0.9 above 0.75 above 0.5; loss 2.0 above 1.0
  // above 0.5; and at the same x as the other plots' points of the version.
  EXPECT_LT(accuracy[3].cy, accuracy[2].cy);
  EXPECT_LT(accuracy[2].cy, accuracy[1].cy);
  EXPECT_LT(loss[1].cy, loss[2].cy);
  EXPECT_LT(loss[2].cy, loss[3].cy);
  // Loss 0.5 and accuracy 0.5 share the axis: the same height.
  EXPECT_DOUBLE_EQ(loss[3].cy, accuracy[1].cy);
  for (uint32_t v = 1; v <= 3; ++v) EXPECT_DOUBLE_EQ(accuracy[v].cx, loss[v].cx) << v;
  EXPECT_LT(accuracy[1].cx, accuracy[2].cx);
  const std::string row = Row(page, 2);
  EXPECT_NE(row.find("0.7500 <span class=\"muted\">(4 devices)</span>"), std::string::npos)
      << row;
  const std::string none = Row(page, 4);
  EXPECT_EQ(none.find("devices)"), std::string::npos) << none;
}

TEST(StatusPage, WithoutEvaluationsTheFleetPanelWaitsAndHasNoPoint) {
  const std::string page = RenderStatusPage(Status(), History());
  EXPECT_NE(page.find("<figure id=\"plot-fleet\" class=\"pending\""), std::string::npos);
  for (const PlotPoint& p : Points(page)) {
    EXPECT_NE(p.series.rfind("fleet", 0), 0u) << p.series << " v" << p.version;
  }
}

TEST(StatusPage, NoVersionsYetSaysSoAndDrawsNoPoint) {
  v1::ServerStatus status;
  const std::string page = RenderStatusPage(status, {});
  EXPECT_TRUE(Points(page).empty());
  EXPECT_NE(page.find("No committed version yet"), std::string::npos);
  EXPECT_NE(page.find("none opened yet"), std::string::npos);
}

TEST(StatusPage, OneVersionIsDrawnInTheMiddle) {
  const std::string page = RenderStatusPage(Status(), {Version(1, 0, 0, 0, 0)});
  const std::vector<PlotPoint> points = Points(page);
  ASSERT_EQ(points.size(), 3u);  // participants, accepted, rejected; no loss
  for (const PlotPoint& p : points) EXPECT_GT(p.cx, 0) << p.series;
}

// ---- served at / of the metrics port ----------------------------------

class StatusPageHttp : public ::testing::Test {
 protected:
  void Serve(MetricsHttpServer::PageFn page) {
    absl::StatusOr<std::unique_ptr<MetricsHttpServer>> bound =
        MetricsHttpServer::Bind("127.0.0.1:0");
    ASSERT_TRUE(bound.ok()) << bound.status();
    server_ = std::move(*bound);
    server_->Serve([] { return std::string("metric_total 1\n"); }, std::move(page));
    client_ = std::make_unique<httplib::Client>("127.0.0.1", server_->port());
    client_->set_read_timeout(10, 0);  // a loaded machine; the answer takes microseconds
  }
  std::unique_ptr<MetricsHttpServer> server_;
  std::unique_ptr<httplib::Client> client_;
};

TEST_F(StatusPageHttp, RootAnswersThePageAsHtmlThatLoadsNothing) {
  Serve([] { return RenderStatusPage(Status(), History()); });
  httplib::Result result = client_->Get("/");
  ASSERT_TRUE(result) << httplib::to_string(result.error());
  EXPECT_EQ(result->status, 200);
  EXPECT_EQ(result->get_header_value("Content-Type"), "text/html; charset=utf-8");
  EXPECT_EQ(result->body, RenderStatusPage(Status(), History()));
  const std::string csp = result->get_header_value("Content-Security-Policy");
  EXPECT_EQ(csp.rfind("default-src 'none';", 0), 0u) << csp;
  EXPECT_EQ(csp.find("script-src"), std::string::npos) << csp;
  EXPECT_EQ(result->get_header_value("Cache-Control"), "no-store");

  httplib::Result metrics = client_->Get("/metrics");
  ASSERT_TRUE(metrics);
  EXPECT_EQ(metrics->body, "metric_total 1\n");
  EXPECT_EQ(metrics->get_header_value("Content-Type").rfind("text/plain; version=0.0.4", 0), 0u);
}

TEST_F(StatusPageHttp, HeadAnswersLikeGetWithoutABody) {
  Serve([] { return RenderStatusPage(Status(), History()); });
  httplib::Result result = client_->Head("/");
  ASSERT_TRUE(result) << httplib::to_string(result.error());
  EXPECT_EQ(result->status, 200);
  EXPECT_EQ(result->get_header_value("Content-Type"), "text/html; charset=utf-8");
  EXPECT_TRUE(result->body.empty());
}

TEST_F(StatusPageHttp, AFailingPageFunctionAnswers503WithTheErrorEscaped) {
  Serve([]() -> absl::StatusOr<std::string> {
    return absl::UnavailableError("store <busy>");
  });
  httplib::Result result = client_->Get("/");
  ASSERT_TRUE(result) << httplib::to_string(result.error());
  EXPECT_EQ(result->status, 503);
  EXPECT_EQ(result->get_header_value("Content-Type"), "text/html; charset=utf-8");
  EXPECT_NE(result->body.find("store &lt;busy&gt;"), std::string::npos) << result->body;
  EXPECT_NE(result->body.find("http-equiv=\"refresh\""), std::string::npos) << result->body;
}

TEST_F(StatusPageHttp, OtherPathsAre404) {
  Serve([] { return RenderStatusPage(Status(), History()); });
  httplib::Result result = client_->Get("/index.html");
  ASSERT_TRUE(result);
  EXPECT_EQ(result->status, 404);
}

}  // namespace
}  // namespace tinyfed::server
