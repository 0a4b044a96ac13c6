#include "status_page.h"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <optional>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/time/time.h"
#include "tinyfed_common/evaluation_text.h"

namespace tinyfed::server {
namespace {

// Calm, legible, and nothing fetched: the system's own sans-serif, muted
// greys, one colour per series (the same in the plots' keys).
constexpr char kStyle[] = R"css(
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; margin: 0;
       background: #f7f7f4; color: #23262b; line-height: 1.4; }
main { max-width: 1340px; margin: 0 auto; padding: 1.2rem 1.5rem 2rem; }
header { display: flex; justify-content: space-between; align-items: baseline;
         flex-wrap: wrap; border-bottom: 1px solid #d9d9d2; padding-bottom: .5rem; }
h1 { font-size: 1.35rem; margin: 0; font-weight: 600; }
h2 { font-size: 1.05rem; margin: 1.6rem 0 .6rem; font-weight: 600; }
.muted { color: #6b6f76; font-size: .9rem; }
.banner { margin-top: 1rem; padding: .7rem 1rem; border-radius: 6px; }
.paused, .warning { background: #fdf3d8; border: 1px solid #e2bf5c; }
.alert { background: #fbe4de; border: 1px solid #d98b76; }
.alert ul { margin: .3rem 0 0; padding-left: 1.2rem; }
.cards { display: flex; flex-wrap: wrap; gap: .8rem; }
.card { background: #fff; border: 1px solid #e1e1da; border-radius: 6px;
        padding: .6rem .9rem; min-width: 9rem; }
.card .label { color: #6b6f76; font-size: .8rem; }
.card .value { font-size: 1.2rem; font-variant-numeric: tabular-nums; }
.plots { display: flex; flex-wrap: wrap; gap: .8rem; }
figure { margin: 0; background: #fff; border: 1px solid #e1e1da; border-radius: 6px;
         padding: .5rem .6rem .3rem; }
figcaption { font-size: .9rem; margin-bottom: .2rem; }
figure.pending { border-style: dashed; background: #fbfbf9; }
.key { display: inline-block; width: .7em; height: .7em; border-radius: 50%;
       margin: 0 .25em 0 .6em; vertical-align: baseline; }
svg text { font-size: 10px; fill: #6b6f76; }
svg .grid { stroke: #ecece6; stroke-width: 1; }
svg .axis { stroke: #b9b9b0; stroke-width: 1; }
svg .line { fill: none; stroke-width: 1.5; }
/* A narrow window scrolls the versions table rather than cut it off. */
.scroll { overflow-x: auto; }
table { border-collapse: collapse; width: 100%; background: #fff;
        border: 1px solid #e1e1da; font-size: .9rem; }
th, td { padding: .35rem .6rem; border-bottom: 1px solid #ecece6; text-align: right;
         font-variant-numeric: tabular-nums; white-space: nowrap; }
th { background: #f0f0eb; font-weight: 600; }
th:nth-child(3), td:nth-child(3), th:nth-child(4), td:nth-child(4) { text-align: left; }
tr.restored td { background: #f6f2fb; }
.tag { font-size: .75rem; border: 1px solid #9db4cf; color: #3b6ea5; border-radius: 3px;
       padding: 0 .3em; margin-left: .4em; }
.tag.candidate { border-color: #d2b06a; color: #8a6414; }
footer { margin-top: 1.5rem; }
)css";

struct SeriesStyle {
  const char* name;    // data-series
  const char* colour;
};
constexpr SeriesStyle kParticipants{"participants", "#3b6ea5"};
constexpr SeriesStyle kAccepted{"accepted", "#3a8a5c"};
constexpr SeriesStyle kRejected{"rejected", "#c0573e"};
constexpr SeriesStyle kLoss{"loss", "#7b5ea7"};
constexpr SeriesStyle kFleetAccuracy{"fleet-accuracy", "#2f8f8a"};
constexpr SeriesStyle kFleetLoss{"fleet-loss", "#b3742a"};

// Plot geometry in SVG user units: a small panel, four to a wide row.
constexpr double kWidth = 240, kHeight = 150;
constexpr double kLeft = 38, kRight = 10, kTop = 10, kBottom = 24;

std::string FormatUtc(int64_t unix_ms) {
  if (unix_ms <= 0) return "\xE2\x80\x94";  // an em dash: never set
  return absl::FormatTime("%Y-%m-%d %H:%M:%S", absl::FromUnixMillis(unix_ms),
                          absl::UTCTimeZone());
}

std::string FormatDuration(int64_t ms) {
  const int64_t s = std::max<int64_t>(ms, 0) / 1000;
  if (s >= 3600) return absl::StrFormat("%d h %02d m", s / 3600, s % 3600 / 60);
  if (s >= 60) return absl::StrFormat("%d m %02d s", s / 60, s % 60);
  return absl::StrFormat("%d s", s);
}

double LossOf(const v1::ModelVersion& v) {
  return static_cast<double>(v.metrics().mean_local_loss_q16()) / 65536.0;
}

// Devices report an evaluation of the version they train from, so a
// version has one only once it has been trained from (or served).
bool Evaluated(const v1::ModelVersion& v) {
  return v.has_fleet_evaluation() && v.fleet_evaluation().samples() != 0;
}
double FleetAccuracyOf(const v1::ModelVersion& v) {
  return static_cast<double>(v.fleet_evaluation().correct()) /
         static_cast<double>(v.fleet_evaluation().samples());
}
double FleetLossOf(const v1::ModelVersion& v) {
  return static_cast<double>(v.fleet_evaluation().loss_sum_q16()) / 65536.0 /
         static_cast<double>(v.fleet_evaluation().samples());
}

// correct / samples to four decimals, rounded half up, from the exact
// sums (a double would lose their last units above 2^53).
std::string ExactAccuracy(const v1::FleetEvaluation& f) {
  return FormatAccuracy(f.correct(), f.samples());
}

// "0.9480 <muted>(4321 of 4558 samples, 40 devices)</muted>", or a dash.
std::string EvaluationCell(const v1::FleetEvaluation& f) {
  if (f.samples() == 0) return "\xE2\x80\x94";
  return absl::StrCat(ExactAccuracy(f), " <span class=\"muted\">(", f.correct(), " of ",
                      f.samples(), " samples, ", f.devices(),
                      f.devices() == 1 ? " device)</span>" : " devices)</span>");
}

std::string StageOf(const v1::ModelVersion& v) {
  if (!v.has_rollout()) return "\xE2\x80\x94";
  const std::string words = RolloutStageWords(v1::RolloutStage_Name(v.rollout().stage()));
  return words.empty() ? absl::StrCat("stage ", static_cast<int>(v.rollout().stage())) : words;
}

// The initial version and rollbacks aggregated no round: no loss of their own.
bool TrainedInRound(const v1::ModelVersion& v) { return v.round() != 0; }

std::string OriginOf(const v1::ModelVersion& v) {
  if (v.restored_from() != 0) return absl::StrCat("rollback of v", v.restored_from());
  if (v.round() == 0) return "initial";
  return absl::StrCat("round ", v.round());
}

// The smallest of 1, 2, 5 times a power of ten at or above `v`, so that
// the axis' top label is a round number.
double NiceCeiling(double v) {
  if (!(v > 0)) return 1;
  const double power = std::pow(10.0, std::floor(std::log10(v)));
  for (double m : {1.0, 2.0, 5.0, 10.0}) {
    if (m * power >= v * (1 - 1e-12)) return m * power;
  }
  return 10 * power;
}

std::string AxisLabel(double v) { return absl::StrFormat("%g", v); }

struct Point {
  uint32_t version;
  double value;
  bool restored;
  std::string title;  // already escaped
};

struct Series {
  SeriesStyle style;
  std::vector<Point> points;  // oldest version first
};

// One panel: the series over the versions (oldest left), y from 0 to a
// round number above the largest value, every point a <circle> marked as
// status_page.h says, a rollback drawn hollow.
void AppendPlot(const std::vector<uint32_t>& versions, const std::vector<Series>& series,
                absl::string_view aria_label, std::string* out) {
  absl::StrAppendFormat(out,
                        "<svg viewBox=\"0 0 %g %g\" width=\"%g\" height=\"%g\" role=\"img\" "
                        "aria-label=\"%s\">",
                        kWidth, kHeight, kWidth, kHeight, EscapeHtml(aria_label));
  const double plot_w = kWidth - kLeft - kRight;
  const double plot_h = kHeight - kTop - kBottom;
  double top = 0;
  for (const Series& s : series) {
    for (const Point& p : s.points) top = std::max(top, p.value);
  }
  top = NiceCeiling(top);
  auto x_of = [&](size_t index) {
    if (versions.size() <= 1) return kLeft + plot_w / 2;
    return kLeft + plot_w * static_cast<double>(index) / static_cast<double>(versions.size() - 1);
  };
  auto y_of = [&](double value) { return kTop + plot_h * (1 - value / top); };
  for (double fraction : {0.0, 0.5, 1.0}) {
    const double y = y_of(top * fraction);
    absl::StrAppendFormat(out, "<line class=\"%s\" x1=\"%g\" y1=\"%.1f\" x2=\"%g\" y2=\"%.1f\"/>",
                          fraction == 0 ? "axis" : "grid", kLeft, y, kWidth - kRight, y);
    if (fraction != 0.5) {
      absl::StrAppendFormat(out,
                            "<text x=\"%g\" y=\"%.1f\" text-anchor=\"end\" "
                            "dominant-baseline=\"middle\">%s</text>",
                            kLeft - 5, y, AxisLabel(top * fraction));
    }
  }
  // Version labels at both ends, and in the middle when there is room.
  std::vector<size_t> labelled;
  if (!versions.empty()) labelled.push_back(0);
  if (versions.size() >= 5) labelled.push_back((versions.size() - 1) / 2);
  if (versions.size() >= 2) labelled.push_back(versions.size() - 1);
  for (size_t i : labelled) {
    absl::StrAppendFormat(out, "<text x=\"%.1f\" y=\"%g\" text-anchor=\"middle\">v%d</text>",
                          x_of(i), kHeight - 8, versions[i]);
  }
  for (const Series& s : series) {
    std::string polyline;
    std::string circles;
    for (const Point& p : s.points) {
      const size_t index = static_cast<size_t>(
          std::find(versions.begin(), versions.end(), p.version) - versions.begin());
      const double x = x_of(index), y = y_of(p.value);
      absl::StrAppendFormat(&polyline, "%s%.1f,%.1f", polyline.empty() ? "" : " ", x, y);
      absl::StrAppendFormat(&circles,
                            "<circle class=\"point\" data-series=\"%s\" data-version=\"%d\" "
                            "cx=\"%.1f\" cy=\"%.1f\" r=\"3.2\" fill=\"%s\" stroke=\"%s\" "
                            "stroke-width=\"1.5\"><title>%s</title></circle>",
                            s.style.name, p.version, x, y, p.restored ? "#ffffff" : s.style.colour,
                            s.style.colour, p.title);
    }
    if (s.points.size() >= 2) {
      absl::StrAppendFormat(out, "<polyline class=\"line\" stroke=\"%s\" points=\"%s\"/>",
                            s.style.colour, polyline);
    }
    absl::StrAppend(out, circles);
  }
  absl::StrAppend(out, "</svg>");
}

std::string Key(const SeriesStyle& style, absl::string_view label) {
  return absl::StrFormat("<span class=\"key\" style=\"background:%s\"></span>%s", style.colour,
                         label);
}

void AppendCard(absl::string_view label, absl::string_view value_html, std::string* out) {
  absl::StrAppend(out, "<div class=\"card\"><div class=\"label\">", label,
                  "</div><div class=\"value\">", value_html, "</div></div>");
}

void AppendRound(const v1::ServerStatus& status, std::string* out) {
  const v1::RoundStatus& r = status.round();
  absl::StrAppend(out, "<section id=\"round\"><h2>");
  if (r.round() == 0) {
    absl::StrAppend(out, "Round: none opened yet</h2>");
  } else {
    absl::StrAppend(out, "Round ", r.round(), r.open() ? " \xC2\xB7 open" : " \xC2\xB7 not open",
                    "</h2>");
  }
  absl::StrAppend(out, "<div class=\"cards\">");
  if (r.round() != 0) {
    AppendCard("Base version", absl::StrCat("v", r.base_version()), out);
    AppendCard("Tasks issued", absl::StrCat(r.tasks_issued(), " / ", r.tasks_limit()), out);
    AppendCard(
        "Accepted",
        absl::StrCat(r.accepted(), " <span class=\"muted\">of ", r.target_updates(), " (min ",
                     r.min_updates(), ")</span>",
                     r.pending() != 0 ? absl::StrCat(" <span class=\"muted\">+", r.pending(),
                                                     " being written</span>")
                                      : std::string()),
        out);
    AppendCard("Rejected", absl::StrCat(r.rejected()), out);
    AppendCard("Deadline (UTC)",
               absl::StrCat(FormatUtc(r.deadline_unix_ms()), " <span class=\"muted\">",
                            r.time_left_ms() > 0
                                ? absl::StrCat(FormatDuration(r.time_left_ms()), " left")
                                : std::string("passed"),
                            "</span>"),
               out);
  }
  AppendCard("Latest version", absl::StrCat("v", status.latest_version()), out);
  AppendCard("Serving version", absl::StrCat("v", status.serving_version()), out);
  AppendCard("Revoked devices", absl::StrCat(status.revoked_devices()), out);
  absl::StrAppend(out, "</div></section>");
}

// The staged rollout: the serving version's accuracy over the drift
// window, and the candidate with the share of devices that serve it.
void AppendRollout(const v1::ServerStatus& status, std::string* out) {
  absl::StrAppend(out, "<section id=\"rollout\"><h2>Rollout</h2><div class=\"cards\">");
  AppendCard("Serving accuracy (drift window)", EvaluationCell(status.serving_window()), out);
  if (status.candidate_version() == 0) {
    AppendCard("Candidate", "none", out);
  } else {
    AppendCard("Candidate",
               absl::StrCat("v", status.candidate_version(), " <span class=\"muted\">canary ",
                            absl::StrFormat("%g", status.canary_fraction() * 100),
                            "% of devices</span>"),
               out);
    AppendCard("Candidate accuracy", EvaluationCell(status.candidate_evaluation()), out);
  }
  absl::StrAppend(out, "</div></section>");
}

// The aggregation in force and the privacy budget. The strategy name
// comes from the server's own record, but it is escaped like any string:
// the page never trusts text to be markup.
void AppendAggregation(const v1::ServerStatus& status, std::string* out) {
  const v1::Aggregation& a = status.aggregation();
  const v1::PrivacyStatus& p = status.privacy();
  const std::string strategy = a.strategy().empty() ? std::string("-") : a.strategy();
  const auto q16 = [](uint32_t q) { return absl::StrFormat("%g", q / 65536.0); };
  absl::StrAppend(out, "<section id=\"aggregation\" data-strategy=\"", EscapeHtml(strategy),
                  "\" data-privacy=\"", p.enabled() ? "on" : "off", "\"");
  if (p.enabled()) {
    absl::StrAppend(out,
                    absl::StrFormat(" data-epsilon-spent=\"%.6g\" data-epsilon-budget=\"%.6g\" "
                                    "data-delta=\"%g\" data-noised-versions=\"%d\" "
                                    "data-rounds-left=\"%d\"",
                                    p.epsilon_spent(), p.epsilon_budget(), p.delta(),
                                    p.noised_versions(), p.rounds_left()));
  }
  absl::StrAppend(out, "><h2>Aggregation</h2><div class=\"cards\">");
  AppendCard("Strategy", EscapeHtml(strategy), out);
  std::vector<std::string> parameters;
  if (a.strategy() == "fedadam") {
    parameters.push_back(absl::StrCat("\xCE\xB2\xE2\x82\x81 ", q16(a.momentum_q16()),
                                      ", \xCE\xB2\xE2\x82\x82 ", q16(a.second_moment_decay_q16())));
    parameters.push_back(absl::StrFormat("step %g, \xCF\x84 %g master steps",
                                         static_cast<double>(a.adam_step()) / 65536.0,
                                         static_cast<double>(a.adam_tau()) / 65536.0));
  } else if (!a.strategy().empty()) {
    parameters.push_back(absl::StrCat("server lr ", q16(a.server_lr_q16())));
    if (a.strategy() == "trimmed-mean") {
      parameters.push_back(absl::StrFormat("trim %g per end", a.trim_fraction_ppm() / 1e6));
    }
    if (a.strategy() == "fedavgm") parameters.push_back(absl::StrCat("momentum ", q16(a.momentum_q16())));
  }
  if (a.uniform_weights()) parameters.push_back("uniform weights");
  // The robust strategies and uniform weights give every update one vote:
  // a configured weight cap is recorded but applies to nothing.
  const bool weighted = !a.uniform_weights() && a.strategy() != "median" &&
                        a.strategy() != "trimmed-mean";
  if (weighted && a.weight_median_multiple_q16() != 0) {
    parameters.push_back(absl::StrCat("weight cap ", q16(a.weight_median_multiple_q16()),
                                      "\xC3\x97 median"));
  }
  if (a.norm_bound() != 0) parameters.push_back(absl::StrCat("norm bound ", a.norm_bound()));
  if (a.norm_median_multiple_q16() != 0) {
    parameters.push_back(absl::StrCat("norm cap ", q16(a.norm_median_multiple_q16()),
                                      "\xC3\x97 median"));
  }
  AppendCard("Parameters",
             parameters.empty() ? std::string("<span class=\"muted\">none</span>")
                                : EscapeHtml(absl::StrJoin(parameters, " \xC2\xB7 ")),
             out);
  if (!p.enabled()) {
    AppendCard("Privacy", "<span class=\"muted\">off</span>", out);
  } else {
    std::string budget =
        p.epsilon_budget() > 0 ? absl::StrFormat("%.4g", p.epsilon_budget()) : "no budget";
    AppendCard("Privacy budget (\xCE\xB5 spent)",
               absl::StrCat(absl::StrFormat("%.4g", p.epsilon_spent()),
                            " <span class=\"muted\">of ", budget,
                            absl::StrFormat(" at \xCE\xB4 %g", p.delta()), "</span>"),
               out);
    AppendCard("Noised versions", absl::StrCat(p.noised_versions()), out);
    if (p.budget_spent()) {
      AppendCard("Rounds left", "<strong>0: budget spent, training stopped</strong>", out);
    } else if (p.epsilon_budget() > 0) {
      AppendCard("Rounds left", absl::StrCat(p.rounds_left()), out);
    }
  }
  absl::StrAppend(out, "</div></section>");
}

// Drift alerts, the page's most urgent news: first after the header, and
// role="alert" so that assistive technology announces it.
void AppendAlerts(const v1::ServerStatus& status, std::string* out) {
  if (status.alerts().empty()) return;
  absl::StrAppend(out, "<div class=\"banner alert\" id=\"alerts\" role=\"alert\"><strong>",
                  status.alerts_size() == 1 ? "Alert" : "Alerts",
                  "</strong> <span class=\"muted\">training and rollout go on; a later "
                  "promoted version clears a drift alert</span><ul>");
  for (const v1::Alert& a : status.alerts()) {
    absl::StrAppend(out, "<li data-kind=\"", EscapeHtml(a.kind()), "\" data-version=\"",
                    a.model_version(), "\"><strong>", EscapeHtml(a.kind()), " on v",
                    a.model_version(), "</strong> since round ", a.raised_round(), " (",
                    FormatUtc(a.raised_unix_ms()), " UTC): ", EscapeHtml(a.message()), "</li>");
  }
  absl::StrAppend(out, "</ul></div>");
}

void AppendPlots(const std::vector<v1::ModelVersion>& newest_first, std::string* out) {
  absl::StrAppend(out, "<section id=\"plots\"><h2>Per version</h2>");
  if (newest_first.empty()) {
    absl::StrAppend(out, "<p class=\"muted\">No committed version yet.</p></section>");
    return;
  }
  std::vector<uint32_t> versions;
  Series participants{kParticipants, {}}, accepted{kAccepted, {}}, rejected{kRejected, {}},
      loss{kLoss, {}}, fleet_accuracy{kFleetAccuracy, {}}, fleet_loss{kFleetLoss, {}};
  for (auto it = newest_first.rbegin(); it != newest_first.rend(); ++it) {
    const v1::ModelVersion& v = *it;
    const v1::ModelMetrics& m = v.metrics();
    const bool restored = v.restored_from() != 0;
    const std::string origin = OriginOf(v);
    versions.push_back(v.version());
    participants.points.push_back(
        {v.version(), static_cast<double>(m.participants()), restored,
         absl::StrCat("v", v.version(), " (", origin, "): ", m.participants(), " participants")});
    accepted.points.push_back(
        {v.version(), static_cast<double>(m.participants()), restored,
         absl::StrCat("v", v.version(), " (", origin, "): ", m.participants(), " accepted")});
    rejected.points.push_back(
        {v.version(), static_cast<double>(m.rejected_updates()), restored,
         absl::StrCat("v", v.version(), " (", origin, "): ", m.rejected_updates(), " rejected")});
    if (TrainedInRound(v)) {
      loss.points.push_back({v.version(), LossOf(v), false,
                             absl::StrFormat("v%d (%s): mean local loss %.4f", v.version(),
                                             origin, LossOf(v))});
    }
    if (Evaluated(v)) {
      const v1::FleetEvaluation& f = v.fleet_evaluation();
      fleet_accuracy.points.push_back(
          {v.version(), FleetAccuracyOf(v), restored,
           absl::StrFormat("v%d (%s): fleet accuracy %.4f (%d of %d samples, %d devices)",
                           v.version(), origin, FleetAccuracyOf(v), f.correct(), f.samples(),
                           f.devices())});
      fleet_loss.points.push_back(
          {v.version(), FleetLossOf(v), restored,
           absl::StrFormat("v%d (%s): fleet mean loss %.4f", v.version(), origin,
                           FleetLossOf(v))});
    }
  }
  absl::StrAppend(out, "<div class=\"plots\">");
  absl::StrAppend(out, "<figure id=\"plot-participants\"><figcaption>",
                  Key(kParticipants, "Participants"), "</figcaption>");
  AppendPlot(versions, {participants}, "participants per version", out);
  absl::StrAppend(out, "</figure><figure id=\"plot-updates\"><figcaption>",
                  Key(kAccepted, "Accepted"), Key(kRejected, "rejected"), " updates</figcaption>");
  AppendPlot(versions, {accepted, rejected}, "accepted and rejected updates per version", out);
  absl::StrAppend(out, "</figure><figure id=\"plot-loss\"><figcaption>",
                  Key(kLoss, "Mean local loss"), "</figcaption>");
  AppendPlot(versions, {loss}, "mean local training loss per version", out);
  if (fleet_accuracy.points.empty()) {
    // Dashed and empty until a device reports: an evaluation arrives with
    // an update built on the version, so the newest one has none yet.
    absl::StrAppendFormat(
        out,
        "</figure><figure id=\"plot-fleet\" class=\"pending\"><figcaption>Fleet accuracy and "
        "loss</figcaption><svg viewBox=\"0 0 %g %g\" width=\"%g\" height=\"%g\" "
        "role=\"img\" aria-label=\"fleet evaluation: not reported yet\"><text x=\"%g\" "
        "y=\"%g\" text-anchor=\"middle\">Not reported yet: devices evaluate</text><text "
        "x=\"%g\" y=\"%g\" text-anchor=\"middle\">the version they train from.</text></svg>"
        "</figure>",
        kWidth, kHeight, kWidth, kHeight, kWidth / 2, kHeight / 2 - 6, kWidth / 2,
        kHeight / 2 + 10);
  } else {
    absl::StrAppend(out, "</figure><figure id=\"plot-fleet\"><figcaption>",
                    Key(kFleetAccuracy, "Fleet accuracy"), Key(kFleetLoss, "mean loss"),
                    "</figcaption>");
    AppendPlot(versions, {fleet_accuracy, fleet_loss},
               "fleet accuracy and mean loss per version, from the devices' own samples", out);
    absl::StrAppend(out, "</figure>");
  }
  absl::StrAppend(out,
                  "</div><p class=\"muted\">Oldest version on the left. Hollow points are "
                  "rollbacks (no round of their own). Rejected counts restart from 0 when the "
                  "server restarts.</p></section>");
}

void AppendVersionsTable(const v1::ServerStatus& status,
                         const std::vector<v1::ModelVersion>& newest_first, std::string* out) {
  absl::StrAppend(out, "<section id=\"versions\"><h2>Versions</h2>");
  if (newest_first.empty()) {
    absl::StrAppend(out, "<p class=\"muted\">No committed version yet.</p></section>");
    return;
  }
  absl::StrAppend(out,
                  "<div class=\"scroll\"><table><thead><tr><th>Version</th><th>Parent</th>"
                  "<th>From</th>"
                  "<th>Stage</th><th>Participants</th><th>Samples</th><th>Clipped / capped</th>"
                  "<th>Rejected</th><th>Mean local loss</th><th>Fleet accuracy</th>"
                  "<th>Committed (UTC)</th></tr>"
                  "</thead><tbody>");
  for (const v1::ModelVersion& v : newest_first) {
    const v1::ModelMetrics& m = v.metrics();
    const bool restored = v.restored_from() != 0;
    absl::StrAppend(
        out, "<tr data-version=\"", v.version(), "\"", restored ? " class=\"restored\"" : "",
        "><td>v", v.version(),
        v.version() == status.serving_version() ? "<span class=\"tag\">serving</span>" : "",
        v.version() == status.candidate_version() && v.version() != 0
            ? "<span class=\"tag candidate\">candidate</span>"
            : "",
        "</td><td>", v.parent_version() == 0 ? std::string("\xE2\x80\x94")
                                             : absl::StrCat("v", v.parent_version()),
        "</td><td>", OriginOf(v), "</td><td>", StageOf(v), "</td><td>", m.participants(),
        "</td><td>", m.samples(),
        "</td><td>", m.clipped_updates(), " / ", m.capped_updates(), "</td><td>",
        m.rejected_updates(), "</td><td>",
        TrainedInRound(v) ? absl::StrFormat("%.4f", LossOf(v)) : std::string("\xE2\x80\x94"),
        "</td><td>",
        Evaluated(v) ? absl::StrFormat("%.4f <span class=\"muted\">(%d devices)</span>",
                                       FleetAccuracyOf(v), v.fleet_evaluation().devices())
                     : std::string("\xE2\x80\x94"),
        "</td><td>", FormatUtc(v.created_unix_ms()), "</td></tr>");
  }
  absl::StrAppend(out, "</tbody></table></div></section>");
}

// The document around `body`: refresh, no favicon request (an empty data:
// icon), the inline style.
std::string Document(absl::string_view title, absl::string_view body) {
  return absl::StrCat(
      "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
      "<meta http-equiv=\"refresh\" content=\"",
      kStatusPageRefreshSeconds,
      "\"><meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
      "<link rel=\"icon\" href=\"data:,\"><title>",
      title, "</title><style>", kStyle, "</style></head><body><main>", body,
      "</main></body></html>\n");
}

}  // namespace

std::string EscapeHtml(absl::string_view text) {
  std::string out;
  out.reserve(text.size());
  for (char c : text) {
    switch (c) {
      case '&': out += "&amp;"; break;
      case '<': out += "&lt;"; break;
      case '>': out += "&gt;"; break;
      case '"': out += "&quot;"; break;
      case '\'': out += "&#39;"; break;
      default: out += c;
    }
  }
  return out;
}

std::string RenderStatusPage(const v1::ServerStatus& status,
                             const std::vector<v1::ModelVersion>& versions) {
  std::string body;
  absl::StrAppend(&body, "<header><h1>tinyfed-server <span class=\"muted\">",
                  EscapeHtml(status.server_version()),
                  "</span></h1><span class=\"muted\">as of ", FormatUtc(status.now_unix_ms()),
                  " UTC \xC2\xB7 refreshes every ", kStatusPageRefreshSeconds,
                  " s</span></header>");
  if (status.paused()) {
    absl::StrAppend(&body, "<div class=\"banner paused\" id=\"paused\"><strong>Paused</strong>",
                    " since ", FormatUtc(status.paused_since_unix_ms()), " UTC");
    if (!status.paused_by().empty()) {
      absl::StrAppend(&body, " by <span class=\"actor\">", EscapeHtml(status.paused_by()),
                      "</span>");
    }
    absl::StrAppend(&body,
                    ": no new round opens; updates for tasks already handed out are still "
                    "taken. <span class=\"muted\">tinyfed-admin resume</span></div>");
  }
  AppendAlerts(status, &body);
  AppendRound(status, &body);
  AppendRollout(status, &body);
  AppendAggregation(status, &body);
  AppendPlots(versions, &body);
  AppendVersionsTable(status, versions, &body);
  absl::StrAppend(&body,
                  "<footer class=\"muted\">Prometheus metrics at <a href=\"/metrics\">/metrics"
                  "</a>.</footer>");
  const std::string title =
      status.round().round() == 0
          ? std::string("tinyfed-server")
          : absl::StrCat("tinyfed-server \xC2\xB7 round ", status.round().round());
  return Document(title, body);
}

std::string RenderStatusPageError(const absl::Status& error) {
  return Document(
      "tinyfed-server: status unavailable",
      absl::StrCat("<header><h1>tinyfed-server</h1></header><div class=\"banner warning\">"
                   "<strong>Status unavailable:</strong> ",
                   EscapeHtml(error.ToString()),
                   "</div><p class=\"muted\">This page tries again every ",
                   kStatusPageRefreshSeconds, " s.</p>"));
}

}  // namespace tinyfed::server
