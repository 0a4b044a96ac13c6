// Checks of an Update that need no round state: shape against the head's
// spec, value ranges and checksum. Pure functions: safe for concurrent use.
#ifndef TINYFED_SERVER_UPDATE_VALIDATION_H_
#define TINYFED_SERVER_UPDATE_VALIDATION_H_

#include "absl/status/status.h"
#include "tinyfed/v1/model.pb.h"
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

}  // namespace tinyfed::server

#endif  // TINYFED_SERVER_UPDATE_VALIDATION_H_
