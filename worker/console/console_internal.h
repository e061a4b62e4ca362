// Helpers the console's handlers share (console.cc, console_api.cc, console_log.cc); not part
// of its interface.
#pragma once

#include <grpcpp/client_context.h>
#include <grpcpp/support/status.h>

#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "google/protobuf/message.h"
#include "kiln/api/v1/common.pb.h"
#include "worker/console/console.h"
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

// 405 naming the method to use.
HttpResponse MethodNotAllowed(std::string_view allow);
// page_size from the query: `default_size` when absent, capped at kMaxConsolePageSize;
// kInvalidArgument when not a positive number.
absl::StatusOr<int32_t> PageSize(const HttpRequest& request,
                                 int32_t default_size = kDefaultConsolePageSize);
// page_token from the query, as protobuf's JSON mapping printed it (base64).
absl::StatusOr<std::string> PageToken(const HttpRequest& request);
// A client context whose deadline is `timeout` from now.
std::unique_ptr<grpc::ClientContext> CallContext(absl::Duration timeout);
// The run named by ?id= and ?run_id= (empty run: the current one); kInvalidArgument without id.
absl::StatusOr<::kiln::api::v1::WorkflowExecution> Execution(const HttpRequest& request);
// The request's JSON body parsed into `message` (an empty body leaves it as it is);
// kInvalidArgument naming what is wrong.
absl::Status ParseBody(const HttpRequest& request, google::protobuf::Message* message);

}  // namespace kiln::worker::console::internal
