// `tinyfed-admin keys ...`: creating the fleet key and deriving device keys
// from it (common/include/tinyfed_common/device_key.h). Functions share no
// state: safe for concurrent use.
#ifndef TINYFED_ADMIN_KEYS_COMMAND_H_
#define TINYFED_ADMIN_KEYS_COMMAND_H_

#include <cstdio>
#include <string>

#include "absl/status/status.h"

namespace tinyfed::admin {

// `keys new`: creates the fleet key file `out` (CreateFleetKeyFile's rules:
// never overwrites, mode 0600) and prints one line naming it to `stdout`,
// never the key. The error names the file and the problem.
absl::Status RunKeysNew(const std::string& out, FILE* stdout_file);

// `keys device`: derives the key of `device_id` from the fleet key file
// `fleet` and prints it to `stdout_file` as `format`: "hex" (64 lowercase
// hex digits and a newline) or "c" (a C99 header for a firmware build:
// `tinyfed_device_key`, a static const uint8_t[32], and
// `tinyfed_device_id`, the id as a string, both named in a comment that
// never holds the fleet key). INVALID_ARGUMENT for a bad id or format,
// before the fleet key is read; LoadFleetKey's errors otherwise.
absl::Status RunKeysDevice(const std::string& fleet, const std::string& device_id,
                           const std::string& format, FILE* stdout_file);

}  // namespace tinyfed::admin

#endif  // TINYFED_ADMIN_KEYS_COMMAND_H_
