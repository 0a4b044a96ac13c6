/* Evaluates and trains devices' tasks on the emulated Cortex-M4 and prints
 * each encoded update (its evaluation included) as hex through semihosting ("update <case> <hex>"), so a test can
 * compare them byte for byte with the same tasks trained on the host. The
 * tasks, the devices' samples and ids come from fixture.h (case 0, a 64x10
 * head) and fixture_cases.h (shapes that take the training kernels' other
 * paths), generated at build time by the host tool tinyfed_fixture_gen.
 *
 * It also times case 0's evaluation and training with SysTick, the tag of
 * the longest
 * 64x10 update (HMAC-SHA256 over its body, by the SDK's internal function
 * the encoder calls), and a calibration loop of a known instruction count with
 * the same timer: under qemu's -icount the timer advances with executed
 * instructions, so the two give instructions per evaluated sample, per
 * training sample and per tag without knowing the timer's rate. Last, it
 * serves case 0's model through the inference API (fixture_model.h):
 * prints the class of each sample for the host's to compare, and times
 * the classifications (instructions per classified sample). */
#include <stdio.h>
#include <string.h>

#include "../../src/request_tag.h" /* internal: this firmware is a test harness */
#include "fixture.h"
#include "fixture_cases.h"
#include "fixture_model.h"
#include "tinyfed/tinyfed.h"

#define MAX(a, b) ((a) > (b) ? (a) : (b))

static tinyfed_context_t ctx;
static uint8_t arena[MAX(TINYFED_ARENA_SIZE(FIXTURE_FEATURES, FIXTURE_CLASSES, FIXTURE_BATCH),
                         FIXTURE_CASES_ARENA)];
static uint8_t update[MAX(TINYFED_UPDATE_MAX_SIZE(FIXTURE_FEATURES, FIXTURE_CLASSES),
                          FIXTURE_CASES_UPDATE)];

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

/* Loads, evaluates and trains one device's case and encodes its update
 * into update[0..*len); times the evaluation in *eval_ticks and the
 * training in *ticks and, if stack is not NULL, measures in *stack the
 * stack the SDK calls take. */
static tinyfed_status_t run_case(const fixture_case_t *c, size_t *len, uint32_t *eval_ticks,
                                 uint32_t *ticks, uint32_t *stack) {
  tinyfed_evaluation_t evaluation;
  const tinyfed_config_t config = {c->device_id, c->feature_count, c->class_count, c->batch,
                                   c->device_key};
  const tinyfed_dataset_t data = {c->features, c->labels, c->samples, c->feature_count};
  volatile uint32_t frame_marker = 0u;
  const uintptr_t stack_top = (uintptr_t)&frame_marker;
  if (stack != NULL) stack_paint();
  tinyfed_status_t s = tinyfed_init(&ctx, &config, arena, sizeof arena);
  if (s == TINYFED_OK) s = tinyfed_task_decode(&ctx, c->task, c->task_size);
  const uint32_t eval_start = SYST_CVR;
  if (s == TINYFED_OK) s = tinyfed_evaluate(&ctx, &data, &evaluation);
  *eval_ticks = systick_since(eval_start);
  const uint32_t start = SYST_CVR;
  if (s == TINYFED_OK) s = tinyfed_train(&ctx, &data);
  *ticks = systick_since(start);
  if (s == TINYFED_OK) s = tinyfed_update_encode(&ctx, update, sizeof update, len);
  if (stack != NULL) *stack = stack_used(stack_top);
  if (s != TINYFED_OK) {
    printf("error %s: %s\n", tinyfed_status_name(s), tinyfed_last_error_message(&ctx));
  }
  return s;
}

/* The longest Update body a 64x10 head can have by the SDK's documented
 * bound (the signed update's bound less the envelope's). */
#define LONGEST_BODY_64X10 (TINYFED_UPDATE_MAX_SIZE(64u, 10u) - TINYFED_SIGNED_ENVELOPE_MAX_SIZE)

/* Computes the tag of the signed update in update[0..len) (a
 * SignedRequest: device id field, body field, tag field, as the SDK frames
 * it) again over its body: 1 when it equals the update's own tag. Then
 * times a tag over LONGEST_BODY_64X10 bytes of the buffer in *ticks: what
 * the longest 64x10 update costs to sign. mbedTLS's SHA-256 runs the same
 * instructions whatever the bytes (no data-dependent branch), so the
 * length alone sets the count. */
typedef char update_buffer_holds_longest_body[(sizeof update >= LONGEST_BODY_64X10) ? 1 : -1];

static int check_and_time_tag(const uint8_t *key, size_t len, uint32_t *ticks) {
  uint8_t tag[TINYFED_TAG_SIZE];
  size_t at = 2u + update[1]; /* past the device id field */
  size_t body = 0u;
  unsigned shift = 0u;
  ++at; /* the body's key */
  do {
    body |= (size_t)(update[at] & 0x7Fu) << shift;
    shift += 7u;
  } while (update[at++] & 0x80u);
  if (at + body + 2u + TINYFED_TAG_SIZE != len) return 0;
  tinyfed_request_tag(key, (const uint8_t *)TINYFED_UPDATE_TAG_LABEL,
                      TINYFED_UPDATE_TAG_LABEL_SIZE, update + at, body, tag);
  if (memcmp(tag, update + at + body + 2u, sizeof tag) != 0) return 0;
  const uint32_t start = SYST_CVR;
  tinyfed_request_tag(key, (const uint8_t *)TINYFED_UPDATE_TAG_LABEL,
                      TINYFED_UPDATE_TAG_LABEL_SIZE, update, LONGEST_BODY_64X10, tag);
  *ticks = systick_since(start);
  return 1;
}

/* Case 0's model as a deployed one (the inference API), and the class it
 * gives each of case 0's samples. */
static uint32_t serving_model[TINYFED_MODEL_SIZE(FIXTURE_FEATURES, FIXTURE_CLASSES) / 4u];
static uint8_t served_labels[FIXTURE_SAMPLES];

/* Decodes the fixture's model into serving_model, classifies every sample
 * of case 0 with it (timed in *ticks) and evaluates it on them; *stack is
 * the stack those calls take. Prints the classes as "classify <digits>",
 * one base-32 digit a sample, for the host's to compare. */
static int run_serving(uint32_t *ticks, uint32_t *stack) {
  volatile uint32_t frame_marker = 0u;
  const uintptr_t stack_top = (uintptr_t)&frame_marker;
  const tinyfed_dataset_t data = {kFixtureFeatures, kFixtureLabels, FIXTURE_SAMPLES,
                                  FIXTURE_FEATURES};
  tinyfed_evaluation_t evaluation;
  tinyfed_model_info_t info;
  uint32_t i, label = 0u;
  stack_paint();
  tinyfed_status_t s = tinyfed_model_decode(&kFixtureBackbone, kFixtureModel,
                                            sizeof kFixtureModel, serving_model,
                                            sizeof serving_model, &info);
  const uint32_t start = SYST_CVR;
  for (i = 0; s == TINYFED_OK && i < FIXTURE_SAMPLES; ++i) {
    s = tinyfed_model_classify(serving_model, sizeof serving_model,
                               kFixtureFeatures + (size_t)i * FIXTURE_FEATURES, &label);
    served_labels[i] = (uint8_t)label;
  }
  *ticks = systick_since(start);
  if (s == TINYFED_OK) {
    s = tinyfed_model_evaluate(serving_model, sizeof serving_model, &data, &evaluation);
  }
  *stack = stack_used(stack_top);
  if (s != TINYFED_OK) {
    printf("error %s (serving)\n", tinyfed_status_name(s));
    return 0;
  }
  printf("classify ");
  for (i = 0; i < FIXTURE_SAMPLES; ++i) putchar("0123456789abcdefghijklmnopqrstuv"[served_labels[i]]);
  printf("\n");
  return 1;
}

static void print_update(unsigned index, size_t len) {
  size_t i;
  printf("update %u ", index);
  for (i = 0; i < len; ++i) printf("%02x", update[i]);
  printf("\n");
}

int main(void) {
  const fixture_case_t main_case = {FIXTURE_DEVICE_ID, kFixtureTask,  sizeof kFixtureTask,
                                    kFixtureFeatures,  kFixtureLabels, FIXTURE_SAMPLES,
                                    FIXTURE_FEATURES,  FIXTURE_CLASSES, FIXTURE_BATCH,
                                    kFixtureDeviceKey};
  size_t len = 0;
  uint32_t eval_ticks = 0, train_ticks = 0, tag_ticks = 0, ticks = 0, stack_bytes = 0, i;
  systick_start();
  const uint32_t start = SYST_CVR;
  calibration_loop();
  const uint32_t calibration_ticks = systick_since(start);
  /* The stack figure is case 0's, the 64x10 head. */
  if (run_case(&main_case, &len, &eval_ticks, &train_ticks, &stack_bytes) != TINYFED_OK) {
    return 1;
  }
  print_update(0u, len);
  if (!check_and_time_tag(kFixtureDeviceKey, len, &tag_ticks)) {
    printf("error: case 0's tag differs when computed again over its body\n");
    return 1;
  }
  for (i = 0; i < FIXTURE_CASES; ++i) {
    if (run_case(&kFixtureCases[i], &len, &ticks, &ticks, NULL) != TINYFED_OK) return 1;
    print_update(i + 1u, len);
  }
  uint32_t classify_ticks = 0u, serving_stack = 0u;
  if (!run_serving(&classify_ticks, &serving_stack)) return 1;
  printf("calibration %lu ticks for %lu instructions\n", (unsigned long)calibration_ticks,
         (unsigned long)(2u * CALIBRATION_ITERATIONS));
  printf("evaluation %lu ticks for %lu samples\n", (unsigned long)eval_ticks,
         (unsigned long)FIXTURE_SAMPLES);
  printf("training %lu ticks for %lu sample steps\n", (unsigned long)train_ticks,
         (unsigned long)(FIXTURE_SAMPLES * FIXTURE_EPOCHS));
  printf("tag %lu ticks for a %lu-byte update body\n", (unsigned long)tag_ticks,
         (unsigned long)LONGEST_BODY_64X10);
  printf("stack %lu bytes for decode, evaluate, train and encode\n",
         (unsigned long)stack_bytes);
  printf("classification %lu ticks for %lu samples\n", (unsigned long)classify_ticks,
         (unsigned long)FIXTURE_SAMPLES);
  printf("serving stack %lu bytes for model decode, classify and evaluate\n",
         (unsigned long)serving_stack);
  return 0;
}
