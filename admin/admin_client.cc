#include "admin_client.h"

#include <grpcpp/grpcpp.h>

#include "absl/strings/str_cat.h"
#include "token_file.h"

namespace tinyfed::admin {

absl::StatusOr<std::unique_ptr<AdminClient>> AdminClient::Create(
    const ConnectionOptions& options) {
  if (options.timeout <= absl::ZeroDuration()) {
    return absl::InvalidArgumentError(
        absl::StrCat("--timeout must be positive, got ", absl::FormatDuration(options.timeout)));
  }
  absl::StatusOr<std::shared_ptr<grpc::ChannelCredentials>> credentials =
      agent::MakeChannelCredentials(options.server, options.tls);
  if (!credentials.ok()) return credentials.status();
  std::string token;
  if (!options.token_file.empty()) {
    absl::StatusOr<std::string> read = ReadAdminToken(options.token_file);
    if (!read.ok()) return read.status();
    token = *std::move(read);
  }
  auto stub = v1::Admin::NewStub(grpc::CreateChannel(options.server, *credentials));
  return std::unique_ptr<AdminClient>(
      new AdminClient(options, std::move(token), std::move(stub)));
}

AdminClient::AdminClient(ConnectionOptions options, std::string token,
                         std::unique_ptr<v1::Admin::Stub> stub)
    : options_(std::move(options)), token_(std::move(token)), stub_(std::move(stub)) {}

template <typename Request, typename Response>
absl::StatusOr<Response> AdminClient::Call(
    grpc::Status (v1::Admin::Stub::*method)(grpc::ClientContext*, const Request&, Response*),
    const Request& request) {
  grpc::ClientContext context;
  context.set_deadline(absl::ToChronoTime(absl::Now() + options_.timeout));
  if (!token_.empty()) context.AddMetadata("authorization", "Bearer " + token_);
  Response response;
  const grpc::Status status = ((*stub_).*method)(&context, request, &response);
  if (status.ok()) return response;
  // gRPC's codes are absl's, number for number.
  const auto code = static_cast<absl::StatusCode>(status.error_code());
  switch (code) {
    case absl::StatusCode::kUnavailable:
      return absl::Status(code, absl::StrCat("server ", options_.server, ": ",
                                             status.error_message()));
    case absl::StatusCode::kDeadlineExceeded:
      return absl::Status(code, absl::StrCat("server ", options_.server, " did not answer within ",
                                             absl::FormatDuration(options_.timeout),
                                             " (--timeout)"));
    default:
      return absl::Status(code, status.error_message());
  }
}

absl::StatusOr<v1::ServerStatus> AdminClient::GetStatus() {
  return Call(&v1::Admin::Stub::GetStatus, v1::GetStatusRequest());
}
absl::StatusOr<v1::ListVersionsResponse> AdminClient::ListVersions(
    const v1::ListVersionsRequest& request) {
  return Call(&v1::Admin::Stub::ListVersions, request);
}
absl::StatusOr<v1::ModelVersion> AdminClient::GetVersion(const v1::GetVersionRequest& request) {
  return Call(&v1::Admin::Stub::GetVersion, request);
}
absl::StatusOr<v1::RollbackResponse> AdminClient::Rollback(const v1::RollbackRequest& request) {
  return Call(&v1::Admin::Stub::Rollback, request);
}
absl::StatusOr<v1::PromoteResponse> AdminClient::Promote(const v1::PromoteRequest& request) {
  return Call(&v1::Admin::Stub::Promote, request);
}
absl::StatusOr<v1::ServerStatus> AdminClient::Pause(const v1::PauseRequest& request) {
  return Call(&v1::Admin::Stub::Pause, request);
}
absl::StatusOr<v1::ServerStatus> AdminClient::Resume() {
  return Call(&v1::Admin::Stub::Resume, v1::ResumeRequest());
}
absl::StatusOr<v1::ListDevicesResponse> AdminClient::ListDevices(
    const v1::ListDevicesRequest& request) {
  return Call(&v1::Admin::Stub::ListDevices, request);
}
absl::StatusOr<v1::RevokeDeviceResponse> AdminClient::RevokeDevice(
    const v1::RevokeDeviceRequest& request) {
  return Call(&v1::Admin::Stub::RevokeDevice, request);
}
absl::StatusOr<v1::ListAuditResponse> AdminClient::ListAudit(const v1::ListAuditRequest& request) {
  return Call(&v1::Admin::Stub::ListAudit, request);
}
absl::StatusOr<v1::VerifyVersionResponse> AdminClient::VerifyVersion(
    const v1::VerifyVersionRequest& request) {
  return Call(&v1::Admin::Stub::VerifyVersion, request);
}

}  // namespace tinyfed::admin
