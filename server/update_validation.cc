#include "update_validation.h"

#include <cstddef>
#include <cstdint>
#include <string>

#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "tinyfed_common/fleet_keys.h"
#include "tinyfed_common/host_numerics.h"
#include "tinyfed_common/quantize.h"

namespace tinyfed::server {
namespace {

// Bounds shared with the device side (proto/tinyfed/v1/round.options says why).
constexpr size_t kMaxTaskTokenBytes = 16;
// 2^24 samples per device: n * s * q stays below 2^41, so the int64 sums of
// the aggregator hold millions of updates exactly.
constexpr uint32_t kMaxSampleCount = uint32_t{1} << 24;
constexpr uint32_t kMinRowScale = 1;
constexpr uint32_t kMaxRowScale = TINYFED_ROW_SCALE_MAX;
// The quantizer's range is symmetric; -128 never comes from a correct device.
constexpr int8_t kForbiddenValue = -128;
// Each sample's cross-entropy is below 32 in the SDK's Q16.16 (2^21), so a
// device's loss sum is at most samples x 2^21 <= 2^45: a version's sum
// over 2^19 such devices still fits the store's 64-bit sums.
constexpr uint64_t kMaxLossPerSampleQ16 = uint64_t{1} << 21;

absl::Status ValidateEvaluation(const v1::Evaluation& e, uint32_t base_version) {
  if (e.model_version() != base_version) {
    return absl::InvalidArgumentError(
        absl::StrCat("evaluation.model_version: expected the update's base_version ",
                     base_version, ", got ", e.model_version()));
  }
  if (e.samples() < 1 || e.samples() > kMaxSampleCount) {
    return absl::InvalidArgumentError(absl::StrCat(
        "evaluation.samples: expected in [1, ", kMaxSampleCount, "], got ", e.samples()));
  }
  if (e.correct() > e.samples()) {
    return absl::InvalidArgumentError(absl::StrCat("evaluation.correct: expected at most ",
                                                   e.samples(), " (its samples), got ",
                                                   e.correct()));
  }
  const uint64_t max_loss = uint64_t{e.samples()} * kMaxLossPerSampleQ16;
  if (e.loss_sum_q16() > max_loss) {
    return absl::InvalidArgumentError(
        absl::StrCat("evaluation.loss_sum_q16: expected at most ", max_loss,
                     " (samples x 2^21), got ", e.loss_sum_q16()));
  }
  return absl::OkStatus();
}

// The device id and token checks every Update gets.
absl::Status ValidateSender(const v1::Update& update) {
  // The one rule for device ids (fleet_keys.h), under this message's
  // field name.
  if (absl::Status s = ValidateDeviceId(update.device_id()); !s.ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat("device_id: ", absl::StripPrefix(s.message(), "device id: ")));
  }
  if (update.task_token().size() > kMaxTaskTokenBytes) {
    return absl::InvalidArgumentError(absl::StrCat("task_token: expected at most ",
                                                   kMaxTaskTokenBytes, " bytes, got ",
                                                   update.task_token().size()));
  }
  return absl::OkStatus();
}

}  // namespace

absl::Status ValidateEvaluationOnlyUpdate(const v1::Update& update, uint32_t model_version) {
  if (absl::Status s = ValidateSender(update); !s.ok()) return s;
  const auto refused = [](absl::string_view field, absl::string_view got) {
    return absl::InvalidArgumentError(absl::StrCat(
        field, ": an evaluation-only task's update carries only its evaluation, got ", got));
  };
  if (update.base_version() != model_version) {
    return absl::InvalidArgumentError(absl::StrCat(
        "base_version: expected the evaluated version ", model_version, ", got ",
        update.base_version()));
  }
  if (update.sample_count() != 0) {
    return refused("sample_count", absl::StrCat(update.sample_count()));
  }
  if (!update.weight_delta().empty()) {
    return refused("weight_delta", absl::StrCat(update.weight_delta().size(), " bytes"));
  }
  if (!update.bias_delta().empty()) {
    return refused("bias_delta", absl::StrCat(update.bias_delta().size(), " bytes"));
  }
  if (update.row_scales_size() != 0) {
    return refused("row_scales", absl::StrCat(update.row_scales_size(), " scales"));
  }
  if (update.checksum() != 0) return refused("checksum", absl::StrCat(update.checksum()));
  if (!update.has_evaluation()) {
    return absl::InvalidArgumentError("evaluation: an evaluation-only task's update needs one");
  }
  return ValidateEvaluation(update.evaluation(), update.base_version());
}

absl::Status ValidateServingState(const v1::ServingState& serving, uint32_t declared_samples) {
  if (!serving.has_evaluation()) return absl::OkStatus();
  const v1::Evaluation& e = serving.evaluation();
  if (serving.model_version() == 0) {
    return absl::InvalidArgumentError(
        "serving.evaluation: a device that serves no model (model_version 0) has none to report");
  }
  if (e.model_version() != serving.model_version()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "serving.evaluation.model_version: expected the served serving.model_version ",
        serving.model_version(), ", got ", e.model_version()));
  }
  if (absl::Status s = ValidateEvaluation(e, serving.model_version()); !s.ok()) {
    return absl::InvalidArgumentError(absl::StrCat("serving.", s.message()));
  }
  if (declared_samples != 0 && e.samples() > declared_samples) {
    return absl::InvalidArgumentError(absl::StrCat(
        "serving.evaluation.samples: ", e.samples(), " is above the ", declared_samples,
        " samples declared in capabilities.sample_count"));
  }
  return absl::OkStatus();
}

absl::Status ValidateUpdate(const v1::Update& update, const v1::HeadSpec& spec) {
  if (absl::Status s = ValidateSender(update); !s.ok()) return s;

  if (update.sample_count() < 1 || update.sample_count() > kMaxSampleCount) {
    return absl::InvalidArgumentError(absl::StrCat(
        "sample_count: expected in [1, ", kMaxSampleCount, "], got ", update.sample_count()));
  }

  const uint64_t features = spec.feature_count();
  const uint64_t classes = spec.class_count();
  if (update.weight_delta().size() != features * classes) {
    return absl::InvalidArgumentError(
        absl::StrCat("weight_delta: expected ", features * classes, " bytes (", classes,
                     " classes x ", features, " features), got ", update.weight_delta().size()));
  }
  if (update.bias_delta().size() != classes) {
    return absl::InvalidArgumentError(absl::StrCat("bias_delta: expected ", classes,
                                                   " bytes (one per class), got ",
                                                   update.bias_delta().size()));
  }

  const std::string& w = update.weight_delta();
  for (size_t i = 0; i < w.size(); ++i) {
    if (static_cast<int8_t>(w[i]) == kForbiddenValue) {
      return absl::InvalidArgumentError(
          absl::StrCat("weight_delta[class ", i / features, "][feature ", i % features,
                       "]: expected a value in [-127, 127], got -128"));
    }
  }
  const std::string& b = update.bias_delta();
  for (size_t c = 0; c < b.size(); ++c) {
    if (static_cast<int8_t>(b[c]) == kForbiddenValue) {
      return absl::InvalidArgumentError(
          absl::StrCat("bias_delta[", c, "]: expected a value in [-127, 127], got -128"));
    }
  }

  if (static_cast<uint64_t>(update.row_scales_size()) != classes) {
    return absl::InvalidArgumentError(absl::StrCat(
        "row_scales: expected ", classes, " (one per class), got ", update.row_scales_size()));
  }
  for (int c = 0; c < update.row_scales_size(); ++c) {
    const uint32_t s = update.row_scales(c);
    if (s < kMinRowScale || s > kMaxRowScale) {
      return absl::InvalidArgumentError(absl::StrCat(
          "row_scales[", c, "]: expected in [", kMinRowScale, ", ", kMaxRowScale, "], got ", s));
    }
  }

  const uint32_t crc = Crc32Update(Crc32Update(0, w.data(), w.size()), b.data(), b.size());
  if (crc != update.checksum()) {
    return absl::InvalidArgumentError(
        absl::StrCat("checksum: expected 0x", absl::Hex(crc, absl::kZeroPad8),
                     " (CRC-32 of weight_delta then bias_delta), got 0x",
                     absl::Hex(update.checksum(), absl::kZeroPad8)));
  }
  if (update.has_evaluation()) {
    return ValidateEvaluation(update.evaluation(), update.base_version());
  }
  return absl::OkStatus();
}

}  // namespace tinyfed::server
