// tinyfed-admin's output for aggregation strategies and central DP: the
// status's aggregation and privacy lines, and verify.
#include <string>

#include <gtest/gtest.h>

#include "admin_output.h"

namespace tinyfed::admin {
namespace {

bool Has(const std::string& text, const std::string& line) {
  return text.find(line) != std::string::npos;
}

TEST(AggregationOutputTest, StatusNamesTheStrategyWithItsParameters) {
  v1::ServerStatus status;
  v1::Aggregation& a = *status.mutable_aggregation();
  a.set_strategy("trimmed-mean");
  a.set_server_lr_q16(1u << 16);
  a.set_trim_fraction_ppm(300000);
  a.set_norm_bound(8);
  a.set_weight_median_multiple_q16(3u << 16);
  const std::string text = FormatServerStatus(status);
  // Values one column after the longest key ("serving version"). The
  // trimmed mean gives every update one vote: the configured weight cap is
  // not shown, since it applies to nothing.
  EXPECT_TRUE(Has(text,
                  "aggregation:      trimmed-mean: server lr 1, trim fraction 0.3; norm bound 8 "
                  "master steps\n"))
      << text;
  a.set_strategy("fedavg");
  EXPECT_TRUE(Has(FormatServerStatus(status),
                  "aggregation:      fedavg: server lr 1; weight cap 3x median, norm bound 8 "
                  "master steps\n"))
      << FormatServerStatus(status);
  EXPECT_TRUE(Has(text, "privacy:          off\n")) << text;
}

TEST(AggregationOutputTest, EachStrategyShowsTheParametersItUses) {
  v1::Aggregation a;
  a.set_strategy("fedadam");
  a.set_momentum_q16(58982);             // 0.9 to the nearest 2^-16
  a.set_second_moment_decay_q16(64881);  // 0.99 to the nearest 2^-16
  a.set_adam_step(655);                  // 0.01 master steps, to the nearest 2^-16
  a.set_adam_tau(65536);
  // %g's six significant digits of the Q16.16 values: 58982 / 65536 =
  // 0.899994, 64881 / 65536 = 0.990005, 655 / 65536 = 0.00999451.
  EXPECT_EQ(FormatAggregation(a),
            "fedadam: beta1 0.899994, beta2 0.990005, step 0.00999451, tau 1 (master steps); "
            "no influence bounds");
  v1::Aggregation m;
  m.set_strategy("fedavgm");
  m.set_server_lr_q16(1u << 15);
  m.set_momentum_q16(1u << 15);
  m.set_uniform_weights(true);
  m.set_norm_bound(64);
  EXPECT_EQ(FormatAggregation(m),
            "fedavgm: server lr 0.5, momentum 0.5; uniform weights, norm bound 64 master steps");
  EXPECT_EQ(FormatAggregation(v1::Aggregation()), "-");
}

TEST(AggregationOutputTest, PrivacySaysWhatWasSpentOfWhatBudget) {
  v1::PrivacyStatus p;
  p.set_enabled(true);
  p.set_epsilon_spent(1.23456);
  p.set_epsilon_budget(8);
  p.set_delta(1e-5);
  p.set_noised_versions(12);
  p.set_rounds_left(40);
  EXPECT_EQ(FormatPrivacy(p),
            "epsilon 1.235 spent of budget 8 at delta 1e-05 (12 versions noised, 40 rounds left)");
  p.set_budget_spent(true);
  p.set_rounds_left(0);
  p.set_epsilon_spent(7.99);
  EXPECT_EQ(FormatPrivacy(p),
            "epsilon 7.99 spent of budget 8 at delta 1e-05 (12 versions noised, budget spent)");
  p.set_budget_spent(false);
  p.set_epsilon_budget(0);
  p.set_noised_versions(1);
  EXPECT_EQ(FormatPrivacy(p), "epsilon 7.99 spent of no budget at delta 1e-05 (1 version noised)");
}

TEST(AggregationOutputTest, VerifySaysMatchesOrHowManyValuesDiffer) {
  v1::VerifyVersionResponse r;
  r.set_version(7);
  r.set_round(6);
  r.set_strategy("median");
  r.set_updates(20);
  r.set_committed_checksum(0x0badf00d);
  r.set_recomputed_checksum(0x0badf00d);
  r.set_matches(true);
  std::string text = FormatVerify(r);
  EXPECT_TRUE(Has(text, "version:              7\n")) << text;
  EXPECT_TRUE(Has(text, "strategy:             median\n")) << text;
  EXPECT_TRUE(Has(text, "updates:              20\n")) << text;
  EXPECT_TRUE(Has(text, "committed checksum:   0x0badf00d\n")) << text;
  EXPECT_TRUE(Has(text, "recomputed checksum:  0x0badf00d\n")) << text;
  EXPECT_TRUE(Has(text, "result:               matches\n")) << text;
  r.set_recomputed_checksum(0x12345678);
  r.set_matches(false);
  r.set_differing_values(3);
  text = FormatVerify(r);
  EXPECT_TRUE(Has(text, "result:               3 values differ\n")) << text;
  EXPECT_FALSE(Has(text, "matches")) << text;
}

TEST(AggregationOutputTest, VersionsGetAnEpsColumnOnlyWhenSomeVersionWasNoised) {
  v1::ListVersionsResponse list;
  v1::ModelVersion* v3 = list.add_versions();
  v3->set_version(3);
  v3->set_parent_version(2);
  v3->set_round(2);
  v3->mutable_metrics()->set_participants(4);
  v3->mutable_aggregation()->set_strategy("fedavg");
  v1::ModelVersion* v2 = list.add_versions();
  *v2 = *v3;
  v2->set_version(2);
  v2->set_parent_version(1);
  v2->set_round(1);
  EXPECT_FALSE(Has(FormatVersions(list), "EPS")) << FormatVersions(list);

  v3->mutable_aggregation()->set_noise_sigma(1000);
  v3->mutable_aggregation()->set_epsilon_spent(2.71828);
  const std::string text = FormatVersions(list);
  EXPECT_TRUE(Has(text, " EPS  COMMITTED (UTC)\n")) << text;
  EXPECT_TRUE(Has(text, "2.718  ")) << text;  // four significant digits
  // Version 2 was not noised: its row has no epsilon.
  const size_t line = text.find("\n      2 ");
  ASSERT_NE(line, std::string::npos) << text;
  const std::string row = text.substr(line + 1, text.find('\n', line + 1) - line - 1);
  EXPECT_EQ(row.find("2.718"), std::string::npos) << row;
}

}  // namespace
}  // namespace tinyfed::admin
