// `tinyfed-agent simulate`: a virtual fleet on real data against a real
// server (in-process unless --server is given), one table row per round,
// a summary against centralized float training, and an optional JSON
// report.
#ifndef TINYFED_DEVICE_AGENT_SIMULATE_COMMAND_H_
#define TINYFED_DEVICE_AGENT_SIMULATE_COMMAND_H_

#include <cstdint>
#include <cstdio>
#include <string>

#include "absl/status/statusor.h"
#include "channel_credentials.h"
#include "tinyfed/v1/simulation_report.pb.h"

namespace tinyfed::agent {

struct SimulateOptions {
  std::string dataset = "digits";       // "digits" or a CSV path
  std::string label_column = "last";    // CSV: "first" or "last"
  std::string data_dir;                 // where the set-up step caches digits
  double test_fraction = 0.2;
  uint32_t devices = 100;
  uint32_t rounds = 30;
  std::string partition = "dirichlet";  // "iid" or "dirichlet"
  double alpha = 0.5;
  uint32_t seed = 1;
  std::string server;                   // empty: in-process
  ChannelTlsOptions tls;                // for `server`; plaintext only to loopback
  // The fleet key file (32 bytes, mode 0600) the devices' keys are derived
  // from. Required with `server` (that server's key); for the in-process
  // server optional: it uses this file, or creates a key of its own.
  std::string fleet_key_file;
  uint32_t concurrency = 2;
  // In-process server only: the round policy and the devices' plan.
  uint32_t clients_per_round = 20;
  uint32_t epochs = 5;
  uint32_t batch_size = 8;
  double learning_rate = 0.2;
  std::string metrics_out;
  // "none", or "scaled": a fraction `attackers` of the fleet (in [0, 1],
  // rounded to whole devices, chosen by `seed`) sends the largest legal
  // update with random signs and claims 2^24 samples (virtual_fleet.h).
  std::string attack = "none";
  double attackers = 0;
  // In-process server only: false sets every bounded-influence option of
  // its config to 0 (off), to show what the bounds stop.
  bool bounded_influence = true;
  bool progress = true;                 // a live line on stderr while a round runs
};

// INVALID_ARGUMENT naming the first bad option (a `server` that is not
// loopback without tls.ca_file is one, a `server` without fleet_key_file
// another).
absl::Status ValidateSimulateOptions(const SimulateOptions& options);

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
