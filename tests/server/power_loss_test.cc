// Durability under power loss, tested the way LevelDB's fault-injection
// Env tests it: whatever the store wrote and did not sync is gone.
//
// One workload runs a RoundManager on the SQLite store, in simulated time,
// under PowerLossVfs (power_loss_vfs.h): devices check in and submit at
// once (so appends are group-committed), rounds commit at K, one round is
// abandoned at its deadline and one commits there, an operator's
// connection checkpoints the WAL, and the server shuts down and resumes a
// round half-way. The VFS logs every write, truncate, sync and delete of
// the store's files, and the fleet logs every submission, task handed out
// and acknowledgement, in one sequence.
//
// Then, for each chosen loss point, the files as a power loss there would
// leave them are written to a fresh directory and opened with the normal
// store, and:
// - every update acknowledged before the point is stored in its round,
//   bit for bit, and every task handed out is recorded;
// - every stored update was submitted before the point (nothing appears
//   from nowhere, nothing twice: the store keys updates by round and
//   device);
// - the lineage is whole (version v has parent v-1, each committed round
//   made exactly one version, rounds trained the version they should) and
//   every version equals the reference FedAvg (reference_fedavg.h) of its
//   round's stored updates on its parent, so each update counts once;
// - RoundManager::Create resumes on it, and the resumed round takes new
//   updates and closes into a version equal to the reference FedAvg of all
//   its stored updates (or is abandoned when it has fewer than M).
//
// Loss points: right after every acknowledgement and task hand-out (so
// before the next sync), right before and right after every sync and
// delete, and random points, at least kMinLossPoints in all. Points with
// no sync or delete between them leave the same files, so they share one
// reopening; each is still checked against its own acknowledgements.
//
// Why this bites: with synchronous=OFF or NORMAL nothing syncs the WAL
// before an acknowledgement, and with an acknowledgement sent before the
// batch's COMMIT the sync comes after it; either way the loss point right
// after the first acknowledgement loses it, whatever the thread timing.
#include <gtest/gtest.h>
#include <sqlite3.h>

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <future>
#include <iostream>
#include <latch>
#include <map>
#include <memory>
#include <mutex>
#include <random>
#include <set>
#include <string>
#include <tuple>
#include <vector>

#include "absl/strings/str_cat.h"
#include "model_store.h"
#include "power_loss_vfs.h"
#include "reference_fedavg.h"
#include "round_manager.h"
#include "server_config.h"
#include "server_test_support.h"
#include "spdlog/spdlog.h"

namespace tinyfed::server {
namespace {

using testing::DurableImage;
using testing::PowerLossVfs;
using testing::VfsEvent;

constexpr uint32_t kTarget = 6;       // K: a round commits at this many updates
constexpr uint32_t kMinimum = 2;      // M: the deadline commits from this many
constexpr int64_t kDeadlineMs = 60'000;
constexpr int kFleetSize = 10;
// 0.75 is exact in Q16.16: the reference gets the same factor as the server.
constexpr uint32_t kServerLrQ16 = 49152;
constexpr size_t kMinLossPoints = 1000;
// The workload's length: half as many events again as loss points, so
// that the random points are not simply all of them.
constexpr size_t kMinLogEvents = 1500;
constexpr int kMaxRounds = 60;
constexpr size_t kRandomLossPoints = 300;
constexpr int kMaxReportedPoints = 8;  // failing points described in full

v1::ServerConfig Config() {
  v1::ServerConfig c;
  c.mutable_head()->set_feature_count(16);
  c.mutable_head()->set_class_count(4);
  c.mutable_policy()->set_target_updates(kTarget);
  c.mutable_policy()->set_min_updates(kMinimum);
  c.mutable_policy()->set_over_selection(1.5);  // 9 tasks: room for late devices
  c.mutable_policy()->set_round_deadline_ms(kDeadlineMs);
  c.mutable_policy()->set_retry_after_ms(100);
  c.mutable_policy()->set_server_learning_rate(0.75);
  ApplyDefaults(&c);
  return c;
}

// What a mark in the VFS's log stands for; its tag is the index in a
// vector of these.
struct Mark {
  enum class Kind { kSubmitted, kAcked, kTaskGiven };
  Kind kind;
  uint32_t round;
  std::string device;
  std::string bytes;  // the update's serialized bytes, or the task token
};

// Plays devices against a RoundManager and writes what they see into the
// VFS's log. The answers arrive on the store's writer thread.
class Fleet {
 public:
  Fleet(PowerLossVfs* vfs, std::vector<Mark>* marks) : vfs_(vfs), marks_(marks) {}

  void Note(Mark mark) {
    std::lock_guard<std::mutex> lock(mu_);
    marks_->push_back(std::move(mark));
    vfs_->Mark(marks_->size() - 1);
  }

  // The next `count` devices of the fleet check in at once; each must get
  // a task. Returns them with their tasks.
  std::vector<std::pair<std::string, v1::RoundTask>> CheckIn(RoundManager& m, int count) {
    std::vector<std::string> ids;
    for (int i = 0; i < count; ++i) {
      ids.push_back(absl::StrCat("sensor-", next_device_++ % kFleetSize));
    }
    std::vector<absl::StatusOr<v1::CheckInResponse>> results(ids.size());
    std::latch answered(static_cast<std::ptrdiff_t>(ids.size()));
    for (size_t i = 0; i < ids.size(); ++i) {
      v1::CheckInRequest request;
      request.set_device_id(ids[i]);
      m.CheckIn(request, [&, i](absl::StatusOr<v1::CheckInResponse> r) {
        if (r.ok() && r->has_task()) {
          Note({Mark::Kind::kTaskGiven, r->task().round(), ids[i], r->task().task_token()});
        }
        results[i] = std::move(r);
        answered.count_down();
      });
    }
    answered.wait();
    std::vector<std::pair<std::string, v1::RoundTask>> tasks;
    for (size_t i = 0; i < ids.size(); ++i) {
      EXPECT_TRUE(results[i].ok() && results[i]->has_task())
          << ids[i] << ": "
          << (results[i].ok() ? results[i]->ShortDebugString() : results[i].status().ToString());
      if (results[i].ok() && results[i]->has_task()) tasks.emplace_back(ids[i], results[i]->task());
    }
    return tasks;
  }

  // Submits `updates` at once and waits for every answer; each must be an
  // acknowledgement.
  void Submit(RoundManager& m, const std::vector<v1::Update>& updates) {
    std::vector<absl::StatusOr<v1::UpdateAck>> results(updates.size());
    std::latch answered(static_cast<std::ptrdiff_t>(updates.size()));
    for (size_t i = 0; i < updates.size(); ++i) {
      const v1::Update& u = updates[i];
      Note({Mark::Kind::kSubmitted, u.round(), u.device_id(), u.SerializeAsString()});
      m.SubmitUpdate(u, [&, i](absl::StatusOr<v1::UpdateAck> r) {
        if (r.ok()) {
          const v1::Update& acked = updates[i];
          Note({Mark::Kind::kAcked, acked.round(), acked.device_id(), acked.SerializeAsString()});
        }
        results[i] = std::move(r);
        answered.count_down();
      });
    }
    answered.wait();
    for (size_t i = 0; i < updates.size(); ++i) {
      EXPECT_TRUE(results[i].ok()) << updates[i].device_id() << ": " << results[i].status();
    }
  }

  // `count` devices check in, train and submit at once; returns their
  // updates.
  std::vector<v1::Update> Play(RoundManager& m, int count) {
    std::vector<v1::Update> updates;
    for (const auto& [device, task] : CheckIn(m, count)) {
      updates.push_back(testing::MakeUpdate(task.model().spec(), task.round(), device,
                                            task.task_token(), task.model().version(),
                                            1 + rng_() % 40, rng_, 60));
    }
    Submit(m, updates);
    return updates;
  }

 private:
  PowerLossVfs* vfs_;
  std::mutex mu_;
  std::vector<Mark>* marks_;  // guarded by mu_ while the workload runs
  int next_device_ = 0;
  std::mt19937 rng_{2026};
};

// The server's view after the round-closing thread is done.
void ExpectState(RoundManager& m, uint32_t round, uint32_t version, uint32_t accepted) {
  m.WaitIdle();
  const RoundSnapshot s = m.Snapshot();
  EXPECT_EQ(s.round, round);
  EXPECT_TRUE(s.open);
  EXPECT_EQ(s.latest_version, version);
  EXPECT_EQ(s.accepted, accepted);
}

absl::StatusOr<std::unique_ptr<RoundManager>> StartServer(const v1::ServerConfig& config,
                                                          ModelStore* store,
                                                          const FakeClock* clock) {
  absl::StatusOr<v1::ModelVersion> initial = InitialModel(config, clock->NowMs());
  if (!initial.ok()) return initial.status();
  return RoundManager::Create(config, *initial, store, clock);
}

// The workload whose log the loss points cut. Leaves the store closed.
void RunWorkload(const std::string& db, PowerLossVfs* vfs, FakeClock* clock,
                 std::vector<Mark>* marks) {
  const v1::ServerConfig config = Config();
  Fleet fleet(vfs, marks);
  auto store = OpenSqliteModelStore(db);
  ASSERT_TRUE(store.ok()) << store.status();
  auto manager = StartServer(config, store->get(), clock);
  ASSERT_TRUE(manager.ok()) << manager.status();
  RoundManager* m = manager->get();

  uint32_t version = 1;
  uint32_t round = 1;
  for (; round <= 3; ++round) {
    fleet.Play(*m, kTarget);
    ExpectState(*m, round + 1, ++version, 0);
    clock->AdvanceMs(1000);
  }
  // Round 4 gets one update, below M: abandoned at its deadline.
  fleet.Play(*m, 1);
  clock->AdvanceMs(kDeadlineMs + 1);
  m->Tick();
  ExpectState(*m, ++round, version, 0);
  // Round 5 commits; then an operator's tool checkpoints the WAL into the
  // database file and empties it, so writing restarts at its beginning.
  fleet.Play(*m, kTarget);
  ExpectState(*m, ++round, ++version, 0);
  testing::ExecSql(db, "PRAGMA wal_checkpoint(TRUNCATE)");
  // Round 6: half the updates, then a clean shutdown (which checkpoints
  // and deletes the WAL) and a restart that resumes the round.
  std::vector<v1::Update> first_half = fleet.Play(*m, kTarget / 2);
  ExpectState(*m, round, version, kTarget / 2);
  manager->reset();
  store->reset();
  store = OpenSqliteModelStore(db);
  ASSERT_TRUE(store.ok()) << store.status();
  manager = StartServer(config, store->get(), clock);
  ASSERT_TRUE(manager.ok()) << manager.status();
  m = manager->get();
  ExpectState(*m, round, version, kTarget / 2);
  // A device whose acknowledgement was lost sends the same bytes again.
  ASSERT_FALSE(first_half.empty());
  fleet.Submit(*m, {first_half.front()});
  fleet.Play(*m, kTarget - kTarget / 2);
  ExpectState(*m, ++round, ++version, 0);
  // How many events a round logs depends on how the appends happen to be
  // batched, so rounds go on until the log is long enough to cut.
  for (int i = 0; i < kMaxRounds && (i < 16 || vfs->LogSize() < kMinLogEvents); ++i) {
    clock->AdvanceMs(1000);
    fleet.Play(*m, kTarget);
    ExpectState(*m, ++round, ++version, 0);
  }
  // A round that commits at its deadline with fewer than K updates.
  fleet.Play(*m, kMinimum + 1);
  clock->AdvanceMs(kDeadlineMs + 1);
  m->Tick();
  ExpectState(*m, ++round, ++version, 0);
  // The last round stays open with two updates, through a clean shutdown.
  fleet.Play(*m, 2);
  ExpectState(*m, round, version, 2);
  manager->reset();
  store->reset();
}

struct RoundRow {
  uint32_t round = 0;
  uint32_t base_version = 0;
  int64_t state = 0;
};

// The rounds table, read from a connection of the test's own.
absl::StatusOr<std::vector<RoundRow>> ReadRounds(const std::string& db) {
  sqlite3* raw = nullptr;
  int rc = sqlite3_open_v2(db.c_str(), &raw, SQLITE_OPEN_READWRITE, nullptr);
  std::unique_ptr<sqlite3, int (*)(sqlite3*)> conn(raw, &sqlite3_close);
  if (rc != SQLITE_OK) return absl::UnavailableError(sqlite3_errstr(rc));
  sqlite3_stmt* stmt = nullptr;
  rc = sqlite3_prepare_v2(raw, "SELECT round, base_version, state FROM rounds ORDER BY round", -1,
                          &stmt, nullptr);
  if (rc != SQLITE_OK) return absl::UnavailableError(sqlite3_errmsg(raw));
  std::vector<RoundRow> rows;
  while ((rc = sqlite3_step(stmt)) == SQLITE_ROW) {
    rows.push_back(RoundRow{static_cast<uint32_t>(sqlite3_column_int64(stmt, 0)),
                            static_cast<uint32_t>(sqlite3_column_int64(stmt, 1)),
                            sqlite3_column_int64(stmt, 2)});
  }
  sqlite3_finalize(stmt);
  if (rc != SQLITE_DONE) return absl::UnavailableError(sqlite3_errmsg(raw));
  return rows;
}

// A store's contents after reopening.
struct Recovered {
  std::vector<v1::ModelVersion> versions;  // versions[i] is version i + 1
  std::vector<RoundRow> rounds;
  // round -> device -> serialized update (re-serialized after parsing, so
  // that it compares with what the device sent) or task token
  std::map<uint32_t, std::map<std::string, std::string>> updates;
  std::map<uint32_t, std::map<std::string, std::string>> tasks;
};

// Reads everything back; a problem is appended when something cannot be.
bool ReadBack(ModelStore& store, const std::string& db, Recovered* out,
              std::vector<std::string>* problems) {
  auto latest = store.LatestVersion();
  if (!latest.ok()) {
    problems->push_back(absl::StrCat("reading the latest version: ", latest.status().ToString()));
    return false;
  }
  const uint32_t count = latest->has_value() ? (*latest)->version() : 0;
  for (uint32_t v = 1; v <= count; ++v) {
    auto model = store.GetVersion(v);
    if (!model.ok()) {
      problems->push_back(absl::StrCat("reading version ", v, ": ", model.status().ToString()));
      return false;
    }
    out->versions.push_back(*model);
  }
  auto rounds = ReadRounds(db);
  if (!rounds.ok()) {
    problems->push_back(absl::StrCat("reading the rounds: ", rounds.status().ToString()));
    return false;
  }
  out->rounds = *rounds;
  for (const RoundRow& row : out->rounds) {
    auto updates = store.RoundUpdates(row.round);
    auto tasks = store.RoundTasks(row.round);
    if (!updates.ok() || !tasks.ok()) {
      problems->push_back(absl::StrCat("reading round ", row.round, ": ",
                                       updates.status().ToString(), " ",
                                       tasks.status().ToString()));
      return false;
    }
    for (const StoredUpdate& u : *updates) {
      v1::Update parsed;
      if (!parsed.ParseFromString(u.payload) || parsed.device_id() != u.device_id ||
          parsed.round() != row.round || parsed.base_version() != row.base_version) {
        problems->push_back(absl::StrCat("round ", row.round, ": the stored update of ",
                                         u.device_id, " is not that device's update for it"));
        continue;
      }
      out->updates[row.round][u.device_id] = parsed.SerializeAsString();
    }
    for (const TaskRecord& t : *tasks) out->tasks[row.round][t.device_id] = t.token;
  }
  return true;
}

std::vector<v1::Update> Parsed(const std::map<std::string, std::string>& updates) {
  std::vector<v1::Update> out;
  for (const auto& [device, bytes] : updates) {
    out.emplace_back();
    out.back().ParseFromString(bytes);
  }
  return out;
}

// Lineage and aggregates: what must hold of any state the store recovers.
void CheckLineage(const Recovered& r, std::vector<std::string>* problems) {
  for (size_t i = 0; i < r.versions.size(); ++i) {
    const v1::ModelVersion& v = r.versions[i];
    const uint32_t parent = static_cast<uint32_t>(i);
    if (v.version() != i + 1 || v.parent_version() != parent || (i == 0 && v.round() != 0)) {
      problems->push_back(absl::StrCat("version ", i + 1, " is stored as version ", v.version(),
                                       " with parent ", v.parent_version(), " and round ",
                                       v.round()));
    }
  }
  if (r.versions.empty() && !r.rounds.empty()) {
    problems->push_back("rounds exist but no model version");
  }
  // Walking the rounds in order: each trains the latest version so far,
  // and each committed one made the next version.
  uint32_t latest = 1;
  for (size_t i = 0; i < r.rounds.size(); ++i) {
    const RoundRow& row = r.rounds[i];
    if (row.round != i + 1) {
      problems->push_back(absl::StrCat("round ", i + 1, " is missing (found ", row.round, ")"));
      return;
    }
    if (row.base_version != latest) {
      problems->push_back(absl::StrCat("round ", row.round, " trains version ", row.base_version,
                                       " but the latest before it is ", latest));
    }
    if (row.state == static_cast<int64_t>(RoundState::kOpen) && i + 1 != r.rounds.size()) {
      problems->push_back(absl::StrCat("round ", row.round, " is open but not the last"));
    }
    if (row.state != static_cast<int64_t>(RoundState::kCommitted)) continue;
    if (latest >= r.versions.size() || r.versions[latest].round() != row.round) {
      problems->push_back(absl::StrCat("committed round ", row.round, " made no version ",
                                       latest + 1));
      continue;
    }
    auto it = r.updates.find(row.round);
    const std::vector<v1::Update> updates =
        it == r.updates.end() ? std::vector<v1::Update>() : Parsed(it->second);
    ::testing::AssertionResult same = testing::MatchesReferenceFedAvg(
        r.versions[latest], r.versions[latest - 1], updates, kServerLrQ16);
    if (!same) problems->push_back(same.message());
    ++latest;
  }
  if (!r.versions.empty() && latest != r.versions.size()) {
    problems->push_back(absl::StrCat(r.versions.size(), " versions but only ", latest - 1,
                                     " committed rounds"));
  }
}

// Resumes a server on the recovered store, lets two late devices take part
// and closes the round: it must commit the reference FedAvg of all its
// stored updates, each once, or be abandoned below M.
void CheckResume(ModelStore& store, const std::string& db, const Recovered& r, int64_t now_ms,
                 std::vector<std::string>* problems) {
  const v1::ServerConfig config = Config();
  FakeClock clock(now_ms);
  auto manager = StartServer(config, &store, &clock);
  if (!manager.ok()) {
    problems->push_back(absl::StrCat("RoundManager::Create: ", manager.status().ToString()));
    return;
  }
  RoundManager& m = **manager;
  const uint32_t base = r.versions.empty() ? 1 : static_cast<uint32_t>(r.versions.size());
  const bool resumes =
      !r.rounds.empty() && r.rounds.back().state == static_cast<int64_t>(RoundState::kOpen);
  const uint32_t round = resumes ? r.rounds.back().round : static_cast<uint32_t>(r.rounds.size()) + 1;
  size_t stored = 0;
  if (resumes && r.updates.count(round)) stored = r.updates.at(round).size();

  std::mt19937 rng(round);
  size_t late_acks = 0;
  if (stored < kTarget) {  // else Create() has already begun to close it
    const RoundSnapshot s = m.Snapshot();
    if (s.round != round || !s.open || s.base_version != base || s.accepted != stored) {
      problems->push_back(absl::StrCat("resumed as round ", s.round, " on version ",
                                       s.base_version, " with ", s.accepted,
                                       " updates; expected round ", round, " on version ", base,
                                       " with ", stored));
      return;
    }
    // Until the round closes: a late update may complete K.
    for (int i = 0; i < 2 && m.Snapshot().open && m.Snapshot().round == round; ++i) {
      v1::CheckInRequest request;
      request.set_device_id(absl::StrCat("late-", i));
      std::promise<absl::StatusOr<v1::CheckInResponse>> checked_in;
      m.CheckIn(request, [&](absl::StatusOr<v1::CheckInResponse> a) {
        checked_in.set_value(std::move(a));
      });
      absl::StatusOr<v1::CheckInResponse> task = checked_in.get_future().get();
      if (!task.ok() || !task->has_task()) continue;  // the round is full of tasks
      const v1::Update update = testing::MakeUpdate(
          task->task().model().spec(), round, request.device_id(), task->task().task_token(),
          base, 1 + rng() % 40, rng, 60);
      std::promise<absl::StatusOr<v1::UpdateAck>> acked;
      m.SubmitUpdate(update, [&](absl::StatusOr<v1::UpdateAck> a) { acked.set_value(a); });
      absl::StatusOr<v1::UpdateAck> ack = acked.get_future().get();
      if (!ack.ok()) {
        problems->push_back(absl::StrCat("a late update after resuming: ", ack.status().ToString()));
        return;
      }
      ++late_acks;
    }
  }
  m.WaitIdle();
  if (m.Snapshot().round == round) {
    // A full round length reaches any deadline a resumed round can have.
    clock.AdvanceMs(kDeadlineMs + 1);
    m.Tick();
    m.WaitIdle();
  }
  const RoundSnapshot after = m.Snapshot();
  manager->reset();

  auto updates = store.RoundUpdates(round);
  auto latest = store.LatestVersion();
  auto rounds = ReadRounds(db);
  if (!updates.ok() || !latest.ok() || !latest->has_value() || !rounds.ok() ||
      rounds->size() != round + 1) {
    problems->push_back("reading the store after the resumed round closed");
    return;
  }
  if (updates->size() != stored + late_acks) {
    problems->push_back(absl::StrCat("the resumed round holds ", updates->size(),
                                     " updates; expected ", stored, " + ", late_acks, " late"));
  }
  const bool commits = updates->size() >= kMinimum;
  const uint32_t expected_version = commits ? base + 1 : base;
  const int64_t state = static_cast<int64_t>(commits ? RoundState::kCommitted : RoundState::kAbandoned);
  if ((*latest)->version() != expected_version || (*rounds)[round - 1].state != state ||
      after.round != round + 1 || !after.open || after.latest_version != expected_version) {
    problems->push_back(absl::StrCat("after closing resumed round ", round, " with ",
                                     updates->size(), " updates: latest version ",
                                     (*latest)->version(), ", round state ",
                                     (*rounds)[round - 1].state, ", open round ", after.round,
                                     "; expected version ", expected_version, ", state ", state,
                                     ", round ", round + 1));
    return;
  }
  if (!commits) return;
  std::vector<v1::Update> parsed;
  for (const StoredUpdate& u : *updates) {
    parsed.emplace_back();
    parsed.back().ParseFromString(u.payload);
  }
  auto parent = store.GetVersion(base);
  if (!parent.ok()) {
    problems->push_back(absl::StrCat("reading version ", base, ": ", parent.status().ToString()));
    return;
  }
  ::testing::AssertionResult same =
      testing::MatchesReferenceFedAvg(**latest, *parent, parsed, kServerLrQ16);
  if (!same) problems->push_back(absl::StrCat("the resumed round: ", same.message()));
}

// What the fleet had seen up to a loss point.
struct Seen {
  std::vector<const Mark*> acked;
  std::vector<const Mark*> tasks_given;
  std::set<std::tuple<uint32_t, std::string, std::string>> submitted;

  void Add(const Mark& mark) {
    switch (mark.kind) {
      case Mark::Kind::kSubmitted:
        submitted.emplace(mark.round, mark.device, mark.bytes);
        break;
      case Mark::Kind::kAcked:
        acked.push_back(&mark);
        break;
      case Mark::Kind::kTaskGiven:
        tasks_given.push_back(&mark);
        break;
    }
  }
};

// What must hold at one loss point besides the image's own consistency:
// nothing acknowledged is missing and nothing stored is unexplained.
std::vector<std::string> CheckAcknowledged(const Recovered& r, const Seen& seen) {
  std::vector<std::string> problems;
  auto stored = [](const std::map<uint32_t, std::map<std::string, std::string>>& by_round,
                   const Mark& mark) -> const std::string* {
    auto round = by_round.find(mark.round);
    if (round == by_round.end()) return nullptr;
    auto device = round->second.find(mark.device);
    return device == round->second.end() ? nullptr : &device->second;
  };
  for (const Mark* ack : seen.acked) {
    const std::string* bytes = stored(r.updates, *ack);
    if (bytes == nullptr) {
      problems.push_back(absl::StrCat("the acknowledged update of ", ack->device, " in round ",
                                      ack->round, " is lost"));
    } else if (*bytes != ack->bytes) {
      problems.push_back(absl::StrCat("the acknowledged update of ", ack->device, " in round ",
                                      ack->round, " is stored with other bytes"));
    }
  }
  for (const Mark* task : seen.tasks_given) {
    const std::string* token = stored(r.tasks, *task);
    if (token == nullptr || *token != task->bytes) {
      problems.push_back(absl::StrCat("the task handed to ", task->device, " in round ",
                                      task->round, " is lost"));
    }
  }
  for (const auto& [round, devices] : r.updates) {
    for (const auto& [device, bytes] : devices) {
      if (!seen.submitted.count({round, device, bytes})) {
        problems.push_back(absl::StrCat("round ", round, " holds an update of ", device,
                                        " that was not submitted before the loss"));
      }
    }
  }
  return problems;
}

// How many acknowledged updates the image lacks (for the summary).
size_t LostUpdates(const Recovered& r, const Seen& seen) {
  size_t lost = 0;
  for (const Mark* ack : seen.acked) {
    auto round = r.updates.find(ack->round);
    if (round == r.updates.end() || !round->second.count(ack->device)) ++lost;
  }
  return lost;
}

std::string Describe(const VfsEvent& event, const std::vector<Mark>& marks) {
  switch (event.kind) {
    case VfsEvent::Kind::kWrite:
      return absl::StrCat("write of ", event.data.size(), " bytes at ", event.offset, " of ",
                          event.file);
    case VfsEvent::Kind::kTruncate:
      return absl::StrCat("truncate of ", event.file, " to ", event.offset);
    case VfsEvent::Kind::kSync:
      return absl::StrCat("sync of ", event.file);
    case VfsEvent::Kind::kDelete:
      return absl::StrCat("delete of ", event.file);
    case VfsEvent::Kind::kMark: {
      const Mark& mark = marks[event.tag];
      const char* what = mark.kind == Mark::Kind::kSubmitted ? "submission"
                         : mark.kind == Mark::Kind::kAcked   ? "acknowledgement"
                                                             : "task";
      return absl::StrCat(what, " of ", mark.device, " in round ", mark.round);
    }
  }
  return "?";
}

TEST(PowerLossTest, AcknowledgedUpdatesSurviveEveryLossPointAndCountOnce) {
  const auto started = std::chrono::steady_clock::now();
  // Hundreds of reopenings would each log their rounds.
  const spdlog::level::level_enum log_level = spdlog::get_level();
  spdlog::set_level(spdlog::level::err);
  testing::TempDir work;
  testing::TempDir scratch;
  FakeClock clock;
  std::vector<Mark> marks;
  PowerLossVfs vfs(work.path());
  ASSERT_NO_FATAL_FAILURE(RunWorkload(work.File("store.db"), &vfs, &clock, &marks));
  ASSERT_FALSE(::testing::Test::HasFailure()) << "the workload itself went wrong";
  const std::vector<VfsEvent> log = vfs.Log();
  ASSERT_GE(log.size() + 1, kMinLossPoints) << "too short a workload to cut at that many points";

  // changes[p]: the syncs and deletes among the first p events; points
  // with the same count leave the same files.
  std::vector<size_t> changes(log.size() + 1, 0);
  std::set<size_t> points;
  size_t acks = 0, tasks = 0, syncs = 0, deletes = 0;
  for (size_t i = 0; i < log.size(); ++i) {
    changes[i + 1] = changes[i] + (ChangesDurableImage(log[i]) ? 1 : 0);
    if (log[i].kind == VfsEvent::Kind::kMark) {
      const Mark& mark = marks[log[i].tag];
      if (mark.kind == Mark::Kind::kSubmitted) continue;
      (mark.kind == Mark::Kind::kAcked ? acks : tasks) += 1;
      points.insert(i + 1);
    } else if (ChangesDurableImage(log[i])) {
      (log[i].kind == VfsEvent::Kind::kSync ? syncs : deletes) += 1;
      points.insert(i);
      points.insert(i + 1);
    }
  }
  // Every interval between two syncs or deletes thus has its first and
  // its last point checked. Within one, the files are the same; a later
  // point only adds acknowledgements to find and an earlier one only
  // removes submissions that could explain a stored update, so no point in
  // between can fail where those two pass. The random points are cheap
  // extra cover for the reasoning above.
  std::mt19937_64 rng(20260311);
  std::uniform_int_distribution<size_t> anywhere(0, log.size());
  for (size_t n = 0; n < kRandomLossPoints; ++n) points.insert(anywhere(rng));
  while (points.size() < kMinLossPoints) points.insert(anywhere(rng));
  ASSERT_GT(acks, 0u);

  DurableImage image(&log);
  Seen seen;
  size_t absorbed = 0;  // log events whose marks are in `seen`
  size_t images = 0, failing = 0, lost_update_points = 0, ack_checks = 0;
  const std::vector<size_t> ordered(points.begin(), points.end());
  for (size_t begin = 0; begin < ordered.size();) {
    size_t end = begin + 1;
    while (end < ordered.size() && changes[ordered[end]] == changes[ordered[begin]]) ++end;
    ++images;
    image.AdvanceTo(ordered[begin]);
    const std::string dir = scratch.File(absl::StrCat("loss-", ordered[begin]));
    std::filesystem::create_directory(dir);

    std::vector<std::string> image_problems;
    Recovered recovered;
    bool read = false;
    if (!image.WriteTo(dir)) {
      image_problems.push_back("cannot write the image");
    } else {
      auto store = OpenSqliteModelStore(dir + "/store.db");
      if (!store.ok()) {
        image_problems.push_back(absl::StrCat("reopening: ", store.status().ToString()));
      } else if ((read = ReadBack(**store, dir + "/store.db", &recovered, &image_problems))) {
        CheckLineage(recovered, &image_problems);
        CheckResume(**store, dir + "/store.db", recovered, clock.NowMs() + 1, &image_problems);
      }
    }
    std::filesystem::remove_all(dir);

    for (size_t k = begin; k < end; ++k) {
      const size_t point = ordered[k];
      for (; absorbed < point; ++absorbed) {
        if (log[absorbed].kind == VfsEvent::Kind::kMark) seen.Add(marks[log[absorbed].tag]);
      }
      std::vector<std::string> problems = image_problems;
      if (read) {
        const size_t lost = LostUpdates(recovered, seen);
        lost_update_points += lost > 0 ? 1 : 0;
        for (std::string& p : CheckAcknowledged(recovered, seen)) problems.push_back(std::move(p));
        ack_checks += seen.acked.size();
      }
      if (problems.empty()) continue;
      if (++failing <= kMaxReportedPoints) {
        std::string text;
        for (size_t i = 0; i < problems.size() && i < 4; ++i) text += "\n  " + problems[i];
        if (problems.size() > 4) absl::StrAppend(&text, "\n  (", problems.size() - 4, " more)");
        ADD_FAILURE() << "power loss at point " << point << " of " << log.size() << " (after the "
                      << (point == 0 ? std::string("start") : Describe(log[point - 1], marks))
                      << "; " << seen.acked.size() << " updates acknowledged):" << text;
      }
    }
    begin = end;
  }
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
  std::cout << "power loss: " << ordered.size() << " loss points, " << images
            << " distinct images reopened, over " << log.size() << " logged events (" << syncs
            << " syncs, " << deletes << " deletes); " << acks << " update acknowledgements and "
            << tasks << " task hand-outs, each followed by a loss point; " << ack_checks
            << " acknowledged-update checks; " << failing << " points failed, "
            << lost_update_points << " of them losing an acknowledged update; " << seconds
            << " s\n";
  EXPECT_EQ(failing, 0u) << "of " << ordered.size() << " loss points";
  spdlog::set_level(log_level);
}

// The store's own synchronous write and its task appends, cut right after
// each returned: a revocation whose RevokeDevice returned OK, and a task's
// declared sample count whose append reported OK, are in what a power loss
// leaves, as acknowledged updates are above.
TEST(PowerLossTest, RevocationsAndDeclaredCountsSurviveALossRightAfterTheirOk) {
  testing::TempDir work;
  testing::TempDir scratch;
  PowerLossVfs vfs(work.path());
  constexpr int kDevices = 6;
  const v1::ServerConfig config = Config();
  {
    auto store = OpenSqliteModelStore(work.File("store.db"));
    ASSERT_TRUE(store.ok()) << store.status();
    auto initial = InitialModel(config, 1000);
    ASSERT_TRUE(initial.ok()) << initial.status();
    ASSERT_TRUE((*store)->PutInitialVersion(*initial).ok());
    RoundRecord round;
    round.round = 1;
    round.base_version = 1;
    round.opened_ms = 1000;
    round.deadline_ms = 2000;
    ASSERT_TRUE((*store)->OpenRound(round).ok());
    for (int i = 0; i < kDevices; ++i) {
      // Tag 2i: device i's revocation returned; 2i + 1: its task's did.
      ASSERT_TRUE((*store)->RevokeDevice(absl::StrCat("revoked-", i), 5000 + i).ok());
      vfs.Mark(2 * static_cast<uint64_t>(i));
      std::promise<absl::Status> appended;
      (*store)->AppendTask({1, absl::StrCat("dev-", i), "token", 3000, 100u + i},
                           [&](absl::Status s) {
                             if (s.ok()) vfs.Mark(2 * static_cast<uint64_t>(i) + 1);
                             appended.set_value(s);
                           });
      const absl::Status s = appended.get_future().get();
      ASSERT_TRUE(s.ok()) << s;
    }
  }
  const std::vector<VfsEvent> log = vfs.Log();
  DurableImage image(&log);
  int checked = 0;
  for (size_t i = 0; i < log.size(); ++i) {
    if (log[i].kind != VfsEvent::Kind::kMark) continue;
    const uint64_t tag = log[i].tag;
    SCOPED_TRACE(absl::StrCat("loss right after mark ", tag));
    image.AdvanceTo(i + 1);
    const std::string dir = scratch.File(absl::StrCat("loss-", i));
    std::filesystem::create_directory(dir);
    ASSERT_TRUE(image.WriteTo(dir));
    auto store = OpenSqliteModelStore(dir + "/store.db");
    ASSERT_TRUE(store.ok()) << store.status();
    auto revoked = (*store)->RevokedDevices();
    ASSERT_TRUE(revoked.ok()) << revoked.status();
    auto tasks = (*store)->RoundTasks(1);
    ASSERT_TRUE(tasks.ok()) << tasks.status();
    const int devices_done = static_cast<int>(tag / 2) + 1;
    for (int d = 0; d < devices_done; ++d) {
      const std::string id = absl::StrCat("revoked-", d);
      EXPECT_NE(std::find(revoked->begin(), revoked->end(), id), revoked->end())
          << id << " was revoked before the loss";
      if (d + 1 == devices_done && tag % 2 == 0) continue;  // its task not yet reported
      const std::string device = absl::StrCat("dev-", d);
      auto task = std::find_if(tasks->begin(), tasks->end(),
                               [&](const TaskRecord& t) { return t.device_id == device; });
      ASSERT_NE(task, tasks->end()) << device << "'s task was recorded before the loss";
      EXPECT_EQ(task->declared_samples, 100u + static_cast<uint32_t>(d));
    }
    store->reset();
    std::filesystem::remove_all(dir);
    ++checked;
  }
  EXPECT_EQ(checked, 2 * kDevices);
}

}  // namespace
}  // namespace tinyfed::server
