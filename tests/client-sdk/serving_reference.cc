// tinyfed_serving_reference MODEL_FILE FIXTURE_H: the host side of the
// Cortex-M4 serving test (tests/tools/cortex_m4_serving_end_to_end.sh).
//
// MODEL_FILE is a ModelVersion in protobuf binary form, as `tinyfed-admin
// export --format proto` writes it; FIXTURE_H is the fixture.h that
// tinyfed_fixture_gen wrote for the serving firmware
// (client-sdk/examples/serving-device). Does what that firmware does with
// the model the server sends it, with the host build of the SDK, and
// prints the same "result ..." lines, so that the script can compare them
// byte for byte:
//   - the model as the server sends it to a device: version, spec,
//     weights, bias and checksum, lineage, metrics and evaluations left
//     empty (coordinator.proto CheckInResponse.model);
//   - decoded with tinyfed_model_decode against the backbone spec of the
//     fixture's task (the spec its samples were quantized with) into a
//     zeroed buffer of TINYFED_MODEL_SIZE bytes, as the firmware's static
//     buffer starts zeroed;
//   - the buffer's CRC-32, computed here by the host's table-driven CRC
//     (not the device's), each sample's class by tinyfed_model_classify and
//     tinyfed_model_evaluate's counts.
// Exit status 0, or 1 with a message on stderr.
#include <cstdint>
#include <cstdio>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "tinyfed/tinyfed.h"
#include "tinyfed/v1/model.pb.h"
#include "tinyfed/v1/round.pb.h"
#include "tinyfed_common/host_numerics.h"

namespace {

bool ReadFile(const std::string& path, std::string* out) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return false;
  std::ostringstream text;
  text << in.rdbuf();
  *out = text.str();
  return in.good() || in.eof();
}

// The integers of `static const TYPE NAME[N] = { ... };` in the generated
// header; false when the array is missing or does not hold N of them.
bool ReadArray(const std::string& header, const std::string& name, std::vector<long>* out) {
  const std::string start = " " + name + "[";
  const size_t at = header.find(start);
  if (at == std::string::npos) return false;
  const size_t count_end = header.find(']', at);
  const size_t open = header.find('{', at);
  const size_t close = header.find('}', at);
  if (count_end == std::string::npos || open == std::string::npos ||
      close == std::string::npos || open > close) {
    return false;
  }
  const long count = std::stol(header.substr(at + start.size(), count_end - at - start.size()));
  std::istringstream values(header.substr(open + 1, close - open - 1));
  out->clear();
  long v = 0;
  char comma = 0;
  while (values >> v >> comma) {
    if (comma != ',') return false;
    out->push_back(v);
  }
  return static_cast<long>(out->size()) == count;
}

// The value of `#define NAME 123u`; -1 when missing.
long ReadDefine(const std::string& header, const std::string& name) {
  const std::string start = "#define " + name + " ";
  const size_t at = header.find(start);
  if (at == std::string::npos) return -1;
  return std::stol(header.substr(at + start.size()));
}

int Fail(const std::string& message) {
  std::fprintf(stderr, "tinyfed_serving_reference: %s\n", message.c_str());
  return 1;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 3) {
    std::fprintf(stderr, "usage: tinyfed_serving_reference MODEL_FILE FIXTURE_H\n");
    return 2;
  }
  std::string model_bytes, header;
  if (!ReadFile(argv[1], &model_bytes)) return Fail(std::string("cannot read ") + argv[1]);
  if (!ReadFile(argv[2], &header)) return Fail(std::string("cannot read ") + argv[2]);

  tinyfed::v1::ModelVersion exported;
  if (!exported.ParseFromString(model_bytes)) return Fail("the model file is no ModelVersion");
  tinyfed::v1::ModelVersion sent;
  sent.set_version(exported.version());
  *sent.mutable_spec() = exported.spec();
  sent.set_weights(exported.weights());
  sent.set_bias(exported.bias());
  sent.set_checksum(exported.checksum());
  const std::string wire = sent.SerializeAsString();

  const long features = ReadDefine(header, "FIXTURE_FEATURES");
  const long classes = ReadDefine(header, "FIXTURE_CLASSES");
  const long samples = ReadDefine(header, "FIXTURE_SAMPLES");
  std::vector<long> task_bytes, x, y;
  if (features <= 0 || classes <= 0 || samples <= 0 ||
      !ReadArray(header, "kFixtureTask", &task_bytes) ||
      !ReadArray(header, "kFixtureFeatures", &x) || !ReadArray(header, "kFixtureLabels", &y) ||
      static_cast<long>(x.size()) != samples * features ||
      static_cast<long>(y.size()) != samples) {
    return Fail("the fixture header lacks its shape, task or samples");
  }
  std::string task_wire;
  for (long b : task_bytes) task_wire.push_back(static_cast<char>(b));
  tinyfed::v1::RoundTask task;
  if (!task.ParseFromString(task_wire)) return Fail("the fixture's task is no RoundTask");
  const tinyfed::v1::HeadSpec& spec = task.model().spec();
  const tinyfed_backbone_t backbone = {spec.feature_count(),
                                       spec.feature_quantization().scale_multiplier(),
                                       spec.feature_quantization().scale_shift(),
                                       spec.feature_quantization().zero_point()};

  const size_t model_size = TINYFED_MODEL_SIZE(static_cast<size_t>(features),
                                               static_cast<size_t>(classes));
  std::vector<uint32_t> model((model_size + 3) / 4, 0u);
  tinyfed_model_info_t info{};
  const tinyfed_status_t decoded =
      tinyfed_model_decode(&backbone, reinterpret_cast<const uint8_t*>(wire.data()), wire.size(),
                           model.data(), model_size, &info);
  if (decoded != TINYFED_OK) {
    return Fail(std::string("model refused: ") + tinyfed_status_name(decoded));
  }

  std::vector<int8_t> features_s8(x.begin(), x.end());
  std::vector<uint8_t> labels(y.begin(), y.end());
  static const char kDigits[] = "0123456789abcdefghijklmnopqrstuv";
  std::string classified;
  for (long i = 0; i < samples; ++i) {
    uint32_t label = 0;
    if (tinyfed_model_classify(model.data(), model_size, &features_s8[i * features], &label) !=
            TINYFED_OK ||
        label >= sizeof kDigits - 1) {
      return Fail("classification failed");
    }
    classified.push_back(kDigits[label]);
  }
  const tinyfed_dataset_t data = {features_s8.data(), labels.data(),
                                  static_cast<uint32_t>(samples),
                                  static_cast<uint32_t>(features)};
  tinyfed_evaluation_t evaluation{};
  if (tinyfed_model_evaluate(model.data(), model_size, &data, &evaluation) != TINYFED_OK) {
    return Fail("evaluation failed");
  }

  std::printf("result version %lu\n", static_cast<unsigned long>(info.version));
  std::printf("result model_crc32 0x%08lx\n",
              static_cast<unsigned long>(tinyfed::Crc32Update(0, model.data(), model_size)));
  std::printf("result labels %s\n", classified.c_str());
  std::printf("result evaluation %lu/%lu loss_q16 %lu\n",
              static_cast<unsigned long>(evaluation.correct),
              static_cast<unsigned long>(evaluation.samples),
              static_cast<unsigned long>(evaluation.loss_sum_q16));
  return 0;
}
