// The admin token `tinyfed-admin --token_file FILE` sends to the server as
// "authorization: Bearer TOKEN" (server/admin_auth.h). Safe for concurrent
// use.
#ifndef TINYFED_ADMIN_TOKEN_FILE_H_
#define TINYFED_ADMIN_TOKEN_FILE_H_

#include <string>

#include "absl/status/statusor.h"

namespace tinyfed::admin {

// Reads the one token in `path`: a line "TOKEN", or "NAME TOKEN" as a line
// of the server's token file has it (so an operator may copy their line);
// blank lines and lines starting with '#' are skipped. The token is 1 or
// more bytes 0x21-0x7E. The file is a secret: its mode must be 0600 or
// stricter.
// Errors (messages name the file and a line number, never the token):
// NOT_FOUND when it does not exist; PERMISSION_DENIED when it cannot be
// read; FAILED_PRECONDITION for a mode wider than 0600; INVALID_ARGUMENT
// for a line of more than two words, a byte outside 0x21-0x7E, no token, or
// more than one token line (the tool sends one token; which one would be a
// guess).
absl::StatusOr<std::string> ReadAdminToken(const std::string& path);

}  // namespace tinyfed::admin

#endif  // TINYFED_ADMIN_TOKEN_FILE_H_
