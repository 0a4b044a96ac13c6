#include "sdk_test_support.h"

#include <array>
#include <random>
#include <stdexcept>

#include "tinyfed_common/crc32.h"

namespace tinyfed::testing {

tinyfed_dataset_t QuantizedDataset::view() const {
  tinyfed_dataset_t d{};
  d.features = x.data();
  d.labels = y.data();
  d.count = static_cast<uint32_t>(y.size());
  d.feature_count = static_cast<uint32_t>(features);
  return d;
}

QuantizedDataset MakeBlobs(uint32_t class_means_seed, uint32_t sample_seed,
                           size_t count, int features, int classes,
                           double separation, double scale, int32_t zero_point) {
  std::mt19937 means_rng(class_means_seed);
  std::normal_distribution<double> normal(0.0, 1.0);
  std::vector<double> means(static_cast<size_t>(features * classes));
  for (double& m : means) m = separation * normal(means_rng);

  std::mt19937 rng(sample_seed);
  std::uniform_int_distribution<int> pick(0, classes - 1);
  QuantizedDataset d;
  d.features = features;
  d.classes = classes;
  d.scale = scale;
  d.zero_point = zero_point;
  d.x.resize(count * static_cast<size_t>(features));
  d.y.resize(count);
  d.real.features.resize(static_cast<Eigen::Index>(count), features);
  d.real.labels.resize(count);
  for (size_t i = 0; i < count; ++i) {
    const int label = pick(rng);
    d.y[i] = static_cast<uint8_t>(label);
    d.real.labels[i] = static_cast<uint8_t>(label);
    for (int f = 0; f < features; ++f) {
      const double value =
          means[static_cast<size_t>(label * features + f)] + normal(rng);
      const int8_t q = QuantizeFeature(value, scale, zero_point);
      d.x[i * static_cast<size_t>(features) + static_cast<size_t>(f)] = q;
      d.real.features(static_cast<Eigen::Index>(i), f) =
          scale * (static_cast<int32_t>(q) - zero_point);
    }
  }
  return d;
}

std::string EncodeInt16(const std::vector<int16_t>& values) {
  std::string out;
  out.reserve(values.size() * 2);
  for (int16_t v : values) {
    const auto u = static_cast<uint16_t>(v);
    out.push_back(static_cast<char>(u & 0xFF));
    out.push_back(static_cast<char>(u >> 8));
  }
  return out;
}

v1::RoundTask BuildTask(const TaskParams& p) {
  v1::RoundTask task;
  task.set_round(p.round);
  task.set_task_token(p.token);
  task.set_deadline_ms(p.deadline_ms);
  task.mutable_quantization()->set_scheme(
      v1::QUANTIZATION_SCHEME_INT8_PER_ROW_STOCHASTIC);
  v1::TrainingPlan* plan = task.mutable_plan();
  plan->set_epochs(p.epochs);
  plan->set_batch_size(p.batch_size);
  plan->set_learning_rate_q16(ToQ16(p.learning_rate));
  plan->set_seed(p.seed);
  v1::ModelVersion* model = task.mutable_model();
  model->set_version(p.version);
  model->set_parent_version(p.version - 1);
  model->set_round(p.round - 1);
  v1::HeadSpec* spec = model->mutable_spec();
  spec->set_feature_count(p.features);
  spec->set_class_count(p.classes);
  spec->set_weight_frac_bits(p.frac_bits);
  const auto fixed = ToFixedScale(p.feature_scale);
  if (!fixed) throw std::invalid_argument("feature scale out of range");
  spec->mutable_feature_quantization()->set_scale_multiplier(fixed->multiplier);
  spec->mutable_feature_quantization()->set_scale_shift(fixed->shift);
  spec->mutable_feature_quantization()->set_zero_point(p.zero_point);
  std::vector<int16_t> w = p.weights;
  std::vector<int16_t> b = p.bias;
  if (w.empty()) w.assign(static_cast<size_t>(p.features) * p.classes, 0);
  if (b.empty()) b.assign(p.classes, 0);
  model->set_weights(EncodeInt16(w));
  model->set_bias(EncodeInt16(b));
  uint32_t crc = tinyfed_crc32_update(
      TINYFED_CRC32_INIT, reinterpret_cast<const uint8_t*>(model->weights().data()),
      model->weights().size());
  crc = tinyfed_crc32_update(crc, reinterpret_cast<const uint8_t*>(model->bias().data()),
                             model->bias().size());
  model->set_checksum(crc);
  return task;
}

std::string EncodeCheckInResponse(const v1::RoundTask& task) {
  v1::CheckInResponse response;
  *response.mutable_task() = task;
  return response.SerializeAsString();
}

Key256 TestFleetKey() {
  std::array<uint8_t, Key256::kSize> bytes{};
  for (size_t i = 0; i < bytes.size(); ++i) bytes[i] = static_cast<uint8_t>(i);
  return Key256(bytes);
}

Key256 TestDeviceKey(const std::string& id) {
  absl::StatusOr<Key256> key = DeriveDeviceKey(TestFleetKey(), id);
  if (!key.ok()) throw std::runtime_error(std::string(key.status().message()));
  return *key;
}

Envelope ParseEnvelope(const std::string& bytes) {
  Envelope e;
  v1::SignedRequest request;
  if (!request.ParseFromString(bytes)) return e;
  e.ok = true;
  e.device_id = request.device_id();
  e.body = request.body();
  e.tag = request.tag();
  return e;
}

Device::Device(std::string id, uint32_t max_features, uint32_t max_classes,
               uint32_t max_batch)
    : Device(id, TestDeviceKey(id), max_features, max_classes, max_batch) {}

Device::Device(std::string id, const Key256& key, uint32_t max_features,
               uint32_t max_classes, uint32_t max_batch)
    : id_(std::move(id)),
      key_(key),
      arena_(tinyfed_arena_size(max_features, max_classes, max_batch)) {
  tinyfed_config_t config{id_.c_str(), max_features, max_classes, max_batch,
                          key_.bytes().data()};
  if (tinyfed_init(&ctx_, &config, arena_.data(), arena_.size()) != TINYFED_OK) {
    throw std::runtime_error(std::string("tinyfed_init: ") +
                             tinyfed_last_error_message(&ctx_));
  }
}

uint32_t Device::hash() const {
  return tinyfed_crc32_update(TINYFED_CRC32_INIT,
                              reinterpret_cast<const uint8_t*>(id_.data()),
                              id_.size());
}

tinyfed_status_t Device::Load(const v1::RoundTask& task) {
  const std::string bytes = EncodeCheckInResponse(task);
  tinyfed_checkin_result_t result{};
  return tinyfed_checkin_response_decode(
      &ctx_, reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size(), &result);
}

std::string Device::EncodeSignedUpdate() {
  std::vector<uint8_t> buf(TINYFED_UPDATE_MAX_SIZE(ctx_.max_features, ctx_.max_classes));
  size_t len = 0;
  if (tinyfed_update_encode(&ctx_, buf.data(), buf.size(), &len) != TINYFED_OK) {
    return {};
  }
  return std::string(reinterpret_cast<const char*>(buf.data()), len);
}

std::string Device::EncodeUpdate() {
  const Envelope envelope = ParseEnvelope(EncodeSignedUpdate());
  return envelope.ok ? envelope.body : std::string();
}

double DeviceAccuracy(const tinyfed_context_t* ctx, const QuantizedDataset& data) {
  size_t correct = 0;
  for (size_t i = 0; i < data.size(); ++i) {
    uint32_t label = 0;
    if (tinyfed_classify(ctx, data.x.data() + i * static_cast<size_t>(data.features),
                         &label) != TINYFED_OK) {
      return -1.0;
    }
    if (label == data.y[i]) ++correct;
  }
  return static_cast<double>(correct) / static_cast<double>(data.size());
}

}  // namespace tinyfed::testing
