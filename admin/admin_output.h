// What `tinyfed-admin` prints for people (without --json) for each Admin
// response: key: value lines for one thing, aligned tables (table.h) for
// lists, times in UTC ISO-8601. Pure functions: safe for concurrent use.
#ifndef TINYFED_ADMIN_ADMIN_OUTPUT_H_
#define TINYFED_ADMIN_ADMIN_OUTPUT_H_

#include <string>

#include "tinyfed/v1/admin.pb.h"

namespace tinyfed::admin {

// status, pause and resume: the server, its versions, whether it is
// paused (since when, by whom), the staged rollout (the candidate with
// the canary's share of devices and its evaluations so far, the serving
// version's accuracy over the drift window, one "alert" line per active
// alert, or "alerts: none") and the round (number, base version, tasks,
// accepted of target, deadline and time left), the aggregation in force
// (FormatAggregation) and the privacy budget (FormatPrivacy). Accuracies
// are correct / samples to four decimals, rounded half up, from the exact
// sums.
std::string FormatServerStatus(const v1::ServerStatus& status);

// The strategy with the parameters it uses, for people: "median; norm
// bound 8 master steps", "fedadam: beta1 0.9, beta2 0.99, step 0.01, tau
// 0.001 (master steps); ...". Q16.16 values as decimals (%g of q / 2^16),
// bounded influence after a ';' ("weight cap 4x median", "norm bound B
// master steps", "norm cap Mx median", "uniform weights"; "no influence
// bounds" when none). "-" for an empty record (a server that does not say).
std::string FormatAggregation(const v1::Aggregation& aggregation);

// "off", or "epsilon X spent of budget Y at delta Z (N versions noised, R
// rounds left)" ("no budget" instead of the budget and rounds left when
// none is set; "budget spent" instead of the rounds left once it is).
// Epsilons with four significant digits.
std::string FormatPrivacy(const v1::PrivacyStatus& privacy);

// verify: the version, its round and strategy, the updates recomputed
// from, both checksums (0x and 8 hex digits) and "matches" or "N values
// differ".
std::string FormatVerify(const v1::VerifyVersionResponse& response);

// versions: one row per version, newest first, with columns VERSION,
// PARENT, ORIGIN ("initial", "round R" or "rollback to N"), STAGE (the
// rollout stage: "trained", "candidate", "serving", "retired" or "rolled
// back"; "-" from a server that does not say), PARTICIPANTS,
// SAMPLES, CAPPED, CLIPPED, REJECTED, LOSS (the mean local loss), FLEET
// ACC (the federated accuracy: correct / samples of the devices'
// evaluations, four decimals, rounded half up), FLEET DEVICES (the
// devices that evaluated it) and COMMITTED (UTC). A version no device
// has evaluated shows "-" in both fleet columns. When some listed version
// was noised (central DP), an EPS column before COMMITTED gives each noised
// version's epsilon spent in total by its commit (four significant digits;
// "-" for the others).
std::string FormatVersions(const v1::ListVersionsResponse& versions);

// rollback: one line naming the new version, the version it restores and
// the abandoned round.
std::string FormatRollback(const v1::RollbackRequest& request, const v1::RollbackResponse& response);

// promote: one line naming the version now serving, the one it replaced,
// and the reason the server recorded.
std::string FormatPromote(const v1::PromoteResponse& response);

// devices: the seen devices (DEVICE, LAST TASK, LAST ROUND, TASKS,
// UPDATES, REVOKED), then the revoked ones (DEVICE, REVOKED AT).
std::string FormatDevices(const v1::ListDevicesResponse& devices);

// revoke: one line saying when the device was revoked, or that it
// already was.
std::string FormatRevoke(const std::string& device_id, const v1::RevokeDeviceResponse& response);

// audit: ID, TIME, ACTOR, ACTION, DETAIL, newest first.
std::string FormatAudit(const v1::ListAuditResponse& audit);

}  // namespace tinyfed::admin

#endif  // TINYFED_ADMIN_ADMIN_OUTPUT_H_
