#include "channel_credentials.h"

#include <openssl/crypto.h>

#include "absl/strings/str_cat.h"
#include "tls_credentials.h"

namespace tinyfed::agent {

absl::Status ValidateChannelTlsOptions(const std::string& server, const ChannelTlsOptions& tls) {
  if (tls.cert_file.empty() != tls.key_file.empty()) {
    return absl::InvalidArgumentError("--tls_cert and --tls_key go together");
  }
  if (tls.ca_file.empty() && !tls.cert_file.empty()) {
    return absl::InvalidArgumentError("--tls_cert needs --tls_ca (the server's CA)");
  }
  if (tls.ca_file.empty() && !server::IsLoopbackAddress(server)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "--server ", server, " is not a loopback address: give --tls_ca FILE (the CA of the "
        "server's certificate); plaintext goes to loopback addresses only"));
  }
  return absl::OkStatus();
}

absl::StatusOr<std::shared_ptr<grpc::ChannelCredentials>> MakeChannelCredentials(
    const std::string& server, const ChannelTlsOptions& tls) {
  if (absl::Status s = ValidateChannelTlsOptions(server, tls); !s.ok()) return s;
  if (tls.ca_file.empty()) return grpc::InsecureChannelCredentials();
  grpc::SslCredentialsOptions options;
  absl::StatusOr<std::string> ca = server::ReadPemCertificates(tls.ca_file, "--tls_ca");
  if (!ca.ok()) return ca.status();
  options.pem_root_certs = std::move(*ca);
  if (!tls.cert_file.empty()) {
    absl::StatusOr<std::string> cert = server::ReadPemCertificates(tls.cert_file, "--tls_cert");
    if (!cert.ok()) return cert.status();
    absl::StatusOr<std::string> key = server::ReadPemPrivateKey(tls.key_file, "--tls_key");
    if (!key.ok()) return key.status();
    if (!server::CheckKeyMatchesCertificate(*cert, *key).ok()) {
      OPENSSL_cleanse(key->data(), key->size());
      return absl::InvalidArgumentError(absl::StrCat("--tls_key ", tls.key_file,
                                                     ": not the key of --tls_cert ", tls.cert_file));
    }
    options.pem_cert_chain = std::move(*cert);
    options.pem_private_key = std::move(*key);
  }
  std::shared_ptr<grpc::ChannelCredentials> credentials = grpc::SslCredentials(options);
  // gRPC keeps its own copy; ours need not outlive this call.
  OPENSSL_cleanse(options.pem_private_key.data(), options.pem_private_key.size());
  return credentials;
}

}  // namespace tinyfed::agent
