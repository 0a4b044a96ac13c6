#include "server_under_test.h"

#include <utility>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/synchronization/blocking_counter.h"
#include "grpc_port.h"
#include "server_config.h"
#include "server_test_support.h"

namespace tinyfed::bench {

absl::StatusOr<std::unique_ptr<ServerUnderTest>> ServerUnderTest::Start(
    const v1::ServerConfig& config, const Key256& fleet_key, Baseline baseline) {
  std::unique_ptr<ServerUnderTest> s(new ServerUnderTest());
  absl::StatusOr<std::unique_ptr<server::ModelStore>> store =
      server::OpenSqliteModelStore(config.db());
  if (!store.ok()) return store.status();
  s->store_ = std::move(*store);
  absl::StatusOr<v1::ModelVersion> initial = server::InitialModel(config, s->clock_.NowMs());
  if (!initial.ok()) return initial.status();
  absl::StatusOr<std::unique_ptr<server::RoundManager>> manager =
      server::RoundManager::Create(config, *initial, s->store_.get(), &s->clock_, &s->metrics_);
  if (!manager.ok()) return manager.status();
  s->manager_ = std::move(*manager);
  absl::StatusOr<std::unique_ptr<server::DeviceAuthenticator>> auth =
      server::DeviceAuthenticator::Create(fleet_key, s->store_.get());
  if (!auth.ok()) return auth.status();
  s->auth_ = std::move(*auth);
  const server::RequestLimits limits = server::RequestLimitsFromConfig(config);
  s->service_ = std::make_unique<server::CoordinatorService>(s->manager_.get(), s->auth_.get(),
                                                             limits, &s->metrics_);
  s->baseline_service_ =
      baseline == Baseline::kNoMetrics
          ? std::make_unique<server::CoordinatorService>(s->manager_.get(), s->auth_.get(),
                                                         limits, nullptr)
          : std::make_unique<server::CoordinatorService>(s->manager_.get(), nullptr, limits,
                                                         &s->metrics_);
  // The product's own port set-up, so the benchmark pays its edge limits.
  v1::ServerConfig loopback = config;
  loopback.set_listen("127.0.0.1:0");
  absl::StatusOr<server::StartedGrpcServer> started =
      server::StartGrpcServer(loopback, grpc::InsecureServerCredentials(), s->service_.get());
  if (!started.ok()) return started.status();
  s->server_ = std::move(started->server);
  s->port_ = started->port;
  started = server::StartGrpcServer(loopback, grpc::InsecureServerCredentials(),
                                    s->baseline_service_.get());
  if (!started.ok()) return started.status();
  s->baseline_server_ = std::move(started->server);
  s->baseline_port_ = started->port;
  return s;
}

ServerUnderTest::~ServerUnderTest() {
  if (server_) server_->Shutdown();
  if (baseline_server_) baseline_server_->Shutdown();
  manager_.reset();  // waits for a round being closed
  store_.reset();    // drains the writer
}

std::string DeviceId(uint32_t i) { return absl::StrFormat("bench-%06u", i); }

absl::StatusOr<std::vector<v1::Update>> CheckInFleet(server::RoundManager& manager, uint32_t count,
                                                     std::mt19937& rng) {
  std::vector<absl::StatusOr<v1::CheckInResponse>> responses(count);
  absl::BlockingCounter pending(static_cast<int>(count));
  for (uint32_t i = 0; i < count; ++i) {
    v1::CheckInRequest request;
    request.set_device_id(DeviceId(i));
    manager.CheckIn(request, [&responses, &pending, i](absl::StatusOr<v1::CheckInResponse> r) {
      responses[i] = std::move(r);
      pending.DecrementCount();
    });
  }
  pending.Wait();
  std::uniform_int_distribution<uint32_t> samples(1, 200);
  std::vector<v1::Update> updates;
  updates.reserve(count);
  for (uint32_t i = 0; i < count; ++i) {
    if (!responses[i].ok()) return responses[i].status();
    if (!responses[i]->has_task()) {
      return absl::FailedPreconditionError(
          absl::StrCat(DeviceId(i), " got no task: ", responses[i]->ShortDebugString()));
    }
    const v1::RoundTask& task = responses[i]->task();
    updates.push_back(server::testing::MakeUpdate(task.model().spec(), task.round(), DeviceId(i),
                                                  task.task_token(), task.model().version(),
                                                  samples(rng), rng));
  }
  return updates;
}

std::vector<grpc::ByteBuffer> SignedRequests(const Key256& fleet_key,
                                             const std::vector<v1::Update>& updates) {
  std::vector<grpc::ByteBuffer> requests;
  requests.reserve(updates.size());
  for (const v1::Update& u : updates) {
    grpc::Slice slice(server::testing::Sign(fleet_key, u).SerializeAsString());
    requests.emplace_back(&slice, 1);
  }
  return requests;
}

}  // namespace tinyfed::bench
