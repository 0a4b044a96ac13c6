// Round lifecycle in simulated time, on a real SQLite store: opening,
// over-selection, closing at K, the deadline with and without M updates,
// the next round, every rejection (with the committed model unaffected by
// it), idempotent retries and resuming after a restart. Committed versions
// are judged by the independent reference in reference_fedavg.h, never by
// the aggregator under test; deadlines by the monotonic clock while the
// wall clock is stepped back and forth.
#include "round_manager.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <future>
#include <map>
#include <memory>
#include <random>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "absl/time/time.h"
#include "reference_fedavg.h"
#include "server_config.h"
#include "server_test_support.h"
#include "spdlog/sinks/ostream_sink.h"
#include "spdlog/spdlog.h"
#include "update_validation.h"

namespace tinyfed::server {
namespace {

using testing::ExecSql;
using testing::CheckIn;
using testing::MakeUpdate;
using testing::MatchesReferenceFedAvg;
using testing::Submit;
using testing::TempDir;

constexpr int64_t kHourMs = 3'600'000;
constexpr int64_t kDayMs = 24 * kHourMs;

v1::ServerConfig SmallConfig() {
  v1::ServerConfig c;
  c.mutable_head()->set_feature_count(16);
  c.mutable_head()->set_class_count(4);
  c.mutable_policy()->set_target_updates(4);
  c.mutable_policy()->set_min_updates(2);
  c.mutable_policy()->set_over_selection(1.5);  // 6 tasks
  c.mutable_policy()->set_round_deadline_ms(10'000);
  c.mutable_policy()->set_retry_after_ms(3000);
  ApplyDefaults(&c);
  return c;
}

// Captures the default logger's lines while it lives.
class LogCapture {
 public:
  LogCapture() : previous_(spdlog::default_logger()) {
    auto capture = std::make_shared<spdlog::logger>(
        "capture", std::make_shared<spdlog::sinks::ostream_sink_mt>(captured_));
    capture->set_pattern("%v");
    spdlog::set_default_logger(capture);
  }
  ~LogCapture() { spdlog::set_default_logger(previous_); }

  int LinesWith(const std::string& text) const {
    std::istringstream in(captured_.str());
    int n = 0;
    for (std::string line; std::getline(in, line);) n += line.find(text) != std::string::npos;
    return n;
  }

 private:
  std::ostringstream captured_;
  std::shared_ptr<spdlog::logger> previous_;
};

class RoundManagerTest : public ::testing::Test {
 protected:
  void SetUp() override { Start(SmallConfig()); }

  // A manager on the store file `db` (a new process when the file exists).
  void Start(const v1::ServerConfig& config, const std::string& db = "store.db") {
    config_ = config;
    manager_.reset();
    store_.reset();
    auto store = OpenSqliteModelStore(dir_.File(db));
    ASSERT_TRUE(store.ok()) << store.status();
    store_ = std::move(*store);
    auto initial = InitialModel(config_, clock_.NowMs());
    ASSERT_TRUE(initial.ok()) << initial.status();
    auto manager = RoundManager::Create(config_, *initial, store_.get(), &clock_);
    ASSERT_TRUE(manager.ok()) << manager.status();
    manager_ = std::move(*manager);
  }

  // Checks `device` in and returns a valid update for its task.
  v1::Update TaskAndUpdate(const std::string& device, uint32_t samples = 10) {
    auto response = CheckIn(*manager_, device);
    EXPECT_TRUE(response.ok()) << response.status();
    EXPECT_TRUE(response->has_task()) << device;
    const v1::RoundTask& task = response->task();
    return MakeUpdate(task.model().spec(), task.round(), device, task.task_token(),
                      task.model().version(), samples, rng_, 40);
  }

  // Whether committed `version` is the reference FedAvg of `updates` on
  // `base_version`, with the server learning rate in Q16.16 (65536 = 1.0,
  // the default SmallConfig keeps).
  ::testing::AssertionResult IsReferenceFedAvg(uint32_t version, uint32_t base_version,
                                               const std::vector<v1::Update>& updates,
                                               uint32_t server_lr_q16 = 65536) {
    auto committed = manager_->GetModel(version);
    if (!committed.ok()) return ::testing::AssertionFailure() << committed.status();
    auto base = manager_->GetModel(base_version);
    if (!base.ok()) return ::testing::AssertionFailure() << base.status();
    if (!LoadHead(*committed).ok()) {
      return ::testing::AssertionFailure() << "version " << version << " does not load";
    }
    return MatchesReferenceFedAvg(*committed, *base, updates, server_lr_q16);
  }

  // The task `device` holds in the open round (a check-in, so a new device
  // takes a task).
  v1::RoundTask Task(const std::string& device) {
    auto response = CheckIn(*manager_, device);
    EXPECT_TRUE(response.ok()) << response.status();
    EXPECT_TRUE(response->has_task()) << device;
    return response->task();
  }

  void TickAndWait() {
    manager_->Tick();
    manager_->WaitIdle();
  }

  Head Latest() {
    auto model = manager_->GetModel(0);
    EXPECT_TRUE(model.ok());
    return *LoadHead(*model);
  }

  TempDir dir_;
  FakeClock clock_;
  v1::ServerConfig config_;
  std::unique_ptr<ModelStore> store_;
  std::unique_ptr<RoundManager> manager_;
  std::mt19937 rng_{77};
};

TEST_F(RoundManagerTest, OpensFirstRoundOnInitialVersion) {
  const RoundSnapshot s = manager_->Snapshot();
  EXPECT_EQ(s.round, 1u);
  EXPECT_EQ(s.base_version, 1u);
  EXPECT_TRUE(s.open);
  EXPECT_EQ(s.latest_version, 1u);
  auto model = manager_->GetModel(0);
  ASSERT_TRUE(model.ok());
  EXPECT_EQ(model->version(), 1u);
  EXPECT_EQ(model->parent_version(), 0u);
  EXPECT_EQ(Latest(), Head::Zeros(16, 4));
}

TEST_F(RoundManagerTest, OverSelectsThenTellsDevicesToComeBack) {
  std::set<std::string> tokens;
  for (int i = 0; i < 6; ++i) {  // ceil(4 * 1.5)
    auto r = CheckIn(*manager_, "dev-" + std::to_string(i));
    ASSERT_TRUE(r.ok());
    ASSERT_TRUE(r->has_task()) << i;
    EXPECT_EQ(r->task().round(), 1u);
    EXPECT_EQ(r->task().model().version(), 1u);
    EXPECT_EQ(r->task().task_token().size(), 16u);
    EXPECT_EQ(r->task().plan().batch_size(), config_.plan().batch_size());
    EXPECT_GT(r->task().deadline_ms(), 0u);
    tokens.insert(r->task().task_token());
  }
  EXPECT_EQ(tokens.size(), 6u) << "tokens must differ";
  auto seventh = CheckIn(*manager_, "dev-6");
  ASSERT_TRUE(seventh.ok());
  EXPECT_FALSE(seventh->has_task());
  EXPECT_EQ(seventh->retry().retry_after_ms(), 3000u);
  // A device that already has a task gets the same one again.
  auto again = CheckIn(*manager_, "dev-2");
  ASSERT_TRUE(again.ok() && again->has_task());
  EXPECT_TRUE(tokens.count(again->task().task_token()));
  EXPECT_EQ(manager_->Snapshot().tasks_issued, 6u);
}

// Over-selection with products that are not whole, and with one that is
// whole in decimal but not as doubles (50 x 1.1 evaluates to
// 55.00000000000001): exactly ceil(K x factor) tasks, then a retry hint.
TEST_F(RoundManagerTest, OverSelectionHandsOutTheCeilingOfANonWholeProduct) {
  const struct {
    uint32_t target;
    double factor;
    uint32_t tasks;
  } cases[] = {{10, 1.25, 13}, {3, 1.5, 5}, {7, 1.3, 10}, {50, 1.1, 55}};
  int store = 0;
  for (const auto& c : cases) {
    SCOPED_TRACE(::testing::Message() << "K = " << c.target << " x " << c.factor);
    v1::ServerConfig config = SmallConfig();
    config.mutable_policy()->set_target_updates(c.target);
    config.mutable_policy()->set_min_updates(1);
    config.mutable_policy()->set_over_selection(c.factor);
    Start(config, "over-selection-" + std::to_string(store++) + ".db");
    for (uint32_t i = 0; i < c.tasks; ++i) {
      auto r = CheckIn(*manager_, "dev-" + std::to_string(i));
      ASSERT_TRUE(r.ok()) << r.status();
      ASSERT_TRUE(r->has_task()) << "device " << i << " of " << c.tasks;
    }
    auto next = CheckIn(*manager_, "dev-" + std::to_string(c.tasks));
    ASSERT_TRUE(next.ok()) << next.status();
    EXPECT_FALSE(next->has_task()) << "one task too many";
    EXPECT_EQ(next->retry().retry_after_ms(), 3000u);
    EXPECT_EQ(manager_->Snapshot().tasks_issued, c.tasks);
  }
}

TEST_F(RoundManagerTest, ClosesAtTargetAndCommitsFedAvg) {
  std::vector<v1::Update> updates;
  for (int i = 0; i < 5; ++i) updates.push_back(TaskAndUpdate("dev-" + std::to_string(i), 5 + i));
  for (int i = 0; i < 3; ++i) ASSERT_TRUE(Submit(*manager_, updates[i]).ok());
  EXPECT_EQ(manager_->Snapshot().accepted, 3u);
  EXPECT_EQ(manager_->Snapshot().latest_version, 1u);
  auto ack = Submit(*manager_, updates[3]);  // the K-th
  ASSERT_TRUE(ack.ok()) << ack.status();
  EXPECT_EQ(ack->round(), 1u);
  manager_->WaitIdle();
  const RoundSnapshot s = manager_->Snapshot();
  EXPECT_EQ(s.latest_version, 2u);
  EXPECT_EQ(s.round, 2u);
  EXPECT_EQ(s.base_version, 2u);
  EXPECT_TRUE(s.open);
  EXPECT_TRUE(IsReferenceFedAvg(2, 1, {updates.begin(), updates.begin() + 4}));
  auto model = manager_->GetModel(2);
  ASSERT_TRUE(model.ok());
  EXPECT_EQ(model->parent_version(), 1u);
  EXPECT_EQ(model->round(), 1u);
  EXPECT_EQ(model->metrics().participants(), 4u);
  EXPECT_EQ(model->metrics().samples(), 5u + 6 + 7 + 8);
  // The fifth device was too late for round 1.
  auto late = Submit(*manager_, updates[4]);
  EXPECT_EQ(late.status().code(), absl::StatusCode::kFailedPrecondition);
  // Round 2 hands out tasks on version 2.
  auto r = CheckIn(*manager_, "dev-9");
  ASSERT_TRUE(r.ok() && r->has_task());
  EXPECT_EQ(r->task().round(), 2u);
  EXPECT_EQ(r->task().model().version(), 2u);
  EXPECT_EQ(r->task().plan().seed(), config_.plan().seed() + 2);
}

TEST_F(RoundManagerTest, DeadlineWithAtLeastMinimumCommits) {
  std::vector<v1::Update> updates;
  for (int i = 0; i < 3; ++i) {
    updates.push_back(TaskAndUpdate("dev-" + std::to_string(i)));
    ASSERT_TRUE(Submit(*manager_, updates.back()).ok());
  }
  clock_.AdvanceMs(9'999);
  manager_->Tick();
  manager_->WaitIdle();
  EXPECT_EQ(manager_->Snapshot().round, 1u) << "deadline not reached yet";
  clock_.AdvanceMs(1);
  manager_->Tick();
  manager_->WaitIdle();
  const RoundSnapshot s = manager_->Snapshot();
  EXPECT_EQ(s.latest_version, 2u);
  EXPECT_EQ(s.round, 2u);
  EXPECT_TRUE(IsReferenceFedAvg(2, 1, updates));
  EXPECT_EQ(manager_->GetModel(2)->metrics().participants(), 3u);
}

// The configured server learning rate reaches the aggregate, in two
// chained rounds (the second on a base that is not zero).
TEST_F(RoundManagerTest, CommitsWithTheConfiguredServerLearningRateRoundAfterRound) {
  v1::ServerConfig c = SmallConfig();
  c.mutable_policy()->set_server_learning_rate(0.75);  // 49152 in Q16.16, exactly
  Start(c);
  for (uint32_t round = 1; round <= 2; ++round) {
    std::vector<v1::Update> updates;
    for (int i = 0; i < 4; ++i) {
      updates.push_back(TaskAndUpdate("dev-" + std::to_string(i), 3 + 2 * i));
    }
    for (const v1::Update& u : updates) ASSERT_TRUE(Submit(*manager_, u).ok());
    manager_->WaitIdle();
    ASSERT_EQ(manager_->Snapshot().latest_version, round + 1);
    EXPECT_TRUE(IsReferenceFedAvg(round + 1, round, updates, 49152)) << "round " << round;
  }
  EXPECT_NE(Latest(), Head::Zeros(16, 4));
}

// The wall clock is set back an hour, forward an hour or forward a day 3 s
// into a 10 s round: the round closes exactly 10 s after it opened in
// monotonic time, not before and not after; tasks report the monotonic
// time left; the records hold wall time as it reads (stepped).
TEST_F(RoundManagerTest, WallClockStepsNeitherCloseARoundEarlyNorHoldItOpen) {
  int store = 0;
  for (const int64_t step : {-kHourMs, kHourMs, kDayMs}) {
    SCOPED_TRACE(::testing::Message() << "wall clock stepped by " << step << " ms");
    Start(SmallConfig(), "step-" + std::to_string(store++) + ".db");
    const int64_t opened_wall = clock_.NowMs();
    auto record = store_->LatestRound();
    ASSERT_TRUE(record.ok() && record->has_value());
    EXPECT_EQ((*record)->opened_ms, opened_wall);
    EXPECT_EQ((*record)->deadline_ms, opened_wall + 10'000);
    EXPECT_EQ(Task("dev-0").deadline_ms(), 10'000u);

    clock_.AdvanceMs(3'000);
    clock_.StepWallMs(step);
    TickAndWait();
    ASSERT_EQ(manager_->Snapshot().round, 1u) << "closed early";
    EXPECT_EQ(manager_->Snapshot().time_left_ms, 7'000);
    EXPECT_EQ(Task("dev-0").deadline_ms(), 7'000u) << "the task a device holds";
    // Two updates, the minimum, so that the deadline commits.
    std::vector<v1::Update> updates = {TaskAndUpdate("dev-0"), TaskAndUpdate("dev-1")};
    EXPECT_EQ(Task("dev-1").deadline_ms(), 7'000u) << "a task handed out after the step";
    for (const v1::Update& u : updates) ASSERT_TRUE(Submit(*manager_, u).ok());
    const int64_t stepped_wall = opened_wall + 3'000 + step;
    auto tasks = store_->RoundTasks(1);
    ASSERT_TRUE(tasks.ok() && tasks->size() == 2);
    EXPECT_EQ((*tasks)[1].issued_ms, stepped_wall) << "records keep wall time";
    auto stored = store_->RoundUpdates(1);
    ASSERT_TRUE(stored.ok() && stored->size() == 2);
    EXPECT_EQ((*stored)[0].received_ms, stepped_wall);

    clock_.AdvanceMs(6'999);
    TickAndWait();
    ASSERT_EQ(manager_->Snapshot().round, 1u) << "closed early";
    EXPECT_EQ(Task("dev-2").deadline_ms(), 1u);
    clock_.AdvanceMs(1);
    TickAndWait();
    const RoundSnapshot s = manager_->Snapshot();
    ASSERT_EQ(s.round, 2u) << "not closed at its deadline";
    EXPECT_TRUE(IsReferenceFedAvg(2, 1, updates));
    const int64_t closed_wall = opened_wall + 10'000 + step;
    EXPECT_EQ(manager_->GetModel(2)->created_unix_ms(), closed_wall);
    record = store_->LatestRound();
    ASSERT_TRUE(record.ok() && record->has_value());
    EXPECT_EQ((*record)->round, 2u);
    EXPECT_EQ((*record)->opened_ms, closed_wall);
    EXPECT_EQ((*record)->deadline_ms, closed_wall + 10'000);
    EXPECT_EQ(s.deadline_ms, closed_wall + 10'000);
    EXPECT_EQ(Task("dev-0").deadline_ms(), 10'000u) << "the next round has its full length";
  }
}

// After a restart only the stored wall deadline is left (round_manager.h):
// a round restarted 4 s into its 10 s resumes with 6 s; if the wall clock
// moved while the server was down, with what the wall deadline leaves,
// within [0, the round's 10 s].
TEST_F(RoundManagerTest, RestartTakesTheTimeLeftFromTheStoredWallDeadline) {
  const struct {
    int64_t step_while_down;
    int64_t left;
  } cases[] = {{0, 6'000}, {-2'000, 8'000}, {5'999, 1}, {-kHourMs, 10'000}, {kDayMs, 0}};
  int store = 0;
  for (const auto& c : cases) {
    SCOPED_TRACE(::testing::Message() << "wall clock stepped by " << c.step_while_down << " ms");
    const std::string db = "restart-" + std::to_string(store++) + ".db";
    Start(SmallConfig(), db);
    const int64_t deadline_wall = clock_.NowMs() + 10'000;
    clock_.AdvanceMs(4'000);
    clock_.StepWallMs(c.step_while_down);
    Start(SmallConfig(), db);
    EXPECT_EQ(manager_->Snapshot().round, 1u);
    EXPECT_EQ(manager_->Snapshot().time_left_ms, c.left);
    EXPECT_EQ(manager_->Snapshot().deadline_ms, deadline_wall) << "the record is not rewritten";
    if (c.left > 0) {
      EXPECT_EQ(Task("dev-0").deadline_ms(), static_cast<uint32_t>(c.left));
      clock_.AdvanceMs(c.left - 1);
      TickAndWait();
      EXPECT_EQ(manager_->Snapshot().round, 1u) << "closed early";
    }
    clock_.AdvanceMs(1);
    TickAndWait();
    EXPECT_EQ(manager_->Snapshot().round, 2u) << "not closed at its deadline";
  }
}

TEST_F(RoundManagerTest, DeadlineBelowMinimumAbandonsAndKeepsTheModel) {
  ASSERT_TRUE(Submit(*manager_, TaskAndUpdate("dev-0")).ok());
  clock_.AdvanceMs(10'000);
  manager_->Tick();
  manager_->WaitIdle();
  const RoundSnapshot s = manager_->Snapshot();
  EXPECT_EQ(s.latest_version, 1u);
  EXPECT_EQ(s.round, 2u);
  EXPECT_EQ(s.base_version, 1u);
  EXPECT_EQ(s.accepted, 0u);
  EXPECT_EQ(Latest(), Head::Zeros(16, 4));
  EXPECT_EQ(manager_->GetModel(2).status().code(), absl::StatusCode::kNotFound);
  // The next round works normally.
  auto r = CheckIn(*manager_, "dev-0");
  ASSERT_TRUE(r.ok() && r->has_task());
  EXPECT_EQ(r->task().round(), 2u);
  EXPECT_EQ(r->task().model().version(), 1u);
}

TEST_F(RoundManagerTest, RejectionsHaveSpecificCodesAndDoNotTouchTheAggregate) {
  std::vector<v1::Update> good;
  for (int i = 0; i < 4; ++i) good.push_back(TaskAndUpdate("dev-" + std::to_string(i)));
  const v1::Update base = TaskAndUpdate("dev-x");

  auto expect_code = [&](const v1::Update& u, absl::StatusCode code, const char* what) {
    auto r = Submit(*manager_, u);
    EXPECT_EQ(r.status().code(), code) << what << ": " << r.status();
  };
  {  // wrong shape
    v1::Update u = base;
    u.set_weight_delta(u.weight_delta().substr(1));
    testing::FixChecksum(&u);
    expect_code(u, absl::StatusCode::kInvalidArgument, "shape");
  }
  {  // scale out of range
    v1::Update u = base;
    u.set_row_scales(0, 518);
    expect_code(u, absl::StatusCode::kInvalidArgument, "scale");
  }
  {  // sample count out of range
    v1::Update u = base;
    u.set_sample_count(0);
    expect_code(u, absl::StatusCode::kInvalidArgument, "sample count");
  }
  {  // bad checksum
    v1::Update u = base;
    u.set_checksum(u.checksum() ^ 1);
    expect_code(u, absl::StatusCode::kInvalidArgument, "checksum");
  }
  {  // unknown round
    v1::Update u = base;
    u.set_round(7);
    expect_code(u, absl::StatusCode::kFailedPrecondition, "unknown round");
  }
  {  // unknown task token
    v1::Update u = base;
    u.set_task_token(std::string(16, 'z'));
    expect_code(u, absl::StatusCode::kFailedPrecondition, "token");
  }
  {  // a device that never checked in
    v1::Update u = base;
    u.set_device_id("stranger");
    expect_code(u, absl::StatusCode::kFailedPrecondition, "no task");
  }
  {  // stale base version
    v1::Update u = base;
    u.set_base_version(0);
    expect_code(u, absl::StatusCode::kAborted, "base version");
  }
  // Same device again: different bytes rejected, same bytes re-acknowledged.
  auto first = Submit(*manager_, good[0]);
  ASSERT_TRUE(first.ok());
  v1::Update changed = good[0];
  changed.set_sample_count(good[0].sample_count() + 1);
  expect_code(changed, absl::StatusCode::kAlreadyExists, "different bytes");
  auto repeat = Submit(*manager_, good[0]);
  ASSERT_TRUE(repeat.ok());
  EXPECT_EQ(repeat->round(), first->round());
  EXPECT_EQ(manager_->Snapshot().accepted, 1u) << "a retry must not count twice";

  for (int i = 1; i < 4; ++i) ASSERT_TRUE(Submit(*manager_, good[i]).ok());
  manager_->WaitIdle();
  ASSERT_EQ(manager_->Snapshot().latest_version, 2u);
  // The committed model holds the four good updates and nothing else.
  EXPECT_TRUE(IsReferenceFedAvg(2, 1, good));
  EXPECT_EQ(manager_->GetModel(2)->metrics().participants(), 4u);

  // After the round closed: the update that completed it, retried, still
  // gets its acknowledgement; a different one for the closed round does not.
  auto retry = Submit(*manager_, good[3]);
  ASSERT_TRUE(retry.ok()) << retry.status();
  EXPECT_EQ(retry->round(), 1u);
  expect_code(base, absl::StatusCode::kFailedPrecondition, "closed round");
  EXPECT_EQ(manager_->Snapshot().accepted, 0u);
}

// Thousands of corrupted updates, each a valid one with random bytes of its
// wire form changed or a random field set to a random value (the checksum
// recomputed half the time, so the later checks are reached too). Whatever
// the input: the answer is a success or one of the four rejection codes,
// INVALID_ARGUMENT exactly when ValidateUpdate refuses it, a device is
// counted once, and the committed model is FedAvg over the accepted updates
// alone. The sanitized copy of this test runs it under AddressSanitizer and
// UndefinedBehaviorSanitizer.
TEST_F(RoundManagerTest, RandomlyCorruptedUpdatesGetPreciseCodesAndOnlyAcceptedOnesCount) {
  v1::ServerConfig c = SmallConfig();
  c.mutable_policy()->set_target_updates(6);
  c.mutable_policy()->set_min_updates(6);
  c.mutable_policy()->set_over_selection(1.0);  // 6 tasks, all needed to close
  Start(c);
  std::vector<v1::Update> valid;
  for (int i = 0; i < 6; ++i) valid.push_back(TaskAndUpdate("dev-" + std::to_string(i)));
  const v1::HeadSpec spec = manager_->GetModel(1)->spec();

  std::mt19937 rng(2026);
  auto uniform = [&](uint32_t lo, uint32_t hi) {
    return std::uniform_int_distribution<uint32_t>(lo, hi)(rng);
  };
  auto random_bytes = [&](size_t n) {
    std::string b(n, '\0');
    for (char& ch : b) ch = static_cast<char>(uniform(0, 255));
    return b;
  };
  // A few values at each field's edges, and some anywhere.
  auto edgy = [&]() -> uint32_t {
    constexpr uint32_t kEdges[] = {0, 1, 2, 4, 6, 7, 127, 128, 517, 518, 1u << 24, (1u << 24) + 1,
                                   0x7fffffffu, 0x80000000u, 0xffffffffu};
    return uniform(0, 3) == 0 ? uniform(0, 0xffffffffu) : kEdges[uniform(0, 14)];
  };
  auto corrupt = [&](v1::Update u) -> std::optional<v1::Update> {
    if (uniform(0, 2) == 0) {  // the wire form
      std::string wire = u.SerializeAsString();
      switch (uniform(0, 3)) {
        case 0:
          for (uint32_t k = uniform(1, 4); k > 0; --k) {
            wire[uniform(0, static_cast<uint32_t>(wire.size() - 1))] ^=
                static_cast<char>(uniform(1, 255));
          }
          break;
        case 1:
          wire.resize(uniform(0, static_cast<uint32_t>(wire.size())));
          break;
        case 2:
          wire.insert(uniform(0, static_cast<uint32_t>(wire.size())), random_bytes(uniform(1, 8)));
          break;
        default:
          wire += random_bytes(uniform(1, 40));  // unknown or repeated fields
      }
      v1::Update parsed;
      if (!parsed.ParseFromString(wire)) return std::nullopt;  // gRPC's to refuse
      return parsed;
    }
    switch (uniform(0, 10)) {
      case 0: u.set_round(edgy()); break;
      case 1: u.set_base_version(edgy()); break;
      case 2: u.set_sample_count(edgy()); break;
      case 3: u.set_weight_delta(random_bytes(uniform(0, 2) == 0 ? uniform(0, 200) : 64)); break;
      case 4: u.set_bias_delta(random_bytes(uniform(0, 8))); break;
      case 5: u.set_row_scales(uniform(0, 3), edgy()); break;
      case 6: u.add_row_scales(edgy()); break;
      case 7: u.set_task_token(random_bytes(uniform(0, 20))); break;
      case 8: u.set_device_id(std::string(uniform(0, 40), static_cast<char>(uniform(1, 127)))); break;
      case 9: u.set_device_id(valid[uniform(0, 5)].device_id()); break;  // someone else's
      default: u.set_checksum(edgy());
    }
    if (uniform(0, 1) == 0) testing::FixChecksum(&u);
    return u;
  };

  const std::set<absl::StatusCode> rejections = {
      absl::StatusCode::kInvalidArgument, absl::StatusCode::kFailedPrecondition,
      absl::StatusCode::kAborted, absl::StatusCode::kAlreadyExists};
  std::map<std::string, v1::Update> accepted;  // by device: the update that counts
  std::map<absl::StatusCode, int> seen;
  int unparsable = 0;
  for (int i = 0; i < 3000; ++i) {
    // Only three devices' updates are corrupted, so the round stays open
    // (it needs all six) however many of them turn out valid.
    std::optional<v1::Update> u = corrupt(valid[uniform(3, 5)]);
    if (!u) {
      ++unparsable;
      continue;
    }
    const absl::StatusOr<v1::UpdateAck> r = Submit(*manager_, *u);
    ++seen[r.status().code()];
    const bool invalid = !ValidateUpdate(*u, spec).ok();
    ASSERT_EQ(r.status().code() == absl::StatusCode::kInvalidArgument, invalid)
        << "input " << i << ": " << r.status();
    auto before = accepted.find(u->device_id());
    if (r.ok()) {
      if (before == accepted.end()) {
        accepted.emplace(u->device_id(), *u);
      } else {  // only the same bytes are acknowledged again
        ASSERT_EQ(before->second.SerializeAsString(), u->SerializeAsString()) << "input " << i;
      }
    } else {
      ASSERT_TRUE(rejections.contains(r.status().code())) << "input " << i << ": " << r.status();
      if (r.status().code() == absl::StatusCode::kAlreadyExists) {
        ASSERT_NE(before, accepted.end()) << "input " << i << ": " << r.status();
      }
    }
    ASSERT_EQ(manager_->Snapshot().accepted, accepted.size()) << "input " << i;
  }
  // Every kind of answer came up, so the inputs reached each check.
  for (absl::StatusCode code : rejections) EXPECT_GT(seen[code], 0) << absl::StatusCodeToString(code);
  EXPECT_GT(unparsable, 0);

  // The devices not yet counted send their valid updates and close the round.
  for (const v1::Update& u : valid) {
    if (accepted.contains(u.device_id())) continue;
    ASSERT_TRUE(Submit(*manager_, u).ok());
    accepted.emplace(u.device_id(), u);
  }
  manager_->WaitIdle();
  ASSERT_EQ(manager_->Snapshot().latest_version, 2u);
  std::vector<v1::Update> counted;
  for (const auto& [device, u] : accepted) counted.push_back(u);
  EXPECT_TRUE(IsReferenceFedAvg(2, 1, counted));
  EXPECT_EQ(manager_->GetModel(2)->metrics().participants(), 6u);
}

// Shutting down with writes in flight: the destructor waits for the store
// to write them and answers their callers, and nothing the store runs
// afterwards points into the destroyed manager (the sanitized copy of this
// test would report it).
TEST_F(RoundManagerTest, DestroyingTheManagerFirstAnswersTheCallsItQueued) {
  std::vector<v1::Update> updates;
  for (int i = 0; i < 3; ++i) updates.push_back(TaskAndUpdate("dev-" + std::to_string(i)));
  std::atomic<int> answered{0};
  for (const v1::Update& u : updates) {
    manager_->SubmitUpdate(u, [&](absl::StatusOr<v1::UpdateAck> r) {
      EXPECT_TRUE(r.ok()) << r.status();
      ++answered;
    });
  }
  manager_.reset();
  EXPECT_EQ(answered.load(), 3);
  Start(config_);  // the same file again
  EXPECT_EQ(manager_->Snapshot().accepted, 3u) << "acknowledged updates must be durable";
}

// Rejections are warnings, at most 20 per 10 s of the manager's clock so a
// misbehaving fleet cannot flood the log; the rest are counted and reported
// when the next window starts. The edge's own rejections (LogRejected)
// share the limit.
TEST_F(RoundManagerTest, RejectionWarningsAreRateLimited) {
  LogCapture log;
  auto lines_with = [&](const std::string& text) { return log.LinesWith(text); };

  v1::Update bad = TaskAndUpdate("dev-0");
  bad.set_sample_count(0);
  for (int i = 0; i < 25; ++i) {
    EXPECT_EQ(Submit(*manager_, bad).status().code(), absl::StatusCode::kInvalidArgument);
  }
  for (int i = 0; i < 5; ++i) {
    manager_->LogRejected("request", "ipv4:127.0.0.1:1", absl::InvalidArgumentError("not wire"));
  }
  EXPECT_EQ(lines_with("rejected update from dev-0: INVALID_ARGUMENT"), 20);
  EXPECT_EQ(lines_with("rejected request from"), 0);
  EXPECT_EQ(lines_with("not logged"), 0);

  clock_.AdvanceMs(10'000);  // the next window
  manager_->LogRejected("request", "ipv4:127.0.0.1:1", absl::InvalidArgumentError("not wire"));
  EXPECT_EQ(lines_with("10 more rejections not logged in the last 10 s"), 1);
  EXPECT_EQ(lines_with("rejected request from ipv4:127.0.0.1:1: INVALID_ARGUMENT: not wire"), 1);
}

// The rate limit's windows are monotonic time: a wall clock set forward
// does not open a new window (and a flood of warnings), one set back does
// not hold the window shut for an hour.
TEST_F(RoundManagerTest, RejectionWindowsFollowMonotonicTimeNotTheWallClock) {
  LogCapture log;
  v1::Update bad = TaskAndUpdate("dev-0");
  bad.set_sample_count(0);
  auto reject_once = [&] {
    EXPECT_EQ(Submit(*manager_, bad).status().code(), absl::StatusCode::kInvalidArgument);
  };
  for (int i = 0; i < 25; ++i) reject_once();
  EXPECT_EQ(log.LinesWith("rejected update from dev-0"), 20);

  clock_.StepWallMs(kHourMs);
  reject_once();
  EXPECT_EQ(log.LinesWith("rejected update from dev-0"), 20) << "a wall step is no new window";
  EXPECT_EQ(log.LinesWith("not logged"), 0);

  clock_.StepWallMs(-2 * kHourMs);  // an hour behind where the window began
  clock_.AdvanceMs(10'000);
  reject_once();
  EXPECT_EQ(log.LinesWith("6 more rejections not logged in the last 10 s"), 1);
  EXPECT_EQ(log.LinesWith("rejected update from dev-0"), 21);
}

TEST_F(RoundManagerTest, OverloadIsResourceExhaustedWithRetryHint) {
  v1::ServerConfig c = SmallConfig();
  c.set_max_pending_writes(0);  // every write counts as over the limit
  Start(c);
  auto r = Submit(*manager_, TaskAndUpdate("dev-0"));
  ASSERT_EQ(r.status().code(), absl::StatusCode::kResourceExhausted);
  ASSERT_TRUE(RetryAfterMs(r.status()).has_value());
  EXPECT_GT(*RetryAfterMs(r.status()), 0u);
  EXPECT_EQ(manager_->Snapshot().accepted, 0u);
}

TEST_F(RoundManagerTest, StorageFailureIsUnavailableAndTheSameBytesCanBeSentAgain) {
  const v1::Update first = TaskAndUpdate("dev-0", 7);
  const v1::Update second = TaskAndUpdate("dev-1", 9);
  // The store's insert fails (as a full disk or an I/O error would): the
  // device must hear UNAVAILABLE with a retry hint, and nothing may count.
  const std::string db = dir_.File("store.db");
  ExecSql(db,
                "CREATE TRIGGER fail_update BEFORE INSERT ON updates "
                "BEGIN SELECT RAISE(ABORT, 'injected failure'); END");
  auto failed = Submit(*manager_, first);
  ASSERT_EQ(failed.status().code(), absl::StatusCode::kUnavailable) << failed.status();
  ASSERT_TRUE(RetryAfterMs(failed.status()).has_value());
  EXPECT_EQ(manager_->Snapshot().accepted, 0u);
  EXPECT_EQ(manager_->Snapshot().pending, 0u);

  // Storage back: the same bytes are taken as a first submission, once.
  ExecSql(db, "DROP TRIGGER fail_update");
  ASSERT_TRUE(Submit(*manager_, first).ok());
  ASSERT_TRUE(Submit(*manager_, second).ok());
  EXPECT_EQ(manager_->Snapshot().accepted, 2u);
  clock_.AdvanceMs(10'000);  // the deadline, with the minimum of 2
  manager_->Tick();
  manager_->WaitIdle();
  EXPECT_TRUE(IsReferenceFedAvg(2, 1, {first, second}));
  EXPECT_EQ(manager_->GetModel(2)->metrics().participants(), 2u);
  EXPECT_EQ(manager_->GetModel(2)->metrics().samples(), 16u);
}

TEST_F(RoundManagerTest, BadCheckInsAreRejected) {
  EXPECT_EQ(CheckIn(*manager_, "").status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(CheckIn(*manager_, "has space").status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(CheckIn(*manager_, std::string(33, 'a')).status().code(),
            absl::StatusCode::kInvalidArgument);
  v1::CheckInRequest small;
  small.set_device_id("tiny");
  small.mutable_capabilities()->set_max_features(8);  // head has 16
  small.mutable_capabilities()->set_max_classes(4);
  std::promise<absl::StatusOr<v1::CheckInResponse>> promise;
  manager_->CheckIn(small, [&](auto r) { promise.set_value(std::move(r)); });
  EXPECT_EQ(promise.get_future().get().status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(manager_->Snapshot().tasks_issued, 0u);
}

TEST_F(RoundManagerTest, RestartResumesTheOpenRoundWithoutLosingOrRecountingUpdates) {
  std::vector<v1::Update> updates;
  for (int i = 0; i < 4; ++i) updates.push_back(TaskAndUpdate("dev-" + std::to_string(i), 3 + i));
  ASSERT_TRUE(Submit(*manager_, updates[0]).ok());
  ASSERT_TRUE(Submit(*manager_, updates[1]).ok());

  Start(config_);  // a new process on the same store
  RoundSnapshot s = manager_->Snapshot();
  EXPECT_EQ(s.round, 1u);
  EXPECT_EQ(s.accepted, 2u);
  EXPECT_EQ(s.tasks_issued, 4u) << "tasks handed out before the restart stay valid";
  // A retry of an update accepted before the restart is not counted again.
  ASSERT_TRUE(Submit(*manager_, updates[1]).ok());
  EXPECT_EQ(manager_->Snapshot().accepted, 2u);
  ASSERT_TRUE(Submit(*manager_, updates[2]).ok());
  ASSERT_TRUE(Submit(*manager_, updates[3]).ok());
  manager_->WaitIdle();
  EXPECT_EQ(manager_->Snapshot().latest_version, 2u);
  EXPECT_TRUE(IsReferenceFedAvg(2, 1, updates));

  Start(config_);  // restart between rounds
  s = manager_->Snapshot();
  EXPECT_EQ(s.latest_version, 2u);
  EXPECT_EQ(s.round, 2u);
  EXPECT_TRUE(IsReferenceFedAvg(2, 1, updates));
}

TEST_F(RoundManagerTest, RefusesAStoreOfAnotherHeadShape) {
  v1::ServerConfig other = SmallConfig();
  other.mutable_head()->set_feature_count(8);
  manager_.reset();
  auto initial = InitialModel(other, clock_.NowMs());
  ASSERT_TRUE(initial.ok());
  auto manager = RoundManager::Create(other, *initial, store_.get(), &clock_);
  EXPECT_EQ(manager.status().code(), absl::StatusCode::kFailedPrecondition);
}

// ---- bounded influence ---------------------------------------------------

// A check-in that declares `samples` (capabilities.sample_count), waiting
// for the answer.
absl::StatusOr<v1::CheckInResponse> CheckInDeclaring(RoundManager& m, const std::string& device,
                                                     uint32_t samples) {
  v1::CheckInRequest request;
  request.set_device_id(device);
  request.mutable_capabilities()->set_sample_count(samples);
  std::promise<absl::StatusOr<v1::CheckInResponse>> answer;
  m.CheckIn(request, [&](absl::StatusOr<v1::CheckInResponse> r) { answer.set_value(r); });
  return answer.get_future().get();
}

// The largest legal delta with random signs, claiming the largest count.
v1::Update AttackUpdate(const v1::RoundTask& task, const std::string& device, std::mt19937& rng) {
  v1::Update u = MakeUpdate(task.model().spec(), task.round(), device, task.task_token(),
                            task.model().version(), 1u << 24, rng, 517);
  std::string w = u.weight_delta();
  for (char& ch : w) ch = static_cast<char>((rng() & 1) ? 127 : -127);
  std::string b = u.bias_delta();
  for (char& ch : b) ch = static_cast<char>((rng() & 1) ? 127 : -127);
  u.set_weight_delta(w);
  u.set_bias_delta(b);
  for (int c = 0; c < u.row_scales_size(); ++c) u.set_row_scales(c, 517);
  testing::FixChecksum(&u);
  return u;
}

TEST_F(RoundManagerTest, AnUpdateClaimingMoreSamplesThanItsDeviceDeclaredIsRefused) {
  std::vector<v1::Update> accepted;
  std::vector<v1::RoundTask> tasks;
  for (int i = 0; i < 4; ++i) {
    auto r = CheckInDeclaring(*manager_, "dev-" + std::to_string(i), 10);
    ASSERT_TRUE(r.ok() && r->has_task()) << i;
    tasks.push_back(r->task());
  }
  auto make = [&](int i, uint32_t samples) {
    const v1::RoundTask& t = tasks[static_cast<size_t>(i)];
    return MakeUpdate(t.model().spec(), t.round(), "dev-" + std::to_string(i), t.task_token(),
                      t.model().version(), samples, rng_, 40);
  };
  // One sample more than declared: refused, and nothing recorded.
  auto over = Submit(*manager_, make(0, 11));
  EXPECT_EQ(over.status().code(), absl::StatusCode::kInvalidArgument) << over.status();
  EXPECT_NE(over.status().message().find("declared"), std::string::npos) << over.status();
  EXPECT_EQ(manager_->Snapshot().accepted, 0u);
  // A second check-in cannot raise the declared count.
  auto again = CheckInDeclaring(*manager_, "dev-1", 1u << 24);
  ASSERT_TRUE(again.ok() && again->has_task());
  EXPECT_EQ(Submit(*manager_, make(1, 1u << 24)).status().code(),
            absl::StatusCode::kInvalidArgument);
  // At or below the declared count: accepted.
  accepted.push_back(make(0, 10));
  accepted.push_back(make(1, 7));
  accepted.push_back(make(2, 10));
  accepted.push_back(make(3, 1));
  for (const v1::Update& u : accepted) ASSERT_TRUE(Submit(*manager_, u).ok());
  manager_->WaitIdle();
  ASSERT_EQ(manager_->Snapshot().latest_version, 2u);
  EXPECT_TRUE(IsReferenceFedAvg(2, 1, accepted)) << "the refused updates are not in it";
  EXPECT_EQ(manager_->GetModel(2)->metrics().samples(), 28u);
}

// One attacker among four: declared and claimed 2^24 samples, the largest
// delta. Its weight is capped and its norm clipped, the version is the
// reference's bounded FedAvg with the configured defaults, the metrics
// count both, and recomputing from the stored updates gives the same head.
TEST_F(RoundManagerTest, AnAttackerIsCappedAndClippedAndTheVersionIsRecomputable) {
  std::vector<v1::Update> updates;
  for (int i = 0; i < 3; ++i) {
    const std::string id = "dev-" + std::to_string(i);
    auto r = CheckInDeclaring(*manager_, id, 10 + 2 * i);
    ASSERT_TRUE(r.ok() && r->has_task());
    updates.push_back(MakeUpdate(r->task().model().spec(), r->task().round(), id,
                                 r->task().task_token(), r->task().model().version(), 10 + 2 * i,
                                 rng_, 40));
  }
  auto r = CheckInDeclaring(*manager_, "mallory", 1u << 24);
  ASSERT_TRUE(r.ok() && r->has_task());
  updates.push_back(AttackUpdate(r->task(), "mallory", rng_));
  for (const v1::Update& u : updates) ASSERT_TRUE(Submit(*manager_, u).ok());
  manager_->WaitIdle();
  ASSERT_EQ(manager_->Snapshot().latest_version, 2u);
  EXPECT_TRUE(IsReferenceFedAvg(2, 1, updates));
  auto committed = manager_->GetModel(2);
  ASSERT_TRUE(committed.ok());
  EXPECT_EQ(committed->metrics().capped_updates(), 1u) << "cap 3 x 12: only the attacker";
  EXPECT_GE(committed->metrics().clipped_updates(), 1u);
  EXPECT_EQ(committed->metrics().samples(), 36u + (1u << 24)) << "claimed counts on record";

  // Recomputed from the store, in the order it holds them and reversed.
  auto stored = store_->RoundUpdates(1);
  ASSERT_TRUE(stored.ok());
  ASSERT_EQ(stored->size(), 4u);
  std::vector<v1::Update> parsed;
  for (const StoredUpdate& su : *stored) {
    parsed.emplace_back();
    ASSERT_TRUE(parsed.back().ParseFromString(su.payload));
  }
  auto base = manager_->GetModel(1);
  ASSERT_TRUE(base.ok());
  for (int pass = 0; pass < 2; ++pass) {
    if (pass == 1) std::reverse(parsed.begin(), parsed.end());
    std::vector<UpdateMeasure> measures;
    for (const v1::Update& u : parsed) measures.push_back(MeasureUpdate(u, 16, 4));
    const InfluenceDecision d = DecideInfluence(measures, {3 * 65536, 0, 2 * 65536});
    UpdateAccumulator acc(16, 4);
    for (size_t i = 0; i < parsed.size(); ++i) acc.Add(parsed[i], d.influence[i]);
    auto head = acc.Apply(*LoadHead(*base), 65536);
    ASSERT_TRUE(head.ok());
    EXPECT_EQ(*head, *LoadHead(*committed)) << "pass " << pass;
    EXPECT_EQ(acc.capped(), committed->metrics().capped_updates());
    EXPECT_EQ(acc.clipped(), committed->metrics().clipped_updates());
  }
}

// Declared counts are stored with their tasks (round_manager.h): after a
// restart, a task of the resumed round still refuses an update above what
// its device declared before the restart, and records nothing. A device
// that declared nothing (0) is bounded by the median cap alone: 1000
// samples claimed, median 10, cap 30.
TEST_F(RoundManagerTest, AfterARestartTheDeclaredCountStillBoundsAResumedTask) {
  std::vector<v1::RoundTask> tasks;
  for (int i = 0; i < 4; ++i) {
    auto r = CheckInDeclaring(*manager_, "dev-" + std::to_string(i), i == 3 ? 0 : 10);
    ASSERT_TRUE(r.ok() && r->has_task());
    tasks.push_back(r->task());
  }
  Start(config_);  // restart with the round open
  auto make = [&](int i, uint32_t samples) {
    const v1::RoundTask& t = tasks[static_cast<size_t>(i)];
    return MakeUpdate(t.model().spec(), t.round(), "dev-" + std::to_string(i), t.task_token(),
                      t.model().version(), samples, rng_, 40);
  };
  auto over = Submit(*manager_, make(0, 11));
  EXPECT_EQ(over.status().code(), absl::StatusCode::kInvalidArgument) << over.status();
  EXPECT_NE(over.status().message().find("declared"), std::string::npos) << over.status();
  EXPECT_EQ(manager_->Snapshot().accepted, 0u);
  std::vector<v1::Update> updates;
  updates.push_back(make(0, 10));
  updates.push_back(make(1, 10));
  updates.push_back(make(2, 10));
  updates.push_back(make(3, 1000));
  for (const v1::Update& u : updates) ASSERT_TRUE(Submit(*manager_, u).ok());
  manager_->WaitIdle();
  ASSERT_EQ(manager_->Snapshot().latest_version, 2u);
  EXPECT_TRUE(IsReferenceFedAvg(2, 1, updates)) << "the refused update is not in it";
  EXPECT_EQ(manager_->GetModel(2)->metrics().capped_updates(), 1u);
}

// ---- federated evaluation ---------------------------------------------------

v1::Evaluation EvaluationOf(uint32_t version, uint32_t samples, uint32_t correct,
                            uint64_t loss_sum_q16) {
  v1::Evaluation e;
  e.set_model_version(version);
  e.set_samples(samples);
  e.set_correct(correct);
  e.set_loss_sum_q16(loss_sum_q16);
  return e;
}

// The store's fleet evaluation of each version, as ListVersions gives it.
std::map<uint32_t, v1::FleetEvaluation> StoredFleet(ModelStore& store) {
  std::map<uint32_t, v1::FleetEvaluation> out;
  auto versions = store.ListVersions(0, 100);
  EXPECT_TRUE(versions.ok()) << versions.status();
  if (!versions.ok()) return out;
  for (const v1::ModelVersion& v : *versions) {
    if (v.has_fleet_evaluation()) out[v.version()] = v.fleet_evaluation();
  }
  return out;
}

struct FleetSums {
  uint32_t devices = 0;
  uint64_t samples = 0, correct = 0, loss = 0;
  void Add(const v1::Evaluation& e) {
    ++devices;
    samples += e.samples();
    correct += e.correct();
    loss += e.loss_sum_q16();
  }
};

::testing::AssertionResult SameSums(const FleetSums& want, const v1::FleetEvaluation& got) {
  if (got.devices() == want.devices && got.samples() == want.samples &&
      got.correct() == want.correct && got.loss_sum_q16() == want.loss) {
    return ::testing::AssertionSuccess();
  }
  return ::testing::AssertionFailure()
         << "stored " << got.ShortDebugString() << ", expected devices: " << want.devices
         << " samples: " << want.samples << " correct: " << want.correct
         << " loss_sum_q16: " << want.loss;
}

// Six rounds of four accepted devices, each reporting its base version,
// with refused updates and retries mixed in: each version's sums are the
// accepted reports' own, also after a restart. The refused updates carry
// evaluations that would change the sums if counted.
TEST_F(RoundManagerTest, FleetEvaluationsAreSummedExactlyFromAcceptedUpdatesOnly) {
  std::map<uint32_t, FleetSums> expected;
  for (uint32_t round = 1; round <= 6; ++round) {
    const uint32_t base = manager_->Snapshot().base_version;
    ASSERT_EQ(base, round);
    std::vector<v1::Update> accepted;
    for (int d = 0; d < 4; ++d) {
      const std::string device = absl::StrCat("dev-", round, "-", d);
      v1::Update u = TaskAndUpdate(device, 20 + d);
      const uint32_t samples = 1 + static_cast<uint32_t>(rng_() % (1u << 24));
      const uint32_t correct = static_cast<uint32_t>(rng_() % (uint64_t{samples} + 1));
      const uint64_t loss = (uint64_t{samples} << 21) - rng_() % samples;
      *u.mutable_evaluation() = EvaluationOf(base, samples, correct, loss);
      if (d == 0) {
        // Refused first (a bad evaluation: correct above samples), then
        // sent right: only the accepted one counts.
        v1::Update bad = u;
        bad.mutable_evaluation()->set_correct(samples + 1);
        EXPECT_EQ(Submit(*manager_, bad).status().code(), absl::StatusCode::kInvalidArgument);
      }
      if (d == 1) {
        // Refused by the round (another base version): not counted.
        v1::Update stale = u;
        stale.set_base_version(base + 1);
        stale.mutable_evaluation()->set_model_version(base + 1);
        EXPECT_EQ(Submit(*manager_, stale).status().code(), absl::StatusCode::kAborted);
      }
      accepted.push_back(u);
      expected[base].Add(u.evaluation());
    }
    for (size_t i = 0; i < accepted.size(); ++i) {
      ASSERT_TRUE(Submit(*manager_, accepted[i]).ok()) << i;
      // The same bytes again, a device retrying after a lost ack: acked,
      // counted once.
      if (i == 0) {
        ASSERT_TRUE(Submit(*manager_, accepted[i]).ok());
      }
    }
    // A different update of a device already accepted: refused.
    v1::Update other = accepted[2];
    other.mutable_evaluation()->set_correct(0);
    EXPECT_FALSE(Submit(*manager_, other).ok());
    manager_->WaitIdle();
    ASSERT_EQ(manager_->Snapshot().latest_version, round + 1);
  }
  for (int pass = 0; pass < 2; ++pass) {
    SCOPED_TRACE(pass == 0 ? "running" : "after a restart");
    const std::map<uint32_t, v1::FleetEvaluation> fleet = StoredFleet(*store_);
    ASSERT_EQ(fleet.size(), 6u) << "versions 1 to 6; 7 is not trained from yet";
    for (const auto& [version, sums] : expected) {
      ASSERT_TRUE(fleet.contains(version)) << version;
      EXPECT_TRUE(SameSums(sums, fleet.at(version))) << "version " << version;
    }
    Start(config_);
  }
}

// The evaluation weighs no more samples than the device declared at
// check-in, as the update does; a device that declared nothing is bounded
// by the validation's 2^24 alone.
TEST_F(RoundManagerTest, AnEvaluationAboveTheDeclaredCountIsRefusedAndNotCounted) {
  auto r = CheckInDeclaring(*manager_, "dev-a", 10);
  ASSERT_TRUE(r.ok() && r->has_task());
  const v1::RoundTask& t = r->task();
  v1::Update u = MakeUpdate(t.model().spec(), t.round(), "dev-a", t.task_token(),
                            t.model().version(), 10, rng_, 40);
  *u.mutable_evaluation() = EvaluationOf(1, 11, 5, 0);
  auto over = Submit(*manager_, u);
  EXPECT_EQ(over.status().code(), absl::StatusCode::kInvalidArgument) << over.status();
  EXPECT_NE(over.status().message().find("evaluation.samples"), std::string::npos)
      << over.status();
  EXPECT_NE(over.status().message().find("declared"), std::string::npos) << over.status();
  manager_->WaitIdle();
  EXPECT_TRUE(StoredFleet(*store_).empty());
  EXPECT_EQ(manager_->Snapshot().accepted, 0u);

  *u.mutable_evaluation() = EvaluationOf(1, 10, 5, 0);
  ASSERT_TRUE(Submit(*manager_, u).ok());
  auto undeclared = CheckInDeclaring(*manager_, "dev-b", 0);
  ASSERT_TRUE(undeclared.ok() && undeclared->has_task());
  const v1::RoundTask& tb = undeclared->task();
  v1::Update ub = MakeUpdate(tb.model().spec(), tb.round(), "dev-b", tb.task_token(),
                             tb.model().version(), 10, rng_, 40);
  *ub.mutable_evaluation() = EvaluationOf(1, 1u << 24, 3, 0);
  ASSERT_TRUE(Submit(*manager_, ub).ok());
  manager_->WaitIdle();
  const std::map<uint32_t, v1::FleetEvaluation> fleet = StoredFleet(*store_);
  ASSERT_TRUE(fleet.contains(1));
  EXPECT_EQ(fleet.at(1).devices(), 2u);
  EXPECT_EQ(fleet.at(1).samples(), 10u + (1u << 24));
  EXPECT_EQ(fleet.at(1).correct(), 8u);
}

// With every bound set to 0 the server runs plain FedAvg, and the same
// attacker pins the head.
TEST_F(RoundManagerTest, BoundsSetToZeroGivePlainFedAvg) {
  v1::ServerConfig c = SmallConfig();
  c.mutable_influence()->set_max_weight_median_multiple(0);
  c.mutable_influence()->set_max_norm_median_multiple(0);
  c.mutable_influence()->set_max_update_norm(0);
  ApplyDefaults(&c);  // explicit zeros stay zeros
  ASSERT_EQ(c.influence().max_weight_median_multiple(), 0);
  Start(c, "plain.db");
  std::vector<v1::Update> updates;
  for (int i = 0; i < 3; ++i) updates.push_back(TaskAndUpdate("dev-" + std::to_string(i), 10));
  updates.push_back(AttackUpdate(Task("mallory"), "mallory", rng_));
  for (const v1::Update& u : updates) ASSERT_TRUE(Submit(*manager_, u).ok());
  manager_->WaitIdle();
  ASSERT_EQ(manager_->Snapshot().latest_version, 2u);
  auto committed = manager_->GetModel(2);
  auto base = manager_->GetModel(1);
  ASSERT_TRUE(committed.ok() && base.ok());
  EXPECT_TRUE(MatchesReferenceFedAvg(*committed, *base, updates, 65536, testing::kNoBounds));
  EXPECT_EQ(committed->metrics().capped_updates(), 0u);
  EXPECT_EQ(committed->metrics().clipped_updates(), 0u);
  const Head head = *LoadHead(*committed);
  const int pinned = static_cast<int>(std::count_if(
      head.weights.begin(), head.weights.end(), [](int16_t w) { return w == 32767 || w == -32768; }));
  EXPECT_EQ(pinned, 64) << "every weight at an int16 limit";
}

// Check-in limits (checkin_limiter.h) through the manager, with the peer
// given as the service passes it.
absl::StatusOr<v1::CheckInResponse> CheckInFrom(RoundManager& m, const std::string& device,
                                                const std::string& peer) {
  v1::CheckInRequest request;
  request.set_device_id(device);
  std::promise<absl::StatusOr<v1::CheckInResponse>> answer;
  m.CheckIn(request, peer, [&](absl::StatusOr<v1::CheckInResponse> r) { answer.set_value(r); });
  return answer.get_future().get();
}

// The attack of issue 12: one client inventing device ids at the start of
// a round took every task slot. With the default share (0.25 of SmallConfig's
// 6 slots: 2) it gets two, and four devices behind other addresses complete
// the round; the next round gives the flooding peer its share again.
TEST_F(RoundManagerTest, FloodFromOnePeerLeavesTheRoundToOtherPeers) {
  ASSERT_EQ(config_.checkin_limits().peer_task_share(), 0.25);
  const std::string attacker = "ipv4:10.6.6.6";
  int attacker_tasks = 0;
  for (int i = 0; i < 60; ++i) {
    auto r = CheckInFrom(*manager_, "fake-" + std::to_string(i), attacker);
    ASSERT_TRUE(r.ok()) << r.status();  // a RetryAfter, which every device SDK handles
    if (r->has_task()) {
      ++attacker_tasks;
    } else {
      EXPECT_GT(r->retry().retry_after_ms(), 0u) << i;
    }
  }
  EXPECT_EQ(attacker_tasks, 2);
  EXPECT_EQ(manager_->Snapshot().tasks_issued, 2u);
  std::vector<v1::Update> updates;
  for (int i = 0; i < 4; ++i) {
    const std::string device = "dev-" + std::to_string(i);
    auto r = CheckInFrom(*manager_, device, "ipv4:10.0.0." + std::to_string(i + 1));
    ASSERT_TRUE(r.ok() && r->has_task()) << device;
    const v1::RoundTask& task = r->task();
    updates.push_back(MakeUpdate(task.model().spec(), task.round(), device, task.task_token(),
                                 task.model().version(), 10, rng_, 40));
  }
  for (const v1::Update& u : updates) ASSERT_TRUE(Submit(*manager_, u).ok());
  manager_->WaitIdle();
  ASSERT_EQ(manager_->Snapshot().latest_version, 2u);
  EXPECT_TRUE(IsReferenceFedAvg(2, 1, updates));
  // A new round: the share counts start again (the peer's bucket, 40
  // check-ins deep, is refilled by the time that passes).
  clock_.AdvanceMs(2000);
  attacker_tasks = 0;
  for (int i = 0; i < 10; ++i) {
    auto r = CheckInFrom(*manager_, "fake-next-" + std::to_string(i), attacker);
    ASSERT_TRUE(r.ok()) << r.status();
    attacker_tasks += r->has_task();
  }
  EXPECT_EQ(attacker_tasks, 2);
}

// A device checking in again gets its task again, and that task counts once
// against its peer's share.
TEST_F(RoundManagerTest, CheckingInAgainDoesNotCountAgainstThePeerShare) {
  const std::string peer = "ipv4:192.0.2.7";
  auto first = CheckInFrom(*manager_, "dev-a", peer);
  ASSERT_TRUE(first.ok() && first->has_task());
  for (int i = 0; i < 3; ++i) {
    auto again = CheckInFrom(*manager_, "dev-a", peer);
    ASSERT_TRUE(again.ok() && again->has_task()) << i;
    EXPECT_EQ(again->task().task_token(), first->task().task_token());
  }
  auto second = CheckInFrom(*manager_, "dev-b", peer);
  ASSERT_TRUE(second.ok());
  EXPECT_TRUE(second->has_task()) << "the share (2) counted dev-a more than once";
  auto third = CheckInFrom(*manager_, "dev-c", peer);
  ASSERT_TRUE(third.ok());
  EXPECT_FALSE(third->has_task());
  EXPECT_EQ(third->retry().retry_after_ms(), config_.policy().retry_after_ms());
  EXPECT_EQ(manager_->Snapshot().tasks_issued, 2u);
}

// The per-peer bucket empties and refills on the monotonic clock; its
// RetryAfter says when.
TEST_F(RoundManagerTest, PeerRateLimitRefillsOnTheMonotonicClock) {
  v1::ServerConfig c = SmallConfig();
  c.mutable_checkin_limits()->set_peer_task_share(1);
  c.mutable_checkin_limits()->set_peer_checkins_per_second(2);  // one each 500 ms
  c.mutable_checkin_limits()->set_peer_burst(2);
  Start(c, "rate.db");
  const std::string peer = "ipv4:192.0.2.9";
  ASSERT_TRUE(CheckInFrom(*manager_, "dev-0", peer)->has_task());
  ASSERT_TRUE(CheckInFrom(*manager_, "dev-1", peer)->has_task());
  auto limited = CheckInFrom(*manager_, "dev-2", peer);
  ASSERT_TRUE(limited.ok());
  EXPECT_FALSE(limited->has_task());
  EXPECT_EQ(limited->retry().retry_after_ms(), 500u);
  clock_.StepWallMs(kHourMs);  // the wall clock refills nothing
  EXPECT_FALSE(CheckInFrom(*manager_, "dev-2", peer)->has_task());
  clock_.AdvanceMs(499);
  EXPECT_FALSE(CheckInFrom(*manager_, "dev-2", peer)->has_task());
  clock_.AdvanceMs(1);
  EXPECT_TRUE(CheckInFrom(*manager_, "dev-2", peer)->has_task());
  EXPECT_EQ(manager_->Snapshot().tasks_issued, 3u);
}

// The simulator and a bridge on the server's host bring a whole fleet from
// loopback: by default the per-peer limits leave them alone.
TEST_F(RoundManagerTest, LoopbackPeersAreExemptByDefault) {
  for (int i = 0; i < 6; ++i) {
    auto r = CheckInFrom(*manager_, "dev-" + std::to_string(i), "ipv4:127.0.0.1");
    ASSERT_TRUE(r.ok() && r->has_task()) << i;
  }
  EXPECT_EQ(manager_->Snapshot().tasks_issued, 6u);
}

// ---- operator controls: pause, resume, rollback, rejected counting ---------

AuditEntry Operator(int64_t at_ms, const std::string& reason) {
  return AuditEntry{/*id=*/0, at_ms, "token:ops", /*action=*/"", reason};
}

// Check-ins answered with a RetryAfter of the policy's length and no task.
::testing::AssertionResult GetsOnlyARetry(RoundManager& manager, const std::string& device,
                                          uint32_t retry_after_ms) {
  auto response = CheckIn(manager, device);
  if (!response.ok()) return ::testing::AssertionFailure() << response.status();
  if (response->has_task()) return ::testing::AssertionFailure() << device << " got a task";
  if (response->retry().retry_after_ms() != retry_after_ms) {
    return ::testing::AssertionFailure() << "retry after " << response->retry().retry_after_ms();
  }
  return ::testing::AssertionSuccess();
}

TEST_F(RoundManagerTest, PauseHoldsBackTasksAndTheNextRoundButTheOpenRoundCommits) {
  std::vector<v1::Update> updates;
  for (int i = 0; i < 4; ++i) updates.push_back(TaskAndUpdate("dev-" + std::to_string(i), 4 + i));
  const int64_t paused_at = clock_.NowMs();
  ASSERT_TRUE(manager_->SetPaused(true, Operator(paused_at, "maintenance")).ok());
  const PauseState state = manager_->Paused();
  EXPECT_TRUE(state.paused);
  EXPECT_EQ(state.since_unix_ms, paused_at);
  EXPECT_EQ(state.by, "token:ops");
  EXPECT_TRUE(manager_->Snapshot().paused);
  // New devices and devices holding a task alike get the policy's retry.
  EXPECT_TRUE(GetsOnlyARetry(*manager_, "dev-new", 3000));
  EXPECT_TRUE(GetsOnlyARetry(*manager_, "dev-0", 3000));
  // Work already handed out is taken, and the round commits at K.
  for (const v1::Update& u : updates) ASSERT_TRUE(Submit(*manager_, u).ok());
  manager_->WaitIdle();
  EXPECT_TRUE(IsReferenceFedAvg(2, 1, updates));
  const RoundSnapshot s = manager_->Snapshot();
  EXPECT_EQ(s.latest_version, 2u);
  EXPECT_FALSE(s.open);
  EXPECT_EQ(s.round, 1u) << "no next round while paused";
  const RoundRecord last = store_->LatestRound().value().value();
  EXPECT_EQ(last.round, 1u);
  EXPECT_EQ(last.state, RoundState::kCommitted);
  EXPECT_TRUE(GetsOnlyARetry(*manager_, "dev-new", 3000));
  // A retry of an update the closed round took is still acknowledged.
  auto again = Submit(*manager_, updates[0]);
  ASSERT_TRUE(again.ok()) << again.status();
  EXPECT_EQ(again->round(), 1u);
  // Pausing again changes and records nothing.
  ASSERT_TRUE(manager_->SetPaused(true, Operator(paused_at + 5, "again")).ok());
  EXPECT_EQ(manager_->Paused().since_unix_ms, paused_at);
  const std::vector<AuditEntry> audit = store_->AuditLog(0, 10).value();
  ASSERT_EQ(audit.size(), 1u);
  EXPECT_EQ(audit[0].action, "pause");
  EXPECT_EQ(audit[0].actor, "token:ops");
  EXPECT_EQ(audit[0].detail, "maintenance");
}

TEST_F(RoundManagerTest, ThePausedOpenRoundStillClosesAtItsDeadline) {
  ASSERT_TRUE(Submit(*manager_, TaskAndUpdate("dev-0")).ok());
  ASSERT_TRUE(manager_->SetPaused(true, Operator(clock_.NowMs(), "")).ok());
  clock_.AdvanceMs(10'000);  // below M = 2: abandoned
  TickAndWait();
  EXPECT_FALSE(manager_->Snapshot().open);
  EXPECT_EQ(store_->LatestRound().value()->state, RoundState::kAbandoned);
  EXPECT_EQ(store_->LatestRound().value()->round, 1u);
}

TEST_F(RoundManagerTest, ResumeOpensARoundAtOnceOnTheLatestVersion) {
  std::vector<v1::Update> updates;
  for (int i = 0; i < 4; ++i) updates.push_back(TaskAndUpdate("dev-" + std::to_string(i)));
  ASSERT_TRUE(manager_->SetPaused(true, Operator(clock_.NowMs(), "")).ok());
  for (const v1::Update& u : updates) ASSERT_TRUE(Submit(*manager_, u).ok());
  manager_->WaitIdle();
  ASSERT_FALSE(manager_->Snapshot().open);
  clock_.AdvanceMs(1000);
  ASSERT_TRUE(manager_->SetPaused(false, Operator(clock_.NowMs(), "done")).ok());
  const RoundSnapshot s = manager_->Snapshot();
  EXPECT_TRUE(s.open);
  EXPECT_FALSE(s.paused);
  EXPECT_EQ(s.round, 2u);
  EXPECT_EQ(s.base_version, 2u);
  EXPECT_EQ(s.opened_ms, clock_.NowMs());
  EXPECT_EQ(s.deadline_ms, clock_.NowMs() + 10'000);
  EXPECT_EQ(store_->LatestRound().value()->round, 2u);
  EXPECT_EQ(store_->LatestRound().value()->state, RoundState::kOpen);
  const v1::RoundTask task = Task("dev-new");
  EXPECT_EQ(task.round(), 2u);
  EXPECT_EQ(task.model().version(), 2u);
  const PauseState state = manager_->Paused();
  EXPECT_FALSE(state.paused);
  EXPECT_EQ(state.since_unix_ms, 0);
  EXPECT_EQ(state.by, "");
  // Resuming a running server records nothing.
  ASSERT_TRUE(manager_->SetPaused(false, Operator(clock_.NowMs(), "")).ok());
  const std::vector<AuditEntry> audit = store_->AuditLog(0, 10).value();
  ASSERT_EQ(audit.size(), 2u);
  EXPECT_EQ(audit[0].action, "resume");
  EXPECT_EQ(audit[0].detail, "done");
  EXPECT_EQ(audit[1].action, "pause");
}

TEST_F(RoundManagerTest, APauseSurvivesARestartWithOrWithoutAnOpenRound) {
  const v1::Update first = TaskAndUpdate("dev-0");
  ASSERT_TRUE(Submit(*manager_, first).ok());
  const v1::Update second = TaskAndUpdate("dev-1");
  ASSERT_TRUE(manager_->SetPaused(true, Operator(clock_.NowMs(), "")).ok());

  Start(config_);  // a new process, round 1 still open
  EXPECT_TRUE(manager_->Paused().paused);
  EXPECT_TRUE(manager_->Snapshot().open);
  EXPECT_TRUE(GetsOnlyARetry(*manager_, "dev-new", 3000));
  ASSERT_TRUE(Submit(*manager_, second).ok()) << "a task from before the restart still counts";
  clock_.AdvanceMs(10'000);
  TickAndWait();  // M = 2 reached: commits, and opens nothing
  EXPECT_EQ(manager_->Snapshot().latest_version, 2u);
  EXPECT_FALSE(manager_->Snapshot().open);

  Start(config_);  // a new process with no round open
  EXPECT_TRUE(manager_->Paused().paused);
  const RoundSnapshot s = manager_->Snapshot();
  EXPECT_FALSE(s.open);
  EXPECT_EQ(s.round, 1u);
  EXPECT_EQ(store_->LatestRound().value()->round, 1u) << "a paused restart opens no round";
  EXPECT_TRUE(GetsOnlyARetry(*manager_, "dev-new", 3000));
  // The last round's updates are still acknowledged again.
  EXPECT_TRUE(Submit(*manager_, first).ok());
  ASSERT_TRUE(manager_->SetPaused(false, Operator(clock_.NowMs(), "")).ok());
  EXPECT_EQ(Task("dev-new").round(), 2u);
  EXPECT_EQ(store_->LatestRound().value()->base_version, 2u);
}

TEST_F(RoundManagerTest, APauseTheStoreCannotRecordChangesNothing) {
  ExecSql(dir_.File("store.db"),
          "CREATE TRIGGER fail_pause BEFORE INSERT ON pause_state "
          "BEGIN SELECT RAISE(ABORT, 'injected failure'); END");
  EXPECT_FALSE(manager_->SetPaused(true, Operator(clock_.NowMs(), "")).ok());
  EXPECT_FALSE(manager_->Paused().paused);
  EXPECT_FALSE(manager_->Snapshot().paused);
  EXPECT_EQ(Task("dev-0").round(), 1u);
  EXPECT_TRUE(store_->AuditLog(0, 10).value().empty());
}

// Round 1 committed as version 2 from four updates; round 2 open on it.
class RollbackTest : public RoundManagerTest {
 protected:
  void SetUp() override {
    RoundManagerTest::SetUp();
    std::vector<v1::Update> updates;
    for (int i = 0; i < 4; ++i) updates.push_back(TaskAndUpdate("dev-" + std::to_string(i), 9));
    for (const v1::Update& u : updates) ASSERT_TRUE(Submit(*manager_, u).ok());
    manager_->WaitIdle();
    ASSERT_EQ(manager_->Snapshot().latest_version, 2u);
    ASSERT_EQ(manager_->Snapshot().round, 2u);
    // Version 2 must differ from version 1, or a copy could not be told
    // from no copy at all.
    ASSERT_NE(store_->GetVersion(2)->weights(), store_->GetVersion(1)->weights());
  }
};

TEST_F(RollbackTest, CommitsACopyOfTheOlderVersionAndTrainsFromIt) {
  const v1::Update accepted = TaskAndUpdate("dev-a");
  ASSERT_TRUE(Submit(*manager_, accepted).ok());
  const v1::Update stale = TaskAndUpdate("dev-b");
  clock_.AdvanceMs(500);
  const int64_t now = clock_.NowMs();
  absl::StatusOr<RoundManager::RollbackResult> result =
      manager_->Rollback(1, Operator(now, "bad model"));
  ASSERT_TRUE(result.ok()) << result.status();
  EXPECT_EQ(result->abandoned_round, 2u);
  const v1::ModelVersion source = store_->GetVersion(1).value();
  const v1::ModelVersion restored = store_->GetVersion(3).value();
  // Bit for bit the older version's model, with its own lineage.
  EXPECT_EQ(restored.weights(), source.weights());
  EXPECT_EQ(restored.bias(), source.bias());
  EXPECT_EQ(restored.checksum(), source.checksum());
  EXPECT_EQ(restored.spec().SerializeAsString(), source.spec().SerializeAsString());
  EXPECT_EQ(restored.version(), 3u);
  EXPECT_EQ(restored.parent_version(), 2u);
  EXPECT_EQ(restored.round(), 0u);
  EXPECT_EQ(restored.restored_from(), 1u);
  EXPECT_EQ(restored.created_unix_ms(), now);
  EXPECT_EQ(restored.metrics().participants(), 0u);
  // As stored, but for the Rollout the store reads with it (serving_test.cc
  // checks that).
  v1::ModelVersion stored_copy = restored;
  stored_copy.clear_rollout();
  EXPECT_EQ(stored_copy.SerializeAsString(), result->version.SerializeAsString());
  const std::vector<AuditEntry> audit = store_->AuditLog(0, 10).value();
  ASSERT_EQ(audit.size(), 1u);
  EXPECT_EQ(audit[0].action, "rollback");
  EXPECT_EQ(audit[0].actor, "token:ops");
  EXPECT_EQ(audit[0].at_unix_ms, now);
  EXPECT_EQ(audit[0].detail, "to version 1 as version 3; abandoned round 2; reason: bad model");

  // Round 2 is abandoned: its work is refused with the code of any round
  // that is no longer open, FAILED_PRECONDITION (devices check in again).
  EXPECT_EQ(Submit(*manager_, stale).status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(Submit(*manager_, accepted).status().code(), absl::StatusCode::kFailedPrecondition);
  const RoundSnapshot s = manager_->Snapshot();
  EXPECT_EQ(s.round, 3u);
  EXPECT_EQ(s.base_version, 3u);
  EXPECT_EQ(s.latest_version, 3u);
  EXPECT_EQ(s.accepted, 0u);
  EXPECT_EQ(s.tasks_issued, 0u);
  // The next round trains from the restored version and commits on it.
  std::vector<v1::Update> updates;
  for (const char* device : {"dev-a", "dev-b", "dev-c", "dev-d"}) {
    const v1::RoundTask task = Task(device);
    EXPECT_EQ(task.round(), 3u);
    EXPECT_EQ(task.model().version(), 3u);
    EXPECT_EQ(task.model().weights(), source.weights());
    updates.push_back(TaskAndUpdate(device));
  }
  for (const v1::Update& u : updates) ASSERT_TRUE(Submit(*manager_, u).ok());
  manager_->WaitIdle();
  EXPECT_TRUE(IsReferenceFedAvg(4, 3, updates));
  EXPECT_EQ(manager_->GetModel(4)->parent_version(), 3u);

  Start(config_);  // a restart after a rollback
  EXPECT_EQ(manager_->Snapshot().latest_version, 4u);
  EXPECT_EQ(manager_->Snapshot().round, 4u);
  EXPECT_TRUE(manager_->Snapshot().open);
}

TEST_F(RollbackTest, RefusalsChangeNothing) {
  const auto expect_unchanged = [&] {
    const RoundSnapshot s = manager_->Snapshot();
    EXPECT_EQ(s.latest_version, 2u);
    EXPECT_EQ(s.round, 2u);
    EXPECT_TRUE(s.open);
    EXPECT_EQ(store_->LatestVersion().value()->version(), 2u);
    EXPECT_EQ(store_->LatestRound().value()->state, RoundState::kOpen);
    EXPECT_TRUE(store_->AuditLog(0, 10).value().empty());
  };
  EXPECT_EQ(manager_->Rollback(0, Operator(1, "")).status().code(),
            absl::StatusCode::kInvalidArgument);
  expect_unchanged();
  EXPECT_EQ(manager_->Rollback(7, Operator(1, "")).status().code(), absl::StatusCode::kNotFound);
  expect_unchanged();
  EXPECT_EQ(manager_->Rollback(2, Operator(1, "")).status().code(),
            absl::StatusCode::kFailedPrecondition);
  expect_unchanged();
  // The store refuses the write: nothing changes in memory either.
  ExecSql(dir_.File("store.db"),
          "CREATE TRIGGER fail_audit BEFORE INSERT ON audit_log "
          "BEGIN SELECT RAISE(ABORT, 'injected failure'); END");
  EXPECT_FALSE(manager_->Rollback(1, Operator(1, "")).ok());
  expect_unchanged();
  ExecSql(dir_.File("store.db"), "DROP TRIGGER fail_audit");
  const v1::Update update = TaskAndUpdate("dev-a");
  ASSERT_TRUE(Submit(*manager_, update).ok()) << "the round goes on";
}

TEST_F(RollbackTest, IsRefusedWhileARoundIsBeingClosed) {
  for (int i = 0; i < 2; ++i) {
    ASSERT_TRUE(Submit(*manager_, TaskAndUpdate("dev-" + std::to_string(i))).ok());
  }
  // Hold the store's writer in a callback, so that the close started by
  // the deadline waits in its commit.
  absl::Notification entered;
  absl::Notification release;
  store_->AppendTask({2, "gate-device", "gate", 0, 0}, [&](absl::Status) {
    entered.Notify();
    release.WaitForNotification();
  });
  ASSERT_TRUE(entered.WaitForNotificationWithTimeout(absl::Seconds(20)));
  clock_.AdvanceMs(10'000);
  manager_->Tick();
  const absl::StatusOr<RoundManager::RollbackResult> refused =
      manager_->Rollback(1, Operator(1, ""));
  release.Notify();
  manager_->WaitIdle();
  EXPECT_EQ(refused.status().code(), absl::StatusCode::kFailedPrecondition) << refused.status();
  EXPECT_EQ(manager_->Snapshot().latest_version, 3u) << "the close went on";
  EXPECT_EQ(manager_->GetModel(3)->restored_from(), 0u);
  EXPECT_TRUE(manager_->Rollback(1, Operator(1, "")).ok()) << "and afterwards it is taken";
}

TEST_F(RollbackTest, WhilePausedOpensNoRoundUntilResumed) {
  ASSERT_TRUE(manager_->SetPaused(true, Operator(1, "")).ok());
  absl::StatusOr<RoundManager::RollbackResult> result = manager_->Rollback(1, Operator(2, ""));
  ASSERT_TRUE(result.ok()) << result.status();
  EXPECT_EQ(result->abandoned_round, 2u);
  EXPECT_FALSE(manager_->Snapshot().open);
  EXPECT_EQ(store_->LatestRound().value()->state, RoundState::kAbandoned);
  EXPECT_TRUE(GetsOnlyARetry(*manager_, "dev-new", 3000));
  // No round is open now: a second rollback abandons none.
  absl::StatusOr<RoundManager::RollbackResult> second = manager_->Rollback(2, Operator(3, ""));
  ASSERT_TRUE(second.ok()) << second.status();
  EXPECT_EQ(second->abandoned_round, 0u);
  EXPECT_EQ(second->version.version(), 4u);
  EXPECT_EQ(store_->AuditLog(0, 1).value().at(0).detail,
            "to version 2 as version 4; no round was open");
  ASSERT_TRUE(manager_->SetPaused(false, Operator(4, "")).ok());
  const v1::RoundTask task = Task("dev-new");
  EXPECT_EQ(task.round(), 3u);
  EXPECT_EQ(task.model().version(), 4u);
  EXPECT_EQ(task.model().weights(), store_->GetVersion(2)->weights());
}

// A store that holds back AppendUpdate until told, so that a write can be
// in flight across a rollback; everything else goes straight through.
class HeldUpdatesStore final : public ModelStore {
 public:
  explicit HeldUpdatesStore(ModelStore* inner) : inner_(inner) {}
  void ReleaseHeld() {
    std::vector<Held> held;
    {
      absl::MutexLock lock(&mu_);
      held.swap(held_);
    }
    for (Held& h : held) {
      inner_->AppendUpdate(std::move(h.update), std::move(h.evaluation), std::move(h.done));
    }
  }
  size_t held() {
    absl::MutexLock lock(&mu_);
    return held_.size();
  }
  void set_hold(bool hold) {
    absl::MutexLock lock(&mu_);
    hold_ = hold;
  }

  using ModelStore::AppendUpdate;
  void AppendUpdate(StoredUpdate update, std::optional<v1::Evaluation> evaluation,
                    DoneCallback done) override {
    {
      absl::MutexLock lock(&mu_);
      if (hold_) {
        held_.push_back(Held{std::move(update), std::move(evaluation), std::move(done)});
        return;
      }
    }
    inner_->AppendUpdate(std::move(update), std::move(evaluation), std::move(done));
  }
  absl::StatusOr<std::optional<v1::ModelVersion>> LatestVersion() override {
    return inner_->LatestVersion();
  }
  absl::StatusOr<v1::ModelVersion> GetVersion(uint32_t v) override {
    return inner_->GetVersion(v);
  }
  absl::StatusOr<std::optional<RoundRecord>> LatestRound() override {
    return inner_->LatestRound();
  }
  absl::StatusOr<std::vector<TaskRecord>> RoundTasks(uint32_t r) override {
    return inner_->RoundTasks(r);
  }
  absl::StatusOr<std::vector<StoredUpdate>> RoundUpdates(uint32_t r) override {
    return inner_->RoundUpdates(r);
  }
  absl::StatusOr<std::vector<std::string>> RevokedDevices() override {
    return inner_->RevokedDevices();
  }
  absl::StatusOr<std::vector<Revocation>> Revocations() override { return inner_->Revocations(); }
  absl::StatusOr<std::vector<v1::ModelVersion>> ListVersions(uint32_t n, size_t l) override {
    return inner_->ListVersions(n, l);
  }
  absl::StatusOr<std::vector<DeviceActivity>> RecentDevices(size_t l) override {
    return inner_->RecentDevices(l);
  }
  absl::StatusOr<std::vector<AuditEntry>> AuditLog(int64_t b, size_t l) override {
    return inner_->AuditLog(b, l);
  }
  absl::StatusOr<PauseState> Paused() override { return inner_->Paused(); }
  absl::StatusOr<std::optional<VersionEvaluation>> LatestFleetEvaluation() override {
    return inner_->LatestFleetEvaluation();
  }
  absl::Status PutInitialVersion(const v1::ModelVersion& m) override {
    return inner_->PutInitialVersion(m);
  }
  absl::Status OpenRound(const RoundRecord& r) override { return inner_->OpenRound(r); }
  void AppendTask(TaskRecord t, DoneCallback d) override {
    inner_->AppendTask(std::move(t), std::move(d));
  }
  absl::Status CommitRound(uint32_t r, int64_t ms, const v1::ModelVersion& n) override {
    return inner_->CommitRound(r, ms, n);
  }
  absl::Status CommitRound(uint32_t r, int64_t ms, const v1::ModelVersion& n,
                           const v1::AggregationState& s) override {
    return inner_->CommitRound(r, ms, n, s);
  }
  absl::StatusOr<v1::AggregationState> AggregationStateOf(uint32_t v) override {
    return inner_->AggregationStateOf(v);
  }
  absl::Status AbandonRound(uint32_t r, int64_t ms) override { return inner_->AbandonRound(r, ms); }
  absl::Status RevokeDevice(const std::string& d, int64_t ms) override {
    return inner_->RevokeDevice(d, ms);
  }
  absl::Status RevokeDevice(const std::string& d, int64_t ms, const AuditEntry& a) override {
    return inner_->RevokeDevice(d, ms, a);
  }
  absl::Status CommitRestoredVersion(uint32_t r, int64_t ms, const v1::ModelVersion& n,
                                     const AuditEntry& a) override {
    return inner_->CommitRestoredVersion(r, ms, n, a);
  }
  absl::Status SetPaused(const PauseState& s, const AuditEntry& a) override {
    return inner_->SetPaused(s, a);
  }
  absl::StatusOr<v1::FleetEvaluation> FleetEvaluationOf(uint32_t v) override {
    return inner_->FleetEvaluationOf(v);
  }
  absl::StatusOr<StoredRollout> Rollout() override { return inner_->Rollout(); }
  absl::Status WriteRollout(const RolloutWrite& w, const AuditEntry* a) override {
    return inner_->WriteRollout(w, a);
  }
  absl::Status CommitRestoredVersion(uint32_t r, int64_t ms, const v1::ModelVersion& n,
                                     const AuditEntry* a, const RolloutWrite& w) override {
    return inner_->CommitRestoredVersion(r, ms, n, a, w);
  }
  void AppendEvaluation(uint32_t r, std::string d, v1::Evaluation e, DoneCallback c) override {
    inner_->AppendEvaluation(r, std::move(d), std::move(e), std::move(c));
  }
  size_t PendingWrites() const override { return inner_->PendingWrites(); }
  absl::Status Flush() override { return inner_->Flush(); }
  WriteStats Stats() const override { return inner_->Stats(); }
  void SetBatchHook(std::function<void()> hook) override { inner_->SetBatchHook(std::move(hook)); }

 private:
  struct Held {
    StoredUpdate update;
    std::optional<v1::Evaluation> evaluation;
    DoneCallback done;
  };
  ModelStore* const inner_;
  absl::Mutex mu_;
  bool hold_ ABSL_GUARDED_BY(mu_) = false;
  std::vector<Held> held_ ABSL_GUARDED_BY(mu_);
};

// An update whose write is in flight when its round is abandoned, and a
// retry of it waiting for that write, are answered ABORTED at once (the
// round was abandoned under them), not left hanging; the write's late
// result is dropped without touching the update, which its caller may
// have freed by then (the sanitized copy of this test would see it).
TEST_F(RoundManagerTest, UpdatesBeingWrittenWhenARollbackAbandonsTheirRoundAreAborted) {
  manager_.reset();
  HeldUpdatesStore held(store_.get());
  // The manager goes before `held`, which it uses, however the test ends.
  struct ManagerFirst {
    std::unique_ptr<RoundManager>& manager;
    ~ManagerFirst() { manager.reset(); }
  } manager_first{manager_};
  auto initial = InitialModel(config_, clock_.NowMs());
  ASSERT_TRUE(initial.ok());
  auto created = RoundManager::Create(config_, *initial, &held, &clock_);
  ASSERT_TRUE(created.ok()) << created.status();
  manager_ = std::move(*created);
  std::vector<v1::Update> updates;
  for (int i = 0; i < 4; ++i) updates.push_back(TaskAndUpdate("dev-" + std::to_string(i)));
  for (const v1::Update& u : updates) ASSERT_TRUE(Submit(*manager_, u).ok());
  manager_->WaitIdle();
  ASSERT_EQ(manager_->Snapshot().latest_version, 2u);

  auto in_flight = std::make_unique<v1::Update>(TaskAndUpdate("dev-a"));
  held.set_hold(true);
  std::promise<absl::StatusOr<v1::UpdateAck>> first;
  std::promise<absl::StatusOr<v1::UpdateAck>> retry;
  manager_->SubmitUpdate(*in_flight, [&](auto r) { first.set_value(std::move(r)); });
  manager_->SubmitUpdate(*in_flight, [&](auto r) { retry.set_value(std::move(r)); });
  ASSERT_EQ(held.held(), 1u);
  EXPECT_EQ(manager_->Snapshot().pending, 1u);
  absl::StatusOr<RoundManager::RollbackResult> result = manager_->Rollback(1, Operator(1, ""));
  ASSERT_TRUE(result.ok()) << result.status();
  auto first_future = first.get_future();
  auto retry_future = retry.get_future();
  ASSERT_EQ(first_future.wait_for(std::chrono::seconds(20)), std::future_status::ready);
  ASSERT_EQ(retry_future.wait_for(std::chrono::seconds(20)), std::future_status::ready);
  EXPECT_EQ(first_future.get().status().code(), absl::StatusCode::kAborted);
  EXPECT_EQ(retry_future.get().status().code(), absl::StatusCode::kAborted);
  in_flight.reset();
  held.set_hold(false);
  held.ReleaseHeld();  // the write of round 2, now abandoned, fails late
  ASSERT_TRUE(store_->Flush().ok());
  const RoundSnapshot s = manager_->Snapshot();
  EXPECT_EQ(s.round, 3u);
  EXPECT_EQ(s.pending, 0u);
  EXPECT_EQ(s.accepted, 0u);
  EXPECT_TRUE(store_->RoundUpdates(2).value().empty());
  // Round 3 takes its K updates and commits.
  std::vector<v1::Update> next;
  for (int i = 0; i < 4; ++i) next.push_back(TaskAndUpdate("dev-n" + std::to_string(i)));
  for (const v1::Update& u : next) ASSERT_TRUE(Submit(*manager_, u).ok());
  manager_->WaitIdle();
  EXPECT_TRUE(IsReferenceFedAvg(4, 3, next));
}

// Every refusal of an update while the round is open counts once, the
// manager's own (any code) and the edge's (LogRejected "update"); other
// requests do not. The committed version carries its round's count, and
// the next round starts from 0.
TEST_F(RoundManagerTest, RejectedUpdatesLandInTheCommittedVersionsMetrics) {
  std::vector<v1::Update> updates;
  for (int i = 0; i < 4; ++i) updates.push_back(TaskAndUpdate("dev-" + std::to_string(i)));
  v1::Update unknown_token = updates[0];
  unknown_token.set_task_token("0123456789abcdef");
  EXPECT_EQ(Submit(*manager_, unknown_token).status().code(),
            absl::StatusCode::kFailedPrecondition);
  v1::Update bad_shape = updates[1];
  bad_shape.mutable_weight_delta()->pop_back();  // one byte short of the head
  EXPECT_FALSE(Submit(*manager_, bad_shape).ok());
  v1::Update wrong_round = updates[2];
  wrong_round.set_round(7);
  EXPECT_FALSE(Submit(*manager_, wrong_round).ok());
  manager_->LogRejected("update", "peer-1", absl::UnauthenticatedError("bad signature"));
  manager_->LogRejected("update", "peer-2", absl::PermissionDeniedError("revoked"));
  manager_->LogRejected("check-in", "peer-3", absl::UnauthenticatedError("bad signature"));
  EXPECT_EQ(manager_->Snapshot().rejected, 5u);
  for (const v1::Update& u : updates) ASSERT_TRUE(Submit(*manager_, u).ok());
  manager_->WaitIdle();
  EXPECT_EQ(manager_->GetModel(2)->metrics().rejected_updates(), 5u);
  EXPECT_EQ(store_->GetVersion(2)->metrics().rejected_updates(), 5u);
  EXPECT_EQ(manager_->Snapshot().rejected, 0u);
}

TEST_F(RoundManagerTest, SnapshotReportsTheRoundsPolicy) {
  const RoundSnapshot s = manager_->Snapshot();
  EXPECT_EQ(s.tasks_limit, 6u);  // ceil(4 x 1.5)
  EXPECT_EQ(s.target_updates, 4u);
  EXPECT_EQ(s.min_updates, 2u);
  EXPECT_EQ(s.opened_ms, store_->LatestRound().value()->opened_ms);
  EXPECT_EQ(s.opened_ms, clock_.NowMs());
  EXPECT_FALSE(s.paused);
  EXPECT_EQ(s.rejected, 0u);
}

}  // namespace
}  // namespace tinyfed::server
