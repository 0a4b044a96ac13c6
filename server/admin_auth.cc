#include "admin_auth.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <iterator>
#include <utility>

#include <grpc/grpc_security_constants.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "checkin_limiter.h"

namespace tinyfed::server {
namespace {

// A token file is a handful of lines; anything this large is not one, and
// is not read into memory.
constexpr off_t kMaxTokenFileBytes = 1 << 20;
constexpr size_t kMaxNameBytes = 64;
constexpr size_t kMinTokenBytes = 32;

// Debian's Abseil has a string_view of its own.
absl::string_view A(std::string_view s) { return absl::string_view(s.data(), s.size()); }

bool PrintableAscii(std::string_view s) {
  return std::all_of(s.begin(), s.end(), [](char c) { return c >= 0x21 && c <= 0x7e; });
}

std::array<uint8_t, 32> Sha256(std::string_view bytes) {
  std::array<uint8_t, 32> digest{};
  unsigned int size = 0;
  // Cannot fail for bytes in memory on a working libcrypto; a broken one
  // leaves a digest no token matches.
  EVP_Digest(bytes.data(), bytes.size(), digest.data(), &size, EVP_sha256(), nullptr);
  return digest;
}

// The file's bytes, after the checks of the token file's mode.
absl::StatusOr<std::string> ReadTokenFile(const std::string& path) {
  const int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    const int error = errno;
    if (error == ENOENT) {
      return absl::NotFoundError(absl::StrCat("admin token file ", path, ": no such file"));
    }
    return absl::PermissionDeniedError(
        absl::StrCat("admin token file ", path, ": cannot open: ", std::strerror(error)));
  }
  // The checks and the read are on one open file, so the file judged is
  // the file read.
  struct stat st {};
  if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
    close(fd);
    return absl::FailedPreconditionError(
        absl::StrCat("admin token file ", path, ": not a regular file"));
  }
  if ((st.st_mode & 07177) != 0) {
    close(fd);
    char mode[8];
    std::snprintf(mode, sizeof mode, "%04o", static_cast<unsigned>(st.st_mode & 07777));
    return absl::FailedPreconditionError(absl::StrCat("admin token file ", path, ": mode ", mode,
                                                      " is wider than 0600; chmod 600 ", path));
  }
  if (st.st_size > kMaxTokenFileBytes) {
    close(fd);
    return absl::InvalidArgumentError(absl::StrCat("admin token file ", path, ": ", st.st_size,
                                                   " bytes; at most ", kMaxTokenFileBytes));
  }
  std::string text(static_cast<size_t>(st.st_size), '\0');
  size_t got = 0;
  while (got < text.size()) {
    const ssize_t n = read(fd, text.data() + got, text.size() - got);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    got += static_cast<size_t>(n);
  }
  close(fd);
  text.resize(got);
  return text;
}

}  // namespace

absl::StatusOr<std::unique_ptr<AdminAuthorizer>> AdminAuthorizer::Create(
    const v1::ServerConfig& config) {
  std::unique_ptr<AdminAuthorizer> a(new AdminAuthorizer());
  a->client_certificates_ = !config.tls().client_ca_file().empty();
  a->plaintext_ = config.tls().cert_file().empty();
  a->certificate_names_.assign(config.admin().certificate_names().begin(),
                               config.admin().certificate_names().end());
  a->token_file_ = config.admin().token_file();
  if (a->token_file_.empty()) return a;

  absl::StatusOr<std::string> text = ReadTokenFile(a->token_file_);
  if (!text.ok()) return text.status();
  // Every message below names the line and the rule, never a field's
  // bytes: a token pasted in the wrong place must not reach the log.
  absl::Status error;
  int line_number = 0;
  std::vector<int> lines_of_tokens;
  for (absl::string_view line : absl::StrSplit(A(*text), '\n')) {
    ++line_number;
    line = absl::StripAsciiWhitespace(line);  // also a Windows editor's \r
    if (line.empty() || absl::StartsWith(line, "#")) continue;
    const std::vector<absl::string_view> fields =
        absl::StrSplit(line, absl::ByAnyChar(" \t"), absl::SkipEmpty());
    auto bad = [&](auto... why) {
      return absl::InvalidArgumentError(
          absl::StrCat("admin token file ", a->token_file_, " line ", line_number, ": ", why...));
    };
    if (fields.size() != 2) {
      error = bad("expected NAME TOKEN, found ", fields.size(), " fields");
      break;
    }
    const std::string_view name(fields[0].data(), fields[0].size());
    const std::string_view token(fields[1].data(), fields[1].size());
    if (name.size() > kMaxNameBytes || !PrintableAscii(name)) {
      error = bad("the name must be 1 to 64 bytes 0x21-0x7E");
      break;
    }
    if (token.size() < kMinTokenBytes || !PrintableAscii(token)) {
      error = bad("the token must be at least ", kMinTokenBytes, " bytes 0x21-0x7E, found ",
                  token.size(), " bytes");
      break;
    }
    Token entry{std::string(name), Sha256(token)};
    for (size_t i = 0; i < a->tokens_.size() && error.ok(); ++i) {
      if (a->tokens_[i].name == entry.name) {
        error = bad("the name is line ", lines_of_tokens[i], "'s already");
      } else if (a->tokens_[i].sha256 == entry.sha256) {
        error = bad("the token is line ", lines_of_tokens[i], "'s already");
      }
    }
    if (!error.ok()) break;
    a->tokens_.push_back(std::move(entry));
    lines_of_tokens.push_back(line_number);
  }
  OPENSSL_cleanse(text->data(), text->size());
  if (!error.ok()) return error;
  if (a->tokens_.empty()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "admin token file ", a->token_file_, ": no token (lines are NAME TOKEN; # starts a comment)"));
  }
  return a;
}

absl::StatusOr<std::string> AdminAuthorizer::AuthorizeToken(std::string_view authorization) const {
  constexpr std::string_view kScheme = "bearer ";
  if (authorization.size() <= kScheme.size() ||
      !absl::EqualsIgnoreCase(A(authorization.substr(0, kScheme.size())), A(kScheme))) {
    return absl::UnauthenticatedError(
        "the authorization metadata is not 'Bearer TOKEN'");
  }
  const absl::string_view token =
      absl::StripAsciiWhitespace(A(authorization.substr(kScheme.size())));
  if (tokens_.empty()) {
    return absl::PermissionDeniedError(
        "the bearer token is not an admin's: this server has no admin token file "
        "(admin.token_file, --admin_tokens)");
  }
  const std::array<uint8_t, 32> digest = Sha256(std::string_view(token.data(), token.size()));
  // Every entry is compared, in constant time each, so the time taken
  // tells nothing about which entry came close.
  const Token* match = nullptr;
  for (const Token& t : tokens_) {
    if (CRYPTO_memcmp(t.sha256.data(), digest.data(), digest.size()) == 0) match = &t;
  }
  if (match == nullptr) {
    return absl::PermissionDeniedError("the bearer token is not one of the admin token file's");
  }
  return absl::StrCat("token:", match->name);
}

absl::StatusOr<std::string> AdminAuthorizer::Authorize(
    const grpc::ServerContextBase& context) const {
  // 1. A token, when the caller names one, decides alone.
  const auto& metadata = context.client_metadata();
  const auto [first, last] = metadata.equal_range(grpc::string_ref("authorization"));
  if (first != last) {
    if (std::next(first) != last) {
      return absl::UnauthenticatedError("more than one authorization metadata entry");
    }
    return AuthorizeToken(std::string_view(first->second.data(), first->second.size()));
  }

  // 2. A client certificate: present only when the handshake verified it
  // against --tls_client_ca (the port requires and verifies one then).
  if (client_certificates_) {
    const std::shared_ptr<const grpc::AuthContext> auth = context.auth_context();
    const std::vector<grpc::string_ref> subjects =
        auth == nullptr ? std::vector<grpc::string_ref>{}
                        : auth->FindPropertyValues(GRPC_X509_SUBJECT_PROPERTY_NAME);
    if (!subjects.empty()) {
      const std::string subject(subjects.front().data(), subjects.front().size());
      if (!certificate_names_.empty()) {
        bool listed = false;
        for (const grpc::string_ref& cn : auth->FindPropertyValues(GRPC_X509_CN_PROPERTY_NAME)) {
          const std::string_view name(cn.data(), cn.size());
          listed = listed || std::find(certificate_names_.begin(), certificate_names_.end(),
                                       name) != certificate_names_.end();
        }
        if (!listed) {
          return absl::PermissionDeniedError(
              absl::StrCat("the client certificate ", subject,
                           " is not an admin's: its common name is not in "
                           "admin.certificate_names"));
        }
      }
      return absl::StrCat("cert:", subject);
    }
  }

  // 3. Loopback, on a port where no certificate could have been presented.
  if (plaintext_) {
    const std::string peer = PeerKey(context.peer());
    if (IsLoopbackPeer(peer)) {
      absl::string_view address = A(peer);
      if (!absl::ConsumePrefix(&address, "ipv4:")) absl::ConsumePrefix(&address, "ipv6:");
      return absl::StrCat("loopback:", address);
    }
  }

  // 4. Nothing an admin holds.
  std::vector<std::string> accepted;
  if (!tokens_.empty()) {
    accepted.push_back("metadata 'authorization: Bearer TOKEN' with a token of the admin token file");
  }
  if (client_certificates_) {
    accepted.push_back(certificate_names_.empty()
                           ? "a client certificate from --tls_client_ca"
                           : "a client certificate from --tls_client_ca named in "
                             "admin.certificate_names");
  }
  if (plaintext_) accepted.push_back("a plaintext call from a loopback address");
  if (accepted.empty()) {
    return absl::UnauthenticatedError(
        "admin calls need a credential, and this server accepts none: start it with "
        "--admin_tokens FILE or --tls_client_ca FILE");
  }
  return absl::UnauthenticatedError(
      absl::StrCat("admin calls need ", absl::StrJoin(accepted, ", or ")));
}

std::string AdminAuthorizer::Describe() const {
  std::vector<std::string> ways;
  if (!tokens_.empty()) {
    ways.push_back(absl::StrCat(tokens_.size(), tokens_.size() == 1 ? " token" : " tokens",
                                " of ", token_file_));
  }
  if (client_certificates_) {
    ways.push_back(certificate_names_.empty()
                       ? std::string("any client certificate from --tls_client_ca")
                       : absl::StrCat("client certificates named ",
                                      absl::StrJoin(certificate_names_, ", ")));
  }
  if (plaintext_) ways.push_back("plaintext callers on loopback");
  if (ways.empty()) return "nobody (no --admin_tokens, no --tls_client_ca)";
  return absl::StrJoin(ways, "; ");
}

}  // namespace tinyfed::server
