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

void Rewrite(AttackKind kind, v1::Update* u, uint64_t seed) {
  std::mt19937_64 rng(seed);
  auto each_value = [&](auto change) {
    for (std::string* values : {u->mutable_weight_delta(), u->mutable_bias_delta()}) {
      for (char& ch : *values) ch = static_cast<char>(change(static_cast<int8_t>(ch)));
    }
  };
  switch (kind) {
    case AttackKind::kScaled:
      each_value([&](int8_t) { return (rng() & 1) != 0 ? 127 : -127; });
      for (int c = 0; c < u->row_scales_size(); ++c) u->set_row_scales(c, kLargestRowScale);
      u->set_sample_count(kAttackSampleCount);
      break;
    case AttackKind::kSignFlip:
      // A correct device never sends -128 (validated by the server), so
      // the negation stays within int8.
      each_value([](int8_t q) { return static_cast<int8_t>(-q); });
      for (int c = 0; c < u->row_scales_size(); ++c) {
        u->set_row_scales(c, std::min(kLargestRowScale, kSignFlipGain * u->row_scales(c)));
      }
      break;
    case AttackKind::kRandom: {
      std::uniform_int_distribution<int> value(-127, 127);
      each_value([&](int8_t) { return static_cast<int8_t>(value(rng)); });
      for (int c = 0; c < u->row_scales_size(); ++c) u->set_row_scales(c, kLargestRowScale);
      break;
    }
    case AttackKind::kNone:
    case AttackKind::kLabelFlip:
      break;
  }
}

}  // namespace

std::optional<AttackKind> ParseAttack(std::string_view name) {
  if (name == "none") return AttackKind::kNone;
  if (name == "scaled") return AttackKind::kScaled;
  if (name == "sign-flip") return AttackKind::kSignFlip;
  if (name == "random") return AttackKind::kRandom;
  if (name == "label-flip") return AttackKind::kLabelFlip;
  return std::nullopt;
}

absl::Status RewriteUpdateAsAttack(AttackKind kind, std::vector<uint8_t>* bytes,
                                   const Key256& device_key, uint64_t seed) {
  v1::SignedRequest envelope;
  v1::Update u;
  if (!envelope.ParseFromArray(bytes->data(), static_cast<int>(bytes->size())) ||
      !u.ParseFromString(envelope.body())) {
    return absl::InternalError("an attacker could not read its own update");
  }
  if (kind == AttackKind::kNone || kind == AttackKind::kLabelFlip) return absl::OkStatus();
  Rewrite(kind, &u, seed);
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
      options_(std::move(options)),
      admin_(v1::Admin::NewStub(channel_)),
      devices_(shards_->size()),
      test_y_(data_->test_y),
      test_real_(data_->test_real) {}

absl::StatusOr<v1::ModelVersion> VirtualFleet::LatestModel() { return GetModel(0); }

absl::StatusOr<v1::ModelVersion> VirtualFleet::GetModel(uint32_t version) {
  grpc::ClientContext context;
  context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(30));
  v1::GetModelRequest request;
  request.set_version(version);
  v1::ModelVersion model;
  grpc::Status s = stub_->GetModel(&context, request, &model);
  if (!s.ok()) {
    return absl::UnavailableError(absl::StrCat("GetModel: ", DescribeGrpcStatus(s)));
  }
  return model;
}

bool VirtualFleet::Drifted(uint32_t device) const {
  return options_.drift.round != 0 && rounds_run_ >= options_.drift.round &&
         device < options_.drifted.size() && options_.drifted[device];
}

void VirtualFleet::LocalData(uint32_t device, std::vector<int8_t>* x,
                             std::vector<uint8_t>* y) const {
  const size_t features = static_cast<size_t>(data_->features);
  const std::vector<uint32_t>& shard = (*shards_)[device];
  x->resize(shard.size() * features);
  y->resize(shard.size());
  for (size_t i = 0; i < shard.size(); ++i) {
    std::copy_n(data_->train_x.data() + static_cast<size_t>(shard[i]) * features, features,
                x->data() + i * features);
    (*y)[i] = data_->train_y[shard[i]];
  }
  if (Drifted(device)) {
    ApplyDrift(options_.drift.kind, data_->features, shard.size(), x->data(), y->data());
  }
}

FleetStatus VirtualFleet::ReadFleetStatus(uint32_t after_round) {
  FleetStatus fleet;
  v1::ServerStatus status;
  // The decisions of a round's close (promotion, rollback, drift) are made
  // before the server opens its next round: wait for that, briefly, so the
  // row shows what the close decided.
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  for (;;) {
    grpc::ClientContext context;
    context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
    grpc::Status s = admin_->GetStatus(&context, v1::GetStatusRequest(), &status);
    if (!s.ok()) {
      fleet.unknown_reason = absl::StrCat("Admin GetStatus: ", DescribeGrpcStatus(s));
      return fleet;
    }
    // A spent privacy budget opens no next round: nothing to wait for.
    if (status.round().round() > after_round || status.privacy().budget_spent() ||
        std::chrono::steady_clock::now() > deadline) {
      break;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  fleet.known = true;
  const v1::FleetEvaluation& window = status.serving_window();
  fleet.devices = window.devices();
  fleet.accuracy = window.samples() == 0 ? 0
                                         : static_cast<double>(window.correct()) /
                                               static_cast<double>(window.samples());
  fleet.privacy = status.privacy().enabled();
  fleet.epsilon_spent = status.privacy().epsilon_spent();
  fleet.epsilon_budget = status.privacy().epsilon_budget();
  fleet.budget_spent = status.privacy().budget_spent();
  fleet.serving_version = status.serving_version();
  fleet.candidate_version = status.candidate_version();
  for (const v1::Alert& alert : status.alerts()) {
    fleet.alerts.push_back(
        absl::StrCat(alert.kind(), " on v", alert.model_version(), ": ", alert.message()));
  }
  // A candidate reaches devices at the check-ins of the round after its
  // commit, and the close of that round may already decide it: count the
  // one the devices could hold, the candidate in canary during the round.
  if (previous_candidate_ != 0) {
    for (const DeviceState& d : devices_) {
      fleet.devices_serving_candidate += d.version == previous_candidate_;
    }
  }
  fleet.stage = fleet.candidate_version != 0 ? "canary" : "none";
  if (previous_candidate_ != 0 && previous_candidate_ != fleet.candidate_version) {
    // The round before's candidate was decided at this round's close.
    grpc::ClientContext context;
    context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
    v1::GetVersionRequest request;
    request.set_version(previous_candidate_);
    v1::ModelVersion decided;
    if (admin_->GetVersion(&context, request, &decided).ok()) {
      switch (decided.rollout().stage()) {
        case v1::ROLLOUT_STAGE_SERVING:
        case v1::ROLLOUT_STAGE_RETIRED:
          fleet.stage = absl::StrCat("promoted v", previous_candidate_);
          break;
        case v1::ROLLOUT_STAGE_ROLLED_BACK:
          fleet.stage = absl::StrCat("rolled back v", previous_candidate_);
          break;
        default:
          break;
      }
    }
  }
  previous_candidate_ = fleet.candidate_version;
  return fleet;
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
  // rounds_run_ is now this round's number in the run, from 1.
  const bool attacking = rounds_run_ >= options_.attack_from_round;
  if (options_.drift.round != 0 && rounds_run_ == options_.drift.round &&
      std::count(options_.drifted.begin(), options_.drifted.end(), true) ==
          static_cast<std::ptrdiff_t>(devices)) {
    // The whole fleet's world changed: so did the held-out split's.
    std::vector<int8_t> test_x = data_->test_x;
    ApplyDrift(options_.drift.kind, data_->features, test_y_.size(), test_x.data(),
               test_y_.data());
    for (Eigen::Index r = 0; r < test_real_.rows(); ++r) {
      for (Eigen::Index f = 0; f < test_real_.cols(); ++f) {
        test_real_(r, f) = test_x[static_cast<size_t>(r * test_real_.cols() + f)] * data_->scale;
      }
    }
  }

  const uint32_t features = static_cast<uint32_t>(data_->features);
  const uint32_t classes = static_cast<uint32_t>(data_->classes);
  const size_t arena_size = tinyfed_arena_size(features, classes, TINYFED_MAX_BATCH);
  const size_t buffer_size = std::max<size_t>(TINYFED_TASK_MAX_SIZE(features, classes),
                                              TINYFED_UPDATE_MAX_SIZE(features, classes));
  const size_t model_words = (TINYFED_MODEL_SIZE(features, classes) + 3) / 4;
  // Deployed models are checked against the backbone the fleet's firmware
  // has: the feature spec of the server's model (the data's quantization).
  const v1::FeatureQuantization& fq = before->spec().feature_quantization();
  const tinyfed_backbone_t backbone{features, fq.scale_multiplier(), fq.scale_shift(),
                                    fq.zero_point()};
  uint64_t up = 0, down = 0;
  RoundProgress counts;
  std::mutex mu;
  auto report = [&](auto update) {
    std::lock_guard<std::mutex> lock(mu);
    update(counts);
    if (progress) progress(counts);
  };

  // 1. Check-ins of every device, one at a time in the shuffled order.
  //    Sequential check-ins (and submissions below) make the set of
  //    participants and the models each device holds depend on the seed
  //    alone, not on thread timing, so a run is reproducible; they are
  //    cheap next to training, which runs in parallel.
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
  RoundResult result;
  uint32_t task_round = 0;
  std::vector<uint8_t> buffer(buffer_size);
  std::vector<uint32_t> spare(model_words);
  std::vector<int8_t> x;
  std::vector<uint8_t> y;
  for (uint32_t d : order) {
    auto a = std::make_unique<Active>();
    a->device = d;
    a->attacker = attacking && d < options_.attackers.size() && options_.attackers[d];
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
    LocalData(d, &x, &y);
    const tinyfed_dataset_t local{x.data(), y.data(), static_cast<uint32_t>(y.size()), features};
    DeviceState& device = devices_[d];
    const uint32_t samples = a->attacker && options_.attack == AttackKind::kScaled
                                 ? kAttackSampleCount
                                 : static_cast<uint32_t>((*shards_)[d].size());
    // A device installs at most a few models a round: the server sends one
    // only when the device holds another version, so more means a model
    // the device refuses, which it would be sent again and again.
    constexpr int kCheckInsPerRound = 3;
    tinyfed_checkin_result_t answer{};
    std::string reply;
    for (int attempt = 0; attempt < kCheckInsPerRound; ++attempt) {
      tinyfed_evaluation_t evaluation{};
      tinyfed_serving_state_t serving{device.version, nullptr, 0};
      if (device.version != 0) {
        const tinyfed_status_t st = tinyfed_model_evaluate(
            device.model.data(), device.model.size() * 4, &local, &evaluation);
        if (st != TINYFED_OK) {
          return absl::InternalError(absl::StrCat(a->id, " could not evaluate its model v",
                                                  device.version, ": ", tinyfed_status_name(st)));
        }
        serving.evaluation = &evaluation;
      }
      size_t len = 0;
      if (tinyfed_checkin_encode_serving(&a->ctx, samples, &serving, buffer.data(),
                                         buffer.size(), &len) != TINYFED_OK) {
        return absl::InternalError(
            absl::StrCat("check-in: ", tinyfed_last_error_message(&a->ctx)));
      }
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
      const auto* msg = reinterpret_cast<const uint8_t*>(reply.data());
      const tinyfed_status_t st = tinyfed_checkin_response_decode(&a->ctx, msg, reply.size(), &answer);
      if (attempt == 0) report([](RoundProgress& c) { ++c.checked_in; });
      if (st != TINYFED_OK) {
        return absl::FailedPreconditionError(
            absl::StrCat("a device could not load the server's task: ", tinyfed_status_name(st),
                         " (", tinyfed_last_error_message(&a->ctx), ")"));
      }
      if (answer.kind != TINYFED_CHECKIN_MODEL) break;
      // Decode into the spare buffer; the serving one is swapped out only
      // when the new model is valid, as firmware writes a spare flash slot.
      tinyfed_model_info_t info{};
      const tinyfed_status_t decoded =
          tinyfed_model_decode(&backbone, msg + answer.model_offset, answer.model_length,
                               spare.data(), spare.size() * 4, &info);
      if (decoded != TINYFED_OK) {
        ++result.models_refused;
        break;  // keeps serving its old model this round
      }
      if (device.model.empty()) device.model.resize(model_words);
      std::swap(device.model, spare);
      device.version = info.version;
      ++result.models_installed;
      report([](RoundProgress& c) { ++c.models; });
    }
    if (answer.kind == TINYFED_CHECKIN_EVALUATE) {
      // Evaluation-only: the task's model on the local samples, submitted
      // now, while the round is open.
      tinyfed_evaluation_t evaluation{};
      size_t len = 0;
      if (tinyfed_evaluate(&a->ctx, &local, &evaluation) != TINYFED_OK ||
          tinyfed_evaluation_encode(&a->ctx, buffer.data(), buffer.size(), &len) != TINYFED_OK) {
        return absl::InternalError(absl::StrCat(a->id, " could not evaluate its task: ",
                                                tinyfed_last_error_message(&a->ctx)));
      }
      up += len;
      grpc::Status s = CallWithBytes(*generic_, kSubmitUpdateMethod, buffer.data(), len, &reply);
      if (s.error_code() == grpc::StatusCode::UNAVAILABLE) {
        return absl::UnavailableError(absl::StrCat("SubmitUpdate: ", DescribeGrpcStatus(s)));
      }
      if (s.ok()) {
        down += reply.size();
        ++result.evaluation_tasks;
        report([](RoundProgress& c) { ++c.evaluated; });
      }
      continue;
    }
    if (answer.kind != TINYFED_CHECKIN_TASK) continue;  // a retry hint: done for the round
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
      LocalData(a.device, &x, &y);
      tinyfed_dataset_t local{x.data(), y.data(), static_cast<uint32_t>(y.size()), features};
      a.update.resize(buffer_size);
      size_t len = 0;
      // The task's model on the device's own samples, before training: the
      // update carries it (federated evaluation).
      tinyfed_evaluation_t evaluation{};
      if (tinyfed_evaluate(&a.ctx, &local, &evaluation) != TINYFED_OK) {
        a.error = tinyfed_last_error_message(&a.ctx);
        continue;
      }
      if (a.attacker && options_.attack == AttackKind::kLabelFlip) {
        for (uint8_t& label : y) label = static_cast<uint8_t>(classes - 1 - label);
      }
      if (tinyfed_train(&a.ctx, &local) != TINYFED_OK ||
          tinyfed_update_encode(&a.ctx, a.update.data(), a.update.size(), &len) != TINYFED_OK) {
        a.error = tinyfed_last_error_message(&a.ctx);
        continue;
      }
      a.update.resize(len);
      if (a.attacker) {
        const uint64_t seed = (options_.seed * 1000003u + rounds_run_) * 1000003u + a.device;
        if (absl::Status s = RewriteUpdateAsAttack(options_.attack, &a.update, a.key, seed);
            !s.ok()) {
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
  result.fleet = ReadFleetStatus(task_round);
  // A rollback at the close commits a copy of the serving version right
  // after the round's own version: the row is about the round's own.
  if (result.committed && after.version() != before->version() + 1) {
    absl::StatusOr<v1::ModelVersion> own = GetModel(before->version() + 1);
    if (!own.ok()) return own.status();
    after = *own;
  }
  result.model_version = after.version();
  result.participants = result.committed ? after.metrics().participants() : 0;
  absl::StatusOr<Evaluation> eval = EvaluateModel(after, test_real_, test_y_);
  if (!eval.ok()) return eval.status();
  result.accuracy = eval->accuracy;
  result.loss = eval->loss;
  result.uplink_bytes = up;
  result.downlink_bytes = down;
  result.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  return result;
}

}  // namespace tinyfed::agent
