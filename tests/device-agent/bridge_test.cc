// `tinyfed-agent bridge` over TCP: the test plays a device on the far side
// of a byte link (as qemu's UART would be), with the real SDK and framing.
// A full round through the bridge, noise and unknown frames on the link, a
// server error returned as an ERROR frame, and a reconnect after the link
// drops.
#include "bridge_command.h"

#include <gtest/gtest.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "in_process_server.h"
#include "server_config.h"
#include "tinyfed/link.h"
#include "tinyfed/tinyfed.h"
#include "tinyfed/v1/coordinator.grpc.pb.h"

namespace tinyfed::agent {
namespace {

class Listener {
 public:
  Listener() {
    fd_ = socket(AF_INET, SOCK_STREAM, 0);
    int one = 1;
    setsockopt(fd_, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    bind(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr);
    socklen_t len = sizeof addr;
    getsockname(fd_, reinterpret_cast<sockaddr*>(&addr), &len);
    port_ = ntohs(addr.sin_port);
    listen(fd_, 1);
  }
  ~Listener() { close(fd_); }
  int port() const { return port_; }
  int Accept() { return accept(fd_, nullptr, nullptr); }

 private:
  int fd_ = -1;
  int port_ = 0;
};

// The device end of the link: frames out, frames in.
class DeviceLink {
 public:
  explicit DeviceLink(int fd) : fd_(fd), buffer_(TINYFED_FRAME_DECODER_BUFFER(16384)) {
    EXPECT_EQ(tinyfed_frame_decoder_init(&decoder_, buffer_.data(), buffer_.size()), TINYFED_OK);
  }
  ~DeviceLink() { close(fd_); }
  void SendRaw(const std::vector<uint8_t>& bytes) {
    ASSERT_EQ(write(fd_, bytes.data(), bytes.size()), static_cast<ssize_t>(bytes.size()));
  }
  void Send(uint8_t type, const uint8_t* payload, size_t len) {
    std::vector<uint8_t> frame(TINYFED_FRAME_ENCODED_MAX(len));
    size_t n = 0;
    ASSERT_EQ(tinyfed_frame_encode(type, payload, len, frame.data(), frame.size(), &n), TINYFED_OK);
    frame.resize(n);
    SendRaw(frame);
  }
  // The next frame, or type 0 after 10 s without one.
  std::pair<uint8_t, std::string> Receive() {
    for (int waited = 0; waited < 10000;) {
      pollfd p{fd_, POLLIN, 0};
      if (poll(&p, 1, 100) <= 0) {
        waited += 100;
        continue;
      }
      uint8_t byte;
      if (read(fd_, &byte, 1) != 1) break;
      int ready = 0;
      tinyfed_frame_t frame;
      if (tinyfed_frame_decoder_push(&decoder_, byte, &ready, &frame) == TINYFED_OK && ready) {
        return {frame.type, std::string(reinterpret_cast<const char*>(frame.payload), frame.length)};
      }
    }
    return {0, ""};
  }

 private:
  int fd_;
  std::vector<uint8_t> buffer_;
  tinyfed_frame_decoder_t decoder_;
};

v1::ServerConfig SmallServer() {
  v1::ServerConfig c;
  c.mutable_head()->set_feature_count(16);
  c.mutable_head()->set_class_count(4);
  c.mutable_policy()->set_target_updates(1);
  c.mutable_policy()->set_min_updates(1);
  server::ApplyDefaults(&c);
  return c;
}

TEST(Bridge, RelaysARoundBetweenAFramedDeviceAndTheServer) {
  auto started = server::InProcessServer::Start(SmallServer());
  ASSERT_TRUE(started.ok()) << started.status();
  server::InProcessServer& coordinator = **started;
  Listener uart;
  std::atomic<bool> stop{false};
  BridgeOptions options;
  options.device = "tcp:127.0.0.1:" + std::to_string(uart.port());
  options.server = coordinator.address();
  options.reconnect_ms = 50;
  options.stop = &stop;
  std::FILE* log = std::tmpfile();
  std::thread bridge([&] { EXPECT_TRUE(RunBridge(options, log).ok()); });

  {
    DeviceLink link(uart.Accept());
    // The device: SDK context, random local samples.
    std::vector<uint8_t> arena(tinyfed_arena_size(16, 4, 8));
    tinyfed_context_t ctx;
    tinyfed_config_t cfg{"uart-dev", 16, 4, 8};
    ASSERT_EQ(tinyfed_init(&ctx, &cfg, arena.data(), arena.size()), TINYFED_OK);
    std::mt19937 rng(3);
    std::vector<int8_t> x(32 * 16);
    std::vector<uint8_t> y(32);
    for (auto& v : x) v = static_cast<int8_t>(static_cast<int>(rng() % 200) - 100);
    for (auto& v : y) v = static_cast<uint8_t>(rng() % 4);

    // Noise and a frame of an unknown type first: the bridge drops the
    // noise and answers the unknown frame with an ERROR frame.
    link.SendRaw({0x13, 0x37, 0x99, 0x00});
    const uint8_t junk[3] = {1, 2, 3};
    link.Send(42, junk, sizeof junk);
    auto reply = link.Receive();
    ASSERT_EQ(reply.first, TINYFED_FRAME_ERROR);
    EXPECT_NE(reply.second.find("unknown frame type"), std::string::npos) << reply.second;

    uint8_t buf[TINYFED_TASK_MAX_SIZE(16u, 4u)];
    size_t len = 0;
    ASSERT_EQ(tinyfed_checkin_encode(&ctx, 32, buf, sizeof buf, &len), TINYFED_OK);
    link.Send(TINYFED_FRAME_CHECKIN, buf, len);
    reply = link.Receive();
    ASSERT_EQ(reply.first, TINYFED_FRAME_CHECKIN_RESPONSE);
    tinyfed_checkin_result_t result{};
    ASSERT_EQ(tinyfed_checkin_response_decode(
                  &ctx, reinterpret_cast<const uint8_t*>(reply.second.data()), reply.second.size(),
                  &result),
              TINYFED_OK);
    ASSERT_EQ(result.kind, TINYFED_CHECKIN_TASK);
    tinyfed_dataset_t data{x.data(), y.data(), 32, 16};
    ASSERT_EQ(tinyfed_train(&ctx, &data), TINYFED_OK);
    ASSERT_EQ(tinyfed_update_encode(&ctx, buf, sizeof buf, &len), TINYFED_OK);
    link.Send(TINYFED_FRAME_UPDATE, buf, len);
    reply = link.Receive();
    ASSERT_EQ(reply.first, TINYFED_FRAME_ACK);
    uint32_t round = 0, retry = 0;
    ASSERT_EQ(tinyfed_ack_decode(reinterpret_cast<const uint8_t*>(reply.second.data()),
                                 reply.second.size(), &round, &retry),
              TINYFED_OK);
    EXPECT_EQ(round, 1u);

    // A garbage update is refused with the server's code in an ERROR frame.
    const uint8_t garbage[4] = {0x08, 0x01, 0x1a, 0x00};
    link.Send(TINYFED_FRAME_UPDATE, garbage, sizeof garbage);
    reply = link.Receive();
    ASSERT_EQ(reply.first, TINYFED_FRAME_ERROR);
    EXPECT_EQ(reply.second.rfind(std::to_string(static_cast<int>(grpc::StatusCode::INVALID_ARGUMENT)) + " ", 0),
              0u)
        << reply.second;
  }  // the device hangs up

  // The bridge reopens the link; the device checks in again.
  {
    DeviceLink link(uart.Accept());
    std::vector<uint8_t> arena(tinyfed_arena_size(16, 4, 8));
    tinyfed_context_t ctx;
    tinyfed_config_t cfg{"uart-dev-2", 16, 4, 8};
    ASSERT_EQ(tinyfed_init(&ctx, &cfg, arena.data(), arena.size()), TINYFED_OK);
    uint8_t buf[128];
    size_t len = 0;
    ASSERT_EQ(tinyfed_checkin_encode(&ctx, 10, buf, sizeof buf, &len), TINYFED_OK);
    link.Send(TINYFED_FRAME_CHECKIN, buf, len);
    EXPECT_EQ(link.Receive().first, TINYFED_FRAME_CHECKIN_RESPONSE);
  }
  stop = true;
  bridge.join();
  std::fclose(log);

  // The device's update is in the committed version.
  auto stub = v1::Coordinator::NewStub(
      grpc::CreateChannel(coordinator.address(), grpc::InsecureChannelCredentials()));
  grpc::ClientContext context;
  v1::ModelVersion latest;
  ASSERT_TRUE(stub->GetModel(&context, v1::GetModelRequest(), &latest).ok());
  EXPECT_EQ(latest.version(), 2u);
  EXPECT_EQ(latest.metrics().participants(), 1u);
  EXPECT_EQ(latest.metrics().samples(), 32u);
}

TEST(Bridge, RejectsMalformedEndpoints) {
  BridgeOptions o;
  o.server = "127.0.0.1:1";
  for (const char* device : {"", "tcp:", "tcp:host", "tcp:host:0", "tcp:host:70000", "usb:x",
                             "serial:"}) {
    o.device = device;
    EXPECT_EQ(ValidateBridgeOptions(o).code(), absl::StatusCode::kInvalidArgument) << device;
  }
  o.device = "serial:/dev/ttyUSB0";
  o.baud = 12345;
  EXPECT_EQ(ValidateBridgeOptions(o).code(), absl::StatusCode::kInvalidArgument);
  o.baud = 115200;
  o.server = "nohostport";
  EXPECT_EQ(ValidateBridgeOptions(o).code(), absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace tinyfed::agent
