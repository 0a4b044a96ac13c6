// The SQLite model store: one database file in WAL mode, one writer thread
// that owns the write connection and applies every write in issue order,
// and one read connection behind a mutex.
//
// Group commit: AppendTask/AppendUpdate only queue. The writer takes
// everything queued at once and writes each run of consecutive appends in
// one transaction, so N concurrent appends cost one fsync instead of N;
// while one batch syncs, the next one gathers. Synchronous writes are
// queued as closures in the same queue and get their own transaction,
// which keeps the order of all writes the order they were issued.
//
// Damage: SQLite checksums the -wal file's frames but not the rows of the
// main file, where a flipped byte in a sample count or a model's metrics
// would read back as valid. Every row therefore carries a CRC-32 of its
// values (the `crc` column, see RowCrc), checked whenever the row is read;
// Open runs SQLite's quick_check, which finds a damaged b-tree (a lost row,
// a broken page) that no row's CRC can. Both report DATA_LOSS naming the
// file.
#include <pthread.h>
#include <sqlite3.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <fstream>
#include <map>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <thread>
#include <unordered_map>
#include <utility>
#include <variant>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/functional/any_invocable.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "model_store.h"
#include "tinyfed_common/host_numerics.h"

namespace tinyfed::server {
namespace {

// Written to the file header (PRAGMA application_id) so that another
// program's SQLite file is recognized as foreign instead of being adopted.
constexpr int32_t kApplicationId = 0x54464544;  // "TFED"
// PRAGMA user_version. Bump it with every schema change and teach Open to
// migrate from the previous one. 2 added the `crc` column to every table;
// 3 added tasks.declared_samples and the revocations table; 4 added the
// audit log and the pause state (the Admin service); 5 added the devices'
// evaluations (federated evaluation); 6 the staged rollout (each
// version's stage, the serving and candidate versions); 7 each version's
// aggregation state (the server optimizer's state and the privacy noise).
constexpr int32_t kSchemaVersion = 7;
// How long a connection waits for another process's lock before giving up
// with UNAVAILABLE. Only another process (an admin tool, a second server
// pointed at the same file by mistake) can hold one: in this process all
// writes go through one connection and WAL readers never block it.
constexpr int kBusyTimeoutMs = 5000;

// `crc` is the RowCrc of the row's other columns, in the order listed
// (tasks.declared_samples last, after crc: where ALTER TABLE puts it in a
// migrated file, so that new and migrated files have the same columns).
constexpr absl::string_view kSchema = R"sql(
CREATE TABLE IF NOT EXISTS model_versions(
  version INTEGER PRIMARY KEY,
  parent INTEGER NOT NULL,
  round INTEGER NOT NULL,
  checksum INTEGER NOT NULL,
  created_ms INTEGER NOT NULL,
  model BLOB NOT NULL,  -- a serialized v1::ModelVersion
  crc INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS rounds(
  round INTEGER PRIMARY KEY,
  base_version INTEGER NOT NULL,
  state INTEGER NOT NULL,  -- RoundState
  opened_ms INTEGER NOT NULL,
  deadline_ms INTEGER NOT NULL,
  closed_ms INTEGER NOT NULL,
  crc INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS tasks(
  round INTEGER NOT NULL,
  device_id TEXT NOT NULL,
  token BLOB NOT NULL,
  issued_ms INTEGER NOT NULL,
  crc INTEGER NOT NULL,
  declared_samples INTEGER NOT NULL DEFAULT 0,
  PRIMARY KEY(round, device_id));
CREATE TABLE IF NOT EXISTS updates(
  round INTEGER NOT NULL,
  device_id TEXT NOT NULL,
  payload BLOB NOT NULL,  -- a serialized v1::Update
  received_ms INTEGER NOT NULL,
  crc INTEGER NOT NULL,
  PRIMARY KEY(round, device_id));
)sql";

// Created by kSchema's transaction in a new file and by the migration from
// schema 2 in an old one. `crc` as in kSchema.
constexpr absl::string_view kRevocationsTable = R"sql(
CREATE TABLE IF NOT EXISTS revocations(
  device_id TEXT PRIMARY KEY,
  revoked_ms INTEGER NOT NULL,
  crc INTEGER NOT NULL);
)sql";

// Created by kSchema's transaction in a new file and by the migration from
// schema 3 in an old one. `crc` as in kSchema. An audit id is assigned by
// the store as the largest so far plus one (rows are never deleted), so
// it is known before the row is written and its CRC can cover it.
// pause_state holds at most one row, id 1: a missing row means "never
// paused", as in a file migrated from schema 3.
constexpr absl::string_view kAdminTables = R"sql(
CREATE TABLE IF NOT EXISTS audit_log(
  id INTEGER PRIMARY KEY,
  at_ms INTEGER NOT NULL,
  actor TEXT NOT NULL,
  action TEXT NOT NULL,
  detail TEXT NOT NULL,
  crc INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS pause_state(
  id INTEGER PRIMARY KEY,
  paused INTEGER NOT NULL,
  since_ms INTEGER NOT NULL,
  paused_by TEXT NOT NULL,
  crc INTEGER NOT NULL);
)sql";

// Created by kSchema's transaction in a new file and by the migration from
// schema 4 in an old one. `crc` as in kSchema. One row per (version,
// device): a device's first evaluation of a version, written in the
// transaction of the update that carried it (`round` is that update's).
// Sums are taken when read, so a row is never rewritten.
constexpr absl::string_view kEvaluationsTable = R"sql(
CREATE TABLE IF NOT EXISTS evaluations(
  version INTEGER NOT NULL,
  device_id TEXT NOT NULL,
  round INTEGER NOT NULL,
  samples INTEGER NOT NULL,
  correct INTEGER NOT NULL,
  loss_sum_q16 INTEGER NOT NULL,
  crc INTEGER NOT NULL,
  PRIMARY KEY(version, device_id));
)sql";

// Created by kSchema's transaction in a new file and by the migration from
// schema 5 in an old one. `crc` as in kSchema. rollout_stages: one row per
// version whose stage was ever set (a version without one is TRAINED),
// its v1::Rollout serialized; rewritten when its stage changes.
// rollout_state holds at most one row, id 1, written with the first
// version: the serving and candidate (0: none) versions.
constexpr absl::string_view kRolloutTables = R"sql(
CREATE TABLE IF NOT EXISTS rollout_stages(
  version INTEGER PRIMARY KEY,
  rollout BLOB NOT NULL,
  crc INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS rollout_state(
  id INTEGER PRIMARY KEY,
  serving INTEGER NOT NULL,
  candidate INTEGER NOT NULL,
  crc INTEGER NOT NULL);
)sql";

// Created by kSchema's transaction in a new file and by the migration from
// schema 6 in an old one. `crc` as in kSchema. One row per version a round
// or a rollback committed, its v1::AggregationState serialized (empty bytes
// for an empty state); a version without a row has an empty state. Written
// once, with its version, never rewritten.
constexpr absl::string_view kAggregationStateTable = R"sql(
CREATE TABLE IF NOT EXISTS aggregation_state(
  version INTEGER PRIMARY KEY,
  state BLOB NOT NULL,
  crc INTEGER NOT NULL);
)sql";

// Schema 1 had no `crc` columns. The migration computes them from the rows
// as they are, after quick_check has passed: damage older than the
// migration goes unseen, as it did before it; damage after it does not.
constexpr absl::string_view kMigrateFrom1 = R"sql(
ALTER TABLE model_versions ADD COLUMN crc INTEGER NOT NULL DEFAULT 0;
UPDATE model_versions SET crc = tinyfed_row_crc('v', version, parent, round, checksum,
                                                created_ms, model);
ALTER TABLE rounds ADD COLUMN crc INTEGER NOT NULL DEFAULT 0;
UPDATE rounds SET crc = tinyfed_row_crc('r', round, base_version, state, opened_ms, deadline_ms,
                                        closed_ms);
ALTER TABLE tasks ADD COLUMN crc INTEGER NOT NULL DEFAULT 0;
UPDATE tasks SET crc = tinyfed_row_crc('t', round, device_id, token, issued_ms);
ALTER TABLE updates ADD COLUMN crc INTEGER NOT NULL DEFAULT 0;
UPDATE updates SET crc = tinyfed_row_crc('u', round, device_id, payload, received_ms);
)sql";

// Schema 2 had no declared counts (0 = declared none) and no revocations.
// A task's CRC then covers one more value, so it is recomputed, but only
// after every task row has passed its schema 2 CRC (kDamagedTasksOf2):
// a migration must not bless damage it could still see.
constexpr absl::string_view kDamagedTasksOf2 =
    "SELECT count(*) FROM tasks "
    "WHERE crc != tinyfed_row_crc('t', round, device_id, token, issued_ms)";
constexpr absl::string_view kMigrateFrom2 = R"sql(
ALTER TABLE tasks ADD COLUMN declared_samples INTEGER NOT NULL DEFAULT 0;
UPDATE tasks SET crc = tinyfed_row_crc('t', round, device_id, token, issued_ms, declared_samples);
)sql";

// The columns each table must have (name, declared type, primary-key
// position), as both a new file and a migrated one have them. A damaged
// schema text can still parse, as another table: this finds it at open
// instead of as an INTERNAL error on the first write.
constexpr absl::string_view kExpectedColumns =
    "model_versions:version INTEGER 1,parent INTEGER 0,round INTEGER 0,checksum INTEGER 0,"
    "created_ms INTEGER 0,model BLOB 0,crc INTEGER 0;"
    "rounds:round INTEGER 1,base_version INTEGER 0,state INTEGER 0,opened_ms INTEGER 0,"
    "deadline_ms INTEGER 0,closed_ms INTEGER 0,crc INTEGER 0;"
    "tasks:round INTEGER 1,device_id TEXT 2,token BLOB 0,issued_ms INTEGER 0,crc INTEGER 0,"
    "declared_samples INTEGER 0;"
    "updates:round INTEGER 1,device_id TEXT 2,payload BLOB 0,received_ms INTEGER 0,crc INTEGER 0;"
    "revocations:device_id TEXT 1,revoked_ms INTEGER 0,crc INTEGER 0;"
    "audit_log:id INTEGER 1,at_ms INTEGER 0,actor TEXT 0,action TEXT 0,detail TEXT 0,"
    "crc INTEGER 0;"
    "pause_state:id INTEGER 1,paused INTEGER 0,since_ms INTEGER 0,paused_by TEXT 0,"
    "crc INTEGER 0;"
    "evaluations:version INTEGER 1,device_id TEXT 2,round INTEGER 0,samples INTEGER 0,"
    "correct INTEGER 0,loss_sum_q16 INTEGER 0,crc INTEGER 0;"
    "rollout_stages:version INTEGER 1,rollout BLOB 0,crc INTEGER 0;"
    "rollout_state:id INTEGER 1,serving INTEGER 0,candidate INTEGER 0,crc INTEGER 0;"
    "aggregation_state:version INTEGER 1,state BLOB 0,crc INTEGER 0;";

// The CRC-32 of one row: a tag naming the table, then each value with its
// kind (an integer as 8 bytes little-endian, bytes as their 8-byte length
// and the bytes), so that a value moved across a column boundary, or read
// as another type, changes the CRC too.
class RowCrc {
 public:
  explicit RowCrc(char table) { crc_ = Crc32Update(0, &table, 1); }
  RowCrc& Int(int64_t value) {
    uint8_t bytes[9] = {kInt};
    Put64(static_cast<uint64_t>(value), bytes + 1);
    crc_ = Crc32Update(crc_, bytes, sizeof bytes);
    return *this;
  }
  RowCrc& Bytes(absl::string_view value) {
    uint8_t bytes[9] = {kBytes};
    Put64(value.size(), bytes + 1);
    crc_ = Crc32Update(crc_, bytes, sizeof bytes);
    crc_ = Crc32Update(crc_, value.data(), value.size());
    return *this;
  }
  int64_t value() const { return crc_; }

 private:
  static constexpr uint8_t kInt = 1;
  static constexpr uint8_t kBytes = 2;
  static void Put64(uint64_t v, uint8_t* out) {
    for (int i = 0; i < 8; ++i) out[i] = static_cast<uint8_t>(v >> (8 * i));
  }
  uint32_t crc_;
};

// tinyfed_row_crc(tag, value...) in SQL, for the migration: RowCrc of the
// values as SQLite holds them.
void RowCrcFunction(sqlite3_context* context, int argc, sqlite3_value** argv) {
  if (argc < 1 || sqlite3_value_bytes(argv[0]) != 1) {
    sqlite3_result_error(context, "tinyfed_row_crc: the first argument is a one-letter tag", -1);
    return;
  }
  RowCrc crc(static_cast<char>(sqlite3_value_text(argv[0])[0]));
  for (int i = 1; i < argc; ++i) {
    switch (sqlite3_value_type(argv[i])) {
      case SQLITE_INTEGER:
        crc.Int(sqlite3_value_int64(argv[i]));
        break;
      case SQLITE_TEXT:
      case SQLITE_BLOB: {
        const void* data = sqlite3_value_blob(argv[i]);
        const int size = sqlite3_value_bytes(argv[i]);
        crc.Bytes(absl::string_view(static_cast<const char*>(data), static_cast<size_t>(size)));
        break;
      }
      default:
        sqlite3_result_error(context, "tinyfed_row_crc: a value is neither integer nor bytes", -1);
        return;
    }
  }
  sqlite3_result_int64(context, crc.value());
}

// The file `db` has open, for messages about its contents.
std::string FileOf(sqlite3* db) {
  const char* name = sqlite3_db_filename(db, "main");
  return name != nullptr ? name : "";
}

// DATA_LOSS for damage the store found itself: `check` says which check
// failed (never the bytes).
absl::Status Damaged(sqlite3* db, absl::string_view check) {
  return absl::DataLossError(absl::StrCat("model store ", FileOf(db), ": ", check,
                                          "; the file is damaged: restore it from a backup"));
}

// The most specific status for a SQLite result code, with the connection's
// error message. `what` names the operation that failed.
absl::Status SqliteError(sqlite3* db, int rc, absl::string_view what) {
  std::string message = absl::StrCat("model store: ", what, ": ",
                                     db != nullptr ? sqlite3_errmsg(db) : sqlite3_errstr(rc));
  switch (rc & 0xff) {
    case SQLITE_BUSY:
    case SQLITE_LOCKED:
    case SQLITE_IOERR:
    case SQLITE_CANTOPEN:
    case SQLITE_PROTOCOL:
      return absl::UnavailableError(message);
    case SQLITE_FULL:
    case SQLITE_NOMEM:
      return absl::ResourceExhaustedError(message);
    case SQLITE_CORRUPT:
      return Damaged(db, absl::StrCat(what, ": ", db != nullptr ? sqlite3_errmsg(db)
                                                                 : sqlite3_errstr(rc)));
    case SQLITE_NOTADB:
      // A header SQLite cannot read: PrepareFile tells a damaged store
      // from a file that never was a database.
      return absl::FailedPreconditionError(message);
    case SQLITE_PERM:
    case SQLITE_READONLY:
    case SQLITE_AUTH:
      return absl::PermissionDeniedError(message);
    case SQLITE_TOOBIG:
      return absl::InvalidArgumentError(message);
    default:
      return absl::InternalError(message);
  }
}

// `status` with "model store: <context>: " before its message.
absl::Status WithContext(const absl::Status& status, absl::string_view context) {
  return absl::Status(status.code(),
                      absl::StrCat("model store: ", context, ": ", status.message()));
}

// A row with the same primary key exists. Other constraint failures (a
// trigger, NOT NULL) are not the caller's duplicate and stay INTERNAL.
bool IsDuplicateKey(int rc) {
  return rc == SQLITE_CONSTRAINT_PRIMARYKEY || rc == SQLITE_CONSTRAINT_UNIQUE;
}

struct StatementDeleter {
  void operator()(sqlite3_stmt* stmt) const { sqlite3_finalize(stmt); }
};
using StatementPtr = std::unique_ptr<sqlite3_stmt, StatementDeleter>;

struct ConnectionDeleter {
  void operator()(sqlite3* db) const { sqlite3_close_v2(db); }
};
using ConnectionPtr = std::unique_ptr<sqlite3, ConnectionDeleter>;

// A prepared statement in use. Resets it and clears its bindings when it
// goes away: a statement left stepped would keep its read transaction, and
// with it an old snapshot, open.
class Query {
 public:
  Query(sqlite3* db, sqlite3_stmt* stmt) : db_(db), stmt_(stmt) {}
  ~Query() {
    sqlite3_reset(stmt_);
    sqlite3_clear_bindings(stmt_);
  }
  Query(const Query&) = delete;
  Query& operator=(const Query&) = delete;

  Query& Int(int index, int64_t value) {
    Check(sqlite3_bind_int64(stmt_, index, value));
    return *this;
  }
  // The bytes must outlive the query.
  Query& Blob(int index, absl::string_view bytes) {
    Check(sqlite3_bind_blob64(stmt_, index, bytes.data(), bytes.size(), SQLITE_STATIC));
    return *this;
  }
  Query& Text(int index, absl::string_view text) {
    Check(sqlite3_bind_text64(stmt_, index, text.data(), text.size(), SQLITE_STATIC, SQLITE_UTF8));
    return *this;
  }

  // SQLITE_ROW, SQLITE_DONE or an error code (also a failed bind).
  int Step() { return bind_rc_ != SQLITE_OK ? bind_rc_ : sqlite3_step(stmt_); }
  // Runs a statement that returns no rows.
  absl::Status Run(absl::string_view what) {
    const int rc = Step();
    if (rc == SQLITE_DONE) return absl::OkStatus();
    return SqliteError(db_, rc, what);
  }

  int64_t ColumnInt(int column) const { return sqlite3_column_int64(stmt_, column); }
  std::string ColumnBytes(int column) const {
    const void* data = sqlite3_column_blob(stmt_, column);
    const int size = sqlite3_column_bytes(stmt_, column);
    if (data == nullptr) return std::string();
    return std::string(static_cast<const char*>(data), static_cast<size_t>(size));
  }

 private:
  void Check(int rc) {
    if (rc != SQLITE_OK && bind_rc_ == SQLITE_OK) bind_rc_ = rc;
  }

  sqlite3* db_;
  sqlite3_stmt* stmt_;
  int bind_rc_ = SQLITE_OK;
};

// `cached` tells SQLite that the statement will be kept and reused.
absl::StatusOr<StatementPtr> Prepare(sqlite3* db, absl::string_view sql, bool cached = false) {
  sqlite3_stmt* stmt = nullptr;
  const int rc = sqlite3_prepare_v3(db, sql.data(), static_cast<int>(sql.size()),
                                    cached ? SQLITE_PREPARE_PERSISTENT : 0, &stmt, nullptr);
  StatementPtr owned(stmt);
  if (rc != SQLITE_OK) return SqliteError(db, rc, absl::StrCat("preparing `", sql, "`"));
  return owned;
}

absl::Status Exec(sqlite3* db, const char* sql) {
  const int rc = sqlite3_exec(db, sql, nullptr, nullptr, nullptr);
  if (rc != SQLITE_OK) return SqliteError(db, rc, sql);
  return absl::OkStatus();
}

// Runs a one-row, one-column query such as a PRAGMA and returns the value.
// `what` names the operation in the error, the query itself by default.
absl::StatusOr<int64_t> QueryInt(sqlite3* db, absl::string_view sql, absl::string_view what = {}) {
  if (what.empty()) what = sql;
  sqlite3_stmt* raw = nullptr;
  int rc = sqlite3_prepare_v2(db, sql.data(), static_cast<int>(sql.size()), &raw, nullptr);
  StatementPtr stmt(raw);
  if (rc != SQLITE_OK) return SqliteError(db, rc, what);
  Query query(db, stmt.get());
  rc = query.Step();
  if (rc != SQLITE_ROW) return SqliteError(db, rc, what);
  return query.ColumnInt(0);
}
absl::StatusOr<std::string> QueryText(sqlite3* db, absl::string_view sql) {
  absl::StatusOr<StatementPtr> stmt = Prepare(db, sql);
  if (!stmt.ok()) return stmt.status();
  Query query(db, stmt->get());
  const int rc = query.Step();
  if (rc != SQLITE_ROW) return SqliteError(db, rc, sql);
  return query.ColumnBytes(0);
}

// Rolls back the open transaction, if SQLite has not already done so.
void RollbackIfOpen(sqlite3* db) {
  if (!sqlite3_get_autocommit(db)) sqlite3_exec(db, "ROLLBACK", nullptr, nullptr, nullptr);
}

absl::StatusOr<ConnectionPtr> OpenConnection(const std::string& path, int flags) {
  sqlite3* db = nullptr;
  const int rc = sqlite3_open_v2(path.c_str(), &db, flags | SQLITE_OPEN_NOMUTEX, nullptr);
  ConnectionPtr owned(db);
  if (rc != SQLITE_OK) return SqliteError(db, rc, absl::StrCat("opening ", path));
  sqlite3_extended_result_codes(db, 1);
  sqlite3_busy_timeout(db, kBusyTimeoutMs);
  return owned;
}

// True when the file at `path` begins with SQLite's magic string: a header
// SQLite cannot read is then damage, not a file of another kind.
bool StartsAsSqliteFile(const std::string& path) {
  static constexpr char kMagic[] = "SQLite format 3";  // and its NUL: 16 bytes
  char head[sizeof kMagic] = {};
  std::ifstream file(path, std::ios::binary);
  file.read(head, sizeof head);
  return file.gcount() == sizeof head && std::equal(head, head + sizeof head, kMagic);
}

int64_t StageCrc(int64_t version, absl::string_view rollout) {
  return RowCrc('s').Int(version).Bytes(rollout).value();
}

// The one row of rollout_state.
constexpr int64_t kRolloutRowId = 1;

int64_t RolloutStateCrc(int64_t id, int64_t serving, int64_t candidate) {
  return RowCrc('o').Int(id).Int(serving).Int(candidate).value();
}

// Writes the rollout state row and `stages` (replacing their rows) in the
// transaction open on `db`.
absl::Status WriteRolloutRows(sqlite3* db, uint32_t serving, uint32_t candidate,
                              const std::vector<std::pair<uint32_t, v1::Rollout>>& stages) {
  {
    absl::StatusOr<StatementPtr> stmt =
        Prepare(db,
                "INSERT OR REPLACE INTO rollout_state(id, serving, candidate, crc) "
                "VALUES(?1, ?2, ?3, ?4)");
    if (!stmt.ok()) return stmt.status();
    Query query(db, stmt->get());
    query.Int(1, kRolloutRowId)
        .Int(2, serving)
        .Int(3, candidate)
        .Int(4, RolloutStateCrc(kRolloutRowId, serving, candidate));
    if (absl::Status s = query.Run("storing the rollout state"); !s.ok()) return s;
  }
  absl::StatusOr<StatementPtr> stmt = Prepare(
      db, "INSERT OR REPLACE INTO rollout_stages(version, rollout, crc) VALUES(?1, ?2, ?3)");
  if (!stmt.ok()) return stmt.status();
  for (const auto& [version, rollout] : stages) {
    const std::string bytes = rollout.SerializeAsString();
    Query query(db, stmt->get());
    query.Int(1, version).Blob(2, bytes).Int(3, StageCrc(version, bytes));
    if (absl::Status s = query.Run(absl::StrCat("storing the stage of version ", version));
        !s.ok()) {
      return s;
    }
  }
  return absl::OkStatus();
}

// The stored Rollout of versions `lowest` to `highest` (only those with a
// row), each row's CRC checked.
absl::StatusOr<std::map<uint32_t, v1::Rollout>> ReadStages(sqlite3* db, uint32_t lowest,
                                                           uint32_t highest) {
  absl::StatusOr<StatementPtr> stmt = Prepare(
      db, "SELECT version, rollout, crc FROM rollout_stages WHERE version BETWEEN ?1 AND ?2");
  if (!stmt.ok()) return stmt.status();
  Query query(db, stmt->get());
  query.Int(1, lowest).Int(2, highest);
  std::map<uint32_t, v1::Rollout> stages;
  int rc;
  while ((rc = query.Step()) == SQLITE_ROW) {
    const int64_t version = query.ColumnInt(0);
    const std::string bytes = query.ColumnBytes(1);
    v1::Rollout rollout;
    if (StageCrc(version, bytes) != query.ColumnInt(2) || version < lowest ||
        version > highest || !rollout.ParseFromString(bytes)) {
      return Damaged(db, absl::StrCat("the rollout stage of version ", version,
                                      " fails its row CRC"));
    }
    stages[static_cast<uint32_t>(version)] = std::move(rollout);
  }
  if (rc != SQLITE_DONE) return SqliteError(db, rc, "reading the rollout stages");
  return stages;
}

// Sets every version's rollout from `stages` (TRAINED when it has none).
void FillStages(const std::map<uint32_t, v1::Rollout>& stages, v1::ModelVersion* version) {
  auto it = stages.find(version->version());
  if (it != stages.end()) {
    *version->mutable_rollout() = it->second;
  } else {
    version->mutable_rollout()->set_stage(v1::ROLLOUT_STAGE_TRAINED);
  }
}

int64_t AggregationStateCrc(int64_t version, absl::string_view state) {
  return RowCrc('g').Int(version).Bytes(state).value();
}

// Writes `state` as `version`'s row in the transaction open on `db`.
absl::Status WriteAggregationState(sqlite3* db, uint32_t version,
                                   const v1::AggregationState& state) {
  absl::StatusOr<StatementPtr> stmt =
      Prepare(db, "INSERT INTO aggregation_state(version, state, crc) VALUES(?1, ?2, ?3)");
  if (!stmt.ok()) return stmt.status();
  const std::string bytes = state.SerializeAsString();
  Query query(db, stmt->get());
  query.Int(1, version).Blob(2, bytes).Int(3, AggregationStateCrc(version, bytes));
  return query.Run(absl::StrCat("storing the aggregation state of version ", version));
}

// The state stored for `version` (empty when it has no row), its CRC
// checked. Does not check that the version exists.
absl::StatusOr<v1::AggregationState> ReadAggregationState(sqlite3* db, uint32_t version) {
  absl::StatusOr<StatementPtr> stmt =
      Prepare(db, "SELECT version, state, crc FROM aggregation_state WHERE version = ?1");
  if (!stmt.ok()) return stmt.status();
  Query query(db, stmt->get());
  query.Int(1, version);
  const int rc = query.Step();
  v1::AggregationState state;
  if (rc == SQLITE_DONE) return state;
  if (rc != SQLITE_ROW) {
    return SqliteError(db, rc, absl::StrCat("reading the aggregation state of version ", version));
  }
  const std::string bytes = query.ColumnBytes(1);
  if (query.ColumnInt(0) != version ||
      AggregationStateCrc(query.ColumnInt(0), bytes) != query.ColumnInt(2)) {
    return Damaged(db, absl::StrCat("the aggregation state of version ", version,
                                    " fails its row CRC"));
  }
  if (!state.ParseFromString(bytes)) {
    return Damaged(db, absl::StrCat("the aggregation state of version ", version,
                                    " does not parse"));
  }
  return state;
}

// DATA_LOSS unless every table has the columns of kExpectedColumns.
absl::Status CheckColumns(sqlite3* db) {
  for (absl::string_view table : absl::StrSplit(kExpectedColumns, ';', absl::SkipEmpty())) {
    const size_t colon = table.find(':');
    const absl::string_view name = table.substr(0, colon);
    absl::StatusOr<std::string> columns = QueryText(
        db, absl::StrCat("SELECT group_concat(name || ' ' || type || ' ' || pk, ',') "
                         "FROM pragma_table_info('", name, "')"));
    if (!columns.ok()) return columns.status();
    if (*columns != table.substr(colon + 1)) {
      return Damaged(db, absl::StrCat("table ", name, " does not have the schema's columns"));
    }
  }
  return absl::OkStatus();
}

// Brings a file of schema `from` (1 to 6), checked by quick_check, to
// kSchemaVersion in one transaction: a failure leaves it as it was. Each
// step takes the file from one schema to the next, so an old file passes
// through every later one.
absl::Status MigrateFile(sqlite3* db, int64_t from) {
  const int rc = sqlite3_create_function_v2(db, "tinyfed_row_crc", -1,
                                            SQLITE_UTF8 | SQLITE_DETERMINISTIC, nullptr,
                                            RowCrcFunction, nullptr, nullptr, nullptr);
  if (rc != SQLITE_OK) return SqliteError(db, rc, "registering tinyfed_row_crc");
  if (absl::Status s = Exec(db, "BEGIN IMMEDIATE"); !s.ok()) return s;
  if (from == 1) {
    if (absl::Status s = Exec(db, std::string(kMigrateFrom1).c_str()); !s.ok()) return s;
  }
  if (from <= 2) {
    absl::StatusOr<int64_t> damaged = QueryInt(db, kDamagedTasksOf2, "checking the task rows");
    if (!damaged.ok()) return damaged.status();
    if (*damaged != 0) {
      return Damaged(db, absl::StrCat(*damaged, " task rows fail their row CRC"));
    }
    if (absl::Status s = Exec(db, absl::StrCat(kMigrateFrom2, kRevocationsTable).c_str());
        !s.ok()) {
      return s;
    }
  }
  // From 3 and from 4: new tables only, no row of an older table changes.
  if (from <= 3) {
    if (absl::Status s = Exec(db, std::string(kAdminTables).c_str()); !s.ok()) return s;
  }
  if (from <= 4) {
    if (absl::Status s = Exec(db, std::string(kEvaluationsTable).c_str()); !s.ok()) return s;
  }
  if (from <= 5) {
    if (absl::Status s = Exec(db, std::string(kRolloutTables).c_str()); !s.ok()) return s;
    // The latest version was what every device was meant to run before
    // staged rollout existed: it serves, with no baseline yet.
    absl::StatusOr<int64_t> latest =
        QueryInt(db, "SELECT coalesce(max(version), 0) FROM model_versions",
                 "finding the latest version");
    if (!latest.ok()) return latest.status();
    if (*latest > 0) {
      v1::Rollout rollout;
      rollout.set_stage(v1::ROLLOUT_STAGE_SERVING);
      rollout.set_reason("serving when the store was migrated to schema 6");
      if (absl::Status s = WriteRolloutRows(db, static_cast<uint32_t>(*latest), 0,
                                            {{static_cast<uint32_t>(*latest), rollout}});
          !s.ok()) {
        return s;
      }
    }
  }
  // Every older version aggregated with plain FedAvg, which keeps no
  // state, and added no noise: no rows, every version reads empty.
  if (absl::Status s = Exec(db, std::string(kAggregationStateTable).c_str()); !s.ok()) return s;
  if (absl::Status s = Exec(db, absl::StrCat("PRAGMA user_version=", kSchemaVersion).c_str());
      !s.ok()) {
    return s;
  }
  return Exec(db, "COMMIT");
}

// Checks that `db` is empty or a tinyfed store of this schema version, and
// creates the schema in an empty one. Reads the header before writing
// anything, so a foreign file is left untouched.
absl::Status PrepareFile(sqlite3* db, const std::string& path) {
  absl::StatusOr<int64_t> schema =
      QueryInt(db, "PRAGMA user_version", absl::StrCat("reading the header of ", path));
  if (!schema.ok()) {
    if (absl::IsFailedPrecondition(schema.status()) && StartsAsSqliteFile(path)) {
      return Damaged(db, "SQLite cannot read the database header");
    }
    return schema.status();
  }
  absl::StatusOr<int64_t> application = QueryInt(db, "PRAGMA application_id");
  if (!application.ok()) return application.status();
  absl::StatusOr<int64_t> objects = QueryInt(db, "SELECT count(*) FROM sqlite_master");
  if (!objects.ok()) return objects.status();

  const bool empty = *schema == 0 && *application == 0 && *objects == 0;
  if (!empty && *application != kApplicationId) {
    return absl::FailedPreconditionError(
        absl::StrCat(path, " is a SQLite database of another program (application_id ",
                     *application, "), not a tinyfed model store"));
  }
  if (!empty && (*schema < 1 || *schema > kSchemaVersion)) {
    return absl::FailedPreconditionError(absl::StrCat(path, " has model store schema version ",
                                                      *schema, "; this build reads versions 1 to ",
                                                      kSchemaVersion));
  }

  // Answers with the mode now in effect, which stays "memory" for an
  // in-memory database: that one could not be shared with the read
  // connection, nor survive a restart.
  absl::StatusOr<std::string> mode = QueryText(db, "PRAGMA journal_mode=WAL");
  if (!mode.ok()) return mode.status();
  if (*mode != "wal") {
    return absl::FailedPreconditionError(absl::StrCat(
        path, ": the model store needs a database file in WAL mode, got journal mode ", *mode));
  }
  if (absl::Status s = Exec(db, "PRAGMA synchronous=FULL"); !s.ok()) return s;

  if (!empty) {
    // The whole file, once per start: about 40 ms for 10,000 updates (the
    // figure is printed by store_corruption_test).
    absl::StatusOr<std::string> check = QueryText(db, "PRAGMA quick_check(1)");
    if (!check.ok()) return check.status();
    if (*check != "ok") {
      return Damaged(db, absl::StrCat("SQLite's quick_check failed (", *check, ")"));
    }
    if (*schema < kSchemaVersion) {
      if (absl::Status s = MigrateFile(db, *schema); !s.ok()) {
        RollbackIfOpen(db);
        return WithContext(s, absl::StrCat("migrating ", path, " from schema version ", *schema));
      }
    }
    return CheckColumns(db);
  }
  if (absl::Status s = Exec(db, "BEGIN IMMEDIATE"); !s.ok()) return s;
  absl::Status created = Exec(
      db, absl::StrCat(kSchema, kRevocationsTable, kAdminTables, kEvaluationsTable,
                       kRolloutTables, kAggregationStateTable)
              .c_str());
  if (created.ok()) {
    created = Exec(db, absl::StrCat("PRAGMA application_id=", kApplicationId, ";",
                                    "PRAGMA user_version=", kSchemaVersion)
                           .c_str());
  }
  if (created.ok()) created = Exec(db, "COMMIT");
  if (!created.ok()) RollbackIfOpen(db);
  return created;
}

const char* StateName(int64_t state) {
  switch (state) {
    case static_cast<int64_t>(RoundState::kOpen):
      return "open";
    case static_cast<int64_t>(RoundState::kCommitted):
      return "committed";
    case static_cast<int64_t>(RoundState::kAbandoned):
      return "abandoned";
    default:
      return "in an unknown state";
  }
}

// The columns a version is read with, in RowCrc order, then its crc.
constexpr absl::string_view kVersionColumns =
    "version, parent, round, checksum, created_ms, model, crc";

// The version in the current row of `query` (read with kVersionColumns),
// once its CRC and its agreement with its columns are checked.
absl::StatusOr<v1::ModelVersion> VersionFromRow(sqlite3* db, const Query& query) {
  const int64_t version = query.ColumnInt(0);
  const std::string bytes = query.ColumnBytes(5);
  const int64_t crc = RowCrc('v')
                          .Int(version)
                          .Int(query.ColumnInt(1))
                          .Int(query.ColumnInt(2))
                          .Int(query.ColumnInt(3))
                          .Int(query.ColumnInt(4))
                          .Bytes(bytes)
                          .value();
  if (crc != query.ColumnInt(6)) {
    return Damaged(db, absl::StrCat("model version ", version, " fails its row CRC"));
  }
  v1::ModelVersion model;
  if (!model.ParseFromString(bytes) || model.version() != version ||
      model.parent_version() != query.ColumnInt(1) || model.round() != query.ColumnInt(2) ||
      model.checksum() != query.ColumnInt(3) || model.created_unix_ms() != query.ColumnInt(4)) {
    return Damaged(db, absl::StrCat("model version ", version,
                                    " does not parse as the version its columns describe"));
  }
  return model;
}

// The columns a round is read with, in RowCrc order, then its crc.
constexpr absl::string_view kRoundColumns =
    "round, base_version, state, opened_ms, deadline_ms, closed_ms, crc";

int64_t RoundCrc(const RoundRecord& r) {
  return RowCrc('r')
      .Int(r.round)
      .Int(r.base_version)
      .Int(static_cast<int64_t>(r.state))
      .Int(r.opened_ms)
      .Int(r.deadline_ms)
      .Int(r.closed_ms)
      .value();
}

// The round in the current row of `query` (read with kRoundColumns), once
// its CRC and its state are checked.
absl::StatusOr<RoundRecord> RoundFromRow(sqlite3* db, const Query& query) {
  RoundRecord record;
  const int64_t round = query.ColumnInt(0);
  const int64_t state = query.ColumnInt(2);
  record.round = static_cast<uint32_t>(round);
  record.base_version = static_cast<uint32_t>(query.ColumnInt(1));
  record.state = static_cast<RoundState>(state);
  record.opened_ms = query.ColumnInt(3);
  record.deadline_ms = query.ColumnInt(4);
  record.closed_ms = query.ColumnInt(5);
  const int64_t crc = RowCrc('r')
                          .Int(round)
                          .Int(query.ColumnInt(1))
                          .Int(state)
                          .Int(record.opened_ms)
                          .Int(record.deadline_ms)
                          .Int(record.closed_ms)
                          .value();
  if (crc != query.ColumnInt(6)) {
    return Damaged(db, absl::StrCat("round ", round, " fails its row CRC"));
  }
  if (state < static_cast<int64_t>(RoundState::kOpen) ||
      state > static_cast<int64_t>(RoundState::kAbandoned)) {
    return Damaged(db, absl::StrCat("round ", round, " has unknown state ", state));
  }
  return record;
}

int64_t RevocationCrc(absl::string_view device_id, int64_t revoked_ms) {
  return RowCrc('d').Bytes(device_id).Int(revoked_ms).value();
}

int64_t AuditCrc(const AuditEntry& entry) {
  return RowCrc('a')
      .Int(entry.id)
      .Int(entry.at_unix_ms)
      .Bytes(entry.actor)
      .Bytes(entry.action)
      .Bytes(entry.detail)
      .value();
}

// The one row of pause_state.
constexpr int64_t kPauseRowId = 1;

int64_t PauseCrc(int64_t id, int64_t paused, int64_t since_ms, absl::string_view by) {
  return RowCrc('p').Int(id).Int(paused).Int(since_ms).Bytes(by).value();
}

int64_t EvaluationCrc(int64_t version, absl::string_view device_id, int64_t round,
                      int64_t samples, int64_t correct, int64_t loss_sum_q16) {
  return RowCrc('e')
      .Int(version)
      .Bytes(device_id)
      .Int(round)
      .Int(samples)
      .Int(correct)
      .Int(loss_sum_q16)
      .value();
}

// The evaluations of versions `lowest` to `highest`, summed per version
// (only versions with at least one row are in the map), each row's CRC
// checked. Sums in uint64 with every addition checked: the store's
// contract promises exact sums or OUT_OF_RANGE, never a wrapped one.
absl::StatusOr<std::map<uint32_t, v1::FleetEvaluation>> SumEvaluations(sqlite3* db,
                                                                       uint32_t lowest,
                                                                       uint32_t highest) {
  absl::StatusOr<StatementPtr> stmt =
      Prepare(db,
              "SELECT version, device_id, round, samples, correct, loss_sum_q16, crc "
              "FROM evaluations WHERE version BETWEEN ?1 AND ?2");
  if (!stmt.ok()) return stmt.status();
  Query query(db, stmt->get());
  query.Int(1, lowest).Int(2, highest);
  std::map<uint32_t, v1::FleetEvaluation> sums;
  int rc;
  while ((rc = query.Step()) == SQLITE_ROW) {
    const int64_t version = query.ColumnInt(0);
    const int64_t samples = query.ColumnInt(3);
    const int64_t correct = query.ColumnInt(4);
    const int64_t loss = query.ColumnInt(5);
    if (EvaluationCrc(version, query.ColumnBytes(1), query.ColumnInt(2), samples, correct,
                      loss) != query.ColumnInt(6)) {
      return Damaged(db, absl::StrCat("an evaluation row of version ", version,
                                      " fails its row CRC"));
    }
    if (version < lowest || version > highest || samples < 0 || correct < 0 || loss < 0) {
      return Damaged(db, absl::StrCat("an evaluation row of version ", version,
                                      " does not hold what was written"));
    }
    v1::FleetEvaluation& sum = sums[static_cast<uint32_t>(version)];
    uint64_t s = 0, c = 0, l = 0;
    if (__builtin_add_overflow(sum.samples(), static_cast<uint64_t>(samples), &s) ||
        __builtin_add_overflow(sum.correct(), static_cast<uint64_t>(correct), &c) ||
        __builtin_add_overflow(sum.loss_sum_q16(), static_cast<uint64_t>(loss), &l) ||
        sum.devices() == UINT32_MAX) {
      return absl::OutOfRangeError(absl::StrCat(
          "model store: the evaluations of version ", version,
          " sum beyond 2^64 - 1 (samples, correct or loss_sum_q16) or 2^32 - 1 devices"));
    }
    sum.set_devices(sum.devices() + 1);
    sum.set_samples(s);
    sum.set_correct(c);
    sum.set_loss_sum_q16(l);
  }
  if (rc != SQLITE_DONE) return SqliteError(db, rc, "reading the evaluations");
  return sums;
}

// Checks the CRC of a task ('t') or update ('u') row read as (round,
// device_id, bytes, ms, crc), a task's with declared_samples after them,
// and that it belongs to `round`: a damaged index can lead a lookup to
// another round's row.
absl::Status CheckAppendRow(sqlite3* db, char table, uint32_t round, const Query& query) {
  const char* what = table == 'u' ? "update" : "task";
  RowCrc crc(table);
  crc.Int(query.ColumnInt(0))
      .Bytes(query.ColumnBytes(1))
      .Bytes(query.ColumnBytes(2))
      .Int(query.ColumnInt(3));
  if (table == 't') crc.Int(query.ColumnInt(5));
  if (crc.value() != query.ColumnInt(4)) {
    return Damaged(db, absl::StrCat("the ", what, " row of a device in round ", round,
                                    " fails its row CRC"));
  }
  if (query.ColumnInt(0) != round) {
    return Damaged(db, absl::StrCat("looking up the ", what, "s of round ", round,
                                    " found a row of round ", query.ColumnInt(0)));
  }
  return absl::OkStatus();
}

// One queued AppendTask or AppendUpdate.
struct AppendOp {
  bool is_update = false;
  uint32_t round = 0;
  std::string device_id;
  std::string bytes;  // the token or the payload
  int64_t ms = 0;
  DoneCallback done;
  std::chrono::steady_clock::time_point queued{};  // set by Enqueue
  uint32_t declared_samples = 0;                   // tasks only
  std::optional<v1::Evaluation> evaluation{};      // updates and evaluations
  bool evaluation_only = false;                    // AppendEvaluation: no task or update row
};

// One queued synchronous write. The caller waits on `finished` and owns
// everything the pointers point to until then.
struct SyncOp {
  absl::AnyInvocable<absl::Status()>* write;
  absl::Status* result;
  absl::Notification* finished;
};

using WriteOp = std::variant<AppendOp, SyncOp>;

class SqliteModelStore final : public ModelStore {
 public:
  static absl::StatusOr<std::unique_ptr<ModelStore>> Open(const std::string& path);
  ~SqliteModelStore() override;

  absl::StatusOr<std::optional<v1::ModelVersion>> LatestVersion() override;
  absl::StatusOr<v1::ModelVersion> GetVersion(uint32_t version) override;
  absl::StatusOr<std::optional<RoundRecord>> LatestRound() override;
  absl::StatusOr<std::vector<TaskRecord>> RoundTasks(uint32_t round) override;
  absl::StatusOr<std::vector<StoredUpdate>> RoundUpdates(uint32_t round) override;
  absl::StatusOr<std::vector<std::string>> RevokedDevices() override;
  absl::StatusOr<std::vector<Revocation>> Revocations() override;
  absl::StatusOr<std::vector<v1::ModelVersion>> ListVersions(uint32_t newest,
                                                             size_t limit) override;
  absl::StatusOr<std::vector<DeviceActivity>> RecentDevices(size_t limit) override;
  absl::StatusOr<std::vector<AuditEntry>> AuditLog(int64_t before_id, size_t limit) override;
  absl::StatusOr<PauseState> Paused() override;
  absl::StatusOr<std::optional<VersionEvaluation>> LatestFleetEvaluation() override;
  absl::StatusOr<v1::FleetEvaluation> FleetEvaluationOf(uint32_t version) override;
  absl::StatusOr<StoredRollout> Rollout() override;
  absl::StatusOr<v1::AggregationState> AggregationStateOf(uint32_t version) override;

  absl::Status PutInitialVersion(const v1::ModelVersion& model) override;
  absl::Status OpenRound(const RoundRecord& round) override;
  void AppendTask(TaskRecord task, DoneCallback done) override;
  using ModelStore::AppendUpdate;
  void AppendUpdate(StoredUpdate update, std::optional<v1::Evaluation> evaluation,
                    DoneCallback done) override;
  absl::Status CommitRound(uint32_t round, int64_t closed_ms,
                           const v1::ModelVersion& next) override;
  absl::Status CommitRound(uint32_t round, int64_t closed_ms, const v1::ModelVersion& next,
                           const v1::AggregationState& state) override;
  absl::Status AbandonRound(uint32_t round, int64_t closed_ms) override;
  absl::Status RevokeDevice(const std::string& device_id, int64_t revoked_unix_ms) override;
  absl::Status RevokeDevice(const std::string& device_id, int64_t revoked_unix_ms,
                            const AuditEntry& audit) override;
  absl::Status CommitRestoredVersion(uint32_t abandon_round, int64_t closed_ms,
                                     const v1::ModelVersion& next,
                                     const AuditEntry& audit) override;
  absl::Status SetPaused(const PauseState& state, const AuditEntry& audit) override;
  absl::Status WriteRollout(const RolloutWrite& write, const AuditEntry* audit) override;
  absl::Status CommitRestoredVersion(uint32_t abandon_round, int64_t closed_ms,
                                     const v1::ModelVersion& next, const AuditEntry* audit,
                                     const RolloutWrite& rollout) override;
  void AppendEvaluation(uint32_t round, std::string device_id, v1::Evaluation evaluation,
                        DoneCallback done) override;
  size_t PendingWrites() const override;
  WriteStats Stats() const override;
  void SetBatchHook(std::function<void()> hook) override;
  absl::Status Flush() override;

 private:
  SqliteModelStore(ConnectionPtr write_db, ConnectionPtr read_db);
  absl::Status PrepareStatements();

  void Enqueue(WriteOp op);
  bool HasWorkOrStopping() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    return !queue_.empty() || stopping_;
  }
  // Queues `write` to run in its own transaction on the writer thread and
  // waits for its result.
  absl::Status RunWrite(absl::AnyInvocable<absl::Status()> write);

  // ---- writer thread only ----
  void WriterLoop();
  void WriteBatch(std::span<WriteOp> appends);
  absl::Status InsertAppend(const AppendOp& op, std::unordered_map<uint32_t, absl::Status>& open);
  // The update row of `op` and its evaluation row, as one: on a failure
  // neither stays in the transaction.
  absl::Status InsertUpdateWithEvaluation(const AppendOp& op,
                                          std::unordered_map<uint32_t, absl::Status>& open);
  // OK when `round` is open, FAILED_PRECONDITION when it is not.
  absl::Status CheckRoundOpen(uint32_t round);
  // The evaluation row of `op` (INSERT OR IGNORE: a device's first counts).
  absl::Status InsertEvaluation(const AppendOp& op);
  // CommitRestoredVersion's body, `rollout` and `audit` written when given.
  absl::Status RestoreVersion(uint32_t abandon_round, int64_t closed_ms,
                              const v1::ModelVersion& next, const AuditEntry* audit,
                              const RolloutWrite* rollout);
  // FAILED_PRECONDITION unless every version `write` names is stored.
  absl::Status CheckRolloutVersions(const RolloutWrite& write);
  // The round's record, its CRC checked; FAILED_PRECONDITION when unknown.
  absl::StatusOr<RoundRecord> ReadRound(uint32_t round);
  // Sets the open `round`'s state and closing time, and its CRC.
  absl::Status CloseRoundRow(uint32_t round, RoundState state, int64_t closed_ms);
  absl::StatusOr<std::optional<uint32_t>> LatestVersionNumber();
  absl::Status InsertVersion(const v1::ModelVersion& model, const std::string& serialized);
  // Inserts the revocation unless the device has one; true when inserted.
  absl::StatusOr<bool> InsertRevocation(const std::string& device_id, int64_t revoked_unix_ms);
  // Appends `entry` to the audit log with the next id (its own is ignored).
  absl::Status AppendAudit(const AuditEntry& entry);
  // The revocation write, with `audit` appended when the device is newly
  // revoked, if given.
  absl::Status Revoke(const std::string& device_id, int64_t revoked_unix_ms,
                      const AuditEntry* audit);
  // Runs `body` between BEGIN IMMEDIATE and COMMIT; rolls back on error.
  template <typename Body>
  absl::Status InTransaction(Body body);

  ConnectionPtr write_db_;  // used by the writer thread only, once it runs
  StatementPtr insert_task_;
  StatementPtr insert_update_;
  StatementPtr insert_evaluation_;
  StatementPtr read_round_;
  StatementPtr latest_version_;
  StatementPtr insert_version_;

  absl::Mutex read_mu_;
  ConnectionPtr read_db_ ABSL_GUARDED_BY(read_mu_);

  mutable absl::Mutex mu_;
  std::vector<WriteOp> queue_ ABSL_GUARDED_BY(mu_);
  size_t pending_appends_ ABSL_GUARDED_BY(mu_) = 0;  // queued or being written
  // Held by the writer thread while it runs the hook, so that clearing the
  // hook waits for a run in progress.
  absl::Mutex hook_mu_;
  std::function<void()> batch_hook_ ABSL_GUARDED_BY(hook_mu_);
  WriteStats stats_ ABSL_GUARDED_BY(mu_);
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;

  std::thread writer_;
};

absl::StatusOr<std::unique_ptr<ModelStore>> SqliteModelStore::Open(const std::string& path) {
  absl::StatusOr<ConnectionPtr> write_db =
      OpenConnection(path, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE);
  if (!write_db.ok()) return write_db.status();
  if (absl::Status s = PrepareFile(write_db->get(), path); !s.ok()) return s;
  absl::StatusOr<ConnectionPtr> read_db = OpenConnection(path, SQLITE_OPEN_READWRITE);
  if (!read_db.ok()) return read_db.status();
  // Read-write so that it can maintain the WAL index; query_only makes sure
  // it never writes anything else.
  if (absl::Status s = Exec(read_db->get(), "PRAGMA query_only=1"); !s.ok()) return s;

  std::unique_ptr<SqliteModelStore> store(
      new SqliteModelStore(std::move(*write_db), std::move(*read_db)));
  if (absl::Status s = store->PrepareStatements(); !s.ok()) return s;
  store->writer_ = std::thread([s = store.get()] {
    // Named for top -H, perf and debuggers (at most 15 characters).
    pthread_setname_np(pthread_self(), "tinyfed-writer");
    s->WriterLoop();
  });
  return store;
}

SqliteModelStore::SqliteModelStore(ConnectionPtr write_db, ConnectionPtr read_db)
    : write_db_(std::move(write_db)), read_db_(std::move(read_db)) {}

absl::Status SqliteModelStore::PrepareStatements() {
  sqlite3* db = write_db_.get();
  struct {
    StatementPtr* slot;
    std::string sql;
  } const statements[] = {
      {&insert_task_,
       "INSERT INTO tasks(round, device_id, token, issued_ms, crc, declared_samples) "
       "VALUES(?1, ?2, ?3, ?4, ?5, ?6)"},
      {&insert_update_,
       "INSERT INTO updates(round, device_id, payload, received_ms, crc) "
       "VALUES(?1, ?2, ?3, ?4, ?5)"},
      // OR IGNORE: a device's first evaluation of a version is the one
      // counted (model.proto FleetEvaluation).
      {&insert_evaluation_,
       "INSERT OR IGNORE INTO evaluations(version, device_id, round, samples, correct, "
       "loss_sum_q16, crc) VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7)"},
      {&read_round_, absl::StrCat("SELECT ", kRoundColumns, " FROM rounds WHERE round = ?1")},
      {&latest_version_, "SELECT max(version) FROM model_versions"},
      {&insert_version_,
       "INSERT INTO model_versions(version, parent, round, checksum, created_ms, model, crc) "
       "VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7)"},
  };
  for (const auto& s : statements) {
    absl::StatusOr<StatementPtr> stmt = Prepare(db, s.sql, /*cached=*/true);
    if (!stmt.ok()) return stmt.status();
    *s.slot = std::move(*stmt);
  }
  return absl::OkStatus();
}

SqliteModelStore::~SqliteModelStore() {
  if (writer_.joinable()) {
    {
      absl::MutexLock lock(&mu_);
      stopping_ = true;
    }
    writer_.join();  // the writer drains the queue before it returns
  }
  // Statements before their connection; closing the last connection
  // checkpoints the WAL into the main file.
  insert_task_.reset();
  insert_update_.reset();
  insert_evaluation_.reset();
  read_round_.reset();
  latest_version_.reset();
  insert_version_.reset();
  absl::MutexLock lock(&read_mu_);
  read_db_.reset();
  write_db_.reset();
}

// ---- reads -----------------------------------------------------------------

absl::StatusOr<std::optional<v1::ModelVersion>> SqliteModelStore::LatestVersion() {
  absl::MutexLock lock(&read_mu_);
  sqlite3* db = read_db_.get();
  absl::StatusOr<StatementPtr> stmt = Prepare(
      db, absl::StrCat("SELECT ", kVersionColumns,
                       " FROM model_versions ORDER BY version DESC LIMIT 1"));
  if (!stmt.ok()) return stmt.status();
  Query query(db, stmt->get());
  const int rc = query.Step();
  if (rc == SQLITE_DONE) return std::optional<v1::ModelVersion>();
  if (rc != SQLITE_ROW) return SqliteError(db, rc, "reading the latest model version");
  absl::StatusOr<v1::ModelVersion> model = VersionFromRow(db, query);
  if (!model.ok()) return model.status();
  return std::optional<v1::ModelVersion>(std::move(*model));
}

absl::StatusOr<v1::ModelVersion> SqliteModelStore::GetVersion(uint32_t version) {
  absl::MutexLock lock(&read_mu_);
  sqlite3* db = read_db_.get();
  absl::StatusOr<StatementPtr> stmt =
      Prepare(db, absl::StrCat("SELECT ", kVersionColumns, " FROM model_versions WHERE version = ?1"));
  if (!stmt.ok()) return stmt.status();
  Query query(db, stmt->get());
  query.Int(1, version);
  const int rc = query.Step();
  if (rc == SQLITE_DONE) {
    return absl::NotFoundError(absl::StrCat("model store: no model version ", version));
  }
  if (rc != SQLITE_ROW) {
    return SqliteError(db, rc, absl::StrCat("reading model version ", version));
  }
  absl::StatusOr<v1::ModelVersion> model = VersionFromRow(db, query);
  if (model.ok() && model->version() != version) {
    return Damaged(db, absl::StrCat("looking up model version ", version, " found version ",
                                    model->version()));
  }
  if (!model.ok()) return model;
  absl::StatusOr<std::map<uint32_t, v1::Rollout>> stages = ReadStages(db, version, version);
  if (!stages.ok()) return stages.status();
  FillStages(*stages, &*model);
  return model;
}

absl::StatusOr<std::optional<RoundRecord>> SqliteModelStore::LatestRound() {
  absl::MutexLock lock(&read_mu_);
  sqlite3* db = read_db_.get();
  absl::StatusOr<StatementPtr> stmt = Prepare(
      db, absl::StrCat("SELECT ", kRoundColumns, " FROM rounds ORDER BY round DESC LIMIT 1"));
  if (!stmt.ok()) return stmt.status();
  Query query(db, stmt->get());
  const int rc = query.Step();
  if (rc == SQLITE_DONE) return std::optional<RoundRecord>();
  if (rc != SQLITE_ROW) return SqliteError(db, rc, "reading the latest round");
  absl::StatusOr<RoundRecord> record = RoundFromRow(db, query);
  if (!record.ok()) return record.status();
  return std::optional<RoundRecord>(*record);
}

absl::StatusOr<std::vector<TaskRecord>> SqliteModelStore::RoundTasks(uint32_t round) {
  absl::MutexLock lock(&read_mu_);
  sqlite3* db = read_db_.get();
  absl::StatusOr<StatementPtr> stmt =
      Prepare(db,
              "SELECT round, device_id, token, issued_ms, crc, declared_samples FROM tasks "
              "WHERE round = ?1 ORDER BY rowid");
  if (!stmt.ok()) return stmt.status();
  Query query(db, stmt->get());
  query.Int(1, round);
  std::vector<TaskRecord> tasks;
  int rc;
  while ((rc = query.Step()) == SQLITE_ROW) {
    if (absl::Status s = CheckAppendRow(db, 't', round, query); !s.ok()) return s;
    tasks.push_back(TaskRecord{round, query.ColumnBytes(1), query.ColumnBytes(2),
                               query.ColumnInt(3), static_cast<uint32_t>(query.ColumnInt(5))});
  }
  if (rc != SQLITE_DONE) {
    return SqliteError(db, rc, absl::StrCat("reading the tasks of round ", round));
  }
  return tasks;
}

absl::StatusOr<std::vector<StoredUpdate>> SqliteModelStore::RoundUpdates(uint32_t round) {
  absl::MutexLock lock(&read_mu_);
  sqlite3* db = read_db_.get();
  absl::StatusOr<StatementPtr> stmt = Prepare(
      db,
      "SELECT round, device_id, payload, received_ms, crc FROM updates WHERE round = ?1 "
      "ORDER BY rowid");
  if (!stmt.ok()) return stmt.status();
  Query query(db, stmt->get());
  query.Int(1, round);
  std::vector<StoredUpdate> updates;
  int rc;
  while ((rc = query.Step()) == SQLITE_ROW) {
    if (absl::Status s = CheckAppendRow(db, 'u', round, query); !s.ok()) return s;
    updates.push_back(
        StoredUpdate{round, query.ColumnBytes(1), query.ColumnBytes(2), query.ColumnInt(3)});
  }
  if (rc != SQLITE_DONE) {
    return SqliteError(db, rc, absl::StrCat("reading the updates of round ", round));
  }
  return updates;
}

absl::StatusOr<std::vector<std::string>> SqliteModelStore::RevokedDevices() {
  absl::MutexLock lock(&read_mu_);
  sqlite3* db = read_db_.get();
  absl::StatusOr<StatementPtr> stmt =
      Prepare(db, "SELECT device_id, revoked_ms, crc FROM revocations ORDER BY device_id");
  if (!stmt.ok()) return stmt.status();
  Query query(db, stmt->get());
  std::vector<std::string> devices;
  int rc;
  while ((rc = query.Step()) == SQLITE_ROW) {
    std::string device = query.ColumnBytes(0);
    if (RevocationCrc(device, query.ColumnInt(1)) != query.ColumnInt(2)) {
      return Damaged(db, "the revocation row of a device fails its row CRC");
    }
    devices.push_back(std::move(device));
  }
  if (rc != SQLITE_DONE) return SqliteError(db, rc, "reading the revoked devices");
  return devices;
}

absl::StatusOr<std::vector<Revocation>> SqliteModelStore::Revocations() {
  absl::MutexLock lock(&read_mu_);
  sqlite3* db = read_db_.get();
  absl::StatusOr<StatementPtr> stmt =
      Prepare(db, "SELECT device_id, revoked_ms, crc FROM revocations ORDER BY device_id");
  if (!stmt.ok()) return stmt.status();
  Query query(db, stmt->get());
  std::vector<Revocation> revocations;
  int rc;
  while ((rc = query.Step()) == SQLITE_ROW) {
    Revocation revocation{query.ColumnBytes(0), query.ColumnInt(1)};
    if (RevocationCrc(revocation.device_id, revocation.revoked_unix_ms) != query.ColumnInt(2)) {
      return Damaged(db, "the revocation row of a device fails its row CRC");
    }
    revocations.push_back(std::move(revocation));
  }
  if (rc != SQLITE_DONE) return SqliteError(db, rc, "reading the revocations");
  return revocations;
}

// A size_t limit as SQLite's LIMIT takes it (a signed 64-bit integer).
int64_t SqlLimit(size_t limit) {
  return static_cast<int64_t>(std::min<uint64_t>(limit, INT64_MAX));
}

absl::StatusOr<std::vector<v1::ModelVersion>> SqliteModelStore::ListVersions(uint32_t newest,
                                                                            size_t limit) {
  absl::MutexLock lock(&read_mu_);
  sqlite3* db = read_db_.get();
  // Every row's whole blob is read: its CRC covers it, and a version's
  // weights are small (a head of at most a few thousand parameters).
  absl::StatusOr<StatementPtr> stmt =
      Prepare(db, absl::StrCat("SELECT ", kVersionColumns,
                               " FROM model_versions WHERE version <= ?1 "
                               "ORDER BY version DESC LIMIT ?2"));
  if (!stmt.ok()) return stmt.status();
  Query query(db, stmt->get());
  query.Int(1, newest == 0 ? int64_t{UINT32_MAX} : int64_t{newest}).Int(2, SqlLimit(limit));
  std::vector<v1::ModelVersion> versions;
  int rc;
  while ((rc = query.Step()) == SQLITE_ROW) {
    absl::StatusOr<v1::ModelVersion> model = VersionFromRow(db, query);
    if (!model.ok()) return model.status();
    model->clear_weights();
    model->clear_bias();
    versions.push_back(std::move(*model));
  }
  if (rc != SQLITE_DONE) return SqliteError(db, rc, "listing the model versions");
  if (versions.empty()) return versions;
  // Newest first: the range is [last, first].
  absl::StatusOr<std::map<uint32_t, v1::FleetEvaluation>> sums =
      SumEvaluations(db, versions.back().version(), versions.front().version());
  if (!sums.ok()) return sums.status();
  absl::StatusOr<std::map<uint32_t, v1::Rollout>> stages =
      ReadStages(db, versions.back().version(), versions.front().version());
  if (!stages.ok()) return stages.status();
  for (v1::ModelVersion& v : versions) {
    if (auto it = sums->find(v.version()); it != sums->end()) {
      *v.mutable_fleet_evaluation() = std::move(it->second);
    }
    FillStages(*stages, &v);
  }
  return versions;
}

absl::StatusOr<std::vector<DeviceActivity>> SqliteModelStore::RecentDevices(size_t limit) {
  absl::MutexLock lock(&read_mu_);
  sqlite3* db = read_db_.get();
  // Task rows are read whole, so that each one's CRC is checked: they are
  // small (an id, a token). Update rows are only counted per device: their
  // CRCs cover their payloads, and reading every payload of every round
  // for a count would cost far more than the rest of this call; a damaged
  // update row is found when its round is read (RoundUpdates).
  std::unordered_map<std::string, DeviceActivity> devices;
  {
    absl::StatusOr<StatementPtr> stmt = Prepare(
        db, "SELECT round, device_id, token, issued_ms, crc, declared_samples FROM tasks");
    if (!stmt.ok()) return stmt.status();
    Query query(db, stmt->get());
    int rc;
    while ((rc = query.Step()) == SQLITE_ROW) {
      const uint32_t round = static_cast<uint32_t>(query.ColumnInt(0));
      if (absl::Status s = CheckAppendRow(db, 't', round, query); !s.ok()) return s;
      std::string id = query.ColumnBytes(1);
      DeviceActivity& device = devices[id];
      const int64_t issued_ms = query.ColumnInt(3);
      // The latest task: by its time, a later round first when two share a
      // millisecond.
      if (device.tasks == 0 || issued_ms > device.last_task_ms ||
          (issued_ms == device.last_task_ms && round > device.last_round)) {
        device.last_task_ms = issued_ms;
        device.last_round = round;
      }
      if (device.tasks == 0) device.device_id = std::move(id);
      ++device.tasks;
    }
    if (rc != SQLITE_DONE) return SqliteError(db, rc, "reading the tasks");
  }
  {
    absl::StatusOr<StatementPtr> stmt =
        Prepare(db, "SELECT device_id, count(*) FROM updates GROUP BY device_id");
    if (!stmt.ok()) return stmt.status();
    Query query(db, stmt->get());
    int rc;
    while ((rc = query.Step()) == SQLITE_ROW) {
      auto device = devices.find(query.ColumnBytes(0));
      // An update needs a task of its device: one without is not listed
      // (no "seen" time to sort it by).
      if (device != devices.end()) {
        device->second.updates = static_cast<uint32_t>(query.ColumnInt(1));
      }
    }
    if (rc != SQLITE_DONE) return SqliteError(db, rc, "counting the updates");
  }
  std::vector<DeviceActivity> recent;
  recent.reserve(devices.size());
  for (auto& [id, device] : devices) recent.push_back(std::move(device));
  const auto more_recent = [](const DeviceActivity& a, const DeviceActivity& b) {
    if (a.last_task_ms != b.last_task_ms) return a.last_task_ms > b.last_task_ms;
    return a.device_id < b.device_id;
  };
  if (recent.size() > limit) {
    std::partial_sort(recent.begin(), recent.begin() + static_cast<ptrdiff_t>(limit), recent.end(),
                      more_recent);
    recent.resize(limit);
  } else {
    std::sort(recent.begin(), recent.end(), more_recent);
  }
  return recent;
}

absl::StatusOr<std::vector<AuditEntry>> SqliteModelStore::AuditLog(int64_t before_id,
                                                                  size_t limit) {
  absl::MutexLock lock(&read_mu_);
  sqlite3* db = read_db_.get();
  absl::StatusOr<StatementPtr> stmt =
      Prepare(db,
              "SELECT id, at_ms, actor, action, detail, crc FROM audit_log WHERE id < ?1 "
              "ORDER BY id DESC LIMIT ?2");
  if (!stmt.ok()) return stmt.status();
  Query query(db, stmt->get());
  query.Int(1, before_id == 0 ? INT64_MAX : before_id).Int(2, SqlLimit(limit));
  std::vector<AuditEntry> entries;
  int rc;
  while ((rc = query.Step()) == SQLITE_ROW) {
    AuditEntry entry{query.ColumnInt(0), query.ColumnInt(1), query.ColumnBytes(2),
                     query.ColumnBytes(3), query.ColumnBytes(4)};
    if (AuditCrc(entry) != query.ColumnInt(5)) {
      return Damaged(db, absl::StrCat("audit entry ", entry.id, " fails its row CRC"));
    }
    entries.push_back(std::move(entry));
  }
  if (rc != SQLITE_DONE) return SqliteError(db, rc, "reading the audit log");
  return entries;
}

absl::StatusOr<std::optional<VersionEvaluation>> SqliteModelStore::LatestFleetEvaluation() {
  absl::MutexLock lock(&read_mu_);
  sqlite3* db = read_db_.get();
  absl::StatusOr<int64_t> latest =
      QueryInt(db, "SELECT coalesce(max(version), 0) FROM evaluations",
               "finding the latest evaluated version");
  if (!latest.ok()) return latest.status();
  if (*latest <= 0 || *latest > UINT32_MAX) return std::nullopt;
  const uint32_t version = static_cast<uint32_t>(*latest);
  absl::StatusOr<std::map<uint32_t, v1::FleetEvaluation>> sums =
      SumEvaluations(db, version, version);
  if (!sums.ok()) return sums.status();
  auto it = sums->find(version);
  if (it == sums->end()) {
    return Damaged(db, absl::StrCat("the evaluations' index lists version ", version,
                                    " but its table holds no row of it"));
  }
  return VersionEvaluation{version, std::move(it->second)};
}

absl::StatusOr<v1::FleetEvaluation> SqliteModelStore::FleetEvaluationOf(uint32_t version) {
  absl::MutexLock lock(&read_mu_);
  sqlite3* db = read_db_.get();
  absl::StatusOr<std::map<uint32_t, v1::FleetEvaluation>> sums =
      SumEvaluations(db, version, version);
  if (!sums.ok()) return sums.status();
  auto it = sums->find(version);
  return it != sums->end() ? it->second : v1::FleetEvaluation();
}

absl::StatusOr<StoredRollout> SqliteModelStore::Rollout() {
  absl::MutexLock lock(&read_mu_);
  sqlite3* db = read_db_.get();
  absl::StatusOr<StatementPtr> stmt =
      Prepare(db, "SELECT id, serving, candidate, crc FROM rollout_state");
  if (!stmt.ok()) return stmt.status();
  StoredRollout state;
  {
    Query query(db, stmt->get());
    const int rc = query.Step();
    if (rc == SQLITE_DONE) {
      absl::StatusOr<int64_t> versions =
          QueryInt(db, "SELECT count(*) FROM model_versions", "counting the versions");
      if (!versions.ok()) return versions.status();
      if (*versions != 0) return Damaged(db, "the rollout state is missing");
      return absl::NotFoundError("model store: no version, hence no rollout, yet");
    }
    if (rc != SQLITE_ROW) return SqliteError(db, rc, "reading the rollout state");
    const int64_t id = query.ColumnInt(0);
    const int64_t serving = query.ColumnInt(1);
    const int64_t candidate = query.ColumnInt(2);
    if (RolloutStateCrc(id, serving, candidate) != query.ColumnInt(3)) {
      return Damaged(db, "the rollout state fails its row CRC");
    }
    if (id != kRolloutRowId || serving < 1 || serving > UINT32_MAX || candidate < 0 ||
        candidate > UINT32_MAX || query.Step() != SQLITE_DONE) {
      return Damaged(db, "the rollout state is not the one row the store writes");
    }
    state.serving_version = static_cast<uint32_t>(serving);
    state.candidate_version = static_cast<uint32_t>(candidate);
  }
  absl::StatusOr<std::map<uint32_t, v1::Rollout>> stages =
      ReadStages(db, state.serving_version, state.serving_version);
  if (!stages.ok()) return stages.status();
  if (auto it = stages->find(state.serving_version); it != stages->end()) {
    state.serving_baseline = it->second.at_promotion();
  }
  return state;
}

absl::StatusOr<v1::AggregationState> SqliteModelStore::AggregationStateOf(uint32_t version) {
  absl::MutexLock lock(&read_mu_);
  sqlite3* db = read_db_.get();
  // The version first: its state row is committed with it, so once the
  // version is seen, so is the row (each statement reads its own snapshot).
  absl::StatusOr<StatementPtr> stmt =
      Prepare(db, "SELECT count(*) FROM model_versions WHERE version = ?1");
  if (!stmt.ok()) return stmt.status();
  {
    Query query(db, stmt->get());
    query.Int(1, version);
    const int rc = query.Step();
    if (rc != SQLITE_ROW) {
      return SqliteError(db, rc, absl::StrCat("looking up model version ", version));
    }
    if (query.ColumnInt(0) == 0) {
      return absl::NotFoundError(absl::StrCat("model store: no model version ", version));
    }
  }
  return ReadAggregationState(db, version);
}

absl::StatusOr<PauseState> SqliteModelStore::Paused() {
  absl::MutexLock lock(&read_mu_);
  sqlite3* db = read_db_.get();
  absl::StatusOr<StatementPtr> stmt =
      Prepare(db, "SELECT id, paused, since_ms, paused_by, crc FROM pause_state");
  if (!stmt.ok()) return stmt.status();
  Query query(db, stmt->get());
  int rc = query.Step();
  if (rc == SQLITE_DONE) return PauseState{};
  if (rc != SQLITE_ROW) return SqliteError(db, rc, "reading the pause state");
  const int64_t id = query.ColumnInt(0);
  const int64_t paused = query.ColumnInt(1);
  PauseState state{paused == 1, query.ColumnInt(2), query.ColumnBytes(3)};
  if (PauseCrc(id, paused, state.since_unix_ms, state.by) != query.ColumnInt(4)) {
    return Damaged(db, "the pause state fails its row CRC");
  }
  if (id != kPauseRowId || (paused != 0 && paused != 1)) {
    return Damaged(db, "the pause state is not the one row the store writes");
  }
  rc = query.Step();
  if (rc == SQLITE_ROW) return Damaged(db, "the pause state has more than one row");
  if (rc != SQLITE_DONE) return SqliteError(db, rc, "reading the pause state");
  return state;
}

// ---- writes ----------------------------------------------------------------

void SqliteModelStore::Enqueue(WriteOp op) {
  AppendOp* append = std::get_if<AppendOp>(&op);
  if (append != nullptr) append->queued = std::chrono::steady_clock::now();
  absl::MutexLock lock(&mu_);
  if (append != nullptr) ++pending_appends_;
  queue_.push_back(std::move(op));
}

absl::Status SqliteModelStore::RunWrite(absl::AnyInvocable<absl::Status()> write) {
  if (std::this_thread::get_id() == writer_.get_id()) {
    // Waiting here would wait for ourselves forever.
    return absl::FailedPreconditionError(
        "model store: a synchronous write was called from a done callback");
  }
  absl::Status result;
  absl::Notification finished;
  Enqueue(SyncOp{&write, &result, &finished});
  finished.WaitForNotification();
  return result;
}

void SqliteModelStore::AppendTask(TaskRecord task, DoneCallback done) {
  AppendOp op{false, task.round, std::move(task.device_id), std::move(task.token),
              task.issued_ms, std::move(done)};
  op.declared_samples = task.declared_samples;
  Enqueue(std::move(op));
}

void SqliteModelStore::AppendEvaluation(uint32_t round, std::string device_id,
                                        v1::Evaluation evaluation, DoneCallback done) {
  AppendOp op{false, round, std::move(device_id), std::string(), 0, std::move(done)};
  op.evaluation = std::move(evaluation);
  op.evaluation_only = true;
  Enqueue(std::move(op));
}

void SqliteModelStore::AppendUpdate(StoredUpdate update,
                                    std::optional<v1::Evaluation> evaluation,
                                    DoneCallback done) {
  AppendOp op{true, update.round, std::move(update.device_id), std::move(update.payload),
              update.received_ms, std::move(done)};
  op.evaluation = std::move(evaluation);
  Enqueue(std::move(op));
}

size_t SqliteModelStore::PendingWrites() const {
  absl::MutexLock lock(&mu_);
  return pending_appends_;
}

ModelStore::WriteStats SqliteModelStore::Stats() const {
  absl::MutexLock lock(&mu_);
  return stats_;
}

void SqliteModelStore::SetBatchHook(std::function<void()> hook) {
  absl::MutexLock lock(&hook_mu_);
  batch_hook_ = std::move(hook);
}

absl::Status SqliteModelStore::Flush() {
  // The writer takes ops in order, and finishes a batch (callbacks, then
  // the hook) before it takes the next op.
  return RunWrite([] { return absl::OkStatus(); });
}

absl::Status SqliteModelStore::PutInitialVersion(const v1::ModelVersion& model) {
  // The lineage convention of model.proto: version 1 is the initial model.
  if (model.version() != 1 || model.parent_version() != 0 || model.round() != 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        "model store: the initial model must be version 1 with parent 0 and round 0, not "
        "version ",
        model.version(), " with parent ", model.parent_version(), " and round ", model.round()));
  }
  const std::string serialized = model.SerializeAsString();
  return RunWrite([&]() -> absl::Status {
    return InTransaction([&]() -> absl::Status {
      absl::StatusOr<std::optional<uint32_t>> latest = LatestVersionNumber();
      if (!latest.ok()) return latest.status();
      if (latest->has_value()) {
        return absl::AlreadyExistsError(
            absl::StrCat("model store: already holds model versions (latest ", **latest,
                         "); the initial version can only be stored in an empty store"));
      }
      if (absl::Status s = InsertVersion(model, serialized); !s.ok()) return s;
      v1::Rollout rollout;
      rollout.set_stage(v1::ROLLOUT_STAGE_SERVING);
      rollout.set_reason("initial version");
      rollout.set_decided_unix_ms(model.created_unix_ms());
      return WriteRolloutRows(write_db_.get(), 1, 0, {{1, rollout}});
    });
  });
}

absl::Status SqliteModelStore::OpenRound(const RoundRecord& round) {
  if (round.round == 0 || round.state != RoundState::kOpen || round.closed_ms != 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        "model store: a new round needs a number >= 1, the open state and closed_ms 0; got "
        "round ",
        round.round, " ", StateName(static_cast<int64_t>(round.state)), " closed at ",
        round.closed_ms));
  }
  sqlite3* db = write_db_.get();
  return RunWrite([&]() -> absl::Status {
    return InTransaction([&]() -> absl::Status {
      // The round that forbids opening this one, if any; when several do,
      // the most specific reason first: the same number, then another open
      // round, then a higher number.
      absl::StatusOr<StatementPtr> stmt =
          Prepare(db,
                  "SELECT round, state FROM rounds WHERE round = ?1 OR state = ?2 OR round > ?1 "
                  "ORDER BY round = ?1 DESC, state = ?2 DESC LIMIT 1");
      if (!stmt.ok()) return stmt.status();
      {
        Query query(db, stmt->get());
        query.Int(1, round.round).Int(2, static_cast<int64_t>(RoundState::kOpen));
        const int rc = query.Step();
        if (rc == SQLITE_ROW) {
          const int64_t other = query.ColumnInt(0);
          if (other == round.round) {
            return absl::AlreadyExistsError(absl::StrCat("model store: round ", round.round,
                                                         " already exists and is ",
                                                         StateName(query.ColumnInt(1))));
          }
          if (query.ColumnInt(1) == static_cast<int64_t>(RoundState::kOpen)) {
            return absl::FailedPreconditionError(absl::StrCat("model store: cannot open round ",
                                                              round.round, " while round ", other,
                                                              " is open"));
          }
          // LatestRound must find the open round after a restart.
          return absl::FailedPreconditionError(absl::StrCat("model store: cannot open round ",
                                                            round.round, " after round ", other,
                                                            "; round numbers must increase"));
        }
        if (rc != SQLITE_DONE) return SqliteError(db, rc, "reading the rounds");
      }
      absl::StatusOr<StatementPtr> insert = Prepare(
          db,
          "INSERT INTO rounds(round, base_version, state, opened_ms, deadline_ms, closed_ms, crc) "
          "VALUES(?1, ?2, ?3, ?4, ?5, 0, ?6)");
      if (!insert.ok()) return insert.status();
      Query query(db, insert->get());
      query.Int(1, round.round)
          .Int(2, round.base_version)
          .Int(3, static_cast<int64_t>(RoundState::kOpen))
          .Int(4, round.opened_ms)
          .Int(5, round.deadline_ms)
          .Int(6, RoundCrc(round));
      return query.Run(absl::StrCat("opening round ", round.round));
    });
  });
}

absl::Status SqliteModelStore::CommitRound(uint32_t round, int64_t closed_ms,
                                           const v1::ModelVersion& next) {
  return CommitRound(round, closed_ms, next, v1::AggregationState());
}

absl::Status SqliteModelStore::CommitRound(uint32_t round, int64_t closed_ms,
                                           const v1::ModelVersion& next,
                                           const v1::AggregationState& state) {
  if (next.round() != round) {
    return absl::InvalidArgumentError(absl::StrCat("model store: committing round ", round,
                                                   " with a version made by round ", next.round()));
  }
  const std::string serialized = next.SerializeAsString();
  return RunWrite([&]() -> absl::Status {
    return InTransaction([&]() -> absl::Status {
      if (absl::Status s = CheckRoundOpen(round); !s.ok()) {
        return WithContext(s, absl::StrCat("cannot commit round ", round));
      }
      absl::StatusOr<std::optional<uint32_t>> latest = LatestVersionNumber();
      if (!latest.ok()) return latest.status();
      if (!latest->has_value()) {
        return absl::FailedPreconditionError(absl::StrCat("model store: cannot commit round ",
                                                          round, ": there is no initial version"));
      }
      const uint32_t parent = **latest;
      if (next.parent_version() != parent || next.version() != parent + 1) {
        return absl::FailedPreconditionError(absl::StrCat(
            "model store: round ", round, " must commit version ", parent + 1, " with parent ",
            parent, ", not version ", next.version(), " with parent ", next.parent_version()));
      }
      if (absl::Status s = CloseRoundRow(round, RoundState::kCommitted, closed_ms); !s.ok()) {
        return s;
      }
      if (absl::Status s = InsertVersion(next, serialized); !s.ok()) return s;
      return WriteAggregationState(write_db_.get(), next.version(), state);
    });
  });
}

absl::Status SqliteModelStore::AbandonRound(uint32_t round, int64_t closed_ms) {
  return RunWrite([&]() -> absl::Status {
    return InTransaction([&]() -> absl::Status {
      if (absl::Status s = CheckRoundOpen(round); !s.ok()) {
        return WithContext(s, absl::StrCat("cannot abandon round ", round));
      }
      return CloseRoundRow(round, RoundState::kAbandoned, closed_ms);
    });
  });
}

absl::Status SqliteModelStore::RevokeDevice(const std::string& device_id,
                                            int64_t revoked_unix_ms) {
  return Revoke(device_id, revoked_unix_ms, nullptr);
}

absl::Status SqliteModelStore::RevokeDevice(const std::string& device_id,
                                            int64_t revoked_unix_ms, const AuditEntry& audit) {
  return Revoke(device_id, revoked_unix_ms, &audit);
}

absl::Status SqliteModelStore::Revoke(const std::string& device_id, int64_t revoked_unix_ms,
                                      const AuditEntry* audit) {
  if (device_id.empty()) {
    return absl::InvalidArgumentError("model store: cannot revoke an empty device id");
  }
  return RunWrite([&]() -> absl::Status {
    return InTransaction([&]() -> absl::Status {
      absl::StatusOr<bool> inserted = InsertRevocation(device_id, revoked_unix_ms);
      if (!inserted.ok()) return inserted.status();
      if (*inserted && audit != nullptr) return AppendAudit(*audit);
      return absl::OkStatus();
    });
  });
}

absl::Status SqliteModelStore::CommitRestoredVersion(uint32_t abandon_round, int64_t closed_ms,
                                                     const v1::ModelVersion& next,
                                                     const AuditEntry& audit) {
  return RestoreVersion(abandon_round, closed_ms, next, &audit, nullptr);
}

absl::Status SqliteModelStore::CommitRestoredVersion(uint32_t abandon_round, int64_t closed_ms,
                                                     const v1::ModelVersion& next,
                                                     const AuditEntry* audit,
                                                     const RolloutWrite& rollout) {
  return RestoreVersion(abandon_round, closed_ms, next, audit, &rollout);
}

absl::Status SqliteModelStore::CheckRolloutVersions(const RolloutWrite& write) {
  absl::StatusOr<std::optional<uint32_t>> latest = LatestVersionNumber();
  if (!latest.ok()) return latest.status();
  const uint32_t highest = latest->value_or(0);
  const auto missing = [&](uint32_t v) {
    return absl::FailedPreconditionError(absl::StrCat(
        "model store: the rollout names version ", v, " but the latest is ", highest));
  };
  if (write.serving_version == 0 || write.serving_version > highest) {
    return missing(write.serving_version);
  }
  if (write.candidate_version > highest) return missing(write.candidate_version);
  for (const auto& [version, rollout] : write.stages) {
    if (version == 0 || version > highest) return missing(version);
  }
  return absl::OkStatus();
}

absl::Status SqliteModelStore::WriteRollout(const RolloutWrite& write, const AuditEntry* audit) {
  return RunWrite([&]() -> absl::Status {
    return InTransaction([&]() -> absl::Status {
      if (absl::Status s = CheckRolloutVersions(write); !s.ok()) return s;
      if (absl::Status s = WriteRolloutRows(write_db_.get(), write.serving_version,
                                            write.candidate_version, write.stages);
          !s.ok()) {
        return s;
      }
      return audit != nullptr ? AppendAudit(*audit) : absl::OkStatus();
    });
  });
}

absl::Status SqliteModelStore::RestoreVersion(uint32_t abandon_round, int64_t closed_ms,
                                              const v1::ModelVersion& next,
                                              const AuditEntry* audit,
                                              const RolloutWrite* rollout) {
  const std::string serialized = next.SerializeAsString();
  sqlite3* db = write_db_.get();
  return RunWrite([&]() -> absl::Status {
    return InTransaction([&]() -> absl::Status {
      const auto refused = [&](absl::string_view why) {
        return absl::FailedPreconditionError(absl::StrCat(
            "model store: cannot store version ", next.version(), " restored from version ",
            next.restored_from(), ": ", why));
      };
      absl::StatusOr<std::optional<uint32_t>> latest = LatestVersionNumber();
      if (!latest.ok()) return latest.status();
      if (!latest->has_value()) return refused("there is no version yet");
      const uint32_t parent = **latest;
      if (next.round() != 0 || next.parent_version() != parent ||
          next.version() != parent + 1) {
        return refused(absl::StrCat("a restored version must be version ", parent + 1,
                                    " with parent ", parent, " and round 0, not version ",
                                    next.version(), " with parent ", next.parent_version(),
                                    " and round ", next.round()));
      }
      if (next.restored_from() == 0 || next.restored_from() == parent) {
        return refused(absl::StrCat("it must restore a version older than the latest (",
                                    parent, ")"));
      }
      {
        // The restored version's checksum, which the copy must carry: a
        // copy of other weights would be a new model, not a rollback.
        absl::StatusOr<StatementPtr> stmt =
            Prepare(db, "SELECT checksum FROM model_versions WHERE version = ?1");
        if (!stmt.ok()) return stmt.status();
        Query query(db, stmt->get());
        query.Int(1, next.restored_from());
        const int rc = query.Step();
        if (rc == SQLITE_DONE) return refused("there is no such version");
        if (rc != SQLITE_ROW) return SqliteError(db, rc, "reading the restored version");
        if (query.ColumnInt(0) != next.checksum()) {
          return refused("its checksum is not the restored version's");
        }
      }
      // Any open round trains from the version rolled away from: it must
      // be the one abandoned, or it could never commit.
      absl::StatusOr<StatementPtr> open = Prepare(
          db, absl::StrCat("SELECT round FROM rounds WHERE state = ",
                           static_cast<int64_t>(RoundState::kOpen), " ORDER BY round LIMIT 1"));
      if (!open.ok()) return open.status();
      std::optional<uint32_t> open_round;
      {
        Query query(db, open->get());
        const int rc = query.Step();
        if (rc == SQLITE_ROW) open_round = static_cast<uint32_t>(query.ColumnInt(0));
        if (rc != SQLITE_ROW && rc != SQLITE_DONE) {
          return SqliteError(db, rc, "looking for the open round");
        }
      }
      if (abandon_round == 0 && open_round.has_value()) {
        return refused(absl::StrCat("round ", *open_round, " is open and must be abandoned"));
      }
      if (abandon_round != 0) {
        if (absl::Status s = CheckRoundOpen(abandon_round); !s.ok()) {
          return WithContext(s, absl::StrCat("cannot abandon round ", abandon_round));
        }
        if (absl::Status s = CloseRoundRow(abandon_round, RoundState::kAbandoned, closed_ms);
            !s.ok()) {
          return s;
        }
      }
      if (absl::Status s = InsertVersion(next, serialized); !s.ok()) return s;
      {
        absl::StatusOr<v1::AggregationState> copied =
            ReadAggregationState(db, next.restored_from());
        if (!copied.ok()) return copied.status();
        copied->clear_noise();
        if (absl::Status s = WriteAggregationState(db, next.version(), *copied); !s.ok()) {
          return s;
        }
      }
      if (rollout != nullptr) {
        if (absl::Status s = CheckRolloutVersions(*rollout); !s.ok()) return s;
        if (absl::Status s = WriteRolloutRows(db, rollout->serving_version,
                                              rollout->candidate_version, rollout->stages);
            !s.ok()) {
          return s;
        }
      }
      return audit != nullptr ? AppendAudit(*audit) : absl::OkStatus();
    });
  });
}

absl::Status SqliteModelStore::SetPaused(const PauseState& state, const AuditEntry& audit) {
  sqlite3* db = write_db_.get();
  return RunWrite([&]() -> absl::Status {
    return InTransaction([&]() -> absl::Status {
      absl::StatusOr<StatementPtr> stmt =
          Prepare(db,
                  "INSERT OR REPLACE INTO pause_state(id, paused, since_ms, paused_by, crc) "
                  "VALUES(?1, ?2, ?3, ?4, ?5)");
      if (!stmt.ok()) return stmt.status();
      {
        Query query(db, stmt->get());
        const int64_t paused = state.paused ? 1 : 0;
        query.Int(1, kPauseRowId)
            .Int(2, paused)
            .Int(3, state.since_unix_ms)
            .Text(4, state.by)
            .Int(5, PauseCrc(kPauseRowId, paused, state.since_unix_ms, state.by));
        if (absl::Status s = query.Run("storing the pause state"); !s.ok()) return s;
      }
      return AppendAudit(audit);
    });
  });
}

// ---- the writer thread -------------------------------------------------------

void SqliteModelStore::WriterLoop() {
  std::vector<WriteOp> ops;
  while (true) {
    {
      absl::MutexLock lock(&mu_);
      mu_.Await(absl::Condition(this, &SqliteModelStore::HasWorkOrStopping));
      if (queue_.empty()) return;  // stopping, and everything is written
      ops.swap(queue_);
    }
    // Runs of appends become one transaction each; a synchronous write
    // between them keeps its place in the order.
    size_t begin = 0;
    while (begin < ops.size()) {
      if (SyncOp* sync = std::get_if<SyncOp>(&ops[begin])) {
        *sync->result = (*sync->write)();
        sync->finished->Notify();
        ++begin;
        continue;
      }
      size_t end = begin;
      while (end < ops.size() && std::holds_alternative<AppendOp>(ops[end])) ++end;
      WriteBatch(std::span<WriteOp>(ops).subspan(begin, end - begin));
      begin = end;
    }
    ops.clear();
  }
}

void SqliteModelStore::WriteBatch(std::span<WriteOp> appends) {
  sqlite3* db = write_db_.get();
  std::vector<absl::Status> results(appends.size());
  absl::Status batch = Exec(db, "BEGIN IMMEDIATE");
  if (batch.ok()) {
    // Rounds cannot open or close during the batch: those are synchronous
    // writes, which run between batches.
    std::unordered_map<uint32_t, absl::Status> open;
    for (size_t i = 0; i < appends.size(); ++i) {
      const AppendOp& op = std::get<AppendOp>(appends[i]);
      results[i] = op.evaluation_only          ? InsertEvaluation(op)
                   : op.evaluation.has_value() ? InsertUpdateWithEvaluation(op, open)
                                               : InsertAppend(op, open);
      // A constraint violation undoes only its own row; an I/O error or a
      // full disk may roll back the whole transaction, and the rows before
      // it with it.
      if (!results[i].ok() && sqlite3_get_autocommit(db)) {
        batch = results[i];
        break;
      }
    }
    if (batch.ok()) batch = Exec(db, "COMMIT");
    if (!batch.ok()) RollbackIfOpen(db);
  }
  if (!batch.ok()) {
    for (absl::Status& result : results) result = batch;
  }
  const std::chrono::steady_clock::time_point durable = std::chrono::steady_clock::now();
  uint64_t wait_us = 0;
  for (const WriteOp& op : appends) {
    wait_us += static_cast<uint64_t>(std::chrono::duration_cast<std::chrono::microseconds>(
                                         durable - std::get<AppendOp>(op).queued)
                                         .count());
  }
  {
    absl::MutexLock lock(&mu_);
    pending_appends_ -= appends.size();
    ++stats_.batches;
    stats_.appends += appends.size();
    stats_.wait_us += wait_us;
  }
  for (size_t i = 0; i < appends.size(); ++i) {
    const DoneCallback& done = std::get<AppendOp>(appends[i]).done;
    if (done) done(std::move(results[i]));
  }
  absl::MutexLock lock(&hook_mu_);
  if (batch_hook_) batch_hook_();
}

absl::Status SqliteModelStore::InsertUpdateWithEvaluation(
    const AppendOp& op, std::unordered_map<uint32_t, absl::Status>& open) {
  const v1::Evaluation& e = *op.evaluation;
  // A column is a signed 64-bit integer: a larger loss would read back
  // negative. ValidateUpdate's bound (samples x 2^21) is far below.
  if (e.loss_sum_q16() > static_cast<uint64_t>(INT64_MAX)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "model store: the evaluation of device '", op.device_id, "' has loss_sum_q16 ",
        e.loss_sum_q16(), ", above 2^63 - 1"));
  }
  sqlite3* db = write_db_.get();
  // A savepoint, so that an evaluation row that fails after its update row
  // was written takes that row with it; the batch's other rows stay.
  if (absl::Status s = Exec(db, "SAVEPOINT update_with_evaluation"); !s.ok()) return s;
  absl::Status status = InsertAppend(op, open);
  if (status.ok()) status = InsertEvaluation(op);
  // An I/O error or a full disk may have rolled back the whole
  // transaction, the savepoint with it: WriteBatch sees that and fails
  // the batch.
  if (sqlite3_get_autocommit(db)) return status;
  if (!status.ok()) Exec(db, "ROLLBACK TO update_with_evaluation").IgnoreError();
  if (absl::Status s = Exec(db, "RELEASE update_with_evaluation"); !s.ok() && status.ok()) {
    return s;
  }
  return status;
}

absl::Status SqliteModelStore::InsertEvaluation(const AppendOp& op) {
  const v1::Evaluation& e = *op.evaluation;
  // A column is a signed 64-bit integer: a larger loss would read back
  // negative. The validated bound (samples x 2^21) is far below.
  if (e.loss_sum_q16() > static_cast<uint64_t>(INT64_MAX)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "model store: the evaluation of device '", op.device_id, "' has loss_sum_q16 ",
        e.loss_sum_q16(), ", above 2^63 - 1"));
  }
  Query query(write_db_.get(), insert_evaluation_.get());
  query.Int(1, e.model_version())
      .Text(2, op.device_id)
      .Int(3, op.round)
      .Int(4, e.samples())
      .Int(5, e.correct())
      .Int(6, static_cast<int64_t>(e.loss_sum_q16()))
      .Int(7, EvaluationCrc(e.model_version(), op.device_id, op.round, e.samples(), e.correct(),
                            static_cast<int64_t>(e.loss_sum_q16())));
  return query.Run(absl::StrCat("recording the evaluation of version ", e.model_version(),
                                " by device '", op.device_id, "'"));
}

absl::Status SqliteModelStore::InsertAppend(const AppendOp& op,
                                            std::unordered_map<uint32_t, absl::Status>& open) {
  const char* what = op.is_update ? "update" : "task";
  auto known = open.find(op.round);
  if (known == open.end()) {
    absl::Status state = CheckRoundOpen(op.round);
    if (!state.ok() && !absl::IsFailedPrecondition(state)) return state;  // a storage error
    known = open.emplace(op.round, std::move(state)).first;
  }
  if (!known->second.ok()) {
    return WithContext(known->second,
                       absl::StrCat("cannot record the ", what, " of device '", op.device_id, "'"));
  }
  sqlite3* db = write_db_.get();
  Query query(db, op.is_update ? insert_update_.get() : insert_task_.get());
  RowCrc crc(op.is_update ? 'u' : 't');
  crc.Int(op.round).Bytes(op.device_id).Bytes(op.bytes).Int(op.ms);
  if (!op.is_update) {
    crc.Int(op.declared_samples);
    query.Int(6, op.declared_samples);
  }
  query.Int(1, op.round).Text(2, op.device_id).Blob(3, op.bytes).Int(4, op.ms).Int(5, crc.value());
  const int rc = query.Step();
  if (rc == SQLITE_DONE) return absl::OkStatus();
  if (IsDuplicateKey(rc)) {
    return absl::AlreadyExistsError(absl::StrCat("model store: round ", op.round, " already has a ",
                                                 what, " of device '", op.device_id, "'"));
  }
  return SqliteError(
      db, rc,
      absl::StrCat("recording the ", what, " of device '", op.device_id, "' in round ", op.round));
}

absl::StatusOr<RoundRecord> SqliteModelStore::ReadRound(uint32_t round) {
  sqlite3* db = write_db_.get();
  Query query(db, read_round_.get());
  query.Int(1, round);
  const int rc = query.Step();
  if (rc == SQLITE_DONE) {
    return absl::FailedPreconditionError(absl::StrCat("round ", round, " does not exist"));
  }
  if (rc != SQLITE_ROW) return SqliteError(db, rc, absl::StrCat("reading round ", round));
  absl::StatusOr<RoundRecord> record = RoundFromRow(db, query);
  if (record.ok() && record->round != round) {
    return Damaged(db, absl::StrCat("looking up round ", round, " found round ", record->round));
  }
  return record;
}

absl::Status SqliteModelStore::CheckRoundOpen(uint32_t round) {
  absl::StatusOr<RoundRecord> record = ReadRound(round);
  if (!record.ok()) return record.status();
  if (record->state != RoundState::kOpen) {
    return absl::FailedPreconditionError(absl::StrCat(
        "round ", round, " is ", StateName(static_cast<int64_t>(record->state)), ", not open"));
  }
  return absl::OkStatus();
}

absl::Status SqliteModelStore::CloseRoundRow(uint32_t round, RoundState state,
                                             int64_t closed_ms) {
  absl::StatusOr<RoundRecord> record = ReadRound(round);
  if (!record.ok()) return record.status();
  record->state = state;
  record->closed_ms = closed_ms;
  sqlite3* db = write_db_.get();
  absl::StatusOr<StatementPtr> stmt =
      Prepare(db, "UPDATE rounds SET state = ?2, closed_ms = ?3, crc = ?4 WHERE round = ?1");
  if (!stmt.ok()) return stmt.status();
  Query query(db, stmt->get());
  query.Int(1, round)
      .Int(2, static_cast<int64_t>(state))
      .Int(3, closed_ms)
      .Int(4, RoundCrc(*record));
  return query.Run(absl::StrCat("closing round ", round));
}

absl::StatusOr<std::optional<uint32_t>> SqliteModelStore::LatestVersionNumber() {
  sqlite3* db = write_db_.get();
  Query query(db, latest_version_.get());
  const int rc = query.Step();
  if (rc != SQLITE_ROW) return SqliteError(db, rc, "reading the latest version number");
  if (sqlite3_column_type(latest_version_.get(), 0) == SQLITE_NULL) {
    return std::optional<uint32_t>();
  }
  return std::optional<uint32_t>(static_cast<uint32_t>(query.ColumnInt(0)));
}

absl::Status SqliteModelStore::InsertVersion(const v1::ModelVersion& model,
                                             const std::string& serialized) {
  sqlite3* db = write_db_.get();
  Query query(db, insert_version_.get());
  query.Int(1, model.version())
      .Int(2, model.parent_version())
      .Int(3, model.round())
      .Int(4, model.checksum())
      .Int(5, model.created_unix_ms())
      .Blob(6, serialized)
      .Int(7, RowCrc('v')
                  .Int(model.version())
                  .Int(model.parent_version())
                  .Int(model.round())
                  .Int(model.checksum())
                  .Int(model.created_unix_ms())
                  .Bytes(serialized)
                  .value());
  const int rc = query.Step();
  if (rc == SQLITE_DONE) return absl::OkStatus();
  if (IsDuplicateKey(rc)) {
    return absl::AlreadyExistsError(
        absl::StrCat("model store: model version ", model.version(), " already exists"));
  }
  return SqliteError(db, rc, absl::StrCat("storing model version ", model.version()));
}

absl::StatusOr<bool> SqliteModelStore::InsertRevocation(const std::string& device_id,
                                                        int64_t revoked_unix_ms) {
  sqlite3* db = write_db_.get();
  // A second revocation keeps the first row, and with it the first time.
  absl::StatusOr<StatementPtr> stmt =
      Prepare(db,
              "INSERT INTO revocations(device_id, revoked_ms, crc) VALUES(?1, ?2, ?3) "
              "ON CONFLICT(device_id) DO NOTHING");
  if (!stmt.ok()) return stmt.status();
  Query query(db, stmt->get());
  query.Text(1, device_id).Int(2, revoked_unix_ms).Int(3, RevocationCrc(device_id,
                                                                       revoked_unix_ms));
  if (absl::Status s = query.Run(absl::StrCat("revoking device '", device_id, "'")); !s.ok()) {
    return s;
  }
  return sqlite3_changes(db) == 1;
}

absl::Status SqliteModelStore::AppendAudit(const AuditEntry& entry) {
  sqlite3* db = write_db_.get();
  absl::StatusOr<int64_t> last =
      QueryInt(db, "SELECT coalesce(max(id), 0) FROM audit_log", "reading the last audit id");
  if (!last.ok()) return last.status();
  AuditEntry stored = entry;
  stored.id = *last + 1;
  absl::StatusOr<StatementPtr> stmt = Prepare(
      db,
      "INSERT INTO audit_log(id, at_ms, actor, action, detail, crc) VALUES(?1, ?2, ?3, ?4, ?5, ?6)");
  if (!stmt.ok()) return stmt.status();
  Query query(db, stmt->get());
  query.Int(1, stored.id)
      .Int(2, stored.at_unix_ms)
      .Text(3, stored.actor)
      .Text(4, stored.action)
      .Text(5, stored.detail)
      .Int(6, AuditCrc(stored));
  return query.Run(absl::StrCat("recording the audit entry of a ", stored.action));
}

template <typename Body>
absl::Status SqliteModelStore::InTransaction(Body body) {
  sqlite3* db = write_db_.get();
  if (absl::Status s = Exec(db, "BEGIN IMMEDIATE"); !s.ok()) return s;
  absl::Status status = body();
  if (status.ok()) status = Exec(db, "COMMIT");
  if (!status.ok()) RollbackIfOpen(db);
  return status;
}

}  // namespace

absl::StatusOr<std::unique_ptr<ModelStore>> OpenSqliteModelStore(const std::string& path) {
  return SqliteModelStore::Open(path);
}

}  // namespace tinyfed::server
