/* Reference firmware: one tinyfed device on a UART link, its id and device
 * key provisioned at build time (fixture.h; a real product would take them
 * from tinyfed-admin's `keys device --format c`). It checks in,
 * evaluates the task's model on its local shard (held in flash, generated
 * at build time into fixture.h) and trains the task's head on it, submits
 * its update (which carries the evaluation) and waits for the
 * acknowledgement, retrying as a real device would: it re-sends when no
 * answer comes, waits when the server says to come back later, and re-sends
 * the same update bytes after a lost acknowledgement (the server treats
 * them as the same submission). Exits 0 once its update is accepted. */
#include <stdio.h>

#include "../../port/port.h"
#include "../common/device_link.h"
#include "fixture.h"
#include "tinyfed/link.h"
#include "tinyfed/tinyfed.h"

#define MAX_ATTEMPTS 50

static tinyfed_context_t ctx;
static uint8_t arena[TINYFED_ARENA_SIZE(FIXTURE_FEATURES, FIXTURE_CLASSES, FIXTURE_BATCH)];
static uint8_t message[TINYFED_TASK_MAX_SIZE(FIXTURE_FEATURES, FIXTURE_CLASSES)];
static uint8_t frame_out[TINYFED_FRAME_ENCODED_MAX(
    TINYFED_UPDATE_MAX_SIZE(FIXTURE_FEATURES, FIXTURE_CLASSES))];
static uint8_t frame_in[TINYFED_FRAME_DECODER_BUFFER(
    TINYFED_TASK_MAX_SIZE(FIXTURE_FEATURES, FIXTURE_CLASSES))];
static device_link_t uart;
static char line[160];

static void say(const char *text) { tinyfed_port_log(text); }

int main(void) {
  const tinyfed_config_t config = {FIXTURE_DEVICE_ID, FIXTURE_FEATURES, FIXTURE_CLASSES,
                                   FIXTURE_BATCH, kFixtureDeviceKey};
  const tinyfed_dataset_t data = {kFixtureFeatures, kFixtureLabels, FIXTURE_SAMPLES,
                                  FIXTURE_FEATURES};
  tinyfed_frame_t reply;
  size_t length = 0;
  int attempt;
  tinyfed_port_init();
  if (tinyfed_init(&ctx, &config, arena, sizeof arena) != TINYFED_OK ||
      device_link_init(&uart, frame_out, sizeof frame_out, frame_in, sizeof frame_in) !=
          TINYFED_OK) {
    say("device set-up failed");
    return 1;
  }
  say("device " FIXTURE_DEVICE_ID " up");
  for (attempt = 0; attempt < MAX_ATTEMPTS; ++attempt) {
    tinyfed_checkin_result_t result;
    if (tinyfed_checkin_encode(&ctx, FIXTURE_SAMPLES, message, sizeof message, &length) !=
        TINYFED_OK) {
      return 1;
    }
    if (!device_link_exchange(&uart, TINYFED_FRAME_CHECKIN, message, length, &reply)) {
      say("no answer to check-in; retrying");
      continue;
    }
    if (reply.type == TINYFED_FRAME_ERROR) {
      device_link_report_error(&reply, line, sizeof line);
      device_link_wait_ms(1000u);
      continue;
    }
    if (reply.type != TINYFED_FRAME_CHECKIN_RESPONSE) continue;
    const tinyfed_status_t st =
        tinyfed_checkin_response_decode(&ctx, reply.payload, reply.length, &result);
    if (st != TINYFED_OK) {
      snprintf(line, sizeof line, "task rejected: %s", tinyfed_status_name(st));
      say(line);
      device_link_wait_ms(1000u);
      continue;
    }
    if (result.kind == TINYFED_CHECKIN_RETRY) {
      device_link_wait_retry("no task", result.retry_after_ms, line, sizeof line);
      continue;
    }
    tinyfed_task_info_t info;
    if (tinyfed_task_info(&ctx, &info) != TINYFED_OK) return 1;
    snprintf(line, sizeof line, "task: round %lu, model version %lu",
             (unsigned long)info.round, (unsigned long)info.model_version);
    say(line);
    tinyfed_evaluation_t evaluation;
    if (tinyfed_evaluate(&ctx, &data, &evaluation) != TINYFED_OK) {
      say("evaluation failed");
      return 1;
    }
    snprintf(line, sizeof line, "evaluation of version %lu: %lu of %lu samples right",
             (unsigned long)evaluation.model_version, (unsigned long)evaluation.correct,
             (unsigned long)evaluation.samples);
    say(line);
    if (tinyfed_train(&ctx, &data) != TINYFED_OK ||
        tinyfed_update_encode(&ctx, message, sizeof message, &length) != TINYFED_OK) {
      say("training failed");
      return 1;
    }
    /* The same bytes again after a lost acknowledgement. */
    int sent;
    for (sent = 0; sent < 5; ++sent) {
      if (!device_link_exchange(&uart, TINYFED_FRAME_UPDATE, message, length, &reply)) {
        say("no acknowledgement; re-sending the update");
        continue;
      }
      if (reply.type == TINYFED_FRAME_ACK) {
        uint32_t round = 0, retry = 0;
        if (tinyfed_ack_decode(reply.payload, reply.length, &round, &retry) == TINYFED_OK) {
          snprintf(line, sizeof line, "update accepted in round %lu (%lu bytes)",
                   (unsigned long)round, (unsigned long)length);
          say(line);
          return 0;
        }
      }
      if (reply.type == TINYFED_FRAME_ERROR) device_link_report_error(&reply, line, sizeof line);
      break;  /* refused: check in again */
    }
  }
  say("giving up");
  return 2;
}
