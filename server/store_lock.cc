#include "store_lock.h"

#include <fcntl.h>
#include <sys/file.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"

namespace tinyfed::server {
namespace {

// The pid the holder wrote, or "unknown" when it has not written it yet (it
// takes the lock first) or the file was altered.
std::string HolderPid(int fd) {
  char text[32] = {};
  const ssize_t n = pread(fd, text, sizeof(text) - 1, 0);
  int pid = 0;
  if (n <= 0 || !absl::SimpleAtoi(absl::StripAsciiWhitespace(std::string(text, n)), &pid) ||
      pid <= 0) {
    return "unknown";
  }
  return std::to_string(pid);
}

}  // namespace

std::string StoreLock::PathFor(const std::string& db_path) { return db_path + ".lock"; }

absl::StatusOr<std::unique_ptr<StoreLock>> StoreLock::Acquire(const std::string& db_path) {
  const std::string path = PathFor(db_path);
  const int fd = open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600);
  if (fd < 0) {
    return absl::UnavailableError(absl::StrCat("cannot open the lock file ", path, ": ",
                                               std::strerror(errno)));
  }
  if (flock(fd, LOCK_EX | LOCK_NB) != 0) {
    const int error = errno;
    std::string message =
        error == EWOULDBLOCK
            ? absl::StrCat("the store is in use by another tinyfed-server (pid ", HolderPid(fd),
                           ", lock ", path, "); one server per store")
            : absl::StrCat("cannot lock ", path, ": ", std::strerror(error));
    close(fd);
    if (error == EWOULDBLOCK) return absl::FailedPreconditionError(message);
    return absl::UnavailableError(message);
  }
  const std::string pid = absl::StrCat(getpid(), "\n");
  if (ftruncate(fd, 0) != 0 ||
      pwrite(fd, pid.data(), pid.size(), 0) != static_cast<ssize_t>(pid.size())) {
    const int error = errno;
    close(fd);
    return absl::UnavailableError(absl::StrCat("cannot write ", path, ": ", std::strerror(error)));
  }
  return std::unique_ptr<StoreLock>(new StoreLock(fd));
}

StoreLock::~StoreLock() { close(fd_); }

}  // namespace tinyfed::server
