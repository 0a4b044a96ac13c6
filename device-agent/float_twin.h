// The float twin: the SDK's training algorithm in double precision.
//
// Same model (logits = W x + b on dequantized features), same loss (softmax
// cross-entropy), same optimiser (mini-batch SGD, gradient averaged over the
// batch, applied at the end of each batch) and the same batches in the same
// order (the SDK's shuffle stream from tinyfed_common/prng.h). It differs
// only in arithmetic: no fixed point, no stochastic rounding, no int8 delta.
// Tests use it to measure what integer training costs; the agent uses it
// for the centralized float baseline.
//
// FloatTwin requires external synchronization.
#ifndef TINYFED_DEVICE_AGENT_FLOAT_TWIN_H_
#define TINYFED_DEVICE_AGENT_FLOAT_TWIN_H_

#include <cstdint>
#include <vector>

#include <Eigen/Dense>

namespace tinyfed {

struct FloatPlan {
  uint32_t epochs = 1;
  uint32_t batch_size = 1;
  double learning_rate = 0.1;
  uint32_t seed = 0;
  uint32_t device_hash = 0;  // CRC-32 of the device id, as the SDK mixes in
};

// Samples with real-valued features: row i of `features` is sample i.
struct FloatDataset {
  Eigen::MatrixXd features;     // count x feature_count
  std::vector<uint8_t> labels;  // count, each < class_count
};

class FloatTwin {
 public:
  // A head of `classes` x `features`, all zeros.
  FloatTwin(int features, int classes);

  Eigen::MatrixXd& weights() { return weights_; }  // classes x features
  Eigen::VectorXd& bias() { return bias_; }        // classes
  const Eigen::MatrixXd& weights() const { return weights_; }
  const Eigen::VectorXd& bias() const { return bias_; }

  // Trains in place. REQUIRES: data non-empty, features match, labels in
  // range, plan.batch_size >= 1. Returns the mean loss of the last epoch.
  double Train(const FloatPlan& plan, const FloatDataset& data);

  // Index of the largest logit (lowest index on ties).
  int Classify(const Eigen::Ref<const Eigen::VectorXd>& x) const;

  // Fraction of samples classified correctly, and mean cross-entropy.
  double Accuracy(const FloatDataset& data) const;
  double MeanLoss(const FloatDataset& data) const;

 private:
  Eigen::MatrixXd weights_;
  Eigen::VectorXd bias_;
};

}  // namespace tinyfed

#endif  // TINYFED_DEVICE_AGENT_FLOAT_TWIN_H_
