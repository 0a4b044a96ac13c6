// Robust aggregation against compromised devices (issue 15's acceptance):
// digits, 100 devices (Dirichlet 0.5), 30 rounds, 20% of the devices
// attacking with valid keys. For each attack, trimmed mean (beta 0.3) and
// the median end within 3 points of their own run without attackers,
// while plain FedAvg with no clipping is wrecked by the same attack (so
// the robust runs are not passing for want of an attack).
//
// Clients per round: the simulator's default K = 20. With 20 of the 100
// devices attacking, a round's participants hold 4 attackers on average
// (hypergeometric); trimmed mean at beta 0.3 drops floor(0.3 x 20) = 6 at
// each end of every value, enough in 94% of rounds, and the median needs
// a majority (10), which 99.9% of rounds have. A larger K would make the
// counts steadier but every run slower; the 3-point margin is the
// acceptance's.
//
// Every run has bounded influence off: the strategy alone stands between
// the attackers and the model (the median and the trimmed mean ignore
// sample counts by definition, server_config.proto AggregationPolicy).
//
// One ctest entry per attack, each about 6 runs of a few seconds.
#include <gtest/gtest.h>

#include <cstdio>
#include <iostream>
#include <string>

#include "simulate_command.h"

namespace tinyfed::agent {
namespace {

struct Run {
  std::string strategy;
  std::string attack;
  double final_accuracy = 0;
};

absl::StatusOr<v1::SimulationReport> Simulate(const std::string& strategy,
                                              const std::string& attack) {
  SimulateOptions o;  // digits, 100 devices, Dirichlet 0.5, 30 rounds, K 20, seed 1
  o.progress = false;
  o.bounded_influence = false;
  o.strategy = strategy;
  if (strategy == "trimmed-mean") o.trim = 0.3;
  if (attack != "none") {
    o.attack = attack;
    o.attackers = 0.2;
  }
  std::FILE* sink = std::tmpfile();
  absl::StatusOr<v1::SimulationReport> report = RunSimulate(o, sink, sink);
  std::fclose(sink);
  return report;
}

class RobustAggregation : public ::testing::TestWithParam<std::string> {};

TEST_P(RobustAggregation, TrimmedMeanAndMedianHoldWhilePlainFedAvgBreaks) {
  const std::string attack = GetParam();
  const absl::StatusOr<v1::SimulationReport> fedavg_clean = Simulate("fedavg", "none");
  ASSERT_TRUE(fedavg_clean.ok()) << fedavg_clean.status()
                                 << " (the digits data comes from deploy/setup.sh)";
  ASSERT_EQ(fedavg_clean->config().attack(), "none");
  for (const std::string strategy : {"trimmed-mean", "median"}) {
    const absl::StatusOr<v1::SimulationReport> clean = Simulate(strategy, "none");
    ASSERT_TRUE(clean.ok()) << clean.status();
    const absl::StatusOr<v1::SimulationReport> attacked = Simulate(strategy, attack);
    ASSERT_TRUE(attacked.ok()) << attacked.status();
    ASSERT_EQ(attacked->config().strategy(), strategy);
    ASSERT_EQ(attacked->config().attack(), attack);
    ASSERT_EQ(attacked->rounds_size(), 30);
    std::cout << strategy << ": clean " << clean->final_accuracy() << ", 20% " << attack << " "
              << attacked->final_accuracy() << " (fedavg clean "
              << fedavg_clean->final_accuracy() << ": "
              << 100 * (attacked->final_accuracy() - fedavg_clean->final_accuracy())
              << " points)\n";
    // The acceptance's margin: within 3 percentage points of the same
    // strategy's run without attackers.
    EXPECT_NEAR(attacked->final_accuracy(), clean->final_accuracy(), 0.03) << strategy;
    for (const v1::SimulationRound& row : attacked->rounds()) {
      EXPECT_EQ(row.participants(), 20u) << strategy << " round " << row.round() << " committed";
    }
  }
  // The attack is real: plain FedAvg without clipping ends far below its
  // clean run. 30 points is the margin claimed; measured, the damage is
  // larger (the test prints it).
  const absl::StatusOr<v1::SimulationReport> broken = Simulate("fedavg", attack);
  ASSERT_TRUE(broken.ok()) << broken.status();
  std::cout << "fedavg, no clipping: clean " << fedavg_clean->final_accuracy() << ", 20% "
            << attack << " " << broken->final_accuracy() << "\n";
  EXPECT_LT(broken->final_accuracy(), fedavg_clean->final_accuracy() - 0.30);
}

INSTANTIATE_TEST_SUITE_P(Attacks, RobustAggregation,
                         ::testing::Values("sign-flip", "scaled", "random"),
                         [](const ::testing::TestParamInfo<std::string>& info) {
                           std::string name = info.param;
                           for (char& c : name) c = c == '-' ? '_' : c;
                           return name;
                         });

}  // namespace
}  // namespace tinyfed::agent
