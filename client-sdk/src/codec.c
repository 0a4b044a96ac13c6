/* Wire codec: nanopb encoding and decoding of the SDK's messages, the
 * signed envelope around what the device sends, and validation of a
 * decoded task before it touches the context's head. */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <pb_decode.h>
#include <pb_encode.h>

#include "request_tag.h"
#include "sdk_internal.h"
#include "tinyfed/v1/coordinator.nanopb.h"
#include "tinyfed/v1/round.nanopb.h"

/* ---- decoding a task ---------------------------------------------------- */

/* Streams a bytes field straight into `dest` (capacity `cap` bytes), so the
 * decoded message never holds a copy of the weights. Records the length in
 * *received; a field longer than `cap` means the head does not fit. */
static bool read_into(pb_istream_t *stream, tinyfed_context_t *ctx,
                      uint8_t *dest, size_t cap, uint32_t *received) {
  size_t len = stream->bytes_left;
  if (len > cap) {
    ctx->decode_status = TINYFED_ERR_HEAD_TOO_LARGE;
    return false;
  }
  if (!pb_read(stream, dest, len)) return false;
  *received = (uint32_t)len;
  return true;
}

static bool decode_weights(pb_istream_t *stream, const pb_field_t *field,
                           void **arg) {
  (void)field;
  tinyfed_context_t *ctx = (tinyfed_context_t *)*arg;
  size_t cap = 2u * (size_t)ctx->max_features * ctx->max_classes;
  return read_into(stream, ctx, (uint8_t *)ctx->global_w, cap,
                   &ctx->weight_bytes);
}

static bool decode_bias(pb_istream_t *stream, const pb_field_t *field,
                        void **arg) {
  (void)field;
  tinyfed_context_t *ctx = (tinyfed_context_t *)*arg;
  return read_into(stream, ctx, (uint8_t *)ctx->global_b,
                   2u * (size_t)ctx->max_classes, &ctx->bias_bytes);
}

static void attach_model_callbacks(tinyfed_v1_ModelVersion *model,
                                   tinyfed_context_t *ctx) {
  model->weights.funcs.decode = decode_weights;
  model->weights.arg = ctx;
  model->bias.funcs.decode = decode_bias;
  model->bias.arg = ctx;
}

/* Checks the decoded task and, when it is valid, makes it the context's. */
static tinyfed_status_t load_task(tinyfed_context_t *ctx,
                                  const tinyfed_v1_RoundTask *task) {
  /* An evaluation-only task has no plan and no update scheme. */
  const bool trains = !task->evaluate_only;
  if (!task->has_model || !task->model.has_spec ||
      !task->model.spec.has_feature_quantization || (trains && !task->has_plan)) {
    return TINYFED_FAIL(ctx, TINYFED_ERR_INVALID_TASK,
                        "task lacks model/spec/scheme/plan");
  }
  if (trains && (!task->has_quantization ||
                 task->quantization.scheme !=
                     tinyfed_v1_QuantizationScheme_QUANTIZATION_SCHEME_INT8_PER_ROW_STOCHASTIC)) {
    return TINYFED_FAIL(ctx, TINYFED_ERR_UNSUPPORTED,
                        "unsupported update scheme");
  }
  const tinyfed_v1_HeadSpec *spec = &task->model.spec;
  const tinyfed_v1_FeatureQuantization *fq = &spec->feature_quantization;
  const tinyfed_v1_TrainingPlan *plan = &task->plan;
  const uint32_t features = spec->feature_count;
  const uint32_t classes = spec->class_count;
  if (features == 0u || classes < 2u) {
    return TINYFED_FAIL(ctx, TINYFED_ERR_INVALID_TASK,
                        "head needs >=1 feature, >=2 classes");
  }
  if (classes > TINYFED_MAX_CLASSES || features > TINYFED_MAX_WEIGHTS ||
      features * classes > TINYFED_MAX_WEIGHTS ||
      features > ctx->max_features || classes > ctx->max_classes) {
    return TINYFED_FAIL(ctx, TINYFED_ERR_HEAD_TOO_LARGE,
                        "head exceeds capacity");
  }
  if (ctx->weight_bytes != 2u * features * classes ||
      ctx->bias_bytes != 2u * classes) {
    return TINYFED_FAIL(ctx, TINYFED_ERR_SHAPE_MISMATCH,
                        "weight/bias size != spec");
  }
  uint32_t crc = tinyfed_crc32_update(
      TINYFED_CRC32_INIT, (const uint8_t *)ctx->global_w, ctx->weight_bytes);
  crc = tinyfed_crc32_update(crc, (const uint8_t *)ctx->global_b,
                             ctx->bias_bytes);
  if (crc != task->model.checksum) {
    return TINYFED_FAIL(ctx, TINYFED_ERR_CHECKSUM, "model checksum mismatch");
  }
  if (spec->weight_frac_bits < 4u || spec->weight_frac_bits > 14u ||
      fq->scale_multiplier < (1 << 30) || fq->scale_shift < -31 ||
      fq->scale_shift > 7 || fq->zero_point < -128 || fq->zero_point > 127) {
    return TINYFED_FAIL(ctx, TINYFED_ERR_INVALID_TASK,
                        "weight/feature format invalid");
  }
  if (trains && plan->batch_size > ctx->max_batch &&
      plan->batch_size <= TINYFED_MAX_BATCH) {
    return TINYFED_FAIL(ctx, TINYFED_ERR_BATCH_TOO_LARGE,
                        "batch exceeds capacity");
  }
  if (trains &&
      (plan->epochs == 0u || plan->epochs > TINYFED_MAX_EPOCHS ||
       plan->batch_size == 0u || plan->batch_size > TINYFED_MAX_BATCH ||
       plan->learning_rate_q16 == 0u ||
       plan->learning_rate_q16 > TINYFED_MAX_LEARNING_RATE_Q16)) {
    return TINYFED_FAIL(ctx, TINYFED_ERR_INVALID_TASK,
                        "epochs/batch/rate out of range");
  }
  /* begin_decode left the context without a task (a failed check below
   * keeps it so), so the task info can be filled in place. */
  tinyfed_task_info_t *info = &ctx->task;
  memset(info, 0, sizeof *info);
  info->round = task->round;
  info->model_version = task->model.version;
  info->feature_count = features;
  info->class_count = classes;
  info->weight_frac_bits = spec->weight_frac_bits;
  info->feature_zero_point = fq->zero_point;
  info->feature_scale_multiplier = (uint32_t)fq->scale_multiplier;
  info->feature_scale_shift = fq->scale_shift;
  info->deadline_ms = task->deadline_ms;
  memcpy(info->task_token, task->task_token.bytes, task->task_token.size);
  info->task_token_len = task->task_token.size;
  info->evaluate_only = trains ? 0u : 1u;
  if (trains) {
    info->epochs = plan->epochs;
    info->batch_size = plan->batch_size;
    info->learning_rate_q16 = plan->learning_rate_q16;
    info->seed = plan->seed;
  }
  /* Any batch from 1 to batch_size must give a representable SGD step, for
   * the weights and for the bias: the extremes decide. */
  uint32_t i, mant, shift;
  for (i = 0; trains && i < 4u; ++i) {
    if (tinyfed_step_scale(info, (i & 1u) ? info->batch_size : 1u,
                           (int)(i >> 1), &mant, &shift) != TINYFED_OK) {
      return TINYFED_FAIL(ctx, TINYFED_ERR_INVALID_TASK,
                          "learning rate out of range");
    }
  }

  tinyfed_int16_from_le(ctx->global_w, features * classes);
  tinyfed_int16_from_le(ctx->global_b, classes);
  memcpy(ctx->local_w, ctx->global_w, 2u * (size_t)features * classes);
  memcpy(ctx->local_b, ctx->global_b, 2u * (size_t)classes);
  ctx->held_version = info->model_version;
  ctx->state = TINYFED_STATE_TASK;
  return TINYFED_OK;
}

/* Common prologue of the decoders: argument and size checks, and a reset of
 * the task state (a failed decode leaves no task behind). */
static tinyfed_status_t begin_decode(tinyfed_context_t *ctx,
                                     const uint8_t *msg, size_t len) {
  if (ctx == NULL) return TINYFED_ERR_ARGUMENT;
  if (ctx->state == TINYFED_STATE_NONE) {
    return TINYFED_FAIL(ctx, TINYFED_ERR_STATE, "context not initialised");
  }
  if (msg == NULL && len != 0u) {
    return TINYFED_FAIL(ctx, TINYFED_ERR_ARGUMENT, "NULL message");
  }
  ctx->state = TINYFED_STATE_READY;
  ctx->evaluation.samples = 0u; /* it was the previous task's */
  if (len > TINYFED_TASK_MAX_SIZE(ctx->max_features, ctx->max_classes)) {
    return TINYFED_FAIL(ctx, TINYFED_ERR_MESSAGE_TOO_LARGE,
                        "message exceeds capacity");
  }
  ctx->weight_bytes = 0u;
  ctx->bias_bytes = 0u;
  ctx->decode_status = TINYFED_OK;
  return TINYFED_OK;
}

static tinyfed_status_t decode_failure(tinyfed_context_t *ctx) {
  if (ctx->decode_status == TINYFED_ERR_HEAD_TOO_LARGE) {
    return TINYFED_FAIL(ctx, TINYFED_ERR_HEAD_TOO_LARGE,
                        "head exceeds capacity");
  }
  return TINYFED_FAIL(ctx, TINYFED_ERR_MALFORMED, "not a valid message");
}

tinyfed_status_t tinyfed_task_decode(tinyfed_context_t *ctx,
                                     const uint8_t *msg, size_t len) {
  tinyfed_status_t status = begin_decode(ctx, msg, len);
  if (status != TINYFED_OK) return status;
  tinyfed_v1_RoundTask task = tinyfed_v1_RoundTask_init_zero;
  attach_model_callbacks(&task.model, ctx);
  pb_istream_t stream = pb_istream_from_buffer(msg, len);
  if (!pb_decode(&stream, tinyfed_v1_RoundTask_fields, &task)) {
    return decode_failure(ctx);
  }
  return load_task(ctx, &task);
}

/* Where CheckInResponse.model lies in the response: nothing is decoded
 * from it here (tinyfed_model_decode does that into the firmware's own
 * buffer). A buffer stream's state is its read position (nanopb's
 * pb_istream_from_buffer), which gives the offset without a copy. */
typedef struct model_span {
  const uint8_t *msg;
  size_t len;
  size_t offset, length;
  bool present;
} model_span_t;

static bool locate_model(pb_istream_t *stream, const pb_field_t *field,
                         void **arg) {
  (void)field;
  model_span_t *span = (model_span_t *)*arg;
  /* A model field with a scalar wire type reaches this callback as a
   * stream over nanopb's copy of the value on its stack, not over msg:
   * the span would point outside the message. Such a field is not a
   * ModelVersion (MALFORMED). Compared as integers: the copy is another
   * object, which never overlaps msg. */
  const uintptr_t at = (uintptr_t)stream->state;
  const uintptr_t start = (uintptr_t)span->msg;
  if (at < start || at - start > span->len ||
      stream->bytes_left > span->len - (size_t)(at - start)) {
    return false;
  }
  span->offset = (size_t)(at - start);
  span->length = stream->bytes_left;
  span->present = true;
  return pb_read(stream, NULL, stream->bytes_left);
}

tinyfed_status_t tinyfed_checkin_response_decode(
    tinyfed_context_t *ctx, const uint8_t *msg, size_t len,
    tinyfed_checkin_result_t *result) {
  if (result == NULL) {
    return ctx == NULL ? TINYFED_ERR_ARGUMENT
                       : TINYFED_FAIL(ctx, TINYFED_ERR_ARGUMENT, "NULL result");
  }
  /* A response with a model leaves the context as it was: what
   * begin_decode drops is put back then. */
  const uint32_t state = (ctx == NULL) ? 0u : ctx->state;
  const uint32_t evaluated = (ctx == NULL) ? 0u : ctx->evaluation.samples;
  tinyfed_status_t status = begin_decode(ctx, msg, len);
  if (status != TINYFED_OK) return status;
  tinyfed_v1_CheckInResponse response = tinyfed_v1_CheckInResponse_init_zero;
  model_span_t model = {msg, len, 0u, 0u, false};
  attach_model_callbacks(&response.task.model, ctx);
  response.model.funcs.decode = locate_model;
  response.model.arg = &model;
  pb_istream_t stream = pb_istream_from_buffer(msg, len);
  if (!pb_decode(&stream, tinyfed_v1_CheckInResponse_fields, &response)) {
    return decode_failure(ctx);
  }
  if ((int)response.has_task + (int)response.has_retry + (int)model.present != 1) {
    return TINYFED_FAIL(ctx, TINYFED_ERR_MALFORMED,
                        "need one of task, retry, model");
  }
  result->retry_after_ms = 0u;
  result->model_offset = 0u;
  result->model_length = 0u;
  if (response.has_retry) {
    result->kind = TINYFED_CHECKIN_RETRY;
    result->retry_after_ms = response.retry.retry_after_ms;
    return TINYFED_OK;
  }
  if (model.present) {
    ctx->state = state;
    ctx->evaluation.samples = evaluated;
    result->kind = TINYFED_CHECKIN_MODEL;
    result->model_offset = model.offset;
    result->model_length = model.length;
    return TINYFED_OK;
  }
  status = load_task(ctx, &response.task);
  if (status != TINYFED_OK) return status;
  result->kind = response.task.evaluate_only ? TINYFED_CHECKIN_EVALUATE
                                             : TINYFED_CHECKIN_TASK;
  return TINYFED_OK;
}

tinyfed_status_t tinyfed_ack_decode(const uint8_t *msg, size_t len,
                                    uint32_t *round, uint32_t *retry_after_ms) {
  if ((msg == NULL && len != 0u) || round == NULL || retry_after_ms == NULL) {
    return TINYFED_ERR_ARGUMENT;
  }
  /* An ack is two varints; allow room for fields a newer server adds. */
  if (len > 64u) return TINYFED_ERR_MESSAGE_TOO_LARGE;
  tinyfed_v1_UpdateAck ack = tinyfed_v1_UpdateAck_init_zero;
  pb_istream_t stream = pb_istream_from_buffer(msg, len);
  if (!pb_decode(&stream, tinyfed_v1_UpdateAck_fields, &ack)) {
    return TINYFED_ERR_MALFORMED;
  }
  *round = ack.round;
  *retry_after_ms = ack.retry_after_ms;
  return TINYFED_OK;
}

/* ---- encoding ----------------------------------------------------------- */

typedef struct byte_span {
  const uint8_t *data;
  size_t len;
} byte_span_t;

static bool encode_span(pb_ostream_t *stream, const pb_field_t *field,
                        void *const *arg) {
  const byte_span_t *span = (const byte_span_t *)*arg;
  return pb_encode_tag_for_field(stream, field) &&
         pb_encode_string(stream, span->data, span->len);
}

/* The SignedRequest's framing around the body (request_auth.h): the head
 * is the device id field and the body's key and length, the tail the tag
 * field. A body length below 2^21 takes at most three varint bytes
 * (TINYFED_SIGNED_ENVELOPE_MAX_SIZE counts as much). */
#define ENVELOPE_HEAD_MAX (2u + TINYFED_DEVICE_ID_MAX_LEN + 1u + 3u)
#define ENVELOPE_TAIL (2u + TINYFED_TAG_SIZE)
typedef char tinyfed_envelope_bound[
    (ENVELOPE_HEAD_MAX + ENVELOPE_TAIL == TINYFED_SIGNED_ENVELOPE_MAX_SIZE) ? 1 : -1];
typedef char tinyfed_checkin_label_size[
    (sizeof TINYFED_CHECKIN_TAG_LABEL == TINYFED_CHECKIN_TAG_LABEL_SIZE) ? 1 : -1];
/* The context keeps its evaluation in the generated struct's layout, so
 * the encoder copies it whole. */
typedef char tinyfed_evaluation_layout[
    (sizeof(tinyfed_evaluation_t) == sizeof(tinyfed_v1_Evaluation) &&
     offsetof(tinyfed_evaluation_t, model_version) ==
         offsetof(tinyfed_v1_Evaluation, model_version) &&
     offsetof(tinyfed_evaluation_t, samples) == offsetof(tinyfed_v1_Evaluation, samples) &&
     offsetof(tinyfed_evaluation_t, correct) == offsetof(tinyfed_v1_Evaluation, correct) &&
     offsetof(tinyfed_evaluation_t, loss_sum_q16) ==
         offsetof(tinyfed_v1_Evaluation, loss_sum_q16)) ? 1 : -1];
typedef char tinyfed_update_label_size[
    (sizeof TINYFED_UPDATE_TAG_LABEL == TINYFED_UPDATE_TAG_LABEL_SIZE) ? 1 : -1];

/* Writes a SignedRequest into out[0..capacity): `message` of type `fields`
 * as its body, tagged with `label` (its NUL included in label_size). The
 * body is sized first (nanopb's sizing pass), so the whole envelope is
 * written once, in order, straight into `out`, and the tag is computed
 * over the body where it lies. Fails only when the envelope is longer than
 * `capacity`: the SDK's own messages always encode. */
#if defined(__GNUC__) || defined(__clang__)
__attribute__((noinline)) /* one copy for both encoders */
#endif
static tinyfed_status_t encode_signed(tinyfed_context_t *ctx, const pb_msgdesc_t *fields,
                                      const void *message, const char *label,
                                      size_t label_size, uint8_t *out, size_t capacity,
                                      size_t *out_len) {
  size_t body_len = 0u;
  pb_ostream_t length = PB_OSTREAM_SIZING;
  const size_t id_len = ctx->device_id_len;
  if (!pb_get_encoded_size(&body_len, fields, message) ||
      !pb_encode_varint(&length, body_len)) {
    return TINYFED_FAIL(ctx, TINYFED_ERR_BUFFER_TOO_SMALL, "output buffer too small");
  }
  const size_t head_len = 3u + id_len + length.bytes_written;
  if (head_len + body_len + ENVELOPE_TAIL > capacity) {
    return TINYFED_FAIL(ctx, TINYFED_ERR_BUFFER_TOO_SMALL, "output buffer too small");
  }
  pb_ostream_t stream = pb_ostream_from_buffer(out, capacity);
  if (!pb_encode_tag(&stream, PB_WT_STRING, tinyfed_v1_SignedRequest_device_id_tag) ||
      !pb_encode_string(&stream, (const pb_byte_t *)ctx->device_id, id_len) ||
      !pb_encode_tag(&stream, PB_WT_STRING, tinyfed_v1_SignedRequest_body_tag) ||
      !pb_encode_varint(&stream, body_len) || !pb_encode(&stream, fields, message) ||
      !pb_encode_tag(&stream, PB_WT_STRING, tinyfed_v1_SignedRequest_tag_tag) ||
      !pb_encode_varint(&stream, TINYFED_TAG_SIZE) ||
      stream.bytes_written + TINYFED_TAG_SIZE != head_len + body_len + ENVELOPE_TAIL) {
    /* Unreachable with the size checked above, unless the message's
     * encoding were to change between the sizing pass and this one. */
    return TINYFED_FAIL(ctx, TINYFED_ERR_BUFFER_TOO_SMALL, "output buffer too small");
  }
  tinyfed_request_tag(ctx->device_key, (const uint8_t *)label, label_size, out + head_len,
                      body_len, out + stream.bytes_written);
  *out_len = stream.bytes_written + TINYFED_TAG_SIZE;
  return TINYFED_OK;
}

/* Checks the arguments of a check-in and fills the CheckInRequest every
 * check-in carries (no serving state). */
static tinyfed_status_t checkin_request(tinyfed_context_t *ctx, uint32_t sample_count,
                                        const uint8_t *out, const size_t *out_len,
                                        tinyfed_v1_CheckInRequest *request) {
  if (ctx == NULL) return TINYFED_ERR_ARGUMENT;
  if (out == NULL || out_len == NULL) {
    return TINYFED_FAIL(ctx, TINYFED_ERR_ARGUMENT, "NULL output");
  }
  if (ctx->state == TINYFED_STATE_NONE) {
    return TINYFED_FAIL(ctx, TINYFED_ERR_STATE, "context not initialised");
  }
  const tinyfed_v1_CheckInRequest empty = tinyfed_v1_CheckInRequest_init_zero;
  *request = empty;
  memcpy(request->device_id, ctx->device_id, sizeof ctx->device_id);
  request->model_version = ctx->held_version;
  request->has_capabilities = true;
  request->capabilities.max_features = ctx->max_features;
  request->capabilities.max_classes = ctx->max_classes;
  request->capabilities.max_batch_size = ctx->max_batch;
  request->capabilities.sample_count = sample_count;
  return TINYFED_OK;
}

tinyfed_status_t tinyfed_checkin_encode(tinyfed_context_t *ctx,
                                        uint32_t sample_count, uint8_t *out,
                                        size_t capacity, size_t *out_len) {
  tinyfed_v1_CheckInRequest request;
  const tinyfed_status_t status = checkin_request(ctx, sample_count, out, out_len, &request);
  if (status != TINYFED_OK) return status;
  return encode_signed(ctx, tinyfed_v1_CheckInRequest_fields, &request,
                       TINYFED_CHECKIN_TAG_LABEL, TINYFED_CHECKIN_TAG_LABEL_SIZE, out,
                       capacity, out_len);
}

tinyfed_status_t tinyfed_checkin_encode_serving(
    tinyfed_context_t *ctx, uint32_t sample_count,
    const tinyfed_serving_state_t *serving, uint8_t *out, size_t capacity,
    size_t *out_len) {
  tinyfed_v1_CheckInRequest request;
  const tinyfed_status_t status = checkin_request(ctx, sample_count, out, out_len, &request);
  if (status != TINYFED_OK) return status;
  if (serving != NULL) {
    request.has_serving = true;
    request.serving.model_version = serving->model_version;
    request.serving.defer_model = serving->defer_model != 0u;
    const tinyfed_evaluation_t *e = serving->evaluation;
    if (e != NULL) {
      /* The server's checks (coordinator.proto ServingState), so that a
       * device learns of a bad evaluation here rather than by a refused
       * check-in. */
      if (e->model_version != serving->model_version || e->model_version == 0u ||
          e->samples == 0u || e->samples > TINYFED_MAX_SAMPLES ||
          (sample_count != 0u && e->samples > sample_count) ||
          e->correct > e->samples || e->loss_sum_q16 > ((uint64_t)e->samples << 21)) {
        return TINYFED_FAIL(ctx, TINYFED_ERR_ARGUMENT, "serving evaluation out of range");
      }
      request.serving.has_evaluation = true;
      memcpy(&request.serving.evaluation, e, sizeof request.serving.evaluation);
    }
  }
  return encode_signed(ctx, tinyfed_v1_CheckInRequest_fields, &request,
                       TINYFED_CHECKIN_TAG_LABEL, TINYFED_CHECKIN_TAG_LABEL_SIZE, out,
                       capacity, out_len);
}

/* An Update holding only what identifies it (round, task token, device id,
 * base version) and the task's evaluation if it ran: an evaluation-only
 * task's whole update, and the start of a trained one. */
static void update_identity(const tinyfed_context_t *ctx, tinyfed_v1_Update *update) {
  const tinyfed_task_info_t *t = &ctx->task;
  const tinyfed_v1_Update empty = tinyfed_v1_Update_init_zero;
  *update = empty;
  update->round = t->round;
  memcpy(update->task_token.bytes, t->task_token, t->task_token_len);
  update->task_token.size = (pb_size_t)t->task_token_len;
  memcpy(update->device_id, ctx->device_id, sizeof ctx->device_id);
  update->base_version = t->model_version;
  if (ctx->evaluation.samples != 0u) {
    update->has_evaluation = true;
    memcpy(&update->evaluation, &ctx->evaluation, sizeof update->evaluation);
  }
}

tinyfed_status_t tinyfed_update_encode(tinyfed_context_t *ctx, uint8_t *out,
                                       size_t capacity, size_t *out_len) {
  if (ctx == NULL) return TINYFED_ERR_ARGUMENT;
  if (out == NULL || out_len == NULL) {
    return TINYFED_FAIL(ctx, TINYFED_ERR_ARGUMENT, "NULL output");
  }
  if (ctx->state != TINYFED_STATE_TRAINED) {
    return TINYFED_FAIL(ctx, TINYFED_ERR_STATE, "train before encoding");
  }
  const tinyfed_task_info_t *t = &ctx->task;
  byte_span_t weights = {(const uint8_t *)ctx->delta_w,
                         (size_t)t->feature_count * t->class_count};
  byte_span_t bias = {(const uint8_t *)ctx->delta_b, t->class_count};
  tinyfed_v1_Update update;
  update_identity(ctx, &update);
  update.sample_count = ctx->trained_samples;
  update.weight_delta.funcs.encode = encode_span;
  update.weight_delta.arg = &weights;
  update.bias_delta.funcs.encode = encode_span;
  update.bias_delta.arg = &bias;
  update.row_scales_count = (pb_size_t)t->class_count;
  memcpy(update.row_scales, ctx->row_scales, 4u * t->class_count);
  update.local_loss_q16 = ctx->loss_q16;
  update.checksum =
      tinyfed_crc32_update(tinyfed_crc32_update(TINYFED_CRC32_INIT, weights.data,
                                                weights.len),
                           bias.data, bias.len);
  return encode_signed(ctx, tinyfed_v1_Update_fields, &update, TINYFED_UPDATE_TAG_LABEL,
                       TINYFED_UPDATE_TAG_LABEL_SIZE, out, capacity, out_len);
}

tinyfed_status_t tinyfed_evaluation_encode(tinyfed_context_t *ctx, uint8_t *out,
                                           size_t capacity, size_t *out_len) {
  if (ctx == NULL) return TINYFED_ERR_ARGUMENT;
  if (out == NULL || out_len == NULL) {
    return TINYFED_FAIL(ctx, TINYFED_ERR_ARGUMENT, "NULL output");
  }
  if (ctx->state != TINYFED_STATE_TASK || !ctx->task.evaluate_only ||
      ctx->evaluation.samples == 0u) {
    return TINYFED_FAIL(ctx, TINYFED_ERR_STATE, "evaluate an evaluation-only task first");
  }
  /* round.proto RoundTask.evaluate_only: no sample count, deltas, scales,
   * loss or checksum (their zeros are not encoded). */
  tinyfed_v1_Update update;
  update_identity(ctx, &update);
  return encode_signed(ctx, tinyfed_v1_Update_fields, &update, TINYFED_UPDATE_TAG_LABEL,
                       TINYFED_UPDATE_TAG_LABEL_SIZE, out, capacity, out_len);
}
