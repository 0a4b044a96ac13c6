// Recomputing a version from the store (server/audit.h). Each store here is
// filled as the round manager fills it: the round's updates appended, the
// version AggregateRound made from them committed with its Aggregation
// record and AggregationState. RecomputeVersion must find the same version
// from the file alone, and must not when the stored evidence was altered
// (with the row's CRC recomputed, as a deliberate tamperer would).
#include "audit.h"

#include <sqlite3.h>

#include <cstdint>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "absl/strings/str_cat.h"
#include "head.h"
#include "model_store.h"
#include "reference_fedavg.h"
#include "server_test_support.h"
#include "strategy.h"
#include "tinyfed_common/host_numerics.h"

namespace tinyfed::server {
namespace {

using testing::MakeSpec;
using testing::MakeUpdate;
using testing::TempDir;
using testing::UpdateRowCrc;

constexpr uint32_t kFeatures = 8;
constexpr uint32_t kClasses = 3;
constexpr size_t kValues = kFeatures * kClasses + kClasses;
constexpr int kUpdatesPerRound = 6;
// Row scales up to 8 keep every mean far from the int16 limits, so no
// value saturates and a changed input always shows in the output.
constexpr uint32_t kMaxScale = 8;

// Replaces the payload of `device`'s update in `round`, its CRC recomputed
// unless `fix_crc` is false.
void RewriteUpdate(const std::string& path, uint32_t round, const std::string& device,
                   const std::string& payload, bool fix_crc) {
  sqlite3* db = nullptr;
  ASSERT_EQ(sqlite3_open(path.c_str(), &db), SQLITE_OK);
  sqlite3_stmt* stmt = nullptr;
  ASSERT_EQ(sqlite3_prepare_v2(db,
                               "UPDATE updates SET payload = ?1, "
                               "crc = CASE WHEN ?2 THEN ?3 ELSE crc END "
                               "WHERE round = ?4 AND device_id = ?5",
                               -1, &stmt, nullptr),
            SQLITE_OK)
      << sqlite3_errmsg(db);
  sqlite3_stmt* read = nullptr;
  ASSERT_EQ(sqlite3_prepare_v2(db,
                               "SELECT received_ms FROM updates WHERE round = ?1 AND device_id = ?2",
                               -1, &read, nullptr),
            SQLITE_OK);
  sqlite3_bind_int64(read, 1, round);
  sqlite3_bind_text(read, 2, device.data(), static_cast<int>(device.size()), SQLITE_STATIC);
  ASSERT_EQ(sqlite3_step(read), SQLITE_ROW);
  const int64_t received_ms = sqlite3_column_int64(read, 0);
  sqlite3_finalize(read);
  sqlite3_bind_blob(stmt, 1, payload.data(), static_cast<int>(payload.size()), SQLITE_STATIC);
  sqlite3_bind_int(stmt, 2, fix_crc ? 1 : 0);
  sqlite3_bind_int64(stmt, 3, UpdateRowCrc(round, device, payload, received_ms));
  sqlite3_bind_int64(stmt, 4, round);
  sqlite3_bind_text(stmt, 5, device.data(), static_cast<int>(device.size()), SQLITE_STATIC);
  EXPECT_EQ(sqlite3_step(stmt), SQLITE_DONE) << sqlite3_errmsg(db);
  EXPECT_EQ(sqlite3_changes(db), 1);
  sqlite3_finalize(stmt);
  sqlite3_close(db);
}

StrategyParams Params(StrategyKind kind) {
  StrategyParams p;
  p.kind = kind;
  switch (kind) {
    case StrategyKind::kTrimmedMean:
      p.trim_fraction_ppm = 200000;  // 6 updates: one trimmed at each end
      break;
    case StrategyKind::kFedAvgM:
      p.momentum_q16 = 1u << 15;  // 0.5
      break;
    case StrategyKind::kFedAdam:
      p.momentum_q16 = 58982;             // 0.9
      p.second_moment_decay_q16 = 64881;  // 0.99
      p.adam_step = 4u << 16;             // 4 master steps
      p.adam_tau = 1u << 16;              // 1 master step
      break;
    default:
      break;
  }
  return p;
}

// A store with version 1 and `rounds` rounds committed on it as the round
// manager commits them, under `params`, with `noise_scale` times a fixed
// pattern of noise per round (0: none).
class AuditTest : public ::testing::Test {
 protected:
  void SetUp() override {
    path_ = dir_.File("store.db");
    absl::StatusOr<std::unique_ptr<ModelStore>> opened = OpenSqliteModelStore(path_);
    ASSERT_TRUE(opened.ok()) << opened.status();
    store_ = std::move(*opened);
    v1::ModelVersion initial;
    initial.set_version(1);
    *initial.mutable_spec() = MakeSpec(kFeatures, kClasses);
    Head head = Head::Zeros(kFeatures, kClasses);
    for (size_t i = 0; i < head.weights.size(); ++i) {
      head.weights[i] = static_cast<int16_t>(i * 37 % 200) - 100;
    }
    StoreHead(head, &initial);
    ASSERT_TRUE(store_->PutInitialVersion(initial).ok());
  }

  // Commits round `round` on the latest version and returns the updates
  // it aggregated.
  std::vector<v1::Update> CommitRound(uint32_t round, const StrategyParams& params,
                                      int64_t noise_scale) {
    const v1::ModelVersion base = store_->LatestVersion().value().value();
    const Head base_head = LoadHead(base).value();
    const OptimizerState base_state =
        OptimizerStateFromProto(store_->AggregationStateOf(base.version()).value(), kValues)
            .value();
    EXPECT_TRUE(store_->OpenRound({round, base.version(), RoundState::kOpen, 1000 * round,
                                   1000 * round + 500, 0})
                    .ok());
    std::vector<v1::Update> updates;
    for (int i = 0; i < kUpdatesPerRound; ++i) {
      const std::string device = absl::StrCat("dev-", i);
      updates.push_back(MakeUpdate(base.spec(), round, device, "token-" + device, base.version(),
                                   10 + i, rng_, kMaxScale));
      store_->AppendUpdate({round, device, updates.back().SerializeAsString(), 1000 * round + i},
                           [](absl::Status s) { EXPECT_TRUE(s.ok()) << s; });
    }
    EXPECT_TRUE(store_->Flush().ok());
    std::vector<int64_t> noise;
    if (noise_scale != 0) {
      for (size_t j = 0; j < kValues; ++j) {
        noise.push_back(noise_scale * (static_cast<int64_t>(j % 7) - 3) * 65536);
      }
    }
    std::vector<const v1::Update*> set;
    for (const v1::Update& u : updates) set.push_back(&u);
    absl::StatusOr<RoundAggregate> aggregate =
        AggregateRound(params, base_head, base_state, set, noise);
    EXPECT_TRUE(aggregate.ok()) << aggregate.status();
    if (!aggregate.ok()) return updates;
    v1::ModelVersion next;
    next.set_version(base.version() + 1);
    next.set_parent_version(base.version());
    next.set_round(round);
    *next.mutable_spec() = base.spec();
    StoreHead(aggregate->next, &next);
    next.mutable_metrics()->set_participants(aggregate->participants);
    next.mutable_metrics()->set_samples(aggregate->samples);
    next.mutable_metrics()->set_mean_local_loss_q16(aggregate->mean_loss_q16);
    next.mutable_metrics()->set_capped_updates(aggregate->capped);
    next.mutable_metrics()->set_clipped_updates(aggregate->clipped);
    RecordStrategyParams(params, next.mutable_aggregation());
    next.mutable_aggregation()->set_trimmed(aggregate->trimmed);
    if (noise_scale != 0) next.mutable_aggregation()->set_noise_sigma(3 * 65536);
    v1::AggregationState state;
    OptimizerStateToProto(aggregate->state, &state);
    for (int64_t n : noise) state.add_noise(n);
    EXPECT_TRUE(store_->CommitRound(round, 1000 * round + 400, next, state).ok());
    return updates;
  }

  v1::VerifyVersionResponse Verify(uint32_t version) {
    absl::StatusOr<v1::VerifyVersionResponse> r = RecomputeVersion(*store_, version);
    EXPECT_TRUE(r.ok()) << r.status();
    return r.ok() ? *r : v1::VerifyVersionResponse();
  }

  TempDir dir_;
  std::string path_;
  std::unique_ptr<ModelStore> store_;
  std::mt19937 rng_{15};
};

struct StrategyCase {
  StrategyKind kind;
  int64_t noise_scale;
};

class AuditStrategyTest : public AuditTest,
                          public ::testing::WithParamInterface<StrategyCase> {};

// Two rounds, so that the second starts from the first's optimizer state:
// the stateful strategies match only when the parent's state is read.
TEST_P(AuditStrategyTest, EveryCommittedVersionRecomputesFromTheStore) {
  const StrategyParams params = Params(GetParam().kind);
  CommitRound(1, params, GetParam().noise_scale);
  CommitRound(2, params, GetParam().noise_scale);
  for (uint32_t version : {2u, 3u}) {
    SCOPED_TRACE(absl::StrCat("version ", version));
    const v1::VerifyVersionResponse r = Verify(version);
    EXPECT_TRUE(r.matches()) << r.ShortDebugString();
    EXPECT_EQ(r.version(), version);
    EXPECT_EQ(r.round(), version - 1);
    EXPECT_EQ(r.strategy(), StrategyName(GetParam().kind));
    EXPECT_EQ(r.updates(), static_cast<uint32_t>(kUpdatesPerRound));
    EXPECT_EQ(r.differing_values(), 0u);
    EXPECT_EQ(r.recomputed_checksum(), store_->GetVersion(version).value().checksum());
    EXPECT_EQ(r.committed_checksum(), r.recomputed_checksum());
  }
  // 0 is the latest.
  EXPECT_EQ(Verify(0).version(), 3u);
}

INSTANTIATE_TEST_SUITE_P(
    Strategies, AuditStrategyTest,
    ::testing::Values(StrategyCase{StrategyKind::kFedAvg, 0}, StrategyCase{StrategyKind::kFedAvg, 5},
                      StrategyCase{StrategyKind::kTrimmedMean, 0},
                      StrategyCase{StrategyKind::kMedian, 0},
                      StrategyCase{StrategyKind::kFedAvgM, 0},
                      StrategyCase{StrategyKind::kFedAdam, 0},
                      StrategyCase{StrategyKind::kFedAdam, 2}),
    [](const ::testing::TestParamInfo<StrategyCase>& info) {
      std::string name(StrategyName(info.param.kind));
      for (char& c : name) {
        if (c == '-') c = '_';
      }
      return info.param.noise_scale != 0 ? name + "_with_noise" : name;
    });

// The fedavg version the test committed is FedAvg by the independent
// reference too: the audit confirms a rule, not merely itself.
TEST_F(AuditTest, TheFedAvgVersionItConfirmsIsTheReferenceFedAvg) {
  const std::vector<v1::Update> updates = CommitRound(1, Params(StrategyKind::kFedAvg), 0);
  EXPECT_TRUE(testing::MatchesReferenceFedAvg(store_->GetVersion(2).value(),
                                              store_->GetVersion(1).value(), updates, 65536,
                                              testing::kNoBounds));
  EXPECT_TRUE(Verify(2).matches());
}

// One int8 value of one stored update changed, the update's checksum and
// the row's CRC made to fit: the store reads it without complaint, the
// recomputation differs in exactly that value (fedavg without bounds is
// per value, and the change of 127 or more int8 steps at a scale >= 1 and
// a weight share >= 10/75 moves the mean by 16 master steps or more, far
// beyond rounding).
TEST_F(AuditTest, AnAlteredStoredUpdateNoLongerMatches) {
  std::vector<v1::Update> updates = CommitRound(1, Params(StrategyKind::kFedAvg), 0);
  ASSERT_TRUE(Verify(2).matches());
  v1::Update altered = updates[2];
  std::string deltas = altered.weight_delta();
  ASSERT_GT(deltas.size(), 5u);
  deltas[5] = static_cast<int8_t>(deltas[5]) >= 0 ? static_cast<char>(-127) : static_cast<char>(127);
  altered.set_weight_delta(deltas);
  testing::FixChecksum(&altered);
  RewriteUpdate(path_, 1, "dev-2", altered.SerializeAsString(), /*fix_crc=*/true);
  ASSERT_TRUE(store_->RoundUpdates(1).ok());

  const v1::VerifyVersionResponse r = Verify(2);
  EXPECT_FALSE(r.matches());
  EXPECT_EQ(r.differing_values(), 1u);
  EXPECT_NE(r.recomputed_checksum(), r.committed_checksum());
  EXPECT_EQ(r.committed_checksum(), store_->GetVersion(2).value().checksum());
}

// The same change without the CRC made to fit is damage the store reports.
TEST_F(AuditTest, AnUpdateRowFailingItsCrcIsDataLoss) {
  std::vector<v1::Update> updates = CommitRound(1, Params(StrategyKind::kFedAvg), 0);
  v1::Update altered = updates[0];
  altered.set_sample_count(altered.sample_count() + 1);
  RewriteUpdate(path_, 1, "dev-0", altered.SerializeAsString(), /*fix_crc=*/false);
  EXPECT_EQ(RecomputeVersion(*store_, 2).status().code(), absl::StatusCode::kDataLoss);
}

// The stored noise is part of the evidence: a version noised in its round
// does not recompute without it.
TEST_F(AuditTest, TheStoredNoiseIsUsed) {
  CommitRound(1, Params(StrategyKind::kFedAvg), 5);
  ASSERT_TRUE(Verify(2).matches());
  // The version's state row removed (it then reads as empty: no noise).
  testing::ExecSql(path_, "DELETE FROM aggregation_state WHERE version = 2");
  const v1::VerifyVersionResponse r = Verify(2);
  EXPECT_FALSE(r.matches());
  EXPECT_GT(r.differing_values(), 0u);
}

// An evaluation-only report stored among the round's rows (sample count
// 0) is not part of the aggregate.
TEST_F(AuditTest, RowsWithoutSamplesAreLeftOut) {
  const StrategyParams params = Params(StrategyKind::kMedian);
  const v1::ModelVersion base = store_->LatestVersion().value().value();
  std::vector<v1::Update> updates;
  ASSERT_TRUE(store_->OpenRound({1, 1, RoundState::kOpen, 1000, 1500, 0}).ok());
  for (int i = 0; i < 3; ++i) {
    const std::string device = absl::StrCat("dev-", i);
    updates.push_back(MakeUpdate(base.spec(), 1, device, "t-" + device, 1, 10, rng_, kMaxScale));
    store_->AppendUpdate({1, device, updates.back().SerializeAsString(), 1000},
                         [](absl::Status s) { EXPECT_TRUE(s.ok()) << s; });
  }
  v1::Update evaluation_only =
      MakeUpdate(base.spec(), 1, "dev-eval", "t-eval", 1, 10, rng_, kMaxScale);
  evaluation_only.set_sample_count(0);
  store_->AppendUpdate({1, "dev-eval", evaluation_only.SerializeAsString(), 1000},
                       [](absl::Status s) { EXPECT_TRUE(s.ok()) << s; });
  ASSERT_TRUE(store_->Flush().ok());
  std::vector<const v1::Update*> set;
  for (const v1::Update& u : updates) set.push_back(&u);
  const RoundAggregate aggregate =
      AggregateRound(params, LoadHead(base).value(), OptimizerState(), set, {}).value();
  v1::ModelVersion next;
  next.set_version(2);
  next.set_parent_version(1);
  next.set_round(1);
  *next.mutable_spec() = base.spec();
  StoreHead(aggregate.next, &next);
  RecordStrategyParams(params, next.mutable_aggregation());
  ASSERT_TRUE(store_->CommitRound(1, 1400, next, v1::AggregationState()).ok());
  const v1::VerifyVersionResponse r = Verify(2);
  EXPECT_TRUE(r.matches()) << r.ShortDebugString();
  EXPECT_EQ(r.updates(), 3u);
}

TEST_F(AuditTest, VersionsNoRoundTrainedAreRefused) {
  const absl::StatusOr<v1::VerifyVersionResponse> initial = RecomputeVersion(*store_, 1);
  EXPECT_EQ(initial.status().code(), absl::StatusCode::kFailedPrecondition) << initial.status();
  EXPECT_NE(initial.status().message().find("not trained in a round"), std::string::npos)
      << initial.status();
  // A rollback's copy aggregates nothing either.
  CommitRound(1, Params(StrategyKind::kFedAvg), 0);
  v1::ModelVersion copy = store_->GetVersion(1).value();
  copy.clear_rollout();
  copy.set_version(3);
  copy.set_parent_version(2);
  copy.set_restored_from(1);
  ASSERT_TRUE(store_->CommitRestoredVersion(0, 0, copy, AuditEntry{0, 2000, "t", "rollback", ""})
                  .ok());
  const absl::StatusOr<v1::VerifyVersionResponse> restored = RecomputeVersion(*store_, 3);
  EXPECT_EQ(restored.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_NE(restored.status().message().find("rollback's copy"), std::string::npos)
      << restored.status();
  EXPECT_EQ(RecomputeVersion(*store_, 0).status().code(), absl::StatusCode::kFailedPrecondition);
}

// A version committed without an Aggregation record (before schema 7)
// cannot be recomputed: its bounds are not in the store.
TEST_F(AuditTest, AVersionWithoutAnAggregationRecordIsRefused) {
  CommitRound(1, Params(StrategyKind::kFedAvg), 0);
  ASSERT_TRUE(store_->OpenRound({2, 2, RoundState::kOpen, 3000, 3500, 0}).ok());
  v1::ModelVersion old = store_->GetVersion(2).value();
  old.clear_rollout();
  old.clear_aggregation();
  old.set_version(3);
  old.set_parent_version(2);
  old.set_round(2);
  ASSERT_TRUE(store_->CommitRound(2, 3400, old).ok());
  const absl::StatusOr<v1::VerifyVersionResponse> r = RecomputeVersion(*store_, 3);
  EXPECT_EQ(r.status().code(), absl::StatusCode::kFailedPrecondition) << r.status();
  EXPECT_NE(r.status().message().find("records no aggregation"), std::string::npos)
      << r.status();
}

TEST_F(AuditTest, UnknownVersionsAreNotFound) {
  EXPECT_EQ(RecomputeVersion(*store_, 2).status().code(), absl::StatusCode::kNotFound);
  TempDir empty_dir;
  std::unique_ptr<ModelStore> empty = OpenSqliteModelStore(empty_dir.File("e.db")).value();
  EXPECT_EQ(RecomputeVersion(*empty, 0).status().code(), absl::StatusCode::kNotFound);
}

}  // namespace
}  // namespace tinyfed::server
