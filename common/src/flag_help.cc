#include "tinyfed_common/flag_help.h"

#include "absl/flags/usage.h"
#include "absl/flags/usage_config.h"
#include "absl/strings/match.h"

namespace tinyfed {

void ConfigureFlagHelp(const std::string& usage) {
  absl::FlagsUsageConfig config;
  config.contains_help_flags = [](absl::string_view file) {
    return absl::EndsWith(file, "main.cc");
  };
  config.contains_helpshort_flags = config.contains_help_flags;
  config.normalize_filename = [](absl::string_view file) {
    const size_t last = file.rfind('/');
    const size_t before = last == 0 || last == absl::string_view::npos
                              ? absl::string_view::npos
                              : file.rfind('/', last - 1);
    return std::string(before == absl::string_view::npos ? file : file.substr(before + 1));
  };
  absl::SetFlagsUsageConfig(config);
  absl::SetProgramUsageMessage(usage);
}

}  // namespace tinyfed
