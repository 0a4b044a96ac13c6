// Checks of an Update that need no round state: shape against the head's
// spec, value ranges and checksum. Pure functions: safe for concurrent use.
#ifndef TINYFED_SERVER_UPDATE_VALIDATION_H_
#define TINYFED_SERVER_UPDATE_VALIDATION_H_

#include "absl/status/status.h"
#include "tinyfed/v1/model.pb.h"
#include "tinyfed/v1/coordinator.pb.h"
#include "tinyfed/v1/round.pb.h"

namespace tinyfed::server {

// OK, or INVALID_ARGUMENT naming the first problem: device id not 1..32
// printable bytes; token longer than 16 bytes; sample count outside
// [1, 2^24]; weight_delta not features x classes bytes or bias_delta not
// classes bytes; a value of -128 (the quantizer's range is [-127, 127]);
// row_scales not one per class or a scale outside [1, 517]; checksum not
// the CRC-32 of weight_delta followed by bias_delta; an evaluation (when
// present) whose model_version is not base_version, whose samples are
// outside [1, 2^24], whose correct is above its samples or whose
// loss_sum_q16 is above samples x 2^21 (each sample's loss is below 32 in
// Q16.16). The messages name the field (evaluation.samples: ...). The
// evaluation's samples against the count declared at check-in need the
// round's state: RoundManager checks that.
absl::Status ValidateUpdate(const v1::Update& update, const v1::HeadSpec& spec);

// The Update of an evaluation-only task (round.proto RoundTask.evaluate_only)
// for `model_version`: OK, or INVALID_ARGUMENT naming the first problem:
// device id and token as ValidateUpdate checks them; base_version not
// `model_version`; sample_count not 0; weight_delta, bias_delta or
// row_scales not empty; checksum not 0; no evaluation, or one that fails
// ValidateUpdate's checks of an evaluation (model_version = base_version).
absl::Status ValidateEvaluationOnlyUpdate(const v1::Update& update, uint32_t model_version);

// A check-in's ServingState (coordinator.proto): OK, or INVALID_ARGUMENT
// naming the field (serving.evaluation.samples: ...): an evaluation (when
// present) whose model_version is not serving.model_version or is 0, or
// out of the bounds ValidateUpdate puts on Update.evaluation, or with
// more samples than `declared_samples` when that is not 0.
absl::Status ValidateServingState(const v1::ServingState& serving, uint32_t declared_samples);

}  // namespace tinyfed::server

#endif  // TINYFED_SERVER_UPDATE_VALIDATION_H_
