// Central differential privacy: exact discrete Gaussian noise and the
// accountant that says what it buys (DESIGN.md "Trust"; issue 15).
//
// Noise. The server adds to each noised round's integer sum (units of
// 2^-16 master steps) one independent sample of the discrete Gaussian
// N_Z(0, sigma^2) per value: P[X = x] proportional to
// exp(-x^2 / (2 sigma^2)) over the integers. Samples are exact: the
// sampler of Canonne, Kamath and Steinke, "The Discrete Gaussian for
// Differential Privacy" (NeurIPS 2020; arXiv:2004.00010), Algorithms 1-3:
//   - Bernoulli(exp(-gamma)) for a rational gamma, by trials of
//     Bernoulli(gamma / k) (gamma <= 1) and floor(gamma) trials of
//     Bernoulli(exp(-1)) first otherwise;
//   - the discrete Laplace of scale t = floor(sigma) + 1, from a uniform
//     U in [0, t), accepted with probability exp(-U / t), plus t times a
//     geometric count of Bernoulli(exp(-1)) successes, and a fair sign
//     (a negative zero rejected);
//   - the discrete Gaussian: a discrete Laplace Y accepted with probability
//     exp(-(|Y| - sigma^2 / t)^2 / (2 sigma^2)).
// Every probability is a rational compared with a uniform integer drawn
// below its denominator by rejection (no modulo bias, no floating point),
// the rationals held in OpenSSL BIGNUMs (with sigma up to 2^52 their
// numerators pass 2^200). The distribution is therefore exactly N_Z(0,
// sigma^2) given a uniform RandomSource; the only departure is a sample
// outside int64, reported as OUT_OF_RANGE (a discrete Laplace proposal that
// large has probability below exp(-2^11) for sigma <= 2^52: never).
//
// The noise is a secret: whoever knows it can subtract it. It never
// reaches a log, an error message or a metric; OsRandomSource wipes the
// bytes it hands out from its buffer, and its buffer when destroyed.
//
// Accounting (doubles: reporting and configuration only, never sampling).
// One noised round is a release q(D) + Y with Y ~ N_Z(0, sigma^2)^d, where
// q(D), the vector of the round's integer sums, moves by at most Delta in
// L2 norm when one device's update is added or removed (RoundSensitivity).
// By CKS Theorem 14 (numbered as in arXiv v5; the multivariate discrete
// Gaussian: independent coordinates, integer-valued q with sum_j (q(D)_j -
// q(D')_j)^2 / sigma^2 <= epsilon^2 give (1/2) epsilon^2-concentrated DP;
// Delta need not be an integer, only q), one release is
// rho-zCDP with rho = Delta^2 / (2 sigma^2) (GaussianRho). zCDP composes
// by addition (Bun and Steinke 2016, Lemma 2.3): T releases spend the sum
// of their rho. rho-zCDP implies (epsilon, delta)-DP for the epsilon of
// CKS Corollary 13 (EpsilonFromRho), which is never above the Bun-Steinke
// form rho + 2 sqrt(rho ln(1/delta)).
//
// Thread-safety: the free functions are safe for concurrent use; a
// RandomSource requires external synchronization (one per caller, or a
// lock), and the samplers use only the source they are given.
#ifndef TINYFED_SERVER_PRIVACY_H_
#define TINYFED_SERVER_PRIVACY_H_

#include <array>
#include <cstddef>
#include <cstdint>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/types/span.h"

namespace tinyfed::server {

// Uniform random bytes. Tests substitute a seeded source to make sampling
// reproducible; the server uses OsRandomSource.
class RandomSource {
 public:
  virtual ~RandomSource() = default;
  // Fills `out` entirely with independent uniform bytes, or returns an
  // error (and the content of `out` is unspecified).
  virtual absl::Status Fill(absl::Span<uint8_t> out) = 0;
};

// The operating system's CSPRNG through getrandom(2), buffered: one system
// call per kBufferBytes consumed. UNAVAILABLE when getrandom fails (the
// pool not yet initialized and the call interrupted, or the call missing).
// Requires external synchronization.
class OsRandomSource final : public RandomSource {
 public:
  static constexpr size_t kBufferBytes = 4096;
  OsRandomSource() = default;
  ~OsRandomSource() override;
  OsRandomSource(const OsRandomSource&) = delete;
  OsRandomSource& operator=(const OsRandomSource&) = delete;
  absl::Status Fill(absl::Span<uint8_t> out) override;

 private:
  std::array<uint8_t, kBufferBytes> buffer_{};
  size_t available_ = 0;  // unread bytes, at the end of buffer_
};

// One exact sample of N_Z(0, sigma^2) with sigma^2 = sigma_squared_num /
// sigma_squared_den (any positive rational with 64-bit terms; tests use
// small ones such as 1/2 or 9/1).
// Errors: INVALID_ARGUMENT when either term is 0; the source's error;
// OUT_OF_RANGE for a sample outside int64 (see above: never in practice).
absl::StatusOr<int64_t> SampleDiscreteGaussian(uint64_t sigma_squared_num,
                                               uint64_t sigma_squared_den,
                                               RandomSource& random);

// `count` independent exact samples of N_Z(0, sigma^2), sigma an integer
// (units of 2^-16 master steps, as the round's sums), sigma^2 = sigma *
// sigma exactly.
// REQUIRES: nothing; sigma outside [1, 2^52] is INVALID_ARGUMENT.
// Errors: as SampleDiscreteGaussian; no partial result is returned.
absl::StatusOr<std::vector<int64_t>> DiscreteGaussianNoise(uint64_t sigma, size_t count,
                                                           RandomSource& random);

// The L2 sensitivity of one round's sums, in 2^-16 master steps, with
// uniform weights and every update clipped to `norm_bound` master steps:
// norm_bound * 2^16 for the clipped delta itself plus sqrt(values) / 2 for
// the rounding of the clipped contributions to 2^-16 (aggregator.h: at most
// half a unit per value).
double RoundSensitivity(uint64_t norm_bound, size_t values);

// rho of one release: sensitivity^2 / (2 sigma^2), sigma in the same units
// as the sensitivity. +infinity when sigma <= 0 and sensitivity != 0.
double GaussianRho(double sensitivity, double sigma);

// rho-zCDP as (epsilon, delta)-DP: the smallest epsilon that CKS Corollary
// 13 gives at `delta`,
//   epsilon = inf over alpha > 1 of alpha rho + (ln(1/delta) + (alpha - 1)
//             ln(1 - 1/alpha) - ln(alpha)) / (alpha - 1)
// (the Corollary's delta = exp((alpha-1)(alpha rho - epsilon)) / (alpha-1)
// (1 - 1/alpha)^alpha, solved for epsilon). Found numerically: a grid of
// ln(alpha - 1) in steps of 1/8 over [-40, 40], then golden-section search
// around the best point to a relative width of 1e-12. The value returned is
// the formula at an alpha actually found, so it is always a valid epsilon
// (numerical error costs tightness, never soundness, beyond the double
// rounding of evaluating the formula: a few ulps); it is within 1e-9
// (relative) of the infimum when the minimum lies in the grid's range, and
// never above rho + 2 sqrt(rho ln(1/delta)). Clamped at 0 below: for a
// tiny rho the formula goes negative at a large alpha, and the Corollary at
// epsilon 0 then gives (0, delta)-DP.
// 0 for rho 0; +infinity for rho +infinity.
// REQUIRES: rho >= 0, 0 < delta < 1.
double EpsilonFromRho(double rho, double delta);

// The smallest noise multiplier z, in Q16.16 (z = z_q16 / 2^16), such that
// `rounds` releases with sigma = z_q16 * norm_bound (2^-16 master steps:
// z times the bound in master steps) spend at most `epsilon` at `delta`:
//   EpsilonFromRho(rounds * GaussianRho(RoundSensitivity(norm_bound,
//                  values), z_q16 * norm_bound), delta) <= epsilon,
// and z_q16 - 1 does not meet it (z_q16 >= 1; z_q16 = 0 is no noise). 0
// when no z_q16 in [1, 2^32 - 1] meets it (norm_bound 0 among other cases),
// and for arguments outside the REQUIRES.
// REQUIRES: epsilon > 0, 0 < delta < 1, rounds >= 1.
uint32_t NoiseMultiplierQ16For(double epsilon, double delta, uint32_t rounds,
                               uint64_t norm_bound, size_t values);

// The largest n such that EpsilonFromRho(rho_spent + n * rho_per_round,
// delta) <= epsilon_budget: how many more releases the budget allows. 0 when
// what is spent already exceeds it (or delta is outside (0, 1)); 2^32 - 1
// (saturated) when that many or more fit, rho_per_round 0 included.
// REQUIRES: rho_spent >= 0, rho_per_round >= 0, 0 < delta < 1.
uint32_t RoundsWithinBudget(double rho_spent, double rho_per_round, double epsilon_budget,
                            double delta);

}  // namespace tinyfed::server

#endif  // TINYFED_SERVER_PRIVACY_H_
