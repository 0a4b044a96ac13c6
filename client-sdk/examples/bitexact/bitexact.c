/* Trains one device's task on the emulated Cortex-M4 and prints the encoded
 * update as hex through semihosting, so a test can compare it byte for byte
 * with the same task trained on the host. The task, the device's samples
 * and its id come from fixture.h, generated at build time by the host tool
 * tinyfed_fixture_gen. */
#include <stdio.h>

#include "fixture.h"
#include "tinyfed/tinyfed.h"

static tinyfed_context_t ctx;
static uint8_t arena[TINYFED_ARENA_SIZE(FIXTURE_FEATURES, FIXTURE_CLASSES, FIXTURE_BATCH)];
static uint8_t update[TINYFED_UPDATE_MAX_SIZE(FIXTURE_FEATURES, FIXTURE_CLASSES)];

int main(void) {
  const tinyfed_config_t config = {FIXTURE_DEVICE_ID, FIXTURE_FEATURES, FIXTURE_CLASSES,
                                   FIXTURE_BATCH};
  const tinyfed_dataset_t data = {kFixtureFeatures, kFixtureLabels, FIXTURE_SAMPLES,
                                  FIXTURE_FEATURES};
  size_t len = 0, i;
  tinyfed_status_t s = tinyfed_init(&ctx, &config, arena, sizeof arena);
  if (s == TINYFED_OK) s = tinyfed_task_decode(&ctx, kFixtureTask, sizeof kFixtureTask);
  if (s == TINYFED_OK) s = tinyfed_train(&ctx, &data);
  if (s == TINYFED_OK) s = tinyfed_update_encode(&ctx, update, sizeof update, &len);
  if (s != TINYFED_OK) {
    printf("error %s: %s\n", tinyfed_status_name(s), tinyfed_last_error_message(&ctx));
    return 1;
  }
  printf("update ");
  for (i = 0; i < len; ++i) printf("%02x", update[i]);
  printf("\n");
  return 0;
}
