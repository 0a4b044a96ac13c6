#include "tls_credentials.h"

#include <arpa/inet.h>

#include <fstream>
#include <sstream>

#include <grpcpp/security/server_credentials.h>
#include <openssl/bio.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#include "absl/strings/str_cat.h"

namespace tinyfed::server {
namespace {

struct BioFree {
  void operator()(BIO* b) const { BIO_free(b); }
};
struct X509Free {
  void operator()(X509* x) const { X509_free(x); }
};
struct KeyFree {
  void operator()(EVP_PKEY* k) const { EVP_PKEY_free(k); }
};
using Bio = std::unique_ptr<BIO, BioFree>;

Bio MemoryBio(const std::string& text) {
  return Bio(BIO_new_mem_buf(text.data(), static_cast<int>(text.size())));
}

// OpenSSL would prompt on the terminal for an encrypted key's passphrase;
// a server started by systemd has no one to answer.
int RefusePassphrase(char*, int, int, void*) { return 0; }

std::unique_ptr<X509, X509Free> FirstCertificate(const std::string& pem) {
  Bio bio = MemoryBio(pem);
  std::unique_ptr<X509, X509Free> cert(PEM_read_bio_X509(bio.get(), nullptr, nullptr, nullptr));
  ERR_clear_error();
  return cert;
}

std::unique_ptr<EVP_PKEY, KeyFree> PrivateKey(const std::string& pem) {
  Bio bio = MemoryBio(pem);
  std::unique_ptr<EVP_PKEY, KeyFree> key(
      PEM_read_bio_PrivateKey(bio.get(), nullptr, &RefusePassphrase, nullptr));
  ERR_clear_error();
  return key;
}

absl::StatusOr<std::string> ReadText(const std::string& path, const char* flag) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return absl::NotFoundError(absl::StrCat(flag, " ", path, ": cannot read the file"));
  std::ostringstream text;
  text << in.rdbuf();
  return text.str();
}

void Wipe(std::string* secret) { OPENSSL_cleanse(secret->data(), secret->size()); }

}  // namespace

bool IsLoopbackAddress(std::string_view host_port) {
  std::string host;
  if (!host_port.empty() && host_port.front() == '[') {
    const size_t close = host_port.find(']');
    if (close == std::string_view::npos) return false;
    host = std::string(host_port.substr(1, close - 1));
  } else {
    const size_t colon = host_port.rfind(':');
    if (colon == std::string_view::npos) return false;
    host = std::string(host_port.substr(0, colon));
  }
  if (host == "localhost") return true;
  in_addr v4{};
  if (inet_pton(AF_INET, host.c_str(), &v4) == 1) {
    return (ntohl(v4.s_addr) >> 24) == 127;
  }
  in6_addr v6{};
  if (inet_pton(AF_INET6, host.c_str(), &v6) == 1) {
    if (IN6_IS_ADDR_LOOPBACK(&v6)) return true;
    return IN6_IS_ADDR_V4MAPPED(&v6) && v6.s6_addr[12] == 127;
  }
  return false;
}

absl::StatusOr<std::string> ReadPemCertificates(const std::string& path, const char* flag) {
  absl::StatusOr<std::string> text = ReadText(path, flag);
  if (!text.ok()) return text;
  if (FirstCertificate(*text) == nullptr) {
    return absl::InvalidArgumentError(
        absl::StrCat(flag, " ", path, ": no PEM certificate (BEGIN CERTIFICATE) in the file"));
  }
  return text;
}

absl::StatusOr<std::string> ReadPemPrivateKey(const std::string& path, const char* flag) {
  absl::StatusOr<std::string> text = ReadText(path, flag);
  if (!text.ok()) return text;
  if (PrivateKey(*text) == nullptr) {
    Wipe(&*text);
    return absl::InvalidArgumentError(absl::StrCat(
        flag, " ", path, ": no unencrypted PEM private key (BEGIN PRIVATE KEY) in the file"));
  }
  return text;
}

absl::Status CheckKeyMatchesCertificate(const std::string& cert_pem, const std::string& key_pem) {
  std::unique_ptr<X509, X509Free> cert = FirstCertificate(cert_pem);
  std::unique_ptr<EVP_PKEY, KeyFree> key = PrivateKey(key_pem);
  const bool match = cert != nullptr && key != nullptr && X509_check_private_key(cert.get(), key.get()) == 1;
  ERR_clear_error();
  if (!match) {
    return absl::InvalidArgumentError("the private key is not the key of the certificate");
  }
  return absl::OkStatus();
}

absl::StatusOr<std::shared_ptr<grpc::ServerCredentials>> MakeServerCredentials(
    const v1::TlsConfig& tls) {
  if (tls.cert_file().empty()) return grpc::InsecureServerCredentials();
  absl::StatusOr<std::string> cert = ReadPemCertificates(tls.cert_file(), "--tls_cert");
  if (!cert.ok()) return cert.status();
  absl::StatusOr<std::string> key = ReadPemPrivateKey(tls.key_file(), "--tls_key");
  if (!key.ok()) return key.status();
  if (absl::Status s = CheckKeyMatchesCertificate(*cert, *key); !s.ok()) {
    Wipe(&*key);
    return absl::InvalidArgumentError(
        absl::StrCat("--tls_key ", tls.key_file(), ": not the key of --tls_cert ", tls.cert_file()));
  }
  std::string client_ca;
  if (!tls.client_ca_file().empty()) {
    absl::StatusOr<std::string> ca = ReadPemCertificates(tls.client_ca_file(), "--tls_client_ca");
    if (!ca.ok()) {
      Wipe(&*key);
      return ca.status();
    }
    client_ca = std::move(*ca);
  }
  grpc::SslServerCredentialsOptions options(
      client_ca.empty() ? GRPC_SSL_DONT_REQUEST_CLIENT_CERTIFICATE
                        : GRPC_SSL_REQUEST_AND_REQUIRE_CLIENT_CERTIFICATE_AND_VERIFY);
  options.pem_root_certs = client_ca;
  options.pem_key_cert_pairs.push_back({*key, *cert});
  std::shared_ptr<grpc::ServerCredentials> credentials = grpc::SslServerCredentials(options);
  // gRPC keeps its own copy; ours need not outlive this call.
  Wipe(&*key);
  Wipe(&options.pem_key_cert_pairs.front().private_key);
  return credentials;
}

}  // namespace tinyfed::server
