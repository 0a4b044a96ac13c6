/* Integer training of the head: forward pass, fixed-point softmax
 * cross-entropy, mini-batch SGD with stochastic rounding into the int16
 * master weights, and the per-row int8 quantization of the delta.
 *
 * Formats (tinyfed_common/fixed_point.h): features int8 with zero point zp
 * and scale s_x = M * 2^(sh - 31); weights and bias int16 with f fraction
 * bits; logits Q16.16; probabilities and errors Q15; learning rate Q16.16. */
#include "sdk_internal.h"

#define TINYFED_LOGIT_LIMIT (1 << 29)
#define TINYFED_LN2_Q30 744261118

void tinyfed_forward_q16(const tinyfed_context_t *ctx, const int16_t *w,
                         const int16_t *b, const int8_t *x, int32_t *logits) {
  const tinyfed_task_info_t *t = &ctx->task;
  const uint32_t features = t->feature_count;
  const int32_t zp = t->feature_zero_point;
  /* acc * M * 2^(sh - 31) * 2^-f is the real logit; Q16 needs a right
   * shift of 15 + f - sh, in [12, 60] for the validated ranges. */
  const uint32_t shift = (uint32_t)(15 + (int32_t)t->weight_frac_bits -
                                    t->feature_scale_shift);
  const int32_t bias_scale = (int32_t)1 << (16u - t->weight_frac_bits);
  uint32_t c, f;
  for (c = 0; c < t->class_count; ++c) {
    const int16_t *row = w + (size_t)c * features;
    int64_t acc = 0;
    if (features <= 255u) {
      /* Each product is below 2^23 in magnitude (int16 times a feature
       * offset of at most 255), so 255 of them fit 32 bits: the cheaper
       * accumulator gives the same sum as the 64-bit one. */
      int32_t acc32 = 0;
      for (f = 0; f + 4u <= features; f += 4u) {
        acc32 += (int32_t)row[f] * ((int32_t)x[f] - zp);
        acc32 += (int32_t)row[f + 1u] * ((int32_t)x[f + 1u] - zp);
        acc32 += (int32_t)row[f + 2u] * ((int32_t)x[f + 2u] - zp);
        acc32 += (int32_t)row[f + 3u] * ((int32_t)x[f + 3u] - zp);
      }
      for (; f < features; ++f) acc32 += (int32_t)row[f] * ((int32_t)x[f] - zp);
      acc = acc32;
    } else {
      for (f = 0; f < features; ++f) acc += (int32_t)row[f] * ((int32_t)x[f] - zp);
    }
    int32_t acc32 = tinyfed_clamp_s32(acc, -INT32_MAX, INT32_MAX);
    int64_t z = tinyfed_round_shift_s64(
        (int64_t)acc32 * (int64_t)t->feature_scale_multiplier, shift);
    z = tinyfed_clamp_s32(z, -TINYFED_LOGIT_LIMIT, TINYFED_LOGIT_LIMIT);
    z += (int64_t)b[c] * bias_scale;
    logits[c] = tinyfed_clamp_s32(z, -TINYFED_LOGIT_LIMIT, TINYFED_LOGIT_LIMIT);
  }
}

tinyfed_status_t tinyfed_step_scale(const tinyfed_task_info_t *task,
                                    uint32_t batch, int for_bias,
                                    uint32_t *mantissa, uint32_t *shift) {
  /* Weights: lr * s_x / B * 2^(f - 15) per unit of error_q15 * (q - zp),
   *   = (L * M / B) * 2^(f + sh - 62).
   * Bias:    lr / B * 2^(f - 15) per unit of error_q15
   *   = (L / B) * 2^(f - 31). */
  tinyfed_scale_t scale;
  uint64_t num = task->learning_rate_q16;
  int32_t exp2 = (int32_t)task->weight_frac_bits - 31;
  if (!for_bias) {
    num *= task->feature_scale_multiplier;
    exp2 = (int32_t)task->weight_frac_bits + task->feature_scale_shift - 62;
  }
  if (num == 0u || batch == 0u ||
      tinyfed_scale_from_ratio(num, batch, exp2, &scale) != 0) {
    return TINYFED_ERR_INVALID_TASK;
  }
  /* The product with a gradient sum (|sum| < 2^29) must stay below 2^62
   * and the shift must be a valid one. */
  if (scale.exponent >= 0 || scale.exponent < -62) {
    return TINYFED_ERR_INVALID_TASK;
  }
  *mantissa = scale.mantissa;
  *shift = (uint32_t)(-scale.exponent);
  return TINYFED_OK;
}

/* Softmax cross-entropy of one sample. On entry logits[] holds the logits
 * (Q16); on exit err_q15[c] = p_c - [c == label] in Q15. Returns the loss
 * -ln p_label in Q16.16. */
static uint32_t softmax_error(int32_t *logits, uint32_t classes,
                              uint32_t label, int32_t *err_q15) {
  uint32_t c;
  int32_t zmax = logits[0];
  for (c = 1; c < classes; ++c) {
    if (logits[c] > zmax) zmax = logits[c];
  }
  /* exp(z - zmax) in Q24: the largest is exactly 2^24, so the sum lies in
   * [2^24, 32 * 2^24]. */
  uint32_t sum = 0u;
  int32_t label_diff = logits[label] - zmax;
  for (c = 0; c < classes; ++c) {
    uint32_t e = tinyfed_exp_neg_q16(logits[c] - zmax);
    logits[c] = (int32_t)e;
    sum += e;
  }
  /* p = e * 2^15 / sum, as (e * 2^7) / (sum / 2^8) so both fit 32 bits;
   * dropping sum's low 8 bits changes p by under 2^-16 relative. */
  uint32_t den = sum >> 8;
  for (c = 0; c < classes; ++c) {
    uint32_t num = (uint32_t)logits[c] << 7;
    int32_t p = (int32_t)((num + (den >> 1)) / den);
    err_q15[c] = (c == label) ? p - TINYFED_Q15_ONE : p;
  }
  /* -ln p_label = ln(sum / 2^24) - (z_label - zmax). */
  int64_t log2_sum = (int64_t)tinyfed_log2_u32_q16(sum) - 24 * 65536;
  int64_t loss = ((log2_sum * TINYFED_LN2_Q30) >> 30) - label_diff;
  if (loss < 0) loss = 0;
  if (loss > INT32_MAX) loss = INT32_MAX;
  return (uint32_t)loss;
}

/* Applies the SGD step of one batch of `count` samples whose errors are in
 * ctx->batch_err (count x classes) and indices in ctx->batch_idx. */
static void apply_batch(tinyfed_context_t *ctx, const tinyfed_dataset_t *data,
                        uint32_t count, uint32_t w_mant, uint32_t w_shift,
                        uint32_t b_mant, uint32_t b_shift,
                        tinyfed_prng_t *rounding) {
  const uint32_t classes = ctx->task.class_count;
  const uint32_t features = ctx->task.feature_count;
  const int32_t zp = ctx->task.feature_zero_point;
  const int8_t *rows[TINYFED_MAX_BATCH];
  int32_t err[TINYFED_MAX_BATCH];
  uint32_t c, f, j;
  for (j = 0; j < count; ++j) {
    rows[j] = data->features + (size_t)ctx->batch_idx[j] * features;
  }
  for (c = 0; c < classes; ++c) {
    int16_t *row = ctx->local_w + (size_t)c * features;
    /* sum_j err_j * (x_jf - zp) = sum_j err_j * x_jf - zp * sum_j err_j,
     * exactly: |err| <= 2^15, |x| <= 128, count <= 64 keep every term and
     * the difference below 2^29. */
    int32_t bias_sum = 0;
    for (j = 0; j < count; ++j) {
      err[j] = ctx->batch_err[j * classes + c];
      bias_sum += err[j];
    }
    const int32_t zp_term = zp * bias_sum;
    for (f = 0; f < features; ++f) {
      int32_t sum = 0;
      for (j = 0; j < count; ++j) sum += err[j] * (int32_t)rows[j][f];
      sum -= zp_term;
      int64_t step = tinyfed_stochastic_shift_s64(
          (int64_t)sum * w_mant, w_shift, tinyfed_prng_next_u32(rounding));
      row[f] = tinyfed_saturate_s16((int64_t)row[f] - step);
    }
    int64_t step = tinyfed_stochastic_shift_s64(
        (int64_t)bias_sum * b_mant, b_shift, tinyfed_prng_next_u32(rounding));
    ctx->local_b[c] = tinyfed_saturate_s16((int64_t)ctx->local_b[c] - step);
  }
}

/* Quantizes local - global of every class row (weights and bias together)
 * into ctx->delta_w, ctx->delta_b and ctx->row_scales. */
static void quantize_delta(tinyfed_context_t *ctx, tinyfed_prng_t *rounding) {
  const uint32_t classes = ctx->task.class_count;
  const uint32_t features = ctx->task.feature_count;
  uint32_t c, f;
  for (c = 0; c < classes; ++c) {
    const size_t base = (size_t)c * features;
    int32_t bias_delta = (int32_t)ctx->local_b[c] - ctx->global_b[c];
    uint32_t max_abs = (uint32_t)(bias_delta < 0 ? -bias_delta : bias_delta);
    for (f = 0; f < features; ++f) {
      int32_t d = (int32_t)ctx->local_w[base + f] - ctx->global_w[base + f];
      uint32_t a = (uint32_t)(d < 0 ? -d : d);
      if (a > max_abs) max_abs = a;
    }
    uint32_t scale = tinyfed_row_scale_s8(max_abs);
    ctx->row_scales[c] = scale;
    for (f = 0; f < features; ++f) {
      int32_t d = (int32_t)ctx->local_w[base + f] - ctx->global_w[base + f];
      ctx->delta_w[base + f] = tinyfed_quantize_stochastic_s8(
          d, scale, tinyfed_prng_next_u32(rounding));
    }
    ctx->delta_b[c] = tinyfed_quantize_stochastic_s8(
        bias_delta, scale, tinyfed_prng_next_u32(rounding));
  }
}

tinyfed_status_t tinyfed_train(tinyfed_context_t *ctx,
                               const tinyfed_dataset_t *data) {
  if (ctx == NULL) return TINYFED_ERR_ARGUMENT;
  if (data == NULL || data->features == NULL || data->labels == NULL) {
    return TINYFED_FAIL(ctx, TINYFED_ERR_ARGUMENT, "NULL dataset");
  }
  if (ctx->state < TINYFED_STATE_TASK) {
    return TINYFED_FAIL(ctx, TINYFED_ERR_STATE, "no task loaded");
  }
  const tinyfed_task_info_t *t = &ctx->task;
  const uint32_t classes = t->class_count;
  const uint32_t features = t->feature_count;
  if (data->feature_count != features) {
    return TINYFED_FAIL(ctx, TINYFED_ERR_DATASET,
                        "dataset feature count differs from the task's");
  }
  if (data->count == 0u || data->count > TINYFED_MAX_SAMPLES) {
    return TINYFED_FAIL(ctx, TINYFED_ERR_DATASET,
                        "dataset must hold 1..2^24 samples");
  }
  uint32_t i;
  for (i = 0; i < data->count; ++i) {
    if (data->labels[i] >= classes) {
      return TINYFED_FAIL(ctx, TINYFED_ERR_DATASET, "label out of range");
    }
  }
  /* Step scales for full batches and for the shorter last batch. */
  const uint32_t batch = t->batch_size;
  const uint32_t tail = data->count % batch;
  uint32_t w_mant, w_shift, b_mant, b_shift;
  uint32_t tw_mant = 0u, tw_shift = 0u, tb_mant = 0u, tb_shift = 0u;
  if (tinyfed_step_scale(t, batch, 0, &w_mant, &w_shift) != TINYFED_OK ||
      tinyfed_step_scale(t, batch, 1, &b_mant, &b_shift) != TINYFED_OK ||
      (tail != 0u &&
       (tinyfed_step_scale(t, tail, 0, &tw_mant, &tw_shift) != TINYFED_OK ||
        tinyfed_step_scale(t, tail, 1, &tb_mant, &tb_shift) != TINYFED_OK))) {
    return TINYFED_FAIL(ctx, TINYFED_ERR_INVALID_TASK,
                        "learning rate out of the master format's range");
  }

  /* Restart from the global head so the result depends only on the inputs. */
  for (i = 0; i < features * classes; ++i) ctx->local_w[i] = ctx->global_w[i];
  for (i = 0; i < classes; ++i) ctx->local_b[i] = ctx->global_b[i];

  tinyfed_prng_t shuffle, rounding;
  tinyfed_prng_seed(&shuffle, t->seed, ctx->device_hash, TINYFED_STREAM_SHUFFLE);
  tinyfed_prng_seed(&rounding, t->seed, ctx->device_hash,
                    TINYFED_STREAM_ROUNDING);
  uint64_t loss_sum = 0u;
  uint32_t epoch;
  for (epoch = 0; epoch < t->epochs; ++epoch) {
    const int last_epoch = (epoch + 1u == t->epochs);
    tinyfed_permutation_t perm;
    tinyfed_permutation_init(&perm, data->count, &shuffle);
    uint32_t start;
    for (start = 0; start < data->count; start += batch) {
      uint32_t count = data->count - start;
      if (count > batch) count = batch;
      uint32_t j;
      for (j = 0; j < count; ++j) {
        uint32_t idx = tinyfed_permutation_next(&perm);
        ctx->batch_idx[j] = idx;
        tinyfed_forward_q16(ctx, ctx->local_w, ctx->local_b,
                            data->features + (size_t)idx * features,
                            ctx->logits);
        uint32_t loss = softmax_error(ctx->logits, classes, data->labels[idx],
                                      ctx->batch_err + (size_t)j * classes);
        if (last_epoch) loss_sum += loss;
      }
      if (count == batch) {
        apply_batch(ctx, data, count, w_mant, w_shift, b_mant, b_shift,
                    &rounding);
      } else {
        apply_batch(ctx, data, count, tw_mant, tw_shift, tb_mant, tb_shift,
                    &rounding);
      }
    }
  }
  quantize_delta(ctx, &rounding);
  ctx->trained_samples = data->count;
  ctx->loss_q16 = (uint32_t)tinyfed_udiv64(loss_sum, data->count, NULL);
  ctx->state = TINYFED_STATE_TRAINED;
  return TINYFED_OK;
}

tinyfed_status_t tinyfed_classify(const tinyfed_context_t *ctx,
                                  const int8_t *features, uint32_t *label) {
  if (ctx == NULL || features == NULL || label == NULL) {
    return TINYFED_ERR_ARGUMENT;
  }
  if (ctx->state < TINYFED_STATE_TASK) return TINYFED_ERR_STATE;
  /* logits is scratch owned by the context; classification does not change
   * anything a caller can observe, hence the const in the signature. */
  int32_t *logits = ctx->logits;
  tinyfed_forward_q16(ctx, ctx->local_w, ctx->local_b, features, logits);
  uint32_t best = 0u, c;
  for (c = 1; c < ctx->task.class_count; ++c) {
    if (logits[c] > logits[best]) best = c;
  }
  *label = best;
  return TINYFED_OK;
}
