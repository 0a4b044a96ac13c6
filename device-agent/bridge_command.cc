#include "bridge_command.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netdb.h>
#include <poll.h>
#include <sys/socket.h>
#include <termios.h>
#include <unistd.h>

#include <chrono>
#include <memory>
#include <thread>
#include <vector>

#include <grpcpp/generic/generic_stub.h>
#include <grpcpp/grpcpp.h>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "generic_call.h"
#include "tinyfed/link.h"

namespace tinyfed::agent {
namespace {

// Largest payload relayed: a task for the largest head the protocol allows
// (4096 weights) fits with room to spare.
constexpr size_t kMaxPayload = 16384;

struct Endpoint {
  bool tcp = false;
  std::string host, path;
  std::string port;
};

absl::Status ParseDevice(const std::string& device, Endpoint* out) {
  if (absl::StartsWith(device, "tcp:")) {
    const std::string rest = device.substr(4);
    const size_t colon = rest.rfind(':');
    uint32_t port = 0;
    if (colon == std::string::npos || colon == 0 ||
        !absl::SimpleAtoi(rest.substr(colon + 1), &port) || port == 0 || port > 65535) {
      return absl::InvalidArgumentError(
          absl::StrCat("--device tcp:HOST:PORT expected, got '", device, "'"));
    }
    out->tcp = true;
    out->host = rest.substr(0, colon);
    out->port = rest.substr(colon + 1);
    return absl::OkStatus();
  }
  if (absl::StartsWith(device, "serial:") && device.size() > 7) {
    out->path = device.substr(7);
    return absl::OkStatus();
  }
  return absl::InvalidArgumentError(
      absl::StrCat("--device must be tcp:HOST:PORT or serial:PATH, got '", device, "'"));
}

speed_t BaudConstant(uint32_t baud) {
  switch (baud) {
    case 9600: return B9600;
    case 19200: return B19200;
    case 38400: return B38400;
    case 57600: return B57600;
    case 115200: return B115200;
    case 230400: return B230400;
    case 460800: return B460800;
    case 921600: return B921600;
    default: return B0;
  }
}

// Opens the device's link; -1 with *error set when it cannot.
int OpenLink(const Endpoint& e, uint32_t baud, std::string* error) {
  if (e.tcp) {
    addrinfo hints{};
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    addrinfo* found = nullptr;
    if (getaddrinfo(e.host.c_str(), e.port.c_str(), &hints, &found) != 0 || found == nullptr) {
      *error = "cannot resolve " + e.host;
      return -1;
    }
    int fd = -1;
    for (addrinfo* a = found; a != nullptr && fd < 0; a = a->ai_next) {
      fd = socket(a->ai_family, a->ai_socktype, a->ai_protocol);
      if (fd >= 0 && connect(fd, a->ai_addr, a->ai_addrlen) != 0) {
        close(fd);
        fd = -1;
      }
    }
    freeaddrinfo(found);
    if (fd < 0) *error = absl::StrCat("cannot connect to ", e.host, ":", e.port);
    return fd;
  }
  const int fd = open(e.path.c_str(), O_RDWR | O_NOCTTY);
  if (fd < 0) {
    *error = "cannot open " + e.path;
    return -1;
  }
  termios tio{};
  if (tcgetattr(fd, &tio) == 0) {  // a real tty: raw 8N1 at the requested rate
    cfmakeraw(&tio);
    cfsetispeed(&tio, BaudConstant(baud));
    cfsetospeed(&tio, BaudConstant(baud));
    tcsetattr(fd, TCSANOW, &tio);
  }
  return fd;
}

bool WriteAll(int fd, const uint8_t* data, size_t len) {
  while (len > 0) {
    const ssize_t n = write(fd, data, len);
    if (n <= 0) return false;
    data += n;
    len -= static_cast<size_t>(n);
  }
  return true;
}

}  // namespace

absl::Status ValidateBridgeOptions(const BridgeOptions& o) {
  Endpoint e;
  if (absl::Status s = ParseDevice(o.device, &e); !s.ok()) return s;
  if (o.server.find(':') == std::string::npos) {
    return absl::InvalidArgumentError(absl::StrCat("--server HOST:PORT expected, got '", o.server, "'"));
  }
  if (!e.tcp && BaudConstant(o.baud) == B0) {
    return absl::InvalidArgumentError(absl::StrCat("--baud ", o.baud, " is not a standard rate"));
  }
  return absl::OkStatus();
}

absl::Status RunBridge(const BridgeOptions& o, FILE* log) {
  if (absl::Status s = ValidateBridgeOptions(o); !s.ok()) return s;
  Endpoint endpoint;
  (void)ParseDevice(o.device, &endpoint);
  auto channel = grpc::CreateChannel(o.server, grpc::InsecureChannelCredentials());
  grpc::GenericStub stub(channel);
  std::vector<uint8_t> decoder_buffer(TINYFED_FRAME_DECODER_BUFFER(kMaxPayload));
  std::vector<uint8_t> out(TINYFED_FRAME_ENCODED_MAX(kMaxPayload));
  uint64_t relayed = 0;
  auto stopped = [&] { return o.stop != nullptr && o.stop->load(); };

  while (!stopped() && (o.max_frames == 0 || relayed < o.max_frames)) {
    std::string error;
    const int fd = OpenLink(endpoint, o.baud, &error);
    if (fd < 0) {
      std::fprintf(log, "bridge: %s; retrying in %u ms\n", error.c_str(), o.reconnect_ms);
      std::this_thread::sleep_for(std::chrono::milliseconds(o.reconnect_ms));
      continue;
    }
    std::fprintf(log, "bridge: device link %s open, relaying to %s\n", o.device.c_str(),
                 o.server.c_str());
    tinyfed_frame_decoder_t decoder;
    if (tinyfed_frame_decoder_init(&decoder, decoder_buffer.data(), decoder_buffer.size()) !=
        TINYFED_OK) {
      close(fd);
      return absl::InternalError("frame decoder set-up failed");
    }
    uint8_t chunk[512];
    bool link_ok = true;
    while (link_ok && !stopped() && (o.max_frames == 0 || relayed < o.max_frames)) {
      pollfd p{fd, POLLIN, 0};
      const int ready_fds = poll(&p, 1, 200);
      if (ready_fds == 0) continue;
      const ssize_t n = ready_fds < 0 ? -1 : read(fd, chunk, sizeof chunk);
      if (n <= 0) {
        link_ok = false;
        break;
      }
      for (ssize_t i = 0; i < n && link_ok; ++i) {
        int ready = 0;
        tinyfed_frame_t frame;
        const tinyfed_status_t st = tinyfed_frame_decoder_push(&decoder, chunk[i], &ready, &frame);
        if (st != TINYFED_OK) {
          std::fprintf(log, "bridge: dropped a damaged frame (%s)\n", tinyfed_status_name(st));
          continue;
        }
        if (!ready) continue;
        const char* method = nullptr;
        uint8_t reply_type = 0;
        if (frame.type == TINYFED_FRAME_CHECKIN) {
          method = kCheckInMethod;
          reply_type = TINYFED_FRAME_CHECKIN_RESPONSE;
        } else if (frame.type == TINYFED_FRAME_UPDATE) {
          method = kSubmitUpdateMethod;
          reply_type = TINYFED_FRAME_ACK;
        }
        std::string payload;
        if (method == nullptr) {
          payload = absl::StrCat(static_cast<int>(grpc::StatusCode::INVALID_ARGUMENT),
                                 " unknown frame type ", static_cast<int>(frame.type));
          reply_type = TINYFED_FRAME_ERROR;
        } else {
          const grpc::Status s = CallWithBytes(stub, method, frame.payload, frame.length, &payload);
          std::fprintf(log, "bridge: %s (%zu bytes) -> %s\n", method + 24, frame.length,
                       s.ok() ? "OK" : s.error_message().c_str());
          if (!s.ok()) {
            payload = absl::StrCat(static_cast<int>(s.error_code()), " ", s.error_message());
            reply_type = TINYFED_FRAME_ERROR;
          }
        }
        size_t len = 0;
        if (tinyfed_frame_encode(reply_type, reinterpret_cast<const uint8_t*>(payload.data()),
                                 payload.size(), out.data(), out.size(), &len) != TINYFED_OK ||
            !WriteAll(fd, out.data(), len)) {
          link_ok = false;
        }
        ++relayed;
      }
    }
    close(fd);
    if (!link_ok && !stopped() && (o.max_frames == 0 || relayed < o.max_frames)) {
      std::fprintf(log, "bridge: device link lost; reopening in %u ms\n", o.reconnect_ms);
      std::this_thread::sleep_for(std::chrono::milliseconds(o.reconnect_ms));
    }
  }
  return absl::OkStatus();
}

}  // namespace tinyfed::agent
