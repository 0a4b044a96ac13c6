// Fuzzes the SDK's task decoders (tinyfed_checkin_response_decode and
// tinyfed_task_decode in client-sdk/src/codec.c): the server's answer to a
// check-in, relayed to the device by a bridge it need not trust. A task
// that passes decoding is trained on and its update encoded, since a
// hostile plan (epochs, batch, learning rate, formats) reaches the
// training arithmetic only then.
//
// Input: byte 0 picks the decoder (bit 0: CheckInResponse or bare
// RoundTask), the device's capacity (bits 1-2, from a 4x2 head with
// batches of 1 to 128x32 with batches of 64) and whether the context
// already holds a task, evaluated and trained, when the message arrives
// (bit 3: a device that checks in again before submitting); the rest is
// the message, in a heap block of exactly its size. The arena is a heap
// block of exactly tinyfed_arena_size() bytes, so ASan catches an access
// one byte past either.
//
// Beyond "no crash, no undefined behaviour", the header's contract: only
// the documented errors; a failed decode, or a retry hint, leaves no task;
// a loaded training task (TASK) fits the device's capacity, trains on a
// valid dataset, and its update fits TINYFED_UPDATE_MAX_SIZE; an
// evaluation-only one (EVALUATE) has no plan, refuses training, and
// evaluates and encodes its evaluation within the same bound; a model
// (MODEL) lies inside the message, leaves the context as it was, and
// tinyfed_model_decode() on its bytes gives only its documented errors
// or a model that checks and classifies.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <vector>

#include "tinyfed/tinyfed.h"
#include "tinyfed_common/crc32.h"

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

// Two samples of the first and last class (the device's data is not the
// attacker's; the task is).
struct Samples {
  std::vector<int8_t> features;
  uint8_t labels[2];
  tinyfed_dataset_t dataset;
};
void MakeSamples(uint32_t feature_count, uint32_t class_count, Samples* s) {
  s->features.resize(2u * feature_count);
  for (size_t i = 0; i < s->features.size(); ++i) {
    s->features[i] = static_cast<int8_t>(static_cast<uint8_t>(i * 37u + 11u));
  }
  s->labels[0] = 0;
  s->labels[1] = static_cast<uint8_t>(class_count - 1);
  s->dataset = {s->features.data(), s->labels, 2, feature_count};
}

void Varint(std::vector<uint8_t>* out, uint64_t v) {
  while (v >= 0x80) {
    out->push_back(static_cast<uint8_t>(v | 0x80));
    v >>= 7;
  }
  out->push_back(static_cast<uint8_t>(v));
}
void VarintField(std::vector<uint8_t>* out, uint32_t field, uint64_t v) {
  Varint(out, field << 3);
  Varint(out, v);
}
void BytesField(std::vector<uint8_t>* out, uint32_t field, const std::vector<uint8_t>& bytes) {
  Varint(out, (field << 3) | 2u);
  Varint(out, bytes.size());
  out->insert(out->end(), bytes.begin(), bytes.end());
}

// The backbone's feature quantization: the held task's, and the one a
// deployed model must have (scale 2^30 x 2^-8 / 2^31 = 1/512, zero point 0).
constexpr int32_t kScaleMultiplier = 1 << 30;
constexpr int32_t kScaleShift = -8;

// A valid RoundTask (round.proto) for a 4x2 head, which fits every
// capacity above: version 1, weights w[i] = i - 3, bias {5, -5}, one epoch
// of batch 1 at rate 0.1. Written field by field here rather than by the
// SDK's or the server's encoders, so the held context does not depend on
// the code under test.
std::vector<uint8_t> HeldTask() {
  std::vector<uint8_t> weights, bias;
  for (int i = 0; i < 8; ++i) {
    const uint16_t w = static_cast<uint16_t>(i - 3);
    weights.push_back(static_cast<uint8_t>(w));
    weights.push_back(static_cast<uint8_t>(w >> 8));
  }
  for (int b : {5, -5}) {
    bias.push_back(static_cast<uint8_t>(static_cast<uint16_t>(b)));
    bias.push_back(static_cast<uint8_t>(static_cast<uint16_t>(b) >> 8));
  }
  uint32_t crc = tinyfed_crc32_update(TINYFED_CRC32_INIT, weights.data(), weights.size());
  crc = tinyfed_crc32_update(crc, bias.data(), bias.size());

  std::vector<uint8_t> quantization;
  VarintField(&quantization, 1, static_cast<uint32_t>(kScaleMultiplier));
  VarintField(&quantization, 2, (static_cast<uint32_t>(kScaleShift) << 1) ^
                                    static_cast<uint32_t>(kScaleShift >> 31));  // sint32
  std::vector<uint8_t> spec;
  VarintField(&spec, 1, 4);
  VarintField(&spec, 2, 2);
  BytesField(&spec, 3, quantization);
  VarintField(&spec, 4, 8);
  std::vector<uint8_t> model;
  VarintField(&model, 1, 1);
  BytesField(&model, 4, spec);
  BytesField(&model, 5, weights);
  BytesField(&model, 6, bias);
  Varint(&model, (7u << 3) | 5u);  // fixed32 checksum
  for (int i = 0; i < 4; ++i) model.push_back(static_cast<uint8_t>(crc >> (8 * i)));
  std::vector<uint8_t> plan;
  VarintField(&plan, 1, 1);
  VarintField(&plan, 2, 1);
  VarintField(&plan, 3, 6554);
  std::vector<uint8_t> scheme;
  VarintField(&scheme, 1, 1);  // QUANTIZATION_SCHEME_INT8_PER_ROW_STOCHASTIC

  std::vector<uint8_t> task;
  VarintField(&task, 1, 7);
  BytesField(&task, 2, {'h', 'e', 'l', 'd'});
  BytesField(&task, 3, model);
  BytesField(&task, 4, plan);
  VarintField(&task, 5, 60000);
  BytesField(&task, 6, scheme);
  return task;
}

bool IsDocumentedModelDecodeError(tinyfed_status_t s) {
  switch (s) {
    case TINYFED_ERR_MALFORMED:
    case TINYFED_ERR_MESSAGE_TOO_LARGE:
    case TINYFED_ERR_HEAD_TOO_LARGE:
    case TINYFED_ERR_SHAPE_MISMATCH:
    case TINYFED_ERR_CHECKSUM:
    case TINYFED_ERR_FEATURE_SPEC:
    case TINYFED_ERR_INVALID_TASK:
      return true;
    default:
      return false;
  }
}

// What the firmware does with a MODEL answer: decode it into a buffer of
// its own, sized for its backbone's features and its capacity's classes.
void RequireModelDecodeKeepsContract(const uint8_t* model, size_t length, const Capacity& cap) {
  const tinyfed_backbone_t backbone = {cap.features, kScaleMultiplier, kScaleShift, 0};
  const size_t size = TINYFED_MODEL_SIZE(cap.features, cap.classes);
  void* buffer = std::malloc(size);  // malloc's alignment is more than the 4 bytes needed
  tinyfed_model_info_t info;
  const tinyfed_status_t status =
      tinyfed_model_decode(&backbone, model, length, buffer, size, &info);
  tinyfed_model_info_t checked;
  if (status != TINYFED_OK) {
    Require(IsDocumentedModelDecodeError(status));
    Require(tinyfed_model_info(buffer, size, 1, &checked) == TINYFED_ERR_NO_MODEL);
  } else {
    Require(info.version >= 1);
    Require(info.feature_count == cap.features);
    Require(info.class_count >= 2 && info.class_count <= cap.classes);
    Require(info.weight_frac_bits >= 4 && info.weight_frac_bits <= 14);
    Require(tinyfed_model_info(buffer, size, 1, &checked) == TINYFED_OK);
    Require(std::memcmp(&checked, &info, sizeof info) == 0);
    Samples samples;
    MakeSamples(info.feature_count, info.class_count, &samples);
    uint32_t label = 0;
    Require(tinyfed_model_classify(buffer, size, samples.features.data(), &label) == TINYFED_OK);
    Require(label < info.class_count);
  }
  std::free(buffer);
}

// An evaluation-only task: no plan, no training, an evaluation and its
// update.
void RequireEvaluationTaskUsable(tinyfed_context_t* ctx, const Capacity& cap) {
  tinyfed_task_info_t info;
  Require(tinyfed_task_info(ctx, &info) == TINYFED_OK);
  Require(info.evaluate_only != 0);
  Require(info.feature_count >= 1 && info.feature_count <= cap.features);
  Require(info.class_count >= 2 && info.class_count <= cap.classes);
  Require(info.feature_count * info.class_count <= TINYFED_MAX_WEIGHTS);
  Require(info.epochs == 0 && info.batch_size == 0 && info.learning_rate_q16 == 0 &&
          info.seed == 0);
  Require(info.task_token_len <= TINYFED_TOKEN_MAX_LEN);

  Samples samples;
  MakeSamples(info.feature_count, info.class_count, &samples);
  Require(tinyfed_train(ctx, &samples.dataset) == TINYFED_ERR_STATE);
  tinyfed_evaluation_t evaluation;
  Require(tinyfed_evaluate(ctx, &samples.dataset, &evaluation) == TINYFED_OK);
  Require(evaluation.model_version == info.model_version);
  Require(evaluation.samples == 2 && evaluation.correct <= 2);
  Require(evaluation.loss_sum_q16 < 2u * TINYFED_EVALUATION_TERM_MAX_Q16);

  std::vector<uint8_t> update(TINYFED_UPDATE_MAX_SIZE(cap.features, cap.classes));
  size_t update_len = 0;
  Require(tinyfed_update_encode(ctx, update.data(), update.size(), &update_len) ==
          TINYFED_ERR_STATE);
  Require(tinyfed_evaluation_encode(ctx, update.data(), update.size(), &update_len) ==
          TINYFED_OK);
  Require(update_len <= update.size());
}

// Trains the loaded task on two samples of the first and last class (the
// device's data is not the attacker's; the task is), then classifies and
// encodes the update, each of which must succeed.
void RequireTaskUsable(tinyfed_context_t* ctx, const Capacity& cap) {
  tinyfed_task_info_t info;
  Require(tinyfed_task_info(ctx, &info) == TINYFED_OK);
  Require(info.evaluate_only == 0);
  Require(info.feature_count >= 1 && info.feature_count <= cap.features);
  Require(info.class_count >= 2 && info.class_count <= cap.classes);
  Require(info.feature_count * info.class_count <= TINYFED_MAX_WEIGHTS);
  Require(info.batch_size >= 1 && info.batch_size <= cap.batch);
  Require(info.epochs >= 1 && info.epochs <= TINYFED_MAX_EPOCHS);
  Require(info.task_token_len <= TINYFED_TOKEN_MAX_LEN);

  Samples samples;
  MakeSamples(info.feature_count, info.class_count, &samples);
  Require(tinyfed_train(ctx, &samples.dataset) == TINYFED_OK);

  uint32_t label = 0;
  Require(tinyfed_classify(ctx, samples.features.data(), &label) == TINYFED_OK);
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

  // With a held task, what a MODEL answer must leave as it was is visible
  // through the API: the task's parameters and the update it encodes
  // (deterministic: state, trained head and evaluation all in its bytes).
  const bool holds_task = (data[0] & 8u) != 0;
  tinyfed_task_info_t held_info = {};
  std::vector<uint8_t> held_update(TINYFED_UPDATE_MAX_SIZE(cap.features, cap.classes));
  size_t held_update_len = 0;
  if (holds_task) {
    const std::vector<uint8_t> task = HeldTask();
    Require(tinyfed_task_decode(&ctx, task.data(), task.size()) == TINYFED_OK);
    Require(tinyfed_task_info(&ctx, &held_info) == TINYFED_OK);
    Samples samples;
    MakeSamples(held_info.feature_count, held_info.class_count, &samples);
    tinyfed_evaluation_t evaluation;
    Require(tinyfed_evaluate(&ctx, &samples.dataset, &evaluation) == TINYFED_OK);
    Require(tinyfed_train(&ctx, &samples.dataset) == TINYFED_OK);
    Require(tinyfed_update_encode(&ctx, held_update.data(), held_update.size(),
                                  &held_update_len) == TINYFED_OK);
  }
  // Without one, the context's bytes and the arena's are what it holds.
  std::vector<uint8_t> ctx_before(sizeof ctx);
  std::memcpy(ctx_before.data(), &ctx, sizeof ctx);  // padding too, as memcmp reads it
  const std::vector<uint8_t> arena_before(static_cast<uint8_t*>(arena),
                                          static_cast<uint8_t*>(arena) + arena_size);

  tinyfed_status_t status;
  tinyfed_checkin_result_t result = {};
  tinyfed_task_info_t info;
  if (bare_task) {
    status = tinyfed_task_decode(&ctx, msg, len);
    // A bare task says which kind it is only through its info.
    result.kind = (status == TINYFED_OK && tinyfed_task_info(&ctx, &info) == TINYFED_OK &&
                   info.evaluate_only != 0)
                      ? TINYFED_CHECKIN_EVALUATE
                      : TINYFED_CHECKIN_TASK;
  } else {
    status = tinyfed_checkin_response_decode(&ctx, msg, len, &result);
  }
  if (status != TINYFED_OK) {
    Require(IsDocumentedDecodeError(status));
    Require(tinyfed_last_error_message(&ctx) != nullptr);
    Require(tinyfed_task_info(&ctx, &info) == TINYFED_ERR_STATE);
  } else if (result.kind == TINYFED_CHECKIN_RETRY) {
    Require(tinyfed_task_info(&ctx, &info) == TINYFED_ERR_STATE);
  } else if (result.kind == TINYFED_CHECKIN_MODEL) {
    Require(!bare_task);
    Require(result.model_offset <= len && result.model_length <= len - result.model_offset);
    if (holds_task) {
      tinyfed_task_info_t after;
      Require(tinyfed_task_info(&ctx, &after) == TINYFED_OK);
      Require(std::memcmp(&after, &held_info, sizeof after) == 0);
      std::vector<uint8_t> update(held_update.size());
      size_t update_len = 0;
      Require(tinyfed_update_encode(&ctx, update.data(), update.size(), &update_len) ==
              TINYFED_OK);
      Require(update_len == held_update_len &&
              std::memcmp(update.data(), held_update.data(), update_len) == 0);
    } else {
      Require(tinyfed_task_info(&ctx, &info) == TINYFED_ERR_STATE);
      Require(std::memcmp(&ctx, ctx_before.data(), sizeof ctx) == 0);
      Require(std::memcmp(arena, arena_before.data(), arena_size) == 0);
    }
    RequireModelDecodeKeepsContract(msg + result.model_offset, result.model_length, cap);
  } else if (result.kind == TINYFED_CHECKIN_EVALUATE) {
    RequireEvaluationTaskUsable(&ctx, cap);
  } else {
    Require(result.kind == TINYFED_CHECKIN_TASK);
    RequireTaskUsable(&ctx, cap);
  }
  std::free(arena);
  std::free(msg);
  return 0;
}
