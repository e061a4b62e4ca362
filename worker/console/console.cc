#include "worker/console/console.h"

#include <cstdint>
#include <string>

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "google/protobuf/util/json_util.h"
#include "worker/console/console_internal.h"
#include "worker/console/static_files.h"

namespace kiln::worker::console {
namespace internal {
namespace {

int HexDigit(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

std::string UrlDecode(std::string_view text) {
  std::string out;
  out.reserve(text.size());
  for (size_t i = 0; i < text.size(); ++i) {
    if (text[i] == '+') {
      out += ' ';
    } else if (text[i] == '%' && i + 2 < text.size() && HexDigit(text[i + 1]) >= 0 &&
               HexDigit(text[i + 2]) >= 0) {
      out += static_cast<char>(HexDigit(text[i + 1]) * 16 + HexDigit(text[i + 2]));
      i += 2;
    } else {
      out += text[i];
    }
  }
  return out;
}

}  // namespace

std::optional<std::string> QueryParam(std::string_view query, std::string_view name) {
  for (absl::string_view pair :
       absl::StrSplit(absl::string_view(query.data(), query.size()), '&')) {
    size_t equals = pair.find('=');
    absl::string_view key = pair.substr(0, equals);
    if (UrlDecode(std::string_view(key.data(), key.size())) != name) continue;
    if (equals == absl::string_view::npos) return std::string();
    absl::string_view value = pair.substr(equals + 1);
    return UrlDecode(std::string_view(value.data(), value.size()));
  }
  return std::nullopt;
}

int HttpStatusOf(grpc::StatusCode code) {
  switch (code) {
    case grpc::StatusCode::OK:
      return 200;
    case grpc::StatusCode::INVALID_ARGUMENT:
    case grpc::StatusCode::OUT_OF_RANGE:
      return 400;
    case grpc::StatusCode::UNAUTHENTICATED:
      return 401;
    case grpc::StatusCode::PERMISSION_DENIED:
      return 403;
    case grpc::StatusCode::NOT_FOUND:
      return 404;
    case grpc::StatusCode::ALREADY_EXISTS:
    case grpc::StatusCode::ABORTED:
      return 409;
    case grpc::StatusCode::FAILED_PRECONDITION:
      return 412;
    case grpc::StatusCode::RESOURCE_EXHAUSTED:
      return 429;
    case grpc::StatusCode::CANCELLED:
      return 499;
    case grpc::StatusCode::UNIMPLEMENTED:
      return 501;
    case grpc::StatusCode::UNAVAILABLE:
      return 503;
    case grpc::StatusCode::DEADLINE_EXCEEDED:
      return 504;
    default:
      return 500;
  }
}

HttpResponse ErrorResponse(const grpc::Status& status) {
  return JsonError(HttpStatusOf(status.error_code()), status.error_message());
}

HttpResponse ErrorResponse(const absl::Status& status) {
  // absl's codes have the same numbers as gRPC's.
  return JsonError(HttpStatusOf(static_cast<grpc::StatusCode>(status.code())),
                   std::string(status.message()));
}

absl::Status ParseBody(const HttpRequest& request, google::protobuf::Message* message) {
  if (request.body.empty()) return absl::OkStatus();
  auto parsed = google::protobuf::util::JsonStringToMessage(request.body, message);
  if (!parsed.ok()) {
    return absl::InvalidArgumentError(absl::StrCat("body: ", parsed.message().ToString()));
  }
  return absl::OkStatus();
}

std::string ToJsonLine(const google::protobuf::Message& message) {
  std::string json;
  google::protobuf::util::JsonPrintOptions options;
  options.always_print_primitive_fields = true;
  if (!google::protobuf::util::MessageToJsonString(message, &json, options).ok()) return "";
  return json;
}

HttpResponse JsonResponse(const google::protobuf::Message& message) {
  HttpResponse response;
  response.body = ToJsonLine(message);
  if (response.body.empty()) return JsonError(500, "the answer could not be printed as JSON");
  return response;
}

}  // namespace internal

namespace {

// A validator for the client's cached copy: FNV-1a of the file's bytes.
std::string ETagOf(const EmbeddedFile& file) {
  uint64_t hash = 1469598103934665603ull;
  for (size_t i = 0; i < file.size; ++i) {
    hash ^= file.data[i];
    hash *= 1099511628211ull;
  }
  return absl::StrCat("\"", absl::Hex(hash, absl::kZeroPad16), "\"");
}

}  // namespace

void AddSecurityHeaders(HttpResponse& response) {
  response.headers.push_back({"Content-Security-Policy", kContentSecurityPolicy});
  response.headers.push_back({"X-Content-Type-Options", "nosniff"});
  response.headers.push_back({"Referrer-Policy", "no-referrer"});
  response.headers.push_back({"X-Frame-Options", "DENY"});
}

Console::Console(ConsoleOptions options) : options_(std::move(options)) {
  (void)EngineConnection().channel()->GetState(/*try_to_connect=*/true);
}

std::unique_ptr<grpc::ClientContext> Console::EngineContext(const HttpRequest& request,
                                                            absl::Duration timeout) const {
  auto context = internal::CallContext(timeout);
  // Admitted already (the router checked it); the orchestrator checks it again.
  const std::string* authorization = request.Header("Authorization");
  if (engine_as_caller() && authorization != nullptr) {
    context->AddMetadata("authorization", *authorization);
  }
  return context;
}

void Console::Mount(HttpServer& http) {
  http.Handle("/", [this](const HttpRequest& request) { return ServeStatic(request); });
  http.Handle("/api/v1/", [this](const HttpRequest& request) { return ServeApi(request); });
}

HttpResponse Console::ServeStatic(const HttpRequest& request) const {
  HttpResponse response;
  const EmbeddedFile* file = FindStaticFile(request.path);
  if (request.method != "GET") {
    response = JsonError(405, "the console's files are read with GET");
    response.headers.push_back({"Allow", "GET"});
  } else if (file == nullptr) {
    response = JsonError(404, absl::StrCat("no such page: ", request.path));
  } else {
    // Revalidated on every load (an upgraded worker serves new files at once), and answered
    // with 304 while unchanged.
    const std::string etag = ETagOf(*file);
    response.headers.push_back({"Cache-Control", "no-cache"});
    response.headers.push_back({"ETag", etag});
    const std::string* if_none_match = request.Header("If-None-Match");
    if (if_none_match != nullptr && *if_none_match == etag) {
      response.status = 304;
      response.content_type = std::string(ContentTypeFor(file->path));
    } else {
      response.content_type = std::string(ContentTypeFor(file->path));
      response.body.assign(reinterpret_cast<const char*>(file->data), file->size);
    }
  }
  AddSecurityHeaders(response);
  return response;
}

HttpResponse Console::ServeApi(const HttpRequest& request) {
  HttpResponse response;
  if (request.query.size() > kMaxConsoleQueryBytes) {
    response = JsonError(414, absl::StrCat("query string over ", kMaxConsoleQueryBytes, " bytes"));
  } else if (request.body.size() > kMaxConsoleBodyBytes) {
    response = JsonError(413, absl::StrCat("body over ", kMaxConsoleBodyBytes, " bytes"));
  } else {
    response = Route(request);
  }
  AddSecurityHeaders(response);
  return response;
}

}  // namespace kiln::worker::console
