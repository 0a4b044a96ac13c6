// The baselines of the ingest benchmark.
//
// EchoCoordinator: a Coordinator whose SubmitUpdate acknowledges at once
// with an empty ack. gRPC still receives, parses (the SignedRequest, not
// the body inside it) and answers every call,
// so the server path's figures are measured against exactly what gRPC
// itself costs.
//
// HeldEchoCoordinator: the same empty ack, but answered the way a server
// that acknowledges only durable writes must answer: the handler returns
// without finishing, and another thread finishes the calls gathered while
// it waited, `hold` later. It does no other work, so its rate against the
// plain echo is the most any such server can reach when each ack waits
// about `hold` for its group commit: it separates what holding calls costs
// gRPC from what the server's own work costs.
//
// Both are safe for concurrent use.
#ifndef TINYFED_TESTS_BENCH_ECHO_SERVICE_H_
#define TINYFED_TESTS_BENCH_ECHO_SERVICE_H_

#include <grpcpp/grpcpp.h>

#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "tinyfed/v1/coordinator.grpc.pb.h"

namespace tinyfed::bench {

class EchoCoordinator final : public v1::Coordinator::CallbackService {
 public:
  grpc::ServerUnaryReactor* SubmitUpdate(grpc::CallbackServerContext* context,
                                         const v1::SignedRequest* /*request*/,
                                         v1::UpdateAck* /*response*/) override {
    grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
    reactor->Finish(grpc::Status::OK);
    return reactor;
  }
};

class HeldEchoCoordinator final : public v1::Coordinator::CallbackService {
 public:
  explicit HeldEchoCoordinator(absl::Duration hold)
      : hold_(hold), finisher_([this] { FinishLoop(); }) {}

  ~HeldEchoCoordinator() override {
    {
      absl::MutexLock lock(&mu_);
      stopping_ = true;
    }
    finisher_.join();  // finishes whatever is still held first
  }

  grpc::ServerUnaryReactor* SubmitUpdate(grpc::CallbackServerContext* context,
                                         const v1::SignedRequest* /*request*/,
                                         v1::UpdateAck* /*response*/) override {
    grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
    absl::MutexLock lock(&mu_);
    held_.push_back(reactor);
    return reactor;
  }

 private:
  bool HasWorkOrStopping() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    return !held_.empty() || stopping_;
  }

  // Like a group-commit writer: takes every call gathered so far, "writes"
  // them for `hold_`, answers them all, and starts over.
  void FinishLoop() {
    std::vector<grpc::ServerUnaryReactor*> batch;
    while (true) {
      {
        absl::MutexLock lock(&mu_);
        mu_.Await(absl::Condition(this, &HeldEchoCoordinator::HasWorkOrStopping));
        if (held_.empty()) return;  // stopping, and nothing is held
        batch.swap(held_);
      }
      absl::SleepFor(hold_);
      for (grpc::ServerUnaryReactor* reactor : batch) reactor->Finish(grpc::Status::OK);
      batch.clear();
    }
  }

  const absl::Duration hold_;
  absl::Mutex mu_;
  std::vector<grpc::ServerUnaryReactor*> held_ ABSL_GUARDED_BY(mu_);
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  std::thread finisher_;  // last: starts once the members above exist
};

}  // namespace tinyfed::bench

#endif  // TINYFED_TESTS_BENCH_ECHO_SERVICE_H_
