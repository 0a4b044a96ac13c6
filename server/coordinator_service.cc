#include "coordinator_service.h"

#include <string>
#include <utility>

#include "absl/strings/str_cat.h"

namespace tinyfed::server {
namespace {

// Finishes `reactor` with `result`: the value into *response, or the error
// with its retry hint as trailing metadata.
template <typename T>
void Finish(grpc::CallbackServerContext* context, grpc::ServerUnaryReactor* reactor,
            T* response, absl::StatusOr<T> result) {
  if (result.ok()) {
    *response = std::move(*result);
    reactor->Finish(grpc::Status::OK);
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

grpc::ServerUnaryReactor* CoordinatorService::CheckIn(grpc::CallbackServerContext* context,
                                                      const v1::CheckInRequest* request,
                                                      v1::CheckInResponse* response) {
  grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
  manager_->CheckIn(*request, [context, reactor, response](absl::StatusOr<v1::CheckInResponse> r) {
    Finish(context, reactor, response, std::move(r));
  });
  return reactor;
}

grpc::ServerUnaryReactor* CoordinatorService::SubmitUpdate(grpc::CallbackServerContext* context,
                                                           const v1::Update* request,
                                                           v1::UpdateAck* response) {
  grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
  manager_->SubmitUpdate(*request, [context, reactor, response](absl::StatusOr<v1::UpdateAck> r) {
    Finish(context, reactor, response, std::move(r));
  });
  return reactor;
}

grpc::ServerUnaryReactor* CoordinatorService::GetModel(grpc::CallbackServerContext* context,
                                                       const v1::GetModelRequest* request,
                                                       v1::ModelVersion* response) {
  grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
  Finish(context, reactor, response, manager_->GetModel(request->version()));
  return reactor;
}

}  // namespace tinyfed::server
