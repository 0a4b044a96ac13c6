/* Trains one device's task on the emulated Cortex-M4 and prints the encoded
 * update as hex through semihosting, so a test can compare it byte for byte
 * with the same task trained on the host. The task, the device's samples
 * and its id come from fixture.h, generated at build time by the host tool
 * tinyfed_fixture_gen.
 *
 * It also times training with SysTick, and a calibration loop of a known
 * instruction count with the same timer: under qemu's -icount the timer
 * advances with executed instructions, so the two give instructions per
 * training sample without knowing the timer's rate. */
#include <stdio.h>

#include "fixture.h"
#include "tinyfed/tinyfed.h"

static tinyfed_context_t ctx;
static uint8_t arena[TINYFED_ARENA_SIZE(FIXTURE_FEATURES, FIXTURE_CLASSES, FIXTURE_BATCH)];
static uint8_t update[TINYFED_UPDATE_MAX_SIZE(FIXTURE_FEATURES, FIXTURE_CLASSES)];

/* SysTick: control/status, reload and current value registers. */
#define SYST_CSR (*(volatile uint32_t *)0xE000E010u)
#define SYST_RVR (*(volatile uint32_t *)0xE000E014u)
#define SYST_CVR (*(volatile uint32_t *)0xE000E018u)
#define SYST_MASK 0x00FFFFFFu

static void systick_start(void) {
  SYST_RVR = SYST_MASK;
  SYST_CVR = 0u;
  SYST_CSR = 5u; /* enable, processor clock, no interrupt */
}

/* Ticks elapsed since `start` (the counter counts down, 24 bits). */
static uint32_t systick_since(uint32_t start) { return (start - SYST_CVR) & SYST_MASK; }

/* Stack high-water mark: paint the stack below the caller's frame with a
 * pattern, run the SDK, and find the deepest word overwritten. */
#define STACK_PAINT_BYTES 8192u
#define STACK_PATTERN 0xA5A5A5A5u

__attribute__((noinline)) static void stack_paint(void) {
  volatile uint32_t here = 0u;
  volatile uint32_t *p = (volatile uint32_t *)((uintptr_t)&here & ~(uintptr_t)3u) - 16;
  uint32_t i;
  for (i = 0; i < STACK_PAINT_BYTES / 4u; ++i) *(p - i) = STACK_PATTERN;
}

/* Bytes of stack used below `top` since stack_paint(). */
__attribute__((noinline)) static uint32_t stack_used(uintptr_t top) {
  volatile uint32_t *lowest = (volatile uint32_t *)((top & ~(uintptr_t)3u) - STACK_PAINT_BYTES);
  while (*lowest == STACK_PATTERN && (uintptr_t)lowest < top) ++lowest;
  return (uint32_t)(top - (uintptr_t)lowest);
}

/* Exactly 2 * iterations + 2 instructions: a subs/bne pair per iteration. */
#define CALIBRATION_ITERATIONS 1000000u
static void calibration_loop(void) {
  uint32_t n = CALIBRATION_ITERATIONS;
  __asm__ volatile(
      "1: subs %0, %0, #1\n"
      "   bne 1b\n"
      : "+r"(n)
      :
      : "cc");
}

int main(void) {
  const tinyfed_config_t config = {FIXTURE_DEVICE_ID, FIXTURE_FEATURES, FIXTURE_CLASSES,
                                   FIXTURE_BATCH};
  const tinyfed_dataset_t data = {kFixtureFeatures, kFixtureLabels, FIXTURE_SAMPLES,
                                  FIXTURE_FEATURES};
  size_t len = 0, i;
  volatile uint32_t frame_marker = 0u;
  const uintptr_t stack_top = (uintptr_t)&frame_marker;
  stack_paint();
  tinyfed_status_t s = tinyfed_init(&ctx, &config, arena, sizeof arena);
  if (s == TINYFED_OK) s = tinyfed_task_decode(&ctx, kFixtureTask, sizeof kFixtureTask);
  systick_start();
  uint32_t start = SYST_CVR;
  calibration_loop();
  const uint32_t calibration_ticks = systick_since(start);
  start = SYST_CVR;
  if (s == TINYFED_OK) s = tinyfed_train(&ctx, &data);
  const uint32_t train_ticks = systick_since(start);
  if (s == TINYFED_OK) s = tinyfed_update_encode(&ctx, update, sizeof update, &len);
  const uint32_t stack_bytes = stack_used(stack_top);
  if (s != TINYFED_OK) {
    printf("error %s: %s\n", tinyfed_status_name(s), tinyfed_last_error_message(&ctx));
    return 1;
  }
  printf("update ");
  for (i = 0; i < len; ++i) printf("%02x", update[i]);
  printf("\n");
  printf("calibration %lu ticks for %lu instructions\n", (unsigned long)calibration_ticks,
         (unsigned long)(2u * CALIBRATION_ITERATIONS));
  printf("training %lu ticks for %lu sample steps\n", (unsigned long)train_ticks,
         (unsigned long)(FIXTURE_SAMPLES * FIXTURE_EPOCHS));
  printf("stack %lu bytes below main for decode, train and encode\n",
         (unsigned long)stack_bytes);
  return 0;
}
