// Evaluations and rollout stages for people, the same in every tool that
// shows them (tinyfed-admin, the status page, the server's rollout reasons).
#ifndef TINYFED_COMMON_EVALUATION_TEXT_H_
#define TINYFED_COMMON_EVALUATION_TEXT_H_

#include <cstdint>
#include <string>
#include <string_view>

namespace tinyfed {

// correct / samples with four decimals ("0.9512"), rounded half up, in
// exact integer arithmetic: a fleet's sums outgrow a double's 53 bits.
// samples must not be 0.
std::string FormatAccuracy(uint64_t correct, uint64_t samples);

// The words of a RolloutStage's enum name (model.proto):
// "ROLLOUT_STAGE_ROLLED_BACK" -> "rolled back"; "" for "" (a value this
// build does not know).
std::string RolloutStageWords(std::string_view enum_name);

}  // namespace tinyfed

#endif  // TINYFED_COMMON_EVALUATION_TEXT_H_
