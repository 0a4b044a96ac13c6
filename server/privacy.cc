#include "privacy.h"

#include <sys/random.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstring>
#include <limits>
#include <memory>
#include <string>

#include <openssl/bn.h>
#include <openssl/crypto.h>

#include "absl/strings/str_cat.h"

namespace tinyfed::server {

OsRandomSource::~OsRandomSource() { OPENSSL_cleanse(buffer_.data(), buffer_.size()); }

absl::Status OsRandomSource::Fill(absl::Span<uint8_t> out) {
  size_t done = 0;
  while (done < out.size()) {
    if (available_ == 0) {
      size_t filled = 0;
      while (filled < buffer_.size()) {
        const ssize_t got = getrandom(buffer_.data() + filled, buffer_.size() - filled, 0);
        if (got < 0) {
          if (errno == EINTR) continue;
          return absl::UnavailableError(
              absl::StrCat("getrandom failed: ", std::strerror(errno)));
        }
        filled += static_cast<size_t>(got);
      }
      available_ = buffer_.size();
    }
    const size_t start = buffer_.size() - available_;
    const size_t take = std::min(available_, out.size() - done);
    std::memcpy(out.data() + done, buffer_.data() + start, take);
    // Bytes handed out become noise; they must not stay readable here.
    OPENSSL_cleanse(buffer_.data() + start, take);
    available_ -= take;
    done += take;
  }
  return absl::OkStatus();
}

namespace {

// BIGNUMs here hold noise or the rationals that decide it: cleared on free.
struct BignumClear {
  void operator()(BIGNUM* n) const { BN_clear_free(n); }
};
using Bignum = std::unique_ptr<BIGNUM, BignumClear>;

// The exact samplers of CKS (header comment), on rationals held as pairs
// of BIGNUMs. One per call of the public functions: it owns scratch
// numbers so that a sample allocates nothing, and borrows the source.
class ExactSampler {
 public:
  explicit ExactSampler(RandomSource& random) : random_(random) {}

  absl::Status Init() {
    for (Bignum* n : {&uniform_, &bound_, &one_, &gamma_den_, &whole_, &rest_, &acceptance_num_,
                      &acceptance_den_, &scratch_, &den_t_}) {
      n->reset(BN_new());
      if (*n == nullptr) return absl::ResourceExhaustedError("privacy: BN_new failed");
    }
    ctx_.reset(BN_CTX_new());
    if (ctx_ == nullptr) return absl::ResourceExhaustedError("privacy: BN_CTX_new failed");
    if (!BN_one(one_.get())) return Failed("BN_one");
    return absl::OkStatus();
  }

  // sigma^2 = num / den > 0 (taken as given; the callers check), and t =
  // floor(sigma) + 1. Fixes the acceptance test's denominator, 2 num den
  // t^2, once for all samples at this sigma. num and den must outlive the
  // sampler.
  absl::Status SetSigmaSquared(const BIGNUM* num, const BIGNUM* den, uint64_t t) {
    num_ = num;
    den_ = den;
    t_ = t;
    // den * t: the scale at which sigma^2 / t = num / (den t) compares with |Y|.
    // 2 num den t^2 = 2 num t (den t).
    if (!BN_copy(den_t_.get(), den) || !BN_mul_word(den_t_.get(), t) ||
        !BN_mul(acceptance_den_.get(), num, den_t_.get(), ctx_.get()) ||
        !BN_mul_word(acceptance_den_.get(), t) ||
        !BN_lshift1(acceptance_den_.get(), acceptance_den_.get())) {
      return Failed("acceptance denominator");
    }
    return absl::OkStatus();
  }

  // CKS Algorithm 3: a discrete Laplace proposal Y of scale t, kept with
  // probability exp(-(|Y| - sigma^2/t)^2 / (2 sigma^2)) = exp(-(|Y| den t
  // - num)^2 / (2 num den t^2)).
  absl::StatusOr<int64_t> DiscreteGaussian() {
    while (true) {
      absl::StatusOr<int64_t> y = DiscreteLaplace();
      if (!y.ok()) return y.status();
      const uint64_t magnitude =
          *y < 0 ? uint64_t{0} - static_cast<uint64_t>(*y) : static_cast<uint64_t>(*y);
      if (!BN_set_word(scratch_.get(), magnitude) ||
          !BN_mul(acceptance_num_.get(), scratch_.get(), den_t_.get(), ctx_.get()) ||
          !BN_sub(acceptance_num_.get(), acceptance_num_.get(), num_) ||
          !BN_sqr(acceptance_num_.get(), acceptance_num_.get(), ctx_.get())) {
        return Failed("acceptance numerator");
      }
      absl::StatusOr<bool> keep = BernoulliExpMinus(acceptance_num_.get(),
                                                    acceptance_den_.get());
      if (!keep.ok()) return keep.status();
      if (*keep) return *y;
    }
  }

 private:
  static absl::Status Failed(const char* what) {
    return absl::InternalError(absl::StrCat("privacy: BIGNUM arithmetic failed: ", what));
  }

  // A uniform integer in [0, bound), bound > 0: the bits of bound drawn at
  // random and redrawn when not below it (each draw succeeds with
  // probability above 1/2), so no value is favoured.
  absl::Status UniformBelow(const BIGNUM* bound, BIGNUM* out) {
    const int bits = BN_num_bits(bound);
    const size_t bytes = static_cast<size_t>((bits + 7) / 8);
    const uint8_t top_mask =
        bits % 8 == 0 ? uint8_t{0xff} : static_cast<uint8_t>((1u << (bits % 8)) - 1);
    if (bytes_.size() < bytes) bytes_.resize(bytes);
    const absl::Span<uint8_t> draw(bytes_.data(), bytes);
    while (true) {
      absl::Status filled = random_.Fill(draw);
      if (!filled.ok()) return filled;
      draw[0] &= top_mask;
      const bool converted = BN_bin2bn(draw.data(), static_cast<int>(bytes), out) != nullptr;
      OPENSSL_cleanse(draw.data(), draw.size());
      if (!converted) return Failed("BN_bin2bn");
      if (BN_cmp(out, bound) < 0) return absl::OkStatus();
    }
  }

  // Bernoulli(num / den), 0 <= num <= den, den > 0.
  absl::StatusOr<bool> Bernoulli(const BIGNUM* num, const BIGNUM* den) {
    absl::Status drawn = UniformBelow(den, uniform_.get());
    if (!drawn.ok()) return drawn;
    return BN_cmp(uniform_.get(), num) < 0;
  }

  // CKS Algorithm 1, gamma = num / den in [0, 1]: trials of Bernoulli(gamma
  // / k) for k = 1, 2, ... up to the first failure; true when that failure
  // is at an odd k. Uses gamma_den_ (den * k) and bound_.
  absl::StatusOr<bool> BernoulliExpMinusAtMostOne(const BIGNUM* num, const BIGNUM* den) {
    for (BN_ULONG k = 1;; ++k) {
      if (!BN_copy(gamma_den_.get(), den) || !BN_mul_word(gamma_den_.get(), k)) {
        return Failed("den * k");
      }
      absl::StatusOr<bool> success = Bernoulli(num, gamma_den_.get());
      if (!success.ok()) return success.status();
      if (!*success) return k % 2 == 1;
    }
  }

  // CKS Algorithm 1, any gamma = num / den >= 0: floor(gamma) trials of
  // Bernoulli(exp(-1)) (false at the first failure), then Bernoulli(exp(-(
  // gamma - floor(gamma)))). A floor beyond 64 bits is treated as endless
  // trials: the difference has probability below exp(-2^64).
  absl::StatusOr<bool> BernoulliExpMinus(const BIGNUM* num, const BIGNUM* den) {
    if (!BN_div(whole_.get(), rest_.get(), num, den, ctx_.get())) return Failed("BN_div");
    const bool endless = BN_num_bits(whole_.get()) > 64;
    const uint64_t trials = endless ? 0 : BN_get_word(whole_.get());
    for (uint64_t i = 0; endless || i < trials; ++i) {
      absl::StatusOr<bool> survived = BernoulliExpMinusAtMostOne(one_.get(), one_.get());
      if (!survived.ok()) return survived.status();
      if (!*survived) return false;
    }
    if (BN_is_zero(rest_.get())) return true;
    return BernoulliExpMinusAtMostOne(rest_.get(), den);
  }

  absl::StatusOr<bool> FairBit() {
    uint8_t byte = 0;
    absl::Status filled = random_.Fill(absl::Span<uint8_t>(&byte, 1));
    if (!filled.ok()) return filled;
    return (byte & 1) != 0;
  }

  // CKS Algorithm 2 with s = 1: P[Y = y] proportional to exp(-|y| / t).
  absl::StatusOr<int64_t> DiscreteLaplace() {
    while (true) {
      if (!BN_set_word(bound_.get(), t_)) return Failed("BN_set_word");
      absl::Status drawn = UniformBelow(bound_.get(), scratch_.get());
      if (!drawn.ok()) return drawn;
      const uint64_t u = BN_get_word(scratch_.get());
      // Bernoulli(exp(-u / t)); bound_ still holds t.
      absl::StatusOr<bool> keep_u = BernoulliExpMinusAtMostOne(scratch_.get(), bound_.get());
      if (!keep_u.ok()) return keep_u.status();
      if (!*keep_u) continue;
      uint64_t v = 0;
      while (true) {
        absl::StatusOr<bool> more = BernoulliExpMinusAtMostOne(one_.get(), one_.get());
        if (!more.ok()) return more.status();
        if (!*more) break;
        ++v;
      }
      uint64_t x = 0;
      if (__builtin_mul_overflow(t_, v, &x) || __builtin_add_overflow(x, u, &x) ||
          x > static_cast<uint64_t>(std::numeric_limits<int64_t>::max())) {
        return absl::OutOfRangeError("privacy: a discrete Laplace proposal beyond int64");
      }
      absl::StatusOr<bool> negative = FairBit();
      if (!negative.ok()) return negative.status();
      // Both signs of 0 would give 0 twice the weight of any other value.
      if (*negative && x == 0) continue;
      return *negative ? -static_cast<int64_t>(x) : static_cast<int64_t>(x);
    }
  }

  struct CtxFree {
    void operator()(BN_CTX* ctx) const { BN_CTX_free(ctx); }
  };

  RandomSource& random_;
  std::unique_ptr<BN_CTX, CtxFree> ctx_;
  Bignum uniform_, bound_, one_, gamma_den_, whole_, rest_, scratch_;
  Bignum den_t_, acceptance_num_, acceptance_den_;  // den t; the acceptance's rational
  const BIGNUM* num_ = nullptr;
  const BIGNUM* den_ = nullptr;
  uint64_t t_ = 1;
  std::vector<uint8_t> bytes_;
};

// floor(sqrt(x)), by bisection in integers (sampling uses no floating
// point, not even for a first guess).
uint64_t FloorSqrt(uint64_t x) {
  uint64_t low = 0, high = uint64_t{1} << 32;  // low^2 <= x < high^2
  while (high - low > 1) {
    const uint64_t mid = low + (high - low) / 2;
    (static_cast<unsigned __int128>(mid) * mid <= x ? low : high) = mid;
  }
  return low;
}

absl::StatusOr<std::vector<int64_t>> SampleMany(const BIGNUM* num, const BIGNUM* den,
                                                uint64_t t, size_t count,
                                                RandomSource& random) {
  ExactSampler sampler(random);
  absl::Status ready = sampler.Init();
  if (!ready.ok()) return ready;
  ready = sampler.SetSigmaSquared(num, den, t);
  if (!ready.ok()) return ready;
  std::vector<int64_t> samples;
  samples.reserve(count);
  for (size_t i = 0; i < count; ++i) {
    absl::StatusOr<int64_t> x = sampler.DiscreteGaussian();
    if (!x.ok()) {
      OPENSSL_cleanse(samples.data(), samples.size() * sizeof(int64_t));
      return x.status();
    }
    samples.push_back(*x);
  }
  return samples;
}

Bignum BignumOf(uint64_t value) {
  Bignum n(BN_new());
  if (n != nullptr && !BN_set_word(n.get(), value)) n.reset();
  return n;
}

}  // namespace

absl::StatusOr<int64_t> SampleDiscreteGaussian(uint64_t sigma_squared_num,
                                               uint64_t sigma_squared_den,
                                               RandomSource& random) {
  if (sigma_squared_num == 0 || sigma_squared_den == 0) {
    return absl::InvalidArgumentError("discrete Gaussian: sigma^2 must be a positive rational");
  }
  // floor(sqrt(n / d)) = floor(sqrt(floor(n / d))), so t is exact.
  const uint64_t t = FloorSqrt(sigma_squared_num / sigma_squared_den) + 1;
  Bignum num = BignumOf(sigma_squared_num);
  Bignum den = BignumOf(sigma_squared_den);
  if (num == nullptr || den == nullptr) {
    return absl::ResourceExhaustedError("privacy: BN_new failed");
  }
  absl::StatusOr<std::vector<int64_t>> one = SampleMany(num.get(), den.get(), t, 1, random);
  if (!one.ok()) return one.status();
  return (*one)[0];
}

absl::StatusOr<std::vector<int64_t>> DiscreteGaussianNoise(uint64_t sigma, size_t count,
                                                           RandomSource& random) {
  if (sigma < 1 || sigma > (uint64_t{1} << 52)) {
    return absl::InvalidArgumentError("discrete Gaussian noise: sigma must be in [1, 2^52]");
  }
  Bignum num = BignumOf(sigma);
  Bignum den = BignumOf(1);
  if (num == nullptr || den == nullptr || !BN_mul_word(num.get(), sigma)) {
    return absl::ResourceExhaustedError("privacy: BN_new failed");
  }
  return SampleMany(num.get(), den.get(), sigma + 1, count, random);
}

double RoundSensitivity(uint64_t norm_bound, size_t values) {
  return static_cast<double>(norm_bound) * 65536.0 + std::sqrt(static_cast<double>(values)) / 2.0;
}

double GaussianRho(double sensitivity, double sigma) {
  if (sensitivity == 0) return 0;
  if (sigma <= 0) return std::numeric_limits<double>::infinity();
  const double ratio = sensitivity / sigma;
  return ratio * ratio / 2.0;
}

namespace {

// CKS Corollary 13's epsilon at alpha = 1 + e^u, in the form
// alpha rho + ln(1/delta) / (alpha - 1) + ln(alpha - 1) - alpha ln(alpha) /
// (alpha - 1) (the header's, rearranged), with log1p so that alpha close
// to 1 keeps its precision.
double CksEpsilonAt(double rho, double log_inverse_delta, double u) {
  const double excess = std::exp(u);  // alpha - 1
  const double log_alpha = std::log1p(excess);
  return (1.0 + excess) * rho + log_inverse_delta / excess + u - log_alpha -
         log_alpha / excess;
}

}  // namespace

double EpsilonFromRho(double rho, double delta) {
  if (rho <= 0) return 0;
  if (std::isinf(rho)) return rho;
  const double log_inverse_delta = -std::log(delta);
  constexpr double kLow = -40, kHigh = 40, kStep = 1.0 / 8;
  double best_u = kLow;
  double best = CksEpsilonAt(rho, log_inverse_delta, kLow);
  for (int i = 1; kLow + i * kStep <= kHigh; ++i) {
    const double u = kLow + i * kStep;
    const double e = CksEpsilonAt(rho, log_inverse_delta, u);
    if (e < best) {
      best = e;
      best_u = u;
    }
  }
  // Golden section on the two grid steps around the best grid point.
  const double golden = (std::sqrt(5.0) - 1) / 2;
  double a = best_u - kStep, b = best_u + kStep;
  double c = b - golden * (b - a), d = a + golden * (b - a);
  double fc = CksEpsilonAt(rho, log_inverse_delta, c);
  double fd = CksEpsilonAt(rho, log_inverse_delta, d);
  while (b - a > 1e-12 * std::max(1.0, std::fabs(best_u))) {
    if (fc < fd) {
      b = d;
      d = c;
      fd = fc;
      c = b - golden * (b - a);
      fc = CksEpsilonAt(rho, log_inverse_delta, c);
    } else {
      a = c;
      c = d;
      fc = fd;
      d = a + golden * (b - a);
      fd = CksEpsilonAt(rho, log_inverse_delta, d);
    }
    best = std::min({best, fc, fd});
  }
  const double bun_steinke = rho + 2 * std::sqrt(rho * log_inverse_delta);
  return std::max(0.0, std::min(best, bun_steinke));
}

uint32_t NoiseMultiplierQ16For(double epsilon, double delta, uint32_t rounds,
                               uint64_t norm_bound, size_t values) {
  if (!(epsilon > 0) || !(delta > 0 && delta < 1) || rounds == 0 || norm_bound == 0) return 0;
  const double sensitivity = RoundSensitivity(norm_bound, values);
  const auto meets = [&](uint64_t z_q16) {
    const double sigma = static_cast<double>(z_q16) * static_cast<double>(norm_bound);
    return EpsilonFromRho(rounds * GaussianRho(sensitivity, sigma), delta) <= epsilon;
  };
  uint64_t fails = 0;  // z = 0: no noise, rho infinite
  uint64_t meets_at = std::numeric_limits<uint32_t>::max();
  if (!meets(meets_at)) return 0;
  // Invariant: fails does not meet the budget (tested, or 0), meets_at does.
  while (meets_at - fails > 1) {
    const uint64_t mid = fails + (meets_at - fails) / 2;
    (meets(mid) ? meets_at : fails) = mid;
  }
  return static_cast<uint32_t>(meets_at);
}

uint32_t RoundsWithinBudget(double rho_spent, double rho_per_round, double epsilon_budget,
                            double delta) {
  if (!(delta > 0 && delta < 1)) return 0;
  const auto within = [&](uint64_t n) {
    return EpsilonFromRho(rho_spent + static_cast<double>(n) * rho_per_round, delta) <=
           epsilon_budget;
  };
  constexpr uint64_t kMax = std::numeric_limits<uint32_t>::max();
  if (!within(0)) return 0;
  if (rho_per_round <= 0 || within(kMax)) return static_cast<uint32_t>(kMax);
  // Invariant: within(inside), !within(outside).
  uint64_t inside = 0, outside = kMax;
  while (outside - inside > 1) {
    const uint64_t mid = inside + (outside - inside) / 2;
    (within(mid) ? inside : outside) = mid;
  }
  return static_cast<uint32_t>(inside);
}

}  // namespace tinyfed::server
