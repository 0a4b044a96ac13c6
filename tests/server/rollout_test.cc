// The staged-rollout and drift decision engine (server/rollout.h) and the
// canary bucket (common/include/tinyfed_common/rollout_bucket.h).
#include "rollout.h"

#include <algorithm>
#include <cstdint>
#include <limits>
#include <string>
#include <utility>

#include <gtest/gtest.h>

#include "absl/strings/str_format.h"
#include "server_config.h"
#include "tinyfed_common/rollout_bucket.h"

namespace tinyfed::server {
namespace {

using Kind = RolloutDecision::Kind;

v1::Evaluation Eval(uint32_t version, uint32_t samples, uint32_t correct, uint64_t loss = 0) {
  v1::Evaluation e;
  e.set_model_version(version);
  e.set_samples(samples);
  e.set_correct(correct);
  e.set_loss_sum_q16(loss);
  return e;
}

EvaluationSums Sums(uint32_t devices, uint64_t samples, uint64_t correct) {
  return EvaluationSums{devices, samples, correct, 0};
}

RolloutState State(uint32_t serving, EvaluationSums baseline = {}, uint32_t candidate = 0) {
  RolloutState state;
  state.serving_version = serving;
  state.candidate_version = candidate;
  state.baseline = baseline;
  return state;
}

// `devices` devices ("w-0", "w-1", ...) each report `samples` samples of
// `version` in `round`; the first `correct_total` of all the samples are
// correct, spread from the first device on.
void ReportMany(RolloutController& c, uint32_t round, uint32_t version, uint32_t devices,
                uint32_t samples, uint32_t correct_total, const std::string& prefix = "w-") {
  for (uint32_t i = 0; i < devices; ++i) {
    const uint32_t correct = std::min(samples, correct_total);
    correct_total -= correct;
    ASSERT_TRUE(c.RecordEvaluation(round, prefix + std::to_string(i), Eval(version, samples, correct)));
  }
}

// --- RolloutBucket --------------------------------------------------------

TEST(RolloutBucketTest, MatchesSha256PrefixModTenThousand) {
  // Computed independently with python3's hashlib:
  //   int.from_bytes(hashlib.sha256(id.encode()).digest()[:8], "big") % 10000
  EXPECT_EQ(RolloutBucket("sensor-17"), 5870u);
  EXPECT_EQ(RolloutBucket("d-0"), 2323u);
  EXPECT_EQ(RolloutBucket("d-1"), 1804u);
  EXPECT_EQ(RolloutBucket("device-000042"), 2415u);
  EXPECT_EQ(RolloutBucket("a"), 2250u);
  EXPECT_EQ(RolloutBucket(std::string(32, 'x')), 6306u);
  // Ids found by the same script at the ends of the range and at the edge
  // of a 0.1 canary.
  EXPECT_EQ(RolloutBucket("dev-3011"), 0u);
  EXPECT_EQ(RolloutBucket("dev-7845"), 999u);
  EXPECT_EQ(RolloutBucket("dev-8586"), 1000u);
  EXPECT_EQ(RolloutBucket("dev-39412"), 9999u);
}

TEST(RolloutBucketTest, CanaryBucketsRoundsAndClamps) {
  EXPECT_EQ(CanaryBuckets(0.1), 1000u);
  EXPECT_EQ(CanaryBuckets(0.00005), 1u);   // half a bucket rounds up
  EXPECT_EQ(CanaryBuckets(0.00004), 0u);
  EXPECT_EQ(CanaryBuckets(0.12345), 1235u);  // 1234.5 rounds away from zero
  EXPECT_EQ(CanaryBuckets(1.0), 10000u);
  EXPECT_EQ(CanaryBuckets(7.0), 10000u);
  EXPECT_EQ(CanaryBuckets(-0.5), 0u);
  EXPECT_EQ(CanaryBuckets(std::numeric_limits<double>::quiet_NaN()), 0u);
}

TEST(RolloutBucketTest, CanaryEdgeIsBucketBelowFractionTimesTenThousand) {
  EXPECT_TRUE(InCanary("dev-3011", 0.1));
  EXPECT_TRUE(InCanary("dev-7845", 0.1));    // bucket 999
  EXPECT_FALSE(InCanary("dev-8586", 0.1));   // bucket 1000
  EXPECT_TRUE(InCanary("dev-8586", 0.1001));
  EXPECT_FALSE(InCanary("dev-39412", 0.9999));
  EXPECT_TRUE(InCanary("dev-39412", 1.0));
}

TEST(RolloutBucketTest, TenThousandIdsSplitAsTheFraction) {
  int in_canary = 0;
  for (int i = 0; i < 10000; ++i) {
    in_canary += InCanary(absl::StrFormat("device-%05d", i), 0.1) ? 1 : 0;
  }
  // python3's hashlib counts 994 of device-00000 .. device-09999 below 1000.
  EXPECT_EQ(in_canary, 994);
  // And the property that matters whatever the ids: a uniform hash puts
  // Binomial(10000, 0.1) ids in the canary, standard deviation 30; 5 sigma
  // (150) fails a biased bucket (one hash byte, a mod bias) but no fair one.
  EXPECT_NEAR(in_canary, 1000, 150);
}

// --- MeantVersion ---------------------------------------------------------

TEST(RolloutControllerTest, CanaryDevicesAreMeantTheCandidateOthersTheServingVersion) {
  RolloutController c(RolloutSettings{});  // canary 0.1
  c.Restore(State(3));
  EXPECT_EQ(c.MeantVersion("dev-7845"), 3u);  // no candidate yet
  EXPECT_EQ(c.OnCommitted(4, /*differs_from_serving=*/true).kind, Kind::kNone);
  EXPECT_EQ(c.state().candidate_version, 4u);
  EXPECT_EQ(c.MeantVersion("dev-3011"), 4u);   // bucket 0
  EXPECT_EQ(c.MeantVersion("dev-7845"), 4u);   // bucket 999
  EXPECT_EQ(c.MeantVersion("dev-8586"), 3u);   // bucket 1000
  EXPECT_EQ(c.MeantVersion("sensor-17"), 3u);  // bucket 5870
}

TEST(RolloutControllerTest, DisabledRolloutServesEveryCommitAtOnce) {
  RolloutSettings s;
  s.enabled = false;
  RolloutController c(s);
  c.Restore(State(1));
  const RolloutDecision d = c.OnCommitted(2, true);
  EXPECT_EQ(d.kind, Kind::kPromoted);
  EXPECT_EQ(d.version, 2u);
  EXPECT_EQ(d.previous_serving, 1u);
  EXPECT_EQ(d.reason, "promoted: rollout disabled");
  EXPECT_EQ(c.state().serving_version, 2u);
  EXPECT_EQ(c.state().candidate_version, 0u);
  EXPECT_EQ(c.MeantVersion("dev-3011"), 2u);
  EXPECT_FALSE(c.TakeEvaluationTask(1));
  // A copy of the serving version serves too: the latest always does.
  EXPECT_EQ(c.OnCommitted(3, false).kind, Kind::kPromoted);
  EXPECT_EQ(c.state().serving_version, 3u);
}

TEST(RolloutControllerTest, OnlyADifferentVersionBecomesCandidateAndLaterOnesWait) {
  RolloutController c(RolloutSettings{});
  c.Restore(State(5));
  c.OnCommitted(6, /*differs_from_serving=*/false);  // a rollback's copy
  EXPECT_EQ(c.state().candidate_version, 0u);
  c.OnCommitted(7, true);
  c.OnCommitted(8, true);  // skipped: 7 is still in canary
  EXPECT_EQ(c.state().candidate_version, 7u);
}

// --- Promote or roll back -------------------------------------------------

// Serving v1 promoted at 900/1000 (window empty: the baseline is the
// reference), candidate v2 judged at round 4's close with tolerance 0.01:
// the edge is exactly 0.89.
RolloutDecision DecideAgainstBaseline(uint64_t candidate_correct) {
  RolloutController c(RolloutSettings{});  // min_devices 5, tolerance 0.01
  c.Restore(State(1, Sums(10, 1000, 900)));
  c.OnCommitted(2, true);
  return c.OnRoundClosed(4, 1000, Sums(5, 1000, candidate_correct));
}

TEST(RolloutControllerTest, CandidateExactlyAtToleranceEdgeIsPromoted) {
  const RolloutDecision d = DecideAgainstBaseline(890);
  EXPECT_EQ(d.kind, Kind::kPromoted);
  EXPECT_EQ(d.version, 2u);
  EXPECT_EQ(d.previous_serving, 1u);
  EXPECT_EQ(d.serving.correct, 900u);
  EXPECT_EQ(d.reason,
            "promoted: canary accuracy 0.8900 on 5 devices >= serving v1 0.9000 at promotion "
            "(10 devices) - 0.0100");
}

TEST(RolloutControllerTest, OneCorrectFewerThanTheEdgeRollsBack) {
  const RolloutDecision d = DecideAgainstBaseline(889);
  EXPECT_EQ(d.kind, Kind::kRolledBack);
  EXPECT_EQ(d.version, 2u);
  EXPECT_EQ(d.candidate.correct, 889u);
  EXPECT_EQ(d.reason,
            "rolled back: canary accuracy 0.8890 on 5 devices < serving v1 0.9000 at promotion "
            "(10 devices) - 0.0100");
}

TEST(RolloutControllerTest, PromotionMakesTheCandidateServeWithItsEvidenceAsBaseline) {
  RolloutController c(RolloutSettings{});
  c.Restore(State(1, Sums(10, 1000, 900)));
  c.OnCommitted(2, true);
  c.OnRoundClosed(4, 1000, Sums(6, 1000, 950));
  EXPECT_EQ(c.state().serving_version, 2u);
  EXPECT_EQ(c.state().candidate_version, 0u);
  EXPECT_EQ(c.state().baseline.devices, 6u);
  EXPECT_EQ(c.state().baseline.correct, 950u);
  EXPECT_EQ(c.MeantVersion("dev-3011"), 2u);
}

TEST(RolloutControllerTest, RollbackLeavesServingAloneAndNoCandidate) {
  RolloutController c(RolloutSettings{});
  c.Restore(State(1, Sums(10, 1000, 900)));
  c.OnCommitted(2, true);
  c.OnRoundClosed(4, 1000, Sums(5, 1000, 100));
  EXPECT_EQ(c.state().serving_version, 1u);
  EXPECT_EQ(c.state().candidate_version, 0u);
  EXPECT_EQ(c.state().baseline.correct, 900u);
  EXPECT_EQ(c.MeantVersion("dev-3011"), 1u);
  // The next different commit is the next candidate.
  c.OnCommitted(4, true);
  EXPECT_EQ(c.state().candidate_version, 4u);
}

TEST(RolloutControllerTest, ServingWindowIsTheReferenceOnceItHasMinDevices) {
  // Baseline 0.5, window 0.9 on 5 devices: the window decides, so 0.889
  // rolls back although it beats the baseline, and 0.89 is promoted.
  for (const auto& [correct, kind] : {std::pair{890u, Kind::kPromoted},
                                      std::pair{889u, Kind::kRolledBack}}) {
    RolloutController c(RolloutSettings{});
    c.Restore(State(1, Sums(10, 1000, 500)));
    c.OnCommitted(2, true);
    ReportMany(c, 4, 1, 5, 200, 900);
    const RolloutDecision d = c.OnRoundClosed(4, 1000, Sums(5, 1000, correct));
    EXPECT_EQ(d.kind, kind) << correct;
    EXPECT_EQ(d.serving.devices, 5u);
    EXPECT_EQ(d.serving.correct, 900u);
  }
}

TEST(RolloutControllerTest, ServingWindowBelowMinDevicesFallsBackToBaseline) {
  RolloutController c(RolloutSettings{});
  c.Restore(State(1, Sums(10, 1000, 900)));
  c.OnCommitted(2, true);
  ReportMany(c, 4, 1, 4, 250, 1000);  // a perfect window, but 4 devices < 5
  const RolloutDecision d = c.OnRoundClosed(4, 1000, Sums(5, 1000, 890));
  EXPECT_EQ(d.kind, Kind::kPromoted);
  EXPECT_EQ(d.serving.devices, 10u);
}

TEST(RolloutControllerTest, CandidateWaitsForMinDevicesAndForServingEvidence) {
  RolloutController c(RolloutSettings{});
  c.Restore(State(1, Sums(10, 1000, 900)));
  c.OnCommitted(2, true);
  EXPECT_EQ(c.OnRoundClosed(4, 1000, Sums(4, 1000, 1000)).kind, Kind::kNone);
  EXPECT_EQ(c.state().candidate_version, 2u);

  // A serving version promoted by hand has no baseline: with no window
  // either there is nothing to compare with, so the candidate waits.
  RolloutController hand(RolloutSettings{});
  hand.Restore(State(1));
  hand.OnCommitted(2, true);
  EXPECT_EQ(hand.OnRoundClosed(4, 1000, Sums(50, 5000, 5000)).kind, Kind::kNone);
  EXPECT_EQ(hand.state().candidate_version, 2u);
}

TEST(RolloutControllerTest, ComparisonIsExactForSumsFarBeyondCrossMultiplication) {
  // 0.9 and 0.89 with sums near 2^60: correct x samples x 10^6 is about
  // 2^140, beyond 128 bits, so a cross-multiplication would wrap.
  const uint64_t unit = uint64_t{1} << 50;
  for (const auto& [correct, kind] : {std::pair{890 * unit, Kind::kPromoted},
                                      std::pair{890 * unit - 1, Kind::kRolledBack}}) {
    RolloutController c(RolloutSettings{});
    c.Restore(State(1, Sums(10, 10 * (uint64_t{1} << 58), 9 * (uint64_t{1} << 58))));
    c.OnCommitted(2, true);
    EXPECT_EQ(c.OnRoundClosed(4, 0, Sums(7, 1000 * unit, correct)).kind, kind);
  }
  // Clear cases whose 128-bit cross products wrap to the wrong answer
  // (found with python3's unbounded integers): 0.95 and 0.5 of 2^60
  // samples against 0.9 of 2^61 + 3.
  const uint64_t serving_samples = (uint64_t{1} << 61) + 3;
  const uint64_t serving_correct = 2075258708292324559u;  // floor(0.9 x samples)
  const uint64_t samples = uint64_t{1} << 60;
  for (const auto& [correct, kind] : {std::pair{uint64_t{1095275429376504627u}, Kind::kPromoted},
                                      std::pair{uint64_t{576460752303423488u}, Kind::kRolledBack}}) {
    RolloutController c(RolloutSettings{});
    c.Restore(State(1, Sums(10, serving_samples, serving_correct)));
    c.OnCommitted(2, true);
    EXPECT_EQ(c.OnRoundClosed(4, 0, Sums(7, samples, correct)).kind, kind) << correct;
  }
}

TEST(RolloutControllerTest, ZeroToleranceNeedsEqualOrBetter) {
  RolloutSettings s;
  s.tolerance_ppm = 0;
  for (const auto& [correct, kind] : {std::pair{900u, Kind::kPromoted},
                                      std::pair{899u, Kind::kRolledBack}}) {
    RolloutController c(s);
    c.Restore(State(1, Sums(10, 1000, 900)));
    c.OnCommitted(2, true);
    EXPECT_EQ(c.OnRoundClosed(1, 0, Sums(5, 1000, correct)).kind, kind);
  }
}

// --- The window -----------------------------------------------------------

TEST(RolloutControllerTest, WindowCountsEachDeviceOncePerVersionAndRound) {
  RolloutController c(RolloutSettings{});  // window 3 rounds
  c.Restore(State(1));
  EXPECT_TRUE(c.RecordEvaluation(5, "d-0", Eval(1, 10, 7, 100)));
  EXPECT_FALSE(c.RecordEvaluation(5, "d-0", Eval(1, 10, 10, 1)));  // again, same round
  EXPECT_TRUE(c.RecordEvaluation(5, "d-0", Eval(2, 10, 3)));       // another version
  EXPECT_TRUE(c.RecordEvaluation(6, "d-0", Eval(1, 20, 20, 50)));  // next round
  EXPECT_TRUE(c.RecordEvaluation(6, "d-1", Eval(1, 5, 1, 7)));
  const EvaluationSums w = c.Window(1, 6);
  EXPECT_EQ(w.devices, 3u);
  EXPECT_EQ(w.samples, 35u);
  EXPECT_EQ(w.correct, 28u);
  EXPECT_EQ(w.loss_sum_q16, 157u);
  EXPECT_EQ(c.Window(2, 6).devices, 1u);
  EXPECT_EQ(c.Window(3, 6).devices, 0u);
  EXPECT_FALSE(c.RecordEvaluation(6, "d-2", Eval(0, 5, 1)));  // no version
}

TEST(RolloutControllerTest, WindowSpansItsRoundsAndForgetsOlderOnes) {
  RolloutController c(RolloutSettings{});  // window 3 rounds
  c.Restore(State(1));
  for (uint32_t round = 1; round <= 4; ++round) {
    ASSERT_TRUE(c.RecordEvaluation(round, "d-0", Eval(1, 10, round)));
  }
  // Rounds 2, 3, 4 at round 4; rounds 1, 2, 3 when asked at round 3.
  EXPECT_EQ(c.Window(1, 4).devices, 3u);
  EXPECT_EQ(c.Window(1, 4).correct, 2u + 3u + 4u);
  EXPECT_EQ(c.Window(1, 3).correct, 2u + 3u);  // round 1 already forgotten at round 4
  EXPECT_EQ(c.Window(1, 5).correct, 3u + 4u);
  // A late report for a round outside the window is refused, not stored.
  EXPECT_FALSE(c.RecordEvaluation(1, "d-9", Eval(1, 10, 10)));
  EXPECT_TRUE(c.RecordEvaluation(2, "d-9", Eval(1, 10, 10)));
  ASSERT_TRUE(c.RecordEvaluation(7, "d-0", Eval(1, 10, 7)));
  // Round 7 moved the window to 5..7: rounds 2..4 are gone, even asked
  // about with an older current round.
  EXPECT_EQ(c.Window(1, 4).devices, 0u);
  EXPECT_EQ(c.Window(1, 7).correct, 7u);
}

TEST(RolloutControllerTest, RoundCloseAlsoExpiresTheWindow) {
  RolloutSettings s;
  s.window_rounds = 1;
  RolloutController c(s);
  c.Restore(State(1));
  ASSERT_TRUE(c.RecordEvaluation(3, "d-0", Eval(1, 10, 5)));
  c.OnRoundClosed(4, 0, EvaluationSums{});
  EXPECT_FALSE(c.RecordEvaluation(3, "d-1", Eval(1, 10, 5)));
  EXPECT_EQ(c.Window(1, 3).devices, 0u);
}

// --- Drift ----------------------------------------------------------------

// Serving v1 promoted at 900/1000; margin 0.05: the edge is exactly 0.85.
TEST(RolloutControllerTest, DriftAlertRaisedOnlyBelowBaselineMinusMargin) {
  RolloutController c(RolloutSettings{});  // margin 0.05, drift_min_devices 5
  c.Restore(State(1, Sums(10, 1000, 900)));
  ReportMany(c, 1, 1, 5, 200, 850);
  c.OnRoundClosed(1, 111, EvaluationSums{});
  EXPECT_TRUE(c.alerts().empty()) << "0.85 is not below 0.90 - 0.05";

  RolloutController d(RolloutSettings{});
  d.Restore(State(1, Sums(10, 1000, 900)));
  ReportMany(d, 1, 1, 5, 200, 849);
  d.OnRoundClosed(1, 111, EvaluationSums{});
  ASSERT_EQ(d.alerts().size(), 1u);
  const v1::Alert& a = d.alerts()[0];
  EXPECT_EQ(a.kind(), "drift");
  EXPECT_EQ(a.model_version(), 1u);
  EXPECT_EQ(a.raised_round(), 1u);
  EXPECT_EQ(a.raised_unix_ms(), 111);
  EXPECT_EQ(a.window().correct(), 849u);
  EXPECT_EQ(a.window().devices(), 5u);
  EXPECT_EQ(a.baseline().correct(), 900u);
  EXPECT_EQ(a.message(),
            "accuracy 0.8490 over the last 3 rounds (5 devices) < 0.9000 at promotion "
            "(10 devices) - margin 0.0500");
}

TEST(RolloutControllerTest, DriftNeedsMinDevicesInTheWindow) {
  RolloutController c(RolloutSettings{});
  c.Restore(State(1, Sums(10, 1000, 900)));
  ReportMany(c, 1, 1, 4, 250, 0);
  c.OnRoundClosed(1, 0, EvaluationSums{});
  EXPECT_TRUE(c.alerts().empty());
  ReportMany(c, 2, 1, 1, 250, 0, "late-");
  c.OnRoundClosed(2, 0, EvaluationSums{});
  EXPECT_EQ(c.alerts().size(), 1u);
}

TEST(RolloutControllerTest, DriftAlertRaisedOncePerServingVersion) {
  RolloutController c(RolloutSettings{});
  c.Restore(State(1, Sums(10, 1000, 900)));
  for (uint32_t round = 1; round <= 4; ++round) {
    ReportMany(c, round, 1, 5, 200, 100);
    c.OnRoundClosed(round, round, EvaluationSums{});
  }
  ASSERT_EQ(c.alerts().size(), 1u);
  EXPECT_EQ(c.alerts()[0].raised_round(), 1u);
}

TEST(RolloutControllerTest, PromotionClearsTheDriftAlert) {
  RolloutController c(RolloutSettings{});
  c.Restore(State(1, Sums(10, 1000, 900)));
  ReportMany(c, 1, 1, 5, 200, 500);
  c.OnRoundClosed(1, 0, EvaluationSums{});
  ASSERT_EQ(c.alerts().size(), 1u);
  c.OnCommitted(2, true);
  // Against the drifted window (0.5) the candidate's 0.6 holds.
  ReportMany(c, 2, 1, 5, 200, 500);
  const RolloutDecision d = c.OnRoundClosed(2, 0, Sums(5, 1000, 600));
  EXPECT_EQ(d.kind, Kind::kPromoted);
  EXPECT_TRUE(c.alerts().empty());
}

TEST(RolloutControllerTest, ServeNowClearsAlertsDropsCandidateAndBaseline) {
  RolloutController c(RolloutSettings{});
  c.Restore(State(1, Sums(10, 1000, 900)));
  ReportMany(c, 1, 1, 5, 200, 500);
  c.OnRoundClosed(1, 0, EvaluationSums{});
  ASSERT_EQ(c.alerts().size(), 1u);
  c.OnCommitted(2, true);
  c.ServeNow(7);
  EXPECT_TRUE(c.alerts().empty());
  EXPECT_EQ(c.state().serving_version, 7u);
  EXPECT_EQ(c.state().candidate_version, 0u);
  EXPECT_EQ(c.state().baseline.devices, 0u);
  EXPECT_EQ(c.MeantVersion("dev-3011"), 7u);
}

TEST(RolloutControllerTest, ServingVersionWithoutBaselineTakesItsFirstFullWindow) {
  RolloutController c(RolloutSettings{});  // drift_min_devices 5
  c.Restore(State(1));
  ReportMany(c, 1, 1, 4, 100, 320);
  c.OnRoundClosed(1, 0, EvaluationSums{});
  EXPECT_EQ(c.state().baseline.devices, 0u) << "4 devices are fewer than drift_min_devices";
  ReportMany(c, 2, 1, 1, 100, 90, "x-");
  c.OnRoundClosed(2, 0, EvaluationSums{});
  EXPECT_EQ(c.state().baseline.devices, 5u);
  EXPECT_EQ(c.state().baseline.samples, 500u);
  EXPECT_EQ(c.state().baseline.correct, 410u);
  EXPECT_TRUE(c.alerts().empty());
  // The baseline stays as taken, and later windows are judged against it:
  // rounds 1..3 at 410 of 1000 is below 0.82 - 0.05.
  ReportMany(c, 3, 1, 5, 100, 0, "y-");
  c.OnRoundClosed(3, 0, EvaluationSums{});
  EXPECT_EQ(c.state().baseline.correct, 410u);
  ASSERT_EQ(c.alerts().size(), 1u);
  EXPECT_EQ(c.alerts()[0].window().correct(), 410u);
  EXPECT_EQ(c.alerts()[0].window().samples(), 1000u);
}

TEST(RolloutControllerTest, DriftIsJudgedBeforeTheCandidate) {
  // At round 3's close the serving v1 has drifted (0.5 against 0.9) and
  // the candidate v2 is promoted on its stored evaluations (0.95 against
  // the window's 0.5). v2's own window this round is 0.6: judged after
  // the promotion, it would raise an alert on v2 at once (0.6 < 0.95 -
  // 0.05); judged first, on v1, the alert is raised and the promotion
  // clears it.
  RolloutController c(RolloutSettings{});
  c.Restore(State(1, Sums(10, 1000, 900)));
  c.OnCommitted(2, true);
  ReportMany(c, 3, 1, 5, 200, 500);
  ReportMany(c, 3, 2, 5, 200, 600);
  const RolloutDecision d = c.OnRoundClosed(3, 0, Sums(20, 1000, 950));
  EXPECT_EQ(d.kind, Kind::kPromoted);
  EXPECT_TRUE(c.alerts().empty());
}

TEST(RolloutControllerTest, RestoreTakesStateAndForgetsWindowAndAlerts) {
  RolloutController c(RolloutSettings{});
  c.Restore(State(1, Sums(10, 1000, 900)));
  ReportMany(c, 1, 1, 5, 200, 100);
  c.OnRoundClosed(1, 0, EvaluationSums{});
  ASSERT_EQ(c.alerts().size(), 1u);
  c.Restore(State(4, Sums(3, 30, 20), 6));
  EXPECT_TRUE(c.alerts().empty());
  EXPECT_EQ(c.Window(1, 1).devices, 0u);
  EXPECT_EQ(c.state().serving_version, 4u);
  EXPECT_EQ(c.state().candidate_version, 6u);
  EXPECT_EQ(c.state().baseline.correct, 20u);
  EXPECT_EQ(c.MeantVersion("dev-3011"), 6u);
}

// --- Evaluation-only tasks ------------------------------------------------

TEST(RolloutControllerTest, EvaluationTasksOnlyForACandidateWithinThePerRoundBudget) {
  RolloutSettings s;
  s.evaluation_tasks_per_round = 3;
  RolloutController c(s);
  c.Restore(State(1));
  EXPECT_FALSE(c.TakeEvaluationTask(1)) << "no candidate needs evaluations";
  c.OnCommitted(2, true);
  for (int i = 0; i < 3; ++i) EXPECT_TRUE(c.TakeEvaluationTask(1)) << i;
  EXPECT_FALSE(c.TakeEvaluationTask(1));
  EXPECT_TRUE(c.TakeEvaluationTask(2)) << "a new round has a new budget";
  EXPECT_TRUE(c.TakeEvaluationTask(2));
  EXPECT_TRUE(c.TakeEvaluationTask(2));
  EXPECT_FALSE(c.TakeEvaluationTask(2));

  s.evaluation_tasks_per_round = 0;
  RolloutController none(s);
  none.Restore(State(1, {}, 2));
  EXPECT_FALSE(none.TakeEvaluationTask(1));
}

// --- Configuration --------------------------------------------------------

TEST(RolloutSettingsTest, DefaultsWhenUnset) {
  absl::StatusOr<RolloutSettings> s = RolloutSettingsFromConfig(v1::ServerConfig{});
  ASSERT_TRUE(s.ok()) << s.status();
  EXPECT_TRUE(s->enabled);
  EXPECT_EQ(s->canary_fraction, 0.1);
  EXPECT_EQ(s->canary_buckets, 1000u);
  EXPECT_EQ(s->min_devices, 5u);
  EXPECT_EQ(s->tolerance_ppm, 10000u);
  EXPECT_EQ(s->window_rounds, 3u);
  EXPECT_EQ(s->drift_margin_ppm, 50000u);
  EXPECT_EQ(s->drift_min_devices, 5u);
  EXPECT_EQ(s->evaluation_tasks_per_round, 32u);
}

TEST(RolloutSettingsTest, TakesEveryField) {
  absl::StatusOr<v1::ServerConfig> config = ParseServerConfig(R"pb(
    rollout { enabled: false canary_fraction: 0.25 min_devices: 12 tolerance: 0.0025 }
    drift { window_rounds: 7 margin: 0.1 min_devices: 20 }
    evaluation { tasks_per_round: 0 }
  )pb");
  ASSERT_TRUE(config.ok()) << config.status();
  absl::StatusOr<RolloutSettings> s = RolloutSettingsFromConfig(*config);
  ASSERT_TRUE(s.ok()) << s.status();
  EXPECT_FALSE(s->enabled);
  EXPECT_EQ(s->canary_fraction, 0.25);
  EXPECT_EQ(s->canary_buckets, 2500u);
  EXPECT_EQ(s->min_devices, 12u);
  EXPECT_EQ(s->tolerance_ppm, 2500u);
  EXPECT_EQ(s->window_rounds, 7u);
  EXPECT_EQ(s->drift_margin_ppm, 100000u);
  EXPECT_EQ(s->drift_min_devices, 20u);
  EXPECT_EQ(s->evaluation_tasks_per_round, 0u);
}

TEST(RolloutSettingsTest, OutOfRangeNamesTheField) {
  const std::pair<const char*, const char*> cases[] = {
      {"rollout { canary_fraction: 1.5 }",
       "rollout.canary_fraction must be in (0, 1] and at least 0.0001 (one bucket of 10000), got 1.5"},
      {"rollout { canary_fraction: 0 }", "rollout.canary_fraction must be in (0, 1]"},
      {"rollout { canary_fraction: 0.00001 }", "rollout.canary_fraction must be in (0, 1]"},
      {"rollout { canary_fraction: nan }", "rollout.canary_fraction must be in (0, 1]"},
      {"rollout { min_devices: 0 }", "rollout.min_devices must be >= 1, got 0"},
      {"rollout { tolerance: -0.01 }", "rollout.tolerance must be in [0, 1], got -0.01"},
      {"rollout { tolerance: 1.01 }", "rollout.tolerance must be in [0, 1], got 1.01"},
      {"drift { window_rounds: 0 }", "drift.window_rounds must be >= 1, got 0"},
      {"drift { margin: 0 }", "drift.margin must be in (0, 1]"},
      {"drift { margin: 2 }", "drift.margin must be in (0, 1] and at least 0.000001, got 2"},
      {"drift { min_devices: 0 }", "drift.min_devices must be >= 1, got 0"},
  };
  for (const auto& [text, message] : cases) {
    absl::StatusOr<v1::ServerConfig> config = ParseServerConfig(text);
    ASSERT_TRUE(config.ok()) << text;
    absl::StatusOr<RolloutSettings> s = RolloutSettingsFromConfig(*config);
    ASSERT_FALSE(s.ok()) << text;
    EXPECT_EQ(s.status().code(), absl::StatusCode::kInvalidArgument) << text;
    EXPECT_NE(s.status().message().find(message), std::string::npos)
        << text << ": " << s.status().message();
    // The server refuses to start on it: ValidateServerConfig says the same.
    v1::ServerConfig full = *config;
    ApplyDefaults(&full);
    const absl::Status v = ValidateServerConfig(full);
    EXPECT_EQ(v.code(), absl::StatusCode::kInvalidArgument) << text;
    EXPECT_NE(v.message().find(message), std::string::npos) << text << ": " << v.message();
  }
}

TEST(RolloutSettingsTest, ApplyDefaultsWritesTheRolloutDefaults) {
  v1::ServerConfig c;
  ApplyDefaults(&c);
  EXPECT_TRUE(c.rollout().has_enabled() && c.rollout().enabled());
  EXPECT_EQ(c.rollout().canary_fraction(), 0.1);
  EXPECT_EQ(c.rollout().min_devices(), 5u);
  EXPECT_EQ(c.rollout().tolerance(), 0.01);
  EXPECT_EQ(c.drift().window_rounds(), 3u);
  EXPECT_EQ(c.drift().margin(), 0.05);
  EXPECT_EQ(c.drift().min_devices(), 5u);
  EXPECT_TRUE(c.evaluation().has_tasks_per_round());
  EXPECT_EQ(c.evaluation().tasks_per_round(), 32u);
  EXPECT_TRUE(ValidateServerConfig(c).ok());
}

}  // namespace
}  // namespace tinyfed::server
