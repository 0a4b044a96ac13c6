#include "simulate_command.h"

#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <fstream>
#include <memory>
#include <random>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "channel_credentials.h"
#include "float_twin.h"
#include "generic_call.h"
#include "google/protobuf/util/json_util.h"
#include "in_process_server.h"
#include "privacy.h"
#include "progress_line.h"
#include "run_plot.h"
#include "server_config.h"
#include "tinyfed/tinyfed.h"
#include "tinyfed_common/crc32.h"
#include "tinyfed_common/host_numerics.h"
#include "virtual_fleet.h"

namespace tinyfed::agent {
namespace {

// Epochs of centralized float training for the baseline: enough passes over
// the whole training split for the float head to converge.
constexpr uint32_t kCentralizedEpochs = 60;

// Standardized features are clipped at this many standard deviations.
constexpr double kDefaultClipSigma = 4.0;

absl::StatusOr<std::shared_ptr<grpc::Channel>> MakeChannel(const std::string& address,
                                                          const ChannelTlsOptions& tls) {
  absl::StatusOr<std::shared_ptr<grpc::ChannelCredentials>> credentials =
      MakeChannelCredentials(address, tls);
  if (!credentials.ok()) return credentials.status();
  grpc::ChannelArguments args;
  args.SetMaxReceiveMessageSize(16 << 20);
  return grpc::CreateCustomChannel(address, *credentials, args);
}

absl::StatusOr<v1::ModelVersion> FetchLatest(const std::shared_ptr<grpc::Channel>& channel) {
  auto stub = v1::Coordinator::NewStub(channel);
  grpc::ClientContext context;
  context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
  v1::GetModelRequest request;
  v1::ModelVersion model;
  grpc::Status s = stub->GetModel(&context, request, &model);
  if (!s.ok()) return absl::UnavailableError(DescribeGrpcStatus(s));
  return model;
}

// Whether the server adds DP noise (Admin GetStatus); false when its
// Admin service does not answer (the rows say why then).
bool ServerHasPrivacy(const std::shared_ptr<grpc::Channel>& channel) {
  auto admin = v1::Admin::NewStub(channel);
  grpc::ClientContext context;
  context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
  v1::ServerStatus status;
  return admin->GetStatus(&context, v1::GetStatusRequest(), &status).ok() &&
         status.privacy().enabled();
}

// REQUIRES: ValidateSimulateOptions(o) is OK.
absl::StatusOr<Dataset> LoadData(const SimulateOptions& o) {
  if (o.dataset == "digits") {
    return LoadDigits(o.data_dir.empty() ? DefaultDataDir() : o.data_dir);
  }
  CsvFormat format;
  format.label = o.label_column == "first" ? LabelColumn::kFirst : LabelColumn::kLast;
  format.delimiter = *ParseCsvDelimiter(o.delimiter);
  format.header = o.header == "true"    ? CsvHeader::kPresent
                  : o.header == "false" ? CsvHeader::kAbsent
                                        : CsvHeader::kDetect;
  return LoadCsv(o.dataset, format);
}

// The file a report or plot goes to can be written, checked before the run
// rather than after it.
bool Writable(const std::string& path) { return std::ofstream(path, std::ios::app).good(); }

// Devices that attack, by index: round(fraction x devices) of them, the
// first ones of a seeded shuffle.
std::vector<bool> ChooseAttackers(uint32_t devices, double fraction, uint32_t seed) {
  std::vector<uint32_t> order(devices);
  for (uint32_t i = 0; i < devices; ++i) order[i] = i;
  std::mt19937_64 rng(uint64_t{seed} * 7919u + 17u);
  std::shuffle(order.begin(), order.end(), rng);
  const auto count = static_cast<uint32_t>(std::llround(fraction * devices));
  std::vector<bool> attackers(devices, false);
  for (uint32_t i = 0; i < count; ++i) attackers[order[i]] = true;
  return attackers;
}

// Devices whose data drifts: round(fraction x devices) of them, the first
// ones of a seeded shuffle (another stream than the attackers').
std::vector<bool> ChooseDrifted(uint32_t devices, double fraction, uint32_t seed) {
  std::vector<uint32_t> order(devices);
  for (uint32_t i = 0; i < devices; ++i) order[i] = i;
  std::mt19937_64 rng(uint64_t{seed} * 104729u + 29u);
  std::shuffle(order.begin(), order.end(), rng);
  const auto count = static_cast<uint32_t>(std::llround(fraction * devices));
  std::vector<bool> drifted(devices, false);
  for (uint32_t i = 0; i < count; ++i) drifted[order[i]] = true;
  return drifted;
}

double CentralizedFloatAccuracy(const QuantizedSplit& data, const SimulateOptions& o) {
  FloatTwin twin(data.features, data.classes);
  FloatDataset train{data.train_real, data.train_y};
  FloatPlan plan;
  plan.epochs = kCentralizedEpochs;
  plan.batch_size = o.batch_size.value_or(kDefaultBatchSize);
  plan.learning_rate = o.learning_rate.value_or(kDefaultLearningRate);
  plan.seed = o.seed;
  twin.Train(plan, train);
  return twin.Accuracy(FloatDataset{data.test_real, data.test_y});
}

}  // namespace

absl::StatusOr<double> CalibrateNoiseMultiplier(double epsilon, double delta, uint32_t rounds,
                                                double clip, uint32_t frac_bits, size_t values) {
  // The server's own conversion (round_manager.cc BoundsFromConfig), so
  // that the z found is calibrated for the bound the server applies.
  const auto norm_bound = static_cast<uint64_t>(
      std::max<long long>(1, std::llround(std::ldexp(clip, static_cast<int>(frac_bits)))));
  const uint32_t z_q16 = server::NoiseMultiplierQ16For(epsilon, delta, rounds, norm_bound, values);
  const double z = std::ldexp(static_cast<double>(z_q16), -16);
  if (z_q16 == 0 || z > 1000) {
    return absl::InvalidArgumentError(absl::StrCat(
        "--dp_epsilon ", epsilon, " over --rounds ", rounds,
        " needs a noise multiplier above the server's largest, 1000; allow a larger epsilon "
        "or fewer rounds"));
  }
  if (z < 0.1) {
    return absl::InvalidArgumentError(absl::StrCat(
        "--dp_epsilon ", epsilon, " over --rounds ", rounds, " needs only a noise multiplier of ",
        z, ", below the server's smallest, 0.1; give --dp_noise 0.1 instead, or more rounds"));
  }
  return z;
}

absl::Status ValidateSimulateOptions(const SimulateOptions& o) {
  auto bad = [](auto... parts) { return absl::InvalidArgumentError(absl::StrCat(parts...)); };
  if (o.dataset.empty()) return bad("--dataset must be 'digits' or a CSV file");
  if (o.server.empty()) {
    if (!o.tls.ca_file.empty() || !o.tls.cert_file.empty() || !o.tls.key_file.empty()) {
      return bad("--tls_ca, --tls_cert and --tls_key are for --server; the in-process server "
                 "is on loopback");
    }
  } else if (absl::Status s = ValidateChannelTlsOptions(o.server, o.tls); !s.ok()) {
    return s;
  } else if (o.fleet_key_file.empty()) {
    return bad("--server needs --fleet_key: the devices sign with keys derived from that "
               "server's fleet key (tinyfed-server logs its path at start)");
  }
  if (o.label_column != "first" && o.label_column != "last") {
    return bad("--label-column must be 'first' or 'last', got '", o.label_column, "'");
  }
  if (o.header != "auto" && o.header != "true" && o.header != "false") {
    return bad("--header must be 'auto', 'true' or 'false', got '", o.header, "'");
  }
  if (absl::StatusOr<char> d = ParseCsvDelimiter(o.delimiter); !d.ok()) {
    return bad("--delimiter: ", d.status().message());
  }
  if (o.dataset == "digits") {
    if (o.label_column != "last") {
      return bad("--label-column ", o.label_column, " is for a CSV --dataset; --dataset digits "
                 "has its label last");
    }
    if (o.header != "auto" || o.delimiter != ",") {
      return bad(o.header != "auto" ? "--header" : "--delimiter",
                 " is for a CSV --dataset; --dataset digits is read as the set-up step wrote it");
    }
  } else if (!o.data_dir.empty()) {
    return bad("--data-dir is where --dataset digits is cached; --dataset ", o.dataset,
               " is read from its own path");
  }
  if (!(o.test_fraction > 0 && o.test_fraction < 1)) {
    return bad("--test-fraction must be between 0 and 1, got ", o.test_fraction);
  }
  if (o.devices < 1) return bad("--devices must be at least 1");
  if (o.rounds < 1) return bad("--rounds must be at least 1");
  if (o.partition != "iid" && o.partition != "dirichlet") {
    return bad("--partition must be 'iid' or 'dirichlet', got '", o.partition, "'");
  }
  if (o.alpha.has_value()) {
    if (!(*o.alpha > 0)) return bad("--alpha must be positive, got ", *o.alpha);
    if (o.partition != "dirichlet") {
      return bad("--alpha ", *o.alpha, " is the Dirichlet concentration; --partition ",
                 o.partition, " does not use it");
    }
  }
  if (o.concurrency < 1 || o.concurrency > 256) {
    return bad("--concurrency must be in [1, 256], got ", o.concurrency);
  }
  // The in-process server's settings; a running server has its own.
  const std::pair<const char*, bool> in_process_only[] = {
      {"--clients-per-round", o.clients_per_round.has_value()},
      {"--epochs", o.epochs.has_value()},
      {"--batch-size", o.batch_size.has_value()},
      {"--learning-rate", o.learning_rate.has_value()},
      {"--bounded_influence=false", !o.bounded_influence},
      {"--canary_fraction", o.canary_fraction.has_value()},
      {"--rollout_min_devices", o.rollout_min_devices.has_value()},
      {"--rollout_tolerance", o.rollout_tolerance.has_value()},
      {"--drift_window_rounds", o.drift_window_rounds.has_value()},
      {"--drift_margin", o.drift_margin.has_value()},
      {"--strategy", !o.strategy.empty()},
      {"--trim", o.trim.has_value()},
      {"--dp_noise", o.dp_noise.has_value()},
      {"--dp_epsilon", o.dp_epsilon.has_value()},
      {"--dp_clip", o.dp_clip.has_value()},
      {"--dp_delta", o.dp_delta.has_value()},
  };
  for (const auto& [flag, set] : in_process_only) {
    if (set && !o.server.empty()) {
      return bad(flag, " configures the in-process server; --server ", o.server,
                 " has its own in its config");
    }
  }
  if (o.clients_per_round.has_value()) {
    if (*o.clients_per_round < 1) return bad("--clients-per-round must be at least 1");
    if (*o.clients_per_round > o.devices) {
      return bad("--clients-per-round ", *o.clients_per_round, " is more than the --devices ",
                 o.devices, ": no round could close");
    }
  }
  if (o.epochs.has_value() && (*o.epochs < 1 || *o.epochs > TINYFED_MAX_EPOCHS)) {
    return bad("--epochs must be in [1, ", TINYFED_MAX_EPOCHS, "], got ", *o.epochs);
  }
  if (o.batch_size.has_value() && (*o.batch_size < 1 || *o.batch_size > TINYFED_MAX_BATCH)) {
    return bad("--batch-size must be in [1, ", TINYFED_MAX_BATCH, "], got ", *o.batch_size);
  }
  if (o.learning_rate.has_value() && !(*o.learning_rate > 0 && *o.learning_rate <= 16)) {
    return bad("--learning-rate must be in (0, 16], got ", *o.learning_rate);
  }
  if (!ParseAttack(o.attack).has_value()) {
    return bad("--attack must be 'none', 'scaled', 'sign-flip', 'random' or 'label-flip', got '",
               o.attack, "'");
  }
  if (!(o.attackers >= 0 && o.attackers <= 1)) {
    return bad("--attackers must be a fraction in [0, 1], got ", o.attackers);
  }
  if (o.attack == "none" && o.attackers != 0) {
    return bad("--attackers ", o.attackers,
               " goes with --attack scaled, sign-flip, random or label-flip");
  }
  if (o.attack != "none" && o.attackers == 0) {
    return bad("--attack ", o.attack, " needs --attackers F > 0, the fraction of devices that "
               "attack");
  }
  if (o.attackers > 0 && std::llround(o.attackers * o.devices) == 0) {
    return bad("--attackers ", o.attackers, " of --devices ", o.devices,
               " rounds to no attacking device");
  }
  if (o.attack_from_round < 1) return bad("--attack_from_round must be at least 1");
  if (o.attack_from_round != 1 && o.attack == "none") {
    return bad("--attack_from_round ", o.attack_from_round, " goes with --attack");
  }
  if (o.attack_from_round > o.rounds) {
    return bad("--attack_from_round ", o.attack_from_round, " is after the last of --rounds ",
               o.rounds);
  }
  if (!o.drift.empty()) {
    absl::StatusOr<DriftSpec> drift = ParseDriftSpec(o.drift);
    if (!drift.ok()) return drift.status();
    if (drift->round > o.rounds) {
      return bad("--drift: round ", drift->round, " is after the last of --rounds ", o.rounds);
    }
    if (std::llround(drift->fraction * o.devices) == 0) {
      return bad("--drift: fraction ", drift->fraction, " of --devices ", o.devices,
                 " rounds to no drifting device");
    }
  }
  if (o.canary_fraction.has_value() && !(*o.canary_fraction > 0 && *o.canary_fraction <= 1)) {
    return bad("--canary_fraction must be in (0, 1], got ", *o.canary_fraction);
  }
  if (o.rollout_min_devices.has_value() && *o.rollout_min_devices < 1) {
    return bad("--rollout_min_devices must be at least 1");
  }
  if (o.rollout_tolerance.has_value() &&
      !(*o.rollout_tolerance >= 0 && *o.rollout_tolerance <= 1)) {
    return bad("--rollout_tolerance must be in [0, 1], got ", *o.rollout_tolerance);
  }
  if (o.drift_window_rounds.has_value() && *o.drift_window_rounds < 1) {
    return bad("--drift_window_rounds must be at least 1");
  }
  if (o.drift_margin.has_value() && !(*o.drift_margin > 0 && *o.drift_margin <= 1)) {
    return bad("--drift_margin must be in (0, 1], got ", *o.drift_margin);
  }
  const std::string strategy = o.strategy.empty() ? std::string("fedavg") : o.strategy;
  if (strategy != "fedavg" && strategy != "trimmed-mean" && strategy != "median" &&
      strategy != "fedavgm" && strategy != "fedadam") {
    return bad("--strategy must be 'fedavg', 'trimmed-mean', 'median', 'fedavgm' or 'fedadam', "
               "got '", strategy, "'");
  }
  if (o.trim.has_value()) {
    if (!(*o.trim >= 0 && *o.trim < 0.5)) return bad("--trim must be in [0, 0.5), got ", *o.trim);
    if (strategy != "trimmed-mean") {
      return bad("--trim ", *o.trim, " is trimmed-mean's share; --strategy ", strategy,
                 " does not use it");
    }
  }
  const bool dp = o.dp_noise.has_value() || o.dp_epsilon.has_value();
  if (o.dp_noise.has_value() && !(*o.dp_noise >= 0.1 && *o.dp_noise <= 1000)) {
    return bad("--dp_noise must be in [0.1, 1000], got ", *o.dp_noise);
  }
  if (o.dp_epsilon.has_value() && !(*o.dp_epsilon > 0 && std::isfinite(*o.dp_epsilon))) {
    return bad("--dp_epsilon must be positive, got ", *o.dp_epsilon);
  }
  if (o.dp_clip.has_value() && !(*o.dp_clip >= std::ldexp(1.0, -14) && *o.dp_clip <= 1e6)) {
    return bad("--dp_clip must be in [2^-14, 1e6], got ", *o.dp_clip);
  }
  if (o.dp_delta.has_value() && !(*o.dp_delta > 0 && *o.dp_delta <= 0.1)) {
    return bad("--dp_delta must be in (0, 0.1], got ", *o.dp_delta);
  }
  if (!dp && (o.dp_clip.has_value() || o.dp_delta.has_value())) {
    return bad(o.dp_clip.has_value() ? "--dp_clip" : "--dp_delta",
               " goes with --dp_noise or --dp_epsilon (central DP is off without them)");
  }
  if (dp && (strategy == "trimmed-mean" || strategy == "median")) {
    return bad(o.dp_noise.has_value() ? "--dp_noise" : "--dp_epsilon",
               " is for --strategy fedavg, fedavgm or fedadam; --strategy ", strategy,
               " has another sensitivity than the noise is calibrated for");
  }
  if (dp && !o.bounded_influence) {
    return bad(o.dp_noise.has_value() ? "--dp_noise" : "--dp_epsilon",
               " needs each update clipped; --bounded_influence=false turns the clip off");
  }
  if (!o.plot.empty() && o.plot == o.metrics_out) {
    return bad("--plot and --metrics-out both name ", o.plot, "; give them different files");
  }
  return absl::OkStatus();
}

absl::StatusOr<v1::SimulationReport> RunSimulate(const SimulateOptions& o, FILE* out, FILE* err) {
  if (absl::Status s = ValidateSimulateOptions(o); !s.ok()) return s;
  if (!o.metrics_out.empty() && !Writable(o.metrics_out)) {
    return absl::InvalidArgumentError(absl::StrCat("--metrics-out: cannot write ", o.metrics_out));
  }
  if (!o.plot.empty() && !Writable(o.plot)) {
    return absl::InvalidArgumentError(absl::StrCat("--plot: cannot write ", o.plot));
  }
  Key256 fleet_key;
  if (!o.fleet_key_file.empty()) {
    absl::StatusOr<Key256> loaded = LoadFleetKey(o.fleet_key_file);
    if (!loaded.ok()) {
      return absl::Status(loaded.status().code(),
                          absl::StrCat("--fleet_key: ", loaded.status().message()));
    }
    fleet_key = *loaded;
  }
  absl::StatusOr<Dataset> dataset = LoadData(o);
  if (!dataset.ok()) return dataset.status();
  const int header_line = dataset->header_line;
  absl::StatusOr<Split> split = StratifiedSplit(*dataset, o.test_fraction, o.seed);
  if (!split.ok()) return split.status();

  // Devices quantize features the way the server's model declares. An
  // in-process server is configured from the data (clipping at 4 standard
  // deviations); a remote one dictates the scale, and its zero point must
  // be 0 since standardized features are centred.
  double clip_sigma = kDefaultClipSigma;
  std::shared_ptr<grpc::Channel> channel;
  if (!o.server.empty()) {
    absl::StatusOr<std::shared_ptr<grpc::Channel>> made = MakeChannel(o.server, o.tls);
    if (!made.ok()) return made.status();
    channel = std::move(*made);
    absl::StatusOr<v1::ModelVersion> model = FetchLatest(channel);
    if (!model.ok()) {
      return absl::UnavailableError(absl::StrCat("cannot reach the server at ", o.server, ": ",
                                                 model.status().message()));
    }
    const v1::FeatureQuantization& fq = model->spec().feature_quantization();
    if (fq.zero_point() != 0) {
      return absl::FailedPreconditionError(absl::StrCat(
          "the server's features have zero point ", fq.zero_point(),
          "; simulate standardizes features around 0 and needs zero point 0"));
    }
    clip_sigma = FromFixedScale(FixedScale{fq.scale_multiplier(), fq.scale_shift()}) * 127.0;
  }
  const QuantizedSplit data = StandardizeAndQuantize(*split, clip_sigma);
  const double alpha = o.alpha.value_or(kDefaultAlpha);
  absl::StatusOr<std::vector<std::vector<uint32_t>>> shards =
      o.partition == "iid"
          ? PartitionIid(data.train_y.size(), o.devices, o.seed)
          : PartitionDirichlet(data.train_y, data.classes, o.devices, alpha, o.seed);
  if (!shards.ok()) return shards.status();

  v1::SimulationReport report;
  v1::SimulationConfig* config = report.mutable_config();
  config->set_dataset(o.dataset);
  config->set_label_column(o.label_column);
  config->set_test_fraction(o.test_fraction);
  config->set_devices(o.devices);
  config->set_rounds(o.rounds);
  config->set_partition(o.partition);
  if (o.partition == "dirichlet") config->set_alpha(alpha);
  config->set_seed(o.seed);
  config->set_server(o.server.empty() ? "in-process" : o.server);
  config->set_concurrency(o.concurrency);
  config->set_features(static_cast<uint32_t>(data.features));
  config->set_classes(static_cast<uint32_t>(data.classes));
  config->set_train_samples(static_cast<uint32_t>(data.train_y.size()));
  config->set_test_samples(static_cast<uint32_t>(data.test_y.size()));
  config->set_drift(o.drift);
  config->set_attack(o.attack);
  config->set_attackers(o.attackers);
  const std::string strategy = o.strategy.empty() ? std::string("fedavg") : o.strategy;
  const double trim = strategy == "trimmed-mean" ? o.trim.value_or(kDefaultTrim) : 0;
  const bool dp = o.dp_noise.has_value() || o.dp_epsilon.has_value();
  const double dp_clip = o.dp_clip.value_or(kDefaultDpClip);
  const double dp_delta = o.dp_delta.value_or(kDefaultDpDelta);
  double dp_noise = o.dp_noise.value_or(0);
  if (o.server.empty()) {
    config->set_strategy(strategy);
    config->set_trim(trim);
  }

  std::unique_ptr<server::InProcessServer> local;
  std::string address = o.server;
  if (address.empty()) {
    v1::ServerConfig sc;
    sc.mutable_head()->set_feature_count(static_cast<uint32_t>(data.features));
    sc.mutable_head()->set_class_count(static_cast<uint32_t>(data.classes));
    sc.mutable_head()->set_feature_scale(data.scale);
    sc.mutable_head()->set_feature_zero_point(data.zero_point);
    const uint32_t epochs = o.epochs.value_or(kDefaultEpochs);
    const uint32_t batch_size = o.batch_size.value_or(kDefaultBatchSize);
    const double learning_rate = o.learning_rate.value_or(kDefaultLearningRate);
    sc.mutable_plan()->set_epochs(epochs);
    sc.mutable_plan()->set_batch_size(batch_size);
    sc.mutable_plan()->set_learning_rate(learning_rate);
    sc.mutable_plan()->set_seed(o.seed);
    const uint32_t k = o.clients_per_round.value_or(std::min(kDefaultClientsPerRound, o.devices));
    sc.mutable_policy()->set_target_updates(k);
    sc.mutable_policy()->set_min_updates(k);
    sc.mutable_policy()->set_round_deadline_ms(120'000);
    if (!o.bounded_influence) {
      sc.mutable_influence()->set_max_weight_median_multiple(0);
      sc.mutable_influence()->set_max_update_norm(0);
      sc.mutable_influence()->set_max_norm_median_multiple(0);
    }
    sc.mutable_rollout()->set_canary_fraction(o.canary_fraction.value_or(kDefaultCanaryFraction));
    sc.mutable_rollout()->set_min_devices(
        o.rollout_min_devices.value_or(kDefaultRolloutMinDevices));
    sc.mutable_rollout()->set_tolerance(o.rollout_tolerance.value_or(kDefaultRolloutTolerance));
    sc.mutable_drift()->set_window_rounds(
        o.drift_window_rounds.value_or(kDefaultDriftWindowRounds));
    sc.mutable_drift()->set_margin(o.drift_margin.value_or(kDefaultDriftMargin));
    if (!o.fleet_key_file.empty()) sc.set_fleet_key_file(o.fleet_key_file);
    sc.mutable_aggregation()->set_strategy(strategy);
    if (strategy == "trimmed-mean") sc.mutable_aggregation()->set_trim_fraction(trim);
    server::ApplyDefaults(&sc);
    if (dp) {
      if (!o.dp_noise.has_value()) {
        const size_t values = size_t{sc.head().class_count()} * (sc.head().feature_count() + 1);
        absl::StatusOr<double> z = CalibrateNoiseMultiplier(
            *o.dp_epsilon, dp_delta, o.rounds, dp_clip, sc.head().weight_frac_bits(), values);
        if (!z.ok()) return z.status();
        dp_noise = *z;
      }
      // The fixed clip is the mechanism's sensitivity; a clip relative to
      // the round's median would depend on other devices' data.
      sc.mutable_influence()->set_max_update_norm(dp_clip);
      sc.mutable_influence()->set_max_norm_median_multiple(0);
      sc.mutable_privacy()->set_noise_multiplier(dp_noise);
      sc.mutable_privacy()->set_delta(dp_delta);
      if (o.dp_epsilon.has_value()) sc.mutable_privacy()->set_epsilon_budget(*o.dp_epsilon);
      config->set_dp_noise(dp_noise);
      config->set_dp_clip(dp_clip);
      config->set_dp_delta(dp_delta);
      config->set_dp_epsilon(o.dp_epsilon.value_or(0));
    }
    absl::StatusOr<std::unique_ptr<server::InProcessServer>> started =
        server::InProcessServer::Start(sc);
    if (!started.ok()) return started.status();
    local = std::move(*started);
    address = local->address();
    fleet_key = local->fleet_key();
    config->set_clients_per_round(k);
    config->set_epochs(epochs);
    config->set_batch_size(batch_size);
    config->set_learning_rate(learning_rate);
  }

  if (!channel) {
    absl::StatusOr<std::shared_ptr<grpc::Channel>> made = MakeChannel(address, {});
    if (!made.ok()) return made.status();
    channel = std::move(*made);
  }
  FleetOptions fleet_options;
  fleet_options.fleet_key = fleet_key;
  fleet_options.concurrency = o.concurrency;
  fleet_options.seed = o.seed;
  if (o.attack != "none") {
    fleet_options.attack = *ParseAttack(o.attack);  // validated above
    fleet_options.attackers = ChooseAttackers(o.devices, o.attackers, o.seed);
    fleet_options.attack_from_round = o.attack_from_round;
  }
  if (!o.drift.empty()) {
    fleet_options.drift = *ParseDriftSpec(o.drift);  // validated above
    fleet_options.drifted = ChooseDrifted(o.devices, fleet_options.drift.fraction, o.seed);
  }
  VirtualFleet fleet(&data, &*shards, channel, fleet_options);

  absl::StatusOr<v1::ModelVersion> initial = fleet.LatestModel();
  if (!initial.ok()) {
    return absl::UnavailableError(absl::StrCat("cannot reach the server at ", address, ": ",
                                               initial.status().message()));
  }
  if (initial->spec().feature_count() != static_cast<uint32_t>(data.features) ||
      initial->spec().class_count() != static_cast<uint32_t>(data.classes)) {
    return absl::FailedPreconditionError(absl::StrCat(
        "the server trains a ", initial->spec().feature_count(), "x",
        initial->spec().class_count(), " head but the data has ", data.features, " features and ",
        data.classes, " classes"));
  }

  std::fprintf(out, "tinyfed simulate: %s%s, %zu train / %zu test samples, %d features, %d classes\n",
               o.dataset.c_str(),
               header_line == 0 ? "" : absl::StrCat(" (header line ", header_line, " skipped)").c_str(),
               data.train_y.size(), data.test_y.size(), data.features, data.classes);
  std::fprintf(out, "%u devices (%s%s), server %s\n\n", o.devices, o.partition.c_str(),
               o.partition == "dirichlet" ? absl::StrCat(", alpha ", alpha).c_str() : "",
               o.server.empty() ? absl::StrCat("in-process at ", address).c_str() : address.c_str());
  if (o.server.empty()) {
    std::string line = absl::StrCat("aggregation: ", strategy);
    if (strategy == "trimmed-mean") absl::StrAppend(&line, " (beta ", trim, ")");
    if (dp) {
      absl::StrAppend(&line, "; central DP: noise multiplier ", dp_noise, " x clip ", dp_clip,
                      ", delta ", dp_delta);
      if (o.dp_epsilon.has_value()) {
        absl::StrAppend(&line, ", budget epsilon ", *o.dp_epsilon,
                        o.dp_noise.has_value() ? "" : absl::StrCat(" over ", o.rounds, " rounds"));
      }
    }
    std::fprintf(out, "%s\n\n", line.c_str());
  }
  if (o.attack != "none") {
    const auto count = std::count(fleet_options.attackers.begin(), fleet_options.attackers.end(),
                                  true);
    const std::string what =
        o.attack == "scaled"
            ? absl::StrCat("declare and claim ", kAttackSampleCount,
                           " samples and send the largest delta with random signs")
        : o.attack == "sign-flip"
            ? absl::StrCat("send their trained delta negated, row scales x", kSignFlipGain,
                           " (at most ", kLargestRowScale, ")")
        : o.attack == "random"
            ? absl::StrCat("send uniform random values at row scale ", kLargestRowScale)
            : std::string("train on labels c read as classes - 1 - c");
    std::fprintf(out, "attack: %ld of %u devices %s from round %u on; bounded influence %s\n\n",
                 static_cast<long>(count), o.devices, what.c_str(), o.attack_from_round,
                 o.server.empty() ? (o.bounded_influence ? "on" : "off") : "as the server has it");
  }
  if (!o.drift.empty()) {
    const DriftSpec& d = fleet_options.drift;
    const auto count = std::count(fleet_options.drifted.begin(), fleet_options.drifted.end(),
                                  true);
    std::fprintf(out, "drift: from round %u on, %ld of %u devices see %s%s\n\n", d.round,
                 static_cast<long>(count), o.devices,
                 d.kind == DriftKind::kLabelSwap
                     ? "classes 0 and 1 with their labels swapped"
                     : absl::StrCat("features shifted by +", kFeatureShiftSteps,
                                    " quantization steps").c_str(),
                 count == static_cast<long>(o.devices) ? "; so does the test split"
                                    : "; the test split keeps the original world");
  }
  // Accuracy and loss are the model's on the held-out test split, never
  // seen in training: the header says so.
  // Fleet accuracy is the serving version's on the devices' own data (the
  // server's drift window after the round); "on cand" counts the devices
  // holding the candidate.
  // The spent epsilon is a column only when the server adds noise.
  const bool show_epsilon = o.server.empty() ? dp : ServerHasPrivacy(channel);
  std::fprintf(out, "%6s %8s %13s %13s %10s %9s %7s %8s %10s %-16s %7s %11s %13s %8s%s\n",
               "round", "version", "participants", "test accuracy", "test loss", "fleet acc",
               "devices", "serving", "candidate", "stage", "on cand", "bytes up", "bytes down",
               "seconds", show_epsilon ? absl::StrFormat(" %8s", "eps").c_str() : "");
  std::fflush(out);

  // RunRound calls the progress callback under its own lock, one call at a
  // time, so the line needs no lock of its own.
  const bool live = o.progress && isatty(fileno(err));
  ProgressLine line(err);
  double finished_seconds = 0;
  std::string fleet_unknown_reported;
  std::vector<std::string> alerts_shown;
  uint64_t models_installed = 0, models_refused = 0, evaluation_tasks = 0;
  for (uint32_t r = 1; r <= o.rounds; ++r) {
    const auto round_start = std::chrono::steady_clock::now();
    absl::StatusOr<RoundResult> result = fleet.RunRound([&](const RoundProgress& p) {
      if (!live) return;
      line.Update([&] {
        const double in_round =
            std::chrono::duration<double>(std::chrono::steady_clock::now() - round_start).count();
        return absl::StrFormat(
            "  round %u/%u: %u checked in, %u trained, %u accepted; %s", r, o.rounds,
            p.checked_in, p.trained, p.accepted,
            FormatTimeLeft(EstimateSecondsLeft(finished_seconds, r - 1, o.rounds, in_round)));
      });
    });
    if (live) line.Clear();
    finished_seconds +=
        std::chrono::duration<double>(std::chrono::steady_clock::now() - round_start).count();
    if (!result.ok()) return result.status();
    const FleetStatus& fleet_status = result->fleet;
    const std::string candidate = fleet_status.candidate_version == 0
                                      ? std::string("-")
                                      : absl::StrCat("v", fleet_status.candidate_version);
    if (fleet_status.known) {
      std::fprintf(out,
                   "%6u %8u %13u %13.4f %10.4f %9.4f %7u %8s %10s %-16s %7u %11llu %13llu %8.2f%s%s\n",
                   result->round, result->model_version, result->participants, result->accuracy,
                   result->loss, fleet_status.accuracy, fleet_status.devices,
                   absl::StrCat("v", fleet_status.serving_version).c_str(), candidate.c_str(),
                   fleet_status.stage.c_str(), fleet_status.devices_serving_candidate,
                   static_cast<unsigned long long>(result->uplink_bytes),
                   static_cast<unsigned long long>(result->downlink_bytes), result->seconds,
                   show_epsilon ? absl::StrFormat(" %8.4f", fleet_status.epsilon_spent).c_str() : "",
                   result->committed ? "" : "  (not committed)");
    } else {
      if (fleet_unknown_reported.empty()) {
        fleet_unknown_reported = fleet_status.unknown_reason;
        std::fprintf(out, "(the fleet columns need the server's Admin service: %s)\n",
                     fleet_unknown_reported.c_str());
      }
      std::fprintf(out,
                   "%6u %8u %13u %13.4f %10.4f %9s %7s %8s %10s %-16s %7s %11llu %13llu %8.2f%s\n",
                   result->round, result->model_version, result->participants, result->accuracy,
                   result->loss, "-", "-", "-", "-", "-", "-",
                   static_cast<unsigned long long>(result->uplink_bytes),
                   static_cast<unsigned long long>(result->downlink_bytes), result->seconds,
                   result->committed ? "" : "  (not committed)");
    }
    // Alerts are printed when raised and when cleared, not every round.
    for (const std::string& a : fleet_status.alerts) {
      if (std::find(alerts_shown.begin(), alerts_shown.end(), a) == alerts_shown.end()) {
        std::fprintf(out, "       alert: %s\n", a.c_str());
      }
    }
    for (const std::string& a : alerts_shown) {
      if (std::find(fleet_status.alerts.begin(), fleet_status.alerts.end(), a) ==
          fleet_status.alerts.end()) {
        std::fprintf(out, "       cleared: %s\n", a.c_str());
      }
    }
    alerts_shown = fleet_status.alerts;
    std::fflush(out);
    v1::SimulationRound* row = report.add_rounds();
    row->set_round(result->round);
    row->set_model_version(result->model_version);
    row->set_participants(result->participants);
    row->set_accuracy(result->accuracy);
    row->set_loss(result->loss);
    row->set_uplink_bytes(static_cast<uint32_t>(result->uplink_bytes));
    row->set_downlink_bytes(static_cast<uint32_t>(result->downlink_bytes));
    row->set_seconds(result->seconds);
    row->set_fleet_accuracy(fleet_status.accuracy);
    row->set_fleet_devices(fleet_status.devices);
    row->set_serving_version(fleet_status.serving_version);
    row->set_candidate_version(fleet_status.candidate_version);
    row->set_stage(fleet_status.known ? fleet_status.stage : "");
    for (const std::string& a : fleet_status.alerts) row->add_alerts(a);
    row->set_devices_serving_candidate(fleet_status.devices_serving_candidate);
    row->set_epsilon(fleet_status.epsilon_spent);
    report.set_final_accuracy(result->accuracy);
    models_installed += result->models_installed;
    models_refused += result->models_refused;
    evaluation_tasks += result->evaluation_tasks;
    if (fleet_status.budget_spent && r < o.rounds) {
      // The server opens no more rounds (server_config.proto
      // PrivacyPolicy.epsilon_budget): waiting would only time out.
      std::fprintf(out, "\nprivacy budget spent: epsilon %.4f of %g; the server opens no more "
                        "rounds, so the run stops after %u of %u\n",
                   fleet_status.epsilon_spent, fleet_status.epsilon_budget, r, o.rounds);
      break;
    }
  }
  std::fprintf(out, "\nserving: devices installed %llu deployed models (refused %llu) and "
                    "submitted %llu evaluation-only tasks\n",
               static_cast<unsigned long long>(models_installed),
               static_cast<unsigned long long>(models_refused),
               static_cast<unsigned long long>(evaluation_tasks));

  const double central = CentralizedFloatAccuracy(data, o);
  report.set_centralized_float_accuracy(central);
  std::fprintf(out, "\nfinal accuracy %.4f; centralized float training of the same head %.4f; "
                    "gap %+.2f percentage points\n",
               report.final_accuracy(), central, 100.0 * (report.final_accuracy() - central));

  if (!o.metrics_out.empty()) {
    std::string json;
    google::protobuf::util::JsonPrintOptions print;
    print.preserve_proto_field_names = true;
    print.always_print_primitive_fields = true;
    print.add_whitespace = true;
    if (!google::protobuf::util::MessageToJsonString(report, &json, print).ok()) {
      return absl::InternalError("cannot format the metrics report");
    }
    std::ofstream file(o.metrics_out, std::ios::trunc);
    file << json;
    if (!file.good()) {
      return absl::UnavailableError(absl::StrCat("cannot write ", o.metrics_out));
    }
  }
  if (!o.plot.empty()) {
    std::ofstream file(o.plot, std::ios::trunc);
    file << RunPlotSvg(report);
    if (!file.good()) return absl::UnavailableError(absl::StrCat("cannot write ", o.plot));
  }
  return report;
}

}  // namespace tinyfed::agent
