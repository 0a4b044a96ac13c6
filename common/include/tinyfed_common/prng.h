/* The deterministic random streams of a device's training.
 *
 * Training draws from three independent streams, all derived from the
 * plan's seed and the device id: one shuffles the samples, one dithers the
 * stochastic rounding of each SGD step, one the rounding of the final delta.
 * Keeping them apart lets a float reference of the algorithm (which never
 * rounds) visit exactly the same batches as the integer one.
 *
 * The shuffle and delta streams use xorshift32 with a multiplicative output
 * scrambler: four instructions on a Cortex-M, no 64-bit arithmetic, and
 * output good enough for shuffling and dithering (not for cryptography).
 * The SGD dither, drawn once per weight per batch, uses a cheaper linear
 * congruential generator (tinyfed_dither_t below).
 *
 * A tinyfed_prng_t or tinyfed_dither_t is a plain value: requires external
 * synchronization, no hidden state anywhere else.
 */
#ifndef TINYFED_COMMON_PRNG_H_
#define TINYFED_COMMON_PRNG_H_

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct tinyfed_prng {
  uint32_t state; /* never 0 */
} tinyfed_prng_t;

/* Stream identifiers, mixed into the seed. */
#define TINYFED_STREAM_SHUFFLE 0x5348u  /* "SH" */
#define TINYFED_STREAM_ROUNDING 0x524Eu /* "RN" */
#define TINYFED_STREAM_DITHER 0x4449u   /* "DI" */

/* Seeds `prng` for `stream` from the plan's `seed` and `device_hash` (the
 * CRC-32 of the device id). Any inputs give a valid, non-zero state. */
void tinyfed_prng_seed(tinyfed_prng_t *prng, uint32_t seed,
                       uint32_t device_hash, uint32_t stream);

/* Next 32 uniformly distributed bits. Inline: the delta quantization draws
 * one per weight, and a call would cost more than the four instructions of
 * the generator (three shifted XORs and a multiply on a Cortex-M). */
#if defined(__GNUC__) || defined(__clang__)
__attribute__((always_inline))
#endif
static inline uint32_t tinyfed_prng_next_u32(tinyfed_prng_t *prng) {
  uint32_t x = prng->state;
  x ^= x << 13;
  x ^= x >> 17;
  x ^= x << 5;
  prng->state = x;
  /* xorshift's low bits are weak; an odd multiply spreads the high ones. */
  return x * 0x9E3779BBu;
}

/* The dither stream of the SGD step's stochastic rounding: one draw per
 * weight per batch, the hottest use of randomness, so it takes the
 * cheapest generator that still gives every draw a uniform distribution: a
 * 32-bit linear congruential generator, x -> A * (x + 1) mod 2^32, with
 * A = 1664525 (odd increment, A = 1 mod 4: full period 2^32 by the
 * Hull-Dobell theorem), one multiply-accumulate on a Cortex-M. Its low
 * bits are weak (bit 0 alternates), which stochastic rounding tolerates:
 * they only decide the step's last 2^-32 to 2^-16. Requires external
 * synchronization; any state is valid. */
typedef struct tinyfed_dither {
  uint32_t state;
} tinyfed_dither_t;

#define TINYFED_DITHER_MULTIPLIER 1664525u

/* Seeds the dither stream from the plan's `seed` and `device_hash`, apart
 * from the other streams: the state tinyfed_prng_seed() gives stream
 * TINYFED_STREAM_DITHER. */
static inline void tinyfed_dither_seed(tinyfed_dither_t *dither, uint32_t seed,
                                       uint32_t device_hash) {
  tinyfed_prng_t mixed;
  tinyfed_prng_seed(&mixed, seed, device_hash, TINYFED_STREAM_DITHER);
  dither->state = mixed.state;
}

/* Next 32 uniformly distributed bits of the dither stream. */
#if defined(__GNUC__) || defined(__clang__)
__attribute__((always_inline))
#endif
static inline uint32_t tinyfed_dither_next_u32(tinyfed_dither_t *dither) {
  dither->state = (dither->state + 1u) * TINYFED_DITHER_MULTIPLIER;
  return dither->state;
}

/* A value uniform in [0, bound) for bound >= 1 (bound 0 returns 0), by a
 * 32x32->64 multiply of a fresh draw (bias below 2^-32 * bound). */
uint32_t tinyfed_prng_below(tinyfed_prng_t *prng, uint32_t bound);

/* A permutation of 0..count-1 that takes no memory: i -> (offset + i *
 * stride) mod count with stride coprime to count, both drawn from `prng`.
 * Visit it with tinyfed_permutation_next(). */
typedef struct tinyfed_permutation {
  uint32_t count;
  uint32_t stride; /* in [1, count), coprime to count; 0 when count <= 1 */
  uint32_t next;   /* index the next call returns */
} tinyfed_permutation_t;

/* REQUIRES: count >= 1. */
void tinyfed_permutation_init(tinyfed_permutation_t *perm, uint32_t count,
                              tinyfed_prng_t *prng);

/* Returns the next index; after `count` calls the sequence repeats.
 * Inline: training takes one per sample. */
static inline uint32_t tinyfed_permutation_next(tinyfed_permutation_t *perm) {
  const uint32_t index = perm->next;
  /* index + stride < 2 * count, which may pass 2^32. Counts of 0 and 1
   * have stride 0 and stay at 0. */
  const uint64_t n = (uint64_t)index + perm->stride;
  perm->next = (uint32_t)((n >= perm->count) ? n - perm->count : n);
  return index;
}

#ifdef __cplusplus
}
#endif

#endif /* TINYFED_COMMON_PRNG_H_ */
