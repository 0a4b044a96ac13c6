/* The deterministic random streams of a device's training.
 *
 * Training draws from two independent streams, both derived from the plan's
 * seed and the device id: one shuffles the samples, one drives stochastic
 * rounding. Keeping them apart lets a float reference of the algorithm (which
 * never rounds) visit exactly the same batches as the integer one.
 *
 * The generator is xorshift32 with a multiplicative output scrambler: four
 * instructions of state update on a Cortex-M, no 64-bit arithmetic, and
 * output good enough for shuffling and dithering (not for cryptography).
 *
 * A tinyfed_prng_t is a plain value: requires external synchronization, no
 * hidden state anywhere else.
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

/* Seeds `prng` for `stream` from the plan's `seed` and `device_hash` (the
 * CRC-32 of the device id). Any inputs give a valid, non-zero state. */
void tinyfed_prng_seed(tinyfed_prng_t *prng, uint32_t seed,
                       uint32_t device_hash, uint32_t stream);

/* Next 32 uniformly distributed bits. */
uint32_t tinyfed_prng_next_u32(tinyfed_prng_t *prng);

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

/* Returns the next index; after `count` calls the sequence repeats. */
uint32_t tinyfed_permutation_next(tinyfed_permutation_t *perm);

#ifdef __cplusplus
}
#endif

#endif /* TINYFED_COMMON_PRNG_H_ */
