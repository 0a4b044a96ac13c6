// The baseline of the ingest benchmark: a Coordinator whose SubmitUpdate
// acknowledges at once with an empty ack. gRPC still receives, parses and
// answers every call, so the server path's figures are measured against
// exactly what gRPC itself costs. Safe for concurrent use.
#ifndef TINYFED_TESTS_BENCH_ECHO_SERVICE_H_
#define TINYFED_TESTS_BENCH_ECHO_SERVICE_H_

#include <grpcpp/grpcpp.h>

#include "tinyfed/v1/coordinator.grpc.pb.h"

namespace tinyfed::bench {

class EchoCoordinator final : public v1::Coordinator::CallbackService {
 public:
  grpc::ServerUnaryReactor* SubmitUpdate(grpc::CallbackServerContext* context,
                                         const v1::Update* /*request*/,
                                         v1::UpdateAck* /*response*/) override {
    grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
    reactor->Finish(grpc::Status::OK);
    return reactor;
  }
};

}  // namespace tinyfed::bench

#endif  // TINYFED_TESTS_BENCH_ECHO_SERVICE_H_
