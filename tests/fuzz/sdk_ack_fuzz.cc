// Fuzzes the SDK's UpdateAck decoder (tinyfed_ack_decode in
// client-sdk/src/codec.c): the server's answer to an update, relayed to the
// device by a bridge it need not trust.
//
// Input: the message bytes, in a heap block of exactly their size, so ASan
// catches a read one byte past them. Beyond "no crash, no undefined
// behaviour", the documented outcomes: OK, MALFORMED, or MESSAGE_TOO_LARGE
// exactly for messages over 64 bytes; outputs are written only on success.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>

#include "tinyfed/tinyfed.h"

namespace {

void Require(bool condition) {
  if (!condition) std::abort();  // libFuzzer keeps the input that got here
}

// Written into the outputs first, to see whether a failed decode wrote them.
constexpr uint32_t kUntouched = 0xA5A5A5A5u;

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  uint8_t* msg = static_cast<uint8_t*>(std::malloc(size == 0 ? 1 : size));
  if (size != 0) std::memcpy(msg, data, size);
  uint32_t round = kUntouched, retry_after_ms = kUntouched;
  const tinyfed_status_t status = tinyfed_ack_decode(msg, size, &round, &retry_after_ms);
  std::free(msg);
  if (size > 64) {
    Require(status == TINYFED_ERR_MESSAGE_TOO_LARGE);
  } else {
    Require(status == TINYFED_OK || status == TINYFED_ERR_MALFORMED);
  }
  if (status != TINYFED_OK) Require(round == kUntouched && retry_after_ms == kUntouched);
  return 0;
}
