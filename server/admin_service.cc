#include "admin_service.h"

#include <algorithm>
#include <utility>

#include "absl/container/flat_hash_set.h"
#include "absl/strings/str_cat.h"
#include "audit.h"
#include "coordinator_service.h"
#include "spdlog/spdlog.h"
#include "tinyfed_common/fleet_keys.h"

namespace tinyfed::server {
namespace {

// The store's read or write error as the Admin service answers it:
// UNAVAILABLE, saying what could not be done (nothing changed).
absl::Status StoreError(const absl::Status& status, absl::string_view what) {
  return absl::UnavailableError(absl::StrCat("the store could not ", what, ": ",
                                             status.message()));
}

// The RoundManager's error for a change: its own refusals as they are,
// the store's errors as UNAVAILABLE (nothing changed).
absl::Status ChangeError(const absl::Status& status, absl::string_view what) {
  if (absl::IsNotFound(status) || absl::IsFailedPrecondition(status) ||
      absl::IsInvalidArgument(status) || absl::IsAborted(status)) {
    return status;
  }
  return StoreError(status, what);
}

// A limit field: 0 means the default, above `max` is refused.
absl::StatusOr<size_t> Limit(uint32_t requested, uint32_t max, const char* field) {
  if (requested == 0) return kAdminDefaultLimit;
  if (requested > max) {
    return absl::InvalidArgumentError(
        absl::StrCat(field, " must be at most ", max, " (0 for ", kAdminDefaultLimit, "), got ",
                     requested));
  }
  return requested;
}

// A reason goes to the audit log and the server's log, one line each: at
// most 200 bytes and no control character (a newline would forge a line).
absl::Status CheckReason(const std::string& reason) {
  if (reason.size() > kAdminMaxReasonBytes) {
    return absl::InvalidArgumentError(absl::StrCat("reason must be at most ", kAdminMaxReasonBytes,
                                                   " bytes, got ", reason.size()));
  }
  for (char c : reason) {
    const unsigned char b = static_cast<unsigned char>(c);
    if (b < 0x20 || b == 0x7f) {
      return absl::InvalidArgumentError("reason must not hold control characters");
    }
  }
  return absl::OkStatus();
}

AuditEntry Audit(const Clock& clock, const std::string& actor, const char* action,
                 const std::string& detail) {
  AuditEntry entry;
  entry.at_unix_ms = clock.NowMs();
  entry.actor = actor;
  entry.action = action;
  entry.detail = detail;
  return entry;
}

// " (reason: ...)" for the log line, or nothing.
std::string Because(const std::string& reason) {
  return reason.empty() ? std::string() : absl::StrCat(" (reason: ", reason, ")");
}

void ClearWeights(v1::ModelVersion* version) {
  version->clear_weights();
  version->clear_bias();
}

}  // namespace

AdminService::AdminService(RoundManager* manager, ModelStore* store, DeviceAuthenticator* devices,
                           const AdminAuthorizer* authorizer, const Clock* clock,
                           std::string server_version, HealthHook health)
    : manager_(manager),
      store_(store),
      devices_(devices),
      authorizer_(authorizer),
      clock_(clock),
      server_version_(std::move(server_version)),
      health_(std::move(health)) {}

absl::StatusOr<v1::ServerStatus> AdminService::Status() const {
  const RoundSnapshot snapshot = manager_->Snapshot();
  const PauseState pause = manager_->Paused();
  absl::StatusOr<std::vector<std::string>> revoked = store_->RevokedDevices();
  if (!revoked.ok()) return StoreError(revoked.status(), "list the revoked devices");
  v1::ServerStatus status;
  status.set_server_version(server_version_);
  v1::RoundStatus* round = status.mutable_round();
  round->set_round(snapshot.round);
  round->set_base_version(snapshot.base_version);
  round->set_open(snapshot.open);
  round->set_tasks_issued(snapshot.tasks_issued);
  round->set_tasks_limit(snapshot.tasks_limit);
  round->set_accepted(snapshot.accepted);
  round->set_pending(snapshot.pending);
  round->set_target_updates(snapshot.target_updates);
  round->set_min_updates(snapshot.min_updates);
  round->set_opened_unix_ms(snapshot.opened_ms);
  round->set_deadline_unix_ms(snapshot.deadline_ms);
  round->set_time_left_ms(snapshot.time_left_ms);
  round->set_rejected(snapshot.rejected);
  status.set_latest_version(snapshot.latest_version);
  const RolloutSnapshot rollout = manager_->Rollout();
  status.set_serving_version(rollout.state.serving_version);
  status.set_candidate_version(rollout.state.candidate_version);
  if (rollout.state.candidate_version != 0) {
    absl::StatusOr<v1::FleetEvaluation> candidate =
        store_->FleetEvaluationOf(rollout.state.candidate_version);
    if (absl::IsOutOfRange(candidate.status())) return candidate.status();
    if (!candidate.ok()) return StoreError(candidate.status(), "sum the candidate's evaluations");
    *status.mutable_candidate_evaluation() = std::move(*candidate);
  }
  *status.mutable_serving_window() = rollout.serving_window;
  for (const v1::Alert& alert : rollout.alerts) *status.add_alerts() = alert;
  status.set_canary_fraction(rollout.canary_fraction);
  status.set_paused(pause.paused);
  if (pause.paused) {
    status.set_paused_since_unix_ms(pause.since_unix_ms);
    status.set_paused_by(pause.by);
  }
  status.set_revoked_devices(static_cast<uint32_t>(revoked->size()));
  *status.mutable_aggregation() = manager_->AggregationInForce();
  *status.mutable_privacy() = manager_->PrivacyInForce();
  status.set_now_unix_ms(clock_->NowMs());
  return status;
}

absl::StatusOr<std::vector<v1::ModelVersion>> AdminService::Versions(uint32_t newest,
                                                                     size_t limit) const {
  const uint32_t latest = manager_->Snapshot().latest_version;
  if (newest > latest) {
    return absl::NotFoundError(
        absl::StrCat("no version ", newest, ": the latest is version ", latest));
  }
  // Each with the fleet's evaluation as the store sums it. Sums beyond
  // their range are not a store that is away: OUT_OF_RANGE as it is.
  absl::StatusOr<std::vector<v1::ModelVersion>> versions = store_->ListVersions(newest, limit);
  if (absl::IsOutOfRange(versions.status())) return versions.status();
  if (!versions.ok()) return StoreError(versions.status(), "list the versions");
  return versions;
}

template <typename Act>
grpc::ServerUnaryReactor* AdminService::Serve(grpc::CallbackServerContext* context,
                                              const char* method, Act act) {
  grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
  absl::StatusOr<std::string> actor = authorizer_->Authorize(*context);
  if (!actor.ok()) {
    // Rate-limited: refusals are what a stranger can make the server log.
    manager_->LogRejected(absl::StrCat("admin ", method), context->peer(), actor.status());
    reactor->Finish(ToGrpcStatus(actor.status()));
    return reactor;
  }
  const absl::Status status = act(*actor);
  if (!status.ok()) {
    spdlog::info("admin {}: {} refused: {}", *actor, method, status.ToString());
  }
  reactor->Finish(ToGrpcStatus(status));
  return reactor;
}

grpc::ServerUnaryReactor* AdminService::GetStatus(grpc::CallbackServerContext* context,
                                                  const v1::GetStatusRequest* /*request*/,
                                                  v1::ServerStatus* response) {
  return Serve(context, "GetStatus", [&](const std::string&) -> absl::Status {
    absl::StatusOr<v1::ServerStatus> status = Status();
    if (!status.ok()) return status.status();
    *response = std::move(*status);
    return absl::OkStatus();
  });
}

grpc::ServerUnaryReactor* AdminService::ListVersions(grpc::CallbackServerContext* context,
                                                     const v1::ListVersionsRequest* request,
                                                     v1::ListVersionsResponse* response) {
  return Serve(context, "ListVersions", [&](const std::string&) -> absl::Status {
    absl::StatusOr<size_t> limit = Limit(request->limit(), kAdminMaxVersions, "limit");
    if (!limit.ok()) return limit.status();
    absl::StatusOr<std::vector<v1::ModelVersion>> versions = Versions(request->newest(), *limit);
    if (!versions.ok()) return versions.status();
    for (v1::ModelVersion& v : *versions) {
      ClearWeights(&v);  // the store's contract already; the wire's too
      *response->add_versions() = std::move(v);
    }
    return absl::OkStatus();
  });
}

grpc::ServerUnaryReactor* AdminService::GetVersion(grpc::CallbackServerContext* context,
                                                   const v1::GetVersionRequest* request,
                                                   v1::ModelVersion* response) {
  return Serve(context, "GetVersion", [&](const std::string&) -> absl::Status {
    // From the store, with its Rollout; 0 is the latest, as for devices.
    const uint32_t wanted =
        request->version() != 0 ? request->version() : manager_->Snapshot().latest_version;
    absl::StatusOr<v1::ModelVersion> version = store_->GetVersion(wanted);
    if (!version.ok()) {
      return absl::IsNotFound(version.status())
                 ? version.status()
                 : StoreError(version.status(), absl::StrCat("read version ", request->version()));
    }
    *response = std::move(*version);
    return absl::OkStatus();
  });
}

grpc::ServerUnaryReactor* AdminService::Rollback(grpc::CallbackServerContext* context,
                                                 const v1::RollbackRequest* request,
                                                 v1::RollbackResponse* response) {
  return Serve(context, "Rollback", [&](const std::string& actor) -> absl::Status {
    if (request->to_version() == 0) {
      return absl::InvalidArgumentError("to_version must name a committed version (>= 1)");
    }
    if (absl::Status s = CheckReason(request->reason()); !s.ok()) return s;
    absl::StatusOr<RoundManager::RollbackResult> result = manager_->Rollback(
        request->to_version(), Audit(*clock_, actor, "rollback", request->reason()));
    if (!result.ok()) return ChangeError(result.status(), "record the rollback");
    *response->mutable_version() = std::move(result->version);
    ClearWeights(response->mutable_version());
    response->set_abandoned_round(result->abandoned_round);
    return absl::OkStatus();
  });
}

grpc::ServerUnaryReactor* AdminService::Promote(grpc::CallbackServerContext* context,
                                                const v1::PromoteRequest* request,
                                                v1::PromoteResponse* response) {
  return Serve(context, "Promote", [&](const std::string& actor) -> absl::Status {
    if (request->version() == 0) {
      return absl::InvalidArgumentError("version must name a committed version (>= 1)");
    }
    if (absl::Status s = CheckReason(request->reason()); !s.ok()) return s;
    absl::StatusOr<RoundManager::PromoteResult> result = manager_->Promote(
        request->version(), Audit(*clock_, actor, "promote", request->reason()));
    if (!result.ok()) return ChangeError(result.status(), "record the promotion");
    *response->mutable_version() = std::move(result->version);
    ClearWeights(response->mutable_version());
    response->set_previous_serving(result->previous_serving);
    return absl::OkStatus();
  });
}

absl::Status AdminService::SetPaused(bool paused, const std::string& actor,
                                     const std::string& reason, v1::ServerStatus* response) {
  // The RoundManager writes nothing for the state already in effect, and
  // logs each change with its actor (as it does a rollback).
  if (manager_->Paused().paused != paused) {
    if (absl::Status s = manager_->SetPaused(
            paused, Audit(*clock_, actor, paused ? "pause" : "resume", reason));
        !s.ok()) {
      return ChangeError(s, paused ? "record the pause" : "record the resume");
    }
  }
  // Also when nothing changed: health follows the manager's state, which
  // another admin may have changed in between.
  if (health_) health_(!manager_->Paused().paused);
  absl::StatusOr<v1::ServerStatus> status = Status();
  if (!status.ok()) return status.status();
  *response = std::move(*status);
  return absl::OkStatus();
}

grpc::ServerUnaryReactor* AdminService::Pause(grpc::CallbackServerContext* context,
                                              const v1::PauseRequest* request,
                                              v1::ServerStatus* response) {
  return Serve(context, "Pause", [&](const std::string& actor) -> absl::Status {
    if (absl::Status s = CheckReason(request->reason()); !s.ok()) return s;
    return SetPaused(true, actor, request->reason(), response);
  });
}

grpc::ServerUnaryReactor* AdminService::Resume(grpc::CallbackServerContext* context,
                                               const v1::ResumeRequest* /*request*/,
                                               v1::ServerStatus* response) {
  return Serve(context, "Resume", [&](const std::string& actor) -> absl::Status {
    return SetPaused(false, actor, "", response);
  });
}

grpc::ServerUnaryReactor* AdminService::ListDevices(grpc::CallbackServerContext* context,
                                                    const v1::ListDevicesRequest* request,
                                                    v1::ListDevicesResponse* response) {
  return Serve(context, "ListDevices", [&](const std::string&) -> absl::Status {
    absl::StatusOr<size_t> limit = Limit(request->limit(), kAdminMaxDevices, "limit");
    if (!limit.ok()) return limit.status();
    absl::StatusOr<std::vector<DeviceActivity>> seen = store_->RecentDevices(*limit);
    if (!seen.ok()) return StoreError(seen.status(), "list the devices seen");
    absl::StatusOr<std::vector<Revocation>> revoked = store_->Revocations();
    if (!revoked.ok()) return StoreError(revoked.status(), "list the revoked devices");
    absl::flat_hash_set<std::string> revoked_ids;
    for (const Revocation& r : *revoked) {
      revoked_ids.insert(r.device_id);
      v1::RevokedDevice* out = response->add_revoked();
      out->set_device_id(r.device_id);
      out->set_revoked_unix_ms(r.revoked_unix_ms);
    }
    for (const DeviceActivity& d : *seen) {
      v1::DeviceSeen* out = response->add_seen();
      out->set_device_id(d.device_id);
      out->set_last_task_unix_ms(d.last_task_ms);
      out->set_last_round(d.last_round);
      out->set_tasks(d.tasks);
      out->set_updates(d.updates);
      out->set_revoked(revoked_ids.contains(d.device_id));
    }
    return absl::OkStatus();
  });
}

grpc::ServerUnaryReactor* AdminService::RevokeDevice(grpc::CallbackServerContext* context,
                                                     const v1::RevokeDeviceRequest* request,
                                                     v1::RevokeDeviceResponse* response) {
  return Serve(context, "RevokeDevice", [&](const std::string& actor) -> absl::Status {
    if (absl::Status s = ValidateDeviceId(request->device_id()); !s.ok()) {
      return absl::InvalidArgumentError(absl::StrCat("device_id: ", s.message()));
    }
    if (absl::Status s = CheckReason(request->reason()); !s.ok()) return s;
    absl::StatusOr<DeviceAuthenticator::RevokeOutcome> outcome = devices_->Revoke(
        request->device_id(), clock_->NowMs(),
        Audit(*clock_, actor, "revoke", request->reason().empty()
                                            ? request->device_id()
                                            : absl::StrCat(request->device_id(), ": ",
                                                           request->reason())));
    if (!outcome.ok()) return StoreError(outcome.status(), "record the revocation");
    if (!outcome->already_revoked) {
      spdlog::info("admin {}: revoked device {}: its check-ins and updates are refused from now "
                   "on{}",
                   actor, request->device_id(), Because(request->reason()));
    }
    response->set_revoked_unix_ms(outcome->revoked_unix_ms);
    response->set_already_revoked(outcome->already_revoked);
    return absl::OkStatus();
  });
}

grpc::ServerUnaryReactor* AdminService::ListAudit(grpc::CallbackServerContext* context,
                                                  const v1::ListAuditRequest* request,
                                                  v1::ListAuditResponse* response) {
  return Serve(context, "ListAudit", [&](const std::string&) -> absl::Status {
    if (request->before_id() < 0) {
      return absl::InvalidArgumentError(
          absl::StrCat("before_id must be >= 0 (0 for the newest), got ", request->before_id()));
    }
    absl::StatusOr<size_t> limit = Limit(request->limit(), kAdminMaxAuditRecords, "limit");
    if (!limit.ok()) return limit.status();
    absl::StatusOr<std::vector<AuditEntry>> entries =
        store_->AuditLog(request->before_id(), *limit);
    if (!entries.ok()) return StoreError(entries.status(), "read the audit log");
    for (const AuditEntry& e : *entries) {
      v1::AuditRecord* out = response->add_records();
      out->set_id(e.id);
      out->set_at_unix_ms(e.at_unix_ms);
      out->set_actor(e.actor);
      out->set_action(e.action);
      out->set_detail(e.detail);
    }
    return absl::OkStatus();
  });
}

grpc::ServerUnaryReactor* AdminService::VerifyVersion(grpc::CallbackServerContext* context,
                                                      const v1::VerifyVersionRequest* request,
                                                      v1::VerifyVersionResponse* response) {
  return Serve(context, "VerifyVersion", [&](const std::string&) -> absl::Status {
    absl::StatusOr<v1::VerifyVersionResponse> verified = RecomputeVersion(*store_, request->version());
    if (!verified.ok()) {
      const absl::Status& s = verified.status();
      // Damage is an auditor's finding, not a store that is away.
      if (absl::IsNotFound(s) || absl::IsFailedPrecondition(s) || absl::IsDataLoss(s)) return s;
      return StoreError(s, absl::StrCat("read the evidence of version ", request->version()));
    }
    *response = std::move(*verified);
    return absl::OkStatus();
  });
}

}  // namespace tinyfed::server
