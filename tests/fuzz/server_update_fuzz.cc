// Fuzzes the server's handling of an update's bytes once its envelope is
// authentic (server_envelope_fuzz.cc fuzzes the envelope): the protobuf
// parse of the body, as CoordinatorService::SubmitUpdate does, then
// ValidateUpdate (server/update_validation.cc) against a head. A device
// with a valid key can send any body, so every body byte is the peer's.
//
// Input: byte 0 picks the head (a 4x3 head, the demo's 64x10, and the
// largest, 128x32, each with the configured default formats); the rest is
// the body's bytes, as a device signs them.
//
// Beyond "no crash, no undefined behaviour, no leak": a rejection is
// INVALID_ARGUMENT, the only code the service may answer it with before
// any round state is read.
#include <cstddef>
#include <cstdint>
#include <cstdlib>

#include <grpcpp/grpcpp.h>
#include <grpcpp/impl/codegen/proto_utils.h>

#include "google/protobuf/stubs/logging.h"

#include "server_config.h"
#include "tinyfed/v1/round.pb.h"
#include "update_validation.h"

namespace {

using tinyfed::server::ApplyDefaults;
using tinyfed::server::HeadSpecFromConfig;
namespace v1 = tinyfed::v1;

void Require(bool condition) {
  if (!condition) std::abort();  // libFuzzer keeps the input that got here
}

v1::HeadSpec Spec(uint32_t features, uint32_t classes) {
  v1::ServerConfig config;
  config.mutable_head()->set_feature_count(features);
  config.mutable_head()->set_class_count(classes);
  ApplyDefaults(&config);
  return HeadSpecFromConfig(config);
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  // protobuf logs every string field that is not UTF-8; the fuzzer makes
  // millions, and the log would drown its own output.
  google::protobuf::SetLogHandler(nullptr);
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const v1::HeadSpec* const kSpecs[3] = {new v1::HeadSpec(Spec(4, 3)),
                                                new v1::HeadSpec(Spec(64, 10)),
                                                new v1::HeadSpec(Spec(128, 32))};
  if (size < 1) return 0;
  const v1::HeadSpec& spec = *kSpecs[data[0] % 3];

  // The request as gRPC hands it to the service: a ByteBuffer.
  grpc::Slice slice(data + 1, size - 1);
  grpc::ByteBuffer request(&slice, 1);
  v1::Update update;
  if (!grpc::SerializationTraits<v1::Update>::Deserialize(&request, &update).ok()) return 0;

  const absl::Status status = tinyfed::server::ValidateUpdate(update, spec);
  Require(status.ok() || status.code() == absl::StatusCode::kInvalidArgument);
  return 0;
}
