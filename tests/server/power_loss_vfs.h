// Power loss for SQLite, simulated the way LevelDB's fault-injection Env
// does it: whatever was written to a file and not followed by a sync of
// that file is gone after the loss.
//
// PowerLossVfs is a SQLite VFS that wraps the process's default VFS (unix
// on Linux) and registers itself as the new default, so code that opens
// its database with sqlite3_open_v2(..., nullptr) goes through it without
// being told. Every call passes through to the real files, so the code
// under test sees an ordinary file system, with two exceptions:
// - xSync is recorded and NOT performed. What survives a loss is decided
//   from the log below, never by the disk, so a real fsync would only make
//   the test slow. It also means that a database opened through the shim
//   is not durable for real: use it for test files only.
// - Shared memory (xShm*) passes through untouched and is never part of a
//   durable image: the -shm file is memory, it does not survive a reboot,
//   and SQLite rebuilds it from the WAL on the next open.
// Files are wrapped rather than kept in memory so that SQLite's own file
// locking and shared memory, which its WAL mode needs across the store's
// two connections, work exactly as in production.
//
// For files under the watched directory, each write (with its bytes),
// truncate, sync and delete is appended to one log, under one mutex that
// is also held while the real call runs, so the log order is the order in
// which the file system saw the calls. The test appends its own marks
// (an acknowledgement, say) to the same log, so "acknowledged before the
// loss" and "synced before the loss" are read off one sequence.
//
// DurableImage replays such a log: the image at loss point p (the first p
// events happened, none after) holds, for each file, the effect of those
// writes and truncates of its events before p that a sync of the same
// file followed before p. A file exists in the image once it has been
// synced. A delete is durable at once: SQLite deletes only files whose
// contents it no longer needs (a checkpointed WAL, a committed journal),
// and dropping the file at once is the harsher choice: what the WAL held
// then survives only if the checkpoint before the delete synced it into
// the database file.
// Losses are whole-write: a write is never torn (sectors are atomic, as
// SQLite's default VFS claims with POWERSAFE_OVERWRITE); torn and
// truncated files are a separate test.
#ifndef TINYFED_TESTS_SERVER_POWER_LOSS_VFS_H_
#define TINYFED_TESTS_SERVER_POWER_LOSS_VFS_H_

#include <sqlite3.h>

#include <cstddef>
#include <cstdint>
#include <map>
#include <mutex>
#include <string>
#include <unordered_map>
#include <vector>

namespace tinyfed::server::testing {

// One entry of PowerLossVfs's log.
struct VfsEvent {
  enum class Kind { kWrite, kTruncate, kSync, kDelete, kMark };
  Kind kind = Kind::kMark;
  std::string file;    // relative to the watched directory; empty for kMark
  int64_t offset = 0;  // kWrite: where the bytes go; kTruncate: the new size
  std::string data;    // kWrite: the bytes
  uint64_t tag = 0;    // kMark: the caller's tag
};

// True for the events that change what a power loss leaves behind.
inline bool ChangesDurableImage(const VfsEvent& event) {
  return event.kind == VfsEvent::Kind::kSync || event.kind == VfsEvent::Kind::kDelete;
}

// Safe for concurrent use. At most one instance may exist at a time.
class PowerLossVfs {
 public:
  // Installs the shim as the default VFS, recording the files under `dir`
  // (which must exist; its canonical path is used).
  explicit PowerLossVfs(const std::string& dir);
  // Restores the previous default VFS.
  // REQUIRES: every connection opened through the shim is closed.
  ~PowerLossVfs();
  PowerLossVfs(const PowerLossVfs&) = delete;
  PowerLossVfs& operator=(const PowerLossVfs&) = delete;

  // Appends a mark with the caller's `tag` to the log; returns its index.
  size_t Mark(uint64_t tag);
  // A copy of the log so far, and its length.
  std::vector<VfsEvent> Log() const;
  size_t LogSize() const;

 private:
  struct File;  // the sqlite3_file the shim hands to SQLite

  // The name relative to the watched directory, or empty when `path` is
  // not in it (or null: a temporary file).
  std::string Watched(const char* path) const;
  // Appends to the log and runs `call` (the real operation) under mu_.
  template <typename Call>
  int Record(VfsEvent event, Call call);

  // The real VFS's file inside one of ours.
  static sqlite3_file* RealOf(sqlite3_file* file);
  static int Open(sqlite3_vfs* vfs, sqlite3_filename name, sqlite3_file* file, int flags,
                  int* out_flags);
  static int Delete(sqlite3_vfs* vfs, const char* name, int sync_dir);
  static int Close(sqlite3_file* file);
  static int Write(sqlite3_file* file, const void* data, int amount, sqlite3_int64 offset);
  static int Truncate(sqlite3_file* file, sqlite3_int64 size);
  static int Sync(sqlite3_file* file, int flags);

  std::string dir_;  // canonical, with a trailing '/'
  sqlite3_vfs* real_;
  sqlite3_vfs vfs_;
  sqlite3_io_methods methods_;
  mutable std::mutex mu_;
  std::vector<VfsEvent> log_;  // guarded by mu_
};

// The files a power loss leaves behind, at loss points moving forward
// through a log. Requires external synchronization; `log` must outlive it.
class DurableImage {
 public:
  explicit DurableImage(const std::vector<VfsEvent>* log);

  // Moves the loss point to `point`: events [0, point) happened.
  // REQUIRES: point() <= `point` <= log size.
  void AdvanceTo(size_t point);
  size_t point() const { return point_; }

  // Name (relative) -> contents of each file that exists in the image.
  const std::map<std::string, std::string>& files() const { return durable_; }
  // Writes every file of the image into the existing directory `dir`;
  // false when a file cannot be written.
  bool WriteTo(const std::string& dir) const;

 private:
  const std::vector<VfsEvent>* log_;
  size_t point_ = 0;
  std::map<std::string, std::string> durable_;
  // Per file, the indices of its writes and truncates since its last sync.
  std::unordered_map<std::string, std::vector<size_t>> pending_;
};

}  // namespace tinyfed::server::testing

#endif  // TINYFED_TESTS_SERVER_POWER_LOSS_VFS_H_
