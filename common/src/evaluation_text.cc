#include "tinyfed_common/evaluation_text.h"

#include "absl/strings/ascii.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_replace.h"
#include "absl/strings/strip.h"

namespace tinyfed {

std::string FormatAccuracy(uint64_t correct, uint64_t samples) {
  using u128 = unsigned __int128;
  // (correct / samples) x 10^4 rounded half up: floor((2 x 10^4 x correct
  // + samples) / (2 x samples)), in 128 bits (2 x 10^4 x 2^64 < 2^79).
  const uint64_t ten_thousandths = static_cast<uint64_t>(
      (static_cast<u128>(correct) * 20000 + samples) / (static_cast<u128>(samples) * 2));
  return absl::StrFormat("%d.%04d", ten_thousandths / 10000, ten_thousandths % 10000);
}

std::string RolloutStageWords(std::string_view enum_name) {
  const absl::string_view name(enum_name.data(), enum_name.size());
  return absl::AsciiStrToLower(
      absl::StrReplaceAll(absl::StripPrefix(name, "ROLLOUT_STAGE_"), {{"_", " "}}));
}

}  // namespace tinyfed
