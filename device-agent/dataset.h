// Datasets for `tinyfed-agent simulate`: loading (the UCI digits set from
// the set-up cache, or any CSV), a stratified train/test split, feature
// standardization and int8 quantization, and partitions over devices.
// Pure functions: safe for concurrent use.
#ifndef TINYFED_DEVICE_AGENT_DATASET_H_
#define TINYFED_DEVICE_AGENT_DATASET_H_

#include <cstdint>
#include <string>
#include <vector>

#include <Eigen/Core>

#include "absl/status/statusor.h"

namespace tinyfed::agent {

// Real-valued samples with class labels 0..classes-1.
struct Dataset {
  int features = 0;
  int classes = 0;
  Eigen::MatrixXd x;             // samples x features
  std::vector<uint8_t> y;        // samples
  std::vector<std::string> class_names;  // original label text, by class index
  int header_line = 0;           // CSV: the line skipped as a header (1-based), 0 if none
  size_t size() const { return y.size(); }
};

enum class LabelColumn { kFirst, kLast };

// Whether the first line that is neither blank nor a comment is a header
// of column names rather than a sample.
enum class CsvHeader {
  // A header when it has two fields or more and none of them is a number
  // (a sample has numbers in every field). A line with some numbers and
  // some words is read as a sample and fails naming the field, so a typo
  // in the first sample is never dropped in silence.
  kDetect,
  kPresent,  // the line is skipped whatever it holds
  kAbsent,   // the line is a sample
};

struct CsvFormat {
  LabelColumn label = LabelColumn::kLast;
  char delimiter = ',';  // see ParseCsvDelimiter() for those allowed
  CsvHeader header = CsvHeader::kDetect;
};

// One sample per line: numeric features and an integer label, separated by
// `format.delimiter` (blank lines and lines starting with '#' skipped;
// whitespace around a field ignored, except the delimiter itself), after an
// optional header line (format.header). Labels are mapped to 0..C-1 in
// increasing numeric order. NOT_FOUND when the file cannot be read;
// INVALID_ARGUMENT naming "path:line" and the problem for a non-numeric
// field, a non-integer label, a row of another width, fewer than 2 classes,
// more than 32 classes, more than 4096 / classes features, or no samples.
// The header's width is not checked: a quoted name may hold the delimiter.
absl::StatusOr<Dataset> LoadCsv(const std::string& path, const CsvFormat& format);
// The same with commas and the header detected.
absl::StatusOr<Dataset> LoadCsv(const std::string& path, LabelColumn label);

// A delimiter as a user writes it: one character, or "tab" or "\t" (a
// backslash and a 't') for a tab. INVALID_ARGUMENT for anything longer, and
// for characters that belong to numbers or lines: letters, digits, '.',
// '+', '-', '#', '"', a line break.
absl::StatusOr<char> ParseCsvDelimiter(const std::string& text);

// The UCI hand-written digits (1797 samples, 64 features 0..16, 10 classes)
// as the set-up step caches them: `data_dir`/digits.csv. NOT_FOUND, saying
// to run deploy/setup.sh, when it is missing.
absl::StatusOr<Dataset> LoadDigits(const std::string& data_dir);

// Where the set-up step caches datasets: $TINYFED_DATA_DIR, else
// $XDG_CACHE_HOME/tinyfed, else $HOME/.cache/tinyfed.
std::string DefaultDataDir();

struct Split {
  Dataset train;
  Dataset test;
};

// Stratified split: each class contributes round(test_fraction * its
// count) samples to the test set (at least one when it has two or more),
// chosen by a seeded shuffle. INVALID_ARGUMENT unless 0 < test_fraction < 1
// and both sides end up non-empty.
absl::StatusOr<Split> StratifiedSplit(const Dataset& data, double test_fraction, uint64_t seed);

// Features standardized with the training split's mean and standard
// deviation (a constant feature becomes 0), then quantized to int8 with
// zero point 0 and scale clip_sigma / 127 (values beyond +-clip_sigma
// saturate). `train_real` / `test_real` hold the dequantized values, i.e.
// exactly what a device's int8 features represent.
struct QuantizedSplit {
  int features = 0;
  int classes = 0;
  double scale = 0;
  int32_t zero_point = 0;
  std::vector<int8_t> train_x, test_x;   // row-major, samples x features
  std::vector<uint8_t> train_y, test_y;
  Eigen::MatrixXd train_real, test_real;
};
QuantizedSplit StandardizeAndQuantize(const Split& split, double clip_sigma = 4.0);

// Sample indices per device. IID: a seeded shuffle dealt round-robin.
// Dirichlet(alpha): for each class, proportions over devices drawn from
// Dirichlet(alpha) split that class's samples; afterwards every device
// holds at least one sample (taken from the largest shards).
// INVALID_ARGUMENT when devices is 0 or exceeds the number of samples, or
// alpha <= 0.
absl::StatusOr<std::vector<std::vector<uint32_t>>> PartitionIid(size_t samples, size_t devices,
                                                                uint64_t seed);
absl::StatusOr<std::vector<std::vector<uint32_t>>> PartitionDirichlet(
    const std::vector<uint8_t>& labels, int classes, size_t devices, double alpha, uint64_t seed);

// Drift: the world changing under part of the fleet (`simulate --drift`).
// From round `round` of a run on, a seeded `fraction` of the devices see
// changed data, of one of two kinds:
// - label-swap: labels of classes 0 and 1 (the first two class indices:
//   the digits "0" and "1") are exchanged, as if the meaning of two
//   classes moved; features are untouched.
// - feature-shift: kFeatureShiftSteps is added to every int8 feature,
//   saturating at 127 (the quantized range is [-127, 127]), as a sensor
//   whose offset moved; labels are untouched.
enum class DriftKind { kLabelSwap, kFeatureShift };

// Two standard deviations of a standardized feature at the default
// clipping (4 sigma over 127 steps). A shift of every feature alike mostly
// moves each logit by a constant: one deviation (32 steps) left a digits
// head's fleet accuracy where it was (0.948 -> 0.942); two take it to
// about 0.90 and make the versions trained on it worse, which the rollout
// then refuses.
inline constexpr int kFeatureShiftSteps = 64;

struct DriftSpec {
  uint32_t round = 0;     // >= 1
  double fraction = 0;    // in (0, 1]
  DriftKind kind = DriftKind::kLabelSwap;
};

// Parses "round=R,fraction=F,kind=label-swap|feature-shift" (each key once,
// in any order, all three required). INVALID_ARGUMENT naming the part:
// "--drift: fraction must be in (0, 1], got 1.5", "--drift: unknown key
// 'rounds'", "--drift: missing kind", ...
absl::StatusOr<DriftSpec> ParseDriftSpec(const std::string& text);

// Applies `kind` in place to `count` samples (row-major features of
// `features` each, and their labels). Pure; safe for concurrent use.
void ApplyDrift(DriftKind kind, int features, size_t count, int8_t* x, uint8_t* y);

}  // namespace tinyfed::agent

#endif  // TINYFED_DEVICE_AGENT_DATASET_H_
