// The operator's connection to a server's Admin service
// (proto/tinyfed/v1/admin.proto): a channel with the agent's TLS options,
// the admin token as "authorization: Bearer TOKEN" on every call, and a
// deadline per call. Safe for concurrent use (gRPC's stub is).
#ifndef TINYFED_ADMIN_ADMIN_CLIENT_H_
#define TINYFED_ADMIN_ADMIN_CLIENT_H_

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "channel_credentials.h"
#include "tinyfed/v1/admin.grpc.pb.h"

namespace tinyfed::admin {

struct ConnectionOptions {
  std::string server = "127.0.0.1:50051";  // HOST:PORT
  agent::ChannelTlsOptions tls;            // --tls_ca, --tls_cert, --tls_key
  std::string token_file;                  // empty: send no token
  absl::Duration timeout = absl::Seconds(10);  // per call, > 0
};

class AdminClient {
 public:
  // Checks the options and reads what they name (TLS files, token file)
  // without contacting the server. Errors: MakeChannelCredentials's and
  // ReadAdminToken's; INVALID_ARGUMENT for a timeout that is not positive.
  static absl::StatusOr<std::unique_ptr<AdminClient>> Create(const ConnectionOptions& options);

  // One call each. Errors: the server's status with its message, or the
  // transport's (UNAVAILABLE and DEADLINE_EXCEEDED name the server and the
  // timeout).
  absl::StatusOr<v1::ServerStatus> GetStatus();
  absl::StatusOr<v1::ListVersionsResponse> ListVersions(const v1::ListVersionsRequest& request);
  absl::StatusOr<v1::ModelVersion> GetVersion(const v1::GetVersionRequest& request);
  absl::StatusOr<v1::RollbackResponse> Rollback(const v1::RollbackRequest& request);
  absl::StatusOr<v1::PromoteResponse> Promote(const v1::PromoteRequest& request);
  absl::StatusOr<v1::ServerStatus> Pause(const v1::PauseRequest& request);
  absl::StatusOr<v1::ServerStatus> Resume();
  absl::StatusOr<v1::ListDevicesResponse> ListDevices(const v1::ListDevicesRequest& request);
  absl::StatusOr<v1::RevokeDeviceResponse> RevokeDevice(const v1::RevokeDeviceRequest& request);
  absl::StatusOr<v1::ListAuditResponse> ListAudit(const v1::ListAuditRequest& request);
  absl::StatusOr<v1::VerifyVersionResponse> VerifyVersion(
      const v1::VerifyVersionRequest& request);

 private:
  AdminClient(ConnectionOptions options, std::string token,
              std::unique_ptr<v1::Admin::Stub> stub);

  template <typename Request, typename Response>
  absl::StatusOr<Response> Call(grpc::Status (v1::Admin::Stub::*method)(grpc::ClientContext*,
                                                                       const Request&, Response*),
                                const Request& request);

  ConnectionOptions options_;
  std::string token_;
  std::unique_ptr<v1::Admin::Stub> stub_;
};

}  // namespace tinyfed::admin

#endif  // TINYFED_ADMIN_ADMIN_CLIENT_H_
