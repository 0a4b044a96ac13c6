// tinyfed_fixture_gen OUT_DIR: writes the Cortex-M4 firmware's fixtures and
// the update bytes the host SDK computes from them:
//   OUT_DIR/fleet.key        a test fleet key (32 random bytes, mode 0600,
//                            tinyfed_common/fleet_keys.h's file format),
//                            created on the first run and reused after, so
//                            a server started with --fleet_key on it
//                            authenticates the fixtures' devices;
//   OUT_DIR/fixture.h        a round task for a 64x10 head with a non-zero
//                            global model, one device's id, its device key
//                            under that fleet key (derived here by
//                            tinyfed_fleet_keys, as tinyfed-admin
//                            provisions a device) and its samples
//                            (the reference firmware's device, and case 0 of
//                            the bit-exactness firmware, which times it);
//   OUT_DIR/fixture_cases.h  further cases for the bit-exactness firmware,
//                            shaped to take every path of the training
//                            kernels: odd and wide feature counts, rows that
//                            end in a partial quad, odd and maximal batches,
//                            short last batches, both logit shift ranges and
//                            a learning rate large enough to saturate;
//   OUT_DIR/expected.hex     one line per case: "update <case> <hex>", the
//                            signed update (SignedRequest) the device sends
//                            after evaluating the task's model on its
//                            samples and training on them, so it carries
//                            the evaluation;
//   OUT_DIR/fixture_model.h  case 0's model as a deployed ModelVersion and
//                            its backbone, for the inference API;
//   OUT_DIR/expected_classify.txt  "classify <labels>": the class the host
//                            SDK's tinyfed_model_classify gives each of case
//                            0's samples with that model, one hex digit
//                            each.
#include <cstdio>
#include <algorithm>
#include <filesystem>
#include <fstream>
#include <random>
#include <string>
#include <vector>

#include "sdk_test_support.h"

namespace {

using namespace tinyfed::testing;
using tinyfed::Key256;

template <typename T>
void WriteArray(std::ofstream& out, const char* type, const std::string& name, const T* data,
                size_t n) {
  out << "static const " << type << " " << name << "[" << n << "] = {";
  for (size_t i = 0; i < n; ++i) {
    out << (i % 16 == 0 ? "\n  " : " ") << static_cast<int>(data[i]) << ",";
  }
  out << "\n};\n";
}

struct Case {
  std::string device_id;
  Key256 device_key;  // filled in by main()
  TaskParams params;
  uint32_t samples = 0;
  double separation = 0.5;
  // Filled in by Run():
  std::string task;
  QuantizedDataset data;
  std::string update;
};

// A random non-zero head in the task's master format.
void RandomHead(TaskParams& p, uint32_t seed, double sigma) {
  std::mt19937 rng(seed);
  std::normal_distribution<double> w(0.0, sigma);
  p.weights.resize(p.features * p.classes);
  for (auto& v : p.weights) v = tinyfed::ToMaster(w(rng), p.frac_bits);
  p.bias.resize(p.classes);
  for (auto& v : p.bias) v = tinyfed::ToMaster(w(rng), p.frac_bits);
}

std::vector<Case> Cases() {
  std::vector<Case> cases(5);
  {
    // Case 0, the measured one: zero point 0, so tinyfed-agent simulate
    // (standardized, centred features) can share a server with this device
    // in the end-to-end test.
    Case& c = cases[0];
    c.device_id = "m4-fixture";
    c.samples = 96;
    c.params.zero_point = 0;
    c.params.epochs = 2;
    c.params.batch_size = 8;
    c.params.seed = 20261126;
    RandomHead(c.params, 11, 0.1);
  }
  {
    // Odd feature count (rows not word-aligned, a one-feature last quad),
    // odd batch with a short last batch of 3, a zero point.
    Case& c = cases[1];
    c.device_id = "m4-odd-shape";
    c.samples = 23;
    c.params.features = 37;
    c.params.classes = 3;
    c.params.frac_bits = 10;
    c.params.zero_point = -20;
    c.params.feature_scale = 5.0 / 127.0;
    c.params.epochs = 3;
    c.params.batch_size = 5;
    c.params.learning_rate = 0.15;
    c.params.seed = 77;
    RandomHead(c.params, 12, 0.05);
  }
  {
    // Wider than one 64-feature chunk (70 = 64 + 6), a feature scale small
    // enough for a logit shift above 32, batches of 3 and a last one of 1.
    Case& c = cases[2];
    c.device_id = "m4-wide";
    c.samples = 10;
    c.params.features = 70;
    c.params.classes = 4;
    c.params.zero_point = 3;
    c.params.feature_scale = 0.01;
    c.params.epochs = 2;
    c.params.batch_size = 3;
    c.params.learning_rate = 0.3;
    c.params.seed = 5;
    RandomHead(c.params, 13, 0.2);
  }
  {
    // The largest batch (32 sample pairs), a row of one eight-pair block and
    // two single pairs (20 features), a last batch of 2.
    Case& c = cases[3];
    c.device_id = "m4-big-batch";
    c.samples = 130;
    c.params.features = 20;
    c.params.classes = 2;
    c.params.epochs = 1;
    c.params.batch_size = 64;
    c.params.learning_rate = 0.05;
    c.params.seed = 99;
  }
  {
    // Fewer features than a quad, batches of one, and steps so large (lr 16,
    // 14 fraction bits) that the step scale gives up mantissa bits and the
    // weights saturate.
    Case& c = cases[4];
    c.device_id = "m4-tiny";
    c.samples = 7;
    c.params.features = 3;
    c.params.classes = 2;
    c.params.frac_bits = 14;
    c.params.feature_scale = 0.1;
    c.params.epochs = 2;
    c.params.batch_size = 1;
    c.params.learning_rate = 16.0;
    c.params.seed = 3;
    c.separation = 2.0;
  }
  return cases;
}

// Evaluates and trains the case on the host SDK; false (with a message) on
// failure.
bool Run(Case& c) {
  const TaskParams& p = c.params;
  c.task = BuildTask(p).SerializeAsString();
  c.data = MakeBlobs(3, 4, c.samples, static_cast<int>(p.features), static_cast<int>(p.classes),
                     c.separation, p.feature_scale, p.zero_point);
  Device device(c.device_id, c.device_key, p.features, p.classes, p.batch_size);
  if (tinyfed_task_decode(device.ctx(), reinterpret_cast<const uint8_t*>(c.task.data()),
                          c.task.size()) != TINYFED_OK) {
    std::fprintf(stderr, "%s: task rejected: %s\n", c.device_id.c_str(),
                 tinyfed_last_error_message(device.ctx()));
    return false;
  }
  tinyfed_dataset_t view = c.data.view();
  tinyfed_evaluation_t evaluation{};
  if (tinyfed_evaluate(device.ctx(), &view, &evaluation) != TINYFED_OK) {
    std::fprintf(stderr, "%s: evaluation failed\n", c.device_id.c_str());
    return false;
  }
  if (tinyfed_train(device.ctx(), &view) != TINYFED_OK) {
    std::fprintf(stderr, "%s: training failed\n", c.device_id.c_str());
    return false;
  }
  c.update = device.EncodeSignedUpdate();
  return !c.update.empty();
}

std::string Hex(const std::string& bytes) {
  static const char* kHex = "0123456789abcdef";
  std::string out;
  for (unsigned char b : bytes) {
    out += kHex[b >> 4];
    out += kHex[b & 15];
  }
  return out;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: tinyfed_fixture_gen OUT_DIR\n");
    return 2;
  }
  const std::string dir = argv[1];
  const std::string fleet_path = dir + "/fleet.key";
  absl::StatusOr<Key256> fleet = std::filesystem::exists(fleet_path)
                                     ? tinyfed::LoadFleetKey(fleet_path)
                                     : tinyfed::CreateFleetKeyFile(fleet_path);
  if (!fleet.ok()) {
    std::fprintf(stderr, "%s\n", fleet.status().ToString().c_str());
    return 1;
  }
  std::vector<Case> cases = Cases();
  for (Case& c : cases) {
    absl::StatusOr<Key256> key = tinyfed::DeriveDeviceKey(*fleet, c.device_id);
    if (!key.ok()) {
      std::fprintf(stderr, "%s\n", key.status().ToString().c_str());
      return 1;
    }
    c.device_key = *key;
    if (!Run(c)) return 1;
  }

  const Case& main_case = cases[0];
  const TaskParams& p = main_case.params;
  std::ofstream h(dir + "/fixture.h");
  h << "/* Generated by tinyfed_fixture_gen: do not edit. */\n"
    << "#ifndef TINYFED_FIXTURE_H_\n#define TINYFED_FIXTURE_H_\n#include <stdint.h>\n"
    << "#define FIXTURE_DEVICE_ID \"" << main_case.device_id << "\"\n"
    << "#define FIXTURE_FEATURES " << p.features << "u\n"
    << "#define FIXTURE_CLASSES " << p.classes << "u\n"
    << "#define FIXTURE_BATCH " << p.batch_size << "u\n"
    << "#define FIXTURE_SAMPLES " << main_case.samples << "u\n"
    << "#define FIXTURE_EPOCHS " << p.epochs << "u\n";
  WriteArray(h, "uint8_t", "kFixtureDeviceKey", main_case.device_key.bytes().data(),
             main_case.device_key.bytes().size());
  WriteArray(h, "uint8_t", "kFixtureTask", reinterpret_cast<const uint8_t*>(main_case.task.data()),
             main_case.task.size());
  WriteArray(h, "int8_t", "kFixtureFeatures", main_case.data.x.data(), main_case.data.x.size());
  WriteArray(h, "uint8_t", "kFixtureLabels", main_case.data.y.data(), main_case.data.y.size());
  h << "#endif\n";

  // The further cases, as a table the bit-exactness firmware walks; sized
  // for the largest so one arena and one buffer serve them all.
  std::ofstream k(dir + "/fixture_cases.h");
  k << "/* Generated by tinyfed_fixture_gen: do not edit. */\n"
    << "#ifndef TINYFED_FIXTURE_CASES_H_\n#define TINYFED_FIXTURE_CASES_H_\n"
    << "#include <stdint.h>\n#include \"tinyfed/tinyfed.h\"\n"
    << "typedef struct fixture_case {\n  const char *device_id;\n  const uint8_t *task;\n"
    << "  uint32_t task_size;\n  const int8_t *features;\n  const uint8_t *labels;\n"
    << "  uint32_t samples, feature_count, class_count, batch;\n"
    << "  const uint8_t *device_key;\n} fixture_case_t;\n";
  size_t arena = 0, update = 0;
  for (size_t i = 1; i < cases.size(); ++i) {
    const Case& c = cases[i];
    const std::string n = std::to_string(i);
    WriteArray(k, "uint8_t", "kCaseDeviceKey" + n, c.device_key.bytes().data(),
               c.device_key.bytes().size());
    WriteArray(k, "uint8_t", "kCaseTask" + n, reinterpret_cast<const uint8_t*>(c.task.data()),
               c.task.size());
    WriteArray(k, "int8_t", "kCaseFeatures" + n, c.data.x.data(), c.data.x.size());
    WriteArray(k, "uint8_t", "kCaseLabels" + n, c.data.y.data(), c.data.y.size());
    const TaskParams& q = c.params;
    arena = std::max<size_t>(arena, TINYFED_ARENA_SIZE(q.features, q.classes, q.batch_size));
    update = std::max<size_t>(update, TINYFED_UPDATE_MAX_SIZE(q.features, q.classes));
  }
  k << "#define FIXTURE_CASES " << cases.size() - 1 << "u\n"
    << "#define FIXTURE_CASES_ARENA " << arena << "u\n"
    << "#define FIXTURE_CASES_UPDATE " << update << "u\n"
    << "static const fixture_case_t kFixtureCases[FIXTURE_CASES] = {\n";
  for (size_t i = 1; i < cases.size(); ++i) {
    const Case& c = cases[i];
    const std::string n = std::to_string(i);
    k << "  {\"" << c.device_id << "\", kCaseTask" << n << ", " << c.task.size() << "u, kCaseFeatures"
      << n << ", kCaseLabels" << n << ", " << c.samples << "u, " << c.params.features << "u, "
      << c.params.classes << "u, " << c.params.batch_size << "u, kCaseDeviceKey" << n << "},\n";
  }
  k << "};\n#endif\n";

  std::ofstream e(dir + "/expected.hex");
  for (size_t i = 0; i < cases.size(); ++i) e << "update " << i << " " << Hex(cases[i].update) << "\n";

  // Case 0's model served: decoded and applied to its samples by the host.
  const tinyfed::v1::ModelVersion model = BuildTask(p).model();
  const std::string model_bytes = model.SerializeAsString();
  const auto& fq = model.spec().feature_quantization();
  const tinyfed_backbone_t backbone{p.features, fq.scale_multiplier(), fq.scale_shift(),
                                    fq.zero_point()};
  std::vector<uint32_t> buffer(TINYFED_MODEL_SIZE(p.features, p.classes) / 4);
  if (tinyfed_model_decode(&backbone, reinterpret_cast<const uint8_t*>(model_bytes.data()),
                           model_bytes.size(), buffer.data(), 4 * buffer.size(),
                           nullptr) != TINYFED_OK) {
    std::fprintf(stderr, "case 0's model refused by tinyfed_model_decode\n");
    return 1;
  }
  std::string labels;
  for (size_t i = 0; i < main_case.data.size(); ++i) {
    uint32_t label = 0;
    if (tinyfed_model_classify(buffer.data(), 4 * buffer.size(),
                               main_case.data.x.data() + i * p.features, &label) != TINYFED_OK) {
      return 1;
    }
    labels += "0123456789abcdefghijklmnopqrstuv"[label];
  }
  std::ofstream m(dir + "/fixture_model.h");
  m << "/* Generated by tinyfed_fixture_gen: do not edit. */\n"
    << "#ifndef TINYFED_FIXTURE_MODEL_H_\n#define TINYFED_FIXTURE_MODEL_H_\n"
    << "#include <stdint.h>\n#include \"tinyfed/tinyfed.h\"\n"
    << "static const tinyfed_backbone_t kFixtureBackbone = {" << backbone.feature_count << "u, "
    << backbone.feature_scale_multiplier << ", " << backbone.feature_scale_shift << ", "
    << backbone.feature_zero_point << "};\n";
  WriteArray(m, "uint8_t", "kFixtureModel", reinterpret_cast<const uint8_t*>(model_bytes.data()),
             model_bytes.size());
  m << "#endif\n";
  std::ofstream l(dir + "/expected_classify.txt");
  l << "classify " << labels << "\n";
  if (!h.good() || !k.good() || !e.good() || !m.good() || !l.good()) {
    std::fprintf(stderr, "cannot write to %s\n", dir.c_str());
    return 1;
  }
  return 0;
}
