// Aggregation strategies: how a round's set of accepted updates becomes
// the next head, exactly, in integers (ServerConfig.aggregation; the
// version records its parameters in model.proto Aggregation and the
// optimizer state beside it in aggregation.proto AggregationState).
//
// Every strategy is a function of the base head, the base optimizer state,
// the SET of updates and the noise: the arrival order changes nothing, and
// the store holds all of it, so a version can be recomputed bit for bit.
//
// Units. A head value is an int16 in master steps. Every delta below is an
// integer in units of 2^-16 master steps. Value j runs over the weights
// row-major, then the bias; c is j's class row. Rounding is always half to
// even: rhe(a / b) is the integer nearest to a / b, a tie going to the even
// one (ties do not push the model one way round after round). sat16 clamps
// to [-32768, 32767]; sat64 clamps to [-(2^63 - 1), 2^63 - 1].
//
// Bounded influence first (aggregator.h DecideInfluence over the round's
// set). Update i's value j is
//   x_ij = s_ic * q_ij * 2^16                         when i is not clipped,
//   x_ij = rhe(s_ic * q_ij * 2^16 * num_i / den_i)    when clipped,
// exactly the contribution aggregator.h sums for a weight of 1. Unclipped
// |x_ij| <= 517 * 127 * 2^16 < 2^32; a clipped one is smaller.
//
// The rules, with k the number of updates, lr the server learning rate
// (Q16.16) and g_j the base head's value:
//   fedavg: weights w_i and the clip as aggregator.h decides them (w_i = 1
//     and no weight cap when uniform_weights), T_j = sum_i w_i-weighted
//     contributions (aggregator.h: 2^16 * sums_j + clipped_sums_j) plus
//     noise_j, W = sum_i w_i;
//       new_j = sat16(g_j + rhe(lr * T_j / (2^32 * W))).
//     Without noise and uniform_weights this is UpdateAccumulator::Apply,
//     bit for bit (the rule of every earlier version).
//   trimmed-mean: t = floor(trim_fraction_ppm * k / 10^6) (< k / 2, so
//     k - 2t >= 1); per value sort x_1j..x_kj ascending, S_j = the sum of
//     the sorted values at positions t .. k-t-1 (from 0);
//       new_j = sat16(g_j + rhe(lr * S_j / ((k - 2t) * 2^32))).
//     Equal values are interchangeable, so which of several equal values
//     is dropped does not change S_j: the sorted list is a function of the
//     multiset. t = 0 is the unweighted mean.
//   median: per value, sorted ascending as above; odd k: a = b = the value
//     at position (k-1)/2; even k: a, b at positions k/2 - 1 and k/2;
//       new_j = sat16(g_j + rhe(lr * (a + b) / (2 * 2^32)))
//     (one rounding, of the exact half-sum: a half-sum that is a tie goes
//     to the even neighbour).
//   Both robust strategies weigh every update 1: they ignore sample counts
//   and the weight cap, but apply the norm clip (and its median multiple)
//   to each update first.
//   fedavgm: u_j = rhe(T_j / W), fedavg's mean in 2^-16 master steps,
//     noise included, then sat64; m_j the base state's momentum (0 when
//     the state is empty), beta1 = momentum_q16;
//       m'_j = sat64(rhe(beta1 * m_j / 2^16) + u_j),
//       new_j = sat16(g_j + rhe(lr * m'_j / 2^32)).
//     |m'| stays below 2^32 / (1 - beta1) + 1 without noise: saturation
//     is reached only by absurd noise, and then stated, not undefined.
//     With beta1 = 0, new_j = sat16(g_j + rhe(lr * rhe(T_j / W) / 2^32)):
//     fedavg's value rounded twice, equal to fedavg wherever W divides T_j
//     (one update; equal updates), otherwise within 1 master step of it.
//   fedadam: u_j as for fedavgm, then clamped to [-2^55, 2^55] (a real
//     delta is below 2^32; the clamp keeps u^2 and v below 2^110, so the
//     128-bit products below cannot overflow); beta1, beta2 Q16.16;
//       m'_j = rhe((beta1 * m_j + (2^16 - beta1) * u_j) / 2^16),
//       v'_j = rhe((beta2 * v_j + (2^16 - beta2) * u_j^2) / 2^16)
//              (v in units of 2^-32 master steps squared, unsigned),
//       new_j = sat16(g_j + rhe(eta * m'_j / ((floor_sqrt(v'_j) + tau) * 2^16)))
//     with eta = adam_step and tau = adam_tau in 2^-16 master steps.
//     lr is not used. m' and v' are convex combinations of m, u and v,
//     u^2 rounded, so they stay within their inputs' range.
//
// The optimizer state (fedavgm: momentum; fedadam: momentum and second
// moment) is a function of the base state and the set, so order
// independence holds across rounds too. Other strategies return an empty
// state (they neither read nor write one).
//
// Plain functions and values: safe for concurrent use; nothing keeps a
// pointer past a call.
#ifndef TINYFED_SERVER_STRATEGY_H_
#define TINYFED_SERVER_STRATEGY_H_

#include <cstdint>
#include <optional>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "aggregator.h"
#include "head.h"
#include "tinyfed/v1/aggregation.pb.h"
#include "tinyfed/v1/model.pb.h"
#include "tinyfed/v1/round.pb.h"

namespace tinyfed::server {

enum class StrategyKind { kFedAvg, kTrimmedMean, kMedian, kFedAvgM, kFedAdam };

// "fedavg", "trimmed-mean", "median", "fedavgm", "fedadam"; nullopt for
// anything else (case matters).
std::optional<StrategyKind> ParseStrategy(std::string_view name);
std::string_view StrategyName(StrategyKind kind);

// Every parameter as the integer the rules above use. AggregateRound
// returns INVALID_ARGUMENT when one is out of its range:
//   trim_fraction_ppm < 500000 (trimmed-mean);
//   momentum_q16, second_moment_decay_q16 < 2^16 (fedavgm, fedadam);
//   adam_step and adam_tau in [1, 2^32) (fedadam: tau >= 1 keeps the
//     divisor positive where v is 0; eta < 2^32 keeps eta * m in 128 bits).
// Parameters a strategy does not use are ignored (but recorded).
struct StrategyParams {
  StrategyKind kind = StrategyKind::kFedAvg;
  uint32_t trim_fraction_ppm = 0;  // trimmed-mean beta in millionths
  uint32_t server_lr_q16 = 1u << 16;
  uint32_t momentum_q16 = 0;             // beta1
  uint32_t second_moment_decay_q16 = 0;  // beta2
  uint64_t adam_step = 0;                // eta, 2^-16 master steps
  uint64_t adam_tau = 0;                 // tau, 2^-16 master steps
  InfluenceBounds bounds;
  bool uniform_weights = false;  // central DP: every update weighs 1

  bool operator==(const StrategyParams& other) const;
};

// Writes the parameters into `record`: strategy (1), server_lr_q16 ..
// uniform_weights (3-11) and trim_fraction_ppm (18). Leaves the round's
// figures (trimmed, 2) and the privacy fields (12-17) untouched.
void RecordStrategyParams(const StrategyParams& params, v1::Aggregation* record);
// The parameters a record holds. INVALID_ARGUMENT for an unknown strategy
// name or a parameter out of the ranges above.
absl::StatusOr<StrategyParams> StrategyParamsFromRecord(const v1::Aggregation& record);

// The server optimizer's state after a round, one entry per value (weights
// row-major, then bias); an empty vector reads as all zeros.
struct OptimizerState {
  std::vector<int64_t> momentum;                 // m, 2^-16 master steps
  std::vector<unsigned __int128> second_moment;  // v, 2^-32 master steps squared
  bool operator==(const OptimizerState& other) const = default;
};

// Writes momentum and second_moment (16 bytes per value, little-endian);
// leaves noise untouched.
void OptimizerStateToProto(const OptimizerState& state, v1::AggregationState* out);
// DATA_LOSS when a non-empty momentum or second moment does not hold
// exactly `values` entries (second_moment: 16 * values bytes), or when a
// second moment is 2^111 or more (no round can produce it: v < 2^110).
absl::StatusOr<OptimizerState> OptimizerStateFromProto(const v1::AggregationState& in,
                                                       size_t values);

struct RoundAggregate {
  Head next;
  OptimizerState state;  // after this round; empty for strategies without state
  uint32_t participants = 0;
  uint64_t samples = 0;  // sum of claimed sample counts
  // Mean of the local losses (Q16.16, rhe), weighted as the strategy
  // weighs the updates: by w_i for the fedavg family, by 1 for the robust
  // strategies.
  uint32_t mean_loss_q16 = 0;
  uint32_t capped = 0, clipped = 0;
  uint32_t trimmed = 0;  // trimmed-mean: t, per end; 0 otherwise
  // The influence decision's figures (aggregator.h InfluenceDecision);
  // weight_cap is 0 when no cap applied (robust strategies, uniform weights).
  uint32_t weight_cap = 0;
  bool has_norm_bound = false;
  uint64_t norm_bound = 0;
};

// The round's aggregate under `params` from `base` and `base_state`.
// `updates`: the round's accepted training updates, any order (each
// accepted by ValidateUpdate for base's shape); the pointers need only
// live for the call. `noise`: empty, or one value per weight (row-major)
// then bias, in 2^-16 master steps, added to the round's integer sum T_j
// before it is divided; only for fedavg, fedavgm and fedadam.
// Errors: FAILED_PRECONDITION when `updates` is empty; INVALID_ARGUMENT for
// a parameter out of range, noise with a robust strategy or of the wrong
// length, or a non-empty base_state of the wrong length or (second moment)
// of 2^111 or more.
absl::StatusOr<RoundAggregate> AggregateRound(const StrategyParams& params, const Head& base,
                                              const OptimizerState& base_state,
                                              const std::vector<const v1::Update*>& updates,
                                              const std::vector<int64_t>& noise);

}  // namespace tinyfed::server

#endif  // TINYFED_SERVER_STRATEGY_H_
