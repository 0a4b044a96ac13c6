// Loading and checking tinyfed-server's configuration (ServerConfig in
// proto/tinyfed/v1/server_config.proto). Pure functions: safe for
// concurrent use.
#ifndef TINYFED_SERVER_SERVER_CONFIG_H_
#define TINYFED_SERVER_SERVER_CONFIG_H_

#include <cstdint>
#include <string>
#include <string_view>

#include "absl/status/statusor.h"
#include "aggregator.h"
#include "strategy.h"
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
// in one line. aggregation and privacy as server_config.proto says: an
// unknown strategy (the message lists the valid ones); trim_fraction set
// for a strategy other than trimmed-mean; privacy on without
// influence.max_update_norm, with influence.max_norm_median_multiple not
// 0, or with a strategy other than fedavg, fedavgm and fedadam; a noise
// sigma (noise_multiplier_q16 x the norm bound in master steps) outside
// [1, 2^52]; an epsilon_budget without noise. Beyond the ranges in server_config.proto: metrics_listen
// must be HOST:PORT like listen, on another port (unless either is 0);
// admin.certificate_names needs tls.client_ca_file, and each name is 1 to
// 64 bytes without control characters. admin.token_file is read, and
// judged, by AdminAuthorizer::Create. rollout, drift and evaluation are
// judged by RolloutSettingsFromConfig (rollout.h), with its messages.
absl::Status ValidateServerConfig(const v1::ServerConfig& config);

// The configured influence bounds in the aggregator's integers
// (aggregator.h): the multiples in Q16.16 to the nearest; the fixed norm
// bound in master steps (the head's weight_frac_bits) to the nearest, and
// at least one, so that a configured bound never means "none".
InfluenceBounds BoundsFromConfig(const v1::InfluencePolicy& policy, uint32_t frac_bits);

// Every aggregation parameter as the integer strategy.h's rules use:
// server_lr from policy.server_learning_rate, momentum and
// second_moment_decay in Q16.16 to the nearest; adam_learning_rate and
// adam_tau from the head's real units to units of 2^-16 master steps
// (x 2^(weight_frac_bits + 16)) to the nearest, at least 1; trim_fraction
// to millionths to the nearest (trimmed-mean only; 0 otherwise); the
// bounds of BoundsFromConfig; uniform_weights when privacy is on.
// REQUIRES: ValidateServerConfig(config) is OK.
StrategyParams StrategyParamsFromConfig(const v1::ServerConfig& config);

// Central DP as the mechanism uses it (privacy.h). Off when
// noise_multiplier_q16 is 0 (then norm_bound and sigma are 0 too).
struct PrivacyParams {
  uint32_t noise_multiplier_q16 = 0;  // privacy.noise_multiplier, Q16.16 to the nearest
  uint64_t norm_bound = 0;            // the clip bound, master steps (BoundsFromConfig)
  // The discrete Gaussian's sigma per value in units of 2^-16 master
  // steps: noise_multiplier_q16 x norm_bound, in [1, 2^52] when on.
  uint64_t sigma = 0;
  double delta = 0;
  double epsilon_budget = 0;  // 0: none
  bool enabled() const { return sigma != 0; }
};
// REQUIRES: ValidateServerConfig(config) is OK.
PrivacyParams PrivacyParamsFromConfig(const v1::ServerConfig& config);

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
