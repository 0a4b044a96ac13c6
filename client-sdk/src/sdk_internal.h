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

#endif /* TINYFED_SDK_INTERNAL_H_ */
