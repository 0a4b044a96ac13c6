// Recomputing a committed version from the store alone, as an auditor would
// (Admin VerifyVersion, `tinyfed-admin verify`): the version's round's
// stored updates, its parent's head and AggregationState, its own
// Aggregation record and stored noise go through AggregateRound
// (strategy.h) again, and the result is compared with the version as
// committed, value for value. Nothing of the server's configuration or
// memory is used: a version verifies or not on the evidence in the file.
//
// A plain function over a ModelStore, which is safe for concurrent use:
// this is too. It reads only; the store must outlive the call.
#ifndef TINYFED_SERVER_AUDIT_H_
#define TINYFED_SERVER_AUDIT_H_

#include <cstdint>

#include "absl/status/statusor.h"
#include "model_store.h"
#include "tinyfed/v1/admin.pb.h"

namespace tinyfed::server {

// Recomputes `version` (0: the latest) and compares it with the stored one.
// A mismatch is an answer (matches false, differing_values the number of
// weight and bias values that differ), not an error.
//
// The round's updates are its rows in the store's updates table with a
// nonzero sample count: the training updates the round manager aggregated
// at the close (evaluation-only reports go to the evaluations table and
// carry sample count 0; none is aggregated).
//
// Errors: NOT_FOUND for an unknown version (or none at all);
// FAILED_PRECONDITION for a version no round trained (round 0: the initial
// version, a rollback's copy) and for one committed before versions
// recorded their Aggregation (its influence bounds came from a
// configuration the store does not keep); DATA_LOSS when a stored row fails
// its check or the stored evidence cannot be aggregated (an update that
// does not parse or validate, a record out of range, noise or state of the
// wrong length, a trained round without updates); the store's own errors
// otherwise.
absl::StatusOr<v1::VerifyVersionResponse> RecomputeVersion(ModelStore& store, uint32_t version);

}  // namespace tinyfed::server

#endif  // TINYFED_SERVER_AUDIT_H_
