/* Integer training of the head: forward pass, fixed-point softmax
 * cross-entropy, mini-batch SGD with stochastic rounding into the int16
 * master weights, and the per-row int8 quantization of the delta.
 *
 * Formats (tinyfed_common/fixed_point.h): features int8 with zero point zp
 * and scale s_x = M * 2^(sh - 31); weights and bias int16 with f fraction
 * bits; logits Q16.16; probabilities and errors Q15; learning rate Q16.16.
 *
 * The hot loops multiply int16 pairs packed into 32-bit words, the operand
 * layout of the Cortex-M4's dual 16-bit multiply-accumulate (SMLAD). Each
 * kernel has a portable C variant and, where the ARM DSP extension is
 * available, a variant in inline assembly next to it: GCC neither merges
 * the kernels' loads into LDM nor keeps their state in registers, and the
 * assembly takes half the instructions. Both variants compute exactly the
 * same integers, so an update is bit-identical on the host and the device
 * (tests/tools/cortex_m4_bitexact.sh). */
#include <stddef.h>
#include <string.h>

#include "sdk_internal.h"

/* The DSP kernels are Thumb-2 (Cortex-M4, M7, M33 and the like), read
 * packed pairs straight from memory, low half first (little-endian only),
 * and load dataset rows and odd-length weight rows with unaligned LDRs (a
 * firmware that traps those builds with -mno-unaligned-access, which
 * leaves it the portable kernels). */
#if defined(__ARM_FEATURE_DSP) && defined(__thumb2__) && \
    defined(__ARM_FEATURE_UNALIGNED) && !defined(__ARM_BIG_ENDIAN)
#include <arm_acle.h>
#define TINYFED_USE_DSP 1
#else
#define TINYFED_USE_DSP 0
#endif

/* The assembly kernels stay out of line: they take up to 13 registers,
 * which would otherwise push their callers' loop state onto the stack. */
#if defined(__GNUC__) || defined(__clang__)
#define TINYFED_NOINLINE __attribute__((noinline))
#else
#define TINYFED_NOINLINE
#endif

#define TINYFED_LOGIT_LIMIT (1 << 29)
#define TINYFED_LN2_Q20 726817 /* ln(2) * 2^20 */

/* Features packed per pass of the forward kernel (128 bytes of stack). */
#define TINYFED_FEATURE_CHUNK 64u

/* ---- packed int16 pairs -------------------------------------------------- */

/* A word holding int16 `lo` in bits 0..15 and int16 `hi` in bits 16..31. */
static uint32_t pack_s16x2(int32_t lo, int32_t hi) {
  return ((uint32_t)lo & 0xFFFFu) | ((uint32_t)hi << 16);
}

#if !TINYFED_USE_DSP
static int32_t low_s16(uint32_t pair) {
  return (int32_t)(pair & 0xFFFFu) - (int32_t)((pair & 0x8000u) << 1);
}

static int32_t high_s16(uint32_t pair) { return low_s16(pair >> 16); }
#endif

/* acc + lo(a) * lo(b) + hi(a) * hi(b) (SMLAD). REQUIRES: the exact result
 * and acc + lo(a) * lo(b) fit int32 (SMLAD wraps where C would overflow). */
static int32_t mac_s16x2(uint32_t a, uint32_t b, int32_t acc) {
#if TINYFED_USE_DSP
  return __smlad((int16x2_t)a, (int16x2_t)b, acc);
#else
  return acc + low_s16(a) * low_s16(b) + high_s16(a) * high_s16(b);
#endif
}

/* Clamps to [INT16_MIN, INT16_MAX] (SSAT). */
static int16_t saturate_s16(int32_t x) {
#if TINYFED_USE_DSP
  /* ACLE's __ssat, without the sign conversion -Wsign-conversion flags */
  return (int16_t)__builtin_arm_ssat(x, 16);
#else
  if (x > INT16_MAX) return INT16_MAX;
  if (x < INT16_MIN) return INT16_MIN;
  return (int16_t)x;
#endif
}

/* ---- forward pass -------------------------------------------------------- */

/* xs[0..ceil(n/2)) = the features x[0..n) minus zp as int16 pairs (each in
 * [-255, 255]); an odd last pair has 0 as its high half. */
TINYFED_NOINLINE static void pack_features_s16x2(const int8_t *x, uint32_t n,
                                                 int32_t zp, uint32_t *xs) {
  uint32_t f = 0;
#if TINYFED_USE_DSP
  if (n >= 4u) {
    /* Per four features: SXTAB16 sign-extends bytes 0 and 2 (1 and 3 with
     * ROR #8) and adds -zp to each half; PKHBT/PKHTB restore the order. */
    uint32_t quads = n / 4u;
    f = 4u * quads;
    __asm__(
        "1:\n\t"
        "ldr r4, [%[x]], #4\n\t"
        "sxtab16 r5, %[mzp], r4\n\t"
        "sxtab16 r6, %[mzp], r4, ror #8\n\t"
        "pkhbt r4, r5, r6, lsl #16\n\t"
        "pkhtb r5, r6, r5, asr #16\n\t"
        "stmia %[xs]!, {r4, r5}\n\t"
        "subs %[n], %[n], #1\n\t"
        "bne 1b"
        : [x] "+r"(x), [xs] "+r"(xs), [n] "+r"(quads)
        : [mzp] "r"(pack_s16x2(-zp, -zp)), "m"(*(const int8_t(*)[])x)
        : "r4", "r5", "r6", "cc", "memory");
    x -= f;
    xs -= f / 2u;
  }
#endif
  for (; f < n; f += 2u) {
    int32_t hi = (f + 1u < n) ? (int32_t)x[f + 1u] - zp : 0;
    xs[f / 2u] = pack_s16x2((int32_t)x[f] - zp, hi);
  }
}

/* sum_p (w[2p], w[2p + 1]) . xs[p] over `pairs` pairs; w needs 2-byte
 * alignment. An odd row's last pair reads one int16 past it (the next row
 * or the bias: the arena keeps them adjacent) against a 0 in xs.
 * REQUIRES pairs <= 32: 64 products of an int16 and a feature offset below
 * 2^8 fit int32, so SMLAD's 32-bit accumulator is exact. On the M4 the
 * first 8 * blocks pairs go eight at a time (twice an LDM of four weight
 * pairs, one of four feature pairs and four SMLADs), the rest one at a
 * time; LDM needs w word-aligned, which rows of an odd feature count are
 * not, so callers pass blocks = 0 for those (see dot_blocks). */
TINYFED_NOINLINE static int32_t dot_s16x2(const int16_t *w,
                                          const uint32_t *xs, uint32_t pairs,
                                          uint32_t blocks) {
#if TINYFED_USE_DSP
  int32_t acc = 0;
  uint32_t rest = pairs - 8u * blocks;
  __asm__(
      "cbz %[n], 2f\n\t"
      "1:\n\t"
      "ldmia %[w]!, {r4, r5, r6, r8}\n\t"
      "ldmia %[x]!, {r9, r10, r11, r12}\n\t"
      "smlad %[acc], r4, r9, %[acc]\n\t"
      "smlad %[acc], r5, r10, %[acc]\n\t"
      "smlad %[acc], r6, r11, %[acc]\n\t"
      "smlad %[acc], r8, r12, %[acc]\n\t"
      "ldmia %[w]!, {r4, r5, r6, r8}\n\t"
      "ldmia %[x]!, {r9, r10, r11, r12}\n\t"
      "smlad %[acc], r4, r9, %[acc]\n\t"
      "smlad %[acc], r5, r10, %[acc]\n\t"
      "smlad %[acc], r6, r11, %[acc]\n\t"
      "smlad %[acc], r8, r12, %[acc]\n\t"
      "subs %[n], %[n], #1\n\t"
      "bne 1b\n\t"
      "2:\n\t"
      "cbz %[rest], 4f\n\t"
      "3:\n\t"
      "ldr r4, [%[w]], #4\n\t" /* LDR may be unaligned */
      "ldr r9, [%[x]], #4\n\t"
      "smlad %[acc], r4, r9, %[acc]\n\t"
      "subs %[rest], %[rest], #1\n\t"
      "bne 3b\n\t"
      "4:"
      : [acc] "+l"(acc), [w] "+r"(w), [x] "+r"(xs), [n] "+l"(blocks),
        [rest] "+l"(rest)
      : "m"(*(const uint32_t(*)[])w), "m"(*(const uint32_t(*)[])xs)
      : "r4", "r5", "r6", "r8", "r9", "r10", "r11", "r12", "cc");
  return acc;
#else
  int32_t acc = 0;
  uint32_t p;
  (void)blocks; /* the blocks are a DSP matter */
  for (p = 0; p < pairs; ++p) {
    acc = mac_s16x2(pack_s16x2(w[2u * p], w[2u * p + 1u]), xs[p], acc);
  }
  return acc;
#endif
}

/* Eight-pair blocks dot_s16x2 may take for rows of `features`. */
static uint32_t dot_blocks(uint32_t features) {
  return (features & 1u) ? 0u : features / 16u;
}

/* The feature sum of a head wider than one chunk: each chunk is packed
 * again per class, which keeps the stack at one chunk; the exact sum may
 * need 64 bits (2048 features of up to 2^23) and is clamped to int32. */
TINYFED_NOINLINE static int32_t dot_wide(const int16_t *w, const int8_t *x,
                                         uint32_t features, int32_t zp,
                                         uint32_t *xs) {
  int64_t acc = 0;
  uint32_t f;
  for (f = 0; f < features; f += TINYFED_FEATURE_CHUNK) {
    uint32_t n = features - f;
    if (n > TINYFED_FEATURE_CHUNK) n = TINYFED_FEATURE_CHUNK;
    pack_features_s16x2(x + f, n, zp, xs);
    /* Chunks start word-aligned in rows of an even feature count. */
    acc += dot_s16x2(w + f, xs, (n + 1u) / 2u, (features & 1u) ? 0u : n / 16u);
  }
  return tinyfed_clamp_s32(acc, -INT32_MAX, INT32_MAX);
}

/* Clamps a logit to [-2^29, 2^29 - 1], the range of a 30-bit signed value
 * (one SSAT), so that differences of logits fit int32. */
static int32_t clamp_logit(int32_t z) {
#if TINYFED_USE_DSP
  return (int32_t)__builtin_arm_ssat(z, 30); /* see saturate_s16 */
#else
  if (z > TINYFED_LOGIT_LIMIT - 1) return TINYFED_LOGIT_LIMIT - 1;
  if (z < -TINYFED_LOGIT_LIMIT) return -TINYFED_LOGIT_LIMIT;
  return z;
#endif
}

void tinyfed_forward_plan_init(tinyfed_forward_plan_t *plan,
                               const tinyfed_head_format_t *format,
                               const int16_t *weights, const int16_t *bias,
                               int32_t *logits) {
  /* acc * M * 2^(sh - 31) * 2^-f is the real logit; Q16 needs a right
   * shift of 15 + f - sh, in [12, 60] for the validated ranges, rounded to
   * nearest (ties up). With M >= 2^30, |acc| >= 2^(shift - 1) puts the
   * logit at or beyond +-2^29, where it is clamped anyway: clamping acc
   * there first changes no result and keeps the shifted product within
   * int32. */
  plan->weights = weights;
  plan->bias = bias;
  plan->logits = logits;
  plan->features = format->feature_count;
  plan->classes = format->class_count;
  plan->zero_point = format->feature_zero_point;
  plan->shift = (uint32_t)(15 + (int32_t)format->weight_frac_bits -
                           format->feature_scale_shift);
  plan->half = (int64_t)1 << (plan->shift - 1u);
  plan->multiplier = (int32_t)format->feature_scale_multiplier;
  plan->limit =
      (plan->shift < 32u) ? (int32_t)1 << (plan->shift - 1u) : INT32_MAX;
  plan->bias_scale = (int32_t)1 << (16u - format->weight_frac_bits);
  plan->pairs = (format->feature_count + 1u) / 2u;
  plan->blocks = dot_blocks(format->feature_count);
}

/* The task info's six format fields lie in the head format's order and
 * types, so the plan copies them in one block. */
typedef char tinyfed_task_format_layout[
    (offsetof(tinyfed_task_info_t, class_count) -
             offsetof(tinyfed_task_info_t, feature_count) ==
         offsetof(tinyfed_head_format_t, class_count) &&
     offsetof(tinyfed_task_info_t, weight_frac_bits) -
             offsetof(tinyfed_task_info_t, feature_count) ==
         offsetof(tinyfed_head_format_t, weight_frac_bits) &&
     offsetof(tinyfed_task_info_t, feature_zero_point) -
             offsetof(tinyfed_task_info_t, feature_count) ==
         offsetof(tinyfed_head_format_t, feature_zero_point) &&
     offsetof(tinyfed_task_info_t, feature_scale_multiplier) -
             offsetof(tinyfed_task_info_t, feature_count) ==
         offsetof(tinyfed_head_format_t, feature_scale_multiplier) &&
     offsetof(tinyfed_task_info_t, feature_scale_shift) -
             offsetof(tinyfed_task_info_t, feature_count) ==
         offsetof(tinyfed_head_format_t, feature_scale_shift) &&
     sizeof(tinyfed_head_format_t) == 6u * 4u) ? 1 : -1];

/* The plan of the context's local head (the task's, until training). */
static void task_plan(const tinyfed_context_t *ctx, tinyfed_forward_plan_t *plan) {
  tinyfed_head_format_t format;
  memcpy(&format, &ctx->task.feature_count, sizeof format);
  tinyfed_forward_plan_init(plan, &format, ctx->local_w, ctx->local_b,
                            ctx->logits);
}

/* Logits of one sample in Q16.16 for the plan's head into plan->logits:
 * logits[c] = sum_f w[c][f] * real(x[f]) + b[c], each clamped to
 * [-2^29, 2^29 - 1] (clamp_logit) so that differences fit in int32. */
static void forward(const tinyfed_forward_plan_t *plan, const int8_t *x) {
  const uint32_t features = plan->features;
  const int32_t zp = plan->zero_point;
  const int16_t *w = plan->weights, *b = plan->bias;
  int32_t *const logits = plan->logits;
  const int32_t *end = logits + plan->classes;
  int32_t *z;
  uint32_t xs[TINYFED_FEATURE_CHUNK / 2u];
  /* First the exact feature sums. The usual head fits one chunk: the
   * sample packed once serves every class. */
  if (features <= TINYFED_FEATURE_CHUNK) {
    pack_features_s16x2(x, features, zp, xs);
    for (z = logits; z != end; ++z, w += features) {
      *z = dot_s16x2(w, xs, plan->pairs, plan->blocks);
    }
  } else {
    for (z = logits; z != end; ++z, w += features) {
      *z = dot_wide(w, x, features, zp, xs);
    }
  }
  const int32_t limit = plan->limit, multiplier = plan->multiplier;
  const int32_t bias_scale = plan->bias_scale;
  const int64_t half = plan->half;
  const uint32_t shift = plan->shift;
  for (z = logits; z != end; ++z, ++b) {
    int32_t acc = *z;
    if (acc > limit) acc = limit;
    if (acc < -limit) acc = -limit;
    const int32_t scaled =
        (int32_t)(((int64_t)acc * multiplier + half) >> shift);
    /* |bias| * 2^(16 - f) <= 2^27: the sum fits int32. */
    *z = clamp_logit(clamp_logit(scaled) + (int32_t)*b * bias_scale);
  }
}

/* ---- softmax cross-entropy ----------------------------------------------- */

/* The batch's errors live in ctx->batch_err as int16 pairs of samples:
 * word c * stride + j / 2 holds class c's Q15 errors of samples j & ~1
 * (low half) and j | 1 (high half), stride = ceil(batch_size / 2). So one
 * word is one SMLAD operand of the gradient sums, and 10 classes of a batch
 * of 8 take 160 bytes instead of 320. */

/* The last epoch's summed loss, sum_i -ln p_label(i) = sum_i (ln(s_i / 2^24)
 * - d_i) with s_i the sample's exponential sum (Q24, in [2^24, 2^29]) and
 * d_i = z_label - z_max <= 0 (Q16). The logarithms are taken once, of the
 * product of the s_i, kept as a 32-bit mantissa and a power of two: one
 * multiply per sample instead of a 16-step log2. Each product truncates
 * by less than 2^-31 relative, so the mean loss is off by less than 2^-31
 * per sample from that alone, plus 2^-15 / count from the final log2. */
typedef struct loss_sum {
  uint32_t mantissa; /* in [2^31, 2^32) */
  int32_t exponent;  /* prod s_i / 2^24 = mantissa * 2^(exponent - 31) */
  int64_t diffs;     /* sum of d_i, Q16 */
} loss_sum_t;

/* The summed loss in Q16.16, negative totals (rounding of a near-zero
 * loss) taken as 0. Every step rounds down: the product's truncations, the
 * log2, ln(2) in Q20 (726817.46 rounded down) and the final shift, so the
 * ln part never exceeds the true ln of the product of the s_i. */
TINYFED_NOINLINE static uint64_t loss_total_q16(const loss_sum_t *loss) {
  /* ln(prod) = (log2(mantissa) + exponent - 31) * ln(2), in Q16: the log2
   * stays below 2^43 (2^24 samples of at most 5 each), so ln(2) in Q20
   * (relative error 2^-22) still fits the product in 64 bits. */
  const int64_t log2_q16 = (int64_t)tinyfed_log2_u32_q16(loss->mantissa) +
                           ((int64_t)loss->exponent - 31) * TINYFED_Q16_ONE;
  const int64_t total = ((log2_q16 * TINYFED_LN2_Q20) >> 20) - loss->diffs;
  return total <= 0 ? 0u : (uint64_t)total;
}

/* The mean loss in Q16.16 of `count` samples. */
static uint32_t mean_loss_q16(const loss_sum_t *loss, uint32_t count) {
  const uint64_t total = loss_total_q16(loss);
  if ((total >> 32) >= count) return UINT32_MAX; /* mean >= 2^32 */
  return tinyfed_udiv64_32(total, count, NULL);
}

/* Softmax cross-entropy of one sample. On entry logits[] holds the logits
 * (Q16); on exit word[c * stride] holds p_c - [c == label] in Q15 in its
 * low half (high half 0) or, if `odd`, in its high half (low half kept).
 * Adds the sample's loss to *loss unless loss is NULL (the loss is only
 * reported for the last epoch). */
TINYFED_NOINLINE static void softmax_error(int32_t *logits, uint32_t classes,
                                           uint32_t label, uint32_t *word,
                                           uint32_t stride, int odd,
                                           loss_sum_t *loss) {
  const int32_t *end = logits + classes;
  int32_t *z;
  int32_t zmax = logits[0];
  for (z = logits + 1; z != end; ++z) {
    if (*z > zmax) zmax = *z;
  }
  /* exp(z - zmax) in Q24: the largest is exactly 2^24, so the sum lies in
   * [2^24, 32 * 2^24]. */
  const int32_t label_diff = logits[label] - zmax;
  uint32_t sum = 0u;
  for (z = logits; z != end; ++z) {
    uint32_t e = tinyfed_exp_neg_q16(*z - zmax);
    *z = (int32_t)e;
    sum += e;
  }
  /* p = e * 2^15 / sum, as (e * 2^7) / (sum / 2^8) so both fit 32 bits;
   * dropping sum's low 8 bits changes p by under 2^-16 relative. */
  const uint32_t den = sum >> 8;
  const int32_t *label_z = logits + label;
  for (z = logits; z != end; ++z, word += stride) {
    int32_t err = (int32_t)((((uint32_t)*z << 7) + (den >> 1)) / den);
    if (z == label_z) {
      err -= TINYFED_Q15_ONE;
    } else if (err > INT16_MAX) {
      /* An error must fit int16. Only a wrong class whose probability
       * rounds to 1.0 (p = 32768) does not; it is clamped to 32767, a
       * change of one Q15 step (2^-15) in a sample the head gets entirely
       * wrong. */
      err = INT16_MAX;
    }
    *word = odd ? (*word & 0xFFFFu) | ((uint32_t)err << 16)
                : (uint32_t)err & 0xFFFFu;
  }
  if (loss != NULL) {
    const uint64_t product = (uint64_t)loss->mantissa * sum; /* < 2^61 */
    const uint32_t high = (uint32_t)(product >> 32);         /* >= 2^23 */
    const uint32_t lz = tinyfed_leading_zeros_u32(high);     /* in [3, 8] */
    loss->mantissa = (high << lz) | ((uint32_t)product >> (32u - lz));
    loss->exponent += (int32_t)(32u - lz) - 24;
    loss->diffs += label_diff;
  }
}

/* ---- SGD step ------------------------------------------------------------ */

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
  uint32_t mant = scale.mantissa;
  int32_t exponent = scale.exponent;
  if (exponent > -32) {
    /* A shift of at least 32 lets the step take the high word of a 64-bit
     * product (see stochastic_step). Shorter shifts, a step of half a
     * master step or more per unit of the gradient sum, only come from the
     * extremes of the validated ranges (at most 11 bits short: lr 16,
     * feature scale 2^7, f = 14); they give up the mantissa's low bits
     * instead, rounded to nearest, and keep at least 19 of them. */
    const uint32_t drop = (uint32_t)(32 + exponent);
    mant = (mant + (1u << (drop - 1u))) >> drop;
    exponent = -32;
    if (mant < (1u << 16)) return TINYFED_ERR_INVALID_TASK;
  }
  *mantissa = mant;
  *shift = (uint32_t)(-exponent);
  return TINYFED_OK;
}

/* One batch's SGD step, in the form the kernels below take it: the
 * multiplier from tinyfed_step_scale (mantissa and shift, as mantissa /
 * 2^(32 + post_shift)), the dither stream, the batch's samples and errors,
 * and the current feature quad transposed into sample pairs. The DSP
 * kernel loads the first five fields with one LDM, in this order. */
typedef struct sgd_quad {
  int32_t mantissa;           /* < 2^31 */
  uint32_t dither;            /* 2^post_shift: scales 32 random bits */
  uint32_t post_shift;        /* shift - 32, in [0, 30] */
  uint32_t dither_state;      /* the tinyfed_dither_t stream */
  uint32_t dither_multiplier; /* TINYFED_DITHER_MULTIPLIER */
  uint32_t *xt;               /* see pack_batch_quad */
  uint32_t blocks;            /* ceil(pairs / 2): DSP loop iterations */
  uint32_t pairs;             /* sample pairs, ceil(count / 2) */
  int32_t zeros[4];           /* the DSP kernel's initial sums, one LDM */
  const uint32_t *idx;        /* the batch's sample indices */
  uint32_t count;             /* samples in the batch */
  uint32_t features;          /* per sample, and weights per class row */
  int32_t zp;                 /* the features' zero point */
  const uint32_t *err;        /* class 0's error pairs (see softmax_error) */
  const uint32_t *err_end;    /* past the last class's */
  uint32_t stride;            /* words from one class's error pairs to the
                                 next */
} sgd_quad_t;

/* floor((sum * mantissa + random * 2^post_shift) / 2^(32 + post_shift)):
 * sum * mantissa / 2^shift rounded stochastically with 32 random bits, so
 * the expectation over `random` is exact to within 2^-32 (the same value as
 * tinyfed_stochastic_shift_s64 with that shift). UMULL, SMLAL and an ASR of
 * the high word on the M4. REQUIRES |sum| < 2^30; the result's magnitude
 * is then below 2^29. */
static int32_t stochastic_step(int32_t sum, const sgd_quad_t *q,
                               uint32_t random) {
  int64_t x = (int64_t)((uint64_t)random * q->dither) +
              (int64_t)sum * (int64_t)q->mantissa;
  return (int32_t)(x >> 32) >> q->post_shift;
}

/* Transposes features f..f+n-1 (n <= 4) of the batch's `count` samples,
 * minus the zero point, into sample pairs: xt[4 * p + i] =
 * (x[2p][f + i] - zp, x[2p + 1][f + i] - zp) as int16, for
 * p < ceil(count / 2). A missing feature gives 0; an odd last sample pairs
 * with itself (the error of its missing partner is 0). base points at
 * feature f of sample 0 of the dataset, rows `features` apart. */
TINYFED_NOINLINE static void pack_batch_quad(const sgd_quad_t *q,
                                             const int8_t *base, uint32_t n) {
  uint32_t *xt = q->xt;
  const uint32_t *idx = q->idx;
  const uint32_t count = q->count, features = q->features;
  const int32_t zp = q->zp;
  uint32_t j = 0, i;
#if TINYFED_USE_DSP
  if (n == 4u && count >= 2u) {
    /* Per sample pair: its two rows' four bytes at f, split by SXTAB16
     * into halfword pairs of features (0, 2) and (1, 3) (ROR #8 for the
     * odd ones) minus zp, then paired across the samples by PKHBT/PKHTB. */
    uint32_t pairs = count / 2u;
    j = 2u * pairs;
    __asm__(
        "1:\n\t"
        "ldmia %[idx]!, {r4, r5}\n\t"
        "mla r4, r4, %[features], %[base]\n\t"
        "mla r5, r5, %[features], %[base]\n\t"
        "ldr r4, [r4]\n\t"
        "ldr r5, [r5]\n\t"
        "sxtab16 r6, %[mzp], r4\n\t"
        "sxtab16 r8, %[mzp], r4, ror #8\n\t"
        "sxtab16 r9, %[mzp], r5\n\t"
        "sxtab16 r10, %[mzp], r5, ror #8\n\t"
        "pkhbt r4, r6, r9, lsl #16\n\t"
        "pkhbt r5, r8, r10, lsl #16\n\t"
        "pkhtb r6, r9, r6, asr #16\n\t"
        "pkhtb r8, r10, r8, asr #16\n\t"
        "stmia %[xt]!, {r4, r5, r6, r8}\n\t"
        "subs %[n], %[n], #1\n\t"
        "bne 1b"
        : [idx] "+r"(idx), [xt] "+r"(xt), [n] "+r"(pairs)
        : [features] "r"(features), [base] "r"(base),
          [mzp] "r"(pack_s16x2(-zp, -zp)),
          "m"(*(const int8_t(*)[])base)
        : "r4", "r5", "r6", "r8", "r9", "r10", "cc", "memory");
    idx -= j;
  }
#endif
  for (; j < count; j += 2u, xt += 4) {
    const uint32_t partner = (j + 1u < count) ? j + 1u : j;
    const int8_t *a = base + (size_t)idx[j] * features;
    const int8_t *b = base + (size_t)idx[partner] * features;
    for (i = 0; i < 4u; ++i) {
      xt[i] = (i < n) ? pack_s16x2(a[i] - zp, b[i] - zp) : 0u;
    }
  }
}

/* One class's SGD step on one feature quad, the kernel of training: the
 * gradient sums s_i = sum_p err_pairs[p] . xt[4p + i] = sum_j err_j *
 * (x_j - zp) over the batch, then w[i] -= stochastic_step(s_i), saturated
 * to int16, with one draw of the dither stream per weight: four per quad,
 * even when a quad at the end of a row holds n < 4 weights. |err| <= 2^15,
 * |x - zp| <= 255 and count <= 64 keep every partial sum below 2^29, so 32
 * bits are exact. */
#if TINYFED_USE_DSP
/* The M4 variant, for n = 4, as one block of assembly: compiled C spills
 * the sums and the stream around the MAC loop. Two sample pairs per
 * iteration (one LDM of their error pairs, two LDMs of quads, eight
 * SMLADs); then per weight one MLA for the dither stream, UMULL/SMLAL/ASR
 * for the step and SUB/SSAT for the saturated update. q->blocks iterations
 * read one error pair past an odd count, against the zero quad apply_batch
 * puts after the transposed pairs. */
#define TINYFED_SGD_ROUND(sum)     \
  "mla r10, r10, r11, r11\n\t"     \
  "umull r12, lr, r10, r8\n\t"     \
  "smlal r12, lr, " sum ", r2\n\t" \
  "asr lr, lr, r9\n\t"             \
  "ldrsh r12, [r0]\n\t"            \
  "sub r12, r12, lr\n\t"           \
  "ssat r12, #16, r12\n\t"         \
  "strh r12, [r0], #2\n\t"

TINYFED_NOINLINE static void sgd_quad_dsp(int16_t *w,
                                          const uint32_t *err_pairs,
                                          sgd_quad_t *q) {
  register int16_t *r0 __asm__("r0") = w;
  register const uint32_t *r1 __asm__("r1") = err_pairs;
  register sgd_quad_t *r2 __asm__("r2") = q;
  __asm__ volatile(
      "push {r0, r2}\n\t" /* the MAC loop needs every other register */
      "add r3, r2, %[zeros]\n\t"
      "ldmia r3, {r3, r4, r5, r6}\n\t" /* sums: r3, r4, r5, r6 */
      "ldrd r2, r12, [r2, %[xt]]\n\t"
      "1:\n\t"
      "ldmia r1!, {r8, r9}\n\t"
      "ldmia r2!, {r0, r10, r11, lr}\n\t"
      "smlad r3, r8, r0, r3\n\t"
      "smlad r4, r8, r10, r4\n\t"
      "smlad r5, r8, r11, r5\n\t"
      "smlad r6, r8, lr, r6\n\t"
      "ldmia r2!, {r0, r10, r11, lr}\n\t"
      "smlad r3, r9, r0, r3\n\t"
      "smlad r4, r9, r10, r4\n\t"
      "smlad r5, r9, r11, r5\n\t"
      "smlad r6, r9, lr, r6\n\t"
      "subs r12, r12, #1\n\t"
      "bne 1b\n\t"
      "pop {r0, r1}\n\t" /* w, q */
      "ldmia r1, {r2, r8, r9, r10, r11}\n\t"
      TINYFED_SGD_ROUND("r3")
      TINYFED_SGD_ROUND("r4")
      TINYFED_SGD_ROUND("r5")
      TINYFED_SGD_ROUND("r6")
      "str r10, [r1, %[state]]"
      : "+r"(r0), "+r"(r1), "+r"(r2)
      : [xt] "i"(offsetof(sgd_quad_t, xt)),
        [zeros] "i"(offsetof(sgd_quad_t, zeros)),
        [state] "i"(offsetof(sgd_quad_t, dither_state))
      : "r3", "r4", "r5", "r6", "r8", "r9", "r10", "r11", "r12", "lr", "cc",
        "memory");
}
#undef TINYFED_SGD_ROUND
#else
/* The portable variant. */
static void sgd_quad_portable(int16_t *w, uint32_t n,
                              const uint32_t *err_pairs, sgd_quad_t *q) {
  int32_t sums[4] = {0, 0, 0, 0};
  tinyfed_dither_t dither;
  uint32_t p, i;
  for (p = 0; p < q->pairs; ++p) {
    for (i = 0; i < 4u; ++i) {
      sums[i] = mac_s16x2(err_pairs[p], q->xt[4u * p + i], sums[i]);
    }
  }
  dither.state = q->dither_state;
  for (i = 0; i < 4u; ++i) {
    const int32_t step =
        stochastic_step(sums[i], q, tinyfed_dither_next_u32(&dither));
    if (i < n) w[i] = saturate_s16((int32_t)w[i] - step);
  }
  q->dither_state = dither.state;
}
#endif

/* The SGD step of one feature quad (n <= 4 weights) for every class: w and
 * err point at class 0's weights of the quad and error pairs. */
TINYFED_NOINLINE static void sgd_quad_classes(int16_t *w, uint32_t n,
                                              sgd_quad_t *q) {
  const uint32_t features = q->features, stride = q->stride;
  const uint32_t *err = q->err, *end = q->err_end;
#if TINYFED_USE_DSP
  if (n == 4u) {
    for (; err != end; w += features, err += stride) sgd_quad_dsp(w, err, q);
    return;
  }
  /* A row's last, shorter quad: the kernel updates a copy. */
  for (; err != end; w += features, err += stride) {
    int16_t quad[4] = {0, 0, 0, 0};
    memcpy(quad, w, 2u * n);
    sgd_quad_dsp(quad, err, q);
    memcpy(w, quad, 2u * n);
  }
#else
  for (; err != end; w += features, err += stride) {
    sgd_quad_portable(w, n, err, q);
  }
#endif
}

/* Applies the SGD step of one batch of `count` samples whose errors are in
 * ctx->batch_err (pairs, see softmax_error) and indices in ctx->batch_idx,
 * with the step scales for that count. Features go four at a time: the
 * quad's values of the whole batch are transposed once into sample pairs
 * (528 bytes of stack at most) and serve every class. Draws of the dither
 * stream go in that order too: per quad, per class, four per quad; then
 * one per class for the bias. */
TINYFED_NOINLINE static void apply_batch(tinyfed_context_t *ctx,
                                         const tinyfed_dataset_t *data,
                                         uint32_t count,
                                         const uint32_t *w_scale,
                                         const uint32_t *b_scale,
                                         tinyfed_dither_t *dither) {
  const uint32_t classes = ctx->task.class_count;
  const uint32_t features = ctx->task.feature_count;
  const uint32_t stride = (ctx->task.batch_size + 1u) / 2u;
  const uint32_t *err = (const uint32_t *)ctx->batch_err;
  int32_t *bias_sum = ctx->logits; /* free until the next forward pass */
  uint32_t xt[(TINYFED_MAX_BATCH / 2u + 1u) * 4u];
  sgd_quad_t q;
  uint32_t c, f, p;
  /* The zero quad after an odd number of sample pairs (see sgd_quad_dsp);
   * the pairs before it change per quad, it does not. */
  uint32_t *pad = xt + 4u * ((count + 1u) / 2u);
  pad[0] = pad[1] = pad[2] = pad[3] = 0u;
  q.mantissa = (int32_t)w_scale[0];
  q.post_shift = w_scale[1] - 32u;
  q.dither = 1u << q.post_shift;
  q.dither_state = dither->state;
  q.dither_multiplier = TINYFED_DITHER_MULTIPLIER;
  q.xt = xt;
  q.pairs = (count + 1u) / 2u;
  q.blocks = (q.pairs + 1u) / 2u;
  for (p = 0; p < 4u; ++p) q.zeros[p] = 0;
  q.idx = ctx->batch_idx;
  q.count = count;
  q.features = features;
  q.zp = ctx->task.feature_zero_point;
  q.err = err;
  q.err_end = err + classes * stride;
  q.stride = stride;
  for (c = 0; c < classes; ++c) {
    int32_t s = 0;
    for (p = 0; p < q.pairs; ++p) {
      s = mac_s16x2(err[c * stride + p], 0x00010001u, s);
    }
    bias_sum[c] = s;
  }
  for (f = 0; f < features; f += 4u) {
    const uint32_t n = (features - f < 4u) ? features - f : 4u;
    pack_batch_quad(&q, data->features + f, n);
    sgd_quad_classes(ctx->local_w + f, n, &q);
  }
  /* The bias: its gradient sum is the error sum itself. */
  q.mantissa = (int32_t)b_scale[0];
  q.post_shift = b_scale[1] - 32u;
  q.dither = 1u << q.post_shift;
  dither->state = q.dither_state;
  for (c = 0; c < classes; ++c) {
    ctx->local_b[c] = saturate_s16(
        (int32_t)ctx->local_b[c] -
        stochastic_step(bias_sum[c], &q, tinyfed_dither_next_u32(dither)));
  }
}

/* ---- delta quantization -------------------------------------------------- */

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

/* ---- training ------------------------------------------------------------ */

const char *tinyfed_dataset_fault(const tinyfed_dataset_t *data,
                                  uint32_t features, uint32_t classes) {
  if (data->feature_count != features) return "dataset/model feature count differ";
  if (data->count == 0u || data->count > TINYFED_MAX_SAMPLES) {
    return "dataset must hold 1..2^24 samples";
  }
  uint32_t i;
  for (i = 0; i < data->count; ++i) {
    if (data->labels[i] >= classes) return "label out of range";
  }
  return NULL;
}

tinyfed_status_t tinyfed_train(tinyfed_context_t *ctx,
                               const tinyfed_dataset_t *data) {
  if (ctx == NULL) return TINYFED_ERR_ARGUMENT;
  if (data == NULL || data->features == NULL || data->labels == NULL) {
    return TINYFED_FAIL(ctx, TINYFED_ERR_ARGUMENT, "NULL dataset");
  }
  if (ctx->state < TINYFED_STATE_TASK || ctx->task.evaluate_only) {
    return TINYFED_FAIL(ctx, TINYFED_ERR_STATE, "no task to train");
  }
  const tinyfed_task_info_t *t = &ctx->task;
  const uint32_t classes = t->class_count;
  const uint32_t features = t->feature_count;
  /* check_dataset's checks, written out: calling it here costs the
   * training loops registers (4 more instructions per sample on the M4). */
  if (data->feature_count != features) {
    return TINYFED_FAIL(ctx, TINYFED_ERR_DATASET,
                        "dataset/task feature count differ");
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
  /* Step scales (mantissa, shift): [0] weights and [1] bias of a full
   * batch, [2] and [3] of the shorter last batch if there is one. They
   * cannot fail: the task's decoder checked batches of 1 and batch_size,
   * and every size between gives a step in between. */
  const uint32_t batch = t->batch_size;
  const uint32_t sizes[2] = {batch, data->count % batch};
  uint32_t scale[4][2];
  for (i = 0; i < 4u; ++i) {
    (void)tinyfed_step_scale(t, sizes[i >> 1], (int)(i & 1u), &scale[i][0],
                             &scale[i][1]);
  }
  /* Restart from the global head so the result depends only on the inputs. */
  memcpy(ctx->local_w, ctx->global_w, 2u * (size_t)features * classes);
  memcpy(ctx->local_b, ctx->global_b, 2u * (size_t)classes);

  tinyfed_prng_t shuffle, rounding;
  tinyfed_dither_t dither;
  tinyfed_prng_seed(&shuffle, t->seed, ctx->device_hash, TINYFED_STREAM_SHUFFLE);
  tinyfed_dither_seed(&dither, t->seed, ctx->device_hash);
  tinyfed_prng_seed(&rounding, t->seed, ctx->device_hash,
                    TINYFED_STREAM_ROUNDING);
  const uint32_t stride = (batch + 1u) / 2u;
  tinyfed_forward_plan_t plan;
  task_plan(ctx, &plan);
  loss_sum_t loss = {0x80000000u, 0, 0}; /* the empty product, 1.0 */
  uint32_t epoch;
  for (epoch = 0; epoch < t->epochs; ++epoch) {
    loss_sum_t *epoch_loss = (epoch + 1u == t->epochs) ? &loss : NULL;
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
        forward(&plan, data->features + (size_t)idx * features);
        softmax_error(ctx->logits, classes, data->labels[idx],
                      (uint32_t *)ctx->batch_err + j / 2u, stride,
                      (int)(j & 1u), epoch_loss);
      }
      i = (count == batch) ? 0u : 2u;
      apply_batch(ctx, data, count, scale[i], scale[i + 1u], &dither);
    }
  }
  quantize_delta(ctx, &rounding);
  ctx->trained_samples = data->count;
  ctx->loss_q16 = mean_loss_q16(&loss, data->count);
  ctx->state = TINYFED_STATE_TRAINED;
  return TINYFED_OK;
}

/* ---- prediction and evaluation ------------------------------------------- */

/* The predicted class of logits[0..classes): the largest, a tie going to
 * the lowest index. tinyfed_classify and tinyfed_evaluate both decide by
 * it, so an evaluation counts as correct exactly what classify returns. */
TINYFED_NOINLINE static uint32_t predicted_class(const int32_t *logits,
                                                 uint32_t classes) {
  uint32_t best = 0u, c;
  for (c = 1; c < classes; ++c) {
    if (logits[c] > logits[best]) best = c;
  }
  return best;
}

uint32_t tinyfed_head_classify(const tinyfed_forward_plan_t *plan,
                               const int8_t *x) {
  forward(plan, x);
  return predicted_class(plan->logits, plan->classes);
}

tinyfed_status_t tinyfed_classify(const tinyfed_context_t *ctx,
                                  const int8_t *features, uint32_t *label) {
  if (ctx == NULL || features == NULL || label == NULL) {
    return TINYFED_ERR_ARGUMENT;
  }
  if (ctx->state < TINYFED_STATE_TASK) return TINYFED_ERR_STATE;
  /* logits is scratch owned by the context; classification does not change
   * anything a caller can observe, hence the const in the signature. */
  tinyfed_forward_plan_t plan;
  task_plan(ctx, &plan);
  *label = tinyfed_head_classify(&plan, features);
  return TINYFED_OK;
}

/* The floor of an evaluated sample's z_label - z_max: -28.5 in Q16.16. A
 * term is ln(s / 2^24) - d, with s <= 32 x (2^24 + 2) (at most 32
 * classes, each exp at most 2^24 plus its 2 Q24 steps of error) and every
 * rounding of the sum downward (loss_total_q16), so it stays below
 * ln(32) + 28.5 = 31.97 < 32 nats with 2,200 Q16 steps to spare. */
#define TINYFED_EVALUATION_DIFF_MIN_Q16 (-(57 << 15))

void tinyfed_head_evaluate(const tinyfed_forward_plan_t *plan,
                           const tinyfed_dataset_t *data, uint32_t *errors,
                           tinyfed_evaluation_t *out) {
  const uint32_t classes = plan->classes;
  const uint32_t features = plan->features;
  int32_t *const logits = plan->logits;
  loss_sum_t loss = {0x80000000u, 0, 0}; /* the empty product, 1.0 */
  uint32_t correct = 0u, i;
  for (i = 0; i < data->count; ++i) {
    const uint32_t label = data->labels[i];
    forward(plan, data->features + (size_t)i * features);
    const uint32_t best = predicted_class(logits, classes);
    correct += (best == label) ? 1u : 0u;
    /* Raising the label's logit to the floor leaves s as it was: exp of
     * anything below -17 is 0 in Q24 either way. */
    const int32_t floor = logits[best] + TINYFED_EVALUATION_DIFF_MIN_Q16;
    if (logits[label] < floor) logits[label] = floor;
    /* The training loss's own code; its errors are not needed. */
    softmax_error(logits, classes, label, errors, 1u, 0, &loss);
  }
  out->samples = data->count;
  out->correct = correct;
  out->loss_sum_q16 = loss_total_q16(&loss);
}

tinyfed_status_t tinyfed_evaluate(tinyfed_context_t *ctx,
                                  const tinyfed_dataset_t *data,
                                  tinyfed_evaluation_t *out) {
  if (ctx == NULL) return TINYFED_ERR_ARGUMENT;
  if (data == NULL || data->features == NULL || data->labels == NULL ||
      out == NULL) {
    return TINYFED_FAIL(ctx, TINYFED_ERR_ARGUMENT, "NULL dataset");
  }
  if (ctx->state != TINYFED_STATE_TASK) {
    /* After training the local head is no longer the task's model. */
    return TINYFED_FAIL(ctx, TINYFED_ERR_STATE, "no untrained task");
  }
  const char *fault = tinyfed_dataset_fault(data, ctx->task.feature_count,
                                            ctx->task.class_count);
  if (fault != NULL) return TINYFED_FAIL(ctx, TINYFED_ERR_DATASET, fault);
  tinyfed_forward_plan_t plan;
  task_plan(ctx, &plan);
  /* batch_err is scratch until the next training. */
  tinyfed_head_evaluate(&plan, data, (uint32_t *)ctx->batch_err,
                        &ctx->evaluation);
  ctx->evaluation.model_version = ctx->task.model_version;
  *out = ctx->evaluation;
  return TINYFED_OK;
}
