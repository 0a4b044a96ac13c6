#include "run_plot.h"

#include <algorithm>
#include <cmath>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"

namespace tinyfed::agent {
namespace {

// Layout in SVG user units (pixels at 100% zoom).
constexpr double kWidth = 760;
constexpr double kLeft = 80;         // room for tick labels and the axis label
constexpr double kRight = 24;
constexpr double kTop = 48;          // room for the title
constexpr double kPanelHeight = 210;
constexpr double kPanelGap = 56;     // the upper panel's round ticks live here
constexpr double kBottom = 52;
constexpr double kHeight = kTop + 2 * kPanelHeight + kPanelGap + kBottom;

// Text for XML character data and attribute values.
std::string Escape(const std::string& text) {
  std::string out;
  for (const char c : text) {
    switch (c) {
      case '&': out += "&amp;"; break;
      case '<': out += "&lt;"; break;
      case '>': out += "&gt;"; break;
      case '"': out += "&quot;"; break;
      default:
        // Control characters other than tab are not allowed in XML 1.0.
        if (static_cast<unsigned char>(c) < 0x20 && c != '\t') {
          out += '?';
        } else {
          out += c;
        }
    }
  }
  return out;
}

// A tick step of 1, 2 or 5 times a power of ten giving at most `ticks`
// intervals over `span`.
double NiceStep(double span, int ticks) {
  const double raw = span / ticks;
  const double magnitude = std::pow(10.0, std::floor(std::log10(raw)));
  for (const double m : {1.0, 2.0, 5.0, 10.0}) {
    if (m * magnitude >= raw) return m * magnitude;
  }
  return 10 * magnitude;
}

// Ticks from a step's decimals: 0.2 -> "0.2", 5 -> "5".
std::string TickLabel(double value, double step) {
  const int decimals = step >= 1 ? 0 : static_cast<int>(std::ceil(-std::log10(step) - 1e-9));
  return absl::StrFormat("%.*f", decimals, value);
}

struct Axis {
  double lo, hi;       // values at the panel's bottom and top
  double top, bottom;  // the panel's pixel rows
  double Y(double v) const {
    // A loss that overflowed to infinity (or NaN) is drawn at the top.
    const double clamped = std::isfinite(v) ? std::clamp(v, lo, hi) : hi;
    return bottom - (clamped - lo) / (hi - lo) * (bottom - top);
  }
};

class Canvas {
 public:
  void Add(const std::string& element) { absl::StrAppend(&body_, "  ", element, "\n"); }
  void Text(double x, double y, const std::string& anchor, const std::string& cls,
            const std::string& text, const std::string& extra = "") {
    Add(absl::StrFormat("<text x=\"%.2f\" y=\"%.2f\" text-anchor=\"%s\" class=\"%s\"%s>%s</text>", x,
                        y, anchor, cls, extra, Escape(text)));
  }
  void Line(double x1, double y1, double x2, double y2, const std::string& cls) {
    Add(absl::StrFormat("<line x1=\"%.2f\" y1=\"%.2f\" x2=\"%.2f\" y2=\"%.2f\" class=\"%s\"/>", x1,
                        y1, x2, y2, cls));
  }
  const std::string& body() const { return body_; }

 private:
  std::string body_;
};

}  // namespace

std::string RunPlotSvg(const v1::SimulationReport& report) {
  const int rounds = report.rounds_size();
  const double plot_right = kWidth - kRight;
  // Rounds sit at equal steps; one round alone sits in the middle.
  const auto x_of = [&](int index) {
    if (rounds <= 1) return (kLeft + plot_right) / 2;
    return kLeft + (plot_right - kLeft) * index / (rounds - 1);
  };

  double max_loss = 0;
  for (const v1::SimulationRound& r : report.rounds()) {
    if (std::isfinite(r.loss())) max_loss = std::max(max_loss, r.loss());
  }
  const double loss_step = NiceStep(max_loss > 0 ? max_loss : 1, 5);
  const double loss_top = loss_step * std::max(1.0, std::ceil(max_loss / loss_step));

  const Axis accuracy{0, 1, kTop, kTop + kPanelHeight};
  const double loss_panel_top = kTop + kPanelHeight + kPanelGap;
  const Axis loss{0, loss_top, loss_panel_top, loss_panel_top + kPanelHeight};

  Canvas c;
  const v1::SimulationConfig& config = report.config();
  c.Text(kWidth / 2, 22, "middle", "title",
         absl::StrCat("tinyfed simulate: ", config.dataset(), ", ", config.devices(), " devices (",
                      config.partition(), "), ", rounds, rounds == 1 ? " round" : " rounds"));

  // Whole rounds: a step below 1 would tick every round anyway.
  const auto round_step =
      static_cast<uint32_t>(std::max(1.0, NiceStep(std::max(1, rounds), 10)));
  struct Panel {
    const Axis* axis;
    double value_step;
    std::string label;
    std::string cls;
    bool accuracy;
  };
  const Panel panels[] = {
      {&accuracy, 0.2, "test accuracy", "accuracy", true},
      {&loss, loss_step, "test loss (mean cross-entropy)", "loss", false},
  };
  for (const Panel& p : panels) {
    const Axis& a = *p.axis;
    c.Add(absl::StrFormat(
        "<rect x=\"%.2f\" y=\"%.2f\" width=\"%.2f\" height=\"%.2f\" class=\"frame\"/>", kLeft, a.top,
        plot_right - kLeft, a.bottom - a.top));
    // Value ticks with grid lines; an index keeps float steps from drifting.
    for (int i = 0; a.lo + i * p.value_step <= a.hi + p.value_step * 1e-9; ++i) {
      const double v = a.lo + i * p.value_step;
      c.Line(kLeft, a.Y(v), plot_right, a.Y(v), "grid");
      c.Line(kLeft - 5, a.Y(v), kLeft, a.Y(v), "tick");
      c.Text(kLeft - 8, a.Y(v) + 4, "end", "tick-label", TickLabel(v, p.value_step));
    }
    // Round ticks under each panel: the first round, then every multiple
    // of the step (5, 10, ... rather than 1, 6, 11, ...).
    for (int index = 0; index < rounds; ++index) {
      const uint32_t round = report.rounds(index).round();
      if (index != 0 && round % round_step != 0) continue;
      const double x = x_of(index);
      c.Line(x, a.bottom, x, a.bottom + 5, "tick");
      c.Text(x, a.bottom + 18, "middle", "tick-label", absl::StrCat(round));
    }
    c.Text(kLeft + (plot_right - kLeft) / 2, a.bottom + 36, "middle", "axis-label", "round");
    const double mid_y = (a.top + a.bottom) / 2;
    c.Text(18, mid_y, "middle", "axis-label", p.label,
           absl::StrFormat(" transform=\"rotate(-90 18 %.2f)\"", mid_y));

    if (p.accuracy) {
      const double ref = report.centralized_float_accuracy();
      c.Line(kLeft, a.Y(ref), plot_right, a.Y(ref), "reference");
      c.Text(plot_right - 4, a.Y(ref) - 6, "end", "reference-label",
             absl::StrFormat("centralized float training %.4f", ref));
    }
    std::string points;
    for (int i = 0; i < rounds; ++i) {
      const v1::SimulationRound& r = report.rounds(i);
      const double v = p.accuracy ? r.accuracy() : r.loss();
      absl::StrAppend(&points, i == 0 ? "" : " ", absl::StrFormat("%.2f,%.2f", x_of(i), a.Y(v)));
    }
    if (rounds > 1) {
      c.Add(absl::StrFormat("<polyline points=\"%s\" class=\"%s-line\"/>", points, p.cls));
    }
    for (int i = 0; i < rounds; ++i) {
      const v1::SimulationRound& r = report.rounds(i);
      const double v = p.accuracy ? r.accuracy() : r.loss();
      c.Add(absl::StrFormat(
          "<circle cx=\"%.2f\" cy=\"%.2f\" r=\"3\" class=\"%s\" data-round=\"%u\" "
          "data-value=\"%.6f\"><title>round %u: %s %.4f</title></circle>",
          x_of(i), a.Y(v), p.cls, r.round(), v, r.round(), p.label, v));
    }
  }

  // The style travels inside the document: nothing is fetched to show it.
  return absl::StrCat(
      "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n",
      absl::StrFormat("<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%.0f\" height=\"%.0f\" "
                      "viewBox=\"0 0 %.0f %.0f\" font-family=\"sans-serif\" font-size=\"12\">\n",
                      kWidth, kHeight, kWidth, kHeight),
      "  <style>\n"
      "    .frame { fill: #ffffff; stroke: #444444; }\n"
      "    .grid { stroke: #e4e4e4; }\n"
      "    .tick { stroke: #444444; }\n"
      "    .title { font-size: 15px; }\n"
      "    .axis-label { font-size: 13px; }\n"
      "    .accuracy-line { fill: none; stroke: #1f77b4; stroke-width: 2; }\n"
      "    .loss-line { fill: none; stroke: #d62728; stroke-width: 2; }\n"
      "    circle.accuracy { fill: #1f77b4; }\n"
      "    circle.loss { fill: #d62728; }\n"
      "    .reference { stroke: #555555; stroke-dasharray: 6 4; }\n"
      "    .reference-label { fill: #555555; }\n"
      "  </style>\n"
      "  <rect width=\"100%\" height=\"100%\" fill=\"#ffffff\"/>\n",
      c.body(), "</svg>\n");
}

}  // namespace tinyfed::agent
