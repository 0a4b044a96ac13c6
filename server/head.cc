#include "head.h"

#include "absl/strings/str_cat.h"
#include "tinyfed_common/host_numerics.h"

namespace tinyfed::server {
namespace {

std::string EncodeInt16(const std::vector<int16_t>& values) {
  std::string out(values.size() * 2, '\0');
  for (size_t i = 0; i < values.size(); ++i) {
    const auto u = static_cast<uint16_t>(values[i]);
    out[2 * i] = static_cast<char>(u & 0xFF);
    out[2 * i + 1] = static_cast<char>(u >> 8);
  }
  return out;
}

std::vector<int16_t> DecodeInt16(const std::string& bytes) {
  std::vector<int16_t> out(bytes.size() / 2);
  for (size_t i = 0; i < out.size(); ++i) {
    const auto lo = static_cast<uint8_t>(bytes[2 * i]);
    const auto hi = static_cast<uint8_t>(bytes[2 * i + 1]);
    out[i] = static_cast<int16_t>(static_cast<uint16_t>(lo | (hi << 8)));
  }
  return out;
}

}  // namespace

Head Head::Zeros(uint32_t features, uint32_t classes) {
  Head h;
  h.features = features;
  h.classes = classes;
  h.weights.assign(static_cast<size_t>(features) * classes, 0);
  h.bias.assign(classes, 0);
  return h;
}

uint32_t ModelChecksum(const std::string& weights, const std::string& bias) {
  return Crc32Update(Crc32Update(0, weights.data(), weights.size()), bias.data(), bias.size());
}

void StoreHead(const Head& head, v1::ModelVersion* model) {
  model->set_weights(EncodeInt16(head.weights));
  model->set_bias(EncodeInt16(head.bias));
  model->set_checksum(ModelChecksum(model->weights(), model->bias()));
}

absl::StatusOr<Head> LoadHead(const v1::ModelVersion& model) {
  if (!model.has_spec()) return absl::InvalidArgumentError("model has no spec");
  const uint32_t f = model.spec().feature_count();
  const uint32_t c = model.spec().class_count();
  if (f == 0 || c < 2 || c > 32 || static_cast<uint64_t>(f) * c > 4096) {
    return absl::InvalidArgumentError(
        absl::StrCat("head ", f, "x", c, " outside the protocol bounds (<= 32 classes, <= 4096 weights)"));
  }
  if (model.weights().size() != 2ull * f * c || model.bias().size() != 2ull * c) {
    return absl::InvalidArgumentError(absl::StrCat(
        "model bytes (", model.weights().size(), " weights, ", model.bias().size(),
        " bias) do not match a ", f, "x", c, " head"));
  }
  if (ModelChecksum(model.weights(), model.bias()) != model.checksum()) {
    return absl::InvalidArgumentError("model checksum mismatch");
  }
  Head head;
  head.features = f;
  head.classes = c;
  head.weights = DecodeInt16(model.weights());
  head.bias = DecodeInt16(model.bias());
  return head;
}

}  // namespace tinyfed::server
