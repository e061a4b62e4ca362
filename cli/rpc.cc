// Deadlines, identity, JSON output and error reporting for the commands; see rpc.h.
#include "cli/rpc.h"

#include <unistd.h>

#include <google/protobuf/util/json_util.h>

#include "absl/strings/str_cat.h"

namespace kiln::cli {

std::unique_ptr<grpc::ClientContext> CallContext(absl::Duration timeout) {
  auto context = std::make_unique<grpc::ClientContext>();
  context->set_deadline(std::chrono::system_clock::now() + absl::ToChronoMilliseconds(timeout));
  return context;
}

std::string Identity() {
  char host[256] = {};
  if (::gethostname(host, sizeof(host) - 1) != 0) return "kiln-cli";
  return absl::StrCat("kiln-cli@", host);
}

int ExitCodeFor(grpc::StatusCode code) {
  switch (code) {
    case grpc::StatusCode::OK:
      return kExitOk;
    case grpc::StatusCode::NOT_FOUND:
      return kExitNotFound;
    // Nothing listens there, or it answered nothing in time.
    case grpc::StatusCode::UNAVAILABLE:
    case grpc::StatusCode::DEADLINE_EXCEEDED:
      return kExitUnreachable;
    // A value from the command line the server refused (a bad query, an id too long).
    case grpc::StatusCode::INVALID_ARGUMENT:
      return kExitUsage;
    default:
      return kExitFailed;
  }
}

int ReportError(const Io& io, const std::string& message, int code) {
  io.err << "kiln: " << message << "\n";
  return code;
}

int ReportError(const Io& io, const grpc::Status& status) {
  std::string message = status.error_message();
  if (message.empty()) message = absl::StrCat("call failed with gRPC code ", status.error_code());
  const int code = ExitCodeFor(status.error_code());
  switch (status.error_code()) {
    case grpc::StatusCode::UNAVAILABLE:
      message =
          absl::StrCat("cannot reach ", io.server, ": ", message,
                       ". Is it running there? Start it, point kiln at it, or pass --tls-ca if it "
                       "serves TLS.");
      break;
    case grpc::StatusCode::DEADLINE_EXCEEDED:
      message = absl::StrCat(io.server, " did not answer in time: ", message,
                             ". Check that it is running and not overloaded.");
      break;
    case grpc::StatusCode::UNAUTHENTICATED:
      message = absl::StrCat(io.server, " refused the token: ", message,
                             ". Pass --token or --token-file, or set KILN_DATA_DIR to the "
                             "orchestrator's data directory (its admin.token).");
      break;
    case grpc::StatusCode::PERMISSION_DENIED:
      message =
          absl::StrCat(io.server, " refused the call: ", message,
                       ". The token lacks that permission: use one that has it (mint one with "
                       "`kiln-orchestrator token`).");
      break;
    default:
      break;
  }
  return ReportError(io, message, code);
}

absl::StatusOr<std::string> ToJson(const google::protobuf::Message& message, bool pretty) {
  google::protobuf::util::JsonPrintOptions options;
  options.add_whitespace = pretty;
  // Complete for scripts: a zero count or an empty string is printed, not left out, so every
  // field of the message is always there to read.
  options.always_print_primitive_fields = true;
  std::string json;
  auto status = google::protobuf::util::MessageToJsonString(message, &json, options);
  // Only a message holding an Any of an unknown type fails; the API has none.
  if (!status.ok()) return absl::InternalError(absl::StrCat("JSON output: ", status.ToString()));
  if (!json.empty() && json.back() == '\n') json.pop_back();
  return json;
}

int PrintJson(const Io& io, const google::protobuf::Message& message, bool pretty) {
  auto json = ToJson(message, pretty);
  if (!json.ok()) return ReportError(io, std::string(json.status().message()));
  io.out << *json << "\n";
  return 0;
}

int PrintJsonList(const Io& io, const std::vector<const google::protobuf::Message*>& messages,
                  bool document) {
  std::string text = document ? "[" : "";
  for (size_t i = 0; i < messages.size(); ++i) {
    auto json = ToJson(*messages[i], /*pretty=*/false);
    if (!json.ok()) return ReportError(io, std::string(json.status().message()));
    if (document) absl::StrAppend(&text, i == 0 ? "\n" : ",\n");
    absl::StrAppend(&text, *json, document ? "" : "\n");
  }
  if (document) absl::StrAppend(&text, messages.empty() ? "]\n" : "\n]\n");
  io.out << text;
  return 0;
}

}  // namespace kiln::cli
