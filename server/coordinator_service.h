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
// CheckIn and SubmitUpdate take a SignedRequest (coordinator.proto). After
// the size check, in this order: the DeviceAuthenticator checks the
// envelope (its codes: INVALID_ARGUMENT, UNAUTHENTICATED,
// PERMISSION_DENIED); the body must parse as the method's message
// (INVALID_ARGUMENT); the body's device id must be the envelope's
// (PERMISSION_DENIED: a device's key vouches for its own id only). Only
// then does the RoundManager see the request, so a request refused by any
// of these records nothing, spends no check-in limit and gets no task.
// Refusals go to the RoundManager's rate-limited rejection log with the
// caller's address, never with key or tag bytes.
//
// CheckIn passes the caller's address without its port (PeerKey of
// context->peer()) to the RoundManager, whose check-in limits count per
// peer.
//
// With a ServerMetrics, every CheckIn and SubmitUpdate answer is counted
// there (refusals at the edge too, by code) and each acknowledged update's
// latency observed, from the handler's entry to its OK answer.
//
// Safe for concurrent use; the RoundManager, the DeviceAuthenticator and
// the ServerMetrics must outlive the service.
#ifndef TINYFED_SERVER_COORDINATOR_SERVICE_H_
#define TINYFED_SERVER_COORDINATOR_SERVICE_H_

#include <grpcpp/grpcpp.h>

#include "absl/status/status.h"
#include "device_auth.h"
#include "metrics.h"
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
  // `auth` checks every CheckIn and SubmitUpdate. nullptr turns
  // authentication off: the envelope is unwrapped and its tag not looked
  // at, so anyone can act as any device. It exists only as the ingest
  // benchmark's baseline (what authentication costs); tinyfed-server and
  // InProcessServer always pass an authenticator. `metrics` may be null
  // (nothing counted).
  CoordinatorService(RoundManager* manager, const DeviceAuthenticator* auth,
                     RequestLimits limits, ServerMetrics* metrics = nullptr)
      : manager_(manager), auth_(auth), limits_(limits), metrics_(metrics) {}

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
  const DeviceAuthenticator* const auth_;
  const RequestLimits limits_;
  ServerMetrics* const metrics_;
};

}  // namespace tinyfed::server

#endif  // TINYFED_SERVER_COORDINATOR_SERVICE_H_
