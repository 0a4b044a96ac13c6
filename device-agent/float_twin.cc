#include "float_twin.h"

#include <cmath>

#include "tinyfed_common/prng.h"

namespace tinyfed {
namespace {

// Softmax probabilities of one sample, computed stably.
Eigen::VectorXd Softmax(const Eigen::VectorXd& logits) {
  Eigen::VectorXd e = (logits.array() - logits.maxCoeff()).exp();
  return e / e.sum();
}

}  // namespace

FloatTwin::FloatTwin(int features, int classes)
    : weights_(Eigen::MatrixXd::Zero(classes, features)),
      bias_(Eigen::VectorXd::Zero(classes)) {}

double FloatTwin::Train(const FloatPlan& plan, const FloatDataset& data) {
  const auto count = static_cast<uint32_t>(data.labels.size());
  tinyfed_prng_t shuffle;
  tinyfed_prng_seed(&shuffle, plan.seed, plan.device_hash,
                    TINYFED_STREAM_SHUFFLE);
  Eigen::MatrixXd grad_w(weights_.rows(), weights_.cols());
  Eigen::VectorXd grad_b(bias_.size());
  double loss_sum = 0.0;
  for (uint32_t epoch = 0; epoch < plan.epochs; ++epoch) {
    const bool last_epoch = epoch + 1 == plan.epochs;
    tinyfed_permutation_t perm;
    tinyfed_permutation_init(&perm, count, &shuffle);
    for (uint32_t start = 0; start < count; start += plan.batch_size) {
      const uint32_t batch = std::min(plan.batch_size, count - start);
      grad_w.setZero();
      grad_b.setZero();
      for (uint32_t j = 0; j < batch; ++j) {
        const uint32_t idx = tinyfed_permutation_next(&perm);
        const Eigen::VectorXd x = data.features.row(idx).transpose();
        Eigen::VectorXd p = Softmax(weights_ * x + bias_);
        if (last_epoch) loss_sum -= std::log(p(data.labels[idx]));
        p(data.labels[idx]) -= 1.0;
        grad_w.noalias() += p * x.transpose();
        grad_b += p;
      }
      const double step = plan.learning_rate / batch;
      weights_ -= step * grad_w;
      bias_ -= step * grad_b;
    }
  }
  return loss_sum / count;
}

int FloatTwin::Classify(const Eigen::Ref<const Eigen::VectorXd>& x) const {
  const Eigen::VectorXd logits = weights_ * x + bias_;
  Eigen::Index best = 0;
  for (Eigen::Index c = 1; c < logits.size(); ++c) {
    if (logits(c) > logits(best)) best = c;
  }
  return static_cast<int>(best);
}

double FloatTwin::Accuracy(const FloatDataset& data) const {
  if (data.labels.empty()) return 0.0;
  size_t correct = 0;
  for (size_t i = 0; i < data.labels.size(); ++i) {
    const Eigen::VectorXd x = data.features.row(static_cast<Eigen::Index>(i)).transpose();
    if (Classify(x) == data.labels[i]) ++correct;
  }
  return static_cast<double>(correct) / static_cast<double>(data.labels.size());
}

double FloatTwin::MeanLoss(const FloatDataset& data) const {
  if (data.labels.empty()) return 0.0;
  double sum = 0.0;
  for (size_t i = 0; i < data.labels.size(); ++i) {
    const Eigen::VectorXd x = data.features.row(static_cast<Eigen::Index>(i)).transpose();
    sum -= std::log(Softmax(weights_ * x + bias_)(data.labels[i]));
  }
  return sum / static_cast<double>(data.labels.size());
}

}  // namespace tinyfed
