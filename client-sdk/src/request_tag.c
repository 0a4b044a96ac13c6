/* HMAC-SHA256 for request tags, built on mbedTLS's SHA-256 alone: mbedTLS's
 * own HMAC (the md layer) allocates its context with calloc, which the SDK
 * may not call. What is here is RFC 2104's construction and nothing else;
 * every hash is mbedTLS's. */
#include "request_tag.h"

#include <mbedtls/platform_util.h>
#include <mbedtls/sha256.h>

/* mbedTLS's software SHA-256 returns 0 from every call, so the calls below
 * ignore their results (a tag over a failed hash would be a wrong tag the
 * server refuses, never a secret leaked). A port that swaps in a hardware
 * SHA-256, which can fail, must come here first and handle its errors. */
#if defined(MBEDTLS_SHA256_ALT) || defined(MBEDTLS_SHA256_PROCESS_ALT)
#error "request_tag.c assumes mbedTLS's software SHA-256, whose calls cannot fail"
#endif

#define SHA256_BLOCK_SIZE 64u

/* The key must be shorter than a block, so that RFC 2104 pads it with
 * zeros rather than hashing it first. */
typedef char tinyfed_key_fits_a_block[(TINYFED_DEVICE_KEY_SIZE <= SHA256_BLOCK_SIZE) ? 1 : -1];

void tinyfed_request_tag(const uint8_t *key, const uint8_t *label, size_t label_size,
                         const uint8_t *body, size_t body_len, uint8_t *tag) {
  uint8_t pad[SHA256_BLOCK_SIZE]; /* the key, zero-padded, XOR ipad then opad */
  uint8_t inner[32];              /* SHA-256(key ^ ipad || label || body) */
  mbedtls_sha256_context sha;
  size_t i;
  for (i = 0; i < SHA256_BLOCK_SIZE; ++i) {
    pad[i] = (uint8_t)((i < TINYFED_DEVICE_KEY_SIZE ? key[i] : 0u) ^ 0x36u);
  }
  mbedtls_sha256_init(&sha);
  (void)mbedtls_sha256_starts_ret(&sha, 0);
  (void)mbedtls_sha256_update_ret(&sha, pad, sizeof pad);
  (void)mbedtls_sha256_update_ret(&sha, label, label_size);
  if (body_len > 0u) (void)mbedtls_sha256_update_ret(&sha, body, body_len);
  (void)mbedtls_sha256_finish_ret(&sha, inner);
  for (i = 0; i < SHA256_BLOCK_SIZE; ++i) pad[i] = (uint8_t)(pad[i] ^ (0x36u ^ 0x5Cu));
  (void)mbedtls_sha256_starts_ret(&sha, 0);
  (void)mbedtls_sha256_update_ret(&sha, pad, sizeof pad);
  (void)mbedtls_sha256_update_ret(&sha, inner, sizeof inner);
  (void)mbedtls_sha256_finish_ret(&sha, tag);
  /* The padded key and the inner hash are as good as the key to an
   * attacker who reads this stack later; mbedtls_sha256_free wipes the
   * hash state the same way. */
  mbedtls_sha256_free(&sha);
  mbedtls_platform_zeroize(pad, sizeof pad);
  mbedtls_platform_zeroize(inner, sizeof inner);
}
