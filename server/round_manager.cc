#include "round_manager.h"

#include <algorithm>
#include <cmath>
#include <string>
#include <utility>

#include "absl/strings/numbers.h"
#include "google/protobuf/io/coded_stream.h"
#include "google/protobuf/io/zero_copy_stream_impl_lite.h"
#include "absl/strings/str_cat.h"
#include "metrics.h"
#include "server_config.h"
#include "spdlog/spdlog.h"
#include "tinyfed_common/fleet_keys.h"
#include "tinyfed_common/host_numerics.h"
#include "update_validation.h"

namespace tinyfed::server {
namespace {

absl::Status WithRetryHint(absl::Status status, uint32_t retry_after_ms) {
  status.SetPayload(kRetryAfterPayload, absl::Cord(absl::StrCat(retry_after_ms)));
  return status;
}

// ceil(K * factor), the number of tasks a round hands out. The factor is
// written in decimal in the config and arrives as the nearest double, which
// can sit just above a whole product (50 x 1.1 = 55.00000000000001), so it
// is taken to the nearest millionth first and the ceiling done in integers.
// The config bounds K <= 4e6 and factor <= 100: the product stays below 2^49.
uint32_t TaskLimit(uint32_t target_updates, double over_selection) {
  const int64_t factor_millionths = std::llround(over_selection * 1e6);
  const int64_t product = static_cast<int64_t>(target_updates) * factor_millionths;
  return static_cast<uint32_t>((product + 999'999) / 1'000'000);
}

std::string Serialize(const v1::Update& update) {
  std::string out;
  google::protobuf::io::StringOutputStream stream(&out);
  google::protobuf::io::CodedOutputStream coded(&stream);
  coded.SetSerializationDeterministic(true);
  update.SerializeToCodedStream(&coded);
  coded.Trim();
  return out;
}

// A version's Rollout as the manager stores it when its stage changes.
v1::Rollout StageOf(v1::RolloutStage stage, std::string reason, uint32_t round, int64_t now_ms) {
  v1::Rollout rollout;
  rollout.set_stage(stage);
  rollout.set_reason(std::move(reason));
  rollout.set_decided_round(round);
  rollout.set_decided_unix_ms(now_ms);
  return rollout;
}

}  // namespace

std::optional<uint32_t> RetryAfterMs(const absl::Status& status) {
  const auto payload = status.GetPayload(kRetryAfterPayload);
  uint32_t ms = 0;
  if (!payload || !absl::SimpleAtoi(std::string(*payload), &ms)) return std::nullopt;
  return ms;
}

RoundManager::RoundManager(const v1::ServerConfig& config, ModelStore* store,
                           const Clock* clock, ServerMetrics* metrics, RolloutSettings rollout,
                           std::unique_ptr<RandomSource> random)
    : config_(config),
      store_(store),
      clock_(clock),
      metrics_(metrics),
      task_limit_(TaskLimit(config.policy().target_updates(), config.policy().over_selection())),
      learning_rate_q16_(ToQ16(config.plan().learning_rate())),
      random_(random != nullptr ? std::move(random) : std::make_unique<OsRandomSource>()),
      limiter_(config.checkin_limits(), task_limit_),
      rollout_(rollout) {
  store_->SetBatchHook([this] { ApplyWritten(); });
}

void RoundManager::LogRejected(std::string_view what, std::string_view who,
                               const absl::Status& status) {
  if (what == "update") CountRejected();
  rejections_.Warn(what, who, status, clock_->MonotonicMs());
}

void RoundManager::ClearRoundLocked() {
  updates_.clear();
  tasks_.clear();
  evaluation_tasks_.clear();
  limiter_.NewRound();
  accepted_ = 0;
  pending_ = 0;
  evaluations_pending_ = 0;
  rejected_ = 0;
}

void RoundManager::CountRejected() {
  absl::MutexLock lock(&mu_);
  ++rejected_;
}

RoundManager::~RoundManager() {
  // The callbacks of appends still queued, and the hook, point here: let
  // them run first, answering their callers, then detach from the store.
  if (absl::Status s = store_->Flush(); !s.ok()) {
    spdlog::error("round manager: flushing the store on shutdown: {}", s.ToString());
  }
  WaitIdle();
  if (closer_.joinable()) closer_.join();
  store_->SetBatchHook(nullptr);
}

absl::StatusOr<std::unique_ptr<RoundManager>> RoundManager::Create(
    const v1::ServerConfig& config, const v1::ModelVersion& initial, ModelStore* store,
    const Clock* clock, ServerMetrics* metrics, std::unique_ptr<RandomSource> random) {
  absl::StatusOr<RolloutSettings> rollout = RolloutSettingsFromConfig(config);
  if (!rollout.ok()) return rollout.status();
  std::unique_ptr<RoundManager> manager(
      new RoundManager(config, store, clock, metrics, *rollout, std::move(random)));
  absl::Status status = manager->Resume(initial);
  if (!status.ok()) return status;
  return manager;
}

absl::Status RoundManager::Resume(const v1::ModelVersion& initial) {
  // Runs inside Create(), before any other thread can see the manager; the
  // lock is taken only where members are written.
  absl::StatusOr<std::optional<v1::ModelVersion>> latest = store_->LatestVersion();
  if (!latest.ok()) return latest.status();
  v1::ModelVersion model;
  if (latest->has_value()) {
    model = **latest;
    if (model.spec().SerializeAsString() != initial.spec().SerializeAsString()) {
      return absl::FailedPreconditionError(absl::StrCat(
          "the store's model has head {", model.spec().ShortDebugString(),
          "} but the configuration asks for {", initial.spec().ShortDebugString(),
          "}; use another --db or the stored head"));
    }
  } else {
    model = initial;
    if (absl::Status s = store_->PutInitialVersion(model); !s.ok()) return s;
    spdlog::info("stored initial model version {}", model.version());
  }
  absl::StatusOr<Head> head = LoadHead(model);
  if (!head.ok()) return head.status();
  spec_ = model.spec();
  bounds_ = BoundsFromConfig(config_.influence(), spec_.weight_frac_bits());
  params_ = StrategyParamsFromConfig(config_);
  params_.bounds = bounds_;
  privacy_ = PrivacyParamsFromConfig(config_);
  values_ = static_cast<size_t>(head->features) * head->classes + head->classes;
  if (privacy_.enabled()) {
    rho_per_round_ = GaussianRho(RoundSensitivity(privacy_.norm_bound, values_),
                                 static_cast<double>(privacy_.sigma));
  }
  // The base optimizer state: what the latest version's round left.
  absl::StatusOr<v1::AggregationState> stored_state = store_->AggregationStateOf(model.version());
  if (!stored_state.ok()) return stored_state.status();
  absl::StatusOr<OptimizerState> state = OptimizerStateFromProto(*stored_state, values_);
  if (!state.ok()) {
    return absl::FailedPreconditionError(absl::StrCat("the optimizer state of version ",
                                                      model.version(), ": ",
                                                      state.status().message()));
  }
  // The privacy totals: the newest noised version's rho_spent covers every
  // noised version up to it (versions without noise add nothing).
  double rho_spent = 0;
  uint32_t noised_versions = 0;
  bool newest_seen = false;
  for (uint32_t newest = model.version(); newest >= 1;) {
    constexpr size_t kPage = 1000;
    absl::StatusOr<std::vector<v1::ModelVersion>> page = store_->ListVersions(newest, kPage);
    if (!page.ok()) return page.status();
    for (const v1::ModelVersion& v : *page) {
      if (v.aggregation().noise_sigma() == 0) continue;
      ++noised_versions;
      if (!newest_seen) rho_spent = v.aggregation().rho_spent();
      newest_seen = true;
    }
    if (page->size() < kPage || page->back().version() <= 1) break;
    newest = page->back().version() - 1;
  }
  const bool budget_spent = BudgetSpent(rho_spent);

  absl::StatusOr<PauseState> pause = store_->Paused();
  if (!pause.ok()) return pause.status();
  absl::StatusOr<StoredRollout> stored_rollout = store_->Rollout();
  if (!stored_rollout.ok()) return stored_rollout.status();
  RolloutState rollout_state;
  rollout_state.serving_version = stored_rollout->serving_version;
  rollout_state.candidate_version = stored_rollout->candidate_version;
  rollout_state.baseline = EvaluationSums::FromProto(stored_rollout->serving_baseline);
  absl::StatusOr<std::optional<RoundRecord>> last_round = store_->LatestRound();
  if (!last_round.ok()) return last_round.status();
  bool resume = last_round->has_value() && (*last_round)->state == RoundState::kOpen;
  if (resume && budget_spent) {
    // Opened under a larger budget (or less noise): its release no longer
    // fits, so it cannot commit.
    const RoundRecord& open = **last_round;
    const int64_t now = clock_->NowMs();
    if (absl::Status s = store_->AbandonRound(open.round, now); !s.ok()) return s;
    (*last_round)->state = RoundState::kAbandoned;
    (*last_round)->closed_ms = now;
    spdlog::warn("abandoned open round {}: the privacy budget allows no further version",
                 open.round);
    resume = false;
  }
  // Paused, or the privacy budget spent, with no round open: none opens
  // until SetPaused(false) (paused) or ever (budget).
  const bool idle = !resume && (pause->paused || budget_spent);
  RoundRecord record;
  int64_t deadline_monotonic_ms = 0;
  std::vector<TaskRecord> tasks;
  std::vector<StoredUpdate> updates;
  std::vector<StoredUpdate> previous;
  if (resume) {
    record = **last_round;
    if (record.base_version != model.version()) {
      return absl::DataLossError(absl::StrCat("open round ", record.round, " trains version ",
                                              record.base_version, " but the latest is ",
                                              model.version()));
    }
    // The stored wall deadline is all that survives a restart (see the
    // header): the time it leaves now, within [0, the round's length].
    const int64_t length = std::max<int64_t>(0, record.deadline_ms - record.opened_ms);
    const int64_t left = std::clamp<int64_t>(record.deadline_ms - clock_->NowMs(), 0, length);
    deadline_monotonic_ms = clock_->MonotonicMs() + left;
    absl::StatusOr<std::vector<TaskRecord>> t = store_->RoundTasks(record.round);
    if (!t.ok()) return t.status();
    tasks = std::move(*t);
    absl::StatusOr<std::vector<StoredUpdate>> u = store_->RoundUpdates(record.round);
    if (!u.ok()) return u.status();
    updates = std::move(*u);
  } else if (idle) {
    if (last_round->has_value()) {
      record = **last_round;
    } else {
      record.base_version = model.version();  // round 0: none yet
    }
  } else {
    record = NewRound(last_round->has_value() ? (*last_round)->round + 1 : 1, model.version(),
                      &deadline_monotonic_ms);
    if (absl::Status s = store_->OpenRound(record); !s.ok()) return s;
  }
  // The round whose updates a retry may still repeat: the one before the
  // open round, or the last one when none is open.
  const uint32_t previous_round = idle ? record.round : record.round - 1;
  if (previous_round >= 1) {
    absl::StatusOr<std::vector<StoredUpdate>> p = store_->RoundUpdates(previous_round);
    if (!p.ok()) return p.status();
    previous = std::move(*p);
  }

  absl::MutexLock lock(&mu_);
  latest_ = model;
  latest_head_ = *head;
  latest_state_ = std::move(*state);
  rho_spent_ = rho_spent;
  noised_versions_ = noised_versions;
  budget_spent_ = budget_spent;
  PublishPrivacyLocked();
  if (budget_spent_) WarnBudgetSpentLocked();
  round_ = record;
  deadline_monotonic_ms_ = deadline_monotonic_ms;
  for (TaskRecord& t : tasks) {
    tasks_[t.device_id] = Task{std::move(t.token), t.declared_samples};
  }
  for (StoredUpdate& u : updates) {
    v1::Update update;
    if (!update.ParseFromString(u.payload) || !ValidateUpdate(update, spec_).ok()) {
      return absl::DataLossError(
          absl::StrCat("stored update of ", u.device_id, " in round ", record.round, " is corrupt"));
    }
    Entry& entry = updates_[u.device_id];
    entry.payload = std::move(u.payload);
    entry.durable = true;
    entry.update = std::move(update);
    ++accepted_;
  }
  previous_round_ = previous_round;
  for (StoredUpdate& u : previous) previous_updates_[u.device_id] = std::move(u.payload);
  pause_ = *pause;
  rollout_.Restore(rollout_state);
  PublishRolloutLocked();
  idle_ = idle;
  open_ = !idle;
  if (idle && !pause_.paused) {
    // The budget's warning said it.
  } else if (idle) {
    spdlog::info("paused since {} by {}: no round opens until resumed (last round {})",
                 pause_.since_unix_ms, pause_.by, round_.round);
  } else if (resume) {
    spdlog::info("resumed round {} on version {}: {} tasks, {} accepted updates", round_.round,
                 round_.base_version, tasks_.size(), accepted_);
    if (accepted_ >= config_.policy().target_updates()) BeginCloseLocked(/*deadline=*/false);
  } else {
    spdlog::info("opened round {} on version {} (target {}, minimum {}, up to {} tasks)",
                 round_.round, round_.base_version, config_.policy().target_updates(),
                 config_.policy().min_updates(), task_limit_);
  }
  return absl::OkStatus();
}

RoundRecord RoundManager::NewRound(uint32_t round, uint32_t base_version,
                                   int64_t* deadline_monotonic_ms) const {
  const int64_t length = config_.policy().round_deadline_ms();
  RoundRecord record;
  record.round = round;
  record.base_version = base_version;
  record.opened_ms = clock_->NowMs();
  record.deadline_ms = record.opened_ms + length;
  *deadline_monotonic_ms = clock_->MonotonicMs() + length;
  return record;
}

v1::RoundTask RoundManager::MakeTaskLocked(const std::string& token,
                                           int64_t now_monotonic_ms) const {
  v1::RoundTask task;
  task.set_round(round_.round);
  task.set_task_token(token);
  *task.mutable_model() = latest_;
  task.mutable_model()->clear_aggregation();  // for operators and auditors only
  v1::TrainingPlan* plan = task.mutable_plan();
  plan->set_epochs(config_.plan().epochs());
  plan->set_batch_size(config_.plan().batch_size());
  plan->set_learning_rate_q16(learning_rate_q16_);
  plan->set_seed(config_.plan().seed() + round_.round);
  const int64_t left = deadline_monotonic_ms_ - now_monotonic_ms;
  task.set_deadline_ms(left > 0 ? static_cast<uint32_t>(left) : 0);
  task.mutable_quantization()->set_scheme(v1::QUANTIZATION_SCHEME_INT8_PER_ROW_STOCHASTIC);
  return task;
}

v1::UpdateAck RoundManager::MakeAckLocked(uint32_t round) const {
  v1::UpdateAck ack;
  ack.set_round(round);
  ack.set_retry_after_ms(config_.policy().retry_after_ms());
  return ack;
}

void RoundManager::CheckIn(const v1::CheckInRequest& request, std::string_view peer,
                           CheckInDone done) {
  if (absl::Status s = ValidateDeviceId(request.device_id()); !s.ok()) {
    done(std::move(s));
    return;
  }
  const v1::HeadConfig& head = config_.head();
  if (request.has_capabilities()) {
    const v1::DeviceCapabilities& caps = request.capabilities();
    if ((caps.max_features() != 0 && caps.max_features() < head.feature_count()) ||
        (caps.max_classes() != 0 && caps.max_classes() < head.class_count()) ||
        (caps.max_batch_size() != 0 && caps.max_batch_size() < config_.plan().batch_size())) {
      done(absl::FailedPreconditionError(absl::StrCat(
          "device holds at most ", caps.max_features(), " features x ", caps.max_classes(),
          " classes, batch ", caps.max_batch_size(), "; the model needs ", head.feature_count(),
          " x ", head.class_count(), ", batch ", config_.plan().batch_size())));
      return;
    }
  }
  const int64_t now = clock_->NowMs();  // for the task's record
  const int64_t now_monotonic = clock_->MonotonicMs();
  v1::CheckInResponse response;
  std::string token;
  uint32_t round = 0;
  const uint32_t declared =
      request.has_capabilities() ? request.capabilities().sample_count() : 0;
  if (request.has_serving()) {
    if (absl::Status s = ValidateServingState(request.serving(), declared); !s.ok()) {
      done(std::move(s));
      return;
    }
  }
  absl::Status limited;  // a limit refused it: logged after the lock
  bool store_evaluation = false;  // first report of the device in this round
  uint32_t evaluation_round = 0;
  {
    absl::MutexLock lock(&mu_);
    auto retry = [&](uint32_t ms) {
      response.mutable_retry()->set_retry_after_ms(ms);
    };
    if (request.has_serving() && request.serving().has_evaluation()) {
      evaluation_round = round_.round;
      store_evaluation = rollout_.RecordEvaluation(round_.round, request.device_id(),
                                                   request.serving().evaluation());
    }
    const uint32_t meant =
        request.has_serving() ? rollout_.MeantVersion(request.device_id()) : 0;
    if (request.has_serving() && !request.serving().defer_model() &&
        meant != request.serving().model_version()) {
      // Before any task, also while paused: a pause holds training back,
      // not the models devices should serve.
      absl::StatusOr<std::shared_ptr<const v1::ModelVersion>> model = DeviceModelLocked(meant);
      if (model.ok()) {
        *response.mutable_model() = **model;
      } else {
        spdlog::error("could not read version {} to send it to {}: {}", meant,
                      request.device_id(), model.status().ToString());
        retry(1000);
      }
    } else if (pause_.paused || (budget_spent_ && !open_)) {
      retry(config_.policy().retry_after_ms());
    } else if (!open_) {
      retry(std::min<uint32_t>(1000, config_.policy().retry_after_ms()));
    } else if (const uint32_t wait = limiter_.Admit(peer, request.device_id(), now_monotonic);
               wait != 0) {
      retry(wait);
      limited = absl::ResourceExhaustedError(
          absl::StrCat("check-in rate limit of its peer or device ", request.device_id()));
    } else if (auto it = tasks_.find(request.device_id()); it != tasks_.end()) {
      if (updates_.contains(request.device_id())) {
        // Done for this round.
        if (!EvaluationTaskLocked(request, declared, now_monotonic, &response)) {
          retry(config_.policy().retry_after_ms());
        }
      } else {
        *response.mutable_task() = MakeTaskLocked(it->second.token, now_monotonic);
      }
    } else if (tasks_.size() >= task_limit_) {
      // Round full.
      if (!EvaluationTaskLocked(request, declared, now_monotonic, &response)) {
        retry(config_.policy().retry_after_ms());
      }
    } else if (!limiter_.MayTakeTask(peer)) {
      retry(config_.policy().retry_after_ms());
      limited = absl::ResourceExhaustedError(absl::StrCat(
          "the peer already holds its ", limiter_.peer_task_cap(), " tasks of round ",
          round_.round));
    } else {
      token.resize(16);
      for (char& ch : token) {
        ch = static_cast<char>(absl::Uniform<uint8_t>(token_bits_));
      }
      tasks_[request.device_id()] = Task{token, declared};
      limiter_.TookTask(peer);
      round = round_.round;
    }
  }
  if (!limited.ok()) {
    rejections_.Warn("check-in", peer.empty() ? std::string_view("in-process") : peer, limited,
                     now_monotonic);
  }
  if (store_evaluation) {
    // Not waited for (see the header): a lost write is made good by the
    // device's next report.
    store_->AppendEvaluation(
        evaluation_round, request.device_id(), request.serving().evaluation(),
        [device = request.device_id()](absl::Status status) {
          if (!status.ok()) {
            spdlog::error("could not store the evaluation of {}: {}", device,
                          status.ToString());
          }
        });
  }
  if (token.empty()) {
    done(std::move(response));
    return;
  }
  TaskRecord record{round, request.device_id(), token, now, declared};
  store_->AppendTask(std::move(record), [this, round, token, device = request.device_id(),
                                         peer = std::string(peer),
                                         done = std::move(done)](absl::Status status) {
    absl::StatusOr<v1::CheckInResponse> result;
    {
      absl::MutexLock lock(&mu_);
      if (!status.ok()) {
        // Not once a rollback dropped the round's tasks (idle_ with the
        // same number): its share count is gone with them.
        if (round_.round == round && !idle_) {
          tasks_.erase(device);
          limiter_.ReleaseTask(peer);
        }
        spdlog::error("could not record task of {} in round {}: {}", device, round,
                      status.ToString());
        result = WithRetryHint(absl::UnavailableError("could not record the task"), 1000);
      } else if (!open_ || round_.round != round) {
        v1::CheckInResponse retry;
        retry.mutable_retry()->set_retry_after_ms(1000);
        result = std::move(retry);
      } else {
        v1::CheckInResponse response;
        *response.mutable_task() = MakeTaskLocked(token, clock_->MonotonicMs());
        result = std::move(response);
      }
    }
    done(std::move(result));
  });
}

void RoundManager::SubmitUpdate(const v1::Update& update, SubmitDone done) {
  const int64_t now_monotonic = clock_->MonotonicMs();
  if (SubmitEvaluationOnly(update, done)) return;
  auto reject = [&](absl::Status status) {
    CountRejected();
    rejections_.Warn("update", update.device_id(), status, now_monotonic);
    done(std::move(status));
  };
  if (absl::Status s = ValidateUpdate(update, spec_); !s.ok()) {
    reject(std::move(s));
    return;
  }
  std::string payload = Serialize(update);
  const std::string& device = update.device_id();
  absl::Status rejection;
  std::optional<v1::UpdateAck> repeat_ack;  // the same bytes again
  uint32_t round = 0;
  {
    absl::MutexLock lock(&mu_);
    auto previous = previous_updates_.find(device);
    if (previous_round_ != 0 && update.round() == previous_round_ &&
        (update.round() != round_.round || idle_) && previous != previous_updates_.end() &&
        previous->second == payload) {
      repeat_ack = MakeAckLocked(previous_round_);
    } else if (update.round() != round_.round || (!open_ && !updates_.contains(device))) {
      rejection = absl::FailedPreconditionError(absl::StrCat(
          "round ", update.round(), " is not open (current round ", round_.round,
          open_ ? ", open)" : ", closing)"));
    } else if (auto task = tasks_.find(device);
               task == tasks_.end() || task->second.token != update.task_token()) {
      rejection = absl::FailedPreconditionError(
          absl::StrCat("unknown task token for ", device, " in round ", round_.round));
    } else if (task->second.declared_samples != 0 &&
               update.sample_count() > task->second.declared_samples) {
      rejection = absl::InvalidArgumentError(absl::StrCat(
          "sample_count ", update.sample_count(), " is above the ",
          task->second.declared_samples, " samples ", device, " declared at check-in"));
    } else if (task->second.declared_samples != 0 && update.has_evaluation() &&
               update.evaluation().samples() > task->second.declared_samples) {
      // The evaluation weighs in the fleet's accuracy as the update does in
      // the model: by no more samples than the device declared.
      rejection = absl::InvalidArgumentError(absl::StrCat(
          "evaluation.samples ", update.evaluation().samples(), " is above the ",
          task->second.declared_samples, " samples ", device, " declared at check-in"));
    } else if (update.base_version() != round_.base_version) {
      rejection = absl::AbortedError(absl::StrCat("update built on version ",
                                                  update.base_version(), " but round ",
                                                  round_.round, " trains version ",
                                                  round_.base_version, "; check in again"));
    } else if (auto it = updates_.find(device); it != updates_.end()) {
      if (it->second.payload != payload) {
        rejection = absl::AlreadyExistsError(absl::StrCat(
            device, " already submitted a different update in round ", round_.round));
      } else if (it->second.durable) {
        repeat_ack = MakeAckLocked(round_.round);
      } else {
        it->second.waiters.push_back(std::move(done));  // answered with the first write
        return;
      }
    } else if (accepted_ + pending_ >= config_.policy().target_updates()) {
      rejection = absl::FailedPreconditionError(absl::StrCat(
          "round ", round_.round, " already has its ", config_.policy().target_updates(),
          " updates"));
    } else if (store_->PendingWrites() >= config_.max_pending_writes()) {
      rejection = WithRetryHint(
          absl::ResourceExhaustedError("too many updates waiting to be stored; retry later"),
          200);
    } else {
      Entry& entry = updates_[device];
      entry.payload = payload;
      entry.waiters.push_back(std::move(done));
      ++pending_;
      round = round_.round;
    }
  }
  if (repeat_ack) {
    done(std::move(*repeat_ack));
    return;
  }
  if (!rejection.ok()) {
    reject(std::move(rejection));
    return;
  }
  StoredUpdate stored{round, device, std::move(payload), clock_->NowMs()};
  // Written with the update, in its transaction: counted exactly when the
  // update is acknowledged.
  std::optional<v1::Evaluation> evaluation;
  if (update.has_evaluation()) evaluation = update.evaluation();
  store_->AppendUpdate(std::move(stored), std::move(evaluation), [this, round, &update](absl::Status status) {
    absl::MutexLock lock(&written_mu_);
    written_.push_back(Written{round, &update, std::move(status)});
  });
}

void RoundManager::ApplyWritten() {
  std::vector<Written> written;
  {
    absl::MutexLock lock(&written_mu_);
    written.swap(written_);
  }
  if (written.empty()) return;
  // Callers to answer once the lock is released: each waiter with the
  // index of its result.
  std::vector<std::pair<SubmitDone, size_t>> answers;
  std::vector<absl::StatusOr<v1::UpdateAck>> results(written.size());
  {
    absl::MutexLock lock(&mu_);
    for (size_t i = 0; i < written.size(); ++i) {
      const Written& w = written[i];
      if (w.round != round_.round || idle_) {
        // A round closes only after its pending writes finish; a rollback
        // abandons it at once, answering the callers of its pending writes
        // then (ABORTED): `w.update` may be gone, and its write failed
        // (the round was abandoned before it).
        continue;
      }
      const std::string& device_id = w.update->device_id();
      auto it = updates_.find(device_id);
      if (it == updates_.end()) {
        spdlog::error("update of {} for round {} written but not pending", device_id, w.round);
        continue;
      }
      const size_t first_answer = answers.size();
      for (SubmitDone& done : it->second.waiters) answers.emplace_back(std::move(done), i);
      it->second.waiters.clear();
      --pending_;
      if (w.status.ok()) {
        it->second.durable = true;
        it->second.update = *w.update;
        ++accepted_;
        if (w.update->has_evaluation()) {
          rollout_.RecordEvaluation(w.round, device_id, w.update->evaluation());
        }
        results[i] = MakeAckLocked(w.round);
        if (open_ && !rolling_back_ && accepted_ >= config_.policy().target_updates()) {
          BeginCloseLocked(/*deadline=*/false);
        }
      } else {
        rejected_ += static_cast<uint32_t>(answers.size() - first_answer);
        updates_.erase(it);
        spdlog::error("could not store update of {} in round {}: {}", device_id, w.round,
                      w.status.ToString());
        results[i] =
            WithRetryHint(absl::UnavailableError("could not store the update; retry"), 1000);
      }
    }
  }
  for (auto& [done, i] : answers) done(results[i]);
}

void RoundManager::Tick() {
  absl::MutexLock lock(&mu_);
  if (open_ && !closing_ && !rolling_back_ && clock_->MonotonicMs() >= deadline_monotonic_ms_) {
    BeginCloseLocked(/*deadline=*/true);
  }
}

void RoundManager::BeginCloseLocked(bool deadline) {
  open_ = false;
  closing_ = true;
  if (closer_.joinable()) closer_.join();  // the previous closer has finished
  closer_ = std::thread([this, deadline] { CloseRound(deadline); });
}

void RoundManager::CloseRound(bool deadline) {
  mu_.Lock();
  mu_.Await(absl::Condition(
      +[](RoundManager* m) ABSL_NO_THREAD_SAFETY_ANALYSIS {
        return m->pending_ == 0 && m->evaluations_pending_ == 0;
      },
      this));
  const RoundRecord round = round_;
  const uint32_t accepted = accepted_;
  const uint32_t tasks = static_cast<uint32_t>(tasks_.size());
  const uint32_t rejected = rejected_;
  const v1::ModelVersion base = latest_;
  const Head base_head = latest_head_;
  const OptimizerState base_state = latest_state_;
  const double rho_before = rho_spent_;
  // The round's set, to decide on as a whole. Pointers stay valid: only
  // this thread changes updates_ until the round is reset below.
  std::vector<const v1::Update*> set;
  set.reserve(updates_.size());
  for (const auto& [device, entry] : updates_) {
    if (entry.durable) set.push_back(&entry.update);
  }
  mu_.Unlock();

  const int64_t now = clock_->NowMs();
  const bool commit = accepted >= config_.policy().min_updates() && accepted > 0;
  std::optional<v1::ModelVersion> next;
  std::optional<Head> next_head;
  std::optional<OptimizerState> next_state;
  double rho_after = rho_before;
  bool noised = false;  // a noised version was committed
  if (commit) {
    // The noise is a secret (privacy.h): it goes to the store, never to a
    // log or an error message.
    absl::StatusOr<std::vector<int64_t>> noise = std::vector<int64_t>();
    if (privacy_.enabled()) noise = DiscreteGaussianNoise(privacy_.sigma, values_, *random_);
    absl::StatusOr<RoundAggregate> aggregate =
        noise.ok() ? AggregateRound(params_, base_head, base_state, set, *noise) : noise.status();
    if (aggregate.ok()) {
      if (aggregate->capped != 0 || aggregate->clipped != 0) {
        spdlog::info("round {}: {} of {} updates capped at weight {}, {} clipped to norm {}",
                     round.round, aggregate->capped, set.size(), aggregate->weight_cap,
                     aggregate->clipped, aggregate->norm_bound);
      }
      v1::ModelVersion model;
      model.set_version(base.version() + 1);
      model.set_parent_version(base.version());
      model.set_round(round.round);
      *model.mutable_spec() = base.spec();
      StoreHead(aggregate->next, &model);
      model.mutable_metrics()->set_participants(aggregate->participants);
      model.mutable_metrics()->set_samples(aggregate->samples);
      model.mutable_metrics()->set_mean_local_loss_q16(aggregate->mean_loss_q16);
      model.mutable_metrics()->set_capped_updates(aggregate->capped);
      model.mutable_metrics()->set_clipped_updates(aggregate->clipped);
      model.mutable_metrics()->set_rejected_updates(rejected);
      model.set_created_unix_ms(now);
      v1::Aggregation* record = model.mutable_aggregation();
      RecordStrategyParams(params_, record);
      record->set_trimmed(aggregate->trimmed);
      if (privacy_.enabled()) {
        rho_after = rho_before + rho_per_round_;
        record->set_noise_sigma(privacy_.sigma);
        record->set_sensitivity(RoundSensitivity(privacy_.norm_bound, values_));
        record->set_rho(rho_per_round_);
        record->set_rho_spent(rho_after);
        record->set_epsilon_spent(EpsilonFromRho(rho_after, privacy_.delta));
        record->set_delta(privacy_.delta);
      }
      v1::AggregationState state;
      OptimizerStateToProto(aggregate->state, &state);
      for (int64_t n : *noise) state.add_noise(n);
      if (absl::Status s = store_->CommitRound(round.round, now, model, state); s.ok()) {
        next = std::move(model);
        next_head = std::move(aggregate->next);
        next_state = std::move(aggregate->state);
        noised = privacy_.enabled();
      } else {
        spdlog::error("could not commit round {}: {}", round.round, s.ToString());
      }
    } else {
      spdlog::error("could not aggregate round {}: {}", round.round,
                    aggregate.status().ToString());
    }
  }
  if (next && metrics_ != nullptr) {
    metrics_->rounds_committed.Add();
    metrics_->round_duration.Observe(absl::Milliseconds(now - round.opened_ms));
  } else if (metrics_ != nullptr) {
    metrics_->rounds_abandoned.Add();
  }
  if (next) {
    spdlog::info("round {} {}: {} updates from {} tasks, {} samples -> committed version {}",
                 round.round, deadline ? "reached its deadline" : "reached its target",
                 accepted, tasks, next->metrics().samples(), next->version());
  } else {
    if (absl::Status s = store_->AbandonRound(round.round, now); !s.ok()) {
      spdlog::error("could not mark round {} abandoned: {}", round.round, s.ToString());
    }
    spdlog::warn("round {} abandoned at its deadline: {} updates, minimum {}; model stays at "
                 "version {}",
                 round.round, accepted, config_.policy().min_updates(), base.version());
  }

  // The next round opens unless the server is paused; SetPaused(false)
  // opens it then. Decided and done under control_mu_, so that a pause or
  // resume lands either before (and is seen here) or after (and sees the
  // outcome).
  absl::MutexLock control(&control_mu_);
  // A rollback's copy commits after the round's version: the next round
  // trains from it.
  const bool committed = next.has_value();
  std::optional<std::pair<v1::ModelVersion, Head>> restarted =
      CloseRollout(round.round, next ? &*next : nullptr, now);
  if (restarted) {
    next_state = StoredStateOrEmpty(restarted->first.version());
    next = std::move(restarted->first);
    next_head = std::move(restarted->second);
  }
  bool paused;
  bool budget_spent;
  {
    absl::MutexLock lock(&mu_);
    if (noised) {
      rho_spent_ = rho_after;
      ++noised_versions_;
      budget_spent_ = BudgetSpent(rho_spent_);
      PublishPrivacyLocked();
      if (budget_spent_) WarnBudgetSpentLocked();
    }
    paused = pause_.paused;
    budget_spent = budget_spent_;
  }
  int64_t deadline_monotonic_ms = 0;
  const RoundRecord record = NewRound(
      round.round + 1, next ? next->version() : base.version(), &deadline_monotonic_ms);
  const bool held = paused || budget_spent;
  absl::Status opened = held ? absl::OkStatus() : store_->OpenRound(record);

  absl::MutexLock lock(&mu_);
  if (next) {
    latest_ = std::move(*next);
    latest_head_ = std::move(*next_head);
    latest_state_ = std::move(*next_state);
  }
  previous_round_ = round.round;
  previous_updates_.clear();
  for (auto& [device, entry] : updates_) {
    if (entry.durable) previous_updates_[device] = std::move(entry.payload);
  }
  // Evaluation-only updates are re-acknowledged as training ones are; a
  // device holds one task per round, so the two never share a device.
  for (auto& [device, task] : evaluation_tasks_) {
    if (task.durable) previous_updates_[device] = std::move(task.payload);
  }
  ClearRoundLocked();  // nothing is pending: the close waited for it
  if (!held && opened.ok()) {
    round_ = record;
    deadline_monotonic_ms_ = deadline_monotonic_ms;
    open_ = true;
    idle_ = false;
    spdlog::info("opened round {} on version {}", record.round, record.base_version);
  } else {
    round_ = round;
    round_.state = committed ? RoundState::kCommitted : RoundState::kAbandoned;
    round_.closed_ms = now;
    idle_ = true;
    if (paused) {
      spdlog::info("paused: round {} stays unopened until resumed", record.round);
    } else if (budget_spent) {
      // WarnBudgetSpentLocked said it.
    } else {
      spdlog::error("could not open round {}: {}; the server accepts no work until resumed "
                    "(tinyfed-admin resume) or restarted",
                    record.round, opened.ToString());
    }
  }
  closing_ = false;
}

absl::Status RoundManager::OpenRoundIfIdle() {
  RoundRecord record;
  int64_t deadline_monotonic_ms = 0;
  {
    absl::MutexLock lock(&mu_);
    if (!idle_ || closing_ || pause_.paused || budget_spent_) return absl::OkStatus();
    record = NewRound(round_.round + 1, latest_.version(), &deadline_monotonic_ms);
  }
  // Nothing else opens or closes a round meanwhile: closes begin only from
  // an open round, and the other openers hold control_mu_.
  if (absl::Status s = store_->OpenRound(record); !s.ok()) {
    spdlog::error("could not open round {}: {}", record.round, s.ToString());
    return s;
  }
  absl::MutexLock lock(&mu_);
  ClearRoundLocked();
  round_ = record;
  deadline_monotonic_ms_ = deadline_monotonic_ms;
  open_ = true;
  idle_ = false;
  spdlog::info("opened round {} on version {}", record.round, record.base_version);
  return absl::OkStatus();
}

absl::Status RoundManager::SetPaused(bool paused, AuditEntry audit) {
  absl::MutexLock control(&control_mu_);
  bool changed;
  {
    absl::MutexLock lock(&mu_);
    changed = pause_.paused != paused;
  }
  if (changed) {
    PauseState next;
    if (paused) {
      next.paused = true;
      next.since_unix_ms = audit.at_unix_ms;
      next.by = audit.actor;
    }
    audit.action = paused ? "pause" : "resume";
    if (absl::Status s = store_->SetPaused(next, audit); !s.ok()) return s;
    absl::MutexLock lock(&mu_);
    pause_ = next;
    spdlog::info("{} by {}{}{}", paused ? "paused" : "resumed", audit.actor,
                 audit.detail.empty() ? "" : ": ", audit.detail);
  }
  // Also when already running: a round that failed to open is retried.
  return paused ? absl::OkStatus() : OpenRoundIfIdle();
}

PauseState RoundManager::Paused() const {
  absl::MutexLock lock(&mu_);
  return pause_;
}

absl::StatusOr<RoundManager::RollbackResult> RoundManager::Rollback(uint32_t to_version,
                                                                    AuditEntry audit) {
  if (to_version == 0) {
    return absl::InvalidArgumentError("rollback: version 0 is not a version");
  }
  absl::MutexLock control(&control_mu_);
  uint32_t latest = 0;
  uint32_t abandon = 0;
  {
    absl::MutexLock lock(&mu_);
    latest = latest_.version();
    if (closing_) {
      return absl::FailedPreconditionError(absl::StrCat(
          "rollback: round ", round_.round, " is being closed; try again in a moment"));
    }
    if (to_version > latest) {
      return absl::NotFoundError(
          absl::StrCat("rollback: no model version ", to_version, " (latest is ", latest, ")"));
    }
    if (to_version == latest) {
      return absl::FailedPreconditionError(absl::StrCat(
          "rollback: version ", to_version, " is the latest version; nothing to roll back"));
    }
    abandon = idle_ ? 0 : round_.round;
    rolling_back_ = true;
  }
  // Ends a failed rollback: a close held back meanwhile begins now (a
  // deadline passed meanwhile is seen by the next Tick).
  const auto failed = [this](absl::Status status) {
    absl::MutexLock lock(&mu_);
    rolling_back_ = false;
    if (open_ && !closing_ && accepted_ >= config_.policy().target_updates()) {
      BeginCloseLocked(/*deadline=*/false);
    }
    return status;
  };
  absl::StatusOr<v1::ModelVersion> source = store_->GetVersion(to_version);
  if (!source.ok()) return failed(source.status());
  if (source->spec().SerializeAsString() != spec_.SerializeAsString()) {
    return failed(absl::FailedPreconditionError(absl::StrCat(
        "rollback: version ", to_version, " has another head than the server's")));
  }
  absl::StatusOr<Head> head = LoadHead(*source);
  if (!head.ok()) return failed(head.status());

  const int64_t now = clock_->NowMs();
  RollbackResult result;
  v1::ModelVersion& next = result.version;
  next.set_version(latest + 1);
  next.set_parent_version(latest);
  next.set_round(0);
  next.set_restored_from(to_version);
  *next.mutable_spec() = source->spec();
  next.set_weights(source->weights());
  next.set_bias(source->bias());
  next.set_checksum(source->checksum());
  next.set_created_unix_ms(now);
  result.abandoned_round = abandon;

  const std::string reason = audit.detail;
  audit.action = "rollback";
  audit.detail = absl::StrCat("to version ", to_version, " as version ", next.version(), "; ",
                              abandon != 0 ? absl::StrCat("abandoned round ", abandon)
                                           : std::string("no round was open"),
                              reason.empty() ? "" : "; reason: ", reason);
  // The copy serves at once (the operator decided): no canary.
  RolloutWrite write;
  {
    absl::MutexLock lock(&mu_);
    const RolloutState& state = rollout_.state();
    write.serving_version = next.version();
    write.stages.push_back({next.version(), StageOf(v1::ROLLOUT_STAGE_SERVING,
                                                    absl::StrCat("serving: rollback by ",
                                                                 audit.actor, " to v", to_version,
                                                                 reason.empty() ? "" : ": ",
                                                                 reason),
                                                    round_.round, now)});
    write.stages.push_back(
        {state.serving_version,
         StageOf(v1::ROLLOUT_STAGE_RETIRED,
                 absl::StrCat("retired: rollback to v", to_version, " as v", next.version()),
                 round_.round, now)});
    if (state.candidate_version != 0) {
      write.stages.push_back(
          {state.candidate_version,
           StageOf(v1::ROLLOUT_STAGE_ROLLED_BACK,
                   absl::StrCat("rolled back: rollback by ", audit.actor, " to v", to_version,
                                " as v", next.version()),
                   round_.round, now)});
    }
  }
  if (absl::Status s = store_->CommitRestoredVersion(abandon, now, next, &audit, write);
      !s.ok()) {
    return failed(s);
  }
  // The copy carries the optimizer state of the version it copies (the
  // store wrote it with the copy).
  OptimizerState copied_state = StoredStateOrEmpty(next.version());

  // Callers of the abandoned round's writes still in flight: those writes
  // were queued after the rollback's and fail (the round is abandoned).
  std::vector<SubmitDone> aborted;
  {
    absl::MutexLock lock(&mu_);
    rolling_back_ = false;
    latest_ = next;
    latest_head_ = *head;
    latest_state_ = std::move(copied_state);
    rollout_.ServeNow(next.version());
    TrimModelCacheLocked();
    PublishRolloutLocked();
    for (auto& [device, entry] : updates_) {
      for (SubmitDone& done : entry.waiters) aborted.push_back(std::move(done));
    }
    for (auto& [device, task] : evaluation_tasks_) {
      for (SubmitDone& done : task.waiters) aborted.push_back(std::move(done));
    }
    ClearRoundLocked();
    open_ = false;
    if (abandon != 0) {
      round_.state = RoundState::kAbandoned;
      round_.closed_ms = now;
    }
    idle_ = true;
  }
  if (abandon != 0 && metrics_ != nullptr) metrics_->rounds_abandoned.Add();
  spdlog::warn("rolled back to version {} as version {} by {}; {}", to_version, next.version(),
               audit.actor, abandon != 0 ? absl::StrCat("abandoned round ", abandon)
                                         : std::string("no round was open"));
  for (SubmitDone& done : aborted) {
    done(absl::AbortedError(absl::StrCat("round ", abandon,
                                         " was abandoned by a rollback while this update was "
                                         "being recorded; check in again")));
  }
  if (absl::Status s = OpenRoundIfIdle(); !s.ok()) {
    // The rollback stands; the server waits for a resume or a restart.
    spdlog::error("after the rollback to version {}: {}", to_version, s.ToString());
  }
  return result;
}

void RoundManager::WaitIdle() {
  absl::MutexLock lock(&mu_);
  mu_.Await(absl::Condition(+[](bool* closing) { return !*closing; }, &closing_));
}

absl::StatusOr<v1::ModelVersion> RoundManager::GetModel(uint32_t version) {
  {
    absl::MutexLock lock(&mu_);
    if (version == 0 || version == latest_.version()) {
      v1::ModelVersion model = latest_;
      model.clear_aggregation();  // for operators and auditors only
      return model;
    }
    if (version > latest_.version()) {
      return absl::NotFoundError(absl::StrCat("no model version ", version, " (latest is ",
                                              latest_.version(), ")"));
    }
  }
  absl::StatusOr<v1::ModelVersion> model = store_->GetVersion(version);
  if (model.ok()) {
    // For operators and auditors only (model.proto).
    model->clear_rollout();
    model->clear_aggregation();
  }
  return model;
}

OptimizerState RoundManager::StoredStateOrEmpty(uint32_t version) {
  absl::StatusOr<v1::AggregationState> stored = store_->AggregationStateOf(version);
  absl::StatusOr<OptimizerState> state =
      stored.ok() ? OptimizerStateFromProto(*stored, values_) : stored.status();
  if (!state.ok()) {
    spdlog::error("could not read the optimizer state of version {}: {}; the next round starts "
                  "from an empty one", version, state.status().ToString());
    return OptimizerState();
  }
  return *std::move(state);
}

bool RoundManager::BudgetSpent(double rho_spent) const {
  if (!privacy_.enabled() || privacy_.epsilon_budget <= 0) return false;
  return RoundsWithinBudget(rho_spent, rho_per_round_, privacy_.epsilon_budget,
                            privacy_.delta) == 0;
}

void RoundManager::PublishPrivacyLocked() {
  if (metrics_ == nullptr) return;
  metrics_->SetPrivacy(privacy_.enabled() ? EpsilonFromRho(rho_spent_, privacy_.delta) : 0,
                       budget_spent_);
}

void RoundManager::WarnBudgetSpentLocked() {
  spdlog::warn("privacy budget spent: epsilon {} of {} at delta {} over {} noised versions; no "
               "round opens (models are still served)",
               EpsilonFromRho(rho_spent_, privacy_.delta), privacy_.epsilon_budget,
               privacy_.delta, noised_versions_);
}

v1::Aggregation RoundManager::AggregationInForce() const {
  v1::Aggregation record;
  RecordStrategyParams(params_, &record);
  if (privacy_.enabled()) {
    absl::MutexLock lock(&mu_);
    record.set_noise_sigma(privacy_.sigma);
    record.set_sensitivity(RoundSensitivity(privacy_.norm_bound, values_));
    record.set_rho(rho_per_round_);
    record.set_rho_spent(rho_spent_);
    record.set_epsilon_spent(EpsilonFromRho(rho_spent_, privacy_.delta));
    record.set_delta(privacy_.delta);
  }
  return record;
}

v1::PrivacyStatus RoundManager::PrivacyInForce() const {
  v1::PrivacyStatus status;
  if (!privacy_.enabled()) return status;
  absl::MutexLock lock(&mu_);
  status.set_enabled(true);
  status.set_noise_multiplier(static_cast<double>(privacy_.noise_multiplier_q16) / 65536.0);
  status.set_delta(privacy_.delta);
  status.set_epsilon_spent(EpsilonFromRho(rho_spent_, privacy_.delta));
  status.set_epsilon_budget(privacy_.epsilon_budget);
  status.set_noised_versions(noised_versions_);
  if (privacy_.epsilon_budget > 0) {
    status.set_rounds_left(RoundsWithinBudget(rho_spent_, rho_per_round_,
                                              privacy_.epsilon_budget, privacy_.delta));
  }
  status.set_budget_spent(budget_spent_);
  return status;
}

RoundSnapshot RoundManager::Snapshot() const {
  absl::MutexLock lock(&mu_);
  RoundSnapshot s;
  s.round = round_.round;
  s.base_version = round_.base_version;
  s.open = open_;
  s.tasks_issued = static_cast<uint32_t>(tasks_.size());
  s.tasks_limit = task_limit_;
  s.accepted = accepted_;
  s.pending = pending_;
  s.target_updates = config_.policy().target_updates();
  s.min_updates = config_.policy().min_updates();
  s.opened_ms = round_.opened_ms;
  s.deadline_ms = round_.deadline_ms;
  s.time_left_ms =
      idle_ ? 0 : std::max<int64_t>(0, deadline_monotonic_ms_ - clock_->MonotonicMs());
  s.latest_version = latest_.version();
  s.rejected = rejected_;
  s.paused = pause_.paused;
  return s;
}

RolloutSnapshot RoundManager::Rollout() const {
  absl::MutexLock lock(&mu_);
  RolloutSnapshot s;
  s.state = rollout_.state();
  s.serving_window = rollout_.Window(s.state.serving_version, round_.round).ToProto();
  s.alerts = rollout_.alerts();
  s.canary_fraction = rollout_.settings().canary_fraction;
  s.enabled = rollout_.settings().enabled;
  return s;
}

absl::StatusOr<std::shared_ptr<const v1::ModelVersion>> RoundManager::DeviceModelLocked(
    uint32_t version) {
  if (auto it = device_models_.find(version); it != device_models_.end()) return it->second;
  v1::ModelVersion stored;
  if (version == latest_.version()) {
    stored = latest_;
  } else {
    // A short read under the lock, once per version: the cache serves the
    // rest of the fleet.
    absl::StatusOr<v1::ModelVersion> read = store_->GetVersion(version);
    if (!read.ok()) return read.status();
    stored = std::move(*read);
  }
  auto model = std::make_shared<v1::ModelVersion>();
  model->set_version(stored.version());
  *model->mutable_spec() = stored.spec();
  model->set_weights(stored.weights());
  model->set_bias(stored.bias());
  model->set_checksum(stored.checksum());
  device_models_[version] = model;
  return std::shared_ptr<const v1::ModelVersion>(std::move(model));
}

void RoundManager::PublishRolloutLocked() {
  if (metrics_ == nullptr) return;
  const RolloutState& state = rollout_.state();
  metrics_->SetRollout(state.serving_version, state.candidate_version, rollout_.alerts().size(),
                       rollout_.Window(state.serving_version, round_.round));
}

void RoundManager::TrimModelCacheLocked() {
  const RolloutState& state = rollout_.state();
  absl::erase_if(device_models_, [&](const auto& entry) {
    return entry.first != state.serving_version && entry.first != state.candidate_version;
  });
}

bool RoundManager::EvaluationTaskLocked(const v1::CheckInRequest& request, uint32_t declared,
                                        int64_t now_monotonic_ms,
                                        v1::CheckInResponse* response) {
  const uint32_t candidate = rollout_.state().candidate_version;
  if (candidate == 0) return false;
  // Only to a device that sends a ServingState: it takes part in the
  // serving loop, so its SDK knows evaluation-only tasks. A training-only
  // device on an older SDK would ignore evaluate_only and train.
  if (!request.has_serving()) return false;
  const std::string& device = request.device_id();
  auto it = evaluation_tasks_.find(device);
  if (it == evaluation_tasks_.end()) {
    // The canary reports on the candidate with its check-ins; a task would
    // count it twice in the round's budget for nothing.
    if (rollout_.MeantVersion(device) == candidate) return false;
    if (!rollout_.TakeEvaluationTask(round_.round)) return false;
    EvaluationTask task;
    task.token.resize(16);
    for (char& ch : task.token) ch = static_cast<char>(absl::Uniform<uint8_t>(token_bits_));
    task.declared_samples = declared;
    it = evaluation_tasks_.emplace(device, std::move(task)).first;
  } else if (!it->second.payload.empty()) {
    return false;  // already reported in this round
  }
  absl::StatusOr<std::shared_ptr<const v1::ModelVersion>> model = DeviceModelLocked(candidate);
  if (!model.ok()) {
    spdlog::error("could not read candidate version {} for an evaluation task: {}", candidate,
                  model.status().ToString());
    return false;
  }
  v1::RoundTask* task = response->mutable_task();
  task->set_round(round_.round);
  task->set_task_token(it->second.token);
  *task->mutable_model() = **model;
  const int64_t left = deadline_monotonic_ms_ - now_monotonic_ms;
  task->set_deadline_ms(left > 0 ? static_cast<uint32_t>(left) : 0);
  task->set_evaluate_only(true);
  return true;
}

bool RoundManager::SubmitEvaluationOnly(const v1::Update& update, SubmitDone& done) {
  const std::string& device = update.device_id();
  absl::Status rejection;
  std::optional<v1::UpdateAck> ack;
  uint32_t round = 0;
  std::string payload;
  {
    absl::MutexLock lock(&mu_);
    auto it = evaluation_tasks_.find(device);
    const bool current = it != evaluation_tasks_.end() && update.round() == round_.round &&
                         !idle_ && it->second.token == update.task_token();
    if (!current) {
      // The same evaluation-only bytes again after their round closed: the
      // training path's validation would refuse them, so answer here.
      auto previous = previous_updates_.find(device);
      if (previous_round_ == 0 || update.round() != previous_round_ ||
          previous == previous_updates_.end() || update.sample_count() != 0 ||
          previous->second != Serialize(update)) {
        return false;
      }
      ack = MakeAckLocked(previous_round_);
    } else {
      EvaluationTask& task = it->second;
      payload = Serialize(update);
      if (absl::Status s = ValidateEvaluationOnlyUpdate(update, rollout_.state().candidate_version);
          !s.ok()) {
        rejection = std::move(s);
      } else if (task.declared_samples != 0 &&
                 update.evaluation().samples() > task.declared_samples) {
        rejection = absl::InvalidArgumentError(absl::StrCat(
            "evaluation.samples ", update.evaluation().samples(), " is above the ",
            task.declared_samples, " samples ", device, " declared at check-in"));
      } else if (!task.payload.empty()) {
        if (task.payload != payload) {
          rejection = absl::AlreadyExistsError(absl::StrCat(
              device, " already submitted a different evaluation in round ", round_.round));
        } else if (task.durable) {
          ack = MakeAckLocked(round_.round);
        } else {
          task.waiters.push_back(std::move(done));  // answered with the first write
          return true;
        }
      } else if (store_->PendingWrites() >= config_.max_pending_writes()) {
        rejection = WithRetryHint(
            absl::ResourceExhaustedError("too many writes waiting to be stored; retry later"), 200);
      } else {
        task.payload = payload;
        task.waiters.push_back(std::move(done));
        ++evaluations_pending_;
        round = round_.round;
        rollout_.RecordEvaluation(round, device, update.evaluation());
      }
    }
  }
  if (ack) {
    done(std::move(*ack));
    return true;
  }
  if (!rejection.ok()) {
    CountRejected();
    rejections_.Warn("update", device, rejection, clock_->MonotonicMs());
    done(std::move(rejection));
    return true;
  }
  store_->AppendEvaluation(
      round, device, update.evaluation(), [this, round, device](absl::Status status) {
        std::vector<SubmitDone> waiters;
        absl::StatusOr<v1::UpdateAck> result;
        {
          absl::MutexLock lock(&mu_);
          auto it = evaluation_tasks_.find(device);
          // A rollback answered its waiters (ABORTED) and dropped the task.
          if (round != round_.round || idle_ || it == evaluation_tasks_.end()) return;
          waiters.swap(it->second.waiters);
          --evaluations_pending_;
          if (status.ok()) {
            it->second.durable = true;
            result = MakeAckLocked(round);
          } else {
            it->second.payload.clear();
            spdlog::error("could not store the evaluation of {} in round {}: {}", device, round,
                          status.ToString());
            result = WithRetryHint(
                absl::UnavailableError("could not store the evaluation; retry"), 1000);
          }
        }
        for (SubmitDone& waiter : waiters) waiter(result);
      });
  return true;
}

void RoundManager::ReportAlerts(const std::vector<v1::Alert>& before,
                                const std::vector<v1::Alert>& after) {
  const auto same = [](const v1::Alert& a, const v1::Alert& b) {
    return a.kind() == b.kind() && a.model_version() == b.model_version() &&
           a.raised_round() == b.raised_round();
  };
  for (const v1::Alert& a : after) {
    if (std::none_of(before.begin(), before.end(), [&](const v1::Alert& b) { return same(a, b); })) {
      spdlog::warn("alert raised: {} on version {} in round {}: {}", a.kind(), a.model_version(),
                   a.raised_round(), a.message());
    }
  }
  for (const v1::Alert& b : before) {
    if (std::none_of(after.begin(), after.end(), [&](const v1::Alert& a) { return same(a, b); })) {
      spdlog::warn("alert cleared: {} on version {} (raised in round {})", b.kind(),
                   b.model_version(), b.raised_round());
    }
  }
}

std::optional<std::pair<v1::ModelVersion, Head>> RoundManager::CloseRollout(
    uint32_t round, const v1::ModelVersion* committed, int64_t now) {
  RolloutWrite write;
  bool changed = false;
  uint32_t candidate = 0;
  std::vector<v1::Alert> before;
  {
    absl::MutexLock lock(&mu_);
    before = rollout_.alerts();
    if (committed != nullptr) {
      const RolloutState old = rollout_.state();
      const uint32_t v = committed->version();
      absl::StatusOr<std::shared_ptr<const v1::ModelVersion>> serving =
          DeviceModelLocked(old.serving_version);
      if (!serving.ok()) {
        spdlog::error("could not read serving version {}: {}; taking v{} as different",
                      old.serving_version, serving.status().ToString(), v);
      }
      // Unreadable: the canary's evaluations decide, as for any candidate.
      const bool differs = !serving.ok() || (*serving)->checksum() != committed->checksum();
      const RolloutDecision d = rollout_.OnCommitted(v, differs);
      const RolloutState& now_state = rollout_.state();
      if (d.kind == RolloutDecision::Kind::kPromoted) {
        write.stages.push_back({v, StageOf(v1::ROLLOUT_STAGE_SERVING, d.reason, round, now)});
        write.stages.push_back({old.serving_version,
                                StageOf(v1::ROLLOUT_STAGE_RETIRED,
                                        absl::StrCat("retired: v", v, " promoted"), round, now)});
        spdlog::info("round {}: version {} serves ({})", round, v, d.reason);
      } else if (now_state.candidate_version == v && old.candidate_version != v) {
        write.stages.push_back(
            {v, StageOf(v1::ROLLOUT_STAGE_CANDIDATE,
                        absl::StrCat("candidate: in canary (", rollout_.settings().canary_fraction,
                                     " of the fleet) against serving v", old.serving_version),
                        round, now)});
        spdlog::info("round {}: version {} is the candidate, in canary against serving v{}",
                     round, v, old.serving_version);
      } else {
        write.stages.push_back(
            {v, StageOf(v1::ROLLOUT_STAGE_TRAINED,
                        differs ? absl::StrCat("skipped: v", old.candidate_version,
                                               " was in canary")
                                : absl::StrCat("skipped: same weights as serving v",
                                               old.serving_version),
                        round, now)});
        // Waiting for the candidate's decision below, which may make it the
        // next candidate at this same close.
        spdlog::info("round {}: version {} {}", round, v,
                     differs ? absl::StrCat("waits: v", old.candidate_version, " is in canary")
                             : std::string("skipped: same weights as the serving one"));
      }
      changed = true;
    }
    candidate = rollout_.state().candidate_version;
  }
  v1::FleetEvaluation candidate_fleet;
  if (candidate != 0) {
    absl::StatusOr<v1::FleetEvaluation> fleet = store_->FleetEvaluationOf(candidate);
    if (fleet.ok()) {
      candidate_fleet = std::move(*fleet);
    } else {
      // No evidence this round: the decision waits for a later close.
      spdlog::error("could not read the evaluations of candidate v{}: {}", candidate,
                    fleet.status().ToString());
      candidate = 0;
    }
  }
  RolloutDecision decision;
  std::vector<v1::Alert> after;
  uint32_t latest = 0;
  std::shared_ptr<const v1::ModelVersion> serving_model;
  bool baseline_set = false;
  {
    absl::MutexLock lock(&mu_);
    const RolloutState old = rollout_.state();
    if (candidate != 0 || old.candidate_version == 0) {
      decision = rollout_.OnRoundClosed(round, now, EvaluationSums::FromProto(candidate_fleet));
    }
    after = rollout_.alerts();
    const RolloutState& state = rollout_.state();
    baseline_set = decision.kind == RolloutDecision::Kind::kNone &&
                   old.baseline.devices == 0 && state.baseline.devices != 0;
    latest = committed != nullptr ? committed->version() : latest_.version();
    if (decision.kind == RolloutDecision::Kind::kPromoted) {
      v1::Rollout r = StageOf(v1::ROLLOUT_STAGE_SERVING, decision.reason, round, now);
      *r.mutable_at_promotion() = decision.candidate.ToProto();
      write.stages.push_back({decision.version, r});
      write.stages.push_back(
          {decision.previous_serving,
           StageOf(v1::ROLLOUT_STAGE_RETIRED,
                   absl::StrCat("retired: v", decision.version, " promoted"), round, now)});
      spdlog::info("round {}: {} (v{})", round, decision.reason, decision.version);
      changed = true;
      // The version this close committed waited only because the promoted
      // one was in canary: it is the next candidate now, not a round later
      // (so a candidate is in canary every round, not every other one).
      if (committed != nullptr && committed->version() != decision.version &&
          state.candidate_version == 0) {
        const uint32_t v = committed->version();
        absl::StatusOr<std::shared_ptr<const v1::ModelVersion>> serving =
            DeviceModelLocked(state.serving_version);
        const bool differs = !serving.ok() || (*serving)->checksum() != committed->checksum();
        rollout_.OnCommitted(v, differs);
        if (rollout_.state().candidate_version == v) {
          write.stages.push_back(
              {v, StageOf(v1::ROLLOUT_STAGE_CANDIDATE,
                          absl::StrCat("candidate: in canary (",
                                       rollout_.settings().canary_fraction,
                                       " of the fleet) against serving v", state.serving_version),
                          round, now)});
          spdlog::info("round {}: version {} is the candidate, in canary against serving v{}",
                       round, v, state.serving_version);
        }
      }
    } else if (decision.kind == RolloutDecision::Kind::kRolledBack) {
      absl::StatusOr<std::shared_ptr<const v1::ModelVersion>> model =
          DeviceModelLocked(state.serving_version);
      if (model.ok()) {
        serving_model = *model;
      } else {
        spdlog::error("could not read serving version {} to restart training from it: {}",
                      state.serving_version, model.status().ToString());
      }
      changed = true;
    }
    TrimModelCacheLocked();
    PublishRolloutLocked();
    write.serving_version = state.serving_version;
    write.candidate_version = state.candidate_version;
  }
  ReportAlerts(before, after);
  if (baseline_set) {
    // The serving version's first full window becomes its baseline
    // (rollout.h): stored so that a restart keeps it.
    absl::StatusOr<v1::ModelVersion> stored = store_->GetVersion(write.serving_version);
    if (stored.ok()) {
      v1::Rollout r = stored->rollout();
      absl::MutexLock lock(&mu_);
      *r.mutable_at_promotion() = rollout_.state().baseline.ToProto();
      write.stages.push_back({write.serving_version, r});
      changed = true;
    }
  }
  std::optional<std::pair<v1::ModelVersion, Head>> restarted;
  if (decision.kind == RolloutDecision::Kind::kRolledBack && serving_model != nullptr) {
    v1::ModelVersion copy;
    copy.set_version(latest + 1);
    copy.set_parent_version(latest);
    copy.set_round(0);
    copy.set_restored_from(serving_model->version());
    *copy.mutable_spec() = serving_model->spec();
    copy.set_weights(serving_model->weights());
    copy.set_bias(serving_model->bias());
    copy.set_checksum(serving_model->checksum());
    copy.set_created_unix_ms(now);
    const std::string restart =
        absl::StrCat("; training restarts from v", serving_model->version(), " as v", latest + 1);
    write.stages.push_back({decision.version,
                            StageOf(v1::ROLLOUT_STAGE_ROLLED_BACK,
                                    absl::StrCat(decision.reason, restart), round, now)});
    write.stages.push_back(
        {copy.version(),
         StageOf(v1::ROLLOUT_STAGE_TRAINED,
                 absl::StrCat("copy of serving v", serving_model->version(),
                              ": training restarts from it after v", decision.version,
                              " was rolled back"),
                 round, now)});
    absl::StatusOr<Head> head = LoadHead(copy);
    absl::Status s = head.ok() ? store_->CommitRestoredVersion(0, now, copy, nullptr, write)
                               : head.status();
    if (s.ok()) {
      spdlog::info("round {}: {}{}", round, decision.reason, restart);
      restarted.emplace(std::move(copy), std::move(*head));
      return restarted;
    }
    spdlog::error("round {}: {}; could not commit the copy of v{}: {}", round, decision.reason,
                  serving_model->version(), s.ToString());
    write.stages.pop_back();
    write.stages.back().second.set_reason(decision.reason);
  } else if (decision.kind == RolloutDecision::Kind::kRolledBack) {
    write.stages.push_back({decision.version, StageOf(v1::ROLLOUT_STAGE_ROLLED_BACK,
                                                      decision.reason, round, now)});
  }
  if (changed) {
    if (absl::Status s = store_->WriteRollout(write, nullptr); !s.ok()) {
      spdlog::error("round {}: could not store the rollout's stages: {}", round, s.ToString());
    }
  }
  return restarted;
}

absl::StatusOr<RoundManager::PromoteResult> RoundManager::Promote(uint32_t version,
                                                                   AuditEntry audit) {
  if (version == 0) return absl::InvalidArgumentError("promote: version 0 is not a version");
  absl::MutexLock control(&control_mu_);
  RolloutWrite write;
  PromoteResult result;
  const int64_t now = clock_->NowMs();
  const std::string reason = audit.detail;
  {
    absl::MutexLock lock(&mu_);
    if (closing_) {
      return absl::FailedPreconditionError(absl::StrCat(
          "promote: round ", round_.round, " is being closed; try again in a moment"));
    }
    if (version > latest_.version()) {
      return absl::NotFoundError(absl::StrCat("promote: no model version ", version,
                                              " (latest is ", latest_.version(), ")"));
    }
    const RolloutState& state = rollout_.state();
    if (version == state.serving_version) {
      return absl::FailedPreconditionError(
          absl::StrCat("promote: version ", version, " already serves"));
    }
    result.previous_serving = state.serving_version;
    write.serving_version = version;
    write.stages.push_back(
        {version, StageOf(v1::ROLLOUT_STAGE_SERVING,
                          absl::StrCat("promoted by ", audit.actor, reason.empty() ? "" : ": ",
                                       reason),
                          round_.round, now)});
    write.stages.push_back({state.serving_version,
                            StageOf(v1::ROLLOUT_STAGE_RETIRED,
                                    absl::StrCat("retired: v", version, " promoted by ",
                                                 audit.actor),
                                    round_.round, now)});
    if (state.candidate_version != 0 && state.candidate_version != version) {
      write.stages.push_back({state.candidate_version,
                              StageOf(v1::ROLLOUT_STAGE_ROLLED_BACK,
                                      absl::StrCat("rolled back: v", version, " promoted by ",
                                                   audit.actor),
                                      round_.round, now)});
    }
  }
  audit.action = "promote";
  audit.detail = absl::StrCat("version ", version, " serves (was ", result.previous_serving, ")",
                              reason.empty() ? "" : "; reason: ", reason);
  if (absl::Status s = store_->WriteRollout(write, &audit); !s.ok()) return s;
  std::vector<v1::Alert> before, after;
  {
    absl::MutexLock lock(&mu_);
    before = rollout_.alerts();
    rollout_.ServeNow(version);
    after = rollout_.alerts();
    TrimModelCacheLocked();
    PublishRolloutLocked();
  }
  spdlog::info("version {} promoted by {} (was {})", version, audit.actor,
               result.previous_serving);
  ReportAlerts(before, after);
  absl::StatusOr<v1::ModelVersion> promoted = store_->GetVersion(version);
  if (!promoted.ok()) return promoted.status();
  promoted->clear_weights();
  promoted->clear_bias();
  result.version = std::move(*promoted);
  return result;
}

}  // namespace tinyfed::server
