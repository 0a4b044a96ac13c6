// Fuzzes the link deframer (client-sdk/src/link.c): the bytes a device or
// the bridge reads from a UART or a TCP stream, which noise, a cut cable or
// a hostile peer may fill with anything.
//
// Input: byte 0 sets the decoder's buffer, for payloads of 0 to 1020 bytes
// (4 x byte 0), so frames longer than the buffer are common; the rest is
// the stream, fed a byte at a time. The buffer is a heap block of exactly
// the documented size, so ASan catches a write one byte past it.
//
// Beyond "no crash, no undefined behaviour", the decoder's contract: a
// frame it returns lies inside its buffer and within the buffer's payload
// bound, has a non-zero type, and encodes to a frame that decodes to the
// same type and payload; every byte ending a frame either returns it or
// reports why it was dropped, so the counters add up.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <vector>

#include "tinyfed/link.h"

namespace {

void Require(bool condition) {
  if (!condition) std::abort();  // libFuzzer keeps the input that got here
}

// Re-encodes a returned frame and decodes it with a fresh decoder.
void RequireRoundTrip(const tinyfed_frame_t& frame) {
  std::vector<uint8_t> wire(TINYFED_FRAME_ENCODED_MAX(frame.length));
  size_t wire_len = 0;
  Require(tinyfed_frame_encode(frame.type, frame.payload, frame.length, wire.data(), wire.size(),
                               &wire_len) == TINYFED_OK);
  std::vector<uint8_t> buffer(TINYFED_FRAME_DECODER_BUFFER(frame.length));
  tinyfed_frame_decoder_t decoder;
  Require(tinyfed_frame_decoder_init(&decoder, buffer.data(), buffer.size()) == TINYFED_OK);
  int frames = 0;
  for (size_t i = 0; i < wire_len; ++i) {
    int ready = 0;
    tinyfed_frame_t again;
    Require(tinyfed_frame_decoder_push(&decoder, wire[i], &ready, &again) == TINYFED_OK);
    if (!ready) continue;
    ++frames;
    Require(i == wire_len - 1);  // the delimiter, and nothing before it, ends the frame
    Require(again.type == frame.type && again.length == frame.length);
    Require(frame.length == 0 || std::memcmp(again.payload, frame.payload, frame.length) == 0);
  }
  Require(frames == 1);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 1) return 0;
  const size_t max_payload = 4u * data[0];
  const size_t capacity = TINYFED_FRAME_DECODER_BUFFER(max_payload);
  uint8_t* buffer = static_cast<uint8_t*>(std::malloc(capacity));
  tinyfed_frame_decoder_t decoder;
  Require(tinyfed_frame_decoder_init(&decoder, buffer, capacity) == TINYFED_OK);

  uint32_t returned = 0, dropped = 0;
  for (size_t i = 1; i < size; ++i) {
    int ready = -1;
    tinyfed_frame_t frame;
    const tinyfed_status_t status = tinyfed_frame_decoder_push(&decoder, data[i], &ready, &frame);
    if (status != TINYFED_OK) {
      Require(status == TINYFED_ERR_MALFORMED || status == TINYFED_ERR_CHECKSUM ||
              status == TINYFED_ERR_MESSAGE_TOO_LARGE);
      Require(ready == 0);
      ++dropped;
      continue;
    }
    Require(ready == 0 || ready == 1);
    if (!ready) continue;
    ++returned;
    Require(data[i] == 0);  // only a delimiter completes a frame
    Require(frame.type != 0);
    Require(frame.length <= max_payload);
    Require(frame.payload >= buffer &&
            frame.payload + frame.length + TINYFED_FRAME_CRC_SIZE <= buffer + capacity);
    RequireRoundTrip(frame);
  }
  Require(decoder.frames_ok == returned && decoder.frames_dropped == dropped);
  std::free(buffer);
  return 0;
}
