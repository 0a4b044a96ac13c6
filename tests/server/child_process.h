// A program run by a test as a separate process (tinyfed-server,
// tinyfed-agent), with its stdout and stderr in one log file, and a free
// loopback port to give it. Requires external synchronization.
#ifndef TINYFED_TESTS_SERVER_CHILD_PROCESS_H_
#define TINYFED_TESTS_SERVER_CHILD_PROCESS_H_

#include <sys/types.h>

#include <chrono>
#include <optional>
#include <string>
#include <vector>

namespace tinyfed::server::testing {

// A TCP port on 127.0.0.1 that was free a moment ago.
int FreeLoopbackPort();

class ChildProcess {
 public:
  // Starts `argv` (argv[0] is the program's path) with both output streams
  // appended to `log_path`.
  ChildProcess(std::vector<std::string> argv, std::string log_path);
  // Kills the process (SIGKILL) if it still runs.
  ~ChildProcess();
  ChildProcess(const ChildProcess&) = delete;
  ChildProcess& operator=(const ChildProcess&) = delete;

  pid_t pid() const { return pid_; }
  // The exit status when the process exits within `timeout`; nullopt when
  // it is still running then, or was ended by a signal (-signal returned).
  std::optional<int> WaitExit(std::chrono::milliseconds timeout);
  // SIGTERM, then the wait; the exit status (or -signal).
  int Stop();
  // Everything the process has written so far.
  std::string Log() const;
  // Waits until Log() contains `text`; false after `timeout`.
  bool WaitForLog(const std::string& text, std::chrono::milliseconds timeout) const;

 private:
  std::string log_path_;
  pid_t pid_ = -1;
};

}  // namespace tinyfed::server::testing

#endif  // TINYFED_TESTS_SERVER_CHILD_PROCESS_H_
