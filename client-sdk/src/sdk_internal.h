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

/* Logits of one sample in Q16.16 for the head (w, b) under the context's
 * task: logits[c] = sum_f w[c][f] * real(x[f]) + b[c]. Writes class_count
 * values, each clamped to +-2^29 so that differences fit in int32. */
void tinyfed_forward_q16(const tinyfed_context_t *ctx, const int16_t *w,
                         const int16_t *b, const int8_t *x, int32_t *logits);

/* The SGD step of a batch as a tinyfed_scale_t applied to a summed
 * gradient: weights (sum of error_q15 * (q - zero_point)) or bias (sum of
 * error_q15), for a batch of `batch` samples. Sets *mantissa and the right
 * shift *shift in [1, 62]; INVALID_TASK when the learning rate and feature
 * scale put the step outside what the master format can represent. */
tinyfed_status_t tinyfed_step_scale(const tinyfed_task_info_t *task,
                                    uint32_t batch, int for_bias,
                                    uint32_t *mantissa, uint32_t *shift);

#endif /* TINYFED_SDK_INTERNAL_H_ */
