#include "bridge_command.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <poll.h>
#include <sys/socket.h>
#include <termios.h>
#include <unistd.h>

#include <chrono>
#include <cstring>
#include <memory>
#include <thread>
#include <vector>

#include <grpcpp/generic/generic_stub.h>
#include <grpcpp/grpcpp.h>

#include "absl/status/statusor.h"
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

// Whether `t` is the line the bridge needs: raw bytes both ways (no echo,
// line editing, signal characters, CR/LF translation or XON/XOFF, which
// would swallow or alter frame bytes), 8 data bits, no parity, one stop
// bit, no RTS/CTS flow control (a board without those lines would stall
// every write), modem lines ignored, receiver on, and `speed` both ways.
bool IsRawLine(const termios& t, speed_t speed) {
  constexpr tcflag_t kInputOff =
      IGNBRK | BRKINT | PARMRK | ISTRIP | INLCR | IGNCR | ICRNL | IXON | IXOFF | IXANY | INPCK;
  constexpr tcflag_t kLocalOff = ICANON | ECHO | ECHONL | ISIG | IEXTEN;
  return (t.c_iflag & kInputOff) == 0 && (t.c_oflag & OPOST) == 0 &&
         (t.c_lflag & kLocalOff) == 0 && (t.c_cflag & CSIZE) == CS8 &&
         (t.c_cflag & (PARENB | CSTOPB | CRTSCTS)) == 0 &&
         (t.c_cflag & (CLOCAL | CREAD)) == (CLOCAL | CREAD) && t.c_cc[VMIN] == 1 &&
         t.c_cc[VTIME] == 0 && cfgetispeed(&t) == speed && cfgetospeed(&t) == speed;
}

// Makes the terminal `fd` a raw 8N1 line at `baud`, whatever a previous
// user (a terminal program, stty) left set. FAILED_PRECONDITION when the
// port refuses: retrying would not help.
absl::Status MakeRawLine(int fd, const std::string& path, uint32_t baud) {
  const speed_t speed = BaudConstant(baud);
  termios tio{};
  if (tcgetattr(fd, &tio) == 0) {
    cfmakeraw(&tio);
    // cfmakeraw() leaves these as they were.
    tio.c_iflag &= ~static_cast<tcflag_t>(IXOFF | IXANY | INPCK);
    tio.c_cflag &= ~static_cast<tcflag_t>(CSTOPB | CRTSCTS);
    tio.c_cflag |= CLOCAL | CREAD;
    tio.c_cc[VMIN] = 1;
    tio.c_cc[VTIME] = 0;
    if (cfsetispeed(&tio, speed) == 0 && cfsetospeed(&tio, speed) == 0 &&
        tcsetattr(fd, TCSANOW, &tio) == 0) {
      // tcsetattr() succeeds when any one setting took: read them back.
      termios applied{};
      if (tcgetattr(fd, &applied) == 0 && IsRawLine(applied, speed)) return absl::OkStatus();
      return absl::FailedPreconditionError(
          absl::StrCat(path, " did not accept a raw 8N1 line at ", baud, " baud"));
    }
  }
  return absl::FailedPreconditionError(absl::StrCat("cannot set ", path, " to a raw 8N1 line at ",
                                                    baud, " baud: ", std::strerror(errno)));
}

// Opens the device's link. UNAVAILABLE when it cannot be opened now (device
// unplugged, emulator not started yet): the caller retries.
// FAILED_PRECONDITION from MakeRawLine().
absl::StatusOr<int> OpenLink(const Endpoint& e, uint32_t baud) {
  if (e.tcp) {
    addrinfo hints{};
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    addrinfo* found = nullptr;
    if (getaddrinfo(e.host.c_str(), e.port.c_str(), &hints, &found) != 0 || found == nullptr) {
      return absl::UnavailableError("cannot resolve " + e.host);
    }
    int fd = -1;
    for (addrinfo* a = found; a != nullptr && fd < 0; a = a->ai_next) {
      fd = socket(a->ai_family, a->ai_socktype | SOCK_CLOEXEC, a->ai_protocol);
      if (fd >= 0 && connect(fd, a->ai_addr, a->ai_addrlen) != 0) {
        close(fd);
        fd = -1;
      }
    }
    freeaddrinfo(found);
    if (fd < 0) return absl::UnavailableError(absl::StrCat("cannot connect to ", e.host, ":", e.port));
    return fd;
  }
  // Non-blocking while opening: with CLOCAL off, open() would wait for a
  // carrier-detect signal that a bare board never raises.
  const int fd = open(e.path.c_str(), O_RDWR | O_NOCTTY | O_NONBLOCK | O_CLOEXEC);
  if (fd < 0) {
    return absl::UnavailableError(absl::StrCat("cannot open ", e.path, ": ", std::strerror(errno)));
  }
  // A path that is not a terminal (a FIFO or socket an emulator offers) is
  // used as a plain byte stream.
  if (isatty(fd)) {
    if (absl::Status s = MakeRawLine(fd, e.path, baud); !s.ok()) {
      close(fd);
      return s;
    }
  }
  // Blocking again: reads wait in poll(), and a reply is written whole.
  const int flags = fcntl(fd, F_GETFL);
  if (flags < 0 || fcntl(fd, F_SETFL, flags & ~O_NONBLOCK) != 0) {
    const int saved = errno;
    close(fd);
    return absl::UnavailableError(absl::StrCat("cannot use ", e.path, ": ", std::strerror(saved)));
  }
  return fd;
}

// Writes all of `data`; returns why the link failed, or "" once written.
// On a socket, MSG_NOSIGNAL: a device that hung up must not raise SIGPIPE,
// whose default action ends the process.
std::string WriteAll(int fd, bool socket, const uint8_t* data, size_t len) {
  while (len > 0) {
    const ssize_t n = socket ? send(fd, data, len, MSG_NOSIGNAL) : write(fd, data, len);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      return absl::StrCat("writing a reply failed: ", n < 0 ? std::strerror(errno) : "no progress");
    }
    data += n;
    len -= static_cast<size_t>(n);
  }
  return "";
}

}  // namespace

absl::Status ValidateBridgeOptions(const BridgeOptions& o) {
  Endpoint e;
  if (absl::Status s = ParseDevice(o.device, &e); !s.ok()) return s;
  if (o.server.find(':') == std::string::npos) {
    return absl::InvalidArgumentError(absl::StrCat("--server HOST:PORT expected, got '", o.server, "'"));
  }
  if (absl::Status s = ValidateChannelTlsOptions(o.server, o.tls); !s.ok()) return s;
  if (!e.tcp && BaudConstant(o.baud) == B0) {
    return absl::InvalidArgumentError(absl::StrCat("--baud ", o.baud, " is not a standard rate"));
  }
  return absl::OkStatus();
}

absl::Status RunBridge(const BridgeOptions& o, FILE* log) {
  if (absl::Status s = ValidateBridgeOptions(o); !s.ok()) return s;
  Endpoint endpoint;
  (void)ParseDevice(o.device, &endpoint);
  absl::StatusOr<std::shared_ptr<grpc::ChannelCredentials>> credentials =
      MakeChannelCredentials(o.server, o.tls);
  if (!credentials.ok()) return credentials.status();
  auto channel = grpc::CreateChannel(o.server, *credentials);
  grpc::GenericStub stub(channel);
  std::vector<uint8_t> decoder_buffer(TINYFED_FRAME_DECODER_BUFFER(kMaxPayload));
  std::vector<uint8_t> out(TINYFED_FRAME_ENCODED_MAX(kMaxPayload));
  uint64_t relayed = 0;
  auto stopped = [&] { return o.stop != nullptr && o.stop->load(); };
  auto done = [&] { return stopped() || (o.max_frames != 0 && relayed >= o.max_frames); };

  while (!done()) {
    absl::StatusOr<int> opened = OpenLink(endpoint, o.baud);
    if (!opened.ok()) {
      if (opened.status().code() != absl::StatusCode::kUnavailable) return opened.status();
      std::fprintf(log, "bridge: %s; retrying in %u ms\n",
                   std::string(opened.status().message()).c_str(), o.reconnect_ms);
      std::this_thread::sleep_for(std::chrono::milliseconds(o.reconnect_ms));
      continue;
    }
    const int fd = *opened;
    std::fprintf(log, "bridge: device link %s open, relaying to %s\n", o.device.c_str(),
                 o.server.c_str());
    // A new decoder per link: the unfinished frame of a lost link must not
    // run into the first frame of the next one.
    tinyfed_frame_decoder_t decoder;
    if (tinyfed_frame_decoder_init(&decoder, decoder_buffer.data(), decoder_buffer.size()) !=
        TINYFED_OK) {
      close(fd);
      return absl::InternalError("frame decoder set-up failed");
    }
    uint8_t chunk[512];
    std::string lost;        // why the link ended; empty while it works
    size_t unfinished = 0;   // bytes since the last delimiter: a frame in progress
    while (lost.empty() && !done()) {
      pollfd p{fd, POLLIN, 0};
      const int ready_fds = poll(&p, 1, 200);
      if (ready_fds == 0 || (ready_fds < 0 && errno == EINTR)) continue;
      const ssize_t n = ready_fds < 0 ? -1 : read(fd, chunk, sizeof chunk);
      if (n < 0 && (errno == EINTR || errno == EAGAIN)) continue;
      if (n <= 0) {
        lost = n == 0 ? "hung up" : std::strerror(errno);
        break;
      }
      for (ssize_t i = 0; i < n && lost.empty(); ++i) {
        unfinished = chunk[i] == 0 ? 0 : unfinished + 1;
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
                       DescribeGrpcStatus(s).c_str());
          if (!s.ok()) {
            payload = absl::StrCat(static_cast<int>(s.error_code()), " ", s.error_message());
            reply_type = TINYFED_FRAME_ERROR;
          }
        }
        size_t len = 0;
        if (tinyfed_frame_encode(reply_type, reinterpret_cast<const uint8_t*>(payload.data()),
                                 payload.size(), out.data(), out.size(), &len) != TINYFED_OK) {
          lost = "a reply did not fit in a frame";
        } else {
          lost = WriteAll(fd, endpoint.tcp, out.data(), len);
        }
        ++relayed;
      }
    }
    close(fd);
    if (lost.empty()) continue;  // stopped, or max_frames relayed
    // The bytes of a frame the loss cut short stay in the decoder, which
    // this link's end discards: nothing of them reaches the server.
    std::string cut;
    if (unfinished > 0) {
      cut = absl::StrCat(" ", unfinished, unfinished == 1 ? " byte" : " bytes",
                         " into a frame, which is dropped (nothing of it was sent to the server)");
    }
    std::fprintf(log, "bridge: device link lost (%s)%s; reopening in %u ms\n", lost.c_str(),
                 cut.c_str(), o.reconnect_ms);
    if (!done()) std::this_thread::sleep_for(std::chrono::milliseconds(o.reconnect_ms));
  }
  return absl::OkStatus();
}

}  // namespace tinyfed::agent
