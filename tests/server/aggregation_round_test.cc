// Aggregation strategies and central DP through the RoundManager, on a real
// SQLite store: every committed version is what AggregateRound computes
// from what the store holds (the round's updates, the parent's head and
// optimizer state, the version's noise), so an auditor can recompute it; a
// server optimizer's state survives a restart exactly; the DP noise comes
// from the manager's RandomSource with the configured sigma; the privacy
// accountant's totals follow the closed form, accumulate and survive a
// restart; a spent budget stops training, also after a restart; and
// devices never see the Aggregation record.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "metrics.h"
#include "privacy.h"
#include "reference_fedavg.h"
#include "round_manager.h"
#include "server_config.h"
#include "server_test_support.h"
#include "strategy.h"

namespace tinyfed::server {
namespace {

using testing::CheckIn;
using testing::MakeUpdate;
using testing::MatchesReferenceFedAvg;
using testing::Submit;
using testing::TempDir;

constexpr uint32_t kFeatures = 16;
constexpr uint32_t kClasses = 4;
constexpr size_t kValues = kFeatures * kClasses + kClasses;

v1::ServerConfig SmallConfig(const std::string& strategy) {
  v1::ServerConfig c;
  c.mutable_head()->set_feature_count(kFeatures);
  c.mutable_head()->set_class_count(kClasses);
  c.mutable_policy()->set_target_updates(5);
  c.mutable_policy()->set_min_updates(2);
  c.mutable_policy()->set_over_selection(1.2);  // 6 tasks
  c.mutable_policy()->set_round_deadline_ms(10'000);
  c.mutable_aggregation()->set_strategy(strategy);
  ApplyDefaults(&c);
  return c;
}

// Central DP on fedavg: clip bound 0.25 real units = 1024 master steps (12
// fraction bits), noise multiplier 1, so sigma = 65536 x 1024 = 2^26 units
// of 2^-16 master steps.
v1::ServerConfig PrivateConfig(double epsilon_budget = 0) {
  v1::ServerConfig c = SmallConfig("fedavg");
  c.mutable_influence()->set_max_update_norm(0.25);
  c.mutable_influence()->set_max_norm_median_multiple(0);
  c.mutable_privacy()->set_noise_multiplier(1);
  c.mutable_privacy()->set_delta(1e-5);
  c.mutable_privacy()->set_epsilon_budget(epsilon_budget);
  EXPECT_TRUE(ValidateServerConfig(c).ok()) << ValidateServerConfig(c);
  return c;
}
constexpr uint64_t kNormBound = 1024;
constexpr uint64_t kSigma = uint64_t{1} << 26;

// Deterministic bytes, so that a test can draw the same noise again.
class SeededRandom final : public RandomSource {
 public:
  explicit SeededRandom(uint64_t seed) : bits_(seed) {}
  absl::Status Fill(absl::Span<uint8_t> out) override {
    for (uint8_t& b : out) b = static_cast<uint8_t>(bits_() >> 56);
    return absl::OkStatus();
  }

 private:
  std::mt19937_64 bits_;
};

class AggregationRoundTest : public ::testing::Test {
 protected:
  // A manager on `db` (a restart when the file exists). `seed`: the noise
  // source is a SeededRandom of it; none: the OS's.
  void Start(const v1::ServerConfig& config, const std::string& db,
             std::optional<uint64_t> seed = std::nullopt) {
    manager_.reset();
    store_.reset();
    auto store = OpenSqliteModelStore(dir_.File(db));
    ASSERT_TRUE(store.ok()) << store.status();
    store_ = std::move(*store);
    auto initial = InitialModel(config, clock_.NowMs());
    ASSERT_TRUE(initial.ok()) << initial.status();
    std::unique_ptr<RandomSource> random;
    if (seed) random = std::make_unique<SeededRandom>(*seed);
    auto manager =
        RoundManager::Create(config, *initial, store_.get(), &clock_, &metrics_, std::move(random));
    ASSERT_TRUE(manager.ok()) << manager.status();
    manager_ = std::move(*manager);
  }

  // Five devices train the open round; it closes at its target. Each
  // update's values depend only on (round, device), so two servers given
  // the same rounds see the same updates. Returns them.
  std::vector<v1::Update> RunRound() {
    std::vector<v1::Update> updates;
    const uint32_t round = manager_->Snapshot().round;
    for (int i = 0; i < 5; ++i) {
      const std::string device = "dev-" + std::to_string(i);
      auto response = CheckIn(*manager_, device);
      EXPECT_TRUE(response.ok() && response->has_task()) << device;
      if (!response.ok() || !response->has_task()) return {};
      const v1::RoundTask& task = response->task();
      EXPECT_FALSE(task.model().has_aggregation()) << "a task's model is for devices";
      std::mt19937 rng(round * 1000 + static_cast<uint32_t>(i));
      updates.push_back(MakeUpdate(task.model().spec(), task.round(), device, task.task_token(),
                                   task.model().version(), 10 + 7 * static_cast<uint32_t>(i),
                                   rng, 200));
    }
    for (const v1::Update& u : updates) EXPECT_TRUE(Submit(*manager_, u).ok());
    manager_->WaitIdle();
    return updates;
  }

  // Recomputes committed `version` from the store alone, as an auditor
  // would, and compares it and its stored optimizer state.
  ::testing::AssertionResult RecomputesFromStore(uint32_t version,
                                                 const StrategyParams& expected_params) {
    auto committed = store_->GetVersion(version);
    auto parent = store_->GetVersion(version - 1);
    auto parent_state = store_->AggregationStateOf(version - 1);
    auto state = store_->AggregationStateOf(version);
    if (!committed.ok() || !parent.ok() || !parent_state.ok() || !state.ok()) {
      return ::testing::AssertionFailure() << "store read failed";
    }
    auto params = StrategyParamsFromRecord(committed->aggregation());
    if (!params.ok()) return ::testing::AssertionFailure() << params.status();
    if (!(*params == expected_params)) {
      return ::testing::AssertionFailure()
             << "recorded parameters differ from the config's: "
             << committed->aggregation().ShortDebugString();
    }
    auto stored = store_->RoundUpdates(committed->round());
    if (!stored.ok()) return ::testing::AssertionFailure() << stored.status();
    std::vector<v1::Update> updates(stored->size());
    std::vector<const v1::Update*> set;
    for (size_t i = 0; i < stored->size(); ++i) {
      if (!updates[i].ParseFromString((*stored)[i].payload)) {
        return ::testing::AssertionFailure() << "stored update does not parse";
      }
      set.push_back(&updates[i]);
    }
    auto base_state = OptimizerStateFromProto(*parent_state, kValues);
    if (!base_state.ok()) return ::testing::AssertionFailure() << base_state.status();
    const std::vector<int64_t> noise(state->noise().begin(), state->noise().end());
    auto expected = AggregateRound(*params, *LoadHead(*parent), *base_state, set, noise);
    if (!expected.ok()) return ::testing::AssertionFailure() << expected.status();
    if (!(*LoadHead(*committed) == expected->next)) {
      return ::testing::AssertionFailure() << "version " << version << " is not its recomputation";
    }
    auto committed_state = OptimizerStateFromProto(*state, kValues);
    if (!committed_state.ok()) return ::testing::AssertionFailure() << committed_state.status();
    if (!(*committed_state == expected->state)) {
      return ::testing::AssertionFailure() << "version " << version << "'s stored optimizer state "
                                           << "is not the recomputed one";
    }
    if (committed->metrics().participants() != expected->participants ||
        committed->aggregation().trimmed() != expected->trimmed) {
      return ::testing::AssertionFailure() << "participants or trimmed differ";
    }
    return ::testing::AssertionSuccess();
  }

  TempDir dir_;
  FakeClock clock_;
  ServerMetrics metrics_;
  std::unique_ptr<ModelStore> store_;
  std::unique_ptr<RoundManager> manager_;
};

// For each strategy, two rounds (the second from the first's optimizer
// state): each version is AggregateRound over what the store holds, with
// the parameters the config gives.
TEST_F(AggregationRoundTest, EveryStrategyCommitsWhatTheStoreRecomputes) {
  for (const char* strategy : {"fedavg", "trimmed-mean", "median", "fedavgm", "fedadam"}) {
    SCOPED_TRACE(strategy);
    const v1::ServerConfig config = SmallConfig(strategy);
    Start(config, std::string(strategy) + ".db");
    std::vector<std::vector<v1::Update>> rounds;
    for (int r = 0; r < 2; ++r) rounds.push_back(RunRound());
    ASSERT_EQ(manager_->Snapshot().latest_version, 3u);
    for (uint32_t version : {2u, 3u}) {
      EXPECT_TRUE(RecomputesFromStore(version, StrategyParamsFromConfig(config)))
          << "version " << version;
      auto committed = store_->GetVersion(version);
      ASSERT_TRUE(committed.ok());
      EXPECT_EQ(committed->aggregation().strategy(), strategy);
      EXPECT_EQ(committed->aggregation().noise_sigma(), 0u);
    }
    const std::string name = strategy;
    auto state = store_->AggregationStateOf(3);
    ASSERT_TRUE(state.ok());
    // Only the server optimizers keep a state; nobody adds noise here.
    EXPECT_EQ(state->momentum_size() != 0, name == "fedavgm" || name == "fedadam");
    EXPECT_EQ(!state->second_moment().empty(), name == "fedadam");
    EXPECT_EQ(state->noise_size(), 0);
    if (name == "fedavg") {
      // And FedAvg is still the independent reference's FedAvg.
      for (uint32_t version : {2u, 3u}) {
        auto committed = store_->GetVersion(version);
        auto base = store_->GetVersion(version - 1);
        ASSERT_TRUE(committed.ok() && base.ok());
        committed->clear_aggregation();
        EXPECT_TRUE(MatchesReferenceFedAvg(*committed, *base, rounds[version - 2]));
      }
    }
    // The trimmed mean's t: floor(0.2 x 5) = 1 per end.
    if (name == "trimmed-mean") {
      EXPECT_EQ(store_->GetVersion(2)->aggregation().trimmed(), 1u);
    }
  }
}

// FedAdam's state crosses a restart exactly: a server restarted between
// two rounds commits the very version an uninterrupted one does.
TEST_F(AggregationRoundTest, FedAdamResumesItsStateExactlyAfterARestart) {
  const v1::ServerConfig config = SmallConfig("fedadam");
  Start(config, "uninterrupted.db");
  RunRound();
  RunRound();
  auto uninterrupted = store_->GetVersion(3);
  auto uninterrupted_state = store_->AggregationStateOf(3);
  ASSERT_TRUE(uninterrupted.ok() && uninterrupted_state.ok());

  Start(config, "restarted.db");
  RunRound();
  Start(config, "restarted.db");  // a new process on the same store
  ASSERT_EQ(manager_->Snapshot().latest_version, 2u);
  RunRound();
  auto restarted = store_->GetVersion(3);
  auto restarted_state = store_->AggregationStateOf(3);
  ASSERT_TRUE(restarted.ok() && restarted_state.ok());
  EXPECT_EQ(restarted->weights(), uninterrupted->weights());
  EXPECT_EQ(restarted->bias(), uninterrupted->bias());
  EXPECT_EQ(restarted->checksum(), uninterrupted->checksum());
  EXPECT_EQ(restarted_state->SerializeAsString(), uninterrupted_state->SerializeAsString());
  // Not vacuous: the second round's base state is not all zeros.
  auto first_state = store_->AggregationStateOf(2);
  ASSERT_TRUE(first_state.ok());
  bool any_momentum = false;
  for (int64_t m : first_state->momentum()) any_momentum |= m != 0;
  EXPECT_TRUE(any_momentum);
}

// One noised release's rho in closed form: Delta = B x 2^16 + sqrt(d) / 2
// in 2^-16 master steps (the clipped contributions' rounding adds at most
// half a unit per value), rho = Delta^2 / (2 sigma^2).
double ClosedFormRho() {
  const double delta_l2 =
      static_cast<double>(kNormBound) * 65536.0 + std::sqrt(static_cast<double>(kValues)) / 2;
  return delta_l2 * delta_l2 / (2.0 * static_cast<double>(kSigma) * static_cast<double>(kSigma));
}

// With privacy: the noise comes from the manager's source with the
// configured sigma, the version is AggregateRound with that noise, and the
// record's figures follow the closed form and add up over rounds and
// across a restart.
TEST_F(AggregationRoundTest, CentralDpNoisesFromTheSourceAndAccountsEveryVersion) {
  const v1::ServerConfig config = PrivateConfig();
  Start(config, "private.db", /*seed=*/2024);
  RunRound();
  StrategyParams params = StrategyParamsFromConfig(config);
  ASSERT_TRUE(params.uniform_weights);
  EXPECT_TRUE(RecomputesFromStore(2, params));

  // The stored noise is the source's first draw at sigma 2^26: drawn again
  // here from the same seed.
  SeededRandom again(2024);
  auto expected_noise = DiscreteGaussianNoise(kSigma, kValues, again);
  ASSERT_TRUE(expected_noise.ok()) << expected_noise.status();
  auto state = store_->AggregationStateOf(2);
  ASSERT_TRUE(state.ok());
  EXPECT_EQ(std::vector<int64_t>(state->noise().begin(), state->noise().end()), *expected_noise);

  const double rho = ClosedFormRho();
  // Doubles: the record and the closed form compute the same few products
  // in a different order; 1e-12 relative is far above their rounding
  // (a few ulps) and far below any real difference (one master step of
  // clip bound changes rho by 0.2%).
  auto v2 = store_->GetVersion(2);
  ASSERT_TRUE(v2.ok());
  const v1::Aggregation& a2 = v2->aggregation();
  EXPECT_EQ(a2.noise_sigma(), kSigma);
  EXPECT_EQ(a2.norm_bound(), kNormBound);
  EXPECT_TRUE(a2.uniform_weights());
  EXPECT_NEAR(a2.rho(), rho, rho * 1e-12);
  EXPECT_NEAR(a2.rho_spent(), rho, rho * 1e-12);
  EXPECT_DOUBLE_EQ(a2.delta(), 1e-5);
  // Never above the Bun-Steinke conversion rho + 2 sqrt(rho ln(1/delta)).
  EXPECT_GT(a2.epsilon_spent(), 0);
  EXPECT_LE(a2.epsilon_spent(), rho + 2 * std::sqrt(rho * std::log(1e5)));

  RunRound();
  EXPECT_TRUE(RecomputesFromStore(3, params));
  auto v3 = store_->GetVersion(3);
  ASSERT_TRUE(v3.ok());
  EXPECT_NEAR(v3->aggregation().rho_spent(), 2 * rho, rho * 1e-12);
  EXPECT_GT(v3->aggregation().epsilon_spent(), a2.epsilon_spent());
  // Each round draws new noise.
  auto state3 = store_->AggregationStateOf(3);
  ASSERT_TRUE(state3.ok());
  EXPECT_NE(state3->SerializeAsString(), state->SerializeAsString());

  // A restart takes the totals from the store.
  Start(config, "private.db", /*seed=*/7);
  EXPECT_NEAR(manager_->AggregationInForce().rho_spent(), 2 * rho, rho * 1e-12);
  EXPECT_EQ(manager_->PrivacyInForce().noised_versions(), 2u);
  EXPECT_EQ(manager_->PrivacyInForce().epsilon_spent(), v3->aggregation().epsilon_spent());
  EXPECT_FALSE(manager_->PrivacyInForce().budget_spent());
  RunRound();
  auto v4 = store_->GetVersion(4);
  ASSERT_TRUE(v4.ok());
  EXPECT_NEAR(v4->aggregation().rho_spent(), 3 * rho, rho * 1e-12);
  EXPECT_TRUE(RecomputesFromStore(4, params));
  EXPECT_EQ(manager_->PrivacyInForce().noised_versions(), 3u);
}

// A budget that two releases fit and three do not: after the second
// version no round opens (no task, the status says so, the gauges too),
// and a restart keeps it closed.
TEST_F(AggregationRoundTest, ASpentBudgetStopsTrainingAlsoAfterARestart) {
  const double rho = ClosedFormRho();
  // Between what 2 and 3 releases spend (epsilon grows with rho).
  const double budget = EpsilonFromRho(2.5 * rho, 1e-5);
  const v1::ServerConfig config = PrivateConfig(budget);
  Start(config, "budget.db", /*seed=*/99);
  EXPECT_EQ(manager_->PrivacyInForce().rounds_left(), 2u);
  RunRound();
  EXPECT_TRUE(manager_->Snapshot().open);
  EXPECT_EQ(manager_->PrivacyInForce().rounds_left(), 1u);
  RunRound();
  ASSERT_EQ(manager_->Snapshot().latest_version, 3u);

  auto closed = [&](const char* when) {
    SCOPED_TRACE(when);
    EXPECT_FALSE(manager_->Snapshot().open);
    auto response = CheckIn(*manager_, "dev-new");
    ASSERT_TRUE(response.ok()) << response.status();
    EXPECT_FALSE(response->has_task());
    EXPECT_EQ(response->retry().retry_after_ms(), config.policy().retry_after_ms());
    const v1::PrivacyStatus privacy = manager_->PrivacyInForce();
    EXPECT_TRUE(privacy.enabled());
    EXPECT_TRUE(privacy.budget_spent());
    EXPECT_EQ(privacy.rounds_left(), 0u);
    EXPECT_EQ(privacy.noised_versions(), 2u);
    EXPECT_LE(privacy.epsilon_spent(), budget);
    const std::string text = metrics_.Render(manager_->Snapshot());
    EXPECT_NE(text.find("\ntinyfed_privacy_budget_spent 1\n"), std::string::npos);
    EXPECT_NE(text.find("\ntinyfed_privacy_epsilon_spent " +
                        FormatSampleValue(privacy.epsilon_spent()) + "\n"),
              std::string::npos);
    // No round 3 was opened in the store.
    auto latest_round = store_->LatestRound();
    ASSERT_TRUE(latest_round.ok() && latest_round->has_value());
    EXPECT_EQ((*latest_round)->round, 2u);
  };
  closed("after the second version");
  manager_->Tick();
  clock_.AdvanceMs(60'000);
  manager_->Tick();
  manager_->WaitIdle();
  closed("a deadline later");
  Start(config, "budget.db", /*seed=*/100);
  closed("after a restart");
  EXPECT_EQ(manager_->Snapshot().latest_version, 3u);
}

// The record is for operators and auditors: versions as devices get them
// (tasks, GetModel, old or latest) carry none, though the store has it.
TEST_F(AggregationRoundTest, VersionsSentToDevicesCarryNoAggregationRecord) {
  Start(PrivateConfig(), "devices.db", /*seed=*/5);
  RunRound();  // RunRound checks each task's model too
  RunRound();
  for (uint32_t version : {0u, 2u, 3u}) {
    auto model = manager_->GetModel(version);
    ASSERT_TRUE(model.ok()) << model.status();
    EXPECT_FALSE(model->has_aggregation()) << "version " << version;
  }
  auto task = CheckIn(*manager_, "dev-0");
  ASSERT_TRUE(task.ok() && task->has_task());
  EXPECT_FALSE(task->task().model().has_aggregation());
  auto stored = store_->GetVersion(3);
  ASSERT_TRUE(stored.ok());
  EXPECT_TRUE(stored->has_aggregation());
  EXPECT_NE(stored->aggregation().noise_sigma(), 0u);
  // With no privacy, AggregationInForce says so; with it, the sigma.
  EXPECT_EQ(manager_->AggregationInForce().noise_sigma(), kSigma);
  EXPECT_EQ(manager_->AggregationInForce().strategy(), "fedavg");
}

}  // namespace
}  // namespace tinyfed::server
