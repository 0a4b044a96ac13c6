#include "metrics_http.h"

#include <sys/socket.h>

#include <cerrno>
#include <chrono>
#include <cstring>

#include <httplib.h>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "status_page.h"

namespace tinyfed::server {
namespace {

// Two: one scrape or page load at a time plus one to answer another meanwhile.
constexpr size_t kThreads = 2;
constexpr time_t kIoTimeoutSeconds = 5;

struct HostPort {
  std::string host;
  int port = 0;
};

absl::StatusOr<HostPort> ParseHostPort(absl::string_view text) {
  const size_t colon = text.rfind(':');
  if (colon == absl::string_view::npos || colon == 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("--metrics_listen '", text, "': expected HOST:PORT"));
  }
  HostPort out;
  out.host = std::string(text.substr(0, colon));
  if (out.host.size() >= 2 && out.host.front() == '[' && out.host.back() == ']') {
    out.host = out.host.substr(1, out.host.size() - 2);
  }
  uint32_t port = 0;
  if (!absl::SimpleAtoi(text.substr(colon + 1), &port) || port > 65535 ||
      text.substr(colon + 1).empty() || text[colon + 1] == '+' || text[colon + 1] == '-') {
    return absl::InvalidArgumentError(
        absl::StrCat("--metrics_listen '", text, "': the port must be 0..65535"));
  }
  out.port = static_cast<int>(port);
  return out;
}

}  // namespace

MetricsHttpServer::MetricsHttpServer() : http_(std::make_unique<httplib::Server>()) {}

absl::StatusOr<std::unique_ptr<MetricsHttpServer>> MetricsHttpServer::Bind(
    absl::string_view host_port) {
  absl::StatusOr<HostPort> address = ParseHostPort(host_port);
  if (!address.ok()) return address.status();
  std::unique_ptr<MetricsHttpServer> server(new MetricsHttpServer());
  httplib::Server& http = *server->http_;
  // cpp-httplib's default also sets SO_REUSEPORT, which would let a second
  // server bind the same port and take half the scrapes. SO_REUSEADDR
  // alone only lets a restart bind while old connections linger.
  http.set_socket_options([](int sock) {
    int yes = 1;
    setsockopt(sock, SOL_SOCKET, SO_REUSEADDR, &yes, sizeof yes);
  });
  http.new_task_queue = [] { return new httplib::ThreadPool(kThreads); };
  http.set_read_timeout(kIoTimeoutSeconds, 0);
  http.set_write_timeout(kIoTimeoutSeconds, 0);
  http.set_keep_alive_timeout(kIoTimeoutSeconds);
  http.set_payload_max_length(4096);  // neither a scrape nor a page load sends a body
  errno = 0;
  if (address->port == 0) {
    server->port_ = http.bind_to_any_port(address->host);
  } else {
    server->port_ = http.bind_to_port(address->host, address->port) ? address->port : -1;
  }
  if (server->port_ <= 0) {
    const int error = errno;
    return absl::UnavailableError(absl::StrCat(
        "--metrics_listen ", host_port, ": cannot bind",
        error != 0 ? absl::StrCat(" (", std::strerror(error), ")") : std::string()));
  }
  return server;
}

void MetricsHttpServer::Serve(RenderFn metrics, PageFn status_page) {
  render_metrics_ = std::move(metrics);
  render_page_ = std::move(status_page);
  httplib::Server& http = *http_;
  http.Get("/metrics", [this](const httplib::Request&, httplib::Response& response) {
    response.set_content(render_metrics_(), "text/plain; version=0.0.4; charset=utf-8");
  });
  http.Get("/", [this](const httplib::Request&, httplib::Response& response) {
    absl::StatusOr<std::string> page = render_page_();
    if (!page.ok()) {
      response.status = 503;
      response.set_content(RenderStatusPageError(page.status()), "text/html; charset=utf-8");
    } else {
      response.set_content(*std::move(page), "text/html; charset=utf-8");
    }
    // The page shows strings operators typed (a pause's actor); should
    // one ever slip through unescaped, the browser still runs and loads
    // nothing. It reloads itself, so a cached copy would only mislead.
    response.set_header("Content-Security-Policy",
                        "default-src 'none'; style-src 'unsafe-inline'; img-src data:; "
                        "base-uri 'none'; form-action 'none'; frame-ancestors 'none'");
    response.set_header("Cache-Control", "no-store");
    response.set_header("X-Content-Type-Options", "nosniff");
  });
  // Runs for every status >= 400, the page's own 503 too, which keeps its page.
  http.set_error_handler([](const httplib::Request&, httplib::Response& response) {
    if (!response.body.empty()) return;
    response.set_content(absl::StrCat(response.status, "\n"), "text/plain");
  });
  listener_ = std::thread([&http] { http.listen_after_bind(); });
}

MetricsHttpServer::~MetricsHttpServer() {
  if (!listener_.joinable()) return;  // bound, never served: the socket closes with the process
  // stop() only acts on a running server: a stop that came before the
  // listener thread got going would leave it listening for ever.
  while (!http_->is_running()) std::this_thread::sleep_for(std::chrono::milliseconds(1));
  http_->stop();
  listener_.join();
}

}  // namespace tinyfed::server
