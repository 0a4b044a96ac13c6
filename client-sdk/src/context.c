/* Context set-up, arena layout, views and error names. */
#include <string.h>

#include "sdk_internal.h"

size_t tinyfed_arena_size(uint32_t max_features, uint32_t max_classes,
                          uint32_t max_batch) {
  if (max_features == 0u || max_classes < 2u ||
      max_classes > TINYFED_MAX_CLASSES || max_batch == 0u ||
      max_batch > TINYFED_MAX_BATCH ||
      max_features > TINYFED_MAX_WEIGHTS / max_classes) {
    return 0u;
  }
  return TINYFED_ARENA_SIZE((size_t)max_features, (size_t)max_classes,
                            (size_t)max_batch);
}

/* Returns *cursor and moves it `bytes` on. */
static void *carve(uint8_t **cursor, size_t bytes) {
  void *p = *cursor;
  *cursor += bytes;
  return p;
}

tinyfed_status_t tinyfed_init(tinyfed_context_t *ctx,
                              const tinyfed_config_t *config, void *arena,
                              size_t arena_size) {
  if (ctx == NULL) return TINYFED_ERR_ARGUMENT;
  memset(ctx, 0, sizeof *ctx);
  if (config == NULL || arena == NULL || config->device_id == NULL ||
      config->device_key == NULL) {
    return TINYFED_FAIL(ctx, TINYFED_ERR_ARGUMENT, "NULL config, id, key or arena");
  }
  /* One message for both faults of the id: it costs flash on the device. */
  size_t id_len = 0u;
  int id_ok = 1;
  while (id_len <= TINYFED_DEVICE_ID_MAX_LEN &&
         config->device_id[id_len] != '\0') {
    char ch = config->device_id[id_len];
    if (ch < 0x21 || ch > 0x7E) id_ok = 0;
    ++id_len;
  }
  if (!id_ok || id_len == 0u || id_len > TINYFED_DEVICE_ID_MAX_LEN) {
    return TINYFED_FAIL(ctx, TINYFED_ERR_ARGUMENT,
                        "device id must be 1..32 printable ASCII bytes");
  }
  size_t needed = tinyfed_arena_size(config->max_features, config->max_classes,
                                     config->max_batch);
  if (needed == 0u) {
    return TINYFED_FAIL(ctx, TINYFED_ERR_ARGUMENT,
                        "capacity outside protocol bounds");
  }
  if (arena_size < needed) {
    return TINYFED_FAIL(ctx, TINYFED_ERR_BUFFER_TOO_SMALL,
                        "arena < tinyfed_arena_size()");
  }
  memcpy(ctx->device_id, config->device_id, id_len);
  ctx->device_id[id_len] = '\0';
  ctx->device_id_len = (uint32_t)id_len;
  ctx->device_key = config->device_key;
  ctx->device_hash =
      tinyfed_crc32_update(TINYFED_CRC32_INIT, (const uint8_t *)ctx->device_id,
                           id_len);
  ctx->max_features = config->max_features;
  ctx->max_classes = config->max_classes;
  ctx->max_batch = config->max_batch;

  size_t weights = (size_t)config->max_features * config->max_classes;
  size_t classes = config->max_classes;
  /* Word-align once (the arena size has 8 bytes of slack), then four-byte
   * items first, so the two-byte and one-byte ones that follow need no pad.
   * The local head comes right after them, word-aligned, so training can
   * read its rows (of an even feature count) a word pair at a time, with
   * its bias adjacent (an odd row's last pair reads one int16 past it). */
  uint8_t *cursor = (uint8_t *)(((uintptr_t)arena + 3u) & ~(uintptr_t)3u);
  ctx->batch_err = (int32_t *)carve(&cursor, 4u * config->max_batch * classes);
  ctx->batch_idx = (uint32_t *)carve(&cursor, 4u * config->max_batch);
  ctx->logits = (int32_t *)carve(&cursor, 4u * classes);
  ctx->local_w = (int16_t *)carve(&cursor, 2u * weights);
  ctx->local_b = (int16_t *)carve(&cursor, 2u * classes);
  ctx->global_w = (int16_t *)carve(&cursor, 2u * weights);
  ctx->global_b = (int16_t *)carve(&cursor, 2u * classes);
  ctx->delta_w = (int8_t *)carve(&cursor, weights);
  ctx->delta_b = (int8_t *)carve(&cursor, classes);
  ctx->state = TINYFED_STATE_READY;
  ctx->error_message = "";
  return TINYFED_OK;
}

tinyfed_status_t tinyfed_task_info(const tinyfed_context_t *ctx,
                                   tinyfed_task_info_t *info) {
  if (ctx == NULL || info == NULL) return TINYFED_ERR_ARGUMENT;
  if (ctx->state < TINYFED_STATE_TASK) return TINYFED_ERR_STATE;
  *info = ctx->task;
  return TINYFED_OK;
}

static tinyfed_status_t head_view(const tinyfed_context_t *ctx,
                                  const int16_t *w, const int16_t *b,
                                  tinyfed_head_view_t *view) {
  if (ctx == NULL || view == NULL) return TINYFED_ERR_ARGUMENT;
  if (ctx->state < TINYFED_STATE_TASK) return TINYFED_ERR_STATE;
  view->weights = w;
  view->bias = b;
  view->feature_count = ctx->task.feature_count;
  view->class_count = ctx->task.class_count;
  view->weight_frac_bits = ctx->task.weight_frac_bits;
  return TINYFED_OK;
}

tinyfed_status_t tinyfed_global_head(const tinyfed_context_t *ctx,
                                     tinyfed_head_view_t *view) {
  if (ctx == NULL) return TINYFED_ERR_ARGUMENT;
  return head_view(ctx, ctx->global_w, ctx->global_b, view);
}

tinyfed_status_t tinyfed_local_head(const tinyfed_context_t *ctx,
                                    tinyfed_head_view_t *view) {
  if (ctx == NULL) return TINYFED_ERR_ARGUMENT;
  return head_view(ctx, ctx->local_w, ctx->local_b, view);
}

const char *tinyfed_last_error_message(const tinyfed_context_t *ctx) {
  if (ctx == NULL || ctx->error_message == NULL) return "";
  return ctx->error_message;
}

const char *tinyfed_status_name(tinyfed_status_t status) {
  switch (status) {
    case TINYFED_OK: return "TINYFED_OK";
    case TINYFED_ERR_ARGUMENT: return "TINYFED_ERR_ARGUMENT";
    case TINYFED_ERR_BUFFER_TOO_SMALL: return "TINYFED_ERR_BUFFER_TOO_SMALL";
    case TINYFED_ERR_STATE: return "TINYFED_ERR_STATE";
    case TINYFED_ERR_MALFORMED: return "TINYFED_ERR_MALFORMED";
    case TINYFED_ERR_MESSAGE_TOO_LARGE: return "TINYFED_ERR_MESSAGE_TOO_LARGE";
    case TINYFED_ERR_HEAD_TOO_LARGE: return "TINYFED_ERR_HEAD_TOO_LARGE";
    case TINYFED_ERR_BATCH_TOO_LARGE: return "TINYFED_ERR_BATCH_TOO_LARGE";
    case TINYFED_ERR_SHAPE_MISMATCH: return "TINYFED_ERR_SHAPE_MISMATCH";
    case TINYFED_ERR_CHECKSUM: return "TINYFED_ERR_CHECKSUM";
    case TINYFED_ERR_INVALID_TASK: return "TINYFED_ERR_INVALID_TASK";
    case TINYFED_ERR_UNSUPPORTED: return "TINYFED_ERR_UNSUPPORTED";
    case TINYFED_ERR_DATASET: return "TINYFED_ERR_DATASET";
    case TINYFED_ERR_FEATURE_SPEC: return "TINYFED_ERR_FEATURE_SPEC";
    case TINYFED_ERR_NO_MODEL: return "TINYFED_ERR_NO_MODEL";
  }
  return "TINYFED_ERR_UNKNOWN";
}
