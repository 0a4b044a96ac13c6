// A closed-loop driver for asynchronous in-process operations (a
// RoundManager or a ModelStore without gRPC in front): keeps a fixed number
// of operations outstanding, starting the next one from the driving thread
// as soon as one finishes, the way gRPC threads would.
//
// RunInProcess() blocks until every operation finished; call it from one
// thread at a time. `start` runs on the calling thread; the completion it
// is handed may run on any thread, exactly once per operation.
#ifndef TINYFED_TESTS_BENCH_IN_PROCESS_LOAD_H_
#define TINYFED_TESTS_BENCH_IN_PROCESS_LOAD_H_

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <string>

#include "absl/functional/function_ref.h"
#include "absl/status/status.h"

namespace tinyfed::bench {

struct InProcessResult {
  uint64_t ok = 0;
  uint64_t failed = 0;
  std::string first_error;  // empty when nothing failed
  double seconds = 0;       // first start -> last completion
  double cpu_seconds = 0;   // whole process, user plus system
  std::chrono::steady_clock::time_point last_finished;

  double OkPerSecond() const { return seconds > 0 ? static_cast<double>(ok) / seconds : 0; }
  double CpuUsPerOp() const {
    return ok + failed > 0 ? cpu_seconds * 1e6 / static_cast<double>(ok + failed) : 0;
  }
};

using Completion = std::function<void(const absl::Status&)>;

// Runs operations 0..count-1 with `inflight` outstanding.
// REQUIRES: inflight >= 1.
InProcessResult RunInProcess(size_t count, int inflight,
                             absl::FunctionRef<void(size_t index, Completion done)> start);

// CPU time of this process so far, user plus system, in seconds.
double ProcessCpuSeconds();

}  // namespace tinyfed::bench

#endif  // TINYFED_TESTS_BENCH_IN_PROCESS_LOAD_H_
