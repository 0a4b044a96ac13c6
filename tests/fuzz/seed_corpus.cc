// Writes the fuzz targets' seed corpora: valid inputs of each kind, so the
// fuzzers start past the checks a random byte string never passes (shapes,
// checksums, nested messages) and mutate from there. Tasks are built as
// the server builds them (protobuf C++, HeadSpecFromConfig); check-ins and
// updates are the SDK's own encodings of trained tasks; frames are the
// SDK's framing; configurations are the repository's own files plus a
// complete one.
//
//   fuzz_seed_corpus OUT_DIR ROOT
// writes OUT_DIR/<target>/<name>, one input per file, in each target's
// input format (see the targets' header comments), and fails loudly on any
// step that does not succeed, so a seed directory is never silently empty.
#include <array>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "google/protobuf/text_format.h"
#include "server_config.h"
#include "tinyfed/link.h"
#include "tinyfed/tinyfed.h"
#include "tinyfed/v1/coordinator.pb.h"
#include "tinyfed_common/crc32.h"
#include "tinyfed_common/fleet_keys.h"

namespace {

namespace fs = std::filesystem;
namespace v1 = tinyfed::v1;

fs::path g_out;

void Check(bool condition, const char* what) {
  if (condition) return;
  std::fprintf(stderr, "fuzz_seed_corpus: %s failed\n", what);
  std::exit(1);
}

void Write(const std::string& target, const std::string& name, const std::string& bytes) {
  fs::create_directories(g_out / target);
  std::ofstream out(g_out / target / name, std::ios::binary);
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  Check(out.good(), "writing a seed");
}

std::string Bytes(const uint8_t* data, size_t len) {
  return std::string(reinterpret_cast<const char*>(data), len);
}

uint32_t Crc(const std::string& a, const std::string& b) {
  uint32_t crc = tinyfed_crc32_update(TINYFED_CRC32_INIT,
                                      reinterpret_cast<const uint8_t*>(a.data()), a.size());
  return tinyfed_crc32_update(crc, reinterpret_cast<const uint8_t*>(b.data()), b.size());
}

// A task as the server sends it: the configured formats, random int16
// weights of small magnitude, and a correct checksum.
v1::RoundTask MakeTask(uint32_t features, uint32_t classes, uint32_t batch, uint32_t round,
                       std::mt19937& rng) {
  v1::ServerConfig config;
  config.mutable_head()->set_feature_count(features);
  config.mutable_head()->set_class_count(classes);
  tinyfed::server::ApplyDefaults(&config);
  v1::RoundTask task;
  task.set_round(round);
  task.set_task_token("tok-0123456789ab");
  task.set_deadline_ms(60000);
  task.mutable_quantization()->set_scheme(
      v1::QUANTIZATION_SCHEME_INT8_PER_ROW_STOCHASTIC);
  v1::TrainingPlan* plan = task.mutable_plan();
  plan->set_epochs(1);
  plan->set_batch_size(batch);
  plan->set_learning_rate_q16(6554);  // 0.1
  plan->set_seed(1234);
  v1::ModelVersion* model = task.mutable_model();
  model->set_version(1);
  *model->mutable_spec() = tinyfed::server::HeadSpecFromConfig(config);
  std::uniform_int_distribution<int> value(-2000, 2000);
  std::string weights, bias;
  for (uint32_t i = 0; i < features * classes + classes; ++i) {
    const auto v = static_cast<uint16_t>(value(rng));
    std::string& to = i < features * classes ? weights : bias;
    to.push_back(static_cast<char>(v & 0xFF));
    to.push_back(static_cast<char>(v >> 8));
  }
  model->set_weights(weights);
  model->set_bias(bias);
  model->set_checksum(Crc(weights, bias));
  return task;
}

// The body of the SignedRequest the SDK writes: the bare message the
// server's parsers see once the envelope is verified.
std::string Body(const std::string& signed_request) {
  v1::SignedRequest request;
  Check(request.ParseFromString(signed_request), "SignedRequest parse");
  return request.body();
}

// A device of the given capacity that has loaded `task`, with its key
// under a fleet key of bytes 0x00..0x1f.
struct Device {
  std::vector<uint8_t> arena;
  tinyfed::Key256 key;
  tinyfed_context_t ctx;
  Device(const char* id, uint32_t features, uint32_t classes, uint32_t batch)
      : arena(tinyfed_arena_size(features, classes, batch)) {
    std::array<uint8_t, tinyfed::Key256::kSize> fleet{};
    for (size_t i = 0; i < fleet.size(); ++i) fleet[i] = static_cast<uint8_t>(i);
    absl::StatusOr<tinyfed::Key256> derived = tinyfed::DeriveDeviceKey(tinyfed::Key256(fleet), id);
    Check(derived.ok(), "DeriveDeviceKey");
    key = *derived;
    const tinyfed_config_t config = {id, features, classes, batch, key.bytes().data()};
    Check(tinyfed_init(&ctx, &config, arena.data(), arena.size()) == TINYFED_OK, "tinyfed_init");
  }
  // The CheckInRequest's bytes (the body of the SDK's signed check-in).
  std::string CheckIn() {
    uint8_t buf[TINYFED_CHECKIN_MAX_SIZE];
    size_t len = 0;
    Check(tinyfed_checkin_encode(&ctx, 40, buf, sizeof buf, &len) == TINYFED_OK, "check-in");
    return Body(Bytes(buf, len));
  }
  // Loads `task`, trains on `count` samples and returns the Update's bytes
  // (the body of the SDK's signed update).
  std::string Update(const v1::RoundTask& task, uint32_t count, std::mt19937& rng) {
    const std::string bytes = task.SerializeAsString();
    Check(tinyfed_task_decode(&ctx, reinterpret_cast<const uint8_t*>(bytes.data()),
                              bytes.size()) == TINYFED_OK,
          "tinyfed_task_decode");
    const uint32_t features = task.model().spec().feature_count();
    const uint32_t classes = task.model().spec().class_count();
    std::vector<int8_t> x(count * features);
    std::vector<uint8_t> y(count);
    for (auto& v : x) v = static_cast<int8_t>(static_cast<int>(rng() % 255) - 127);
    for (uint32_t i = 0; i < count; ++i) y[i] = static_cast<uint8_t>(i % classes);
    const tinyfed_dataset_t data = {x.data(), y.data(), count, features};
    Check(tinyfed_train(&ctx, &data) == TINYFED_OK, "tinyfed_train");
    std::vector<uint8_t> out(TINYFED_UPDATE_MAX_SIZE(features, classes));
    size_t len = 0;
    Check(tinyfed_update_encode(&ctx, out.data(), out.size(), &len) == TINYFED_OK,
          "tinyfed_update_encode");
    return Body(Bytes(out.data(), len));
  }
};

std::string Frame(uint8_t type, const std::string& payload) {
  std::vector<uint8_t> out(TINYFED_FRAME_ENCODED_MAX(payload.size()));
  size_t len = 0;
  Check(tinyfed_frame_encode(type, reinterpret_cast<const uint8_t*>(payload.data()),
                             payload.size(), out.data(), out.size(), &len) == TINYFED_OK,
        "tinyfed_frame_encode");
  return Bytes(out.data(), len);
}

std::string ReadFile(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  Check(in.good(), "reading a configuration file of the repository");
  std::ostringstream text;
  text << in.rdbuf();
  return text.str();
}

struct Shape {
  uint32_t features, classes, batch;
};

void WriteSdkSeeds(std::mt19937& rng) {
  // The capacities of sdk_checkin_response_fuzz.cc, in its order, each
  // with a task that fills it.
  const Shape shapes[4] = {{4, 2, 1}, {16, 4, 8}, {64, 10, 16}, {128, 32, 64}};
  for (uint8_t cap = 0; cap < 4; ++cap) {
    const Shape& s = shapes[cap];
    const v1::RoundTask task = MakeTask(s.features, s.classes, s.batch, 3, rng);
    v1::CheckInResponse response;
    *response.mutable_task() = task;
    const std::string name = std::to_string(s.features) + "x" + std::to_string(s.classes);
    Write("sdk_checkin_response", "response_task_" + name,
          std::string(1, static_cast<char>(cap << 1)) + response.SerializeAsString());
    Write("sdk_checkin_response", "bare_task_" + name,
          std::string(1, static_cast<char>((cap << 1) | 1)) + task.SerializeAsString());
  }
  v1::CheckInResponse retry;
  retry.mutable_retry()->set_retry_after_ms(5000);
  Write("sdk_checkin_response", "response_retry", std::string(1, '\0') + retry.SerializeAsString());

  v1::UpdateAck ack;
  ack.set_round(3);
  ack.set_retry_after_ms(5000);
  Write("sdk_ack", "ack", ack.SerializeAsString());
  ack.set_round(UINT32_MAX);
  ack.set_retry_after_ms(UINT32_MAX);
  Write("sdk_ack", "ack_largest", ack.SerializeAsString());
}

void WriteServerSeeds(std::mt19937& rng) {
  // The heads of server_update_fuzz.cc, in its order: real device updates.
  const Shape shapes[3] = {{4, 3, 4}, {64, 10, 8}, {128, 32, 8}};
  std::string update_4x3;
  for (uint8_t head = 0; head < 3; ++head) {
    const Shape& s = shapes[head];
    Device device("seed-device", s.features, s.classes, s.batch);
    const std::string update = device.Update(MakeTask(s.features, s.classes, s.batch, 3, rng),
                                             12, rng);
    if (head == 0) update_4x3 = update;
    Write("server_update", "update_" + std::to_string(s.features) + "x" +
                               std::to_string(s.classes),
          std::string(1, static_cast<char>(head)) + update);
  }

  // server_round_fuzz.cc: check-ins, and updates from devices whose round
  // the harness fills in (round 0), for its 4x3 head.
  for (int d = 0; d < 4; ++d) {
    const std::string id = "seed-device-" + std::to_string(d);
    Device device(id.c_str(), 4, 3, 4);
    Write("server_round", "checkin_" + std::to_string(d), std::string(1, '\0') + device.CheckIn());
    const std::string update = device.Update(MakeTask(4, 3, 4, 0, rng), 5 + d, rng);
    Write("server_round", "update_" + std::to_string(d), std::string(1, '\1') + update);
    Write("server_round", "update_then_deadline_" + std::to_string(d),
          std::string(1, '\3') + update);
  }

  // server_envelope_fuzz.cc: the SDK's bodies in SignedRequests tagged
  // under its fleet key (0x00..0x1f), as sent (byte 0 bit 1 clear) and to
  // be re-signed (set); a revoked device's; a tag of the wrong type's.
  {
    std::array<uint8_t, tinyfed::Key256::kSize> fleet_bytes{};
    for (size_t i = 0; i < fleet_bytes.size(); ++i) fleet_bytes[i] = static_cast<uint8_t>(i);
    const tinyfed::Key256 fleet(fleet_bytes);
    auto envelope = [&](const std::string& id, tinyfed::RequestType type,
                        const std::string& body) {
      absl::StatusOr<tinyfed::Key256> key = tinyfed::DeriveDeviceKey(fleet, id);
      Check(key.ok(), "DeriveDeviceKey");
      const tinyfed::Tag256 tag = tinyfed::RequestTag(*key, type, body);
      v1::SignedRequest r;
      r.set_device_id(id);
      r.set_body(body);
      r.set_tag(std::string(tag.begin(), tag.end()));
      return r.SerializeAsString();
    };
    for (const char* id : {"seed-device", "revoked-1"}) {
      Device device(id, 64, 10, 8);
      const std::string check_in = device.CheckIn();
      const std::string update = device.Update(MakeTask(64, 10, 8, 3, rng), 12, rng);
      const std::string name(id);
      const std::string signed_check_in = envelope(id, tinyfed::RequestType::kCheckIn, check_in);
      const std::string signed_update = envelope(id, tinyfed::RequestType::kUpdate, update);
      Write("server_envelope", "checkin_" + name, std::string(1, '\0') + signed_check_in);
      Write("server_envelope", "update_" + name, std::string(1, '\1') + signed_update);
      Write("server_envelope", "resign_checkin_" + name, std::string(1, '\2') + signed_check_in);
      Write("server_envelope", "resign_update_" + name, std::string(1, '\3') + signed_update);
      Write("server_envelope", "update_tagged_as_checkin_" + name,
            std::string(1, '\1') + envelope(id, tinyfed::RequestType::kCheckIn, update));
    }
  }

  // link_deframer_fuzz.cc: a buffer for 1,020-byte payloads (byte 0 = 255)
  // or for 16 (byte 0 = 4), and streams of frames as the bridge sees them.
  const std::string big(700, '\x5a');
  const std::string zeros(300, '\0');
  Write("link_deframer", "update_frame", "\xff" + Frame(TINYFED_FRAME_UPDATE, update_4x3));
  Write("link_deframer", "two_frames",
        "\xff" + Frame(TINYFED_FRAME_ACK, "\x08\x03") + Frame(TINYFED_FRAME_CHECKIN, "abc"));
  Write("link_deframer", "noise_then_frame",
        std::string("\xff\x13\x37\x00\x42", 5) + Frame(TINYFED_FRAME_ERROR, "busy"));
  Write("link_deframer", "long_blocks", "\xff" + Frame(TINYFED_FRAME_UPDATE, big));
  Write("link_deframer", "zero_payload", "\xff" + Frame(TINYFED_FRAME_UPDATE, zeros));
  Write("link_deframer", "too_long_for_buffer",
        "\x04" + Frame(TINYFED_FRAME_UPDATE, big) + Frame(TINYFED_FRAME_ACK, ""));
  std::string damaged = Frame(TINYFED_FRAME_CHECKIN_RESPONSE, update_4x3);
  damaged[damaged.size() / 2] ^= 0x10;
  Write("link_deframer", "damaged_then_frame",
        "\xff" + damaged + Frame(TINYFED_FRAME_ACK, "\x08\x03"));
}

void WriteConfigSeeds(const fs::path& root) {
  Write("server_config", "deploy_server", ReadFile(root / "deploy/server.textproto"));
  Write("server_config", "bad_config",
        ReadFile(root / "tests/server/testdata/bad_config.textproto"));
  v1::ServerConfig full;
  tinyfed::server::ApplyDefaults(&full);
  full.set_initial_model("model.bin");
  std::string text;
  Check(google::protobuf::TextFormat::PrintToString(full, &text), "printing a config");
  Write("server_config", "all_options", text);
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 3) {
    std::fprintf(stderr, "usage: fuzz_seed_corpus OUT_DIR ROOT\n");
    return 2;
  }
  g_out = argv[1];
  std::mt19937 rng(20261201);  // fixed: the same seeds on every build
  WriteSdkSeeds(rng);
  WriteServerSeeds(rng);
  WriteConfigSeeds(argv[2]);
  return 0;
}
