#include "keys_command.h"

#include <cstdint>
#include <string_view>

#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "openssl/crypto.h"
#include "tinyfed_common/fleet_keys.h"

namespace tinyfed::admin {
namespace {

// The id as a C string literal. Device ids are printable ASCII, but '"' and
// '\' end or bend a literal, '*' could close the comment the id also
// appears in ("*/"), and '?' could start a C99 trigraph ("??/"): all four
// are written as octal escapes.
std::string CStringLiteral(std::string_view id) {
  std::string out = "\"";
  for (const char ch : id) {
    if (ch == '"' || ch == '\\' || ch == '*' || ch == '?') {
      absl::StrAppendFormat(&out, "\\%03o", static_cast<unsigned char>(ch));
    } else {
      out.push_back(ch);
    }
  }
  out.push_back('"');
  return out;
}

std::string CHeader(std::string_view device_id, const Key256& key) {
  const std::string literal = CStringLiteral(device_id);
  // Room for the whole header up front: a reallocation would leave a copy
  // of the key bytes in freed memory that no cleanse reaches.
  std::string out;
  out.reserve(1024);
  absl::StrAppend(&out,
      "/* The key of tinyfed device ", literal, ", made by `tinyfed-admin keys device`.\n"
      " * Secret: it lets its holder speak for this device. Keep it out of version\n"
      " * control and build logs. Include this header in one source file only. */\n"
      "#ifndef TINYFED_PROVISIONED_DEVICE_KEY_H_\n"
      "#define TINYFED_PROVISIONED_DEVICE_KEY_H_\n\n"
      "#include <stdint.h>\n\n"
      "static const char tinyfed_device_id[] = ", literal, ";\n\n"
      "static const uint8_t tinyfed_device_key[32] = {");
  const absl::Span<const uint8_t> bytes = key.bytes();
  for (size_t i = 0; i < bytes.size(); ++i) {
    absl::StrAppend(&out, i % 8 == 0 ? "\n    " : " ");
    absl::StrAppendFormat(&out, "0x%02x,", bytes[i]);
  }
  absl::StrAppend(&out, "\n};\n\n#endif /* TINYFED_PROVISIONED_DEVICE_KEY_H_ */\n");
  return out;
}

}  // namespace

absl::Status RunKeysNew(const std::string& out, FILE* stdout_file) {
  if (out.empty()) return absl::InvalidArgumentError("keys new: missing --out FILE");
  absl::StatusOr<Key256> key = CreateFleetKeyFile(out);
  if (!key.ok()) return key.status();
  std::fprintf(stdout_file, "wrote a new fleet key to %s (mode 0600)\n", out.c_str());
  return absl::OkStatus();
}

absl::Status RunKeysDevice(const std::string& fleet, const std::string& device_id,
                           const std::string& format, FILE* stdout_file) {
  if (fleet.empty()) return absl::InvalidArgumentError("keys device: missing --fleet FILE");
  if (device_id.empty()) return absl::InvalidArgumentError("keys device: missing --device ID");
  if (format != "hex" && format != "c") {
    return absl::InvalidArgumentError(
        absl::StrCat("keys device: --format: expected 'hex' or 'c', got '", format, "'"));
  }
  if (absl::Status s = ValidateDeviceId(device_id); !s.ok()) {
    return absl::InvalidArgumentError(absl::StrCat("keys device: --device: ", s.message()));
  }
  absl::StatusOr<Key256> fleet_key = LoadFleetKey(fleet);
  if (!fleet_key.ok()) return fleet_key.status();
  absl::StatusOr<Key256> key = DeriveDeviceKey(*fleet_key, device_id);
  if (!key.ok()) return key.status();

  std::string text;
  if (format == "hex") {
    text.reserve(2 * Key256::kSize + 1);
    for (const uint8_t b : key->bytes()) absl::StrAppendFormat(&text, "%02x", b);
    text.push_back('\n');
  } else {
    text = CHeader(device_id, *key);
  }
  const bool written = std::fwrite(text.data(), 1, text.size(), stdout_file) == text.size() &&
                       std::fflush(stdout_file) == 0;
  // The text holds the device key: wipe it before it is freed.
  OPENSSL_cleanse(text.data(), text.size());
  if (!written) return absl::UnavailableError("keys device: cannot write to standard output");
  return absl::OkStatus();
}

}  // namespace tinyfed::admin
