// `tinyfed-agent bridge`: relays a real device's framed messages between
// its byte link (a serial port, or a TCP socket such as an emulator's UART)
// and the server's gRPC service, bytes unchanged.
//
// Frames (client-sdk/include/tinyfed/link.h) of type CHECKIN and UPDATE
// become CheckIn and SubmitUpdate calls through gRPC's generic API; the
// response returns as a CHECKIN_RESPONSE or ACK frame, and a failed call as
// an ERROR frame whose payload is "<gRPC code> <message>". Only a frame
// complete up to its 0x00 delimiter and passing its CRC is relayed.
// Damaged frames are dropped and logged (the device times out and
// retries).
//
// A lost link (the device or emulator closes it, a USB adapter is pulled,
// a read or write fails) is logged in one line and reopened after
// `reconnect_ms`, for as long as the bridge runs; it never ends the bridge.
// When the link is lost in the middle of a frame, that line says how many
// bytes of the frame had arrived: the unfinished frame is dropped, none of
// it is sent to the server, and the next link starts with a fresh decoder,
// so the device's resent frame is relayed as it is. A reply that cannot be
// delivered is lost with the link; the device's retry gets it again (a
// resent update is acknowledged idempotently).
//
// A `serial:` path that is a terminal is set to a raw 8N1 line at `baud`
// (no echo, line editing, signal characters, CR/LF translation, XON/XOFF
// or RTS/CTS flow control; modem lines ignored), whatever a previous user
// left set, and read back; a port that refuses ends the bridge with
// FAILED_PRECONDITION. A path that is not a terminal (a FIFO) is used as a
// plain byte stream.
#ifndef TINYFED_DEVICE_AGENT_BRIDGE_COMMAND_H_
#define TINYFED_DEVICE_AGENT_BRIDGE_COMMAND_H_

#include <atomic>
#include <cstdint>
#include <cstdio>
#include <string>

#include "absl/status/status.h"
#include "channel_credentials.h"

namespace tinyfed::agent {

struct BridgeOptions {
  std::string device;           // "tcp:HOST:PORT" or "serial:PATH"
  std::string server;           // HOST:PORT of tinyfed-server
  ChannelTlsOptions tls;        // to `server`; plaintext only to loopback
  uint32_t baud = 115200;       // serial only
  uint32_t reconnect_ms = 1000; // wait before reopening a lost link
  uint64_t max_frames = 0;      // stop after relaying this many (0: run until stopped)
  const std::atomic<bool>* stop = nullptr;  // set to stop (checked at least every 200 ms)
};

// INVALID_ARGUMENT naming a malformed --device or --server, or a --server
// that is not loopback without --tls_ca (ValidateChannelTlsOptions()).
absl::Status ValidateBridgeOptions(const BridgeOptions& options);

// Runs until `max_frames` frames were relayed or `*stop` is set (OK); logs
// one line per event (link opened or lost, relayed call, dropped frame) to
// `log`. INVALID_ARGUMENT as ValidateBridgeOptions(); NOT_FOUND or
// INVALID_ARGUMENT for a PEM file that cannot be read or is not one
// (MakeChannelCredentials()); FAILED_PRECONDITION when a serial port
// refuses the raw line settings.
absl::Status RunBridge(const BridgeOptions& options, FILE* log);

}  // namespace tinyfed::agent

#endif  // TINYFED_DEVICE_AGENT_BRIDGE_COMMAND_H_
