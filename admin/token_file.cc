#include "token_file.h"

#include <sys/stat.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <sstream>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"

namespace tinyfed::admin {

absl::StatusOr<std::string> ReadAdminToken(const std::string& path) {
  const std::string where = absl::StrCat("--token_file ", path);
  struct stat st {};
  if (stat(path.c_str(), &st) != 0) {
    if (errno == ENOENT) return absl::NotFoundError(absl::StrCat(where, ": no such file"));
    return absl::PermissionDeniedError(absl::StrCat(where, ": ", std::strerror(errno)));
  }
  if ((st.st_mode & 077) != 0) {
    return absl::FailedPreconditionError(absl::StrFormat(
        "%s: mode %04o lets others read the token; make it 0600 (chmod 600 %s)", where,
        st.st_mode & 07777, path));
  }
  std::ifstream in(path, std::ios::binary);
  std::stringstream text;
  text << in.rdbuf();
  if (!in || in.bad()) {
    return absl::PermissionDeniedError(absl::StrCat(where, ": cannot read it"));
  }
  std::string token;
  int line_number = 0;
  for (absl::string_view line : absl::StrSplit(text.str(), '\n')) {
    ++line_number;
    line = absl::StripSuffix(line, "\r");
    const absl::string_view trimmed = absl::StripAsciiWhitespace(line);
    if (trimmed.empty() || trimmed.front() == '#') continue;
    const std::vector<absl::string_view> words =
        absl::StrSplit(trimmed, absl::ByAnyChar(" \t"), absl::SkipEmpty());
    if (words.size() > 2) {
      return absl::InvalidArgumentError(absl::StrCat(
          where, ": line ", line_number, ": expected TOKEN or NAME TOKEN, got ", words.size(),
          " words"));
    }
    for (const char c : words.back()) {
      if (c < 0x21 || c > 0x7e) {
        return absl::InvalidArgumentError(absl::StrCat(
            where, ": line ", line_number, ": the token holds a byte outside 0x21-0x7E"));
      }
    }
    if (!token.empty()) {
      return absl::InvalidArgumentError(absl::StrCat(
          where, ": line ", line_number,
          ": a second token; the file must hold one (TOKEN or NAME TOKEN)"));
    }
    token = std::string(words.back());
  }
  if (token.empty()) return absl::InvalidArgumentError(absl::StrCat(where, ": no token in it"));
  return token;
}

}  // namespace tinyfed::admin
