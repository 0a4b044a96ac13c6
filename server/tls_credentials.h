// Transport security of the gRPC port, for the server and for the agent
// that talks to it: which addresses may go without TLS, and gRPC
// credentials built from PEM files that are checked first, so that a
// missing file, a file without the expected PEM block, or a key that does
// not belong to its certificate is one clear error instead of a gRPC
// internal log line at the first handshake. Pure functions apart from
// reading the files: safe for concurrent use.
#ifndef TINYFED_SERVER_TLS_CREDENTIALS_H_
#define TINYFED_SERVER_TLS_CREDENTIALS_H_

#include <memory>
#include <string>
#include <string_view>

#include <grpcpp/security/server_credentials.h>

#include "absl/status/statusor.h"
#include "tinyfed/v1/server_config.pb.h"

namespace tinyfed::server {

// True when HOST of "HOST:PORT" ("[V6]:PORT" for IPv6) is a loopback
// address: "localhost", 127.0.0.0/8, ::1, or ::ffff:127.x.y.z. Anything
// else, a wildcard such as 0.0.0.0 or a target with a scheme included,
// counts as reachable from the network.
bool IsLoopbackAddress(std::string_view host_port);

// The file's text when it holds at least one PEM certificate.
// NOT_FOUND when it cannot be read, INVALID_ARGUMENT when it holds no
// certificate; each message starts with `flag` (e.g. "--tls_cert") and the
// path.
absl::StatusOr<std::string> ReadPemCertificates(const std::string& path, const char* flag);

// The file's text when it holds an unencrypted PEM private key (an
// encrypted one is refused: the server could not ask for its passphrase).
// Errors as ReadPemCertificates(). The caller should wipe the text when
// done with it.
absl::StatusOr<std::string> ReadPemPrivateKey(const std::string& path, const char* flag);

// INVALID_ARGUMENT when the first certificate of `cert_pem` is not the
// public half of `key_pem`.
absl::Status CheckKeyMatchesCertificate(const std::string& cert_pem, const std::string& key_pem);

// The credentials of the listening port: TLS from tls.cert_file and
// tls.key_file (with client certificates required and verified against
// tls.client_ca_file when it is set), plaintext when cert_file is empty.
// REQUIRES: ValidateServerConfig() accepted the configuration holding `tls`.
// Errors: those of the Read* functions and CheckKeyMatchesCertificate().
absl::StatusOr<std::shared_ptr<grpc::ServerCredentials>> MakeServerCredentials(
    const v1::TlsConfig& tls);

}  // namespace tinyfed::server

#endif  // TINYFED_SERVER_TLS_CREDENTIALS_H_
