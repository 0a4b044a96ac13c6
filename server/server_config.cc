#include "server_config.h"

#include <algorithm>
#include <cmath>
#include <fstream>
#include <optional>
#include <sstream>

#include "absl/strings/str_cat.h"
#include "google/protobuf/io/tokenizer.h"
#include "google/protobuf/text_format.h"
#include "head.h"
#include "rollout.h"
#include "tls_credentials.h"
#include "tinyfed_common/host_numerics.h"

namespace tinyfed::server {
namespace {

class CollectFirstError : public google::protobuf::io::ErrorCollector {
 public:
  void AddError(int line, google::protobuf::io::ColumnNumber column,
                const std::string& message) override {
    if (first_.empty()) first_ = absl::StrCat("line ", line + 1, ", column ", column + 1, ": ", message);
  }
  const std::string& first() const { return first_; }

 private:
  std::string first_;
};

absl::StatusOr<std::string> ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return absl::NotFoundError(absl::StrCat("cannot read ", path));
  std::ostringstream buffer;
  buffer << in.rdbuf();
  return buffer.str();
}

}  // namespace

namespace {

// ParseListenAddress for the option named `option` (its errors name it).
absl::StatusOr<ListenAddress> ParseAddressOption(std::string_view option,
                                                 std::string_view host_port) {
  auto bad = [&](auto... why) {
    return absl::InvalidArgumentError(
        absl::StrCat(std::string(option), " must be HOST:PORT with a port in [0, 65535], got '",
                     std::string(host_port),
                     "'", why...));
  };
  const size_t colon = host_port.rfind(':');
  if (colon == std::string_view::npos) return bad();
  std::string_view host = host_port.substr(0, colon);
  const std::string_view port = host_port.substr(colon + 1);
  // gRPC reads the port modulo 2^16 (99999 serves on 34463): only decimal
  // digits up to 65535 are taken, so the port served is the port asked for.
  if (port.empty() || port.size() > 5 ||
      port.find_first_not_of("0123456789") != std::string_view::npos) {
    return bad();
  }
  uint32_t number = 0;
  for (char d : port) number = number * 10 + static_cast<uint32_t>(d - '0');
  if (number > 65535) return bad(" (port ", number, " is above 65535)");
  if (host.size() >= 2 && host.front() == '[' && host.back() == ']') {
    host = host.substr(1, host.size() - 2);
  }
  return ListenAddress{std::string(host), static_cast<uint16_t>(number)};
}

}  // namespace

absl::StatusOr<ListenAddress> ParseListenAddress(std::string_view host_port) {
  return ParseAddressOption("listen", host_port);
}

absl::StatusOr<v1::ServerConfig> ParseServerConfig(const std::string& text) {
  v1::ServerConfig config;
  google::protobuf::TextFormat::Parser parser;
  CollectFirstError errors;
  parser.RecordErrorsTo(&errors);
  if (!parser.ParseFromString(text, &config)) {
    return absl::InvalidArgumentError(absl::StrCat("config: ", errors.first()));
  }
  return config;
}

absl::StatusOr<v1::ServerConfig> LoadServerConfigFile(const std::string& path) {
  absl::StatusOr<std::string> text = ReadFile(path);
  if (!text.ok()) return text.status();
  absl::StatusOr<v1::ServerConfig> config = ParseServerConfig(*text);
  if (!config.ok()) {
    return absl::InvalidArgumentError(absl::StrCat(path, ": ", config.status().message()));
  }
  return config;
}

// Presence, not zero, decides: an explicit 0 is kept for ValidateServerConfig
// to refuse (or, for the bounds that 0 turns off, to accept).
void ApplyDefaults(v1::ServerConfig* c) {
  if (c->listen().empty()) c->set_listen("127.0.0.1:50051");
  if (c->db().empty()) c->set_db("tinyfed.db");
  if (!c->has_max_pending_writes()) c->set_max_pending_writes(4096);
  v1::HeadConfig* h = c->mutable_head();
  if (!h->has_feature_count()) h->set_feature_count(64);
  if (!h->has_class_count()) h->set_class_count(10);
  if (!h->has_feature_scale()) h->set_feature_scale(6.0 / 127.0);
  if (!h->has_weight_frac_bits()) h->set_weight_frac_bits(12);
  v1::PlanConfig* p = c->mutable_plan();
  if (!p->has_epochs()) p->set_epochs(2);
  if (!p->has_batch_size()) p->set_batch_size(8);
  if (!p->has_learning_rate()) p->set_learning_rate(0.1);
  v1::RoundPolicy* r = c->mutable_policy();
  if (!r->has_target_updates()) r->set_target_updates(10);
  if (!r->has_min_updates()) r->set_min_updates(std::max<uint32_t>(1, r->target_updates() / 2));
  if (!r->has_over_selection()) r->set_over_selection(1.3);
  if (!r->has_round_deadline_ms()) r->set_round_deadline_ms(60000);
  if (!r->has_server_learning_rate()) r->set_server_learning_rate(1.0);
  if (!r->has_retry_after_ms()) r->set_retry_after_ms(5000);
  // Unset means the default; an explicit 0 turns a bound off.
  v1::InfluencePolicy* b = c->mutable_influence();
  if (!b->has_max_weight_median_multiple()) b->set_max_weight_median_multiple(3);
  if (!b->has_max_update_norm()) b->set_max_update_norm(0);
  if (!b->has_max_norm_median_multiple()) b->set_max_norm_median_multiple(2);
  v1::EdgeLimits* l = c->mutable_limits();
  if (!l->has_max_concurrent_streams()) l->set_max_concurrent_streams(1024);
  if (!l->has_max_connection_idle_ms()) l->set_max_connection_idle_ms(300'000);
  if (!l->has_request_slack_bytes()) l->set_request_slack_bytes(512);
  v1::CheckInLimits* k = c->mutable_checkin_limits();
  if (!k->has_peer_task_share()) k->set_peer_task_share(0.25);
  if (!k->has_peer_checkins_per_second()) k->set_peer_checkins_per_second(20);
  if (!k->has_peer_burst()) k->set_peer_burst(40);
  if (!k->has_device_checkins_per_second()) k->set_device_checkins_per_second(1);
  if (!k->has_device_burst()) k->set_device_burst(10);
  if (!k->has_exempt_loopback()) k->set_exempt_loopback(true);
  if (!k->has_max_tracked()) k->set_max_tracked(65536);
  // Staged rollout, drift and evaluation-only tasks (rollout.h's
  // RolloutSettings holds the same numbers).
  v1::RolloutPolicy* ro = c->mutable_rollout();
  if (!ro->has_enabled()) ro->set_enabled(true);
  if (!ro->has_canary_fraction()) ro->set_canary_fraction(0.1);
  if (!ro->has_min_devices()) ro->set_min_devices(5);
  if (!ro->has_tolerance()) ro->set_tolerance(0.01);
  v1::DriftPolicy* d = c->mutable_drift();
  if (!d->has_window_rounds()) d->set_window_rounds(3);
  if (!d->has_margin()) d->set_margin(0.05);
  if (!d->has_min_devices()) d->set_min_devices(5);
  v1::EvaluationPolicy* e = c->mutable_evaluation();
  if (!e->has_tasks_per_round()) e->set_tasks_per_round(32);
  // Aggregation strategy and central DP (strategy.h, privacy.h). The trim
  // fraction is defaulted for the trimmed mean only, so that one written
  // for another strategy (which would ignore it) is refused, not shadowed.
  v1::AggregationPolicy* a = c->mutable_aggregation();
  if (a->strategy().empty()) a->set_strategy("fedavg");
  if (!a->has_trim_fraction() && a->strategy() == "trimmed-mean") a->set_trim_fraction(0.2);
  if (!a->has_momentum()) a->set_momentum(0.9);
  if (!a->has_second_moment_decay()) a->set_second_moment_decay(0.99);
  if (!a->has_adam_learning_rate()) a->set_adam_learning_rate(0.01);
  if (!a->has_adam_tau()) a->set_adam_tau(0.001);
  v1::PrivacyPolicy* dp = c->mutable_privacy();
  if (!dp->has_noise_multiplier()) dp->set_noise_multiplier(0);
  if (!dp->has_delta()) dp->set_delta(1e-5);
  if (!dp->has_epsilon_budget()) dp->set_epsilon_budget(0);
}

namespace {

// A real number of master steps (the head's units) in units of 2^-16
// master steps, rounded to nearest, at least 1: a configured step or tau
// never becomes 0 (the proto's lower bounds are one unit at the default
// 12 fraction bits; a coarser master format would round them to 0).
uint64_t ToSubSteps(double real, uint32_t frac_bits) {
  return static_cast<uint64_t>(std::max<long long>(
      1, std::llround(std::ldexp(real, static_cast<int>(frac_bits) + 16))));
}

// The noise multiplier as the mechanism uses it: Q16.16, to the nearest.
uint32_t NoiseMultiplierQ16(const v1::PrivacyPolicy& privacy) {
  return ToQ16(privacy.noise_multiplier());
}

absl::Status ValidateAggregation(const v1::ServerConfig& c) {
  auto bad = [](auto... parts) { return absl::InvalidArgumentError(absl::StrCat(parts...)); };
  const v1::AggregationPolicy& a = c.aggregation();
  const std::optional<StrategyKind> kind = ParseStrategy(a.strategy());
  if (!kind) {
    return bad("aggregation.strategy must be one of fedavg, trimmed-mean, median, fedavgm, "
               "fedadam; got '", a.strategy(), "'");
  }
  if (a.has_trim_fraction() && *kind != StrategyKind::kTrimmedMean) {
    return bad("aggregation.trim_fraction applies to strategy trimmed-mean only, not ",
               a.strategy());
  }
  // Taken to the nearest millionth (StrategyParams): a beta that rounds to
  // 1/2 would trim every update of an even round.
  if (a.has_trim_fraction() &&
      !(a.trim_fraction() >= 0 && std::llround(a.trim_fraction() * 1e6) < 500'000)) {
    return bad("aggregation.trim_fraction must be in [0, 0.5), got ", a.trim_fraction());
  }
  // Q16.16 to the nearest: a value within 2^-17 of 1 would round to 1,
  // which the optimizer's (1 - beta) terms cannot take.
  for (const auto& [name, value] :
       {std::pair<const char*, double>{"momentum", a.momentum()},
        std::pair<const char*, double>{"second_moment_decay", a.second_moment_decay()}}) {
    if (!(value >= 0 && value < 1) || ToQ16(value) >= 65536) {
      return bad("aggregation.", name, " must be in [0, 1) (to the nearest 2^-16), got ", value);
    }
  }
  if (!(a.adam_learning_rate() >= std::ldexp(1.0, -20) && a.adam_learning_rate() <= 1)) {
    return bad("aggregation.adam_learning_rate must be in [2^-20, 1], got ",
               a.adam_learning_rate());
  }
  if (!(a.adam_tau() >= std::ldexp(1.0, -28) && a.adam_tau() <= 1)) {
    return bad("aggregation.adam_tau must be in [2^-28, 1], got ", a.adam_tau());
  }

  const v1::PrivacyPolicy& p = c.privacy();
  if (!(p.noise_multiplier() == 0 || (p.noise_multiplier() >= 0.1 && p.noise_multiplier() <= 1000))) {
    return bad("privacy.noise_multiplier must be 0 (off) or in [0.1, 1000], got ",
               p.noise_multiplier());
  }
  if (!(p.delta() > 0 && p.delta() <= 0.1)) {
    return bad("privacy.delta must be in (0, 0.1], got ", p.delta());
  }
  if (!(p.epsilon_budget() >= 0 && std::isfinite(p.epsilon_budget()))) {
    return bad("privacy.epsilon_budget must be 0 (none) or positive, got ", p.epsilon_budget());
  }
  if (p.noise_multiplier() == 0) {
    if (p.epsilon_budget() > 0) {
      return bad("privacy.epsilon_budget needs privacy.noise_multiplier: without noise no "
                 "version spends a measured budget");
    }
    return absl::OkStatus();
  }
  const v1::InfluencePolicy& b = c.influence();
  if (!(b.max_update_norm() > 0)) {
    return bad("privacy.noise_multiplier needs influence.max_update_norm > 0: the noise is "
               "scaled to that clip bound");
  }
  if (b.max_norm_median_multiple() != 0) {
    return bad("privacy.noise_multiplier needs influence.max_norm_median_multiple: 0 (a bound "
               "taken from the round's median depends on the other devices' data), got ",
               b.max_norm_median_multiple());
  }
  if (*kind != StrategyKind::kFedAvg && *kind != StrategyKind::kFedAvgM &&
      *kind != StrategyKind::kFedAdam) {
    return bad("privacy.noise_multiplier needs aggregation.strategy fedavg, fedavgm or fedadam, "
               "not ", a.strategy(), " (its sensitivity is not the noise's)");
  }
  const unsigned __int128 sigma =
      static_cast<unsigned __int128>(NoiseMultiplierQ16(p)) *
      BoundsFromConfig(b, c.head().weight_frac_bits()).norm_bound;
  // The sampler's exact range (privacy.h DiscreteGaussianNoise).
  if (sigma < 1 || sigma > (static_cast<unsigned __int128>(1) << 52)) {
    return bad("privacy.noise_multiplier x influence.max_update_norm must give a noise sigma "
               "in [1, 2^52] units of 2^-16 master steps, got ",
               static_cast<double>(sigma));
  }
  return absl::OkStatus();
}

}  // namespace

InfluenceBounds BoundsFromConfig(const v1::InfluencePolicy& policy, uint32_t frac_bits) {
  InfluenceBounds b;
  b.weight_median_multiple_q16 = ToQ16(policy.max_weight_median_multiple());
  b.norm_median_multiple_q16 = ToQ16(policy.max_norm_median_multiple());
  if (policy.max_update_norm() > 0) {
    b.norm_bound = static_cast<uint64_t>(std::max<long long>(
        1, std::llround(std::ldexp(policy.max_update_norm(), static_cast<int>(frac_bits)))));
  }
  return b;
}

StrategyParams StrategyParamsFromConfig(const v1::ServerConfig& c) {
  const v1::AggregationPolicy& a = c.aggregation();
  const uint32_t frac_bits = c.head().weight_frac_bits();
  StrategyParams params;
  params.kind = ParseStrategy(a.strategy()).value_or(StrategyKind::kFedAvg);
  if (params.kind == StrategyKind::kTrimmedMean) {
    params.trim_fraction_ppm = static_cast<uint32_t>(std::llround(a.trim_fraction() * 1e6));
  }
  params.server_lr_q16 = ToQ16(c.policy().server_learning_rate());
  params.momentum_q16 = ToQ16(a.momentum());
  params.second_moment_decay_q16 = ToQ16(a.second_moment_decay());
  params.adam_step = ToSubSteps(a.adam_learning_rate(), frac_bits);
  params.adam_tau = ToSubSteps(a.adam_tau(), frac_bits);
  params.bounds = BoundsFromConfig(c.influence(), frac_bits);
  params.uniform_weights = NoiseMultiplierQ16(c.privacy()) != 0;
  return params;
}

PrivacyParams PrivacyParamsFromConfig(const v1::ServerConfig& c) {
  PrivacyParams p;
  p.noise_multiplier_q16 = NoiseMultiplierQ16(c.privacy());
  if (p.noise_multiplier_q16 != 0) {
    p.norm_bound = BoundsFromConfig(c.influence(), c.head().weight_frac_bits()).norm_bound;
    p.sigma = static_cast<uint64_t>(p.noise_multiplier_q16) * p.norm_bound;
  }
  p.delta = c.privacy().delta();
  p.epsilon_budget = c.privacy().epsilon_budget();
  return p;
}

absl::Status ValidateServerConfig(const v1::ServerConfig& c) {
  auto bad = [](auto... parts) { return absl::InvalidArgumentError(absl::StrCat(parts...)); };
  const v1::HeadConfig& h = c.head();
  if (h.class_count() < 2 || h.class_count() > 32) {
    return bad("head.class_count must be in [2, 32], got ", h.class_count());
  }
  if (h.feature_count() < 1) return bad("head.feature_count must be >= 1, got 0");
  if (static_cast<uint64_t>(h.feature_count()) * h.class_count() > 4096) {
    return bad("head has ", h.feature_count(), " x ", h.class_count(),
               " weights; at most 4096 fit a device update");
  }
  if (!ToFixedScale(h.feature_scale())) {
    return bad("head.feature_scale must be positive and in [2^-32, 2^7], got ", h.feature_scale());
  }
  if (h.feature_zero_point() < -128 || h.feature_zero_point() > 127) {
    return bad("head.feature_zero_point must be in [-128, 127], got ", h.feature_zero_point());
  }
  if (h.weight_frac_bits() < 4 || h.weight_frac_bits() > 14) {
    return bad("head.weight_frac_bits must be in [4, 14], got ", h.weight_frac_bits());
  }
  const v1::PlanConfig& p = c.plan();
  if (p.epochs() < 1 || p.epochs() > 64) return bad("plan.epochs must be in [1, 64], got ", p.epochs());
  if (p.batch_size() < 1 || p.batch_size() > 64) {
    return bad("plan.batch_size must be in [1, 64], got ", p.batch_size());
  }
  if (!(p.learning_rate() > 0) || p.learning_rate() > 16 || ToQ16(p.learning_rate()) == 0) {
    return bad("plan.learning_rate must be in (0, 16], got ", p.learning_rate());
  }
  const v1::RoundPolicy& r = c.policy();
  // The aggregate's int64 sums are exact up to 2^22 updates (aggregator.h).
  if (r.target_updates() < 1 || r.target_updates() > 4'000'000) {
    return bad("policy.target_updates must be in [1, 4000000], got ", r.target_updates());
  }
  if (r.min_updates() < 1 || r.min_updates() > r.target_updates()) {
    return bad("policy.min_updates must be in [1, target_updates=", r.target_updates(), "], got ",
               r.min_updates());
  }
  if (!(r.over_selection() >= 1.0) || r.over_selection() > 100) {
    return bad("policy.over_selection must be in [1, 100], got ", r.over_selection());
  }
  if (r.round_deadline_ms() < 100) {
    return bad("policy.round_deadline_ms must be >= 100, got ", r.round_deadline_ms());
  }
  if (!(r.server_learning_rate() > 0) || r.server_learning_rate() > 16 ||
      ToQ16(r.server_learning_rate()) == 0) {
    return bad("policy.server_learning_rate must be in (0, 16], got ", r.server_learning_rate());
  }
  // 0 would have every device without a task call again at once, in a loop.
  if (r.retry_after_ms() < 1) return bad("policy.retry_after_ms must be >= 1, got 0");
  const v1::InfluencePolicy& b = c.influence();
  // Multiples below 1 would cap or clip the median update itself; above
  // 1000 they bound nothing a device can send.
  for (const auto& [name, value] :
       {std::pair<const char*, double>{"max_weight_median_multiple",
                                       b.max_weight_median_multiple()},
        std::pair<const char*, double>{"max_norm_median_multiple",
                                       b.max_norm_median_multiple()}}) {
    if (!(value == 0 || (value >= 1 && value <= 1000))) {
      return bad("influence.", name, " must be 0 (off) or in [1, 1000], got ", value);
    }
  }
  // A bound below one master step (2^-14 at the finest format) would clip
  // every update to nothing.
  if (!(b.max_update_norm() == 0 ||
        (b.max_update_norm() >= std::ldexp(1.0, -14) && b.max_update_norm() <= 1e6))) {
    return bad("influence.max_update_norm must be 0 (off) or in [2^-14, 1e6], got ",
               b.max_update_norm());
  }
  if (absl::StatusOr<ListenAddress> a = ParseListenAddress(c.listen()); !a.ok()) return a.status();
  const v1::TlsConfig& t = c.tls();
  if (t.cert_file().empty() != t.key_file().empty()) {
    return bad("tls.cert_file and tls.key_file (--tls_cert, --tls_key) go together");
  }
  if (!t.client_ca_file().empty() && t.cert_file().empty()) {
    return bad("tls.client_ca_file (--tls_client_ca) needs --tls_cert and --tls_key");
  }
  if (t.insecure_plaintext() && !t.cert_file().empty()) {
    return bad("--insecure_plaintext and --tls_cert exclude each other");
  }
  if (t.cert_file().empty() && !t.insecure_plaintext() && !IsLoopbackAddress(c.listen())) {
    return bad("listen ", c.listen(),
               " is not a loopback address: serve TLS with --tls_cert and --tls_key, or pass "
               "--insecure_plaintext to accept plaintext from the network");
  }
  const v1::EdgeLimits& l = c.limits();
  if (l.max_concurrent_streams() < 1) {
    return bad("limits.max_concurrent_streams must be >= 1, got ", l.max_concurrent_streams());
  }
  if (l.max_connection_idle_ms() < 100) {
    return bad("limits.max_connection_idle_ms must be >= 100, got ", l.max_connection_idle_ms());
  }
  if (l.request_slack_bytes() > 65536) {
    return bad("limits.request_slack_bytes must be <= 65536, got ", l.request_slack_bytes());
  }
  const v1::CheckInLimits& k = c.checkin_limits();
  // A share of 0 would let no peer check in; above 1 it limits nothing.
  if (!(k.peer_task_share() > 0 && k.peer_task_share() <= 1)) {
    return bad("checkin_limits.peer_task_share must be in (0, 1], got ", k.peer_task_share());
  }
  // Bounds keep a bucket's thousandths far inside int64 (limiter).
  for (const auto& [name, value] :
       {std::pair<const char*, uint32_t>{"peer_checkins_per_second",
                                         k.peer_checkins_per_second()},
        std::pair<const char*, uint32_t>{"device_checkins_per_second",
                                         k.device_checkins_per_second()}}) {
    if (value > 1'000'000) {
      return bad("checkin_limits.", name, " must be <= 1000000, got ", value);
    }
  }
  for (const auto& [name, value] :
       {std::pair<const char*, uint32_t>{"peer_burst", k.peer_burst()},
        std::pair<const char*, uint32_t>{"device_burst", k.device_burst()}}) {
    if (value < 1 || value > 1'000'000) {
      return bad("checkin_limits.", name, " must be in [1, 1000000], got ", value);
    }
  }
  if (k.max_tracked() < 1) return bad("checkin_limits.max_tracked must be >= 1");
  if (!c.metrics_listen().empty()) {
    absl::StatusOr<ListenAddress> m = ParseAddressOption("metrics_listen", c.metrics_listen());
    if (!m.ok()) return m.status();
    // Two servers cannot share a port (grpc_port.h): the second bind would
    // fail after the store was opened.
    if (m->port != 0 && m->port == ParseListenAddress(c.listen())->port) {
      return bad("metrics_listen ", c.metrics_listen(), " and listen ", c.listen(),
                 " must use different ports");
    }
  }
  const v1::AdminConfig& admin = c.admin();
  if (admin.certificate_names_size() > 0 && t.client_ca_file().empty()) {
    return bad("admin.certificate_names needs tls.client_ca_file (--tls_client_ca): only "
               "verified client certificates have names");
  }
  for (int i = 0; i < admin.certificate_names_size(); ++i) {
    const std::string& name = admin.certificate_names(i);
    // X.509's upper bound for a common name (ub-common-name) is 64; a
    // control character could not be matched and would break a log line.
    const bool printable = std::none_of(name.begin(), name.end(), [](char ch) {
      return static_cast<unsigned char>(ch) < 0x20 || ch == 0x7f;
    });
    if (name.empty() || name.size() > 64 || !printable) {
      return bad("admin.certificate_names[", i,
                 "] must be a common name of 1 to 64 bytes without control characters");
    }
  }
  if (absl::StatusOr<RolloutSettings> r = RolloutSettingsFromConfig(c); !r.ok()) return r.status();
  if (absl::Status s = ValidateAggregation(c); !s.ok()) return s;
  return absl::OkStatus();
}

uint32_t RequestLimits::largest() const {
  return std::max({check_in_bytes, update_bytes, get_model_bytes});
}

RequestLimits RequestLimitsFromConfig(const v1::ServerConfig& c) {
  const uint32_t f = c.head().feature_count();
  const uint32_t k = c.head().class_count();
  const uint32_t slack = c.limits().request_slack_bytes();
  RequestLimits limits;
  // The SDK's formulas (tinyfed.h), which tests check against the SDK: a
  // check-in is fixed, 80 bytes for the request and 36 for its longest
  // ServingState (TINYFED_SERVING_STATE_MAX_SIZE); an update is one byte
  // per weight and bias, five per row scale, 100 for the ids, token and numbers and 26 for its
  // evaluation (TINYFED_EVALUATION_MAX_SIZE); each in its SignedRequest. Validation bounds f * k <= 4096 and k <= 32, so nothing
  // here overflows and every body is far below the 2 MiB the envelope's
  // overhead assumes.
  limits.check_in_bytes = 80 + 36 + kSignedRequestOverheadBytes + slack;
  limits.update_bytes = f * k + k + 5 * k + 100 + 26 + kSignedRequestOverheadBytes + slack;
  // A GetModelRequest is one uint32 field: a tag and at most 5 bytes.
  limits.get_model_bytes = 6 + slack;
  return limits;
}

v1::HeadSpec HeadSpecFromConfig(const v1::ServerConfig& c) {
  v1::HeadSpec spec;
  spec.set_feature_count(c.head().feature_count());
  spec.set_class_count(c.head().class_count());
  spec.set_weight_frac_bits(c.head().weight_frac_bits());
  const FixedScale scale = ToFixedScale(c.head().feature_scale()).value_or(FixedScale{});
  spec.mutable_feature_quantization()->set_scale_multiplier(scale.multiplier);
  spec.mutable_feature_quantization()->set_scale_shift(scale.shift);
  spec.mutable_feature_quantization()->set_zero_point(c.head().feature_zero_point());
  return spec;
}

absl::StatusOr<v1::ModelVersion> InitialModel(const v1::ServerConfig& config, int64_t now_ms) {
  const v1::HeadSpec spec = HeadSpecFromConfig(config);
  v1::ModelVersion model;
  if (!config.initial_model().empty()) {
    absl::StatusOr<std::string> bytes = ReadFile(config.initial_model());
    if (!bytes.ok()) return bytes.status();
    if (!model.ParseFromString(*bytes)) {
      return absl::InvalidArgumentError(
          absl::StrCat(config.initial_model(), " is not a ModelVersion in protobuf binary format"));
    }
    if (model.spec().SerializeAsString() != spec.SerializeAsString()) {
      return absl::InvalidArgumentError(absl::StrCat(
          config.initial_model(), " has head {", model.spec().ShortDebugString(),
          "} but the configuration describes {", spec.ShortDebugString(), "}"));
    }
    if (absl::StatusOr<Head> head = LoadHead(model); !head.ok()) {
      return absl::InvalidArgumentError(
          absl::StrCat(config.initial_model(), ": ", head.status().message()));
    }
  } else {
    *model.mutable_spec() = spec;
    StoreHead(Head::Zeros(spec.feature_count(), spec.class_count()), &model);
  }
  model.set_version(1);
  model.set_parent_version(0);
  model.set_round(0);
  model.clear_metrics();
  model.set_created_unix_ms(now_ms);
  return model;
}

}  // namespace tinyfed::server
