// Helpers the console's handlers share (console.cc, console_api.cc, console_log.cc); not part
// of its interface.
#pragma once

#include <grpcpp/support/status.h>

#include <optional>
#include <string>
#include <string_view>

#include "absl/status/status.h"
#include "google/protobuf/message.h"
#include "worker/http/http_server.h"

namespace kiln::worker::console::internal {

// The URL-decoded value of `name` in a query string ("a=1&b=x%20y"), or nullopt.
std::optional<std::string> QueryParam(std::string_view query, std::string_view name);

// The HTTP status for a gRPC code (UNAUTHENTICATED 401, PERMISSION_DENIED 403, NOT_FOUND 404,
// INVALID_ARGUMENT 400, ...).
int HttpStatusOf(grpc::StatusCode code);

// {"error": message} with the status of the error's code.
HttpResponse ErrorResponse(const grpc::Status& status);
HttpResponse ErrorResponse(const absl::Status& status);

// `message` in protobuf's JSON mapping (200); a 500 if it cannot be printed.
HttpResponse JsonResponse(const google::protobuf::Message& message);
// The same text, for a server-sent event's data (one line).
std::string ToJsonLine(const google::protobuf::Message& message);

}  // namespace kiln::worker::console::internal
