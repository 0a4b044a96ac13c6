// `tinyfed-agent bridge`: the test plays a device on the far side of a byte
// link, with the real SDK and framing, against an in-process server.
// Over TCP (as qemu's UART would be): a full round, noise and unknown
// frames on the link, a server error returned as an ERROR frame, a
// reconnect after the link drops, a link closed in the middle of a frame,
// and a device that hangs up before its replies. Over a pseudo-terminal
// (the `serial:` path): the line settings the bridge applies, every byte
// value crossing the line unchanged, a round, and a hang-up mid-frame.
#include "bridge_command.h"

#include <gtest/gtest.h>
#include <netinet/in.h>
#include <poll.h>
#include <pty.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <termios.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <fstream>
#include <mutex>
#include <random>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "generic_call.h"
#include "in_process_server.h"
#include "round_manager.h"
#include "server_config.h"
#include "tinyfed/link.h"
#include "tinyfed/tinyfed.h"
#include "tinyfed/v1/coordinator.grpc.pb.h"
#include "tinyfed_common/fleet_keys.h"

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

// How long a test waits for a reply or a log line. A reply takes a few
// milliseconds; the bound only ends a failing test, on a loaded machine.
constexpr int kWaitMs = 5000;

// The device end of the link (a socket, or a pseudo-terminal's master):
// frames out, frames in, and every byte received.
class DeviceLink {
 public:
  explicit DeviceLink(int fd) : fd_(fd), buffer_(TINYFED_FRAME_DECODER_BUFFER(16384)) {
    EXPECT_EQ(tinyfed_frame_decoder_init(&decoder_, buffer_.data(), buffer_.size()), TINYFED_OK);
  }
  ~DeviceLink() { Close(); }
  void Close() {
    if (fd_ >= 0) close(fd_);
    fd_ = -1;
  }
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
  // The next frame, or type 0 after kWaitMs without one.
  std::pair<uint8_t, std::string> Receive() {
    for (int waited = 0; waited < kWaitMs;) {
      pollfd p{fd_, POLLIN, 0};
      if (poll(&p, 1, 100) <= 0) {
        waited += 100;
        continue;
      }
      uint8_t byte;
      if (read(fd_, &byte, 1) != 1) break;
      received_.push_back(byte);
      int ready = 0;
      tinyfed_frame_t frame;
      if (tinyfed_frame_decoder_push(&decoder_, byte, &ready, &frame) == TINYFED_OK && ready) {
        return {frame.type, std::string(reinterpret_cast<const char*>(frame.payload), frame.length)};
      }
    }
    return {0, ""};
  }
  const std::vector<uint8_t>& received() const { return received_; }

 private:
  int fd_;
  std::vector<uint8_t> buffer_;
  tinyfed_frame_decoder_t decoder_;
  std::vector<uint8_t> received_;
};

std::vector<uint8_t> Frame(uint8_t type, const uint8_t* payload, size_t len) {
  std::vector<uint8_t> frame(TINYFED_FRAME_ENCODED_MAX(len));
  size_t n = 0;
  EXPECT_EQ(tinyfed_frame_encode(type, payload, len, frame.data(), frame.size(), &n), TINYFED_OK);
  frame.resize(n);
  return frame;
}

Key256 DeviceKeyOf(const server::InProcessServer& coordinator, const std::string& id) {
  absl::StatusOr<Key256> key = DeriveDeviceKey(coordinator.fleet_key(), id);
  EXPECT_TRUE(key.ok()) << key.status();
  return key.ok() ? *key : Key256();
}

// A device running the SDK on random local samples; its messages come out
// framed for the link.
class SdkDevice {
 public:
  // The device's key is derived from the server's fleet key, as
  // provisioning would (tinyfed-admin keys device).
  SdkDevice(const server::InProcessServer& coordinator, const char* id, uint32_t features,
            uint32_t classes, uint32_t seed)
      : key_(DeviceKeyOf(coordinator, id)),
        features_(features),
        arena_(tinyfed_arena_size(features, classes, 8)),
        buffer_(TINYFED_TASK_MAX_SIZE(features, classes)),
        x_(kSamples * features),
        y_(kSamples) {
    tinyfed_config_t cfg{id, features, classes, 8, key_.bytes().data()};
    EXPECT_EQ(tinyfed_init(&ctx_, &cfg, arena_.data(), arena_.size()), TINYFED_OK);
    std::mt19937 rng(seed);
    for (auto& v : x_) v = static_cast<int8_t>(static_cast<int>(rng() % 200) - 100);
    for (auto& v : y_) v = static_cast<uint8_t>(rng() % classes);
  }
  std::vector<uint8_t> CheckInFrame() {
    size_t len = 0;
    EXPECT_EQ(tinyfed_checkin_encode(&ctx_, kSamples, buffer_.data(), buffer_.size(), &len),
              TINYFED_OK);
    return Frame(TINYFED_FRAME_CHECKIN, buffer_.data(), len);
  }
  // Loads the task a CHECKIN_RESPONSE payload carries; "" when it did,
  // else why not.
  std::string LoadTask(const std::string& response) {
    tinyfed_checkin_result_t result{};
    const tinyfed_status_t s = tinyfed_checkin_response_decode(
        &ctx_, reinterpret_cast<const uint8_t*>(response.data()), response.size(), &result);
    if (s != TINYFED_OK) return tinyfed_status_name(s);
    if (result.kind != TINYFED_CHECKIN_TASK) {
      return absl::StrCat("no task; retry after ", result.retry_after_ms, " ms");
    }
    return "";
  }
  // The signed update as the SDK encodes it, before framing.
  std::string TrainAndEncodeUpdate() {
    tinyfed_dataset_t data{x_.data(), y_.data(), kSamples, features_};
    EXPECT_EQ(tinyfed_train(&ctx_, &data), TINYFED_OK);
    size_t len = 0;
    EXPECT_EQ(tinyfed_update_encode(&ctx_, buffer_.data(), buffer_.size(), &len), TINYFED_OK);
    return std::string(reinterpret_cast<const char*>(buffer_.data()), len);
  }
  std::vector<uint8_t> TrainAndFrameUpdate() {
    const std::string update = TrainAndEncodeUpdate();
    return Frame(TINYFED_FRAME_UPDATE, reinterpret_cast<const uint8_t*>(update.data()),
                 update.size());
  }

 private:
  static constexpr uint32_t kSamples = 32;
  Key256 key_;  // read by the SDK through the context, so declared before it
  uint32_t features_;
  std::vector<uint8_t> arena_, buffer_;
  std::vector<int8_t> x_;
  std::vector<uint8_t> y_;
  tinyfed_context_t ctx_;
};

// The device checks in over the link and loads the task it is given.
void CheckInForATask(SdkDevice& device, DeviceLink& link) {
  link.SendRaw(device.CheckInFrame());
  const auto reply = link.Receive();
  ASSERT_EQ(reply.first, TINYFED_FRAME_CHECKIN_RESPONSE);
  ASSERT_EQ(device.LoadTask(reply.second), "");
}

// The round an ACK payload acknowledges, or 0 if it is not an UpdateAck.
uint32_t AckedRound(const std::string& ack) {
  uint32_t round = 0, retry = 0;
  return tinyfed_ack_decode(reinterpret_cast<const uint8_t*>(ack.data()), ack.size(), &round,
                            &retry) == TINYFED_OK
             ? round
             : 0;
}

// What the bridge logs, collected through a pipe as it is written, so a
// test can wait for an event.
class LogCapture {
 public:
  LogCapture() {
    int fds[2];
    EXPECT_EQ(pipe(fds), 0);
    read_fd_ = fds[0];
    file_ = fdopen(fds[1], "w");
    setvbuf(file_, nullptr, _IOLBF, 0);
    reader_ = std::thread([this] {
      char buf[512];
      ssize_t n;
      while ((n = read(read_fd_, buf, sizeof buf)) > 0) {
        std::lock_guard<std::mutex> lock(mu_);
        text_.append(buf, static_cast<size_t>(n));
        changed_.notify_all();
      }
    });
  }
  ~LogCapture() {
    std::fclose(file_);
    reader_.join();
    close(read_fd_);
  }
  std::FILE* file() { return file_; }
  std::string text() {
    std::lock_guard<std::mutex> lock(mu_);
    return text_;
  }
  int Count(const std::string& needle) {
    std::lock_guard<std::mutex> lock(mu_);
    return CountLocked(needle);
  }
  // True once `needle` has been logged `times` times; false after kWaitMs.
  bool WaitFor(const std::string& needle, int times = 1) {
    std::unique_lock<std::mutex> lock(mu_);
    return changed_.wait_for(lock, std::chrono::milliseconds(kWaitMs),
                             [&] { return CountLocked(needle) >= times; });
  }

 private:
  int CountLocked(const std::string& needle) const {
    int count = 0;
    for (size_t at = text_.find(needle); at != std::string::npos;
         at = text_.find(needle, at + 1)) {
      ++count;
    }
    return count;
  }

  int read_fd_ = -1;
  std::FILE* file_ = nullptr;
  std::thread reader_;
  std::mutex mu_;
  std::condition_variable changed_;
  std::string text_;
};

// The bridge on its own thread, stopped and joined on destruction.
class BridgeThread {
 public:
  BridgeThread(const std::string& device, const std::string& server, std::FILE* log,
               uint32_t baud = 115200) {
    options_.device = device;
    options_.server = server;
    options_.baud = baud;
    options_.reconnect_ms = 20;
    options_.stop = &stop_;
    thread_ = std::thread([this, log] {
      tid_ = static_cast<pid_t>(syscall(SYS_gettid));
      started_ = true;
      status_ = RunBridge(options_, log);
    });
    while (!started_) std::this_thread::yield();
  }
  ~BridgeThread() { Stop().IgnoreError(); }
  absl::Status Stop() {
    stop_ = true;
    if (thread_.joinable()) thread_.join();
    return status_;
  }
  // Bytes the bridge's thread has read so far (the kernel's per-thread
  // count): on a serial link, what it took from the line. Its gRPC calls
  // run on gRPC's own threads.
  uint64_t BytesRead() const {
    std::ifstream io("/proc/self/task/" + std::to_string(tid_) + "/io");
    std::string key;
    uint64_t value = 0;
    while (io >> key >> value) {
      if (key == "rchar:") return value;
    }
    ADD_FAILURE() << "no rchar in /proc/self/task/" << tid_ << "/io";
    return 0;
  }

 private:
  BridgeOptions options_;
  std::atomic<pid_t> tid_{0};
  std::atomic<bool> started_{false};
  std::atomic<bool> stop_{false};
  absl::Status status_;
  std::thread thread_;
};

v1::ServerConfig Server(uint32_t features, uint32_t classes, uint32_t target_updates) {
  v1::ServerConfig c;
  c.mutable_head()->set_feature_count(features);
  c.mutable_head()->set_class_count(classes);
  c.mutable_policy()->set_target_updates(target_updates);
  c.mutable_policy()->set_min_updates(target_updates);
  server::ApplyDefaults(&c);
  return c;
}

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
    const Key256 key = DeviceKeyOf(coordinator, "uart-dev");
    tinyfed_config_t cfg{"uart-dev", 16, 4, 8, key.bytes().data()};
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
    const Key256 key = DeviceKeyOf(coordinator, "uart-dev-2");
    tinyfed_config_t cfg{"uart-dev-2", 16, 4, 8, key.bytes().data()};
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

// A device that resets or loses power mid-send leaves part of a frame on
// the link. The bridge documents that it drops the unfinished frame
// without sending any of it to the server, logs it, and reopens the link;
// the device resends after its reply timeout and is answered.
TEST(Bridge, DropsAFrameCutOffByALostLinkAndRelaysItWhenResent) {
  // Two updates close a round, so the one update this test sends stays
  // visible in the open round's counts.
  auto started = server::InProcessServer::Start(Server(16, 4, 2));
  ASSERT_TRUE(started.ok()) << started.status();
  server::InProcessServer& coordinator = **started;
  Listener uart;
  LogCapture log;
  BridgeThread bridge("tcp:127.0.0.1:" + std::to_string(uart.port()), coordinator.address(),
                      log.file());

  SdkDevice device(coordinator, "cut-dev", 16, 4, 5);
  std::vector<uint8_t> update;
  {
    DeviceLink link(uart.Accept());
    link.SendRaw(device.CheckInFrame());
    const auto reply = link.Receive();
    ASSERT_EQ(reply.first, TINYFED_FRAME_CHECKIN_RESPONSE);
    ASSERT_EQ(device.LoadTask(reply.second), "");
    update = device.TrainAndFrameUpdate();
  }  // hangs up between frames
  ASSERT_TRUE(log.WaitFor("device link lost")) << log.text();
  EXPECT_EQ(log.Count("into a frame"), 0) << log.text();

  SdkDevice other(coordinator, "cut-dev-other", 16, 4, 6);
  const std::vector<uint8_t> checkin = other.CheckInFrame();
  struct Cut {
    const std::vector<uint8_t>* frame;
    size_t bytes;
  };
  // The first COBS code byte alone, half a frame, and everything but the
  // 0x00 delimiter: a body whose CRC is already complete and correct.
  const Cut cuts[] = {{&update, 1},
                      {&update, update.size() / 2},
                      {&update, update.size() - 1},
                      {&checkin, checkin.size() - 1}};
  int losses = 1;
  for (const Cut& cut : cuts) {
    {
      DeviceLink link(uart.Accept());
      link.SendRaw(std::vector<uint8_t>(cut.frame->begin(), cut.frame->begin() + cut.bytes));
    }
    ++losses;
    ASSERT_TRUE(log.WaitFor("device link lost", losses)) << log.text();
    EXPECT_EQ(log.Count(absl::StrCat("lost (hung up) ", cut.bytes,
                                     cut.bytes == 1 ? " byte" : " bytes", " into a frame")),
              1)
        << log.text();
    // Nothing of the unfinished frames reached the round: the only task is
    // the first device's, and no update is accepted or being recorded.
    const server::RoundSnapshot round = coordinator.manager().Snapshot();
    EXPECT_EQ(round.round, 1u);
    EXPECT_EQ(round.tasks_issued, 1u) << cut.bytes;
    EXPECT_EQ(round.accepted, 0u) << cut.bytes;
    EXPECT_EQ(round.pending, 0u) << cut.bytes;
  }

  // The device reconnects and resends: the first frame on the new link is
  // relayed (no leftover of the cut frame spoils it) and acknowledged.
  {
    DeviceLink link(uart.Accept());
    link.SendRaw(update);
    const auto reply = link.Receive();
    ASSERT_EQ(reply.first, TINYFED_FRAME_ACK) << log.text();
    EXPECT_EQ(AckedRound(reply.second), 1u);
  }
  EXPECT_TRUE(bridge.Stop().ok());
  EXPECT_EQ(coordinator.manager().Snapshot().accepted, 1u);
  // One relayed call of each kind: the complete check-in and the resent
  // update; none for the four unfinished frames. The log reaches the
  // capture through a pipe and its reader thread, possibly after the ack
  // reached the device: wait for the update's line before counting.
  ASSERT_TRUE(log.WaitFor("SubmitUpdate (", 1)) << log.text();
  EXPECT_EQ(log.Count("CheckIn ("), 1) << log.text();
  EXPECT_EQ(log.Count("SubmitUpdate ("), 1) << log.text();
}

// A frame whose CRC fails (a flipped bit on the line) is dropped and
// logged; the server is not called with it.
TEST(Bridge, DropsAFrameThatFailsItsCrcWithoutCallingTheServer) {
  auto started = server::InProcessServer::Start(Server(16, 4, 2));
  ASSERT_TRUE(started.ok()) << started.status();
  server::InProcessServer& coordinator = **started;
  Listener uart;
  LogCapture log;
  BridgeThread bridge("tcp:127.0.0.1:" + std::to_string(uart.port()), coordinator.address(),
                      log.file());
  SdkDevice device(coordinator, "crc-dev", 16, 4, 8);
  DeviceLink link(uart.Accept());
  ASSERT_NO_FATAL_FAILURE(CheckInForATask(device, link));
  std::pair<uint8_t, std::string> reply;
  const std::vector<uint8_t> update = device.TrainAndFrameUpdate();

  // Change one payload byte and leave the COBS structure intact: walk the
  // code bytes to a data byte past the 3-byte header, in the middle.
  std::vector<uint8_t> damaged = update;
  size_t target = 0;
  for (size_t code_at = 0, decoded = 0; code_at + 1 < damaged.size() && target == 0;) {
    const size_t code = damaged[code_at];
    for (size_t k = 1; k < code; ++k) {
      if (decoded + k - 1 >= 3 && code_at + k >= damaged.size() / 2) {
        target = code_at + k;
        break;
      }
    }
    decoded += code - 1 + (code < 0xFF ? 1 : 0);
    code_at += code;
  }
  ASSERT_GT(target, 0u);
  damaged[target] = damaged[target] == 0xFF ? 0xFE : static_cast<uint8_t>(damaged[target] + 1);
  link.SendRaw(damaged);
  ASSERT_TRUE(log.WaitFor("dropped a damaged frame (TINYFED_ERR_CHECKSUM)")) << log.text();
  EXPECT_EQ(coordinator.manager().Snapshot().accepted, 0u);
  EXPECT_EQ(coordinator.manager().Snapshot().pending, 0u);

  // The device's retry, intact, is relayed.
  link.SendRaw(update);
  reply = link.Receive();
  ASSERT_EQ(reply.first, TINYFED_FRAME_ACK) << log.text();
  EXPECT_EQ(AckedRound(reply.second), 1u);
  EXPECT_TRUE(bridge.Stop().ok());
  ASSERT_TRUE(log.WaitFor("SubmitUpdate (", 1)) << log.text();  // the pipe may lag the ack
  EXPECT_EQ(log.Count("SubmitUpdate ("), 1) << log.text();
  EXPECT_EQ(coordinator.manager().Snapshot().accepted, 1u);
}

// The bridge is an untrusted relay: a relay that alters one byte of a
// signed update and frames it again (so the link's CRC passes) gets the
// update refused by the server with UNAUTHENTICATED, whichever part it
// altered: the envelope's device id, the body's first byte (the round
// field), a delta byte in the middle of the body, or the tag's last byte.
// Nothing is accepted until the device's own bytes arrive.
TEST(Bridge, AnUpdateAlteredOnTheWayIsRefusedAsUnauthenticated) {
  auto started = server::InProcessServer::Start(Server(16, 4, 2));
  ASSERT_TRUE(started.ok()) << started.status();
  server::InProcessServer& coordinator = **started;
  Listener uart;
  LogCapture log;
  BridgeThread bridge("tcp:127.0.0.1:" + std::to_string(uart.port()), coordinator.address(),
                      log.file());
  SdkDevice device(coordinator, "relay-dev", 16, 4, 11);
  DeviceLink link(uart.Accept());
  ASSERT_NO_FATAL_FAILURE(CheckInForATask(device, link));
  std::pair<uint8_t, std::string> reply;
  const std::string update = device.TrainAndEncodeUpdate();

  // Where the parts lie in the device's bytes, found by parsing them with
  // the C++ protobuf library (independent of the SDK's encoder).
  v1::SignedRequest envelope;
  ASSERT_TRUE(envelope.ParseFromString(update));
  ASSERT_EQ(envelope.device_id(), "relay-dev");
  ASSERT_EQ(envelope.tag().size(), 32u);
  const size_t id_at = update.find(envelope.device_id());
  const size_t body_at = update.find(envelope.body());
  const size_t tag_at = update.find(envelope.tag());
  ASSERT_NE(id_at, std::string::npos);
  ASSERT_NE(body_at, std::string::npos);
  ASSERT_NE(tag_at, std::string::npos);
  const size_t positions[] = {id_at + 2, body_at, body_at + envelope.body().size() / 2,
                              tag_at + 31};
  const std::string unauthenticated =
      std::to_string(static_cast<int>(grpc::StatusCode::UNAUTHENTICATED)) + " ";
  for (size_t at : positions) {
    std::string altered = update;
    altered[at] = static_cast<char>(altered[at] ^ 0x01);
    const std::vector<uint8_t> frame =
        Frame(TINYFED_FRAME_UPDATE, reinterpret_cast<const uint8_t*>(altered.data()),
              altered.size());
    link.SendRaw(frame);
    reply = link.Receive();
    ASSERT_EQ(reply.first, TINYFED_FRAME_ERROR) << "byte " << at << "\n" << log.text();
    EXPECT_EQ(reply.second.rfind(unauthenticated, 0), 0u) << "byte " << at << ": "
                                                          << reply.second;
    EXPECT_EQ(coordinator.manager().Snapshot().accepted, 0u) << "byte " << at;
  }
  // The frame carries the number for the device; the log line people read
  // names the status.
  EXPECT_NE(log.text().find("SubmitUpdate ("), std::string::npos) << log.text();
  EXPECT_NE(log.text().find(") -> UNAUTHENTICATED: "), std::string::npos) << log.text();

  // The device's own bytes, relayed unchanged, are accepted.
  link.SendRaw(Frame(TINYFED_FRAME_UPDATE, reinterpret_cast<const uint8_t*>(update.data()),
                     update.size()));
  reply = link.Receive();
  ASSERT_EQ(reply.first, TINYFED_FRAME_ACK) << log.text();
  EXPECT_EQ(AckedRound(reply.second), 1u);
  EXPECT_TRUE(bridge.Stop().ok());
  EXPECT_EQ(coordinator.manager().Snapshot().accepted, 1u);
}

// A device that sends several frames and hangs up at once, mid-frame,
// leaves the bridge replies it cannot deliver. Writing to a socket the peer
// has reset raises SIGPIPE, whose default action would end the bridge (and
// this test's process); the bridge must log the loss and carry on.
TEST(Bridge, SurvivesADeviceThatHangsUpBeforeItsReplies) {
  auto started = server::InProcessServer::Start(Server(16, 4, 2));
  ASSERT_TRUE(started.ok()) << started.status();
  server::InProcessServer& coordinator = **started;
  Listener uart;
  LogCapture log;
  BridgeThread bridge("tcp:127.0.0.1:" + std::to_string(uart.port()), coordinator.address(),
                      log.file());

  SdkDevice device(coordinator, "hasty-dev", 16, 4, 7);
  const std::vector<uint8_t> checkin = device.CheckInFrame();
  {
    DeviceLink link(uart.Accept());
    std::vector<uint8_t> burst;
    for (int i = 0; i < 3; ++i) burst.insert(burst.end(), checkin.begin(), checkin.end());
    burst.insert(burst.end(), checkin.begin(), checkin.begin() + 5);
    link.SendRaw(burst);
  }  // hangs up without reading a reply
  ASSERT_TRUE(log.WaitFor("device link lost")) << log.text();

  DeviceLink link(uart.Accept());
  link.SendRaw(checkin);
  const auto reply = link.Receive();
  ASSERT_EQ(reply.first, TINYFED_FRAME_CHECKIN_RESPONSE) << log.text();
  EXPECT_EQ(device.LoadTask(reply.second), "");
  EXPECT_TRUE(bridge.Stop().ok());
}

// Bytes its output processing (OPOST) acts on: BS, TAB, LF, CR, and a
// lower-case letter (OLCUC).
constexpr uint8_t kOutputControlBytes[] = {0x08, 0x09, 0x0A, 0x0D, 0x61};

std::string MissingBytes(const std::vector<uint8_t>& stream) {
  const std::set<uint8_t> seen(stream.begin(), stream.end());
  std::string missing;
  for (uint8_t b : kOutputControlBytes) {
    if (seen.count(b) == 0) absl::StrAppend(&missing, " 0x", absl::Hex(b));
  }
  return missing;
}

// The `serial:` path on the slave side of a pseudo-terminal, the test
// playing the device on the master side. The line starts in the state a
// previous user (a terminal program, `stty`) could leave it in: canonical
// input with echo, XON/XOFF both ways, RTS/CTS flow control, two stop bits,
// modem control, 9600 baud. The bridge must make it a raw 8N1 line at the
// requested rate, so that every byte of a frame crosses unchanged.
TEST(Bridge, RelaysARoundOverASerialPseudoTerminalInRawMode) {
  int master = -1, slave = -1;
  char name[128];
  ASSERT_EQ(openpty(&master, &slave, name, nullptr, nullptr), 0);
  termios tio{};
  ASSERT_EQ(tcgetattr(slave, &tio), 0);
  tio.c_lflag |= ICANON | ECHO | ISIG | IEXTEN;
  tio.c_iflag |= ICRNL | IXON | IXOFF | IXANY;
  tio.c_oflag |= OPOST | ONLCR;
  tio.c_cflag |= CRTSCTS | CSTOPB;
  tio.c_cflag &= ~static_cast<tcflag_t>(CLOCAL);
  cfsetispeed(&tio, B9600);
  cfsetospeed(&tio, B9600);
  ASSERT_EQ(tcsetattr(slave, TCSANOW, &tio), 0);
  ASSERT_EQ(tcgetattr(slave, &tio), 0);
  ASSERT_TRUE((tio.c_iflag & IXOFF) && (tio.c_cflag & CRTSCTS) && (tio.c_cflag & CSTOPB) &&
              !(tio.c_cflag & CLOCAL) && cfgetospeed(&tio) == B9600)
      << "the pseudo-terminal did not keep the starting settings the test relies on";

  // The protocol's largest head (4,096 weights), so that the round's frames
  // carry thousands of arbitrary bytes. One update closes a round, so the
  // second check-in carries trained weights.
  auto started = server::InProcessServer::Start(Server(128, 32, 1));
  ASSERT_TRUE(started.ok()) << started.status();
  server::InProcessServer& coordinator = **started;
  LogCapture log;
  const std::string device_path = std::string("serial:") + name;
  BridgeThread bridge(device_path, coordinator.address(), log.file(), 57600);
  ASSERT_TRUE(log.WaitFor("device link " + device_path + " open")) << log.text();

  // Settings are the terminal's, not the descriptor's: the test's own slave
  // descriptor shows what the bridge applied.
  ASSERT_EQ(tcgetattr(slave, &tio), 0);
  EXPECT_EQ(tio.c_lflag & (ICANON | ECHO | ECHONL | ISIG | IEXTEN), 0u);
  EXPECT_EQ(tio.c_iflag & (IGNBRK | BRKINT | PARMRK | ISTRIP | INLCR | IGNCR | ICRNL | IXON |
                           IXOFF | IXANY | INPCK),
            0u);
  EXPECT_EQ(tio.c_oflag & OPOST, 0u);
  EXPECT_EQ(tio.c_cflag & CSIZE, static_cast<tcflag_t>(CS8));
  EXPECT_EQ(tio.c_cflag & (PARENB | CSTOPB | CRTSCTS), 0u) << "not 8N1 without flow control";
  EXPECT_EQ(tio.c_cflag & (CLOCAL | CREAD), static_cast<tcflag_t>(CLOCAL | CREAD))
      << "modem lines must be ignored and the receiver on";
  EXPECT_EQ(tio.c_cc[VMIN], 1);
  EXPECT_EQ(tio.c_cc[VTIME], 0);
  EXPECT_EQ(cfgetispeed(&tio), static_cast<speed_t>(B57600));
  EXPECT_EQ(cfgetospeed(&tio), static_cast<speed_t>(B57600));

  DeviceLink link(master);
  // Every non-zero byte value in one frame of a type the bridge does not
  // relay, among them those a terminal's input processing acts on unless
  // the line is raw: ^C ^D ^O ^Q ^R ^S ^U ^V ^W ^Z ^\ (signals, end of
  // file, XON/XOFF, line editing), LF and CR (translation), DEL (erase) and
  // 0xFF (PARMRK's escape). Its ERROR answer comes only if the frame's CRC
  // held, that is if every byte crossed unchanged.
  std::vector<uint8_t> every_value;
  for (int b = 1; b <= 255; ++b) every_value.push_back(static_cast<uint8_t>(b));
  link.Send(42, every_value.data(), every_value.size());
  auto reply = link.Receive();
  ASSERT_EQ(reply.first, TINYFED_FRAME_ERROR) << log.text();
  EXPECT_NE(reply.second.find("unknown frame type 42"), std::string::npos) << reply.second;

  SdkDevice device(coordinator, "tty-dev", 128, 32, 9);
  link.SendRaw(device.CheckInFrame());
  reply = link.Receive();
  ASSERT_EQ(reply.first, TINYFED_FRAME_CHECKIN_RESPONSE) << log.text();
  ASSERT_EQ(device.LoadTask(reply.second), "");
  link.SendRaw(device.TrainAndFrameUpdate());
  reply = link.Receive();
  ASSERT_EQ(reply.first, TINYFED_FRAME_ACK) << log.text();
  EXPECT_EQ(AckedRound(reply.second), 1u);
  // The round closes on its own thread once acknowledged; a check-in during
  // the close would get a retry hint.
  coordinator.manager().WaitIdle();

  // Round 2 hands out the committed weights of version 2.
  link.SendRaw(device.CheckInFrame());
  reply = link.Receive();
  ASSERT_EQ(reply.first, TINYFED_FRAME_CHECKIN_RESPONSE) << log.text();
  ASSERT_EQ(device.LoadTask(reply.second), "");
  // Device to bridge, the first frame carried every byte value. Bridge to
  // device, the round's replies carried the bytes output processing would
  // alter (a 4,096-weight head gives thousands of weight bytes), and each
  // reply passed its CRC check on arrival.
  EXPECT_EQ(MissingBytes(link.received()), "")
      << "the round's bridge-to-device frames lack these bytes";

  // Half of round 2's update, then the device end hangs up: nothing is
  // forwarded, and the bridge says so.
  const std::vector<uint8_t> update = device.TrainAndFrameUpdate();
  const size_t half = update.size() / 2;
  const uint64_t read_before = bridge.BytesRead();
  link.SendRaw(std::vector<uint8_t>(update.begin(), update.begin() + half));
  // A pseudo-terminal discards unread input when its master closes, and
  // the terminal's input queue fills asynchronously after a write: wait
  // until the bridge has read the half frame.
  for (int waited = 0; bridge.BytesRead() < read_before + half; waited += 2) {
    ASSERT_LT(waited, kWaitMs) << "the bridge did not read the half frame";
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
  }
  link.Close();
  ASSERT_TRUE(log.WaitFor(absl::StrCat(half, " bytes into a frame"))) << log.text();
  EXPECT_TRUE(bridge.Stop().ok());
  close(slave);
  const server::RoundSnapshot round = coordinator.manager().Snapshot();
  EXPECT_EQ(round.round, 2u);
  EXPECT_EQ(round.accepted, 0u);
  EXPECT_EQ(round.pending, 0u);
  EXPECT_EQ(round.latest_version, 2u);
  EXPECT_EQ(log.Count("SubmitUpdate ("), 1) << log.text();
}

// Codes by their numbers in gRPC's spec (doc/statuscodes.md), written out
// here rather than taken from grpc::StatusCode.
TEST(GrpcStatusName, NamesCodesAsGrpcSpellsThem) {
  EXPECT_EQ(GrpcStatusName(static_cast<grpc::StatusCode>(0)), "OK");
  EXPECT_EQ(GrpcStatusName(static_cast<grpc::StatusCode>(4)), "DEADLINE_EXCEEDED");
  EXPECT_EQ(GrpcStatusName(static_cast<grpc::StatusCode>(7)), "PERMISSION_DENIED");
  EXPECT_EQ(GrpcStatusName(static_cast<grpc::StatusCode>(14)), "UNAVAILABLE");
  EXPECT_EQ(GrpcStatusName(static_cast<grpc::StatusCode>(16)), "UNAUTHENTICATED");
  EXPECT_EQ(GrpcStatusName(static_cast<grpc::StatusCode>(99)), "gRPC status 99");
  EXPECT_EQ(DescribeGrpcStatus(grpc::Status(grpc::StatusCode::NOT_FOUND, "no version 7")),
            "NOT_FOUND: no version 7");
  EXPECT_EQ(DescribeGrpcStatus(grpc::Status(grpc::StatusCode::ABORTED, "")), "ABORTED");
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
