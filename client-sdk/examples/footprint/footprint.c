/* A minimal firmware image that uses every SDK call a device makes in a
 * round (evaluation included), for a 64x10 head with batches of 16, so the linker keeps exactly
 * the SDK, nanopb and mbedTLS code a real device needs, with the RAM a
 * device needs: the context, the arena, and one buffer that first receives
 * the task frame (decoded in place) and then holds the signed update, which
 * is framed straight onto the link. Built twice: with the SDK and, with
 * TINYFED_FOOTPRINT_BASELINE, without it; the size difference is the SDK's
 * flash and RAM. Never run.
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
  if (tinyfed_init(&ctx, &config, arena, sizeof arena) != TINYFED_OK) return 1;
  if (tinyfed_checkin_encode(&ctx, firmware_count, buffer, sizeof buffer, &len) != TINYFED_OK ||
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
  if (result.kind == TINYFED_CHECKIN_TASK) {
    const tinyfed_dataset_t data = {firmware_features, firmware_labels, firmware_count, FEATURES};
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
  firmware_sink = label + round + retry + (uint32_t)len + evaluation.correct;
  return 0;
#endif
}
