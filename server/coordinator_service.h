// The gRPC edge of the server: the Coordinator service on gRPC's callback
// API. Handlers never block a gRPC thread on storage: they hand the request
// to the RoundManager and finish the call from its completion callback.
// absl::Status codes map one to one onto gRPC codes; a retry hint travels
// as trailing metadata "tinyfed-retry-after-ms".
//
// The methods take the request's raw bytes and parse them here, so that
// bytes that are not the method's message get INVALID_ARGUMENT with a
// message (gRPC's generated handlers answer UNIMPLEMENTED, with none).
// Before parsing, each method compares the request's length with its own
// bound (RequestLimits): a larger one is answered RESOURCE_EXHAUSTED, the
// code gRPC itself gives a message above the server-wide receive limit, so
// a client sees one code for "too large" whichever bound it crossed. The
// parser never sees it, so a request padded with unknown fields costs no
// more than its bytes.
//
// CheckIn passes the caller's address without its port (PeerKey of
// context->peer()) to the RoundManager, whose check-in limits count per
// peer.
//
// Safe for concurrent use; the RoundManager must outlive the service.
#ifndef TINYFED_SERVER_COORDINATOR_SERVICE_H_
#define TINYFED_SERVER_COORDINATOR_SERVICE_H_

#include <grpcpp/grpcpp.h>

#include "absl/status/status.h"
#include "round_manager.h"
#include "server_config.h"
#include "tinyfed/v1/coordinator.grpc.pb.h"

namespace tinyfed::server {

inline constexpr char kRetryAfterMetadata[] = "tinyfed-retry-after-ms";

// The gRPC status for an absl::Status: same code and message.
grpc::Status ToGrpcStatus(const absl::Status& status);

class CoordinatorService final
    : public v1::Coordinator::WithRawCallbackMethod_CheckIn<
          v1::Coordinator::WithRawCallbackMethod_SubmitUpdate<
              v1::Coordinator::WithRawCallbackMethod_GetModel<v1::Coordinator::Service>>> {
 public:
  CoordinatorService(RoundManager* manager, RequestLimits limits)
      : manager_(manager), limits_(limits) {}

  grpc::ServerUnaryReactor* CheckIn(grpc::CallbackServerContext* context,
                                    const grpc::ByteBuffer* request,
                                    grpc::ByteBuffer* response) override;
  grpc::ServerUnaryReactor* SubmitUpdate(grpc::CallbackServerContext* context,
                                         const grpc::ByteBuffer* request,
                                         grpc::ByteBuffer* response) override;
  grpc::ServerUnaryReactor* GetModel(grpc::CallbackServerContext* context,
                                     const grpc::ByteBuffer* request,
                                     grpc::ByteBuffer* response) override;

 private:
  RoundManager* const manager_;
  const RequestLimits limits_;
};

}  // namespace tinyfed::server

#endif  // TINYFED_SERVER_COORDINATOR_SERVICE_H_
