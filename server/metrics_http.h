// The HTTP endpoint Prometheus scrapes: GET /metrics answers the text that
// a render function returns (ServerMetrics::Render), as
// "text/plain; version=0.0.4"; any other request gets an error status
// (404 for another path) with that status as its body. Served by
// cpp-httplib on two threads of its own: a scrape is rare and small, and a
// client holding connections open cannot make the server start more
// threads (each connection is read with a 5 s timeout and kept alive at
// most 5 s, then closed).
//
// No authentication: bind it to loopback, or to an address only the
// scraper reaches. The metrics carry no secret and no device id.
//
// The port is bound without SO_REUSEPORT, so a second server cannot share
// it: Bind() fails with one line naming the address.
//
// Not copyable. Bind() and Serve() from one thread; the destructor stops
// serving and waits for its threads, so the render function's captures
// must outlive the server object, not longer.
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

  // Binds `host_port` (HOST:PORT, IPv6 as [ADDR]:PORT; port 0 picks a free
  // one) without serving yet, so that a busy port is found before anything
  // else starts. INVALID_ARGUMENT for a malformed address or a port above
  // 65535; UNAVAILABLE when the address cannot be bound.
  static absl::StatusOr<std::unique_ptr<MetricsHttpServer>> Bind(absl::string_view host_port);
  ~MetricsHttpServer();
  MetricsHttpServer(const MetricsHttpServer&) = delete;
  MetricsHttpServer& operator=(const MetricsHttpServer&) = delete;

  // Starts answering on the bound port. REQUIRES: called once.
  void Serve(RenderFn render);

  int port() const { return port_; }

 private:
  MetricsHttpServer();

  std::unique_ptr<httplib::Server> http_;
  int port_ = 0;
  RenderFn render_;
  std::thread listener_;
};

}  // namespace tinyfed::server

#endif  // TINYFED_SERVER_METRICS_HTTP_H_
