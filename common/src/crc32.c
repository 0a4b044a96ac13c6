#include "tinyfed_common/crc32.h"

/* CRC of each nibble value under the reflected polynomial 0xEDB88320. Half a
 * byte per lookup keeps the table at 64 bytes, which suits a 12 KB flash
 * budget better than the usual 1 KB byte table. */
static const uint32_t kNibbleTable[16] = {
    0x00000000u, 0x1DB71064u, 0x3B6E20C8u, 0x26D930ACu,
    0x76DC4190u, 0x6B6B51F4u, 0x4DB26158u, 0x5005713Cu,
    0xEDB88320u, 0xF00F9344u, 0xD6D6A3E8u, 0xCB61B38Cu,
    0x9B64C2B0u, 0x86D3D2D4u, 0xA00AE278u, 0xBDBDF21Cu,
};

uint32_t tinyfed_crc32_update(uint32_t crc, const uint8_t *data, size_t len) {
  uint32_t c = ~crc;
  size_t i;
  for (i = 0; i < len; ++i) {
    c ^= data[i];
    c = (c >> 4) ^ kNibbleTable[c & 0x0Fu];
    c = (c >> 4) ^ kNibbleTable[c & 0x0Fu];
  }
  return ~c;
}
