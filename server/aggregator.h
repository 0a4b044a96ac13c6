// Exact FedAvg over int8 per-row updates.
//
// Each accepted update i contributes, for every weight and bias j of class
// row c, the integer n_i * s_ic * q_ij (sample count x row scale x int8
// value, below 2^41). The accumulator keeps their sums in int64 along with
// the total sample count N, so:
//   - the result does not depend on the order updates arrive in;
//   - merging accumulators of disjoint update sets equals accumulating all
//     of them flat, bit for bit (the basis of hierarchical aggregation).
// Apply() turns the sums into the next head:
//   new_j = saturate_int16(global_j + round_half_even(lr * sum_j / N))
// with lr a Q16.16 server learning rate, computed in 128-bit integers.
//
// Exactness bound: one update contributes below 2^40.003 per value, so the
// int64 sums are exact for up to 2^22 (4,194,304) updates per accumulator,
// merged ones included; the server caps a round's target below that.
//
// An UpdateAccumulator requires external synchronization.
#ifndef TINYFED_SERVER_AGGREGATOR_H_
#define TINYFED_SERVER_AGGREGATOR_H_

#include <cstdint>

#include <Eigen/Core>

#include "absl/status/statusor.h"
#include "head.h"
#include "tinyfed/v1/round.pb.h"

namespace tinyfed::server {

class UpdateAccumulator {
 public:
  using Sums = Eigen::Matrix<int64_t, Eigen::Dynamic, 1>;

  UpdateAccumulator(uint32_t features, uint32_t classes);

  // Adds one update.
  // REQUIRES: ValidateUpdate() accepted it for this head's shape.
  void Add(const v1::Update& update);

  // Adds the sums of another accumulator of the same shape.
  // INVALID_ARGUMENT when the shapes differ.
  absl::Status Merge(const UpdateAccumulator& other);

  // The next head from `global` with the server learning rate in Q16.16.
  // FAILED_PRECONDITION when nothing was accumulated; INVALID_ARGUMENT when
  // global's shape differs.
  absl::StatusOr<Head> Apply(const Head& global, uint32_t server_lr_q16) const;

  uint32_t features() const { return features_; }
  uint32_t classes() const { return classes_; }
  uint32_t participants() const { return participants_; }
  uint64_t samples() const { return samples_; }
  // Sample-weighted mean of the updates' local losses, Q16.16, rounded half
  // to even (0 if empty).
  uint32_t mean_loss_q16() const;
  // Weighted sums: classes x features weights row-major, then classes bias.
  const Sums& sums() const { return sums_; }

  bool operator==(const UpdateAccumulator& other) const;

 private:
  uint32_t features_;
  uint32_t classes_;
  Sums sums_;
  uint64_t samples_ = 0;
  uint32_t participants_ = 0;
  // sum of n_i * loss_i (Q16), for the mean loss.
  unsigned __int128 loss_weighted_ = 0;
};

}  // namespace tinyfed::server

#endif  // TINYFED_SERVER_AGGREGATOR_H_
