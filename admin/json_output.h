// `tinyfed-admin --json`: one response message as one proto3 JSON document.
// Safe for concurrent use.
#ifndef TINYFED_ADMIN_JSON_OUTPUT_H_
#define TINYFED_ADMIN_JSON_OUTPUT_H_

#include <string>

#include <google/protobuf/message.h>

#include "absl/status/statusor.h"

namespace tinyfed::admin {

// `message` as proto3 JSON (google::protobuf::util::MessageToJsonString):
// indented, field names as in the .proto file (snake_case), every field
// printed even at its default (a script reads "paused": false rather than
// an absent key), int64 as strings and bytes as base64 as proto3 JSON has
// them; ends with a newline. JsonStringToMessage reads it back to an equal
// message. INTERNAL if protobuf cannot print it.
absl::StatusOr<std::string> MessageToJson(const google::protobuf::Message& message);

}  // namespace tinyfed::admin

#endif  // TINYFED_ADMIN_JSON_OUTPUT_H_
