#include "reference_fedavg.h"

#include <algorithm>
#include <cstddef>
#include <string>

namespace tinyfed::server::testing {
namespace {

using wide = __int128;

// Little-endian int16 values from wire bytes, read byte by byte.
std::vector<int16_t> Int16sFromBytes(const std::string& bytes) {
  std::vector<int16_t> out(bytes.size() / 2);
  for (size_t i = 0; i < out.size(); ++i) {
    const unsigned lo = static_cast<unsigned char>(bytes[2 * i]);
    const unsigned hi = static_cast<unsigned char>(bytes[2 * i + 1]);
    const int value = static_cast<int>(lo | (hi << 8));
    out[i] = static_cast<int16_t>(value >= 32768 ? value - 65536 : value);
  }
  return out;
}

// The nearest integer to num/den, ties to the even one: compares twice the
// distance to the integer below against den, in magnitudes.
wide RoundHalfEven(wide num, wide den) {
  const bool negative = num < 0;
  const wide magnitude = negative ? -num : num;
  wide below = magnitude / den;
  const wide twice_rest = 2 * (magnitude - below * den);
  // For a negative quotient, "round magnitude half to even" is the same as
  // rounding the signed value half to even: evenness does not see the sign.
  if (twice_rest > den || (twice_rest == den && below % 2 == 1)) below += 1;
  return negative ? -below : below;
}

int16_t Saturate(wide v) {
  if (v > 32767) return 32767;
  if (v < -32768) return -32768;
  return static_cast<int16_t>(v);
}

// The ((k-1)/2)-th smallest of `values`, from a sorted copy.
wide LowerMedian(std::vector<wide> values) {
  std::sort(values.begin(), values.end());
  return values[(values.size() - 1) / 2];
}

// floor(sqrt(v)) by bisection on [0, 2^64): the largest r with r*r <= v.
wide FloorSqrtByBisection(wide v) {
  wide lo = 0;
  wide hi = wide{1} << 64;  // hi*hi > v for every v below 2^127
  while (hi - lo > 1) {
    const wide mid = lo + (hi - lo) / 2;
    if (mid * mid <= v) {
      lo = mid;
    } else {
      hi = mid;
    }
  }
  return lo;
}

}  // namespace

ReferenceResult ReferenceFedAvg(const v1::ModelVersion& base,
                                const std::vector<v1::Update>& updates, uint32_t server_lr_q16,
                                ReferenceBounds bounds) {
  const size_t features = base.spec().feature_count();
  const size_t classes = base.spec().class_count();
  const size_t values = features * classes + classes;
  const std::vector<int16_t> old_weights = Int16sFromBytes(base.weights());
  const std::vector<int16_t> old_bias = Int16sFromBytes(base.bias());

  // Every update's dequantized delta v, weights row-major then bias.
  std::vector<std::vector<wide>> deltas;
  for (const v1::Update& u : updates) {
    std::vector<wide> v(values);
    for (size_t c = 0; c < classes; ++c) {
      const wide scale = u.row_scales(static_cast<int>(c));
      for (size_t f = 0; f < features; ++f) {
        v[c * features + f] = scale * static_cast<signed char>(u.weight_delta()[c * features + f]);
      }
      v[features * classes + c] = scale * static_cast<signed char>(u.bias_delta()[c]);
    }
    deltas.push_back(std::move(v));
  }
  std::vector<wide> counts, squared_norms;
  for (size_t i = 0; i < updates.size(); ++i) {
    counts.push_back(updates[i].sample_count());
    wide n2 = 0;
    for (wide x : deltas[i]) n2 += x * x;
    squared_norms.push_back(n2);
  }

  wide cap = 0;  // none
  if (bounds.weight_median_multiple_q16 != 0) {
    cap = std::max<wide>(1, LowerMedian(counts) * bounds.weight_median_multiple_q16 / 65536);
  }
  bool bounded = false;
  wide bound = 0;
  if (bounds.norm_bound != 0) {
    bounded = true;
    bound = bounds.norm_bound;
  }
  if (bounds.norm_median_multiple_q16 != 0) {
    // floor(m * sqrt(M)) = floor(sqrt(m^2 * M)), with m = m_q16 / 2^16.
    const wide m = bounds.norm_median_multiple_q16;
    const wide adaptive = FloorSqrtByBisection(m * m * LowerMedian(squared_norms) / (wide{1} << 32));
    bound = bounded ? std::min(bound, adaptive) : adaptive;
    bounded = true;
  }

  ReferenceResult r;
  std::vector<wide> sums(values, 0);  // units of 2^-16
  wide samples = 0, weight = 0, loss_sum = 0;
  for (size_t i = 0; i < updates.size(); ++i) {
    const wide n = counts[i];
    wide w = n;
    if (cap != 0 && n > cap) {
      w = cap;
      ++r.capped;
    }
    samples += n;
    weight += w;
    loss_sum += w * static_cast<wide>(updates[i].local_loss_q16());
    if (bounded && squared_norms[i] > bound * bound) {
      ++r.clipped;
      wide den = FloorSqrtByBisection(squared_norms[i]);
      if (den * den != squared_norms[i]) den += 1;
      for (size_t j = 0; j < values; ++j) {
        sums[j] += RoundHalfEven(w * deltas[i][j] * 65536 * bound, den);
      }
    } else {
      for (size_t j = 0; j < values; ++j) sums[j] += w * deltas[i][j] * 65536;
    }
  }

  const wide den = weight * (wide{1} << 32);
  for (size_t j = 0; j < features * classes; ++j) {
    r.weights.push_back(Saturate(old_weights[j] + RoundHalfEven(server_lr_q16 * sums[j], den)));
  }
  for (size_t c = 0; c < classes; ++c) {
    r.bias.push_back(Saturate(old_bias[c] +
                              RoundHalfEven(server_lr_q16 * sums[features * classes + c], den)));
  }
  r.participants = static_cast<uint32_t>(updates.size());
  r.samples = static_cast<uint64_t>(samples);
  r.weight = static_cast<uint64_t>(weight);
  r.mean_local_loss_q16 = weight == 0 ? 0 : static_cast<uint32_t>(RoundHalfEven(loss_sum, weight));
  return r;
}

::testing::AssertionResult MatchesReferenceFedAvg(const v1::ModelVersion& committed,
                                                  const v1::ModelVersion& base,
                                                  const std::vector<v1::Update>& updates,
                                                  uint32_t server_lr_q16,
                                                  ReferenceBounds bounds) {
  if (updates.empty()) return ::testing::AssertionFailure() << "no updates to compare with";
  if (committed.parent_version() != base.version()) {
    return ::testing::AssertionFailure() << "version " << committed.version() << " has parent "
                                         << committed.parent_version() << ", expected "
                                         << base.version();
  }
  if (committed.spec().feature_count() != base.spec().feature_count() ||
      committed.spec().class_count() != base.spec().class_count()) {
    return ::testing::AssertionFailure() << "version " << committed.version()
                                         << " changed the head's shape";
  }
  const ReferenceResult want = ReferenceFedAvg(base, updates, server_lr_q16, bounds);
  const std::vector<int16_t> weights = Int16sFromBytes(committed.weights());
  const std::vector<int16_t> bias = Int16sFromBytes(committed.bias());
  if (weights.size() != want.weights.size() || bias.size() != want.bias.size()) {
    return ::testing::AssertionFailure() << "version " << committed.version() << " holds "
                                         << weights.size() << " weights and " << bias.size()
                                         << " bias values, expected " << want.weights.size()
                                         << " and " << want.bias.size();
  }
  for (size_t j = 0; j < weights.size(); ++j) {
    if (weights[j] != want.weights[j]) {
      return ::testing::AssertionFailure()
             << "version " << committed.version() << " weight " << j << " (class "
             << j / base.spec().feature_count() << ") is " << weights[j] << ", reference "
             << want.weights[j] << " over " << updates.size() << " updates";
    }
  }
  for (size_t c = 0; c < bias.size(); ++c) {
    if (bias[c] != want.bias[c]) {
      return ::testing::AssertionFailure() << "version " << committed.version() << " bias "
                                           << c << " is " << bias[c] << ", reference "
                                           << want.bias[c];
    }
  }
  const v1::ModelMetrics& m = committed.metrics();
  if (m.participants() != want.participants || m.samples() != want.samples ||
      m.mean_local_loss_q16() != want.mean_local_loss_q16 ||
      m.capped_updates() != want.capped || m.clipped_updates() != want.clipped) {
    return ::testing::AssertionFailure()
           << "version " << committed.version() << " metrics (participants "
           << m.participants() << ", samples " << m.samples() << ", capped " << m.capped_updates() << ", clipped " << m.clipped_updates()
           << ", loss " << m.mean_local_loss_q16() << ") differ from the reference ("
           << want.participants << ", " << want.samples << ", " << want.capped << ", " << want.clipped << ", " << want.mean_local_loss_q16 << ")";
  }
  return ::testing::AssertionSuccess();
}

}  // namespace tinyfed::server::testing
