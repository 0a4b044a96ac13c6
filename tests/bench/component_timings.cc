#include "component_timings.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <ctime>
#include <memory>

#include "absl/strings/str_cat.h"
#include "aggregator.h"
#include "clock.h"
#include "device_auth.h"
#include "head.h"
#include "model_store.h"
#include "server_config.h"
#include "strategy.h"
#include "tinyfed_common/host_numerics.h"
#include "update_validation.h"

namespace tinyfed::bench {
namespace {

using SteadyClock = std::chrono::steady_clock;
constexpr int kRepeats = 5;

double NsBetween(SteadyClock::time_point a, SteadyClock::time_point b) {
  return std::chrono::duration<double, std::nano>(b - a).count();
}

// Stops the compiler from dropping work whose result is otherwise unused.
volatile uint64_t sink = 0;

}  // namespace

AggregationTiming TimeAggregation(const std::vector<v1::Update>& updates, uint32_t features,
                                  uint32_t classes) {
  AggregationTiming t;
  t.updates = updates.size();
  double add_ns = 1e300;
  double apply_ns = 1e300;
  const server::Head global = server::Head::Zeros(features, classes);
  for (int r = 0; r < kRepeats; ++r) {
    server::UpdateAccumulator accumulator(features, classes);
    const auto t0 = SteadyClock::now();
    for (const v1::Update& u : updates) accumulator.Add(u);
    const auto t1 = SteadyClock::now();
    absl::StatusOr<server::Head> next = accumulator.Apply(global, /*server_lr_q16=*/1u << 16);
    const auto t2 = SteadyClock::now();
    if (next.ok()) sink = sink + static_cast<uint16_t>(next->weights[0]);
    add_ns = std::min(add_ns, NsBetween(t0, t1));
    apply_ns = std::min(apply_ns, NsBetween(t1, t2));
  }
  t.add_ms = add_ns / 1e6;
  t.add_ns_per_update = updates.empty() ? 0 : add_ns / static_cast<double>(updates.size());
  t.apply_us = apply_ns / 1e3;
  return t;
}

StrategyTiming TimeStrategies(const std::vector<v1::Update>& updates, uint32_t features,
                              uint32_t classes) {
  StrategyTiming t;
  t.updates = updates.size();
  std::vector<const v1::Update*> set;
  set.reserve(updates.size());
  for (const v1::Update& u : updates) set.push_back(&u);
  const server::Head global = server::Head::Zeros(features, classes);
  for (server::StrategyKind kind :
       {server::StrategyKind::kFedAvg, server::StrategyKind::kTrimmedMean,
        server::StrategyKind::kMedian, server::StrategyKind::kFedAvgM,
        server::StrategyKind::kFedAdam}) {
    server::StrategyParams p;
    p.kind = kind;
    p.trim_fraction_ppm = 200000;
    p.momentum_q16 = 58982;
    p.second_moment_decay_q16 = 64880;
    p.adam_step = 41u << 16;
    p.adam_tau = 4u << 16;
    p.bounds = {3u << 16, 0, 2u << 16};
    double best_ns = 1e300;
    for (int r = 0; r < kRepeats; ++r) {
      const auto t0 = SteadyClock::now();
      absl::StatusOr<server::RoundAggregate> next =
          server::AggregateRound(p, global, {}, set, {});
      const auto t1 = SteadyClock::now();
      if (!next.ok()) {
        best_ns = -1e6;
        break;
      }
      sink = sink + static_cast<uint16_t>(next->next.weights[0]);
      best_ns = std::min(best_ns, NsBetween(t0, t1));
    }
    t.ms.push_back(best_ns / 1e6);
  }
  return t;
}

ValidationTiming TimeValidation(const std::vector<v1::Update>& updates, const v1::HeadSpec& spec) {
  ValidationTiming t;
  if (updates.empty()) return t;
  double validate_ns = 1e300;
  double crc_ns = 1e300;
  for (int r = 0; r < kRepeats; ++r) {
    const auto t0 = SteadyClock::now();
    for (const v1::Update& u : updates) sink = sink + server::ValidateUpdate(u, spec).ok();
    const auto t1 = SteadyClock::now();
    for (const v1::Update& u : updates) {
      const std::string& w = u.weight_delta();
      const std::string& b = u.bias_delta();
      // The same call as ValidateUpdate's (the host's table-driven CRC,
      // not the device's small-table one).
      sink = sink + Crc32Update(Crc32Update(0, w.data(), w.size()), b.data(), b.size());
    }
    const auto t2 = SteadyClock::now();
    validate_ns = std::min(validate_ns, NsBetween(t0, t1));
    crc_ns = std::min(crc_ns, NsBetween(t1, t2));
  }
  const double n = static_cast<double>(updates.size());
  t.validate_ns = validate_ns / n;
  t.crc_ns = crc_ns / n;
  return t;
}

absl::StatusOr<AuthTiming> TimeAuthentication(const Key256& fleet_key, server::ModelStore* store,
                                              const std::vector<std::string>& signed_updates) {
  AuthTiming t;
  t.requests = signed_updates.size();
  // Half the cache: filling it to the brim would empty it (device_auth.h).
  t.cached = std::min(signed_updates.size(), server::DeviceAuthenticator::kMaxCachedKeys / 2);
  if (signed_updates.empty()) return t;
  double first_ns = 1e300;
  double cached_ns = 1e300;
  for (int r = 0; r < kRepeats; ++r) {
    absl::StatusOr<std::unique_ptr<server::DeviceAuthenticator>> auth =
        server::DeviceAuthenticator::Create(fleet_key, store);
    if (!auth.ok()) return auth.status();
    const auto t0 = SteadyClock::now();
    for (const std::string& bytes : signed_updates) {
      t.refused += (*auth)->Authenticate(RequestType::kUpdate, bytes).ok() ? 0 : 1;
    }
    const auto t1 = SteadyClock::now();
    first_ns = std::min(first_ns, NsBetween(t0, t1));
  }
  absl::StatusOr<std::unique_ptr<server::DeviceAuthenticator>> auth =
      server::DeviceAuthenticator::Create(fleet_key, store);
  if (!auth.ok()) return auth.status();
  for (size_t i = 0; i < t.cached; ++i) {
    t.refused += (*auth)->Authenticate(RequestType::kUpdate, signed_updates[i]).ok() ? 0 : 1;
  }
  for (int r = 0; r < kRepeats; ++r) {
    const auto t0 = SteadyClock::now();
    for (size_t i = 0; i < t.cached; ++i) {
      t.refused += (*auth)->Authenticate(RequestType::kUpdate, signed_updates[i]).ok() ? 0 : 1;
    }
    const auto t1 = SteadyClock::now();
    cached_ns = std::min(cached_ns, NsBetween(t0, t1));
  }
  t.first_ns = first_ns / static_cast<double>(t.requests);
  t.cached_ns = cached_ns / static_cast<double>(t.cached);
  return t;
}

absl::StatusOr<InProcessResult> TimeStoreIngest(const v1::ServerConfig& config,
                                                const std::string& db_path,
                                                const std::vector<v1::Update>& updates,
                                                int inflight) {
  absl::StatusOr<std::unique_ptr<server::ModelStore>> store = server::OpenSqliteModelStore(db_path);
  if (!store.ok()) return store.status();
  server::SystemClock clock;
  const int64_t now = clock.NowMs();
  absl::StatusOr<v1::ModelVersion> initial = server::InitialModel(config, now);
  if (!initial.ok()) return initial.status();
  if (absl::Status s = (*store)->PutInitialVersion(*initial); !s.ok()) return s;
  server::RoundRecord round;
  round.round = 1;
  round.base_version = 1;
  round.opened_ms = now;
  round.deadline_ms = now + 3'600'000;
  if (absl::Status s = (*store)->OpenRound(round); !s.ok()) return s;

  std::vector<server::StoredUpdate> records;
  records.reserve(updates.size());
  for (const v1::Update& u : updates) {
    records.push_back(server::StoredUpdate{1, u.device_id(), u.SerializeAsString(), now});
  }
  return RunInProcess(records.size(), inflight, [&](size_t i, Completion done) {
    (*store)->AppendUpdate(std::move(records[i]),
                           [done = std::move(done)](absl::Status s) { done(s); });
  });
}

absl::StatusOr<DiskFlushTiming> TimeDiskFlush(const std::string& dir, int count) {
  const std::string path = absl::StrCat(dir, "/tinyfed-flush-probe-", getpid());
  const int fd = open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (fd < 0) return absl::UnavailableError(absl::StrCat("cannot create ", path));
  const std::string block(4096, 'x');
  auto thread_cpu = [] {
    timespec t{};
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t);
    return static_cast<double>(t.tv_sec) + static_cast<double>(t.tv_nsec) / 1e9;
  };
  bool ok = true;
  const double cpu_start = thread_cpu();
  const auto wall_start = std::chrono::steady_clock::now();
  for (int i = 0; i < count && ok; ++i) {
    ok = pwrite(fd, block.data(), block.size(), 0) == static_cast<ssize_t>(block.size()) &&
         fdatasync(fd) == 0;
  }
  const double wall = std::chrono::duration<double>(std::chrono::steady_clock::now() - wall_start).count();
  const double cpu = thread_cpu() - cpu_start;
  close(fd);
  unlink(path.c_str());
  if (!ok) return absl::UnavailableError(absl::StrCat("writing or syncing ", path, " failed"));
  DiskFlushTiming t;
  t.cpu_us = cpu * 1e6 / count;
  t.wall_ms = wall * 1e3 / count;
  return t;
}

}  // namespace tinyfed::bench
