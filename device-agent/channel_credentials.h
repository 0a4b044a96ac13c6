// The agent's side of the server's transport security: gRPC channel
// credentials from the --tls_ca, --tls_cert and --tls_key flags. Without a
// CA the channel is plaintext, and that is allowed only to a loopback
// address: an update sent in the clear over a network could be read and
// altered on the way. Safe for concurrent use.
#ifndef TINYFED_DEVICE_AGENT_CHANNEL_CREDENTIALS_H_
#define TINYFED_DEVICE_AGENT_CHANNEL_CREDENTIALS_H_

#include <memory>
#include <string>

#include <grpcpp/security/credentials.h>

#include "absl/status/statusor.h"

namespace tinyfed::agent {

struct ChannelTlsOptions {
  std::string ca_file;    // PEM CAs that signed the server's certificate; empty: plaintext
  std::string cert_file;  // PEM client certificate chain for mTLS (with key_file), or empty
  std::string key_file;   // PEM private key of cert_file, or empty
};

// INVALID_ARGUMENT when cert_file and key_file are not given together, when
// they are given without ca_file, or when ca_file is empty and `server`
// (HOST:PORT) is not a loopback address; the message names the flag to use.
absl::Status ValidateChannelTlsOptions(const std::string& server, const ChannelTlsOptions& tls);

// The credentials for a channel to `server`: TLS verifying the server's
// certificate against ca_file (and presenting cert_file when set), or
// plaintext. Errors: those of ValidateChannelTlsOptions(); NOT_FOUND or
// INVALID_ARGUMENT naming the flag and the file that cannot be read or
// holds no PEM certificate or key, or a key that is not the certificate's.
absl::StatusOr<std::shared_ptr<grpc::ChannelCredentials>> MakeChannelCredentials(
    const std::string& server, const ChannelTlsOptions& tls);

}  // namespace tinyfed::agent

#endif  // TINYFED_DEVICE_AGENT_CHANNEL_CREDENTIALS_H_
