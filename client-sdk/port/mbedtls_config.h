/* The mbedTLS configuration the SDK compiles mbedTLS's SHA-256 with, when
 * it builds mbedTLS from source (TINYFED_MBEDTLS_SOURCE_DIR: the Cortex-M
 * cross build, deploy/fetch_mbedtls_source.sh), in place of mbedTLS's
 * default config.h: SHA-256 and nothing else, no heap (no MBEDTLS_PLATFORM_C,
 * no md layer, whose context setup callocs). The SDK builds its HMAC on
 * these functions (client-sdk/src/request_tag.c).
 *
 * MBEDTLS_SHA256_SMALLER (the rolled-up compression loop) is the default
 * for the flash budget. Measured on the emulated Cortex-M4 at -Os, it saves
 * 1,388 bytes of flash and costs 45% more instructions to tag the longest
 * 64x10 update (64,120 against 44,360); a board with flash to spare and
 * cycles to save may delete the line. tests/tools/budgets.sh pins the
 * default's figures. Written for mbedTLS 2.28.
 */
#ifndef TINYFED_PORT_MBEDTLS_CONFIG_H_
#define TINYFED_PORT_MBEDTLS_CONFIG_H_

#define MBEDTLS_SHA256_C
#define MBEDTLS_SHA256_SMALLER

/* Only the *_ret functions, never their deprecated void twins. */
#define MBEDTLS_DEPRECATED_REMOVED

#include "mbedtls/check_config.h"

#endif /* TINYFED_PORT_MBEDTLS_CONFIG_H_ */
