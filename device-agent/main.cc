// tinyfed-agent: the host side of tinyfed's devices.
//   tinyfed-agent simulate [flags]   a virtual fleet on real data
//   tinyfed-agent bridge [flags]     a real device's link to the server
#include <cstdio>
#include <algorithm>
#include <cstring>
#include <optional>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/usage.h"
#include "tinyfed_common/flag_help.h"
#include "absl/synchronization/mutex.h"
#include "bridge_command.h"
#include "simulate_command.h"
#include "spdlog/spdlog.h"

ABSL_FLAG(std::string, dataset, "digits",
          "'digits' (the UCI hand-written digits, cached by deploy/setup.sh) or a CSV file: one "
          "sample per line, numeric features and an integer label");
ABSL_FLAG(std::string, label_column, "last", "CSV: where the label is, 'first' or 'last'");
ABSL_FLAG(std::string, header, "auto",
          "CSV: whether the first line is a header of column names, skipped: 'auto' (when it "
          "has no number in any field), 'true' or 'false'");
ABSL_FLAG(std::string, delimiter, ",",
          "CSV: the field separator, one character ('tab' or \\t for a tab)");
ABSL_FLAG(std::string, data_dir, "", "digits: where deploy/setup.sh cached the data "
          "(default $TINYFED_DATA_DIR, else ~/.cache/tinyfed)");
ABSL_FLAG(double, test_fraction, 0.2, "held-out fraction of every class, in (0, 1)");
ABSL_FLAG(uint32_t, devices, 100, "virtual devices, each with its own shard of the training split");
ABSL_FLAG(uint32_t, rounds, 30, "rounds to run");
ABSL_FLAG(std::string, partition, "dirichlet", "how shards are drawn: 'iid' or 'dirichlet'");
ABSL_FLAG(std::optional<double>, alpha, std::nullopt,
          "--partition dirichlet: the concentration, smaller is more skewed per device "
          "(default 0.5)");
ABSL_FLAG(uint32_t, seed, 1, "seed of the split, the partition, device order and training");
ABSL_FLAG(std::string, server, "", "HOST:PORT of a running tinyfed-server; empty starts one "
          "in-process on a free loopback port with a temporary store");
ABSL_FLAG(uint32_t, concurrency, 0, "devices active at once (default: the number of cores)");
ABSL_FLAG(std::optional<uint32_t>, clients_per_round, std::nullopt,
          "in-process server: updates that close a round (K), at most --devices (default 20, "
          "or --devices if fewer)");
ABSL_FLAG(std::optional<uint32_t>, epochs, std::nullopt,
          "in-process server: local epochs per device per round (default 5)");
ABSL_FLAG(std::optional<uint32_t>, batch_size, std::nullopt,
          "in-process server: local mini-batch size (default 8)");
ABSL_FLAG(std::optional<double>, learning_rate, std::nullopt,
          "in-process server: devices' SGD learning rate (default 0.2)");
ABSL_FLAG(std::string, metrics_out, "", "write the per-round metrics as JSON to this file");
ABSL_FLAG(std::string, plot, "",
          "write an SVG plot of test accuracy and test loss per round to this file, with "
          "centralized float training's accuracy as a reference line");
ABSL_FLAG(bool, progress, true,
          "on a terminal, a live line while a round runs: its counts and the time the run has "
          "left (redrawn at most 10 times a second)");
ABSL_FLAG(std::string, attack, "none",
          "what the --attackers of the fleet do, each with its own valid key: 'scaled' sends "
          "the largest legal update (every value +-127 at row scale 517, random signs) and "
          "claims 2^24 samples; 'sign-flip' trains honestly and sends its delta negated with "
          "row scales x10 (at most 517); 'random' sends uniform values in [-127, 127] at row "
          "scale 517; 'label-flip' trains on labels c read as classes-1-c. All but 'scaled' "
          "claim their true sample count");
ABSL_FLAG(double, attackers, 0, "with --attack: the fraction of devices that attack, in [0, 1]");
ABSL_FLAG(uint32_t, attack_from_round, 1,
          "with --attack: the round of the run from which the attackers attack (honest "
          "before it), to watch a good model meet a bad version");
ABSL_FLAG(std::string, drift, "",
          "round=R,fraction=F,kind=label-swap|feature-shift: from round R on, a seeded "
          "round(F x devices) of the devices see changed data: label-swap exchanges the labels "
          "of classes 0 and 1, feature-shift adds 64 quantization steps (two standard "
          "deviations) to every feature (saturating). With F = 1 the test split changes too (it is the same world); with "
          "F < 1 the test accuracy column keeps the original world");
ABSL_FLAG(std::optional<double>, canary_fraction, std::nullopt,
          "in-process server: the share of devices (by a hash of their id) that serve a new "
          "version first, in (0, 1] (default 0.1)");
ABSL_FLAG(std::optional<uint32_t>, rollout_min_devices, std::nullopt,
          "in-process server: devices whose evaluations a candidate needs before it is "
          "promoted or rolled back (default 5)");
ABSL_FLAG(std::optional<double>, rollout_tolerance, std::nullopt,
          "in-process server: how far below the serving version's fleet accuracy a candidate "
          "may be and still be promoted, as a fraction in [0, 1] (default 0.01)");
ABSL_FLAG(std::optional<uint32_t>, drift_window_rounds, std::nullopt,
          "in-process server: rounds of the serving version's fleet accuracy the drift alert "
          "looks at (default 3)");
ABSL_FLAG(std::optional<double>, drift_margin, std::nullopt,
          "in-process server: a drift alert is raised when that window's accuracy falls more "
          "than this below the accuracy at promotion, in (0, 1] (default 0.05)");
ABSL_FLAG(std::optional<std::string>, strategy, std::nullopt,
          "in-process server: how a round's updates are combined: 'fedavg' (default), "
          "'trimmed-mean' (per value, the mean after dropping --trim of the lowest and of the "
          "highest), 'median' (per value), 'fedavgm' (server momentum) or 'fedadam'");
ABSL_FLAG(std::optional<double>, trim, std::nullopt,
          "--strategy trimmed-mean: the share dropped at each end, in [0, 0.5) (default 0.2)");
ABSL_FLAG(std::optional<double>, dp_noise, std::nullopt,
          "in-process server: central differential privacy with this noise multiplier z, in "
          "[0.1, 1000]: discrete Gaussian noise of sigma = z x --dp_clip on every value of each "
          "round's sum, every update weighing 1 (fedavg, fedavgm, fedadam)");
ABSL_FLAG(std::optional<double>, dp_epsilon, std::nullopt,
          "in-process server: central differential privacy spending at most this epsilon (at "
          "--dp_delta) over the run: alone, the smallest noise multiplier that keeps --rounds "
          "versions within it; with --dp_noise, that noise, and training stops when the "
          "budget is spent");
ABSL_FLAG(std::optional<double>, dp_clip, std::nullopt,
          "with --dp_noise or --dp_epsilon: every update's delta is clipped to this L2 norm "
          "(real units; the noise is proportional to it). Default 1: on digits the median update's "
          "norm is about 1.2-1.8 in the first round and 0.4-0.9 after the fifth, so 1 clips the "
          "early large steps and passes most later updates whole");
ABSL_FLAG(std::optional<double>, dp_delta, std::nullopt,
          "with --dp_noise or --dp_epsilon: the delta of the (epsilon, delta) reported, in "
          "(0, 0.1] (default 1e-5)");
ABSL_FLAG(bool, bounded_influence, true,
          "in-process server: cap each update's weight and clip its norm (false: plain FedAvg)");
ABSL_FLAG(std::string, fleet_key, "",
          "simulate: the fleet key file (32 bytes, mode 0600) the virtual devices derive their "
          "keys from; required with --server (that server's key, which it logs at start), "
          "optional in process (default: the in-process server makes one)");
ABSL_FLAG(std::string, device, "", "bridge: the device's link, tcp:HOST:PORT or serial:PATH");
ABSL_FLAG(uint32_t, baud, 115200, "bridge: serial line rate");
ABSL_FLAG(std::string, tls_ca, "",
          "PEM CA certificates that signed the server's certificate: talk TLS to --server. "
          "Without it the agent talks plaintext, and only to a loopback --server");
ABSL_FLAG(std::string, tls_cert, "",
          "PEM client certificate chain, for a server that requires one (with --tls_key)");
ABSL_FLAG(std::string, tls_key, "", "PEM private key of --tls_cert");

namespace {

constexpr char kUsage[] =
    "host tools for tinyfed devices.\n\n"
    "  tinyfed-agent simulate [flags]\n"
    "  tinyfed-agent bridge --device tcp:HOST:PORT|serial:PATH --server HOST:PORT\n\n"
    "simulate: runs --devices virtual devices, each a real instance of the C SDK with its\n"
    "own data shard, for --rounds rounds against a tinyfed-server (an in-process one when\n"
    "--server is not given), and prints one row per round: test accuracy and test loss\n"
    "(mean cross-entropy) of the round's model on the held-out split (--test-fraction of\n"
    "every class, never trained on), bytes moved, and at the end the gap to centralized\n"
    "float training of the same head. Every device also serves a deployed model: it\n"
    "checks in every round with that model's accuracy on its own data, installs the model\n"
    "the server's staged rollout means for it, and the row shows the serving version's\n"
    "fleet accuracy (the server's drift window), the candidate in canary, its stage\n"
    "(canary, promoted, rolled back), the devices holding it, and drift alerts when raised\n"
    "and cleared (--drift changes part of the fleet's data from a round on). --strategy\n"
    "chooses how the in-process server combines updates, --dp_noise or --dp_epsilon adds\n"
    "central differential privacy (the row's eps column is the epsilon spent so far, and a\n"
    "spent budget ends the run), --attack makes --attackers of the fleet send bad updates.\n"
    "A CSV's\n"
    "first line is skipped as a header when none of its fields is a number\n"
    "(--header=true|false decides instead). Flags that do not apply to the run (--alpha\n"
    "with --partition iid, the in-process server's flags with --server, bridge flags\n"
    "with simulate) are refused, not ignored.\n\n"
    "bridge: relays a device's framed check-ins and updates (client-sdk/include/tinyfed/\n"
    "link.h) to the server's gRPC service and the answers back, bytes unchanged. Only\n"
    "whole frames that pass their CRC are relayed. A lost link is logged and reopened\n"
    "every second until the bridge is stopped; a frame it cut short is dropped and\n"
    "logged, never sent in part (the device resends it after its reply timeout). A\n"
    "serial port is set to raw 8N1 at --baud with no flow control; a port that refuses\n"
    "ends the bridge with one line on stderr and exit status 2.\n\n"
    "TLS: --tls_ca FILE verifies the server's certificate (and --tls_cert/--tls_key\n"
    "present the agent's own, when the server requires client certificates). Without\n"
    "--tls_ca the agent talks plaintext, and only to a loopback --server (127.0.0.1,\n"
    "localhost, ::1); any other address is refused.\n\n"
    "Keys: every virtual device signs with its own key, derived from the fleet key\n"
    "(tinyfed-admin keys device). With --server, give that server's key with --fleet_key.\n\n"
    "Flags may be written with dashes or underscores (--label-column, --label_column).\n"
    "Example:\n"
    "  tinyfed-agent simulate --dataset digits --devices 100 --rounds 30 \\\n"
    "      --partition dirichlet --alpha 0.5 --metrics-out metrics.json --plot run.svg";

// Flags each command reads; one given to the other command is refused.
constexpr const char* kSimulateOnlyFlags[] = {
    "dataset", "label_column", "header", "delimiter", "data_dir", "test_fraction", "devices",
    "rounds", "partition", "alpha", "seed", "concurrency", "clients_per_round", "epochs",
    "batch_size", "learning_rate", "metrics_out", "plot", "progress", "attack", "attackers",
    "bounded_influence", "fleet_key", "attack_from_round", "drift", "canary_fraction",
    "rollout_min_devices", "rollout_tolerance", "drift_window_rounds", "drift_margin",
    "strategy", "trim", "dp_noise", "dp_epsilon", "dp_clip", "dp_delta"};
constexpr const char* kBridgeOnlyFlags[] = {"device", "baud"};

// absl flags are identifiers; accept the dashed spelling users expect.
// `given` receives the name of every flag on the command line, as absl
// spells it, and for a "--noNAME" also NAME (a boolean set to false).
std::vector<char*> NormalizeFlagNames(int argc, char** argv, std::vector<std::string>* storage,
                                      std::set<std::string>* given) {
  storage->reserve(static_cast<size_t>(argc));
  bool flags_ended = false;
  for (int i = 0; i < argc; ++i) {
    std::string arg = argv[i];
    if (arg == "--") flags_ended = true;
    // absl takes "-name" as well as "--name".
    const size_t dashes = arg.rfind("--", 0) == 0 ? 2 : arg.rfind('-', 0) == 0 ? 1 : 0;
    if (i > 0 && !flags_ended && dashes > 0 && arg.size() > dashes) {
      const size_t end = std::min(arg.find('='), arg.size());
      std::string name = arg.substr(dashes, end - dashes);
      std::replace(name.begin(), name.end(), '-', '_');
      // Only "--" is rewritten: "-x-y" may be the value of the flag before.
      if (dashes == 2) arg.replace(2, end - 2, name);
      given->insert(name);
      if (name.rfind("no", 0) == 0) given->insert(name.substr(2));
    }
    storage->push_back(std::move(arg));
  }
  std::vector<char*> out;
  for (std::string& s : *storage) out.push_back(s.data());
  return out;
}

int Fail(const std::string& message) {
  std::fprintf(stderr, "tinyfed-agent: %s\n", message.c_str());
  return 2;
}

}  // namespace

int main(int argc, char** argv) {
  tinyfed::ConfigureFlagHelp(kUsage);
  std::vector<std::string> storage;
  std::set<std::string> given;
  std::vector<char*> args = NormalizeFlagNames(argc, argv, &storage, &given);
  std::vector<char*> positional = tinyfed::ParseFlagsOrAnswerHelp(args);
  if (positional.size() < 2) {
    return Fail("missing command; try 'tinyfed-agent simulate --help'");
  }
  const std::string command = positional[1];
  if (command != "simulate" && command != "bridge") {
    return Fail("unknown command '" + command + "'; try --help");
  }
  if (positional.size() > 2) return Fail(std::string("unexpected argument '") + positional[2] + "'");
  const auto refuse_flags_of_other = [&](const auto& flags, const char* other) {
    for (const char* flag : flags) {
      if (given.count(flag) != 0) {
        std::string dashed = flag;
        std::replace(dashed.begin(), dashed.end(), '_', '-');
        return Fail("--" + dashed + " is for '" + other + "', not '" + command + "'");
      }
    }
    return 0;
  };
  if (const int failed = command == "bridge" ? refuse_flags_of_other(kSimulateOnlyFlags, "simulate")
                                             : refuse_flags_of_other(kBridgeOnlyFlags, "bridge");
      failed != 0) {
    return failed;
  }
  if (command == "bridge") {
    tinyfed::agent::BridgeOptions b;
    b.device = absl::GetFlag(FLAGS_device);
    b.server = absl::GetFlag(FLAGS_server);
    b.baud = absl::GetFlag(FLAGS_baud);
    b.tls = {absl::GetFlag(FLAGS_tls_ca), absl::GetFlag(FLAGS_tls_cert),
             absl::GetFlag(FLAGS_tls_key)};
    const absl::Status s = tinyfed::agent::RunBridge(b, stderr);
    return s.ok() ? 0 : Fail(std::string(s.message()));
  }

  // The in-process server logs rounds and rejected updates; late updates of
  // over-selected devices are expected here, so only errors are shown.
  spdlog::set_level(spdlog::level::err);
  absl::SetMutexDeadlockDetectionMode(absl::OnDeadlockCycle::kIgnore);
  tinyfed::agent::SimulateOptions o;
  o.dataset = absl::GetFlag(FLAGS_dataset);
  o.label_column = absl::GetFlag(FLAGS_label_column);
  o.header = absl::GetFlag(FLAGS_header);
  o.delimiter = absl::GetFlag(FLAGS_delimiter);
  o.data_dir = absl::GetFlag(FLAGS_data_dir);
  o.test_fraction = absl::GetFlag(FLAGS_test_fraction);
  o.devices = absl::GetFlag(FLAGS_devices);
  o.rounds = absl::GetFlag(FLAGS_rounds);
  o.partition = absl::GetFlag(FLAGS_partition);
  o.alpha = absl::GetFlag(FLAGS_alpha);
  o.seed = absl::GetFlag(FLAGS_seed);
  o.server = absl::GetFlag(FLAGS_server);
  o.tls = {absl::GetFlag(FLAGS_tls_ca), absl::GetFlag(FLAGS_tls_cert),
           absl::GetFlag(FLAGS_tls_key)};
  o.fleet_key_file = absl::GetFlag(FLAGS_fleet_key);
  o.concurrency = absl::GetFlag(FLAGS_concurrency);
  o.attack = absl::GetFlag(FLAGS_attack);
  o.attackers = absl::GetFlag(FLAGS_attackers);
  o.bounded_influence = absl::GetFlag(FLAGS_bounded_influence);
  o.attack_from_round = absl::GetFlag(FLAGS_attack_from_round);
  o.drift = absl::GetFlag(FLAGS_drift);
  o.canary_fraction = absl::GetFlag(FLAGS_canary_fraction);
  o.rollout_min_devices = absl::GetFlag(FLAGS_rollout_min_devices);
  o.rollout_tolerance = absl::GetFlag(FLAGS_rollout_tolerance);
  o.drift_window_rounds = absl::GetFlag(FLAGS_drift_window_rounds);
  o.drift_margin = absl::GetFlag(FLAGS_drift_margin);
  o.strategy = absl::GetFlag(FLAGS_strategy).value_or("");
  o.trim = absl::GetFlag(FLAGS_trim);
  o.dp_noise = absl::GetFlag(FLAGS_dp_noise);
  o.dp_epsilon = absl::GetFlag(FLAGS_dp_epsilon);
  o.dp_clip = absl::GetFlag(FLAGS_dp_clip);
  o.dp_delta = absl::GetFlag(FLAGS_dp_delta);
  if (o.concurrency == 0) o.concurrency = std::max(1u, std::thread::hardware_concurrency());
  o.clients_per_round = absl::GetFlag(FLAGS_clients_per_round);
  o.epochs = absl::GetFlag(FLAGS_epochs);
  o.batch_size = absl::GetFlag(FLAGS_batch_size);
  o.learning_rate = absl::GetFlag(FLAGS_learning_rate);
  o.metrics_out = absl::GetFlag(FLAGS_metrics_out);
  o.plot = absl::GetFlag(FLAGS_plot);
  o.progress = absl::GetFlag(FLAGS_progress);
  absl::StatusOr<tinyfed::v1::SimulationReport> report = tinyfed::agent::RunSimulate(o, stdout, stderr);
  if (!report.ok()) return Fail(std::string(report.status().message()));
  return 0;
}
