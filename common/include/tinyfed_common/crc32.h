/* CRC-32 shared by devices and the server.
 *
 * The IEEE 802.3 polynomial, reflected, initial value and final XOR
 * 0xFFFFFFFF: the CRC that zlib and Ethernet compute ("123456789" ->
 * 0xCBF43926). Model versions and updates carry it over their payload bytes
 * so a corrupted weight is caught before it trains or aggregates.
 *
 * Pure functions with no state: safe from any thread and any interrupt.
 */
#ifndef TINYFED_COMMON_CRC32_H_
#define TINYFED_COMMON_CRC32_H_

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Value to start an incremental CRC with. */
#define TINYFED_CRC32_INIT 0u

/* Extends `crc` (TINYFED_CRC32_INIT, or the result of an earlier call) over
 * `len` bytes at `data` and returns the CRC of everything so far. `data` may
 * be NULL only when `len` is 0. Uses a 16-entry table (64 bytes of flash). */
uint32_t tinyfed_crc32_update(uint32_t crc, const uint8_t *data, size_t len);

#ifdef __cplusplus
}
#endif

#endif /* TINYFED_COMMON_CRC32_H_ */
