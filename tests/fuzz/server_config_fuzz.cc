// Fuzzes the configuration loader (server/server_config.cc): a ServerConfig
// in protobuf text format, as an operator, a template or a deployment tool
// writes it, then the defaults, the validation and, for a valid
// configuration, its head spec and initial model.
//
// Input: the file's text. initial_model is cleared before InitialModel(),
// which would otherwise read whatever file the text names.
//
// Beyond "no crash, no undefined behaviour, no leak": a parse or validation
// failure is INVALID_ARGUMENT; a configuration that validates gives a
// head spec of its own shape and an initial model the server can load.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>

#include "head.h"
#include "server_config.h"

namespace {

void Require(bool condition) {
  if (!condition) std::abort();  // libFuzzer keeps the input that got here
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  namespace server = tinyfed::server;
  const std::string text(reinterpret_cast<const char*>(data), size);
  absl::StatusOr<tinyfed::v1::ServerConfig> config = server::ParseServerConfig(text);
  if (!config.ok()) {
    Require(config.status().code() == absl::StatusCode::kInvalidArgument);
    return 0;
  }
  server::ApplyDefaults(&*config);
  const absl::Status valid = server::ValidateServerConfig(*config);
  if (!valid.ok()) {
    Require(valid.code() == absl::StatusCode::kInvalidArgument);
    return 0;
  }
  const tinyfed::v1::HeadSpec spec = server::HeadSpecFromConfig(*config);
  Require(spec.feature_count() == config->head().feature_count() &&
          spec.class_count() == config->head().class_count());
  config->clear_initial_model();
  absl::StatusOr<tinyfed::v1::ModelVersion> model = server::InitialModel(*config, 0);
  Require(model.ok());
  Require(server::LoadHead(*model).ok());
  return 0;
}
