#include "privacy.h"

#include <limits>

namespace tinyfed::server {

OsRandomSource::~OsRandomSource() = default;

absl::Status OsRandomSource::Fill(absl::Span<uint8_t>) {
  return absl::UnimplementedError("OsRandomSource: not yet");
}

absl::StatusOr<int64_t> SampleDiscreteGaussian(uint64_t, uint64_t, RandomSource&) {
  return absl::UnimplementedError("SampleDiscreteGaussian: not yet");
}

absl::StatusOr<std::vector<int64_t>> DiscreteGaussianNoise(uint64_t, size_t, RandomSource&) {
  return absl::UnimplementedError("DiscreteGaussianNoise: not yet");
}

double RoundSensitivity(uint64_t, size_t) { return 0; }
double GaussianRho(double, double) { return 0; }
double EpsilonFromRho(double, double) { return 0; }
uint32_t NoiseMultiplierQ16For(double, double, uint32_t, uint64_t, size_t) { return 0; }
uint32_t RoundsWithinBudget(double, double, double, double) { return 0; }

}  // namespace tinyfed::server
