/* tinyfed client SDK: federated fine-tuning of a model's last dense layer on
 * a microcontroller, in integer arithmetic.
 *
 * One device takes part in a round like this:
 *
 *   tinyfed_context_t ctx;                          // static or on a stack
 *   static uint8_t arena[TINYFED_ARENA_SIZE(64, 10, 16)];
 *   static const uint8_t key[TINYFED_DEVICE_KEY_SIZE] = {...};  // provisioned
 *   tinyfed_config_t cfg = {"sensor-17", 64, 10, 16, key};
 *   tinyfed_init(&ctx, &cfg, arena, sizeof arena);
 *   tinyfed_checkin_encode(&ctx, n_samples, buf, sizeof buf, &len);
 *       ... send buf to the server, receive the response into buf ...
 *   tinyfed_checkin_response_decode(&ctx, buf, len, &result);
 *   if (result.kind == TINYFED_CHECKIN_TASK) {
 *     tinyfed_evaluate(&ctx, &dataset, &evaluation);  // optional
 *     tinyfed_train(&ctx, &dataset);
 *     tinyfed_update_encode(&ctx, buf, sizeof buf, &len);
 *       ... send buf as the update ...
 *   } else if (result.kind == TINYFED_CHECKIN_EVALUATE) {
 *     tinyfed_evaluate(&ctx, &dataset, &evaluation);
 *     tinyfed_evaluation_encode(&ctx, buf, sizeof buf, &len);
 *       ... send buf as the update ...
 *   }
 *
 * A device that also serves deployed models checks in with
 * tinyfed_checkin_encode_serving() and may get one back
 * (TINYFED_CHECKIN_MODEL): see tinyfed_model_decode() at the end.
 *
 * Authentication: the device key (32 bytes, derived from the fleet key for
 * this device id: tinyfed_common/device_key.h; `tinyfed-admin keys device`
 * prints it) signs everything the device sends. Check-ins and updates leave
 * the SDK as a SignedRequest (proto/tinyfed/v1/coordinator.proto) holding
 * the device id, the message's exact bytes and their HMAC-SHA256 tag
 * (tinyfed_common/request_auth.h), computed with mbedTLS's SHA-256. Relays
 * (bridge, gateways) must forward those bytes unchanged.
 *
 * Memory: the caller owns everything. The context struct, one arena
 * (sized by TINYFED_ARENA_SIZE or tinyfed_arena_size()) and the device key
 * (not copied, so it can stay in flash) must outlive every call that uses
 * the context; the SDK keeps no other state, never allocates and uses no
 * floating point. Key bytes and intermediate hashes it puts on the stack
 * are wiped before the call returns. A context requires external
 * synchronization; separate contexts are independent.
 *
 * Errors: every fallible call returns a tinyfed_status_t (TINYFED_OK or a
 * negative code) and must be checked. After an error,
 * tinyfed_last_error_message() names the cause unless the build defines
 * TINYFED_NO_ERROR_MESSAGES. A failed task decode leaves the context with no
 * task; other failures leave it as it was.
 *
 * Numbers: features are the backbone's int8 outputs with its affine
 * quantization; weights and bias are int16 in the task's master format;
 * see tinyfed_common/fixed_point.h for every format.
 */
#ifndef TINYFED_TINYFED_H_
#define TINYFED_TINYFED_H_

#include <stddef.h>
#include <stdint.h>

#include "tinyfed_common/device_key.h"   /* TINYFED_DEVICE_KEY_SIZE */
#include "tinyfed_common/request_auth.h" /* TINYFED_TAG_SIZE */
#include "tinyfed/version.h"             /* TINYFED_VERSION_STRING */

#ifdef __cplusplus
extern "C" {
#endif

#if defined(__GNUC__) || defined(__clang__)
#define TINYFED_NODISCARD __attribute__((warn_unused_result))
#else
#define TINYFED_NODISCARD
#endif

typedef enum tinyfed_status {
  TINYFED_OK = 0,
  /* A NULL pointer, a zero size or a value out of its documented range. */
  TINYFED_ERR_ARGUMENT = -1,
  /* The output buffer cannot hold the message; nothing useful was written. */
  TINYFED_ERR_BUFFER_TOO_SMALL = -2,
  /* Called out of order: no task loaded, not yet trained, or (evaluate)
   * already trained. */
  TINYFED_ERR_STATE = -3,
  /* The bytes are not a valid protobuf message of the expected type
   * (truncated, bad wire type, overlong field). */
  TINYFED_ERR_MALFORMED = -4,
  /* The message is longer than any valid one for this context. */
  TINYFED_ERR_MESSAGE_TOO_LARGE = -5,
  /* The task's head is larger than this context's capacity or the protocol
   * bounds (32 classes, 4096 weights). */
  TINYFED_ERR_HEAD_TOO_LARGE = -6,
  /* The task's batch size is larger than this context's capacity. */
  TINYFED_ERR_BATCH_TOO_LARGE = -7,
  /* Weight or bias bytes do not match the shape the spec declares. */
  TINYFED_ERR_SHAPE_MISMATCH = -8,
  /* The model's CRC-32 does not match its weights and bias. */
  TINYFED_ERR_CHECKSUM = -9,
  /* A required part of the task is missing or a value is out of range
   * (quantization parameters, plan, learning rate). */
  TINYFED_ERR_INVALID_TASK = -10,
  /* The task asks for an update encoding this SDK does not implement. */
  TINYFED_ERR_UNSUPPORTED = -11,
  /* The dataset does not fit the task: wrong feature count, no samples, or
   * a label outside [0, class_count). */
  TINYFED_ERR_DATASET = -12,
  /* A deployed model made for another backbone: its feature count or
   * feature quantization is not the one the firmware's backbone produces. */
  TINYFED_ERR_FEATURE_SPEC = -13,
  /* The bytes are not a model this SDK decoded (no valid header), or the
   * model buffer is too small or misaligned for the header it holds. */
  TINYFED_ERR_NO_MODEL = -14
} tinyfed_status_t;

/* Protocol bounds (the .options files beside the .proto files give the reasons). */
#define TINYFED_MAX_CLASSES 32u
#define TINYFED_MAX_WEIGHTS 4096u
#define TINYFED_MAX_BATCH 64u
#define TINYFED_MAX_EPOCHS 64u
#define TINYFED_MAX_LEARNING_RATE_Q16 (16u * 65536u) /* 16.0 */
#define TINYFED_MAX_SAMPLES 16777216u /* 2^24 samples per device */
#define TINYFED_DEVICE_ID_MAX_LEN 32u
#define TINYFED_TOKEN_MAX_LEN 16u

/* Bytes a SignedRequest adds around the message it carries, at most: the
 * device id field (2 + 32), the body's key and length (1 + 3, a varint
 * long enough for any body below 2 MiB) and the tag field (2 + 32). */
#define TINYFED_SIGNED_ENVELOPE_MAX_SIZE 72u

/* Longest encoded Evaluation inside an Update: its key and length (2) and
 * its four fields, each a key and the longest varint its bound allows:
 * version (1 + 5), samples and correct, at most 2^24 (1 + 4 each), and the
 * loss sum, below 2^24 x 2^21 = 2^45 (1 + 7). */
#define TINYFED_EVALUATION_MAX_SIZE 26u

/* Longest encoded ServingState inside a CheckInRequest: its key and length
 * (2), the served version (1 + 5), an evaluation
 * (TINYFED_EVALUATION_MAX_SIZE) and defer_model (1 + 1). */
#define TINYFED_SERVING_STATE_MAX_SIZE (8u + TINYFED_EVALUATION_MAX_SIZE + 2u)

/* Longest encoded message of each kind this SDK accepts or writes for a
 * head of f features and c classes. Task: 2 bytes per weight and bias plus
 * 320 bytes for everything else and room for fields a newer server adds.
 * Update, as signed: 1 byte per weight and bias plus 5 bytes per row scale
 * (the longest uint32 varint; valid scales take at most 2, and the rest is
 * slack for the other fields), 100 bytes for the Update's other fields,
 * the evaluation (TINYFED_EVALUATION_MAX_SIZE) and the signed envelope.
 * Check-in request, as signed: fixed, 80 bytes for the request (its
 * longest is 55: id 2 + 32, held version 1 + 5, capabilities 2 + 13), the
 * longest ServingState (TINYFED_SERVING_STATE_MAX_SIZE) and the signed
 * envelope. An output buffer of this size always suffices; a smaller one
 * works when the message fits. */
#define TINYFED_TASK_MAX_SIZE(f, c) (2u * (f) * (c) + 2u * (c) + 320u)
#define TINYFED_UPDATE_MAX_SIZE(f, c)                                   \
  ((f) * (c) + (c) + 5u * (c) + 100u + TINYFED_EVALUATION_MAX_SIZE + \
   TINYFED_SIGNED_ENVELOPE_MAX_SIZE)
#define TINYFED_CHECKIN_MAX_SIZE \
  (80u + TINYFED_SERVING_STATE_MAX_SIZE + TINYFED_SIGNED_ENVELOPE_MAX_SIZE)

/* Arena bytes for a context that accepts heads up to f features x c classes
 * and batches up to b samples: global and local int16 heads, int8 deltas,
 * per-batch errors and indices, and 8 bytes of alignment slack. */
#define TINYFED_ARENA_SIZE(f, c, b)                                     \
  (2u * 2u * ((f) * (c) + (c)) + ((f) * (c) + (c)) + 4u * (b) * (c) + \
   4u * (b) + 4u * (c) + 8u)

/* Who the device is and what it can hold; fixed for the life of a context. */
typedef struct tinyfed_config {
  const char *device_id; /* 1..32 printable bytes, NUL-terminated; copied */
  uint32_t max_features; /* >= 1 */
  uint32_t max_classes;  /* 2..TINYFED_MAX_CLASSES */
  uint32_t max_batch;    /* 1..TINYFED_MAX_BATCH */
  const uint8_t *device_key; /* TINYFED_DEVICE_KEY_SIZE (32) bytes,
                                caller-owned, must stay valid for the life
                                of the context (not copied: may be in
                                flash) */
} tinyfed_config_t;

/* A device's local samples, usually in flash. Must stay valid and unchanged
 * during tinyfed_evaluate() and tinyfed_train(). */
typedef struct tinyfed_dataset {
  const int8_t *features; /* count x feature_count, row-major, quantized
                             with the task's feature quantization */
  const uint8_t *labels;  /* count class indices */
  uint32_t count;         /* 1..TINYFED_MAX_SAMPLES */
  uint32_t feature_count; /* must equal the task's feature count */
} tinyfed_dataset_t;

/* The loaded task, for logging and for checks by the caller. */
typedef struct tinyfed_task_info {
  uint32_t round;
  uint32_t model_version;
  uint32_t feature_count;
  uint32_t class_count;
  uint32_t weight_frac_bits;
  int32_t feature_zero_point;
  uint32_t feature_scale_multiplier;
  int32_t feature_scale_shift;
  uint32_t epochs;
  uint32_t batch_size;
  uint32_t learning_rate_q16;
  uint32_t seed;
  uint32_t deadline_ms;
  uint8_t task_token[TINYFED_TOKEN_MAX_LEN];
  uint32_t task_token_len;
  /* Non-zero for an evaluation-only task (TINYFED_CHECKIN_EVALUATE): no
   * plan, so epochs, batch_size, learning_rate_q16 and seed are 0. */
  uint32_t evaluate_only;
} tinyfed_task_info_t;

/* Read-only view of a head: weights row-major [class][feature] and bias,
 * int16 in the master format. Valid until the next call that loads a task
 * or trains. */
typedef struct tinyfed_head_view {
  const int16_t *weights;
  const int16_t *bias;
  uint32_t feature_count;
  uint32_t class_count;
  uint32_t weight_frac_bits;
} tinyfed_head_view_t;

typedef enum tinyfed_checkin_kind {
  TINYFED_CHECKIN_TASK = 1,  /* a task is loaded: train, then submit */
  TINYFED_CHECKIN_RETRY = 2, /* no work now: check in after retry_after_ms */
  /* A deployed model for the device to serve: msg[model_offset ..
   * model_offset + model_length) is its encoded ModelVersion, for
   * tinyfed_model_decode(). Nothing is loaded into the context. */
  TINYFED_CHECKIN_MODEL = 3,
  /* An evaluation-only task is loaded: tinyfed_evaluate(), then
   * tinyfed_evaluation_encode(); do not train. */
  TINYFED_CHECKIN_EVALUATE = 4
} tinyfed_checkin_kind_t;

typedef struct tinyfed_checkin_result {
  tinyfed_checkin_kind_t kind;
  uint32_t retry_after_ms;
  size_t model_offset; /* MODEL: where the ModelVersion starts in msg */
  size_t model_length; /* MODEL: its length */
} tinyfed_checkin_result_t;

/* A model's evaluation on labelled samples, in integers, as the Update
 * carries it (proto/tinyfed/v1/model.proto, Evaluation) so that the server
 * can sum a fleet's evaluations exactly. */
typedef struct tinyfed_evaluation {
  uint32_t model_version; /* the task's base version */
  uint32_t samples;       /* samples evaluated, 1..TINYFED_MAX_SAMPLES */
  uint32_t correct;       /* of them, predicted right; <= samples */
  /* Summed cross-entropy -ln softmax(logits)[label], Q16.16, each sample's
   * term below TINYFED_EVALUATION_TERM_MAX_Q16 (see tinyfed_evaluate), so
   * at most samples x 2^21. */
  uint64_t loss_sum_q16;
} tinyfed_evaluation_t;

/* 32 nats in Q16.16: every sample's loss term in an evaluation is below it. */
#define TINYFED_EVALUATION_TERM_MAX_Q16 (32u << 16)

/* What a device that serves deployed models tells the server at check-in
 * (coordinator.proto ServingState). */
typedef struct tinyfed_serving_state {
  uint32_t model_version; /* the deployed model it serves; 0 for none yet */
  /* That model's evaluation on the local labelled samples
   * (tinyfed_model_evaluate), or NULL for none. Its model_version must
   * equal the one above. */
  const tinyfed_evaluation_t *evaluation;
  uint32_t defer_model; /* non-zero: cannot take a model now */
} tinyfed_serving_state_t;

/* The feature spec of the firmware's backbone: a deployed model is refused
 * unless its head was made for exactly these features. */
typedef struct tinyfed_backbone {
  uint32_t feature_count;
  int32_t feature_scale_multiplier; /* model.proto FeatureQuantization */
  int32_t feature_scale_shift;
  int32_t feature_zero_point;
} tinyfed_backbone_t;

/* Bytes of a deployed model's buffer for a head of f features and c
 * classes: a 40-byte header (magic, its own check word, version, shape,
 * formats, checksum) then the int16 weights and bias, rounded up to whole
 * 32-bit words so that a uint32_t array of TINYFED_MODEL_SIZE / 4 holds
 * it (1,340 bytes for 64 x 10). The layout holds no pointers, so the
 * buffer can be written to flash and used from there; it is in the
 * target's byte order, so it moves between devices only as the server's
 * ModelVersion. */
#define TINYFED_MODEL_HEADER_SIZE 40u
#define TINYFED_MODEL_SIZE(f, c) \
  ((TINYFED_MODEL_HEADER_SIZE + 2u * ((f) * (c) + (c)) + 3u) / 4u * 4u)

/* The deployed model's parameters, for logging and checks. */
typedef struct tinyfed_model_info {
  uint32_t version;
  uint32_t feature_count;
  uint32_t class_count;
  uint32_t weight_frac_bits;
  uint32_t checksum; /* CRC-32 of weights and bias, as the server sent it */
} tinyfed_model_info_t;

/* Context. Declared here so callers can allocate it statically; its fields
 * are private to the SDK and may change between releases. */
typedef struct tinyfed_context {
  char device_id[TINYFED_DEVICE_ID_MAX_LEN + 1u];
  uint32_t device_id_len;
  const uint8_t *device_key;
  uint32_t device_hash;
  uint32_t max_features, max_classes, max_batch;
  int16_t *global_w, *global_b, *local_w, *local_b;
  int8_t *delta_w, *delta_b;
  int32_t *batch_err;
  uint32_t *batch_idx;
  int32_t *logits;
  uint32_t row_scales[TINYFED_MAX_CLASSES];
  uint32_t state;
  tinyfed_task_info_t task;
  uint32_t held_version;
  uint32_t trained_samples;
  tinyfed_evaluation_t evaluation; /* of the loaded task; samples 0: none */
  uint32_t loss_q16;
  uint32_t weight_bytes, bias_bytes; /* received while decoding */
  tinyfed_status_t decode_status;
  const char *error_message;
} tinyfed_context_t;

/* Arena bytes for the given capacity (the same value as TINYFED_ARENA_SIZE),
 * or 0 when the capacity is outside the protocol bounds. */
size_t tinyfed_arena_size(uint32_t max_features, uint32_t max_classes,
                          uint32_t max_batch);

/* Prepares `ctx` for a device. `arena` (any alignment) must hold
 * tinyfed_arena_size() bytes and outlive the context; so must the device
 * key config->device_key points to, which the context keeps a pointer to
 * (the bytes are read at every encode, never copied).
 * Errors: ARGUMENT (NULL, device key NULL, bad id, capacity out of bounds),
 * BUFFER_TOO_SMALL (arena). */
TINYFED_NODISCARD tinyfed_status_t tinyfed_init(tinyfed_context_t *ctx,
                                                const tinyfed_config_t *config,
                                                void *arena, size_t arena_size);

/* Writes a SignedRequest into out[0..capacity) and sets *out_len: the
 * device id, the body, a CheckInRequest (device id, model version held,
 * capabilities and `sample_count`), and the body's tag under the device key
 * with the check-in label (tinyfed_common/request_auth.h). At most
 * TINYFED_CHECKIN_MAX_SIZE bytes. Send the bytes as they are: the server
 * verifies the tag over the body's exact bytes.
 * Errors: ARGUMENT, STATE (not initialised), BUFFER_TOO_SMALL. */
TINYFED_NODISCARD tinyfed_status_t tinyfed_checkin_encode(
    tinyfed_context_t *ctx, uint32_t sample_count, uint8_t *out,
    size_t capacity, size_t *out_len);

/* As tinyfed_checkin_encode(), and the CheckInRequest also carries
 * `serving` (coordinator.proto ServingState) when it is not NULL: the
 * server then knows the device serves deployed models and may answer with
 * one (TINYFED_CHECKIN_MODEL). At most TINYFED_CHECKIN_MAX_SIZE bytes.
 * Errors: as tinyfed_checkin_encode(), and ARGUMENT when the evaluation's
 * version is not serving->model_version or its counts are out of range. */
TINYFED_NODISCARD tinyfed_status_t tinyfed_checkin_encode_serving(
    tinyfed_context_t *ctx, uint32_t sample_count,
    const tinyfed_serving_state_t *serving, uint8_t *out, size_t capacity,
    size_t *out_len);

/* Decodes the server's CheckInResponse. With a task, validates it and loads
 * its head (result->kind = TASK, or EVALUATE for an evaluation-only task);
 * with a retry hint, reports it (RETRY); with a model, reports where it
 * lies in msg (MODEL) and leaves the context as it was.
 * Errors: ARGUMENT, MESSAGE_TOO_LARGE, MALFORMED, HEAD_TOO_LARGE,
 * BATCH_TOO_LARGE, SHAPE_MISMATCH, CHECKSUM, INVALID_TASK, UNSUPPORTED. */
TINYFED_NODISCARD tinyfed_status_t tinyfed_checkin_response_decode(
    tinyfed_context_t *ctx, const uint8_t *msg, size_t len,
    tinyfed_checkin_result_t *result);

/* Decodes a bare RoundTask message and loads its head; same errors as
 * tinyfed_checkin_response_decode(). */
TINYFED_NODISCARD tinyfed_status_t tinyfed_task_decode(tinyfed_context_t *ctx,
                                                       const uint8_t *msg,
                                                       size_t len);

/* Copies the loaded task's parameters to *info. Errors: ARGUMENT, STATE. */
TINYFED_NODISCARD tinyfed_status_t tinyfed_task_info(
    const tinyfed_context_t *ctx, tinyfed_task_info_t *info);

/* Trains the local head from the task's global head: `epochs` passes of
 * mini-batch SGD on softmax cross-entropy over `data`, in integer
 * arithmetic (see docs/numerics.md). Calling it again restarts from the
 * global head, so the result depends only on the task and the data.
 * Errors: ARGUMENT, STATE (no task, or an evaluation-only one), DATASET. */
TINYFED_NODISCARD tinyfed_status_t tinyfed_train(tinyfed_context_t *ctx,
                                                 const tinyfed_dataset_t *data);

/* Evaluates the loaded task's model (its global head, as received) on
 * `data`, the device's labelled samples, and keeps the result in the
 * context for tinyfed_update_encode(), which sends it with the update
 * (covered by its tag) as the evaluation of the task's base version. Call
 * it after the task is loaded and before tinyfed_train(); it is optional
 * (an update without it is valid), and calling it again replaces the
 * result. Loading another task drops it. Copies the result to *out:
 *   correct: samples whose largest logit is their label's, a tie going to
 *     the lowest class index (the class tinyfed_classify() returns);
 *   loss_sum_q16: sum over the samples of -ln softmax(logits)[label] in
 *     Q16.16, computed as the training loss is (the total the mean loss of
 *     the update divides), except that each sample's z_label - z_max is
 *     taken at no less than -28.5: a term is then below ln(32) + 28.5 < 32
 *     nats (TINYFED_EVALUATION_TERM_MAX_Q16), so the sum stays within the
 *     server's bound of samples x 2^21. Only a sample whose label's logit
 *     lies more than 28.5 below the largest is counted short (its
 *     probability is below e^-28.5, and it counts as wrong either way).
 * Integer arithmetic; the same inputs give the same result on every
 * platform. Uses no more stack than tinyfed_train(); `data` is read only
 * during the call.
 * Errors: ARGUMENT (NULL), STATE (no task, or already trained), DATASET
 * (as tinyfed_train()). */
TINYFED_NODISCARD tinyfed_status_t tinyfed_evaluate(tinyfed_context_t *ctx,
                                                    const tinyfed_dataset_t *data,
                                                    tinyfed_evaluation_t *out);

/* Writes the update of the trained task into out[0..capacity) as a
 * SignedRequest and sets *out_len: the device id, the body, an Update (the
 * round, task token and base version of the task, the sample count, and
 * local - global per class row quantized to int8 with stochastic rounding,
 * and the evaluation of tinyfed_evaluate() if it ran for this task),
 * and the body's tag under the device key with the update label
 * (tinyfed_common/request_auth.h). At most TINYFED_UPDATE_MAX_SIZE of the
 * context's capacity. Deterministic: the same task, data, device id and key
 * give the same bytes, so a re-sent update is the same submission.
 * Errors: ARGUMENT, STATE (not trained), BUFFER_TOO_SMALL. */
TINYFED_NODISCARD tinyfed_status_t tinyfed_update_encode(
    tinyfed_context_t *ctx, uint8_t *out, size_t capacity, size_t *out_len);

/* For an evaluation-only task (TINYFED_CHECKIN_EVALUATE) after
 * tinyfed_evaluate(): writes the SignedRequest of an Update carrying only
 * the round, task token, device id, base version and the evaluation
 * (round.proto RoundTask.evaluate_only), tagged with the update label.
 * Errors: ARGUMENT, STATE (not an evaluation-only task, or not evaluated),
 * BUFFER_TOO_SMALL. */
TINYFED_NODISCARD tinyfed_status_t tinyfed_evaluation_encode(
    tinyfed_context_t *ctx, uint8_t *out, size_t capacity, size_t *out_len);

/* Decodes the server's UpdateAck: the round it acknowledges and when to
 * check in next. Errors: ARGUMENT, MALFORMED, MESSAGE_TOO_LARGE. */
TINYFED_NODISCARD tinyfed_status_t tinyfed_ack_decode(const uint8_t *msg,
                                                      size_t len,
                                                      uint32_t *round,
                                                      uint32_t *retry_after_ms);

/* Predicts the class of one sample (feature_count int8 features, quantized
 * like the training data) with the current local head: the global head
 * until tinyfed_train() runs, the trained head after.
 * Errors: ARGUMENT, STATE (no task). */
TINYFED_NODISCARD tinyfed_status_t tinyfed_classify(
    const tinyfed_context_t *ctx, const int8_t *features, uint32_t *label);

/* Views of the global (as received) and local (trained) heads.
 * Errors: ARGUMENT, STATE. */
TINYFED_NODISCARD tinyfed_status_t tinyfed_global_head(
    const tinyfed_context_t *ctx, tinyfed_head_view_t *view);
TINYFED_NODISCARD tinyfed_status_t tinyfed_local_head(
    const tinyfed_context_t *ctx, tinyfed_head_view_t *view);

/* Inference with a deployed model, apart from any training context.
 *
 * A device serves one model while it may train another: the server sends
 * the model to serve in a check-in response (TINYFED_CHECKIN_MODEL), and
 * the firmware decodes it into a buffer it owns, then swaps:
 *
 *   static uint32_t next[TINYFED_MODEL_SIZE(64, 10) / 4];   // RAM
 *   tinyfed_model_decode(&backbone, msg + r.model_offset, r.model_length,
 *                        next, sizeof next, &info);
 *   ... on TINYFED_OK: write `next` to the spare flash slot, then switch
 *   the slot the firmware serves from (atomic); on an error: keep serving
 *   the old model, whose buffer was never touched ...
 *   tinyfed_model_classify(serving, serving_size, features, &label);
 *
 * Model buffers must be 4-byte aligned. Nothing here allocates, uses
 * floating point or keeps state: a model buffer is all there is, may be
 * const (in flash), and may be used by several callers at once.
 */

/* Decodes an encoded ModelVersion into model[0..model_size): checks that
 * its head fits the buffer (TINYFED_MODEL_SIZE of its shape) and the
 * protocol bounds (HEAD_TOO_LARGE), that weight and bias bytes match its
 * shape (SHAPE_MISMATCH), that its CRC-32 matches them (CHECKSUM), that
 * its feature count and quantization are `backbone`'s (FEATURE_SPEC), that
 * its version is >= 1 and its weight format is valid (INVALID_TASK), in
 * that order. The weights are streamed straight into the buffer (no other
 * copy), so they must come before the bias in msg, as every protobuf
 * encoder writes them (field order); a bias first is MALFORMED. Writes
 * only into `model`, its header last; on any error the buffer holds no
 * model (the other calls refuse it with NO_MODEL), so decode into a
 * buffer other than the one being served. `info` may be NULL.
 * Errors: ARGUMENT (NULL, misaligned), MALFORMED, MESSAGE_TOO_LARGE
 * (longer than a ModelVersion of the protocol's largest head can be), and
 * the above. */
TINYFED_NODISCARD tinyfed_status_t tinyfed_model_decode(
    const tinyfed_backbone_t *backbone, const uint8_t *msg, size_t len,
    void *model, size_t model_size, tinyfed_model_info_t *info);

/* Checks a model buffer's header (and, with `verify_checksum` non-zero,
 * recomputes the CRC-32 of its weights and bias, as at boot after reading
 * flash) and copies its parameters to *info (may be NULL). Every call on
 * a model checks its header (a check word over its fields: a torn or
 * foreign header is NO_MODEL), not the weights' CRC-32, which only this
 * call recomputes, over the whole head.
 * Errors: ARGUMENT, NO_MODEL, CHECKSUM. */
TINYFED_NODISCARD tinyfed_status_t tinyfed_model_info(
    const void *model, size_t model_size, int verify_checksum,
    tinyfed_model_info_t *info);

/* Predicts the class of one sample (feature_count int8 features) with a
 * deployed model: the largest logit, a tie going to the lowest class, the
 * same integer arithmetic as tinyfed_classify(). Errors: ARGUMENT,
 * NO_MODEL. */
TINYFED_NODISCARD tinyfed_status_t tinyfed_model_classify(
    const void *model, size_t model_size, const int8_t *features,
    uint32_t *label);

/* Evaluates a deployed model on labelled samples as tinyfed_evaluate()
 * evaluates a task's head (the same numbers for the same head and data),
 * for the check-in's ServingState. Errors: ARGUMENT, NO_MODEL, DATASET. */
TINYFED_NODISCARD tinyfed_status_t tinyfed_model_evaluate(
    const void *model, size_t model_size, const tinyfed_dataset_t *data,
    tinyfed_evaluation_t *out);

/* Constant string naming the last error's cause, or "" (always "" when
 * built with TINYFED_NO_ERROR_MESSAGES). */
const char *tinyfed_last_error_message(const tinyfed_context_t *ctx);

/* Constant name of a status ("TINYFED_ERR_CHECKSUM"). */
const char *tinyfed_status_name(tinyfed_status_t status);

#ifdef __cplusplus
}
#endif

#endif /* TINYFED_TINYFED_H_ */
