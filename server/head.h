// A model head in the master format, and its conversion to and from the
// wire's ModelVersion (int16 little-endian bytes plus CRC-32).
// Plain values: requires external synchronization.
#ifndef TINYFED_SERVER_HEAD_H_
#define TINYFED_SERVER_HEAD_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "tinyfed/v1/model.pb.h"

namespace tinyfed::server {

struct Head {
  uint32_t features = 0;
  uint32_t classes = 0;
  std::vector<int16_t> weights;  // classes x features, row-major
  std::vector<int16_t> bias;     // classes

  static Head Zeros(uint32_t features, uint32_t classes);
  bool operator==(const Head& other) const = default;
};

// Writes head's weights, bias and checksum into `model` (spec untouched).
void StoreHead(const Head& head, v1::ModelVersion* model);

// Reads the head of `model`. INVALID_ARGUMENT when the spec is missing or
// out of the protocol's bounds, the bytes do not match the spec's shape, or
// the checksum does not match.
absl::StatusOr<Head> LoadHead(const v1::ModelVersion& model);

// CRC-32 of weights bytes followed by bias bytes, as ModelVersion.checksum.
uint32_t ModelChecksum(const std::string& weights, const std::string& bias);

}  // namespace tinyfed::server

#endif  // TINYFED_SERVER_HEAD_H_
