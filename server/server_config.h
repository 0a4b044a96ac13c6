// Loading and checking tinyfed-server's configuration (ServerConfig in
// proto/tinyfed/v1/server_config.proto). Pure functions: safe for
// concurrent use.
#ifndef TINYFED_SERVER_SERVER_CONFIG_H_
#define TINYFED_SERVER_SERVER_CONFIG_H_

#include <cstdint>
#include <string>
#include <string_view>

#include "absl/status/statusor.h"
#include "tinyfed/v1/model.pb.h"
#include "tinyfed/v1/server_config.pb.h"

namespace tinyfed::server {

// Parses a ServerConfig in protobuf text format. INVALID_ARGUMENT with the
// line and column of a syntax error or unknown field; NOT_FOUND when the
// file cannot be read.
absl::StatusOr<v1::ServerConfig> LoadServerConfigFile(const std::string& path);
absl::StatusOr<v1::ServerConfig> ParseServerConfig(const std::string& text);

// The host and port of a listen address "HOST:PORT" or "[IPV6]:PORT"
// (brackets removed from host; an empty host means every interface, as for
// gRPC). INVALID_ARGUMENT, naming the address, when there is no port or it
// is not a decimal number in [0, 65535]; 0 asks the system for a free port.
struct ListenAddress {
  std::string host;
  uint16_t port = 0;
};
absl::StatusOr<ListenAddress> ParseListenAddress(std::string_view host_port);

// Fills every option left out with its documented default; an option set
// explicitly, to 0 too, is kept (ValidateServerConfig judges it).
void ApplyDefaults(v1::ServerConfig* config);

// INVALID_ARGUMENT naming the first option out of range (after defaults),
// in one line. Beyond the ranges in server_config.proto: metrics_listen
// must be HOST:PORT like listen, on another port (unless either is 0);
// admin.certificate_names needs tls.client_ca_file, and each name is 1 to
// 64 bytes without control characters. admin.token_file is read, and
// judged, by AdminAuthorizer::Create. rollout, drift and evaluation are
// judged by RolloutSettingsFromConfig (rollout.h), with its messages.
absl::Status ValidateServerConfig(const v1::ServerConfig& config);

// The head spec (wire form) the configuration describes.
v1::HeadSpec HeadSpecFromConfig(const v1::ServerConfig& config);

// The largest request each Coordinator method accepts, in bytes: the
// largest valid message for the configured head (the SDK's
// TINYFED_CHECKIN_MAX_SIZE and TINYFED_UPDATE_MAX_SIZE(f, c) in
// client-sdk/include/tinyfed/tinyfed.h), for CheckIn and SubmitUpdate in
// its SignedRequest (kSignedRequestOverheadBytes more), plus
// limits.request_slack_bytes. For the default 64 x 10 head and slack:
// CheckIn 700 bytes, SubmitUpdate 1,410, GetModel 518.
struct RequestLimits {
  uint32_t check_in_bytes = 0;
  uint32_t update_bytes = 0;
  uint32_t get_model_bytes = 0;
  uint32_t largest() const;
};
// What a SignedRequest adds around its body, at most: the device id field
// (key, length, 32 bytes), the body's key and length (a varint of up to 3
// bytes: any body below 2 MiB) and the tag field (key, length, 32 bytes);
// the SDK's TINYFED_SIGNED_ENVELOPE_MAX_SIZE.
inline constexpr uint32_t kSignedRequestOverheadBytes = (1 + 1 + 32) + (1 + 3) + (1 + 1 + 32);

// REQUIRES: ValidateServerConfig(config) is OK.
RequestLimits RequestLimitsFromConfig(const v1::ServerConfig& config);

// Version 1: the file named by config.initial_model, or all zeros.
// INVALID_ARGUMENT when the file is not a valid model of the configured head.
absl::StatusOr<v1::ModelVersion> InitialModel(const v1::ServerConfig& config, int64_t now_ms);

}  // namespace tinyfed::server

#endif  // TINYFED_SERVER_SERVER_CONFIG_H_
