#include "coordinator_service.h"

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>

#include "absl/strings/str_cat.h"

namespace tinyfed::server {
namespace {

// Logs the refusal of a request (`what`: "update" for SubmitUpdate, which
// the manager also counts as the open round's rejected updates) with the
// peer and finishes the call with it.
void Refuse(RoundManager& manager, grpc::CallbackServerContext* context,
            grpc::ServerUnaryReactor* reactor, const absl::Status& status,
            std::string_view what = "request") {
  manager.LogRejected(what, context->peer(), status);
  reactor->Finish(ToGrpcStatus(status));
}

// RESOURCE_EXHAUSTED when the request is larger than `max_bytes`, naming
// the body's type, else OK.
absl::Status CheckSize(const grpc::ByteBuffer& bytes, uint32_t max_bytes,
                       absl::string_view body_type) {
  if (bytes.Length() <= max_bytes) return absl::OkStatus();
  return absl::ResourceExhaustedError(absl::StrCat(
      "the request (", bytes.Length(), " bytes) is larger than the ", max_bytes, " bytes a ",
      body_type, " can take for this server's head"));
}

// Counts a CheckIn or SubmitUpdate refused with `status`.
void CountRefusal(ServerMetrics* metrics, RequestType type, const absl::Status& status) {
  if (metrics == nullptr) return;
  if (type == RequestType::kCheckIn) {
    metrics->check_ins_refused.Add();
  } else {
    metrics->updates_rejected.Add(status.code());
  }
}

// Unwraps a SignedRequest carrying a `Message` of `type` into *message:
// size, authentication (or, without an authenticator, the envelope's parse
// alone), the body's parse, and the body's device id against the
// envelope's. On a refusal logs and counts it, finishes the call and
// returns false.
template <typename Message>
bool UnwrapOrRefuse(RoundManager& manager, const DeviceAuthenticator* auth,
                    ServerMetrics* metrics, RequestType type,
                    grpc::CallbackServerContext* context, grpc::ServerUnaryReactor* reactor,
                    const grpc::ByteBuffer& bytes, uint32_t max_bytes, Message* message) {
  auto refuse = [&](const absl::Status& status) {
    CountRefusal(metrics, type, status);
    Refuse(manager, context, reactor, status, type == RequestType::kUpdate ? "update" : "request");
  };
  if (absl::Status s = CheckSize(bytes, max_bytes, message->GetTypeName()); !s.ok()) {
    refuse(s);
    return false;
  }
  grpc::Slice slice;  // one contiguous copy only when gRPC holds several slices
  if (!bytes.DumpToSingleSlice(&slice).ok()) {
    refuse(absl::InternalError("could not read the request"));
    return false;
  }
  const std::string_view raw(reinterpret_cast<const char*>(slice.begin()), slice.size());
  absl::StatusOr<Authenticated> envelope;
  if (auth != nullptr) {
    envelope = auth->Authenticate(type, raw);
  } else {
    v1::SignedRequest unchecked;
    if (unchecked.ParseFromArray(raw.data(), static_cast<int>(raw.size()))) {
      envelope = Authenticated{std::move(*unchecked.mutable_device_id()),
                               std::move(*unchecked.mutable_body())};
    } else {
      envelope = absl::InvalidArgumentError("not a valid tinyfed.v1.SignedRequest");
    }
  }
  if (!envelope.ok()) {
    refuse(envelope.status());
    return false;
  }
  if (!message->ParseFromString(envelope->body)) {
    refuse(absl::InvalidArgumentError(absl::StrCat(
               "the signed body (", envelope->body.size(), " bytes) is not a valid ",
               message->GetTypeName(),
               ": not protobuf wire format, or a string field that is not UTF-8")));
    return false;
  }
  if (message->device_id() != envelope->device_id) {
    // The body's id is not echoed: nothing has checked that it is printable.
    refuse(absl::PermissionDeniedError(absl::StrCat(
               "the body's device id is not the envelope's (", envelope->device_id,
               "): a device's key vouches for its own id only")));
    return false;
  }
  return true;
}

// Parses a GetModelRequest from the request's bytes; like UnwrapOrRefuse,
// without an envelope.
bool ParseOrRefuse(RoundManager& manager, grpc::CallbackServerContext* context,
                   grpc::ServerUnaryReactor* reactor, const grpc::ByteBuffer& bytes,
                   uint32_t max_bytes, v1::GetModelRequest* message) {
  if (absl::Status s = CheckSize(bytes, max_bytes, message->GetTypeName()); !s.ok()) {
    Refuse(manager, context, reactor, s);
    return false;
  }
  grpc::ByteBuffer copy(bytes);  // shallow: Deserialize consumes its buffer
  if (grpc::SerializationTraits<v1::GetModelRequest>::Deserialize(&copy, message).ok()) {
    return true;
  }
  Refuse(manager, context, reactor,
         absl::InvalidArgumentError(absl::StrCat("the request (", bytes.Length(),
                                                 " bytes) is not a valid ",
                                                 message->GetTypeName(),
                                                 ": not protobuf wire format")));
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
  if (!UnwrapOrRefuse(*manager_, auth_, metrics_, RequestType::kCheckIn, context, reactor,
                      *request, limits_.check_in_bytes, &check_in)) {
    return reactor;
  }
  manager_->CheckIn(check_in, PeerKey(context->peer()),
                    [context, reactor, response,
                     metrics = metrics_](absl::StatusOr<v1::CheckInResponse> r) {
                      if (metrics != nullptr) {
                        if (!r.ok()) {
                          metrics->check_ins_refused.Add();
                        } else if (r->has_task()) {
                          metrics->check_ins_task.Add();
                        } else if (r->has_model()) {
                          metrics->check_ins_model.Add();
                        } else {
                          metrics->check_ins_retry_after.Add();
                        }
                      }
                      Answer(context, reactor, response, r);
                    });
  return reactor;
}

grpc::ServerUnaryReactor* CoordinatorService::SubmitUpdate(grpc::CallbackServerContext* context,
                                                           const grpc::ByteBuffer* request,
                                                           grpc::ByteBuffer* response) {
  grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
  // Monotonic: a wall-clock step must not show up as a slow acknowledgement.
  const auto arrived = std::chrono::steady_clock::now();
  // The manager reads the update until it answers: the callback owns it.
  auto update = std::make_shared<v1::Update>();
  if (!UnwrapOrRefuse(*manager_, auth_, metrics_, RequestType::kUpdate, context, reactor,
                      *request, limits_.update_bytes, update.get())) {
    return reactor;
  }
  const v1::Update& ref = *update;
  manager_->SubmitUpdate(ref, [context, reactor, response, owned = std::move(update),
                               metrics = metrics_, arrived](absl::StatusOr<v1::UpdateAck> r) {
    if (metrics != nullptr) {
      if (r.ok()) {
        metrics->updates_accepted.Add();
        metrics->ack_latency.Observe(absl::FromChrono(std::chrono::steady_clock::now() - arrived));
      } else {
        metrics->updates_rejected.Add(r.status().code());
      }
    }
    Answer(context, reactor, response, r);
  });
  return reactor;
}

grpc::ServerUnaryReactor* CoordinatorService::GetModel(grpc::CallbackServerContext* context,
                                                       const grpc::ByteBuffer* request,
                                                       grpc::ByteBuffer* response) {
  grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
  v1::GetModelRequest get;
  if (ParseOrRefuse(*manager_, context, reactor, *request, limits_.get_model_bytes, &get)) {
    Answer(context, reactor, response, manager_->GetModel(get.version()));
  }
  return reactor;
}

}  // namespace tinyfed::server
