#include "tinyfed_common/fleet_keys.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <initializer_list>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "openssl/crypto.h"
#include "openssl/evp.h"
#include "openssl/core_names.h"
#include "openssl/params.h"
#include "openssl/rand.h"

namespace tinyfed {
namespace {

static_assert(sizeof(TINYFED_DEVICE_KEY_LABEL) == TINYFED_DEVICE_KEY_LABEL_SIZE,
              "the label's size in device_key.h counts its NUL");
static_assert(sizeof(TINYFED_CHECKIN_TAG_LABEL) == TINYFED_CHECKIN_TAG_LABEL_SIZE &&
                  sizeof(TINYFED_UPDATE_TAG_LABEL) == TINYFED_UPDATE_TAG_LABEL_SIZE,
              "the labels' sizes in request_auth.h count their NUL");
static_assert(Key256::kSize == TINYFED_FLEET_KEY_SIZE && Key256::kSize == TINYFED_DEVICE_KEY_SIZE);

// Owner read and write at most: group, other, execute and set-id bits are
// all refused, as ssh refuses a private key others can read.
constexpr mode_t kAllowedModeBits = S_IRUSR | S_IWUSR;

absl::Status ErrnoError(int error, const std::string& path, absl::string_view what) {
  return absl::ErrnoToStatus(error, absl::StrCat(path, ": ", what));
}

class FileDescriptor {
 public:
  explicit FileDescriptor(int fd) : fd_(fd) {}
  FileDescriptor(const FileDescriptor&) = delete;
  FileDescriptor& operator=(const FileDescriptor&) = delete;
  ~FileDescriptor() {
    if (fd_ >= 0) ::close(fd_);
  }
  int get() const { return fd_; }
  // Closes now, so that a failing close (a late write error) is seen.
  int Close() {
    const int rc = ::close(fd_);
    fd_ = -1;
    return rc;
  }

 private:
  int fd_;
};

std::string DirectoryOf(const std::string& path) {
  const size_t slash = path.rfind('/');
  if (slash == std::string::npos) return ".";
  if (slash == 0) return "/";
  return path.substr(0, slash);
}

}  // namespace

Key256& Key256::operator=(const Key256& other) {
  if (this != &other) {
    OPENSSL_cleanse(bytes_.data(), bytes_.size());
    bytes_ = other.bytes_;
  }
  return *this;
}

Key256::~Key256() { OPENSSL_cleanse(bytes_.data(), bytes_.size()); }

namespace {

[[noreturn]] void CryptoFailed(const char* what) {
  std::fprintf(stderr, "tinyfed: libcrypto's %s failed\n", what);
  std::abort();
}

// An HMAC-SHA256 context with its digest chosen and no key, made once.
// Every MAC below starts from a copy of it and sets only its key: in
// OpenSSL 3 a context made from scratch (or the one-shot HMAC()) looks the
// HMAC and SHA-256 implementations up again, under a lock every thread
// shares, on the server's request path. The template is never changed
// after it is made, so threads may copy it at once.
const EVP_MAC_CTX* HmacTemplate() {
  static const EVP_MAC_CTX* const prepared = [] {
    EVP_MAC* mac = EVP_MAC_fetch(nullptr, OSSL_MAC_NAME_HMAC, nullptr);
    if (mac == nullptr) CryptoFailed("HMAC fetch");
    EVP_MAC_CTX* ctx = EVP_MAC_CTX_new(mac);
    EVP_MAC_free(mac);  // the context holds its own reference
    char digest[] = "SHA256";
    const OSSL_PARAM params[] = {
        OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, digest, 0), OSSL_PARAM_END};
    if (ctx == nullptr || EVP_MAC_CTX_set_params(ctx, params) != 1) {
      CryptoFailed("HMAC-SHA256 setup");
    }
    return ctx;
  }();
  return prepared;
}

// HMAC-SHA256 under `key` of the concatenation of `parts`, into `out`.
void Hmac(absl::Span<const uint8_t> key, std::initializer_list<absl::Span<const uint8_t>> parts,
          uint8_t out[32]) {
  // OpenSSL takes a null key pointer as "keep the previous key", so an
  // empty key must still point somewhere.
  static const uint8_t kEmpty = 0;
  // EVP_MAC_CTX_dup takes a non-const context but only reads it.
  EVP_MAC_CTX* ctx = EVP_MAC_CTX_dup(const_cast<EVP_MAC_CTX*>(HmacTemplate()));
  if (ctx == nullptr) CryptoFailed("HMAC context");
  bool ok = EVP_MAC_init(ctx, key.empty() ? &kEmpty : key.data(), key.size(), nullptr) == 1;
  for (absl::Span<const uint8_t> part : parts) {
    ok = ok && (part.empty() || EVP_MAC_update(ctx, part.data(), part.size()) == 1);
  }
  size_t length = 0;
  ok = ok && EVP_MAC_final(ctx, out, &length, 32) == 1 && length == 32;
  EVP_MAC_CTX_free(ctx);
  if (!ok) CryptoFailed("HMAC-SHA256");
}

}  // namespace

void HmacSha256(absl::Span<const uint8_t> key, absl::Span<const uint8_t> message,
                uint8_t out[32]) {
  Hmac(key, {message}, out);
}

Tag256 RequestTag(const Key256& device_key, RequestType type, std::string_view body) {
  const bool check_in = type == RequestType::kCheckIn;
  const auto* label = reinterpret_cast<const uint8_t*>(check_in ? TINYFED_CHECKIN_TAG_LABEL
                                                                : TINYFED_UPDATE_TAG_LABEL);
  const size_t label_size =
      check_in ? TINYFED_CHECKIN_TAG_LABEL_SIZE : TINYFED_UPDATE_TAG_LABEL_SIZE;
  Tag256 tag;
  Hmac(device_key.bytes(),
       {absl::MakeConstSpan(label, label_size),
        absl::MakeConstSpan(reinterpret_cast<const uint8_t*>(body.data()), body.size())},
       tag.data());
  return tag;
}

bool TagMatches(const Tag256& expected, std::string_view tag) {
  return tag.size() == expected.size() &&
         CRYPTO_memcmp(expected.data(), tag.data(), expected.size()) == 0;
}

absl::Status ValidateDeviceId(std::string_view device_id) {
  if (device_id.empty() || device_id.size() > TINYFED_DEVICE_ID_MAX_SIZE) {
    return absl::InvalidArgumentError(absl::StrCat("device id: expected 1..",
                                                   TINYFED_DEVICE_ID_MAX_SIZE, " bytes, got ",
                                                   device_id.size()));
  }
  for (size_t i = 0; i < device_id.size(); ++i) {
    const auto u = static_cast<unsigned char>(device_id[i]);
    if (u < TINYFED_DEVICE_ID_MIN_CHAR || u > TINYFED_DEVICE_ID_MAX_CHAR) {
      return absl::InvalidArgumentError(absl::StrCat(
          "device id: expected printable ASCII (0x21..0x7E), got byte 0x",
          absl::Hex(u, absl::kZeroPad2), " at offset ", i));
    }
  }
  return absl::OkStatus();
}

absl::StatusOr<Key256> DeriveDeviceKey(const Key256& fleet_key, std::string_view device_id) {
  if (absl::Status s = ValidateDeviceId(device_id); !s.ok()) return s;
  // label (with its NUL) || id: at most 22 + 32 bytes, on the stack.
  uint8_t input[TINYFED_DEVICE_KEY_LABEL_SIZE + TINYFED_DEVICE_ID_MAX_SIZE];
  std::memcpy(input, TINYFED_DEVICE_KEY_LABEL, TINYFED_DEVICE_KEY_LABEL_SIZE);
  std::memcpy(input + TINYFED_DEVICE_KEY_LABEL_SIZE, device_id.data(), device_id.size());
  Key256 device_key;
  HmacSha256(fleet_key.bytes(),
             absl::MakeConstSpan(input, TINYFED_DEVICE_KEY_LABEL_SIZE + device_id.size()),
             device_key.mutable_data());
  return device_key;
}

absl::StatusOr<Key256> LoadFleetKey(const std::string& path) {
  // O_NONBLOCK: opening a FIFO must not hang before fstat can refuse it.
  FileDescriptor fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOCTTY));
  if (fd.get() < 0) {
    const int error = errno;
    if (error == ENOENT) return absl::NotFoundError(absl::StrCat(path, ": no such file"));
    return ErrnoError(error, path, "cannot open the fleet key file");
  }
  // The checks are on the open file, so the file read is the file checked.
  struct stat st;
  if (::fstat(fd.get(), &st) != 0) return ErrnoError(errno, path, "cannot stat");
  if (!S_ISREG(st.st_mode)) {
    return absl::FailedPreconditionError(absl::StrCat(path, ": not a regular file"));
  }
  const mode_t mode = st.st_mode & 07777;
  if ((mode & ~kAllowedModeBits) != 0) {
    return absl::FailedPreconditionError(
        absl::StrFormat("%s: mode %04o allows more than owner read/write (0600); "
                        "run chmod 600 on it",
                        path, mode));
  }
  if (st.st_size != static_cast<off_t>(Key256::kSize)) {
    return absl::InvalidArgumentError(absl::StrCat(path, ": expected exactly ", Key256::kSize,
                                                   " bytes (a raw 256-bit key), found ",
                                                   st.st_size));
  }
  Key256 key;
  size_t got = 0;
  while (got < Key256::kSize) {
    const ssize_t n = ::read(fd.get(), key.mutable_data() + got, Key256::kSize - got);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return ErrnoError(errno, path, "read failed");
    if (n == 0) break;
    got += static_cast<size_t>(n);
  }
  // The size may change between fstat and read (a writer at work).
  uint8_t extra = 0;
  ssize_t more = 0;
  do {
    more = ::read(fd.get(), &extra, 1);
  } while (more < 0 && errno == EINTR);
  OPENSSL_cleanse(&extra, 1);
  if (got != Key256::kSize || more != 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        path, ": expected exactly ", Key256::kSize, " bytes; the file changed while read"));
  }
  return key;
}

absl::StatusOr<Key256> CreateFleetKeyFile(const std::string& path) {
  Key256 key;
  if (RAND_bytes(key.mutable_data(), static_cast<int>(Key256::kSize)) != 1) {
    return absl::InternalError("the system's random generator failed; no key was written");
  }
  // O_EXCL with O_CREAT fails on any existing name, a symbolic link too.
  FileDescriptor fd(::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW,
                           S_IRUSR | S_IWUSR));
  if (fd.get() < 0) {
    const int error = errno;
    if (error == EEXIST) {
      return absl::AlreadyExistsError(
          absl::StrCat(path, ": already exists; refusing to overwrite a key"));
    }
    return ErrnoError(error, path, "cannot create the fleet key file");
  }
  auto fail = [&path](int error, absl::string_view what) {
    ::unlink(path.c_str());
    return ErrnoError(error, path, what);
  };
  // A umask can only have removed bits, but set the mode exactly anyway.
  if (::fchmod(fd.get(), S_IRUSR | S_IWUSR) != 0) return fail(errno, "cannot set mode 0600");
  size_t written = 0;
  while (written < Key256::kSize) {
    const ssize_t n = ::write(fd.get(), key.bytes().data() + written, Key256::kSize - written);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return fail(errno, "write failed");
    written += static_cast<size_t>(n);
  }
  if (::fsync(fd.get()) != 0) return fail(errno, "fsync failed");
  if (fd.Close() != 0) return fail(errno, "close failed");
  // The new name must survive a crash too, or a server restarted after one
  // would create a second key and every provisioned device would be lost.
  const std::string dir = DirectoryOf(path);
  FileDescriptor dir_fd(::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (dir_fd.get() < 0 || ::fsync(dir_fd.get()) != 0) {
    return fail(errno, absl::StrCat("cannot fsync its directory ", dir));
  }
  return key;
}

}  // namespace tinyfed
