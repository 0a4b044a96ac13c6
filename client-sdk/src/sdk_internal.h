/* Internal to the SDK: shared by its source files, not part of the API. */
#ifndef TINYFED_SDK_INTERNAL_H_
#define TINYFED_SDK_INTERNAL_H_

#include "tinyfed/tinyfed.h"
#include "tinyfed_common/crc32.h"
#include "tinyfed_common/fixed_point.h"
#include "tinyfed_common/prng.h"
#include "tinyfed_common/quantize.h"

enum {
  TINYFED_STATE_NONE = 0u,    /* not initialised */
  TINYFED_STATE_READY = 1u,   /* initialised, no task */
  TINYFED_STATE_TASK = 2u,    /* task loaded, local head = global head */
  TINYFED_STATE_TRAINED = 3u  /* trained, delta quantized, ready to encode */
};

/* Records `message` as the context's last error and returns `status`. */
#ifdef TINYFED_NO_ERROR_MESSAGES
#define TINYFED_FAIL(ctx, status, message) (status)
#else
#define TINYFED_FAIL(ctx, status, message) \
  ((ctx)->error_message = (message), (status))
#endif

/* The SGD step of a batch as a multiplier applied to a summed gradient:
 * weights (sum of error_q15 * (q - zero_point)) or bias (sum of error_q15),
 * for a batch of `batch` samples, as *mantissa / 2^*shift. The shift is in
 * [32, 62], so that the step is the high word of a 64-bit product; the
 * mantissa is the tinyfed_scale_t's (31 bits) unless a shift below 32 had
 * to be raised to 32, which costs it as many low bits (at most 11 in the
 * validated ranges). INVALID_TASK when the learning rate and feature scale
 * put the step outside what the master format can represent. */
tinyfed_status_t tinyfed_step_scale(const tinyfed_task_info_t *task,
                                    uint32_t batch, int for_bias,
                                    uint32_t *mantissa, uint32_t *shift);

/* Little-endian int16 bytes to host int16, in place: nothing to do on a
 * little-endian target (GCC and Clang say which they compile for). A task's
 * head and a deployed model's arrive as ModelVersion's bytes. */
static inline void tinyfed_int16_from_le(int16_t *values, uint32_t count) {
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
  (void)values;
  (void)count;
#else
  uint8_t *bytes = (uint8_t *)values;
  uint32_t i;
  for (i = 0; i < count; ++i) {
    uint16_t u = (uint16_t)(bytes[2u * i] | (uint16_t)(bytes[2u * i + 1u] << 8));
    values[i] = (int16_t)u;
  }
#endif
}

/* The number formats of a head, wherever its weights live (a context's
 * arena, or a deployed model's buffer, whose header stores this struct as
 * it is: model.c). Values as tinyfed_task_info_t's fields of the same
 * names, validated before they get here. */
typedef struct tinyfed_head_format {
  uint32_t feature_count;
  uint32_t class_count;
  uint32_t weight_frac_bits;
  int32_t feature_zero_point;
  uint32_t feature_scale_multiplier;
  int32_t feature_scale_shift;
} tinyfed_head_format_t;

/* What the forward pass of a head needs, worked out once per training,
 * evaluation or classification rather than once per sample
 * (tinyfed_forward_plan_init). */
typedef struct tinyfed_forward_plan {
  const int16_t *weights; /* [class][feature], int16, 2-byte aligned; an
                             odd row's last pair reads one int16 past it */
  const int16_t *bias;    /* [class], right after the weights */
  int32_t *logits;        /* [class] scratch, Q16.16 on output */
  uint32_t features, classes;
  int32_t zero_point;
  int64_t half;       /* 2^(shift - 1): rounds to nearest, ties up */
  int32_t multiplier; /* the features' M, in [2^30, 2^31) */
  uint32_t shift;     /* 15 + f - sh, in [12, 60] */
  int32_t limit;      /* |acc| cap, see tinyfed_forward_plan_init */
  int32_t bias_scale; /* 2^(16 - f) */
  uint32_t pairs;     /* feature pairs of a row */
  uint32_t blocks;    /* eight-pair blocks of a row (train.c, dot_blocks) */
} tinyfed_forward_plan_t;

/* The head's arithmetic (train.c), shared by the training context and the
 * deployed-model API so both compute the same integers.
 * tinyfed_forward_plan_init: `format` valid (see above), `weights` and
 * `bias` as the plan's fields say, `logits` class_count words.
 * tinyfed_head_classify: the predicted class of one sample x[0..features)
 * (largest logit, a tie to the lowest class).
 * tinyfed_head_evaluate: out's samples, correct and loss_sum_q16 over
 * `data` (checked by tinyfed_dataset_fault), as tinyfed_evaluate()
 * documents; `errors` is class_count words of scratch.
 * tinyfed_dataset_fault: NULL when `data` fits a head of that shape, or
 * the reason it does not (a constant string). */
void tinyfed_forward_plan_init(tinyfed_forward_plan_t *plan,
                               const tinyfed_head_format_t *format,
                               const int16_t *weights, const int16_t *bias,
                               int32_t *logits);
uint32_t tinyfed_head_classify(const tinyfed_forward_plan_t *plan,
                               const int8_t *x);
void tinyfed_head_evaluate(const tinyfed_forward_plan_t *plan,
                           const tinyfed_dataset_t *data, uint32_t *errors,
                           tinyfed_evaluation_t *out);
const char *tinyfed_dataset_fault(const tinyfed_dataset_t *data,
                                  uint32_t features, uint32_t classes);

#endif /* TINYFED_SDK_INTERNAL_H_ */
