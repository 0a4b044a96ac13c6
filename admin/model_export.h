// `tinyfed-admin export`: a committed model version in the forms its users
// take it in. Functions share no state: safe for concurrent use.
#ifndef TINYFED_ADMIN_MODEL_EXPORT_H_
#define TINYFED_ADMIN_MODEL_EXPORT_H_

#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "tinyfed/v1/model.pb.h"

namespace tinyfed::admin {

enum class ExportFormat {
  kProto,  // the ModelVersion in protobuf binary format
  kJson,   // the ModelVersion as proto3 JSON (bytes fields in base64)
  kC,      // a C99 header for a firmware build (ExportModelAsC)
};

// "proto", "json" or "c"; INVALID_ARGUMENT naming the three otherwise.
absl::StatusOr<ExportFormat> ParseExportFormat(const std::string& name);

// Checks that `model` is whole before anything is written from it: a
// spec within model.proto's ranges, weights of exactly 2 x classes x
// features bytes and bias of 2 x classes bytes, and a checksum equal to the
// CRC-32 of weights then bias. DATA_LOSS naming the first mismatch.
absl::Status CheckModelIsWhole(const v1::ModelVersion& model);

// The C header: self-contained C99 (only <stdint.h>), include-guarded by
// TINYFED_MODEL_H_, compiling cleanly with -std=c99 -pedantic -Wall -Wextra.
// It defines
//   TINYFED_MODEL_VERSION, _CLASS_COUNT, _FEATURE_COUNT, _WEIGHT_FRAC_BITS,
//   TINYFED_MODEL_FEATURE_SCALE_MULTIPLIER, _FEATURE_SCALE_SHIFT,
//   _FEATURE_ZERO_POINT (model.proto's FeatureQuantization), and
//   TINYFED_MODEL_CHECKSUM (the ModelVersion's CRC-32),
//   tinyfed_model_weights: static const int16_t[classes * features],
//     row-major [class][feature], in the master format Q(15-f).f,
//   tinyfed_model_bias: static const int16_t[classes], same format,
//   TINYFED_MODEL_HEAD_VIEW_INIT: a designated initializer of the SDK's
//     tinyfed_head_view_t (tinyfed/tinyfed.h) over those arrays.
// Static const arrays land in flash on a microcontroller, and each file
// that includes the header gets its own copy: include it in one file.
// Errors: CheckModelIsWhole's.
absl::StatusOr<std::string> ExportModelAsC(const v1::ModelVersion& model);

// `model` in `format`: the bytes to write. Errors: CheckModelIsWhole's.
absl::StatusOr<std::string> ExportModel(const v1::ModelVersion& model, ExportFormat format);

}  // namespace tinyfed::admin

#endif  // TINYFED_ADMIN_MODEL_EXPORT_H_
