#include "tinyfed_common/flag_help.h"

#include <cstdlib>
#include <cstring>
#include <iostream>

#include "absl/flags/internal/parse.h"
#include "absl/flags/internal/usage.h"
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

// Abseil 20220623 has no public way to parse without acting on its usage
// flags, hence its internal parse entry point, the one ParseCommandLine
// itself calls, and its usage handler.
std::vector<char*> ParseFlagsOrAnswerHelp(std::vector<char*> args) {
  static char help[] = "--help";
  for (size_t i = 1; i < args.size() && std::strcmp(args[i], "--") != 0; ++i) {
    if (std::strcmp(args[i], "-h") == 0) args[i] = help;
  }
  namespace fi = absl::flags_internal;
  std::vector<char*> positional = fi::ParseCommandLineImpl(
      static_cast<int>(args.size()), args.data(), fi::ArgvListAction::kRemoveParsedArgs,
      fi::UsageFlagsAction::kIgnoreUsage, fi::OnUndefinedFlag::kAbortIfUndefined);
  if (fi::HandleUsageFlags(std::cout, absl::ProgramUsageMessage()) != -1) {
    std::cout.flush();
    std::exit(0);
  }
  return positional;
}

}  // namespace tinyfed
