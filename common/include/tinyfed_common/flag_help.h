// Command-line help shared by tinyfed's programs (Abseil flags).
#ifndef TINYFED_COMMON_FLAG_HELP_H_
#define TINYFED_COMMON_FLAG_HELP_H_

#include <string>
#include <vector>

namespace tinyfed {

// Makes --help list the flags defined in the program's main.cc (Abseil's
// default only matches files named after the program, which ours are not),
// names them by their last two path components rather than the build
// machine's path, and sets `usage` as the program's description.
// Call once, first thing in main().
void ConfigureFlagHelp(const std::string& usage);

// Parses the flags in `args` (argv[0] first) as absl::ParseCommandLine
// does and returns the positional arguments, argv[0] first. The difference:
// a request for help or the version (--help, -h, --helpfull, --version, ...)
// prints it to stdout and exits with status 0, where Abseil exits with 1,
// which scripts read as failure. An unknown flag still exits with 1 and one
// line on stderr. `args` must outlive the returned pointers.
std::vector<char*> ParseFlagsOrAnswerHelp(std::vector<char*> args);

}  // namespace tinyfed

#endif  // TINYFED_COMMON_FLAG_HELP_H_
