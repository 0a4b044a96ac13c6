#include "model_export.h"

#include <cstdint>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "json_output.h"
#include "tinyfed_common/crc32.h"

namespace tinyfed::admin {
namespace {

// Values per line of an array initializer: 10 int16 of up to 6 characters
// keep a line under 80 columns.
constexpr int kValuesPerLine = 10;

int16_t Int16At(const std::string& bytes, size_t index) {
  const auto lo = static_cast<uint8_t>(bytes[2 * index]);
  const auto hi = static_cast<uint8_t>(bytes[2 * index + 1]);
  return static_cast<int16_t>(static_cast<uint16_t>(lo | (hi << 8)));
}

void AppendInt16Array(const std::string& bytes, size_t count, std::string* out) {
  for (size_t i = 0; i < count; ++i) {
    if (i % kValuesPerLine == 0) absl::StrAppend(out, i == 0 ? "" : "\n", "   ");
    absl::StrAppend(out, " ", Int16At(bytes, i), i + 1 < count ? "," : "");
  }
  absl::StrAppend(out, "\n");
}

}  // namespace

absl::StatusOr<ExportFormat> ParseExportFormat(const std::string& name) {
  if (name == "proto") return ExportFormat::kProto;
  if (name == "json") return ExportFormat::kJson;
  if (name == "c") return ExportFormat::kC;
  return absl::InvalidArgumentError(
      absl::StrCat("--format: expected 'proto', 'json' or 'c', got '", name, "'"));
}

absl::Status CheckModelIsWhole(const v1::ModelVersion& model) {
  const v1::HeadSpec& spec = model.spec();
  const auto where = [&] { return absl::StrCat("version ", model.version(), ": "); };
  if (spec.feature_count() < 1 || spec.class_count() < 2) {
    return absl::DataLossError(absl::StrCat(where(), "head of ", spec.class_count(),
                                            " classes x ", spec.feature_count(),
                                            " features is not a head"));
  }
  if (spec.weight_frac_bits() < 4 || spec.weight_frac_bits() > 14) {
    return absl::DataLossError(
        absl::StrCat(where(), "weight_frac_bits ", spec.weight_frac_bits(), " is not in [4, 14]"));
  }
  const uint64_t weight_bytes = 2 * uint64_t{spec.class_count()} * spec.feature_count();
  if (model.weights().size() != weight_bytes) {
    return absl::DataLossError(absl::StrCat(where(), model.weights().size(),
                                            " bytes of weights, expected ", weight_bytes));
  }
  if (model.bias().size() != 2 * uint64_t{spec.class_count()}) {
    return absl::DataLossError(absl::StrCat(where(), model.bias().size(),
                                            " bytes of bias, expected ", 2 * spec.class_count()));
  }
  uint32_t crc = tinyfed_crc32_update(TINYFED_CRC32_INIT,
                                      reinterpret_cast<const uint8_t*>(model.weights().data()),
                                      model.weights().size());
  crc = tinyfed_crc32_update(crc, reinterpret_cast<const uint8_t*>(model.bias().data()),
                             model.bias().size());
  if (crc != model.checksum()) {
    return absl::DataLossError(absl::StrFormat(
        "%schecksum 0x%08x does not match the weights and bias (CRC-32 0x%08x)", where(),
        model.checksum(), crc));
  }
  return absl::OkStatus();
}

absl::StatusOr<std::string> ExportModelAsC(const v1::ModelVersion& model) {
  if (absl::Status s = CheckModelIsWhole(model); !s.ok()) return s;
  const v1::HeadSpec& spec = model.spec();
  const v1::FeatureQuantization& q = spec.feature_quantization();
  const uint32_t classes = spec.class_count();
  const uint32_t features = spec.feature_count();
  const uint32_t f = spec.weight_frac_bits();
  std::string out = absl::StrFormat(
      "/* tinyfed model version %u, written by `tinyfed-admin export --format c`.\n"
      " *\n"
      " * The dense head a device runs on its backbone's features:\n"
      " *   logits[c] = sum over f of W[c][f] * x[f] + b[c]\n"
      " * with W = tinyfed_model_weights (row-major [class][feature]: W[c][f] is\n"
      " * tinyfed_model_weights[c * TINYFED_MODEL_FEATURE_COUNT + f]) and\n"
      " * b = tinyfed_model_bias, int16 in Q%u.%u: real = value / 2^%u.\n"
      " * Features x are int8 as the backbone quantizes them:\n"
      " *   real = scale * (q - TINYFED_MODEL_FEATURE_ZERO_POINT),\n"
      " *   scale = TINYFED_MODEL_FEATURE_SCALE_MULTIPLIER\n"
      " *           * 2^(TINYFED_MODEL_FEATURE_SCALE_SHIFT - 31).\n"
      " * TINYFED_MODEL_CHECKSUM is the CRC-32 (IEEE, as zlib) of W then b as\n"
      " * int16 little-endian bytes, the checksum of the version on the server.\n"
      " *\n"
      " * Static const arrays: they stay in flash, and every file including this\n"
      " * header gets its own copy, so include it in one file. */\n"
      "#ifndef TINYFED_MODEL_H_\n"
      "#define TINYFED_MODEL_H_\n\n"
      "#include <stdint.h>\n\n"
      "#define TINYFED_MODEL_VERSION %uu\n"
      "#define TINYFED_MODEL_CLASS_COUNT %uu\n"
      "#define TINYFED_MODEL_FEATURE_COUNT %uu\n"
      "#define TINYFED_MODEL_WEIGHT_FRAC_BITS %uu\n"
      "#define TINYFED_MODEL_FEATURE_SCALE_MULTIPLIER INT32_C(%d)\n"
      "#define TINYFED_MODEL_FEATURE_SCALE_SHIFT (%d)\n"
      "#define TINYFED_MODEL_FEATURE_ZERO_POINT (%d)\n"
      "#define TINYFED_MODEL_CHECKSUM UINT32_C(0x%08x)\n\n",
      model.version(), 15 - f, f, f, model.version(), classes, features, f, q.scale_multiplier(),
      q.scale_shift(), q.zero_point(), model.checksum());
  absl::StrAppend(&out, "static const int16_t tinyfed_model_weights[", classes, " * ", features,
                  "] = {\n");
  AppendInt16Array(model.weights(), size_t{classes} * features, &out);
  absl::StrAppend(&out, "};\n\n", "static const int16_t tinyfed_model_bias[", classes,
                  "] = {\n");
  AppendInt16Array(model.bias(), classes, &out);
  absl::StrAppend(
      &out, "};\n\n",
      "/* The SDK's read-only view of this head (tinyfed/tinyfed.h):\n"
      " *   static const tinyfed_head_view_t head = TINYFED_MODEL_HEAD_VIEW_INIT; */\n"
      "#define TINYFED_MODEL_HEAD_VIEW_INIT                         \\\n"
      "  {                                                          \\\n"
      "    .weights = tinyfed_model_weights,                        \\\n"
      "    .bias = tinyfed_model_bias,                              \\\n"
      "    .feature_count = TINYFED_MODEL_FEATURE_COUNT,            \\\n"
      "    .class_count = TINYFED_MODEL_CLASS_COUNT,                \\\n"
      "    .weight_frac_bits = TINYFED_MODEL_WEIGHT_FRAC_BITS       \\\n"
      "  }\n\n"
      "#endif /* TINYFED_MODEL_H_ */\n");
  return out;
}

absl::StatusOr<std::string> ExportModel(const v1::ModelVersion& model, ExportFormat format) {
  if (absl::Status s = CheckModelIsWhole(model); !s.ok()) return s;
  switch (format) {
    case ExportFormat::kProto:
      return model.SerializeAsString();
    case ExportFormat::kJson:
      return MessageToJson(model);
    case ExportFormat::kC:
      return ExportModelAsC(model);
  }
  return absl::InvalidArgumentError("unknown export format");
}

}  // namespace tinyfed::admin
