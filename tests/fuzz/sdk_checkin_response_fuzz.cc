// Fuzzes the SDK's task decoders (tinyfed_checkin_response_decode and
// tinyfed_task_decode in client-sdk/src/codec.c): the server's answer to a
// check-in, relayed to the device by a bridge it need not trust. A task
// that passes decoding is trained on and its update encoded, since a
// hostile plan (epochs, batch, learning rate, formats) reaches the
// training arithmetic only then.
//
// Input: byte 0 picks the decoder (bit 0: CheckInResponse or bare
// RoundTask) and the device's capacity (bits 1-2, from a 4x2 head with
// batches of 1 to 128x32 with batches of 64); the rest is the message, in
// a heap block of exactly its size. The arena is a heap block of exactly
// tinyfed_arena_size() bytes, so ASan catches an access one byte past
// either.
//
// Beyond "no crash, no undefined behaviour", the header's contract: only
// the documented errors; a failed decode, or a retry hint, leaves no task;
// a loaded task fits the device's capacity, trains on a valid dataset, and
// its update fits TINYFED_UPDATE_MAX_SIZE.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <vector>

#include "tinyfed/tinyfed.h"

namespace {

void Require(bool condition) {
  if (!condition) std::abort();  // libFuzzer keeps the input that got here
}

struct Capacity {
  uint32_t features, classes, batch;
};
// The smallest head the protocol allows, two firmware-sized ones, and the
// largest (4096 weights, 32 classes, the largest batch).
constexpr Capacity kCapacities[4] = {{4, 2, 1}, {16, 4, 8}, {64, 10, 16}, {128, 32, 64}};

bool IsDocumentedDecodeError(tinyfed_status_t s) {
  switch (s) {
    case TINYFED_ERR_MESSAGE_TOO_LARGE:
    case TINYFED_ERR_MALFORMED:
    case TINYFED_ERR_HEAD_TOO_LARGE:
    case TINYFED_ERR_BATCH_TOO_LARGE:
    case TINYFED_ERR_SHAPE_MISMATCH:
    case TINYFED_ERR_CHECKSUM:
    case TINYFED_ERR_INVALID_TASK:
    case TINYFED_ERR_UNSUPPORTED:
      return true;
    default:
      return false;
  }
}

// Trains the loaded task on two samples of the first and last class (the
// device's data is not the attacker's; the task is), then classifies and
// encodes the update, each of which must succeed.
void RequireTaskUsable(tinyfed_context_t* ctx, const Capacity& cap) {
  tinyfed_task_info_t info;
  Require(tinyfed_task_info(ctx, &info) == TINYFED_OK);
  Require(info.feature_count >= 1 && info.feature_count <= cap.features);
  Require(info.class_count >= 2 && info.class_count <= cap.classes);
  Require(info.feature_count * info.class_count <= TINYFED_MAX_WEIGHTS);
  Require(info.batch_size >= 1 && info.batch_size <= cap.batch);
  Require(info.epochs >= 1 && info.epochs <= TINYFED_MAX_EPOCHS);
  Require(info.task_token_len <= TINYFED_TOKEN_MAX_LEN);

  std::vector<int8_t> features(2u * info.feature_count);
  for (size_t i = 0; i < features.size(); ++i) {
    features[i] = static_cast<int8_t>(static_cast<uint8_t>(i * 37u + 11u));
  }
  const uint8_t labels[2] = {0, static_cast<uint8_t>(info.class_count - 1)};
  const tinyfed_dataset_t dataset = {features.data(), labels, 2, info.feature_count};
  Require(tinyfed_train(ctx, &dataset) == TINYFED_OK);

  uint32_t label = 0;
  Require(tinyfed_classify(ctx, features.data(), &label) == TINYFED_OK);
  Require(label < info.class_count);

  std::vector<uint8_t> update(TINYFED_UPDATE_MAX_SIZE(cap.features, cap.classes));
  size_t update_len = 0;
  Require(tinyfed_update_encode(ctx, update.data(), update.size(), &update_len) == TINYFED_OK);
  Require(update_len <= update.size());
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 1) return 0;
  const bool bare_task = (data[0] & 1u) != 0;
  const Capacity& cap = kCapacities[(data[0] >> 1) & 3u];
  const size_t len = size - 1;
  uint8_t* msg = static_cast<uint8_t*>(std::malloc(len == 0 ? 1 : len));
  if (len != 0) std::memcpy(msg, data + 1, len);

  const size_t arena_size = tinyfed_arena_size(cap.features, cap.classes, cap.batch);
  Require(arena_size != 0);
  void* arena = std::malloc(arena_size);
  tinyfed_context_t ctx;
  // Any key: the target fuzzes decoding; signing is tested in tests/client-sdk.
  static const uint8_t kKey[TINYFED_DEVICE_KEY_SIZE] = {1, 2, 3};
  const tinyfed_config_t config = {"fuzz-device", cap.features, cap.classes, cap.batch, kKey};
  Require(tinyfed_init(&ctx, &config, arena, arena_size) == TINYFED_OK);

  tinyfed_status_t status;
  tinyfed_checkin_result_t result = {};
  if (bare_task) {
    status = tinyfed_task_decode(&ctx, msg, len);
    result.kind = TINYFED_CHECKIN_TASK;
  } else {
    status = tinyfed_checkin_response_decode(&ctx, msg, len, &result);
  }
  tinyfed_task_info_t info;
  if (status != TINYFED_OK) {
    Require(IsDocumentedDecodeError(status));
    Require(tinyfed_last_error_message(&ctx) != nullptr);
    Require(tinyfed_task_info(&ctx, &info) == TINYFED_ERR_STATE);
  } else if (result.kind == TINYFED_CHECKIN_RETRY) {
    Require(tinyfed_task_info(&ctx, &info) == TINYFED_ERR_STATE);
  } else {
    Require(result.kind == TINYFED_CHECKIN_TASK);
    RequireTaskUsable(&ctx, cap);
  }
  std::free(arena);
  std::free(msg);
  return 0;
}
