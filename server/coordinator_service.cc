#include "coordinator_service.h"

#include <cstdint>
#include <optional>
#include <string>
#include <utility>

#include "absl/strings/str_cat.h"

namespace tinyfed::server {
namespace {

// Parses the request's bytes into *message. When they are more than
// `max_bytes`, or not a Message, logs the rejection with the peer, finishes
// the call with RESOURCE_EXHAUSTED or INVALID_ARGUMENT naming the type, and
// returns false.
template <typename Message>
bool ParseOrReject(RoundManager& manager, grpc::CallbackServerContext* context,
                   grpc::ServerUnaryReactor* reactor, const grpc::ByteBuffer& bytes,
                   uint32_t max_bytes, Message* message) {
  if (bytes.Length() > max_bytes) {
    const absl::Status status = absl::ResourceExhaustedError(absl::StrCat(
        "the request (", bytes.Length(), " bytes) is larger than the ", max_bytes, " bytes a ",
        message->GetTypeName(), " can take for this server's head"));
    manager.LogRejected("request", context->peer(), status);
    reactor->Finish(ToGrpcStatus(status));
    return false;
  }
  grpc::ByteBuffer copy(bytes);  // shallow: Deserialize consumes its buffer
  if (grpc::SerializationTraits<Message>::Deserialize(&copy, message).ok()) return true;
  const absl::Status status = absl::InvalidArgumentError(
      absl::StrCat("the request (", bytes.Length(), " bytes) is not a valid ",
                   message->GetTypeName(),
                   ": not protobuf wire format, or a string field that is not UTF-8"));
  manager.LogRejected("request", context->peer(), status);
  reactor->Finish(ToGrpcStatus(status));
  return false;
}

// Finishes the call with `result`: the value as the response, or the error
// with its retry hint as trailing metadata.
template <typename T>
void Answer(grpc::CallbackServerContext* context, grpc::ServerUnaryReactor* reactor,
            grpc::ByteBuffer* response, const absl::StatusOr<T>& result) {
  if (result.ok()) {
    bool own_buffer = false;
    reactor->Finish(grpc::SerializationTraits<T>::Serialize(*result, response, &own_buffer));
    return;
  }
  if (std::optional<uint32_t> ms = RetryAfterMs(result.status())) {
    context->AddTrailingMetadata(kRetryAfterMetadata, absl::StrCat(*ms));
  }
  reactor->Finish(ToGrpcStatus(result.status()));
}

}  // namespace

grpc::Status ToGrpcStatus(const absl::Status& status) {
  if (status.ok()) return grpc::Status::OK;
  // absl::StatusCode and grpc::StatusCode share their numbering.
  return grpc::Status(static_cast<grpc::StatusCode>(status.code()), std::string(status.message()));
}

// The handlers answer through gRPC's default reactor, which gRPC can finish
// without a thread hop; a reactor of our own would cost one per call.

grpc::ServerUnaryReactor* CoordinatorService::CheckIn(grpc::CallbackServerContext* context,
                                                      const grpc::ByteBuffer* request,
                                                      grpc::ByteBuffer* response) {
  grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
  v1::CheckInRequest check_in;  // the manager keeps nothing of it
  if (!ParseOrReject(*manager_, context, reactor, *request, limits_.check_in_bytes, &check_in)) {
    return reactor;
  }
  manager_->CheckIn(check_in, PeerKey(context->peer()),
                    [context, reactor, response](absl::StatusOr<v1::CheckInResponse> r) {
                      Answer(context, reactor, response, r);
                    });
  return reactor;
}

grpc::ServerUnaryReactor* CoordinatorService::SubmitUpdate(grpc::CallbackServerContext* context,
                                                           const grpc::ByteBuffer* request,
                                                           grpc::ByteBuffer* response) {
  grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
  // The manager reads the update until it answers: the callback owns it.
  auto update = std::make_shared<v1::Update>();
  if (!ParseOrReject(*manager_, context, reactor, *request, limits_.update_bytes,
                     update.get())) {
    return reactor;
  }
  const v1::Update& ref = *update;
  manager_->SubmitUpdate(ref, [context, reactor, response, owned = std::move(update)](
                                  absl::StatusOr<v1::UpdateAck> r) {
    Answer(context, reactor, response, r);
  });
  return reactor;
}

grpc::ServerUnaryReactor* CoordinatorService::GetModel(grpc::CallbackServerContext* context,
                                                       const grpc::ByteBuffer* request,
                                                       grpc::ByteBuffer* response) {
  grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
  v1::GetModelRequest get;
  if (ParseOrReject(*manager_, context, reactor, *request, limits_.get_model_bytes, &get)) {
    Answer(context, reactor, response, manager_->GetModel(get.version()));
  }
  return reactor;
}

}  // namespace tinyfed::server
