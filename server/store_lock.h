// One tinyfed-server per store: an exclusive lock on `<db>.lock`, taken
// before the store is opened and held for the life of the process.
//
// The lock is flock(2) on the open file, so the kernel releases it when the
// process ends however it ends (SIGKILL and power loss included): a lock
// file left behind by a dead server is never stale, and the next server on
// the store takes it at once. The file holds the holder's pid in decimal,
// so that a refused server can say who has the store. Not safe for
// concurrent use; one StoreLock per process and store.
#ifndef TINYFED_SERVER_STORE_LOCK_H_
#define TINYFED_SERVER_STORE_LOCK_H_

#include <memory>
#include <string>

#include "absl/status/statusor.h"

namespace tinyfed::server {

class StoreLock {
 public:
  // The lock file's path for the store at `db_path`.
  static std::string PathFor(const std::string& db_path);

  // Takes the lock on PathFor(db_path), creating the file (mode 0600) if
  // needed, without waiting. FAILED_PRECONDITION naming the holder's pid
  // when another process holds it; UNAVAILABLE when the file cannot be
  // opened, locked or written.
  static absl::StatusOr<std::unique_ptr<StoreLock>> Acquire(const std::string& db_path);

  // Releases the lock. The file stays: removing it would let a server that
  // opened it just before take a lock on a file nobody else sees.
  ~StoreLock();
  StoreLock(const StoreLock&) = delete;
  StoreLock& operator=(const StoreLock&) = delete;

 private:
  explicit StoreLock(int fd) : fd_(fd) {}
  int fd_;
};

}  // namespace tinyfed::server

#endif  // TINYFED_SERVER_STORE_LOCK_H_
