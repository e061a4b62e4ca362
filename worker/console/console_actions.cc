// The console's actions beyond cancel: redeploy and roll back a deployment (PlatformApi, as
// `kiln deploy trigger` and `kiln deploy rollback`), and signal, terminate and reset a workflow
// run (the engine's WorkflowService, as `kiln workflow signal|terminate|reset`). Each is a POST,
// which the router admits with an admin token only; the body is the gRPC request in protobuf's
// JSON mapping, of which the console takes the fields a person chooses and sets the rest.
#include <string>

#include "absl/strings/str_cat.h"
#include "worker/console/console.h"
#include "worker/console/console_internal.h"
#include "worker/workflows/platform.h"

namespace kiln::worker::console {
namespace {

using internal::CallContext;
using internal::ErrorResponse;
using internal::Execution;
using internal::JsonResponse;
using internal::ParseBody;

constexpr char kIdentity[] = "kiln-worker web console";
// Reasons and request ids are recorded in histories: bounded like the engine bounds them.
constexpr size_t kMaxReasonBytes = 1000;
constexpr size_t kMaxRequestIdBytes = 200;

absl::Status CheckReason(const std::string& reason) {
  if (reason.size() > kMaxReasonBytes) {
    return absl::InvalidArgumentError(absl::StrCat("reason: at most ", kMaxReasonBytes, " bytes"));
  }
  return absl::OkStatus();
}

absl::Status CheckRequestId(const std::string& request_id) {
  if (request_id.size() > kMaxRequestIdBytes) {
    return absl::InvalidArgumentError(
        absl::StrCat("requestId: at most ", kMaxRequestIdBytes, " bytes"));
  }
  return absl::OkStatus();
}

}  // namespace

HttpResponse Console::RedeployDeployment(const std::string& id, const HttpRequest& request) {
  pb::TriggerBuildRequest body;
  if (absl::Status parsed = ParseBody(request, &body); !parsed.ok()) return ErrorResponse(parsed);
  if (absl::Status ok = CheckRequestId(body.request_id()); !ok.ok()) return ErrorResponse(ok);
  if (ProjectOfDeployment(id).empty()) return JsonError(400, "not a deployment id");
  absl::StatusOr<pb::Deployment> deployment = options_.api->GetDeployment(id);
  if (!deployment.ok()) return ErrorResponse(deployment.status());
  // The same project, branch and commit (the head when the deployment never resolved one);
  // a tree built before is deployed again without a build.
  pb::TriggerBuildRequest trigger;
  trigger.set_project_id(deployment->project_id());
  trigger.set_branch(deployment->branch());
  trigger.set_commit_sha(deployment->commit_sha());
  trigger.set_request_id(body.request_id());
  absl::StatusOr<std::string> started =
      options_.api->TriggerBuild(trigger, "console", absl::StrCat("redeploy of ", id));
  if (!started.ok()) return ErrorResponse(started.status());
  pb::TriggerBuildResponse response;
  response.set_deployment_id(*started);
  return JsonResponse(response);
}

HttpResponse Console::RollbackToDeployment(const std::string& id, const HttpRequest& request) {
  pb::RollbackRpcRequest body;
  if (absl::Status parsed = ParseBody(request, &body); !parsed.ok()) return ErrorResponse(parsed);
  const std::string project = ProjectOfDeployment(id);
  if (project.empty()) return JsonError(400, "not a deployment id");
  if (!body.project_id().empty() && body.project_id() != project) {
    return JsonError(400,
                     absl::StrCat("deployment ", id, " is not of project ", body.project_id()));
  }
  absl::StatusOr<std::string> started = options_.api->Rollback(project, id);
  if (!started.ok()) return ErrorResponse(started.status());
  pb::RollbackResponse response;
  response.set_deployment_id(*started);
  return JsonResponse(response);
}

HttpResponse Console::SignalWorkflow(const HttpRequest& request) {
  absl::StatusOr<api::WorkflowExecution> execution = Execution(request);
  if (!execution.ok()) return ErrorResponse(execution.status());
  api::SignalWorkflowExecutionRequest signal;
  if (absl::Status parsed = ParseBody(request, &signal); !parsed.ok()) return ErrorResponse(parsed);
  if (signal.signal_name().empty()) return JsonError(400, "signalName is required");
  if (absl::Status ok = CheckRequestId(signal.request_id()); !ok.ok()) return ErrorResponse(ok);
  signal.set_namespace_(options_.api->ns());
  *signal.mutable_workflow_execution() = *execution;
  signal.set_identity(kIdentity);
  signal.clear_header();  // Headers carry propagated context, not something a person types.
  api::SignalWorkflowExecutionResponse response;
  grpc::Status status = Engine().SignalWorkflowExecution(
      EngineContext(request, options_.rpc_timeout).get(), signal, &response);
  if (!status.ok()) return ErrorResponse(status);
  return JsonResponse(response);
}

HttpResponse Console::TerminateWorkflow(const HttpRequest& request) {
  absl::StatusOr<api::WorkflowExecution> execution = Execution(request);
  if (!execution.ok()) return ErrorResponse(execution.status());
  api::TerminateWorkflowExecutionRequest terminate;
  if (absl::Status parsed = ParseBody(request, &terminate); !parsed.ok()) {
    return ErrorResponse(parsed);
  }
  if (absl::Status ok = CheckReason(terminate.reason()); !ok.ok()) return ErrorResponse(ok);
  terminate.set_namespace_(options_.api->ns());
  *terminate.mutable_workflow_execution() = *execution;
  terminate.set_identity(kIdentity);
  if (terminate.reason().empty()) terminate.set_reason("terminated from the web console");
  api::TerminateWorkflowExecutionResponse response;
  grpc::Status status = Engine().TerminateWorkflowExecution(
      EngineContext(request, options_.rpc_timeout).get(), terminate, &response);
  if (!status.ok()) return ErrorResponse(status);
  return JsonResponse(response);
}

HttpResponse Console::ResetWorkflow(const HttpRequest& request) {
  absl::StatusOr<api::WorkflowExecution> execution = Execution(request);
  if (!execution.ok()) return ErrorResponse(execution.status());
  api::ResetWorkflowExecutionRequest reset;
  if (absl::Status parsed = ParseBody(request, &reset); !parsed.ok()) return ErrorResponse(parsed);
  if (absl::Status ok = CheckReason(reset.reason()); !ok.ok()) return ErrorResponse(ok);
  if (absl::Status ok = CheckRequestId(reset.request_id()); !ok.ok()) return ErrorResponse(ok);
  if (reset.reset_point() == api::RESET_POINT_UNSPECIFIED &&
      reset.workflow_task_finish_event_id() <= 0) {
    return JsonError(400, "name the point: resetPoint or workflowTaskFinishEventId");
  }
  reset.set_namespace_(options_.api->ns());
  *reset.mutable_workflow_execution() = *execution;
  reset.set_identity(kIdentity);
  if (reset.reason().empty()) reset.set_reason("reset from the web console");
  api::ResetWorkflowExecutionResponse response;
  grpc::Status status = Engine().ResetWorkflowExecution(
      EngineContext(request, options_.rpc_timeout).get(), reset, &response);
  if (!status.ok()) return ErrorResponse(status);
  return JsonResponse(response);
}

}  // namespace kiln::worker::console
