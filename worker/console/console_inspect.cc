// The console's views of what the engine and the worker are doing now: where a run's code
// waits (the SDK's "__stack_trace" query, as `kiln workflow stack`), a task queue's pollers,
// backlog and exclusive holder (DescribeTaskQueue, as `kiln task-queue describe`), and the
// builder machines awake or asleep (the worker's machine providers, which only kiln-worker
// holds: no other API says it).
#include <string>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "kiln/platform/v1/console.pb.h"
#include "sdk/stack_trace.h"
#include "sdk/workflow.h"
#include "worker/console/console.h"
#include "worker/console/console_internal.h"

namespace kiln::worker::console {
namespace {

using internal::CallContext;
using internal::ErrorResponse;
using internal::Execution;
using internal::JsonResponse;
using internal::PageSize;
using internal::PageToken;
using internal::QueryParam;

// A query waits for a worker to answer: not for as long as other calls.
constexpr absl::Duration kStackQueryTimeout = absl::Seconds(5);

}  // namespace

HttpResponse Console::WorkflowStack(const HttpRequest& request) {
  absl::StatusOr<api::WorkflowExecution> execution = Execution(request);
  if (!execution.ok()) return ErrorResponse(execution.status());
  api::QueryWorkflowRequest query;
  query.set_namespace_(options_.api->ns());
  *query.mutable_execution() = *execution;
  query.mutable_query()->set_query_type(sdk::kStackTraceQuery);
  api::QueryWorkflowResponse answer;
  grpc::Status status = Engine().QueryWorkflow(
      EngineContext(request, std::min(options_.rpc_timeout, kStackQueryTimeout)).get(), query,
      &answer);
  if (!status.ok()) return ErrorResponse(status);
  absl::StatusOr<api::WorkflowStackTrace> trace = sdk::DecodeStackTrace(answer.query_result());
  if (!trace.ok()) {
    // Another SDK's worker (a Temporal SDK answers with text): `kiln workflow stack` shows it.
    return JsonError(501,
                     "the run's worker answers the stack query in a form the console does "
                     "not show; try kiln workflow stack");
  }
  return JsonResponse(*trace);
}

HttpResponse Console::DescribeTaskQueue(const HttpRequest& request) {
  const std::string name = QueryParam(request.query, "name").value_or("");
  if (name.empty()) return JsonError(400, "name is required");
  if (name.size() > kMaxConsoleNameBytes) {
    return JsonError(400, absl::StrCat("name: at most ", kMaxConsoleNameBytes, " bytes"));
  }
  const std::string kind = absl::AsciiStrToLower(QueryParam(request.query, "kind").value_or(""));
  if (kind != "workflow" && kind != "activity") {
    return JsonError(400, "kind must be workflow or activity");
  }
  api::DescribeTaskQueueRequest describe;
  describe.set_namespace_(options_.api->ns());
  describe.mutable_task_queue()->set_name(name);
  describe.set_activity(kind == "activity");
  api::DescribeTaskQueueResponse response;
  grpc::Status status = Engine().DescribeTaskQueue(
      EngineContext(request, options_.rpc_timeout).get(), describe, &response);
  if (!status.ok()) return ErrorResponse(status);
  return JsonResponse(response);
}

HttpResponse Console::ListMachines(const HttpRequest& request) {
  absl::StatusOr<int32_t> size = PageSize(request);
  if (!size.ok()) return ErrorResponse(size.status());
  absl::StatusOr<std::string> token = PageToken(request);
  if (!token.ok()) return ErrorResponse(token.status());
  pb::ListProjectsRequest list;
  list.set_page_size(*size);
  list.set_page_token(*token);
  absl::StatusOr<pb::ListProjectsResponse> projects = options_.api->ListProjects(list);
  if (!projects.ok()) return ErrorResponse(projects.status());
  pb::ListBuilderMachinesResponse response;
  response.set_next_page_token(projects->next_page_token());
  for (const pb::ProjectConfig& project : projects->projects()) {
    pb::BuilderMachine* machine = response.add_machines();
    machine->set_project_id(project.id());
    const std::string provider =
        project.machine_provider().empty() ? "process" : project.machine_provider();
    machine->set_provider(provider);
    machine->set_last_exit_code(-1);
    auto found = options_.machines.find(provider);
    if (found == options_.machines.end() || found->second == nullptr) {
      machine->set_error(absl::StrCat("this worker has no ", provider, " provider"));
      continue;
    }
    absl::StatusOr<MachineStatus> state = found->second->Status(project.id());
    if (!state.ok()) {
      machine->set_error(std::string(state.status().message()));
      continue;
    }
    machine->set_awake(state->state == MachineState::kAwake);
    machine->set_pid(machine->awake() ? state->pid : 0);
    machine->set_last_exit_code(state->last_exit_code);
    if (state->woke_at > absl::UnixEpoch()) {
      const int64_t nanos = absl::ToUnixNanos(state->woke_at);
      machine->mutable_woke_time()->set_seconds(nanos / 1'000'000'000);
      machine->mutable_woke_time()->set_nanos(static_cast<int32_t>(nanos % 1'000'000'000));
    }
  }
  return JsonResponse(response);
}

}  // namespace kiln::worker::console
