// Shared fixtures of the client-sdk tests: seeded synthetic datasets, tasks
// built with C++ protobuf (the server's side of the wire), and a device
// wrapper that owns one SDK context and its arena.
#ifndef TINYFED_TESTS_CLIENT_SDK_SDK_TEST_SUPPORT_H_
#define TINYFED_TESTS_CLIENT_SDK_SDK_TEST_SUPPORT_H_

#include <cstdint>
#include <string>
#include <vector>

#include "float_twin.h"
#include "tinyfed/tinyfed.h"
#include "tinyfed/v1/coordinator.pb.h"
#include "tinyfed_common/fleet_keys.h"
#include "tinyfed_common/host_numerics.h"

namespace tinyfed::testing {

// Samples drawn from one Gaussian blob per class (unit variance around
// means spread by `separation`), quantized to int8 with `scale`, zero point
// `zero_point`. `real` keeps the dequantized features for the float twin.
struct QuantizedDataset {
  int features = 0;
  int classes = 0;
  double scale = 0.0;
  int32_t zero_point = 0;
  std::vector<int8_t> x;       // count x features
  std::vector<uint8_t> y;      // count
  FloatDataset real;           // the same samples, dequantized
  size_t size() const { return y.size(); }
  tinyfed_dataset_t view() const;
};

// `class_means_seed` fixes the problem; `sample_seed` draws its samples, so
// a training and a test split share means but not samples.
QuantizedDataset MakeBlobs(uint32_t class_means_seed, uint32_t sample_seed,
                           size_t count, int features, int classes,
                           double separation, double scale, int32_t zero_point);

struct TaskParams {
  uint32_t round = 3;
  uint32_t version = 7;
  uint32_t features = 64;
  uint32_t classes = 10;
  uint32_t frac_bits = 12;
  double feature_scale = 6.0 / 127.0;
  int32_t zero_point = 0;
  std::vector<int16_t> weights;  // empty: zeros
  std::vector<int16_t> bias;     // empty: zeros
  uint32_t epochs = 3;
  uint32_t batch_size = 8;
  double learning_rate = 0.1;
  uint32_t seed = 1234;
  uint32_t deadline_ms = 60000;
  std::string token = "tok-0123456789ab";  // 16 bytes
};

// Little-endian int16 bytes, as ModelVersion.weights carries them.
std::string EncodeInt16(const std::vector<int16_t>& values);

// A RoundTask as the server would send it, with a correct checksum.
v1::RoundTask BuildTask(const TaskParams& params);
std::string EncodeCheckInResponse(const v1::RoundTask& task);

// The tests' fleet key, bytes 0x00..0x1f: the key of the fixed vectors in
// tinyfed_common/device_key.h and request_auth.h.
Key256 TestFleetKey();

// The device key of `id` under TestFleetKey(), derived by the host's
// tinyfed_fleet_keys (OpenSSL), as tinyfed-admin provisions it. Throws for
// an id the derivation refuses.
Key256 TestDeviceKey(const std::string& id);

// The parts of a SignedRequest as the SDK wrote it, parsed by C++ protobuf.
// ok is false when `bytes` is not a SignedRequest.
struct Envelope {
  bool ok = false;
  std::string device_id;
  std::string body;
  std::string tag;
};
Envelope ParseEnvelope(const std::string& bytes);

// One device: a context, its arena, its id and its key (by default its
// key under TestFleetKey()). The context points at key(), so a Device is
// neither copied nor moved.
class Device {
 public:
  explicit Device(std::string id, uint32_t max_features = 64,
                  uint32_t max_classes = 10, uint32_t max_batch = 16);
  Device(std::string id, const Key256& key, uint32_t max_features = 64,
         uint32_t max_classes = 10, uint32_t max_batch = 16);
  Device(const Device&) = delete;
  Device& operator=(const Device&) = delete;
  tinyfed_context_t* ctx() { return &ctx_; }
  const std::string& id() const { return id_; }
  const Key256& key() const { return key_; }
  uint32_t hash() const;

  // Loads `task` through the CheckInResponse path; returns the SDK status.
  tinyfed_status_t Load(const v1::RoundTask& task);
  // The SignedRequest tinyfed_update_encode writes after training, into a
  // buffer of TINYFED_UPDATE_MAX_SIZE; empty on error.
  std::string EncodeSignedUpdate();
  // The Update inside it (the envelope's body, its exact bytes); empty on
  // error or when the SDK's output is not a SignedRequest.
  std::string EncodeUpdate();

 private:
  std::string id_;
  Key256 key_;
  std::vector<uint8_t> arena_;
  tinyfed_context_t ctx_{};
};

// Accuracy of the device's current (local) head on `data`.
double DeviceAccuracy(const tinyfed_context_t* ctx, const QuantizedDataset& data);

}  // namespace tinyfed::testing

#endif  // TINYFED_TESTS_CLIENT_SDK_SDK_TEST_SUPPORT_H_
