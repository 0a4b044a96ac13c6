// `tinyfed-agent bridge`: relays a real device's framed messages between
// its byte link (a serial port, or a TCP socket such as an emulator's UART)
// and the server's gRPC service, bytes unchanged.
//
// Frames (client-sdk/include/tinyfed/link.h) of type CHECKIN and UPDATE
// become CheckIn and SubmitUpdate calls through gRPC's generic API; the
// response returns as a CHECKIN_RESPONSE or ACK frame, and a failed call as
// an ERROR frame whose payload is "<gRPC code> <message>". Damaged frames
// are dropped (the device times out and retries); a lost link is reopened.
#ifndef TINYFED_DEVICE_AGENT_BRIDGE_COMMAND_H_
#define TINYFED_DEVICE_AGENT_BRIDGE_COMMAND_H_

#include <atomic>
#include <cstdint>
#include <cstdio>
#include <string>

#include "absl/status/status.h"

namespace tinyfed::agent {

struct BridgeOptions {
  std::string device;           // "tcp:HOST:PORT" or "serial:PATH"
  std::string server;           // HOST:PORT of tinyfed-server
  uint32_t baud = 115200;       // serial only
  uint32_t reconnect_ms = 1000; // wait before reopening a lost link
  uint64_t max_frames = 0;      // stop after relaying this many (0: run until stopped)
  const std::atomic<bool>* stop = nullptr;  // set to stop (checked at least every 200 ms)
};

// INVALID_ARGUMENT naming a malformed --device or --server.
absl::Status ValidateBridgeOptions(const BridgeOptions& options);

// Runs until `max_frames` frames were relayed or `*stop` is set; logs one
// line per event (connection, relayed call, dropped frame) to `log`.
absl::Status RunBridge(const BridgeOptions& options, FILE* log);

}  // namespace tinyfed::agent

#endif  // TINYFED_DEVICE_AGENT_BRIDGE_COMMAND_H_
