// Central differential privacy in the simulator (issue 15): the epsilon
// each round has spent is reported (table and JSON), never decreases, ends
// at most at the target --dp_epsilon, and a spent budget stops training.
// Smaller than the README's privacy-utility runs (200 devices, 50 a
// round, a few rounds): what is pinned here is the accounting, not the
// accuracy.
#include <gtest/gtest.h>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <iostream>

#include "privacy.h"
#include "simulate_command.h"

namespace tinyfed::agent {
namespace {

SimulateOptions SmallDpRun() {
  SimulateOptions o;
  o.devices = 200;
  o.clients_per_round = 50u;
  o.rounds = 6;
  o.progress = false;
  return o;
}

absl::StatusOr<v1::SimulationReport> Simulate(const SimulateOptions& o) {
  std::FILE* sink = std::tmpfile();
  absl::StatusOr<v1::SimulationReport> report = RunSimulate(o, sink, sink);
  std::fclose(sink);
  return report;
}

TEST(SimulatePrivacy, EpsilonIsReportedEveryRoundNeverDecreasesAndEndsAtTheTarget) {
  SimulateOptions o = SmallDpRun();
  o.dp_epsilon = 4.0;
  const absl::StatusOr<v1::SimulationReport> report = Simulate(o);
  ASSERT_TRUE(report.ok()) << report.status() << " (the digits data comes from deploy/setup.sh)";
  EXPECT_GE(report->config().dp_noise(), 0.1) << "a noise multiplier was calibrated";
  EXPECT_EQ(report->config().dp_epsilon(), 4.0);
  EXPECT_EQ(report->config().dp_clip(), kDefaultDpClip);
  EXPECT_EQ(report->config().dp_delta(), kDefaultDpDelta);
  // The noise is calibrated for exactly --rounds versions: all of them run.
  ASSERT_EQ(report->rounds_size(), 6);
  double before = 0;
  for (const v1::SimulationRound& row : report->rounds()) {
    std::cout << "round " << row.round() << ": epsilon " << row.epsilon() << ", accuracy "
              << row.accuracy() << "\n";
    EXPECT_EQ(row.participants(), 50u) << "round " << row.round() << " committed";
    // Every committed version is one more release: the total grows.
    EXPECT_GT(row.epsilon(), before) << "round " << row.round();
    before = row.epsilon();
  }
  // At most the target: the server sums the versions' rho one by one, the
  // calibration multiplies one rho by the rounds; the two doubles may
  // differ in their last bits, hence the relative 1e-12.
  EXPECT_LE(before, 4.0 * (1 + 1e-12));
  // And close to it: the multiplier is the smallest multiple of 2^-16 that
  // meets the target, so the last step spends within a fraction of a
  // percent of it (1% allows for z's granularity: epsilon moves by about
  // 2 x 2^-16 / z relative per step of z, far below 1% for z >= 0.1).
  EXPECT_GE(before, 4.0 * 0.99);
}

TEST(SimulatePrivacy, TrainingStopsWhenTheBudgetIsSpent) {
  SimulateOptions o = SmallDpRun();
  o.rounds = 10;
  o.dp_noise = 5.0;
  o.dp_epsilon = 2.0;  // a budget, with the noise given: training stops when it is spent
  const auto start = std::chrono::steady_clock::now();
  const absl::StatusOr<v1::SimulationReport> report = Simulate(o);
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  ASSERT_TRUE(report.ok()) << report.status() << " (the digits data comes from deploy/setup.sh)";
  // The versions the budget allows, from the accountant's closed form
  // (server/privacy.h): one release of a 64x10 head clipped to the default
  // bound (clip x 2^12 master steps, the head's default 12 fraction bits)
  // with sigma = z x that bound, composed n times.
  const uint64_t norm_bound = static_cast<uint64_t>(std::llround(kDefaultDpClip * 4096));
  const double sensitivity = norm_bound * 65536.0 + std::sqrt(650.0) / 2;
  const double sigma = 5.0 * 65536.0 * static_cast<double>(norm_bound);
  const double rho = sensitivity * sensitivity / (2 * sigma * sigma);
  int allowed = 0;
  while (server::EpsilonFromRho((allowed + 1) * rho, kDefaultDpDelta) <= 2.0) ++allowed;
  ASSERT_GE(allowed, 1);
  ASSERT_LT(allowed, 10) << "the budget must run out before --rounds for this test to mean much";
  std::cout << allowed << " versions within epsilon 2 at z 5; the run took " << seconds << " s\n";
  ASSERT_EQ(report->rounds_size(), allowed) << "the run stops at the budget";
  for (const v1::SimulationRound& row : report->rounds()) {
    EXPECT_EQ(row.participants(), 50u) << "round " << row.round() << " committed";
    EXPECT_LE(row.epsilon(), 2.0);
  }
  EXPECT_NEAR(report->rounds(allowed - 1).epsilon(),
              server::EpsilonFromRho(allowed * rho, kDefaultDpDelta), 1e-9)
      << "the server's total is the n-fold composition";
  // Stopping means stopping: no round waiting out its 120 s deadline for
  // updates the closed server will never ask for.
  EXPECT_LT(seconds, 60);
}

}  // namespace
}  // namespace tinyfed::agent
