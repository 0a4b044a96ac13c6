#include "admin_output.h"

#include <cstdint>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "table.h"
#include "tinyfed_common/evaluation_text.h"

namespace tinyfed::admin {

namespace {

// Callers check that samples is not 0.
std::string FormatFleetAccuracy(const v1::FleetEvaluation& f) {
  return FormatAccuracy(f.correct(), f.samples());
}

std::string StageName(const v1::ModelVersion& v) {
  if (!v.has_rollout()) return "-";
  const std::string words = RolloutStageWords(v1::RolloutStage_Name(v.rollout().stage()));
  return words.empty() ? absl::StrCat("stage ", static_cast<int>(v.rollout().stage())) : words;
}

// "accuracy 0.9512 (1902 of 2000 samples, 12 devices)".
std::string EvaluationSummary(const v1::FleetEvaluation& f) {
  return absl::StrCat("accuracy ", FormatFleetAccuracy(f), " (", f.correct(), " of ", f.samples(),
                      " samples, ", f.devices(), f.devices() == 1 ? " device)" : " devices)");
}

}  // namespace

std::string FormatServerStatus(const v1::ServerStatus& status) {
  std::vector<std::pair<std::string, std::string>> lines;
  lines.emplace_back("server", absl::StrCat("tinyfed-server ", status.server_version()));
  lines.emplace_back("server time", FormatUnixMs(status.now_unix_ms()));
  if (status.paused()) {
    lines.emplace_back(
        "paused", absl::StrCat("yes, since ", FormatUnixMs(status.paused_since_unix_ms()), " (",
                               FormatDurationMs(status.now_unix_ms() -
                                                status.paused_since_unix_ms()),
                               ") by ", status.paused_by()));
  } else {
    lines.emplace_back("paused", "no");
  }
  lines.emplace_back("latest version", absl::StrCat(status.latest_version()));
  lines.emplace_back("serving version", absl::StrCat(status.serving_version()));
  if (status.candidate_version() == 0) {
    lines.emplace_back("candidate", "none");
  } else {
    const v1::FleetEvaluation& c = status.candidate_evaluation();
    lines.emplace_back(
        "candidate",
        absl::StrCat(status.candidate_version(), " (canary: ",
                     absl::StrFormat("%g", status.canary_fraction() * 100), "% of devices); ",
                     c.samples() != 0 ? EvaluationSummary(c) : std::string("no evaluations yet")));
  }
  const v1::FleetEvaluation& w = status.serving_window();
  lines.emplace_back("serving window", w.samples() != 0 ? EvaluationSummary(w)
                                                        : std::string("no evaluations yet"));
  if (status.alerts().empty()) lines.emplace_back("alerts", "none");
  for (const v1::Alert& a : status.alerts()) {
    lines.emplace_back("alert", absl::StrCat(a.kind(), " on version ", a.model_version(),
                                             " since round ", a.raised_round(), " (",
                                             FormatUnixMs(a.raised_unix_ms()), "): ", a.message()));
  }
  lines.emplace_back("revoked devices", absl::StrCat(status.revoked_devices()));
  lines.emplace_back("aggregation", FormatAggregation(status.aggregation()));
  lines.emplace_back("privacy", FormatPrivacy(status.privacy()));
  const v1::RoundStatus& round = status.round();
  if (round.round() == 0) {
    lines.emplace_back("round", "none yet");
  } else {
    lines.emplace_back("round", absl::StrCat(round.round(), round.open() ? " (open)" : " (closed)",
                                             " on version ", round.base_version()));
    lines.emplace_back("tasks issued", absl::StrCat(round.tasks_issued(), " of ",
                                                    round.tasks_limit()));
    lines.emplace_back("accepted",
                       absl::StrCat(round.accepted(), " of ", round.target_updates(), " (or ",
                                    round.min_updates(), " at the deadline); ", round.pending(),
                                    " pending, ", round.rejected(), " rejected"));
    lines.emplace_back("opened", FormatUnixMs(round.opened_unix_ms()));
    lines.emplace_back("deadline",
                       round.open() ? absl::StrCat(FormatUnixMs(round.deadline_unix_ms()), " (in ",
                                                   FormatDurationMs(round.time_left_ms()), ")")
                                    : FormatUnixMs(round.deadline_unix_ms()));
  }
  return RenderKeyValues(lines);
}


std::string FormatAggregation(const v1::Aggregation& a) {
  if (a.strategy().empty()) return "-";
  const auto q16 = [](uint32_t q) { return absl::StrFormat("%g", q / 65536.0); };
  // eta and tau are in 2^-16 master steps.
  const auto steps = [](uint64_t units) {
    return absl::StrFormat("%g", static_cast<double>(units) / 65536.0);
  };
  std::string text = a.strategy();
  if (a.strategy() == "fedadam") {
    absl::StrAppend(&text, ": beta1 ", q16(a.momentum_q16()), ", beta2 ",
                    q16(a.second_moment_decay_q16()), ", step ", steps(a.adam_step()), ", tau ",
                    steps(a.adam_tau()), " (master steps)");
  } else {
    absl::StrAppend(&text, ": server lr ", q16(a.server_lr_q16()));
    if (a.strategy() == "trimmed-mean") {
      absl::StrAppend(&text, ", trim fraction ",
                      absl::StrFormat("%g", a.trim_fraction_ppm() / 1e6));
    }
    if (a.strategy() == "fedavgm") absl::StrAppend(&text, ", momentum ", q16(a.momentum_q16()));
  }
  std::vector<std::string> bounds;
  if (a.uniform_weights()) bounds.push_back("uniform weights");
  // The robust strategies and uniform weights give every update one vote:
  // a configured weight cap is recorded but applies to nothing.
  const bool weighted = !a.uniform_weights() && a.strategy() != "median" &&
                        a.strategy() != "trimmed-mean";
  if (weighted && a.weight_median_multiple_q16() != 0) {
    bounds.push_back(absl::StrCat("weight cap ", q16(a.weight_median_multiple_q16()), "x median"));
  }
  if (a.norm_bound() != 0) {
    bounds.push_back(absl::StrCat("norm bound ", a.norm_bound(), " master steps"));
  }
  if (a.norm_median_multiple_q16() != 0) {
    bounds.push_back(absl::StrCat("norm cap ", q16(a.norm_median_multiple_q16()), "x median"));
  }
  absl::StrAppend(&text, "; ", bounds.empty() ? "no influence bounds" : absl::StrJoin(bounds, ", "));
  return text;
}

std::string FormatPrivacy(const v1::PrivacyStatus& p) {
  if (!p.enabled()) return "off";
  std::string text = absl::StrFormat("epsilon %.4g spent of ", p.epsilon_spent());
  if (p.epsilon_budget() > 0) {
    absl::StrAppend(&text, absl::StrFormat("budget %.4g", p.epsilon_budget()));
  } else {
    absl::StrAppend(&text, "no budget");
  }
  absl::StrAppend(&text, absl::StrFormat(" at delta %g (", p.delta()), p.noised_versions(),
                  p.noised_versions() == 1 ? " version noised" : " versions noised");
  if (p.budget_spent()) {
    absl::StrAppend(&text, ", budget spent");
  } else if (p.epsilon_budget() > 0) {
    absl::StrAppend(&text, ", ", p.rounds_left(), p.rounds_left() == 1 ? " round" : " rounds",
                    " left");
  }
  absl::StrAppend(&text, ")");
  return text;
}

std::string FormatVerify(const v1::VerifyVersionResponse& r) {
  std::vector<std::pair<std::string, std::string>> lines;
  lines.emplace_back("version", absl::StrCat(r.version()));
  lines.emplace_back("round", absl::StrCat(r.round()));
  lines.emplace_back("strategy", r.strategy());
  lines.emplace_back("updates", absl::StrCat(r.updates()));
  lines.emplace_back("committed checksum", absl::StrFormat("0x%08x", r.committed_checksum()));
  lines.emplace_back("recomputed checksum", absl::StrFormat("0x%08x", r.recomputed_checksum()));
  lines.emplace_back(
      "result", r.matches() ? std::string("matches")
                            : absl::StrCat(r.differing_values(),
                                           r.differing_values() == 1 ? " value differs"
                                                                     : " values differ"));
  return RenderKeyValues(lines);
}

std::string FormatVersions(const v1::ListVersionsResponse& versions) {
  // The privacy column only when some listed version was noised: a
  // server without central DP keeps the table it always had.
  bool noised = false;
  for (const v1::ModelVersion& v : versions.versions()) {
    noised = noised || v.aggregation().noise_sigma() != 0;
  }
  std::vector<std::string> headers = {"VERSION", "PARENT",    "ORIGIN",        "STAGE",
                                      "PARTICIPANTS", "SAMPLES", "CAPPED",    "CLIPPED",
                                      "REJECTED",     "LOSS",    "FLEET ACC", "FLEET DEVICES"};
  if (noised) headers.push_back("EPS");
  headers.push_back("COMMITTED (UTC)");
  Table table(headers);
  for (size_t c : {0, 1, 4, 5, 6, 7, 8, 9, 10, 11}) table.AlignRight(c);
  if (noised) table.AlignRight(12);
  for (const v1::ModelVersion& v : versions.versions()) {
    std::string origin;
    if (v.restored_from() != 0) {
      origin = absl::StrCat("rollback to ", v.restored_from());
    } else if (v.round() != 0) {
      origin = absl::StrCat("round ", v.round());
    } else {
      origin = "initial";
    }
    const v1::ModelMetrics& m = v.metrics();
    const v1::FleetEvaluation& f = v.fleet_evaluation();
    const bool evaluated = v.has_fleet_evaluation() && f.samples() != 0;
    std::vector<std::string> row = {
        absl::StrCat(v.version()),
        v.parent_version() == 0 ? "-" : absl::StrCat(v.parent_version()),
        origin,
        StageName(v),
        absl::StrCat(m.participants()),
        absl::StrCat(m.samples()),
        absl::StrCat(m.capped_updates()),
        absl::StrCat(m.clipped_updates()),
        absl::StrCat(m.rejected_updates()),
        m.participants() == 0 ? "-" : FormatQ16(m.mean_local_loss_q16()),
        evaluated ? FormatFleetAccuracy(f) : "-",
        evaluated ? absl::StrCat(f.devices()) : "-"};
    // The total spent by the time this version was committed.
    if (noised) {
      row.push_back(v.aggregation().noise_sigma() != 0
                        ? absl::StrFormat("%.4g", v.aggregation().epsilon_spent())
                        : "-");
    }
    row.push_back(FormatUnixMs(v.created_unix_ms()));
    table.AddRow(row);
  }
  return table.Render();
}

std::string FormatRollback(const v1::RollbackRequest& request,
                           const v1::RollbackResponse& response) {
  const v1::ModelVersion& v = response.version();
  std::string line = absl::StrCat("rolled back to version ", request.to_version(),
                                  ": committed version ", v.version(), " (parent ",
                                  v.parent_version(), ", restored from ", v.restored_from(), ")");
  if (response.abandoned_round() != 0) {
    absl::StrAppend(&line, "; abandoned round ", response.abandoned_round());
  }
  return line + "\n";
}

std::string FormatPromote(const v1::PromoteResponse& response) {
  const v1::ModelVersion& v = response.version();
  std::string line = absl::StrCat("version ", v.version(), " now serves every device (was version ",
                                  response.previous_serving(), ")");
  if (!v.rollout().reason().empty()) absl::StrAppend(&line, ": ", v.rollout().reason());
  return line + "\n";
}

std::string FormatDevices(const v1::ListDevicesResponse& devices) {
  Table seen({"DEVICE", "LAST TASK (UTC)", "LAST ROUND", "TASKS", "UPDATES", "REVOKED"});
  for (size_t c : {2, 3, 4}) seen.AlignRight(c);
  for (const v1::DeviceSeen& d : devices.seen()) {
    seen.AddRow({d.device_id(), FormatUnixMs(d.last_task_unix_ms()), absl::StrCat(d.last_round()),
                 absl::StrCat(d.tasks()), absl::StrCat(d.updates()), d.revoked() ? "yes" : "no"});
  }
  std::string out = seen.Render();
  Table revoked({"REVOKED DEVICE", "REVOKED AT (UTC)"});
  for (const v1::RevokedDevice& d : devices.revoked()) {
    revoked.AddRow({d.device_id(), FormatUnixMs(d.revoked_unix_ms())});
  }
  absl::StrAppend(&out, "\n", revoked.row_count() == 0 ? "no revoked devices\n" : revoked.Render());
  return out;
}

std::string FormatRevoke(const std::string& device_id, const v1::RevokeDeviceResponse& response) {
  return absl::StrCat("device ", device_id,
                      response.already_revoked() ? " was already revoked, at " : " revoked at ",
                      FormatUnixMs(response.revoked_unix_ms()), "\n");
}

std::string FormatAudit(const v1::ListAuditResponse& audit) {
  Table table({"ID", "TIME (UTC)", "ACTOR", "ACTION", "DETAIL"});
  table.AlignRight(0);
  for (const v1::AuditRecord& r : audit.records()) {
    table.AddRow({absl::StrCat(r.id()), FormatUnixMs(r.at_unix_ms()), r.actor(), r.action(),
                  r.detail()});
  }
  return table.Render();
}

}  // namespace tinyfed::admin
