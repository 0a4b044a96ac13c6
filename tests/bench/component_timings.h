// Timings of the server's parts on their own, to explain the end-to-end
// figures: the aggregation arithmetic, update validation, device
// authentication, and the SQLite store's group-committed appends without a
// RoundManager or gRPC in front.
// Each function runs alone; none is safe to overlap with other timings.
#ifndef TINYFED_TESTS_BENCH_COMPONENT_TIMINGS_H_
#define TINYFED_TESTS_BENCH_COMPONENT_TIMINGS_H_

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "in_process_load.h"
#include "model_store.h"
#include "tinyfed_common/fleet_keys.h"
#include "tinyfed/v1/model.pb.h"
#include "tinyfed/v1/round.pb.h"
#include "tinyfed/v1/server_config.pb.h"

namespace tinyfed::bench {

// Best of a few repetitions: pure compute, so noise only ever adds time.
struct AggregationTiming {
  size_t updates = 0;
  double add_ms = 0;  // UpdateAccumulator::Add over all of them
  double add_ns_per_update = 0;
  double apply_us = 0;  // one Apply() of the sums
};
// REQUIRES: every update is valid for a features x classes head.
AggregationTiming TimeAggregation(const std::vector<v1::Update>& updates, uint32_t features,
                                  uint32_t classes);

// AggregateRound (server/strategy.h) over all of `updates` once per
// strategy, best of a few repetitions each: the whole close's arithmetic
// (measures, influence decision, aggregation, next head), with the bounds
// ServerConfig defaults to (weight 3x, norm 2x the median), trimmed mean
// 0.2, momentum 0.9, second-moment decay 0.99. `ms[kind]` in the order of
// StrategyKind; a strategy that fails leaves a negative figure.
struct StrategyTiming {
  size_t updates = 0;
  std::vector<double> ms;
};
// REQUIRES: as TimeAggregation.
StrategyTiming TimeStrategies(const std::vector<v1::Update>& updates, uint32_t features,
                              uint32_t classes);

struct ValidationTiming {
  double validate_ns = 0;  // ValidateUpdate per update, checksum included
  double crc_ns = 0;       // of which the CRC-32 over the deltas
};
ValidationTiming TimeValidation(const std::vector<v1::Update>& updates, const v1::HeadSpec& spec);

// DeviceAuthenticator::Authenticate of SignedRequests of updates, best of
// a few repetitions. `first_ns`: a fresh authenticator each repetition, so
// every device's key is derived, as for a fleet larger than the key cache
// whose devices send once a round. `cached_ns`: the first `cached` requests
// again after one pass over them, their keys in the cache. `refused`
// counts requests refused in any pass (0 for a correctly signed fleet).
struct AuthTiming {
  size_t requests = 0;
  size_t cached = 0;
  double first_ns = 0;
  double cached_ns = 0;
  uint64_t refused = 0;
};
// `store` (its revocation list) must outlive the call.
absl::StatusOr<AuthTiming> TimeAuthentication(const Key256& fleet_key, server::ModelStore* store,
                                              const std::vector<std::string>& signed_updates);

// AppendUpdate of every update (serialized beforehand) into a fresh store
// at `db_path` with one open round, `inflight` appends outstanding.
absl::StatusOr<InProcessResult> TimeStoreIngest(const v1::ServerConfig& config,
                                                const std::string& db_path,
                                                const std::vector<v1::Update>& updates,
                                                int inflight);

// What one sync to disk costs where the store lives: `count` rounds of a
// 4 KiB write and fdatasync() on a scratch file in `dir` (removed after).
// Every group-committed batch of the store pays about one of these.
struct DiskFlushTiming {
  double cpu_us = 0;   // per flush, this thread's user + system time
  double wall_ms = 0;  // per flush
};
absl::StatusOr<DiskFlushTiming> TimeDiskFlush(const std::string& dir, int count);

}  // namespace tinyfed::bench

#endif  // TINYFED_TESTS_BENCH_COMPONENT_TIMINGS_H_
