// Who may call the Admin service (proto/tinyfed/v1/admin.proto), and as
// whom the audit log records them.
//
// A call is an admin's, checked in this order:
//   1. metadata "authorization: Bearer TOKEN" with a token of the admin
//      token file (ServerConfig.admin.token_file): actor "token:NAME".
//      A bearer token that is not in the file -> PERMISSION_DENIED (also
//      when a certificate or loopback would have passed: a caller who
//      names a credential is judged by it). Tokens are compared by their
//      SHA-256 in constant time; neither a token nor its hash is logged.
//   2. a client certificate that the TLS handshake verified against
//      --tls_client_ca: actor "cert:SUBJECT". When
//      ServerConfig.admin.certificate_names is not empty, a certificate
//      whose subject common name is not listed -> PERMISSION_DENIED.
//   3. a server serving plaintext (no --tls_cert: on loopback, or anywhere
//      with --insecure_plaintext) and a caller on a loopback address:
//      actor "loopback:ADDRESS". Such a server has no transport on which a
//      certificate could be presented, and every local user can reach it
//      anyway; a plaintext server reached from another host gets 4.
//   4. anything else -> UNAUTHENTICATED, naming what would be accepted.
//
// Safe for concurrent use; immutable after Create().
#ifndef TINYFED_SERVER_ADMIN_AUTH_H_
#define TINYFED_SERVER_ADMIN_AUTH_H_

#include <array>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include <grpcpp/grpcpp.h>

#include "absl/status/statusor.h"
#include "tinyfed/v1/server_config.pb.h"

namespace tinyfed::server {

class AdminAuthorizer {
 public:
  // From the validated `config` (its admin and tls parts). Reads
  // config.admin().token_file() when set: NOT_FOUND when missing,
  // FAILED_PRECONDITION for a mode wider than 0600, INVALID_ARGUMENT
  // naming the line for a malformed line, a duplicate name or token, or a
  // file with no token; messages never quote a token.
  static absl::StatusOr<std::unique_ptr<AdminAuthorizer>> Create(const v1::ServerConfig& config);

  // The actor the call acts as, or the status to answer it with.
  absl::StatusOr<std::string> Authorize(const grpc::ServerContextBase& context) const;

  // How many tokens the file held (for the start-up log line).
  size_t token_count() const { return tokens_.size(); }

  // How admins are recognized, for the start-up log line, e.g. "2 tokens
  // of /etc/tinyfed/admin.tokens, client certificates named alice or bob";
  // never a token.
  std::string Describe() const;

  AdminAuthorizer(const AdminAuthorizer&) = delete;
  AdminAuthorizer& operator=(const AdminAuthorizer&) = delete;

 private:
  struct Token {
    std::string name;
    std::array<uint8_t, 32> sha256;
  };
  AdminAuthorizer() = default;

  // The actor of the token named by `authorization` (the metadata's value),
  // or PERMISSION_DENIED / UNAUTHENTICATED as the contract says.
  absl::StatusOr<std::string> AuthorizeToken(std::string_view authorization) const;

  std::string token_file_;
  std::vector<Token> tokens_;
  std::vector<std::string> certificate_names_;  // empty: any verified certificate
  bool client_certificates_ = false;            // tls.client_ca_file is set
  bool plaintext_ = false;                      // no tls.cert_file
};

}  // namespace tinyfed::server

#endif  // TINYFED_SERVER_ADMIN_AUTH_H_
