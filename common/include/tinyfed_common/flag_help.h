// Command-line help shared by tinyfed's programs (Abseil flags).
#ifndef TINYFED_COMMON_FLAG_HELP_H_
#define TINYFED_COMMON_FLAG_HELP_H_

#include <string>

namespace tinyfed {

// Makes --help list the flags defined in the program's main.cc (Abseil's
// default only matches files named after the program, which ours are not),
// names them by their last two path components rather than the build
// machine's path, and sets `usage` as the program's description.
// Call once, first thing in main().
void ConfigureFlagHelp(const std::string& usage);

}  // namespace tinyfed

#endif  // TINYFED_COMMON_FLAG_HELP_H_
