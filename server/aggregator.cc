#include "aggregator.h"

#include <cassert>
#include <cstddef>
#include <limits>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"

namespace tinyfed::server {
namespace {

using int128 = __int128;

// num / den rounded to the nearest integer, ties to the even neighbour, so
// that ties do not push the model in one direction round after round.
// REQUIRES: den > 0.
int128 DivideRoundHalfEven(int128 num, int128 den) {
  int128 q = num / den;  // truncates toward zero
  int128 r = num % den;  // same sign as num
  if (r < 0) {           // move to floor so that 0 <= r < den
    q -= 1;
    r += den;
  }
  const int128 twice = 2 * r;
  if (twice > den || (twice == den && (q & 1) != 0)) q += 1;
  return q;
}

int16_t SaturateInt16(int128 v) {
  if (v > std::numeric_limits<int16_t>::max()) return std::numeric_limits<int16_t>::max();
  if (v < std::numeric_limits<int16_t>::min()) return std::numeric_limits<int16_t>::min();
  return static_cast<int16_t>(v);
}

}  // namespace

UpdateAccumulator::UpdateAccumulator(uint32_t features, uint32_t classes)
    : features_(features),
      classes_(classes),
      sums_(Sums::Zero(
          static_cast<Eigen::Index>(static_cast<uint64_t>(features) * classes + classes))) {}

void UpdateAccumulator::Add(const v1::Update& update) {
  const size_t f = features_;
  const size_t c_count = classes_;
  assert(update.weight_delta().size() == f * c_count);
  assert(update.bias_delta().size() == c_count);
  assert(static_cast<size_t>(update.row_scales_size()) == c_count);

  const auto* w = reinterpret_cast<const int8_t*>(update.weight_delta().data());
  const auto* b = reinterpret_cast<const int8_t*>(update.bias_delta().data());
  const int64_t n = update.sample_count();
  int64_t* sums = sums_.data();
  int64_t* bias_sums = sums + f * c_count;
  for (size_t c = 0; c < c_count; ++c) {
    // n <= 2^24 and s <= 517 (validated): m * q stays below 2^41.
    const int64_t m = n * static_cast<int64_t>(update.row_scales(static_cast<int>(c)));
    int64_t* row = sums + c * f;
    const int8_t* q = w + c * f;
    for (size_t j = 0; j < f; ++j) row[j] += m * q[j];
    bias_sums[c] += m * b[c];
  }
  samples_ += update.sample_count();
  participants_ += 1;
  loss_weighted_ += static_cast<unsigned __int128>(update.sample_count()) * update.local_loss_q16();
}

absl::Status UpdateAccumulator::Merge(const UpdateAccumulator& other) {
  if (other.features_ != features_ || other.classes_ != classes_) {
    return absl::InvalidArgumentError(absl::StrCat("cannot merge a ", other.features_, "x",
                                                   other.classes_, " accumulator into a ",
                                                   features_, "x", classes_, " one"));
  }
  sums_ += other.sums_;
  samples_ += other.samples_;
  participants_ += other.participants_;
  loss_weighted_ += other.loss_weighted_;
  return absl::OkStatus();
}

absl::StatusOr<Head> UpdateAccumulator::Apply(const Head& global, uint32_t server_lr_q16) const {
  if (participants_ == 0 || samples_ == 0) {
    return absl::FailedPreconditionError("no updates accumulated: nothing to apply");
  }
  const size_t weight_count = static_cast<size_t>(features_) * classes_;
  if (global.features != features_ || global.classes != classes_ ||
      global.weights.size() != weight_count || global.bias.size() != classes_) {
    return absl::InvalidArgumentError(
        absl::StrCat("global head ", global.features, "x", global.classes, " (",
                     global.weights.size(), " weights, ", global.bias.size(),
                     " bias) does not match the accumulator's ", features_, "x", classes_));
  }
  // |sum_j| < 2^63 and lr < 2^32, so lr * sum_j < 2^95; N * 2^16 < 2^80.
  const int128 lr = server_lr_q16;
  const int128 den = static_cast<int128>(samples_) << 16;
  Head next = global;
  for (size_t j = 0; j < weight_count; ++j) {
    next.weights[j] = SaturateInt16(
        global.weights[j] + DivideRoundHalfEven(lr * sums_[static_cast<Eigen::Index>(j)], den));
  }
  for (size_t c = 0; c < classes_; ++c) {
    next.bias[c] = SaturateInt16(
        global.bias[c] +
        DivideRoundHalfEven(lr * sums_[static_cast<Eigen::Index>(weight_count + c)], den));
  }
  return next;
}

uint32_t UpdateAccumulator::mean_loss_q16() const {
  if (samples_ == 0) return 0;
  // A weighted mean of uint32 losses is at most the largest of them, so the
  // rounded result fits in uint32.
  return static_cast<uint32_t>(
      DivideRoundHalfEven(static_cast<int128>(loss_weighted_), static_cast<int128>(samples_)));
}

bool UpdateAccumulator::operator==(const UpdateAccumulator& other) const {
  return features_ == other.features_ && classes_ == other.classes_ && samples_ == other.samples_ &&
         participants_ == other.participants_ && loss_weighted_ == other.loss_weighted_ &&
         sums_ == other.sums_;
}

}  // namespace tinyfed::server
