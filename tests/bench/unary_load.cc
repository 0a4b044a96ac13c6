#include "unary_load.h"

#include <grpcpp/generic/generic_stub.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <thread>

#include "in_process_load.h"  // ProcessCpuSeconds

namespace tinyfed::bench {
namespace {

using Clock = std::chrono::steady_clock;

// One call slot: reused for the next request when its call finishes.
struct Slot {
  grpc::GenericStub* stub = nullptr;
  std::unique_ptr<grpc::ClientContext> context;
  std::unique_ptr<grpc::GenericClientAsyncResponseReader> reader;
  grpc::ByteBuffer response;
  grpc::Status status;
  Clock::time_point started;
};

// What one client thread saw.
struct ThreadResult {
  uint64_t ok = 0;
  uint64_t failed = 0;
  grpc::Status first_error;
  Clock::time_point last_finished{};
  std::vector<int64_t> latencies_ns;
};

class ClientThread {
 public:
  ClientThread(const std::vector<std::unique_ptr<grpc::GenericStub>>* stubs,
               size_t first_stub, const std::string* method,
               const std::vector<grpc::ByteBuffer>* requests, std::atomic<size_t>* next, size_t end,
               int slots, std::chrono::seconds timeout)
      : stubs_(stubs),
        method_(method),
        requests_(requests),
        next_(next),
        end_(end),
        slots_(static_cast<size_t>(slots)),
        timeout_(timeout) {
    // Slot i calls through stub first_stub + i (mod the count): the calls
    // in flight spread over the channels.
    for (size_t i = 0; i < slots_.size(); ++i) {
      slots_[i].stub = (*stubs_)[(first_stub + i) % stubs_->size()].get();
    }
    // Room for every call up front: no reallocation while timing.
    result_.latencies_ns.reserve(end - std::min(end, next->load()));
  }

  void Run() {
    int active = 0;
    for (Slot& slot : slots_) {
      if (Start(&slot)) ++active;
    }
    void* tag = nullptr;
    bool ok = false;
    while (active > 0 && cq_.Next(&tag, &ok)) {
      Slot* slot = static_cast<Slot*>(tag);
      const Clock::time_point now = Clock::now();
      result_.latencies_ns.push_back(
          std::chrono::duration_cast<std::chrono::nanoseconds>(now - slot->started).count());
      result_.last_finished = now;
      if (ok && slot->status.ok()) {
        ++result_.ok;
      } else {
        if (result_.failed++ == 0) {
          result_.first_error =
              ok ? slot->status
                 : grpc::Status(grpc::StatusCode::UNKNOWN, "completion queue said !ok");
        }
      }
      if (!Start(slot)) --active;
    }
    cq_.Shutdown();
    while (cq_.Next(&tag, &ok)) {
    }
  }

  ThreadResult& result() { return result_; }

 private:
  // Starts the next request on `slot`; false when none is left.
  bool Start(Slot* slot) {
    const size_t index = next_->fetch_add(1, std::memory_order_relaxed);
    if (index >= end_) return false;
    slot->context = std::make_unique<grpc::ClientContext>();
    slot->context->set_deadline(std::chrono::system_clock::now() + timeout_);
    slot->response.Clear();
    slot->started = Clock::now();
    slot->reader =
        slot->stub->PrepareUnaryCall(slot->context.get(), *method_, (*requests_)[index], &cq_);
    slot->reader->StartCall();
    slot->reader->Finish(&slot->response, &slot->status, slot);
    return true;
  }

  const std::vector<std::unique_ptr<grpc::GenericStub>>* const stubs_;
  const std::string* const method_;
  const std::vector<grpc::ByteBuffer>* const requests_;
  std::atomic<size_t>* const next_;
  const size_t end_;
  std::vector<Slot> slots_;
  const std::chrono::seconds timeout_;
  grpc::CompletionQueue cq_;
  ThreadResult result_;
};

}  // namespace

double UnaryLoadResult::PercentileUs(double p) const {
  if (latencies_ns.empty()) return 0;
  const double rank = std::ceil(p / 100.0 * static_cast<double>(latencies_ns.size()));
  const size_t index =
      std::min(latencies_ns.size() - 1, static_cast<size_t>(std::max(1.0, rank)) - 1);
  return static_cast<double>(latencies_ns[index]) / 1e3;
}

UnaryLoadResult RunUnaryLoad(const std::vector<std::shared_ptr<grpc::Channel>>& channels,
                             const std::string& method,
                             const std::vector<grpc::ByteBuffer>& requests, size_t begin,
                             size_t end, const UnaryLoadOptions& options) {
  std::vector<std::unique_ptr<grpc::GenericStub>> stubs;
  for (const auto& channel : channels) stubs.push_back(std::make_unique<grpc::GenericStub>(channel));
  std::atomic<size_t> next{begin};
  const int threads = std::max(1, options.client_threads);
  std::vector<std::unique_ptr<ClientThread>> clients;
  size_t first_stub = 0;
  for (int t = 0; t < threads; ++t) {
    // Spread the in-flight calls evenly; every thread gets at least one.
    const int slots = std::max(1, options.inflight / threads + (t < options.inflight % threads));
    clients.push_back(std::make_unique<ClientThread>(&stubs, first_stub, &method, &requests, &next,
                                                     end, slots, options.call_timeout));
    first_stub += static_cast<size_t>(slots);
  }
  const double cpu_before = ProcessCpuSeconds();
  const Clock::time_point started = Clock::now();
  std::vector<std::thread> running;
  for (auto& client : clients) running.emplace_back([c = client.get()] { c->Run(); });
  for (std::thread& t : running) t.join();

  UnaryLoadResult result;
  result.cpu_seconds = ProcessCpuSeconds() - cpu_before;
  result.last_finished = started;
  for (auto& client : clients) {
    ThreadResult& r = client->result();
    result.ok += r.ok;
    if (r.failed > 0 && result.failed == 0) result.first_error = r.first_error;
    result.failed += r.failed;
    result.last_finished = std::max(result.last_finished, r.last_finished);
    result.latencies_ns.insert(result.latencies_ns.end(), r.latencies_ns.begin(),
                               r.latencies_ns.end());
  }
  result.seconds = std::chrono::duration<double>(result.last_finished - started).count();
  std::sort(result.latencies_ns.begin(), result.latencies_ns.end());
  return result;
}

std::vector<std::shared_ptr<grpc::Channel>> ConnectionPerChannel(const std::string& target,
                                                                 int count) {
  std::vector<std::shared_ptr<grpc::Channel>> channels;
  for (int i = 0; i < count; ++i) {
    grpc::ChannelArguments args;
    args.SetInt(GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, 1);
    channels.push_back(
        grpc::CreateCustomChannel(target, grpc::InsecureChannelCredentials(), args));
  }
  return channels;
}

UnaryLoadResult Combine(const std::vector<UnaryLoadResult>& runs) {
  UnaryLoadResult all;
  for (const UnaryLoadResult& run : runs) {
    if (run.failed > 0 && all.failed == 0) all.first_error = run.first_error;
    all.ok += run.ok;
    all.failed += run.failed;
    all.seconds += run.seconds;
    all.cpu_seconds += run.cpu_seconds;
    all.last_finished = std::max(all.last_finished, run.last_finished);
    all.latencies_ns.insert(all.latencies_ns.end(), run.latencies_ns.begin(),
                            run.latencies_ns.end());
  }
  std::sort(all.latencies_ns.begin(), all.latencies_ns.end());
  return all;
}

}  // namespace tinyfed::bench
