// An independent reference of the server's FedAvg rule, for tests that
// check committed versions. Written from the rule documented in
// server/aggregator.h, not from its code, and sharing nothing with
// UpdateAccumulator, LoadHead or StoreHead: it reads the wire bytes itself
// and sums each value over the updates in 128-bit integers, so an error in
// the aggregator, the head codec or the round manager's bookkeeping shows
// up as a difference.
//
// The rule:  N = sum_i n_i,  S_j = sum_i n_i * s_i,row(j) * q_ij,
//            new_j = saturate_int16(old_j + round_half_even(lr_q16 * S_j / (2^16 * N)))
// and the version's metrics: participants, N, and the sample-weighted mean
// of the local losses (Q16.16) rounded half to even.
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

struct ReferenceResult {
  std::vector<int16_t> weights;  // classes x features, row-major
  std::vector<int16_t> bias;     // classes
  uint32_t participants = 0;
  uint64_t samples = 0;
  uint32_t mean_local_loss_q16 = 0;
};

// The next head from `base` (its spec, weights and bias bytes) and the
// round's accepted `updates` (any order; each must have the base's shape),
// with the server learning rate `server_lr_q16` in Q16.16 (65536 = 1.0).
// REQUIRES: at least one update with a sample count above zero.
ReferenceResult ReferenceFedAvg(const v1::ModelVersion& base,
                                const std::vector<v1::Update>& updates,
                                uint32_t server_lr_q16 = 65536);

// Success when `committed` is the reference FedAvg of `updates` on `base`:
// same weights and bias bytes, metrics, parent and shape; otherwise a
// message naming the first difference.
::testing::AssertionResult MatchesReferenceFedAvg(const v1::ModelVersion& committed,
                                                  const v1::ModelVersion& base,
                                                  const std::vector<v1::Update>& updates,
                                                  uint32_t server_lr_q16 = 65536);

}  // namespace tinyfed::server::testing

#endif  // TINYFED_TESTS_SERVER_REFERENCE_FEDAVG_H_
