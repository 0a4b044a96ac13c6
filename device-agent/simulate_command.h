// `tinyfed-agent simulate`: a virtual fleet on real data against a real
// server (in-process unless --server is given), one table row per round,
// a summary against centralized float training, and an optional JSON
// report.
#ifndef TINYFED_DEVICE_AGENT_SIMULATE_COMMAND_H_
#define TINYFED_DEVICE_AGENT_SIMULATE_COMMAND_H_

#include <cstdint>
#include <cstdio>
#include <optional>
#include <string>

#include "absl/status/statusor.h"
#include "channel_credentials.h"
#include "tinyfed/v1/simulation_report.pb.h"

namespace tinyfed::agent {

// The defaults of the options a user may leave unset (std::nullopt).
inline constexpr double kDefaultAlpha = 0.5;
inline constexpr uint32_t kDefaultClientsPerRound = 20;  // or the fleet, if smaller
inline constexpr uint32_t kDefaultEpochs = 5;
inline constexpr uint32_t kDefaultBatchSize = 8;
inline constexpr double kDefaultLearningRate = 0.2;
// The in-process server's rollout and drift settings when unset: the
// server's own defaults (server/rollout.h RolloutSettings), so a simulated
// run behaves as a deployed server would.
inline constexpr double kDefaultCanaryFraction = 0.1;
inline constexpr uint32_t kDefaultRolloutMinDevices = 5;
inline constexpr double kDefaultRolloutTolerance = 0.01;
inline constexpr uint32_t kDefaultDriftWindowRounds = 3;
inline constexpr double kDefaultDriftMargin = 0.05;
// trimmed-mean's beta when --trim is unset (server_config.proto's default).
inline constexpr double kDefaultTrim = 0.2;
// Central DP's delta when --dp_delta is unset: below 1 / (the fleet's
// devices) for fleets up to 10^5 devices, the usual rule for delta.
inline constexpr double kDefaultDpDelta = 1e-5;
// Central DP's clip bound (real units, the L2 norm of one update's delta)
// when --dp_clip is unset. Measured on digits (64x10 head, 5 epochs, batch
// 8, learning rate 0.2): the median update norm is 1.2 to 1.8 in the first
// round, 0.8 to 0.9 by round 5 and 0.4 to 0.5 by round 30, at 100 and at
// 1,000 devices; the largest stay below 2.1. A bound of 1 clips the big
// early steps and passes most later updates whole, and the noise (sigma =
// z x bound) stays proportional to a typical update.
inline constexpr double kDefaultDpClip = 1.0;

// Options that only mean something in some runs are std::optional: unset
// takes the default where it applies, and set where it does not is an
// error (ValidateSimulateOptions()) rather than ignored in silence.
struct SimulateOptions {
  std::string dataset = "digits";       // "digits" or a CSV path
  // CSV only (with digits, anything but the default is an error).
  std::string label_column = "last";    // "first" or "last"
  std::string header = "auto";          // "auto" (LoadCsv's kDetect), "true" or "false"
  std::string delimiter = ",";          // as ParseCsvDelimiter() reads it
  std::string data_dir;                 // digits only: where the set-up step caches it
  double test_fraction = 0.2;
  uint32_t devices = 100;
  uint32_t rounds = 30;
  std::string partition = "dirichlet";  // "iid" or "dirichlet"
  std::optional<double> alpha;          // dirichlet only; unset: kDefaultAlpha
  uint32_t seed = 1;
  std::string server;                   // empty: in-process
  ChannelTlsOptions tls;                // for `server`; plaintext only to loopback
  // The fleet key file (32 bytes, mode 0600) the devices' keys are derived
  // from. Required with `server` (that server's key); for the in-process
  // server optional: it uses this file, or creates a key of its own.
  std::string fleet_key_file;
  uint32_t concurrency = 2;
  // In-process server only: the round policy and the devices' plan. With
  // `server`, that server's config decides them and setting one is an
  // error. clients_per_round above `devices` is an error (no round could
  // close); unset, it is kDefaultClientsPerRound or the whole fleet if
  // that is smaller.
  std::optional<uint32_t> clients_per_round;
  std::optional<uint32_t> epochs;
  std::optional<uint32_t> batch_size;
  std::optional<double> learning_rate;
  std::string metrics_out;
  // An SVG of test accuracy and loss per round (RunPlotSvg()), written at
  // the end of the run; empty: none.
  std::string plot;
  // "none", "scaled", "sign-flip", "random" or "label-flip" (virtual_fleet.h
  // says what each sends), by a fraction `attackers` of the fleet (in
  // [0, 1], rounded to whole devices, chosen by `seed`).
  std::string attack = "none";
  double attackers = 0;
  // The run's round from which the attackers attack (honest before it), so
  // a run shows a good model first and then a bad version on purpose.
  uint32_t attack_from_round = 1;
  // "" for none, or "round=R,fraction=F,kind=label-swap|feature-shift"
  // (dataset.h ParseDriftSpec, DriftSpec): from the run's round R on, a
  // seeded round(F x devices) of the devices see drifted data; with F = 1
  // the held-out test split drifts too.
  std::string drift;
  // In-process server only: its staged rollout and drift alerts
  // (server_config.proto RolloutPolicy, DriftPolicy); unset keeps the
  // server's defaults (kDefault* below).
  std::optional<double> canary_fraction;
  std::optional<uint32_t> rollout_min_devices;
  std::optional<double> rollout_tolerance;
  std::optional<uint32_t> drift_window_rounds;
  std::optional<double> drift_margin;
  // In-process server only: false sets every bounded-influence option of
  // its config to 0 (off), to show what the bounds stop.
  bool bounded_influence = true;
  // In-process server only: its aggregation strategy
  // (server_config.proto AggregationPolicy): "" (unset: fedavg), "fedavg",
  // "trimmed-mean", "median", "fedavgm" or "fedadam"; `trim` is
  // trimmed-mean's beta, in [0, 0.5) (unset: kDefaultTrim), an error with
  // another strategy.
  std::string strategy;
  std::optional<double> trim;
  // In-process server only: central differential privacy
  // (server_config.proto PrivacyPolicy), on when dp_noise or dp_epsilon is
  // set, for fedavg, fedavgm and fedadam. dp_noise is the noise multiplier
  // z (sigma = z x dp_clip per value), in [0.1, 1000]. dp_epsilon alone:
  // z is the smallest that keeps `rounds` versions within epsilon at
  // dp_delta (CalibrateNoiseMultiplier), and the server's epsilon budget
  // is dp_epsilon. Both: that z, and the budget dp_epsilon (training stops
  // when it is spent, maybe before `rounds`). dp_clip (unset:
  // kDefaultDpClip) bounds each update's L2 norm in real units, the fixed
  // influence.max_update_norm, with the median-relative clip off (it would
  // depend on other devices' data); every update weighs 1. dp_delta unset:
  // kDefaultDpDelta.
  std::optional<double> dp_noise;
  std::optional<double> dp_epsilon;
  std::optional<double> dp_clip;
  std::optional<double> dp_delta;
  // A live line on `err` while a round runs, only when `err` is a terminal:
  // the round's counts and the estimated time left, redrawn at most 10
  // times a second.
  bool progress = true;
};

// INVALID_ARGUMENT naming the first bad option (a `server` that is not
// loopback without tls.ca_file is one, a `server` without fleet_key_file
// another) or the first two that conflict, both by their flag names
// ("--alpha ... --partition iid").
absl::Status ValidateSimulateOptions(const SimulateOptions& options);

// The noise multiplier z that --dp_epsilon asks for: the smallest z (a
// multiple of 2^-16, as the server holds it) such that `rounds` noised
// versions of a head of `values` weights and biases, clipped to `clip`
// (real units; master steps = clip x 2^frac_bits, rounded, at least 1, as
// the server converts it), spend at most `epsilon` at `delta`
// (server/privacy.h NoiseMultiplierQ16For).
// Errors: INVALID_ARGUMENT naming --dp_epsilon when that z is outside the
// server's [0.1, 1000].
absl::StatusOr<double> CalibrateNoiseMultiplier(double epsilon, double delta, uint32_t rounds,
                                                double clip, uint32_t frac_bits, size_t values);

// Runs the simulation, writing the table and summary to `out` and progress
// to `err`. Returns the report (also written to metrics_out when set).
// Errors: INVALID_ARGUMENT (options, dataset), NOT_FOUND (missing files),
// UNAVAILABLE (server), FAILED_PRECONDITION (server's head differs from the
// data's, or a fleet key file readable by others), UNAUTHENTICATED (the
// server refuses the devices' keys: another fleet key).
absl::StatusOr<v1::SimulationReport> RunSimulate(const SimulateOptions& options, FILE* out,
                                                 FILE* err);

}  // namespace tinyfed::agent

#endif  // TINYFED_DEVICE_AGENT_SIMULATE_COMMAND_H_
