// A closed-loop load generator for benchmarks: sends a
// list of pre-serialized requests to one unary gRPC method, each exactly
// once, keeping a fixed number of calls in flight. Calls go through
// grpc::GenericStub, so the generator's own work per call is the same
// whatever service answers, and the same bytes reach every server it is
// pointed at.
//
// A few client threads each drive their own completion queue and a share
// of the in-flight calls; no thread per call. RunUnaryLoad() is safe to
// call from one thread at a time; it blocks until every call finished.
#ifndef TINYFED_TESTS_BENCH_UNARY_LOAD_H_
#define TINYFED_TESTS_BENCH_UNARY_LOAD_H_

#include <grpcpp/grpcpp.h>

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace tinyfed::bench {

struct UnaryLoadOptions {
  int inflight = 64;                      // calls outstanding at any time (split over threads)
  int client_threads = 1;                 // threads driving completion queues
  std::chrono::seconds call_timeout{60};  // a stuck server fails a call, not the run
};

struct UnaryLoadResult {
  uint64_t ok = 0;
  uint64_t failed = 0;
  grpc::Status first_error;  // OK when nothing failed
  double seconds = 0;        // first call started -> last call finished
  std::chrono::steady_clock::time_point last_finished;
  std::vector<int64_t> latencies_ns;  // sorted, one per call
  // CPU time of the whole process (load generator and any in-process
  // server alike) while the calls ran, user plus system.
  double cpu_seconds = 0;

  double OkPerSecond() const { return seconds > 0 ? static_cast<double>(ok) / seconds : 0; }
  double CpuUsPerCall() const {
    return ok + failed > 0 ? cpu_seconds * 1e6 / static_cast<double>(ok + failed) : 0;
  }
  double CoresBusy() const { return seconds > 0 ? cpu_seconds / seconds : 0; }
  // Nearest-rank percentile in microseconds; `p` in (0, 100].
  double PercentileUs(double p) const;
};

// Sends requests[begin, end) to `method` ("/package.Service/Method"),
// spreading the calls in flight evenly over `channels` (one connection each
// when made by ConnectionPerChannel()).
// REQUIRES: 0 <= begin <= end <= requests.size(); options.inflight >= 1;
// channels not empty.
UnaryLoadResult RunUnaryLoad(const std::vector<std::shared_ptr<grpc::Channel>>& channels,
                             const std::string& method,
                             const std::vector<grpc::ByteBuffer>& requests, size_t begin,
                             size_t end, const UnaryLoadOptions& options);

// `count` channels to `target`, each with a connection of its own (gRPC
// would otherwise share one between channels with the same arguments), as
// `count` separate clients would have.
std::vector<std::shared_ptr<grpc::Channel>> ConnectionPerChannel(const std::string& target,
                                                                 int count);

// Several runs as one: their calls, failures, busy time and CPU time
// summed (the time between runs is not counted), latencies merged and
// sorted, the first error kept.
UnaryLoadResult Combine(const std::vector<UnaryLoadResult>& runs);

}  // namespace tinyfed::bench

#endif  // TINYFED_TESTS_BENCH_UNARY_LOAD_H_
