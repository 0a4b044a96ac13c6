// tinyfed-admin: the operator's tool. `tinyfed-admin --help` lists the
// commands; keys_command.h (local, no server) and admin_client.h (the
// server's Admin service) do the work.
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <functional>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/internal/parse.h"
#include "absl/flags/reflection.h"
#include "absl/flags/usage_config.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/time/time.h"
#include "admin_client.h"
#include "admin_output.h"
#include "json_output.h"
#include "keys_command.h"
#include "model_export.h"
#include "tinyfed_common/flag_help.h"

ABSL_FLAG(std::string, out, "",
          "keys new: the fleet key file to create (never overwritten); export: the file to "
          "write (default: stdout)");
ABSL_FLAG(std::string, fleet, "", "keys device: the fleet key file to derive from");
ABSL_FLAG(std::string, device, "", "keys device: the device id (1..32 printable ASCII bytes)");
ABSL_FLAG(std::string, format, "",
          "keys device: 'hex' (64 hex digits, the default) or 'c' (a C header); export: "
          "'proto', 'json' or 'c'");
ABSL_FLAG(std::string, server, "127.0.0.1:50051", "the server's gRPC address, HOST:PORT");
ABSL_FLAG(std::string, tls_ca, "",
          "PEM CAs that signed the server's certificate; without it the channel is plaintext, "
          "allowed to a loopback address only");
ABSL_FLAG(std::string, tls_cert, "", "PEM client certificate (with --tls_key), for mTLS");
ABSL_FLAG(std::string, tls_key, "", "PEM private key of --tls_cert");
ABSL_FLAG(std::string, token_file, "",
          "a file (mode 0600) holding the admin token, 'TOKEN' or 'NAME TOKEN' on one line; "
          "sent as 'authorization: Bearer TOKEN'");
ABSL_FLAG(absl::Duration, timeout, absl::Seconds(10), "deadline of each call, e.g. 10s or 2m");
ABSL_FLAG(bool, json, false, "print the response message as proto3 JSON, for scripts");
ABSL_FLAG(uint32_t, newest, 0, "versions: the newest version to list (default: the latest)");
ABSL_FLAG(uint32_t, limit, 0,
          "versions, devices, audit: at most this many rows (default: the server's, 100)");
ABSL_FLAG(uint32_t, to, 0, "rollback: the version to roll back to");
ABSL_FLAG(std::string, reason, "",
          "rollback, promote, pause, revoke: why, for the audit log (at most 200 bytes)");
ABSL_FLAG(int64_t, before, 0, "audit: list records with an id below this one (paging)");
// Abseil owns --version (the program's version), so export's `--version N`
// is rewritten to this flag before parsing (ExportVersionFlag below).
ABSL_FLAG(uint32_t, model_version, 0, "export: the version to export, given as --version N");

namespace {

constexpr char kProgramVersion[] = "tinyfed-admin " TINYFED_VERSION "\n";

constexpr char kConnectionHelp[] =
    "Connection: --server HOST:PORT (default 127.0.0.1:50051); --tls_ca FILE, with\n"
    "--tls_cert FILE --tls_key FILE for a client certificate (plaintext goes to a\n"
    "loopback address only); --token_file FILE; --timeout DURATION per call (10s).\n"
    "Exit status 0; 1 when the server refused the call or could not be reached, with\n"
    "one line 'tinyfed-admin: STATUS_NAME: message' on stderr; 2 for bad usage.";

constexpr char kUsage[] =
    "the operator's tool for a tinyfed fleet.\n\n"
    "  tinyfed-admin COMMAND [flags]      (tinyfed-admin COMMAND --help for more)\n\n"
    "Over the server's Admin service:\n"
    "  status                   the round, the serving and candidate versions, alerts\n"
    "  versions                 model versions with lineage, rollout stage and metrics\n"
    "  export --version N --format proto|json|c   a version, or a C header for firmware\n"
    "  rollback --to N          commit a new version equal to version N\n"
    "  promote N                serve version N to every device now\n"
    "  pause                    open no new rounds (the open one still closes)\n"
    "  resume                   open rounds again\n"
    "  devices                  devices recently handed a task, and the revoked ones\n"
    "  revoke ID                refuse the device's check-ins and updates from now on\n"
    "  audit                    who changed what, and when\n"
    "  verify [N]               recompute version N (default: the latest) from the store\n"
    "Local, no server:\n"
    "  tinyfed-admin keys new --out FILE\n"
    "  tinyfed-admin keys device --fleet FILE --device ID [--format hex|c]\n\n"
    "Server commands print tables for people, or with --json the response message as\n"
    "proto3 JSON (proto/tinyfed/v1/admin.proto). The server accepts a token from its\n"
    "--admin_tokens file, a client certificate, or on a plaintext loopback server any\n"
    "local caller; changes are recorded in its audit log with who made them.\n\n";

constexpr char kKeysNewUsage[] =
    "creates a fleet key.\n\n"
    "  tinyfed-admin keys new --out FILE\n\n"
    "Writes 32 random bytes from the system's CSPRNG to FILE, a new file of mode 0600\n"
    "(an existing FILE is never overwritten), and prints its path, never the key. The\n"
    "fleet key is the server's one secret: every device key is derived from it, so\n"
    "keep it where only the server and this tool can read it, with a backup.";

constexpr char kKeysDeviceUsage[] =
    "derives one device's key from the fleet key.\n\n"
    "  tinyfed-admin keys device --fleet FILE --device ID [--format hex|c]\n\n"
    "device key = HMAC-SHA256(fleet key, \"tinyfed/v1 device key\" NUL || ID)\n"
    "(common/include/tinyfed_common/device_key.h). FILE must hold exactly 32 bytes\n"
    "and have mode 0600 or stricter. ID is 1..32 printable ASCII bytes, as the server\n"
    "accepts. Prints the key on stdout: --format hex as 64 hex digits, --format c as\n"
    "a C header that a firmware build includes (tinyfed_device_key, 32 bytes, and\n"
    "tinyfed_device_id). The output is the device's secret: write it to a file only\n"
    "that device's build can read.";

using tinyfed::admin::AdminClient;

struct Invocation {
  AdminClient* client;
  std::vector<std::string> args;  // positional arguments after the command word
  bool json;
};

// A server command: its help, the flags it reads beyond the connection's,
// how many positional arguments it takes, and what it does.
struct ServerCommand {
  const char* name;
  const char* usage;
  std::vector<std::string> flags;
  size_t positional;
  const char* positional_name;
  std::function<absl::Status(const Invocation&)> run;
  // The positional argument may be left out (verify's VERSION).
  bool positional_optional = false;
};

// Flags every server command takes (and --json, which all but export take).
const std::vector<std::string>& ConnectionFlags() {
  static const auto* flags = new std::vector<std::string>{
      "server", "tls_ca", "tls_cert", "tls_key", "token_file", "timeout"};
  return *flags;
}

// Every flag defined above, to tell which ones a command does not take.
const std::vector<std::string>& AllFlags() {
  static const auto* flags = new std::vector<std::string>{
      "out",        "fleet",   "device", "format", "server", "tls_ca", "tls_cert",
      "tls_key",    "token_file", "timeout", "json", "newest", "limit", "to",
      "reason",     "before",  "model_version"};
  return *flags;
}

absl::Status Print(const std::string& text) {
  if (std::fwrite(text.data(), 1, text.size(), stdout) != text.size() ||
      std::fflush(stdout) != 0) {
    return absl::UnavailableError(absl::StrCat("cannot write to stdout: ", std::strerror(errno)));
  }
  return absl::OkStatus();
}

// The response as --json asks, or `for_people(response)`.
template <typename Response, typename Format>
absl::Status PrintResponse(const Invocation& call, const absl::StatusOr<Response>& response,
                           Format for_people) {
  if (!response.ok()) return response.status();
  if (!call.json) return Print(for_people(*response));
  absl::StatusOr<std::string> json = tinyfed::admin::MessageToJson(*response);
  if (!json.ok()) return json.status();
  return Print(*json);
}

absl::Status WriteFile(const std::string& path, const std::string& bytes) {
  FILE* file = std::fopen(path.c_str(), "wb");
  if (file == nullptr) {
    return absl::PermissionDeniedError(
        absl::StrCat("--out ", path, ": cannot create it: ", std::strerror(errno)));
  }
  const bool written = std::fwrite(bytes.data(), 1, bytes.size(), file) == bytes.size();
  if (std::fclose(file) != 0 || !written) {
    return absl::UnavailableError(absl::StrCat("--out ", path, ": cannot write it"));
  }
  return absl::OkStatus();
}

absl::Status RunExport(const Invocation& call) {
  // The format was checked before the call (ServerCommandUsageError).
  const tinyfed::admin::ExportFormat format =
      *tinyfed::admin::ParseExportFormat(absl::GetFlag(FLAGS_format));
  tinyfed::v1::GetVersionRequest request;
  request.set_version(absl::GetFlag(FLAGS_model_version));
  absl::StatusOr<tinyfed::v1::ModelVersion> model = call.client->GetVersion(request);
  if (!model.ok()) return model.status();
  absl::StatusOr<std::string> bytes = tinyfed::admin::ExportModel(*model, format);
  if (!bytes.ok()) return bytes.status();
  const std::string out = absl::GetFlag(FLAGS_out);
  if (out.empty()) return Print(*bytes);
  if (absl::Status s = WriteFile(out, *bytes); !s.ok()) return s;
  return Print(absl::StrCat("wrote version ", model->version(), " (", bytes->size(),
                            " bytes, --format ", absl::GetFlag(FLAGS_format), ") to ", out,
                            "\n"));
}

const std::vector<ServerCommand>& ServerCommands() {
  using namespace tinyfed;  // NOLINT: v1:: and admin:: in the table below
  static const auto* commands = new std::vector<ServerCommand>{
      {"status",
       "shows what the server is doing.\n\n"
       "  tinyfed-admin status [--json]\n\n"
       "The round (number, base version, tasks issued, updates accepted of the target,\n"
       "deadline), the latest and serving versions, whether rounds are paused, the\n"
       "candidate in canary with its share of devices and the fleet's evaluations of it\n"
       "so far, the serving version's accuracy over the drift window, and the alerts\n"
       "raised (a drift alert clears when a later version is promoted).",
       {}, 0, nullptr,
       [](const Invocation& call) {
         return PrintResponse(call, call.client->GetStatus(), admin::FormatServerStatus);
       }},
      {"versions",
       "lists model versions with their lineage, newest first.\n\n"
       "  tinyfed-admin versions [--newest N] [--limit N] [--json]\n\n"
       "Each version's parent, origin (its round, or the version a rollback restored),\n"
       "rollout stage (trained, candidate, serving, retired, rolled back), participants,\n"
       "samples, capped/clipped/rejected updates, mean local loss, the fleet's accuracy\n"
       "from the devices' evaluations, and commit time. --newest N starts the list at version N (default: the latest);\n"
       "--limit N lists at most N (default 100, at most 1000).",
       {"newest", "limit"}, 0, nullptr,
       [](const Invocation& call) {
         v1::ListVersionsRequest request;
         request.set_newest(absl::GetFlag(FLAGS_newest));
         request.set_limit(absl::GetFlag(FLAGS_limit));
         return PrintResponse(call, call.client->ListVersions(request), admin::FormatVersions);
       }},
      {"export",
       "writes one committed model version.\n\n"
       "  tinyfed-admin export --version N --format proto|json|c [--out FILE]\n\n"
       "--format proto: the ModelVersion message in protobuf binary format;\n"
       "--format json: the same as proto3 JSON (weights and bias in base64);\n"
       "--format c: a C99 header for a firmware build: the head's int16 weights and bias\n"
       "  (tinyfed_model_weights, tinyfed_model_bias) with its shape, master format\n"
       "  (TINYFED_MODEL_WEIGHT_FRAC_BITS), feature quantization, version and checksum,\n"
       "  and TINYFED_MODEL_HEAD_VIEW_INIT for the SDK's tinyfed_head_view_t.\n"
       "The version's checksum is verified first. Writes to stdout unless --out FILE.",
       {"model_version", "format", "out"}, 0, nullptr, RunExport},
      {"rollback",
       "commits a new version whose weights equal an older one's.\n\n"
       "  tinyfed-admin rollback --to N [--reason TEXT] [--json]\n\n"
       "History is never rewritten: the new version's parent is the latest version and\n"
       "its lineage names N. The open round is abandoned (its devices check in again)\n"
       "and a new round opens on the new version, unless rounds are paused.",
       {"to", "reason"}, 0, nullptr,
       [](const Invocation& call) {
         v1::RollbackRequest request;
         request.set_to_version(absl::GetFlag(FLAGS_to));
         request.set_reason(absl::GetFlag(FLAGS_reason));
         return PrintResponse(call, call.client->Rollback(request),
                              [&](const v1::RollbackResponse& r) {
                                return admin::FormatRollback(request, r);
                              });
       }},
      {"promote",
       "serves a committed version to every device at once.\n\n"
       "  tinyfed-admin promote N [--reason TEXT] [--json]\n\n"
       "Version N becomes the serving version for every device, without a canary (the\n"
       "operator decided); a candidate in canary other than N is rolled back. Training\n"
       "goes on from the latest version. Drift alerts clear, and N's accuracy at\n"
       "promotion is taken from its first full drift window. Recorded in the audit log.",
       {"reason"}, 1, "N",
       [](const Invocation& call) {
         v1::PromoteRequest request;
         // Checked before the call (ServerCommandUsageError).
         uint32_t version = 0;
         (void)absl::SimpleAtoi(call.args[0], &version);
         request.set_version(version);
         request.set_reason(absl::GetFlag(FLAGS_reason));
         return PrintResponse(call, call.client->Promote(request), admin::FormatPromote);
       }},
      {"pause",
       "stops the server from opening rounds.\n\n"
       "  tinyfed-admin pause [--reason TEXT] [--json]\n\n"
       "Check-ins get a RetryAfter; updates for tasks already handed out are still\n"
       "taken and the open round closes as it would. Survives a restart. Prints the\n"
       "status after the call.",
       {"reason"}, 0, nullptr,
       [](const Invocation& call) {
         v1::PauseRequest request;
         request.set_reason(absl::GetFlag(FLAGS_reason));
         return PrintResponse(call, call.client->Pause(request), admin::FormatServerStatus);
       }},
      {"resume",
       "lets the server open rounds again after a pause.\n\n"
       "  tinyfed-admin resume [--json]\n\n"
       "Prints the status after the call.",
       {}, 0, nullptr,
       [](const Invocation& call) {
         return PrintResponse(call, call.client->Resume(), admin::FormatServerStatus);
       }},
      {"devices",
       "lists the devices most recently handed a task, and every revoked device.\n\n"
       "  tinyfed-admin devices [--limit N] [--json]\n\n"
       "--limit N lists at most N seen devices (default 100, at most 10000).",
       {"limit"}, 0, nullptr,
       [](const Invocation& call) {
         v1::ListDevicesRequest request;
         request.set_limit(absl::GetFlag(FLAGS_limit));
         return PrintResponse(call, call.client->ListDevices(request), admin::FormatDevices);
       }},
      {"revoke",
       "refuses a device from now on.\n\n"
       "  tinyfed-admin revoke ID [--reason TEXT] [--json]\n\n"
       "Every later check-in and update of device ID gets PERMISSION_DENIED; its update\n"
       "already accepted in the open round stays. There is no un-revoke.",
       {"reason"}, 1, "ID",
       [](const Invocation& call) {
         v1::RevokeDeviceRequest request;
         request.set_device_id(call.args[0]);
         request.set_reason(absl::GetFlag(FLAGS_reason));
         return PrintResponse(call, call.client->RevokeDevice(request),
                              [&](const v1::RevokeDeviceResponse& r) {
                                return admin::FormatRevoke(request.device_id(), r);
                              });
       }},
      {"audit",
       "lists the admin actions that changed something, newest first.\n\n"
       "  tinyfed-admin audit [--limit N] [--before ID] [--json]\n\n"
       "Rollbacks, promotions, pauses, resumes and revocations, each with who made it (token:NAME,\n"
       "cert:SUBJECT or loopback:ADDRESS) and when. --limit N lists at most N (default\n"
       "100, at most 1000); --before ID lists older records than ID (the next page).",
       {"limit", "before"}, 0, nullptr,
       [](const Invocation& call) {
         v1::ListAuditRequest request;
         request.set_limit(absl::GetFlag(FLAGS_limit));
         request.set_before_id(absl::GetFlag(FLAGS_before));
         return PrintResponse(call, call.client->ListAudit(request), admin::FormatAudit);
       }},
      {"verify",
       "recomputes a version from the store alone and compares it with the committed one.\n\n"
       "  tinyfed-admin verify [N] [--json]\n\n"
       "The server aggregates version N's round again (default: the latest version) from\n"
       "what its store holds: the round's stored updates, the parent version's weights and\n"
       "optimizer state, the strategy and parameters N recorded, and the noise N's round\n"
       "added (central DP). Prints the strategy, the number of updates, both checksums and\n"
       "'matches', or how many weight and bias values differ. Exit status 0 when it\n"
       "matches; 1 when it does not (with one line on stderr), as for errors:\n"
       "NOT_FOUND for an unknown version, FAILED_PRECONDITION for one no round trained\n"
       "(the initial version, a rollback's copy, a version from before aggregation\n"
       "records), DATA_LOSS when a stored row fails its check.",
       {}, 1, "N",
       [](const Invocation& call) -> absl::Status {
         v1::VerifyVersionRequest request;
         uint32_t version = 0;  // 0: the latest; checked before the call
         if (!call.args.empty()) (void)absl::SimpleAtoi(call.args[0], &version);
         request.set_version(version);
         absl::StatusOr<v1::VerifyVersionResponse> response = call.client->VerifyVersion(request);
         if (absl::Status s = PrintResponse(call, response, admin::FormatVerify); !s.ok()) {
           return s;
         }
         if (response->matches()) return absl::OkStatus();
         return absl::DataLossError(absl::StrCat(
             "version ", response->version(), " does not match its recomputation (",
             response->differing_values(), " values differ)"));
       },
       /*positional_optional=*/true},
  };
  return *commands;
}

const ServerCommand* FindServerCommand(const std::string& name) {
  for (const ServerCommand& command : ServerCommands()) {
    if (name == command.name) return &command;
  }
  return nullptr;
}

int Fail(const std::string& message) {
  std::fprintf(stderr, "tinyfed-admin: %s\n", message.c_str());
  return 2;
}

// A failure with its status: "tinyfed-admin: PERMISSION_DENIED: message".
int FailWithStatus(const absl::Status& status, int exit_code) {
  std::fprintf(stderr, "tinyfed-admin: %s: %s\n",
               absl::StatusCodeToString(status.code()).c_str(),
               std::string(status.message()).c_str());
  return exit_code;
}

// Where the command word is in `args`: the first argument that is neither
// a flag nor the value of a flag given as "--flag VALUE"; 0 when there is
// none. Read before parsing, so that `--help` explains that command.
size_t CommandWordIndex(const std::vector<char*>& args) {
  for (size_t i = 1; i < args.size(); ++i) {
    absl::string_view arg = args[i];
    if (arg == "--") return i + 1 < args.size() ? i + 1 : 0;
    if (arg.size() < 2 || arg[0] != '-') return i;
    arg.remove_prefix(arg[1] == '-' ? 2 : 1);
    if (arg.find('=') != absl::string_view::npos) continue;
    const absl::CommandLineFlag* flag = absl::FindCommandLineFlag(arg);
    if (flag != nullptr && !flag->IsOfType<bool>()) ++i;  // skips the flag's value
  }
  return 0;
}

std::string ChooseUsage(const std::vector<char*>& args) {
  const size_t word = CommandWordIndex(args);
  if (word == 0) return absl::StrCat(kUsage, kConnectionHelp);
  if (std::strcmp(args[word], "keys") == 0 && word + 1 < args.size()) {
    if (std::strcmp(args[word + 1], "new") == 0) return kKeysNewUsage;
    if (std::strcmp(args[word + 1], "device") == 0) return kKeysDeviceUsage;
  }
  if (const ServerCommand* command = FindServerCommand(args[word])) {
    return absl::StrCat(command->usage, "\n\n", kConnectionHelp);
  }
  return absl::StrCat(kUsage, kConnectionHelp);
}

// `export --version N` (or --version=N) as --model_version, since Abseil
// answers --version itself. Only with the command export: `tinyfed-admin
// --version` still prints the program's version.
std::vector<char*> ExportVersionFlag(std::vector<char*> args) {
  static char model_version[] = "--model_version";
  static std::vector<std::string> rewritten;  // owns the --version=N rewrites
  rewritten.reserve(args.size());
  const size_t word = CommandWordIndex(args);
  if (word == 0 || std::strcmp(args[word], "export") != 0) return args;
  for (size_t i = 1; i < args.size() && std::strcmp(args[i], "--") != 0; ++i) {
    if (std::strcmp(args[i], "--version") == 0 || std::strcmp(args[i], "-version") == 0) {
      args[i] = model_version;
    } else if (std::strncmp(args[i], "--version=", 10) == 0) {
      rewritten.push_back(std::string("--model_version=") + (args[i] + 10));
      args[i] = rewritten.back().data();
    }
  }
  return args;
}

// Bad usage of a server command, found before anything is read or sent:
// a flag the command does not take, a wrong number of arguments, a missing
// or malformed required flag. Empty when there is none.
std::string ServerCommandUsageError(const ServerCommand& command,
                                    const std::vector<std::string>& args) {
  const std::string name = command.name;
  for (const std::string& flag : AllFlags()) {
    if (!absl::flags_internal::WasPresentOnCommandLine(flag)) continue;
    const auto& common = ConnectionFlags();
    const bool takes = std::find(common.begin(), common.end(), flag) != common.end() ||
                       std::find(command.flags.begin(), command.flags.end(), flag) !=
                           command.flags.end() ||
                       (flag == "json" && name != "export");
    if (takes) continue;
    const std::string shown = flag == "model_version" ? "version" : flag;
    return absl::StrCat(name, ": --", shown, " does not apply to this command",
                        name == "export" && flag == "json" ? " (use --format json)" : "",
                        "; see 'tinyfed-admin ", name, " --help'");
  }
  if (args.size() != command.positional &&
      !(command.positional_optional && args.empty())) {
    if (command.positional == 0) {
      return absl::StrCat(name, ": unexpected argument '", args[0],
                          "'; options are flags, see 'tinyfed-admin ", name, " --help'");
    }
    return absl::StrCat(name, ": expected ",
                        command.positional_optional ? "at most " : "exactly ",
                        command.positional, " argument (", command.positional_name, "), got ",
                        args.size());
  }
  if (name == "export") {
    if (absl::GetFlag(FLAGS_model_version) == 0) return "export: missing --version N";
    if (absl::GetFlag(FLAGS_format).empty()) return "export: missing --format proto|json|c";
    absl::StatusOr<tinyfed::admin::ExportFormat> format =
        tinyfed::admin::ParseExportFormat(absl::GetFlag(FLAGS_format));
    if (!format.ok()) return absl::StrCat("export: ", format.status().message());
    // Binary on a terminal helps no one and can upset it.
    if (*format == tinyfed::admin::ExportFormat::kProto && absl::GetFlag(FLAGS_out).empty() &&
        isatty(STDOUT_FILENO)) {
      return "export: --format proto is binary; give --out FILE or redirect stdout";
    }
  }
  if (name == "rollback" && absl::GetFlag(FLAGS_to) == 0) return "rollback: missing --to N";
  if (name == "promote" || (name == "verify" && !args.empty())) {
    uint32_t version = 0;
    if (!absl::SimpleAtoi(args[0], &version) || version == 0) {
      return absl::StrCat(name, ": N must be a version number >= 1, got '", args[0], "'");
    }
  }
  return "";
}

// Abseil exits with status 1 on an unknown flag or a value it cannot
// parse; for this tool 1 means the server refused a call, and bad usage is
// 2. So the flags are checked first, with Abseil's own parsers and
// wording, and Abseil parses them again (to the same values) afterwards.
// Empty when every flag is known and its value parses.
std::string FlagError(const std::vector<char*>& args) {
  for (size_t i = 1; i < args.size(); ++i) {
    absl::string_view arg = args[i];
    if (arg == "--") break;
    if (arg.size() < 2 || arg[0] != '-') continue;
    arg.remove_prefix(arg[1] == '-' ? 2 : 1);
    const size_t equals = arg.find('=');
    const absl::string_view name = arg.substr(0, equals);
    const bool has_value = equals != absl::string_view::npos;
    if (name == "h") continue;  // ParseFlagsOrAnswerHelp reads it as --help
    // Abseil's own flags, which it keeps apart from the registry.
    if (name == "help" || name == "helpfull" || name == "helpshort" || name == "helppackage" ||
        name == "version" || name == "only_check_args") {
      continue;
    }
    if (name == "helpon" || name == "helpmatch" || name == "flagfile" || name == "fromenv" ||
        name == "tryfromenv" || name == "undefok") {
      if (!has_value) ++i;
      continue;
    }
    absl::CommandLineFlag* flag = absl::FindCommandLineFlag(name);
    if (flag == nullptr && absl::StartsWith(name, "no") && !has_value) {
      const absl::CommandLineFlag* negated = absl::FindCommandLineFlag(name.substr(2));
      if (negated != nullptr && negated->IsOfType<bool>()) continue;
    }
    if (flag == nullptr) return absl::StrCat("Unknown command line flag '", name, "'");
    if (flag->IsOfType<bool>() && !has_value) continue;
    std::string value;
    if (has_value) {
      value = std::string(arg.substr(equals + 1));
    } else if (i + 1 < args.size()) {
      value = args[++i];
    } else {
      return absl::StrCat("Missing the value for flag '", name, "'");
    }
    std::string error;
    if (!flag->ParseFrom(value, &error)) {
      return error.empty() ? absl::StrCat("Illegal value '", value, "' for flag '", name, "'")
                           : error;
    }
  }
  return "";
}

int RunServerCommand(const ServerCommand& command, const std::vector<char*>& positional) {
  const std::vector<std::string> args(positional.begin() + 2, positional.end());
  if (std::string error = ServerCommandUsageError(command, args); !error.empty()) {
    return Fail(error);
  }
  tinyfed::admin::ConnectionOptions options;
  options.server = absl::GetFlag(FLAGS_server);
  options.tls.ca_file = absl::GetFlag(FLAGS_tls_ca);
  options.tls.cert_file = absl::GetFlag(FLAGS_tls_cert);
  options.tls.key_file = absl::GetFlag(FLAGS_tls_key);
  options.token_file = absl::GetFlag(FLAGS_token_file);
  options.timeout = absl::GetFlag(FLAGS_timeout);
  absl::StatusOr<std::unique_ptr<AdminClient>> client = AdminClient::Create(options);
  if (!client.ok()) return FailWithStatus(client.status(), 2);
  const absl::Status status = command.run(Invocation{client->get(), args, absl::GetFlag(FLAGS_json)});
  return status.ok() ? 0 : FailWithStatus(status, 1);
}

int RunKeys(const std::vector<char*>& positional) {
  if (positional.size() < 3) return Fail("keys: missing 'new' or 'device'; try --help");
  const std::string verb = positional[2];
  if (positional.size() > 3) {
    return Fail(std::string("unexpected argument '") + positional[3] + "'");
  }
  absl::Status status;
  if (verb == "new") {
    status = tinyfed::admin::RunKeysNew(absl::GetFlag(FLAGS_out), stdout);
  } else if (verb == "device") {
    const std::string format = absl::GetFlag(FLAGS_format);
    status = tinyfed::admin::RunKeysDevice(absl::GetFlag(FLAGS_fleet), absl::GetFlag(FLAGS_device),
                                           format.empty() ? "hex" : format, stdout);
  } else {
    return Fail("unknown command 'keys " + verb + "'; try --help");
  }
  return status.ok() ? 0 : Fail(std::string(status.message()));
}

}  // namespace

int main(int argc, char** argv) {
  const std::vector<char*> args = ExportVersionFlag(std::vector<char*>(argv, argv + argc));
  tinyfed::ConfigureFlagHelp(ChooseUsage(args));
  {
    absl::FlagsUsageConfig usage = absl::flags_internal::GetUsageConfig();
    usage.version_string = [] { return std::string(kProgramVersion); };
    absl::SetFlagsUsageConfig(usage);
  }
  if (std::string error = FlagError(args); !error.empty()) return Fail(error);
  std::vector<char*> positional = tinyfed::ParseFlagsOrAnswerHelp(args);
  if (positional.size() < 2) return Fail("missing command; try 'tinyfed-admin --help'");
  const std::string noun = positional[1];
  if (noun == "keys") return RunKeys(positional);
  if (const ServerCommand* command = FindServerCommand(noun)) {
    return RunServerCommand(*command, positional);
  }
  return Fail("unknown command '" + noun + "'; try --help");
}
