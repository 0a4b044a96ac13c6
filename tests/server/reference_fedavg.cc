#include "reference_fedavg.h"

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

}  // namespace

ReferenceResult ReferenceFedAvg(const v1::ModelVersion& base,
                                const std::vector<v1::Update>& updates, uint32_t server_lr_q16) {
  const size_t features = base.spec().feature_count();
  const size_t classes = base.spec().class_count();
  const std::vector<int16_t> old_weights = Int16sFromBytes(base.weights());
  const std::vector<int16_t> old_bias = Int16sFromBytes(base.bias());

  std::vector<wide> weight_sums(features * classes, 0);
  std::vector<wide> bias_sums(classes, 0);
  wide samples = 0;
  wide loss_sum = 0;
  for (const v1::Update& u : updates) {
    const wide n = u.sample_count();
    samples += n;
    loss_sum += n * static_cast<wide>(u.local_loss_q16());
    for (size_t c = 0; c < classes; ++c) {
      const wide scale = u.row_scales(static_cast<int>(c));
      for (size_t f = 0; f < features; ++f) {
        const wide q = static_cast<signed char>(u.weight_delta()[c * features + f]);
        weight_sums[c * features + f] += n * scale * q;
      }
      bias_sums[c] += n * scale * static_cast<wide>(static_cast<signed char>(u.bias_delta()[c]));
    }
  }

  ReferenceResult r;
  const wide den = samples * 65536;
  for (size_t j = 0; j < weight_sums.size(); ++j) {
    r.weights.push_back(
        Saturate(old_weights[j] + RoundHalfEven(server_lr_q16 * weight_sums[j], den)));
  }
  for (size_t c = 0; c < classes; ++c) {
    r.bias.push_back(Saturate(old_bias[c] + RoundHalfEven(server_lr_q16 * bias_sums[c], den)));
  }
  r.participants = static_cast<uint32_t>(updates.size());
  r.samples = static_cast<uint64_t>(samples);
  r.mean_local_loss_q16 = samples == 0 ? 0 : static_cast<uint32_t>(RoundHalfEven(loss_sum, samples));
  return r;
}

::testing::AssertionResult MatchesReferenceFedAvg(const v1::ModelVersion& committed,
                                                  const v1::ModelVersion& base,
                                                  const std::vector<v1::Update>& updates,
                                                  uint32_t server_lr_q16) {
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
  const ReferenceResult want = ReferenceFedAvg(base, updates, server_lr_q16);
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
      m.mean_local_loss_q16() != want.mean_local_loss_q16) {
    return ::testing::AssertionFailure()
           << "version " << committed.version() << " metrics (participants "
           << m.participants() << ", samples " << m.samples() << ", loss "
           << m.mean_local_loss_q16() << ") differ from the reference (" << want.participants
           << ", " << want.samples << ", " << want.mean_local_loss_q16 << ")";
  }
  return ::testing::AssertionSuccess();
}

}  // namespace tinyfed::server::testing
