// Serving and staged rollout in the RoundManager, on a real SQLite store in
// simulated time: which model a check-in with a ServingState is sent (the
// canary gets the candidate, the rest the serving version, nothing once
// held, nothing when deferred, never without a ServingState), the checks
// of a ServingState, evaluation-only tasks and their updates, promotion
// and automatic rollback through real rounds on evaluations this test
// crafts, the rollback's copy, and a restart keeping the rollout.
//
// A device's canary membership is computed here from the documented rule
// (tinyfed_common/rollout_bucket.h: the first 8 bytes of SHA-256 of its id,
// big-endian, mod 10000, below fraction x 10000), with OpenSSL, not with
// the code under test.
#include <gtest/gtest.h>
#include <openssl/sha.h>

#include <cstdint>
#include <future>
#include <memory>
#include <optional>
#include <random>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "head.h"
#include "round_manager.h"
#include "server_config.h"
#include "server_test_support.h"

namespace tinyfed::server {
namespace {

using testing::MakeUpdate;
using testing::Submit;
using testing::TempDir;

// The documented bucket of a device id.
uint32_t Bucket(const std::string& device_id) {
  unsigned char digest[SHA256_DIGEST_LENGTH];
  SHA256(reinterpret_cast<const unsigned char*>(device_id.data()), device_id.size(), digest);
  uint64_t first = 0;
  for (int i = 0; i < 8; ++i) first = (first << 8) | digest[i];
  return static_cast<uint32_t>(first % 10000);
}

// Canary fraction 0.5: buckets below 5000.
constexpr double kCanaryFraction = 0.5;
bool InCanary(const std::string& device_id) { return Bucket(device_id) < 5000; }

// `count` device ids named `prefix`N, all in the canary or all outside.
std::vector<std::string> Devices(const std::string& prefix, bool canary, size_t count) {
  std::vector<std::string> ids;
  for (int i = 0; ids.size() < count; ++i) {
    std::string id = absl::StrCat(prefix, i);
    if (InCanary(id) == canary) ids.push_back(std::move(id));
  }
  return ids;
}

// K = 4, M = 2, 6 task slots; 3 devices decide a candidate; 2
// evaluation-only tasks per round.
v1::ServerConfig Config() {
  v1::ServerConfig c;
  c.mutable_head()->set_feature_count(16);
  c.mutable_head()->set_class_count(4);
  c.mutable_policy()->set_target_updates(4);
  c.mutable_policy()->set_min_updates(2);
  c.mutable_policy()->set_over_selection(1.5);
  c.mutable_policy()->set_round_deadline_ms(10'000);
  c.mutable_policy()->set_retry_after_ms(3000);
  c.mutable_rollout()->set_canary_fraction(kCanaryFraction);
  c.mutable_rollout()->set_min_devices(3);
  c.mutable_rollout()->set_tolerance(0.01);
  c.mutable_drift()->set_min_devices(3);
  c.mutable_evaluation()->set_tasks_per_round(2);
  ApplyDefaults(&c);
  return c;
}

v1::Evaluation Eval(uint32_t version, uint32_t samples, uint32_t correct) {
  v1::Evaluation e;
  e.set_model_version(version);
  e.set_samples(samples);
  e.set_correct(correct);
  e.set_loss_sum_q16(uint64_t{samples} * 30000);
  return e;
}

class ServingTest : public ::testing::Test {
 protected:
  void SetUp() override { Start(); }

  void Start() {
    manager_.reset();
    store_.reset();
    auto store = OpenSqliteModelStore(dir_.File("store.db"));
    ASSERT_TRUE(store.ok()) << store.status();
    store_ = std::move(*store);
    auto initial = InitialModel(config_, clock_.NowMs());
    ASSERT_TRUE(initial.ok()) << initial.status();
    auto manager = RoundManager::Create(config_, *initial, store_.get(), &clock_);
    ASSERT_TRUE(manager.ok()) << manager.status();
    manager_ = std::move(*manager);
  }

  absl::StatusOr<v1::CheckInResponse> CheckIn(const v1::CheckInRequest& request) {
    std::promise<absl::StatusOr<v1::CheckInResponse>> answer;
    manager_->CheckIn(request, [&answer](absl::StatusOr<v1::CheckInResponse> r) {
      answer.set_value(std::move(r));
    });
    return answer.get_future().get();
  }

  // A check-in of a device that serves `held`, with `evaluation` if given.
  absl::StatusOr<v1::CheckInResponse> Serving(const std::string& device, uint32_t held,
                                              std::optional<v1::Evaluation> evaluation = {},
                                              bool defer = false) {
    v1::CheckInRequest request;
    request.set_device_id(device);
    request.mutable_serving()->set_model_version(held);
    request.mutable_serving()->set_defer_model(defer);
    if (evaluation) *request.mutable_serving()->mutable_evaluation() = *evaluation;
    return CheckIn(request);
  }

  // Four devices that send no ServingState train the open round, which
  // commits; returns the committed version.
  uint32_t CommitRound() {
    const uint32_t round = manager_->Snapshot().round;
    for (int i = 0; i < 4; ++i) {
      const std::string device = absl::StrCat("train-", round, "-", i);
      auto r = testing::CheckIn(*manager_, device);
      EXPECT_TRUE(r.ok() && r->has_task()) << device;
      if (!r.ok() || !r->has_task()) return 0;
      const v1::RoundTask& task = r->task();
      auto ack = Submit(*manager_, MakeUpdate(task.model().spec(), task.round(), device,
                                              task.task_token(), task.model().version(), 10,
                                              rng_, 300));
      EXPECT_TRUE(ack.ok()) << ack.status();
    }
    manager_->WaitIdle();
    return manager_->Snapshot().latest_version;
  }

  // Lets the open round reach its deadline: it closes (abandoned, with no
  // update), and the rollout decides on what was reported.
  void CloseRoundAtDeadline() {
    ASSERT_TRUE(store_->Flush().ok());  // check-ins' evaluations are written asynchronously
    clock_.AdvanceMs(10'001);
    manager_->Tick();
    manager_->WaitIdle();
  }

  TempDir dir_;
  FakeClock clock_;
  v1::ServerConfig config_ = Config();
  std::unique_ptr<ModelStore> store_;
  std::unique_ptr<RoundManager> manager_;
  std::mt19937 rng_{5};
};

TEST_F(ServingTest, TheCanaryGetsTheCandidateTheOthersTheServingVersionAndNothingOnceHeld) {
  ASSERT_EQ(CommitRound(), 2u);
  const RolloutSnapshot rollout = manager_->Rollout();
  ASSERT_EQ(rollout.state.serving_version, 1u);
  ASSERT_EQ(rollout.state.candidate_version, 2u);
  const std::string canary = Devices("canary-", true, 1)[0];
  const std::string other = Devices("other-", false, 1)[0];

  auto r = Serving(canary, 1);
  ASSERT_TRUE(r.ok()) << r.status();
  ASSERT_TRUE(r->has_model()) << r->ShortDebugString();
  EXPECT_FALSE(r->has_task());
  EXPECT_FALSE(r->has_retry());
  const v1::ModelVersion stored = store_->GetVersion(2).value();
  EXPECT_EQ(r->model().version(), 2u);
  EXPECT_EQ(r->model().weights(), stored.weights());
  EXPECT_EQ(r->model().bias(), stored.bias());
  EXPECT_EQ(r->model().checksum(), stored.checksum());
  EXPECT_EQ(r->model().spec().SerializeAsString(), stored.spec().SerializeAsString());
  // As sent to devices: no lineage, metrics, evaluations or rollout.
  EXPECT_EQ(r->model().parent_version(), 0u);
  EXPECT_EQ(r->model().round(), 0u);
  EXPECT_FALSE(r->model().has_metrics());
  EXPECT_FALSE(r->model().has_rollout());
  EXPECT_FALSE(r->model().has_fleet_evaluation());

  auto held = Serving(canary, 2);
  ASSERT_TRUE(held.ok());
  EXPECT_FALSE(held->has_model()) << "the canary holds the candidate already";
  EXPECT_TRUE(held->has_task());

  auto fresh = Serving(other, 0);
  ASSERT_TRUE(fresh.ok());
  ASSERT_TRUE(fresh->has_model());
  EXPECT_EQ(fresh->model().version(), 1u);
  EXPECT_EQ(fresh->model().weights(), store_->GetVersion(1).value().weights());
  auto other_held = Serving(other, 1);
  ASSERT_TRUE(other_held.ok());
  EXPECT_FALSE(other_held->has_model());
  // A device outside the canary that holds the candidate is moved back.
  auto back = Serving(other, 2);
  ASSERT_TRUE(back.ok());
  ASSERT_TRUE(back->has_model()) << "a device outside the canary must leave the candidate";
  EXPECT_EQ(back->model().version(), 1u);
}

TEST_F(ServingTest, DeferredAndStatelessCheckInsGetNoModel) {
  ASSERT_EQ(CommitRound(), 2u);
  const std::vector<std::string> canary = Devices("canary-", true, 2);
  auto deferred = Serving(canary[0], 1, std::nullopt, /*defer=*/true);
  ASSERT_TRUE(deferred.ok());
  EXPECT_FALSE(deferred->has_model());
  EXPECT_TRUE(deferred->has_task());
  // Without the flag, the next check-in gets it.
  auto later = Serving(canary[0], 1);
  ASSERT_TRUE(later.ok());
  ASSERT_TRUE(later->has_model());
  EXPECT_EQ(later->model().version(), 2u);

  // No ServingState: a device that only trains, whatever its bucket.
  auto stateless = testing::CheckIn(*manager_, canary[1]);
  ASSERT_TRUE(stateless.ok());
  EXPECT_FALSE(stateless->has_model());
  EXPECT_TRUE(stateless->has_task());
}

TEST_F(ServingTest, ABadServingStateIsRefusedNamingTheField) {
  struct Case {
    const char* field;
    v1::CheckInRequest request;
  };
  std::vector<Case> cases;
  const auto make = [&](const char* field, uint32_t held, v1::Evaluation e,
                        uint32_t declared = 0) {
    v1::CheckInRequest r;
    r.set_device_id("dev-bad");
    r.mutable_serving()->set_model_version(held);
    *r.mutable_serving()->mutable_evaluation() = e;
    if (declared != 0) r.mutable_capabilities()->set_sample_count(declared);
    cases.push_back({field, r});
  };
  make("serving.evaluation.model_version", 1, Eval(2, 10, 5));
  make("serving.evaluation", 0, Eval(0, 10, 5));
  make("serving.evaluation.samples", 1, Eval(1, 0, 0));
  make("serving.evaluation.samples", 1, Eval(1, (1u << 24) + 1, 0));
  make("serving.evaluation.correct", 1, Eval(1, 10, 11));
  v1::Evaluation lossy = Eval(1, 10, 5);
  lossy.set_loss_sum_q16(10 * (uint64_t{1} << 21) + 1);
  make("serving.evaluation.loss_sum_q16", 1, lossy);
  make("serving.evaluation.samples", 1, Eval(1, 11, 5), /*declared=*/10);
  for (const Case& c : cases) {
    auto r = CheckIn(c.request);
    ASSERT_FALSE(r.ok()) << c.field;
    EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument) << c.field;
    EXPECT_TRUE(absl::StartsWith(r.status().message(), c.field)) << r.status();
  }
  // The same bounds hold a valid one.
  v1::CheckInRequest ok;
  ok.set_device_id("dev-good");
  ok.mutable_serving()->set_model_version(1);
  *ok.mutable_serving()->mutable_evaluation() = Eval(1, 10, 10);
  ok.mutable_capabilities()->set_sample_count(10);
  EXPECT_TRUE(CheckIn(ok).ok());
  ASSERT_TRUE(store_->Flush().ok());
  const v1::FleetEvaluation fleet = store_->FleetEvaluationOf(1).value();
  EXPECT_EQ(fleet.devices(), 1u) << "only the valid report counts";
  EXPECT_EQ(fleet.samples(), 10u);
}

TEST_F(ServingTest, EvaluationOnlyTasksRoundTrip) {
  ASSERT_EQ(CommitRound(), 2u);
  // The round on version 2 hands out its 6 training tasks.
  for (int i = 0; i < 6; ++i) {
    auto r = testing::CheckIn(*manager_, absl::StrCat("slot-", i));
    ASSERT_TRUE(r.ok() && r->has_task() && !r->task().evaluate_only()) << i;
  }
  const std::vector<std::string> others = Devices("eval-", false, 3);
  const std::string canary = Devices("canary-", true, 1)[0];

  auto in_canary = testing::CheckIn(*manager_, canary);
  ASSERT_TRUE(in_canary.ok());
  EXPECT_TRUE(in_canary->has_retry()) << "the canary reports on the candidate by check-ins";

  // A device that sends no ServingState is never given one: an SDK that
  // predates evaluation-only tasks would ignore the flag and train.
  auto stateless = testing::CheckIn(*manager_, "eval-stateless");
  ASSERT_TRUE(stateless.ok());
  EXPECT_TRUE(stateless->has_retry()) << stateless->ShortDebugString();

  // The others serve version 1, the version meant for them.
  auto first = Serving(others[0], 1);
  ASSERT_TRUE(first.ok());
  ASSERT_TRUE(first->has_task()) << first->ShortDebugString();
  const v1::RoundTask task = first->task();
  EXPECT_TRUE(task.evaluate_only());
  EXPECT_EQ(task.round(), 2u);
  EXPECT_EQ(task.model().version(), 2u);
  EXPECT_EQ(task.model().weights(), store_->GetVersion(2).value().weights());
  EXPECT_FALSE(task.has_plan());
  EXPECT_FALSE(task.has_quantization());
  EXPECT_EQ(task.task_token().size(), 16u);
  // The same device again: the same task, not a second one of the budget.
  auto again = Serving(others[0], 1);
  ASSERT_TRUE(again.ok() && again->has_task());
  EXPECT_EQ(again->task().task_token(), task.task_token());
  auto second = Serving(others[1], 1);
  ASSERT_TRUE(second.ok() && second->has_task());
  EXPECT_TRUE(second->task().evaluate_only());
  auto over_budget = Serving(others[2], 1);
  ASSERT_TRUE(over_budget.ok());
  EXPECT_TRUE(over_budget->has_retry()) << "2 evaluation-only tasks per round";

  v1::Update update;
  update.set_round(task.round());
  update.set_task_token(task.task_token());
  update.set_device_id(others[0]);
  update.set_base_version(2);
  *update.mutable_evaluation() = Eval(2, 20, 15);
  auto ack = Submit(*manager_, update);
  ASSERT_TRUE(ack.ok()) << ack.status();
  EXPECT_EQ(ack->round(), 2u);
  auto repeat = Submit(*manager_, update);
  ASSERT_TRUE(repeat.ok()) << repeat.status();
  EXPECT_EQ(repeat->SerializeAsString(), ack->SerializeAsString());
  v1::Update changed = update;
  changed.mutable_evaluation()->set_correct(16);
  EXPECT_EQ(Submit(*manager_, changed).status().code(), absl::StatusCode::kAlreadyExists);
  EXPECT_EQ(manager_->Snapshot().accepted, 0u) << "not a participant of the round";
  const v1::FleetEvaluation fleet = store_->FleetEvaluationOf(2).value();
  EXPECT_EQ(fleet.devices(), 1u);
  EXPECT_EQ(fleet.samples(), 20u);
  EXPECT_EQ(fleet.correct(), 15u);

  // What such an update may not carry.
  v1::Update base = update;
  base.set_device_id(others[1]);
  base.set_task_token(second->task().task_token());
  struct Refusal {
    const char* field;
    v1::Update update;
  };
  std::vector<Refusal> refusals;
  refusals.push_back({"sample_count", base});
  refusals.back().update.set_sample_count(20);
  refusals.push_back({"weight_delta", base});
  refusals.back().update.set_weight_delta(std::string(64, '\1'));
  refusals.push_back({"bias_delta", base});
  refusals.back().update.set_bias_delta(std::string(4, '\1'));
  refusals.push_back({"row_scales", base});
  refusals.back().update.add_row_scales(1);
  refusals.push_back({"checksum", base});
  refusals.back().update.set_checksum(7);
  refusals.push_back({"base_version", base});
  refusals.back().update.set_base_version(1);
  refusals.push_back({"evaluation", base});
  refusals.back().update.clear_evaluation();
  refusals.push_back({"evaluation.correct", base});
  refusals.back().update.mutable_evaluation()->set_correct(21);
  for (const Refusal& r : refusals) {
    auto answer = Submit(*manager_, r.update);
    ASSERT_FALSE(answer.ok()) << r.field;
    EXPECT_EQ(answer.status().code(), absl::StatusCode::kInvalidArgument) << r.field;
    EXPECT_TRUE(absl::StartsWith(answer.status().message(), r.field)) << answer.status();
  }
  // After the refusals the task still takes a valid update.
  EXPECT_TRUE(Submit(*manager_, base).ok());
  EXPECT_EQ(store_->FleetEvaluationOf(2).value().devices(), 2u);
}

// The serving version's window: `n` devices outside the canary report
// `correct` of 100 on version 1; the canary reports `candidate_correct`
// of 100 each on the candidate, version 2, after being sent it.
struct Reports {
  uint32_t serving_devices = 3;
  uint32_t serving_correct = 80;
  uint32_t candidate_devices = 3;
  uint32_t candidate_correct = 85;
};

class RolloutDecisionTest : public ServingTest {
 protected:
  void Report(const Reports& r) {
    for (const std::string& d : Devices("serving-", false, r.serving_devices)) {
      ASSERT_TRUE(Serving(d, 1, Eval(1, 100, r.serving_correct)).ok());
    }
    for (const std::string& d : Devices("canary-", true, r.candidate_devices)) {
      auto sent = Serving(d, 1);
      ASSERT_TRUE(sent.ok() && sent->has_model() && sent->model().version() == 2u);
      ASSERT_TRUE(Serving(d, 2, Eval(2, 100, r.candidate_correct)).ok());
    }
  }
};

TEST_F(RolloutDecisionTest, ACandidateAsAccurateAsTheServingVersionIsPromoted) {
  ASSERT_EQ(CommitRound(), 2u);
  const Reports reports;  // 0.85 against 0.80
  // The test's own judgement of the documented rule.
  ASSERT_GE(reports.candidate_correct / 100.0, reports.serving_correct / 100.0 - 0.01);
  Report(reports);
  CloseRoundAtDeadline();

  const RolloutSnapshot after = manager_->Rollout();
  EXPECT_EQ(after.state.serving_version, 2u);
  EXPECT_EQ(after.state.candidate_version, 0u);
  const v1::ModelVersion v2 = store_->GetVersion(2).value();
  EXPECT_EQ(v2.rollout().stage(), v1::ROLLOUT_STAGE_SERVING);
  EXPECT_TRUE(absl::StartsWith(v2.rollout().reason(), "promoted: ")) << v2.rollout().reason();
  EXPECT_EQ(v2.rollout().decided_round(), 2u);
  EXPECT_EQ(v2.rollout().at_promotion().devices(), reports.candidate_devices);
  EXPECT_EQ(v2.rollout().at_promotion().samples(), 100u * reports.candidate_devices);
  EXPECT_EQ(v2.rollout().at_promotion().correct(),
            uint64_t{reports.candidate_correct} * reports.candidate_devices);
  EXPECT_EQ(store_->GetVersion(1).value().rollout().stage(), v1::ROLLOUT_STAGE_RETIRED);
  EXPECT_EQ(manager_->Snapshot().base_version, 2u) << "training goes on from the latest";
  // Every device is now meant to serve version 2.
  auto moved = Serving(Devices("serving-", false, 1)[0], 1);
  ASSERT_TRUE(moved.ok() && moved->has_model());
  EXPECT_EQ(moved->model().version(), 2u);

  // A restart keeps the rollout: serving, no candidate, the stages and the
  // baseline (at_promotion).
  Start();
  const RolloutSnapshot restarted = manager_->Rollout();
  EXPECT_EQ(restarted.state.serving_version, 2u);
  EXPECT_EQ(restarted.state.candidate_version, 0u);
  EXPECT_EQ(restarted.state.baseline.devices, reports.candidate_devices);
  EXPECT_EQ(restarted.state.baseline.correct,
            uint64_t{reports.candidate_correct} * reports.candidate_devices);
  const std::vector<v1::ModelVersion> versions = store_->ListVersions(0, 10).value();
  ASSERT_EQ(versions.size(), 2u);
  EXPECT_EQ(versions[0].rollout().stage(), v1::ROLLOUT_STAGE_SERVING);
  EXPECT_EQ(versions[1].rollout().stage(), v1::ROLLOUT_STAGE_RETIRED);
}

// A close that promotes the candidate and commits a version makes that
// version the next candidate at once: it waited only because the promoted
// one was in canary, so the canary gets a new version every round.
TEST_F(RolloutDecisionTest, TheVersionAPromotingCloseCommitsIsTheNextCandidate) {
  ASSERT_EQ(CommitRound(), 2u);
  // Round 2's trainers take their tasks first (4 of the round's 6 slots).
  std::vector<std::pair<std::string, v1::RoundTask>> trainers;
  for (int i = 0; i < 4; ++i) {
    const std::string device = absl::StrCat("late-", i);
    auto r = testing::CheckIn(*manager_, device);
    ASSERT_TRUE(r.ok() && r->has_task() && !r->task().evaluate_only()) << device;
    trainers.emplace_back(device, r->task());
  }
  Report(Reports{});  // version 2: 0.85 on its canary against 0.80
  ASSERT_TRUE(store_->Flush().ok());
  for (const auto& [device, task] : trainers) {
    auto ack = Submit(*manager_, MakeUpdate(task.model().spec(), task.round(), device,
                                            task.task_token(), task.model().version(), 10,
                                            rng_, 300));
    ASSERT_TRUE(ack.ok()) << ack.status();
  }
  manager_->WaitIdle();
  ASSERT_EQ(manager_->Snapshot().latest_version, 3u);

  const RolloutSnapshot after = manager_->Rollout();
  EXPECT_EQ(after.state.serving_version, 2u);
  EXPECT_EQ(after.state.candidate_version, 3u);
  EXPECT_EQ(store_->GetVersion(2).value().rollout().stage(), v1::ROLLOUT_STAGE_SERVING);
  const v1::ModelVersion v3 = store_->GetVersion(3).value();
  EXPECT_EQ(v3.rollout().stage(), v1::ROLLOUT_STAGE_CANDIDATE) << v3.rollout().reason();
  // The canary, serving version 2, is sent version 3 at its next check-in.
  auto next = Serving(Devices("canary-", true, 1)[0], 2);
  ASSERT_TRUE(next.ok() && next->has_model()) << next.status();
  EXPECT_EQ(next->model().version(), 3u);
}

TEST_F(RolloutDecisionTest, ALessAccurateCandidateIsRolledBackAndTrainingRestartsFromACopy) {
  ASSERT_EQ(CommitRound(), 2u);
  Reports reports;
  reports.candidate_correct = 50;  // 0.50 against 0.80
  ASSERT_LT(reports.candidate_correct / 100.0, reports.serving_correct / 100.0 - 0.01);
  Report(reports);
  const uint32_t round = manager_->Snapshot().round;
  CloseRoundAtDeadline();

  const RolloutSnapshot after = manager_->Rollout();
  EXPECT_EQ(after.state.serving_version, 1u);
  EXPECT_EQ(after.state.candidate_version, 0u);
  const v1::ModelVersion v2 = store_->GetVersion(2).value();
  EXPECT_EQ(v2.rollout().stage(), v1::ROLLOUT_STAGE_ROLLED_BACK);
  EXPECT_TRUE(absl::StartsWith(v2.rollout().reason(), "rolled back: ")) << v2.rollout().reason();
  EXPECT_TRUE(absl::EndsWith(v2.rollout().reason(), "; training restarts from v1 as v3"))
      << v2.rollout().reason();
  // The copy: version 3, serving's weights bit for bit, and the next round
  // trains from it.
  const v1::ModelVersion v1 = store_->GetVersion(1).value();
  const v1::ModelVersion v3 = store_->GetVersion(3).value();
  EXPECT_EQ(v3.restored_from(), 1u);
  EXPECT_EQ(v3.parent_version(), 2u);
  EXPECT_EQ(v3.weights(), v1.weights());
  EXPECT_EQ(v3.bias(), v1.bias());
  EXPECT_EQ(v3.checksum(), v1.checksum());
  EXPECT_NE(v3.weights(), v2.weights());
  EXPECT_EQ(v3.rollout().stage(), v1::ROLLOUT_STAGE_TRAINED);
  EXPECT_FALSE(v3.rollout().reason().empty());
  const RoundSnapshot snapshot = manager_->Snapshot();
  EXPECT_EQ(snapshot.latest_version, 3u);
  EXPECT_EQ(snapshot.round, round + 1);
  EXPECT_EQ(snapshot.base_version, 3u);
  // The canary goes back to the serving version.
  auto back = Serving(Devices("canary-", true, 1)[0], 2);
  ASSERT_TRUE(back.ok() && back->has_model());
  EXPECT_EQ(back->model().version(), 1u);
  EXPECT_EQ(back->model().weights(), v1.weights());

  // A restart keeps it: serving v1, no candidate, v2 rolled back.
  Start();
  EXPECT_EQ(manager_->Rollout().state.serving_version, 1u);
  EXPECT_EQ(manager_->Rollout().state.candidate_version, 0u);
  EXPECT_EQ(store_->GetVersion(2).value().rollout().stage(), v1::ROLLOUT_STAGE_ROLLED_BACK);
  EXPECT_EQ(manager_->Snapshot().base_version, 3u);
}

TEST_F(RolloutDecisionTest, VersionsCommittedWhileACandidateWaitsAreSkippedAndItSurvivesARestart) {
  ASSERT_EQ(CommitRound(), 2u);
  ASSERT_EQ(CommitRound(), 3u);
  EXPECT_EQ(manager_->Rollout().state.candidate_version, 2u);
  const v1::ModelVersion v3 = store_->GetVersion(3).value();
  EXPECT_EQ(v3.rollout().stage(), v1::ROLLOUT_STAGE_TRAINED);
  EXPECT_TRUE(absl::StartsWith(v3.rollout().reason(), "skipped")) << v3.rollout().reason();
  EXPECT_EQ(store_->GetVersion(2).value().rollout().stage(), v1::ROLLOUT_STAGE_CANDIDATE);
  Start();
  EXPECT_EQ(manager_->Rollout().state.serving_version, 1u);
  EXPECT_EQ(manager_->Rollout().state.candidate_version, 2u);
  // Too few reports (2 of 3 devices) decide nothing at a close.
  Reports few;
  few.candidate_devices = 2;
  Report(few);
  CloseRoundAtDeadline();
  EXPECT_EQ(manager_->Rollout().state.candidate_version, 2u);
}

TEST_F(RolloutDecisionTest, PromoteByHandServesAtOnceAndRollsTheCandidateBack) {
  ASSERT_EQ(CommitRound(), 2u);
  ASSERT_EQ(CommitRound(), 3u);
  AuditEntry audit;
  audit.at_unix_ms = clock_.NowMs();
  audit.actor = "token:ops";
  audit.detail = "hotfix";
  EXPECT_EQ(manager_->Promote(1, audit).status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(manager_->Promote(9, audit).status().code(), absl::StatusCode::kNotFound);
  auto promoted = manager_->Promote(3, audit);
  ASSERT_TRUE(promoted.ok()) << promoted.status();
  EXPECT_EQ(promoted->previous_serving, 1u);
  EXPECT_EQ(promoted->version.version(), 3u);
  EXPECT_EQ(promoted->version.rollout().stage(), v1::ROLLOUT_STAGE_SERVING);
  EXPECT_EQ(promoted->version.rollout().reason(), "promoted by token:ops: hotfix");
  EXPECT_EQ(manager_->Rollout().state.serving_version, 3u);
  EXPECT_EQ(manager_->Rollout().state.candidate_version, 0u);
  EXPECT_EQ(store_->GetVersion(2).value().rollout().stage(), v1::ROLLOUT_STAGE_ROLLED_BACK);
  EXPECT_EQ(store_->GetVersion(1).value().rollout().stage(), v1::ROLLOUT_STAGE_RETIRED);
  const std::vector<AuditEntry> log = store_->AuditLog(0, 1).value();
  ASSERT_EQ(log.size(), 1u);
  EXPECT_EQ(log[0].action, "promote");
  EXPECT_EQ(log[0].actor, "token:ops");
  // Every device, canary or not, is sent version 3.
  for (const std::string& d : {Devices("c-", true, 1)[0], Devices("o-", false, 1)[0]}) {
    auto r = Serving(d, 1);
    ASSERT_TRUE(r.ok() && r->has_model()) << d;
    EXPECT_EQ(r->model().version(), 3u);
  }
}

TEST_F(RolloutDecisionTest, AnOperatorRollbackServesTheCopyAndRollsTheCandidateBack) {
  ASSERT_EQ(CommitRound(), 2u);
  AuditEntry audit;
  audit.at_unix_ms = clock_.NowMs();
  audit.actor = "token:ops";
  auto result = manager_->Rollback(1, audit);
  ASSERT_TRUE(result.ok()) << result.status();
  EXPECT_EQ(result->version.version(), 3u);
  EXPECT_EQ(manager_->Rollout().state.serving_version, 3u);
  EXPECT_EQ(manager_->Rollout().state.candidate_version, 0u);
  EXPECT_EQ(store_->GetVersion(3).value().rollout().stage(), v1::ROLLOUT_STAGE_SERVING);
  EXPECT_EQ(store_->GetVersion(2).value().rollout().stage(), v1::ROLLOUT_STAGE_ROLLED_BACK);
  EXPECT_EQ(store_->GetVersion(1).value().rollout().stage(), v1::ROLLOUT_STAGE_RETIRED);
  auto r = Serving(Devices("c-", true, 1)[0], 2);
  ASSERT_TRUE(r.ok() && r->has_model());
  EXPECT_EQ(r->model().version(), 3u);
  EXPECT_EQ(r->model().weights(), store_->GetVersion(1).value().weights());
}

// A schema 5 file (schema 6 without the rollout tables) keeps its versions
// and evaluations; its latest version becomes the serving one, the others
// TRAINED, and no candidate.
TEST(RolloutStoreMigrationTest, SchemaFiveStoreIsMigratedWithTheLatestServing) {
  TempDir dir;
  const std::string path = dir.File("five.db");
  const v1::ServerConfig config = Config();
  const v1::ModelVersion initial = InitialModel(config, 1000).value();
  {
    std::unique_ptr<ModelStore> store = OpenSqliteModelStore(path).value();
    ASSERT_TRUE(store->PutInitialVersion(initial).ok());
    RoundRecord round{1, 1, RoundState::kOpen, 1000, 2000, 0};
    ASSERT_TRUE(store->OpenRound(round).ok());
    v1::ModelVersion v2 = initial;
    v2.set_version(2);
    v2.set_parent_version(1);
    v2.set_round(1);
    ASSERT_TRUE(store->CommitRound(1, 1500, v2).ok());
    store->AppendEvaluation(1, "dev-a", Eval(2, 40, 30), nullptr);
    ASSERT_TRUE(store->Flush().ok());
  }
  testing::ExecSql(path,
                   "DROP TABLE rollout_stages; DROP TABLE rollout_state; PRAGMA user_version=5;");
  std::unique_ptr<ModelStore> store = OpenSqliteModelStore(path).value();
  const StoredRollout rollout = store->Rollout().value();
  EXPECT_EQ(rollout.serving_version, 2u);
  EXPECT_EQ(rollout.candidate_version, 0u);
  EXPECT_EQ(rollout.serving_baseline.devices(), 0u);
  const v1::ModelVersion v2 = store->GetVersion(2).value();
  EXPECT_EQ(v2.rollout().stage(), v1::ROLLOUT_STAGE_SERVING);
  EXPECT_EQ(v2.rollout().reason(), "serving when the store was migrated to schema 6");
  EXPECT_EQ(store->GetVersion(1).value().rollout().stage(), v1::ROLLOUT_STAGE_TRAINED);
  const v1::FleetEvaluation fleet = store->FleetEvaluationOf(2).value();
  EXPECT_EQ(fleet.devices(), 1u);
  EXPECT_EQ(fleet.correct(), 30u);
  // A rollout write naming a version the store does not hold changes
  // nothing.
  RolloutWrite bad;
  bad.serving_version = 3;
  EXPECT_EQ(store->WriteRollout(bad, nullptr).code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(store->Rollout().value().serving_version, 2u);
}

}  // namespace
}  // namespace tinyfed::server
