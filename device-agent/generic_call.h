// One unary gRPC call with raw message bytes, through gRPC's generic API:
// how the agent forwards what a device encoded without re-encoding it.
// Safe for concurrent use (the stub is).
#ifndef TINYFED_DEVICE_AGENT_GENERIC_CALL_H_
#define TINYFED_DEVICE_AGENT_GENERIC_CALL_H_

#include <cstddef>
#include <cstdint>
#include <string>

#include <grpcpp/generic/generic_stub.h>
#include <grpcpp/grpcpp.h>

namespace tinyfed::agent {

inline constexpr char kCheckInMethod[] = "/tinyfed.v1.Coordinator/CheckIn";
inline constexpr char kSubmitUpdateMethod[] = "/tinyfed.v1.Coordinator/SubmitUpdate";

// Calls `method` with `request` bytes and waits (30 s deadline); on OK
// *response holds the reply's bytes.
grpc::Status CallWithBytes(grpc::GenericStub& stub, const char* method, const uint8_t* request,
                           size_t length, std::string* response);

// The status code's name as gRPC spells it ("UNAVAILABLE"), for messages
// people read; a code outside gRPC's set reads "gRPC status N". Wire
// formats that carry the number (the bridge's ERROR frame) keep the number.
std::string GrpcStatusName(grpc::StatusCode code);

// "NAME: message" (or "NAME" alone when the message is empty).
std::string DescribeGrpcStatus(const grpc::Status& status);

}  // namespace tinyfed::agent

#endif  // TINYFED_DEVICE_AGENT_GENERIC_CALL_H_
