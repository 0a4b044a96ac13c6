/* Reference firmware for serving: a device that runs the fleet's deployed
 * model for inference and never trains. It checks in with a ServingState
 * (serving nothing yet), takes the model the server means it to serve
 * (which the server sends before any task), decodes it into its own model
 * buffer with the backbone's feature spec, classifies its local samples
 * with it and evaluates it on them, then checks in again reporting that
 * evaluation, when the server must not send a model again.
 *
 * The device's id, key and samples come from fixture.h
 * (tinyfed_fixture_gen), as for the reference UART device. Its backbone's
 * feature spec is the one its samples were quantized with, which the
 * fixture's task carries.
 *
 * It prints "result ..." lines that a host build of the SDK reproduces
 * from the same version's bytes (tests/client-sdk/serving_reference.cc):
 *   result version V
 *   result model_crc32 0xXXXXXXXX     CRC-32 of the decoded model buffer
 *   result labels LLL...              the class of each sample, in order
 *   result evaluation C/N loss_q16 S  tinyfed_model_evaluate's counts
 *
 * Exit status: 0 served and reported; 1 set-up, decode or link failure;
 * 2 gave up waiting for a model; 3 the server offered this device work
 * (a task or an evaluation before its model, or a model again after it
 * reported the one it holds). */
#include <stdio.h>

#include "../../port/port.h"
#include "../common/device_link.h"
#include "fixture.h"
#include "tinyfed/link.h"
#include "tinyfed/tinyfed.h"
#include "tinyfed_common/crc32.h"

#define MAX_ATTEMPTS 50
#define MODEL_BYTES TINYFED_MODEL_SIZE(FIXTURE_FEATURES, FIXTURE_CLASSES)

static tinyfed_context_t ctx;
static uint8_t arena[TINYFED_ARENA_SIZE(FIXTURE_FEATURES, FIXTURE_CLASSES, FIXTURE_BATCH)];
/* Words, for the 4-byte alignment the model calls require; rounded up, as
 * the model size need not be a multiple of 4. */
static uint32_t model[(MODEL_BYTES + 3u) / 4u];
/* A check-in response carries either the model or a task; a task is the
 * larger of the two (2 bytes per weight and bias against the model's 2
 * plus a few dozen bytes of spec and checksum). */
static uint8_t message[TINYFED_TASK_MAX_SIZE(FIXTURE_FEATURES, FIXTURE_CLASSES)];
static uint8_t frame_out[TINYFED_FRAME_ENCODED_MAX(TINYFED_CHECKIN_MAX_SIZE)];
static uint8_t frame_in[TINYFED_FRAME_DECODER_BUFFER(
    TINYFED_TASK_MAX_SIZE(FIXTURE_FEATURES, FIXTURE_CLASSES))];
static device_link_t uart;
static char line[FIXTURE_SAMPLES + 64u];

static void say(const char *text) { tinyfed_port_log(text); }

/* One signed check-in with `serving`, and the server's decoded answer in
 * *result (a model's bytes then lie in reply->payload). 1 on an answer, 0
 * when there was none or it was an error or undecodable (said why). */
static int check_in(const tinyfed_serving_state_t *serving, tinyfed_frame_t *reply,
                    tinyfed_checkin_result_t *result) {
  size_t length = 0;
  if (tinyfed_checkin_encode_serving(&ctx, FIXTURE_SAMPLES, serving, message, sizeof message,
                                     &length) != TINYFED_OK) {
    say("cannot encode the check-in");
    return 0;
  }
  if (!device_link_exchange(&uart, TINYFED_FRAME_CHECKIN, message, length, reply)) {
    say("no answer to check-in");
    return 0;
  }
  if (reply->type == TINYFED_FRAME_ERROR) {
    device_link_report_error(reply, line, sizeof line);
    return 0;
  }
  if (reply->type != TINYFED_FRAME_CHECKIN_RESPONSE) {
    say("unexpected frame type");
    return 0;
  }
  const tinyfed_status_t st =
      tinyfed_checkin_response_decode(&ctx, reply->payload, reply->length, result);
  if (st != TINYFED_OK) {
    snprintf(line, sizeof line, "check-in response refused: %s", tinyfed_status_name(st));
    say(line);
    return 0;
  }
  return 1;
}

/* The backbone's feature spec: the one the fixture's samples were
 * quantized with, read from the fixture's task. The context is prepared
 * afresh afterwards, so that its check-ins claim no training head. */
static int load_backbone(tinyfed_backbone_t *backbone) {
  const tinyfed_config_t config = {FIXTURE_DEVICE_ID, FIXTURE_FEATURES, FIXTURE_CLASSES,
                                   FIXTURE_BATCH, kFixtureDeviceKey};
  tinyfed_task_info_t task;
  if (tinyfed_init(&ctx, &config, arena, sizeof arena) != TINYFED_OK ||
      tinyfed_task_decode(&ctx, kFixtureTask, sizeof kFixtureTask) != TINYFED_OK ||
      tinyfed_task_info(&ctx, &task) != TINYFED_OK) {
    return 0;
  }
  backbone->feature_count = task.feature_count;
  backbone->feature_scale_multiplier = (int32_t)task.feature_scale_multiplier;
  backbone->feature_scale_shift = task.feature_scale_shift;
  backbone->feature_zero_point = task.feature_zero_point;
  return tinyfed_init(&ctx, &config, arena, sizeof arena) == TINYFED_OK;
}

/* Prints the result lines for the model in `model`; 0 on a failed call. */
static int report_model(tinyfed_evaluation_t *evaluation) {
  static const char kDigits[] = "0123456789abcdefghijklmnopqrstuv";
  tinyfed_model_info_t info;
  uint32_t i;
  /* As firmware does at boot before serving from flash: header and CRC. */
  if (tinyfed_model_info(model, MODEL_BYTES, 1, &info) != TINYFED_OK) {
    say("the decoded model does not check");
    return 0;
  }
  snprintf(line, sizeof line, "result version %lu", (unsigned long)info.version);
  say(line);
  snprintf(line, sizeof line, "result model_crc32 0x%08lx",
           (unsigned long)tinyfed_crc32_update(TINYFED_CRC32_INIT, (const uint8_t *)model,
                                               MODEL_BYTES));
  say(line);
  int at = snprintf(line, sizeof line, "result labels ");
  for (i = 0; i < FIXTURE_SAMPLES; ++i) {
    uint32_t label = 0;
    if (tinyfed_model_classify(model, MODEL_BYTES, &kFixtureFeatures[i * FIXTURE_FEATURES],
                               &label) != TINYFED_OK ||
        label >= sizeof kDigits - 1u) {
      say("classification failed");
      return 0;
    }
    line[at++] = kDigits[label];
  }
  line[at] = '\0';
  say(line);
  const tinyfed_dataset_t data = {kFixtureFeatures, kFixtureLabels, FIXTURE_SAMPLES,
                                  FIXTURE_FEATURES};
  if (tinyfed_model_evaluate(model, MODEL_BYTES, &data, evaluation) != TINYFED_OK) {
    say("evaluation failed");
    return 0;
  }
  /* Below 2^32: at most 2^21 per sample (TINYFED_EVALUATION_TERM_MAX_Q16)
   * and the fixture holds far fewer than 2^11 samples. */
  snprintf(line, sizeof line, "result evaluation %lu/%lu loss_q16 %lu",
           (unsigned long)evaluation->correct, (unsigned long)evaluation->samples,
           (unsigned long)evaluation->loss_sum_q16);
  say(line);
  return 1;
}

int main(void) {
  tinyfed_backbone_t backbone;
  tinyfed_frame_t reply;
  tinyfed_checkin_result_t result;
  tinyfed_model_info_t info;
  tinyfed_evaluation_t evaluation;
  int attempt;
  tinyfed_port_init();
  if (!load_backbone(&backbone) ||
      device_link_init(&uart, frame_out, sizeof frame_out, frame_in, sizeof frame_in) !=
          TINYFED_OK) {
    say("device set-up failed");
    return 1;
  }
  say("device " FIXTURE_DEVICE_ID " up, serving no model yet");

  /* Serving nothing: the server sends the version meant for this device
   * before it would hand it any work. */
  const tinyfed_serving_state_t nothing = {0u, NULL, 0u};
  for (attempt = 0; attempt < MAX_ATTEMPTS; ++attempt) {
    if (!check_in(&nothing, &reply, &result)) {
      device_link_wait_ms(1000u);
      continue;
    }
    if (result.kind == TINYFED_CHECKIN_MODEL) break;
    if (result.kind == TINYFED_CHECKIN_RETRY) {
      device_link_wait_retry("no model yet", result.retry_after_ms, line, sizeof line);
      continue;
    }
    say(result.kind == TINYFED_CHECKIN_TASK
            ? "FAIL: offered a training task before any model: this device does not train"
            : "FAIL: offered an evaluation task before any model");
    return 3;
  }
  if (attempt == MAX_ATTEMPTS) {
    say("giving up: no model");
    return 2;
  }
  const tinyfed_status_t st =
      tinyfed_model_decode(&backbone, reply.payload + result.model_offset, result.model_length,
                           model, MODEL_BYTES, &info);
  if (st != TINYFED_OK) {
    snprintf(line, sizeof line, "model refused: %s", tinyfed_status_name(st));
    say(line);
    return 1;
  }
  snprintf(line, sizeof line, "received model version %lu (%lu bytes)",
           (unsigned long)info.version, (unsigned long)result.model_length);
  say(line);
  if (!report_model(&evaluation)) return 1;

  /* Serving it now, with its evaluation: nothing new to install. */
  const tinyfed_serving_state_t serving = {info.version, &evaluation, 0u};
  for (attempt = 0; attempt < 5; ++attempt) {
    if (check_in(&serving, &reply, &result)) break;
    device_link_wait_ms(1000u);
  }
  if (attempt == 5) {
    say("giving up: the check-in reporting the served model got no answer");
    return 1;
  }
  switch (result.kind) {
    case TINYFED_CHECKIN_RETRY:
      snprintf(line, sizeof line, "serving version %lu; no model again: retry in %lu ms",
               (unsigned long)info.version, (unsigned long)result.retry_after_ms);
      say(line);
      return 0;
    case TINYFED_CHECKIN_TASK:
      /* Allowed by the protocol once a device holds its model; this one
       * only serves, so it leaves the task to the round's deadline. */
      snprintf(line, sizeof line, "serving version %lu; no model again: a task, not taken",
               (unsigned long)info.version);
      say(line);
      return 0;
    case TINYFED_CHECKIN_MODEL:
      say("FAIL: sent a model again while serving the one meant for it");
      return 3;
    default:
      say("FAIL: offered an evaluation task: this device only serves");
      return 3;
  }
}
