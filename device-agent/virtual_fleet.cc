#include "virtual_fleet.h"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <mutex>
#include <random>
#include <thread>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "generic_call.h"
#include "head.h"
#include "tinyfed/tinyfed.h"
#include "tinyfed_common/crc32.h"
#include "tinyfed_common/host_numerics.h"

namespace tinyfed::agent {
namespace {

// Replaces a signed update with the scaled attack (see the header): the
// same task, base version and ids, the largest legal everything else,
// signed again with the attacker's own key.
absl::Status RewriteAsScaledAttack(std::vector<uint8_t>* bytes, const Key256& device_key,
                                   uint64_t seed) {
  v1::SignedRequest envelope;
  v1::Update u;
  if (!envelope.ParseFromArray(bytes->data(), static_cast<int>(bytes->size())) ||
      !u.ParseFromString(envelope.body())) {
    return absl::InternalError("an attacker could not read its own update");
  }
  std::mt19937_64 rng(seed);
  auto largest = [&](std::string* values) {
    for (char& ch : *values) ch = static_cast<char>((rng() & 1) != 0 ? 127 : -127);
  };
  largest(u.mutable_weight_delta());
  largest(u.mutable_bias_delta());
  for (int c = 0; c < u.row_scales_size(); ++c) u.set_row_scales(c, 517);
  u.set_sample_count(kAttackSampleCount);
  uint32_t crc = tinyfed_crc32_update(
      0, reinterpret_cast<const uint8_t*>(u.weight_delta().data()), u.weight_delta().size());
  crc = tinyfed_crc32_update(crc, reinterpret_cast<const uint8_t*>(u.bias_delta().data()),
                             u.bias_delta().size());
  u.set_checksum(crc);
  envelope.set_body(u.SerializeAsString());
  const Tag256 tag = RequestTag(device_key, RequestType::kUpdate, envelope.body());
  envelope.set_tag(std::string(tag.begin(), tag.end()));
  bytes->resize(envelope.ByteSizeLong());
  if (!envelope.SerializeToArray(bytes->data(), static_cast<int>(bytes->size()))) {
    return absl::InternalError("an attacker could not encode its update");
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<Evaluation> EvaluateModel(const v1::ModelVersion& model,
                                         const Eigen::MatrixXd& features,
                                         const std::vector<uint8_t>& labels) {
  absl::StatusOr<server::Head> head = server::LoadHead(model);
  if (!head.ok()) return head.status();
  const uint32_t frac = model.spec().weight_frac_bits();
  Eigen::MatrixXd w(head->classes, head->features);
  Eigen::VectorXd b(head->classes);
  for (uint32_t c = 0; c < head->classes; ++c) {
    for (uint32_t f = 0; f < head->features; ++f) {
      w(c, f) = FromMaster(head->weights[c * head->features + f], frac);
    }
    b(c) = FromMaster(head->bias[c], frac);
  }
  if (features.cols() != static_cast<Eigen::Index>(head->features) || labels.empty()) {
    return absl::InvalidArgumentError("test data does not match the model's head");
  }
  Evaluation e;
  size_t correct = 0;
  double loss = 0;
  for (Eigen::Index i = 0; i < features.rows(); ++i) {
    const Eigen::VectorXd z = w * features.row(i).transpose() + b;
    Eigen::Index best = 0;
    for (Eigen::Index c = 1; c < z.size(); ++c) {
      if (z(c) > z(best)) best = c;
    }
    correct += best == labels[static_cast<size_t>(i)];
    const double zmax = z.maxCoeff();
    loss += std::log((z.array() - zmax).exp().sum()) + zmax - z(labels[static_cast<size_t>(i)]);
  }
  e.accuracy = static_cast<double>(correct) / static_cast<double>(labels.size());
  e.loss = loss / static_cast<double>(labels.size());
  return e;
}

VirtualFleet::VirtualFleet(const QuantizedSplit* data,
                           const std::vector<std::vector<uint32_t>>* shards,
                           std::shared_ptr<grpc::Channel> channel, FleetOptions options)
    : data_(data),
      shards_(shards),
      channel_(std::move(channel)),
      generic_(std::make_unique<grpc::GenericStub>(channel_)),
      stub_(v1::Coordinator::NewStub(channel_)),
      options_(options) {}

absl::StatusOr<v1::ModelVersion> VirtualFleet::LatestModel() {
  grpc::ClientContext context;
  context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(30));
  v1::GetModelRequest request;
  v1::ModelVersion model;
  grpc::Status s = stub_->GetModel(&context, request, &model);
  if (!s.ok()) {
    return absl::UnavailableError(absl::StrCat("GetModel: ", DescribeGrpcStatus(s)));
  }
  return model;
}

absl::StatusOr<RoundResult> VirtualFleet::RunRound(
    const std::function<void(const RoundProgress&)>& progress) {
  const auto start = std::chrono::steady_clock::now();
  absl::StatusOr<v1::ModelVersion> before = LatestModel();
  if (!before.ok()) return before.status();

  const size_t devices = shards_->size();
  std::vector<uint32_t> order(devices);
  for (size_t i = 0; i < devices; ++i) order[i] = static_cast<uint32_t>(i);
  std::mt19937_64 rng(options_.seed * 1000003u + rounds_run_++);
  std::shuffle(order.begin(), order.end(), rng);

  const uint32_t features = static_cast<uint32_t>(data_->features);
  const uint32_t classes = static_cast<uint32_t>(data_->classes);
  const size_t arena_size = tinyfed_arena_size(features, classes, TINYFED_MAX_BATCH);
  const size_t buffer_size = std::max<size_t>(TINYFED_TASK_MAX_SIZE(features, classes),
                                              TINYFED_UPDATE_MAX_SIZE(features, classes));
  uint64_t up = 0, down = 0;
  RoundProgress counts;
  std::mutex mu;
  auto report = [&](auto update) {
    std::lock_guard<std::mutex> lock(mu);
    update(counts);
    if (progress) progress(counts);
  };

  // 1. Check-ins, one at a time in the shuffled order, until the server has
  //    handed out the round's tasks. Sequential check-ins (and submissions
  //    below) make the set of participants depend on the seed alone, not on
  //    thread timing, so a run is reproducible; they are cheap next to
  //    training, which runs in parallel.
  struct Active {
    uint32_t device = 0;
    bool attacker = false;
    std::string id;
    Key256 key;  // the SDK reads it through cfg.device_key while the context lives
    std::vector<uint8_t> arena;
    tinyfed_context_t ctx{};
    std::vector<uint8_t> update;
    std::string error;
  };
  std::vector<std::unique_ptr<Active>> active;
  uint32_t task_round = 0;
  std::vector<uint8_t> buffer(buffer_size);
  for (uint32_t d : order) {
    auto a = std::make_unique<Active>();
    a->device = d;
    a->attacker = d < options_.attackers.size() && options_.attackers[d];
    a->id = absl::StrFormat("sim-%06u", d);
    absl::StatusOr<Key256> key = DeriveDeviceKey(options_.fleet_key, a->id);
    if (!key.ok()) return key.status();
    a->key = *key;
    a->arena.resize(arena_size);
    tinyfed_config_t cfg{a->id.c_str(), features, classes, TINYFED_MAX_BATCH,
                         a->key.bytes().data()};
    if (tinyfed_init(&a->ctx, &cfg, a->arena.data(), a->arena.size()) != TINYFED_OK) {
      return absl::InternalError(absl::StrCat("SDK init: ", tinyfed_last_error_message(&a->ctx)));
    }
    size_t len = 0;
    const uint32_t samples =
        a->attacker ? kAttackSampleCount : static_cast<uint32_t>((*shards_)[d].size());
    if (tinyfed_checkin_encode(&a->ctx, samples, buffer.data(), buffer.size(), &len) !=
        TINYFED_OK) {
      return absl::InternalError(absl::StrCat("check-in: ", tinyfed_last_error_message(&a->ctx)));
    }
    std::string reply;
    up += len;
    grpc::Status s = CallWithBytes(*generic_, kCheckInMethod, buffer.data(), len, &reply);
    if (s.error_code() == grpc::StatusCode::UNAUTHENTICATED) {
      return absl::UnauthenticatedError(absl::StrCat(
          "the server refuses ", a->id, "'s key (", DescribeGrpcStatus(s),
          "): the devices' fleet key is not the server's"));
    }
    if (!s.ok()) {
      return absl::UnavailableError(absl::StrCat("CheckIn: ", DescribeGrpcStatus(s)));
    }
    down += reply.size();
    tinyfed_checkin_result_t result{};
    const tinyfed_status_t st = tinyfed_checkin_response_decode(
        &a->ctx, reinterpret_cast<const uint8_t*>(reply.data()), reply.size(), &result);
    report([](RoundProgress& c) { ++c.checked_in; });
    if (st != TINYFED_OK) {
      return absl::FailedPreconditionError(
          absl::StrCat("a device could not load the server's task: ", tinyfed_status_name(st),
                       " (", tinyfed_last_error_message(&a->ctx), ")"));
    }
    if (result.kind == TINYFED_CHECKIN_RETRY) break;  // this round's tasks are handed out
    tinyfed_task_info_t info;
    if (tinyfed_task_info(&a->ctx, &info) == TINYFED_OK) task_round = info.round;
    active.push_back(std::move(a));
  }

  // 2. Training, in parallel on `concurrency` workers; each device gets its
  //    shard copied contiguously, as firmware would hold it.
  std::atomic<size_t> next{0};
  auto train = [&] {
    std::vector<int8_t> x;
    std::vector<uint8_t> y;
    for (size_t k = next++; k < active.size(); k = next++) {
      Active& a = *active[k];
      const std::vector<uint32_t>& shard = (*shards_)[a.device];
      x.resize(shard.size() * features);
      y.resize(shard.size());
      for (size_t i = 0; i < shard.size(); ++i) {
        std::copy_n(data_->train_x.data() + static_cast<size_t>(shard[i]) * features, features,
                    x.data() + i * features);
        y[i] = data_->train_y[shard[i]];
      }
      tinyfed_dataset_t local{x.data(), y.data(), static_cast<uint32_t>(shard.size()), features};
      a.update.resize(buffer_size);
      size_t len = 0;
      // The task's model on the device's own samples, before training: the
      // update carries it (federated evaluation).
      tinyfed_evaluation_t evaluation{};
      if (tinyfed_evaluate(&a.ctx, &local, &evaluation) != TINYFED_OK ||
          tinyfed_train(&a.ctx, &local) != TINYFED_OK ||
          tinyfed_update_encode(&a.ctx, a.update.data(), a.update.size(), &len) != TINYFED_OK) {
        a.error = tinyfed_last_error_message(&a.ctx);
        continue;
      }
      a.update.resize(len);
      if (a.attacker) {
        const uint64_t seed = (options_.seed * 1000003u + rounds_run_) * 1000003u + a.device;
        if (absl::Status s = RewriteAsScaledAttack(&a.update, a.key, seed); !s.ok()) {
          a.error = std::string(s.message());
          continue;
        }
      }
      report([](RoundProgress& c) { ++c.trained; });
    }
  };
  std::vector<std::thread> workers;
  const uint32_t n = std::max<uint32_t>(1, options_.concurrency);
  for (uint32_t i = 0; i < n; ++i) workers.emplace_back(train);
  for (std::thread& t : workers) t.join();

  // 3. Submissions in the same order. Over-selected devices beyond the
  //    round's target are refused (FAILED_PRECONDITION), as on a real fleet.
  for (const auto& a : active) {
    if (!a->error.empty()) {
      return absl::InternalError(absl::StrCat(a->id, " could not train: ", a->error));
    }
    std::string reply;
    up += a->update.size();
    grpc::Status s = CallWithBytes(*generic_, kSubmitUpdateMethod, a->update.data(), a->update.size(), &reply);
    if (s.ok()) {
      down += reply.size();
      report([](RoundProgress& c) { ++c.accepted; });
    } else if (s.error_code() == grpc::StatusCode::UNAVAILABLE) {
      return absl::UnavailableError(absl::StrCat("SubmitUpdate: ", DescribeGrpcStatus(s)));
    } else {
      report([](RoundProgress& c) { ++c.rejected; });
    }
  }

  // Wait for the server to commit a version (or to give up on the round).
  RoundResult result;
  result.round = task_round;
  v1::ModelVersion after = *before;
  const auto deadline = std::chrono::steady_clock::now() +
                        std::chrono::milliseconds(static_cast<int64_t>(options_.round_timeout_s * 1000));
  while (std::chrono::steady_clock::now() < deadline) {
    absl::StatusOr<v1::ModelVersion> latest = LatestModel();
    if (!latest.ok()) return latest.status();
    after = *latest;
    if (after.version() > before->version()) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  result.committed = after.version() > before->version();
  result.model_version = after.version();
  result.participants = result.committed ? after.metrics().participants() : 0;
  absl::StatusOr<Evaluation> eval = EvaluateModel(after, data_->test_real, data_->test_y);
  if (!eval.ok()) return eval.status();
  result.accuracy = eval->accuracy;
  result.loss = eval->loss;
  result.uplink_bytes = up;
  result.downlink_bytes = down;
  result.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  return result;
}

}  // namespace tinyfed::agent
