#include "model_store.h"

#include <sqlite3.h>

#include <atomic>
#include <cstdint>
#include <cstdio>
#include <fstream>
#include <iterator>
#include <map>
#include <memory>
#include <optional>
#include <random>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "absl/time/time.h"
#include "google/protobuf/util/message_differencer.h"
#include "gtest/gtest.h"
#include "server_test_support.h"
#include "tinyfed_common/crc32.h"

namespace tinyfed::server {
namespace {

using ::google::protobuf::util::MessageDifferencer;
using testing::ExecSql;
using testing::MakeSpec;
using testing::MakeUpdate;
using testing::TempDir;

// How long a test waits for `done` callbacks before it fails instead of
// hanging: each batch takes milliseconds, so this only ends a broken run.
constexpr absl::Duration kCallbackLimit = absl::Seconds(20);

// A version as read back, without the Rollout the store adds to it (the
// rollout tests check that): what was written.
v1::ModelVersion WithoutRollout(v1::ModelVersion v) {
  v.clear_rollout();
  return v;
}

v1::ModelVersion MakeVersion(uint32_t version, uint32_t parent, uint32_t round) {
  const v1::HeadSpec spec = MakeSpec(/*features=*/4, /*classes=*/3);
  v1::ModelVersion model;
  model.set_version(version);
  model.set_parent_version(parent);
  model.set_round(round);
  *model.mutable_spec() = spec;
  // Weights that differ per version, so that a mixed-up version shows.
  std::string weights(2 * spec.feature_count() * spec.class_count(), '\0');
  for (size_t i = 0; i < weights.size(); ++i) weights[i] = static_cast<char>(i * 7 + version);
  std::string bias(2 * spec.class_count(), static_cast<char>(version));
  model.set_weights(weights);
  model.set_bias(bias);
  uint32_t crc = tinyfed_crc32_update(
      TINYFED_CRC32_INIT, reinterpret_cast<const uint8_t*>(weights.data()), weights.size());
  crc = tinyfed_crc32_update(crc, reinterpret_cast<const uint8_t*>(bias.data()), bias.size());
  model.set_checksum(crc);
  model.mutable_metrics()->set_participants(version * 10);
  model.mutable_metrics()->set_samples(version * 1000ull);
  model.set_created_unix_ms(1'700'000'000'000 + version);
  return model;
}

RoundRecord MakeRound(uint32_t round, uint32_t base_version) {
  RoundRecord record;
  record.round = round;
  record.base_version = base_version;
  record.opened_ms = 1000 * round;
  record.deadline_ms = 1000 * round + 500;
  return record;
}

std::string Payload(uint32_t round, const std::string& device, uint32_t seed) {
  std::mt19937 rng(seed);
  return MakeUpdate(MakeSpec(4, 3), round, device, "token-" + device, 1, 10 + seed, rng)
      .SerializeAsString();
}

// The statuses a store reports to `done` callbacks, by the index of the
// append they belong to.
class Completions {
 public:
  explicit Completions(size_t count) : statuses_(count) {}

  DoneCallback Callback(size_t index) {
    return [this, index](absl::Status status) {
      absl::MutexLock lock(&mu_);
      statuses_[index] = std::move(status);
      ++finished_;
    };
  }
  // All statuses, once every callback has run; fails the test when they do
  // not within kCallbackLimit.
  std::vector<absl::Status> Wait() {
    absl::MutexLock lock(&mu_);
    const bool all =
        mu_.AwaitWithTimeout(absl::Condition(this, &Completions::AllFinished), kCallbackLimit);
    EXPECT_TRUE(all) << finished_ << " of " << statuses_.size() << " callbacks ran";
    return statuses_;
  }
  size_t finished() {
    absl::MutexLock lock(&mu_);
    return finished_;
  }

 private:
  bool AllFinished() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    return finished_ == statuses_.size();
  }

  absl::Mutex mu_;
  std::vector<absl::Status> statuses_ ABSL_GUARDED_BY(mu_);
  size_t finished_ ABSL_GUARDED_BY(mu_) = 0;
};

std::unique_ptr<ModelStore> OpenOrDie(const std::string& path) {
  absl::StatusOr<std::unique_ptr<ModelStore>> store = OpenSqliteModelStore(path);
  EXPECT_TRUE(store.ok()) << store.status();
  return store.ok() ? std::move(*store) : nullptr;
}

// Holds the store's writer thread inside a `done` callback, so that the
// appends issued meanwhile are all queued when it resumes: they form one
// batch. Needs an open round `round`.
class WriterGate {
 public:
  WriterGate(ModelStore& store, uint32_t round) : state_(std::make_shared<State>()) {
    // The callback keeps the state alive: it may still be waking up from
    // `released` after this object is gone.
    store.AppendTask({round, "gate-device", "gate", 0}, [state = state_](absl::Status) {
      state->entered.Notify();
      state->released.WaitForNotification();
    });
    EXPECT_TRUE(state_->entered.WaitForNotificationWithTimeout(kCallbackLimit));
  }
  ~WriterGate() { state_->released.Notify(); }
  WriterGate(const WriterGate&) = delete;
  WriterGate& operator=(const WriterGate&) = delete;

 private:
  struct State {
    absl::Notification entered;
    absl::Notification released;
  };
  std::shared_ptr<State> state_;
};

std::string ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

class ModelStoreTest : public ::testing::Test {
 protected:
  void SetUp() override {
    path_ = dir_.File("store.db");
    store_ = OpenOrDie(path_);
    ASSERT_NE(store_, nullptr);
  }
  void Reopen() {
    store_.reset();
    store_ = OpenOrDie(path_);
    ASSERT_NE(store_, nullptr);
  }
  // Version 1 and an open round 1 on it.
  void StartRoundOne() {
    ASSERT_TRUE(store_->PutInitialVersion(MakeVersion(1, 0, 0)).ok());
    ASSERT_TRUE(store_->OpenRound(MakeRound(1, 1)).ok());
  }
  RoundState StateOf(uint32_t round) {
    absl::StatusOr<std::optional<RoundRecord>> latest = store_->LatestRound();
    EXPECT_TRUE(latest.ok() && latest->has_value() && (*latest)->round == round);
    return latest.ok() && latest->has_value() ? (*latest)->state : RoundState::kOpen;
  }

  TempDir dir_;
  std::string path_;
  std::unique_ptr<ModelStore> store_;
};

TEST_F(ModelStoreTest, NewStoreIsEmpty) {
  absl::StatusOr<std::optional<v1::ModelVersion>> latest = store_->LatestVersion();
  ASSERT_TRUE(latest.ok()) << latest.status();
  EXPECT_FALSE(latest->has_value());
  EXPECT_EQ(store_->GetVersion(1).status().code(), absl::StatusCode::kNotFound);
  absl::StatusOr<std::optional<RoundRecord>> round = store_->LatestRound();
  ASSERT_TRUE(round.ok()) << round.status();
  EXPECT_FALSE(round->has_value());
  EXPECT_EQ(store_->PendingWrites(), 0u);
}

TEST_F(ModelStoreTest, VersionsRoundTrip) {
  const v1::ModelVersion v1 = MakeVersion(1, 0, 0);
  ASSERT_TRUE(store_->PutInitialVersion(v1).ok());
  ASSERT_TRUE(store_->OpenRound(MakeRound(1, 1)).ok());
  const v1::ModelVersion v2 = MakeVersion(2, 1, 1);
  ASSERT_TRUE(store_->CommitRound(1, 1400, v2).ok());

  absl::StatusOr<v1::ModelVersion> got1 = store_->GetVersion(1);
  ASSERT_TRUE(got1.ok()) << got1.status();
  EXPECT_TRUE(MessageDifferencer::Equals(WithoutRollout(*got1), v1)) << got1->ShortDebugString();
  absl::StatusOr<v1::ModelVersion> got2 = store_->GetVersion(2);
  ASSERT_TRUE(got2.ok()) << got2.status();
  EXPECT_TRUE(MessageDifferencer::Equals(WithoutRollout(*got2), v2));
  absl::StatusOr<std::optional<v1::ModelVersion>> latest = store_->LatestVersion();
  ASSERT_TRUE(latest.ok() && latest->has_value());
  EXPECT_TRUE(MessageDifferencer::Equals(**latest, v2));

  absl::Status missing = store_->GetVersion(3).status();
  EXPECT_EQ(missing.code(), absl::StatusCode::kNotFound);
  EXPECT_NE(missing.message().find("3"), std::string::npos) << missing;
}

TEST_F(ModelStoreTest, InitialVersionIsStoredOnce) {
  ASSERT_TRUE(store_->PutInitialVersion(MakeVersion(1, 0, 0)).ok());
  v1::ModelVersion other = MakeVersion(1, 0, 0);
  other.set_created_unix_ms(42);
  EXPECT_EQ(store_->PutInitialVersion(other).code(), absl::StatusCode::kAlreadyExists);
  absl::StatusOr<v1::ModelVersion> kept = store_->GetVersion(1);
  ASSERT_TRUE(kept.ok());
  EXPECT_TRUE(MessageDifferencer::Equals(WithoutRollout(*kept), MakeVersion(1, 0, 0)));
}

TEST_F(ModelStoreTest, InitialVersionMustStartTheLineage) {
  // model.proto: version 1 is the initial model, with parent 0 and round 0.
  EXPECT_EQ(store_->PutInitialVersion(MakeVersion(2, 1, 1)).code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(store_->PutInitialVersion(MakeVersion(0, 0, 0)).code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_FALSE(store_->LatestVersion()->has_value());
}

TEST_F(ModelStoreTest, OpenRoundRules) {
  ASSERT_TRUE(store_->PutInitialVersion(MakeVersion(1, 0, 0)).ok());
  const RoundRecord one = MakeRound(1, 1);
  ASSERT_TRUE(store_->OpenRound(one).ok());
  absl::StatusOr<std::optional<RoundRecord>> latest = store_->LatestRound();
  ASSERT_TRUE(latest.ok() && latest->has_value());
  EXPECT_EQ((*latest)->round, 1u);
  EXPECT_EQ((*latest)->base_version, 1u);
  EXPECT_EQ((*latest)->state, RoundState::kOpen);
  EXPECT_EQ((*latest)->opened_ms, one.opened_ms);
  EXPECT_EQ((*latest)->deadline_ms, one.deadline_ms);
  EXPECT_EQ((*latest)->closed_ms, 0);

  EXPECT_EQ(store_->OpenRound(one).code(), absl::StatusCode::kAlreadyExists);
  EXPECT_EQ(store_->OpenRound(MakeRound(2, 1)).code(), absl::StatusCode::kFailedPrecondition);
  ASSERT_TRUE(store_->AbandonRound(1, 1500).ok());
  EXPECT_EQ(store_->OpenRound(one).code(), absl::StatusCode::kAlreadyExists);

  ASSERT_TRUE(store_->OpenRound(MakeRound(5, 1)).ok());
  ASSERT_TRUE(store_->AbandonRound(5, 5500).ok());
  // Going back would hide round 3 behind round 5 from LatestRound, which a
  // restarting server uses to find its open round.
  EXPECT_EQ(store_->OpenRound(MakeRound(3, 1)).code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(store_->OpenRound(MakeRound(0, 1)).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(store_->LatestRound().value()->round, 5u);
  EXPECT_TRUE(store_->OpenRound(MakeRound(6, 1)).ok());
}

TEST_F(ModelStoreTest, AppendsAreReadableInIssueOrderOnceDone) {
  StartRoundOne();
  // Device ids in descending order, so that reading in key order instead of
  // insertion order would show.
  constexpr size_t kCount = 20;
  std::vector<std::string> devices;
  for (size_t i = 0; i < kCount; ++i) devices.push_back(absl::StrCat("dev-", 99 - i));
  Completions tasks(kCount), updates(kCount);
  for (size_t i = 0; i < kCount; ++i) {
    store_->AppendTask({1, devices[i], "token-" + devices[i], static_cast<int64_t>(100 + i)},
                       tasks.Callback(i));
    store_->AppendUpdate({1, devices[i], Payload(1, devices[i], static_cast<uint32_t>(i)),
                          static_cast<int64_t>(200 + i)},
                         updates.Callback(i));
  }
  for (const absl::Status& s : tasks.Wait()) EXPECT_TRUE(s.ok()) << s;
  for (const absl::Status& s : updates.Wait()) EXPECT_TRUE(s.ok()) << s;
  EXPECT_EQ(store_->PendingWrites(), 0u);

  absl::StatusOr<std::vector<TaskRecord>> stored_tasks = store_->RoundTasks(1);
  ASSERT_TRUE(stored_tasks.ok()) << stored_tasks.status();
  ASSERT_EQ(stored_tasks->size(), kCount);
  absl::StatusOr<std::vector<StoredUpdate>> stored_updates = store_->RoundUpdates(1);
  ASSERT_TRUE(stored_updates.ok()) << stored_updates.status();
  ASSERT_EQ(stored_updates->size(), kCount);
  for (size_t i = 0; i < kCount; ++i) {
    const TaskRecord& t = (*stored_tasks)[i];
    EXPECT_EQ(t.round, 1u);
    EXPECT_EQ(t.device_id, devices[i]);
    EXPECT_EQ(t.token, "token-" + devices[i]);
    EXPECT_EQ(t.issued_ms, static_cast<int64_t>(100 + i));
    const StoredUpdate& u = (*stored_updates)[i];
    EXPECT_EQ(u.round, 1u);
    EXPECT_EQ(u.device_id, devices[i]);
    EXPECT_EQ(u.payload, Payload(1, devices[i], static_cast<uint32_t>(i)));
    EXPECT_EQ(u.received_ms, static_cast<int64_t>(200 + i));
  }
  EXPECT_TRUE(store_->RoundTasks(2)->empty());
  EXPECT_TRUE(store_->RoundUpdates(2)->empty());
}

TEST_F(ModelStoreTest, BinaryFieldsSurviveByteForByte) {
  StartRoundOne();
  // Tokens are random bytes; a payload may contain NUL anywhere.
  const std::string token("\0\xff\x01token\0", 9);
  const std::string payload("\0\0\x80payload\0\xfe", 12);
  Completions done(3);
  store_->AppendTask({1, "dev", token, 5}, done.Callback(0));
  store_->AppendUpdate({1, "dev", payload, 6}, done.Callback(1));
  store_->AppendUpdate({1, "empty", "", 7}, done.Callback(2));
  for (const absl::Status& s : done.Wait()) EXPECT_TRUE(s.ok()) << s;
  EXPECT_EQ(store_->RoundTasks(1).value().at(0).token, token);
  const std::vector<StoredUpdate> updates = store_->RoundUpdates(1).value();
  ASSERT_EQ(updates.size(), 2u);
  EXPECT_EQ(updates[0].payload, payload);
  EXPECT_EQ(updates[1].payload, "");
}

TEST_F(ModelStoreTest, DuplicateInABatchFailsAloneWithAlreadyExists) {
  StartRoundOne();
  Completions done(5);
  {
    WriterGate gate(*store_, 1);
    store_->AppendUpdate({1, "a", "first", 1}, done.Callback(0));
    store_->AppendUpdate({1, "a", "second", 2}, done.Callback(1));
    store_->AppendUpdate({1, "b", "b", 3}, done.Callback(2));
    store_->AppendTask({1, "a", "t", 4}, done.Callback(3));  // tasks are a separate record
    store_->AppendTask({1, "gate-device", "again", 5}, done.Callback(4));
    EXPECT_EQ(store_->PendingWrites(), 5u);
  }
  const std::vector<absl::Status> statuses = done.Wait();
  EXPECT_TRUE(statuses[0].ok()) << statuses[0];
  EXPECT_EQ(statuses[1].code(), absl::StatusCode::kAlreadyExists) << statuses[1];
  EXPECT_NE(statuses[1].message().find("'a'"), std::string::npos) << statuses[1];
  EXPECT_TRUE(statuses[2].ok()) << statuses[2];
  EXPECT_TRUE(statuses[3].ok()) << statuses[3];
  EXPECT_EQ(statuses[4].code(), absl::StatusCode::kAlreadyExists) << statuses[4];

  const std::vector<StoredUpdate> updates = store_->RoundUpdates(1).value();
  ASSERT_EQ(updates.size(), 2u);
  EXPECT_EQ(updates[0].payload, "first");  // the duplicate did not overwrite it
  EXPECT_EQ(updates[1].device_id, "b");
  const std::vector<TaskRecord> tasks = store_->RoundTasks(1).value();
  ASSERT_EQ(tasks.size(), 2u);
  EXPECT_EQ(tasks[0].token, "gate");
  EXPECT_EQ(tasks[1].device_id, "a");
}

TEST_F(ModelStoreTest, AppendToARoundThatIsNotOpenFails) {
  StartRoundOne();
  Completions before(2);
  store_->AppendUpdate({7, "dev", "x", 1}, before.Callback(0));  // no such round
  store_->AppendTask({7, "dev", "x", 1}, before.Callback(1));
  for (const absl::Status& s : before.Wait()) {
    EXPECT_EQ(s.code(), absl::StatusCode::kFailedPrecondition) << s;
  }
  ASSERT_TRUE(store_->CommitRound(1, 1400, MakeVersion(2, 1, 1)).ok());
  ASSERT_TRUE(store_->OpenRound(MakeRound(2, 2)).ok());
  ASSERT_TRUE(store_->AbandonRound(2, 2400).ok());
  Completions after(4);
  store_->AppendUpdate({1, "dev", "x", 1}, after.Callback(0));  // committed
  store_->AppendTask({1, "dev", "x", 1}, after.Callback(1));
  store_->AppendUpdate({2, "dev", "x", 1}, after.Callback(2));  // abandoned
  store_->AppendTask({2, "dev", "x", 1}, after.Callback(3));
  for (const absl::Status& s : after.Wait()) {
    EXPECT_EQ(s.code(), absl::StatusCode::kFailedPrecondition) << s;
  }
  for (uint32_t round : {1u, 2u, 7u}) {
    EXPECT_TRUE(store_->RoundUpdates(round)->empty()) << round;
    EXPECT_TRUE(store_->RoundTasks(round)->empty()) << round;
  }
}

TEST_F(ModelStoreTest, AppendsIssuedBeforeACloseAreApplied) {
  StartRoundOne();
  constexpr size_t kCount = 100;
  Completions done(kCount);
  for (size_t i = 0; i < kCount; ++i) {
    store_->AppendUpdate({1, absl::StrCat("dev-", i), "u", 1}, done.Callback(i));
  }
  // Issued after the appends, so applied after them although it does not
  // wait for their callbacks: they all land in the round before it closes.
  ASSERT_TRUE(store_->AbandonRound(1, 1500).ok());
  for (const absl::Status& s : done.Wait()) EXPECT_TRUE(s.ok()) << s;
  EXPECT_EQ(store_->RoundUpdates(1)->size(), kCount);

  Completions late(1);
  store_->AppendUpdate({1, "late", "u", 2}, late.Callback(0));
  EXPECT_EQ(late.Wait()[0].code(), absl::StatusCode::kFailedPrecondition);
}

TEST_F(ModelStoreTest, CommitRoundChecksLineageAndWritesNothingOnFailure) {
  StartRoundOne();
  const auto expect_unchanged = [&] {
    absl::StatusOr<std::optional<v1::ModelVersion>> latest = store_->LatestVersion();
    ASSERT_TRUE(latest.ok() && latest->has_value());
    EXPECT_EQ((*latest)->version(), 1u);
    EXPECT_EQ(store_->GetVersion(2).status().code(), absl::StatusCode::kNotFound);
    absl::StatusOr<std::optional<RoundRecord>> round = store_->LatestRound();
    ASSERT_TRUE(round.ok() && round->has_value());
    EXPECT_EQ((*round)->state, RoundState::kOpen);
    EXPECT_EQ((*round)->closed_ms, 0);
  };
  // Skips a version number.
  EXPECT_EQ(store_->CommitRound(1, 1400, MakeVersion(3, 1, 1)).code(),
            absl::StatusCode::kFailedPrecondition);
  expect_unchanged();
  // Built on a version that is not the latest.
  EXPECT_EQ(store_->CommitRound(1, 1400, MakeVersion(2, 0, 1)).code(),
            absl::StatusCode::kFailedPrecondition);
  expect_unchanged();
  // Claims to come from another round.
  EXPECT_EQ(store_->CommitRound(1, 1400, MakeVersion(2, 1, 9)).code(),
            absl::StatusCode::kInvalidArgument);
  expect_unchanged();
  // A round that does not exist.
  EXPECT_EQ(store_->CommitRound(4, 1400, MakeVersion(2, 1, 4)).code(),
            absl::StatusCode::kFailedPrecondition);
  expect_unchanged();

  ASSERT_TRUE(store_->CommitRound(1, 1400, MakeVersion(2, 1, 1)).ok());
  absl::StatusOr<std::optional<RoundRecord>> round = store_->LatestRound();
  ASSERT_TRUE(round.ok() && round->has_value());
  EXPECT_EQ((*round)->state, RoundState::kCommitted);
  EXPECT_EQ((*round)->closed_ms, 1400);
  EXPECT_EQ(store_->LatestVersion().value()->version(), 2u);
  // The round is closed now.
  EXPECT_EQ(store_->CommitRound(1, 1500, MakeVersion(3, 2, 1)).code(),
            absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(store_->AbandonRound(1, 1500).code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(store_->LatestVersion().value()->version(), 2u);
}

TEST_F(ModelStoreTest, CommitRoundFailingMidwayLeavesTheRoundOpen) {
  StartRoundOne();
  // Make the version insert, which runs after the round is marked committed,
  // fail: the round must stay open, as if the commit had never started.
  ExecSql(path_,
          "CREATE TRIGGER fail_insert BEFORE INSERT ON model_versions "
          "BEGIN SELECT RAISE(ABORT, 'injected failure'); END");
  absl::Status failed = store_->CommitRound(1, 1400, MakeVersion(2, 1, 1));
  EXPECT_FALSE(failed.ok());
  EXPECT_NE(failed.message().find("injected failure"), std::string::npos) << failed;
  EXPECT_EQ(StateOf(1), RoundState::kOpen);
  EXPECT_EQ(store_->GetVersion(2).status().code(), absl::StatusCode::kNotFound);

  ExecSql(path_, "DROP TRIGGER fail_insert");
  EXPECT_TRUE(store_->CommitRound(1, 1400, MakeVersion(2, 1, 1)).ok());
  EXPECT_EQ(StateOf(1), RoundState::kCommitted);
}

TEST_F(ModelStoreTest, AbandonRoundKeepsTheModel) {
  StartRoundOne();
  EXPECT_EQ(store_->AbandonRound(3, 1500).code(), absl::StatusCode::kFailedPrecondition);
  ASSERT_TRUE(store_->AbandonRound(1, 1500).ok());
  absl::StatusOr<std::optional<RoundRecord>> round = store_->LatestRound();
  ASSERT_TRUE(round.ok() && round->has_value());
  EXPECT_EQ((*round)->state, RoundState::kAbandoned);
  EXPECT_EQ((*round)->closed_ms, 1500);
  EXPECT_EQ(store_->LatestVersion().value()->version(), 1u);
  EXPECT_EQ(store_->AbandonRound(1, 1600).code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(store_->CommitRound(1, 1600, MakeVersion(2, 1, 1)).code(),
            absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(store_->LatestRound().value()->closed_ms, 1500);
}

TEST_F(ModelStoreTest, EverythingSurvivesReopening) {
  StartRoundOne();
  ASSERT_TRUE(store_->CommitRound(1, 1400, MakeVersion(2, 1, 1)).ok());
  const RoundRecord two = MakeRound(2, 2);
  ASSERT_TRUE(store_->OpenRound(two).ok());
  Completions done(4);
  // The largest declared count, so that a narrowing or a sign shows.
  store_->AppendTask({2, "dev-b", "tb", 2001, 0xffffffffu}, done.Callback(0));
  store_->AppendTask({2, "dev-a", "ta", 2002, 7}, done.Callback(1));
  store_->AppendUpdate({2, "dev-b", Payload(2, "dev-b", 1), 2101}, done.Callback(2));
  store_->AppendUpdate({2, "dev-a", Payload(2, "dev-a", 2), 2102}, done.Callback(3));
  for (const absl::Status& s : done.Wait()) EXPECT_TRUE(s.ok()) << s;

  Reopen();
  EXPECT_TRUE(MessageDifferencer::Equals(WithoutRollout(store_->GetVersion(1).value()),
                                         MakeVersion(1, 0, 0)));
  EXPECT_TRUE(
      MessageDifferencer::Equals(store_->LatestVersion().value().value(), MakeVersion(2, 1, 1)));
  const RoundRecord round = store_->LatestRound().value().value();
  EXPECT_EQ(round.round, 2u);
  EXPECT_EQ(round.base_version, 2u);
  EXPECT_EQ(round.state, RoundState::kOpen);
  EXPECT_EQ(round.opened_ms, two.opened_ms);
  EXPECT_EQ(round.deadline_ms, two.deadline_ms);
  const std::vector<TaskRecord> tasks = store_->RoundTasks(2).value();
  ASSERT_EQ(tasks.size(), 2u);
  EXPECT_EQ(tasks[0].device_id, "dev-b");
  EXPECT_EQ(tasks[0].token, "tb");
  EXPECT_EQ(tasks[0].issued_ms, 2001);
  EXPECT_EQ(tasks[0].declared_samples, 0xffffffffu);
  EXPECT_EQ(tasks[1].device_id, "dev-a");
  EXPECT_EQ(tasks[1].declared_samples, 7u);
  const std::vector<StoredUpdate> updates = store_->RoundUpdates(2).value();
  ASSERT_EQ(updates.size(), 2u);
  EXPECT_EQ(updates[0].device_id, "dev-b");
  EXPECT_EQ(updates[0].payload, Payload(2, "dev-b", 1));
  EXPECT_EQ(updates[1].payload, Payload(2, "dev-a", 2));
  EXPECT_EQ(updates[1].received_ms, 2102);
  // The reopened store still enforces the rules on the old state.
  EXPECT_EQ(store_->OpenRound(MakeRound(3, 2)).code(), absl::StatusCode::kFailedPrecondition);
  Completions again(1);
  store_->AppendUpdate({2, "dev-a", "other", 2200}, again.Callback(0));
  EXPECT_EQ(again.Wait()[0].code(), absl::StatusCode::kAlreadyExists);
}

// The time a device was revoked at, read from the file (the store's API
// does not return it); -1 when the device has no revocation row.
int64_t RevokedMs(const std::string& path, const std::string& device) {
  sqlite3* db = nullptr;
  EXPECT_EQ(sqlite3_open(path.c_str(), &db), SQLITE_OK);
  sqlite3_stmt* stmt = nullptr;
  EXPECT_EQ(sqlite3_prepare_v2(db, "SELECT revoked_ms FROM revocations WHERE device_id = ?1", -1,
                               &stmt, nullptr),
            SQLITE_OK);
  sqlite3_bind_text(stmt, 1, device.data(), static_cast<int>(device.size()), SQLITE_STATIC);
  const int64_t ms = sqlite3_step(stmt) == SQLITE_ROW ? sqlite3_column_int64(stmt, 0) : -1;
  sqlite3_finalize(stmt);
  sqlite3_close(db);
  return ms;
}

TEST_F(ModelStoreTest, RevocationsSurviveReopeningAndRevokingAgainKeepsTheFirstTime) {
  EXPECT_TRUE(store_->RevokedDevices().value().empty());
  ASSERT_TRUE(store_->RevokeDevice("dev-b", 100).ok());
  ASSERT_TRUE(store_->RevokeDevice("dev-a", 200).ok());
  const absl::Status again = store_->RevokeDevice("dev-b", 300);
  EXPECT_TRUE(again.ok()) << again;
  const std::vector<std::string> byte_order = {"dev-a", "dev-b"};
  EXPECT_EQ(store_->RevokedDevices().value(), byte_order);

  Reopen();
  EXPECT_EQ(store_->RevokedDevices().value(), byte_order);
  ASSERT_TRUE(store_->RevokeDevice("dev-b", 400).ok());
  EXPECT_EQ(store_->RevokedDevices().value(), byte_order);
  store_.reset();
  EXPECT_EQ(RevokedMs(path_, "dev-b"), 100);
  EXPECT_EQ(RevokedMs(path_, "dev-a"), 200);
}

TEST_F(ModelStoreTest, RevokingAnEmptyDeviceIdIsRefused) {
  EXPECT_EQ(store_->RevokeDevice("", 100).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(store_->RevokedDevices().value().empty());
}

TEST_F(ModelStoreTest, TheFileIsInWalMode) {
  StartRoundOne();
  store_.reset();
  sqlite3* db = nullptr;
  ASSERT_EQ(sqlite3_open(path_.c_str(), &db), SQLITE_OK);
  sqlite3_stmt* stmt = nullptr;
  ASSERT_EQ(sqlite3_prepare_v2(db, "PRAGMA journal_mode", -1, &stmt, nullptr), SQLITE_OK);
  ASSERT_EQ(sqlite3_step(stmt), SQLITE_ROW);
  EXPECT_STREQ(reinterpret_cast<const char*>(sqlite3_column_text(stmt, 0)), "wal");
  sqlite3_finalize(stmt);
  sqlite3_close(db);
}

TEST_F(ModelStoreTest, ConcurrentAppendsAllCompleteAndKeepEachThreadsOrder) {
  StartRoundOne();
  constexpr int kThreads = 8;
  constexpr int kPerThread = 500;
  Completions done(kThreads * kPerThread);
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < kPerThread; ++i) {
        const std::string device = absl::StrCat("t", t, "-", i);
        store_->AppendUpdate({1, device, "payload-" + device, i},
                             done.Callback(static_cast<size_t>(t * kPerThread + i)));
      }
    });
  }
  for (std::thread& thread : threads) thread.join();
  const std::vector<absl::Status> statuses = done.Wait();
  for (size_t i = 0; i < statuses.size(); ++i) ASSERT_TRUE(statuses[i].ok()) << i << statuses[i];
  EXPECT_EQ(store_->PendingWrites(), 0u);

  const std::vector<StoredUpdate> updates = store_->RoundUpdates(1).value();
  ASSERT_EQ(updates.size(), static_cast<size_t>(kThreads * kPerThread));
  std::vector<int> next(kThreads, 0);
  for (const StoredUpdate& u : updates) {
    int t = -1, i = -1;
    ASSERT_EQ(std::sscanf(u.device_id.c_str(), "t%d-%d", &t, &i), 2) << u.device_id;
    ASSERT_TRUE(t >= 0 && t < kThreads) << u.device_id;
    EXPECT_EQ(i, next[t]++) << "thread " << t << "'s appends out of order";
    EXPECT_EQ(u.payload, "payload-" + u.device_id);
    EXPECT_EQ(u.received_ms, i);
  }
}

TEST_F(ModelStoreTest, PendingWritesCountsAppendsNotYetDurable) {
  StartRoundOne();
  constexpr size_t kCount = 50;
  Completions done(kCount);
  {
    WriterGate gate(*store_, 1);
    for (size_t i = 0; i < kCount; ++i) {
      store_->AppendUpdate({1, absl::StrCat("dev-", i), "u", 1}, done.Callback(i));
    }
    EXPECT_EQ(store_->PendingWrites(), kCount);
    EXPECT_EQ(done.finished(), 0u);  // nothing is acknowledged before it is written
  }
  for (const absl::Status& s : done.Wait()) EXPECT_TRUE(s.ok()) << s;
  EXPECT_EQ(store_->PendingWrites(), 0u);
}

TEST_F(ModelStoreTest, BatchHookRunsOncePerBatchAfterItsCallbacksAndStatsCountIt) {
  StartRoundOne();
  constexpr size_t kCount = 40;
  constexpr absl::Duration kHeldBehindGate = absl::Milliseconds(20);
  // What the hook saw: how many callbacks had run each time it ran.
  absl::Mutex mu;
  size_t callbacks = 0;
  std::vector<size_t> seen;
  store_->SetBatchHook([&] {
    absl::MutexLock lock(&mu);
    seen.push_back(callbacks);
  });
  const ModelStore::WriteStats before = store_->Stats();
  {
    WriterGate gate(*store_, 1);  // its own batch: one hook call, one batch
    for (size_t i = 0; i < kCount; ++i) {
      store_->AppendUpdate({1, absl::StrCat("dev-", i), "u", 1}, [&](absl::Status s) {
        EXPECT_TRUE(s.ok()) << s;
        absl::MutexLock lock(&mu);
        ++callbacks;
      });
    }
    // Every append waits at least this long behind the gate: a lower
    // bound on what wait_us must add up.
    absl::SleepFor(kHeldBehindGate);
  }
  // A synchronous write returns after the callbacks of earlier appends ran.
  ASSERT_TRUE(store_->AbandonRound(1, 2000).ok());
  store_->SetBatchHook(nullptr);
  const ModelStore::WriteStats after = store_->Stats();
  absl::MutexLock lock(&mu);
  EXPECT_EQ(callbacks, kCount);
  // The gate's batch (its one task), then the 40 appends queued behind it
  // as one batch, whose hook ran after all 40 callbacks.
  ASSERT_EQ(seen.size(), 2u);
  EXPECT_EQ(seen[0], 0u);
  EXPECT_EQ(seen[1], kCount);
  EXPECT_EQ(after.batches - before.batches, 2u);
  EXPECT_EQ(after.appends - before.appends, kCount + 1);
  EXPECT_GE(after.wait_us - before.wait_us,
            kCount * static_cast<uint64_t>(absl::ToInt64Microseconds(kHeldBehindGate)));
}

TEST_F(ModelStoreTest, FlushReturnsAfterEarlierAppendsTheirCallbacksAndTheHook) {
  StartRoundOne();
  constexpr size_t kCount = 25;
  std::atomic<size_t> callbacks{0};
  std::atomic<size_t> hooks_after_all{0};  // hook runs that saw every callback
  store_->SetBatchHook([&] {
    if (callbacks.load() == kCount) ++hooks_after_all;
  });
  {
    WriterGate gate(*store_, 1);  // queue them all behind a held batch
    for (size_t i = 0; i < kCount; ++i) {
      store_->AppendUpdate({1, absl::StrCat("dev-", i), "u", 1}, [&](absl::Status s) {
        EXPECT_TRUE(s.ok()) << s;
        ++callbacks;
      });
    }
  }
  ASSERT_TRUE(store_->Flush().ok());
  EXPECT_EQ(callbacks.load(), kCount);
  EXPECT_EQ(hooks_after_all.load(), 1u);
  store_->SetBatchHook(nullptr);

  // From a callback it would wait for itself.
  absl::Notification called;
  absl::Status from_callback;
  store_->AppendUpdate({1, "dev-late", "u", 2}, [&](absl::Status) {
    from_callback = store_->Flush();
    called.Notify();
  });
  ASSERT_TRUE(called.WaitForNotificationWithTimeout(kCallbackLimit));
  EXPECT_EQ(from_callback.code(), absl::StatusCode::kFailedPrecondition) << from_callback;
}

TEST_F(ModelStoreTest, ClearingTheBatchHookWaitsForARunInProgress) {
  StartRoundOne();
  absl::Notification entered, release;
  std::atomic<bool> hook_finished{false};
  // A hook must not block; this one does, to hold a run open.
  store_->SetBatchHook([&] {
    if (entered.HasBeenNotified()) return;
    entered.Notify();
    release.WaitForNotification();
    hook_finished = true;
  });
  store_->AppendUpdate({1, "dev", "u", 1}, nullptr);
  ASSERT_TRUE(entered.WaitForNotificationWithTimeout(kCallbackLimit));
  std::atomic<bool> cleared{false};
  std::thread clearer([&] {
    store_->SetBatchHook(nullptr);
    cleared = true;
  });
  // Long enough for the clearer to get through if it did not wait; a busy
  // machine can only make this pass wrongly, never fail wrongly.
  absl::SleepFor(absl::Milliseconds(50));
  EXPECT_FALSE(cleared.load()) << "the hook was cleared while it ran";
  release.Notify();
  clearer.join();
  EXPECT_TRUE(hook_finished.load());
}
TEST_F(ModelStoreTest, DestroyingTheStoreWritesEverythingQueued) {
  StartRoundOne();
  constexpr size_t kCount = 1000;
  Completions done(kCount);
  for (size_t i = 0; i < kCount; ++i) {
    store_->AppendUpdate({1, absl::StrCat("dev-", i), absl::StrCat("payload-", i), 1},
                         done.Callback(i));
  }
  store_.reset();
  EXPECT_EQ(done.finished(), kCount);  // before the destructor returned
  for (const absl::Status& s : done.Wait()) EXPECT_TRUE(s.ok()) << s;

  Reopen();
  const std::vector<StoredUpdate> updates = store_->RoundUpdates(1).value();
  ASSERT_EQ(updates.size(), kCount);
  for (size_t i = 0; i < kCount; ++i) {
    EXPECT_EQ(updates[i].payload, absl::StrCat("payload-", i));
  }
}

TEST_F(ModelStoreTest, SynchronousWriteFromADoneCallbackFailsInsteadOfHanging) {
  StartRoundOne();
  absl::Status inner;
  Completions done(1);
  store_->AppendTask({1, "dev", "t", 1}, [&](absl::Status status) {
    inner = store_->AbandonRound(1, 1500);
    done.Callback(0)(std::move(status));
  });
  EXPECT_TRUE(done.Wait()[0].ok());
  EXPECT_EQ(inner.code(), absl::StatusCode::kFailedPrecondition) << inner;
  EXPECT_EQ(StateOf(1), RoundState::kOpen);
}

// ---- the Admin service's reads and writes (schema 4) -----------------------

AuditEntry Audit(int64_t at_ms, const std::string& action, const std::string& detail) {
  return AuditEntry{/*id=*/0, at_ms, "token:ops", action, detail};
}

// The audit log, newest first, as the store reads it back.
std::vector<AuditEntry> AllAudit(ModelStore& store) {
  absl::StatusOr<std::vector<AuditEntry>> entries = store.AuditLog(0, 1000);
  EXPECT_TRUE(entries.ok()) << entries.status();
  return entries.ok() ? *entries : std::vector<AuditEntry>();
}

TEST_F(ModelStoreTest, ANewStoreIsNotPausedAndHasNoAuditEntries) {
  const PauseState state = store_->Paused().value();
  EXPECT_FALSE(state.paused);
  EXPECT_EQ(state.since_unix_ms, 0);
  EXPECT_EQ(state.by, "");
  EXPECT_TRUE(AllAudit(*store_).empty());
  EXPECT_TRUE(store_->Revocations().value().empty());
  EXPECT_TRUE(store_->ListVersions(0, 100).value().empty());
  EXPECT_TRUE(store_->RecentDevices(100).value().empty());
}

TEST_F(ModelStoreTest, PauseStateAndItsAuditSurviveReopening) {
  ASSERT_TRUE(store_->SetPaused({true, 5000, "token:ops"}, Audit(5000, "pause", "disk swap")).ok());
  Reopen();
  PauseState state = store_->Paused().value();
  EXPECT_TRUE(state.paused);
  EXPECT_EQ(state.since_unix_ms, 5000);
  EXPECT_EQ(state.by, "token:ops");
  ASSERT_TRUE(store_->SetPaused({false, 0, ""}, Audit(6000, "resume", "")).ok());
  Reopen();
  state = store_->Paused().value();
  EXPECT_FALSE(state.paused);
  EXPECT_EQ(state.since_unix_ms, 0);
  EXPECT_EQ(state.by, "");
  const std::vector<AuditEntry> audit = AllAudit(*store_);
  ASSERT_EQ(audit.size(), 2u);
  EXPECT_EQ(audit[0].action, "resume");
  EXPECT_EQ(audit[0].at_unix_ms, 6000);
  EXPECT_EQ(audit[1].action, "pause");
  EXPECT_EQ(audit[1].actor, "token:ops");
  EXPECT_EQ(audit[1].detail, "disk swap");
  EXPECT_EQ(audit[1].at_unix_ms, 5000);
  EXPECT_LT(audit[1].id, audit[0].id);
}

TEST_F(ModelStoreTest, AuditLogIsNewestFirstAndPagesByIdBelow) {
  for (int i = 1; i <= 5; ++i) {
    ASSERT_TRUE(store_->SetPaused({i % 2 == 1, 100 * i, "token:ops"},
                                  Audit(100 * i, i % 2 == 1 ? "pause" : "resume",
                                        absl::StrCat("entry ", i)))
                    .ok());
  }
  const std::vector<AuditEntry> all = AllAudit(*store_);
  ASSERT_EQ(all.size(), 5u);
  for (size_t i = 0; i < all.size(); ++i) {
    EXPECT_EQ(all[i].detail, absl::StrCat("entry ", 5 - i));
    if (i > 0) {
      EXPECT_LT(all[i].id, all[i - 1].id);
    }
  }
  // The page after the first two: the third entry onwards.
  const std::vector<AuditEntry> page = store_->AuditLog(all[1].id, 2).value();
  ASSERT_EQ(page.size(), 2u);
  EXPECT_EQ(page[0].id, all[2].id);
  EXPECT_EQ(page[1].id, all[3].id);
  EXPECT_EQ(store_->AuditLog(all[4].id, 10).value().size(), 0u);
  EXPECT_EQ(store_->AuditLog(0, 0).value().size(), 0u);
  // Ids go on increasing after a reopen.
  Reopen();
  ASSERT_TRUE(store_->SetPaused({true, 700, "x"}, Audit(700, "pause", "after reopen")).ok());
  const std::vector<AuditEntry> after = AllAudit(*store_);
  ASSERT_EQ(after.size(), 6u);
  EXPECT_EQ(after[0].detail, "after reopen");
  EXPECT_GT(after[0].id, all[0].id);
}

TEST_F(ModelStoreTest, RevokingWithAnAuditRecordsOnlyTheFirstRevocation) {
  ASSERT_TRUE(store_->RevokeDevice("dev-b", 100, Audit(100, "revoke", "dev-b: lost")).ok());
  ASSERT_TRUE(store_->RevokeDevice("dev-a", 200, Audit(200, "revoke", "dev-a")).ok());
  ASSERT_TRUE(store_->RevokeDevice("dev-b", 300, Audit(300, "revoke", "dev-b again")).ok());
  const std::vector<Revocation> revocations = store_->Revocations().value();
  ASSERT_EQ(revocations.size(), 2u);
  EXPECT_EQ(revocations[0].device_id, "dev-a");
  EXPECT_EQ(revocations[0].revoked_unix_ms, 200);
  EXPECT_EQ(revocations[1].device_id, "dev-b");
  EXPECT_EQ(revocations[1].revoked_unix_ms, 100);
  const std::vector<AuditEntry> audit = AllAudit(*store_);
  ASSERT_EQ(audit.size(), 2u);
  EXPECT_EQ(audit[0].detail, "dev-a");
  EXPECT_EQ(audit[1].detail, "dev-b: lost");
  EXPECT_EQ(store_->RevokeDevice("", 400, Audit(400, "revoke", "")).code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(AllAudit(*store_).size(), 2u);
}

TEST_F(ModelStoreTest, ListVersionsIsNewestFirstWithoutWeights) {
  StartRoundOne();
  ASSERT_TRUE(store_->CommitRound(1, 1400, MakeVersion(2, 1, 1)).ok());
  ASSERT_TRUE(store_->OpenRound(MakeRound(2, 2)).ok());
  ASSERT_TRUE(store_->CommitRound(2, 2400, MakeVersion(3, 2, 2)).ok());
  ASSERT_TRUE(store_->OpenRound(MakeRound(3, 3)).ok());
  ASSERT_TRUE(store_->CommitRound(3, 3400, MakeVersion(4, 3, 3)).ok());

  const std::vector<v1::ModelVersion> newest = store_->ListVersions(0, 2).value();
  ASSERT_EQ(newest.size(), 2u);
  EXPECT_EQ(newest[0].version(), 4u);
  EXPECT_EQ(newest[1].version(), 3u);
  const std::vector<v1::ModelVersion> from3 = store_->ListVersions(3, 10).value();
  ASSERT_EQ(from3.size(), 3u);
  for (size_t i = 0; i < from3.size(); ++i) {
    const uint32_t version = static_cast<uint32_t>(3 - i);
    // Everything but the weights and bias, as stored.
    v1::ModelVersion expected = MakeVersion(version, version - 1, version - 1);
    expected.clear_weights();
    expected.clear_bias();
    EXPECT_TRUE(MessageDifferencer::Equals(WithoutRollout(from3[i]), expected))
        << from3[i].DebugString();
    EXPECT_TRUE(from3[i].weights().empty());
    EXPECT_TRUE(from3[i].bias().empty());
  }
  // Above the latest: from the latest down.
  EXPECT_EQ(store_->ListVersions(9, 1).value().at(0).version(), 4u);
}

TEST_F(ModelStoreTest, RecentDevicesCountsTasksAndUpdatesMostRecentFirst) {
  StartRoundOne();
  Completions round1(4);
  store_->AppendTask({1, "dev-a", "t", 1100, 0}, round1.Callback(0));
  store_->AppendTask({1, "dev-b", "t", 1200, 0}, round1.Callback(1));
  store_->AppendTask({1, "dev-c", "t", 1300, 0}, round1.Callback(2));
  store_->AppendUpdate({1, "dev-a", Payload(1, "dev-a", 1), 1150}, round1.Callback(3));
  for (const absl::Status& s : round1.Wait()) ASSERT_TRUE(s.ok()) << s;
  ASSERT_TRUE(store_->CommitRound(1, 1400, MakeVersion(2, 1, 1)).ok());
  ASSERT_TRUE(store_->OpenRound(MakeRound(2, 2)).ok());
  Completions round2(3);
  store_->AppendTask({2, "dev-a", "t", 2100, 0}, round2.Callback(0));
  store_->AppendUpdate({2, "dev-a", Payload(2, "dev-a", 2), 2150}, round2.Callback(1));
  // Same millisecond as dev-c's task in round 1: ties go by id.
  store_->AppendTask({2, "dev-0", "t", 1300, 0}, round2.Callback(2));
  for (const absl::Status& s : round2.Wait()) ASSERT_TRUE(s.ok()) << s;

  const std::vector<DeviceActivity> devices = store_->RecentDevices(100).value();
  ASSERT_EQ(devices.size(), 4u);
  EXPECT_EQ(devices[0].device_id, "dev-a");
  EXPECT_EQ(devices[0].last_task_ms, 2100);
  EXPECT_EQ(devices[0].last_round, 2u);
  EXPECT_EQ(devices[0].tasks, 2u);
  EXPECT_EQ(devices[0].updates, 2u);
  EXPECT_EQ(devices[1].device_id, "dev-0");
  EXPECT_EQ(devices[1].last_round, 2u);
  EXPECT_EQ(devices[2].device_id, "dev-c");
  EXPECT_EQ(devices[2].last_task_ms, 1300);
  EXPECT_EQ(devices[2].last_round, 1u);
  EXPECT_EQ(devices[2].tasks, 1u);
  EXPECT_EQ(devices[2].updates, 0u);
  EXPECT_EQ(devices[3].device_id, "dev-b");
  const std::vector<DeviceActivity> two = store_->RecentDevices(2).value();
  ASSERT_EQ(two.size(), 2u);
  EXPECT_EQ(two[0].device_id, "dev-a");
  EXPECT_EQ(two[1].device_id, "dev-0");
}

// Version 1, round 1 committed as version 2, round 2 open on version 2.
class RestoreTest : public ModelStoreTest {
 protected:
  void SetUp() override {
    ModelStoreTest::SetUp();
    StartRoundOne();
    ASSERT_TRUE(store_->CommitRound(1, 1400, MakeVersion(2, 1, 1)).ok());
    ASSERT_TRUE(store_->OpenRound(MakeRound(2, 2)).ok());
  }
  // Version 3: version 1's model, restored over version 2.
  static v1::ModelVersion Restored() {
    v1::ModelVersion next = MakeVersion(1, 0, 0);
    next.set_version(3);
    next.set_parent_version(2);
    next.set_round(0);
    next.set_restored_from(1);
    next.clear_metrics();
    next.set_created_unix_ms(2300);
    return next;
  }
  // Fails the test unless the store is as SetUp left it.
  void ExpectUnchanged() {
    EXPECT_EQ(store_->LatestVersion().value()->version(), 2u);
    EXPECT_EQ(store_->GetVersion(3).status().code(), absl::StatusCode::kNotFound);
    const RoundRecord round = store_->LatestRound().value().value();
    EXPECT_EQ(round.round, 2u);
    EXPECT_EQ(round.state, RoundState::kOpen);
    EXPECT_EQ(round.closed_ms, 0);
    EXPECT_TRUE(AllAudit(*store_).empty());
  }
};

TEST_F(RestoreTest, CommitsTheRestoredVersionAbandonsTheRoundAndRecordsIt) {
  ASSERT_TRUE(
      store_->CommitRestoredVersion(2, 2300, Restored(), Audit(2300, "rollback", "to 1")).ok());
  EXPECT_TRUE(MessageDifferencer::Equals(store_->LatestVersion().value().value(), Restored()));
  const RoundRecord round = store_->LatestRound().value().value();
  EXPECT_EQ(round.round, 2u);
  EXPECT_EQ(round.state, RoundState::kAbandoned);
  EXPECT_EQ(round.closed_ms, 2300);
  const std::vector<AuditEntry> audit = AllAudit(*store_);
  ASSERT_EQ(audit.size(), 1u);
  EXPECT_EQ(audit[0].action, "rollback");
  EXPECT_EQ(audit[0].detail, "to 1");

  // The lineage goes on from the restored version, across a reopen.
  Reopen();
  EXPECT_TRUE(MessageDifferencer::Equals(WithoutRollout(store_->GetVersion(3).value()), Restored()));
  ASSERT_TRUE(store_->OpenRound(MakeRound(3, 3)).ok());
  EXPECT_EQ(store_->CommitRound(3, 3400, MakeVersion(4, 2, 3)).code(),
            absl::StatusCode::kFailedPrecondition);
  ASSERT_TRUE(store_->CommitRound(3, 3400, MakeVersion(4, 3, 3)).ok());
  // A second rollback, with no round open, to the restored version's
  // source again.
  v1::ModelVersion again = Restored();
  again.set_version(5);
  again.set_parent_version(4);
  ASSERT_TRUE(store_->CommitRestoredVersion(0, 0, again, Audit(3500, "rollback", "")).ok());
  EXPECT_EQ(store_->LatestVersion().value()->version(), 5u);
  EXPECT_EQ(AllAudit(*store_).size(), 2u);
}

TEST_F(RestoreTest, EveryRefusalWritesNothing) {
  struct Case {
    const char* name;
    uint32_t abandon_round;
    v1::ModelVersion next;
  };
  std::vector<Case> cases;
  const auto with = [](auto change) {
    v1::ModelVersion next = Restored();
    change(next);
    return next;
  };
  cases.push_back({"a round number", 2, with([](v1::ModelVersion& m) { m.set_round(2); })});
  cases.push_back({"parent not the latest", 2,
                   with([](v1::ModelVersion& m) { m.set_parent_version(1); })});
  cases.push_back({"number not latest + 1", 2, with([](v1::ModelVersion& m) { m.set_version(4); })});
  cases.push_back({"restored from nothing", 2,
                   with([](v1::ModelVersion& m) { m.set_restored_from(0); })});
  cases.push_back({"restored from the latest", 2, with([](v1::ModelVersion& m) {
                     m.set_restored_from(2);
                     m.set_checksum(MakeVersion(2, 1, 1).checksum());
                   })});
  cases.push_back({"restored from an unknown version", 2,
                   with([](v1::ModelVersion& m) { m.set_restored_from(9); })});
  cases.push_back({"another checksum", 2,
                   with([](v1::ModelVersion& m) { m.set_checksum(m.checksum() + 1); })});
  cases.push_back({"the open round left open", 0, Restored()});
  cases.push_back({"a round that is not open", 1, Restored()});
  cases.push_back({"a round that does not exist", 7, Restored()});
  for (const Case& c : cases) {
    SCOPED_TRACE(c.name);
    const absl::Status status =
        store_->CommitRestoredVersion(c.abandon_round, 2300, c.next, Audit(2300, "rollback", ""));
    EXPECT_EQ(status.code(), absl::StatusCode::kFailedPrecondition) << status;
    ExpectUnchanged();
  }
}

TEST(ModelStoreRestoreFileTest, RefusedWithoutAnOlderVersionOrWithARoundToAbandonNotOpen) {
  TempDir dir;
  std::unique_ptr<ModelStore> store = OpenOrDie(dir.File("store.db"));
  ASSERT_NE(store, nullptr);
  v1::ModelVersion next = MakeVersion(1, 0, 0);
  next.set_version(2);
  next.set_parent_version(1);
  next.set_restored_from(1);
  // No version at all, then only the latest to restore.
  EXPECT_EQ(store->CommitRestoredVersion(0, 0, next, Audit(1, "rollback", "")).code(),
            absl::StatusCode::kFailedPrecondition);
  ASSERT_TRUE(store->PutInitialVersion(MakeVersion(1, 0, 0)).ok());
  EXPECT_EQ(store->CommitRestoredVersion(0, 0, next, Audit(1, "rollback", "")).code(),
            absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(store->LatestVersion().value()->version(), 1u);
  // No round open: naming one to abandon is refused, the committed one too.
  ASSERT_TRUE(store->OpenRound(MakeRound(1, 1)).ok());
  ASSERT_TRUE(store->CommitRound(1, 1400, MakeVersion(2, 1, 1)).ok());
  next.set_version(3);
  next.set_parent_version(2);
  for (uint32_t round : {1u, 5u}) {
    EXPECT_EQ(store->CommitRestoredVersion(round, 2500, next, Audit(1, "rollback", "")).code(),
              absl::StatusCode::kFailedPrecondition);
    EXPECT_EQ(store->LatestVersion().value()->version(), 2u);
    EXPECT_EQ(store->LatestRound().value()->state, RoundState::kCommitted);
    EXPECT_TRUE(store->AuditLog(0, 10).value().empty());
  }
  EXPECT_TRUE(store->CommitRestoredVersion(0, 0, next, Audit(1, "rollback", "")).ok());
  EXPECT_EQ(store->LatestVersion().value()->version(), 3u);
}

// A write failing after the change (the audit insert) or before it (the
// version insert) leaves both undone: the change and its record are one.
TEST_F(RestoreTest, AFailingWriteLeavesNeitherTheChangeNorItsRecord) {
  for (const char* table : {"model_versions", "audit_log"}) {
    SCOPED_TRACE(table);
    ExecSql(path_, absl::StrCat("CREATE TRIGGER fail_insert BEFORE INSERT ON ", table,
                                " BEGIN SELECT RAISE(ABORT, 'injected failure'); END"));
    const absl::Status failed =
        store_->CommitRestoredVersion(2, 2300, Restored(), Audit(2300, "rollback", ""));
    EXPECT_NE(failed.message().find("injected failure"), std::string::npos) << failed;
    ExpectUnchanged();
    ExecSql(path_, "DROP TRIGGER fail_insert");
  }
}

TEST_F(ModelStoreTest, AFailingAuditLeavesPauseAndRevocationUnchanged) {
  ExecSql(path_,
          "CREATE TRIGGER fail_insert BEFORE INSERT ON audit_log "
          "BEGIN SELECT RAISE(ABORT, 'injected failure'); END");
  EXPECT_FALSE(store_->SetPaused({true, 100, "token:ops"}, Audit(100, "pause", "")).ok());
  EXPECT_FALSE(store_->Paused().value().paused);
  EXPECT_FALSE(store_->RevokeDevice("dev-a", 100, Audit(100, "revoke", "")).ok());
  EXPECT_TRUE(store_->Revocations().value().empty());
  ExecSql(path_, "DROP TRIGGER fail_insert");
  EXPECT_TRUE(store_->RevokeDevice("dev-a", 100, Audit(100, "revoke", "")).ok());
  EXPECT_EQ(AllAudit(*store_).size(), 1u);
}

// A row altered in the file without its CRC, where SQLite sees nothing
// wrong (no index covers these columns), reads as DATA_LOSS naming the
// file, not as another valid row.
TEST_F(ModelStoreTest, AnAlteredAuditOrPauseRowIsDataLoss) {
  ASSERT_TRUE(store_->SetPaused({true, 100, "token:ops"}, Audit(100, "pause", "why")).ok());
  ExecSql(path_, "UPDATE audit_log SET detail = 'whY'");
  absl::StatusOr<std::vector<AuditEntry>> audit = store_->AuditLog(0, 10);
  EXPECT_EQ(audit.status().code(), absl::StatusCode::kDataLoss) << audit.status();
  EXPECT_NE(audit.status().message().find("row CRC"), std::string::npos) << audit.status();
  EXPECT_NE(audit.status().message().find(path_), std::string::npos) << audit.status();
  ExecSql(path_, "UPDATE pause_state SET paused_by = 'token:eve'");
  absl::StatusOr<PauseState> paused = store_->Paused();
  EXPECT_EQ(paused.status().code(), absl::StatusCode::kDataLoss) << paused.status();
  ASSERT_TRUE(store_->RevokeDevice("dev-a", 100).ok());
  ExecSql(path_, "UPDATE revocations SET revoked_ms = 1");
  EXPECT_EQ(store_->Revocations().status().code(), absl::StatusCode::kDataLoss);
}

// ---- federated evaluation (schema 5) ---------------------------------------

v1::Evaluation MakeEvaluation(uint32_t version, uint32_t samples, uint32_t correct,
                              uint64_t loss_sum_q16) {
  v1::Evaluation e;
  e.set_model_version(version);
  e.set_samples(samples);
  e.set_correct(correct);
  e.set_loss_sum_q16(loss_sum_q16);
  return e;
}

// Appends each (update, evaluation) and returns the statuses given to
// their `done` callbacks.
std::vector<absl::Status> AppendAll(
    ModelStore& store, std::vector<std::pair<StoredUpdate, std::optional<v1::Evaluation>>> all) {
  Completions completions(all.size());
  for (size_t i = 0; i < all.size(); ++i) {
    store.AppendUpdate(std::move(all[i].first), std::move(all[i].second),
                       completions.Callback(i));
  }
  return completions.Wait();
}

StoredUpdate Stored(uint32_t round, const std::string& device, uint32_t seed) {
  return StoredUpdate{round, device, Payload(round, device, seed), 5000 + seed};
}

// The fleet evaluations ListVersions reports, by version.
std::map<uint32_t, v1::FleetEvaluation> FleetOf(ModelStore& store) {
  std::map<uint32_t, v1::FleetEvaluation> out;
  absl::StatusOr<std::vector<v1::ModelVersion>> versions = store.ListVersions(0, 100);
  EXPECT_TRUE(versions.ok()) << versions.status();
  if (!versions.ok()) return out;
  for (const v1::ModelVersion& v : *versions) {
    if (v.has_fleet_evaluation()) out[v.version()] = v.fleet_evaluation();
  }
  return out;
}

std::string Describe(const v1::FleetEvaluation& f) { return f.ShortDebugString(); }

// The sums a test keeps itself, in 128 bits so that its own addition
// cannot wrap.
struct ExpectedSums {
  uint32_t devices = 0;
  unsigned __int128 samples = 0, correct = 0, loss = 0;
  void Add(const v1::Evaluation& e) {
    ++devices;
    samples += e.samples();
    correct += e.correct();
    loss += e.loss_sum_q16();
  }
  bool Matches(const v1::FleetEvaluation& f) const {
    return f.devices() == devices && f.samples() == samples && f.correct() == correct &&
           f.loss_sum_q16() == loss;
  }
};

// Three rounds of 300 devices, each reporting the round's base version
// with random counts up to the largest a valid evaluation may carry: each
// version's loss sum passes 2^53, where a double sum would round. The
// store's sums equal the test's, and again after a reopen.
TEST_F(ModelStoreTest, FleetEvaluationSumsAreExactAndSurviveReopening) {
  ASSERT_TRUE(store_->PutInitialVersion(MakeVersion(1, 0, 0)).ok());
  std::mt19937_64 rng(41);
  constexpr uint32_t kMaxSamples = uint32_t{1} << 24;
  constexpr int kDevices = 300;
  std::map<uint32_t, ExpectedSums> expected;
  for (uint32_t round = 1; round <= 3; ++round) {
    ASSERT_TRUE(store_->OpenRound(MakeRound(round, round)).ok());
    std::vector<std::pair<StoredUpdate, std::optional<v1::Evaluation>>> appends;
    for (int d = 0; d < kDevices; ++d) {
      const std::string device = absl::StrCat("dev-", round, "-", d);
      // Most near the top of the range, so that the sums grow large.
      const uint32_t samples =
          kMaxSamples - static_cast<uint32_t>(rng() % (d % 7 == 0 ? kMaxSamples : 1000));
      const uint32_t correct = static_cast<uint32_t>(rng() % (uint64_t{samples} + 1));
      const uint64_t loss = (uint64_t{samples} << 21) - rng() % 100000;
      v1::Evaluation e = MakeEvaluation(round, samples, correct, loss);
      expected[round].Add(e);
      appends.emplace_back(Stored(round, device, static_cast<uint32_t>(d)), std::move(e));
    }
    // A device of the round without an evaluation: recorded, not counted.
    appends.emplace_back(Stored(round, "silent", 1), std::nullopt);
    for (const absl::Status& s : AppendAll(*store_, std::move(appends))) {
      ASSERT_TRUE(s.ok()) << s;
    }
    ASSERT_TRUE(store_->CommitRound(round, 1000 * round + 400, MakeVersion(round + 1, round, round))
                    .ok());
  }
  ASSERT_GT(expected[1].loss, static_cast<unsigned __int128>(1) << 53);
  for (int pass = 0; pass < 2; ++pass) {
    SCOPED_TRACE(pass == 0 ? "as written" : "after reopening");
    const std::map<uint32_t, v1::FleetEvaluation> fleet = FleetOf(*store_);
    ASSERT_EQ(fleet.size(), 3u) << "versions 1 to 3 evaluated, 4 not yet";
    for (uint32_t v = 1; v <= 3; ++v) {
      ASSERT_TRUE(fleet.contains(v)) << v;
      EXPECT_TRUE(expected[v].Matches(fleet.at(v))) << v << ": " << Describe(fleet.at(v));
    }
    absl::StatusOr<std::optional<VersionEvaluation>> latest = store_->LatestFleetEvaluation();
    ASSERT_TRUE(latest.ok() && latest->has_value()) << latest.status();
    EXPECT_EQ((*latest)->version, 3u);
    EXPECT_TRUE(expected[3].Matches((*latest)->fleet)) << Describe((*latest)->fleet);
    // Devices get versions without it (model.proto).
    EXPECT_FALSE(store_->GetVersion(2).value().has_fleet_evaluation());
    Reopen();
  }
}

TEST_F(ModelStoreTest, NoEvaluationYetMeansNoFleetEvaluation) {
  StartRoundOne();
  EXPECT_TRUE(FleetOf(*store_).empty());
  absl::StatusOr<std::optional<VersionEvaluation>> latest = store_->LatestFleetEvaluation();
  ASSERT_TRUE(latest.ok()) << latest.status();
  EXPECT_FALSE(latest->has_value());
}

// A device that reports the same version again, in a later round on the
// same base version or in the same batch, is counted once: its first
// report. Its update is still recorded.
TEST_F(ModelStoreTest, ADevicesSecondEvaluationOfAVersionIsIgnored) {
  StartRoundOne();
  std::vector<absl::Status> done =
      AppendAll(*store_, {{Stored(1, "dev-a", 1), MakeEvaluation(1, 10, 4, 1000)},
                          {Stored(1, "dev-b", 2), MakeEvaluation(1, 30, 30, 7)}});
  for (const absl::Status& s : done) ASSERT_TRUE(s.ok()) << s;
  ASSERT_TRUE(store_->AbandonRound(1, 1400).ok());
  ASSERT_TRUE(store_->OpenRound(MakeRound(2, 1)).ok());
  done = AppendAll(*store_, {{Stored(2, "dev-a", 3), MakeEvaluation(1, 20, 20, 0)}});
  ASSERT_TRUE(done[0].ok()) << done[0];
  EXPECT_EQ(store_->RoundUpdates(2).value().size(), 1u) << "the update itself is recorded";
  const std::map<uint32_t, v1::FleetEvaluation> fleet = FleetOf(*store_);
  ASSERT_TRUE(fleet.contains(1));
  // dev-a's first report (10, 4, 1000) and dev-b's (30, 30, 7).
  EXPECT_EQ(fleet.at(1).devices(), 2u);
  EXPECT_EQ(fleet.at(1).samples(), 40u);
  EXPECT_EQ(fleet.at(1).correct(), 34u);
  EXPECT_EQ(fleet.at(1).loss_sum_q16(), 1007u);
}

// An append that fails writes neither its update nor its evaluation, and
// leaves the batch's other appends as they would be without it.
TEST_F(ModelStoreTest, AFailingAppendLeavesNeitherTheUpdateNorItsEvaluation) {
  StartRoundOne();
  // The (round, device) pair is taken: ALREADY_EXISTS, nothing counted.
  ASSERT_TRUE(AppendAll(*store_, {{Stored(1, "dev-a", 1), std::nullopt}})[0].ok());
  std::vector<absl::Status> done =
      AppendAll(*store_, {{Stored(1, "dev-a", 2), MakeEvaluation(1, 10, 5, 0)}});
  EXPECT_EQ(done[0].code(), absl::StatusCode::kAlreadyExists) << done[0];
  EXPECT_TRUE(FleetOf(*store_).empty());

  // The evaluation's row fails after its update's was written, in a batch
  // with other appends: that update goes with it, the others stay.
  ExecSql(path_,
          "CREATE TRIGGER fail_insert BEFORE INSERT ON evaluations "
          "WHEN NEW.device_id = 'dev-c' BEGIN SELECT RAISE(ABORT, 'injected failure'); END");
  {
    Completions completions(3);
    {
      WriterGate gate(*store_, 1);
      store_->AppendUpdate(Stored(1, "dev-b", 3), MakeEvaluation(1, 10, 9, 5),
                           completions.Callback(0));
      store_->AppendUpdate(Stored(1, "dev-c", 4), MakeEvaluation(1, 10, 1, 5),
                           completions.Callback(1));
      store_->AppendUpdate(Stored(1, "dev-d", 5), MakeEvaluation(1, 10, 2, 5),
                           completions.Callback(2));
    }
    done = completions.Wait();
  }
  EXPECT_TRUE(done[0].ok()) << done[0];
  EXPECT_NE(done[1].message().find("injected failure"), std::string::npos) << done[1];
  EXPECT_TRUE(done[2].ok()) << done[2];
  std::vector<std::string> devices;
  const std::vector<StoredUpdate> updates = store_->RoundUpdates(1).value();
  for (const StoredUpdate& u : updates) devices.push_back(u.device_id);
  EXPECT_EQ(devices, (std::vector<std::string>{"dev-a", "dev-b", "dev-d"}));
  std::map<uint32_t, v1::FleetEvaluation> fleet = FleetOf(*store_);
  ASSERT_TRUE(fleet.contains(1));
  EXPECT_EQ(fleet.at(1).devices(), 2u);
  EXPECT_EQ(fleet.at(1).correct(), 11u) << "dev-b's 9 and dev-d's 2";
  ExecSql(path_, "DROP TRIGGER fail_insert");

  // A round that is not open: FAILED_PRECONDITION, nothing counted.
  ASSERT_TRUE(store_->AbandonRound(1, 1400).ok());
  done = AppendAll(*store_, {{Stored(1, "dev-e", 6), MakeEvaluation(1, 10, 10, 0)}});
  EXPECT_EQ(done[0].code(), absl::StatusCode::kFailedPrecondition) << done[0];
  EXPECT_EQ(FleetOf(*store_).at(1).devices(), 2u);
}

// Sums past 2^64 - 1 are refused, never wrapped; a loss no column can hold
// is refused before anything is written.
TEST_F(ModelStoreTest, FleetSumsBeyondTheirRangeAreOutOfRange) {
  StartRoundOne();
  constexpr uint64_t kLargest = uint64_t{INT64_MAX};
  std::vector<absl::Status> done =
      AppendAll(*store_, {{Stored(1, "dev-a", 1), MakeEvaluation(1, 1, 1, kLargest)},
                          {Stored(1, "dev-b", 2), MakeEvaluation(1, 1, 1, kLargest + 1)}});
  EXPECT_TRUE(done[0].ok()) << done[0];
  EXPECT_EQ(done[1].code(), absl::StatusCode::kInvalidArgument) << done[1];
  EXPECT_EQ(store_->RoundUpdates(1).value().size(), 1u);
  // Two of 2^63 - 1 still fit in 64 bits; a third does not.
  done = AppendAll(*store_, {{Stored(1, "dev-c", 3), MakeEvaluation(1, 1, 1, kLargest)}});
  ASSERT_TRUE(done[0].ok()) << done[0];
  EXPECT_EQ(FleetOf(*store_).at(1).loss_sum_q16(), 2 * kLargest);
  done = AppendAll(*store_, {{Stored(1, "dev-d", 4), MakeEvaluation(1, 1, 1, kLargest)}});
  ASSERT_TRUE(done[0].ok()) << done[0];
  absl::StatusOr<std::vector<v1::ModelVersion>> versions = store_->ListVersions(0, 10);
  EXPECT_EQ(versions.status().code(), absl::StatusCode::kOutOfRange) << versions.status();
  EXPECT_NE(versions.status().message().find("version 1"), std::string::npos)
      << versions.status();
  EXPECT_EQ(store_->LatestFleetEvaluation().status().code(), absl::StatusCode::kOutOfRange);
}

// An evaluation row altered in the file without its CRC reads as DATA_LOSS,
// not as another count.
TEST_F(ModelStoreTest, AnAlteredEvaluationRowIsDataLoss) {
  StartRoundOne();
  ASSERT_TRUE(
      AppendAll(*store_, {{Stored(1, "dev-a", 1), MakeEvaluation(1, 10, 4, 100)}})[0].ok());
  ExecSql(path_, "UPDATE evaluations SET correct = 10");
  absl::StatusOr<std::vector<v1::ModelVersion>> versions = store_->ListVersions(0, 10);
  EXPECT_EQ(versions.status().code(), absl::StatusCode::kDataLoss) << versions.status();
  EXPECT_NE(versions.status().message().find("row CRC"), std::string::npos) << versions.status();
  EXPECT_EQ(store_->LatestFleetEvaluation().status().code(), absl::StatusCode::kDataLoss);
}

// ---- each version's aggregation state (schema 7) ---------------------------

// The first column of the first row `sql` gives, read from the file
// directly (-1 when there is none).
int64_t SqlInt(const std::string& path, const std::string& sql) {
  sqlite3* db = nullptr;
  EXPECT_EQ(sqlite3_open(path.c_str(), &db), SQLITE_OK);
  sqlite3_stmt* stmt = nullptr;
  EXPECT_EQ(sqlite3_prepare_v2(db, sql.c_str(), -1, &stmt, nullptr), SQLITE_OK) << sql;
  const int64_t value = sqlite3_step(stmt) == SQLITE_ROW ? sqlite3_column_int64(stmt, 0) : -1;
  sqlite3_finalize(stmt);
  sqlite3_close(db);
  return value;
}

// A state with every field set, the 128-bit second moments included, so
// that a field lost or moved on the way shows.
v1::AggregationState MakeState(int64_t seed) {
  v1::AggregationState state;
  state.add_momentum(-seed);
  state.add_momentum(INT64_MIN + seed);
  state.add_momentum(INT64_MAX - seed);
  std::string second(32, '\0');
  for (size_t i = 0; i < second.size(); ++i) second[i] = static_cast<char>(0xF0 + i + seed);
  state.set_second_moment(second);
  state.add_noise(seed * 3);
  state.add_noise(-seed * 5);
  return state;
}

TEST_F(ModelStoreTest, AggregationStateRoundTripsAndSurvivesReopening) {
  StartRoundOne();
  const v1::AggregationState state = MakeState(7);
  ASSERT_TRUE(store_->CommitRound(1, 1400, MakeVersion(2, 1, 1), state).ok());
  // The 3-argument commit stores an empty state.
  ASSERT_TRUE(store_->OpenRound(MakeRound(2, 2)).ok());
  ASSERT_TRUE(store_->CommitRound(2, 2400, MakeVersion(3, 2, 2)).ok());
  Reopen();
  absl::StatusOr<v1::AggregationState> read = store_->AggregationStateOf(2);
  ASSERT_TRUE(read.ok()) << read.status();
  EXPECT_TRUE(MessageDifferencer::Equals(*read, state)) << read->DebugString();
  // The initial version never aggregated anything.
  EXPECT_EQ(store_->AggregationStateOf(1).value().ByteSizeLong(), 0u);
  EXPECT_EQ(store_->AggregationStateOf(3).value().ByteSizeLong(), 0u);
  EXPECT_EQ(store_->AggregationStateOf(4).status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(store_->AggregationStateOf(0).status().code(), absl::StatusCode::kNotFound);
}

// The state is written in the version's transaction: when either row
// fails, neither the version nor the state nor the round's close stays.
TEST_F(ModelStoreTest, CommitRoundWritesTheVersionAndItsStateOrNeither) {
  StartRoundOne();
  for (const char* table : {"aggregation_state", "model_versions"}) {
    SCOPED_TRACE(table);
    ExecSql(path_, absl::StrCat("CREATE TRIGGER fail_insert BEFORE INSERT ON ", table,
                                " BEGIN SELECT RAISE(ABORT, 'injected failure'); END"));
    const absl::Status failed = store_->CommitRound(1, 1400, MakeVersion(2, 1, 1), MakeState(1));
    EXPECT_NE(failed.message().find("injected failure"), std::string::npos) << failed;
    EXPECT_EQ(StateOf(1), RoundState::kOpen);
    EXPECT_EQ(store_->GetVersion(2).status().code(), absl::StatusCode::kNotFound);
    EXPECT_EQ(store_->AggregationStateOf(2).status().code(), absl::StatusCode::kNotFound);
    EXPECT_EQ(SqlInt(path_, "SELECT count(*) FROM aggregation_state"), 0);
    ExecSql(path_, "DROP TRIGGER fail_insert");
  }
  ASSERT_TRUE(store_->CommitRound(1, 1400, MakeVersion(2, 1, 1), MakeState(1)).ok());
  EXPECT_TRUE(MessageDifferencer::Equals(store_->AggregationStateOf(2).value(), MakeState(1)));
}

// A rollback's copy carries the optimizer state of the version it copies,
// without that version's noise: the copy released nothing new.
TEST_F(ModelStoreTest, ARestoredVersionCarriesTheCopiedStateWithoutItsNoise) {
  StartRoundOne();
  ASSERT_TRUE(store_->CommitRound(1, 1400, MakeVersion(2, 1, 1), MakeState(4)).ok());
  ASSERT_TRUE(store_->OpenRound(MakeRound(2, 2)).ok());
  ASSERT_TRUE(store_->CommitRound(2, 2400, MakeVersion(3, 2, 2), MakeState(9)).ok());
  v1::ModelVersion copy = MakeVersion(2, 1, 1);
  copy.set_version(4);
  copy.set_parent_version(3);
  copy.set_round(0);
  copy.set_restored_from(2);
  ASSERT_TRUE(store_->CommitRestoredVersion(0, 0, copy, Audit(2500, "rollback", "to 2")).ok());
  v1::AggregationState expected = MakeState(4);
  expected.clear_noise();
  const v1::AggregationState read = store_->AggregationStateOf(4).value();
  EXPECT_TRUE(MessageDifferencer::Equals(read, expected)) << read.DebugString();
  // The copied version's own record keeps its noise.
  EXPECT_EQ(store_->AggregationStateOf(2).value().noise_size(), 2);
}

TEST_F(ModelStoreTest, AnAlteredAggregationStateRowIsDataLoss) {
  StartRoundOne();
  ASSERT_TRUE(store_->CommitRound(1, 1400, MakeVersion(2, 1, 1), MakeState(2)).ok());
  // The blob's bytes zeroed, its length and the CRC left as they were.
  ExecSql(path_, "UPDATE aggregation_state SET state = zeroblob(length(state)) WHERE version = 2");
  absl::StatusOr<v1::AggregationState> read = store_->AggregationStateOf(2);
  EXPECT_EQ(read.status().code(), absl::StatusCode::kDataLoss) << read.status();
  EXPECT_NE(read.status().message().find("row CRC"), std::string::npos) << read.status();
}

// A schema 6 file (schema 7 without the aggregation_state table) keeps its
// versions; each reads an empty state, and new commits store theirs.
TEST(ModelStoreFileTest, SchemaSixStoreIsMigratedWithEmptyStates) {
  TempDir dir;
  const std::string path = dir.File("six.db");
  {
    std::unique_ptr<ModelStore> store = OpenOrDie(path);
    ASSERT_NE(store, nullptr);
    ASSERT_TRUE(store->PutInitialVersion(MakeVersion(1, 0, 0)).ok());
    ASSERT_TRUE(store->OpenRound(MakeRound(1, 1)).ok());
    ASSERT_TRUE(store->CommitRound(1, 1400, MakeVersion(2, 1, 1)).ok());
    ASSERT_TRUE(store->OpenRound(MakeRound(2, 2)).ok());
  }
  ExecSql(path, "DROP TABLE aggregation_state; PRAGMA user_version=6;");
  std::unique_ptr<ModelStore> store = OpenOrDie(path);
  ASSERT_NE(store, nullptr);
  EXPECT_EQ(SqlInt(path, "PRAGMA user_version"), 7);
  EXPECT_TRUE(MessageDifferencer::Equals(WithoutRollout(store->GetVersion(2).value()),
                                         MakeVersion(2, 1, 1)));
  EXPECT_EQ(store->AggregationStateOf(1).value().ByteSizeLong(), 0u);
  EXPECT_EQ(store->AggregationStateOf(2).value().ByteSizeLong(), 0u);
  // The rollout the file had is kept, not reset as a schema 5 file's is.
  EXPECT_EQ(store->GetVersion(1).value().rollout().reason(), "initial version");
  ASSERT_TRUE(store->CommitRound(2, 2400, MakeVersion(3, 2, 2), MakeState(3)).ok());
  EXPECT_TRUE(MessageDifferencer::Equals(store->AggregationStateOf(3).value(), MakeState(3)));
}

TEST(ModelStoreFileTest, RefusesAnotherSchemaVersion) {
  TempDir dir;
  const std::string path = dir.File("store.db");
  ASSERT_NE(OpenOrDie(path), nullptr);
  // A version from a newer build (this one writes 7 and migrates 1 to 6).
  ExecSql(path, "PRAGMA user_version=8");
  absl::StatusOr<std::unique_ptr<ModelStore>> store = OpenSqliteModelStore(path);
  ASSERT_FALSE(store.ok());
  EXPECT_EQ(store.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_NE(store.status().message().find("schema version 8"), std::string::npos) << store.status();
}

TEST(ModelStoreFileTest, RefusesAnotherProgramsDatabaseAndLeavesItAlone) {
  TempDir dir;
  const std::string path = dir.File("other.db");
  ExecSql(path, "CREATE TABLE notes(text TEXT); INSERT INTO notes VALUES('keep me')");
  const std::string before = ReadFile(path);
  absl::StatusOr<std::unique_ptr<ModelStore>> store = OpenSqliteModelStore(path);
  ASSERT_FALSE(store.ok());
  EXPECT_EQ(store.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_NE(store.status().message().find("not a tinyfed model store"), std::string::npos)
      << store.status();
  EXPECT_EQ(ReadFile(path), before);
}

TEST(ModelStoreFileTest, RefusesAFileThatIsNotADatabase) {
  TempDir dir;
  const std::string path = dir.File("garbage.db");
  const std::string garbage(4096, 'x');
  std::ofstream(path, std::ios::binary) << garbage;
  absl::StatusOr<std::unique_ptr<ModelStore>> store = OpenSqliteModelStore(path);
  ASSERT_FALSE(store.ok());
  EXPECT_EQ(store.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_NE(store.status().message().find(path), std::string::npos) << store.status();
  EXPECT_NE(store.status().message().find("not a database"), std::string::npos) << store.status();
  EXPECT_EQ(ReadFile(path), garbage);
}

TEST(ModelStoreFileTest, ReportsADirectoryThatDoesNotExist) {
  TempDir dir;
  absl::StatusOr<std::unique_ptr<ModelStore>> store =
      OpenSqliteModelStore(dir.File("missing/store.db"));
  ASSERT_FALSE(store.ok());
  EXPECT_EQ(store.status().code(), absl::StatusCode::kUnavailable) << store.status();
  EXPECT_NE(store.status().message().find("missing/store.db"), std::string::npos) << store.status();
}

TEST(ModelStoreFileTest, RefusesAnInMemoryDatabase) {
  // It could not be shared with the read connection nor survive a restart.
  absl::StatusOr<std::unique_ptr<ModelStore>> store = OpenSqliteModelStore(":memory:");
  ASSERT_FALSE(store.ok());
  EXPECT_EQ(store.status().code(), absl::StatusCode::kFailedPrecondition) << store.status();
}

}  // namespace
}  // namespace tinyfed::server
