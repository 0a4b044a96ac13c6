// An independent reference of the server's FedAvg rule, for tests that
// check committed versions. Written from the rule documented in
// server/aggregator.h, not from its code, and sharing nothing with
// UpdateAccumulator, LoadHead or StoreHead: it reads the wire bytes itself
// and sums each value over the updates in 128-bit integers, so an error in
// the aggregator, the head codec or the round manager's bookkeeping shows
// up as a difference.
//
// The rule, with bounded influence (as aggregator.h documents it):
//   lower median of k values: the ((k-1)/2)-th smallest;
//   weight cap C = max(1, floor(median(n) * m_w / 2^16)) when m_w != 0,
//     w_i = min(n_i, C);
//   v_i = the vector of s_i,row(j) * q_ij, N2_i = |v_i|^2 (exact);
//   bound B = min(B_f if set, floor(m_n * sqrt(median(N2))) if m_n set);
//   clipped when N2_i > B^2, with factor B / ceil(sqrt(N2_i));
//   contribution in units of 2^-16: unclipped w_i * v_ij * 2^16,
//     clipped round_half_even(w_i * v_ij * 2^16 * B / ceil(sqrt(N2_i)));
//   W = sum_i w_i,  S_j = sum of the contributions,
//   new_j = saturate_int16(old_j + round_half_even(lr_q16 * S_j / (2^32 * W)))
// and the version's metrics: participants, N = sum_i n_i, the counts of
// capped and clipped updates, and the w-weighted mean of the local losses
// (Q16.16) rounded half to even. With no bounds this is plain FedAvg
// (w_i = n_i, nothing clipped).
//
// Plain functions of their arguments; safe for concurrent use.
#ifndef TINYFED_TESTS_SERVER_REFERENCE_FEDAVG_H_
#define TINYFED_TESTS_SERVER_REFERENCE_FEDAVG_H_

#include <gtest/gtest.h>

#include <cstdint>
#include <vector>

#include "tinyfed/v1/model.pb.h"
#include "tinyfed/v1/round.pb.h"

namespace tinyfed::server::testing {

// The bounds in the server's integers; zero turns one off. The defaults are
// those ServerConfig documents (influence: weight 3x the median, norm 2x
// the median, no fixed bound), which every config through ApplyDefaults()
// gets: MatchesReferenceFedAvg judges a committed version by them unless
// told otherwise, ReferenceFedAvg computes plain FedAvg unless told
// otherwise.
struct ReferenceBounds {
  uint32_t weight_median_multiple_q16 = 3 * 65536;
  uint64_t norm_bound = 0;  // master steps
  uint32_t norm_median_multiple_q16 = 2 * 65536;
};
// No bounds: plain FedAvg.
inline constexpr ReferenceBounds kNoBounds{0, 0, 0};

struct ReferenceResult {
  std::vector<int16_t> weights;  // classes x features, row-major
  std::vector<int16_t> bias;     // classes
  uint32_t participants = 0;
  uint64_t samples = 0;
  uint64_t weight = 0;  // W, the sum of the weights after capping
  uint32_t capped = 0;
  uint32_t clipped = 0;
  uint32_t mean_local_loss_q16 = 0;
};

// The next head from `base` (its spec, weights and bias bytes) and the
// round's accepted `updates` (any order; each must have the base's shape),
// with the server learning rate `server_lr_q16` in Q16.16 (65536 = 1.0).
// REQUIRES: at least one update with a sample count above zero.
ReferenceResult ReferenceFedAvg(const v1::ModelVersion& base,
                                const std::vector<v1::Update>& updates,
                                uint32_t server_lr_q16 = 65536,
                                ReferenceBounds bounds = kNoBounds);

// Success when `committed` is the reference FedAvg of `updates` on `base`:
// same weights and bias bytes, metrics, parent and shape; otherwise a
// message naming the first difference.
::testing::AssertionResult MatchesReferenceFedAvg(const v1::ModelVersion& committed,
                                                  const v1::ModelVersion& base,
                                                  const std::vector<v1::Update>& updates,
                                                  uint32_t server_lr_q16 = 65536,
                                                  ReferenceBounds bounds = {});

}  // namespace tinyfed::server::testing

#endif  // TINYFED_TESTS_SERVER_REFERENCE_FEDAVG_H_
