/* Deployed models: decoding a ModelVersion into a caller-owned buffer, and
 * classifying and evaluating with it, apart from any training context.
 *
 * A model buffer is a header followed by the head, host int16:
 *
 *   bytes 0..39    model_header_t (below)
 *   bytes 40..     weights [class][feature], then bias [class]
 *
 * The header is written last and only when every check passed, so a buffer
 * whose decode failed, or that holds anything else, has no valid header
 * and every call refuses it (NO_MODEL). Its own check word catches a torn
 * or foreign header cheaply enough to run at every classification; the
 * weights' CRC-32, the server's, is recomputed on request only
 * (tinyfed_model_info), since it costs a pass over the whole head. */
#include <stddef.h>
#include <string.h>

#include <pb_decode.h>

#include "sdk_internal.h"
#include "tinyfed/v1/model.nanopb.h"

/* "TFM1" in memory on a little-endian target. */
#define MODEL_MAGIC 0x314D4654u

typedef struct model_header {
  uint32_t magic;
  uint32_t check;    /* header_check() of the fields below */
  uint32_t version;  /* >= 1 */
  uint32_t checksum; /* CRC-32 of weights and bias little-endian, the server's */
  tinyfed_head_format_t format;
} model_header_t;

typedef char tinyfed_model_header_size[
    (sizeof(model_header_t) == TINYFED_MODEL_HEADER_SIZE) ? 1 : -1];

/* A mix of the header's words after `check`: each step (xor, then a
 * multiply by an odd constant) is a bijection of the running value, so any
 * one changed word changes the result, and a foreign or torn header passes
 * with a chance of about 2^-32. Eight multiplies, so classify can afford it
 * per call; it is no defence against a forged buffer (the CRC-32 is not
 * either: the firmware's own storage must be trusted). */
static uint32_t header_check(const model_header_t *h) {
  const uint32_t words[8] = {h->version,
                             h->checksum,
                             h->format.feature_count,
                             h->format.class_count,
                             h->format.weight_frac_bits,
                             (uint32_t)h->format.feature_zero_point,
                             h->format.feature_scale_multiplier,
                             (uint32_t)h->format.feature_scale_shift};
  uint32_t mix = MODEL_MAGIC, i;
  for (i = 0; i < 8u; ++i) mix = (mix ^ words[i]) * 0x9E3779B1u;
  return mix;
}

/* Whether a head of this format is within the protocol bounds and the
 * forward pass's validated ranges (tinyfed_forward_plan_init). */
static int format_valid(const tinyfed_head_format_t *f) {
  return f->feature_count >= 1u && f->class_count >= 2u &&
         f->class_count <= TINYFED_MAX_CLASSES &&
         f->feature_count <= TINYFED_MAX_WEIGHTS / f->class_count &&
         f->weight_frac_bits >= 4u && f->weight_frac_bits <= 14u &&
         f->feature_scale_multiplier >= (1u << 30) &&
         f->feature_scale_multiplier < (1u << 31) && f->feature_scale_shift >= -31 &&
         f->feature_scale_shift <= 7 && f->feature_zero_point >= -128 &&
         f->feature_zero_point <= 127;
}

/* The buffer's header when it holds a model that fits model_size, or NULL.
 * The range checks keep a header that passes its check word by chance
 * from sending the forward pass out of its buffer or its shift range. */
static const model_header_t *model_header(const void *model, size_t model_size) {
  if (model == NULL || ((uintptr_t)model & 3u) != 0u ||
      model_size < TINYFED_MODEL_HEADER_SIZE) {
    return NULL;
  }
  const model_header_t *h = (const model_header_t *)model;
  if (h->magic != MODEL_MAGIC || h->check != header_check(h) || h->version == 0u ||
      !format_valid(&h->format) ||
      model_size < TINYFED_MODEL_SIZE((size_t)h->format.feature_count,
                                      (size_t)h->format.class_count)) {
    return NULL;
  }
  return h;
}

static const int16_t *model_weights(const model_header_t *h) {
  return (const int16_t *)(const void *)(h + 1);
}

/* CRC-32 of `count` int16 values as their little-endian bytes. */
static uint32_t crc32_s16_le(uint32_t crc, const int16_t *values, uint32_t count) {
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
  return tinyfed_crc32_update(crc, (const uint8_t *)values, 2u * (size_t)count);
#else
  uint32_t i;
  for (i = 0; i < count; ++i) {
    const uint8_t le[2] = {(uint8_t)((uint16_t)values[i] & 0xFFu),
                           (uint8_t)((uint16_t)values[i] >> 8)};
    crc = tinyfed_crc32_update(crc, le, 2u);
  }
  return crc;
#endif
}

static void copy_info(const model_header_t *h, tinyfed_model_info_t *info) {
  if (info == NULL) return;
  info->version = h->version;
  info->feature_count = h->format.feature_count;
  info->class_count = h->format.class_count;
  info->weight_frac_bits = h->format.weight_frac_bits;
  info->checksum = h->checksum;
}

/* ---- decoding ------------------------------------------------------------ */

/* Streaming state of a decode: weights land right after the header, the
 * bias right after the weights. Protobuf encoders write fields in number
 * order (weights 5 before bias 6); a bias seen before the weights cannot
 * be placed and makes the message MALFORMED. */
typedef struct model_stream {
  uint8_t *head;   /* the buffer past the header */
  size_t capacity; /* bytes there */
  size_t weight_bytes, bias_bytes;
  int bias_seen;
  tinyfed_status_t status; /* why a callback stopped the decode */
} model_stream_t;

static bool stream_weights(pb_istream_t *stream, const pb_field_t *field, void **arg) {
  (void)field;
  model_stream_t *s = (model_stream_t *)*arg;
  const size_t len = stream->bytes_left;
  if (s->bias_seen) return false;
  if (len > s->capacity || len > 2u * TINYFED_MAX_WEIGHTS) {
    s->status = TINYFED_ERR_HEAD_TOO_LARGE;
    return false;
  }
  s->weight_bytes = len;
  return pb_read(stream, s->head, len);
}

static bool stream_bias(pb_istream_t *stream, const pb_field_t *field, void **arg) {
  (void)field;
  model_stream_t *s = (model_stream_t *)*arg;
  const size_t len = stream->bytes_left;
  if (len > s->capacity - s->weight_bytes || len > 2u * TINYFED_MAX_CLASSES) {
    s->status = TINYFED_ERR_HEAD_TOO_LARGE;
    return false;
  }
  s->bias_seen = 1;
  s->bias_bytes = len;
  return pb_read(stream, s->head + s->weight_bytes, len);
}

/* The longest ModelVersion the protocol allows: the largest head's weights
 * and bias, and 320 bytes for spec, version, lineage, checksum, metrics
 * and fields a newer server adds (as TINYFED_TASK_MAX_SIZE allows). Not
 * the buffer's: a head too large for the buffer is HEAD_TOO_LARGE. */
#define MODEL_MESSAGE_MAX (2u * TINYFED_MAX_WEIGHTS + 2u * TINYFED_MAX_CLASSES + 320u)

tinyfed_status_t tinyfed_model_decode(const tinyfed_backbone_t *backbone,
                                      const uint8_t *msg, size_t len, void *model,
                                      size_t model_size, tinyfed_model_info_t *info) {
  if (backbone == NULL || (msg == NULL && len != 0u) || model == NULL ||
      ((uintptr_t)model & 3u) != 0u) {
    return TINYFED_ERR_ARGUMENT;
  }
  if (model_size < TINYFED_MODEL_HEADER_SIZE) return TINYFED_ERR_HEAD_TOO_LARGE;
  model_header_t *h = (model_header_t *)model;
  /* From here on the buffer holds no model until every check has passed. */
  h->magic = 0u;
  const size_t capacity = model_size - TINYFED_MODEL_HEADER_SIZE;
  if (len > MODEL_MESSAGE_MAX) return TINYFED_ERR_MESSAGE_TOO_LARGE;

  model_stream_t s = {(uint8_t *)(h + 1), capacity, 0u, 0u, 0, TINYFED_OK};
  tinyfed_v1_ModelVersion m = tinyfed_v1_ModelVersion_init_zero;
  m.weights.funcs.decode = stream_weights;
  m.weights.arg = &s;
  m.bias.funcs.decode = stream_bias;
  m.bias.arg = &s;
  pb_istream_t stream = pb_istream_from_buffer(msg, len);
  if (!pb_decode(&stream, tinyfed_v1_ModelVersion_fields, &m)) {
    return s.status != TINYFED_OK ? s.status : TINYFED_ERR_MALFORMED;
  }
  if (!m.has_spec || !m.spec.has_feature_quantization) return TINYFED_ERR_INVALID_TASK;
  const tinyfed_v1_FeatureQuantization *fq = &m.spec.feature_quantization;
  const tinyfed_head_format_t format = {
      m.spec.feature_count, m.spec.class_count, m.spec.weight_frac_bits,
      fq->zero_point,       (uint32_t)fq->scale_multiplier, fq->scale_shift};
  const uint32_t features = format.feature_count, classes = format.class_count;
  if (features == 0u || classes < 2u) return TINYFED_ERR_INVALID_TASK;
  if (classes > TINYFED_MAX_CLASSES || features > TINYFED_MAX_WEIGHTS / classes ||
      TINYFED_MODEL_SIZE((size_t)features, (size_t)classes) > model_size) {
    return TINYFED_ERR_HEAD_TOO_LARGE;
  }
  if (s.weight_bytes != 2u * (size_t)features * classes || s.bias_bytes != 2u * classes) {
    return TINYFED_ERR_SHAPE_MISMATCH;
  }
  uint32_t crc = tinyfed_crc32_update(TINYFED_CRC32_INIT, s.head, s.weight_bytes + s.bias_bytes);
  if (crc != m.checksum) return TINYFED_ERR_CHECKSUM;
  if (features != backbone->feature_count ||
      fq->scale_multiplier != backbone->feature_scale_multiplier ||
      fq->scale_shift != backbone->feature_scale_shift ||
      fq->zero_point != backbone->feature_zero_point) {
    return TINYFED_ERR_FEATURE_SPEC;
  }
  if (m.version == 0u || !format_valid(&format)) return TINYFED_ERR_INVALID_TASK;

  int16_t *weights = (int16_t *)(void *)s.head;
  tinyfed_int16_from_le(weights, features * classes + classes);
  h->version = m.version;
  h->checksum = m.checksum;
  h->format = format;
  h->check = header_check(h);
  h->magic = MODEL_MAGIC; /* last: the buffer holds a model from here on */
  copy_info(h, info);
  return TINYFED_OK;
}

/* ---- using a model ------------------------------------------------------- */

tinyfed_status_t tinyfed_model_info(const void *model, size_t model_size,
                                    int verify_checksum, tinyfed_model_info_t *info) {
  if (model == NULL) return TINYFED_ERR_ARGUMENT;
  const model_header_t *h = model_header(model, model_size);
  if (h == NULL) return TINYFED_ERR_NO_MODEL;
  if (verify_checksum) {
    const uint32_t values = h->format.feature_count * h->format.class_count +
                            h->format.class_count;
    if (crc32_s16_le(TINYFED_CRC32_INIT, model_weights(h), values) != h->checksum) {
      return TINYFED_ERR_CHECKSUM;
    }
  }
  copy_info(h, info);
  return TINYFED_OK;
}

/* The forward plan of a model, its logits on the caller's stack. */
static void model_plan(const model_header_t *h, int32_t *logits,
                       tinyfed_forward_plan_t *plan) {
  const int16_t *weights = model_weights(h);
  tinyfed_forward_plan_init(
      plan, &h->format, weights,
      weights + (size_t)h->format.feature_count * h->format.class_count, logits);
}

tinyfed_status_t tinyfed_model_classify(const void *model, size_t model_size,
                                        const int8_t *features, uint32_t *label) {
  if (model == NULL || features == NULL || label == NULL) return TINYFED_ERR_ARGUMENT;
  const model_header_t *h = model_header(model, model_size);
  if (h == NULL) return TINYFED_ERR_NO_MODEL;
  int32_t logits[TINYFED_MAX_CLASSES];
  tinyfed_forward_plan_t plan;
  model_plan(h, logits, &plan);
  *label = tinyfed_head_classify(&plan, features);
  return TINYFED_OK;
}

tinyfed_status_t tinyfed_model_evaluate(const void *model, size_t model_size,
                                        const tinyfed_dataset_t *data,
                                        tinyfed_evaluation_t *out) {
  if (model == NULL || data == NULL || data->features == NULL || data->labels == NULL ||
      out == NULL) {
    return TINYFED_ERR_ARGUMENT;
  }
  const model_header_t *h = model_header(model, model_size);
  if (h == NULL) return TINYFED_ERR_NO_MODEL;
  if (tinyfed_dataset_fault(data, h->format.feature_count, h->format.class_count) != NULL) {
    return TINYFED_ERR_DATASET;
  }
  int32_t logits[TINYFED_MAX_CLASSES];
  uint32_t errors[TINYFED_MAX_CLASSES];
  tinyfed_forward_plan_t plan;
  model_plan(h, logits, &plan);
  tinyfed_head_evaluate(&plan, data, errors, out);
  out->model_version = h->version;
  return TINYFED_OK;
}
