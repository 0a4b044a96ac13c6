// The Admin service (proto/tinyfed/v1/admin.proto is the contract): how an
// operator sees and steers a running server, on gRPC's callback API.
//
// Every rpc, in this order: the AdminAuthorizer decides who the caller is
// (admin_auth.h; a refusal answers UNAUTHENTICATED or PERMISSION_DENIED,
// goes to the RoundManager's rate-limited rejection log with the caller's
// address, and changes nothing); the request's fields are checked
// (INVALID_ARGUMENT naming the field: limits beyond their stated maximum,
// a reason above 200 bytes or holding a control character, a device id
// that ValidateDeviceId refuses, version 0 for Rollback and Promote); then
// it acts. GetStatus fills the rollout (serving and candidate versions,
// the candidate's evaluations, the serving window, alerts) and the
// aggregation and privacy in force from the RoundManager and the store;
// GetVersion reads the store, Rollout filled. VerifyVersion recomputes a
// version from the store alone (audit.h); its NOT_FOUND,
// FAILED_PRECONDITION and DATA_LOSS are answered as they are, a mismatch
// is an answer (matches false).
// The store's read and write errors answer UNAVAILABLE (nothing changed);
// NOT_FOUND and FAILED_PRECONDITION come from the RoundManager and the
// store as admin.proto states.
//
// Every change (Rollback, Promote, Pause, Resume, RevokeDevice) is logged with its
// actor, never a token (rollback, promote, pause and resume by the RoundManager,
// revocations here), and written to the store's audit log by the
// RoundManager or the DeviceAuthenticator in the change's own transaction. After a Pause or Resume the health hook is called with
// whether the server now takes new rounds (tinyfed-server turns it into
// grpc.health.v1 NOT_SERVING / SERVING).
//
// Admin calls are rare and short: each runs to its end on the gRPC thread
// that received it (store reads, and for changes one synchronous store
// transaction), instead of paying for a thread hop of its own.
//
// Safe for concurrent use. Every pointer passed to the constructor must
// outlive the service; the health hook must be safe to call from any
// thread at any time until the gRPC server has shut down.
#ifndef TINYFED_SERVER_ADMIN_SERVICE_H_
#define TINYFED_SERVER_ADMIN_SERVICE_H_

#include <cstddef>
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include <grpcpp/grpcpp.h>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "admin_auth.h"
#include "clock.h"
#include "device_auth.h"
#include "model_store.h"
#include "round_manager.h"
#include "tinyfed/v1/admin.grpc.pb.h"

namespace tinyfed::server {

// Bounds of admin.proto's fields.
inline constexpr uint32_t kAdminDefaultLimit = 100;      // a limit of 0
inline constexpr uint32_t kAdminMaxVersions = 1000;      // ListVersions.limit
inline constexpr uint32_t kAdminMaxDevices = 10000;      // ListDevices.limit
inline constexpr uint32_t kAdminMaxAuditRecords = 1000;  // ListAudit.limit
inline constexpr size_t kAdminMaxReasonBytes = 200;

class AdminService final : public v1::Admin::CallbackService {
 public:
  // Called after every Pause and Resume with whether new rounds open.
  using HealthHook = std::function<void(bool serving)>;

  // `server_version` is what GetStatus reports (tinyfed-server's version).
  // `health` may be empty.
  AdminService(RoundManager* manager, ModelStore* store, DeviceAuthenticator* devices,
               const AdminAuthorizer* authorizer, const Clock* clock, std::string server_version,
               HealthHook health);

  // For the status page, in process, without authorization (the page is
  // served where only operators reach it). GetStatus's answer; UNAVAILABLE
  // when the store cannot be read.
  absl::StatusOr<v1::ServerStatus> Status() const;
  // ListVersions's answer: versions `newest` (0: the latest) and below,
  // newest first, at most `limit` (taken as given: the page chooses it),
  // weights and bias left empty, fleet_evaluation filled with the fleet's
  // summed reports (empty for a version none reported). NOT_FOUND when
  // `newest` is above the latest version; OUT_OF_RANGE, as the store gives
  // it, when a version's sums exceed 64 bits; UNAVAILABLE when the store
  // cannot be read.
  absl::StatusOr<std::vector<v1::ModelVersion>> Versions(uint32_t newest, size_t limit) const;

  grpc::ServerUnaryReactor* GetStatus(grpc::CallbackServerContext* context,
                                      const v1::GetStatusRequest* request,
                                      v1::ServerStatus* response) override;
  grpc::ServerUnaryReactor* ListVersions(grpc::CallbackServerContext* context,
                                         const v1::ListVersionsRequest* request,
                                         v1::ListVersionsResponse* response) override;
  grpc::ServerUnaryReactor* GetVersion(grpc::CallbackServerContext* context,
                                       const v1::GetVersionRequest* request,
                                       v1::ModelVersion* response) override;
  grpc::ServerUnaryReactor* Rollback(grpc::CallbackServerContext* context,
                                     const v1::RollbackRequest* request,
                                     v1::RollbackResponse* response) override;
  grpc::ServerUnaryReactor* Promote(grpc::CallbackServerContext* context,
                                    const v1::PromoteRequest* request,
                                    v1::PromoteResponse* response) override;
  grpc::ServerUnaryReactor* Pause(grpc::CallbackServerContext* context,
                                  const v1::PauseRequest* request,
                                  v1::ServerStatus* response) override;
  grpc::ServerUnaryReactor* Resume(grpc::CallbackServerContext* context,
                                   const v1::ResumeRequest* request,
                                   v1::ServerStatus* response) override;
  grpc::ServerUnaryReactor* ListDevices(grpc::CallbackServerContext* context,
                                        const v1::ListDevicesRequest* request,
                                        v1::ListDevicesResponse* response) override;
  grpc::ServerUnaryReactor* RevokeDevice(grpc::CallbackServerContext* context,
                                         const v1::RevokeDeviceRequest* request,
                                         v1::RevokeDeviceResponse* response) override;
  grpc::ServerUnaryReactor* ListAudit(grpc::CallbackServerContext* context,
                                      const v1::ListAuditRequest* request,
                                      v1::ListAuditResponse* response) override;
  grpc::ServerUnaryReactor* VerifyVersion(grpc::CallbackServerContext* context,
                                          const v1::VerifyVersionRequest* request,
                                          v1::VerifyVersionResponse* response) override;

 private:
  // Authorizes the call, then runs `act(actor)` and finishes the call with
  // its status.
  template <typename Act>
  grpc::ServerUnaryReactor* Serve(grpc::CallbackServerContext* context, const char* method,
                                  Act act);
  // Pause or Resume by `actor`, then the status after it.
  absl::Status SetPaused(bool paused, const std::string& actor, const std::string& reason,
                         v1::ServerStatus* response);

  RoundManager* const manager_;
  ModelStore* const store_;
  DeviceAuthenticator* const devices_;
  const AdminAuthorizer* const authorizer_;
  const Clock* const clock_;
  const std::string server_version_;
  const HealthHook health_;
};

}  // namespace tinyfed::server

#endif  // TINYFED_SERVER_ADMIN_SERVICE_H_
