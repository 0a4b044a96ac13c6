#include "in_process_load.h"

#include <sys/resource.h>

#include <algorithm>

#include "absl/synchronization/mutex.h"

namespace tinyfed::bench {

double ProcessCpuSeconds() {
  rusage usage{};
  getrusage(RUSAGE_SELF, &usage);
  auto seconds = [](const timeval& t) {
    return static_cast<double>(t.tv_sec) + static_cast<double>(t.tv_usec) / 1e6;
  };
  return seconds(usage.ru_utime) + seconds(usage.ru_stime);
}

InProcessResult RunInProcess(size_t count, int inflight,
                             absl::FunctionRef<void(size_t index, Completion done)> start) {
  struct Shared {
    absl::Mutex mu;
    size_t free_slots ABSL_GUARDED_BY(mu) = 0;
    size_t finished ABSL_GUARDED_BY(mu) = 0;
    InProcessResult result ABSL_GUARDED_BY(mu);
  } shared;
  {
    absl::MutexLock lock(&shared.mu);
    shared.free_slots = static_cast<size_t>(std::max(1, inflight));
  }
  const double cpu_before = ProcessCpuSeconds();
  const auto started = std::chrono::steady_clock::now();
  for (size_t i = 0; i < count; ++i) {
    {
      absl::MutexLock lock(&shared.mu);
      shared.mu.Await(absl::Condition(
          +[](size_t* free_slots) { return *free_slots > 0; }, &shared.free_slots));
      --shared.free_slots;
    }
    start(i, [&shared](const absl::Status& status) {
      const auto now = std::chrono::steady_clock::now();
      absl::MutexLock lock(&shared.mu);
      InProcessResult& r = shared.result;
      if (status.ok()) {
        ++r.ok;
      } else if (r.failed++ == 0) {
        r.first_error = status.ToString();
      }
      r.last_finished = std::max(r.last_finished, now);
      ++shared.free_slots;
      ++shared.finished;
    });
  }
  absl::MutexLock lock(&shared.mu);
  struct AllDone {
    const size_t* finished;
    size_t count;
    bool operator()() const { return *finished == count; }
  } all_done{&shared.finished, count};
  shared.mu.Await(absl::Condition(&all_done));
  InProcessResult result = shared.result;
  result.cpu_seconds = ProcessCpuSeconds() - cpu_before;
  result.seconds = std::chrono::duration<double>(result.last_finished - started).count();
  return result;
}

}  // namespace tinyfed::bench
