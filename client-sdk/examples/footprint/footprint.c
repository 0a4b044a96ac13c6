/* A minimal firmware image that uses every SDK call a device makes in a
 * round (evaluation and evaluation-only tasks included) and every call of
 * the inference API (a served model: check-in with its state, decode of a
 * new one, classification, evaluation), for a 64x10 head with batches of
 * 16, so the linker keeps exactly the SDK, nanopb and mbedTLS code a real
 * device needs, with the RAM a device needs: the context, the arena, one
 * buffer that first receives the task frame (decoded in place) and then
 * holds the signed update, which is framed straight onto the link, and the
 * model buffer `serving_model`, which the scripts count apart from the
 * training RAM (a firmware would usually keep it in flash). Built three
 * times: with the SDK; with TINYFED_FOOTPRINT_TRAINING_ONLY, a device that
 * only trains (no inference API, no evaluation-only tasks: what the SDK
 * costs a firmware that does not serve models); and, with
 * TINYFED_FOOTPRINT_BASELINE, without the SDK; the size differences are
 * the SDK's flash and RAM. Never run.
 */
#include <stddef.h>
#include <stdint.h>

#ifndef TINYFED_FOOTPRINT_BASELINE
#include "tinyfed/link.h"
#include "tinyfed/tinyfed.h"

#define FEATURES 64u
#define CLASSES 10u
#define BATCH 16u

static tinyfed_context_t ctx;
static uint8_t arena[TINYFED_ARENA_SIZE(FEATURES, CLASSES, BATCH)];
/* Receives the task frame, then holds the update: never both at once. */
static uint8_t buffer[TINYFED_FRAME_DECODER_BUFFER(TINYFED_TASK_MAX_SIZE(FEATURES, CLASSES))];
#ifndef TINYFED_FOOTPRINT_TRAINING_ONLY
#define SERVING 1
/* The model the device serves; a new one is decoded into it (a firmware
 * with a spare flash slot decodes into RAM and then writes the slot). */
uint32_t serving_model[TINYFED_MODEL_SIZE(FEATURES, CLASSES) / 4u];
#else
#define SERVING 0
#endif
#endif

/* Stand-ins for the firmware's data and link, opaque to the optimizer. */
const uint8_t *volatile firmware_device_key;
const int8_t *volatile firmware_features;
const uint8_t *volatile firmware_labels;
volatile uint32_t firmware_count;
volatile uint8_t firmware_rx;
volatile uint32_t firmware_sink;

#ifndef TINYFED_FOOTPRINT_BASELINE
static int link_write(void *user, const uint8_t *bytes, size_t length) {
  (void)user;
  while (length-- > 0u) firmware_sink = *bytes++;
  return 1;
}
#endif

int main(void) {
#ifdef TINYFED_FOOTPRINT_BASELINE
  firmware_sink = firmware_count + firmware_rx;
  return 0;
#else
  const tinyfed_config_t config = {"footprint", FEATURES, CLASSES, BATCH, firmware_device_key};
  size_t len = 0;
  tinyfed_checkin_result_t result;
  tinyfed_frame_decoder_t decoder;
  tinyfed_frame_t received;
  int ready = 0;
  uint32_t label = 0, round = 0, retry = 0;
  tinyfed_evaluation_t evaluation = {0u, 0u, 0u, 0u};
  tinyfed_model_info_t info = {0u, 0u, 0u, 0u, 0u};
  const tinyfed_dataset_t data = {firmware_features, firmware_labels, firmware_count, FEATURES};
  if (tinyfed_init(&ctx, &config, arena, sizeof arena) != TINYFED_OK) return 1;
#if SERVING
  tinyfed_evaluation_t served = {0u, 0u, 0u, 0u};
  const tinyfed_backbone_t backbone = {FEATURES, 1 << 30, -4, 0};
  tinyfed_serving_state_t serving = {0u, NULL, 0u};
  if (tinyfed_model_info(serving_model, sizeof serving_model, 1, &info) == TINYFED_OK &&
      tinyfed_model_evaluate(serving_model, sizeof serving_model, &data, &served) == TINYFED_OK) {
    serving.model_version = info.version;
    serving.evaluation = &served;
  }
  if (tinyfed_checkin_encode_serving(&ctx, firmware_count, &serving, buffer, sizeof buffer,
                                     &len) != TINYFED_OK ||
#else
  if (tinyfed_checkin_encode(&ctx, firmware_count, buffer, sizeof buffer, &len) != TINYFED_OK ||
#endif
      tinyfed_frame_write(TINYFED_FRAME_CHECKIN, buffer, len, link_write, NULL) != TINYFED_OK) {
    return 1;
  }
  if (tinyfed_frame_decoder_init(&decoder, buffer, sizeof buffer) != TINYFED_OK) return 1;
  while (!ready) {
    if (tinyfed_frame_decoder_push(&decoder, firmware_rx, &ready, &received) != TINYFED_OK) {
      firmware_sink = 1;
    }
  }
  if (tinyfed_checkin_response_decode(&ctx, received.payload, received.length, &result) !=
      TINYFED_OK) {
    return 1;
  }
#if SERVING
  if (result.kind == TINYFED_CHECKIN_MODEL) {
    if (tinyfed_model_decode(&backbone, received.payload + result.model_offset,
                             result.model_length, serving_model, sizeof serving_model,
                             &info) != TINYFED_OK) {
      return 1;
    }
  } else if (result.kind == TINYFED_CHECKIN_EVALUATE) {
    if (tinyfed_evaluate(&ctx, &data, &evaluation) != TINYFED_OK ||
        tinyfed_evaluation_encode(&ctx, buffer, sizeof buffer, &len) != TINYFED_OK ||
        tinyfed_frame_write(TINYFED_FRAME_UPDATE, buffer, len, link_write, NULL) != TINYFED_OK) {
      return 1;
    }
  }
#endif
  if (result.kind == TINYFED_CHECKIN_TASK) {
    if (tinyfed_evaluate(&ctx, &data, &evaluation) != TINYFED_OK ||
        tinyfed_train(&ctx, &data) != TINYFED_OK ||
        tinyfed_update_encode(&ctx, buffer, sizeof buffer, &len) != TINYFED_OK ||
        tinyfed_frame_write(TINYFED_FRAME_UPDATE, buffer, len, link_write, NULL) != TINYFED_OK) {
      return 1;
    }
  }
  ready = 0;
  while (!ready) {
    if (tinyfed_frame_decoder_push(&decoder, firmware_rx, &ready, &received) != TINYFED_OK) {
      firmware_sink = 1;
    }
  }
  if (tinyfed_ack_decode(received.payload, received.length, &round, &retry) != TINYFED_OK ||
      tinyfed_classify(&ctx, firmware_features, &label) != TINYFED_OK) {
    return 1;
  }
#if SERVING
  if (tinyfed_model_classify(serving_model, sizeof serving_model, firmware_features, &label) !=
      TINYFED_OK) {
    return 1;
  }
#endif
  firmware_sink = label + round + retry + (uint32_t)len + evaluation.correct + info.version;
  return 0;
#endif
}
