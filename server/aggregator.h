// Exact FedAvg over int8 per-row updates, with bounded influence.
//
// Each accepted update i has a weight w_i and a clip factor f_i, decided
// over the round's whole set of accepted updates by DecideInfluence()
// (below), never by arrival order. It contributes, for every weight and
// bias j of class row c, w_i * f_i * s_ic * q_ij (weight x clip factor x
// row scale x int8 value). Plain FedAvg is w_i = n_i (its sample count)
// and f_i = 1, which is what Add(update) does.
//
// Contributions and their sums, all integers:
//   - unclipped (f_i = 1): w_i * s_ic * q_ij exactly, below 2^41, summed
//     in int64 (sums());
//   - clipped (f_i = num_i / den_i < 1): round_half_even(w_i * s_ic * q_ij
//     * 2^16 * num_i / den_i), that is the contribution rounded once, to
//     2^-16 of a (weight x master step), summed in 128-bit integers
//     (clipped_sums()). This is the only rounding before the final one.
// The accumulator also keeps W = sum_i w_i, N = sum_i n_i (the sample
// counts the updates claim, for the record) and the counts of capped and
// clipped updates. So:
//   - the result does not depend on the order updates arrive in;
//   - merging accumulators of disjoint update sets equals accumulating all
//     of them flat, bit for bit, provided every update's influence was
//     decided over the whole round's set (the medians below are of the
//     round, not of a part; hierarchical aggregation needs the round's
//     medians first: two passes, one of scalars, one of sums).
// Apply() turns the sums into the next head:
//   new_j = saturate_int16(global_j + round_half_even(
//               lr * (2^16 * sums_j + clipped_sums_j) / (2^16 * 2^16 * W)))
// with lr a Q16.16 server learning rate, in 128-bit integers. With nothing
// clipped or capped this is exactly the plain FedAvg of earlier versions.
//
// Exactness: the one rounding of a clipped contribution is at most half a
// unit of 2^-16, so over k clipped updates the sum is off the real-valued
// bounded FedAvg by at most k/2 units, and the mean by at most
// k / (2 * 2^16 * W) <= 2^-17 master steps (W >= k since every w_i >= 1).
// The committed value is therefore the real-valued rule rounded half to
// even, except where the real value lies within 2^-17 master steps (scaled
// by lr) of a half-step tie. One update contributes below 2^40.003 per
// value, so the int64 sums are exact for up to 2^22 (4,194,304) updates per
// accumulator, merged ones included; the server caps a round's target
// below that. Clipped sums stay below 2^57 per update and 2^79 in total.
//
// Bounded influence (DecideInfluence), over the round's set of k accepted
// updates, each already refused by the round manager if its sample count
// n_i exceeds the count its device declared at check-in:
//   - median of a multiset: the lower median, the element at index
//     (k - 1) / 2 of the values sorted ascending (an integer, no average);
//   - weight cap: C = max(1, floor(median_n * m_w / 2^16)) for the
//     configured multiple m_w (Q16.16; 0 = no cap); w_i = min(n_i, C);
//     update i is "capped" when n_i > C;
//   - norm: the L2 norm of the dequantized delta, the vector of s_ic * q_ij
//     in master steps over all weights and biases; its square N2_i is an
//     exact integer (below 2^45);
//   - norm bound B, an integer number of master steps: the smaller of the
//     configured fixed bound B_f (0 = none) and the adaptive bound
//     B_a = floor(m_n * sqrt(median_N2)) = isqrt(floor(m_n^2 * median_N2 /
//     2^32)) for the configured multiple m_n (Q16.16; 0 = none), computed
//     exactly; no bound when neither is configured;
//   - update i is "clipped" when N2_i > B^2, and then f_i = B / ceil(
//     sqrt(N2_i)) (an exact integer ceiling square root), so its clipped
//     norm is at most B, and at most B + 2^-17 * sqrt(values) after the
//     rounding above. An update at or below the bound keeps f_i = 1.
// A bound of zero (the median update is all zeros) clips every non-zero
// update to nothing.
//
// An UpdateAccumulator requires external synchronization. DecideInfluence
// and MeasureUpdate are plain functions, safe for concurrent use.
#ifndef TINYFED_SERVER_AGGREGATOR_H_
#define TINYFED_SERVER_AGGREGATOR_H_

#include <array>
#include <cstdint>
#include <vector>

#include <Eigen/Core>

#include "absl/status/statusor.h"
#include "head.h"
#include "tinyfed/v1/round.pb.h"

namespace tinyfed::server {

// The configured bounds, in integers (see the header comment). Zero turns
// each one off; all zero is plain FedAvg.
struct InfluenceBounds {
  uint32_t weight_median_multiple_q16 = 0;  // m_w, Q16.16
  uint64_t norm_bound = 0;                  // B_f, master steps
  uint32_t norm_median_multiple_q16 = 0;    // m_n, Q16.16
};

// What the bounds decided for one update: its weight and clip factor
// clip_num / clip_den (1/1 when not clipped).
struct Influence {
  uint32_t weight = 0;
  uint64_t clip_num = 1;
  uint64_t clip_den = 1;
  bool capped = false;
  bool clipped = false;
};

// The figures of one update the decision needs.
struct UpdateMeasure {
  uint32_t sample_count = 0;
  unsigned __int128 squared_norm = 0;  // N2_i, master steps squared
};

// REQUIRES: ValidateUpdate() accepted `update` for a head of `features` x
// `classes`.
UpdateMeasure MeasureUpdate(const v1::Update& update, uint32_t features, uint32_t classes);

// The round's decision: one Influence per measure, in the same order, and
// the round-level figures it came from.
struct InfluenceDecision {
  std::vector<Influence> influence;
  uint32_t weight_cap = 0;         // C; 0 when there is no cap
  bool has_norm_bound = false;
  uint64_t norm_bound = 0;         // B, when has_norm_bound
  uint32_t capped = 0;
  uint32_t clipped = 0;
};

// Decides every update's weight and clip factor over the round's set
// `measures` (any order: the result for each update depends on the set
// only). REQUIRES: every sample_count >= 1.
InfluenceDecision DecideInfluence(const std::vector<UpdateMeasure>& measures,
                                  const InfluenceBounds& bounds);

// Exact integer helpers the strategies (strategy.h) share with FedAvg.
// num / den rounded to the nearest integer, ties to the even one.
// REQUIRES: den > 0.
__int128 DivideRoundHalfEven(__int128 num, __int128 den);
// floor(sqrt(v)), exactly.
unsigned __int128 FloorSqrt(unsigned __int128 v);
int16_t SaturateInt16(__int128 v);
// table[q] = round_half_even(m * q / den) for q = 0..127 (rounding half to
// even is symmetric: -q gives -table[q]), without a division per entry.
// REQUIRES: m >= 0, den > 0, m * 127 < 2^126.
std::array<__int128, 128> RoundedMultiples(__int128 m, __int128 den);

class UpdateAccumulator {
 public:
  using Sums = Eigen::Matrix<int64_t, Eigen::Dynamic, 1>;

  UpdateAccumulator(uint32_t features, uint32_t classes);

  // Adds one update with weight n (its sample count), unclipped.
  // REQUIRES: ValidateUpdate() accepted it for this head's shape.
  void Add(const v1::Update& update);
  // Adds one update with the influence DecideInfluence() gave it.
  // REQUIRES: as above, and 1 <= influence.weight <= sample count,
  // clip_num < clip_den < 2^32 when clipped.
  void Add(const v1::Update& update, const Influence& influence);

  // Adds the sums of another accumulator of the same shape.
  // INVALID_ARGUMENT when the shapes differ.
  absl::Status Merge(const UpdateAccumulator& other);

  // The next head from `global` with the server learning rate in Q16.16.
  // FAILED_PRECONDITION when nothing was accumulated; INVALID_ARGUMENT when
  // global's shape differs.
  absl::StatusOr<Head> Apply(const Head& global, uint32_t server_lr_q16) const;
  // The same with central DP's noise: new_j = saturate_int16(global_j +
  // round_half_even(lr * (T_j + noise_j) / (2^32 * W))), T_j = Total(j);
  // `noise` empty or one value per weight then bias (else
  // INVALID_ARGUMENT), in units of 2^-16 (weight x master step).
  absl::StatusOr<Head> Apply(const Head& global, uint32_t server_lr_q16,
                             const std::vector<int64_t>& noise) const;
  // T_j = 2^16 * sums_j + clipped_sums_j: value j's sum in units of 2^-16
  // (weight x master step), below 2^81 in magnitude.
  // REQUIRES: j < features * classes + classes.
  __int128 Total(size_t j) const;

  uint32_t features() const { return features_; }
  uint32_t classes() const { return classes_; }
  uint32_t participants() const { return participants_; }
  // N: the sample counts the updates claimed.
  uint64_t samples() const { return samples_; }
  // W: the weights they were given (equal to samples() when none capped).
  uint64_t weight() const { return weight_; }
  uint32_t capped() const { return capped_; }
  uint32_t clipped() const { return clipped_; }
  // Weighted mean (by w_i) of the updates' local losses, Q16.16, rounded
  // half to even (0 if empty).
  uint32_t mean_loss_q16() const;
  // Sums of the unclipped contributions: classes x features weights
  // row-major, then classes bias.
  const Sums& sums() const { return sums_; }
  // Sums of the clipped contributions in units of 2^-16, same layout;
  // empty while no clipped update was added.
  const std::vector<__int128>& clipped_sums() const { return clipped_sums_; }

  bool operator==(const UpdateAccumulator& other) const;

 private:
  uint32_t features_;
  uint32_t classes_;
  Sums sums_;
  std::vector<__int128> clipped_sums_;
  uint64_t samples_ = 0;
  uint64_t weight_ = 0;
  uint32_t participants_ = 0;
  uint32_t capped_ = 0;
  uint32_t clipped_ = 0;
  // sum of w_i * loss_i (Q16), for the mean loss.
  unsigned __int128 loss_weighted_ = 0;
};

}  // namespace tinyfed::server

#endif  // TINYFED_SERVER_AGGREGATOR_H_
