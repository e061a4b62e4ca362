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

int ReportError(const Io& io, const std::string& message) {
  io.err << "kiln: " << message << "\n";
  return 1;
}

int ReportError(const Io& io, const grpc::Status& status) {
  std::string message = status.error_message();
  if (message.empty()) message = absl::StrCat("call failed with gRPC code ", status.error_code());
  return ReportError(io, message);
}

absl::StatusOr<std::string> ToJson(const google::protobuf::Message& message, bool pretty) {
  google::protobuf::util::JsonPrintOptions options;
  options.add_whitespace = pretty;
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

}  // namespace kiln::cli
