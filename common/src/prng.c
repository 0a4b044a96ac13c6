#include "tinyfed_common/prng.h"

/* murmur3's 32-bit finalizer: every input bit affects every output bit, so
 * neighbouring seeds and device ids start far apart. */
static uint32_t mix32(uint32_t x) {
  x ^= x >> 16;
  x *= 0x85EBCA6Bu;
  x ^= x >> 13;
  x *= 0xC2B2AE35u;
  x ^= x >> 16;
  return x;
}

void tinyfed_prng_seed(tinyfed_prng_t *prng, uint32_t seed,
                       uint32_t device_hash, uint32_t stream) {
  uint32_t s = mix32(seed ^ mix32(device_hash ^ mix32(stream + 0x9E3779B9u)));
  prng->state = (s != 0u) ? s : 0x6D2B79F5u;
}

uint32_t tinyfed_prng_below(tinyfed_prng_t *prng, uint32_t bound) {
  uint64_t wide = (uint64_t)tinyfed_prng_next_u32(prng) * bound;
  return (uint32_t)(wide >> 32);
}

static uint32_t gcd_u32(uint32_t a, uint32_t b) {
  while (b != 0u) {
    uint32_t t = a % b;
    a = b;
    b = t;
  }
  return a;
}

void tinyfed_permutation_init(tinyfed_permutation_t *perm, uint32_t count,
                              tinyfed_prng_t *prng) {
  perm->count = count;
  if (count <= 1u) {
    perm->stride = 0u;
    perm->next = 0u;
    return;
  }
  perm->next = tinyfed_prng_below(prng, count);
  /* Stride 1..count-1, moved up to the next value coprime to count. */
  uint32_t stride = 1u + tinyfed_prng_below(prng, count - 1u);
  while (gcd_u32(stride, count) != 1u) {
    stride = (stride + 1u < count) ? stride + 1u : 1u;
  }
  perm->stride = stride;
}
