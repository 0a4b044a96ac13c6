#include "audit.h"

#include <algorithm>
#include <cstddef>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "head.h"
#include "strategy.h"
#include "tinyfed/v1/round.pb.h"
#include "update_validation.h"

namespace tinyfed::server {
namespace {

// DATA_LOSS naming the version: the stored evidence is inconsistent, which
// only damage (or tampering) can make it.
absl::Status Inconsistent(uint32_t version, absl::string_view what, const absl::Status& cause) {
  return absl::DataLossError(absl::StrCat("verifying version ", version, ": ", what, ": ",
                                          cause.message()));
}

// The int16 values of two little-endian byte strings that differ, position
// by position; a value one string lacks counts as differing.
uint32_t DifferingValues(const std::string& a, const std::string& b) {
  const size_t values = (std::max(a.size(), b.size()) + 1) / 2;
  uint32_t differing = 0;
  for (size_t i = 0; i < values; ++i) {
    const std::string_view x = i * 2 < a.size() ? std::string_view(a).substr(i * 2, 2) : "";
    const std::string_view y = i * 2 < b.size() ? std::string_view(b).substr(i * 2, 2) : "";
    if (x != y) ++differing;
  }
  return differing;
}

}  // namespace

absl::StatusOr<v1::VerifyVersionResponse> RecomputeVersion(ModelStore& store, uint32_t version) {
  v1::ModelVersion committed;
  if (version == 0) {
    absl::StatusOr<std::optional<v1::ModelVersion>> latest = store.LatestVersion();
    if (!latest.ok()) return latest.status();
    if (!latest->has_value()) return absl::NotFoundError("the store holds no version yet");
    committed = std::move(**latest);
  } else {
    absl::StatusOr<v1::ModelVersion> found = store.GetVersion(version);
    if (!found.ok()) return found.status();
    committed = std::move(*found);
  }
  const uint32_t number = committed.version();
  if (committed.round() == 0) {
    return absl::FailedPreconditionError(absl::StrCat(
        "version ", number,
        " was not trained in a round (the initial version or a rollback's copy): there is "
        "nothing to recompute"));
  }
  if (committed.aggregation().strategy().empty()) {
    return absl::FailedPreconditionError(absl::StrCat(
        "version ", number,
        " records no aggregation (it was committed before versions recorded theirs): the "
        "influence bounds it was aggregated with are not in the store, so it cannot be "
        "recomputed"));
  }
  absl::StatusOr<StrategyParams> params = StrategyParamsFromRecord(committed.aggregation());
  if (!params.ok()) return Inconsistent(number, "its aggregation record", params.status());

  absl::StatusOr<v1::ModelVersion> parent = store.GetVersion(committed.parent_version());
  if (!parent.ok()) return parent.status();
  absl::StatusOr<Head> base = LoadHead(*parent);
  if (!base.ok()) {
    return Inconsistent(number, absl::StrCat("its parent version ", parent->version()),
                        base.status());
  }
  const size_t values = static_cast<size_t>(base->features) * base->classes + base->classes;
  absl::StatusOr<v1::AggregationState> parent_state =
      store.AggregationStateOf(committed.parent_version());
  if (!parent_state.ok()) return parent_state.status();
  absl::StatusOr<OptimizerState> base_state = OptimizerStateFromProto(*parent_state, values);
  if (!base_state.ok()) {
    return Inconsistent(number, "its parent's optimizer state", base_state.status());
  }
  absl::StatusOr<v1::AggregationState> own_state = store.AggregationStateOf(number);
  if (!own_state.ok()) return own_state.status();
  const std::vector<int64_t> noise(own_state->noise().begin(), own_state->noise().end());

  absl::StatusOr<std::vector<StoredUpdate>> rows = store.RoundUpdates(committed.round());
  if (!rows.ok()) return rows.status();
  std::vector<v1::Update> updates;
  updates.reserve(rows->size());
  for (const StoredUpdate& row : *rows) {
    v1::Update update;
    if (!update.ParseFromString(row.payload)) {
      return absl::DataLossError(absl::StrCat("verifying version ", number, ": the update of ",
                                              row.device_id, " in round ", row.round,
                                              " does not parse"));
    }
    if (update.sample_count() == 0) continue;  // an evaluation, never aggregated
    if (absl::Status s = ValidateUpdate(update, parent->spec()); !s.ok()) {
      return Inconsistent(number,
                          absl::StrCat("the update of ", row.device_id, " in round ", row.round),
                          s);
    }
    updates.push_back(std::move(update));
  }
  std::vector<const v1::Update*> set;
  set.reserve(updates.size());
  for (const v1::Update& u : updates) set.push_back(&u);

  absl::StatusOr<RoundAggregate> aggregate =
      AggregateRound(*params, *base, *base_state, set, noise);
  if (!aggregate.ok()) {
    return Inconsistent(number, absl::StrCat("aggregating round ", committed.round()),
                        aggregate.status());
  }
  v1::ModelVersion recomputed;
  StoreHead(aggregate->next, &recomputed);

  v1::VerifyVersionResponse response;
  response.set_version(number);
  response.set_round(committed.round());
  response.set_strategy(committed.aggregation().strategy());
  response.set_updates(static_cast<uint32_t>(set.size()));
  response.set_committed_checksum(committed.checksum());
  response.set_recomputed_checksum(recomputed.checksum());
  const uint32_t differing = DifferingValues(committed.weights(), recomputed.weights()) +
                             DifferingValues(committed.bias(), recomputed.bias());
  response.set_differing_values(differing);
  response.set_matches(differing == 0 && committed.checksum() == recomputed.checksum());
  return response;
}

}  // namespace tinyfed::server
