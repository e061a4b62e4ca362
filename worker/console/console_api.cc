// The console's JSON API: each call is admitted (BuildServiceAuth), its parameters read from the
// path and query string, and the answer is the API message in protobuf's JSON mapping.
#include <grpcpp/client_context.h>

#include <string>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "google/protobuf/util/json_util.h"
#include "worker/console/console.h"
#include "worker/console/console_internal.h"

namespace kiln::worker::console {
namespace internal {

HttpResponse MethodNotAllowed(std::string_view allow) {
  HttpResponse response = JsonError(405, absl::StrCat("use ", std::string(allow)));
  response.headers.push_back({"Allow", std::string(allow)});
  return response;
}

absl::StatusOr<int32_t> PageSize(const HttpRequest& request, int32_t default_size) {
  std::optional<std::string> text = QueryParam(request.query, "page_size");
  if (!text || text->empty()) return default_size;
  int32_t size = 0;
  if (!absl::SimpleAtoi(*text, &size) || size < 1) {
    return absl::InvalidArgumentError("page_size must be a positive number");
  }
  return std::min(size, kMaxConsolePageSize);
}

absl::StatusOr<std::string> PageToken(const HttpRequest& request) {
  std::optional<std::string> text = QueryParam(request.query, "page_token");
  if (!text || text->empty()) return std::string();
  std::string token;
  if (!absl::Base64Unescape(*text, &token) && !absl::WebSafeBase64Unescape(*text, &token)) {
    return absl::InvalidArgumentError("page_token is not base64");
  }
  return token;
}

std::unique_ptr<grpc::ClientContext> CallContext(absl::Duration timeout) {
  auto context = std::make_unique<grpc::ClientContext>();
  context->set_deadline(std::chrono::system_clock::now() + absl::ToChronoMilliseconds(timeout));
  return context;
}

absl::StatusOr<api::WorkflowExecution> Execution(const HttpRequest& request) {
  api::WorkflowExecution execution;
  execution.set_workflow_id(QueryParam(request.query, "id").value_or(""));
  execution.set_run_id(QueryParam(request.query, "run_id").value_or(""));
  if (execution.workflow_id().empty()) return absl::InvalidArgumentError("id is required");
  return execution;
}

}  // namespace internal

namespace {

using internal::CallContext;
using internal::ErrorResponse;
using internal::Execution;
using internal::JsonResponse;
using internal::MethodNotAllowed;
using internal::PageSize;
using internal::PageToken;
using internal::QueryParam;

constexpr std::string_view kApiPrefix = "/api/v1/";

}  // namespace

HttpResponse Console::Route(const HttpRequest& request) {
  std::string_view rest(request.path);
  rest.remove_prefix(std::min(rest.size(), kApiPrefix.size()));
  std::vector<std::string> parts =
      absl::StrSplit(absl::string_view(rest.data(), rest.size()), '/', absl::SkipEmpty());
  const bool get = request.method == "GET";
  const bool post = request.method == "POST";
  const bool read = !post;
  const std::string method =
      absl::StrCat("console ", request.method, " /", absl::StrJoin(parts, "/"));
  // Unknown paths are 404 before any token is looked at; every known one checks the token.
  auto admit = [&]() -> std::optional<HttpResponse> {
    grpc::Status denied =
        options_.auth->CheckAuthorization(request.Header("Authorization"), method, read);
    if (denied.ok()) return std::nullopt;
    HttpResponse response = ErrorResponse(denied);
    if (response.status == 401) response.headers.push_back({"WWW-Authenticate", "Bearer"});
    return response;
  };
  auto serve = [&](std::string_view allow, auto&& handler) -> HttpResponse {
    if ((allow == "GET" && !get) || (allow == "POST" && !post)) return MethodNotAllowed(allow);
    if (auto refused = admit()) return *refused;
    return handler();
  };

  if (parts.size() == 1 && parts[0] == "projects") {
    return serve("GET", [&] { return ListProjects(request); });
  }
  if (parts.size() == 2 && parts[0] == "projects") {
    return serve("GET", [&] { return GetProject(parts[1]); });
  }
  if (parts.size() == 1 && parts[0] == "deployments") {
    return serve("GET", [&] { return ListDeployments(request); });
  }
  if (parts.size() == 2 && parts[0] == "deployments") {
    return serve("GET", [&] { return GetDeployment(parts[1]); });
  }
  if (parts.size() == 3 && parts[0] == "deployments" && parts[2] == "log") {
    return serve("GET", [&] { return FollowLog(parts[1], request); });
  }
  if (parts.size() == 3 && parts[0] == "deployments" && parts[2] == "cancel") {
    return serve("POST", [&] { return CancelDeployment(parts[1], request); });
  }
  if (parts.size() == 3 && parts[0] == "deployments" && parts[2] == "redeploy") {
    return serve("POST", [&] { return RedeployDeployment(parts[1], request); });
  }
  if (parts.size() == 3 && parts[0] == "deployments" && parts[2] == "rollback") {
    return serve("POST", [&] { return RollbackToDeployment(parts[1], request); });
  }
  if (parts.size() == 1 && parts[0] == "workflows") {
    return serve("GET", [&] { return ListWorkflows(request); });
  }
  if (parts.size() == 1 && parts[0] == "workflow") {
    return serve("GET", [&] { return DescribeWorkflow(request); });
  }
  if (parts.size() == 2 && parts[0] == "workflow" && parts[1] == "history") {
    return serve("GET", [&] { return WorkflowHistory(request); });
  }
  if (parts.size() == 2 && parts[0] == "workflow" && parts[1] == "cancel") {
    return serve("POST", [&] { return CancelWorkflow(request); });
  }
  if (parts.size() == 2 && parts[0] == "workflow" && parts[1] == "signal") {
    return serve("POST", [&] { return SignalWorkflow(request); });
  }
  if (parts.size() == 2 && parts[0] == "workflow" && parts[1] == "terminate") {
    return serve("POST", [&] { return TerminateWorkflow(request); });
  }
  if (parts.size() == 2 && parts[0] == "workflow" && parts[1] == "reset") {
    return serve("POST", [&] { return ResetWorkflow(request); });
  }
  if (parts.size() == 2 && parts[0] == "workflow" && parts[1] == "stack") {
    return serve("GET", [&] { return WorkflowStack(request); });
  }
  if (parts.size() == 2 && parts[0] == "workflow" && parts[1] == "log") {
    return serve("GET", [&] { return FollowWorkflowLog(request); });
  }
  if (parts.size() == 1 && parts[0] == "taskqueue") {
    return serve("GET", [&] { return DescribeTaskQueue(request); });
  }
  if (parts.size() == 1 && parts[0] == "machines") {
    return serve("GET", [&] { return ListMachines(request); });
  }
  return JsonError(404, absl::StrCat("no such API path: ", request.path));
}

HttpResponse Console::ListProjects(const HttpRequest& request) {
  pb::ListProjectsRequest list;
  absl::StatusOr<int32_t> size = PageSize(request);
  if (!size.ok()) return ErrorResponse(size.status());
  absl::StatusOr<std::string> token = PageToken(request);
  if (!token.ok()) return ErrorResponse(token.status());
  list.set_page_token(*token);
  pb::ListProjectsResponse page;
  for (int call = 0; call < kMaxConsoleListCalls; ++call) {
    list.set_page_size(*size - page.projects_size());
    absl::StatusOr<pb::ListProjectsResponse> got = options_.api->ListProjects(list);
    if (!got.ok()) return ErrorResponse(got.status());
    for (pb::ProjectConfig& p : *got->mutable_projects()) *page.add_projects() = std::move(p);
    page.set_next_page_token(got->next_page_token());
    if (got->next_page_token().empty() || page.projects_size() >= *size) break;
    list.set_page_token(got->next_page_token());
  }
  return JsonResponse(page);
}

HttpResponse Console::GetProject(const std::string& id) {
  absl::StatusOr<pb::ProjectState> state = options_.api->GetProject(id);
  if (!state.ok()) return ErrorResponse(state.status());
  pb::GetProjectResponse response;
  *response.mutable_state() = *std::move(state);
  return JsonResponse(response);
}

HttpResponse Console::ListDeployments(const HttpRequest& request) {
  pb::ListDeploymentsRequest list;
  absl::StatusOr<int32_t> size = PageSize(request);
  if (!size.ok()) return ErrorResponse(size.status());
  absl::StatusOr<std::string> token = PageToken(request);
  if (!token.ok()) return ErrorResponse(token.status());
  list.set_page_token(*token);
  list.set_project_id(QueryParam(request.query, "project").value_or(""));
  list.set_branch(QueryParam(request.query, "branch").value_or(""));
  std::string status = absl::AsciiStrToUpper(QueryParam(request.query, "status").value_or(""));
  if (!status.empty()) {
    if (!absl::StartsWith(status, "DEPLOYMENT_STATE_")) status = "DEPLOYMENT_STATE_" + status;
    pb::DeploymentState state;
    if (!pb::DeploymentState_Parse(status, &state)) {
      return JsonError(400, "status: not a deployment state (queued, building, succeeded, ...)");
    }
    list.set_state(state);
  }
  pb::ListDeploymentsResponse page;
  for (int call = 0; call < kMaxConsoleListCalls; ++call) {
    list.set_page_size(*size - page.deployments_size());
    absl::StatusOr<pb::ListDeploymentsResponse> got = options_.api->ListDeployments(list);
    if (!got.ok()) return ErrorResponse(got.status());
    for (pb::Deployment& d : *got->mutable_deployments()) *page.add_deployments() = std::move(d);
    page.set_next_page_token(got->next_page_token());
    if (got->next_page_token().empty() || page.deployments_size() >= *size) break;
    list.set_page_token(got->next_page_token());
  }
  return JsonResponse(page);
}

HttpResponse Console::GetDeployment(const std::string& id) {
  absl::StatusOr<pb::Deployment> deployment = options_.api->GetDeployment(id);
  if (!deployment.ok()) return ErrorResponse(deployment.status());
  return JsonResponse(*deployment);
}

HttpResponse Console::CancelDeployment(const std::string& id, const HttpRequest& request) {
  pb::CancelDeploymentRpcRequest cancel;
  if (absl::Status parsed = internal::ParseBody(request, &cancel); !parsed.ok()) {
    return ErrorResponse(parsed);
  }
  std::string reason = cancel.reason().empty() ? "canceled from the web console" : cancel.reason();
  if (absl::Status canceled = options_.api->CancelDeployment(id, reason); !canceled.ok()) {
    return ErrorResponse(canceled);
  }
  return JsonResponse(pb::CancelDeploymentResponse());
}

HttpResponse Console::ListWorkflows(const HttpRequest& request) {
  api::ListWorkflowExecutionsRequest list;
  absl::StatusOr<int32_t> size = PageSize(request);
  if (!size.ok()) return ErrorResponse(size.status());
  absl::StatusOr<std::string> token = PageToken(request);
  if (!token.ok()) return ErrorResponse(token.status());
  list.set_namespace_(options_.api->ns());
  list.set_next_page_token(*token);
  list.set_query(QueryParam(request.query, "query").value_or(""));
  api::ListWorkflowExecutionsResponse page;
  for (int call = 0; call < kMaxConsoleListCalls; ++call) {
    list.set_page_size(*size - page.executions_size());
    api::ListWorkflowExecutionsResponse got;
    grpc::Status status = Engine().ListWorkflowExecutions(
        EngineContext(request, options_.rpc_timeout).get(), list, &got);
    if (!status.ok()) return ErrorResponse(status);
    for (api::WorkflowExecutionInfo& info : *got.mutable_executions()) {
      *page.add_executions() = std::move(info);
    }
    page.set_next_page_token(got.next_page_token());
    if (got.next_page_token().empty() || page.executions_size() >= *size) break;
    list.set_next_page_token(got.next_page_token());
  }
  return JsonResponse(page);
}

HttpResponse Console::DescribeWorkflow(const HttpRequest& request) {
  absl::StatusOr<api::WorkflowExecution> execution = Execution(request);
  if (!execution.ok()) return ErrorResponse(execution.status());
  api::DescribeWorkflowExecutionRequest describe;
  describe.set_namespace_(options_.api->ns());
  *describe.mutable_execution() = *execution;
  api::DescribeWorkflowExecutionResponse response;
  grpc::Status status = Engine().DescribeWorkflowExecution(
      EngineContext(request, options_.rpc_timeout).get(), describe, &response);
  if (!status.ok()) return ErrorResponse(status);
  return JsonResponse(response);
}

HttpResponse Console::WorkflowHistory(const HttpRequest& request) {
  absl::StatusOr<api::WorkflowExecution> execution = Execution(request);
  if (!execution.ok()) return ErrorResponse(execution.status());
  // A history is read whole (a page is one event list): the largest pages by default.
  absl::StatusOr<int32_t> size = PageSize(request, kMaxConsolePageSize);
  if (!size.ok()) return ErrorResponse(size.status());
  absl::StatusOr<std::string> token = PageToken(request);
  if (!token.ok()) return ErrorResponse(token.status());
  api::GetWorkflowExecutionHistoryRequest history;
  history.set_namespace_(options_.api->ns());
  *history.mutable_execution() = *execution;
  history.set_maximum_page_size(*size);
  history.set_next_page_token(*token);
  api::GetWorkflowExecutionHistoryResponse response;
  grpc::Status status = Engine().GetWorkflowExecutionHistory(
      EngineContext(request, options_.rpc_timeout).get(), history, &response);
  if (!status.ok()) return ErrorResponse(status);
  return JsonResponse(response);
}

HttpResponse Console::CancelWorkflow(const HttpRequest& request) {
  absl::StatusOr<api::WorkflowExecution> execution = Execution(request);
  if (!execution.ok()) return ErrorResponse(execution.status());
  api::RequestCancelWorkflowExecutionRequest cancel;
  if (absl::Status parsed = internal::ParseBody(request, &cancel); !parsed.ok()) {
    return ErrorResponse(parsed);
  }
  cancel.set_namespace_(options_.api->ns());
  *cancel.mutable_workflow_execution() = *execution;
  cancel.set_identity("kiln-worker web console");
  if (cancel.reason().empty()) cancel.set_reason("canceled from the web console");
  api::RequestCancelWorkflowExecutionResponse response;
  grpc::Status status = Engine().RequestCancelWorkflowExecution(
      EngineContext(request, options_.rpc_timeout).get(), cancel, &response);
  if (!status.ok()) return ErrorResponse(status);
  return JsonResponse(response);
}

}  // namespace kiln::worker::console
