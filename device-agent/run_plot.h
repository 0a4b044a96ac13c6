// The plot of a simulation run: test accuracy and test loss per round as
// one self-contained SVG document (no scripts, styles sheets, fonts or
// images from elsewhere), drawn by hand so the agent needs no plotting
// library. Pure function: safe for concurrent use.
#ifndef TINYFED_DEVICE_AGENT_RUN_PLOT_H_
#define TINYFED_DEVICE_AGENT_RUN_PLOT_H_

#include <string>

#include "tinyfed/v1/simulation_report.pb.h"

namespace tinyfed::agent {

// Two panels over a shared round axis: test accuracy (0 to 1, with the
// report's centralized float accuracy as a dashed reference line) above,
// test loss (mean cross-entropy, 0 to a rounded-up maximum) below. Each
// panel has its axis label and ticks, and one marker per round of the
// report, a <circle> of class "accuracy" or "loss" carrying data-round and
// data-value (the plotted value, 6 decimals) so a script can read the
// points back. The reference line is the element of class "reference".
std::string RunPlotSvg(const v1::SimulationReport& report);

}  // namespace tinyfed::agent

#endif  // TINYFED_DEVICE_AGENT_RUN_PLOT_H_
