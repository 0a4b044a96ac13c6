// tinyfed-admin: the operator's tool.
//   tinyfed-admin keys new --out FILE
//   tinyfed-admin keys device --fleet FILE --device ID [--format hex|c]
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "keys_command.h"
#include "tinyfed_common/flag_help.h"

ABSL_FLAG(std::string, out, "", "keys new: the fleet key file to create (never overwritten)");
ABSL_FLAG(std::string, fleet, "", "keys device: the fleet key file to derive from");
ABSL_FLAG(std::string, device, "", "keys device: the device id (1..32 printable ASCII bytes)");
ABSL_FLAG(std::string, format, "hex",
          "keys device: 'hex' (64 hex digits) or 'c' (a C header for the firmware build)");

namespace {

constexpr char kUsage[] =
    "the operator's tool for a tinyfed fleet.\n\n"
    "  tinyfed-admin keys new --out FILE\n"
    "  tinyfed-admin keys device --fleet FILE --device ID [--format hex|c]\n\n"
    "Try 'tinyfed-admin keys new --help' or 'tinyfed-admin keys device --help'.";

constexpr char kKeysNewUsage[] =
    "creates a fleet key.\n\n"
    "  tinyfed-admin keys new --out FILE\n\n"
    "Writes 32 random bytes from the system's CSPRNG to FILE, a new file of mode 0600\n"
    "(an existing FILE is never overwritten), and prints its path, never the key. The\n"
    "fleet key is the server's one secret: every device key is derived from it, so\n"
    "keep it where only the server and this tool can read it, with a backup.";

constexpr char kKeysDeviceUsage[] =
    "derives one device's key from the fleet key.\n\n"
    "  tinyfed-admin keys device --fleet FILE --device ID [--format hex|c]\n\n"
    "device key = HMAC-SHA256(fleet key, \"tinyfed/v1 device key\" NUL || ID)\n"
    "(common/include/tinyfed_common/device_key.h). FILE must hold exactly 32 bytes\n"
    "and have mode 0600 or stricter. ID is 1..32 printable ASCII bytes, as the server\n"
    "accepts. Prints the key on stdout: --format hex as 64 hex digits, --format c as\n"
    "a C header that a firmware build includes (tinyfed_device_key, 32 bytes, and\n"
    "tinyfed_device_id). The output is the device's secret: write it to a file only\n"
    "that device's build can read.";

int Fail(const std::string& message) {
  std::fprintf(stderr, "tinyfed-admin: %s\n", message.c_str());
  return 2;
}

// The command words, read before parsing so that `--help` after them
// explains that command: the words that precede the first flag.
const char* ChooseUsage(int argc, char** argv) {
  if (argc >= 3 && std::strcmp(argv[1], "keys") == 0) {
    if (std::strcmp(argv[2], "new") == 0) return kKeysNewUsage;
    if (std::strcmp(argv[2], "device") == 0) return kKeysDeviceUsage;
  }
  return kUsage;
}

}  // namespace

int main(int argc, char** argv) {
  tinyfed::ConfigureFlagHelp(ChooseUsage(argc, argv));
  std::vector<char*> positional =
      tinyfed::ParseFlagsOrAnswerHelp(std::vector<char*>(argv, argv + argc));
  if (positional.size() < 2) return Fail("missing command; try 'tinyfed-admin --help'");
  const std::string noun = positional[1];
  if (noun != "keys") return Fail("unknown command '" + noun + "'; try --help");
  if (positional.size() < 3) return Fail("keys: missing 'new' or 'device'; try --help");
  const std::string verb = positional[2];
  if (positional.size() > 3) {
    return Fail(std::string("unexpected argument '") + positional[3] + "'");
  }
  absl::Status status;
  if (verb == "new") {
    status = tinyfed::admin::RunKeysNew(absl::GetFlag(FLAGS_out), stdout);
  } else if (verb == "device") {
    status = tinyfed::admin::RunKeysDevice(absl::GetFlag(FLAGS_fleet), absl::GetFlag(FLAGS_device),
                                           absl::GetFlag(FLAGS_format), stdout);
  } else {
    return Fail("unknown command 'keys " + verb + "'; try --help");
  }
  return status.ok() ? 0 : Fail(std::string(status.message()));
}
