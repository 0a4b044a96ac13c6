// Fuzzes the round manager (server/round_manager.cc) with requests as an
// authenticated device can send them: CheckIn and SubmitUpdate with the
// bodies of authentic envelopes (server_envelope_fuzz.cc fuzzes the
// envelope; a device holding a valid key signs whatever body it likes),
// on a RoundManager over a SQLite store in a temporary directory.
// Rounds fill (K = 3) and close, so accepted updates go through the
// aggregator and the commit, with whatever deltas, scales and sample
// counts the fuzzer found; the manager lives across inputs, as a server
// lives across requests.
//
// Input: byte 0 picks the request (bit 0: CheckInRequest or Update) and
// whether the round's deadline then passes (bit 1: the clock jumps past it
// and Tick() runs, committing with >= M = 1 update or abandoning). The rest
// is the body's bytes. An Update with round 0 (no round has that
// number) is sent as its device would: the harness checks the device in
// and fills in the round, task token and base version of its task and a
// correct checksum, so mutations of its deltas, scales, counts and ids
// reach the aggregator rather than stop at the first check.
//
// Beyond "no crash, no undefined behaviour, no leak": a check-in's answer
// is exactly one of task, retry and model (coordinator.proto); a model
// goes only to a check-in with a ServingState that did not defer and
// serves another version, and is the head alone (no lineage, metrics,
// evaluations or rollout); an evaluation-only task goes only to a
// check-in with a ServingState and has no plan or scheme; a task's or a
// model's head loads; an update that ValidateUpdate rejects is refused; a refused update changes neither the
// accepted count nor the model; every committed model loads as a head.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <future>
#include <memory>
#include <string>

#include <grpcpp/grpcpp.h>
#include <grpcpp/impl/codegen/proto_utils.h>

#include "google/protobuf/stubs/logging.h"

#include "clock.h"
#include "spdlog/spdlog.h"
#include "head.h"
#include "model_store.h"
#include "round_manager.h"
#include "server_config.h"
#include "tinyfed/v1/coordinator.pb.h"
#include "update_validation.h"
#include "tinyfed_common/crc32.h"

namespace {

namespace server = tinyfed::server;
namespace v1 = tinyfed::v1;

void Require(bool condition) {
  if (!condition) std::abort();  // libFuzzer keeps the input that got here
}

// One server: its store in a directory of its own, removed at exit.
struct Server {
  std::filesystem::path dir;
  server::FakeClock clock;
  v1::ServerConfig config;
  v1::HeadSpec spec;
  std::unique_ptr<server::ModelStore> store;
  std::unique_ptr<server::RoundManager> manager;

  Server() {
    std::string pattern = (std::filesystem::temp_directory_path() / "tinyfed-fuzz-XXXXXX").string();
    Require(mkdtemp(pattern.data()) != nullptr);
    dir = pattern;
    config.mutable_head()->set_feature_count(4);
    config.mutable_head()->set_class_count(3);
    config.mutable_policy()->set_target_updates(3);
    config.mutable_policy()->set_min_updates(1);
    config.mutable_policy()->set_round_deadline_ms(60000);
    config.set_db((dir / "fuzz.db").string());
    server::ApplyDefaults(&config);
    Require(server::ValidateServerConfig(config).ok());
    spec = server::HeadSpecFromConfig(config);
    absl::StatusOr<v1::ModelVersion> initial = server::InitialModel(config, clock.NowMs());
    Require(initial.ok());
    auto opened = server::OpenSqliteModelStore(config.db());
    Require(opened.ok());
    store = std::move(*opened);
    auto created = server::RoundManager::Create(config, *initial, store.get(), &clock);
    Require(created.ok());
    manager = std::move(*created);
  }
  ~Server() {
    manager.reset();
    store.reset();
    std::error_code ignored;
    std::filesystem::remove_all(dir, ignored);
  }
};

template <typename Message>
bool Parse(const uint8_t* data, size_t size, Message* message) {
  grpc::Slice slice(data, size);
  grpc::ByteBuffer request(&slice, 1);
  return grpc::SerializationTraits<Message>::Deserialize(&request, message).ok();
}

absl::StatusOr<v1::CheckInResponse> CheckIn(server::RoundManager& m,
                                            const v1::CheckInRequest& request) {
  std::promise<absl::StatusOr<v1::CheckInResponse>> answer;
  m.CheckIn(request, [&answer](absl::StatusOr<v1::CheckInResponse> r) { answer.set_value(r); });
  return answer.get_future().get();
}

absl::StatusOr<v1::UpdateAck> Submit(server::RoundManager& m, const v1::Update& update) {
  std::promise<absl::StatusOr<v1::UpdateAck>> answer;
  m.SubmitUpdate(update, [&answer](absl::StatusOr<v1::UpdateAck> r) { answer.set_value(r); });
  return answer.get_future().get();
}

// Fills in what the device's task gives it; false when it gets no task.
bool AsItsDeviceWouldSend(Server& s, v1::Update* update) {
  v1::CheckInRequest request;
  request.set_device_id(update->device_id());
  request.set_model_version(0);
  request.mutable_capabilities()->set_max_features(128);
  request.mutable_capabilities()->set_max_classes(32);
  request.mutable_capabilities()->set_max_batch_size(64);
  request.mutable_capabilities()->set_sample_count(update->sample_count());
  absl::StatusOr<v1::CheckInResponse> response = CheckIn(*s.manager, request);
  if (!response.ok() || !response->has_task()) return false;
  update->set_round(response->task().round());
  update->set_task_token(response->task().task_token());
  update->set_base_version(response->task().model().version());
  const std::string& w = update->weight_delta();
  const std::string& b = update->bias_delta();
  uint32_t crc = tinyfed_crc32_update(TINYFED_CRC32_INIT,
                                      reinterpret_cast<const uint8_t*>(w.data()), w.size());
  crc = tinyfed_crc32_update(crc, reinterpret_cast<const uint8_t*>(b.data()), b.size());
  update->set_checksum(crc);
  return true;
}

// The check-in's answer against coordinator.proto's CheckInResponse and
// round.proto's RoundTask.evaluate_only.
void RequireAnswerKeepsContract(const v1::CheckInRequest& request,
                                const v1::CheckInResponse& response) {
  Require(static_cast<int>(response.has_task()) + static_cast<int>(response.has_retry()) +
              static_cast<int>(response.has_model()) ==
          1);
  if (response.has_model()) {
    const v1::ModelVersion& model = response.model();
    Require(request.has_serving() && !request.serving().defer_model());
    Require(model.version() != request.serving().model_version());
    Require(model.version() >= 1);
    Require(server::LoadHead(model).ok());
    Require(model.parent_version() == 0 && model.round() == 0 && !model.has_metrics() &&
            model.created_unix_ms() == 0 && model.restored_from() == 0 &&
            !model.has_fleet_evaluation() && !model.has_rollout());
  }
  if (response.has_task()) {
    const v1::RoundTask& task = response.task();
    Require(server::LoadHead(task.model()).ok());
    if (task.evaluate_only()) {
      Require(request.has_serving());
      Require(!task.has_plan() && !task.has_quantization());
    } else {
      Require(task.has_plan() && task.has_quantization());
    }
  }
}

void RequireLatestModelLoads(Server& s) {
  absl::StatusOr<v1::ModelVersion> model = s.manager->GetModel(0);
  Require(model.ok());
  Require(server::LoadHead(*model).ok());
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  // protobuf logs every string field that is not UTF-8, and the manager
  // every rejection (rate-limited); the fuzzer makes millions, and the
  // logs would drown its own output.
  google::protobuf::SetLogHandler(nullptr);
  spdlog::set_level(spdlog::level::off);
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static Server* const s = new Server();  // lives across inputs, freed at exit
  static const int registered = std::atexit([] { delete s; });
  (void)registered;
  if (size < 1) return 0;
  const bool is_update = (data[0] & 1u) != 0;
  const bool deadline_passes = (data[0] & 2u) != 0;

  const server::RoundSnapshot before = s->manager->Snapshot();
  if (!is_update) {
    v1::CheckInRequest request;
    if (Parse(data + 1, size - 1, &request)) {
      absl::StatusOr<v1::CheckInResponse> response = CheckIn(*s->manager, request);
      if (response.ok()) RequireAnswerKeepsContract(request, *response);
    }
  } else {
    v1::Update update;
    if (!Parse(data + 1, size - 1, &update)) return 0;
    if (update.round() == 0 && !AsItsDeviceWouldSend(*s, &update)) return 0;
    const bool valid = server::ValidateUpdate(update, s->spec).ok();
    const server::RoundSnapshot submitted = s->manager->Snapshot();
    absl::StatusOr<v1::UpdateAck> ack = Submit(*s->manager, update);
    s->manager->WaitIdle();
    const server::RoundSnapshot after = s->manager->Snapshot();
    if (!valid) Require(!ack.ok());
    if (!ack.ok()) {
      Require(after.round == submitted.round && after.accepted == submitted.accepted &&
              after.latest_version == submitted.latest_version);
    }
  }
  if (deadline_passes) {
    s->clock.AdvanceMs(s->config.policy().round_deadline_ms() + 1);
    s->manager->Tick();
    s->manager->WaitIdle();
  }
  if (s->manager->Snapshot().latest_version != before.latest_version) {
    RequireLatestModelLoads(*s);
  }
  return 0;
}
