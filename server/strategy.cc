#include "strategy.h"

#include <algorithm>
#include <array>
#include <cstddef>
#include <limits>
#include <string>
#include <system_error>
#include <thread>
#include <utility>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"

namespace tinyfed::server {
namespace {

using int128 = __int128;
using uint128 = unsigned __int128;

constexpr uint32_t kOne_q16 = 1u << 16;
constexpr uint32_t kPpm = 1000000;
// fedadam's clamp of u (header: keeps u^2 and v below 2^110).
constexpr int128 kAdamDeltaLimit = int128{1} << 55;
// OptimizerStateFromProto refuses a second moment at or above this.
constexpr uint128 kSecondMomentLimit = uint128{1} << 111;

int64_t SaturateInt64(int128 v) {
  constexpr int64_t kMax = std::numeric_limits<int64_t>::max();
  if (v > kMax) return kMax;
  if (v < -kMax) return -kMax;
  return static_cast<int64_t>(v);
}

bool UsesNoise(StrategyKind kind) {
  return kind == StrategyKind::kFedAvg || kind == StrategyKind::kFedAvgM ||
         kind == StrategyKind::kFedAdam;
}

absl::Status CheckParams(const StrategyParams& p) {
  if (p.trim_fraction_ppm >= kPpm / 2) {
    return absl::InvalidArgumentError(
        absl::StrCat("trim fraction ", p.trim_fraction_ppm, " ppm is not below 500000"));
  }
  if (p.momentum_q16 >= kOne_q16 || p.second_moment_decay_q16 >= kOne_q16) {
    return absl::InvalidArgumentError("momentum and second-moment decay must be below 1");
  }
  if (p.kind == StrategyKind::kFedAdam) {
    constexpr uint64_t kLimit = uint64_t{1} << 32;
    if (p.adam_step == 0 || p.adam_step >= kLimit || p.adam_tau == 0 || p.adam_tau >= kLimit) {
      return absl::InvalidArgumentError(absl::StrCat("fedadam step ", p.adam_step, " and tau ",
                                                     p.adam_tau, " must be in [1, 2^32)"));
    }
  }
  return absl::OkStatus();
}

// Where update i's values x_ij (strategy.h) come from: an unclipped one
// is computed from its int8 delta while the columns are filled; a clipped
// one is read from its precomputed row (`clipped`, all values).
struct UpdateValues {
  const int8_t* weights = nullptr;
  const int8_t* bias = nullptr;
  const v1::Update* update = nullptr;
  const int64_t* clipped = nullptr;
};

// Per value, the k values of a block of consecutive values, each value's
// column contiguous, so that the selections below run in cache (32 x k
// int64: 2.5 MB for 10,000 updates). 16 and 64 measured slower.
constexpr size_t kBlockValues = 32;
// The values whose int8 deltas are gathered at a time, a multiple of
// kBlockValues: k x 128 bytes (1.3 MB for 10,000 updates) instead of the
// whole round's deltas.
constexpr size_t kStripeValues = 128;
// Below this many k x values a second thread costs more than it saves.
constexpr size_t kParallelWork = size_t{1} << 14;

}  // namespace

std::optional<StrategyKind> ParseStrategy(std::string_view name) {
  if (name == "fedavg") return StrategyKind::kFedAvg;
  if (name == "trimmed-mean") return StrategyKind::kTrimmedMean;
  if (name == "median") return StrategyKind::kMedian;
  if (name == "fedavgm") return StrategyKind::kFedAvgM;
  if (name == "fedadam") return StrategyKind::kFedAdam;
  return std::nullopt;
}

std::string_view StrategyName(StrategyKind kind) {
  switch (kind) {
    case StrategyKind::kFedAvg:
      return "fedavg";
    case StrategyKind::kTrimmedMean:
      return "trimmed-mean";
    case StrategyKind::kMedian:
      return "median";
    case StrategyKind::kFedAvgM:
      return "fedavgm";
    case StrategyKind::kFedAdam:
      return "fedadam";
  }
  return "fedavg";
}

bool StrategyParams::operator==(const StrategyParams& o) const {
  return kind == o.kind && trim_fraction_ppm == o.trim_fraction_ppm &&
         server_lr_q16 == o.server_lr_q16 && momentum_q16 == o.momentum_q16 &&
         second_moment_decay_q16 == o.second_moment_decay_q16 && adam_step == o.adam_step &&
         adam_tau == o.adam_tau &&
         bounds.weight_median_multiple_q16 == o.bounds.weight_median_multiple_q16 &&
         bounds.norm_bound == o.bounds.norm_bound &&
         bounds.norm_median_multiple_q16 == o.bounds.norm_median_multiple_q16 &&
         uniform_weights == o.uniform_weights;
}

void RecordStrategyParams(const StrategyParams& params, v1::Aggregation* record) {
  record->set_strategy(std::string(StrategyName(params.kind)));
  record->set_server_lr_q16(params.server_lr_q16);
  record->set_momentum_q16(params.momentum_q16);
  record->set_second_moment_decay_q16(params.second_moment_decay_q16);
  record->set_adam_step(params.adam_step);
  record->set_adam_tau(params.adam_tau);
  record->set_weight_median_multiple_q16(params.bounds.weight_median_multiple_q16);
  record->set_norm_bound(params.bounds.norm_bound);
  record->set_norm_median_multiple_q16(params.bounds.norm_median_multiple_q16);
  record->set_uniform_weights(params.uniform_weights);
  record->set_trim_fraction_ppm(params.trim_fraction_ppm);
}

absl::StatusOr<StrategyParams> StrategyParamsFromRecord(const v1::Aggregation& record) {
  const std::optional<StrategyKind> kind = ParseStrategy(record.strategy());
  if (!kind) {
    return absl::InvalidArgumentError(
        absl::StrCat("unknown aggregation strategy \"", record.strategy(), "\""));
  }
  StrategyParams p;
  p.kind = *kind;
  p.trim_fraction_ppm = record.trim_fraction_ppm();
  p.server_lr_q16 = record.server_lr_q16();
  p.momentum_q16 = record.momentum_q16();
  p.second_moment_decay_q16 = record.second_moment_decay_q16();
  p.adam_step = record.adam_step();
  p.adam_tau = record.adam_tau();
  p.bounds.weight_median_multiple_q16 = record.weight_median_multiple_q16();
  p.bounds.norm_bound = record.norm_bound();
  p.bounds.norm_median_multiple_q16 = record.norm_median_multiple_q16();
  p.uniform_weights = record.uniform_weights();
  if (absl::Status s = CheckParams(p); !s.ok()) return s;
  return p;
}

void OptimizerStateToProto(const OptimizerState& state, v1::AggregationState* out) {
  out->clear_momentum();
  for (int64_t m : state.momentum) out->add_momentum(m);
  std::string bytes(state.second_moment.size() * 16, '\0');
  for (size_t j = 0; j < state.second_moment.size(); ++j) {
    uint128 v = state.second_moment[j];
    for (size_t b = 0; b < 16; ++b) {
      bytes[j * 16 + b] = static_cast<char>(static_cast<uint8_t>(v & 0xff));
      v >>= 8;
    }
  }
  out->set_second_moment(std::move(bytes));
}

absl::StatusOr<OptimizerState> OptimizerStateFromProto(const v1::AggregationState& in,
                                                       size_t values) {
  OptimizerState state;
  if (in.momentum_size() != 0) {
    if (static_cast<size_t>(in.momentum_size()) != values) {
      return absl::DataLossError(absl::StrCat("stored momentum has ", in.momentum_size(),
                                              " values, the head has ", values));
    }
    state.momentum.assign(in.momentum().begin(), in.momentum().end());
  }
  const std::string& bytes = in.second_moment();
  if (!bytes.empty()) {
    if (bytes.size() != values * 16) {
      return absl::DataLossError(absl::StrCat("stored second moment has ", bytes.size(),
                                              " bytes, the head needs ", values * 16));
    }
    state.second_moment.resize(values);
    for (size_t j = 0; j < values; ++j) {
      uint128 v = 0;
      for (size_t b = 16; b-- > 0;) v = (v << 8) | static_cast<uint8_t>(bytes[j * 16 + b]);
      if (v >= kSecondMomentLimit) {
        return absl::DataLossError(
            absl::StrCat("stored second moment of value ", j, " is beyond any round's"));
      }
      state.second_moment[j] = v;
    }
  }
  return state;
}

namespace {

// Order statistics of one value's k integers: the r-th smallest (from 0)
// and the sum of the r smallest, by radix selection. A histogram of the
// values' offsets from their minimum, in at most 2^11 bins, picks the bin
// holding rank r; the sums of the bins below it add to the sum; the bin's
// values are kept and the step repeats on them with bins 2^11 times
// narrower, until few values (std::nth_element then) or one distinct value
// remain. Three passes over the k values for two ranks, where
// std::nth_element takes several per rank: measured 2x to 3x faster on a
// 10,000-update round. Exact: integer comparisons and sums only, and equal
// values are interchangeable, so the result is a function of the multiset.
// Requires external synchronization (scratch space).
class OrderStatistics {
 public:
  struct Rank {
    int64_t value = 0;
    int64_t sum_below = 0;  // |x| < 2^34 each, k < 2^23: no overflow
  };

  explicit OrderStatistics(size_t k) : k_(k), kept_(k), other_(k) {}

  // Ranks r1 and r2 at once: the first step's passes (the range, the
  // histogram, the split into the two bins) are shared.
  // REQUIRES: r1 < r2 < k; values holds k integers of magnitude below 2^34.
  std::pair<Rank, Rank> SelectTwo(const int64_t* values, size_t r1, size_t r2) {
    int64_t lo = values[0];
    int64_t hi = values[0];
    for (size_t i = 1; i < k_; ++i) {
      lo = std::min(lo, values[i]);
      hi = std::max(hi, values[i]);
    }
    Rank a;
    Rank b;
    if (lo == hi) {
      a = {lo, static_cast<int64_t>(r1) * lo};
      b = {lo, static_cast<int64_t>(r2) * lo};
      return {a, b};
    }
    const int shift = ShiftFor(lo, hi);
    Histogram(values, k_, lo, shift);
    const size_t bin1 = FindBin(&r1, &a.sum_below);
    const size_t bin2 = FindBin(&r2, &b.sum_below);
    // Split both bins' values out in one pass (they may be the same bin).
    size_t m1 = 0;
    size_t m2 = 0;
    int64_t* out1 = kept_.data();
    int64_t* out2 = other_.data();
    for (size_t i = 0; i < k_; ++i) {
      const int64_t x = values[i];
      const size_t d = static_cast<uint64_t>(x - lo) >> shift;
      if (d == bin1) out1[m1++] = x;
      if (d == bin2) out2[m2++] = x;
    }
    a = Refine(kept_.data(), m1, r1, a.sum_below);
    b = Refine(other_.data(), m2, r2, b.sum_below);
    return {a, b};
  }

 private:
  static constexpr int kDigitBits = 11;
  static constexpr size_t kSmall = 64;

  static int ShiftFor(int64_t lo, int64_t hi) {
    const int width = 64 - __builtin_clzll(static_cast<uint64_t>(hi - lo));
    return std::max(0, width - kDigitBits);
  }

  void Histogram(const int64_t* src, size_t count, int64_t lo, int shift) {
    counts_.fill(0);
    sums_.fill(0);
    for (size_t i = 0; i < count; ++i) {
      const size_t d = static_cast<uint64_t>(src[i] - lo) >> shift;
      counts_[d] += 1;
      sums_[d] += src[i];
    }
  }

  // The bin holding rank *r; *r becomes the rank within it, and the sums
  // of the bins below are added to *sum_below.
  size_t FindBin(size_t* r, int64_t* sum_below) const {
    size_t bin = 0;
    while (counts_[bin] <= *r) {
      *r -= counts_[bin];
      *sum_below += sums_[bin];
      ++bin;
    }
    return bin;
  }

  // Rank r of the `count` values at `set` (scratch of this object, which
  // it reorders), sum_below carried in.
  Rank Refine(int64_t* set, size_t count, size_t r, int64_t sum_below) {
    Rank out;
    out.sum_below = sum_below;
    int64_t lo = set[0];
    int64_t hi = set[0];
    for (size_t i = 1; i < count; ++i) {
      lo = std::min(lo, set[i]);
      hi = std::max(hi, set[i]);
    }
    while (count > kSmall && lo != hi) {
      const int shift = ShiftFor(lo, hi);
      Histogram(set, count, lo, shift);
      const size_t bin = FindBin(&r, &out.sum_below);
      // In place: the write index never passes the read index.
      size_t m = 0;
      int64_t next_lo = std::numeric_limits<int64_t>::max();
      int64_t next_hi = std::numeric_limits<int64_t>::min();
      for (size_t i = 0; i < count; ++i) {
        const int64_t x = set[i];
        if ((static_cast<uint64_t>(x - lo) >> shift) == bin) {
          set[m++] = x;
          next_lo = std::min(next_lo, x);
          next_hi = std::max(next_hi, x);
        }
      }
      count = m;
      lo = next_lo;
      hi = next_hi;
    }
    if (lo == hi) {  // all equal: which of them is rank r does not matter
      out.value = lo;
      out.sum_below += static_cast<int64_t>(r) * lo;
      return out;
    }
    std::nth_element(set, set + r, set + count);
    out.value = set[r];
    for (size_t i = 0; i < r; ++i) out.sum_below += set[i];
    return out;
  }

  size_t k_;
  std::vector<int64_t> kept_;
  std::vector<int64_t> other_;
  std::array<uint32_t, size_t{1} << kDigitBits> counts_{};
  std::array<int64_t, size_t{1} << kDigitBits> sums_{};
};

// The robust strategies' inputs, shared read-only by the workers below.
struct RobustInputs {
  size_t k = 0;
  size_t f = 0;
  size_t classes = 0;
  size_t weight_count = 0;
  std::vector<UpdateValues> sources;
  std::vector<uint32_t> scales;  // update i's row scale c at i * classes + c
  int128 lr = 0;
  bool median = false;
  size_t trimmed = 0;
  const Head* base = nullptr;
};

// Values [begin, end) of the robust rule into *next, which no other worker
// writes at those values. Each worker owns its scratch, so that workers
// share nothing writable; the scratch is sized by a stripe and a block,
// not by the head: a close's fresh pages cost more than its arithmetic
// (a page fault per 4 KiB, slow under virtualisation), so few are touched.
void RobustRange(const RobustInputs& in, size_t begin, size_t end, Head* next) {
  const size_t k = in.k;
  const size_t f = in.f;
  const size_t weight_count = in.weight_count;
  // Update i's int8 deltas for the stripe's values at i * kStripeValues:
  // gathered once per stripe, so that filling a block's columns reads them
  // at a constant stride instead of chasing each update's pointers once per
  // block (a round's updates lie scattered in the server's memory).
  std::vector<int8_t> stripe(kStripeValues * k);
  std::vector<int64_t> columns(kBlockValues * k);
  OrderStatistics order(k);
  std::array<size_t, kBlockValues> row{};
  for (size_t first = begin; first < end; first += kStripeValues) {
    const size_t stripe_end = std::min(first + kStripeValues, end);
    const size_t weights_end = std::min(stripe_end, std::max(first, weight_count));
    for (size_t i = 0; i < k; ++i) {
      const UpdateValues& src = in.sources[i];
      if (src.clipped != nullptr) continue;  // read from its row below
      int8_t* to = &stripe[i * kStripeValues];
      if (first < weights_end) to = std::copy(src.weights + first, src.weights + weights_end, to);
      const size_t bias_begin = std::max(first, weight_count);
      if (bias_begin < stripe_end) {
        std::copy(src.bias + (bias_begin - weight_count), src.bias + (stripe_end - weight_count),
                  to);
      }
    }
    for (size_t block = first; block < stripe_end; block += kBlockValues) {
      const size_t width = std::min(kBlockValues, stripe_end - block);
      for (size_t b = 0; b < width; ++b) {
        const size_t j = block + b;
        row[b] = j >= weight_count ? j - weight_count : j / f;
      }
      for (size_t i = 0; i < k; ++i) {
        const UpdateValues& src = in.sources[i];
        if (src.clipped != nullptr) {
          for (size_t b = 0; b < width; ++b) columns[b * k + i] = src.clipped[block + b];
          continue;
        }
        const uint32_t* s = in.scales.data() + i * in.classes;
        const int8_t* q = stripe.data() + i * kStripeValues + (block - first);
        for (size_t b = 0; b < width; ++b) {
          columns[b * k + i] = (static_cast<int64_t>(s[row[b]]) * q[b]) * 65536;
        }
      }
      for (size_t b = 0; b < width; ++b) {
        const int64_t* col = columns.data() + b * k;
        int128 num = 0;
        int128 den = 0;
        if (in.median) {
          int128 middle_sum = 0;
          if (k == 1) {
            middle_sum = 2 * static_cast<int128>(col[0]);
          } else if (k % 2 == 1) {
            // The middle value twice; the second rank is unused.
            const auto [a, unused] = order.SelectTwo(col, (k - 1) / 2, k - 1);
            middle_sum = 2 * static_cast<int128>(a.value);
          } else {
            const auto [a, upper] = order.SelectTwo(col, k / 2 - 1, k / 2);
            middle_sum = static_cast<int128>(a.value) + upper.value;
          }
          num = in.lr * middle_sum;
          den = int128{2} << 32;
        } else {
          const size_t t = in.trimmed;
          int128 sum = 0;
          if (t == 0) {
            for (size_t i = 0; i < k; ++i) sum += col[i];
          } else {
            // The middle's sum: the k - t smallest minus the t smallest.
            const auto [low, high] = order.SelectTwo(col, t, k - t);
            sum = static_cast<int128>(high.sum_below) - low.sum_below;
          }
          num = in.lr * sum;
          den = static_cast<int128>(k - 2 * t) << 32;
        }
        const size_t j = block + b;
        const Head& base = *in.base;
        int16_t& out = j < weight_count ? next->weights[j] : next->bias[j - weight_count];
        const int16_t g = j < weight_count ? base.weights[j] : base.bias[j - weight_count];
        out = SaturateInt16(g + DivideRoundHalfEven(num, den));
      }
    }
  }
}

// The robust strategies: per value, the sorted multiset of the k values
// x_ij (weight 1, norm clip applied), reduced by `kind`'s rule.
void RobustNext(const StrategyParams& params, const Head& base,
                const std::vector<const v1::Update*>& updates,
                const InfluenceDecision& decision, uint32_t trimmed, Head* next) {
  RobustInputs in;
  const size_t k = updates.size();
  const size_t f = base.features;
  const size_t classes = base.classes;
  const size_t weight_count = f * classes;
  const size_t values = weight_count + classes;
  in.k = k;
  in.f = f;
  in.classes = classes;
  in.weight_count = weight_count;
  in.lr = params.server_lr_q16;
  in.median = params.kind == StrategyKind::kMedian;
  in.trimmed = trimmed;
  in.base = &base;

  // Clipped updates' values, rounded once each as the header says; the
  // unclipped ones are computed while the columns are filled.
  std::vector<int64_t> clipped_values;
  in.sources.resize(k);
  in.scales.resize(k * classes);
  size_t clipped_count = 0;
  for (const Influence& influence : decision.influence) clipped_count += influence.clipped ? 1 : 0;
  clipped_values.resize(clipped_count * values);
  size_t next_clipped = 0;
  for (size_t i = 0; i < k; ++i) {
    const v1::Update& u = *updates[i];
    UpdateValues& src = in.sources[i];
    src.update = &u;
    src.weights = reinterpret_cast<const int8_t*>(u.weight_delta().data());
    src.bias = reinterpret_cast<const int8_t*>(u.bias_delta().data());
    for (size_t c = 0; c < classes; ++c) {
      in.scales[i * classes + c] = u.row_scales(static_cast<int>(c));
    }
    const Influence& influence = decision.influence[i];
    if (!influence.clipped) continue;
    int64_t* out = clipped_values.data() + next_clipped * values;
    ++next_clipped;
    for (size_t c = 0; c < classes; ++c) {
      // s * 2^16 * num < 2^10 * 2^16 * 2^23: the table's products fit.
      const int128 m =
          (static_cast<int128>(u.row_scales(static_cast<int>(c))) * influence.clip_num) << 16;
      const std::array<int128, 128> table = RoundedMultiples(m, influence.clip_den);
      auto value = [&](int8_t q) {
        const int128 v = q >= 0 ? table[static_cast<size_t>(q)] : -table[static_cast<size_t>(-q)];
        return static_cast<int64_t>(v);  // below 2^33: clipped below the unclipped value
      };
      for (size_t j = 0; j < f; ++j) out[c * f + j] = value(src.weights[c * f + j]);
      out[weight_count + c] = value(src.bias[c]);
    }
    src.clipped = out;
  }

  // Values are independent, so two workers over two halves (split at a
  // block) give the same head as one; a close has the machine to itself
  // (ingest for the round is over), and the selection is most of its time.
  const size_t blocks = (values + kBlockValues - 1) / kBlockValues;
  if (blocks < 2 || k * values < kParallelWork) {
    RobustRange(in, 0, values, next);
    return;
  }
  const size_t split = std::min(values, (blocks + 1) / 2 * kBlockValues);
  std::thread upper;
  try {
    upper = std::thread([&in, split, values, next] { RobustRange(in, split, values, next); });
  } catch (const std::system_error&) {
    // No thread to be had: the same values, one after the other.
    RobustRange(in, split, values, next);
  }
  RobustRange(in, 0, split, next);
  if (upper.joinable()) upper.join();
}

}  // namespace

absl::StatusOr<RoundAggregate> AggregateRound(const StrategyParams& params, const Head& base,
                                              const OptimizerState& base_state,
                                              const std::vector<const v1::Update*>& updates,
                                              const std::vector<int64_t>& noise) {
  if (updates.empty()) {
    return absl::FailedPreconditionError("no updates to aggregate");
  }
  if (absl::Status s = CheckParams(params); !s.ok()) return s;
  const size_t weight_count = static_cast<size_t>(base.features) * base.classes;
  const size_t values = weight_count + base.classes;
  if (base.weights.size() != weight_count || base.bias.size() != base.classes) {
    return absl::InvalidArgumentError("base head's values do not match its shape");
  }
  if (!noise.empty()) {
    if (!UsesNoise(params.kind)) {
      return absl::InvalidArgumentError(
          absl::StrCat("strategy ", std::string(StrategyName(params.kind)), " takes no noise"));
    }
    if (noise.size() != values) {
      return absl::InvalidArgumentError(
          absl::StrCat("noise has ", noise.size(), " values for a head of ", values));
    }
  }
  const bool has_state =
      params.kind == StrategyKind::kFedAvgM || params.kind == StrategyKind::kFedAdam;
  if (has_state) {
    if ((!base_state.momentum.empty() && base_state.momentum.size() != values) ||
        (!base_state.second_moment.empty() && base_state.second_moment.size() != values)) {
      return absl::InvalidArgumentError("base optimizer state does not match the head");
    }
    for (uint128 v : base_state.second_moment) {
      if (v >= kSecondMomentLimit) {
        return absl::InvalidArgumentError("base second moment is beyond any round's");
      }
    }
  }

  const bool robust =
      params.kind == StrategyKind::kTrimmedMean || params.kind == StrategyKind::kMedian;
  InfluenceBounds bounds = params.bounds;
  if (robust || params.uniform_weights) bounds.weight_median_multiple_q16 = 0;
  std::vector<UpdateMeasure> measures;
  measures.reserve(updates.size());
  for (const v1::Update* u : updates) {
    measures.push_back(MeasureUpdate(*u, base.features, base.classes));
  }
  InfluenceDecision decision = DecideInfluence(measures, bounds);
  if (robust || params.uniform_weights) {
    for (Influence& in : decision.influence) in.weight = 1;
  }

  RoundAggregate out;
  out.participants = static_cast<uint32_t>(updates.size());
  out.capped = decision.capped;
  out.clipped = decision.clipped;
  out.weight_cap = decision.weight_cap;
  out.has_norm_bound = decision.has_norm_bound;
  out.norm_bound = decision.norm_bound;
  for (const v1::Update* u : updates) out.samples += u->sample_count();

  if (robust) {
    uint128 losses = 0;
    for (const v1::Update* u : updates) losses += u->local_loss_q16();
    out.mean_loss_q16 = static_cast<uint32_t>(
        DivideRoundHalfEven(static_cast<int128>(losses), static_cast<int128>(updates.size())));
    if (params.kind == StrategyKind::kTrimmedMean) {
      out.trimmed = static_cast<uint32_t>(static_cast<uint64_t>(params.trim_fraction_ppm) *
                                          updates.size() / kPpm);
    }
    out.next = base;
    RobustNext(params, base, updates, decision, out.trimmed, &out.next);
    return out;
  }

  UpdateAccumulator acc(base.features, base.classes);
  for (size_t i = 0; i < updates.size(); ++i) acc.Add(*updates[i], decision.influence[i]);
  out.mean_loss_q16 = acc.mean_loss_q16();
  if (params.kind == StrategyKind::kFedAvg) {
    absl::StatusOr<Head> next = acc.Apply(base, params.server_lr_q16, noise);
    if (!next.ok()) return next.status();
    out.next = *std::move(next);
    return out;
  }

  // The server optimizers, per value, from fedavg's mean u_j.
  const int128 w = static_cast<int128>(acc.weight());
  const int128 beta1 = params.momentum_q16;
  const int128 beta2 = params.second_moment_decay_q16;
  const int128 lr = params.server_lr_q16;
  out.next = base;
  out.state.momentum.resize(values);
  if (params.kind == StrategyKind::kFedAdam) out.state.second_moment.resize(values);
  for (size_t j = 0; j < values; ++j) {
    const int128 total = noise.empty() ? acc.Total(j) : acc.Total(j) + noise[j];
    const int128 u = SaturateInt64(DivideRoundHalfEven(total, w));
    const int128 m = base_state.momentum.empty() ? 0 : base_state.momentum[j];
    int128 step_num = 0;
    int128 step_den = 0;
    if (params.kind == StrategyKind::kFedAvgM) {
      const int64_t next_m = SaturateInt64(DivideRoundHalfEven(beta1 * m, kOne_q16) + u);
      out.state.momentum[j] = next_m;
      step_num = lr * next_m;
      step_den = int128{1} << 32;
    } else {
      const int128 uc = std::clamp(u, -kAdamDeltaLimit, kAdamDeltaLimit);
      // A convex combination of int64 values: it fits in int64.
      const int64_t next_m = static_cast<int64_t>(
          DivideRoundHalfEven(beta1 * m + (kOne_q16 - beta1) * uc, kOne_q16));
      const int128 v = base_state.second_moment.empty()
                           ? 0
                           : static_cast<int128>(base_state.second_moment[j]);
      // v < 2^111 and uc^2 <= 2^110, each times < 2^16: below 2^127.
      const uint128 next_v = static_cast<uint128>(
          DivideRoundHalfEven(beta2 * v + (kOne_q16 - beta2) * (uc * uc), kOne_q16));
      out.state.momentum[j] = next_m;
      out.state.second_moment[j] = next_v;
      // eta < 2^32 and |m| <= 2^63: eta * m < 2^95. sqrt(v) < 2^56.
      step_num = static_cast<int128>(params.adam_step) * next_m;
      step_den = (static_cast<int128>(FloorSqrt(next_v)) + static_cast<int128>(params.adam_tau))
                 << 16;
    }
    const int128 delta = DivideRoundHalfEven(step_num, step_den);
    if (j < weight_count) {
      out.next.weights[j] = SaturateInt16(base.weights[j] + delta);
    } else {
      out.next.bias[j - weight_count] = SaturateInt16(base.bias[j - weight_count] + delta);
    }
  }
  return out;
}

}  // namespace tinyfed::server
