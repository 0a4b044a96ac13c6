// The operator's status page, served at / of the metrics port
// (metrics_http.h): a banner for each active alert (drift), the open
// round, the latest and serving versions, the rollout (the serving
// version's accuracy over the drift window, the candidate, its canary
// share and its evaluations so far), a plot per version and the versions
// table with each version's rollout stage, as one HTML document that
// needs nothing else to show. No script, font, style sheet or image is
// loaded from anywhere (the plots are inline SVG, the style an inline
// <style>), so the page works offline, without JavaScript, and under the
// Content-Security-Policy metrics_http.cc sends with it. It reloads
// itself every kStatusPageRefreshSeconds.
//
// Every string from the status (the actor who paused, the version
// string, an alert's kind and message) is escaped: it is shown as text, never read as markup.
//
// Plot marks for readers other than people (the browser test): each
// point is an SVG <circle class="point" data-series="S"
// data-version="V">, with S one of "participants", "accepted",
// "rejected", "loss", "fleet-accuracy" and "fleet-loss". Every listed
// version has one point in each of the first three series; "loss" has one
// per version trained in a round (the initial version and rollbacks
// aggregated nothing, so they have no loss of their own); the two fleet
// series have one per version with a fleet_evaluation of at least one
// sample (devices evaluate the version they train from, so the newest
// version has none until a round trains from it). Table rows are
// <tr data-version="V">. The alerts banner is <div id="alerts"
// role="alert">, one <li data-kind="K" data-version="V"> per alert, and
// absent when there is none; the rollout section is <section
// id="rollout">. The aggregation section is <section id="aggregation"
// data-strategy="S" data-privacy="on|off">, S the strategy in force ("-"
// from a server that does not say); with privacy on it also carries
// data-epsilon-spent, data-epsilon-budget (0: none), data-delta,
// data-noised-versions and data-rounds-left (the PrivacyStatus figures,
// epsilons to six significant digits).
//
// Pure functions of their arguments; safe for concurrent use.
#ifndef TINYFED_SERVER_STATUS_PAGE_H_
#define TINYFED_SERVER_STATUS_PAGE_H_

#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "tinyfed/v1/admin.pb.h"
#include "tinyfed/v1/model.pb.h"

namespace tinyfed::server {

inline constexpr int kStatusPageRefreshSeconds = 5;
// How many versions, newest first, a caller should pass: enough to see a
// trend, few enough for the page to stay small (about 0.5 KB a version).
inline constexpr size_t kStatusPageVersions = 50;

// The page for `status` and `versions` (newest first, as
// Admin.ListVersions answers; weights and bias are not read). Versions
// are drawn and listed in the order given; an empty list shows a note.
std::string RenderStatusPage(const v1::ServerStatus& status,
                             const std::vector<v1::ModelVersion>& versions);

// A page saying the status could not be read (`error`'s message,
// escaped), which reloads itself like the status page, so that an open
// tab recovers by itself once the store answers again.
std::string RenderStatusPageError(const absl::Status& error);

// `text` with &, <, >, " and ' replaced by character references, for
// element content and quoted attribute values alike.
std::string EscapeHtml(absl::string_view text);

}  // namespace tinyfed::server

#endif  // TINYFED_SERVER_STATUS_PAGE_H_
