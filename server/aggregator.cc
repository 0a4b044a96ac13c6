#include "aggregator.h"

#include <algorithm>
#include <array>
#include <cassert>
#include <cstddef>
#include <limits>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"

namespace tinyfed::server {
namespace {

using int128 = __int128;
using uint128 = unsigned __int128;

// Clipped contributions are kept in units of 2^-kClipFractionBits.
constexpr int kClipFractionBits = 16;

int128 FromTable(const std::array<int128, 128>& table, int8_t q) {
  return q >= 0 ? table[static_cast<size_t>(q)] : -table[static_cast<size_t>(-q)];
}

uint128 CeilSqrt(uint128 v) {
  const uint128 r = FloorSqrt(v);
  return r * r == v ? r : r + 1;
}

// The lower median (index (k-1)/2 of the sorted values).
// REQUIRES: !values.empty().
template <typename T>
T LowerMedian(std::vector<T> values) {
  const auto middle = values.begin() + static_cast<std::ptrdiff_t>((values.size() - 1) / 2);
  std::nth_element(values.begin(), middle, values.end());
  return *middle;
}

}  // namespace

// num / den rounded to the nearest integer, ties to the even neighbour, so
// that ties do not push the model in one direction round after round.
// REQUIRES: den > 0.
__int128 DivideRoundHalfEven(__int128 num, __int128 den) {
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

// round_half_even(m * q / den) for q = 0..127, without a division per
// value: with m = a * den + b, m * q = (a * q) * den + b * q, so quotient
// and remainder advance by a and b per step, the remainder wrapping at
// den. Rounding half to even is symmetric, so q < 0 gives -table[-q].
// REQUIRES: m >= 0, den > 0.
std::array<__int128, 128> RoundedMultiples(__int128 m, __int128 den) {
  std::array<int128, 128> table;
  const int128 a = m / den;
  const int128 b = m % den;
  int128 quotient = 0;
  int128 rest = 0;
  for (size_t q = 0; q < table.size(); ++q) {
    const int128 twice = 2 * rest;
    table[q] = quotient + static_cast<int128>(twice > den || (twice == den && (quotient & 1) != 0));
    quotient += a;
    rest += b;
    // Without a branch: the wrap is data-dependent and mispredicts.
    const int128 wrap = static_cast<int128>(rest >= den);
    rest -= wrap * den;
    quotient += wrap;
  }
  return table;
}


int16_t SaturateInt16(__int128 v) {
  if (v > std::numeric_limits<int16_t>::max()) return std::numeric_limits<int16_t>::max();
  if (v < std::numeric_limits<int16_t>::min()) return std::numeric_limits<int16_t>::min();
  return static_cast<int16_t>(v);
}

// floor(sqrt(v)), exactly: Newton's iteration from above on integers,
// which decreases strictly until it reaches the floor.
unsigned __int128 FloorSqrt(unsigned __int128 v) {
  if (v < 2) return v;
  // A start above sqrt(v): 2^ceil(bits/2).
  int bits = 0;
  for (uint128 t = v; t != 0; t >>= 1) ++bits;
  uint128 x = uint128{1} << ((bits + 1) / 2);
  for (;;) {
    const uint128 y = (x + v / x) / 2;
    if (y >= x) return x;
    x = y;
  }
}

UpdateMeasure MeasureUpdate(const v1::Update& update, uint32_t features, uint32_t classes) {
  const size_t f = features;
  const auto* w = reinterpret_cast<const int8_t*>(update.weight_delta().data());
  const auto* b = reinterpret_cast<const int8_t*>(update.bias_delta().data());
  uint128 norm = 0;
  for (size_t c = 0; c < classes; ++c) {
    // Per row: s^2 * sum q^2, with sum q^2 <= 4097 * 127^2 < 2^26.
    uint64_t q_squares = static_cast<uint64_t>(b[c] * b[c]);
    const int8_t* q = w + c * f;
    for (size_t j = 0; j < f; ++j) q_squares += static_cast<uint64_t>(q[j] * q[j]);
    const uint64_t s = update.row_scales(static_cast<int>(c));
    norm += static_cast<uint128>(s * s) * q_squares;
  }
  return UpdateMeasure{update.sample_count(), norm};
}

InfluenceDecision DecideInfluence(const std::vector<UpdateMeasure>& measures,
                                  const InfluenceBounds& bounds) {
  InfluenceDecision d;
  d.influence.resize(measures.size());
  if (measures.empty()) return d;

  if (bounds.weight_median_multiple_q16 != 0) {
    std::vector<uint32_t> counts;
    counts.reserve(measures.size());
    for (const UpdateMeasure& m : measures) counts.push_back(m.sample_count);
    const uint64_t cap =
        (static_cast<uint64_t>(LowerMedian(std::move(counts))) * bounds.weight_median_multiple_q16) >>
        16;
    // Sample counts are at most 2^24, so a cap above that caps nothing.
    d.weight_cap = static_cast<uint32_t>(std::clamp<uint64_t>(cap, 1, uint64_t{1} << 24));
  }

  uint128 bound = 0;
  bool has_bound = false;
  if (bounds.norm_bound != 0) {
    bound = bounds.norm_bound;
    has_bound = true;
  }
  if (bounds.norm_median_multiple_q16 != 0) {
    std::vector<uint128> norms;
    norms.reserve(measures.size());
    for (const UpdateMeasure& m : measures) norms.push_back(m.squared_norm);
    // m^2 < 2^64 and median N2 < 2^45: the product fits in 128 bits.
    const uint128 m = bounds.norm_median_multiple_q16;
    const uint128 adaptive = FloorSqrt((m * m * LowerMedian(std::move(norms))) >> 32);
    bound = has_bound ? std::min(bound, adaptive) : adaptive;
    has_bound = true;
  }
  d.has_norm_bound = has_bound;
  d.norm_bound = static_cast<uint64_t>(bound);

  for (size_t i = 0; i < measures.size(); ++i) {
    const UpdateMeasure& m = measures[i];
    Influence& in = d.influence[i];
    in.weight = m.sample_count;
    if (d.weight_cap != 0 && m.sample_count > d.weight_cap) {
      in.weight = d.weight_cap;
      in.capped = true;
      ++d.capped;
    }
    if (has_bound && m.squared_norm > bound * bound) {
      // bound < sqrt(N2) < 2^23, so both fit the factor's 64-bit fields.
      in.clip_num = static_cast<uint64_t>(bound);
      in.clip_den = static_cast<uint64_t>(CeilSqrt(m.squared_norm));
      in.clipped = true;
      ++d.clipped;
    }
  }
  return d;
}

UpdateAccumulator::UpdateAccumulator(uint32_t features, uint32_t classes)
    : features_(features),
      classes_(classes),
      sums_(Sums::Zero(
          static_cast<Eigen::Index>(static_cast<uint64_t>(features) * classes + classes))) {}

void UpdateAccumulator::Add(const v1::Update& update) {
  Add(update, Influence{update.sample_count(), 1, 1, false, false});
}

void UpdateAccumulator::Add(const v1::Update& update, const Influence& influence) {
  const size_t f = features_;
  const size_t c_count = classes_;
  assert(update.weight_delta().size() == f * c_count);
  assert(update.bias_delta().size() == c_count);
  assert(static_cast<size_t>(update.row_scales_size()) == c_count);
  assert(influence.weight >= 1 && influence.weight <= update.sample_count());

  const auto* w = reinterpret_cast<const int8_t*>(update.weight_delta().data());
  const auto* b = reinterpret_cast<const int8_t*>(update.bias_delta().data());
  const int64_t n = influence.weight;
  if (!influence.clipped) {
    int64_t* sums = sums_.data();
    int64_t* bias_sums = sums + f * c_count;
    for (size_t c = 0; c < c_count; ++c) {
      // w <= 2^24 and s <= 517 (validated): m * q stays below 2^41.
      const int64_t m = n * static_cast<int64_t>(update.row_scales(static_cast<int>(c)));
      int64_t* row = sums + c * f;
      const int8_t* q = w + c * f;
      for (size_t j = 0; j < f; ++j) row[j] += m * q[j];
      bias_sums[c] += m * b[c];
    }
  } else {
    assert(influence.clip_num < influence.clip_den);
    if (clipped_sums_.empty()) clipped_sums_.assign(static_cast<size_t>(sums_.size()), 0);
    int128* sums = clipped_sums_.data();
    int128* bias_sums = sums + f * c_count;
    const int128 num = influence.clip_num;
    const int128 den = influence.clip_den;
    for (size_t c = 0; c < c_count; ++c) {
      // w * s * 2^16 * num < 2^24 * 2^10 * 2^16 * 2^23 = 2^73; times q < 2^80.
      const int128 m =
          (static_cast<int128>(n) * update.row_scales(static_cast<int>(c)) * num)
          << kClipFractionBits;
      // The row's rounded contributions, one per possible q (validated:
      // -127..127): a few hundred additions instead of a 128-bit division
      // per value, which made closing a round with many clipped updates
      // several times slower.
      const std::array<int128, 128> table = RoundedMultiples(m, den);
      int128* row = sums + c * f;
      const int8_t* q = w + c * f;
      for (size_t j = 0; j < f; ++j) row[j] += FromTable(table, q[j]);
      bias_sums[c] += FromTable(table, b[c]);
    }
    clipped_ += 1;
  }
  if (influence.capped) capped_ += 1;
  samples_ += update.sample_count();
  weight_ += influence.weight;
  participants_ += 1;
  loss_weighted_ += static_cast<unsigned __int128>(influence.weight) * update.local_loss_q16();
}

absl::Status UpdateAccumulator::Merge(const UpdateAccumulator& other) {
  if (other.features_ != features_ || other.classes_ != classes_) {
    return absl::InvalidArgumentError(absl::StrCat("cannot merge a ", other.features_, "x",
                                                   other.classes_, " accumulator into a ",
                                                   features_, "x", classes_, " one"));
  }
  sums_ += other.sums_;
  if (!other.clipped_sums_.empty()) {
    if (clipped_sums_.empty()) clipped_sums_.assign(other.clipped_sums_.size(), 0);
    for (size_t j = 0; j < clipped_sums_.size(); ++j) clipped_sums_[j] += other.clipped_sums_[j];
  }
  samples_ += other.samples_;
  weight_ += other.weight_;
  participants_ += other.participants_;
  capped_ += other.capped_;
  clipped_ += other.clipped_;
  loss_weighted_ += other.loss_weighted_;
  return absl::OkStatus();
}

absl::StatusOr<Head> UpdateAccumulator::Apply(const Head& global, uint32_t server_lr_q16) const {
  return Apply(global, server_lr_q16, {});
}

int128 UpdateAccumulator::Total(size_t j) const {
  int128 sum = static_cast<int128>(sums_[static_cast<Eigen::Index>(j)]) << kClipFractionBits;
  if (!clipped_sums_.empty()) sum += clipped_sums_[j];
  return sum;
}

absl::StatusOr<Head> UpdateAccumulator::Apply(const Head& global, uint32_t server_lr_q16,
                                              const std::vector<int64_t>& noise) const {
  if (participants_ == 0 || weight_ == 0) {
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
  if (!noise.empty() && noise.size() != weight_count + classes_) {
    return absl::InvalidArgumentError(absl::StrCat("noise has ", noise.size(),
                                                   " values for a head of ",
                                                   weight_count + classes_));
  }
  // Unclipped sums below 2^63 shifted by 16, plus clipped sums below 2^79,
  // plus noise below 2^63, stay below 2^81; times lr < 2^32 below 2^113.
  // W * 2^32 < 2^79.
  const int128 lr = server_lr_q16;
  const int128 den = static_cast<int128>(weight_) << (16 + kClipFractionBits);
  auto total = [&](size_t j) { return noise.empty() ? Total(j) : Total(j) + noise[j]; };
  Head next = global;
  for (size_t j = 0; j < weight_count; ++j) {
    next.weights[j] = SaturateInt16(global.weights[j] + DivideRoundHalfEven(lr * total(j), den));
  }
  for (size_t c = 0; c < classes_; ++c) {
    next.bias[c] = SaturateInt16(global.bias[c] +
                                 DivideRoundHalfEven(lr * total(weight_count + c), den));
  }
  return next;
}

uint32_t UpdateAccumulator::mean_loss_q16() const {
  if (weight_ == 0) return 0;
  // A weighted mean of uint32 losses is at most the largest of them, so the
  // rounded result fits in uint32.
  return static_cast<uint32_t>(
      DivideRoundHalfEven(static_cast<int128>(loss_weighted_), static_cast<int128>(weight_)));
}

bool UpdateAccumulator::operator==(const UpdateAccumulator& other) const {
  return features_ == other.features_ && classes_ == other.classes_ && samples_ == other.samples_ &&
         weight_ == other.weight_ && participants_ == other.participants_ &&
         capped_ == other.capped_ && clipped_ == other.clipped_ &&
         loss_weighted_ == other.loss_weighted_ && sums_ == other.sums_ &&
         clipped_sums_ == other.clipped_sums_;
}

}  // namespace tinyfed::server
