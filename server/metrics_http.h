// The HTTP endpoint Prometheus scrapes, and the operator's status page:
// GET /metrics answers the text that a render function returns
// (ServerMetrics::Render), as "text/plain; version=0.0.4"; GET / answers
// the page a page function returns (status_page.h), as
// "text/html; charset=utf-8", with a Content-Security-Policy that lets it
// load nothing (inline style only) and no caching; when the page function
// fails, 503 with a page naming the error that reloads itself. HEAD is
// answered as GET without the body. Any other request gets an error
// status (404 for another path) with that status as its body. Served by
// cpp-httplib on two threads of its own: a scrape is rare and small, and a
// client holding connections open cannot make the server start more
// threads (each connection is read with a 5 s timeout and kept alive at
// most 5 s, then closed).
//
// No authentication: bind it to loopback, or to an address only the
// scraper and operators reach. Neither the metrics nor the page carry a
// secret or a device id.
//
// The port is bound without SO_REUSEPORT, so a second server cannot share
// it: Bind() fails with one line naming the address.
//
// Not copyable. Bind() and Serve() from one thread; the destructor stops
// serving and waits for its threads, so the functions' captures must
// outlive the server object, not longer. Each function runs on the
// server's own threads, up to two at a time.
#ifndef TINYFED_SERVER_METRICS_HTTP_H_
#define TINYFED_SERVER_METRICS_HTTP_H_

#include <functional>
#include <memory>
#include <string>
#include <thread>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace httplib {
class Server;
}

namespace tinyfed::server {

class MetricsHttpServer {
 public:
  using RenderFn = std::function<std::string()>;
  // The status page's HTML, or why it cannot be made now.
  using PageFn = std::function<absl::StatusOr<std::string>()>;

  // Binds `host_port` (HOST:PORT, IPv6 as [ADDR]:PORT; port 0 picks a free
  // one) without serving yet, so that a busy port is found before anything
  // else starts. INVALID_ARGUMENT for a malformed address or a port above
  // 65535; UNAVAILABLE when the address cannot be bound.
  static absl::StatusOr<std::unique_ptr<MetricsHttpServer>> Bind(absl::string_view host_port);
  ~MetricsHttpServer();
  MetricsHttpServer(const MetricsHttpServer&) = delete;
  MetricsHttpServer& operator=(const MetricsHttpServer&) = delete;

  // Starts answering on the bound port: /metrics from `metrics`, / from
  // `status_page`. REQUIRES: called once.
  void Serve(RenderFn metrics, PageFn status_page);

  int port() const { return port_; }

 private:
  MetricsHttpServer();

  std::unique_ptr<httplib::Server> http_;
  int port_ = 0;
  RenderFn render_metrics_;
  PageFn render_page_;
  std::thread listener_;
};

}  // namespace tinyfed::server

#endif  // TINYFED_SERVER_METRICS_HTTP_H_
